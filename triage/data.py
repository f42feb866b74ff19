"""Build the processed dataset: ``python -m triage.data build --out data/processed``.

Reads every registered source from the data root, drops unreadable /
truncated / too-small images and 2x2 mosaics, groups copies of one photo
(exact bytes, shared ISIC ids, near-duplicates across all sources), makes
seeded, stratified, group-aware train / val / test splits and writes:

* ``manifest.csv`` - one row per kept image (path, outcome, source, labels,
  group, split, fitzpatrick, sha256, cache_row);
* ``cache_<size>.npy`` - canonical squares of every kept image, for fast training;
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

from triage.crops import build_crops
from triage.dedupe import UnionFind, find_pairs, signature
from triage.mosaic import mosaic_score
from triage.outcomes import OUTCOMES
from triage.preprocess import CANONICAL_SIZE, canonical_square, crop_bottom
from triage.sources import (
    REGISTRY,
    Record,
    load_source,
    read_image_folder,
    read_manifest,
    write_split_manifest,
)

MIN_SIDE = 48
MOSAIC_SOURCES = {"roboflow_acne"}
MOSAIC_THRESHOLD = 0.10
SPLITS = ("train", "val", "test")
SPLIT_SHARES = (0.70, 0.15, 0.15)


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
            im.load()
            image = im.convert("RGB")
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


def split_groups(
    groups: list[int], strata: list[str], seed: int, shares: tuple[float, ...] = SPLIT_SHARES
) -> list[str]:
    """Assign whole groups to splits, stratified, deterministic for a seed.

    Each group takes the stratum of its members' most frequent value. Groups
    are visited largest first (ties in seeded random order) and each goes to
    the split furthest below its target share within its stratum.

    Returns:
        the split name of every element.
    """
    rng = np.random.default_rng(seed)
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    keys = sorted(members)
    order = rng.permutation(len(keys))
    gkeys = sorted((keys[k] for k in order), key=lambda g: -len(members[g]))  # stable: keeps shuffle in ties
    stratum_total = Counter(strata)
    filled: dict[str, list[int]] = defaultdict(lambda: [0] * len(shares))
    split_of_group: dict[int, int] = {}
    for g in gkeys:
        stratum = Counter(strata[i] for i in members[g]).most_common(1)[0][0]
        got = filled[stratum]
        total = stratum_total[stratum]
        deficits = [shares[s] * total - got[s] for s in range(len(shares))]
        s = int(np.argmax(deficits))
        split_of_group[g] = s
        got[s] += len(members[g])
    return [SPLITS[split_of_group[g]] for g in groups]


def fingerprint(sha_split: list[tuple[str, str]]) -> str:
    """sha256 over the sorted ``(sha256, split)`` pairs: equal splits give equal prints."""
    h = hashlib.sha256()
    for sha, split in sorted(sha_split):
        h.update(f"{sha}\t{split}\n".encode())
    return h.hexdigest()


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
    (:mod:`triage.crops`).

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
            out / f"cache_{CANONICAL_SIZE}.npy",
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


def data_card(records, kept, groups, splits, dropped, dropped_by_source, link_stats, fp, seed) -> dict:
    """Summarise a build as plain data (pure)."""
    by_group_splits: dict[int, set] = defaultdict(set)
    sizes = Counter(groups)
    for g, sp in zip(groups, splits, strict=True):
        by_group_splits[g].add(sp)
    straddling = sum(1 for s in by_group_splits.values() if len(s) > 1)
    dup_groups = [g for g, c in sizes.items() if c > 1]
    conflicts = defaultdict(set)
    for r, g in zip(kept, groups, strict=True):
        conflicts[g].add(r.outcome)
    counts = defaultdict(lambda: defaultdict(Counter))
    fitz = defaultdict(Counter)
    for r, sp in zip(kept, splits, strict=True):
        counts[r.outcome][r.source][sp] += 1
        fitz[sp][r.fitzpatrick] += 1
    return {
        "seed": seed,
        "fingerprint": fp,
        "images_read": len(records),
        "images_kept": len(kept),
        "dropped": dict(dropped),
        "dropped_by_source": {k: dict(v) for k, v in dropped_by_source.items()},
        "per_outcome_split": {o: {sp: sum(c[sp] for c in counts[o].values()) for sp in SPLITS} for o in OUTCOMES},
        "per_outcome_source_split": {o: {s: dict(c) for s, c in counts[o].items()} for o in OUTCOMES},
        "fitzpatrick_by_split": {sp: {str(k): v for k, v in sorted(fitz[sp].items())} for sp in SPLITS},
        "groups": len(sizes),
        "duplicate_groups": len(dup_groups),
        "images_in_duplicate_groups": sum(sizes[g] for g in dup_groups),
        "largest_group": max(sizes.values()) if sizes else 0,
        "groups_with_conflicting_outcomes": sum(1 for g in dup_groups if len(conflicts[g]) > 1),
        "groups_split_across_splits": straddling,
        "links": link_stats,
    }


def render_data_card(card: dict) -> str:
    """Render the data card dict as Markdown."""
    lines = ["# Data card", "", "Generated by `python -m triage.data build`; do not edit by hand.", ""]
    lines += [
        f"- Seed: {card['seed']}; split fingerprint: `{card['fingerprint']}`",
        f"- Images read: {card['images_read']}; kept: {card['images_kept']}",
        f"- Build wall time: {card.get('wall_seconds', '?')} s",
        "",
    ]
    lines += [
        "## Outcomes per split",
        "",
        "| outcome | " + " | ".join(SPLITS) + " | total |",
        "|---|" + "---|" * (len(SPLITS) + 1),
    ]
    for o, row in card["per_outcome_split"].items():
        lines.append(f"| {o} | " + " | ".join(str(row[s]) for s in SPLITS) + f" | {sum(row.values())} |")
    lines += [
        "",
        "## Outcome x source x split",
        "",
        "| outcome | source | train | val | test |",
        "|---|---|---|---|---|",
    ]
    for o, by_src in card["per_outcome_source_split"].items():
        for s, c in sorted(by_src.items()):
            lines.append(f"| {o} | {s} | " + " | ".join(str(c.get(sp, 0)) for sp in SPLITS) + " |")
    lines += [
        "",
        "## Fitzpatrick skin type per split (-1 = unknown)",
        "",
        "| split | " + " | ".join(f"type {k}" for k in ["-1", "1", "2", "3", "4", "5", "6"]) + " |",
        "|---|" + "---|" * 7,
    ]
    for sp, c in card["fitzpatrick_by_split"].items():
        lines.append(f"| {sp} | " + " | ".join(str(c.get(k, 0)) for k in ["-1", "1", "2", "3", "4", "5", "6"]) + " |")
    lines += render_crops_section(card.get("crops"))
    lines += ["", "## Dropped images", "", "| reason | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(card["dropped"].items())]
    lines += ["", "| source | reasons |", "|---|---|"]
    lines += [
        f"| {s} | " + ", ".join(f"{k}: {v}" for k, v in sorted(c.items())) + " |"
        for s, c in sorted(card["dropped_by_source"].items())
    ]
    lines += [
        "",
        "## Duplicate groups",
        "",
        f"- Groups: {card['groups']}; with more than one image: {card['duplicate_groups']} "
        f"({card['images_in_duplicate_groups']} images); largest: {card['largest_group']} images",
        f"- Groups whose copies carry different outcomes: {card['groups_with_conflicting_outcomes']}",
        f"- **Groups split across train/val/test: {card['groups_split_across_splits']}**",
        "- Links that merged groups: " + ", ".join(f"{k}: {v}" for k, v in sorted(card["links"].items())),
        "",
        "## How copies are found",
        "",
        "Identical file bytes (sha256), shared ISIC ids, and near-duplicates: the best of the eight",
        "flip/rotation correlations of a band-passed 16x16 grayscale thumbnail of the central square,",
        "confirmed at 32x32 with correlation >= 0.94 (`triage/dedupe.py`). This catches flipped,",
        "90-degree-rotated, resized and re-encoded copies within and across sources; copies rotated by a",
        "few degrees or re-cropped are caught only partly (see `tests/test_data_build.py`).",
        "",
        "## Mosaics",
        "",
        "The multi-label acne set tiles four different photos into one image, and its labels are the",
        "union of the four tiles' labels. Such an image has no single true outcome and looks like",
        "nothing a client will upload, so mosaics are detected (straight full-length seams through the",
        "middle, `triage/mosaic.py`) and excluded from every split.",
        "",
        "## Label mapping",
        "",
        "`triage/label_map.csv` maps every source label to an outcome or excludes it with a reason.",
        "Several labels resolve to the most cautious: refer > pustule > milia-like > other.",
        "DermNet images lose their bottom 22% (the atlas watermark) before anything else sees them.",
        "",
    ]
    return "\n".join(lines)


def read_parents(out: Path) -> list[dict]:
    """The build's photos as :func:`triage.crops.build_crops` wants them (from ``manifest.csv``)."""
    with open(out / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [
        {
            "path": r["path"],
            "crop_bottom": REGISTRY[r["source"]].crop_bottom if r["source"] in REGISTRY else 0.0,
            "cache_row": int(r["cache_row"]),
            "split": r["split"],
            "label": r["label"],
            "source": r["source"],
            "source_labels": [x for x in r["source_labels"].split(";") if x],
            "group": r["group"],
            "fitzpatrick": int(r["fitzpatrick"]),
        }
        for r in rows
    ]


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


def render_crops_section(crops: dict | None) -> list[str]:
    """Markdown lines for the lesion-centred crops (none when the build made none)."""
    if not crops:
        return []
    lines = [
        "",
        "## Lesion-centred crops",
        "",
        f"Crops centred on candidate spots (`triage/lesions.py`) of the photos whose label describes each spot "
        f"(`triage/crops.py`): {crops['eligible_photos']} eligible photos, {crops['crops']} crops "
        "(up to 3 spots a photo, each at 3 scales: the spot about 60%, 33% and 17% of the crop's side). "
        "Training crops are used in training; validation crops in choosing the operating point; test crops "
        "form the close-up test set, never used for anything else.",
        "",
        "| outcome | source | train | val | test |",
        "|---|---|---|---|---|",
    ]
    for o in OUTCOMES:
        for s, c in sorted(crops["per_outcome_source_split"].get(o, {}).items()):
            lines.append(f"| {o} | {s} | " + " | ".join(str(c.get(sp, 0)) for sp in SPLITS) + " |")
    return lines


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
    if args.cmd == "crops":
        crops = recut_crops(Path(args.out), args.workers)
        print(json.dumps({k: crops[k] for k in ("eligible_photos", "crops", "wall_seconds")}, indent=1))
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
