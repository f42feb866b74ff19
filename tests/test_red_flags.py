"""Red-flag questions: answers can only make the answer more careful (pure rule, CLI; the app in test_app)."""

from __future__ import annotations

import csv
import json
import re

import pytest
from conftest import REPO, add_grain, shared_photo

from triage import __main__ as cli
from triage.core.outcomes import ANSWER_CAUTION, CANT_ASSESS, EMERGENCY, MILIA, OUTCOMES, REFER, TODAY
from triage.core.red_flags import (
    EMERGENCY_LINE,
    NO,
    NOT_SURE,
    RED_FLAGS,
    YES,
    FlagError,
    apply_red_flags,
    check_answers,
    parse_flags,
)
from triage.inference.engine import Triage, TriageResult, with_answers

ALL_OUTCOMES = [*OUTCOMES, CANT_ASSESS]
KEYS = [f.key for f in RED_FLAGS]


def test_at_most_five_one_line_questions():
    assert 1 <= len(RED_FLAGS) <= 5
    assert all("\n" not in f.question and f.question.endswith("?") and len(f.question) <= 90 for f in RED_FLAGS)


@pytest.mark.parametrize("outcome", ALL_OUTCOMES)
@pytest.mark.parametrize("flag", RED_FLAGS, ids=lambda f: f.key)
def test_a_yes_refers_whatever_the_photo_and_says_why(flag, outcome):
    got, reasons, codes = apply_red_flags(outcome, ["Photo reason."], ["photo_code"], {flag.key: YES})
    assert got == REFER
    assert flag.if_yes in reasons and "Photo reason." in reasons
    assert codes == [f"flag_{flag.key}", "photo_code"]
    lead = EMERGENCY_LINE if flag.urgency == EMERGENCY else flag.if_yes
    assert reasons[0] == lead
    assert (EMERGENCY_LINE in reasons) == (flag.urgency in (EMERGENCY, TODAY))


def test_an_ordinary_new_tender_pimple_answers_no():
    """Every fresh spot is new and a pustule is tender: neither alone may be a yes (a GP asks about more)."""
    by_key = {f.key: f.question.lower() for f in RED_FLAGS}
    assert "new mole or patch" in by_key["changed"] and "over weeks" in by_key["changed"]
    assert not re.search(r"\bis it new\b", by_key["changed"])
    assert not re.search(r"painful|tender|sore|swollen", by_key["unwell"]), "tenderness alone would be a yes"
    assert "spreading" in by_key["unwell"] and "fever" in by_key["unwell"]
    assert "swelling around the eye" in by_key["eye"] and "vision" in by_key["eye"]
    # The emergency line carries the same conditions as the eye question.
    assert "red, hot, painful swelling around the eye" in by_key["eye"] and "red, hot, painful swelling" in (
        EMERGENCY_LINE
    )


@pytest.mark.parametrize("outcome", ALL_OUTCOMES)
@pytest.mark.parametrize("flag", RED_FLAGS, ids=lambda f: f.key)
def test_not_sure_adds_its_line_and_keeps_the_answer(flag, outcome):
    got, reasons, codes = apply_red_flags(outcome, ["Photo reason."], ["photo_code"], {flag.key: NOT_SURE})
    assert (got, codes) == (outcome, ["photo_code"])
    assert reasons == ["Photo reason.", flag.if_not_sure]


def test_not_sure_about_change_asks_for_a_check_in_four_to_six_weeks():
    _, reasons, _ = apply_red_flags(MILIA, [], [], {"changed": NOT_SURE})
    assert "4-6 weeks" in reasons[0] and "doctor if it changes" in reasons[0]


@pytest.mark.parametrize("outcome", ALL_OUTCOMES)
@pytest.mark.parametrize("answers", [None, {}, dict.fromkeys(KEYS, NO)], ids=["skipped", "empty", "all-no"])
def test_no_or_skipped_changes_nothing(outcome, answers):
    assert apply_red_flags(outcome, ["r."], ["c"], answers) == (outcome, ["r."], ["c"])


