"""Temperature scaling, fitted on validation logits only."""

from __future__ import annotations

import numpy as np
import torch


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``y`` under softmax(logits / T)."""
    lt = torch.as_tensor(logits, dtype=torch.float64) / temperature
    return float(torch.nn.functional.cross_entropy(lt, torch.as_tensor(y, dtype=torch.long)))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Find the temperature T > 0 minimising the NLL of softmax(logits / T).

    Optimises log T with L-BFGS, so T stays positive.
    """
    lg = torch.as_tensor(logits, dtype=torch.float64)
    yt = torch.as_tensor(y, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lg / log_t.exp(), yt)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))
