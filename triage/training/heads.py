"""Heads on the cached DINOv2 features: a logistic regression or a small MLP, scored like a fine-tuned network.

    python -m triage.training.heads --data data/processed --kind logreg --out runs/heads --name logreg
    python -m triage.training.heads --kind mlp --holdout-source milk10k --name loso-milk10k-mlp

A head reads the class token and the mean patch token (768 numbers, :mod:`triage.training.features`), learns the
sources' own diagnoses (rare ones folded into their outcome, :mod:`triage.data.diagnoses`) and sums their
probabilities back to the four outcomes. Training rows are drawn with the CNN recipe's weights (square-root
class shares, sources balanced inside an outcome, :func:`triage.training.sampling.sample_weights`); every
finished training view of a photo (eval, mirror, augN) is another row of it. The epoch is chosen on the
validation ranking (``useful_at_95``, then ``refer_auc``), then temperature, thresholds and the numbers of every
set follow exactly as for the CNN (:func:`triage.training.evaluation.evaluate_arrays`), so a head's
``metrics.json`` reads like a training run's and ``bench/experiments.py`` records it the same way.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from triage.core import metrics as M
from triage.core.outcomes import OUTCOMES
from triage.core.policy import choose_thresholds, softmax
from triage.data.diagnoses import encode, vocabulary
from triage.training.calibration import fit_temperature
from triage.training.dataset import Split, load_splits
from triage.training.evaluation import evaluate_arrays
from triage.training.features import done_rows, feature_dir, view_path
from triage.training.sampling import sample_weights


@dataclass
class HeadConfig:
    """One head's recipe (every field is a flag of ``python -m triage.training.heads``)."""

    data: str = "data/processed"
    out: str = "runs/heads"
    name: str = "logreg"
    kind: str = "logreg"  # logreg | mlp
    epochs: int = 40
    lr: float = 2e-3
    weight_decay: float = 1e-4
    hidden: int = 512
    dropout: float = 0.3
    batch: int = 256
    min_diagnosis_count: int = 20
    holdout_source: str = ""
    #: Share of the training draws given to lesion-centred crops once the crop features are all computed.
    crop_share: float = 0.0
    seed: int = 0
    threads: int = 1


class FeatureHead(nn.Module):
    """Standardise the features, map them to diagnosis logits, and sum diagnoses to outcome log-probabilities."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, groups: list[int], kind: str, hidden: int, dropout: float):
        super().__init__()
        d, k = len(mean), len(groups)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.register_buffer("groups", torch.as_tensor(groups, dtype=torch.long))
        if kind == "logreg":
            self.net = nn.Sequential(nn.Dropout(dropout / 3), nn.Linear(d, k))
        elif kind == "mlp":
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, k))  # fmt: skip
        else:
            raise ValueError(f"unknown head kind {kind!r}: logreg or mlp")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Diagnosis logits."""
        return self.net((x - self.mean) / self.std)

    def outcome_logits(self, x: torch.Tensor) -> torch.Tensor:
        """log of each outcome's summed diagnosis probabilities (a softmax of them gives the outcome probabilities)."""
        logp = torch.log_softmax(self(x), dim=1)
        out = torch.full((len(x), len(OUTCOMES)), -1e4)
        for o in range(len(OUTCOMES)):
            out[:, o] = torch.logsumexp(logp[:, self.groups == o], dim=1)
        return out


def load_head(path: Path) -> FeatureHead:
    """A head saved by :func:`run_head` (``head.pt``), in eval mode."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    state, cfg = saved["state"], saved["config"]
    head = FeatureHead(state["mean"].numpy(), state["std"].numpy(), state["groups"].tolist(), cfg["kind"],
                       cfg["hidden"], cfg["dropout"])  # fmt: skip
    head.load_state_dict(state)
    return head.eval()


def vectors(tokens: np.ndarray) -> np.ndarray:
    """The head's input: class token and mean patch token side by side, float32 ``[N, 768]``."""
    return np.asarray(tokens[:, :2], dtype=np.float32).reshape(len(tokens), -1)


