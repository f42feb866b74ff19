"""Readers (manifest CSV, ImageFolder, registered bundle folders), group-aware splits, mosaic detection."""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from triage.core.outcomes import MILIA, OTHER, OUTCOMES, PUSTULE, REFER
from triage.data.mosaic import mosaic_score
from triage.data.sources import (
    REGISTRY,
    CountMismatch,
    Record,
    load_source,
    read_image_folder,
    read_manifest,
    write_manifest,
)
from triage.data.splits import SPLITS, split_groups

MOSAIC_THRESHOLD = 0.10  # what the data build uses for the multi-label acne source


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


# --- manifest CSV -------------------------------------------------------------------------------


def test_manifest_round_trip(tmp_path):
    def rec(name: str, outcome: str, source: str, group: str = "", fitz: int = -1) -> Record:
        return Record(tmp_path / name, source, [outcome], outcome, group=group, fitzpatrick=fitz)

    records = [
        rec("a.jpg", MILIA, "clinic", "p1", 2),
        rec("sub/b.png", PUSTULE, "clinic", "p1"),
        rec("c.jpg", OTHER, "phone", fitz=6),
        rec("d.jpg", REFER, "phone", "p2", 1),
    ]
    excluded = Record(path=tmp_path / "e.jpg", source="phone", labels=["Acne"], outcome=None)
    csv_path = tmp_path / "m.csv"
    write_manifest([*records, excluded], csv_path)
    back = read_manifest(csv_path)
    assert len(back) == len(records)  # records without a target are not written
    for r, b in zip(records, back, strict=True):
        assert b.path == r.path.resolve()
        assert b.outcome == r.outcome and b.labels == [r.outcome]
        assert (b.source, b.group, b.fitzpatrick) == (r.source, r.group, r.fitzpatrick)


def test_manifest_relative_paths_and_defaults(tmp_path):
    csv_path = _write_csv(
        tmp_path / "lists" / "mine.csv",
        ["path", "label", "fitzpatrick"],
        [
            ["imgs/a.jpg", MILIA, ""],
            ["../elsewhere/b.jpg", OTHER, "9"],
            [str(tmp_path / "abs.jpg"), REFER, "3"],
        ],
    )
    recs = read_manifest(csv_path, source_name="mine")
    assert [r.path for r in recs] == [
        tmp_path / "lists" / "imgs" / "a.jpg",
        tmp_path / "lists" / ".." / "elsewhere" / "b.jpg",
        tmp_path / "abs.jpg",
    ]
    assert {r.source for r in recs} == {"mine"}
    assert [r.fitzpatrick for r in recs] == [-1, -1, 3]  # out-of-range types become unknown
    assert {r.group for r in recs} == {""}


def test_manifest_rows_of_a_registered_source_get_its_cleanup(tmp_path):
    csv_path = _write_csv(
        tmp_path / "m.csv", ["path", "label", "source"], [["a.jpg", REFER, "dermnet_nz"], ["b.jpg", REFER, "clinic"]]
    )
    dermnet, clinic = read_manifest(csv_path)
    assert dermnet.crop_bottom == REGISTRY["dermnet_nz"].crop_bottom > 0
    assert clinic.crop_bottom == 0


@pytest.mark.parametrize("label", ["milia", "Pustule", "melanoma", "cant-assess", ""])
def test_manifest_rejects_unknown_label(tmp_path, label):
    csv_path = _write_csv(tmp_path / "m.csv", ["path", "label"], [["a.jpg", OTHER], ["b.jpg", label]])
    with pytest.raises(ValueError, match="label"):
        read_manifest(csv_path)


def test_manifest_short_row_is_a_value_error(tmp_path):
    csv_path = tmp_path / "m.csv"
    csv_path.write_text(f"path,label\na.jpg,{OTHER}\nb.jpg\n", encoding="utf-8")
    with pytest.raises(ValueError, match=":3: label"):
        read_manifest(csv_path)


@pytest.mark.parametrize("header", [["path"], ["label"], ["file", "label"], ["path", "outcome"]])
def test_manifest_rejects_missing_column(tmp_path, header):
    csv_path = _write_csv(tmp_path / "m.csv", header, [["a.jpg"] * len(header)])
    with pytest.raises(ValueError, match="lacks column"):
        read_manifest(csv_path)


# --- ImageFolder --------------------------------------------------------------------------------


def test_image_folder_finds_images_in_outcome_folders(tmp_path, make_photo):
    files = {
        MILIA: ["a.jpg", "nested/deeper/b.PNG"],
        PUSTULE: ["c.jpeg"],
        REFER: ["d.webp"],
    }
    for outcome, names in files.items():
        for i, name in enumerate(names):
            path = tmp_path / outcome / name
            path.parent.mkdir(parents=True, exist_ok=True)
            make_photo(i, (60, 60)).save(path)
    (tmp_path / MILIA / "notes.txt").write_text("not an image")
    (tmp_path / "README.md").write_text("loose files at the top are ignored")
    (tmp_path / OTHER).mkdir()  # an empty outcome folder is fine

    recs = read_image_folder(tmp_path, source_name="mine")
    got = {(r.path.relative_to(tmp_path).as_posix(), r.outcome) for r in recs}
    want = {(f"{o}/{n}", o) for o, names in files.items() for n in names}
    assert got == want
    assert all(r.labels == [r.outcome] and r.source == "mine" for r in recs)


