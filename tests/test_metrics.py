"""Evaluation metrics against hand-computed values on tiny, hand-made examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from triage.core import metrics as M
from triage.core.outcomes import MILIA, OTHER, OUTCOMES, PUSTULE, REFER

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


# -- the ranking of p(refer-to-doctor) ---------------------------------------------------------------------------

R = OUTCOMES.index(REFER)


def test_refer_auc_perfect_reversed_and_all_tied():
    y = np.array([R, R, 0, 1, 2])
    assert M.refer_auc(np.array([0.9, 0.8, 0.1, 0.2, 0.3]), y) == 1.0
    assert M.refer_auc(np.array([0.1, 0.2, 0.9, 0.8, 0.7]), y) == 0.0
    assert M.refer_auc(np.full(5, 0.4), y) == 0.5  # every pair tied: each counts half


def test_refer_auc_counts_ties_half_by_hand():
    # Refer 0.8 and 0.5 against benign 0.5 and 0.2: pairs 1 + 1 + 0.5 (the tie) + 1 = 3.5 of 4.
    y = np.array([R, R, 0, 2])
    assert M.refer_auc(np.array([0.8, 0.5, 0.5, 0.2]), y) == pytest.approx(3.5 / 4)
    # Refer 0.6 against benign 0.7, 0.6, 0.6, 0.1: 0 + 0.5 + 0.5 + 1 = 2 of 4.
    assert M.refer_auc(np.array([0.6, 0.7, 0.6, 0.6, 0.1]), np.array([R, 1, 0, 2, 2])) == pytest.approx(0.5)


def test_refer_auc_takes_the_refer_column_of_full_probabilities_and_restricts_negatives():
    probs = np.array(
        [
            [0.1, 0.1, 0.1, 0.7],  # refer
            [0.1, 0.2, 0.2, 0.5],  # refer
            [0.2, 0.2, 0.0, 0.6],  # milia-like: above one refer photo
            [0.1, 0.7, 0.1, 0.1],  # pustule: below both
        ]
    )
    y = np.array([R, R, 0, 1])
    assert M.refer_auc(probs, y) == M.refer_auc(probs[:, R], y) == pytest.approx(3 / 4)
    assert M.refer_auc(probs, y, [0]) == pytest.approx(1 / 2)  # milia-like against refer
    assert M.refer_auc(probs, y, [1]) == 1.0  # pustule against refer
    assert math.isnan(M.refer_auc(probs, y, [2]))  # no "other" photo


def test_refer_auc_undefined_without_one_of_the_classes():
    assert math.isnan(M.refer_auc(np.array([0.3, 0.9]), np.array([0, 2])))  # no refer photo
    assert math.isnan(M.refer_auc(np.array([0.3, 0.9]), np.array([R, R])))  # no benign photo
    assert math.isnan(M.refer_auc(np.zeros(0), np.zeros(0, dtype=int)))


def test_threshold_is_the_largest_that_reaches_the_sensitivity():
    p = np.arange(1, 21) / 20  # 20 refer photos at 0.05 ... 1.0
    y = np.full(20, R)
    # 19 of 20 = 0.95: the 19th largest, 0.10 (0.95 x 20 is 19, not 19.000000000000004 -> 20).
    assert M.refer_threshold_at_sensitivity(p, y, 0.95) == pytest.approx(0.10)
    assert M.refer_threshold_at_sensitivity(p, y, 0.951) == pytest.approx(0.05)  # needs all 20
    assert M.refer_threshold_at_sensitivity(p, y, 1.0) == pytest.approx(0.05)
    assert M.refer_threshold_at_sensitivity(p, y, 0.5) == pytest.approx(0.55)
    assert math.isnan(M.refer_threshold_at_sensitivity(p, np.zeros(20, dtype=int)))


def _hand_set() -> tuple[np.ndarray, np.ndarray]:
    """20 refer photos at p(refer) 0.05 ... 1.0 (threshold at 0.95: 0.10), then five benign photos."""
    refer = np.zeros((20, 4))
    refer[:, R] = np.arange(1, 21) / 20
    refer[:, 0] = 1 - refer[:, R]
    benign = np.array(
        [
            [0.80, 0.05, 0.05, 0.10],  # milia-like at the threshold: referred (ties refer), not useful
            [0.90, 0.02, 0.03, 0.05],  # milia-like, kept and right: useful
            [0.60, 0.30, 0.05, 0.05],  # pustule, kept but answered milia-like: not useful
            [0.10, 0.10, 0.75, 0.05],  # other, kept and right: useful
            [0.05, 0.70, 0.20, 0.05],  # pustule, kept and right: useful
        ]
    )
    return np.vstack([refer, benign]), np.array([R] * 20 + [0, 0, 1, 2, 1])


def test_useful_at_95_by_hand():
    probs, y = _hand_set()
    pred = M.decisions_at_sensitivity(probs, y)
    assert pred[20:].tolist() == [R, 0, 0, 2, 1]
    assert M.refer_sensitivity(y, pred) == pytest.approx(19 / 20)
    assert M.useful_at_sensitivity(probs, y) == pytest.approx(3 / 5)
    # At sensitivity 1.0 the threshold drops to 0.05: every benign photo is referred.
    assert M.useful_at_sensitivity(probs, y, 1.0) == 0.0
    r = M.ranking(probs, y)
    assert r["useful_at_95"] == pytest.approx(0.6) and r["at_95"]["refer_threshold"] == pytest.approx(0.1)
    assert r["at_95"]["recall"] == {MILIA: 0.5, PUSTULE: 0.5, OTHER: 1.0, REFER: 0.95}
    assert set(r["auc_vs_refer"]) == {MILIA, PUSTULE, OTHER}
    assert M.summary(y, pred, probs)["useful_at_95"] == r["useful_at_95"]  # the summary carries the ranking


def test_useful_at_95_undefined_without_refer_or_benign_photos():
    probs, y = _hand_set()
    assert math.isnan(M.useful_at_sensitivity(probs[20:], y[20:]))
    assert math.isnan(M.useful_at_sensitivity(probs[:20], y[:20]))


def test_ranking_ci_brackets_the_point_and_is_seeded():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 400)
    probs = rng.dirichlet(np.ones(4), 400)
    probs[:, R] += 0.4 * (y == R)  # refer photos rank higher: AUC well above 0.5
    probs /= probs.sum(1, keepdims=True)
    groups = np.arange(400) // 2
    cis = M.ranking_cis(probs, y, n=200, seed=5, groups=groups)
    for key, metric in (("refer_auc", M.refer_auc), ("useful_at_95", M.useful_at_sensitivity)):
        lo, hi = cis[f"{key}_ci95"]
        assert lo < metric(probs, y) < hi and hi - lo < 0.3, key
    assert cis == M.ranking_cis(probs, y, n=200, seed=5, groups=groups)
    assert cis != M.ranking_cis(probs, y, n=200, seed=6, groups=groups)
    assert 0.5 < cis["refer_auc_ci95"][0]
    nan_lo, nan_hi = M.ranking_ci(M.refer_auc, probs[y != R], y[y != R], n=20)
    assert math.isnan(nan_lo) and math.isnan(nan_hi)


def test_selection_key_orders_by_the_criterion_then_its_tie_break():
    a = {"balanced_accuracy": 0.6, "refer_auc": 0.80, "useful_at_95": 0.30}
    b = {"balanced_accuracy": 0.5, "refer_auc": 0.85, "useful_at_95": 0.30}
    c = {"balanced_accuracy": 0.7, "refer_auc": 0.90, "useful_at_95": float("nan")}
    assert M.selection_key(b, "useful_at_95") > M.selection_key(a, "useful_at_95")  # tie broken by AUC
    assert M.selection_key(c, "useful_at_95") < M.selection_key(a, "useful_at_95")  # undefined ranks lowest
    assert M.selection_key(c, "refer_auc") > M.selection_key(b, "refer_auc")
    assert M.selection_key(a, "balanced_accuracy") > M.selection_key(b, "balanced_accuracy")
    with pytest.raises(ValueError):
        M.selection_key(a, "accuracy")


def test_validation_scores_match_the_metrics():
    probs, y = _hand_set()
    s = M.validation_scores(probs, y)
    assert s["useful_at_95"] == pytest.approx(0.6)
    assert s["refer_auc"] == M.refer_auc(probs, y)
    assert s["balanced_accuracy"] == M.balanced_accuracy(y, probs.argmax(1))


def test_evaluate_scores_only_the_yes_rows_of_a_verdict_manifest(tmp_path):
    from triage.research.evaluate import verified_mask

    plain = tmp_path / "plain.csv"
    plain.write_text("path,label\na.jpg,pustule\n")
    assert verified_mask(plain) is None
    verdicts = tmp_path / "verified.csv"
    verdicts.write_text(
        "path,label,source,group,fitzpatrick,box,verdict\n"
        'a.jpg,pustule,s,g1,-1,"0,0,9,9",yes\n'
        'a.jpg,pustule,s,g1,-1,"1,1,9,9",no\n'
        'b.jpg,other,s,g2,-1,"0,0,9,9",unsure\n'
        'c.jpg,milia-like,s,g3,-1,"0,0,9,9", Yes\n'
    )
    assert verified_mask(verdicts).tolist() == [True, False, False, True]
