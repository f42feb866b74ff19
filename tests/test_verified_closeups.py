"""The verified close-ups: a seeded subset of the close-up test set, each crop judged by eye.

``results/verified_closeups.csv`` must stay the subset that ``triage.research.closeups.verification_sample`` draws
from ``models/closeup_test_manifest.csv`` (150 per outcome, more for ``VERIFY_CAPS``), with a valid verdict on
every row; the crop a verdict was given on must be the crop ``evaluate`` scores (EXIF orientation applied, then
the box).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from helpers import load_script
from PIL import Image

from triage.core.outcomes import OUTCOMES
from triage.data.sources import read_manifest
from triage.research import analysis as A
from triage.research import closeups as C

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "models" / "closeup_test_manifest.csv"
VERIFIED = REPO / "results" / "verified_closeups.csv"


def _without_verdict(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k != "verdict"} for r in rows]


def test_verdict_csv_is_the_seeded_subset_of_the_manifest():
    manifest, verified = A.read_rows(MANIFEST), A.read_rows(VERIFIED)
    assert list(verified[0]) == [*manifest[0], "verdict"]
    # Same rows, same order: the committed subset is the one the seed draws.
    drawn = C.verification_sample(manifest, per_outcome=150, seed=C.VERIFY_SEED, caps=C.VERIFY_CAPS)
    assert _without_verdict(verified) == drawn
    per_outcome = {o: sum(r["label"] == o for r in verified) for o in OUTCOMES}
    available = {o: sum(r["label"] == o for r in manifest) for o in OUTCOMES}
    assert per_outcome == {o: min(C.VERIFY_CAPS.get(o, 150), available[o]) for o in OUTCOMES}
    assert per_outcome["pustule"] > 150


def test_the_enlarged_outcome_keeps_the_first_draw():
    """Verdicts given on the 150-per-outcome draw stay valid: the larger pustule draw holds every one of its rows."""
    manifest = A.read_rows(MANIFEST)
    first = {id(r) for r in C.verification_sample(manifest, per_outcome=150, seed=C.VERIFY_SEED)}
    enlarged = {id(r) for r in C.verification_sample(manifest, per_outcome=150, caps=C.VERIFY_CAPS)}
    assert first < enlarged


def test_every_verdict_is_valid_and_some_crops_pass():
    rows = A.read_rows(VERIFIED)
    assert {r["verdict"] for r in rows} <= set(C.VERDICTS)
    counts = C.verified_counts(rows)
    assert [c["outcome"] for c in counts] == list(OUTCOMES)
    assert all(c["n"] == c["yes"] + c["no"] + c["unsure"] for c in counts)
    assert all(c["yes"] > 0 for c in counts)
    # Enough verified pustules to measure pustule recall on (the reason pustules have their own cap).
    assert next(c for c in counts if c["outcome"] == "pustule")["yes"] >= 40


def test_verdict_paths_resolve_to_the_manifest_photos():
    """The CSV keeps the manifest's paths; they resolve from results/ to the same photos as from models/."""
    verified = read_manifest(VERIFIED)
    by_key = {(r.path.resolve(), r.box) for r in read_manifest(MANIFEST)}
    assert all((r.path.resolve(), r.box) in by_key and r.box is not None for r in verified)


def _rows(counts: dict[str, int]) -> list[dict[str, str]]:
    return [{"path": f"{o}_{i}.jpg", "label": o, "box": "0,0,8,8"} for o, n in counts.items() for i in range(n)]


def test_sample_caps_each_outcome_and_keeps_manifest_order():
    rows = _rows({"milia-like": 5, "pustule": 40, "other": 12, "refer-to-doctor": 0})
    picked = C.verification_sample(rows, per_outcome=10, seed=3)
    assert [sum(r["label"] == o for r in picked) for o in OUTCOMES] == [5, 10, 10, 0]
    assert [rows.index(r) for r in picked] == sorted(rows.index(r) for r in picked)
    assert C.verification_sample(rows, per_outcome=10, seed=3) == picked
    assert C.verification_sample(rows, per_outcome=10, seed=4) != picked


def test_one_outcomes_sample_does_not_move_when_another_outcome_grows():
    small = _rows({"milia-like": 30, "pustule": 30, "other": 30, "refer-to-doctor": 30})
    grown = _rows({"milia-like": 30, "pustule": 90, "other": 30, "refer-to-doctor": 30})

    def paths(rows, outcome):
        return [r["path"] for r in C.verification_sample(rows, per_outcome=10) if r["label"] == outcome]

    assert paths(small, "other") == paths(grown, "other")
    assert paths(small, "pustule") != paths(grown, "pustule")


