"""Every answer says how soon: the urgency for every outcome and every red-flag answer, and for combined photos.

Pinned through each way in: the pure rule (:func:`triage.core.urgency.urgency_for`), the engine's result,
``python -m triage predict --json``, the app's ``/triage`` function and both tabs' handlers (run on tiny
checkpoints built to give a chosen answer, and a dark photo the gate declines), and the served ``/triage`` over
HTTP. The expected levels are written out here, from the rules in ``docs/CONTENT.md``, not read from the code.
"""

from __future__ import annotations

import html
import itertools
import json
import re

import pytest
from conftest import add_grain, build_fixed_answer_checkpoint
from PIL import Image

from triage import __main__ as cli
from triage.app import layout as app
from triage.app.wording import URGENCY_WORDS
from triage.core.outcomes import (
    CANT_ASSESS,
    EMERGENCY,
    MILIA,
    OTHER,
    OUTCOMES,
    PUSTULE,
    REFER,
    ROUTINE,
    SOON,
    TODAY,
    URGENCIES,
)
from triage.core.red_flags import NO, NOT_SURE, RED_FLAGS, YES, FlagError
from triage.core.urgency import most_urgent, urgency_for
from triage.inference.engine import TriageResult, combine_results, with_answers

ALL_OUTCOMES = [*OUTCOMES, CANT_ASSESS]
KEYS = [f.key for f in RED_FLAGS]
#: Before any answer: no doctor unless it changes (milia-like, pustule, a photo to retake); a GP within two weeks
#: for "other" (it can hide a skin cancer) and for a referral.
BASE = {MILIA: ROUTINE, PUSTULE: ROUTINE, CANT_ASSESS: ROUTINE, OTHER: SOON, REFER: SOON}
#: What a yes asks for: a change or bleeding, a GP within two weeks; spreading redness or fever, today; the eye, 999.
IF_YES = {"changed": SOON, "bleeding": SOON, "unwell": TODAY, "eye": EMERGENCY}
RANK = {ROUTINE: 0, SOON: 1, TODAY: 2, EMERGENCY: 3}


def expected(outcome: str, answers: dict[str, str]) -> str:
    levels = [BASE[outcome]] + [IF_YES[k] for k, v in answers.items() if v == YES]
    return max(levels, key=RANK.get)


def every_answer_set() -> list[dict[str, str]]:
    """All 256 ways to answer (or skip) the four questions."""
    sets = []
    for values in itertools.product([None, YES, NO, NOT_SURE], repeat=len(KEYS)):
        sets.append({k: v for k, v in zip(KEYS, values, strict=True) if v is not None})
    return sets


#: The answers the entry points are run with: none, each question yes / no / not sure alone, all yes.
ENTRY_ANSWERS = [{}] + [{k: v} for k in KEYS for v in (YES, NO, NOT_SURE)] + [dict.fromkeys(KEYS, YES)]


def flags_text(answers: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in answers.items())


def answer_id(answers: dict[str, str]) -> str:
    return flags_text(answers) or "none"


# -- the rule ------------------------------------------------------------------------------------------------


def test_the_levels_run_from_routine_to_emergency():
    assert URGENCIES == (ROUTINE, SOON, TODAY, EMERGENCY)
    assert {f.key: f.urgency for f in RED_FLAGS} == IF_YES


@pytest.mark.parametrize("outcome", ALL_OUTCOMES)
def test_every_outcome_and_every_answer(outcome):
    for answers in every_answer_set():
        want = expected(outcome, answers)
        assert urgency_for(outcome, [], answers) == want, (outcome, answers)
        # The same level on the engine's result, where the answers were applied (the outcome may have changed).
        result = with_answers(TriageResult(outcome, None, reasons=["r."], reason_codes=["c"]), answers)
        assert result.urgency == want and result.to_dict()["urgency"] == want, (outcome, answers)


@pytest.mark.parametrize("outcome", ALL_OUTCOMES)
def test_no_and_not_sure_never_change_the_level(outcome):
    for answers in every_answer_set():
        if YES not in answers.values():
            assert urgency_for(outcome, [], answers) == BASE[outcome]


def test_a_recorded_yes_counts_without_the_answers():
    # The printable summary rebuilds a result from the tab's state: the flag codes carry the yes.
    assert urgency_for(REFER, ["flag_eye", "refer_threshold"]) == EMERGENCY
    assert urgency_for(REFER, ["flag_unwell"]) == TODAY


