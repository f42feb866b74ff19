"""Heads on cached features, on a real build of generated photos with planted features.

The features here are arrays written where the feature cache puts them (the cache itself is tested with the
real backbone in ``test_dinov2.py``): an outcome signal planted in them must give a high ranking on the test
split, which a head that learns nothing (or reads the wrong rows) fails.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from triage.core.outcomes import OUTCOMES
from triage.data.build import build
from triage.data.sources import read_manifest
from triage.training import features as F
from triage.training.heads import HeadConfig, finished_views, main, run_head

PER_OUTCOME = 16


@pytest.fixture(scope="module")
def built(tmp_path_factory, make_photo) -> Path:
    root = tmp_path_factory.mktemp("heads")
    rows = []
    for k, outcome in enumerate(OUTCOMES):
        for j in range(PER_OUTCOME):
            i = k * PER_OUTCOME + j
            path = root / f"{i:03d}.png"
            make_photo(7000 + i, (120, 120)).save(path)
            rows.append({"path": path.name, "label": outcome, "source": ("a", "b")[i % 2]})
    with open(root / "m.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "source"])
        w.writeheader()
        w.writerows(rows)
    build(read_manifest(root / "m.csv"), root / "proc", seed=0, workers=1, crops=False)
    return root / "proc"


def _plant(proc: Path, signal: float, seed: int, views=("photos/eval", "photos/mirror")) -> None:
    """Write finished photos/eval and photos/mirror features whose class-token dimensions carry the outcome."""
    with open(proc / "manifest.csv", newline="") as fh:
        photos = sorted(csv.DictReader(fh), key=lambda r: int(r["cache_row"]))
    y = np.array([OUTCOMES.index(r["label"]) for r in photos])
    rng = np.random.default_rng(seed)
    F.feature_dir(proc).mkdir(parents=True, exist_ok=True)
    meta = {"views": {}}
    for view in views:
        x = rng.normal(size=(len(y), F.TOKENS, 384)).astype(np.float16)
        for d in range(32):  # many dimensions: with fewer rows than dimensions, one would drown in the noise
            x[np.arange(len(y)), 0, 32 * y + d] += signal
        np.save(F.view_path(proc, view), x)
        meta["views"][view] = {"rows": len(y), "done": len(y), "seconds": 0.0, "skipped": {}}
    (F.feature_dir(proc) / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("kind", ["logreg", "mlp"])
def test_a_head_learns_a_planted_signal_and_not_noise(built, tmp_path, kind):
    aucs = {}
    for signal in (2.0, 0.0):
        _plant(built, signal, seed=1)
        cfg = HeadConfig(
            data=str(built), out=str(tmp_path), name=f"{kind}{signal}", kind=kind, epochs=20, batch=32, lr=0.02
        )
        m = json.loads((run_head(cfg) / "metrics.json").read_text())
        aucs[signal] = m["model"]["test"]["refer_auc"]
        assert m["model"]["views"]["train"] == ["photos/eval", "photos/mirror"]
        assert 1 <= m["model"]["chosen_epoch"] <= 20 and m["model"]["temperature"] > 0
    assert aucs[2.0] > 0.9 and aucs[0.0] < 0.85


def test_a_held_out_source_is_scored_whole_and_never_trained_on(built, tmp_path, capsys):
    _plant(built, 2.0, seed=2)
    assert main(["--data", str(built), "--out", str(tmp_path), "--name", "h", "--holdout-source", "a",
                 "--epochs", "10", "--batch", "32", "--lr", "0.02"]) == 0  # fmt: skip
    m = json.loads((tmp_path / "h" / "metrics.json").read_text())["model"]
    assert m["holdout_source"] == "a" and m["holdout"]["n"] == 2 * PER_OUTCOME
    assert set(m["test"]["by_source"]) == {"b"}
    assert "holdout: refer AUC" in capsys.readouterr().out


def test_only_finished_views_are_read(built):
    _plant(built, 1.0, seed=3)
    meta = json.loads((F.feature_dir(built) / "meta.json").read_text())
    meta["views"]["photos/aug0"] = {"rows": 64, "done": 32, "seconds": 1.0, "skipped": {}}
    (F.feature_dir(built) / "meta.json").write_text(json.dumps(meta))
    assert finished_views(built, "photos") == ["photos/eval", "photos/mirror"]
    assert finished_views(built, "crops") == []


def test_crops_are_computed_validation_and_test_first_and_done_rows_follow_that_order(tmp_path):
    splits = ["train", "test", "train", "val", "train", "test"]
    with open(tmp_path / "crops.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["crop_row", "split", "candidates"])
        w.writeheader()
        w.writerows({"crop_row": i, "split": s, "candidates": ""} for i, s in enumerate(splits))
    assert F.row_order(tmp_path, "crops/eval", 6).tolist() == [1, 3, 5, 0, 2, 4]
    assert F.row_order(tmp_path, "photos/eval", 6).tolist() == list(range(6))
    assert F.done_rows(tmp_path, "crops/eval").tolist() == []
    F.feature_dir(tmp_path).mkdir(parents=True)
    meta = {"views": {"crops/eval": {"rows": 6, "done": 4, "seconds": 1.0, "skipped": {}}}}
    (F.feature_dir(tmp_path) / "meta.json").write_text(json.dumps(meta))
    assert F.done_rows(tmp_path, "crops/eval").tolist() == [1, 3, 5, 0]
    with pytest.raises(RuntimeError, match="crops.csv lists 6"):
        F.row_order(tmp_path, "crops/eval", 7)


def test_a_saved_head_loads_and_predicts_what_it_scored(built, tmp_path):
    from triage.training.dataset import load_splits
    from triage.training.heads import load_head, predict_outcome_logits, vectors

    _plant(built, 2.0, seed=4)
    run = run_head(HeadConfig(data=str(built), out=str(tmp_path), name="s", kind="mlp", epochs=3, batch=32))
    _, splits, _ = load_splits(built)
    x = vectors(np.load(F.view_path(built, "photos/eval")))[splits["test"].rows]
    saved = np.load(run / "logits.npz")["test"]
    assert np.allclose(predict_outcome_logits(load_head(run / "head.pt"), x), saved, atol=1e-5)


def test_crops_join_the_training_rows_with_their_share_of_the_draws(built, tmp_path):
    import shutil

    from triage.training.dataset import load_splits
    from triage.training.heads import training_set

    proc = tmp_path / "proc"
    shutil.copytree(built, proc)
    _plant(proc, 2.0, seed=5, views=("photos/eval", "photos/mirror", "crops/eval"))  # one crop row per photo
    with open(proc / "manifest.csv", newline="") as fh:
        photos = list(csv.DictReader(fh))
    crop_rows = [dict(p, crop_row=i, candidates="") for i, p in enumerate(photos)]  # one "crop" per photo
    with open(proc / "crops.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(crop_rows[0]))
        w.writeheader()
        w.writerows(crop_rows)
    _, splits, _ = load_splits(proc)
    with pytest.raises(FileNotFoundError, match="finished crop features"):
        training_set(proc, splits, ["photos/eval"], [], 0.5)
    x, rows, weights = training_set(proc, splits, ["photos/eval", "photos/mirror"], ["crops/eval"], 0.25)
    n_photos, n_crops = len(splits["train"].rows), len(splits["train_crops"].rows)
    assert len(x) == len(rows.y) == len(weights) == 2 * n_photos + n_crops
    assert np.isclose(weights[: 2 * n_photos].sum(), 0.75) and np.isclose(weights[2 * n_photos :].sum(), 0.25)
    x0, _, w0 = training_set(proc, splits, ["photos/eval"], ["crops/eval"], 0.0)
    assert len(x0) == n_photos and np.isclose(w0.sum(), 1.0)
