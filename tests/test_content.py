"""The education pages: our own words, a doctor line on every answer, one contraindication list, a readable summary.

* No page repeats a run of ``RUN`` words from the clinic pages its facts come from (``tests/data/seed_runs.txt``
  holds their digests; with the pages themselves at ``$TRIAGE_SEEDS``, default ``../shared/seeds``, the digests
  are also checked to be current).
* Every outcome page says when to see a doctor; titles match the links to them; after-care runs in time order.
* Every outcome page opens with what to do and when to see a doctor, and carries the one emergency sentence and
  the one sentence on who judges what; no milia page uses a word the doctor-check page gives for skin cancer.
* The "Who should wait" page and the therapist's checklist are one list.
* The printable summary keeps the after-care time periods and prints no Markdown marks.
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import REPO

from triage.app import layout as app
from triage.app.content_loader import (
    AFTER_TREATMENT_LINE,
    BLISTERS_LINE,
    CONTRAINDICATION_ACTIONS,
    EMERGENCY_LINE,
    LEARN_ORDER,
    NEAR_EYE_LINE,
    OUTCOME_PAGES,
    WHO_JUDGES_LINE,
    all_pages,
    contraindications,
    learn_pages,
    page,
    parse_contraindications,
    title,
)
from triage.core import quality
from triage.core.outcomes import CANT_ASSESS, OUTCOMES
from triage.inference.engine import TriageResult
from triage.testing.overlap import RUN, digest, runs, shared_runs, words

SEED_DIGESTS = REPO / "tests" / "data" / "seed_runs.txt"
SEEDS = Path(os.environ.get("TRIAGE_SEEDS", REPO.parent / "shared" / "seeds"))
PAGES = all_pages()
OUTCOME_NAMES = [*OUTCOMES, CANT_ASSESS]


def seed_digests() -> set[str]:
    lines = SEED_DIGESTS.read_text(encoding="utf-8").splitlines()
    return {s.strip() for s in lines if s.strip() and not s.startswith("#")}


def seed_texts() -> dict[str, str]:
    if not SEEDS.is_dir():
        pytest.skip(f"seed pages not found at {SEEDS} (set TRIAGE_SEEDS)")
    return {p.name: p.read_text(encoding="utf-8", errors="replace") for p in sorted(SEEDS.iterdir()) if p.is_file()}


# -- in our own words -------------------------------------------------------------------------------


def test_words_normalise_case_punctuation_and_apostrophes() -> None:
    assert words("Don’t SQUEEZE: it's **hard**, like a grain-of-sand!") == [
        "dont",
        "squeeze",
        "its",
        "hard",
        "like",
        "a",
        "grain",
        "of",
        "sand",
    ]


def test_the_guard_catches_a_copied_run() -> None:
    source = "Whatever you do, never press on the little bump with your nails."
    digests = {digest(r) for r in runs(source)}
    copied = "A tip: NEVER press on the little bump, with tools or nails."
    assert shared_runs(copied, digests) == ["never press on the little bump with"]
    assert shared_runs("Please keep your nails off the little bump.", digests) == []


def test_the_guard_catches_a_copied_seed_sentence() -> None:
    digests = seed_digests()
    for text in seed_texts().values():
        first = " ".join(words(text)[:RUN])
        assert shared_runs(f"Our page. {first.upper()}! More.", digests), f"{first!r} not caught"


def test_seed_digests_are_current() -> None:
    fresh = {digest(r) for text in seed_texts().values() for r in runs(text)}
    assert fresh == seed_digests(), "the seed pages changed: run python scripts/seed_runs.py"


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_no_page_repeats_seed_wording(path: Path) -> None:
    shared = shared_runs(path.read_text(encoding="utf-8"), seed_digests())
    assert not shared, f"{path.name} repeats {RUN}-word runs of a seed page: {shared}"


# -- the answers -------------------------------------------------------------------------------------

DOCTOR_LINE = re.compile(r"^\*\*When to see a doctor:\*\* \w", re.MULTILINE)


@pytest.mark.parametrize("outcome", OUTCOME_NAMES)
def test_every_outcome_page_says_when_to_see_a_doctor(outcome: str) -> None:
    assert DOCTOR_LINE.search(page(f"outcome_{outcome}")), f"outcome_{outcome}.md has no 'When to see a doctor' line"


ACTION_LINE = re.compile(r"^\*\*What to do now:\*\* \w")
#: A phone shows about 7 words a line: two leads of this size fit the first screen under the answer card.
LEAD_MAX_WORDS = 60


def _paragraphs(markdown: str) -> list[str]:
    """The blocks of a page below its title, blank-line separated."""
    body = markdown.split("\n", 1)[1] if markdown.startswith("# ") else markdown
    return [b.strip() for b in re.split(r"\n\s*\n", body) if b.strip()]


@pytest.mark.parametrize("outcome", OUTCOME_NAMES)
def test_every_outcome_page_leads_with_the_action_then_the_doctor_line(outcome: str) -> None:
    first, second = _paragraphs(page(f"outcome_{outcome}"))[:2]
    assert ACTION_LINE.match(first), f"outcome_{outcome}.md does not open with 'What to do now'"
    assert DOCTOR_LINE.match(second), f"outcome_{outcome}.md: the doctor line is not second"
    for lead in (first, second):
        assert len(lead.split()) <= LEAD_MAX_WORDS, f"outcome_{outcome}.md: a lead is too long for a phone"


@pytest.mark.parametrize("outcome", OUTCOME_NAMES)
def test_every_outcome_page_carries_the_emergency_and_who_judges_lines(outcome: str) -> None:
    for shown in (page(f"outcome_{outcome}"), app.education_for(outcome)):
        assert EMERGENCY_LINE in shown, f"outcome_{outcome}: no emergency line, word for word"
        assert WHO_JUDGES_LINE in shown, f"outcome_{outcome}: no who-judges line, word for word"


def test_the_emergency_line_names_999_and_ae() -> None:
    assert "999" in EMERGENCY_LINE and "A&E" in EMERGENCY_LINE
    # The same conditions as the eye and unwell questions (triage.core.red_flags).
    for condition in ("swelling around the eye", "vision", "very unwell", "spreading fast", "fever"):
        assert condition in EMERGENCY_LINE
    # The therapist confirms a blackhead in person; the medical opinion is a doctor's.
    assert "only a doctor can give a medical opinion" in WHO_JUDGES_LINE


#: A time limit or an urgency: "within two weeks", "after about four weeks", "the same day".
TIME_LIMIT = re.compile(r"\b(within|after about|after) (\d+|two|four|a few) (days|weeks|months)\b|\bthe same day\b")


@pytest.mark.parametrize("outcome", OUTCOME_NAMES)
def test_every_outcome_page_says_how_soon_in_its_doctor_line(outcome: str) -> None:
    doctor_line = _paragraphs(page(f"outcome_{outcome}"))[1]
    assert TIME_LIMIT.search(doctor_line), f"outcome_{outcome}.md: the doctor line gives no time limit or urgency"


def test_the_time_limit_detector_can_fail() -> None:
    assert not TIME_LIMIT.search("**When to see a doctor:** if it changes, or book once your skin has calmed down.")
    assert TIME_LIMIT.search("see a GP if a spot has not gone within 4 weeks")


def test_the_other_page_says_near_the_top_that_it_can_hide_a_skin_cancer() -> None:
    first = _paragraphs(page("outcome_other"))[0].lower()
    assert "skin cancer" in first and "whether or not you are planning a facial" in first
    assert "blackhead" in first and "before any facial" not in page("outcome_other").lower()
    assert "not one to assume" not in page("outcome_other").lower(), "the double negative is back"


#: Pages that send a spot near the eye, or blisters, somewhere: each says it in the one shared sentence.
NEAR_EYE_PAGES = ["outcome_pustule", "outcome_refer-to-doctor", "doctor_check", "milia_vs_pustules"]
BLISTER_PAGES = ["outcome_pustule", "outcome_refer-to-doctor", "doctor_check", "faq"]


def test_near_the_eye_and_blisters_are_said_one_way_everywhere() -> None:
    for name in NEAR_EYE_PAGES:
        assert NEAR_EYE_LINE in page(name), f"{name}.md: not the shared near-the-eye sentence"
    for name in BLISTER_PAGES:
        assert BLISTERS_LINE in page(name), f"{name}.md: not the shared blisters sentence"
    for path in PAGES:
        rest = path.read_text(encoding="utf-8").replace(NEAR_EYE_LINE, "").replace(BLISTERS_LINE, "")
        rest = rest.replace(EMERGENCY_LINE, "")
        assert not re.search(r"\bblisters\b", rest), f"{path.name} speaks of blisters in other words"
        for sentence in re.split(r"(?<=[.:;])\s", rest):
            said = sentence.lower()
            assert not ("eye" in said and "same day" in said), f"{path.name}: another near-the-eye rule: {sentence}"


def test_removal_and_aftercare_give_the_same_after_treatment_rule() -> None:
    for name in ("extraction", "aftercare"):
        assert AFTER_TREATMENT_LINE in page(name), f"{name}.md: not the shared after-treatment sentence"


def test_aftercare_keeps_daily_sunscreen_after_the_first_two_weeks() -> None:
    later = page("aftercare").split("After two weeks", 1)[1].split("\n", 1)[0].lower()
    assert "daily sunscreen" in later


def test_babies_milia_go_to_a_doctor_only_if_they_last() -> None:
    for name in ("milia", "outcome_milia-like"):
        text = page(name).lower()
        assert "beyond a few months" in text and "on a baby" not in text


@pytest.mark.parametrize("name", ["doctor_check", "milia_vs_pustules", "faq"])
def test_pages_about_urgent_signs_carry_the_emergency_line(name: str) -> None:
    assert EMERGENCY_LINE in page(name), f"{name}.md lacks the emergency line, word for word"


def test_pustule_page_sends_crusts_and_blisters_to_a_pharmacist() -> None:
    text = page("outcome_pustule").lower()
    for word in ("impetigo", "cold sore", "catching", "pharmacist", "no facial"):
        assert word in text, f"pustule page lacks {word!r}"


#: The doctor-check sections that list what skin cancer can look like; their **bold** words are the signs.
SIGN_SECTIONS = ("Moles and dark patches", "Lumps, sores and rough patches")


def _sections(markdown: str) -> dict[str, str]:
    """``## heading`` -> the text under it."""
    parts = re.split(r"^## (.+)$", markdown, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def cancer_sign_words() -> list[str]:
    """The bold words of the doctor-check page's sign sections ("pearly", "waxy"...), lower case."""
    sections = _sections(page("doctor_check"))
    assert set(SIGN_SECTIONS) <= set(sections), "doctor_check.md: a sign section was renamed"
    return sorted({w.lower() for s in SIGN_SECTIONS for w in re.findall(r"\*\*([^*\n]+)\*\*", sections[s])})


def sign_words_in(text: str, signs: list[str]) -> list[str]:
    """The sign words ``text`` uses, as whole words, any case."""
    return [w for w in signs if re.search(rf"\b{re.escape(w)}\b", text, re.IGNORECASE)]


MILIA_PAGES = [p.stem for p in PAGES if "milia" in p.stem or "milia" in title(p.stem).lower()]


def test_the_sign_list_is_read_from_the_doctor_check_page() -> None:
    signs = cancer_sign_words()
    assert "pearly" in signs and len(signs) >= 4, signs
    assert sign_words_in("A small, firm, Pearly-white bump.", signs) == ["pearly"]
    assert {"milia", "milia_vs_pustules", "outcome_milia-like", "extraction", "prevention"} <= set(MILIA_PAGES)


@pytest.mark.parametrize("name", MILIA_PAGES)
def test_no_milia_page_uses_a_skin_cancer_sign_word(name: str) -> None:
    used = sign_words_in(page(name), cancer_sign_words())
    assert not used, f"{name}.md describes milia with {used}, words doctor_check.md gives for skin cancer"


@pytest.mark.parametrize("name", ["milia", "outcome_milia-like"])
def test_milia_pages_name_skin_cancer_among_the_look_alikes(name: str) -> None:
    text = page(name).lower()
    assert "basal cell carcinoma" in text and "skin cancer" in text
    # Milia stay: "a bump that stays" would send every milium to a doctor.
    assert "grows, bleeds, crusts or looks unlike the others" in text and "*when a spot needs a doctor*" in text
    assert "single bump that stays" not in text


def test_a_bump_that_will_not_come_out_is_referred_not_retried() -> None:
    for name in ("outcome_milia-like", "milia", "extraction", "faq"):
        text = page(name).lower()
        assert "stop" in text and "refer" in text, f"{name}.md: a look-alike that will not come out is not referred"
        assert "second" not in text, f"{name}.md suggests a second attempt"


def test_refer_asks_for_a_doctor_whatever_the_facial_plans() -> None:
    text = page("outcome_refer-to-doctor").lower()
    assert "whether or not you are planning a facial" in text
    # What an NHS patient can do: no self-booked dermatologist, no "urgent appointment" without a time.
    assert "ask your gp to see you within two weeks" in text
    assert "dermatologist" not in text and "urgent appointment" not in text
    assert "or the app could not decide" in text
    for sign in ("bigger", "bleeds", "not healed"):
        assert sign in text, f"refer page lacks the urgent sign {sign!r}"
    assert "before any facial" not in app.HEADLINES["refer-to-doctor"].lower()
    assert OUTCOME_PAGES["refer-to-doctor"] == [], "nothing about booking beside a request to see a doctor"


def test_milia_like_answer_shows_who_should_wait_and_warns_against_home_tools() -> None:
    assert "contraindications" in OUTCOME_PAGES["milia-like"]
    text = page("outcome_milia-like").lower()
    for word in ("needle", "pin", "kit", "syringoma", "comedone"):
        assert word in text


def test_pustule_page_lists_warning_signs() -> None:
    text = page("outcome_pustule").lower()
    for sign in ("fever", "spreading", "eye", "deep, hard or painful lump", "folliculitis"):
        assert sign in text
    doctor_line = _paragraphs(page("outcome_pustule"))[1].lower()
    assert "gp if a spot has not gone within 4 weeks" in doctor_line and "nodule or cyst" in doctor_line
    assert "pharmacist" in _paragraphs(page("outcome_pustule"))[0].lower(), "the pharmacist stays for ordinary spots"
    assert not [p.name for p in PAGES if "infection deeper" in p.read_text(encoding="utf-8")]


#: A phrase of the can't-assess page for each reason the quality gate can give.
QUALITY_WORDS = {
    quality.TOO_SMALL: "too small",
    quality.TOO_BLURRY: "blurry",
    quality.TOO_DARK: "too dark",
    quality.TOO_BRIGHT: "too bright",
    quality.TOO_LITTLE_SKIN: "too little skin",
}


def test_cant_assess_page_lists_every_reason_the_app_gives() -> None:
    assert set(QUALITY_WORDS) == set(quality.MESSAGES), "a quality reason was added: name it on the page"
    text = page("outcome_cant-assess").lower()
    for phrase in [*QUALITY_WORDS.values(), "close-up of skin", "flash", "sun"]:
        assert phrase in text


def test_pages_about_removal_say_never_at_home() -> None:
    for name in ("extraction", "faq", "milia"):
        text = page(name).lower()
        assert all(w in text for w in ("needle", "pin", "kit")), f"{name}.md lacks the never-at-home warning"


def test_only_a_doctor_says_what_a_spot_is() -> None:
    for path in PAGES:
        text = path.read_text(encoding="utf-8").lower()
        assert "therapist or doctor can" not in text, path.name
        assert "if in doubt" not in text, f"{path.name} makes the therapist the judge"


def test_one_term_for_the_milia_like_answer() -> None:
    texts = [p.read_text(encoding="utf-8") for p in PAGES] + list(app.HEADLINES.values()) + list(app.NEXT_STEP.values())
    for text in texts:
        assert not re.search(r"milia-type|milia type|looks like milia\b|looks most like milia\b", text), text[:60]


# -- titles and links --------------------------------------------------------------------------------


def test_learn_tab_titles_are_the_page_titles() -> None:
    assert [n for _, n in learn_pages()] == LEARN_ORDER
    for shown, name in learn_pages():
        assert page(name).startswith(f"# {shown}\n")


def test_cross_references_name_real_pages() -> None:
    titles = {title(p.stem) for p in PAGES}
    for path in PAGES:
        for ref in re.findall(r"(?<!\*)\*([^*\n]+)\*(?!\*)", path.read_text(encoding="utf-8")):
            assert ref in titles, f"{path.name} links to *{ref}*, which is no page's title"


def test_every_page_is_shown_somewhere() -> None:
    shown = set(LEARN_ORDER) | {p for pages in OUTCOME_PAGES.values() for p in pages}
    shown |= {f"outcome_{o}" for o in OUTCOME_NAMES} | {"disclaimer", "privacy"}
    assert {p.stem for p in PAGES} == shown


def _days(heading: str) -> float:
    n, unit = re.search(r"(\d+) (hour|day|week)", heading).groups()
    return int(n) * {"hour": 1 / 24, "day": 1, "week": 7}[unit]


def test_aftercare_runs_in_time_order() -> None:
    timed = [h for h in re.findall(r"^## (.+)$", page("aftercare"), re.MULTILINE) if re.search(r"\d", h)]
    assert len(timed) >= 4
    assert [_days(h) for h in timed] == sorted(_days(h) for h in timed)


# -- one contraindication list -----------------------------------------------------------------------


def test_checklist_is_the_who_should_wait_list() -> None:
    items = contraindications()
    bullets = [s for s in page("contraindications").splitlines() if s.startswith("- ")]
    assert len(items) == len(bullets), "every bullet on the page must be a '- **label**: detail' item"
    assert app.CHECKLIST == [c.label for c in items]
    assert {c.action for c in items} == set(CONTRAINDICATION_ACTIONS.values())


@pytest.mark.parametrize(
    "needed",
    ["cold sores", "infection", "sunburn", "peel", "laser", "waxing", "keloid", "blood thinners", "pregnan"]
    + ["isotretinoin", "roaccutane", "six months", "retinoid", "last week", "dermatitis", "open skin", "skin cancer"],
)
def test_checklist_covers(needed: str) -> None:
    assert any(needed in c.label.lower() for c in contraindications()), f"no checklist item for {needed!r}"


def test_an_item_under_an_unknown_heading_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown heading"):
        parse_contraindications("## Maybe later\n\n- **Something**: details.\n")


# -- the printable summary ---------------------------------------------------------------------------


class _Text(HTMLParser):
    """The visible text of an HTML page, one block element per line."""

    BLOCKS = {"p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "title"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = False

    def handle_starttag(self, tag, attrs) -> None:
        self._skip = tag in ("style", "title")
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag) -> None:
        self._skip = False

    def handle_data(self, data) -> None:
        if not self._skip:
            self.parts.append(data)


def summary_text(outcome: str = "milia-like", ticked: list[str] | None = None) -> str:
    probs = None if outcome == CANT_ASSESS else dict.fromkeys(OUTCOMES, 0.25)
    result = TriageResult(outcome=outcome, probabilities=probs, reasons=[], model_version="test")
    parser = _Text()
    parser.feed(app.summary_html(result, ticked or [], "a note"))
    return "".join(parser.parts)


def test_summary_keeps_the_aftercare_time_periods() -> None:
    text = summary_text()
    headings = re.findall(r"^## (.+)$", page("aftercare"), re.MULTILINE)
    for heading in headings:
        assert f"\n{heading}\n" in text, f"after-care heading {heading!r} missing from the summary"
    # Each instruction sits under its own time period.
    assert text.index("24 hours") < text.index("swimming pools") < text.index("3 days")
    assert text.index("7 days") < text.index("wax") < text.index("2 weeks") < text.index("SPF 30")
    assert "24 hours" in text.split("Before the appointment", 1)[1].split("After-care", 1)[0]


def test_summary_prints_no_markdown_marks() -> None:
    text = summary_text()
    assert "**" not in text and "##" not in text and "](" not in text
    assert not re.search(r"^\s*[-*] ", text, re.MULTILINE), "a Markdown bullet printed literally"
    assert "SPF 30" in text and "<strong>SPF 30</strong>" in app.summary_html(
        TriageResult(outcome="milia-like", probabilities=None, reasons=[], model_version="t"), [], ""
    )


def _item(action: str) -> str:
    return next(c.label for c in contraindications() if c.action == action)


@pytest.mark.parametrize(
    ("outcome", "ticked", "verdict"),
    [
        ("milia-like", [], "Ready to book"),
        ("milia-like", ["discuss"], "Talk through the ticked items"),
        ("milia-like", ["wait"], "Not ready yet"),
        ("milia-like", ["doctor"], "a doctor's check comes first"),
        ("refer-to-doctor", [], "a doctor's check comes first"),
        ("pustule", [], "Not ready yet"),
        (CANT_ASSESS, [], "a clearer photo comes first"),
    ],
)
def test_summary_verdict(outcome: str, ticked: list[str], verdict: str) -> None:
    text = summary_text(outcome, [_item(a) for a in ticked])
    assert verdict in text
