"""The source-prior floor (bench/source_prior.py): a model that only knows each photo's source."""

from __future__ import annotations

import numpy as np
from helpers import load_script

from triage.core import metrics as M
from triage.core.outcomes import OUTCOMES

REFER = OUTCOMES.index("refer-to-doctor")
PUSTULE = OUTCOMES.index("pustule")


def test_each_photo_gets_its_source_s_training_shares():
    prior = load_script("bench/source_prior.py").source_prior_probs
    train_source = np.array(["a", "a", "a", "a", "b", "b"])
    train_y = np.array([REFER, REFER, REFER, PUSTULE, PUSTULE, PUSTULE])
    probs = prior(train_source, train_y, np.array(["b", "a", "unseen"]))
    assert probs.shape == (3, len(OUTCOMES))
    assert probs[0, PUSTULE] == 1.0 and probs[1, REFER] == 0.75 and probs[1, PUSTULE] == 0.25
    assert np.allclose(probs[2], np.bincount(train_y, minlength=len(OUTCOMES)) / 6)  # an unseen source: all shares
    assert np.allclose(probs.sum(1), 1.0)


def test_the_prior_ranks_by_source_alone():
    prior = load_script("bench/source_prior.py").source_prior_probs
    rng = np.random.default_rng(0)
    source = np.repeat(["atlas", "acne"], 100)
    # Confounded: one source is mostly refer photos, the other mostly pustules.
    y = np.where(rng.random(200) < np.where(source == "atlas", 0.9, 0.1), REFER, PUSTULE)
    assert M.refer_auc(prior(source, y, source)[:, REFER], y) > 0.85
    # Balanced: the same share of refer photos in both sources, so the source says nothing.
    y = np.tile([REFER, PUSTULE], 100)
    assert abs(M.refer_auc(prior(source, y, source)[:, REFER], y) - 0.5) < 1e-9