def finished_views(data_dir: Path, kind: str) -> list[str]:
    """The views of ``kind`` (``photos`` or ``crops``) whose every row is cached, eval first."""
    meta_path = feature_dir(data_dir) / "meta.json"
    views = json.loads(meta_path.read_text())["views"] if meta_path.exists() else {}
    done = [v for v, r in views.items() if v.startswith(kind + "/") and r["done"] == r["rows"]]
    return sorted(done, key=lambda v: (not v.endswith("/eval"), v))


def predict_outcome_logits(head: FeatureHead, x: np.ndarray) -> np.ndarray:
    """Outcome logits (before temperature) of feature vectors ``x`` (:func:`vectors`), in blocks of 4096 rows."""
    head.eval()
    with torch.no_grad():
        return torch.cat(
            [head.outcome_logits(torch.from_numpy(x[i : i + 4096])) for i in range(0, len(x), 4096)]
        ).numpy()


def fit_head(x: np.ndarray, y_diag: np.ndarray, weights: np.ndarray, groups: list[int], val: tuple, cfg: HeadConfig):
    """Train a head on rows ``x`` (diagnosis targets, sampling ``weights``); keep the epoch ranking best on ``val``.

    Args:
        val: ``(x_val, y_val)`` validation photos (outcome targets).

    Returns:
        the head at its chosen epoch and the per-epoch validation history.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    head = FeatureHead(x.mean(0), x.std(0) + 1e-6, groups, cfg.kind, cfg.hidden, cfg.dropout)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, len(x) // cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps)
    xt, yt, wt = torch.from_numpy(x), torch.from_numpy(y_diag), torch.as_tensor(weights)
    best, history = None, []
    for epoch in range(cfg.epochs):
        head.train()
        for _ in range(steps):
            idx = torch.multinomial(wt, cfg.batch, replacement=True, generator=gen)
            loss = nn.functional.cross_entropy(head(xt[idx]), yt[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        scores = M.validation_scores(softmax(predict_outcome_logits(head, val[0])), val[1])
        history.append({"epoch": epoch + 1, **{k: round(float(v), 4) for k, v in scores.items()}})
        key = M.selection_key(scores, "useful_at_95")
        if best is None or key > best[0]:
            best = (key, epoch + 1, {k: v.clone() for k, v in head.state_dict().items()})
    head.load_state_dict(best[2])
    return head, {"history": history, "chosen_epoch": best[1]}


def _training_rows(data_dir: Path, split: Split, views: list[str]) -> tuple[np.ndarray, Split]:
    """Every finished view of a split's rows, stacked (a view is another row of the same photo or crop)."""
    x = np.concatenate([vectors(np.load(view_path(data_dir, v), mmap_mode="r")[split.rows]) for v in views])
    return x, split.subset(np.tile(np.arange(len(split.rows)), len(views)))


def training_set(data_dir: Path, splits: dict, photo_views: list[str], crop_views: list[str], crop_share: float):
    """Rows, their split arrays and sampling weights: photos, and with ``crop_share`` > 0 their lesion crops.

    Photos and crops are each weighted like the CNN's draws (:func:`sample_weights`), and the crops together get
    ``crop_share`` of the mass, as the CNN recipe replaces half its draws of a spot-labelled photo by a crop.
    """
    x, train = _training_rows(data_dir, splits["train"], photo_views)
    weights = sample_weights(train.y, train.source, "sqrt_class_source")
    if crop_share <= 0 or not len(splits["train_crops"].rows):
        return x, train, weights
    if not crop_views:
        raise FileNotFoundError(
            f"{data_dir}: crop_share needs finished crop features (python -m triage.training.features)"
        )
    xc, crops = _training_rows(data_dir, splits["train_crops"], crop_views)
    wc = sample_weights(crops.y, crops.source, "sqrt_class_source")
    fields = ("rows", "y", "source", "fitz", "group", "diagnosis")
    both = Split(**{f: np.concatenate([getattr(train, f), getattr(crops, f)]) for f in fields})
    return np.concatenate([x, xc]), both, np.concatenate([(1 - crop_share) * weights, crop_share * wc])


