"""Squares of another side (``python -m triage.data cache``): same rows as the build, trained and served alike."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from helpers import load_script
from test_partial_labels import acne_build  # noqa: F401  (a real build with ordinary and candidate crops)

from triage.core.policy import softmax
from triage.core.preprocess import CANONICAL_SIZE, canonical_square
from triage.core.transforms import eval_batch
from triage.data.build import main as data_main
from triage.data.cache import open_crop_cache, write_caches
from triage.data.crops import read_crop_rows
from triage.inference.decode import decode_path
from triage.inference.engine import Triage
from triage.training import load_splits, predict_logits

SIDE = 96  # another side than the build's, small enough to stay fast


@pytest.fixture(scope="module")
def build_copy(acne_build, tmp_path_factory):  # noqa: F811
    """A copy of the build, so that writing caches never touches the one other tests read."""
    copy = tmp_path_factory.mktemp("sides") / "proc"
    shutil.copytree(acne_build, copy)
    return copy


def test_squares_written_again_at_the_build_side_are_the_builds_own(build_copy, tmp_path):
    # The same decoding, crop boxes and resizing as the build: rewritten at 176 px, every byte is equal,
    # for photos, ordinary crops and candidate crops alike.
    again = tmp_path / "again"
    shutil.copytree(build_copy, again)
    (again / f"cache_{CANONICAL_SIZE}.npy").unlink()
    (again / f"crops_{CANONICAL_SIZE}.npy").unlink()
    out = write_caches(again, CANONICAL_SIZE, workers=1)
    rows = read_crop_rows(build_copy, candidates=True)
    assert any(r["candidates"] for r in rows) and out["crops"] == len(rows)
    for name in (f"cache_{CANONICAL_SIZE}.npy", f"crops_{CANONICAL_SIZE}.npy"):
        assert np.array_equal(np.load(build_copy / name), np.load(again / name)), name


def test_cache_command_writes_both_caches_and_records_them(build_copy):
    assert data_main(["cache", "--size", str(SIDE), "--out", str(build_copy), "--workers", "2"]) == 0
    cache, splits, fp = load_splits(build_copy, canonical_size=SIDE)
    base, _, base_fp = load_splits(build_copy)
    assert cache.shape == (len(base), SIDE, SIDE, 3) and fp == base_fp
    crops = open_crop_cache(build_copy, SIDE)
    assert crops.shape == (len(read_crop_rows(build_copy, candidates=True)), SIDE, SIDE, 3)
    card = json.loads((build_copy / "data_card.json").read_text())
    assert card["caches"][str(SIDE)]["photos"] == len(base)
    assert not list(build_copy.glob("*.partial.npy"))
    # Row for row the same photo: each square is its photo decoded as serving does, at the new side.
    with open(build_copy / "manifest.csv") as fh:
        photos = list(csv.DictReader(fh))
    for r in photos[:10]:
        served = canonical_square(decode_path(r["path"]).image, SIDE)
        assert np.array_equal(served, cache[int(r["cache_row"])]), r["path"]


def test_a_side_the_build_lacks_fails_with_the_command_to_write_it(build_copy, tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m triage.data cache --size 200"):
        load_splits(build_copy, canonical_size=200)
    with pytest.raises(FileNotFoundError, match="--size 200"):
        open_crop_cache(build_copy, 200)


def test_a_run_on_larger_squares_records_the_side_and_serves_on_it(build_copy, tmp_path):
    from test_training import TINY

    if not (build_copy / f"cache_{SIDE}.npy").exists():
        write_caches(build_copy, SIDE, workers=1)
    flags = ["--data", str(build_copy), "--out", str(tmp_path), *TINY, "--lesion-crop-p", "0.5"]
    assert load_script("train.py").main([*flags, "--name", "side", "--canonical-size", str(SIDE)]) == 0
    engine = Triage.load(tmp_path / "side" / "model.pt", threads=None)
    meta = engine.meta
    assert meta["canonical_size"] == SIDE and meta["train_config"]["canonical_size"] == SIDE
    # Serving cuts its square at the recorded side, and feeds the model what training's evaluation fed it.
    cache, splits, _ = load_splits(build_copy, canonical_size=SIDE)
    with open(build_copy / "manifest.csv") as fh:
        row = next(r for r in csv.DictReader(fh) if r["split"] == "test")
    image = decode_path(row["path"]).image
    x = engine.input_tensor(image)
    cached = np.asarray(cache[int(row["cache_row"])])
    assert torch.allclose(x, eval_batch([cached], meta["image_size"], meta["mean"], meta["std"]), atol=1e-6)
    logits = predict_logits(engine.model, cache, [int(row["cache_row"])], meta["image_size"], meta["mean"], meta["std"])
    probs, _ = engine.model_outputs(x)
    assert np.allclose(probs, softmax(logits, engine.temperature), atol=1e-5)


def test_the_256_px_square_rows_differ_from_the_long_recipe_by_the_side_alone():
    exp = load_script("bench/experiments.py")
    for seed in ("", "-seed1"):
        base = exp.EXPERIMENTS[f"long-mnv3s-224px-ema{seed}"]["set"]
        assert exp.EXPERIMENTS[f"squares256-mnv3s-224px-ema{seed}"]["set"] == base | {"canonical_size": 256}