def test_most_urgent_and_its_refusals():
    assert most_urgent([ROUTINE, TODAY, SOON]) == TODAY
    with pytest.raises(ValueError, match="no urgency"):
        most_urgent([])
    with pytest.raises(ValueError, match="unknown urgency"):
        most_urgent(["whenever"])
    with pytest.raises(ValueError, match="unknown outcome"):
        urgency_for("fine")
    with pytest.raises(FlagError):
        urgency_for(MILIA, [], {"itchy": YES})


@pytest.mark.parametrize(("first", "second"), list(itertools.product(ALL_OUTCOMES, repeat=2)))
def test_combined_photos_take_the_most_urgent(first, second):
    photos = [TriageResult(o, None, reasons=[f"{o}."], file=f"{k}.jpg") for k, o in enumerate((first, second))]
    combined = combine_results(photos)
    assert combined.urgency == max(expected(first, {}), expected(second, {}), key=RANK.get)
    assert combined.urgency == most_urgent([p.urgency for p in photos])
    for answers in ENTRY_ANSWERS:
        want = most_urgent([expected(first, answers), expected(second, answers)])
        assert with_answers(combined, answers).urgency == want


# -- the cards (both tabs) -----------------------------------------------------------------------------------


def card_urgency_and_headline(card: str) -> tuple[str, str]:
    found = re.search(r"<div class='outcome-card'[^>]*data-urgency='([^']+)'[^>]*>\s*<h2>(.*?)</h2>", card, re.S)
    return found.group(1), found.group(2)


@pytest.mark.parametrize("outcome", ALL_OUTCOMES)
@pytest.mark.parametrize("for_therapist", [False, True], ids=["client", "therapist"])
def test_the_card_leads_with_the_urgency(outcome, for_therapist):
    for answers in every_answer_set():
        result = with_answers(TriageResult(outcome, None, reasons=["r."]), answers)
        urgency, headline = card_urgency_and_headline(app.outcome_card(result, for_therapist=for_therapist))
        assert urgency == expected(outcome, answers)
        if urgency == EMERGENCY:
            assert headline.startswith("Get help now: call 999 or go to A&E")
        elif urgency == TODAY:
            assert "today" in headline.lower() and "999" not in headline
        else:
            assert headline == app.HEADLINES[result.outcome]
        if answers.get("eye") == YES:
            assert "soon" not in headline.lower(), "an eye emergency headed 'soon'"


@pytest.mark.parametrize("urgency", URGENCIES)
def test_the_therapist_card_and_the_summary_say_how_soon(urgency):
    answers = {ROUTINE: {}, SOON: {"changed": YES}, TODAY: {"unwell": YES}, EMERGENCY: {"eye": YES}}[urgency]
    outcome = MILIA
    result = with_answers(TriageResult(outcome, None, reasons=["r."]), answers)
    assert result.urgency == urgency
    therapist = app.outcome_card(result, for_therapist=True)
    words = URGENCY_WORDS[urgency]
    assert words in html.unescape(therapist)
    summary = app.summary_html(result, [], "")
    assert words in html.unescape(summary)
    # The client's card says it in its headline and next step, not in a separate line.
    assert words not in html.unescape(app.outcome_card(result))


def test_other_names_skin_cancer_on_both_cards_and_the_summary():
    result = TriageResult(OTHER, None)
    cards = (app.outcome_card(result), app.outcome_card(result, for_therapist=True))
    for shown in (*cards, app.summary_html(result, [], "")):
        assert "skin cancer" in shown.lower()
        assert "not one to" not in shown, "the double negative is back"


# -- the entry points, for every outcome ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos(make_photo, tmp_path_factory) -> dict[str, str]:
    """A usable photo (any answer but can't-assess comes from the model) and a dark one the gate declines."""
    folder = tmp_path_factory.mktemp("urgency")
    usable, dark = folder / "usable.jpg", folder / "dark.jpg"
    add_grain(make_photo(31, (400, 300))).save(usable, "JPEG", quality=90)
    Image.new("RGB", (400, 300), (6, 5, 5)).save(dark, "JPEG", quality=90)
    return {"usable": str(usable), "dark": str(dark)}


