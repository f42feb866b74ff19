"""Evaluation metrics as pure functions over labels, predictions and probabilities."""

from __future__ import annotations

import numpy as np

from triage.outcomes import MILIA, OUTCOMES, PUSTULE, REFER


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int = len(OUTCOMES)) -> np.ndarray:
    """k x k confusion matrix, rows = truth, columns = prediction."""
    m = np.zeros((k, k), dtype=int)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return float(np.mean(recalls)) if recalls else float("nan")


def ece(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top label, equal-width bins."""
    probs = np.asarray(probs)
    if len(probs) == 0:
        return float("nan")
    conf = probs.max(1)
    correct = probs.argmax(1) == np.asarray(y_true)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            total += sel.mean() * abs(conf[sel].mean() - correct[sel].mean())
    return float(total)


def refer_sensitivity(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Recall of refer-to-doctor."""
    r = OUTCOMES.index(REFER)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    sel = y_true == r
    return float(np.mean(y_pred[sel] == r)) if sel.any() else float("nan")


def unsafe_miss_rate(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of true refer-to-doctor photos sent to milia-like or pustule (towards a facial)."""
    r = OUTCOMES.index(REFER)
    risky = [OUTCOMES.index(MILIA), OUTCOMES.index(PUSTULE)]
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    sel = y_true == r
    return float(np.isin(y_pred[sel], risky).mean()) if sel.any() else float("nan")


BENIGN = [OUTCOMES.index(o) for o in OUTCOMES if o != REFER]


def benign_usefulness(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of milia-like, pustule and "other" photos that receive their own outcome.

    The product's usefulness number, to stand beside refer sensitivity: a benign photo told "see a doctor"
    (or declined as can't-assess, which evaluation counts as refer) or given another benign outcome is not a
    useful answer. A tool that refers everyone scores 0.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    sel = np.isin(y_true, BENIGN)
    return float(np.mean(y_pred[sel] == y_true[sel])) if sel.any() else float("nan")


def summary(y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray | None = None) -> dict:
    """Headline metrics for one set of predictions."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = confusion(y_true, y_pred)
    per_class = {}
    f1s = []
    for i, name in enumerate(OUTCOMES):
        tp = cm[i, i]
        support = int(cm[i].sum())
        pred = int(cm[:, i].sum())
        rec = tp / support if support else float("nan")
        prec = tp / pred if pred else float("nan")
        f1 = 2 * prec * rec / (prec + rec) if support and pred and (prec + rec) > 0 else 0.0
        if support:
            f1s.append(f1)
        per_class[name] = {"recall": _r(rec), "precision": _r(prec), "f1": _r(f1), "support": support}
    out = {
        "n": int(len(y_true)),
        "balanced_accuracy": _r(balanced_accuracy(y_true, y_pred)),
        "accuracy": _r(float(np.mean(y_true == y_pred))) if len(y_true) else float("nan"),
        "macro_f1": _r(float(np.mean(f1s))) if f1s else float("nan"),
        "per_class": per_class,
        "refer_sensitivity": _r(refer_sensitivity(y_true, y_pred)),
        "unsafe_miss_rate": _r(unsafe_miss_rate(y_true, y_pred)),
        "benign_usefulness": _r(benign_usefulness(y_true, y_pred)),
        "confusion": cm.tolist(),
    }
    if probs is not None:
        out["ece"] = _r(ece(probs, y_true))
    return out


def bootstrap_ci(y_true, y_pred, metric, n: int = 1000, seed: int = 0, groups=None) -> tuple[float, float]:
    """95% percentile bootstrap interval of ``metric(y_true, y_pred)``.

    Resamples whole groups when ``groups`` is given (copies of one photo move together).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    rng = np.random.default_rng(seed)
    if groups is None:
        idx_sets = None
        m = len(y_true)
    else:
        groups = np.asarray(groups)
        uniq, inv = np.unique(groups, return_inverse=True)
        idx_sets = [np.flatnonzero(inv == g) for g in range(len(uniq))]
        m = len(uniq)
    vals = []
    for _ in range(n):
        pick = rng.integers(0, m, m)
        idx = pick if idx_sets is None else np.concatenate([idx_sets[p] for p in pick])
        v = metric(y_true[idx], y_pred[idx])
        if not np.isnan(v):
            vals.append(v)
    if not vals:
        return (float("nan"), float("nan"))
    return (_r(float(np.percentile(vals, 2.5))), _r(float(np.percentile(vals, 97.5))))


def _r(x: float) -> float:
    return float(round(x, 4)) if x == x else float("nan")
