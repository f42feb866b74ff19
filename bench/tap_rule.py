"""Tap the spot: which way of combining the crops around a tapped point answers best, at the safety point.

Usage:
    python bench/tap_rule.py [--model models/triage-mnv3s.pt] [--manifest models/test_manifest.csv]
                             [--out results/tap_rule.json] [--limit N] [--seed 0]
                             [--scales "0.25,0.4,0.6;0.5,0.75,1"] [--min-px 176] [--detector lesions]
    python bench/tap_rule.py --sizes     # the test photos' shorter sides, in pixels

For every test-split photo the spot a person would tap is taken from a spot detector (the strongest
candidate of ``triage.data.lesions.find_spots``, or of a simpler blob detector kept here; the photo's centre when
it finds none). Two sets of photos are scored:

* ``photos``: the test photos as they are; the tap is at the detected spot.
* ``closeups``: a close-up crop of each test photo (a square of 60% of its shorter side) placed so that the
  detected spot lands at a seeded random place in its middle 60%, like a client's photo with the spot
  somewhere in it; the tap is at the spot.

On each set, with the shipped model and its own safety operating point (no retraining, same thresholds):

* ``whole``: the whole photo, as the app answers without a tap;
* ``tap_mean@S``: crops around the tap at the scales ``S`` (sides as shares of the shorter side; the first set
  is ``triage.inference.tap.TAP_SCALES``), calibrated probabilities averaged, then the policy once;
* ``tap_cautious@S``: the policy on each crop, the most cautious outcome wins;
* ``whole_plus_centre``: the whole photo and the centre crops at the first set of scales, averaged (would
  the no-tap answer gain from centre crops?).

Reported per variant: benign usefulness (share of milia-like / pustule / other photos that get their own
outcome), refer-to-doctor sensitivity, unsafe misses (refer-to-doctor photos sent towards a facial),
balanced accuracy, and the share the out-of-distribution gate would decline (on the framed area); and,
for a like-for-like comparison, the benign usefulness each variant reaches at the whole photo's refer
sensitivity when both refer thresholds are moved together (an analysis, not an operating point to ship).
Decisions are model + policy only, as in ``bench/operating_point.py``; the photo-quality gate is left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from triage.core.outcomes import NON_REFER, OUTCOMES, REFER
from triage.core.policy import RISKY_IDX, Thresholds
from triage.core.preprocess import crop_bottom
from triage.data.sources import read_manifest
from triage.inference.combine import CAUTIOUS, MEAN, combine_crop_probabilities
from triage.inference.decode import UploadError, decode_path
from triage.inference.engine import DEFAULT_MODEL, Triage
from triage.inference.tap import MIN_JUDGED_SIDE, TAP_SCALES, crop_box, tap_boxes

REPO = Path(__file__).resolve().parents[1]

CLOSEUP_SHARE = 0.6


def spot_centres(rgb: np.ndarray, detector: str = "lesions") -> list[tuple[float, float, float]]:
    """Candidate spot centres ``(x, y, radius)`` in pixels, strongest first.

    ``"lesions"``: ``triage.data.lesions.find_spots``, the detector the close-up training and test crops are cut
    with; ``"simple"``: :func:`simple_spots`.
    """
    if detector == "simple":
        return simple_spots(rgb)
    from triage.data.lesions import find_spots

    return [(s.x, s.y, s.radius) for s in find_spots(rgb)]


def simple_spots(rgb: np.ndarray, k: int = 5) -> list[tuple[float, float, float]]:
    """A small blob detector: difference of Gaussians on redness and on whiteness, strongest local maxima.

    Works on a copy whose shorter side is 256 px; returns centres and radii in the input's pixels.
    """
    import cv2

    h, w = rgb.shape[:2]
    scale = 256.0 / min(h, w)
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    f = small.astype(np.float32)
    redness = f[:, :, 0] - 0.5 * (f[:, :, 1] + f[:, :, 2])
    whiteness = f.mean(2) - np.abs(f[:, :, 0] - f[:, :, 2])
    found = []
    for sigma in (3.0, 6.0, 12.0):
        for channel in (redness, whiteness):
            dog = cv2.GaussianBlur(channel, (0, 0), sigma) - cv2.GaussianBlur(channel, (0, 0), 3 * sigma)
            dog *= sigma  # scale-normalised, so larger blobs are not favoured for their size alone
            peak = cv2.dilate(dog, np.ones((2 * int(sigma) + 1,) * 2, np.uint8))
            ys, xs = np.nonzero((dog == peak) & (dog > 0))
            # Ignore the outer 5% (vignetting, frame edges).
            keep = (xs > 0.05 * dog.shape[1]) & (xs < 0.95 * dog.shape[1])
            keep &= (ys > 0.05 * dog.shape[0]) & (ys < 0.95 * dog.shape[0])
            for x, y in zip(xs[keep], ys[keep], strict=True):
                found.append((float(dog[y, x]), x / scale, y / scale, 1.41 * sigma / scale))
    found.sort(reverse=True)
    return [(x, y, r) for _, x, y, r in found[:k]]


def metrics(y: np.ndarray, pred: np.ndarray) -> dict:
    """Benign usefulness, refer sensitivity, unsafe misses and balanced accuracy of outcome indices."""
    refer = OUTCOMES.index(REFER)
    benign = np.isin(y, [OUTCOMES.index(o) for o in NON_REFER])
    recalls = [float((pred[y == c] == c).mean()) for c in range(len(OUTCOMES)) if (y == c).any()]
    return {
        "n": int(len(y)),
        "benign_usefulness": round(float((pred[benign] == y[benign]).mean()), 4),
        "refer_sensitivity": round(float((pred[y == refer] == refer).mean()), 4),
        "unsafe_miss_rate": round(float(np.isin(pred[y == refer], RISKY_IDX).mean()), 4),
        "balanced_accuracy": round(float(np.mean(recalls)), 4),
        "per_outcome_recall": {
            o: round(float((pred[y == c] == c).mean()), 4) for c, o in enumerate(OUTCOMES) if (y == c).any()
        },
    }


def scale_name(scales: tuple[float, ...]) -> str:
    """``(0.25, 0.4, 0.6)`` -> ``"0.25,0.4,0.6"``."""
    return ",".join(f"{v:g}" for v in scales)


def variant_names(scale_sets: list[tuple[float, ...]]) -> list[str]:
    """Every variant scored, in report order."""
    taps = [f"tap_{rule}@{scale_name(ss)}" for ss in scale_sets for rule in (MEAN, CAUTIOUS)]
    return ["whole", *taps, "whole_plus_centre"]


def score_photo(
    triage: Triage, image, point: tuple[float, float], scale_sets: list[tuple[float, ...]], min_px: int
) -> dict:
    """``{variant: (probability rows, declined by the OOD gate)}`` for one photo and its tapped point.

    All crops of every scale set go through the model in one batch with the whole photo and the centre crops.
    """
    w, h = image.size

    def judged(centre: tuple[float, float], scales: tuple[float, ...]) -> list:
        # As the engine: crops too small to judge are left out (here the largest is kept, to score every photo).
        return tap_boxes(w, h, centre, scales, min_px=min_px) or [crop_box(w, h, centre, max(scales), min_px)]

    tapped = {scale_name(ss): judged(point, ss) for ss in scale_sets}
    centre = judged((0.5, 0.5), scale_sets[0])
    unique = list(dict.fromkeys(b for boxes in tapped.values() for b in boxes))
    x = torch.cat([triage.input_tensor(image), triage.crops_tensor(image, unique + centre)])
    probs, ood = triage.model_outputs(x)
    row = {b: 1 + i for i, b in enumerate(unique)}
    thr = triage.meta.get("ood", {}).get("threshold")

    def declined(score: float) -> bool:
        return bool(thr is not None and score > thr)

    out = {"whole": (probs[:1], declined(ood[0]))}
    for name, boxes in tapped.items():
        rows = [row[b] for b in boxes]
        for rule in (MEAN, CAUTIOUS):
            # The gate looks at the framed area, the largest crop, as in the engine.
            out[f"tap_{rule}@{name}"] = (probs[rows], declined(ood[rows[-1]]))
    out["whole_plus_centre"] = (np.concatenate([probs[:1], probs[1 + len(unique) :]]), declined(ood[0]))
    return out


def rule_of(variant: str) -> str:
    """The combination rule a variant uses (the whole photo and whole + centre crops average)."""
    return CAUTIOUS if variant.startswith(f"tap_{CAUTIOUS}") else MEAN


def outcomes(rows: list[np.ndarray], thresholds: Thresholds, rule: str) -> np.ndarray:
    """Outcome index per photo from its crops' probability rows."""
    return np.array([combine_crop_probabilities(r, thresholds, rule)[0] for r in rows])


