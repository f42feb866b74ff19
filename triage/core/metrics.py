"""Evaluation metrics as pure functions over labels, predictions and probabilities."""

from __future__ import annotations

import numpy as np

from triage.core.outcomes import MILIA, OUTCOMES, PUSTULE, REFER


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


#: The refer sensitivity at which :func:`useful_at_sensitivity` is reported as ``useful_at_95``: the safety target.
USEFUL_AT = 0.95
REFER_IDX = OUTCOMES.index(REFER)


def refer_auc(probs_refer: np.ndarray, y_true: np.ndarray, negatives: list[int] | None = None) -> float:
    """ROC AUC of p(refer-to-doctor): refer photos against the photos of the ``negatives`` outcomes.

    The probability that a random refer photo gets a higher p(refer) than a random negative photo, ties
    counted half (the Mann-Whitney statistic, from mid-ranks). Photos of other outcomes are left out, so
    ``negatives=[PUSTULE index]`` is the pustule-against-refer AUC. Threshold-free: it measures the ranking
    the refer operating point is cut from.

    Args:
        probs_refer: calibrated p(refer) per photo, shape ``(N,)``; ``(N, 4)`` probabilities are accepted
            and their refer column taken.
        y_true: outcome indices.
        negatives: outcome indices counted as negatives (default: milia-like, pustule and other).

    Returns:
        the AUC in [0, 1]; ``nan`` when there is no refer photo or no negative photo (undefined).
    """
    p = np.asarray(probs_refer, dtype=np.float64)
    if p.ndim == 2:
        p = p[:, REFER_IDX]
    y = np.asarray(y_true)
    pos = y == REFER_IDX
    neg = np.isin(y, BENIGN if negatives is None else negatives)
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if not n_pos or not n_neg:
        return float("nan")
    scores = p[pos | neg]
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Mid-rank of each distinct score (1-based): the mean of the ranks its tied photos occupy.
    mid = np.cumsum(counts) - (counts - 1) / 2.0
    rank_sum = mid[inverse][pos[pos | neg]].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def refer_threshold_at_sensitivity(probs_refer: np.ndarray, y_true: np.ndarray, sensitivity: float = USEFUL_AT):
    """The largest threshold t for which "refer iff p(refer) >= t" reaches ``sensitivity`` on this set.

    t is the k-th largest p(refer) among refer photos, k = ceil(sensitivity x refer photos); ties at t
    are all referred, so the reached sensitivity is at least ``sensitivity``. ``nan`` without refer photos.
    """
    p = np.asarray(probs_refer, dtype=np.float64)
    if p.ndim == 2:
        p = p[:, REFER_IDX]
    pos = np.sort(p[np.asarray(y_true) == REFER_IDX])[::-1]
    if not len(pos):
        return float("nan")
    # The small tolerance keeps e.g. 0.95 x 20 = 19.000000000000004 at 19 photos, not 20.
    k = min(max(int(np.ceil(sensitivity * len(pos) - 1e-9)), 1), len(pos))
    return float(pos[k - 1])


def decisions_at_sensitivity(probs: np.ndarray, y_true: np.ndarray, sensitivity: float = USEFUL_AT) -> np.ndarray:
    """Decisions with the refer threshold set on this set itself (:func:`refer_threshold_at_sensitivity`).

    refer-to-doctor iff p(refer) >= t; every other photo gets the likeliest of milia-like, pustule and
    other. No abstain threshold and no separate threshold for "other": the plain ranking of p(refer).
    """
    probs = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    t = refer_threshold_at_sensitivity(probs, y_true, sensitivity)
    benign = np.asarray(BENIGN)[probs[:, BENIGN].argmax(1)]
    return np.where(probs[:, REFER_IDX] >= t, REFER_IDX, benign)


def useful_at_sensitivity(probs: np.ndarray, y_true: np.ndarray, sensitivity: float = USEFUL_AT) -> float:
    """Benign usefulness when the refer threshold is set on this same set for refer sensitivity ``sensitivity``.

    The point of the ROC curve the product runs at, without carrying a threshold over from another set:
    :func:`benign_usefulness` (a milia-like, pustule or other photo counts only when it gets its own outcome;
    referred or given another benign outcome, it does not) of :func:`decisions_at_sensitivity`.
    ``useful_at_95`` is this at 0.95. ``nan`` without refer photos or without benign photos.
    """
    y = np.asarray(y_true)
    if not (y == REFER_IDX).any():
        return float("nan")
    return benign_usefulness(y, decisions_at_sensitivity(probs, y, sensitivity))


