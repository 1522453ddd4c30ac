"""Reconstruction quality after a short PyTorch training, against a flat-object baseline (slow).

Scan (``QUALITY_SCAN``): a ``grf:8`` object (Gaussian random fields with an 8 px correlation
length: texture everywhere, no flat background for a constant guess to match), the
``defocused`` probe, N=64, 529 positions on a 7 px raster, 1e6 photons per pattern, seed 7.
Training: the default PINN settings (gridsize 1, batch 16, Adam 1e-3, 5 % validation) for
``EPOCHS`` epochs, about 2 minutes on 2 idle CPU cores.

Measured here (2026-11-30, CPU, 10 epochs, training seed 42: identical in every run), each
stitching against the flat object (``flat_baseline_metrics``, same pixels):

===============  ======================  ======================  ===========
metric           ``probe`` (default)     ``stitch_weight=crop``  flat object
===============  ======================  ======================  ===========
amplitude SSIM   0.460                   0.266                   0.292
amplitude PSNR   15.16 dB                13.77 dB                10.99 dB
phase SSIM       0.151                   0.169                   0.003
phase PSNR       11.96 dB                12.17 dB                10.62 dB
===============  ======================  ======================  ===========

The probe-weighted stitching (``|P|**2`` per crop pixel, the default of the CLI and the Python
API) beats the flat object in SSIM for both amplitude and phase; the uniform crop (what the
ptychodus path uses, M=20) leaves a faint scan-step texture that SSIM's 7 px windows punish in
amplitude, so for it only PSNR and phase SSIM are asserted.
The 10-epoch recipe is not robust across training seeds (seed 1: amplitude/phase SSIM
0.34/0.18 with the crop; seed 2 left the phase flat); this test guards the seed-42 trajectory.
"""

from __future__ import annotations

import pytest

from ptycho.config.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptycho.data.simulation import simulate
from ptycho.demo import DEMO_SCAN
from ptycho.evaluation import comparison_region, evaluate_reconstruction, flat_baseline_metrics
from ptycho.workflows import inference, training

QUALITY_SCAN = dict(DEMO_SCAN, seed=7)  # the demo's training scan
EPOCHS = 10


@pytest.mark.slow
def test_short_training_beats_a_flat_object(tmp_path):
    scan = simulate(**QUALITY_SCAN).scan
    assert scan.n_positions == 529
    config = TrainingConfig(model=ModelConfig(N=64), nepochs=EPOCHS, backend="pytorch",
                            output_dir=tmp_path)
    result = training.train(config, ExecutionConfig(progress_bar=False, logger="none"),
                            train_scan=scan, write_outputs=False)
    scores = {}
    for weighting in ("probe", "crop"):
        stitched = inference.reconstruct(result.model, scan, stitch_weight=weighting).stitched
        where = comparison_region(stitched, scan)
        scores[weighting] = evaluate_reconstruction(stitched.object, stitched.x0_px,
                                                    stitched.y0_px, scan.object_guess, **where)
        scores[f"flat ({weighting})"] = flat_baseline_metrics(
            stitched.object, stitched.x0_px, stitched.y0_px, scan.object_guess, **where)
    for name, metrics in scores.items():
        print(name, {c: {k: round(metrics[c][k], 3) for k in ("psnr_db", "ssim")}
                     for c in ("amplitude", "phase")})
    ours, flat = scores["probe"], scores["flat (probe)"]
    for component, ssim_margin, psnr_margin in (("amplitude", 0.1, 2.0), ("phase", 0.08, 0.8)):
        assert ours[component]["ssim"] >= flat[component]["ssim"] + ssim_margin, component
        assert ours[component]["psnr_db"] >= flat[component]["psnr_db"] + psnr_margin, component
    # the uniform crop (the ptychodus path) beats the flat object in PSNR and phase SSIM
    ours, flat = scores["crop"], scores["flat (crop)"]
    assert ours["amplitude"]["psnr_db"] >= flat["amplitude"]["psnr_db"] + 1.5
    assert ours["phase"]["psnr_db"] >= flat["phase"]["psnr_db"] + 0.8
    assert ours["phase"]["ssim"] >= flat["phase"]["ssim"] + 0.06
