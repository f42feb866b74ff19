"""Check close-up test crops by eye: numbered contact sheets and the verdict CSV to fill in.

Usage:
    python scripts/verify_closeups.py sheets [--manifest models/closeup_test_manifest.csv]
                                             [--out artifacts/verify_closeups] [--tile 160] [--numbers 3,17]
                                             [--unjudged results/verified_closeups.csv]
    python scripts/verify_closeups.py template [--manifest models/closeup_test_manifest.csv]
                                               [--out results/verified_closeups.csv] [--force]
    python scripts/verify_closeups.py extend [--out results/verified_closeups.csv]

All draw the same fixed random subset of the close-up manifest (``triage.research.closeups.verification_sample``:
up to ``--per-outcome`` crops per outcome, more for the outcomes in ``--cap`` (default
``triage.research.closeups.VERIFY_CAPS``), seed ``--seed``), in the manifest's order. ``sheets`` writes one set of
5 x 5 PNGs per outcome (``<outcome>_<k>.png``); the large number on each tile is the crop's row in the verdict
CSV (1 = first row after the header). ``--numbers`` renders only those rows, e.g. bigger with ``--tile 320``;
``--unjudged`` only the rows that verdict CSV holds no verdict for. ``template`` writes the subset with an
empty ``verdict`` column; fill it with yes / no / unsure (does the crop really show the labelled kind of spot?).
It refuses to overwrite a CSV without ``--force``. ``extend`` rewrites an existing verdict CSV as the subset
after a cap was raised: every verdict already given is kept, the new rows get an empty verdict.

The crops are cut exactly as ``python -m triage evaluate`` cuts them (``triage.research.evaluate.closeup_crop``).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import defaultdict
from pathlib import Path

from triage.core.outcomes import OUTCOMES
from triage.data.sources import read_manifest
from triage.research import analysis as A
from triage.research import closeups as C

REPO = Path(__file__).resolve().parents[1]
PER_SHEET = 25


def sample(
    manifest: Path, per_outcome: int, seed: int, caps: dict[str, int] | None = None
) -> tuple[list[dict[str, str]], list]:
    """The sampled rows (as read) and their records, in the manifest's order."""
    rows = A.read_rows(manifest)
    records = read_manifest(manifest)
    chosen = {id(r) for r in C.verification_sample(rows, per_outcome, seed, caps)}
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
            sheet = C.contact_sheet([C.closeup_crop(records[i]) for i in part], [i + 1 for i in part], tile=tile)
            sheet.save(out / f"{outcome}_{k // PER_SHEET + 1:02d}.png")
            written += 1
    return written


def kept_verdicts(records: list, verdict_csv: Path) -> list[str]:
    """Each sampled record's verdict in an existing verdict CSV ("" for a row it does not hold).

    Rows are matched by photo, box and label. Raises SystemExit if a row of the CSV is not in the sample:
    a verdict would be lost.
    """
    given = defaultdict(list)
    for r, rec in zip(A.read_rows(verdict_csv), read_manifest(verdict_csv), strict=True):
        given[(rec.path.resolve(), rec.box, rec.outcome)].append(r["verdict"])
    verdicts = []
    for rec in records:
        left = given[(rec.path.resolve(), rec.box, rec.outcome)]
        verdicts.append(left.pop(0) if left else "")
    if lost := sum(map(len, given.values())):
        raise SystemExit(f"{lost} rows of {verdict_csv} are not in this sample: check --per-outcome, --cap, --seed")
    return verdicts


def write_template(rows: list[dict], manifest: Path, out: Path, verdicts: list[str] | None = None) -> None:
    """Write the sampled rows with a verdict column, empty unless given (paths relative to ``out``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    here, there = manifest.resolve().parent, out.resolve().parent
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=[*rows[0].keys(), "verdict"])
        w.writeheader()
        for r, verdict in zip(rows, verdicts or [""] * len(rows), strict=True):
            path = r["path"] if Path(r["path"]).is_absolute() else os.path.relpath(here / r["path"], there)
            w.writerow(dict(r, path=path, verdict=verdict))


def parse_caps(values: list[str] | None) -> dict[str, int]:
    """``--cap outcome=N`` values as a dict (``triage.research.closeups.VERIFY_CAPS`` when none are given)."""
    if values is None:
        return dict(C.VERIFY_CAPS)
    return {o: int(n) for o, n in (v.split("=", 1) for v in values)}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and write sheets or the template."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cmd", choices=("sheets", "template", "extend"))
    p.add_argument("--manifest", type=Path, default=REPO / "models" / "closeup_test_manifest.csv")
    p.add_argument("--out", type=Path, help="sheets: a folder (artifacts/verify_closeups); template: a CSV")
    p.add_argument("--per-outcome", type=int, default=150)
    p.add_argument("--cap", action="append", help="OUTCOME=N: up to N crops of that outcome (repeatable)")
    p.add_argument("--seed", type=int, default=C.VERIFY_SEED)
    p.add_argument("--tile", type=int, default=160, help="sheets: tile side in pixels")
    p.add_argument("--numbers", default="", help="sheets: only these CSV rows (comma-separated)")
    p.add_argument("--unjudged", type=Path, help="sheets: only the rows this verdict CSV has no verdict for")
    p.add_argument("--force", action="store_true", help="template: overwrite an existing CSV")
    args = p.parse_args(argv)
    rows, records = sample(args.manifest, args.per_outcome, args.seed, parse_caps(args.cap))
    if args.cmd == "sheets":
        out = args.out or REPO / "artifacts" / "verify_closeups"
        numbers = {int(v) for v in args.numbers.split(",") if v.strip()} or None
        if args.unjudged:
            open_rows = {i + 1 for i, v in enumerate(kept_verdicts(records, args.unjudged)) if not v}
            numbers = open_rows & numbers if numbers else open_rows
        print(f"{write_sheets(rows, records, out, args.tile, numbers)} sheets -> {out}")
        return 0
    out = args.out or REPO / "results" / "verified_closeups.csv"
    if args.cmd == "extend":
        if not out.exists():
            p.error(f"{out} does not exist: write it with template")
        verdicts = kept_verdicts(records, out)
        write_template(rows, args.manifest, out, verdicts)
        print(f"{len(rows)} rows -> {out}, {sum(not v for v in verdicts)} without a verdict")
        return 0
    if out.exists() and not args.force:
        p.error(f"{out} exists (it may hold verdicts): pass --force to overwrite it")
    write_template(rows, args.manifest, out)
    print(f"{len(rows)} rows -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
