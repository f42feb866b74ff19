"""Build the processed dataset: ``python -m triage.data build --out data/processed``.

Reads every registered source from the data root, drops unreadable /
truncated / too-small images and 2x2 mosaics, groups copies of one photo
(exact bytes, shared ISIC ids, near-duplicates across all sources), makes
seeded, stratified, group-aware train / val / test splits and writes:

* ``manifest.csv`` - one row per kept image (path, outcome, source, labels,
  group, split, fitzpatrick, sha256, cache_row);
* ``cache_<size>.npy`` - canonical squares of every kept image, for fast training (176 px; other sides
  on demand: ``python -m triage.data cache --size 256``, :mod:`triage.data.cache`);
* ``DATA_CARD.md`` and ``data_card.json`` - counts, drops, duplicate groups;
* ``fingerprint.txt`` - sha256 of the sorted (sha256, split) pairs.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from triage.core.pixels import upright_rgb
from triage.core.preprocess import CANONICAL_SIZE, canonical_square, crop_bottom
from triage.data.cache import photo_cache_path, write_caches
from triage.data.card import data_card, render_data_card
from triage.data.crops import build_crops
from triage.data.dedupe import UnionFind, find_pairs, signature
from triage.data.mosaic import mosaic_score
from triage.data.sources import (
    REGISTRY,
    Record,
    load_source,
    read_image_folder,
    read_manifest,
    read_parents,
    write_split_manifest,
)
from triage.data.splits import SPLITS, fingerprint, split_groups

MIN_SIDE = 48
MOSAIC_SOURCES = {"roboflow_acne"}
MOSAIC_THRESHOLD = 0.10


@dataclass
class Scanned:
    """What one pass over an image file yields."""

    sha256: str = ""
    error: str = ""  # drop reason, empty when the image is usable
    width: int = 0
    height: int = 0
    mosaic: float = 0.0
    coarse: np.ndarray | None = None
    fine: np.ndarray | None = None
    square: np.ndarray | None = None


def scan_image(path: Path, crop_share: float = 0.0, check_mosaic: bool = False) -> Scanned:
    """Hash, decode, check and summarise one image file; never raises for bad files."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return Scanned(error="unreadable")
    out = Scanned(sha256=hashlib.sha256(data).hexdigest())
    if not data:
        out.error = "empty file"
        return out
    try:
        from io import BytesIO

        with Image.open(BytesIO(data)) as im:
            image = upright_rgb(im)  # as serving decodes it: EXIF orientation applied, alpha on white
    except (OSError, SyntaxError) as err:
        out.error = "truncated" if "truncated" in str(err).lower() else "unreadable"
        return out
    except (Image.DecompressionBombError, ValueError):
        out.error = "unreadable"
        return out
    out.width, out.height = image.size
    if min(image.size) < MIN_SIDE:
        out.error = "too small"
        return out
    image = crop_bottom(image, crop_share)
    if check_mosaic:
        out.mosaic = mosaic_score(image)
    out.coarse, out.fine = signature(image)
    out.square = canonical_square(image, CANONICAL_SIZE)
    return out


def _scan_job(args: tuple) -> Scanned:
    return scan_image(*args)


def scan_all(records: list[Record], workers: int) -> list[Scanned]:
    """Scan every record with a process pool and a progress bar."""
    jobs = [(r.path, r.crop_bottom, r.source in MOSAIC_SOURCES) for r in records]
    if workers <= 1:
        return [scan_image(*j) for j in tqdm(jobs, desc="scan", unit="img")]
    with ProcessPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(_scan_job, jobs, chunksize=64), total=len(jobs), desc="scan", unit="img"))


