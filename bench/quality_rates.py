"""Measure how often the photo-quality checks fire on real and on non-skin photos; JSON to stdout.

Real photos: the bundled data (``$TRIAGE_DATA`` or ``../shared/data``), all of ``fitzpatrick17k`` (so
every Fitzpatrick type has enough photos) and a seeded sample of every other folder. Controls: the same
photos resized to a shorter side of 256 px and blurred with a Gaussian of sigma 4 (must be flagged
``too_blurry``), and non-skin photos (``skimage.data`` samples when scikit-image is installed, plus
generated scenes) that should be flagged ``too_little_skin``.

scikit-image is not a project dependency: ``pip install scikit-image`` to include its samples.

Usage:
    python bench/quality_rates.py [--data DIR] [--sample 400] > quality_rates.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFilter

from triage.core.quality import (
    REASONS,
    SKIN_MAX_SIDE,
    TOO_BLURRY,
    TOO_LITTLE_SKIN,
    QualityThresholds,
    measure,
    reasons_for,
)
from triage.testing.non_skin import non_skin_photos

REPO = Path(__file__).resolve().parents[1]

PERCENTILES = (0.5, 1, 2, 5, 10, 50, 90, 95, 98, 99, 99.5)
SOURCES_IN_FULL = ("fitzpatrick17k",)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {f"p{p:g}": round(float(np.percentile(values, p)), 3) for p in PERCENTILES}


def _chai_ngan_fraction(image: Image.Image) -> float:
    """Skin share under the original Chai & Ngan box, for comparison with the widened rule."""
    small = image.copy()
    small.thumbnail((SKIN_MAX_SIDE, SKIN_MAX_SIDE), Image.Resampling.BOX)
    ycrcb = cv2.cvtColor(np.asarray(small), cv2.COLOR_RGB2YCrCb)
    cr, cb = ycrcb[..., 1], ycrcb[..., 2]
    return float(((cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)).mean())


def _blurred(image: Image.Image) -> Image.Image:
    """The photo as a 256 px (shorter side) image blurred with sigma 4: a clearly unusable photo."""
    w, h = image.size
    scale = 256 / min(w, h)
    resized = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
    return resized.filter(ImageFilter.GaussianBlur(4))


def _rows(root: Path, sample: int, seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    rows = []
    for folder in sorted(p for p in root.iterdir() if (p / "labels.csv").is_file()):
        with open(folder / "labels.csv", newline="", encoding="utf-8") as fh:
            entries = [(r["file"], r.get("fitzpatrick") or "-1") for r in csv.DictReader(fh)]
        if folder.name not in SOURCES_IN_FULL and len(entries) > sample:
            entries = rng.sample(entries, sample)
        rows += [(folder.name, f, fz) for f, fz in entries]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TRIAGE_DATA") or str(REPO.parent / "shared" / "data"))
    parser.add_argument("--sample", type=int, default=400, help="photos per folder (fitzpatrick17k: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    thresholds = QualityThresholds()
    result: dict = {"thresholds": thresholds.__dict__, "data": args.data}

    root = Path(args.data)
    per_source: dict[str, list[dict]] = defaultdict(list)
    if root.is_dir():
        rows = _rows(root, args.sample, args.seed)
        for i, (source, rel, fitz) in enumerate(rows):
            with Image.open(root / source / rel) as im:
                image = im.convert("RGB")
            m = measure(image)
            per_source[source].append(
                {
                    "fitzpatrick": fitz,
                    "measures": m,
                    "reasons": reasons_for(m, thresholds),
                    "blurred_sharpness": measure(_blurred(image))["sharpness"],
                    "chai_ngan_skin": _chai_ngan_fraction(image),
                }
            )
            if i % 1000 == 0:
                print(f"{i}/{len(rows)}", file=sys.stderr)

    def rates(items: list[dict]) -> dict:
        n = len(items)
        out: dict = {"n": n}
        for reason in REASONS:
            out[reason] = round(sum(reason in it["reasons"] for it in items) / n, 4)
        out["any"] = round(sum(bool(it["reasons"]) for it in items) / n, 4)
        out["too_little_skin_with_chai_ngan_box"] = round(
            sum(it["chai_ngan_skin"] < thresholds.min_skin_fraction for it in items) / n, 4
        )
        return out

    everything = [it for items in per_source.values() for it in items]
    if everything:
        result["real_flag_rates"] = {s: rates(items) for s, items in sorted(per_source.items())}
        result["real_flag_rates"]["all"] = rates(everything)
        by_type: dict[str, list[dict]] = defaultdict(list)
        for it in per_source.get("fitzpatrick17k", []):
            by_type[it["fitzpatrick"]].append(it)
        result["fitzpatrick17k_by_type"] = {t: rates(items) for t, items in sorted(by_type.items())}
        measure_names = (
            "sharpness",
            "brightness",
            "dark_clip",
            "highlight_clip",
            "skin_fraction",
            "min_side",
        )
        result["real_percentiles"] = {
            name: {s: _percentiles([it["measures"][name] for it in items]) for s, items in per_source.items()}
            | {"all": _percentiles([it["measures"][name] for it in everything])}
            for name in measure_names
        }
        blurred = [it["blurred_sharpness"] for it in everything]
        result["blurred_sigma4"] = {
            "sharpness": _percentiles(blurred) | {"max": round(max(blurred), 3)},
            "flagged_too_blurry": round(float(np.mean([b < thresholds.min_sharpness for b in blurred])), 4),
        }
        sharp = np.array([it["measures"]["sharpness"] for it in everything])
        result["too_blurry_rate_at"] = {
            f"{t:g}": {"real": round(float((sharp < t).mean()), 4), "blurred": round(float(np.mean(
                [b < t for b in blurred])), 4)}
            for t in (5, 8, 10, 12, 15, 20, 25)
        }  # fmt: skip

    non_skin = non_skin_photos(args.seed)
    ns_rows = {}
    for name, image in non_skin.items():
        m = measure(image)
        ns_rows[name] = {"skin_fraction": round(m["skin_fraction"], 3), "reasons": reasons_for(m, thresholds)}
    result["non_skin"] = {
        "n": len(ns_rows),
        "flagged_too_little_skin": round(
            float(np.mean([TOO_LITTLE_SKIN in r["reasons"] for r in ns_rows.values()])), 4
        ),
        "flagged_any": round(float(np.mean([bool(r["reasons"]) for r in ns_rows.values()])), 4),
        "passed_as_skin": sorted(k for k, r in ns_rows.items() if TOO_LITTLE_SKIN not in r["reasons"]),
        "images": ns_rows,
    }
    result["note"] = f"{TOO_BLURRY} threshold applies to sharpness; see triage/core/quality.py QualityThresholds"
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
