"""Train, calibrate, evaluate and package a triage model.

Usage:
    python train.py -c configs/mobilenet_v3_small.yaml [--epochs 8 ...]
    python train.py --resume runs/<folder>
    torchrun --nproc_per_node=2 train.py -c configs/mobilenet_v3_small.yaml --threads 1   # DDP, see docs/DISTRIBUTED.md

Flags override the YAML, which overrides the defaults in ``triage.training.TrainConfig``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import yaml

from triage.training import TrainConfig, run


def get_args_parser() -> argparse.ArgumentParser:
    """Build the parser: one flag per TrainConfig field, plus -c and --resume."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-c", "--config", help="YAML file of defaults")
    p.add_argument("--resume", help="run folder to continue")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "extra":
            continue
        kind = f.type if isinstance(f.type, type) else str
        if f.type in ("bool", bool):
            p.add_argument(
                f"--{f.name.replace('_', '-')}",
                type=lambda s: s.lower() in ("1", "true", "yes"),
                default=None,
            )
        else:
            conv = {"int": int, "float": float}.get(str(f.type), str) if not isinstance(f.type, type) else kind
            p.add_argument(f"--{f.name.replace('_', '-')}", type=conv, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run training."""
    args = get_args_parser().parse_args(argv)
    values: dict = {}
    if args.resume:
        values.update(yaml.safe_load(open(f"{args.resume}/config.yaml")))
    elif args.config:
        values.update(yaml.safe_load(open(args.config)) or {})
    values.update({k: v for k, v in vars(args).items() if v is not None and k not in ("config", "resume")})
    run_dir = run(TrainConfig(**values), resume_dir=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 wrote (and names) the run folder
        print(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