def assign_groups(records: list[Record], scans: list[Scanned]) -> tuple[list[int], dict]:
    """Union copies of one photo: same bytes, same link id, same caller group, near-duplicates.

    Returns:
        per-record group ids, and statistics on how links were found.
    """
    n = len(records)
    uf = UnionFind(n)
    stats = Counter()
    for key_name, keys in (
        ("identical bytes", [s.sha256 for s in scans]),
        ("shared ISIC id", [r.link_id for r in records]),
        ("given group", [r.group for r in records]),
    ):
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            if not k:
                continue
            if k in first:
                if uf.find(i) != uf.find(first[k]):
                    stats[key_name] += 1
                uf.union(i, first[k])
            else:
                first[k] = i
    coarse = np.stack([s.coarse for s in scans]) if n else np.zeros((0, 1))
    fine = np.stack([s.fine for s in scans]) if n else np.zeros((0, 1))
    pairs = find_pairs(coarse, fine)
    cross = 0
    for i, j, _ in pairs:
        if uf.find(i) != uf.find(j):
            stats["near-duplicate"] += 1
        uf.union(i, j)
        cross += records[i].source != records[j].source
    stats["near-duplicate pairs"] = len(pairs)
    stats["near-duplicate pairs across sources"] = cross
    return uf.groups(), dict(stats)


def collect_records(data_root: Path | None, sources: list[str], manifests: list[str], folders: list[str]):
    """Read the chosen registered sources plus any manifest CSVs / ImageFolder trees."""
    records: list[Record] = []
    for name in sources:
        records += load_source(name, data_root)
    for m in manifests:
        records += read_manifest(m)
    for f in folders:
        records += read_image_folder(f)
    return records


def build(
    records: list[Record], out: Path, seed: int = 0, workers: int = 2, cache: bool = True, crops: bool = True
) -> dict:
    """Run the whole build over ``records`` and write the outputs into ``out``.

    With ``crops`` (and ``cache``), lesion-centred crops of the eligible photos are cut as well
    (:mod:`triage.data.crops`).

    Returns:
        the data card as a dict (also written as ``data_card.json``).
    """
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    scans = scan_all(records, workers)
    dropped = Counter()
    dropped_by_source: dict[str, Counter] = defaultdict(Counter)
    keep: list[int] = []
    for i, (r, s) in enumerate(zip(records, scans, strict=True)):
        reason = s.error
        if not reason and r.outcome is None:
            reason = "no target: " + ("generic labels only" if r.exclude_reason else "excluded")
        if not reason and r.source in MOSAIC_SOURCES and s.mosaic >= MOSAIC_THRESHOLD:
            reason = "2x2 mosaic"
        if reason:
            dropped[reason] += 1
            dropped_by_source[r.source][reason] += 1
        else:
            keep.append(i)
    kept = [records[i] for i in keep]
    kscans = [scans[i] for i in keep]
    groups, link_stats = assign_groups(kept, kscans)
    strata = [f"{r.outcome}|{r.source}" for r in kept]
    splits = split_groups(groups, strata, seed)
    fp = fingerprint([(s.sha256, sp) for s, sp in zip(kscans, splits, strict=True)])

    if cache:
        arr = np.lib.format.open_memmap(
            photo_cache_path(out, CANONICAL_SIZE),
            mode="w+",
            dtype=np.uint8,
            shape=(len(kept), CANONICAL_SIZE, CANONICAL_SIZE, 3),
        )
        for i, s in enumerate(kscans):
            arr[i] = s.square
        arr.flush()
        del arr

    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "path",
                "label",
                "source",
                "source_labels",
                "group",
                "split",
                "fitzpatrick",
                "sha256",
                "cache_row",
            ]
        )
        for i, (r, g, sp, s) in enumerate(zip(kept, groups, splits, kscans, strict=True)):
            w.writerow(
                [
                    str(Path(r.path).resolve()),
                    r.outcome,
                    r.source,
                    ";".join(r.labels),
                    f"g{g:05d}",
                    sp,
                    r.fitzpatrick,
                    s.sha256,
                    i,
                ]
            )
    (out / "fingerprint.txt").write_text(fp + "\n")

    card = data_card(records, kept, groups, splits, dropped, dropped_by_source, link_stats, fp, seed)
    if cache and crops:
        card["crops"] = build_crops(read_parents(out), out, workers)
    card["wall_seconds"] = round(time.time() - t0, 1)
    (out / "data_card.json").write_text(json.dumps(card, indent=2))
    (out / "DATA_CARD.md").write_text(render_data_card(card))
    return card


