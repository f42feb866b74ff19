"""End to end on generated data: build -> train.py -> checkpoint -> CLI predict / evaluate.

48 synthetic photos (12 per outcome, each outcome with its own colour cast so a
model can learn a little) from two fake sources go through the real data build
and the real training command line at a tiny size (64 px, 2 batches an epoch,
random initial weights). Every artefact a run promises is checked, then the
checkpoint is served through ``python -m triage``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import load_script
from PIL import Image

from triage.core.outcomes import CANT_ASSESS, OUTCOMES
from triage.core.policy import softmax
from triage.core.preprocess import CANONICAL_SIZE, canonical_square
from triage.core.transforms import eval_batch
from triage.data.build import build
from triage.data.sources import read_manifest
from triage.inference.decode import decode_path
from triage.inference.engine import Triage
from triage.models.backbones import BACKBONES
from triage.training import predict_logits

REPO = Path(__file__).resolve().parents[1]
PER_OUTCOME = 12
SOURCES = ("srcA", "srcB")
FITZ = ("2", "5", "")  # "" = unknown (-1)

#: A per-channel colour cast per outcome: something a small model can pick up in two epochs.
TINT = {
    OUTCOMES[0]: (1.08, 1.08, 1.08),  # milia-like: paler
    OUTCOMES[1]: (1.15, 0.85, 0.75),  # pustule: redder
    OUTCOMES[2]: (0.85, 1.00, 1.10),  # other: cooler
    OUTCOMES[3]: (0.70, 0.60, 0.55),  # refer-to-doctor: darker
}

#: The tiny run every test here shares (train.py flags).
TINY = [
    "--epochs",
    "2",
    "--max-batches",
    "2",
    "--batch-size",
    "8",
    "--image-size",
    "64",
    "--init-weights",
    "none",
    "--workers",
    "0",
    "--threads",
    "1",
]


def _textured(photo: Image.Image, seed: int, tint=(1.0, 1.0, 1.0)) -> Image.Image:
    """``photo`` colour-cast and with fine grain added (so it is sharp enough for the quality gate)."""
    arr = np.asarray(photo, dtype=np.float32) * np.asarray(tint, dtype=np.float32)
    arr += np.random.default_rng(seed).normal(0.0, 6.0, (photo.height, photo.width, 1))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="RGB")


def _train_main():
    return load_script("train.py").main


def _summary(run_dir: Path, tag: str = "model") -> list[dict]:
    with open(run_dir / f"{tag}_summary.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _cli(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "triage", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env
    )


# -- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, make_photo) -> dict:
    """Photos + manifest.csv, built into ``proc`` by the real data build."""
    root = tmp_path_factory.mktemp("e2e")
    photos = root / "photos"
    photos.mkdir()
    rows = []
    for k, outcome in enumerate(OUTCOMES):
        for j in range(PER_OUTCOME):
            i = k * PER_OUTCOME + j
            size = (96 + (i * 37) % 65, 96 + (i * 53) % 65)  # 96-160 px, varied aspect
            image = _textured(make_photo(5000 + i, size), i, TINT[outcome])
            # Half PNG (bit-exact through decoding), half JPEG (the usual upload).
            path = photos / f"{i:02d}.{'png' if i % 2 == 0 else 'jpg'}"
            image.save(path, **({"quality": 92} if path.suffix == ".jpg" else {}))
            rows.append(
                {"path": path.name, "label": outcome, "source": SOURCES[(i // 2) % 2], "fitzpatrick": FITZ[i % 3]}
            )
    manifest = photos / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "source", "fitzpatrick"])
        w.writeheader()
        w.writerows(rows)
    proc = root / "proc"
    build(read_manifest(manifest), proc, seed=0, workers=1)
    return {"root": root, "photos": photos, "proc": proc}


@pytest.fixture(scope="module")
def built(dataset) -> dict:
    """The build's manifest rows and cache, checked to hold every photo in all three splits."""
    proc = dataset["proc"]
    with open(proc / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 * PER_OUTCOME, "the synthetic photos must all survive the build"
    for split in ("train", "val", "test"):
        assert {r["label"] for r in rows if r["split"] == split} == set(OUTCOMES), split
    cache = np.load(proc / f"cache_{CANONICAL_SIZE}.npy", mmap_mode="r")
    return {"rows": rows, "cache": cache}


@pytest.fixture(scope="module")
def run_dir(dataset, built) -> Path:
    """The tiny 2-epoch training run, through train.py's command line."""
    out = dataset["root"] / "runs"
    assert (
        _train_main()(["--data", str(dataset["proc"]), "--out", str(out), "--name", "t", *TINY, "--baseline", "false"])
        == 0
    )
    return out / "t"


@pytest.fixture(scope="module")
def model_path(run_dir) -> Path:
    return run_dir / "model.pt"


@pytest.fixture(scope="module")
def triage(model_path) -> Triage:
    return Triage.load(model_path, threads=None)


# -- training run ------------------------------------------------------------------------------------


def test_run_folder_holds_every_artefact(run_dir, dataset, built):
    for name in (
        "config.yaml",
        "model_summary.csv",
        "metrics.json",
        "model.pt",
        "model.pt.sha256",
        "train.log",
        "model_last.pt",
    ):
        assert (run_dir / name).is_file(), name
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["epochs"] == 2 and cfg["image_size"] == 64 and cfg["init_weights"] == "none"
    assert cfg["baseline"] is False and cfg["data"] == str(dataset["proc"])
    summary = _summary(run_dir)
    assert [int(r["epoch"]) for r in summary] == [1, 2]
    assert all(np.isfinite(float(r["train_loss"])) for r in summary)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    fp = (dataset["proc"] / "fingerprint.txt").read_text().strip()
    assert metrics["data_fingerprint"] == fp
    n_test = sum(r["split"] == "test" for r in built["rows"])
    assert metrics["model"]["test"]["n"] == n_test
    assert len(metrics["model"]["history"]) == 2
    assert metrics["model"]["temperature"] > 0
    for key in ("standard_recipe", "linear_probe", "linear_probe_leave_one_source_out"):
        assert key not in metrics  # baselines only on request
    sha = (run_dir / "model.pt.sha256").read_text().split()
    assert sha[1] == "model.pt" and len(sha[0]) == 64


def test_checkpoint_metadata_describes_the_model(triage, dataset):
    meta = triage.meta
    spec = BACKBONES["mobilenet_v3_small"]
    assert meta["classes"] == list(OUTCOMES)
    assert meta["arch"] == "mobilenet_v3_small"
    assert meta["image_size"] == 64 and meta["canonical_size"] == CANONICAL_SIZE
    assert meta["mean"] == list(spec.mean) and meta["std"] == list(spec.std)
    assert meta["temperature"] > 0
    assert 0.0 < meta["refer_threshold"] <= 0.6 and 0.0 <= meta["abstain_threshold"] <= 0.7
    assert meta["data_fingerprint"] == (dataset["proc"] / "fingerprint.txt").read_text().strip()
    assert meta["version"].endswith(meta["data_fingerprint"][:8])
    ood = meta["ood"]
    assert np.isfinite(ood["threshold"]) and ood["threshold"] > 0
    assert tuple(ood["means"].shape)[0] == len(OUTCOMES)
    assert tuple(ood["precision"].shape) == (ood["means"].shape[1],) * 2
    assert {"test", "val"} <= set(meta["metrics"]) <= {"test", "val", "closeup_test"}
    assert {"n", "balanced_accuracy", "refer_sensitivity", "unsafe_miss_rate"} <= set(meta["metrics"]["test"])
    assert triage.thresholds.refer == meta["refer_threshold"] and triage.temperature == meta["temperature"]


def test_resume_continues_without_repeating_epochs(run_dir, tmp_path):
    resumed = tmp_path / "t"
    shutil.copytree(run_dir, resumed)
    before = _summary(resumed)
    # Pretend the first two epochs took an hour: the resumed run's wall time must count them.
    state = torch.load(resumed / "model_last.pt", map_location="cpu", weights_only=True)
    assert 0 < state["run_seconds"] < 3600
    torch.save(state | {"run_seconds": 3600.0}, resumed / "model_last.pt")
    assert _train_main()(["--resume", str(resumed), "--epochs", "3"]) == 0
    after = _summary(resumed)
    assert [int(r["epoch"]) for r in after] == [1, 2, 3]
    assert after[:2] == before  # epochs 1-2 taken from the saved state, not trained again
    assert yaml.safe_load((resumed / "config.yaml").read_text())["epochs"] == 3
    assert "resumed model at epoch 2" in (resumed / "train.log").read_text()
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["model"]["history"]] == [1, 2, 3]
    assert 3600 < metrics["wall_seconds"] < 3600 + 600 and metrics["model"]["train_seconds"] > 3600
    assert torch.load(resumed / "model_last.pt", weights_only=True)["run_seconds"] > 3600
    assert Triage.load(resumed / "model.pt", threads=None).meta["classes"] == list(OUTCOMES)


