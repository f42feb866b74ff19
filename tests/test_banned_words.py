"""Never a diagnosis: no user-facing text may use the banned words.

Scanned: the content files, the app's and engine's strings, every rendered answer (client and therapist cards,
combined answers, the probability panel, the printable summary), and every tab of the built app as it renders
(Markdown, HTML, labels, buttons and choices), the About tab with the shipped model's numbers included.
"""

from __future__ import annotations

import itertools
import re

import pytest
from conftest import REPO

from triage.app import layout as app
from triage.app import therapist_view, wording
from triage.app.about import about_markdown
from triage.app.content_loader import all_pages
from triage.core.outcomes import CANT_ASSESS, OUTCOMES
from triage.core.policy import Thresholds
from triage.core.quality import MESSAGES as QUALITY_MESSAGES
from triage.inference import engine
from triage.inference.decode import _MESSAGES as DECODE_MESSAGES
from triage.inference.engine import TriageResult

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
    texts = (app.HEADLINES, app.NEXT_STEP, app.THERAPIST_NEXT_STEP, wording.OUTCOME_WORDS, wording.GROUP_WORDS)
    for d in (*texts, DECODE_MESSAGES, QUALITY_MESSAGES):
        for k, v in d.items():
            _check(v, k)
    labels = [app.HEATMAP_LABEL, app.DETAILS_LABEL, app.RESEMBLANCE_NOTE, therapist_view.NO_PROBABILITIES]
    messages = [engine.OOD_MESSAGE, engine.UNSURE_MESSAGE, engine.REFER_MESSAGE, engine.CROP_TOO_SMALL_MESSAGE]
    messages += [engine.TAP_NOT_SKIN_MESSAGE, engine.TAP_LOW_RES_MESSAGE]
    for s in app.CHECKLIST + labels + messages + therapist_view.panel_help(Thresholds(0.08, 0.6, 0.14)):
        _check(s, s[:30])


@pytest.mark.parametrize("outcome", [*OUTCOMES, CANT_ASSESS])
def test_rendered_results(outcome) -> None:
    probs = None if outcome == CANT_ASSESS else dict.fromkeys(OUTCOMES, 0.25)
    result = TriageResult(outcome=outcome, probabilities=probs, reasons=["A reason."], model_version="test")
    card = app.outcome_card(result)
    _check(card, f"card {outcome}")
    assert "see a doctor" in card.lower(), "every result carries the disclaimer"
    _check(app.outcome_card(result, for_therapist=True), f"therapist card {outcome}")
    _check(therapist_view.probability_panel(result, Thresholds(0.08, 0.6, 0.14), 24.0), f"panel {outcome}")
    _check(app.education_for(outcome), f"education {outcome}")
    _check(app.summary_html(result, app.CHECKLIST[:2], "note"), f"summary {outcome}")


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations([*OUTCOMES, CANT_ASSESS], 2)))
def test_rendered_combined_answers(first, second) -> None:
    answers = [
        app.PhotoAnswer(k + 1, TriageResult(outcome=o, probabilities=None, reasons=["A reason."], model_version="t"))
        for k, o in enumerate((first, second))
    ]
    combined, _ = app.lead_answer(answers)
    _check(app.outcome_card(combined, app.photo_answers_html(answers)), f"combined card {first} + {second}")


def rendered_texts(blocks) -> list[tuple[str, str]]:
    """``(where, text)`` for every piece of text a built app renders: values, labels and choices."""
    found = []
    for block in blocks.blocks.values():
        where = f"{type(block).__name__} {getattr(block, 'label', None) or ''}".strip()
        for text in (getattr(block, "label", None), getattr(block, "value", None)):
            if isinstance(text, str) and text:
                found.append((where, text))
        found += [(where, str(choice[0])) for choice in getattr(block, "choices", None) or []]
    return found


def test_every_tab_of_the_built_app(tiny_model) -> None:
    from triage.inference.engine import Triage

    texts = rendered_texts(app.build_app(Triage.load(tiny_model, threads=None)))
    rendered = "\n".join(text for _, text in texts)
    # Every tab is in the scan: the Learn pages and the About page as they render.
    assert "Your privacy" in rendered and "About this tool" in rendered and "Who should wait" in rendered
    for where, text in texts:
        _check(text, where)


def test_about_with_the_shipped_model() -> None:
    from triage.inference.engine import DEFAULT_MODEL, Triage

    if not DEFAULT_MODEL.is_file():
        pytest.skip("no shipped model in this checkout")
    about = about_markdown(Triage.load(threads=None).meta)
    _check(about, "About (shipped model)")
    assert "in every 100" in about, "the About page gives the shipped model's test numbers"
    assert "models/MODEL_CARD.md" in about and (REPO / "models" / "MODEL_CARD.md").is_file()
