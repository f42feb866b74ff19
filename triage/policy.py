"""The decision policy: calibrated probabilities in, one of the four outcomes out.

Pure functions; thresholds live in the checkpoint and are chosen on
validation data only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from triage.outcomes import OUTCOMES, REFER

REFER_IDX = OUTCOMES.index(REFER)


@dataclass(frozen=True)
class Thresholds:
    """Operating point of the decision policy.

    Attributes:
        refer: refer-to-doctor whenever its probability is at least this.
        abstain: refer-to-doctor whenever the top probability is below this.
    """

    refer: float = 0.5
    abstain: float = 0.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Temperature-scaled softmax over the last axis."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def decide(probs: np.ndarray, t: Thresholds) -> np.ndarray:
    """Apply the policy to ``(N, 4)`` probabilities; returns outcome indices.

    refer-to-doctor when its probability reaches ``t.refer`` or when the model
    is unsure (top probability below ``t.abstain``); otherwise the top class.
    """
    probs = np.atleast_2d(probs)
    pred = probs.argmax(1)
    refer = (probs[:, REFER_IDX] >= t.refer) | (probs.max(1) < t.abstain)
    return np.where(refer, REFER_IDX, pred)


def choose_thresholds(
    probs: np.ndarray,
    y_true: np.ndarray,
    min_refer_sensitivity: float = 0.95,
    max_unsafe_miss: float = 0.02,
) -> tuple[Thresholds, dict]:
    """Pick the operating point on validation data.

    Searches a grid of (refer, abstain) thresholds and keeps the one with the
    best balanced accuracy among those meeting the refer-sensitivity and
    unsafe-miss constraints; if none does, the most sensitive one.

    Returns:
        the thresholds and the validation metrics they reach.
    """
    from triage.metrics import balanced_accuracy, refer_sensitivity, unsafe_miss_rate

    y_true = np.asarray(y_true)
    best = None
    fallback = None
    for refer in np.round(np.arange(0.02, 0.61, 0.01), 2):
        for abstain in np.round(np.arange(0.0, 0.71, 0.05), 2):
            t = Thresholds(float(refer), float(abstain))
            pred = decide(probs, t)
            sens = refer_sensitivity(y_true, pred)
            miss = unsafe_miss_rate(y_true, pred)
            bacc = balanced_accuracy(y_true, pred)
            row = {"refer_sensitivity": sens, "unsafe_miss_rate": miss, "balanced_accuracy": bacc}
            if sens >= min_refer_sensitivity and miss <= max_unsafe_miss:
                if best is None or bacc > best[1]["balanced_accuracy"]:
                    best = (t, row)
            if fallback is None or (sens, bacc) > (
                fallback[1]["refer_sensitivity"],
                fallback[1]["balanced_accuracy"],
            ):
                fallback = (t, row)
    return best if best is not None else fallback
