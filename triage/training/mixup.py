"""Mixup: train on blends of two photos, the loss blended the same way (Zhang et al., 2018).

A batch is mixed with a shuffled copy of itself, ``lam * x + (1 - lam) * x[perm]`` with ``lam ~ Beta(a, a)``,
and the loss is ``lam * L(out, y) + (1 - lam) * L(out, y[perm])``. Blending the loss rather than the targets
keeps it correct for every target the loop trains on: class indices (cross-entropy with label smoothing) and
the candidate sets of partial labels alike, since both losses are batch means. Why try it here: it asks the
network for a smoother ranking between outcomes instead of sharp boundaries it can draw along a source's
look, the shortcut that costs the most on sources it has never seen (``bench/source_prior.py``).
"""

from __future__ import annotations

import numpy as np
import torch


def draw_mix(batch: int, alpha: float, rng: np.random.Generator) -> tuple[float, torch.Tensor]:
    """The blend weight and partner order for one batch.

    Args:
        batch: the batch size.
        alpha: the Beta distribution's parameter (> 0).
        rng: the epoch's generator, so a resumed epoch draws what the uninterrupted one drew.

    Returns:
        ``(lam, perm)``: ``lam`` in ``[0.5, 1]`` (the larger share stays with the photo that keeps its place,
        so each row's own target always carries at least half the loss), ``perm`` a permutation of the batch.
    """
    if alpha <= 0:
        raise ValueError(f"mixup alpha must be > 0, got {alpha}")
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(batch))
    return max(lam, 1.0 - lam), perm


def mix_inputs(x: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
    """``lam * x + (1 - lam) * x[perm]``."""
    return x.mul(lam).add_(x[perm], alpha=1.0 - lam)


def mixed_loss(loss_fn, logits: torch.Tensor, y: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
    """``lam * loss_fn(logits, y) + (1 - lam) * loss_fn(logits, y[perm])``: either kind of target."""
    return lam * loss_fn(logits, y) + (1.0 - lam) * loss_fn(logits, y[perm])
