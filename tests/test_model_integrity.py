"""Triage.load refuses every damaged, tampered or foreign model file with a plain sentence.

Uses the shared ``tiny_model`` checkpoint (conftest: random weights, saved exactly as training saves one
with ``triage.checkpoint.save_checkpoint``), so these tests need no training run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_ARCH as ARCH
from conftest import tiny_checkpoint_meta as _meta

from triage.checkpoint import save_checkpoint
from triage.checkpoint import write_sha256 as _write_sha
from triage.core.outcomes import OUTCOMES
from triage.inference.engine import ModelLoadError, Triage
from triage.models.backbones import build_model


class NotWeights:
    """A custom class: pickling it makes a checkpoint that only the full (unsafe) unpickler would load."""

    def __init__(self) -> None:
        self.payload = "anything could run here"


@pytest.fixture(scope="module")
def good_ckpt(tiny_model) -> Path:
    """The shared tiny checkpoint (read-only here: tests that damage a file use ``ckpt_copy``)."""
    return tiny_model


@pytest.fixture
def ckpt_copy(good_ckpt, tmp_path) -> Path:
    """A private copy (with its .sha256) that a test may damage."""
    dst = tmp_path / "model.pt"
    shutil.copy(good_ckpt, dst)
    shutil.copy(str(good_ckpt) + ".sha256", str(dst) + ".sha256")
    return dst


def _refused(path: Path, **kw) -> str:
    """Assert Triage.load refuses ``path``; return the message, checked to be a sentence."""
    with pytest.raises(ModelLoadError) as info:
        Triage.load(path, threads=None, **kw)
    msg = str(info.value)
    # A sentence (it may open with the file name): several words, ends with a full stop.
    assert msg.rstrip().endswith(".") and len(msg.split()) >= 5, msg
    assert "Traceback" not in msg
    return msg


def test_good_checkpoint_loads_and_answers(ckpt_copy, make_photo):
    tri = Triage.load(ckpt_copy, threads=None)
    assert tri.meta["classes"] == list(OUTCOMES)
    assert tri.version == "test-random"
    x = tri.input_tensor(make_photo(3, (200, 160)))
    assert tuple(x.shape) == (1, 3, 64, 64)
    probs, ood = tri.model_outputs(x)
    assert probs.shape == (1, 4) and probs.sum() == pytest.approx(1.0)
    assert np.isnan(ood).all()  # no OOD state in this checkpoint: no score, no decline


def test_missing_file_refused(tmp_path):
    msg = _refused(tmp_path / "nope.pt")
    assert "not found" in msg


def test_one_flipped_byte_refused(ckpt_copy):
    data = bytearray(ckpt_copy.read_bytes())
    data[len(data) // 2] ^= 0x01
    ckpt_copy.write_bytes(bytes(data))
    msg = _refused(ckpt_copy)
    assert "sha256" in msg


def test_truncated_file_refused(ckpt_copy):
    ckpt_copy.write_bytes(ckpt_copy.read_bytes()[: ckpt_copy.stat().st_size // 2])
    _refused(ckpt_copy)  # sha mismatch
    _write_sha(ckpt_copy)  # even with a matching record, a truncated archive is not a checkpoint
    msg = _refused(ckpt_copy)
    assert "not a readable triage checkpoint" in msg
    _refused(ckpt_copy, verify=False)


def test_missing_sha256_refused_when_verifying(ckpt_copy):
    Path(str(ckpt_copy) + ".sha256").unlink()
    msg = _refused(ckpt_copy)
    assert "sha256" in msg
    # Explicitly unverified loading of an intact file still works.
    assert Triage.load(ckpt_copy, verify=False, threads=None).meta["arch"] == ARCH


def test_pickle_that_is_not_plain_weights_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "meta": _meta(), "extra": NotWeights()}, path)
    _write_sha(path)  # the sha matches, so only weights_only=True stands in the way
    msg = _refused(path)
    assert "not a readable triage checkpoint" in msg


def test_wrong_contents_refused(tmp_path, good_ckpt):
    # Plain tensors but no "meta": not a triage checkpoint.
    p1 = tmp_path / "bare.pt"
    torch.save(torch.load(good_ckpt, weights_only=True)["state_dict"], p1)
    _write_sha(p1)
    _refused(p1)
    # Other classes than ours.
    p2 = tmp_path / "classes.pt"
    meta = _meta() | {"classes": ["a", "b", "c", "d"]}
    save_checkpoint(build_model(ARCH, len(OUTCOMES), None), meta, p2)
    assert "classes" in _refused(p2)
    # Weights of another architecture than the metadata names: strict loading refuses.
    p3 = tmp_path / "arch.pt"
    save_checkpoint(build_model(ARCH, len(OUTCOMES), None), _meta() | {"arch": "mobilenet_v2"}, p3)
    _refused(p3)
    # Not a zip/pickle at all.
    p4 = tmp_path / "text.pt"
    p4.write_text("hello, I am not a model\n")
    _write_sha(p4)
    _refused(p4)
