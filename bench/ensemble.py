"""Ensembles and test-time flips: the AUC each extra forward pass buys, on test photos and close-ups.

Usage:
    python bench/ensemble.py --checkpoints models/triage-mnv3s.pt runs/experiments/<run>/model.pt ...
                             [--data data/processed] [--verified results/verified_closeups.csv]
                             [--out results/ensemble.json]

Every checkpoint is loaded through ``triage.inference.engine.Triage`` (its sha256 checked) and scores the
validation split, the test split and the close-up test set from the build's cached canonical squares, once as
they are and once mirrored left-right. Variants average calibrated probabilities:

* each checkpoint alone, and with its mirrored input (2 passes);
* all checkpoints together, and with mirrored inputs (2 x n passes).

For each variant: ``refer_auc`` and ``useful_at_95`` with group-bootstrap intervals on test, close-ups and
verified close-ups (``triage.core.metrics``), and the numbers at a safety point chosen again for the variant
on validation photos and validation close-ups (``triage.core.policy.choose_thresholds``, as training does).
The cost is the forward passes per photo times each model's measured step (``triage.research.step_timing``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from triage.core import metrics as M
from triage.core.outcomes import OUTCOMES
from triage.core.policy import Thresholds, choose_thresholds, decide
from triage.core.preprocess import CANONICAL_SIZE
from triage.data.cache import open_crop_cache
from triage.inference.engine import Triage
from triage.research.closeups import verified_crop_positions
from triage.research.step_timing import benchmark_input, time_model_step
from triage.training import calibrated_probs, load_splits

SETS = ("val", "val_crops", "test", "test_crops")
PUSTULE = OUTCOMES.index("pustule")


class Mirrored:
    """A cache whose images come out mirrored left-right (rows index it like the cache itself)."""

    def __init__(self, cache) -> None:
        self.cache = cache

    def __getitem__(self, row) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(self.cache[row])[:, ::-1])


def calibrated(engine: Triage, cache, crops, splits: dict, mirrored: bool) -> dict[str, np.ndarray]:
    """Calibrated probabilities of every set in :data:`SETS` for one checkpoint."""
    if mirrored:
        cache, crops = Mirrored(cache), Mirrored(crops)
    return calibrated_probs(engine.model, engine.meta, cache, crops, splits, SETS)


def at_point(probs: np.ndarray, y: np.ndarray, t: Thresholds) -> dict:
    """Safety and usefulness at an operating point, pustule recall beside them."""
    pred = decide(probs, t)
    s = M.summary(y, pred)
    keys = ("refer_sensitivity", "unsafe_miss_rate", "benign_usefulness", "balanced_accuracy")
    pustule = float(np.mean(pred[y == PUSTULE] == PUSTULE)) if (y == PUSTULE).any() else float("nan")
    return {k: s[k] for k in keys} | {"pustule_recall": round(pustule, 4)}


def score_variant(probs: dict[str, np.ndarray], sets: dict, splits: dict) -> dict:
    """Ranking with intervals on every measured set, and the numbers at the variant's own validation point."""
    t, _ = choose_thresholds(
        probs["val"], splits["val"].y, also={"closeup": (probs["val_crops"], splits["val_crops"].y)}
    )
    out: dict = {"thresholds": t.__dict__}
    for name, (key, keep) in sets.items():
        p, split = probs[key][keep], splits[key].subset(keep)
        out[name] = M.ranking(p, split.y) | M.ranking_cis(p, split.y, groups=split.group)
        out[name]["at_validation_point"] = at_point(p, split.y, t)
    return out


def main(argv: list[str] | None = None) -> int:
    """Score every variant and print / write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", nargs="+", required=True)
    p.add_argument("--data", default="data/processed")
    p.add_argument("--verified", default="results/verified_closeups.csv")
    p.add_argument("--out", default="results/ensemble.json")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--step-repeats", type=int, default=30)
    args = p.parse_args(argv)
    t0 = time.time()
    torch.set_num_threads(args.threads)
    caches: dict[int, tuple] = {}  # squares by side: each checkpoint is scored on the side it was trained on

    def squares(size: int) -> tuple:
        if size not in caches:
            cache, splits, fingerprint = load_splits(Path(args.data), canonical_size=size)
            crops = open_crop_cache(Path(args.data), size)
            if crops is None:
                raise SystemExit(f"{args.data} has no lesion-centred crops: rebuild it (python -m triage.data crops)")
            caches[size] = (cache, crops, splits, fingerprint)
        return caches[size]

    _, _, splits, fingerprint = squares(CANONICAL_SIZE)
    sets = {"test": ("test", slice(None)), "closeup": ("test_crops", slice(None))}
    if Path(args.verified).exists():
        sets["closeup_verified"] = ("test_crops", verified_crop_positions(Path(args.verified), Path(args.data)))
    plain, flipped, step_ms = [], [], []
    for ckpt in args.checkpoints:
        engine = Triage.load(ckpt, threads=args.threads)
        if engine.meta["data_fingerprint"] != fingerprint:  # scored on another split, test photos may be trained on
            raise SystemExit(f"{ckpt} was trained on another build ({engine.meta['data_fingerprint'][:8]})")
        cache, crops, _, _ = squares(int(engine.meta["canonical_size"]))
        plain.append(calibrated(engine, cache, crops, splits, mirrored=False))
        flipped.append(calibrated(engine, cache, crops, splits, mirrored=True))
        # Rounded once, here, so every variant's cost is exactly the sum of the per-model steps reported.
        step_ms.append(round(statistics.median(time_model_step(engine, benchmark_input(engine), args.step_repeats)), 2))

    def mean_of(parts: list[dict]) -> dict[str, np.ndarray]:
        return {k: np.mean([q[k] for q in parts], axis=0) for k in SETS}

    variants: dict[str, tuple[list[dict], float]] = {}
    for i in range(len(args.checkpoints)):
        variants[f"{i}"] = ([plain[i]], step_ms[i])
        variants[f"{i}+flip"] = ([plain[i], flipped[i]], 2 * step_ms[i])
    for k in range(2, len(args.checkpoints) + 1):
        for combo in itertools.combinations(range(len(args.checkpoints)), k):
            name = "+".join(map(str, combo))
            variants[name] = ([plain[i] for i in combo], sum(step_ms[i] for i in combo))
            variants[f"{name}+flip"] = ([q for i in combo for q in (plain[i], flipped[i])], 2 * variants[name][1])
    out: dict = {"checkpoints": dict(enumerate(args.checkpoints)), "data_fingerprint": fingerprint}
    out["model_step_ms"] = step_ms
    out["variants"] = {}
    for name, (parts, ms) in variants.items():
        out["variants"][name] = {"model_step_ms": round(ms, 2)} | score_variant(mean_of(parts), sets, splits)
        print(name, json.dumps({s: out["variants"][name][s]["refer_auc"] for s in sets}), flush=True)
    out["wall_seconds"] = round(time.time() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