def ranking(probs: np.ndarray, y_true: np.ndarray) -> dict:
    """Threshold-free and self-thresholded numbers of one set's probabilities (rounded).

    ``refer_auc`` (refer against the three other outcomes), ``useful_at_95``, ``auc_vs_refer`` (each benign
    outcome alone against refer photos) and ``at_95``: the threshold and every outcome's recall at that point.
    """
    probs, y = np.atleast_2d(np.asarray(probs, dtype=np.float64)), np.asarray(y_true)
    pred = decisions_at_sensitivity(probs, y) if (y == REFER_IDX).any() else None
    return {
        "refer_auc": _r(refer_auc(probs, y)),
        "useful_at_95": _r(useful_at_sensitivity(probs, y)),
        "auc_vs_refer": {OUTCOMES[c]: _r(refer_auc(probs, y, [c])) for c in BENIGN},
        "at_95": {
            "refer_threshold": _r(refer_threshold_at_sensitivity(probs, y)),
            "recall": {
                o: _r(float(np.mean(pred[y == c] == c))) if pred is not None and (y == c).any() else float("nan")
                for c, o in enumerate(OUTCOMES)
            },
        },
    }


def ranking_ci(metric, probs: np.ndarray, y_true: np.ndarray, n: int = 1000, seed: int = 0, groups=None):
    """95% group-bootstrap interval of a ranking metric ``metric(probs, y_true)`` (e.g. :func:`refer_auc`).

    Resamples photo groups with replacement (:func:`bootstrap_ci`); a self-thresholded metric such as
    :func:`useful_at_sensitivity` sets its threshold again on every resample, as its definition says.
    """
    probs = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    return bootstrap_ci(y_true, probs, lambda y, p: metric(p, y), n=n, seed=seed, groups=groups)


def ranking_cis(probs: np.ndarray, y_true: np.ndarray, n: int = 1000, seed: int = 0, groups=None) -> dict:
    """``refer_auc_ci95`` and ``useful_at_95_ci95`` of one set (the same resamples for both)."""
    return {
        "refer_auc_ci95": ranking_ci(refer_auc, probs, y_true, n, seed, groups),
        "useful_at_95_ci95": ranking_ci(useful_at_sensitivity, probs, y_true, n, seed, groups),
    }


#: What an epoch checkpoint can be chosen on (validation scores, compared in this order: the first decides, the
#: rest break ties). ``useful_at_95`` and ``refer_auc`` set no threshold carried over from another set; balanced
#: accuracy at argmax is the choice of the earlier recipes.
SELECT_ON: dict[str, tuple[str, ...]] = {
    "useful_at_95": ("useful_at_95", "refer_auc"),
    "refer_auc": ("refer_auc", "useful_at_95"),
    "balanced_accuracy": ("balanced_accuracy",),
}


def validation_scores(probs: np.ndarray, y_true: np.ndarray) -> dict[str, float]:
    """The scores :data:`SELECT_ON` chooses by: balanced accuracy at argmax, ``refer_auc``, ``useful_at_95``."""
    probs, y = np.atleast_2d(np.asarray(probs, dtype=np.float64)), np.asarray(y_true)
    return {
        "balanced_accuracy": balanced_accuracy(y, probs.argmax(1)),
        "refer_auc": refer_auc(probs, y),
        "useful_at_95": useful_at_sensitivity(probs, y),
    }


def selection_key(scores: dict[str, float], select_on: str) -> tuple[float, ...]:
    """The comparable key of one epoch's ``scores`` (higher is better); an undefined score ranks lowest.

    Raises:
        ValueError: ``select_on`` is not one of :data:`SELECT_ON`.
    """
    if select_on not in SELECT_ON:
        raise ValueError(f"select_on {select_on!r} is not one of {tuple(SELECT_ON)}")
    return tuple(float(scores[k]) if scores[k] == scores[k] else float("-inf") for k in SELECT_ON[select_on])


def summary(y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray | None = None) -> dict:
    """Headline metrics for one set of predictions (with ``probs``, also ECE and :func:`ranking`)."""
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
        out |= ranking(probs, y_true)
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
