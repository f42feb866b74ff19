"""Training levers: Shades-of-Grey colour constancy (training = serving), an EMA of the weights, mixup, exact resume.

The runs here are tiny (64 px, 1-2 batches an epoch, random initial weights) on the generated dataset of
:func:`triage.testing.synthetic.write_tiny_dataset`, built by the real data build.
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from triage.core.policy import softmax
from triage.core.preprocess import (
    CANONICAL_SIZE,
    SHADES_OF_GREY_P,
    canonical_square,
    colour_constancy,
    shades_of_grey,
    to_tensor_batch,
)
from triage.core.transforms import colour_of, eval_batch, resize_square
from triage.data.build import build
from triage.data.sources import read_manifest
from triage.inference.decode import decode_path
from triage.inference.engine import Triage
from triage.models.backbones import BACKBONES, build_model, freeze_leading_features
from triage.testing.synthetic import cast_and_grain, synthetic_photo, write_tiny_checkpoint, write_tiny_dataset
from triage.training import CachedImages, TrainConfig, load_splits, predict_logits, run, seed_everything, train_model
from triage.training.ema import WeightEMA, ema_decay_at
from triage.training.mixup import draw_mix, mix_inputs, mixed_loss
from triage.training.partial import CandidateSetLoss

SOG = "shades_of_grey"


def _p_norms(image: np.ndarray, p: int = SHADES_OF_GREY_P) -> np.ndarray:
    return np.mean(image.astype(np.float64) ** p, axis=(0, 1)) ** (1 / p)


def _skin_like(seed: int, side: int = 96) -> np.ndarray:
    """A textured, skin-toned RGB image well inside 0-255 (so casts below do not clip)."""
    rng = np.random.default_rng(seed)
    base = np.array([170.0, 120.0, 100.0]) * rng.uniform(0.6, 1.0, (side, side, 1))
    return np.clip(base + rng.normal(0, 8, (side, side, 3)), 20, 200).astype(np.uint8)


# -- Shades of Grey ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cast", [(1.2, 1.0, 0.7), (0.6, 0.9, 1.25), (1.0, 1.0, 1.0)])
def test_shades_of_grey_gives_every_channel_the_same_p_norm(cast):
    image = np.clip(_skin_like(1) * np.asarray(cast), 0, 255).astype(np.uint8)
    before = _p_norms(image)
    out = shades_of_grey(image)
    assert out.dtype == np.uint8 and out.shape == image.shape
    after = _p_norms(out)
    assert np.ptp(after) / after.mean() < 0.005  # equal up to rounding to whole pixel values
    # The overall level is kept: the common norm is the root mean square of the three before.
    assert after.mean() == pytest.approx(np.sqrt(np.mean(before**2)), rel=0.005)


def test_shades_of_grey_removes_a_per_channel_colour_cast():
    """A camera's white-balance error (a gain per channel) disappears: the cast photo comes out as the plain one,
    up to one brightness factor shared by all channels."""
    plain = _skin_like(2)
    cast = np.clip(plain * np.asarray([1.25, 0.95, 0.7]), 0, 255).astype(np.uint8)
    out_plain, out_cast = shades_of_grey(plain).astype(float), shades_of_grey(cast).astype(float)
    k = out_cast.mean() / out_plain.mean()
    assert np.abs(out_cast - k * out_plain).max() <= 2.5  # roundings to whole pixel values
    assert np.abs(cast.astype(int) - plain.astype(int)).max() > 40  # the cast was large


def test_shades_of_grey_keeps_a_neutral_image_and_an_empty_channel():
    grey = np.full((8, 8, 3), 128, dtype=np.uint8)
    assert np.array_equal(shades_of_grey(grey), grey)
    red = np.zeros((8, 8, 3), dtype=np.uint8)
    red[..., 0] = 200
    out = shades_of_grey(red)
    assert np.isfinite(out).all() and out[..., 1:].max() == 0 and out[..., 0].max() > 0


def test_colour_constancy_none_is_the_identity_and_unknown_methods_fail():
    image = _skin_like(3)
    assert colour_constancy(image, "none") is image
    assert np.array_equal(colour_constancy(image, SOG), shades_of_grey(image))
    with pytest.raises(ValueError, match="unknown colour constancy"):
        colour_constancy(image, "grey_edge")


def test_a_checkpoint_without_the_field_is_served_exactly_as_before(tmp_path):
    """A checkpoint made before colour constancy existed: input = resize + normalise, bit for bit."""
    engine = Triage.load(write_tiny_checkpoint(tmp_path / "old.pt", image_size=96), threads=None)
    assert "colour_constancy" not in engine.meta and colour_of(engine.meta) == "none"
    photo = cast_and_grain(synthetic_photo(np.random.default_rng(5), (480, 360)), 5)
    square = canonical_square(photo, int(engine.meta["canonical_size"]))
    before = to_tensor_batch(
        resize_square(square, int(engine.meta["image_size"]))[None], engine.meta["mean"], engine.meta["std"]
    )
    assert torch.equal(engine.input_tensor(photo), before)


# -- tiny runs ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proc(tmp_path_factory) -> Path:
    """The generated tiny dataset, through the real data build (crops included)."""
    root = tmp_path_factory.mktemp("levers")
    tiny = write_tiny_dataset(root / "tiny", per_outcome=12, duplicates=0)
    build(read_manifest(tiny.manifest), root / "proc", seed=0, workers=1)
    return root / "proc"


def _config(proc: Path, out: Path, **change) -> TrainConfig:
    tiny = {"epochs": 1, "max_batches": 1, "batch_size": 8, "image_size": 64, "init_weights": "none", "workers": 0}
    return TrainConfig(data=str(proc), out=str(out), threads=1, baseline=False, **(tiny | change))


def test_colour_constancy_run_serves_what_it_was_evaluated_on(proc, tmp_path):
    run_dir = run(_config(proc, tmp_path, name="sog", colour_constancy=SOG))
    engine = Triage.load(run_dir / "model.pt", threads=None)
    meta = engine.meta
    assert colour_of(meta) == SOG and meta["train_config"]["colour_constancy"] == SOG
    size, mean, std = meta["image_size"], meta["mean"], meta["std"]
    with open(proc / "manifest.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["path"].endswith(".png") and r["split"] == "test")
    image = decode_path(row["path"]).image
    cache, _, _ = load_splits(proc)
    cached = np.asarray(cache[int(row["cache_row"])])
    assert np.array_equal(cached, canonical_square(image, CANONICAL_SIZE))
    # Serving's input is training evaluation's input for the same photo, colour-corrected in both.
    served = engine.input_tensor(image)
    assert torch.equal(served, eval_batch([cached], size, mean, std, SOG))
    assert not torch.allclose(served, eval_batch([cached], size, mean, std), atol=1e-3)
    logits = predict_logits(engine.model, cache, [int(row["cache_row"])], size, mean, std, colour=SOG)
    probs, _ = engine.model_outputs(served)
    assert np.allclose(probs, softmax(logits, engine.temperature), atol=1e-5)


def test_training_inputs_get_the_same_colour_constancy(proc):
    cache, splits, _ = load_splits(proc)
    spec = BACKBONES["mobilenet_v3_small"]

    def unchanged(image):  # an augmentation that draws nothing, so the two paths can be compared
        return {"image": image.copy()}

    ds = CachedImages(cache, splits["train"], unchanged, spec.mean, spec.std, colour=SOG)
    x, _ = ds[0]
    square = np.asarray(cache[splits["train"].rows[0]])
    assert torch.allclose(x, eval_batch([square], CANONICAL_SIZE, spec.mean, spec.std, SOG)[0], atol=1e-6)
    plain, _ = CachedImages(cache, splits["train"], unchanged, spec.mean, spec.std)[0]
    assert not torch.allclose(x, plain, atol=1e-3)


# -- EMA ----------------------------------------------------------------------------------------------


def test_ema_update_is_the_moving_average_of_the_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = WeightEMA(model, 0.9)
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(16, 3))  # new batch-norm statistics
    ema.update(step=1000)  # late in training: the full decay
    for avg, s, p in zip(ema.average.parameters(), start, model.parameters(), strict=True):
        assert torch.allclose(avg, 0.9 * s + 0.1 * p, atol=1e-6)
        assert not avg.requires_grad
    for avg, b in zip(ema.average.buffers(), model.buffers(), strict=True):
        assert torch.equal(avg, b)
    # Early steps average over fewer steps: step 0 keeps only 10 % of the old average.
    assert ema_decay_at(0.999, 0) == pytest.approx(0.1) and ema_decay_at(0.999, 10**6) == 0.999
    before = [a.clone() for a in ema.average.parameters()]
    ema.update(step=0)
    for avg, b, p in zip(ema.average.parameters(), before, model.parameters(), strict=True):
        assert torch.allclose(avg, 0.1 * b + 0.9 * p, atol=1e-6)


class _Stopped(Exception):
    """The run "lost its machine" right after saving an epoch."""


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _keep_saves(monkeypatch) -> list[dict]:
    """Make ``torch.save`` also keep a copy of everything saved, in order (the list returned)."""
    saved: list[dict] = []
    real_save = torch.save

    def save_and_keep(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        saved.append(copy.deepcopy(obj))

    monkeypatch.setattr(torch, "save", save_and_keep)
    return saved


@pytest.mark.parametrize("mixup_alpha", [0.0, 0.4], ids=["plain", "mixup"])
def test_resume_with_ema_reproduces_an_uninterrupted_run(proc, tmp_path, monkeypatch, mixup_alpha):
    # A loader worker, lesion crops, dropout and (with mixup) the blends: every kind of draw an epoch makes.
    cfg = _config(proc, tmp_path, epochs=2, max_batches=2, ema_decay=0.9, lesion_crop_p=0.5, workers=1)
    cfg.mixup_alpha = mixup_alpha
    cache, splits, _ = load_splits(proc)
    real_save = torch.save

    def save_and_stop(obj, path, *args, **kwargs):
        real_save(obj, path, *args, **kwargs)
        raise _Stopped

    def train(run_dir: Path, resume: bool = False):
        seed_everything(cfg.seed)  # as run() does: the random initial weights come from the global seed
        return train_model(copy.deepcopy(cfg), cache, splits, run_dir, resume=resume)

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir(), cut.mkdir()
    saved = _keep_saves(monkeypatch)
    model_whole, _ = train(whole)
    monkeypatch.setattr(torch, "save", save_and_stop)
    with pytest.raises(_Stopped):
        train(cut)
    monkeypatch.setattr(torch, "save", real_save)
    model_resumed, history = train(cut, resume=True)
    assert [h["epoch"] for h in history] == [1, 2]
    a = torch.load(whole / "model_last.pt", weights_only=True)
    b = torch.load(cut / "model_last.pt", weights_only=True)
    for key in ("model", "ema", "best_model"):
        assert _same(a[key], b[key]), key
    assert _same(model_whole.state_dict(), model_resumed.state_dict())
    # The kept copy is an epoch's average, not its raw weights.
    assert len(saved) == 2
    assert any(_same(a["best_model"], s["ema"]) for s in saved)
    assert not any(_same(a["best_model"], s["model"]) for s in saved)


# -- frozen leading layers ------------------------------------------------------------------------------


def test_freezing_stops_gradients_only_in_the_leading_feature_modules():
    model = build_model("mobilenet_v3_small", 4)
    n = freeze_leading_features(model, 3)
    assert n == len(list(model.features[:3].parameters())) > 0
    assert not any(p.requires_grad for p in model.features[:3].parameters())
    assert all(p.requires_grad for p in model.features[3:].parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    assert freeze_leading_features(build_model("mobilenet_v3_small", 4), 0) == 0
    with pytest.raises(ValueError, match="cannot freeze"):
        freeze_leading_features(model, len(model.features) + 1)


def test_a_run_with_frozen_layers_keeps_their_weights_and_resumes(proc, tmp_path, monkeypatch):
    cfg = _config(proc, tmp_path, name="frozen", epochs=2, max_batches=2, frozen_features=2, ema_decay=0.9)
    cache, splits, _ = load_splits(proc)
    real_save = torch.save
    saved = _keep_saves(monkeypatch)
    seed_everything(cfg.seed)
    train_model(copy.deepcopy(cfg), cache, splits, tmp_path)
    monkeypatch.setattr(torch, "save", real_save)
    first, second = (s["model"] for s in saved)
    weights = [k for k in second if k.endswith("weight")]
    frozen = [k for k in weights if k.startswith(("features.0.", "features.1."))]
    assert frozen and len(frozen) < len(weights)
    for k in weights:  # the second epoch moved every trained weight and no frozen one
        assert torch.equal(first[k], second[k]) == (k in frozen), k
    # The optimiser holds the trained parameters only; a resumed run loads it and goes on.
    fresh = build_model("mobilenet_v3_small", 4)
    n_frozen = freeze_leading_features(fresh, 2)
    assert len(saved[-1]["optimizer"]["state"]) == len(list(fresh.parameters())) - n_frozen
    more = copy.deepcopy(cfg)
    more.epochs = 3
    _, history = train_model(more, cache, splits, tmp_path, resume=True)
    assert [h["epoch"] for h in history] == [1, 2, 3]


# -- mixup ------------------------------------------------------------------------------------------------


def test_mix_draws_repeat_with_the_generator_and_keep_the_larger_share_in_place():
    draws = [draw_mix(16, 0.4, np.random.default_rng([1, 0, 3])) for _ in range(2)]
    assert draws[0][0] == draws[1][0] and torch.equal(draws[0][1], draws[1][1])
    rng = np.random.default_rng(0)
    for _ in range(200):
        lam, perm = draw_mix(16, 0.4, rng)
        assert 0.5 <= lam <= 1.0
        assert sorted(perm.tolist()) == list(range(16))
    with pytest.raises(ValueError, match="alpha"):
        draw_mix(16, 0.0, rng)


def test_mixed_inputs_blend_each_row_with_its_partner_and_leave_the_batch_alone():
    x = torch.randn(4, 3, 8, 8)
    kept = x.clone()
    perm = torch.tensor([2, 0, 3, 1])
    mixed = mix_inputs(x, 0.7, perm)
    assert torch.equal(x, kept)
    for i, j in enumerate(perm.tolist()):
        assert torch.allclose(mixed[i], 0.7 * x[i] + 0.3 * x[j], atol=1e-6)


@pytest.mark.parametrize("targets", ["classes", "candidate sets"])
def test_mixed_loss_is_the_blend_of_the_two_targets_losses(targets):
    torch.manual_seed(0)
    logits = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 1, 0])
    if targets == "candidate sets":
        y = torch.nn.functional.one_hot(y, 4).float()
        y[0, 3] = 1.0  # one row's set holds two classes
    loss_fn = CandidateSetLoss(label_smoothing=0.05)
    perm = torch.tensor([1, 2, 3, 4, 5, 0])
    want = 0.8 * loss_fn(logits, y) + 0.2 * loss_fn(logits, y[perm])
    assert torch.allclose(mixed_loss(loss_fn, logits, y, 0.8, perm), want)
    assert torch.allclose(mixed_loss(loss_fn, logits, y, 1.0, perm), loss_fn(logits, y))
    assert not torch.allclose(mixed_loss(loss_fn, logits, y, 0.6, perm), loss_fn(logits, y))


def test_a_mixup_run_trains_differently_and_says_so_in_its_card_recipe(proc, tmp_path):
    from triage.release.ship import recipe_summary

    def weights(**change) -> dict:
        cfg = _config(proc, tmp_path, epochs=1, max_batches=2, **change)
        cache, splits, _ = load_splits(proc)
        seed_everything(cfg.seed)
        return train_model(cfg, cache, splits, tmp_path / cfg.name)[0].state_dict()

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "c").mkdir()
    plain, again, mixed = weights(name="a"), weights(name="b"), weights(name="c", mixup_alpha=0.4)
    assert _same(plain, again)  # the same seed trains the same weights...
    assert not _same(plain, mixed)  # ...so the difference is the blends
    assert "mixup (alpha 0.4)" in recipe_summary({"train_config": {"mixup_alpha": 0.4}})
    assert "mixup" not in recipe_summary({"train_config": {}})


def test_mixup_rows_differ_from_the_long_recipe_by_alpha_alone():
    from helpers import load_script

    exp = load_script("bench/experiments.py").EXPERIMENTS
    assert exp["mixup-mnv3s-224px-ema-seed1"]["set"] == exp["long-mnv3s-224px-ema-seed1"]["set"] | {"mixup_alpha": 0.2}
    held_out = exp["loso-ascid-mixup-mnv3s-224px-ema"]["set"]
    assert held_out == exp["loso-ascid-long-mnv3s-224px-ema"]["set"] | {"mixup_alpha": 0.2}