def shifted(t: Thresholds, delta: float) -> Thresholds:
    """The operating point with both refer thresholds moved by ``delta`` (the abstain threshold kept)."""
    other = None if t.refer_other is None else float(np.clip(t.refer_other + delta, 0.0, 1.0))
    return Thresholds(float(np.clip(t.refer + delta, 0.0, 1.0)), t.abstain, other)


def at_sensitivity(y: np.ndarray, rows: list[np.ndarray], t: Thresholds, rule: str, target: float) -> dict:
    """Benign usefulness with the refer thresholds moved as far up as keeps refer sensitivity >= ``target``.

    An analysis of the test set (how much usefulness each variant has at the same sensitivity), not a way of
    choosing thresholds to ship: those are chosen on validation only.
    """
    best = None
    for delta in np.round(np.arange(-0.12, 0.40, 0.01), 2):
        m = metrics(y, outcomes(rows, shifted(t, float(delta)), rule))
        if m["refer_sensitivity"] >= target and (best is None or m["benign_usefulness"] > best[1]["benign_usefulness"]):
            best = (float(delta), m)
    if best is None:
        return {"refer_threshold_shift": None}
    return {
        "refer_threshold_shift": best[0],
        "benign_usefulness": best[1]["benign_usefulness"],
        "refer_sensitivity": best[1]["refer_sensitivity"],
        "unsafe_miss_rate": best[1]["unsafe_miss_rate"],
    }


