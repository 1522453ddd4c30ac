"""Cross-backend parity of the forward-model components (ptycho.parity.checks).

Each backend's operation against the NumPy float64 reference (ptycho.physics) and against the
other backend, on random complex inputs with an asymmetric complex probe and sub-pixel
offsets: relative error <= 1e-5 in float32, <= 1e-6 in float64 where the op supports it.
(The single-backend tests in tests/torch and tests/tensorflow cover conventions and edge
cases; these rows are the ones the ``ptychopinn parity`` table reports.)
"""

import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")
pytest.importorskip("ptycho.backends.tensorflow")

from ptycho.parity import checks

BOTH = (checks.TORCH, checks.TF)
OPS = {  # check function -> the FLOAT64_OPS key it covers (None: float32 layers only)
    checks.check_extraction: "extraction",
    checks.check_member_shift: "member_shift",
    checks.check_merge_extract: "merge_extract",
    checks.check_illumination: None,
    checks.check_smoothing: "smoothing",
    checks.check_far_field: "far_field",
    checks.check_intensity_scaling: None,
    checks.check_poisson_nll: "poisson_nll",
    checks.check_masked_data_terms: "masked_data_terms",
    checks.check_fourier_axis: "fourier_axis",
    checks.check_mixed_state_intensity: "mixed_state",
}


def _describe(rows):
    return "\n".join(f"{r.quantity} | {r.comparison} | {r.dtype}: rel {r.max_rel:.3g} "
                     f"(tol {r.tolerance:g})" for r in rows)


@pytest.mark.parametrize("check", list(OPS), ids=lambda f: f.__name__.removeprefix("check_"))
def test_component_matches_reference_and_other_backend(check):
    rows = check(BOTH)
    failed = [row for row in rows if not row.passed]
    assert not failed, _describe(failed)
    comparisons = {(row.comparison, row.dtype) for row in rows}
    for backend in BOTH:
        assert (f"{backend} vs reference", "float32") in comparisons
    assert ("pytorch vs tensorflow", "float32") in comparisons
    op = OPS[check]
    for backend in BOTH:      # float64 is checked wherever the backend op supports it
        expected = op is not None and op in checks.FLOAT64_OPS[backend]
        assert ((f"{backend} vs reference", "float64") in comparisons) == expected
    assert all(row.tolerance == (1e-6 if row.dtype == "float64" else 1e-5) for row in rows)


def test_float64_is_really_computed_in_float64():
    """A float64 row at float32 accuracy would pass 1e-6 only by luck: demand ~1e-12."""
    rows = [row for check in OPS for row in check(BOTH) if row.dtype == "float64"]
    assert rows and max(row.max_rel for row in rows) < 1e-12


def test_asymmetric_probe_has_no_mirror_symmetry(rng):
    import numpy as np

    probe = checks.asymmetric_probe(32, rng)
    for flipped in (probe[::-1], probe[:, ::-1], probe.T, probe[::-1, ::-1]):
        assert np.abs(flipped - probe).max() > 0.1 * np.abs(probe).max()


def test_relative_error_definition():
    assert checks.compare([1.0, 2.0], [1.0, 4.0]) == (2.0, 0.5)
    assert checks.compare(3.0, 3.0) == (0.0, 0.0)
    row = checks.CheckResult("g", "q", "c", "float32", 1.0, 2e-5, 1e-5)
    assert not row.passed and row.as_dict()["passed"] is False
