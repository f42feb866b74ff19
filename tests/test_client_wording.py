"""What a client reads names no outcome code and no probability; the therapist reads a next step of their own.

Cards are rendered for every outcome and every pair of photos (through ``lead_answer``, the app's way of
combining them), the printable summary for every outcome, and the client and therapist events of the built
app run on a real photo with the tiny model.
"""

from __future__ import annotations

import html
import itertools
import re
from html.parser import HTMLParser

import pytest
from PIL import Image

from triage.app import layout as app
from triage.app.content_loader import EMERGENCY_LINE
from triage.app.wording import ALSO_SHARE, GROUP_WORDS, OUTCOME_WORDS, resemblance_lines
from triage.core.outcomes import CANT_ASSESS, OUTCOMES, REFER
from triage.core.quality import MESSAGES as QUALITY_MESSAGES
from triage.core.red_flags import RED_FLAGS
from triage.inference import engine
from triage.inference.engine import TriageResult

ANSWERS = (*OUTCOMES, CANT_ASSESS)
#: An outcome code as text: the two that are no English, any code set apart in brackets or quotes ("(other)",
#: "'pustule'"), or a one-word answer after a colon ("outcome: other"). "Milia-like" is the group's plain name
#: on every page ("Result: milia-like", "milia-like bumps"), so only brackets and quotes mark it as a code.
CODE = re.compile(
    r"refer-to-doctor|cant-assess|can't-assess"
    r"|[(\"'‘“]\s*(?:milia-like|pustule|other)\s*[)\"'’”]"
    r"|:\s*(?:pustule|other)\s*(?:$|[.;\n])",
    re.IGNORECASE | re.MULTILINE,
)
#: A number that reads like a probability or a risk: 0.42, 42%.
PROBABILITY = re.compile(r"\b0\.\d\d\b|\d\s*%")


class _Text(HTMLParser):
    """The text a reader sees: tags, attributes, styles and scripts dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = False

    def handle_starttag(self, tag, attrs) -> None:
        self._skip = tag in ("style", "script", "title")
        self.parts.append("\n")

    def handle_endtag(self, tag) -> None:
        self._skip = False
        self.parts.append("\n")

    def handle_data(self, data) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    return "".join(parser.parts)


def assert_no_code(markup: str, where: str) -> None:
    found = CODE.findall(visible_text(markup))
    assert not found, f"outcome code(s) {found} shown to the client in {where}"


def result_for(outcome: str, probs: dict[str, float] | None = None) -> TriageResult:
    """A result as the engine gives it: its reasons are the engine's own sentences for that outcome."""
    if outcome == CANT_ASSESS:
        return TriageResult(outcome, None, [QUALITY_MESSAGES["too_blurry"]], ["too_blurry"], model_version="t")
    if probs is None:
        probs = {o: (0.7 if o == outcome else 0.1) for o in OUTCOMES}
    reasons, codes = ([engine.REFER_MESSAGE], ["refer_threshold"]) if outcome == REFER else ([], [])
    return TriageResult(outcome, probs, reasons, codes, model_version="t")


# -- the test's own detectors can fail ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["Photo 2 gave the most careful answer (cant-assess).", "Triage outcome: other", "<p>refer-to-doctor</p>"],
)
def test_the_code_detector_catches_codes(text):
    with pytest.raises(AssertionError):
        assert_no_code(text, "example")


def test_the_code_detector_lets_plain_words_through():
    assert_no_code("<p data-outcome='refer-to-doctor'>Closest to milia-like bumps; also pustules.</p>", "example")


# -- client cards ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ANSWERS)
def test_a_card_names_no_outcome_code(outcome):
    card = app.outcome_card(result_for(outcome))
    assert_no_code(card, f"the {outcome} card")
    assert_no_code(app.outcome_card(result_for(outcome), for_therapist=True), f"the therapist's {outcome} card")


@pytest.mark.parametrize(("first", "second"), list(itertools.permutations(ANSWERS, 2)))
def test_a_combined_answer_names_no_outcome_code(first, second):
    image = Image.new("RGB", (64, 64), (200, 150, 130))
    answers = [app.PhotoAnswer(k + 1, result_for(o), image) for k, o in enumerate((first, second))]
    combined, _ = app.lead_answer(answers)
    assert len(combined.reasons) > len(result_for(combined.outcome).reasons), "the combination says nothing"
    assert_no_code(app.outcome_card(combined, app.photo_answers_html(answers)), f"{first} + {second}")


def test_the_unsure_referral_says_the_app_was_unsure():
    assert "app was unsure" in engine.UNSURE_MESSAGE.lower()


def test_the_milia_like_answer_sends_a_growing_or_odd_bump_to_a_doctor():
    # Not "a bump that stays": milia stay, so that sent every milium to a doctor.
    for step in (app.NEXT_STEP["milia-like"].lower(), app.THERAPIST_NEXT_STEP["milia-like"].lower()):
        assert "grows, bleeds, crusts or looks unlike the others" in step and "doctor" in step
        assert "stays" not in step


