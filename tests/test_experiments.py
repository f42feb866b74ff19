"""bench/experiments.py: every experiment is a valid train.py command that changes only what its row says."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml
from helpers import load_script

from triage.models.backbones import BACKBONES
from triage.training import TrainConfig
from triage.training.config import get_args_parser

ROOT = Path(__file__).resolve().parents[1]


def test_every_experiment_parses_into_the_recipe_with_its_changes():
    exp = load_script("bench/experiments.py")
    parser = get_args_parser()
    recipe = yaml.safe_load((ROOT / exp.CONFIG).read_text())
    for name, spec in exp.EXPERIMENTS.items():
        if spec.get("runner") == "heads":
            continue  # the next test
        args = parser.parse_args(exp.command(name)[2:])
        given = {k: v for k, v in vars(args).items() if v is not None and k not in ("config", "resume")}
        cfg = TrainConfig(**(recipe | given))  # what train.py builds
        assert cfg.name == name and cfg.arch in BACKBONES, name
        changed = {k for k in given if k not in ("out", "name")}
        assert changed == set(spec["set"]), name
        for key, value in spec["set"].items():
            want = {"true": True, "false": False}.get(str(value).lower(), value)
            assert getattr(cfg, key) == type(getattr(cfg, key))(want), (name, key)


def test_every_head_experiment_parses_into_its_head_config():
    from triage.training.heads import HeadConfig, parse_args

    exp = load_script("bench/experiments.py")
    heads = {n: s for n, s in exp.EXPERIMENTS.items() if s.get("runner") == "heads"}
    assert {n for n in heads if n.startswith("loso-")} == {
        f"loso-{s}-dinov2-{h}" for s in exp.ALL_SOURCES for h in exp.HEADS
    }
    for name, spec in heads.items():
        words = exp.command(name)
        assert words[1:3] == ["-m", "triage.training.heads"]
        cfg = parse_args(words[3:])
        assert cfg.name == name and cfg.out == str(exp.RUNS)
        changed = {k for k, v in vars(cfg).items() if v != getattr(HeadConfig(), k)} - {"name", "out"}
        assert changed == {k for k, v in spec["set"].items() if v != getattr(HeadConfig(), k)}, name
        for key, value in spec["set"].items():
            assert getattr(cfg, key) == value, (name, key)


def test_rows_carry_the_ranking_with_intervals_and_older_runs_leave_it_empty(tmp_path, monkeypatch):
    import json

    import numpy as np

    from triage.core import metrics as M

    exp = load_script("bench/experiments.py")
    monkeypatch.setattr(exp, "RUNS", tmp_path)
    monkeypatch.setattr(exp, "RESULTS", tmp_path / "experiments.csv")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    probs = rng.dirichlet(np.ones(4), 200)
    s = M.summary(y, probs.argmax(1), probs) | M.ranking_cis(probs, y, n=50)
    old = {k: v for k, v in s.items() if k not in M.ranking(probs, y) and not k.endswith("_ci95")}
    loso, screen = "loso-ascid-crops-on", "screen-crops-on"
    for name, m in ((loso, s), (screen, old)):
        (tmp_path / name).mkdir()
        model = {"history": [{}] * 3, "test": m, "closeup_test": m} | (
            {"holdout": m, "holdout_closeup": m, "holdout_source": "ascid"} if name == loso else {}
        )
        # As train.py writes it: JSON turns the intervals into lists.
        (tmp_path / name / "metrics.json").write_text(json.dumps({"wall_seconds": 600.0, "model": model}))
    (tmp_path / loso / "config.yaml").write_text("seed: 1\n")
    new_row, old_row = exp.row(loso, timing=False), exp.row(screen, timing=False)
    assert set(new_row) == set(old_row) == set(exp.COLUMNS)
    for prefix in ("test", "closeup", "holdout"):
        assert new_row[f"{prefix}_refer_auc"] == s["refer_auc"]
        assert json.loads(new_row[f"{prefix}_useful_at_95_ci95"]) == list(s["useful_at_95_ci95"])
    assert new_row["seed"] == 1 and new_row["model_step_ms"] == "" and new_row["holdout_source"] == "ascid"
    assert old_row["test_refer_auc"] == old_row["test_refer_auc_ci95"] == old_row["seed"] == ""
    exp.record([loso, screen])
    lines = exp.table().splitlines()
    lo, hi = s["refer_auc_ci95"]
    assert f"{s['refer_auc']} ({lo}–{hi})" in next(line for line in lines if "leave-one-source-out" in line)
    # A row recorded before the ranking sits in the earlier table, without ranking cells, its seed from the command.
    earlier = lines.index(next(line for line in lines if line.startswith("Recorded before the ranking")))
    screen_line = next(i for i, line in enumerate(lines) if line.startswith(f"| `{screen}`: lesion-centred crops: on"))
    assert screen_line > earlier and lines[screen_line].startswith(
        f"| `{screen}`: lesion-centred crops: on (p = 0.5) | 3 | 0 |"
    )
    assert lines[screen_line].count("|") == lines[earlier + 2].count("|") < lines[0].count("|")
    assert next(i for i, line in enumerate(lines) if line.startswith(f"| `{loso}`")) < earlier


def test_a_row_s_seed_is_recorded_or_read_from_its_command():
    exp = load_script("bench/experiments.py")
    assert exp.seed_of({"seed": "1", "command": "python train.py --seed 2"}) == "1"
    assert exp.seed_of({"seed": "", "command": "python train.py --epochs 3 --seed 2"}) == "2"
    assert exp.seed_of({"seed": "", "command": "python train.py --epochs 3"}) == "0"
    assert exp.seed_of({"command": "python train.py --seed"}) == "0"


def test_compute_flags_reach_train_py_but_not_the_recorded_command():
    exp = load_script("bench/experiments.py")
    name = "long-mnv3s-224px-ema-seed1"
    args = get_args_parser().parse_args(exp.command(name)[2:] + exp.compute_flags(1, 1))
    assert (args.threads, args.workers) == (1, 1)
    assert exp.compute_flags(None, None) == [] and exp.compute_flags(None, 0) == ["--workers=0"]
    assert "--threads" not in " ".join(exp.command(name))
    # The options may come before the names, as the module's docstring shows.
    for argv in (["run", "--threads", "1", "--workers", "1", name], ["run", name, "--threads", "1", "--workers", "1"]):
        args = exp.parse_args(argv)
        assert (args.names, args.threads, args.workers) == ([name], 1, 1)


def test_the_shipped_config_is_the_experiment_it_ships():
    exp = load_script("bench/experiments.py")
    parser = get_args_parser()
    shipped = yaml.safe_load((ROOT / "configs" / "mobilenet_v3_small_224.yaml").read_text())
    recipe = yaml.safe_load((ROOT / exp.CONFIG).read_text())
    args = parser.parse_args(exp.command("long-mnv3s-224px-ema-seed1")[2:])
    given = {k: v for k, v in vars(args).items() if v is not None and k not in ("config", "resume", "out", "name")}
    assert TrainConfig(**shipped) == TrainConfig(**(recipe | given))


def test_the_experiments_page_holds_the_table_of_the_committed_results():
    exp = load_script("bench/experiments.py")
    assert exp.RESULTS == ROOT / "results" / "experiments.csv"
    page = (ROOT / "docs" / "EXPERIMENTS.md").read_text()
    assert exp.table() in page, "run `python bench/experiments.py table` into docs/EXPERIMENTS.md"


def test_the_loso_table_lists_every_source_with_each_family_s_mean_and_worst(tmp_path, monkeypatch):
    exp = load_script("bench/experiments.py")
    csv_path = tmp_path / "experiments.csv"
    rows = [
        {"name": "loso-ascid-dinov2-mlp", "holdout_refer_auc": "0.8", "holdout_refer_auc_ci95": "[0.7, 0.9]"},
        {"name": "loso-milk10k-dinov2-mlp", "holdout_refer_auc": "0.6", "holdout_refer_auc_ci95": ""},
        {"name": "loso-milk10k-eight-mnv3s-224px-ema", "holdout_refer_auc": "", "holdout_refer_auc_ci95": ""},
    ]
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["name", "holdout_refer_auc", "holdout_refer_auc_ci95"])
        w.writeheader()
        w.writerows(rows)
    monkeypatch.setattr(exp, "RESULTS", csv_path)
    lines = exp.loso_table().splitlines()
    assert len(lines) == 2 + len(exp.ALL_SOURCES) + 2
    mlp = 1 + [f for f, _ in exp.LOSO_FAMILIES].index("DINOv2 + MLP")
    cells = {line.split(" | ")[0].strip("| *"): line.split(" | ")[mlp].strip(" |") for line in lines[2:]}
    assert cells["ascid"] == "0.8 [0.7, 0.9]" and cells["milk10k"] == "0.6" and cells["isic9"] == "not run"
    assert cells["mean"] == "0.700 (2 sources)" and cells["worst"] == "0.600 (2 sources)"
    assert "not run" in lines[2 + exp.ALL_SOURCES.index("milk10k")].split(" | ")[2]  # an empty AUC is not a run
