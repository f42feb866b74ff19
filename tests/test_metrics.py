"""Evaluation metrics against hand-computed values on tiny, hand-made examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from triage import metrics as M
from triage.outcomes import MILIA, OTHER, OUTCOMES, PUSTULE, REFER

# Output order: 0 milia-like, 1 pustule, 2 other, 3 refer-to-doctor.
assert OUTCOMES == (MILIA, PUSTULE, OTHER, REFER)

#: 12 photos; the confusion (rows = truth, columns = decision) is written out below.
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 3]
Y_PRED = [0, 0, 1, 1, 3, 2, 0, 2, 3, 3, 0, 2]
CONFUSION = [
    [2, 1, 0, 0],
    [0, 1, 0, 1],
    [1, 0, 2, 0],
    [1, 0, 1, 2],
]
# Recall = diagonal / row sum; precision = diagonal / column sum (columns sum to 4, 2, 3, 3).
RECALL = {MILIA: 2 / 3, PUSTULE: 1 / 2, OTHER: 2 / 3, REFER: 2 / 4}
PRECISION = {MILIA: 2 / 4, PUSTULE: 1 / 2, OTHER: 2 / 3, REFER: 2 / 3}
SUPPORT = {MILIA: 3, PUSTULE: 2, OTHER: 3, REFER: 4}


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r)


def test_confusion_matches_hand_count():
    assert M.confusion(np.array(Y_TRUE), np.array(Y_PRED)).tolist() == CONFUSION


def test_summary_matches_hand_computed_values():
    s = M.summary(np.array(Y_TRUE), np.array(Y_PRED))
    approx = lambda x: pytest.approx(x, abs=1e-4)  # noqa: E731 - summary rounds to 4 decimals
    assert s["n"] == 12
    assert s["confusion"] == CONFUSION
    for name in OUTCOMES:
        c = s["per_class"][name]
        assert c["recall"] == approx(RECALL[name])
        assert c["precision"] == approx(PRECISION[name])
        assert c["f1"] == approx(_f1(PRECISION[name], RECALL[name]))
        assert c["support"] == SUPPORT[name]
    assert s["accuracy"] == approx(7 / 12)
    assert s["balanced_accuracy"] == approx((2 / 3 + 1 / 2 + 2 / 3 + 1 / 2) / 4)
    assert s["macro_f1"] == approx(np.mean([_f1(PRECISION[o], RECALL[o]) for o in OUTCOMES]))
    # 4 true refer-to-doctor photos: 2 referred, 1 sent to milia-like (unsafe), 1 to other (not unsafe).
    assert s["refer_sensitivity"] == approx(0.5)
    assert s["unsafe_miss_rate"] == approx(0.25)
    assert "ece" not in s  # only with probabilities


def test_summary_with_absent_classes():
    # No true pustule and no true refer-to-doctor; a false pustule decision.
    y_true = np.array([0, 0, 2, 2])
    y_pred = np.array([0, 1, 2, 2])
    s = M.summary(y_true, y_pred)
    assert math.isnan(s["per_class"][PUSTULE]["recall"])
    assert s["per_class"][PUSTULE]["precision"] == 0.0
    assert s["per_class"][PUSTULE]["support"] == 0
    assert math.isnan(s["per_class"][REFER]["precision"])
    # Mean recall over the classes present only: (1/2 + 1) / 2.
    assert s["balanced_accuracy"] == pytest.approx(0.75)
    # Macro F1 over the classes present only: milia F1 = 2 * 1 * 0.5 / 1.5, other F1 = 1.
    assert s["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2, abs=1e-4)
    assert math.isnan(s["refer_sensitivity"])
    assert math.isnan(s["unsafe_miss_rate"])


def test_summary_of_nothing_does_not_crash():
    s = M.summary(np.array([], dtype=int), np.array([], dtype=int))
    assert s["n"] == 0
    assert math.isnan(s["balanced_accuracy"]) and math.isnan(s["accuracy"]) and math.isnan(s["macro_f1"])
    assert s["confusion"] == [[0] * 4 for _ in range(4)]


def _probs(top: float, top_idx: list[int]) -> np.ndarray:
    """Rows with probability ``top`` on ``top_idx[i]`` and the rest spread over the other classes."""
    p = np.full((len(top_idx), 4), (1 - top) / 3)
    p[np.arange(len(top_idx)), top_idx] = top
    return p


def test_ece_zero_when_confidence_equals_accuracy():
    # Confidence 0.9 everywhere, 9 of 10 correct.
    probs = _probs(0.9, [0] * 10)
    y = np.array([0] * 9 + [1])
    assert M.ece(probs, y) == pytest.approx(0.0, abs=1e-9)


def test_ece_half_when_certain_and_half_right():
    probs = _probs(1.0, [3] * 10)
    y = np.array([3] * 5 + [0] * 5)
    assert M.ece(probs, y) == pytest.approx(0.5)


def test_ece_weights_bins_by_size():
    # 4 photos at 0.6 all correct (gap 0.4), 4 at 0.9 with 2 correct (gap 0.4), 2 at 0.3 both wrong (gap 0.3).
    probs = np.concatenate([_probs(0.6, [0] * 4), _probs(0.9, [1] * 4), _probs(0.3, [2] * 2)])
    probs[-2:] = [[0.25, 0.2, 0.3, 0.25]] * 2
    y = np.array([0] * 4 + [1, 1, 0, 0] + [0, 0])
    assert M.ece(probs, y) == pytest.approx(0.4 * 0.4 + 0.4 * 0.4 + 0.2 * 0.3)
    assert math.isnan(M.ece(np.zeros((0, 4)), np.array([], dtype=int)))


def test_bootstrap_ci_brackets_point_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 4, 300))
    point = M.balanced_accuracy(y, pred)
    lo, hi = M.bootstrap_ci(y, pred, M.balanced_accuracy, n=300, seed=1)
    assert lo < point < hi
    assert hi - lo < 0.2
    assert (lo, hi) == M.bootstrap_ci(y, pred, M.balanced_accuracy, n=300, seed=1)  # seeded
    # Grouped resampling (copies of one photo move together) is wider or comparable, and still brackets.
    groups = np.arange(300) // 3
    glo, ghi = M.bootstrap_ci(y, pred, M.balanced_accuracy, n=300, seed=1, groups=groups)
    assert glo < point < ghi
    sens = M.refer_sensitivity(y, pred)
    slo, shi = M.bootstrap_ci(y, pred, M.refer_sensitivity, n=300, seed=2)
    assert slo <= sens <= shi


def test_bootstrap_ci_nan_when_metric_undefined():
    y = np.zeros(10, dtype=int)  # no refer-to-doctor photo: its sensitivity is undefined everywhere
    lo, hi = M.bootstrap_ci(y, y, M.refer_sensitivity, n=20)
    assert math.isnan(lo) and math.isnan(hi)


def test_benign_usefulness_counts_only_benign_photos_given_their_own_outcome():
    # Benign photos: 3 milia (2 right), 2 pustule (1 right), 3 other (2 right) -> 5 of 8.
    assert M.benign_usefulness(np.array(Y_TRUE), np.array(Y_PRED)) == pytest.approx(5 / 8)
    assert M.summary(np.array(Y_TRUE), np.array(Y_PRED))["benign_usefulness"] == pytest.approx(0.625)


def test_benign_usefulness_of_a_tool_that_refers_everyone_is_zero():
    y = np.array(Y_TRUE)
    refer_all = np.full_like(y, OUTCOMES.index(REFER))
    assert M.benign_usefulness(y, refer_all) == 0.0
    assert M.refer_sensitivity(y, refer_all) == 1.0
    assert math.isnan(M.benign_usefulness(np.array([3, 3]), np.array([3, 0])))
