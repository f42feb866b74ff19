"""Tap the spot and several photos of one area, end to end: the API through a real ``gradio_client`` (the app
served by ``serve.py`` on the tiny model), the command line, and the answers the tabs build from several photos.
Every bad input gets a plain sentence and spoils nothing else."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import add_grain, files_left_after
from gradio_client import Client, handle_file
from PIL import Image
from test_app import assert_well_formed, is_sentence

from triage.__main__ import main as cli
from triage.app.layout import PhotoAnswer, lead_answer, photo_answers_html
from triage.core.outcomes import CANT_ASSESS, OUTCOMES
from triage.inference.engine import CROP_TOO_SMALL_MESSAGE, TAP_LOW_RES_MESSAGE, TAP_NOT_SKIN_MESSAGE, TriageResult
from triage.inference.tap import MAX_PHOTOS, POINT_FORMAT_MESSAGE, POINT_OUTSIDE_MESSAGE, TOO_MANY_PHOTOS_MESSAGE


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    """A ``gradio_client`` connected to the running app."""
    return Client(app_url + "/", verbose=False)


@pytest.fixture(scope="module")
def spot(make_photo, tmp_path_factory):
    """A usable generated photo (400 x 300 px) on disk."""
    path = tmp_path_factory.mktemp("tap") / "cheek.jpg"
    add_grain(make_photo(31, (400, 300))).save(path, "JPEG", quality=90)
    return path


def half_skin_half_blue(path, make_photo):
    """600 x 300: skin-like on the left half, a blue wall on the right half."""
    arr = np.asarray(add_grain(make_photo(32, (600, 300)))).copy()
    arr[:, 300:] = np.clip(np.array([40, 90, 200]) + np.random.default_rng(0).normal(0, 8, (300, 300, 1)), 0, 255)
    Image.fromarray(arr.astype(np.uint8)).save(path, "JPEG", quality=90)
    return path


# -- the API -----------------------------------------------------------------------------------------------------


def test_api_with_a_point_judges_the_framed_area_around_it(client, spot):
    whole = client.predict(handle_file(str(spot)), api_name="/triage")
    tapped = client.predict(handle_file(str(spot)), point="0.3,0.6", api_name="/triage")

    assert_well_formed(whole)
    assert_well_formed(tapped)
    assert "area" not in whole and "point" not in whole  # no tap: the whole photo, as before
    assert tapped["point"] == [0.3, 0.6]
    left, top, right, bottom = tapped["area"]
    # The largest crop: 60% of the shorter side (180 of 300 px), centred on the tap (120, 180 px).
    assert (left, top, right, bottom) == pytest.approx((30 / 400, 90 / 300, 210 / 400, 270 / 300), abs=1e-3)
    # The checks ran on what was judged: the framed 180 px square, not the 400 x 300 photo.
    assert (tapped["quality"]["width"], tapped["quality"]["height"]) == (180, 180)
    assert tapped["outcome"] in OUTCOMES and set(tapped["probabilities"]) == set(OUTCOMES)


@pytest.mark.parametrize(("point", "message"), [("2,x", POINT_FORMAT_MESSAGE), ("1.5,0.5", POINT_OUTSIDE_MESSAGE)])
def test_api_bad_point_gets_a_plain_error_and_the_photo_is_still_deleted(client, app_server, spot, point, message):
    result = client.predict(handle_file(str(spot)), point=point, api_name="/triage")
    assert result == {"error": message}
    assert is_sentence(result["error"])
    assert not files_left_after(app_server.temp_dir)  # refused for its point, the upload is gone all the same


def test_api_tap_on_a_photo_too_small_to_crop_says_take_a_closer_photo(client, make_photo, tmp_path):
    path = tmp_path / "tiny.png"
    add_grain(make_photo(33, (60, 60))).save(path, "PNG")  # under the 64 px a crop needs
    result = client.predict(handle_file(str(path)), point="0.5,0.5", api_name="/triage")
    assert result["outcome"] == CANT_ASSESS and result["reason_codes"] == ["crop_too_small"]
    assert result["reasons"] == [CROP_TOO_SMALL_MESSAGE] and "closer photo" in CROP_TOO_SMALL_MESSAGE
    assert result["probabilities"] is None


def test_api_tap_on_a_small_photo_judges_the_square_around_it_and_says_a_closer_photo_helps(client, spot, tmp_path):
    small = tmp_path / "small.jpg"
    Image.open(spot).resize((160, 120)).save(small, "JPEG", quality=95)
    result = client.predict(handle_file(str(small)), point="0.2,0.5", api_name="/triage")
    assert result["area"] == [0.0, 0.0, 0.75, 1.0]  # the 120 px square around the tap, shifted inside the photo
    assert "tap_low_resolution" in result["reason_codes"] and TAP_LOW_RES_MESSAGE in result["reasons"]


def test_api_tap_on_something_that_is_not_skin(client, make_photo, tmp_path):
    path = half_skin_half_blue(tmp_path / "wall.jpg", make_photo)
    on_wall = client.predict(handle_file(str(path)), point="0.85,0.5", api_name="/triage")
    on_skin = client.predict(handle_file(str(path)), point="0.15,0.5", api_name="/triage")

    assert on_wall["outcome"] == CANT_ASSESS and "too_little_skin" in on_wall["reason_codes"]
    assert on_wall["reasons"][0] == TAP_NOT_SKIN_MESSAGE and all(is_sentence(r) for r in on_wall["reasons"])
    assert "too_little_skin" not in on_skin["reason_codes"]  # the same photo, tapped on the skin


# -- the command line --------------------------------------------------------------------------------------------


def run_cli(capsys, *args: str) -> tuple[int, list | str, str]:
    code = cli(["predict", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if "--json" in args and code == 0 else out), err


def test_cli_point_with_json(capsys, tiny_model, spot):
    code, rows, _ = run_cli(capsys, str(spot), "--point", "0.3,0.6", "--json", "--model", str(tiny_model))
    assert code == 0 and rows[0]["point"] == [0.3, 0.6] and len(rows[0]["area"]) == 4


def test_cli_points_per_photo_and_a_malformed_one_loses_nothing_else(capsys, tiny_model, spot, tmp_path):
    other = tmp_path / "other.jpg"
    Image.open(spot).rotate(90, expand=True).save(other, "JPEG")
    code, rows, err = run_cli(
        capsys, str(spot), str(other), str(spot), "--point", "2,x", "--point", "-", "--point", "0.5,0.5",
        "--json", "--model", str(tiny_model),
    )  # fmt: skip
    assert code == 0 and "Traceback" not in err
    assert rows[0] == {"file": str(spot), "error": POINT_FORMAT_MESSAGE}
    assert rows[1]["outcome"] and "point" not in rows[1]  # "-": this photo judged whole
    assert rows[2]["point"] == [0.5, 0.5]


def test_cli_more_points_than_photos_is_a_plain_usage_error(capsys, tiny_model, spot):
    code, _, err = run_cli(capsys, str(spot), "--point", "0.1,0.1", "--point", "0.2,0.2", "--model", str(tiny_model))
    assert code == 2 and "at most one per photo" in err and "Traceback" not in err


def test_cli_combine_takes_three_photos_and_says_so_about_a_fourth(capsys, tiny_model, spot, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(Image.open(spot).tobytes()[:500])  # not a photo at all
    photos = [str(spot), str(broken), str(spot), str(spot)]
    code, rows, _ = run_cli(capsys, *photos, "--point", "0.4,0.4", "--combine", "--json", "--model", str(tiny_model))
    assert code == 0 and len(rows) == 5
    assert rows[0]["point"] == [0.4, 0.4]
    assert set(rows[1]) == {"file", "error"} and is_sentence(rows[1]["error"])  # unreadable: the others go on
    assert "outcome" in rows[2]
    assert rows[3] == {"file": str(spot), "error": TOO_MANY_PHOTOS_MESSAGE} and MAX_PHOTOS == 3
    combined = rows[4]["combined"]
    assert "the most careful of the 2 photos checked" in combined["reasons"][0]


def test_cli_text_output_says_which_spot_was_judged(capsys, tiny_model, spot):
    code, out, _ = run_cli(capsys, str(spot), "--point", "0.3,0.6", "--model", str(tiny_model))
    assert code == 0 and "around the spot at 0.30,0.60" in out


# -- several photos in the tabs ----------------------------------------------------------------------------------


def _result(outcome: str, area: list[float] | None = None) -> TriageResult:
    probs = None if outcome == CANT_ASSESS else dict.fromkeys(OUTCOMES, 0.25)
    point = None if area is None else [(area[0] + area[2]) / 2, (area[1] + area[3]) / 2]
    return TriageResult(outcome, probs, reasons=[f"{outcome} reason."], point=point, area=area)


def test_the_most_cautious_photo_leads_and_is_named():
    image = Image.new("RGB", (400, 300), (200, 150, 130))
    answers = [
        PhotoAnswer(1, _result("milia-like", [0.1, 0.1, 0.6, 0.77]), image),
        PhotoAnswer(2, error="This file doesn't look like a photo. Please send a JPEG, PNG or HEIC photo."),
        PhotoAnswer(3, _result("pustule"), image),
    ]
    lead, driver = lead_answer(answers)
    assert lead.outcome == "pustule" and driver.number == 3
    assert lead.reasons[0] == "Photo 3 led this answer: the most careful of the 2 photos checked."
    page = photo_answers_html(answers)
    assert page.count("<img") == 2 and "Photo 2:</strong> This file doesn" in page
    assert "framed area around the spot you tapped" in page and "(the whole photo)" in page


def test_one_photo_without_a_tap_shows_no_extra_picture():
    image = Image.new("RGB", (400, 300), (200, 150, 130))
    answers = [PhotoAnswer(1, _result("other"), image)]
    lead, driver = lead_answer(answers)
    assert lead is answers[0].result and driver is answers[0]
    assert photo_answers_html(answers) == ""
    tapped = [PhotoAnswer(1, _result("other", [0.2, 0.2, 0.8, 1.0]), image)]
    assert "<img src='data:image/jpeg;base64," in photo_answers_html(tapped)
