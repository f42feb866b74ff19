"""Which photos a batch draws: per-photo weights (class and source balance) and their DDP sampler."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Sampler


class DistributedWeightedSampler(Sampler[int]):
    """Weighted sampling with replacement, shared out across DDP ranks.

    Every rank draws the same weighted index list from ``seed + epoch`` and
    keeps every ``num_replicas``-th index from its rank on, so together the
    ranks see one class-balanced draw of ``num_samples`` images per epoch
    (like :class:`WeightedRandomSampler` in a single process) without any
    communication beyond the shared seed. Call :meth:`set_epoch` each epoch.
    """

    def __init__(self, weights, num_samples: int, num_replicas: int, rank: int, seed: int = 0) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.num_samples = math.ceil(num_samples / num_replicas)  # per rank: all ranks take equal steps
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Draw a new list next time (the same on every rank)."""
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        idx = torch.multinomial(self.weights, self.total_size, replacement=True, generator=g)
        return iter(idx[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples


def sample_weights(y: np.ndarray, source: np.ndarray, mode: str) -> np.ndarray:
    """Per-image sampling weights.

    ``class``: every outcome equally likely. ``class_source``: the same, and
    within an outcome each source gets weight proportional to the square root
    of its size, so small clinical sources of an outcome are not drowned by
    one large (e.g. dermoscopic) source - the shortcut we most fear.
    ``sqrt_class_source``: as ``class_source``, but each outcome's share is
    proportional to the square root of its size: the rare outcomes are still
    drawn several times more often than their share (milia-like 2% of the
    photos -> 9% of the draws), while refer-to-doctor, the most varied
    outcome, keeps enough draws for the model to rank it well, which the
    safety operating point (refer sensitivity >= 0.95) depends on.
    """
    w = np.zeros(len(y), dtype=np.float64)
    classes, class_counts = np.unique(y, return_counts=True)
    class_share = dict(zip(classes, np.sqrt(class_counts) / np.sqrt(class_counts).sum(), strict=True))
    for c in classes:
        in_c = y == c
        if mode in ("class_source", "sqrt_class_source"):
            srcs, counts = np.unique(source[in_c], return_counts=True)
            share = np.sqrt(counts) / np.sqrt(counts).sum()
            for s, n, sh in zip(srcs, counts, share, strict=True):
                w[in_c & (source == s)] = sh / n
        else:
            w[in_c] = 1.0 / in_c.sum()
        if mode == "sqrt_class_source":
            w[in_c] *= class_share[c]
    return w / w.sum()
