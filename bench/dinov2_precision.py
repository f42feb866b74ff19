"""How much the feature cache's bf16 autocast changes the DINOv2 features, against float32, on real photos.

Usage:
    python bench/dinov2_precision.py [--data data/processed] [--n 200] [--head runs/experiments/dinov2-logreg/head.pt]

The cache (``python -m triage.training.features``) runs the backbone under bf16 autocast, about three times
faster on a CPU with bf16 units; serving may run float32, float16 or int8. This computes the eval-view features
of a seeded sample of test photos both ways and reports the cosine similarity of the class and mean tokens, and,
with ``--head``, the refer AUC the head reaches on the sample from each (a paired comparison: the same photos and
head, only the backbone's precision differs). Writes ``results/dinov2_precision.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from triage.core import metrics as M
from triage.core.policy import softmax
from triage.core.transforms import eval_batch
from triage.models.dinov2 import INPUT_SIZE, MEAN, STD, dinov2_features, load_dinov2
from triage.training import load_splits
from triage.training.heads import load_head, predict_outcome_logits


def features(model, squares: list[np.ndarray], bf16: bool) -> np.ndarray:
    """``[N, 768]`` class + mean tokens of the squares, with or without bf16 autocast."""
    out = []
    for i in range(0, len(squares), 16):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            f = dinov2_features(model, eval_batch(squares[i : i + 16], INPUT_SIZE, MEAN, STD).contiguous())
        out.append(torch.cat([f["cls"], f["mean"]], dim=1).float().numpy())
    return np.concatenate(out)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("data/processed"))
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--head", type=Path)
    p.add_argument("--out", type=Path, default=Path("results/dinov2_precision.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cache, splits, fp = load_splits(args.data)
    test = splits["test"]
    pick = np.sort(np.random.default_rng(0).choice(len(test.rows), min(args.n, len(test.rows)), replace=False))
    squares = [np.asarray(cache[r]) for r in test.rows[pick]]
    model = load_dinov2()
    command = " ".join(["python bench/dinov2_precision.py", *(sys.argv[1:] if argv is None else argv)])
    result: dict = {"data_fingerprint": fp, "photos": len(pick), "command": command}
    feats = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        start = time.perf_counter()
        feats[name] = features(model, squares, bf16)
        result[f"{name}_ms_per_photo_1_thread"] = round(1000 * (time.perf_counter() - start) / len(squares), 1)
    for token, cols in (("cls", slice(0, 384)), ("mean", slice(384, 768))):
        c = cosines(feats["fp32"][:, cols], feats["bf16"][:, cols])
        result[f"{token}_cosine"] = {"min": round(float(c.min()), 5), "median": round(float(np.median(c)), 5)}
    if args.head:
        head, temperature = load_head(args.head), json.loads((args.head.parent / "metrics.json").read_text())
        t = temperature["model"]["temperature"]
        for name, x in feats.items():
            probs = softmax(predict_outcome_logits(head, x.astype(np.float16).astype(np.float32)), t)
            result[f"{name}_refer_auc"] = round(M.refer_auc(probs, test.y[pick]), 4)
        result["head"] = str(args.head)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
