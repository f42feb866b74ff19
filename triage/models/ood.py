"""Out-of-distribution score: Mahalanobis distance of pooled features to the nearest outcome.

Fitted on training-split features (class means, one shared covariance);
the flag threshold is a quantile of the validation scores, so by
construction about ``1 - quantile`` of valid photos are flagged.
"""

from __future__ import annotations

import numpy as np
import torch


def fit_ood(
    train_f: np.ndarray,
    train_y: np.ndarray,
    val_f: np.ndarray,
    quantile: float = 0.95,
    shrinkage: float = 0.05,
) -> dict:
    """Fit class means and a shrunk shared precision matrix; set the threshold on validation.

    Returns:
        ``{"means": Tensor(k, d), "precision": Tensor(d, d), "threshold": float, "quantile": float}``.
    """
    train_f = np.asarray(train_f, dtype=np.float64)
    classes = np.unique(train_y)
    means = np.stack([train_f[train_y == c].mean(0) for c in classes])
    centred = train_f - means[np.searchsorted(classes, train_y)]
    cov = centred.T @ centred / max(1, len(train_f) - 1)
    cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    precision = np.linalg.inv(cov)
    state = {
        "means": torch.tensor(means, dtype=torch.float32),
        "precision": torch.tensor(precision, dtype=torch.float32),
    }
    scores = ood_scores(val_f, state) if len(val_f) else np.zeros(1)
    state["threshold"] = float(np.quantile(scores, quantile))
    state["quantile"] = quantile
    return state


def ood_scores(feats: np.ndarray | torch.Tensor, state: dict) -> np.ndarray:
    """Minimum Mahalanobis distance over classes, per row (higher = less like the training data)."""
    f = torch.as_tensor(np.asarray(feats), dtype=torch.float32)
    diff = f[:, None, :] - state["means"][None]  # (n, k, d)
    d2 = torch.einsum("nkd,de,nke->nk", diff, state["precision"], diff)
    return d2.clamp_min(0).sqrt().min(1).values.numpy()
