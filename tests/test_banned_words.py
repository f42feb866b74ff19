"""Never a diagnosis: no user-facing text may use the banned words."""

from __future__ import annotations

import re

import pytest

from triage import app, engine
from triage.content_loader import all_pages
from triage.decode import _MESSAGES as DECODE_MESSAGES
from triage.engine import TriageResult
from triage.outcomes import CANT_ASSESS, OUTCOMES
from triage.quality import MESSAGES as QUALITY_MESSAGES

BANNED = re.compile(
    "|".join(
        [
            r"diagnos|benign|malignan|cancer-free|harmless|\bsafe|rule out|nothing to worry",
            # Reassurance a photo cannot give, and which would soften a request to see a doctor.
            r"precaution only|(just|only|purely) a precaution|nothing (has been|was|is) found|nothing serious",
            r"no need to worry|(don't|do not) worry|not (cancer|serious)|perfectly normal|completely normal",
            # Promises about a treatment's result or comfort.
            r"\b(is|are|will be|it's|they're) gone\b|gone for good|(won't|will not|never) come back",
            r"(do not|don't|won't|will not) need (a )?numbing|no (numbing|anaesthetic) is needed|painless",
            r"(won't|will not|doesn't|does not) hurt|guarantee",
            # "Pimple" for a class that also holds folliculitis.
            r"(common|just a) pimple",
        ]
    ),
    re.IGNORECASE,
)


def _check(text: str, where: str) -> None:
    found = [m.group(0) for m in BANNED.finditer(text)]
    assert not found, f"banned word(s) {found} in {where}"


@pytest.mark.parametrize(
    "text",
    [
        "This looks benign, nothing to worry about.",
        "This is a precaution only. It does not mean something has been found.",
        "It does not mean that nothing was found, just a precaution.",
        "Once a milium is removed, that one is gone.",
        "You do not need a numbing injection.",
        "A pustule is a common pimple.",
    ],
)
def test_the_scanner_catches_banned_words(text) -> None:
    with pytest.raises(AssertionError):
        _check(text, "example")


def test_the_scanner_lets_plain_words_through() -> None:
    _check("Wait until the redness and peeling have gone, then see a doctor if it is painful.", "example")


@pytest.mark.parametrize("path", all_pages(), ids=lambda p: p.name)
def test_content_files(path) -> None:
    _check(path.read_text(encoding="utf-8"), path.name)


def test_app_and_engine_strings() -> None:
    for d in (app.HEADLINES, app.NEXT_STEP, DECODE_MESSAGES, QUALITY_MESSAGES):
        for k, v in d.items():
            _check(v, k)
    labels = [app.HEATMAP_LABEL, app.DETAILS_LABEL]
    for s in app.CHECKLIST + labels + [engine.OOD_MESSAGE, engine.UNSURE_MESSAGE, engine.REFER_MESSAGE]:
        _check(s, s[:30])


@pytest.mark.parametrize("outcome", [*OUTCOMES, CANT_ASSESS])
def test_rendered_results(outcome) -> None:
    probs = None if outcome == CANT_ASSESS else dict.fromkeys(OUTCOMES, 0.25)
    result = TriageResult(outcome=outcome, probabilities=probs, reasons=["A reason."], model_version="test")
    card = app.outcome_card(result)
    _check(card, f"card {outcome}")
    assert "see a doctor" in card.lower(), "every result carries the disclaimer"
    _check(app.education_for(outcome), f"education {outcome}")
    _check(app.summary_html(result, app.CHECKLIST[:2], "note"), f"summary {outcome}")
