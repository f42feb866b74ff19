"""How the crops judged around a tapped spot become one answer. Pure functions.

Two rules were measured (``bench/tap_rule.py``): averaging the crops' calibrated probabilities and then
applying the decision policy once (``"mean"``), or applying the policy to each crop and keeping the most
cautious outcome (``"cautious"``). :data:`TAP_RULE` is the one shipped; docs/APP.md gives the numbers.
"""

from __future__ import annotations

import numpy as np

from triage.core.outcomes import ANSWER_CAUTION, OUTCOMES
from triage.core.policy import Thresholds, decide

MEAN = "mean"
CAUTIOUS = "cautious"
RULES = (MEAN, CAUTIOUS)

#: The shipped rule (see the module docstring and docs/APP.md for the measurement).
TAP_RULE = MEAN


def combine_crop_probabilities(
    probs: np.ndarray, thresholds: Thresholds, rule: str = TAP_RULE
) -> tuple[int, np.ndarray]:
    """One outcome for the ``(K, 4)`` calibrated probabilities of K crops of one spot.

    Args:
        probs: one row per crop, in :data:`triage.core.outcomes.OUTCOMES` order.
        thresholds: the safety operating point applied to each decision.
        rule: ``"mean"`` (policy on the mean row) or ``"cautious"`` (policy per crop, most cautious wins).

    Returns:
        ``(outcome index, probabilities that explain it)``: the mean row, or the row of the crop that gave
        the most cautious answer. The policy applied to that row gives that outcome again.

    Raises:
        ValueError: no crops, or an unknown rule.
    """
    probs = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    if probs.shape[0] == 0:
        raise ValueError("no crops to combine")
    if rule == MEAN:
        mean = probs.mean(0)
        return int(decide(mean[None], thresholds)[0]), mean
    if rule == CAUTIOUS:
        per_crop = decide(probs, thresholds)
        # max() keeps the first of equally cautious crops: the smallest, the one closest to the spot.
        row = max(range(len(per_crop)), key=lambda k: ANSWER_CAUTION[OUTCOMES[int(per_crop[k])]])
        return int(per_crop[row]), probs[row]
    raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")


__all__ = ["MEAN", "CAUTIOUS", "RULES", "TAP_RULE", "combine_crop_probabilities"]
