"""bench/experiments.py: every experiment is a valid train.py command that changes only what its row says."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import yaml

from triage.models import BACKBONES
from triage.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(ROOT))
    return mod


def test_every_experiment_parses_into_the_recipe_with_its_changes():
    exp = _module("experiments", ROOT / "bench" / "experiments.py")
    parser = _module("train_cli", ROOT / "train.py").get_args_parser()
    recipe = yaml.safe_load((ROOT / exp.CONFIG).read_text())
    for name, spec in exp.EXPERIMENTS.items():
        args = parser.parse_args(exp.command(name)[2:])
        given = {k: v for k, v in vars(args).items() if v is not None and k not in ("config", "resume")}
        cfg = TrainConfig(**(recipe | given))  # what train.py builds
        assert cfg.name == name and cfg.arch in BACKBONES, name
        changed = {k for k in given if k not in ("out", "name")}
        assert changed == set(spec["set"]), name
        for key, value in spec["set"].items():
            want = {"true": True, "false": False}.get(str(value).lower(), value)
            assert getattr(cfg, key) == type(getattr(cfg, key))(want), (name, key)
