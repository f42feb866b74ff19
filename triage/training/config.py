"""What a training run is told: the config dataclass, its command line, and seeding."""

from __future__ import annotations

import argparse
import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from triage.core.preprocess import CANONICAL_SIZE


@dataclass
class TrainConfig:
    """Everything a run needs; written to ``config.yaml`` in the run folder."""

    data: str = "data/processed"
    out: str = "runs"
    name: str = ""
    arch: str = "mobilenet_v3_small"
    init_weights: str | None = None  # None: the backbone's default ImageNet file/enum
    weights_dir: str = "../shared/weights"
    image_size: int = 160
    # Side of the canonical squares the run reads from the build (triage.data.cache); the checkpoint records it
    # and serving cuts its squares at that side. Every build holds CANONICAL_SIZE (176 px), which a larger
    # model input upsamples.
    canonical_size: int = CANONICAL_SIZE
    epochs: int = 8
    batch_size: int = 48
    lr: float = 1.5e-3
    weight_decay: float = 0.02
    label_smoothing: float = 0.05
    dropout: float = 0.2
    balance: str = "class_source"  # "sqrt_class_source" | "class_source" | "class" | "none"
    tight_crop_p: float = 0.35
    augment: str = "phone"  # "phone" | "standard"
    calibrate: bool = True
    min_refer_sensitivity: float = 0.95
    seed: int = 0
    threads: int = 2
    workers: int = 1
    max_batches: int = 0  # >0: stop each epoch early (tests, smoke runs)
    baseline: bool = False  # also train and report the standard recipe and a linear probe
    ood_quantile: float = 0.95
    ood_fit_max: int = 4000  # training photos used to fit the OOD statistics (0: all)
    lesion_crop_p: float = 0.0  # share of draws of a crop-eligible photo replaced by one of its lesion-centred crops
    closeup_thresholds: bool = True  # choose the operating point on validation photos and close-up crops together
    holdout_source: str = ""  # leave this source out of train/val/test and evaluate on all of it
    diagnosis_labels: bool = False  # train on the sources' own labels, summed to outcomes (triage.data.diagnoses)
    diagnosis_min_count: int = 30  # fewer training photos: the diagnosis joins its outcome's catch-all class
    # The epoch kept: best validation useful_at_95 (AUC breaks ties), refer_auc, or balanced_accuracy (argmax).
    # Threshold-free / self-thresholded scores: numbers at a carried-over threshold swing +-0.05 between
    # identical runs. See triage.core.metrics.SELECT_ON.
    select_on: str = "useful_at_95"
    # "shades_of_grey": Shades-of-Grey colour constancy (p = 6) on every model input, in training, evaluation
    # and serving alike (the checkpoint names it); "none": the pixels as they are.
    colour_constancy: str = "none"
    # Leading modules of the backbone's ``features`` kept at their ImageNet weights (freeze_leading_features):
    # 6 on EfficientNet-Lite0 (stem and first three blocks) halves its training step on a CPU.
    frozen_features: int = 0
    ema_decay: float = 0.0  # >0 (e.g. 0.999): validate, calibrate and ship an EMA of the weights (triage.training.ema)
    # Also train the build's candidate crops (multi-outcome photos) on their outcome set (triage.training.partial).
    partial_labels: bool = False
    # >0 (e.g. 0.2): mixup, each batch blended with a shuffled copy of itself, lam ~ Beta(a, a) (triage.training.mixup).
    mixup_alpha: float = 0.0
    extra: dict = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (albumentations and workers are seeded where built)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_args_parser() -> argparse.ArgumentParser:
    """Build the parser: one flag per TrainConfig field, plus -c and --resume."""
    p = argparse.ArgumentParser(
        description="Train, calibrate, evaluate and package a triage model.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's config: flags override the YAML (``-c``) or a resumed run's ``config.yaml``; both override defaults."""
    values: dict = {}
    if args.resume:
        values.update(yaml.safe_load(Path(args.resume, "config.yaml").read_text()))
    elif args.config:
        values.update(yaml.safe_load(Path(args.config).read_text()) or {})
    values.update({k: v for k, v in vars(args).items() if v is not None and k not in ("config", "resume")})
    return TrainConfig(**values)
