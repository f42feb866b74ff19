"""The data build on a synthetic dataset: copies are grouped, groups never straddle splits,
splits are seeded, bad files are dropped with a reason.

Planted copies are listed as their own manifest rows with no group column, so
only the build's own duplicate detection can tie them to their originals.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from triage.core.outcomes import OUTCOMES
from triage.core.preprocess import CANONICAL_SIZE, canonical_square
from triage.data import build as data
from triage.data.sources import Record, read_image_folder, read_manifest

N_ORIGINALS = 60
COPIES_PER_KIND = 2
PHOTO_SEED = 1000


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _recrop(image: Image.Image, share: float = 0.04) -> Image.Image:
    w, h = image.size
    dx, dy = round(share * w), round(share * h)
    return image.crop((dx, dy, w - dx, h - dy))


#: How each kind of planted copy is made from its original.
KINDS = {
    "hflip": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "rot90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "rot180": lambda im: im.transpose(Image.Transpose.ROTATE_180),
    "rot3": lambda im: im.rotate(3, resample=Image.Resampling.BILINEAR, expand=False),
    "resize70": lambda im: im.resize((round(0.7 * im.width), round(0.7 * im.height)), Image.Resampling.BOX),
    "jpeg60": lambda im: _jpeg(im, 60),
    "recrop4": _recrop,
}

#: Copy kinds the current thresholds (coarse 0.90 / fine 0.94 in triage/data/dedupe.py) do not catch.
#: Measured with signature() + find_pairs() on these synthetic photos (60 originals, same pipeline):
#: best dihedral correlation of copy vs original,
#:   rot3:    coarse 0.78-0.94 (median 0.89), fine 0.72-0.92 (median 0.84), caught 0/60;
#:   recrop4: coarse 0.84-0.94 (median 0.90), fine 0.82-0.93 (median 0.89), caught 0/60.
#: Real bundle photos behave alike (313 sampled across sources: rot3 caught 21, recrop4 40), so this
#: is a gap in the detector, not in the test images. Lowering the thresholds is no cure: at 0.80/0.80
#: the same 3,127 real photos give 1,938 candidate pairs instead of 67.
NOT_CAUGHT = {
    "rot3": "dedupe misses 3-degree rotations: fine correlation ~0.84 (median) < FINE_THRESHOLD 0.94",
    "recrop4": "dedupe misses a 4% re-crop per side: fine correlation ~0.89 (median) < FINE_THRESHOLD 0.94",
}


def _kind_param(kind: str):
    if kind in NOT_CAUGHT:
        return pytest.param(kind, marks=pytest.mark.xfail(strict=True, reason=NOT_CAUGHT[kind]))
    return kind


def _save(image: Image.Image, path: Path, quality: int = 92) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=quality)
    return path


def _read_rows(out: Path) -> dict[Path, dict]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as fh:
        return {Path(r["path"]): r for r in csv.DictReader(fh)}


class SyntheticSet:
    """A synthetic ImageFolder tree plus a manifest CSV listing the same files."""

    def __init__(self, root: Path, make_photo) -> None:
        self.root = root
        self.tree = root / "photos"
        self.originals: list[Path] = []
        self.copies: list[tuple[str, Path, Path]] = []  # (kind, copy, original)
        for i in range(N_ORIGINALS):
            outcome = OUTCOMES[i % len(OUTCOMES)]
            path = self.tree / outcome / f"orig_{i:02d}.jpg"
            self.originals.append(_save(make_photo(PHOTO_SEED + i), path))
        for k, kind in enumerate(KINDS):
            for j in range(COPIES_PER_KIND):
                original = self.originals[COPIES_PER_KIND * k + j]
                with Image.open(original) as im:
                    copy = KINDS[kind](im.convert("RGB"))
                path = original.parent / "copies" / f"{kind}_{original.stem}.jpg"
                _save(copy, path, quality=60 if kind == "jpeg60" else 92)
                self.copies.append((kind, path, original))
        self.manifest = root / "manifest.csv"
        with open(self.manifest, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "label", "source"])  # no group column: copies must be found
            for path in sorted(self.originals + [c for _, c, _ in self.copies]):
                outcome = path.relative_to(self.tree).parts[0]
                w.writerow([path.relative_to(root).as_posix(), outcome, "synthetic"])  # relative to the CSV

    @property
    def n_images(self) -> int:
        return len(self.originals) + len(self.copies)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, make_photo) -> SyntheticSet:
    return SyntheticSet(tmp_path_factory.mktemp("synthetic"), make_photo)


@pytest.fixture(scope="module")
def built(synthetic, tmp_path_factory) -> tuple[dict, Path, dict[Path, dict]]:
    """One seed-0 build of the manifest: (data card, out folder, manifest rows by path)."""
    out = tmp_path_factory.mktemp("build_seed0")
    card = data.build(read_manifest(synthetic.manifest), out, seed=0, workers=1)
    return card, out, _read_rows(out)


def test_build_keeps_every_good_image(synthetic, built):
    card, out, rows = built
    assert card["images_read"] == synthetic.n_images
    assert card["images_kept"] == synthetic.n_images
    assert card["dropped"] == {}
    assert set(rows) == {p.resolve() for p in synthetic.originals + [c for _, c, _ in synthetic.copies]}
    for name in ("manifest.csv", "data_card.json", "DATA_CARD.md", "fingerprint.txt"):
        assert (out / name).is_file(), name
    assert (out / f"cache_{CANONICAL_SIZE}.npy").is_file()
    # Every copy has its own bytes: the links must come from near-duplicate detection.
    assert "identical bytes" not in card["links"]
    assert card["links"]["near-duplicate"] >= sum(k not in NOT_CAUGHT for k, _, _ in synthetic.copies)


@pytest.mark.parametrize("kind", [_kind_param(k) for k in KINDS])
def test_planted_copy_lands_with_its_original(synthetic, built, kind):
    _, _, rows = built
    planted = [(c, o) for k, c, o in synthetic.copies if k == kind]
    assert planted
    for copy, original in planted:
        rc, ro = rows[copy.resolve()], rows[original.resolve()]
        assert rc["group"] == ro["group"], f"{kind} copy {copy.name} not grouped with {original.name}"
        assert rc["split"] == ro["split"]


def test_no_group_or_photo_straddles_splits(built):
    card, _, rows = built
    splits_of_group: dict[str, set[str]] = defaultdict(set)
    splits_of_sha: dict[str, set[str]] = defaultdict(set)
    for r in rows.values():
        splits_of_group[r["group"]].add(r["split"])
        splits_of_sha[r["sha256"]].add(r["split"])
    assert all(len(s) == 1 for s in splits_of_group.values())
    assert all(len(s) == 1 for s in splits_of_sha.values())
    assert card["groups_split_across_splits"] == 0
    assert {r["split"] for r in rows.values()} == set(data.SPLITS)


def test_distinct_images_are_not_merged(synthetic, built):
    card, _, rows = built
    groups_of_originals = [rows[p.resolve()]["group"] for p in synthetic.originals]
    merged = [g for g, c in Counter(groups_of_originals).items() if c > 1]
    assert merged == [], f"distinct synthetic photos merged into groups {merged}"
    sizes = Counter(r["group"] for r in rows.values())
    assert max(sizes.values()) <= 8
    assert card["largest_group"] <= 8
    assert card["groups_with_conflicting_outcomes"] == 0


def test_cache_rows_are_the_canonical_squares(built):
    card, out, rows = built
    cache = np.load(out / f"cache_{CANONICAL_SIZE}.npy", mmap_mode="r")
    assert cache.shape == (card["images_kept"], CANONICAL_SIZE, CANONICAL_SIZE, 3)
    assert sorted(int(r["cache_row"]) for r in rows.values()) == list(range(card["images_kept"]))
    for path, r in list(rows.items())[:3]:
        with Image.open(path) as im:
            np.testing.assert_array_equal(cache[int(r["cache_row"])], canonical_square(im.convert("RGB")))


def test_fingerprint_depends_on_seed_only(synthetic, built, tmp_path):
    _, out0, _ = built
    records = read_manifest(synthetic.manifest)
    data.build(records, tmp_path / "again", seed=0, workers=1, cache=False)
    data.build(records, tmp_path / "seed1", seed=1, workers=1, cache=False)
    fp0 = (out0 / "fingerprint.txt").read_text()
    assert (tmp_path / "again" / "fingerprint.txt").read_text() == fp0
    assert (tmp_path / "seed1" / "fingerprint.txt").read_text() != fp0


def test_image_folder_build_groups_copies(synthetic, tmp_path):
    records = read_image_folder(synthetic.tree)
    assert len(records) == synthetic.n_images  # copies sit in sub-folders: found at any depth
    card = data.build(records, tmp_path, seed=0, workers=1, cache=False)
    rows = _read_rows(tmp_path)
    assert card["groups_split_across_splits"] == 0
    for kind, copy, original in synthetic.copies:
        if kind not in NOT_CAUGHT:
            assert rows[copy.resolve()]["group"] == rows[original.resolve()]["group"], kind
    assert len({rows[p.resolve()]["group"] for p in synthetic.originals}) == len(synthetic.originals)


def test_cli_build_from_manifest(synthetic, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = data.main(
        [
            "build",
            "--sources",
            "none",
            "--manifest",
            str(synthetic.manifest),
            "--out",
            str(out),
            "--workers",
            "1",
            "--no-cache",
        ]
    )
    assert rc == 0
    assert '"groups_split_across_splits": 0' in capsys.readouterr().out
    assert (out / "manifest.csv").is_file() and (out / "fingerprint.txt").is_file()
    assert not (out / f"cache_{CANONICAL_SIZE}.npy").exists()


def test_bad_files_are_dropped_with_a_reason(tmp_path, make_photo, make_mosaic):
    good = [_save(make_photo(s), tmp_path / f"good_{s}.jpg") for s in range(4)]
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo\n" * 20)
    whole = _save(make_photo(50), tmp_path / "whole.jpg").read_bytes()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(whole[: len(whole) // 2])
    tiny = _save(make_photo(51, (20, 20)), tmp_path / "tiny.jpg")
    mosaic_path = _save(make_mosaic((60, 61, 62, 63)), tmp_path / "mosaic.jpg")
    acne_single = _save(make_photo(70, (256, 256)), tmp_path / "single.jpg")

    records = [Record(path=p, source="synthetic", labels=["other"], outcome="other") for p in good]
    records += [
        Record(path=p, source="synthetic", labels=["pustule"], outcome="pustule")
        for p in (empty, text, truncated, tiny)
    ]
    # Mosaics are looked for in the multi-label acne source only.
    records += [
        Record(path=p, source="roboflow_acne", labels=["Purulent"], outcome="pustule")
        for p in (mosaic_path, acne_single)
    ]
    records.append(
        Record(
            path=good[0],
            source="roboflow_acne",
            labels=["Papular"],
            outcome=None,
            exclude_reason="only generic labels: Papular",
        )
    )
    card = data.build(records, tmp_path / "out", seed=0, workers=1)
    assert card["dropped"] == {
        "empty file": 1,
        "unreadable": 1,
        "truncated": 1,
        "too small": 1,
        "2x2 mosaic": 1,
        "no target: generic labels only": 1,
    }
    assert card["dropped_by_source"]["synthetic"] == {"empty file": 1, "unreadable": 1, "truncated": 1, "too small": 1}
    assert card["images_kept"] == len(good) + 1
    kept = set(_read_rows(tmp_path / "out"))
    assert kept == {p.resolve() for p in [*good, acne_single]}
