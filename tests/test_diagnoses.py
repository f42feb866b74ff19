"""Diagnosis-level labels: the vocabulary, the encoding and the head that sums them back to outcomes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from triage.core.outcomes import OUTCOMES
from triage.data.diagnoses import catch_all, diagnosis_key, encode, vocabulary
from triage.models.backbones import OutcomeHead, build_model


def test_vocabulary_keeps_frequent_diagnoses_and_one_catch_all_per_outcome():
    keys = ["ham:NV"] * 3 + ["ham:MEL"] * 3 + ["asc:Acne"] * 2 + ["asc:Milia"]
    y = [2] * 3 + [3] * 3 + [1] * 2 + [0]
    names, groups = vocabulary(keys, y, min_count=2)
    assert names[:4] == [catch_all(o) for o in OUTCOMES] and groups[:4] == [0, 1, 2, 3]
    assert names[4:] == ["asc:Acne", "ham:NV", "ham:MEL"]  # by outcome, then name; asc:Milia is rare
    assert groups[4:] == [1, 2, 3]
    fine = encode(keys, y, names)
    assert fine.tolist() == [5] * 3 + [6] * 3 + [4] * 2 + [0]  # the rare milia photo -> milia-like's catch-all
    # A diagnosis never seen in training goes to its outcome's catch-all too.
    assert encode(["new:thing"], [3], names).tolist() == [3]


def test_vocabulary_refuses_a_diagnosis_under_two_outcomes():
    with pytest.raises(ValueError, match="two outcomes"):
        vocabulary(["s:x", "s:x"], [0, 3], min_count=1)


def test_diagnosis_key_names_the_source():
    assert diagnosis_key("ham10000", "NV") == "ham10000:NV"


def test_outcome_head_sums_diagnosis_probabilities_in_eval_and_gives_logits_in_training():
    torch.manual_seed(0)
    groups = [0, 1, 2, 3, 3, 2, 3]
    head = OutcomeHead(8, groups)
    x = torch.randn(5, 8)
    head.train()
    fine = head(x)
    assert fine.shape == (5, len(groups))
    head.eval()
    with torch.no_grad():
        out = head(x)
    assert out.shape == (5, 4)
    p_fine = torch.softmax(fine, 1).detach().numpy()
    want = np.stack([p_fine[:, [i for i, g in enumerate(groups) if g == k]].sum(1) for k in range(4)], 1)
    np.testing.assert_allclose(torch.softmax(out, 1).numpy(), want, atol=1e-6)
    # Outcome log-probabilities already: their exponentials sum to one without a further softmax.
    np.testing.assert_allclose(out.exp().sum(1).numpy(), 1.0, atol=1e-5)


def test_build_model_with_groups_round_trips_through_a_state_dict():
    groups = [0, 1, 2, 3, 3]
    a = build_model("mobilenet_v3_small", 4, None, groups=groups).eval()
    b = build_model("mobilenet_v3_small", 4, None, groups=groups).eval()
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(a(x), b(x)) and a(x).shape == (2, 4)
    with pytest.raises(RuntimeError):  # a plain 4-output head cannot take a diagnosis checkpoint
        build_model("mobilenet_v3_small", 4, None).load_state_dict(a.state_dict(), strict=True)
    with pytest.raises(ValueError, match="cover"):
        build_model("mobilenet_v3_small", 4, None, groups=[0, 1, 3])