def run_head(cfg: HeadConfig) -> Path:
    """Train, choose, calibrate and score one head; writes ``metrics.json`` and ``head.pt`` in its run folder."""
    start = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    data_dir = Path(cfg.data)
    _, splits, fp = load_splits(data_dir, cfg.holdout_source)
    photo_views, crop_views = finished_views(data_dir, "photos"), finished_views(data_dir, "crops")
    if "photos/eval" not in photo_views:
        raise FileNotFoundError(f"{data_dir}: no finished photos/eval features: run python -m triage.training.features")
    x, train, weights = training_set(data_dir, splits, photo_views, crop_views, cfg.crop_share)
    names, groups = vocabulary(splits["train"].diagnosis, splits["train"].y, cfg.min_diagnosis_count)
    names = [str(n) for n in names]  # plain strings: head.pt loads with torch.load(weights_only=True)
    y_diag = encode(train.diagnosis, train.y, names)
    photos = vectors(np.load(view_path(data_dir, "photos/eval"), mmap_mode="r"))
    head, fitting = fit_head(x, y_diag, weights, groups, (photos[splits["val"].rows], splits["val"].y), cfg)

    # Close-up sets are scored once their crops are computed (validation and test crops come first).
    ready = (
        np.zeros(0, dtype=np.int64)
        if not view_path(data_dir, "crops/eval").exists()
        else done_rows(data_dir, "crops/eval")
    )
    crops = vectors(np.load(view_path(data_dir, "crops/eval"), mmap_mode="r")) if len(ready) else None
    logits = {}
    for name, s in splits.items():
        source = crops if name.endswith("_crops") else photos
        complete = not name.endswith("_crops") or bool(np.isin(s.rows, ready).all())
        if name != "train" and source is not None and len(s.rows) and complete:
            logits[name] = predict_outcome_logits(head, source[s.rows])
    temperature = fit_temperature(logits["val"], splits["val"].y)
    also = (
        {"closeup": (softmax(logits["val_crops"], temperature), splits["val_crops"].y)} if "val_crops" in logits else {}
    )
    thresholds, val_point = choose_thresholds(softmax(logits["val"], temperature), splits["val"].y, also=also)
    report = {**fitting, "temperature": temperature, "thresholds": asdict(thresholds), "val_operating_point": val_point,
              "views": {"train": photo_views, "crops": crop_views if cfg.crop_share > 0 else []},
              "diagnoses": names}  # fmt: skip
    keys = {"val": "val", "test": "test", "val_crops": "closeup_val", "test_crops": "closeup_test",
            "holdout": "holdout", "holdout_crops": "holdout_closeup"}  # fmt: skip
    for name, key in keys.items():
        if name in logits:
            report[key] = evaluate_arrays(logits[name], splits[name], temperature, thresholds)
    if cfg.holdout_source:
        report["holdout_source"] = cfg.holdout_source
    run_dir = Path(cfg.out) / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"state": head.state_dict(), "config": asdict(cfg), "diagnoses": names}, run_dir / "head.pt")
    np.savez_compressed(run_dir / "logits.npz", **logits)
    metrics = {"data_fingerprint": fp, "wall_seconds": round(time.perf_counter() - start, 1), "model": report}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
    (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    return run_dir


def parse_args(argv: list[str] | None = None) -> HeadConfig:
    """``HeadConfig`` from the command line: every field is a ``--flag``."""
    p = argparse.ArgumentParser(prog="python -m triage.training.heads", description=__doc__.split("\n")[0])
    for name, default in asdict(HeadConfig()).items():
        p.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    return HeadConfig(**vars(p.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    run_dir = run_head(parse_args(argv))
    m = json.loads((run_dir / "metrics.json").read_text())["model"]
    for key in ("test", "closeup_test", "holdout"):
        if key in m:
            s = m[key]
            print(f"{key}: refer AUC {s['refer_auc']} {s.get('refer_auc_ci95')}, useful at 95 {s['useful_at_95']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