@pytest.mark.parametrize("outcome", ALL_OUTCOMES)
def test_no_combination_of_answers_lowers_the_answer(outcome):
    import itertools

    for values in itertools.product([None, YES, NO, NOT_SURE], repeat=len(KEYS)):
        answers = {k: v for k, v in zip(KEYS, values, strict=True) if v is not None}
        got, _, _ = apply_red_flags(outcome, [], [], answers)
        assert got == outcome or (got == REFER and ANSWER_CAUTION[REFER] >= ANSWER_CAUTION[outcome])
        assert (got == REFER) == (outcome == REFER or YES in answers.values())


def test_several_yes_put_the_emergency_first_and_name_each():
    _, reasons, codes = apply_red_flags(MILIA, [], [], {"changed": YES, "eye": YES, "unwell": YES})
    assert reasons[0] == EMERGENCY_LINE and reasons.count(EMERGENCY_LINE) == 1
    assert codes == ["flag_changed", "flag_unwell", "flag_eye"]  # question order


@pytest.mark.parametrize(
    ("text", "answers"),
    [
        ("", {}),
        (None, {}),
        ("changed", {"changed": YES}),
        (" Changed , bleeding=no,eye=not sure", {"changed": YES, "bleeding": NO, "eye": NOT_SURE}),
        ("eye=not_sure,changed=yes", {"changed": YES, "eye": NOT_SURE}),
    ],
)
def test_parse_flags(text, answers):
    assert parse_flags(text) == answers


@pytest.mark.parametrize("text", ["itchy", "changed=maybe", "changed,changed=no"])
def test_unknown_or_repeated_answers_get_a_plain_error_listing_the_known_ones(text):
    with pytest.raises(FlagError) as err:
        parse_flags(text)
    assert all(k in str(err.value) for k in KEYS) and "not-sure" in str(err.value)


def test_check_answers_refuses_an_unknown_question():
    with pytest.raises(FlagError, match="no question called 'age'"):
        check_answers({"age": YES})


def test_with_answers_records_them_and_leaves_an_unanswered_result_alone():
    result = TriageResult(MILIA, dict.fromkeys(OUTCOMES, 0.25), reasons=["r."])
    assert with_answers(result, None) is result and "answers" not in result.to_dict()
    flagged = with_answers(result, {"bleeding": YES, "changed": NO})
    assert flagged.outcome == REFER and flagged.to_dict()["answers"] == {"changed": NO, "bleeding": YES}
    assert result.outcome == MILIA  # the photo's own result is not changed in place


