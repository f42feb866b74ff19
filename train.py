"""Train, calibrate, evaluate and package a triage model.

Usage:
    python train.py -c configs/mobilenet_v3_small_224.yaml [--epochs 20 ...]   # the shipped recipe
    python train.py --resume runs/<folder>
    torchrun --nproc_per_node=2 train.py -c configs/mobilenet_v3_small.yaml --threads 1   # DDP, see docs/DISTRIBUTED.md

Flags override the YAML, which overrides the defaults in ``triage.training.TrainConfig``.
"""

from __future__ import annotations

import os
import sys

from triage.training import run
from triage.training.config import config_from_args, get_args_parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run training."""
    args = get_args_parser().parse_args(argv)
    run_dir = run(config_from_args(args), resume_dir=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 wrote (and names) the run folder
        print(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