@pytest.fixture(scope="module")
def fixed_models(tmp_path_factory) -> dict[str, str]:
    """One tiny checkpoint per model outcome, each giving that outcome to every usable photo."""
    folder = tmp_path_factory.mktemp("fixed_models")
    return {o: str(build_fixed_answer_checkpoint(folder / f"{o}.pt", o)) for o in OUTCOMES}


def model_and_photo(outcome: str, fixed_models, photos) -> tuple[str, str]:
    """The checkpoint and photo that give ``outcome`` (can't-assess: any model, the dark photo)."""
    if outcome == CANT_ASSESS:
        return fixed_models[MILIA], photos["dark"]
    return fixed_models[outcome], photos["usable"]


@pytest.mark.parametrize("outcome", ALL_OUTCOMES)
def test_cli_gives_the_urgency_for_every_answer(outcome, fixed_models, photos, capsys):
    model, photo = model_and_photo(outcome, fixed_models, photos)
    for answers in ENTRY_ANSWERS:
        args = ["predict", photo, photo, "--combine", "--json", "--model", model, "--flags", flags_text(answers)]
        assert cli.main(args) == 0
        rows = json.loads(capsys.readouterr().out)
        assert rows[0]["outcome"] == (outcome if YES not in answers.values() else REFER), (outcome, answers)
        for row in (rows[0], rows[1], rows[2]["combined"]):
            assert row["urgency"] == expected(outcome, answers), (outcome, answers)
    assert cli.main(["predict", photo, "--model", model, "--flags", "eye"]) == 0
    assert "urgency emergency" in capsys.readouterr().out


@pytest.fixture(scope="module")
def built_apps(fixed_models) -> dict[str, dict]:
    """The app as serve.py builds it (not launched) on each fixed checkpoint: its event functions by name."""
    from triage.inference.engine import Triage

    apps = {}
    for outcome, model in fixed_models.items():
        built = app.build_app(Triage.load(model, threads=None))
        apps[outcome] = {fn.name: fn.fn for fn in built.fns.values()}
    return apps


def flag_values(answers: dict[str, str]) -> list[str | None]:
    return [answers.get(k) for k in KEYS]


def slots(photo: str) -> list:
    from triage.inference.tap import MAX_PHOTOS

    return [{"path": photo}, None] + [None, None] * (MAX_PHOTOS - 1)


@pytest.mark.parametrize("outcome", ALL_OUTCOMES)
def test_both_tabs_and_the_api_give_the_urgency_for_every_answer(outcome, built_apps, photos):
    events = built_apps[MILIA if outcome == CANT_ASSESS else outcome]
    photo = photos["dark" if outcome == CANT_ASSESS else "usable"]
    for answers in ENTRY_ANSWERS:
        want = expected(outcome, answers)
        client_card, _ = events["client"](*slots(photo), *flag_values(answers))
        therapist = events["therapist"](*slots(photo), *flag_values(answers))
        for card in (client_card, therapist[0]):
            urgency, headline = card_urgency_and_headline(card)
            assert urgency == want, (outcome, answers)
            assert not (answers.get("eye") == YES and "soon" in headline.lower())
        assert therapist[2]["urgency"] == therapist[4]["urgency"] == want
        result = events["api"]({"path": photo}, None, flags_text(answers))
        assert result["urgency"] == want, (outcome, answers)
    assert events["api"]({"path": photo}, None, "")["outcome"] == outcome


def test_done_when_a_milia_like_photo_with_each_flag(fixed_models, photos, capsys):
    """The issue's acceptance check: eye -> emergency, unwell -> today, changed -> soon, none -> routine."""
    for flags, want in (("eye=yes", EMERGENCY), ("unwell=yes", TODAY), ("changed=yes", SOON), ("", ROUTINE)):
        assert cli.main(["predict", photos["usable"], "--json", "--model", fixed_models[MILIA], "--flags", flags]) == 0
        assert json.loads(capsys.readouterr().out)[0]["urgency"] == want, flags


# -- the served app over HTTP --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(app_url):
    from gradio_client import Client

    return Client(app_url + "/", verbose=False)


@pytest.mark.parametrize("answers", ENTRY_ANSWERS, ids=answer_id)
def test_served_triage_gives_the_urgency(api, photos, answers):
    from gradio_client import handle_file

    photo_answer = api.predict(handle_file(photos["usable"]), api_name="/triage")["outcome"]
    result = api.predict(handle_file(photos["usable"]), flags=flags_text(answers), api_name="/triage")
    assert result["urgency"] == expected(photo_answer, answers)
