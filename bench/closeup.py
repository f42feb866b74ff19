"""A checkpoint on whole photos and on close-ups, at its own operating point and at one chosen on both.

Usage:
    python bench/closeup.py [--checkpoint models/triage-mnv3s.pt] [--data data/processed]
                            [--out results/closeup.json] [--verified results/verified_closeups.csv]

Scores the test split and the close-up test set (lesion-centred crops of the test photos, see
``triage/data/crops.py``) with the checkpoint's calibrated model, under two policies:

* ``shipped``: the checkpoint's own thresholds (chosen on validation photos when it was trained);
* ``photos_and_closeups``: thresholds chosen again on validation photos *and* validation close-ups together
  (refer sensitivity >= 0.95 and unsafe misses <= 0.02 on each; ``triage.core.policy.choose_thresholds``).

Both are chosen on validation data only; the test split and the close-up test set only measure. The model
runs on the build's cached canonical squares, which equal what serving computes (tested in
``tests/test_training.py``), in batches.

``ranking`` holds what no threshold changes: ``refer_auc`` and ``useful_at_95`` (``triage.core.metrics``) with
group-bootstrap 95% intervals, per set. When the verdict file exists (``--verified``: close-up test crops checked
by eye, ``verdict`` yes / no / unsure), every number is reported on ``test_crops_verified`` too: the crops whose
verdict is yes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from triage.core import metrics as M
from triage.core.policy import Thresholds, choose_thresholds, decide
from triage.data.cache import open_crop_cache
from triage.inference.engine import Triage
from triage.research.closeups import verified_crop_positions
from triage.training import calibrated_probs, load_splits

SETS = ("val", "val_crops", "test", "test_crops")


def measure(probs: np.ndarray, y: np.ndarray, t: Thresholds) -> dict:
    """Headline numbers after the policy, safety and usefulness first."""
    s = M.summary(y, decide(probs, t), probs)
    keys = ("n", "refer_sensitivity", "benign_usefulness", "unsafe_miss_rate", "balanced_accuracy")
    return {k: s[k] for k in keys} | {"recall": {k: v["recall"] for k, v in s["per_class"].items()}}


def ranking(probs: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict:
    """The threshold-free numbers of one set: AUC and usefulness at refer sensitivity 0.95, with intervals."""
    return M.ranking(probs, y) | M.ranking_cis(probs, y, groups=groups)


def main(argv: list[str] | None = None) -> int:
    """Score and print / write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="models/triage-mnv3s.pt")
    p.add_argument("--data", default="data/processed")
    p.add_argument("--out", default="results/closeup.json")
    p.add_argument("--verified", default="results/verified_closeups.csv", help="verdicts (skipped when absent)")
    args = p.parse_args(argv)
    t0 = time.time()
    triage = Triage.load(args.checkpoint, threads=2)
    meta = triage.meta
    size = int(meta["canonical_size"])  # the squares the model was trained on
    cache, splits, fingerprint = load_splits(Path(args.data), canonical_size=size)
    crops = open_crop_cache(Path(args.data), size)
    if crops is None:
        raise SystemExit(f"{args.data} has no lesion-centred crops: rebuild it (python -m triage.data crops)")
    probs = calibrated_probs(triage.model, meta, cache, crops, splits, SETS)
    chosen, point = choose_thresholds(
        probs["val"], splits["val"].y, also={"closeup": (probs["val_crops"], splits["val_crops"].y)}
    )
    sets = {name: (probs[name], splits[name]) for name in SETS}
    if Path(args.verified).exists():
        keep = verified_crop_positions(Path(args.verified), Path(args.data))
        sets["test_crops_verified"] = (probs["test_crops"][keep], splits["test_crops"].subset(keep))
    out: dict = {"checkpoint": args.checkpoint, "version": triage.version, "data_fingerprint": fingerprint}
    out["ranking"] = {name: ranking(p, split.y, split.group) for name, (p, split) in sets.items()}
    for policy, t in (("shipped", triage.thresholds), ("photos_and_closeups", chosen)):
        out[policy] = {"thresholds": t.__dict__}
        for name, (p, split) in sets.items():
            out[policy][name] = measure(p, split.y, t)
    out["photos_and_closeups"]["validation_point"] = point
    out["wall_seconds"] = round(time.time() - t0, 1)
    text = json.dumps(out, indent=1, default=float)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(2)
    raise SystemExit(main())
