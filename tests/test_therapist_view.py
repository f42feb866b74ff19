"""The therapist tab's probability panel leads with nothing but bars, and says why when the decision is not
the most probable group; the heatmap and the summary are carried inline.

Results are built with the real decision function (``decide_outcome``) at the shipped model's kind of
operating point, so the reasons the panel gives are the ones the engine used.
"""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from triage.app.therapist_view import (
    PANEL_TITLE,
    decision_note,
    heatmap_html,
    panel_help,
    probability_panel,
    summary_link_html,
)
from triage.core.outcomes import CANT_ASSESS, OUTCOMES
from triage.core.policy import Thresholds
from triage.inference.engine import TriageResult, decide_outcome

THRESHOLDS = Thresholds(refer=0.12, abstain=0.65, refer_other=0.18)
OOD_LIMIT = 30.0


def _result(probs: list[float], ood_score: float | None = None) -> TriageResult:
    p = np.array(probs)
    outcome, codes = decide_outcome(p, [], ood_score, THRESHOLDS, OOD_LIMIT)
    return TriageResult(
        outcome=outcome,
        probabilities={o: float(v) for o, v in zip(OUTCOMES, p, strict=True)},
        reason_codes=codes,
        ood_score=ood_score,
    )


def _data_url(html: str) -> bytes:
    return base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)", html).group(1))


def test_no_note_when_the_decision_is_the_most_probable_group():
    result = _result([0.80, 0.10, 0.05, 0.05])
    assert result.outcome == "milia-like"
    assert decision_note(result, THRESHOLDS, OOD_LIMIT) is None
    assert "prob-note" not in probability_panel(result, THRESHOLDS, OOD_LIMIT)


def test_refer_above_its_threshold_is_explained_with_the_threshold():
    result = _result([0.70, 0.05, 0.10, 0.15])  # milia-like most probable, refer-to-doctor at 0.15 >= 0.12
    assert result.outcome == "refer-to-doctor" and result.reason_codes == ["refer_threshold"]
    note = decision_note(result, THRESHOLDS, OOD_LIMIT)
    assert note == "refer-to-doctor: its probability, 0.15, is at or above the referral threshold of 0.12."


def test_the_threshold_quoted_is_the_one_that_applied():
    result = _result([0.02, 0.02, 0.76, 0.20])  # "other" most probable: the higher refer threshold applies
    assert result.outcome == "refer-to-doctor"
    assert "referral threshold of 0.18" in decision_note(result, THRESHOLDS, OOD_LIMIT)


def test_an_unsure_model_is_explained_with_the_abstain_limit():
    result = _result([0.50, 0.42, 0.03, 0.05])  # refer-to-doctor below 0.12, top below 0.65
    assert result.outcome == "refer-to-doctor" and result.reason_codes == ["unsure"]
    note = decision_note(result, THRESHOLDS, OOD_LIMIT)
    assert note == (
        "refer-to-doctor: the highest probability, 0.50 (milia-like), is below 0.65, too unsure to name one group."
    )


def test_out_of_distribution_is_explained_with_its_score():
    result = _result([0.90, 0.04, 0.03, 0.03], ood_score=42.5)
    assert result.outcome == CANT_ASSESS
    assert "out-of-distribution score 42.5, limit 30.0" in decision_note(result, THRESHOLDS, OOD_LIMIT)


@pytest.mark.parametrize("probs", [[0.70, 0.05, 0.10, 0.15], [0.80, 0.10, 0.05, 0.05]])
def test_panel_is_bars_only_in_a_fixed_order_with_the_decision_marked(probs):
    result = _result(probs)
    html = probability_panel(result, THRESHOLDS, OOD_LIMIT)
    # Nothing before the bars but the title: no class name as a headline.
    assert re.match(r"<div class='prob-panel'[^>]*><p class='prob-title'>([^<]*)</p><div class='prob-row'", html)
    assert PANEL_TITLE.startswith("How closely the photo resembles") and PANEL_TITLE in html
    assert re.findall(r"data-outcome='([^']+)'", html) == list(OUTCOMES)
    marked = re.findall(r"data-outcome='([^']+)'><span class='prob-name'>[^<]*<span class='prob-decision'>", html)
    assert marked == [result.outcome]
    for outcome in OUTCOMES:
        assert f"width:{100 * result.probabilities[outcome]:.1f}%" in html


@pytest.mark.parametrize("probs", [[0.70, 0.05, 0.10, 0.15], [0.80, 0.10, 0.05, 0.05]])
def test_panel_explains_its_two_terms_in_one_sentence_each(probs):
    html = probability_panel(_result(probs), THRESHOLDS, OOD_LIMIT)
    helps = re.findall(r"<p class='prob-help'>([^<]*)</p>", html)
    assert [h.split(":")[0] for h in helps] == ["Calibrated probabilities", "Referral threshold"]
    for sentence in helps:
        assert sentence.count(". ") == 0 and sentence.endswith("."), f"not one sentence: {sentence}"
    # The thresholds quoted are the ones in use, both of them.
    assert "0.12" in helps[1] and "0.18" in helps[1]
    assert "0.18" not in panel_help(Thresholds(refer=0.12, abstain=0.65))[1]


def test_panel_without_probabilities_says_the_model_did_not_run():
    result = TriageResult(outcome=CANT_ASSESS, probabilities=None, reason_codes=["too_dark"])
    html = probability_panel(result, THRESHOLDS, OOD_LIMIT)
    assert "prob-row" not in html and "the model did not run" in html


def test_heatmap_is_an_inline_jpeg_without_metadata():
    html = heatmap_html(Image.new("RGB", (320, 320), (200, 120, 100)))
    image = Image.open(io.BytesIO(_data_url(html)))
    assert image.format == "JPEG" and image.size == (320, 320)
    assert len(image.getexif()) == 0 and "exif" not in image.info


def test_summary_link_carries_the_whole_document():
    document = "<!doctype html><p>Ticked: Dermatitis or eczema in the area — “quotes” & ünïcode</p>"
    html = summary_link_html(document)
    assert "download='consultation-summary.html'" in html
    assert _data_url(html).decode("utf-8") == document