def recut_crops(out: Path, workers: int = 2) -> dict:
    """Cut the lesion-centred crops of an existing build again (e.g. after changing the spot detector).

    Splits, groups and the photo cache stay as they are; ``crops.csv``, the crop cache and the data card's
    crop section are rewritten.
    """
    t0 = time.time()
    card = json.loads((out / "data_card.json").read_text())
    card["crops"] = build_crops(read_parents(out), out, workers)
    card["crops"]["wall_seconds"] = round(time.time() - t0, 1)
    (out / "data_card.json").write_text(json.dumps(card, indent=2))
    (out / "DATA_CARD.md").write_text(render_data_card(card))
    return card["crops"]


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    p = argparse.ArgumentParser(prog="python -m triage.data", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build manifest, splits, cache and data card")
    b.add_argument(
        "--data-root",
        default=os.environ.get("TRIAGE_DATA"),
        help="folder holding one folder per registered source (default: $TRIAGE_DATA)",
    )
    b.add_argument("--sources", default="all", help="comma-separated registered sources, 'all' or 'none'")
    b.add_argument(
        "--manifest",
        action="append",
        default=[],
        help="extra manifest CSV (path,label[,source,group,fitzpatrick])",
    )
    b.add_argument(
        "--image-folder", action="append", default=[], help="extra ImageFolder tree (one folder per outcome)"
    )
    b.add_argument("--out", default="data/processed")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--workers", type=int, default=2)
    b.add_argument("--no-cache", action="store_true", help="skip writing the image cache")
    b.add_argument("--no-crops", action="store_true", help="skip the lesion-centred crops")
    q = sub.add_parser("cache", help="write an existing build's squares (photos and crops) at another side")
    q.add_argument("--size", type=int, required=True, help="side of the squares in pixels, e.g. 256")
    q.add_argument("--out", default="data/processed")
    q.add_argument("--workers", type=int, default=2)
    c = sub.add_parser("crops", help="cut the lesion-centred crops of an existing build again")
    c.add_argument("--out", default="data/processed")
    c.add_argument("--workers", type=int, default=2)
    m = sub.add_parser("manifest", help="write one split of a build as a manifest for `python -m triage evaluate`")
    m.add_argument("--out", default="data/processed", help="the build folder")
    m.add_argument("--split", default="test", choices=SPLITS)
    m.add_argument("--closeups", action="store_true", help="the split's lesion-centred crops, each with its box")
    m.add_argument("--csv", required=True, help="where to write the manifest (paths relative to it)")
    args = p.parse_args(argv)
    if args.cmd == "manifest":
        n = write_split_manifest(args.out, args.split, args.csv, closeups=args.closeups)
        print(f"{args.csv}: {n} rows")
        return 0
    if args.cmd == "cache":
        print(json.dumps(write_caches(Path(args.out), args.size, args.workers), indent=1))
        return 0
    if args.cmd == "crops":
        crops = recut_crops(Path(args.out), args.workers)
        keys = ("eligible_photos", "crops", "candidate_photos", "candidate_crops", "wall_seconds")
        print(json.dumps({k: crops[k] for k in keys}, indent=1))
        return 0
    names = list(REGISTRY) if args.sources == "all" else [s for s in args.sources.split(",") if s and s != "none"]
    if names and not args.data_root:
        p.error("registered sources need --data-root or TRIAGE_DATA")
    records = collect_records(Path(args.data_root) if args.data_root else None, names, args.manifest, args.image_folder)
    card = build(records, Path(args.out), args.seed, args.workers, cache=not args.no_cache, crops=not args.no_crops)
    print(
        json.dumps(
            {
                k: card[k]
                for k in (
                    "images_kept",
                    "duplicate_groups",
                    "groups_split_across_splits",
                    "per_outcome_split",
                    "wall_seconds",
                    "fingerprint",
                )
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
