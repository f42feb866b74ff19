"""Shipped recipe vs the standard recipe at the same safety operating point, plain and on tight crops.

Usage:
    python bench/operating_point.py --run runs/<folder> [--out results/operating_point.json]

The training report compares the standard recipe as a user would run it (argmax). This asks the
harder question: give the standard recipe the same treatment (temperature and refer / abstain
thresholds chosen on validation for refer sensitivity >= 0.95 and unsafe misses <= 0.02) and compare
the test split after the policy. It also scores both on a *tight-crop* version of the test split: the
central 30% of each photo's side, upscaled - close to the single-lesion close-ups clients send, which
neither model saw at test time. Needs the run folder (``model.pt`` and ``baseline_last.pt``) and the
data build it was trained on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from triage.checkpoint import load_model
from triage.core import metrics as M
from triage.core.policy import choose_thresholds, decide, softmax
from triage.core.transforms import colour_of
from triage.models.backbones import BACKBONES, build_model
from triage.training import load_splits, predict_logits
from triage.training.calibration import fit_temperature


def tight_crop(cache: np.ndarray, share: float = 0.3) -> np.ndarray:
    """The central ``share`` of each canonical square's side, resized back to the square's size."""
    n, side = len(cache), cache.shape[1]
    k = max(8, round(side * share))
    lo = (side - k) // 2
    out = np.empty((n, side, side, 3), dtype=np.uint8)
    for i in range(n):
        out[i] = cv2.resize(np.asarray(cache[i, lo : lo + k, lo : lo + k]), (side, side), interpolation=cv2.INTER_CUBIC)
    return out


def score(model, cfg: dict, cache, splits, tight_test) -> dict:
    """Calibrate and pick thresholds on validation; test metrics after the policy, plain and tight-cropped."""
    spec = BACKBONES[cfg["arch"]]
    size = cfg["image_size"]
    val, test = splits["val"], splits["test"]
    colour = colour_of(cfg)  # the checkpoint's colour constancy ("none" for older checkpoints)
    val_logits = predict_logits(model, cache, val.rows, size, spec.mean, spec.std, colour=colour)
    temperature = fit_temperature(val_logits, val.y)
    thresholds, _ = choose_thresholds(softmax(val_logits, temperature), val.y)
    out = {"temperature": round(temperature, 4), "thresholds": thresholds.__dict__}
    test_rows = np.arange(len(test.rows))
    for name, images, rows in (("test", cache, test.rows), ("test_tight_crop", tight_test, test_rows)):
        probs = softmax(predict_logits(model, images, rows, size, spec.mean, spec.std, colour=colour), temperature)
        pred = decide(probs, thresholds)
        s = M.summary(test.y, pred, probs)
        out[name] = {k: s[k] for k in ("balanced_accuracy", "refer_sensitivity", "unsafe_miss_rate", "ece")}
        out[name]["recall"] = {k: v["recall"] for k, v in s["per_class"].items()}
    return out


def main() -> None:
    """Score both models of a run and print / write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--out", default="results/operating_point.json")
    args = p.parse_args()
    torch.set_num_threads(2)
    run = Path(args.run)
    # Verified like everything else that loads a model: the run's sidecar must match.
    shipped, meta = load_model(run / "model.pt")
    cfg = meta["train_config"]
    cache, splits, fingerprint = load_splits(Path(cfg["data"]), canonical_size=int(meta["canonical_size"]))
    tight_test = tight_crop(np.asarray(cache[splits["test"].rows]))
    standard = build_model(cfg["arch"], len(meta["classes"]), None, cfg["dropout"])
    standard.load_state_dict(torch.load(run / "baseline_last.pt", map_location="cpu", weights_only=True)["best_model"])
    out = {
        "run": str(run),
        "data_fingerprint": fingerprint,
        "shipped_recipe": score(shipped, cfg, cache, splits, tight_test),
        "standard_recipe_same_policy": score(standard.eval(), cfg, cache, splits, tight_test),
    }
    text = json.dumps(out, indent=1, default=float)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
