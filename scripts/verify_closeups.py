"""Check close-up test crops by eye: numbered contact sheets and the verdict CSV to fill in.

Usage:
    python scripts/verify_closeups.py sheets [--manifest models/closeup_test_manifest.csv]
                                             [--out artifacts/verify_closeups] [--tile 160] [--numbers 3,17]
    python scripts/verify_closeups.py template [--manifest models/closeup_test_manifest.csv]
                                               [--out results/verified_closeups.csv] [--force]

Both draw the same fixed random subset of the close-up manifest (``triage.analysis.verification_sample``:
up to ``--per-outcome`` crops per outcome, seed ``--seed``), in the manifest's order. ``sheets`` writes one
set of 5 x 5 PNGs per outcome (``<outcome>_<k>.png``); the large number on each tile is the crop's row in the
verdict CSV (1 = first row after the header). ``--numbers`` renders only those rows, e.g. bigger with
``--tile 320``. ``template`` writes the subset with an empty ``verdict`` column; fill it with yes / no / unsure
(does the crop really show the labelled kind of spot?). It refuses to overwrite a CSV without ``--force``.

The crops are cut exactly as ``python -m triage evaluate`` cuts them (``triage.analysis.closeup_crop``).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

from triage import analysis as A
from triage.outcomes import OUTCOMES
from triage.sources import read_manifest

REPO = Path(__file__).resolve().parents[1]
PER_SHEET = 25


def sample(manifest: Path, per_outcome: int, seed: int) -> tuple[list[dict[str, str]], list]:
    """The sampled rows (as read) and their records, in the manifest's order."""
    rows = A.read_rows(manifest)
    records = read_manifest(manifest)
    chosen = {id(r) for r in A.verification_sample(rows, per_outcome, seed)}
    keep = [i for i, r in enumerate(rows) if id(r) in chosen]
    return [rows[i] for i in keep], [records[i] for i in keep]


def write_sheets(rows: list[dict], records: list, out: Path, tile: int, numbers: set[int] | None) -> int:
    """Write the numbered contact sheets, one outcome per sheet; returns the number of sheets."""
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for outcome in OUTCOMES:
        picked = [i for i, r in enumerate(rows) if r["label"] == outcome and (numbers is None or i + 1 in numbers)]
        for k in range(0, len(picked), PER_SHEET):
            part = picked[k : k + PER_SHEET]
            sheet = A.contact_sheet([A.closeup_crop(records[i]) for i in part], [i + 1 for i in part], tile=tile)
            sheet.save(out / f"{outcome}_{k // PER_SHEET + 1:02d}.png")
            written += 1
    return written


def write_template(rows: list[dict], manifest: Path, out: Path) -> None:
    """Write the sampled rows with an empty verdict column (paths relative to ``out``, as manifests keep them)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    here, there = manifest.resolve().parent, out.resolve().parent
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=[*rows[0].keys(), "verdict"])
        w.writeheader()
        for r in rows:
            path = r["path"] if Path(r["path"]).is_absolute() else os.path.relpath(here / r["path"], there)
            w.writerow(dict(r, path=path, verdict=""))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and write sheets or the template."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cmd", choices=("sheets", "template"))
    p.add_argument("--manifest", type=Path, default=REPO / "models" / "closeup_test_manifest.csv")
    p.add_argument("--out", type=Path, help="sheets: a folder (artifacts/verify_closeups); template: a CSV")
    p.add_argument("--per-outcome", type=int, default=150)
    p.add_argument("--seed", type=int, default=A.VERIFY_SEED)
    p.add_argument("--tile", type=int, default=160, help="sheets: tile side in pixels")
    p.add_argument("--numbers", default="", help="sheets: only these CSV rows (comma-separated)")
    p.add_argument("--force", action="store_true", help="template: overwrite an existing CSV")
    args = p.parse_args(argv)
    rows, records = sample(args.manifest, args.per_outcome, args.seed)
    if args.cmd == "sheets":
        out = args.out or REPO / "artifacts" / "verify_closeups"
        numbers = {int(v) for v in args.numbers.split(",") if v.strip()} or None
        print(f"{write_sheets(rows, records, out, args.tile, numbers)} sheets -> {out}")
        return 0
    out = args.out or REPO / "results" / "verified_closeups.csv"
    if out.exists() and not args.force:
        p.error(f"{out} exists (it may hold verdicts): pass --force to overwrite it")
    write_template(rows, args.manifest, out)
    print(f"{len(rows)} rows -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
