"""bench/ensemble.py and bench/closeup.py on a tiny build.

Ensembles: every variant scored, mirrored inputs really mirrored, costs added up. Close-ups: every set scored
under both policies, and the same calibrated probabilities as the ensemble bench for one checkpoint.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from helpers import load_script

from triage.data.build import build
from triage.data.crops import read_crop_rows
from triage.data.sources import read_manifest
from triage.testing.synthetic import write_tiny_checkpoint, write_tiny_dataset

bench = load_script("bench/ensemble.py")
closeup = load_script("bench/closeup.py")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A tiny build with close-up crops, two random checkpoints of its split, and verdicts on half its test crops."""
    root = tmp_path_factory.mktemp("ensemble")
    data = write_tiny_dataset(root / "raw", per_outcome=12, duplicates=2)
    proc = root / "proc"
    build(read_manifest(data.manifest), proc, seed=0, workers=1)
    fp = (proc / "fingerprint.txt").read_text().strip()
    with open(proc / "manifest.csv", newline="", encoding="utf-8") as fh:
        path_of = {r["cache_row"]: r["path"] for r in csv.DictReader(fh)}
    test_crops = [c for c in read_crop_rows(proc) if c["split"] == "test"]
    assert test_crops, "the tiny build must give test close-ups"
    verified = root / "verified.csv"
    with open(verified, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "source", "box", "verdict"])
        for i, c in enumerate(test_crops):
            w.writerow([path_of[c["cache_row"]], c["label"], c["source"], c["box"], "yes" if i % 2 else "no"])
    ckpts = [write_tiny_checkpoint(root / f"m{s}.pt", seed=s, data_fingerprint=fp) for s in (0, 1)]
    return {"proc": proc, "verified": verified, "ckpts": ckpts}


def test_mirrored_cache_flips_left_right():
    cache = np.arange(2 * 3 * 4 * 3).reshape(2, 3, 4, 3)
    np.testing.assert_array_equal(bench.Mirrored(cache)[1], cache[1][:, ::-1])


def test_every_variant_is_scored_on_every_set(tiny, tmp_path):
    out = tmp_path / "ensemble.json"
    argv = ["--checkpoints", *map(str, tiny["ckpts"]), "--data", str(tiny["proc"]), "--verified", str(tiny["verified"])]
    assert bench.main([*argv, "--out", str(out), "--threads", "1", "--step-repeats", "2"]) == 0
    result = json.loads(out.read_text())
    assert set(result["variants"]) == {"0", "0+flip", "1", "1+flip", "0+1", "0+1+flip"}
    step = result["model_step_ms"]
    variants = result["variants"]
    assert variants["0+1+flip"]["model_step_ms"] == pytest.approx(2 * (step[0] + step[1]), abs=1e-6)
    for v in variants.values():
        assert set(v) >= {"thresholds", "test", "closeup", "closeup_verified"}
        assert 0.0 <= v["test"]["refer_auc"] <= 1.0  # every outcome is in the tiny test split
        assert set(v["test"]["at_validation_point"]) >= {"refer_sensitivity", "benign_usefulness", "pustule_recall"}
    # The flipped input is scored: a random network does not give exactly the same AUC both ways round.
    assert variants["0"]["test"]["refer_auc_ci95"] != variants["0+flip"]["test"]["refer_auc_ci95"] or (
        variants["0"]["test"]["useful_at_95"] != variants["0+flip"]["test"]["useful_at_95"]
    )


def test_a_checkpoint_of_another_split_is_refused(tiny, tmp_path):
    other = write_tiny_checkpoint(tmp_path / "other.pt")  # fingerprint 000...: not this build
    with pytest.raises(SystemExit, match="another build"):
        bench.main(["--checkpoints", str(other), "--data", str(tiny["proc"]), "--verified", str(tiny["verified"])])


def test_closeup_bench_scores_every_set_under_both_policies(tiny, tmp_path):
    out = tmp_path / "closeup.json"
    argv = ["--checkpoint", str(tiny["ckpts"][0]), "--data", str(tiny["proc"]), "--verified", str(tiny["verified"])]
    assert closeup.main([*argv, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    sets = {"val", "val_crops", "test", "test_crops", "test_crops_verified"}
    assert set(result["ranking"]) == sets
    for policy in ("shipped", "photos_and_closeups"):
        assert set(result[policy]) - {"thresholds", "validation_point"} == sets
        assert result[policy]["test_crops_verified"]["n"] < result[policy]["test_crops"]["n"]
    # One checkpoint scored by both benches: the same probabilities, so the same ranking on test.
    ens = tmp_path / "ensemble.json"
    one = ["--checkpoints", str(tiny["ckpts"][0]), *argv[2:]]
    assert bench.main([*one, "--out", str(ens), "--step-repeats", "1"]) == 0
    alone = json.loads(ens.read_text())["variants"]["0"]["test"]
    assert alone["refer_auc"] == result["ranking"]["test"]["refer_auc"]
