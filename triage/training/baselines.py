"""Baselines on the same split: the standard recipe and a linear probe on frozen features."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from triage.core import metrics as M
from triage.core.outcomes import OUTCOMES
from triage.core.policy import Thresholds
from triage.models.backbones import BACKBONES, build_model
from triage.training.config import TrainConfig
from triage.training.distributed import DistInfo
from triage.training.evaluation import evaluate_arrays, predict_logits
from triage.training.loop import init_weights_path, train_model


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
            "partial_labels": False,
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
    frozen = build_model(cfg.arch, len(OUTCOMES), init_weights_path(cfg)).to(memory_format=torch.channels_last)
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
