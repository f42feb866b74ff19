"""Several photos of one area: the answer that sends the person to a doctor (or away from an extraction) leads.

Every pair of answers goes through the two public ways of combining photos, the app (both tabs lead with
:func:`triage.app.layout.lead_answer`, and the printable summary takes its verdict from the lead) and
``python -m triage predict --combine --json``. Which answer each photo gets is scripted here (the model's part
is tested elsewhere); what is under test is the combining and what each entry point shows of it. With the
bundled data beside the repository, a real referral and a blurred copy of the same photo go end to end through
the shipped model, in the CLI and in the app's client handler.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import REPO, shared_photo
from PIL import Image, ImageFilter

from triage import __main__ as cli
from triage.app.layout import HEADLINES, PhotoAnswer, lead_answer, outcome_card, summary_html
from triage.core.outcomes import CANT_ASSESS, MILIA, OTHER, OUTCOMES, PUSTULE, REFER
from triage.core.red_flags import RED_FLAGS
from triage.inference.engine import Triage, TriageResult

#: Most cautious first (triage.core.outcomes.ANSWER_CAUTION): a referral leads whatever else the photos gave.
ORDER = [REFER, OTHER, CANT_ASSESS, PUSTULE, MILIA]
PAIRS = [(a, b) for a in ORDER for b in ORDER]


def scripted(outcome: str, name: str) -> TriageResult:
    probs = None if outcome == CANT_ASSESS else {o: (0.7 if o == outcome else 0.1) for o in OUTCOMES}
    return TriageResult(outcome, probs, reasons=[f"Reason of {name}."], reason_codes=[f"code-{outcome}"])


def expected_lead(first: str, second: str) -> str:
    return min(first, second, key=ORDER.index)


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=lambda o: o)
def test_app_leads_with_the_more_cautious_answer_in_the_card_and_the_summary(first, second):
    image = Image.new("RGB", (300, 300), (200, 150, 130))
    answers = [PhotoAnswer(1, scripted(first, "one"), image), PhotoAnswer(2, scripted(second, "two"), image)]
    lead, driver = lead_answer(answers)
    want = expected_lead(first, second)
    assert lead.outcome == want and driver.number == (1 if first == want else 2)
    card = outcome_card(lead)
    assert f"data-outcome='{want}'" in card and HEADLINES[want] in card
    verdict = re.search(r"<h2>.*?</h2>\s*<p>(.*?)</p>", summary_html(lead, [], ""), re.S).group(1)
    if REFER in (first, second):
        assert "doctor" in verdict and "clearer photo" not in verdict
    if want != MILIA:
        assert "Ready to book" not in verdict


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=lambda o: o)
def test_cli_combine_json_leads_with_the_more_cautious_answer(first, second, tiny_model, tmp_path, monkeypatch, capsys):
    photos = {}
    for name, outcome in (("one.jpg", first), ("two.jpg", second)):
        path = tmp_path / name
        Image.new("RGB", (64, 64), (200, 150, 130)).save(path)
        photos[str(path)] = outcome

    def predict_path(self, path, point=None):
        result = scripted(photos[str(path)], Path(path).name)
        result.file = str(path)
        return result

    monkeypatch.setattr(Triage, "predict_path", predict_path)
    assert cli.main(["predict", *photos, "--combine", "--json", "--model", str(tiny_model)]) == 0
    combined = json.loads(capsys.readouterr().out)[-1]["combined"]
    want = expected_lead(first, second)
    lead_file = next(p for p, o in photos.items() if o == want)
    assert combined["outcome"] == want
    assert combined["reasons"][0].startswith(f"{lead_file} led this answer")
    others_declined = [p for p, o in photos.items() if o == CANT_ASSESS and p != lead_file]
    assert any("could not be assessed" in r for r in combined["reasons"]) == bool(others_declined)


# -- end to end with the shipped model and a real photo --------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> Triage:
    return Triage.load()


@pytest.fixture(scope="module")
def referral_and_blurred_copy(shared_data, shipped, tmp_path_factory) -> tuple[Path, Path]:
    """A test-split photo the shipped model refers, and a blurred copy of it (the photo-quality gate declines it)."""
    import csv

    folder = tmp_path_factory.mktemp("referral")
    rows = csv.DictReader((REPO / "models" / "test_manifest.csv").open(encoding="utf-8"))
    for row in rows:
        if row["label"] != REFER:
            continue
        path = shared_photo(shared_data, row["path"])
        if shipped.predict_path(path).outcome != REFER:
            continue
        blurred = folder / "blurred.jpg"
        Image.open(path).convert("RGB").filter(ImageFilter.GaussianBlur(8)).save(blurred, quality=90)
        if shipped.predict_path(blurred).outcome == CANT_ASSESS:
            sharp = folder / "sharp.jpg"
            sharp.write_bytes(path.read_bytes())
            return sharp, blurred
    pytest.fail("no test-split referral photo that the shipped model refers and declines when blurred")


@pytest.mark.shared
def test_cli_a_referral_beside_a_blurred_photo_leads_with_the_doctor(referral_and_blurred_copy, capsys):
    sharp, blurred = referral_and_blurred_copy
    assert cli.main(["predict", str(blurred), str(sharp), "--combine", "--json"]) == 0
    combined = json.loads(capsys.readouterr().out)[-1]["combined"]
    assert combined["outcome"] == REFER
    assert combined["reasons"][:2] == [
        f"{sharp} led this answer: the most careful of the 2 photos checked.",
        f"{blurred} could not be assessed: please retake it.",
    ]


@pytest.mark.shared
def test_app_a_referral_beside_a_blurred_photo_leads_with_the_doctor(referral_and_blurred_copy, shipped):
    from triage.app.layout import build_app

    app = build_app(shipped)
    handler = next(f.fn for f in app.fns.values() if getattr(f.fn, "__name__", "") == "client")
    sharp, blurred = referral_and_blurred_copy
    # The handler takes photo, point, photo, point...: the blurred photo first, the referral second.
    skipped = [None] * len(RED_FLAGS)  # the red-flag questions, not answered
    card, education = handler({"path": str(blurred)}, None, {"path": str(sharp)}, None, *skipped)
    assert sharp.is_file() and blurred.is_file(), "a file outside the upload folder must not be deleted"
    lead = re.search(r"<div class='outcome-card'[^>]*data-outcome='([^']+)'>\s*<h2>(.*?)</h2>", card)
    assert lead.groups() == (REFER, "Please have a doctor check this spot soon")
    assert "Photo 2 led this answer" in card and "Photo 1 could not be assessed" in card
    assert education.lstrip().startswith("#")
