"""Framework-free learning-rate schedule shared by both backends (one definition).

``TrainingConfig.lr_schedule='cosine'``: the learning rate of the optimiser update that follows
``step`` updates (``step`` = 0, 1, 2, ... counted over the whole run, resumed runs included) is
``learning_rate * factor(step)`` with, for W warm-up steps, T total steps and
``m = lr_min / learning_rate``::

    cosine(step) = m + (1 - m) * (1 + cos(pi * clip((step - W) / max(T - W, 1), 0, 1))) / 2
    factor(step) = min((step + 1) / W, cosine(step))      (W > 0; cosine(step) alone when W = 0)

so the rate rises linearly from ``learning_rate / W`` (first update) to ``learning_rate``
(the W-th update), then follows a half cosine down to ``lr_min``, reached at step T and kept after it.
``W = round(lr_warmup_epochs * steps_per_epoch)`` and ``T = nepochs * steps_per_epoch``, with
``steps_per_epoch`` the optimiser updates of one epoch (in this process, under DDP).

The PyTorch backend runs it as a ``LambdaLR`` stepped after every update (Lightning interval
'step'); the TensorFlow backend as a Keras ``LearningRateSchedule`` of the optimiser's
``iterations``. Both evaluate :meth:`CosineSchedule.factor` in float64 (Keras with its own
``ops``), so they use the same rate at every step; both restore the step count with a resumed
run (torch: the scheduler state; Keras: ``optimizer.iterations``), so the schedule continues
where it stopped: at the update count of the interruption, including the updates of the
interrupted epoch that the resumed run repeats (near the end the rate just stays at
``lr_min``). A resumed run with a larger ``--nepochs`` continues on the longer curve (T grows;
the rate at the saved step rises to that curve's value). The per-epoch ``learning_rate`` of
the history is the rate of the next update (the value at the end of the epoch) in both
backends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class CosineSchedule:
    """Linear warm-up over ``warmup_steps`` updates, then cosine decay to ``min_factor``."""

    warmup_steps: int
    total_steps: int
    min_factor: float = 0.0

    @classmethod
    def from_config(cls, config, steps_per_epoch: int) -> CosineSchedule:
        """The schedule of a ``TrainingConfig`` for ``steps_per_epoch`` updates per epoch."""
        steps_per_epoch = max(int(steps_per_epoch), 1)
        return cls(warmup_steps=int(round(config.lr_warmup_epochs * steps_per_epoch)),
                   total_steps=int(config.nepochs) * steps_per_epoch,
                   min_factor=float(config.lr_min) / float(config.learning_rate))

    def factor(self, step, *, minimum=min, maximum=max, cos=math.cos):
        """The multiplier of ``learning_rate`` for the update after ``step`` updates.

        ``step`` is a number, or a float64 tensor together with that framework's
        ``minimum``, ``maximum`` and ``cos`` (element-wise).
        """
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = minimum(maximum(step - self.warmup_steps, 0) / decay_steps, 1)
        cosine = self.min_factor + (1 - self.min_factor) * 0.5 * (1 + cos(math.pi * progress))
        if self.warmup_steps <= 0:
            return cosine
        return minimum((step + 1) / self.warmup_steps, cosine)

    def learning_rates(self, learning_rate: float, steps: int) -> list[float]:
        """The rates of the first ``steps`` updates (for tests and plots)."""
        return [learning_rate * self.factor(step) for step in range(steps)]
