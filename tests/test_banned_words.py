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
    r"diagnos|benign|malignan|cancer-free|harmless|\bsafe|rule out|nothing to worry",
    re.IGNORECASE,
)


def _check(text: str, where: str) -> None:
    found = BANNED.findall(text)
    assert not found, f"banned word(s) {found} in {where}"


def test_the_scanner_catches_banned_words() -> None:
    with pytest.raises(AssertionError):
        _check("This looks benign, nothing to worry about.", "example")


@pytest.mark.parametrize("path", all_pages(), ids=lambda p: p.name)
def test_content_files(path) -> None:
    _check(path.read_text(encoding="utf-8"), path.name)


def test_app_and_engine_strings() -> None:
    for d in (app.HEADLINES, app.NEXT_STEP, DECODE_MESSAGES, QUALITY_MESSAGES):
        for k, v in d.items():
            _check(v, k)
    for s in app.CHECKLIST + [engine.OOD_MESSAGE, engine.UNSURE_MESSAGE, engine.REFER_MESSAGE]:
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
