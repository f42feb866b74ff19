"""Backbone comparison: every architecture of ``triage.models.backbones.BACKBONES`` trained with one recipe.

Usage:
    python bench/backbones.py --epochs 2 [-c configs/mobilenet_v3_small.yaml] [--data data/processed]
                              [--archs mobilenet_v3_small,mobilenet_v2] [--results results/backbones.csv]
                              [--out runs/backbones] [--latency-repeats 50] [any train.py flag ...]

For each backbone, trains the recipe in the YAML (the shipped one by default; ``arch`` and ``epochs`` replaced,
baselines off) through ``triage.training.run``, then writes one row per backbone to a CSV, like timm's
``results/``: test-split balanced accuracy, refer-to-doctor sensitivity, unsafe-miss rate and ECE (after the
decision policy and calibration, as in ``metrics.json``), model size in MB, parameters, single-image CPU model
latency (median, 2 threads) and training wall time. The ``init`` column says which initial weights each run
really had (``random`` when the ImageNet file was not found). Other flags go to every run as on ``train.py``
(e.g. ``--max-batches 1 --image-size 64 --init-weights none`` for a smoke run); ``--out`` is the folder of the
run folders, as on ``train.py``, and ``--results`` the CSV.

This trains every backbone in full: on the real data and a 2-core CPU, hours for a few epochs.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

from triage.inference.engine import Triage
from triage.models.backbones import BACKBONES
from triage.research.step_timing import benchmark_input, time_model_step
from triage.training import TrainConfig, run
from triage.training.config import get_args_parser
from triage.training.loop import init_weights_path

REPO = Path(__file__).resolve().parents[1]

COLUMNS = [
    "arch",
    "epochs",
    "init",
    "image_size",
    "params_m",
    "model_size_mb",
    "test_n",
    "balanced_accuracy",
    "refer_sensitivity",
    "unsafe_miss_rate",
    "ece",
    "latency_ms_median",
    "latency_threads",
    "train_seconds",
    "wall_seconds",
    "run_dir",
]


def model_latency_ms(checkpoint: Path, repeats: int, threads: int = 2) -> float:
    """Median single-image latency of the engine's model step (network, softmax, OOD) on ``threads`` threads."""
    engine = Triage.load(checkpoint, threads=threads)
    return round(statistics.median(time_model_step(engine, benchmark_input(engine), repeats)), 2)


def compare(base: dict, archs: list[str], epochs: int, runs_dir: Path, latency_repeats: int) -> list[dict]:
    """Train ``base`` once per architecture and measure each run; returns the CSV rows."""
    rows = []
    for arch in archs:
        cfg = TrainConfig(
            **{
                **base,
                "arch": arch,
                "epochs": epochs,
                "baseline": False,
                "out": str(runs_dir),
                "name": f"{arch}-e{epochs}",
            }
        )
        init = init_weights_path(cfg)
        t0 = time.time()
        run_dir = run(cfg)
        wall = time.time() - t0
        metrics = json.loads((run_dir / "metrics.json").read_text())
        test = metrics["model"]["test"]
        ckpt = run_dir / "model.pt"
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
        rows.append(
            {
                "arch": arch,
                "epochs": epochs,
                "init": "random" if init is None else Path(str(init)).name,
                "image_size": cfg.image_size,
                "params_m": round(sum(v.numel() for k, v in state.items() if "running" not in k) / 1e6, 3),
                "model_size_mb": round(ckpt.stat().st_size / 2**20, 2),
                "test_n": test["n"],
                "balanced_accuracy": test["balanced_accuracy"],
                "refer_sensitivity": test["refer_sensitivity"],
                "unsafe_miss_rate": test["unsafe_miss_rate"],
                "ece": test["ece"],
                "latency_ms_median": model_latency_ms(ckpt, latency_repeats),
                "latency_threads": 2,
                "train_seconds": metrics["model"]["train_seconds"],
                "wall_seconds": round(wall, 1),
                "run_dir": str(run_dir),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def write_csv(rows: list[dict], out: Path) -> None:
    """Write the rows with :data:`COLUMNS` as header."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments (ours plus train.py's), compare the backbones, write the CSV."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], parents=[get_args_parser()], add_help=False)
    p.add_argument("--archs", default=",".join(BACKBONES), help="comma-separated keys of BACKBONES")
    p.add_argument("--results", default="results/backbones.csv", help="the CSV to write")
    p.add_argument("--latency-repeats", type=int, default=50)
    p.set_defaults(config=str(REPO / "configs" / "mobilenet_v3_small.yaml"), out="runs/backbones")
    args = p.parse_args(argv)
    if args.epochs is None:
        p.error("--epochs is required (keep it small: every backbone trains in full)")
    base: dict = yaml.safe_load(open(args.config)) or {}
    ours = {"config", "resume", "name", "out", "archs", "results", "latency_repeats"}
    base.update({k: v for k, v in vars(args).items() if v is not None and k not in ours})
    unknown = [a for a in args.archs.split(",") if a not in BACKBONES]
    if unknown:
        p.error(f"unknown architecture(s) {unknown}; choose from {sorted(BACKBONES)}")
    rows = compare(base, args.archs.split(","), args.epochs, Path(args.out), args.latency_repeats)
    write_csv(rows, Path(args.results))
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
