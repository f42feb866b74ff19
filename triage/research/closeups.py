"""Verified close-ups: a fixed random subset of close-up test crops, contact sheets to judge them by eye, and
counts of the verdicts (``results/verified_closeups.csv``, ``scripts/verify_closeups.py``)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from triage.core.outcomes import OUTCOMES
from triage.core.preprocess import canonical_square
from triage.data.crops import read_crop_rows
from triage.data.sources import parse_box, read_manifest
from triage.research.analysis import read_rows
from triage.research.evaluate import (  # the crop evaluate judges, shown on the contact sheets
    closeup_crop,
    verified_mask,
)

# -- verified close-ups ----------------------------------------------------------------------------

#: A verdict on one close-up crop: does it really show the labelled kind of spot?
VERDICTS = ("yes", "no", "unsure")

#: The seed of the verified close-up subset (``results/verified_closeups.csv``); another seed, another subset.
VERIFY_SEED = 0

#: Outcomes whose verified subset is larger than 150 crops (total crops per outcome). Few pustule crops show a
#: pustule (about 1 in 15), so 150 of them leave too few "yes" crops to measure pustule recall on; 600 gave 39,
#: 800 gives 51. Raising a cap keeps every judged row (see verification_sample): judge only the new ones.
VERIFY_CAPS: dict[str, int] = {"pustule": 800}


def verification_sample(
    manifest_rows: list[dict[str, str]],
    per_outcome: int = 150,
    seed: int = VERIFY_SEED,
    caps: dict[str, int] | None = None,
) -> list[dict[str, str]]:
    """A fixed random subset of close-up rows: up to ``per_outcome`` of each outcome (all if fewer).

    Each outcome draws from its own generator (``seed``, outcome index), so one outcome's subset does
    not change when another outcome's rows do. An outcome in ``caps`` gets up to ``caps[outcome]`` rows:
    the same first draw of ``per_outcome``, then a second draw from the rest of its rows (a permutation from
    generator (``seed``, outcome index, 1), cut to its first ``caps[outcome] - per_outcome``). So a larger cap
    keeps every row of a smaller one and the verdicts given on them; ``choice`` alone would not (its 200 rows
    are no superset of its 150).

    Returns:
        the chosen rows, in the manifest's order.

    Raises:
        ValueError: if a cap is below ``per_outcome`` or names no outcome.
    """
    caps = caps or {}
    if set(caps) - set(OUTCOMES) or any(c < per_outcome for c in caps.values()):
        raise ValueError(f"caps must name outcomes and be at least per_outcome={per_outcome}: {caps}")
    chosen: set[int] = set()
    for k, outcome in enumerate(OUTCOMES):
        pool = [i for i, r in enumerate(manifest_rows) if r["label"] == outcome]
        rng = np.random.default_rng([seed, k])
        first = {pool[j] for j in rng.choice(len(pool), min(per_outcome, len(pool)), replace=False)}
        rest = [i for i in pool if i not in first]
        more = caps.get(outcome, per_outcome) - per_outcome
        chosen |= first | {rest[j] for j in np.random.default_rng([seed, k, 1]).permutation(len(rest))[:more]}
    return [manifest_rows[i] for i in sorted(chosen)]


def contact_sheet(crops: list[Image.Image], numbers: list[int], ncols: int = 5, tile: int = 160) -> Image.Image:
    """Crops side by side as the model sees them (canonical squares), each with its number in large type.

    Args:
        crops: the close-up crops (:func:`closeup_crop`).
        numbers: the number written on each tile (e.g. its row in the verdict CSV).
        ncols: tiles per row.
        tile: tile side in pixels.
    """
    nrows = max((len(crops) + ncols - 1) // ncols, 1)
    gap = 4
    sheet = Image.new("RGB", (ncols * (tile + gap) + gap, nrows * (tile + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(tile // 6, 12))
    for i, (crop, number) in enumerate(zip(crops, numbers, strict=True)):
        x, y = gap + (i % ncols) * (tile + gap), gap + (i // ncols) * (tile + gap)
        sheet.paste(Image.fromarray(canonical_square(crop, tile)), (x, y))
        # Outlined digits stay readable on light and dark skin alike.
        draw.text((x + 3, y + 1), str(number), fill="yellow", font=font, stroke_width=3, stroke_fill="black")
    return sheet


def verified_counts(rows: list[dict[str, str]]) -> list[dict]:
    """Verdicts per outcome of a verdict CSV's rows: ``n``, ``yes``, ``no``, ``unsure`` and the share of yes."""
    out = []
    for outcome in OUTCOMES:
        got = Counter(r["verdict"] for r in rows if r["label"] == outcome)
        n = sum(got.values())
        out.append(
            {"outcome": outcome, "n": n}
            | {v: got[v] for v in VERDICTS}
            | {"share_yes": round(got["yes"] / n, 3) if n else float("nan")}
        )
    return out


def verified_sheet(
    csv_path: str | Path, outcome: str, verdict: str = "yes", limit: int = 25, tile: int = 160
) -> Image.Image | None:
    """A contact sheet of the first ``limit`` crops of one outcome with one verdict (``None`` if there are none).

    Tiles carry their row number in the verdict CSV (1 = first row after the header).
    """
    rows, records = read_rows(csv_path), read_manifest(csv_path)
    picked = [i for i, r in enumerate(rows) if r["label"] == outcome and r["verdict"] == verdict][:limit]
    if not picked:
        return None
    return contact_sheet([closeup_crop(records[i]) for i in picked], [i + 1 for i in picked], tile=tile)


def verified_crop_positions(verified_csv: Path, data: Path) -> np.ndarray:
    """Which crops of the close-up test set (in ``test_crops`` order) were checked by eye and kept (verdict yes).

    A verdict row names its crop by photo path and box, as ``models/closeup_test_manifest.csv`` does.
    """
    keep = verified_mask(verified_csv)
    if keep is None:
        raise SystemExit(f"{verified_csv} has no verdict column")
    records = read_manifest(verified_csv)
    wanted = {(r.path.resolve(), r.box) for r, k in zip(records, keep, strict=True) if k}
    with open(data / "manifest.csv", newline="", encoding="utf-8") as fh:
        path_of = {r["cache_row"]: r["path"] for r in csv.DictReader(fh)}
    crops = [c for c in read_crop_rows(data) if c["split"] == "test"]
    found = np.array([(Path(path_of[c["cache_row"]]).resolve(), parse_box(c["box"])) in wanted for c in crops])
    if found.sum() != len(wanted):
        raise SystemExit(f"{len(wanted) - found.sum()} verified crops are not in this build's close-up test set")
    return found