def test_build_cuts_lesion_crops_of_spot_outcomes_only(dataset, built):
    with open(dataset["proc"] / "crops.csv", newline="") as fh:
        crops = list(csv.DictReader(fh))
    assert crops, "the synthetic milia-like / pustule photos have spots to crop"
    # A manifest source's labels are outcomes: only the spot-type ones are cropped.
    assert {c["label"] for c in crops} <= {"milia-like", "pustule"}
    by_row = {r["cache_row"]: r for r in built["rows"]}
    for c in crops:
        parent = by_row[c["cache_row"]]
        assert (c["split"], c["label"], c["group"]) == (parent["split"], parent["label"], parent["group"])
    squares = np.load(dataset["proc"] / f"crops_{CANONICAL_SIZE}.npy", mmap_mode="r")
    assert squares.shape == (len(crops), CANONICAL_SIZE, CANONICAL_SIZE, 3)
    card = json.loads((dataset["proc"] / "data_card.json").read_text())
    assert card["crops"]["crops"] == len(crops)
    assert "## Lesion-centred crops" in (dataset["proc"] / "DATA_CARD.md").read_text()


def test_run_with_crops_and_a_held_out_source_reports_closeups_and_the_source(dataset, built):
    out = dataset["root"] / "runs"
    flags = ["--lesion-crop-p", "0.5", "--holdout-source", "srcB"]
    assert _train_main()(["--data", str(dataset["proc"]), "--out", str(out), "--name", "loso", *TINY, *flags]) == 0
    model = json.loads((out / "loso" / "metrics.json").read_text())["model"]
    n_srcb = sum(r["source"] == "srcB" for r in built["rows"])
    assert model["holdout_source"] == "srcB" and model["holdout"]["n"] == n_srcb
    assert set(model["holdout"]["by_source"]) == {"srcB"}
    # The held-out source is in none of the sets the model was trained, selected or tested on.
    assert set(model["test"]["by_source"]) == set(model["val"]["by_source"]) == {"srcA"}
    with open(dataset["proc"] / "crops.csv", newline="") as fh:
        test_crops = [c for c in csv.DictReader(fh) if c["split"] == "test" and c["source"] == "srcA"]
    if test_crops:
        assert model["closeup_test"]["n"] == len(test_crops)
    for key in ("test", "holdout"):
        assert 0.0 <= model[key]["benign_usefulness"] <= 1.0


