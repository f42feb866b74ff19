"""Scoring a network on arrays: logits of cached images, batch-norm re-estimation, metrics of a split."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from triage.core import metrics as M
from triage.core.outcomes import OUTCOMES
from triage.core.policy import Thresholds, decide, softmax
from triage.core.transforms import colour_of, eval_batch
from triage.models.backbones import classify_features, features
from triage.training.dataset import Split, images_for


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


def calibrated_probs(model: nn.Module, meta: dict, cache, crop_cache, splits: dict, names) -> dict[str, np.ndarray]:
    """A checkpoint's calibrated probabilities on cached sets, as serving would compute them.

    Args:
        model: the checkpoint's network.
        meta: its metadata (input side, normalisation, colour constancy, temperature).
        cache: the photo squares; crop_cache: the crop squares (``*_crops`` sets index it, see ``images_for``).
        splits: the sets (``dataset.load_splits``).
        names: the sets to score.
    """
    out = {}
    for name in names:
        logits = predict_logits(
            model, images_for(name, cache, crop_cache), splits[name].rows, meta["image_size"], meta["mean"],
            meta["std"], colour=colour_of(meta),
        )  # fmt: skip
        out[name] = softmax(logits, meta["temperature"])
    return out


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


def headline(m: dict) -> dict:
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
