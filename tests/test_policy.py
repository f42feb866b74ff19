"""The decision policy (policy.decide / choose_thresholds / softmax) and the engine's per-photo decision."""

from __future__ import annotations

import numpy as np
import pytest

from triage.core import metrics as M
from triage.core.outcomes import CANT_ASSESS, MILIA, OTHER, OUTCOMES, PUSTULE, REFER
from triage.core.policy import REFER_IDX, Thresholds, choose_thresholds, decide, softmax
from triage.inference.engine import TriageResult, combine_results, decide_outcome

I_MILIA, I_PUSTULE, I_OTHER = OUTCOMES.index(MILIA), OUTCOMES.index(PUSTULE), OUTCOMES.index(OTHER)


def _p(milia: float, pustule: float, other: float, refer: float) -> np.ndarray:
    return np.array([milia, pustule, other, refer])


# -- policy.decide -------------------------------------------------------------------------------


def test_refer_probability_exactly_at_threshold_refers():
    assert decide(_p(0.5, 0.1, 0.1, 0.3), Thresholds(refer=0.3))[0] == REFER_IDX


def test_refer_probability_just_below_threshold_takes_argmax():
    assert decide(_p(0.5001, 0.1, 0.1, 0.2999), Thresholds(refer=0.3))[0] == I_MILIA


def test_top_probability_below_abstain_refers():
    probs = _p(0.35, 0.30, 0.25, 0.10)
    assert decide(probs, Thresholds(refer=0.5, abstain=0.4))[0] == REFER_IDX
    assert decide(probs, Thresholds(refer=0.5, abstain=0.35))[0] == I_MILIA  # 0.35 is not below 0.35


def test_abstain_zero_never_abstains():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=500)
    probs = np.vstack([probs, np.full((1, 4), 0.25)])  # even a flat answer is not "unsure" at 0
    t = Thresholds(refer=1.01, abstain=0.0)  # refer threshold out of reach too: pure argmax
    assert (decide(probs, t) == probs.argmax(1)).all()


def test_decide_handles_one_row_and_many():
    one = decide(_p(0.1, 0.7, 0.1, 0.1), Thresholds())
    assert one.shape == (1,) and one[0] == I_PUSTULE
    many = decide(np.stack([_p(0.1, 0.7, 0.1, 0.1), _p(0.1, 0.1, 0.1, 0.7)]), Thresholds())
    assert many.tolist() == [I_PUSTULE, REFER_IDX]


def test_choose_thresholds_reaches_refer_sensitivity_on_its_data():
    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 4, n)
    logits = 1.5 * np.eye(4)[y] + rng.normal(0, 1.0, (n, 4))
    probs = softmax(logits)
    assert M.refer_sensitivity(y, probs.argmax(1)) < 0.95  # argmax alone would not be safe enough
    t, point = choose_thresholds(probs, y, min_refer_sensitivity=0.95)
    pred = decide(probs, t)
    assert M.refer_sensitivity(y, pred) >= 0.95
    assert M.unsafe_miss_rate(y, pred) <= 0.02
    assert point["refer_sensitivity"] == pytest.approx(M.refer_sensitivity(y, pred))
    assert point["balanced_accuracy"] == pytest.approx(M.balanced_accuracy(y, pred))
    assert 0.02 <= t.refer <= 0.6 and 0.0 <= t.abstain <= 0.7
    # Not the trivial answer "always refer": it keeps some of the other outcomes.
    assert point["balanced_accuracy"] > 0.25


def test_refer_other_applies_only_when_other_is_the_likeliest_non_refer_outcome():
    t = Thresholds(refer=0.2, abstain=0.0, refer_other=0.5)
    # "other" on top among the three: its own, higher threshold.
    assert decide(_p(0.1, 0.1, 0.5, 0.3), t)[0] == I_OTHER
    assert decide(_p(0.1, 0.1, 0.4, 0.5), t)[0] == REFER_IDX  # exactly at refer_other refers
    # milia-like or pustule on top: the strict threshold, whatever refer_other says.
    assert decide(_p(0.5, 0.1, 0.1, 0.3), t)[0] == REFER_IDX
    assert decide(_p(0.1, 0.55, 0.1, 0.25), t)[0] == REFER_IDX
    assert decide(_p(0.1, 0.71, 0.0, 0.19), t)[0] == I_PUSTULE
    # refer_other can never be looser than refer, and None means one threshold for all.
    assert decide(_p(0.1, 0.1, 0.5, 0.3), Thresholds(refer=0.3, refer_other=0.1))[0] == REFER_IDX
    assert Thresholds(refer=0.3).refer_for(np.stack([_p(0.1, 0.1, 0.5, 0.3)] * 2)).tolist() == [0.3, 0.3]


