"""Reconstruction quality after a short PyTorch training, against a flat-object baseline (slow).

Scan (``QUALITY_SCAN``): a ``grf:8`` object (Gaussian random fields with an 8 px correlation
length: texture everywhere, no flat background for a constant guess to match), the
``defocused`` probe, N=64, 529 positions on a 7 px raster, 1e6 photons per pattern, seed 7.
Training: the default PINN settings (gridsize 1, batch 16, Adam 1e-3, 5 % validation) for
``EPOCHS`` epochs, about 2 minutes on 2 idle CPU cores.

Measured here (2026-11-30, CPU, 10 epochs, training seed 42: identical in three runs; seed 1
in brackets), reconstruction vs flat object (``flat_baseline_metrics``):

=================  ====================  ==============
metric             reconstruction        flat object
=================  ====================  ==============
amplitude PSNR     13.77 dB (14.84 dB)   10.99 dB
phase PSNR         12.17 dB (12.72 dB)   10.62 dB
phase SSIM         0.169 (0.176)         0.003
amplitude SSIM     0.266 (0.339)         0.292
=================  ====================  ==============

Not asserted, and why (issue 3): the amplitude SSIM does not yet clearly beat the flat object
at this budget (the short training leaves a faint probe-footprint pattern at the scan step that
SSIM's 7 px windows punish on this smooth object), and the recipe is not robust across seeds
(training seed 2 left the phase flat). This test guards the seed-42 trajectory.
"""

from __future__ import annotations

import numpy as np
import pytest

from ptycho.config.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptycho.data.simulation import simulate
from ptycho.evaluation import evaluate_reconstruction, flat_baseline_metrics
from ptycho.workflows import inference, training

QUALITY_SCAN = dict(object_kind="grf:8", probe_kind="defocused", N=64, object_size=224, step=7.0,
                    nphotons=1e6, seed=7)
EPOCHS = 10


@pytest.mark.slow
def test_short_training_beats_a_flat_object(tmp_path):
    scan = simulate(**QUALITY_SCAN).scan
    assert scan.n_positions == 529
    config = TrainingConfig(model=ModelConfig(N=64), nepochs=EPOCHS, backend="pytorch",
                            output_dir=tmp_path)
    result = training.train(config, ExecutionConfig(progress_bar=False, logger="none"),
                            train_scan=scan, write_outputs=False)
    stitched = inference.reconstruct(result.model, scan).stitched
    where = dict(scan_xy=np.column_stack([scan.xcoords, scan.ycoords]), valid=stitched.weight > 0)
    ours = evaluate_reconstruction(stitched.object, stitched.x0_px, stitched.y0_px,
                                   scan.object_guess, **where)
    flat = flat_baseline_metrics(stitched.object, stitched.x0_px, stitched.y0_px,
                                 scan.object_guess, **where)
    print({key: (ours[key], flat[key]) for key in ("amplitude", "phase")})
    assert ours["amplitude"]["psnr_db"] >= flat["amplitude"]["psnr_db"] + 1.5
    assert ours["phase"]["psnr_db"] >= flat["phase"]["psnr_db"] + 0.8
    assert ours["phase"]["ssim"] >= flat["phase"]["ssim"] + 0.06