# -- the command line --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spot(make_photo, tmp_path_factory):
    """A usable generated photo on disk."""
    path = tmp_path_factory.mktemp("flags") / "cheek.jpg"
    add_grain(make_photo(31, (400, 300))).save(path, "JPEG", quality=90)
    return path


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["predict", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("flag", RED_FLAGS, ids=lambda f: f.key)
def test_cli_flag_refers_every_photo_and_the_combined_answer(capsys, tiny_model, spot, flag):
    code, out, _ = run_cli(capsys, str(spot), str(spot), "--model", str(tiny_model), "--json", "--combine", "--flags",
                           flag.key)  # fmt: skip
    rows = json.loads(out)
    assert code == 0 and len(rows) == 3
    for row in [rows[0], rows[1], rows[2]["combined"]]:
        assert row["outcome"] == REFER and flag.if_yes in row["reasons"] and row["answers"] == {flag.key: YES}
        assert f"flag_{flag.key}" in row["reason_codes"]


def test_cli_without_flags_keeps_the_photo_answer(capsys, tiny_model, spot):
    code, out, _ = run_cli(capsys, str(spot), "--model", str(tiny_model), "--json")
    assert code == 0 and "answers" not in json.loads(out)[0]


def test_cli_unknown_flag_is_a_plain_error(capsys, tiny_model, spot):
    code, out, err = run_cli(capsys, str(spot), "--model", str(tiny_model), "--flags", "itchy")
    assert code == 2 and out == ""
    assert err.startswith("error: There is no question called 'itchy'.") and all(k in err for k in KEYS)


@pytest.mark.shared
def test_cli_changed_flag_refers_a_photo_the_shipped_model_answers_milia_like(shared_data, capsys):
    shipped = Triage.load()
    rows = csv.DictReader((REPO / "models" / "test_manifest.csv").open(encoding="utf-8"))
    photo = next(
        p
        for p in (shared_photo(shared_data, r["path"]) for r in rows if r["label"] == MILIA)
        if shipped.predict_path(p).outcome == MILIA
    )
    code, out, _ = run_cli(capsys, str(photo), "--json")
    assert code == 0 and json.loads(out)[0]["outcome"] == MILIA
    code, out, _ = run_cli(capsys, str(photo), "--json", "--flags", "changed")
    row = json.loads(out)[0]
    assert code == 0 and row["outcome"] == REFER
    assert row["reasons"][0].startswith("You said it is a new mole or patch, or has changed")


# -- the app: API, both tabs, printable summary -------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(app_url):
    from gradio_client import Client

    return Client(app_url + "/", verbose=False)


def test_api_flags_refer_and_say_why(api, spot):
    from gradio_client import handle_file

    result = api.predict(handle_file(str(spot)), flags="changed,eye=no", api_name="/triage")
    assert result["outcome"] == REFER and result["answers"] == {"changed": YES, "eye": NO}
    assert result["reasons"][0].startswith("You said it is a new mole or patch, or has changed")


def test_api_without_flags_records_no_answers(api, spot):
    from gradio_client import handle_file

    assert "answers" not in api.predict(handle_file(str(spot)), api_name="/triage")


def test_api_unknown_flag_is_a_plain_error_and_the_photo_is_still_deleted(api, app_server, spot):
    from conftest import files_left_after
    from gradio_client import handle_file

    result = api.predict(handle_file(str(spot)), flags="itchy", api_name="/triage")
    assert set(result) == {"error"} and "no question called 'itchy'" in result["error"]
    assert all(k in result["error"] for k in KEYS)
    assert not files_left_after(app_server.temp_dir, 5.0)


@pytest.fixture(scope="module")
def tiny_app(tiny_model):
    from triage.app.layout import build_app

    return build_app(Triage.load(tiny_model))


def handler(app, name: str):
    return next(f.fn for f in app.fns.values() if getattr(f.fn, "__name__", "") == name)


def flag_values(**answers: str) -> list[str | None]:
    return [answers.get(f.key) for f in RED_FLAGS]


def photo_slots(path) -> list:
    from triage.inference.tap import MAX_PHOTOS

    return [{"path": str(path)}, None] + [None, None] * (MAX_PHOTOS - 1)


@pytest.mark.parametrize("flag", RED_FLAGS, ids=lambda f: f.key)
def test_client_tab_a_yes_gives_the_referral_card(tiny_app, spot, flag):
    from triage.app.wording import headline

    card, education = handler(tiny_app, "client")(*photo_slots(spot), *flag_values(**{flag.key: YES}))
    # The referral card, headed by the yes's urgency: 999 for the eye, today for unwell, else "soon".
    assert f"data-outcome='{REFER}'" in card and headline(REFER, flag.urgency) in card
    assert flag.if_yes.replace("'", "&#x27;") in card
    assert education.startswith("# ") and EMERGENCY_LINE in education


def test_client_tab_skipped_questions_change_nothing(tiny_app, tiny_model, spot):
    photo_answer = Triage.load(tiny_model).predict_path(spot).outcome
    card, _ = handler(tiny_app, "client")(*photo_slots(spot), *flag_values())
    assert f"data-outcome='{photo_answer}'" in card


def test_therapist_tab_shows_the_answers_and_the_summary_lists_them(tiny_app, spot):
    from triage.app.layout import summary_html

    out = handler(tiny_app, "therapist")(*photo_slots(spot), *flag_values(changed=NOT_SURE, bleeding=YES))
    card, details, state = out[0], out[2], out[4]
    assert f"data-outcome='{REFER}'" in card
    by_key = {f.key: f.question for f in RED_FLAGS}
    assert details["client_answers"] == {by_key["changed"]: "Not sure", by_key["bleeding"]: "Yes"}
    result = TriageResult(**{k: v for k, v in state.items() if k in TriageResult.__dataclass_fields__})
    summary = summary_html(result, [], "")
    section = summary.split("Red-flag questions", 1)[1].split("<h3>", 1)[0]
    assert section.count("<li>") == len(RED_FLAGS)
    assert "Not sure" in section and "Yes" in section and section.count("Skipped") == len(RED_FLAGS) - 2
    assert "Not answered" in summary_html(TriageResult(MILIA, None), [], "")
