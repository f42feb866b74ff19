"""The decision policy: calibrated probabilities in, one of the four outcomes out.

Pure functions; thresholds live in the checkpoint and are chosen on
validation data only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from triage.outcomes import MILIA, OTHER, OUTCOMES, PUSTULE, REFER

REFER_IDX = OUTCOMES.index(REFER)
OTHER_IDX = OUTCOMES.index(OTHER)
#: Outcomes that lead towards an extraction facial: a true refer-to-doctor photo sent there is an unsafe miss.
RISKY_IDX = [OUTCOMES.index(MILIA), OUTCOMES.index(PUSTULE)]


@dataclass(frozen=True)
class Thresholds:
    """Operating point of the decision policy.

    Attributes:
        refer: refer-to-doctor whenever its probability is at least this.
        abstain: refer-to-doctor whenever the top probability is below this.
        refer_other: the refer threshold when the likeliest other outcome is "other" (see :meth:`refer_for`).
    """

    refer: float = 0.5
    abstain: float = 0.0
    refer_other: float | None = None

    def refer_for(self, probs: np.ndarray) -> np.ndarray:
        """The refer threshold that applies to each row of ``(N, 4)`` probabilities.

        ``refer`` where the most likely of the three other outcomes is milia-like or pustule (outcomes that
        lead to an extraction facial, so a missed referral there is the unsafe kind); ``refer_other``
        (never below ``refer``) where it is "other". ``None`` uses ``refer`` everywhere.
        """
        probs = np.atleast_2d(probs)
        if self.refer_other is None:
            return np.full(len(probs), self.refer)
        non_refer = [i for i in range(probs.shape[1]) if i != REFER_IDX]
        other = np.asarray(non_refer)[probs[:, non_refer].argmax(1)] == OTHER_IDX
        return np.where(other, max(self.refer_other, self.refer), self.refer)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Temperature-scaled softmax over the last axis."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def decide(probs: np.ndarray, t: Thresholds) -> np.ndarray:
    """Apply the policy to ``(N, 4)`` probabilities; returns outcome indices.

    refer-to-doctor when its probability reaches ``t.refer_for(probs)`` or when the model
    is unsure (top probability below ``t.abstain``); otherwise the top class.
    """
    probs = np.atleast_2d(probs)
    pred = probs.argmax(1)
    refer = (probs[:, REFER_IDX] >= t.refer_for(probs)) | (probs.max(1) < t.abstain)
    return np.where(refer, REFER_IDX, pred)


def choose_thresholds(
    probs: np.ndarray,
    y_true: np.ndarray,
    min_refer_sensitivity: float = 0.95,
    max_unsafe_miss: float = 0.02,
    separate_other: bool = True,
) -> tuple[Thresholds, dict]:
    """Pick the operating point on validation data.

    Searches a grid of (refer, refer_other, abstain) thresholds and keeps the one with the best balanced
    accuracy among those meeting the refer-sensitivity and unsafe-miss constraints; if none does, the most
    sensitive one. ``refer_other`` (searched from ``refer`` up, only when ``separate_other``) lets photos
    that look most like "other" keep that answer at a higher refer probability than milia-like or pustule
    answers, whose misses are the unsafe ones.

    Returns:
        the thresholds and the validation metrics they reach.
    """
    from triage.metrics import confusion

    y_true = np.asarray(y_true)
    probs = np.atleast_2d(probs)
    n_classes = len(OUTCOMES)
    support = np.bincount(y_true, minlength=n_classes)
    n_refer = max(int(support[REFER_IDX]), 1)
    present = support > 0
    best = fallback = None
    grid = np.round(np.arange(0.02, 0.61, 0.01), 2)
    other_grid = np.round(np.arange(0.02, 0.81, 0.02), 2)
    for refer in grid:
        for refer_other in [None] + ([float(v) for v in other_grid if v > refer] if separate_other else []):
            for abstain in np.round(np.arange(0.0, 0.71, 0.05), 2):
                t = Thresholds(float(refer), float(abstain), refer_other)
                cm = confusion(y_true, decide(probs, t))
                recall = np.diag(cm)[present] / support[present]
                row = {
                    "refer_sensitivity": float(cm[REFER_IDX, REFER_IDX] / n_refer),
                    "unsafe_miss_rate": float(cm[REFER_IDX, RISKY_IDX].sum() / n_refer),
                    "balanced_accuracy": float(recall.mean()),
                }
                if row["refer_sensitivity"] >= min_refer_sensitivity and row["unsafe_miss_rate"] <= max_unsafe_miss:
                    if best is None or row["balanced_accuracy"] > best[1]["balanced_accuracy"]:
                        best = (t, row)
                key = (row["refer_sensitivity"], row["balanced_accuracy"])
                if fallback is None or key > (fallback[1]["refer_sensitivity"], fallback[1]["balanced_accuracy"]):
                    fallback = (t, row)
    return best if best is not None else fallback