def test_a_raised_cap_adds_rows_to_one_outcome_and_keeps_the_smaller_draws():
    rows = _rows({"milia-like": 30, "pustule": 90, "other": 30, "refer-to-doctor": 30})

    def draw(**caps):
        return C.verification_sample(rows, per_outcome=10, seed=5, caps=caps)

    def by_outcome(picked, outcome):
        return {r["path"] for r in picked if r["label"] == outcome}

    plain, bigger, biggest = draw(), draw(pustule=25), draw(pustule=60)
    assert [len(by_outcome(biggest, o)) for o in OUTCOMES] == [10, 60, 10, 10]
    assert by_outcome(plain, "pustule") < by_outcome(bigger, "pustule") < by_outcome(biggest, "pustule")
    assert all(by_outcome(plain, o) == by_outcome(biggest, o) for o in OUTCOMES if o != "pustule")
    assert [rows.index(r) for r in biggest] == sorted(rows.index(r) for r in biggest)
    assert len(by_outcome(draw(pustule=500), "pustule")) == 90  # all of them when the cap exceeds the rows
    assert draw(pustule=10) == plain


@pytest.mark.parametrize("caps", [{"pustule": 5}, {"acne": 20}])
def test_caps_below_the_first_draw_or_for_unknown_outcomes_are_refused(caps):
    with pytest.raises(ValueError):
        C.verification_sample(_rows({"pustule": 30}), per_outcome=10, caps=caps)


def test_closeup_crop_applies_exif_orientation_before_the_box(tmp_path):
    # Stored 400 x 200, red left half and blue right half; orientation 6 shows it turned 90 degrees clockwise,
    # so the displayed photo is 200 x 400 with red on top. A box in display pixels must cut red at the top.
    stored = np.zeros((200, 400, 3), np.uint8)
    stored[:, :200] = (220, 30, 30)
    stored[:, 200:] = (30, 30, 220)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "turned.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    manifest = tmp_path / "m.csv"
    manifest.write_text('path,label,box\nturned.jpg,pustule,"10,10,190,190"\nturned.jpg,pustule,"10,210,190,390"\n')
    top, bottom = (C.closeup_crop(r) for r in read_manifest(manifest))
    assert top.size == bottom.size == (180, 180)
    assert np.asarray(top).mean((0, 1))[0] > 150 and np.asarray(bottom).mean((0, 1))[2] > 150


def test_contact_sheet_lays_out_numbered_tiles():
    crops = [Image.new("RGB", (40, 30), (200, 150, 120)) for _ in range(7)]
    sheet = C.contact_sheet(crops, list(range(1, 8)), ncols=5, tile=100)
    assert sheet.size == (5 * 104 + 4, 2 * 104 + 4)
    tile = np.asarray(sheet)[4:104, 4:104]
    assert (tile == (200, 150, 120)).all(-1).mean() > 0.7  # the crop fills the tile around its number
    assert ((tile == (200, 150, 120)).all(-1)).mean() < 1.0  # and the number is drawn on it


def test_template_command_writes_the_same_subset(tmp_path):
    script = _load_script()
    out = tmp_path / "elsewhere" / "template.csv"
    assert script.main(["template", "--out", str(out)]) == 0
    written, committed = read_manifest(out), read_manifest(VERIFIED)
    # Paths are rewritten relative to the new CSV's folder, so compare the photos they point at.
    assert [(r.path.resolve(), r.box, r.outcome) for r in written] == [
        (r.path.resolve(), r.box, r.outcome) for r in committed
    ]
    assert {r["verdict"] for r in A.read_rows(out)} == {""}
    with pytest.raises(SystemExit):  # never overwrites verdicts by accident
        script.main(["template", "--out", str(out)])


def _load_script():
    return load_script("scripts/verify_closeups.py")


def test_extend_keeps_every_verdict_and_adds_the_new_rows_unjudged(tmp_path):
    script = _load_script()
    out = tmp_path / "verdicts.csv"
    assert script.main(["template", "--out", str(out), "--cap", "pustule=150"]) == 0
    first = A.read_rows(out)
    given = [dict(r, verdict=("yes", "no", "unsure")[i % 3]) for i, r in enumerate(first)]
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(given[0]))
        w.writeheader()
        w.writerows(given)
    assert script.main(["extend", "--out", str(out)]) == 0
    extended = A.read_rows(out)
    assert [(r.path.resolve(), r.box, r.outcome) for r in read_manifest(out)] == [
        (r.path.resolve(), r.box, r.outcome) for r in read_manifest(VERIFIED)
    ]
    judged = [r for r in extended if r["verdict"]]
    assert judged == given  # every verdict kept, on its row, in the same order
    assert len(extended) - len(judged) == C.VERIFY_CAPS["pustule"] - 150
    assert {r["label"] for r in extended if not r["verdict"]} == {"pustule"}
    with pytest.raises(SystemExit):  # a draw that would drop judged rows is refused
        script.main(["extend", "--out", str(out), "--seed", "1"])
    assert A.read_rows(out) == extended