def test_image_folder_rejects_unknown_folder(tmp_path):
    (tmp_path / MILIA).mkdir()
    (tmp_path / "melanoma").mkdir()
    with pytest.raises(ValueError, match="melanoma"):
        read_image_folder(tmp_path)


# --- registered bundle folders ------------------------------------------------------------------


def _fake_bundle(root: Path, name: str, rows: list[list[str]]) -> Path:
    _write_csv(root / name / "labels.csv", ["file", "labels", "source_split", "fitzpatrick", "isic_id"], rows)
    return root


def _expect_count(monkeypatch, name: str, count: int) -> None:
    """Pretend the registry expects ``count`` images of source ``name`` (undone after the test)."""
    monkeypatch.setitem(REGISTRY, name, dataclasses.replace(REGISTRY[name], expected_count=count))


def test_load_source_checks_the_count(tmp_path, monkeypatch):
    root = _fake_bundle(
        tmp_path,
        "msld_v2",
        [
            ["images/h1.jpg", "Healthy", "", "", ""],
            ["images/c1.jpg", "Chickenpox", "", "4", ""],
        ],
    )
    with pytest.raises(CountMismatch, match="msld_v2"):
        load_source("msld_v2", root)  # the registry expects 127 images
    assert len(load_source("msld_v2", root, check_count=False)) == 2

    _expect_count(monkeypatch, "msld_v2", 2)
    recs = load_source("msld_v2", root)
    assert [(r.path, r.outcome, r.fitzpatrick) for r in recs] == [
        (root / "msld_v2" / "images" / "h1.jpg", OTHER, -1),
        (root / "msld_v2" / "images" / "c1.jpg", REFER, 4),
    ]


def test_labels_csv_reader_maps_multi_labels_and_links(tmp_path, monkeypatch):
    root = _fake_bundle(
        tmp_path,
        "roboflow_acne",
        [
            ["images/a.jpg", "Whitehead;Purulent", "train", "", ""],
            ["images/b.jpg", "Papular;Acne", "train", "", ""],
        ],
    )
    _fake_bundle(root, "ham10000", [["images/ISIC_1.jpg", "MEL", "", "", "ISIC_1"]])
    _expect_count(monkeypatch, "roboflow_acne", 2)
    _expect_count(monkeypatch, "ham10000", 1)
    a, b = load_source("roboflow_acne", root)
    assert (a.outcome, a.labels) == (PUSTULE, ["Whitehead", "Purulent"])
    assert b.outcome is None and b.exclude_reason
    (mel,) = load_source("ham10000", root)
    assert (mel.outcome, mel.link_id) == (REFER, "ISIC_1")


def test_dermnet_declares_its_watermark_crop(tmp_path, monkeypatch):
    root = _fake_bundle(tmp_path, "dermnet_nz", [["images/x-01.jpg", "Acanthoma fissuratum", "", "", ""]])
    _expect_count(monkeypatch, "dermnet_nz", 1)
    (rec,) = load_source("dermnet_nz", root)
    assert REGISTRY["dermnet_nz"].crop_bottom > 0
    assert rec.crop_bottom == REGISTRY["dermnet_nz"].crop_bottom


def test_load_source_missing_folder_and_unknown_name(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_source("ascid", tmp_path)
    with pytest.raises(KeyError):
        load_source("no_such_source", tmp_path)


# --- splits -------------------------------------------------------------------------------------


def test_split_shares_on_singletons():
    n = 1000
    splits = split_groups(list(range(n)), ["pustule|x"] * n, seed=0)
    counts = Counter(splits)
    for name, share in zip(SPLITS, (0.70, 0.15, 0.15), strict=True):
        assert abs(counts[name] / n - share) <= 0.03, counts


def test_split_keeps_groups_whole_and_stratifies():
    rng = np.random.default_rng(0)
    groups, strata = [], []
    for g in range(400):
        size = int(rng.choice([1, 1, 1, 2, 3, 5]))
        stratum = OUTCOMES[g % 4]
        groups += [g] * size
        strata += [stratum] * size
    splits = split_groups(groups, strata, seed=3)
    by_group: dict[int, set[str]] = defaultdict(set)
    for g, s in zip(groups, splits, strict=True):
        by_group[g].add(s)
    assert all(len(s) == 1 for s in by_group.values())
    for outcome in OUTCOMES:
        got = Counter(s for s, st in zip(splits, strata, strict=True) if st == outcome)
        total = sum(got.values())
        assert abs(got["train"] / total - 0.70) <= 0.05, (outcome, got)
        assert got["val"] > 0 and got["test"] > 0, (outcome, got)


def test_split_is_seeded():
    groups = [i // 2 for i in range(300)]
    strata = ["a"] * 300
    assert split_groups(groups, strata, seed=5) == split_groups(groups, strata, seed=5)
    assert split_groups(groups, strata, seed=5) != split_groups(groups, strata, seed=6)


# --- mosaics ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seeds", [(1, 2, 3, 4), (10, 11, 12, 13), (40, 41, 42, 43)])
def test_mosaic_of_four_photos_is_detected(make_mosaic, seeds):
    assert mosaic_score(make_mosaic(seeds)) >= MOSAIC_THRESHOLD


@pytest.mark.parametrize("seed", [1, 2, 3, 10, 70])
def test_single_textured_photo_is_not_a_mosaic(make_photo, seed):
    photo = make_photo(seed)
    assert np.asarray(photo.convert("L")).std() > 10  # textured, not flat
    assert mosaic_score(photo) < MOSAIC_THRESHOLD