def test_choose_thresholds_with_separate_other_threshold_is_no_worse_and_still_safe():
    rng = np.random.default_rng(1)
    n = 800
    y = rng.integers(0, 4, n)
    probs = softmax(1.5 * np.eye(4)[y] + rng.normal(0, 1.0, (n, 4)))
    one, one_point = choose_thresholds(probs, y, separate_other=False)
    two, two_point = choose_thresholds(probs, y)
    assert one.refer_other is None
    assert two_point["balanced_accuracy"] >= one_point["balanced_accuracy"]
    pred = decide(probs, two)
    assert M.refer_sensitivity(y, pred) >= 0.95 and M.unsafe_miss_rate(y, pred) <= 0.02
    assert two_point["unsafe_miss_rate"] == pytest.approx(M.unsafe_miss_rate(y, pred))


def test_softmax_with_temperature():
    p = softmax(np.array([0.0, np.log(2.0)]))
    assert p == pytest.approx([1 / 3, 2 / 3])
    p2 = softmax(np.array([0.0, np.log(2.0)]), temperature=2.0)
    assert p2 == pytest.approx([1 / (1 + np.sqrt(2)), np.sqrt(2) / (1 + np.sqrt(2))])
    # Higher temperature flattens, lower sharpens; rows always sum to one; huge logits do not overflow.
    logits = np.array([[1.0, 2.0, 3.0, 4.0], [1000.0, 0.0, -1000.0, 5.0]])
    hot, cold = softmax(logits, 10.0), softmax(logits, 0.1)
    assert np.isfinite(hot).all() and np.isfinite(cold).all()
    assert hot.sum(1) == pytest.approx([1.0, 1.0]) and cold.sum(1) == pytest.approx([1.0, 1.0])
    assert hot[0].max() < softmax(logits)[0].max() < cold[0].max()
    assert softmax(logits, 1e6)[0] == pytest.approx([0.25] * 4, abs=1e-5)


# -- engine.decide_outcome -------------------------------------------------------------------------

T = Thresholds(refer=0.4, abstain=0.3)


def test_quality_reasons_decline_with_those_codes():
    outcome, codes = decide_outcome(None, ["too_blurry", "too_dark"], None, T, 5.0)
    assert outcome == CANT_ASSESS
    assert codes == ["too_blurry", "too_dark"]
    # Quality wins even when the model had an answer and the OOD score is far out.
    outcome, codes = decide_outcome(_p(0.9, 0.05, 0.03, 0.02), ["too_small"], 99.0, T, 5.0)
    assert (outcome, codes) == (CANT_ASSESS, ["too_small"])


def test_ood_above_threshold_declines():
    outcome, codes = decide_outcome(_p(0.9, 0.05, 0.03, 0.02), [], 5.01, T, 5.0)
    assert (outcome, codes) == (CANT_ASSESS, ["not_like_skin"])
    # At the threshold is still accepted (strictly above declines).
    assert decide_outcome(_p(0.9, 0.05, 0.03, 0.02), [], 5.0, T, 5.0)[0] == MILIA


def test_ood_ignored_without_threshold_or_score():
    assert decide_outcome(_p(0.9, 0.05, 0.03, 0.02), [], 1e9, T, None) == (MILIA, [])
    assert decide_outcome(_p(0.9, 0.05, 0.03, 0.02), [], None, T, 5.0) == (MILIA, [])


def test_normal_photo_gets_top_class():
    assert decide_outcome(_p(0.05, 0.8, 0.1, 0.05), [], 1.0, T, 5.0) == (PUSTULE, [])
    assert decide_outcome(_p(0.05, 0.1, 0.8, 0.05), [], 1.0, T, 5.0) == (OTHER, [])
    # refer-to-doctor as the plain top class needs no explanation code.
    assert decide_outcome(_p(0.05, 0.1, 0.05, 0.8), [], 1.0, T, 5.0) == (REFER, [])


def test_refer_via_threshold_and_via_unsure():
    # refer prob 0.4 reaches the operating point although milia-like is on top.
    assert decide_outcome(_p(0.5, 0.05, 0.05, 0.4), [], 1.0, T, 5.0) == (REFER, ["refer_threshold"])
    # top probability 0.28 < abstain 0.3: unsure.
    assert decide_outcome(_p(0.28, 0.26, 0.26, 0.20), [], 1.0, T, 5.0) == (REFER, ["unsure"])
    # With a separate "other" threshold, the code reflects the threshold that applied.
    t2 = Thresholds(refer=0.4, abstain=0.0, refer_other=0.6)
    assert decide_outcome(_p(0.05, 0.05, 0.45, 0.45), [], 1.0, t2, 5.0) == (OTHER, [])
    assert decide_outcome(_p(0.05, 0.05, 0.3, 0.6), [], 1.0, t2, 5.0) == (REFER, [])
    # refer on top but below abstain: still explained as unsure.
    t = Thresholds(refer=0.9, abstain=0.5)
    assert decide_outcome(_p(0.2, 0.2, 0.2, 0.4), [], 1.0, t, 5.0) == (REFER, ["unsure"])


