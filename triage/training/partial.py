"""Partial labels: train a crop whose outcome is one of a known set, without guessing which.

A training photo with pustules beside cysts is labelled refer-to-doctor as a whole (its most cautious
outcome), but a crop around one of its spots shows a pustule *or* a cyst. Its candidate crops
(``triage.data.crops``) carry the set, and the candidate-set loss asks the network to put its probability
on the set, ``-log sum_{c in set} p(c)``, leaving the split inside the set to what it learns from the
single-label photos. For a set of one class it is exactly cross-entropy, label smoothing included, so every
ordinary photo and crop trains as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from triage.core.outcomes import OUTCOMES
from triage.training.dataset import Split


def candidate_set_loss(logits: torch.Tensor, candidates: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean of ``-(1 - e) log sum_{c in set} p(c) - e mean_k log p(k)`` over the batch.

    Args:
        logits: ``(batch, classes)``.
        candidates: ``(batch, classes)``, non-zero where a class is in the row's candidate set (at least one).
        label_smoothing: ``e``, as in :class:`torch.nn.CrossEntropyLoss` (equal to it for one-class sets).
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    in_set = log_p.masked_fill(candidates <= 0, float("-inf")).logsumexp(dim=1)
    return (-(1 - label_smoothing) * in_set - label_smoothing * log_p.mean(dim=1)).mean()


class CandidateSetLoss(nn.Module):
    """:func:`candidate_set_loss` for ``(batch, classes)`` set targets; class-index targets go to cross-entropy."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.dim() == 1:
            return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        return candidate_set_loss(logits, target, self.label_smoothing)


def candidate_masks(candidates: Sequence[str], class_outcomes: Sequence[int]) -> np.ndarray:
    """One row per crop: which classes lie in its candidate outcomes (``;``-joined outcome names).

    Args:
        candidates: each crop's ``candidates`` (``crops.csv``).
        class_outcomes: the outcome index of each class the network predicts (the outcomes themselves, or
            the diagnosis classes of :func:`triage.data.diagnoses.vocabulary`): every class of a candidate
            outcome is in the set.

    Raises:
        ValueError: for an empty set or an unknown outcome name.
    """
    of_class = np.asarray(class_outcomes)
    rows = []
    for c in candidates:
        names = [n for n in c.split(";") if n]
        if not names or any(n not in OUTCOMES for n in names):
            raise ValueError(f"not a candidate set of outcomes: {c!r}")
        rows.append(np.isin(of_class, [OUTCOMES.index(n) for n in names]))
    return np.asarray(rows, dtype=bool).reshape(len(rows), len(of_class))


def training_crops(train_crops: Split, partial_labels: bool) -> Split:
    """The training crops a run may draw: candidate crops only with ``partial_labels``.

    Splits loaded for a partial-label run also serve its baselines; there, a candidate crop drawn as an
    ordinary one would train as its photo's most cautious outcome.
    """
    if partial_labels or train_crops.candidates is None:
        return train_crops
    return train_crops.subset(train_crops.candidates == "")
