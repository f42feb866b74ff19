"""Training: fine-tune a backbone, select on validation, calibrate, set the operating point, ship.

``train.py`` is a thin command line over :func:`run`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from triage.checkpoint import checkpoint_meta, save_checkpoint
from triage.core import metrics as M
from triage.core.outcomes import OUTCOMES
from triage.core.policy import Thresholds, choose_thresholds, softmax
from triage.data.cache import open_crop_cache
from triage.models.backbones import BACKBONES
from triage.models.ood import fit_ood
from triage.training.baselines import run_baselines, standard_recipe_config
from triage.training.calibration import fit_temperature, nll
from triage.training.config import TrainConfig, seed_everything
from triage.training.dataset import images_for, load_splits
from triage.training.distributed import DistInfo, finish_distributed, init_distributed
from triage.training.evaluation import evaluate_arrays, headline, predict_logits
from triage.training.loop import diagnosis_classes, seconds_before_resume, train_model

log = logging.getLogger(__name__)


def run(cfg: TrainConfig, resume_dir: str | None = None) -> Path:
    """Train, calibrate, evaluate and write a self-describing run folder.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process trains its share with DDP and only rank 0 writes
    the run folder, validates, calibrates and evaluates; a plain single process runs exactly as before.

    Returns:
        the run folder, holding ``config.yaml``, ``*_summary.csv``, ``model.pt``,
        ``metrics.json`` and ``train.log``.
    """
    dd = init_distributed()
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    run_dir = Path(resume_dir) if resume_dir else Path(cfg.out) / (cfg.name or time.strftime("%Y%m%d-%H%M%S"))
    if not dd.is_main:
        return _run_other_rank(cfg, dd, run_dir, resume_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(run_dir / "train.log")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("triage").addHandler(fh)
    logging.getLogger("triage").setLevel(logging.INFO)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))
    t_start = time.time()
    # Seconds spent by earlier processes on a resumed run: its wall time covers every session it took.
    before = seconds_before_resume(run_dir) if resume_dir else 0.0
    cache, splits, fp = load_splits(Path(cfg.data), cfg.holdout_source, cfg.partial_labels, cfg.canonical_size)

    model, history = train_model(cfg, cache, splits, run_dir, resume=resume_dir is not None, dist_info=dd)
    train_seconds = before + time.time() - t_start
    fitted = calibrate_and_evaluate(model, cfg, cache, splits, dd.device)
    report = {"data_fingerprint": fp, "model": fitted.report}
    report["model"].update(train_seconds=round(train_seconds, 1), history=history)
    if dd.device is not None:
        model = model.cpu()  # a checkpoint of CPU tensors, like a single process writes
    save_checkpoint(model, run_meta(cfg, fitted, report["model"], splits, fp), run_dir / "model.pt")

    if cfg.baseline:
        report.update(run_baselines(cfg, cache, splits, run_dir, dist_info=dd))
    report["wall_seconds"] = round(before + time.time() - t_start, 1)
    (run_dir / "metrics.json").write_text(json.dumps(report, indent=1, default=float))
    log.info("run finished in %.0f s: %s", report["wall_seconds"], run_dir)
    logging.getLogger("triage").removeHandler(fh)
    finish_distributed(dd)
    return run_dir


@dataclass
class Fitted:
    """What is fitted after training, on validation only: temperature, operating point, OOD statistics."""

    temperature: float
    thresholds: Thresholds
    ood: dict
    report: dict


def calibrate_and_evaluate(model: nn.Module, cfg: TrainConfig, cache, splits: dict, device=None) -> Fitted:
    """Fit temperature, thresholds and the OOD gate on validation, then score every other set at that point."""
    spec = BACKBONES[cfg.arch]
    crop_cache = open_crop_cache(Path(cfg.data), cfg.canonical_size)
    val, test = splits["val"], splits["test"]

    def logits_of(name: str, want_features: bool = False):
        images = images_for(name, cache, crop_cache)
        if images is None:  # a build without crops: empty close-up sets
            return np.zeros((0, len(OUTCOMES)))
        rows = splits[name].rows
        size, mean, std = cfg.image_size, spec.mean, spec.std
        return predict_logits(
            model,
            images,
            rows,
            size,
            mean,
            std,
            want_features=want_features,
            device=device,
            colour=cfg.colour_constancy,
        )

    val_logits, val_f = logits_of("val", want_features=True)
    temperature = fit_temperature(val_logits, val.y) if cfg.calibrate else 1.0
    val_probs = softmax(val_logits, temperature)
    logits = {k: logits_of(k) for k in ("val_crops", "test", "test_crops", "holdout", "holdout_crops") if k in splits}
    also = {}
    if cfg.closeup_thresholds and len(splits["val_crops"].y):
        also["closeup"] = (softmax(logits["val_crops"], temperature), splits["val_crops"].y)
    thresholds, val_point = choose_thresholds(val_probs, val.y, cfg.min_refer_sensitivity, also=also)
    # The OOD statistics (class means, shared covariance of 576 features) need a few thousand photos, not all:
    # a seeded, class-stratified sample keeps the post-training passes short.
    ood_train = splits["train"].subset(_ood_sample(splits["train"].y, cfg.ood_fit_max, cfg.seed))
    _, tr_f = predict_logits(
        model, cache, ood_train.rows, cfg.image_size, spec.mean, spec.std,
        want_features=True, device=device, colour=cfg.colour_constancy,
    )  # fmt: skip
    ood = fit_ood(tr_f, ood_train.y, val_f, cfg.ood_quantile)
    report = {
        "val": evaluate_arrays(val_logits, val, temperature, thresholds),
        "test": evaluate_arrays(logits["test"], test, temperature, thresholds),
        "temperature": temperature,
        "thresholds": asdict(thresholds),
        "val_operating_point": val_point,
        "val_nll_before": nll(val_logits, val.y),
        "val_nll_after": nll(val_logits, val.y, temperature),
        "test_ece_uncalibrated": M.ece(softmax(logits["test"]), test.y),
    }
    # Close-up sets (lesion-centred crops of the validation / test photos) and a held-out source, each at the
    # operating point chosen above: how well the validation-chosen point transfers.
    for name, key in (
        ("val_crops", "closeup_val"),
        ("test_crops", "closeup_test"),
        ("holdout", "holdout"),
        ("holdout_crops", "holdout_closeup"),
    ):
        if name in splits and len(splits[name].y):
            report[key] = evaluate_arrays(logits[name], splits[name], temperature, thresholds)
    if cfg.holdout_source:
        report["holdout_source"] = cfg.holdout_source
    return Fitted(temperature, thresholds, ood, report)


def run_meta(cfg: TrainConfig, fitted: Fitted, report: dict, splits: dict, fp: str) -> dict:
    """The checkpoint metadata of a finished run (:func:`triage.checkpoint.checkpoint_meta`)."""
    spec = BACKBONES[cfg.arch]
    meta = checkpoint_meta(
        version=f"{cfg.arch}-{time.strftime('%Y%m%d')}-{fp[:8]}",
        arch=cfg.arch,
        classes=list(OUTCOMES),
        image_size=cfg.image_size,
        canonical_size=cfg.canonical_size,
        mean=spec.mean,
        std=spec.std,
        colour_constancy=cfg.colour_constancy,
        temperature=fitted.temperature,
        refer_threshold=fitted.thresholds.refer,
        refer_threshold_other=fitted.thresholds.refer_other,
        abstain_threshold=fitted.thresholds.abstain,
        data_fingerprint=fp,
        ood=fitted.ood,
        dropout=cfg.dropout,
        metrics={k: headline(report[k]) for k in ("test", "val", "closeup_test", "holdout") if k in report},
        train_config={k: v for k, v in asdict(cfg).items() if isinstance(v, int | float | str | bool)},
    )
    classes = diagnosis_classes(cfg, splits["train"])
    if classes:
        meta["diagnoses"], meta["diagnosis_outcomes"] = classes
    return meta


def _run_other_rank(cfg: TrainConfig, dd: DistInfo, run_dir: Path, resume_dir: str | None) -> Path:
    """A DDP rank other than 0: take part in every training, write nothing, leave when training is done."""
    cache, splits, _ = load_splits(Path(cfg.data), cfg.holdout_source, cfg.partial_labels, cfg.canonical_size)
    train_model(cfg, cache, splits, run_dir, resume=resume_dir is not None, dist_info=dd)
    if cfg.baseline:
        train_model(standard_recipe_config(cfg), cache, splits, run_dir, tag="baseline", dist_info=dd)
    finish_distributed(dd)
    return run_dir


def _ood_sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A boolean mask of at most ``n`` rows, the same share of every class (all rows when ``n`` is 0)."""
    keep = np.ones(len(y), dtype=bool)
    if not n or n >= len(y):
        return keep
    rng = np.random.default_rng(seed)
    keep[:] = False
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        keep[rng.choice(idx, max(1, round(len(idx) * n / len(y))), replace=False)] = True
    return keep


if os.environ.get("TRIAGE_DEBUG"):
    logging.basicConfig(level=logging.DEBUG)