# -- engine.combine_results ------------------------------------------------------------------------


def _res(outcome: str, file: str | None, reasons: list[str] | None = None) -> TriageResult:
    probs = None if outcome == CANT_ASSESS else dict.fromkeys(OUTCOMES, 0.25)
    return TriageResult(
        outcome=outcome,
        probabilities=probs,
        reasons=list(reasons or []),
        file=file,
        reason_codes=[f"code-{outcome}"],
        timings_ms={"total": 10.0},
    )


#: The answer order, most cautious first: a referral leads whatever else was found (see triage.core.outcomes).
ANSWER_ORDER = [REFER, OTHER, CANT_ASSESS, PUSTULE, MILIA]


@pytest.mark.parametrize("first", ANSWER_ORDER)
@pytest.mark.parametrize("second", ANSWER_ORDER)
def test_combine_every_pair_the_more_cautious_leads(first, second):
    combined = combine_results([_res(first, "a.jpg"), _res(second, "b.jpg")])
    expected = min(first, second, key=ANSWER_ORDER.index)
    assert combined.outcome == expected
    lead = "a.jpg" if first == expected else "b.jpg"
    assert combined.reasons[0].startswith(f"{lead} led this answer")
    assert combined.reason_codes == [f"code-{expected}"]
    declined = [f for f, o in (("a.jpg", first), ("b.jpg", second)) if o == CANT_ASSESS and f != lead]
    said_declined = [r for r in combined.reasons if "could not be assessed" in r]
    assert said_declined == [f"{d} could not be assessed: please retake it." for d in declined]


def test_a_referral_is_never_hidden_behind_photos_that_could_not_be_assessed():
    results = [_res(CANT_ASSESS, None), _res(REFER, None, ["Doctor reason."]), _res(CANT_ASSESS, None)]
    combined = combine_results(results)
    assert combined.outcome == REFER
    assert combined.reasons == [
        "Photo 2 led this answer: the most careful of the 3 photos checked.",
        "Photo 1 and Photo 3 could not be assessed: please retake them.",
        "Doctor reason.",
    ]
    assert combined.timings_ms["total"] == pytest.approx(30.0)
    assert not any(code in " ".join(combined.reasons) for code in (*OUTCOMES, CANT_ASSESS))


def test_combine_keeps_the_first_of_equally_cautious_photos():
    combined = combine_results([_res(OTHER, "x.jpg"), _res(OTHER, "y.jpg")])
    assert combined.outcome == OTHER and combined.reasons[0].startswith("x.jpg led")


def test_one_photo_combined_is_its_own_answer():
    combined = combine_results([_res(PUSTULE, "x.jpg", ["Own reason."])])
    assert combined.outcome == PUSTULE and combined.reasons == ["Own reason."]


def test_unknown_outcome_cannot_be_combined():
    with pytest.raises(ValueError, match="unknown outcome"):
        combine_results([_res(OTHER, "x.jpg"), TriageResult(outcome="fine", probabilities=None)])


def test_combine_names_photo_by_position_without_file_and_keeps_driver_reasons():
    results = [_res(OTHER, None), _res(REFER, None, ["The photo's features were mixed."])]
    combined = combine_results(results)
    assert combined.outcome == REFER
    assert combined.reasons[0].startswith("Photo 2 led")
    assert combined.reasons[1:] == ["The photo's features were mixed."]
    assert combined.probabilities == results[1].probabilities
    assert "file" not in combined.to_dict()
    with pytest.raises(ValueError):
        combine_results([])


def test_choose_thresholds_on_two_sets_keeps_both_safe():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 800)
    photos = softmax(1.5 * np.eye(4)[y] + rng.normal(0, 1.0, (800, 4)))
    # Close-ups the model is less sure about: refer-to-doctor less separable, so the photos' point alone
    # would not be safe on them.
    yc = rng.integers(0, 4, 800)
    closeups = softmax(0.8 * np.eye(4)[yc] + rng.normal(0, 1.0, (800, 4)))
    alone, _ = choose_thresholds(photos, y)
    assert M.refer_sensitivity(yc, decide(closeups, alone)) < 0.95
    both, point = choose_thresholds(photos, y, also={"closeup": (closeups, yc)})
    for p, t in ((photos, y), (closeups, yc)):
        pred = decide(p, both)
        assert M.refer_sensitivity(t, pred) >= 0.95 and M.unsafe_miss_rate(t, pred) <= 0.02
    assert point["closeup_refer_sensitivity"] == pytest.approx(M.refer_sensitivity(yc, decide(closeups, both)))
    assert point["refer_sensitivity"] == pytest.approx(M.refer_sensitivity(y, decide(photos, both)))
