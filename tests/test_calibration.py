"""Temperature scaling on synthetic over- and under-confident logits."""

from __future__ import annotations

import numpy as np
import pytest

from triage.training.calibration import fit_temperature, nll


def _true_ish(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """Roughly calibrated 4-class logits: the true class gets +1.5, plus unit Gaussian noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    logits = 1.5 * np.eye(4)[y] + rng.normal(0.0, 1.0, (n, 4))
    return logits, y, rng


def test_overconfident_logits_get_t_above_one_and_lower_nll():
    logits, y, rng = _true_ish(1000, 0)
    noisy = y.copy()
    flip = rng.random(len(y)) < 0.30  # 30% label noise: the labels are less certain than the logits say
    noisy[flip] = (y[flip] + rng.integers(1, 4, flip.sum())) % 4
    over = 4.0 * logits
    t = fit_temperature(over, noisy)
    assert t > 1.0
    assert nll(over, noisy, t) < nll(over, noisy) - 0.1
    # It is a minimum: nearby temperatures are no better.
    assert nll(over, noisy, t) <= min(nll(over, noisy, 0.9 * t), nll(over, noisy, 1.1 * t)) + 1e-9


def test_underconfident_logits_get_t_below_one():
    logits, y, _ = _true_ish(1000, 1)
    under = 0.25 * logits
    t = fit_temperature(under, y)
    assert t < 1.0
    assert nll(under, y, t) < nll(under, y)


def test_calibrated_logits_keep_t_near_one():
    # Logits that *are* the log-probabilities the labels are drawn from: T should be ~1.
    rng = np.random.default_rng(2)
    logits = rng.normal(0.0, 1.5, (4000, 4))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = (p.cumsum(1) > rng.random((4000, 1))).argmax(1)
    assert fit_temperature(logits, y) == pytest.approx(1.0, abs=0.1)


def test_nll_matches_hand_value():
    # Two classes, logits (0, ln 3): p(class 1) = 3/4.
    logits = np.array([[0.0, np.log(3.0), -np.inf, -np.inf]])
    assert nll(logits, np.array([1])) == pytest.approx(-np.log(0.75))
    assert nll(logits, np.array([0])) == pytest.approx(-np.log(0.25))
