"""Scale-out training: the distributed weighted sampler, and ``torchrun --nproc_per_node=2 train.py`` on CPU (gloo).

The torchrun test trains two processes for two tiny epochs on a generated build over loopback and checks that
rank 0 alone wrote one complete run folder. Single-process behaviour is covered by tests/test_training.py.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from triage.core.outcomes import OUTCOMES
from triage.data.build import build
from triage.data.sources import read_manifest
from triage.inference.engine import Triage
from triage.testing.synthetic import write_tiny_dataset
from triage.training import DistInfo, DistributedWeightedSampler, init_distributed, sample_weights

REPO = Path(__file__).resolve().parents[1]


def _draws(sampler: DistributedWeightedSampler) -> list[int]:
    return list(iter(sampler))


def test_ranks_share_one_weighted_draw_without_overlap():
    y = np.repeat(np.arange(4), [40, 10, 5, 1])  # very unbalanced
    w = sample_weights(y, np.array(["a"] * len(y)), "class")
    world, n = 3, len(y)
    samplers = [DistributedWeightedSampler(w, n, world, r, seed=5) for r in range(world)]
    per_rank = [_draws(s) for s in samplers]
    assert {len(d) for d in per_rank} == {len(samplers[0])} == {-(-n // world)}  # equal steps on every rank
    # Interleaving the ranks' slices gives back the one list every rank drew from the shared seed.
    full = torch.multinomial(
        torch.as_tensor(w), samplers[0].total_size, True, generator=torch.Generator().manual_seed(5)
    )
    merged = [per_rank[i % world][i // world] for i in range(samplers[0].total_size)]
    assert merged == full.tolist()
    # Balanced over the union, although class 3 has one image in 56.
    counts = Counter(int(y[i]) for d in per_rank for i in d)
    assert min(counts.values()) > 0.1 * sum(counts.values())


def test_sampler_draws_anew_each_epoch_and_is_reproducible():
    w = np.full(20, 1 / 20)
    a, b = DistributedWeightedSampler(w, 20, 2, 1, seed=0), DistributedWeightedSampler(w, 20, 2, 1, seed=0)
    first = _draws(a)
    assert first == _draws(b) == _draws(a)  # same seed, epoch and rank: same indices
    a.set_epoch(1)
    assert _draws(a) != first
    with pytest.raises(ValueError):
        DistributedWeightedSampler(w, 20, 2, 2)


def test_single_process_is_not_distributed(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert init_distributed() == DistInfo()
    assert not dist.is_initialized()
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node=1: still the single-process path
    assert init_distributed() == DistInfo() and not dist.is_initialized()


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    data = write_tiny_dataset(root / "tiny", per_outcome=12, duplicates=0)
    build(read_manifest(data.manifest), root / "processed", seed=0, workers=1)
    return root


def test_torchrun_two_processes_train_and_rank0_writes(tiny_build):
    out = tiny_build / "runs"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only, whatever the host name resolves to
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py",
           "--data", str(tiny_build / "processed"), "--out", str(out), "--name", "ddp",
           "--epochs", "2", "--max-batches", "2", "--batch-size", "4", "--image-size", "64",
           "--init-weights", "none", "--workers", "0", "--threads", "1", "--baseline", "true"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = out / "ddp"
    assert [line for line in proc.stdout.splitlines() if line.strip() == str(run)] == [str(run)]  # rank 0 only
    assert sorted(p.name for p in out.iterdir()) == ["ddp"]  # no second run folder from rank 1
    for name in ("config.yaml", "model_summary.csv", "baseline_summary.csv", "metrics.json", "model.pt",
                 "model.pt.sha256", "model_last.pt", "train.log"):  # fmt: skip
        assert (run / name).is_file(), name
    with open(run / "model_summary.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in summary] == [1, 2]
    log = (run / "train.log").read_text()
    assert log.count("model epoch 1:") == 1 and log.count("baseline epoch 2:") == 1  # one writer
    metrics = json.loads((run / "metrics.json").read_text())
    n_test = sum(r["split"] == "test" for r in csv.DictReader(open(tiny_build / "processed" / "manifest.csv")))
    assert metrics["model"]["test"]["n"] == n_test and "standard_recipe" in metrics
    engine = Triage.load(run / "model.pt", threads=1)
    assert engine.meta["classes"] == list(OUTCOMES)
    assert all(t.device.type == "cpu" for t in torch.load(run / "model.pt", weights_only=True)["state_dict"].values())