def test_leave_one_source_out_also_drops_copies_filed_under_another_source(tmp_path):
    from triage.training import load_splits

    # g1: one photo filed under both sources (the build grouped the copies); g2, g3: photos of one source each.
    photos = [("srcA", "g1", "train"), ("srcB", "g1", "train"), ("srcB", "g2", "test"), ("srcA", "g3", "test")]
    np.save(tmp_path / f"cache_{CANONICAL_SIZE}.npy", np.zeros((len(photos), 2, 2, 3), np.uint8))
    (tmp_path / "fingerprint.txt").write_text("f")
    with open(tmp_path / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "source", "source_labels", "group", "split", "fitzpatrick", "sha256", "cache_row"])
        for i, (src, group, split) in enumerate(photos):
            w.writerow([f"{i}.jpg", "other", src, "x", group, split, -1, str(i), i])
    _, splits, _ = load_splits(tmp_path, holdout_source="srcB")
    assert sorted(splits["holdout"].rows.tolist()) == [1, 2]
    assert splits["train"].rows.tolist() == [] and splits["test"].rows.tolist() == [3]
    _, plain, _ = load_splits(tmp_path)
    assert plain["train"].rows.tolist() == [0, 1]


def test_run_on_diagnosis_labels_serves_four_outcomes(dataset, built, make_photo):
    out = dataset["root"] / "runs"
    flags = ["--diagnosis-labels", "true", "--diagnosis-min-count", "1"]
    assert _train_main()(["--data", str(dataset["proc"]), "--out", str(out), "--name", "dx", *TINY, *flags]) == 0
    meta = torch.load(out / "dx" / "model.pt", map_location="cpu", weights_only=True)["meta"]
    # Every (source, label) pair of the training split is a class of its own, after the four catch-alls.
    train_pairs = {(r["source"], r["source_labels"]) for r in built["rows"] if r["split"] == "train"}
    assert len(meta["diagnoses"]) == len(meta["diagnosis_outcomes"]) == len(OUTCOMES) + len(train_pairs)
    assert sorted(set(meta["diagnosis_outcomes"])) == list(range(len(OUTCOMES)))
    engine = Triage.load(out / "dx" / "model.pt", threads=None)
    x = engine.input_tensor(make_photo(7))
    probs, _ = engine.model_outputs(x)
    assert probs.shape == (1, len(OUTCOMES)) and abs(probs.sum() - 1.0) < 1e-6
    assert "diagnosis_labels" in meta["train_config"] and meta["train_config"]["diagnosis_labels"] is True


