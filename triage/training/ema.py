"""An exponential moving average (EMA) of a network's weights, for training (serving never imports this).

Larger networks fine-tuned for a few epochs end on weights that still jump from step to step; the average
of the recent steps generalises better and is steadier from epoch to epoch (Polyak averaging). With
``ema_decay`` > 0, training validates, keeps, calibrates and saves the averaged weights instead of the raw
ones, and the average is part of the resumable epoch state.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay_at(decay: float, step: int) -> float:
    """The decay used at optimiser step ``step`` (0-based): ``decay``, but lower while few steps are averaged.

    ``min(decay, (1 + step) / (10 + step))``, as TensorFlow's ``ExponentialMovingAverage(num_updates=...)``:
    early on the average follows the network closely instead of remembering the initial weights for
    ``1 / (1 - decay)`` steps.
    """
    return min(decay, (1.0 + step) / (10.0 + step))


class WeightEMA:
    """The moving average of ``model``'s parameters, as a second network of the same shape (``average``).

    Parameters are averaged; buffers (batch-norm statistics) are copied from the network at every update,
    since training re-estimates the statistics of whatever network it evaluates (precise batch norm).

    Args:
        model: the network being trained (its parameters are read, never changed).
        decay: the weight of the old average at each step, e.g. 0.999 (about the last 1,000 steps).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.model, self.decay = model, decay
        self.average = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold the network's current weights into the average after optimiser step ``step`` (0-based)."""
        d = ema_decay_at(self.decay, step)
        for avg, p in zip(self.average.parameters(), self.model.parameters(), strict=True):
            avg.lerp_(p.detach(), 1.0 - d)  # avg <- d * avg + (1 - d) * p
        for avg, b in zip(self.average.buffers(), self.model.buffers(), strict=True):
            avg.copy_(b)