@pytest.mark.parametrize("outcome", ANSWERS)
def test_the_therapist_card_has_its_own_next_step(outcome):
    result = result_for(outcome)
    client, therapist = app.outcome_card(result), app.outcome_card(result, for_therapist=True)
    assert client != therapist
    assert app.NEXT_STEP[outcome] in client and app.NEXT_STEP[outcome] not in therapist
    assert app.THERAPIST_NEXT_STEP[outcome] in therapist
    assert "book a milia consultation" not in therapist.lower()
    assert html.escape(EMERGENCY_LINE) in therapist, "the therapist tab shows no outcome page: the card says it"


# -- the printable summary ---------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ANSWERS)
@pytest.mark.parametrize("probs", [None, [0.55, 0.05, 0.30, 0.10], [0.25, 0.25, 0.25, 0.25]])
def test_the_summary_names_no_code_and_no_probability(outcome, probs):
    as_dict = None if probs is None or outcome == CANT_ASSESS else dict(zip(OUTCOMES, probs, strict=True))
    summary = app.summary_html(result_for(outcome, as_dict), app.CHECKLIST[:1], "")
    text = visible_text(summary)
    assert_no_code(summary, f"the {outcome} summary")
    assert not PROBABILITY.findall(text), f"probability-like numbers {PROBABILITY.findall(text)} in the summary"
    assert f"Triage outcome: {OUTCOME_WORDS[outcome]}" in text.replace("&#x27;", "'")


def test_the_summary_verdict_for_other_sends_to_a_doctor_unless_a_confirmed_blackhead():
    verdict = app.summary_verdict("other", []).lower()
    assert verdict.startswith("not ready") and "doctor" in verdict and "blackhead" in verdict
    assert "in person" in verdict


def test_resemblance_names_the_closest_group_and_those_above_the_share():
    probs = {"milia-like": 0.50, "pustule": ALSO_SHARE, "other": ALSO_SHARE - 0.01, REFER: 0.11}
    lines = resemblance_lines(probs, "milia-like")
    assert lines[0] == f"Closest to {GROUP_WORDS['milia-like']}."
    assert GROUP_WORDS["pustule"] in lines[1]
    assert GROUP_WORDS["other"] not in " ".join(lines) and GROUP_WORDS[REFER] not in " ".join(lines)


def test_resemblance_names_the_refer_group_whenever_it_is_the_answer():
    probs = {"milia-like": 0.80, "pustule": 0.05, "other": 0.06, REFER: 0.09}
    assert GROUP_WORDS[REFER] in " ".join(resemblance_lines(probs, REFER, ["refer_threshold"]))


def test_resemblance_of_an_unsure_answer_says_no_group_stood_out():
    probs = {"milia-like": 0.45, "pustule": 0.40, "other": 0.10, REFER: 0.05}
    (line,) = resemblance_lines(probs, REFER, ["unsure"])
    assert "no one group stood out" in line.lower()
    assert GROUP_WORDS["milia-like"] in line and GROUP_WORDS["pustule"] in line and GROUP_WORDS[REFER] not in line


# -- the built app ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tiny_model):
    """The app as serve.py builds it (not launched), on the tiny model."""
    from triage.inference.engine import Triage

    return app.build_app(Triage.load(tiny_model, threads=None))


@pytest.fixture(scope="module")
def events(built):
    """The built app's event functions by name (the tiny model: whatever it answers, the wording must hold)."""
    return {fn.name: fn.fn for fn in built.fns.values()}


def test_no_page_of_the_built_app_names_an_outcome_code(built):
    import gradio as gr

    pages = [b.value for b in built.blocks.values() if isinstance(b, gr.Markdown) and b.value]
    assert any("About this tool" in p for p in pages) and len(pages) > 5, "the Learn and About pages are scanned"
    for text in pages + [app.education_for(o) for o in ANSWERS]:
        found = CODE.findall(text)
        assert not found, f"outcome code(s) {found} in: {text[:60]}"


def test_the_built_app_gives_the_therapist_a_card_of_their_own(events, make_photo, tmp_path):
    paths = []
    for seed in (3, 4):
        paths.append(tmp_path / f"photo{seed}.jpg")
        make_photo(seed, (320, 320)).save(paths[-1], "JPEG", quality=90)
    slots = (str(paths[0]), None, str(paths[1]), None)  # outside the upload folder: the files are kept
    slots += (None,) * len(RED_FLAGS)  # the red-flag questions, skipped

    client_card, _ = events["client"](*slots)
    therapist_card = events["therapist"](*slots)[0]

    outcome = re.search(r"data-outcome='([^']+)'", client_card).group(1)
    assert outcome == re.search(r"data-outcome='([^']+)'", therapist_card).group(1)
    assert app.NEXT_STEP[outcome] in client_card and app.THERAPIST_NEXT_STEP[outcome] in therapist_card
    assert app.NEXT_STEP[outcome] not in therapist_card
    assert_no_code(client_card, "the built app's client card")