def test_baseline_run_reports_standard_recipe_and_probes(dataset, built):
    out = dataset["root"] / "runs"
    args = [
        "--data",
        str(dataset["proc"]),
        "--out",
        str(out),
        "--name",
        "b",
        *TINY,
        "--epochs",
        "1",
        "--max-batches",
        "1",
        "--baseline",
        "true",
    ]  # later flags win
    assert _train_main()(args) == 0
    run = out / "b"
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("standard_recipe", "linear_probe", "linear_probe_leave_one_source_out"):
        assert key in metrics, key
    assert len(_summary(run)) == 1 and len(_summary(run, "baseline")) == 1
    assert metrics["standard_recipe"]["test"]["n"] == metrics["model"]["test"]["n"]
    assert set(metrics["linear_probe"]["test"]["by_source"]) <= set(SOURCES)
    # Leave-one-source-out only visits the real clinical sources; none is in this data.
    assert metrics["linear_probe_leave_one_source_out"] == {}


# -- serving = evaluation ----------------------------------------------------------------------------


def test_serving_input_equals_training_input(triage, built, dataset):
    meta = triage.meta
    size, mean, std = meta["image_size"], meta["mean"], meta["std"]
    row = next(r for r in built["rows"] if r["path"].endswith(".png") and r["split"] == "test")
    image = decode_path(row["path"]).image
    x = triage.input_tensor(image)
    assert torch.equal(x, eval_batch([canonical_square(image, CANONICAL_SIZE)], size, mean, std))
    # What training's evaluation fed the model for this photo: the cached square from the build.
    cached = np.asarray(built["cache"][int(row["cache_row"])])
    assert np.array_equal(cached, canonical_square(image, CANONICAL_SIZE))
    x_train = eval_batch([cached], size, mean, std)
    assert torch.allclose(x, x_train, atol=1e-6, rtol=0)
    # And the model answers alike through both paths (logits via training's evaluation helper).
    logits = predict_logits(triage.model, built["cache"], [int(row["cache_row"])], size, mean, std)
    probs, _ = triage.model_outputs(x)
    assert np.allclose(probs, softmax(logits, triage.temperature), atol=1e-5)


def test_cache_square_equals_serving_square_for_every_photo(built):
    # PNG and JPEG alike (all under the decoder's 1024 px limit): the build cached what serving computes.
    for row in built["rows"]:
        served = canonical_square(decode_path(row["path"]).image, CANONICAL_SIZE)
        assert np.array_equal(served, built["cache"][int(row["cache_row"])]), row["path"]


# -- command line ------------------------------------------------------------------------------------