def shorter_sides(records: list) -> dict:
    """Percentiles (5, 25, 50, 75, 95) of the photos' shorter sides in pixels, read from their headers."""
    from PIL import Image

    sides = []
    for r in records:
        with Image.open(r.path) as im:
            sides.append(min(im.size))
    return {f"p{q}": float(np.percentile(sides, q)) for q in (5, 25, 50, 75, 95)} | {"n": len(sides)}


def closeup(image, spot: tuple[float, float], rng: np.random.Generator):
    """A square close-up of the photo with the spot at a random place in its middle 60%; and the spot in it."""
    w, h = image.size
    side = round(CLOSEUP_SHARE * min(w, h))
    fx, fy = rng.uniform(0.2, 0.8, 2)
    left = int(min(max(round(spot[0] - fx * side), 0), w - side))
    top = int(min(max(round(spot[1] - fy * side), 0), h - side))
    crop = image.crop((left, top, left + side, top + side))
    return crop, ((spot[0] - left) / side, (spot[1] - top) / side)


def main(argv: list[str] | None = None) -> int:
    """Score every variant on both sets and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--manifest", default=str(REPO / "models" / "test_manifest.csv"))
    p.add_argument("--out", default=str(REPO / "results" / "tap_rule.json"))
    p.add_argument("--limit", type=int, default=None, help="score a seeded random N of the photos (a quick look)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--scales",
        default=f"{scale_name(TAP_SCALES)};0.5,0.75,1",
        help="sets of crop sides (shares of the shorter side), separated by ';'; the first one is the shipped set",
    )
    p.add_argument(
        "--min-px", type=int, default=MIN_JUDGED_SIDE, help="fewest pixels a crop side gets where the photo allows"
    )
    p.add_argument("--detector", choices=("lesions", "simple"), default="lesions", help="where the tap goes")
    p.add_argument("--sizes", action="store_true", help="only print the photos' shorter sides (px percentiles)")
    args = p.parse_args(argv)
    if args.sizes:
        print(json.dumps(shorter_sides(read_manifest(args.manifest)), indent=1))
        return 0
    scale_sets = [tuple(float(v) for v in part.split(",")) for part in args.scales.split(";") if part.strip()]
    variants = variant_names(scale_sets)
    triage = Triage.load(args.model, threads=2)
    rng = np.random.default_rng(args.seed)
    records = read_manifest(args.manifest)
    if args.limit is not None and args.limit < len(records):
        keep = np.sort(np.random.default_rng(args.seed).choice(len(records), args.limit, replace=False))
        records = [records[i] for i in keep]
    y: list[int] = []
    got: dict[str, dict[str, list]] = {s: {v: [] for v in variants} for s in ("photos", "closeups")}
    ood: dict[str, dict[str, list]] = {s: {v: [] for v in variants} for s in ("photos", "closeups")}
    no_spot = unreadable = 0
    t0 = time.perf_counter()
    for k, r in enumerate(records):
        try:
            image = crop_bottom(decode_path(r.path).image, r.crop_bottom)
        except (UploadError, OSError):
            unreadable += 1
            continue
        spots = spot_centres(np.asarray(image), args.detector)
        if spots:
            sx, sy = spots[0][0], spots[0][1]
        else:
            no_spot += 1
            sx, sy = image.width / 2, image.height / 2
        y.append(OUTCOMES.index(r.outcome))
        point = (min(max(sx / image.width, 0.0), 1.0), min(max(sy / image.height, 0.0), 1.0))
        near, near_point = closeup(image, (sx, sy), rng)
        for name, img, pt in (("photos", image, point), ("closeups", near, near_point)):
            scored = score_photo(triage, img, pt, scale_sets, args.min_px)
            for v in variants:
                got[name][v].append(scored[v][0])
                ood[name][v].append(scored[v][1])
        if (k + 1) % 250 == 0:
            print(f"{k + 1}/{len(records)} photos, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    y_arr = np.asarray(y)
    out = {
        "model": Path(args.model).name,
        "manifest": str(Path(args.manifest).name),
        "scale_sets": [list(ss) for ss in scale_sets],
        "min_crop_px": args.min_px,
        "closeup_share": CLOSEUP_SHARE,
        "seed": args.seed,
        "photos_scored": len(y),
        "unreadable": unreadable,
        "no_spot_found_tap_at_centre": no_spot,
        "detector": "triage.data.lesions.find_spots"
        if args.detector == "lesions"
        else "bench/tap_rule.py simple_spots",
        "seconds": round(time.perf_counter() - t0, 1),
    }
    t = triage.thresholds
    for name in ("photos", "closeups"):
        out[name] = {}
        whole = metrics(y_arr, outcomes(got[name]["whole"], t, MEAN))
        for v in variants:
            m = metrics(y_arr, outcomes(got[name][v], t, rule_of(v)))
            m["ood_declined"] = round(float(np.mean(ood[name][v])), 4)
            # The same refer sensitivity as the whole photo at the shipped point, for a like-for-like comparison.
            m["at_whole_photo_sensitivity"] = at_sensitivity(
                y_arr, got[name][v], t, rule_of(v), whole["refer_sensitivity"]
            )
            out[name][v] = m
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
