"""The source shortcut's floor: how well the photo's source alone ranks refer-to-doctor against benign photos.

Usage:
    python bench/source_prior.py [--data data/processed] [--out results/source_prior.json]

Every source files its photos under a different mix of outcomes (dermnet_nz about 88% refer-to-doctor,
roboflow_acne about 33%), so a model that only recognised which atlas or camera a photo came from would
already rank p(refer-to-doctor) above chance on a split drawn from the same sources. This scores that
model, one that has never looked at a pixel: each photo gets its source's outcome shares in the training
split as its probabilities. Its ``refer_auc`` and ``useful_at_95`` (with group-bootstrap intervals, as every
ranking here) on the test split and its close-ups are the floor a trained model's numbers should be read
against; on a source it has never seen the shortcut is worth nothing, which is part of the gap between the
test split and the leave-one-source-out rows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from triage.core import metrics as M
from triage.core.outcomes import OUTCOMES
from triage.training import load_splits


def source_prior_probs(train_source: np.ndarray, train_y: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Each row's probabilities: its source's share of each outcome among the training photos.

    Args:
        train_source: the training photos' sources.
        train_y: their outcome indices.
        source: the sources of the photos to score.

    Returns:
        ``(len(source), len(OUTCOMES))``; a source without training photos gets the shares of all of them.
    """
    k = len(OUTCOMES)
    overall = np.bincount(train_y, minlength=k) / len(train_y)
    shares = {
        s: np.bincount(train_y[train_source == s], minlength=k) / np.sum(train_source == s) for s in set(train_source)
    }
    return np.stack([shares.get(s, overall) for s in source]) if len(source) else np.zeros((0, k))


def main(argv: list[str] | None = None) -> int:
    """Score the source prior on the test split and its close-ups; print and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data/processed")
    p.add_argument("--out", default="results/source_prior.json")
    args = p.parse_args(argv)
    t0 = time.time()
    _, splits, fingerprint = load_splits(Path(args.data))
    train = splits["train"]
    out: dict = {"data_fingerprint": fingerprint}
    for name in ("test", "test_crops"):
        s = splits[name]
        if len(s.y) == 0:
            continue
        probs = source_prior_probs(train.source, train.y, s.source)
        out[name] = {"n": int(len(s.y))} | M.ranking(probs, s.y) | M.ranking_cis(probs, s.y, groups=s.group)
        print(name, json.dumps({k: out[name][k] for k in ("refer_auc", "refer_auc_ci95", "useful_at_95")}))
    out["wall_seconds"] = round(time.time() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