def test_cli_predict_json(model_path, tmp_path, make_photo):
    good = tmp_path / "good.jpg"
    _textured(make_photo(999, (256, 256)), 999).save(good, quality=92)
    empty = tmp_path / "zero-byte.jpg"
    empty.write_bytes(b"")
    proc = _cli("predict", str(good), str(empty), "--model", str(model_path), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list) and len(rows) == 2
    first, second = rows
    assert first["file"] == str(good)
    assert first["outcome"] in (*OUTCOMES, CANT_ASSESS)
    assert first["reason_codes"] == [] or first["outcome"] in (CANT_ASSESS, OUTCOMES[3])
    assert not set(first["reason_codes"]) & {"too_small", "too_blurry", "too_dark", "too_bright", "too_little_skin"}, (
        "the good photo must pass the quality gate"
    )
    assert set(first["probabilities"]) == set(OUTCOMES)
    assert sum(first["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert isinstance(first["reasons"], list) and all(isinstance(s, str) and s for s in first["reasons"])
    assert first["model_version"]
    assert set(second) == {"file", "error"}
    assert second["file"] == str(empty)
    assert len(second["error"].split()) >= 4 and second["error"].rstrip().endswith(".")


def test_cli_refuses_missing_model(tmp_path, capsys):
    # In process (same code path as the subprocess runs, without another torch start-up).
    from triage.__main__ import main

    assert main(["predict", str(tmp_path / "x.jpg"), "--model", str(tmp_path / "missing.pt")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and "not found" in captured.err


def test_cli_evaluate(model_path, dataset, built, tmp_path):
    out = tmp_path / "ev"
    manifest = dataset["proc"] / "manifest.csv"
    proc = _cli(
        "evaluate", "--checkpoint", str(model_path), "--manifest", str(manifest), "--out", str(out), "--bootstrap", "50"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n"] == 4 * PER_OUTCOME
    m = json.loads((out / "metrics.json").read_text())
    for key in (
        "n",
        "balanced_accuracy",
        "accuracy",
        "macro_f1",
        "per_class",
        "refer_sensitivity",
        "unsafe_miss_rate",
        "benign_usefulness",
        "ece",
        "confusion",
        "by_source",
        "by_fitzpatrick",
        "decline_rate",
    ):
        assert key in m, key
    assert m["n"] == 4 * PER_OUTCOME and m["unreadable"] == 0
    assert set(m["per_class"]) == set(OUTCOMES)
    for c in m["per_class"].values():
        assert {"recall", "precision", "support"} <= set(c)
        assert c["support"] == PER_OUTCOME
    cm = np.array(m["confusion"])
    assert cm.shape == (4, 4) and cm.sum() == m["n"] and (cm.sum(1) == PER_OUTCOME).all()
    assert set(m["by_source"]) == set(SOURCES)
    assert set(m["by_fitzpatrick"]) == {"2", "5", "-1"}
    assert sum(s["n"] for s in m["by_source"].values()) == m["n"]
    assert 0.0 <= m["decline_rate"] <= 1.0 and 0.0 <= m["ece"] <= 1.0
    assert len(m["balanced_accuracy_ci95"]) == 2
    assert all("benign_usefulness" in g for g in m["by_source"].values())
    assert all("benign_usefulness" in g for g in m["by_fitzpatrick"].values())
    report = (out / "report.md").read_text()
    assert report.startswith("# Evaluation of") and "srcA" in report and "benign usefulness" in report
    for png in ("confusion.png", "reliability.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_cli_evaluate_judges_only_the_box_of_a_closeup_row(model_path, dataset, tmp_path):
    """A close-up manifest row is judged on the part of its photo inside ``box``, exactly as the crop cache holds it."""
    photo = dataset["photos"] / "00.png"
    w, h = Image.open(photo).size
    box = (w // 4, h // 4, w // 4 + 48, h // 4 + 48)
    manifest = tmp_path / "closeups.csv"
    with open(manifest, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["path", "label", "source", "box"])
        wr.writerow([str(photo), OUTCOMES[0], "srcA", ",".join(map(str, box))])
        wr.writerow([str(photo), OUTCOMES[0], "srcA", ""])
    records = read_manifest(manifest)
    assert records[0].box == box and records[1].box is None
    out = tmp_path / "ev"
    proc = _cli(
        "evaluate", "--checkpoint", str(model_path), "--manifest", str(manifest), "--out", str(out), "--no-gate"
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "metrics.json").read_text())["n"] == 2
    # Evaluation judges the box: the same probabilities as the engine on the cropped photo, not the whole one.
    from triage.research.evaluate import _predict_record

    triage = Triage.load(model_path, threads=None)
    boxed = _predict_record(triage, records[0], gate=False).probabilities
    assert boxed == triage.predict_image(decode_path(photo).image.crop(box), gate=False).probabilities
    assert (
        _predict_record(triage, records[1], gate=False).probabilities
        == triage.predict_path(photo, gate=False).probabilities
    )
    assert boxed != triage.predict_path(photo, gate=False).probabilities
    bad = tmp_path / "bad.csv"
    bad.write_text(f'path,label,box\n{photo},{OUTCOMES[0]},"10,10,5,5"\n')
    with pytest.raises(ValueError):
        read_manifest(bad)


def test_closeup_manifest_lists_each_test_crop_with_its_box(dataset, tmp_path):
    out = tmp_path / "closeups.csv"
    proc = _cli_data("manifest", "--out", str(dataset["proc"]), "--split", "test", "--closeups", "--csv", str(out))
    assert proc.returncode == 0, proc.stderr
    with open(dataset["proc"] / "crops.csv", newline="") as fh:
        test_crops = [c for c in csv.DictReader(fh) if c["split"] == "test"]
    assert test_crops, "the synthetic test photos of spot outcomes give crops"
    records = read_manifest(out)
    assert len(records) == len(test_crops)
    for r, c in zip(records, test_crops, strict=True):
        assert r.box == tuple(int(v) for v in c["box"].split(",")) and r.outcome == c["label"]


def _cli_data(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "triage.data", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
