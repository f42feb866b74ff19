"""The decision policy: calibrated probabilities in, one of the four outcomes out.

Pure functions; thresholds live in the checkpoint and are chosen on
validation data only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from triage.core.outcomes import MILIA, OTHER, OUTCOMES, PUSTULE, REFER

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
    also: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[Thresholds, dict]:
    """Pick the operating point on validation data.

    Searches a grid of (refer, refer_other, abstain) thresholds and keeps the one with the best balanced
    accuracy among those meeting the refer-sensitivity and unsafe-miss constraints; if none does, the most
    sensitive one. ``refer_other`` (searched from ``refer`` up, only when ``separate_other``) lets photos
    that look most like "other" keep that answer at a higher refer probability than milia-like or pustule
    answers, whose misses are the unsafe ones.

    ``also`` adds further validation sets, e.g. ``{"closeup": (crop_probs, crop_y)}``: the constraints must
    then hold on every set, and the objective is the mean balanced accuracy over the sets, so that the point
    suits close-ups as well as whole photos instead of only the kind that happens to be more numerous.

    Returns:
        the thresholds and the validation metrics they reach (those of ``also`` sets prefixed by their name).
    """
    from triage.core.metrics import confusion

    sets = {"": (np.atleast_2d(probs), np.asarray(y_true))}
    sets.update({f"{k}_": (np.atleast_2d(p), np.asarray(y)) for k, (p, y) in (also or {}).items() if len(y)})
    n_classes = len(OUTCOMES)
    stats = {}
    for key, (_, y) in sets.items():
        support = np.bincount(y, minlength=n_classes)
        stats[key] = (support, max(int(support[REFER_IDX]), 1), support > 0)
    best = fallback = None
    grid = np.round(np.arange(0.02, 0.61, 0.01), 2)
    other_grid = np.round(np.arange(0.02, 0.81, 0.02), 2)
    for refer in grid:
        for refer_other in [None] + ([float(v) for v in other_grid if v > refer] if separate_other else []):
            for abstain in np.round(np.arange(0.0, 0.71, 0.05), 2):
                t = Thresholds(float(refer), float(abstain), refer_other)
                row: dict = {}
                ok = True
                for key, (p, y) in sets.items():
                    support, n_refer, present = stats[key]
                    cm = confusion(y, decide(p, t))
                    recall = np.diag(cm)[present] / support[present]
                    sens = float(cm[REFER_IDX, REFER_IDX] / n_refer)
                    unsafe = float(cm[REFER_IDX, RISKY_IDX].sum() / n_refer)
                    row |= {
                        f"{key}refer_sensitivity": sens,
                        f"{key}unsafe_miss_rate": unsafe,
                        f"{key}balanced_accuracy": float(recall.mean()),
                    }
                    ok = ok and sens >= min_refer_sensitivity and unsafe <= max_unsafe_miss
                score = float(np.mean([row[f"{k}balanced_accuracy"] for k in sets]))
                worst_sens = min(row[f"{k}refer_sensitivity"] for k in sets)
                if ok and (best is None or score > best[2]):
                    best = (t, row, score)
                if fallback is None or (worst_sens, score) > fallback[2]:
                    fallback = (t, row, (worst_sens, score))
    chosen = best if best is not None else fallback
    return chosen[0], chosen[1]
