"""The layout's rules, checked on the source: who may import whom, and how big a module or function may grow.

The flow is data -> training -> checkpoint -> inference -> app (docs/ARCHITECTURE.md). Serving (inference, app)
must load no training or data-build code: both rules are checked twice, on the source (every import statement,
lazy ones in functions included) and in a fresh interpreter (what importing the engine, the app and the CLI
actually loads).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "triage"

#: The parts of ``triage`` each part may import (itself always allowed). ``None``: anything.
ALLOWED: dict[str, set[str] | None] = {
    "core": set(),
    "data": {"core"},
    "models": {"core"},
    "checkpoint": {"core", "models"},
    "inference": {"core", "models", "checkpoint"},
    "app": {"core", "inference"},
    "training": {"core", "data", "models", "checkpoint"},
    "release": {"core", "data", "models", "checkpoint", "inference", "testing"},
    "research": {"core", "data", "models", "checkpoint", "inference", "testing"},
    "testing": None,
    "__main__": {"core", "inference", "research", "release"},  # the last two only inside their sub-commands
    "__init__": {"core"},
    "ship": {"release"},  # the deprecated ``python -m triage.ship`` alias
}
#: Third-party packages a part must never import.
FORBIDDEN_LIBS = {
    "core": {"albumentations", "gradio"},
    "models": {"albumentations", "gradio"},
    "checkpoint": {"albumentations", "gradio"},
    "inference": {"albumentations", "gradio"},
    "app": {"albumentations"},
}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 120


def part_of(path: Path) -> str:
    """``core`` for ``triage/core/x.py``, ``checkpoint`` for ``triage/checkpoint.py``."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every module an ``import`` statement in the file names, with its line, lazy imports included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "triage":  # ``from triage import core`` names a part
                out += [(node.lineno, f"triage.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return out


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_known_part():
    assert {part_of(p) for p in modules()} <= set(ALLOWED), "a new top-level part needs a rule in ALLOWED"


def violations(path: Path, part: str) -> list[str]:
    """The imports in ``path`` that ``part`` may not make, as ``"line N: module"``."""
    allowed = ALLOWED[part]
    bad = []
    for line, name in imports_of(path):
        top = name.split(".")[0]
        if top in FORBIDDEN_LIBS.get(part, set()):
            bad.append(f"line {line}: {name}")
        if top != "triage" or allowed is None or name == "triage":
            continue
        target = name.split(".")[1]
        if target != part and target not in allowed:
            bad.append(f"line {line}: {name}")
    return bad


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_flow(path):
    part = part_of(path)
    bad = violations(path, part)
    assert not bad, f"{path.relative_to(REPO)} ({part} may import {sorted(ALLOWED[part] or [])}): {bad}"


def test_the_checker_catches_a_crossing(tmp_path):
    """A lazy training import and an albumentations import in serving code are both caught, with their lines."""
    probe = tmp_path / "engine.py"
    probe.write_text(
        (PACKAGE / "inference" / "engine.py").read_text()
        + "\n\ndef _lazy():\n    from triage.training.loop import train_model\n    import albumentations\n"
    )
    n = len(probe.read_text().splitlines())
    assert violations(probe, "inference") == [f"line {n - 1}: triage.training.loop", f"line {n}: albumentations"]
    assert violations(PACKAGE / "inference" / "engine.py", "inference") == []


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_fit_on_a_screen(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path.relative_to(REPO)}: split it by job"
    long = [
        f"{n.name} ({n.end_lineno - n.lineno + 1} lines)"
        for n in ast.walk(ast.parse(text))
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.relative_to(REPO)}: {long}"


SERVING_PROBE = """
import json, sys
import triage.inference.engine, triage.inference.onnx_engine, triage.app.layout, triage.__main__
loaded = sorted(sys.modules)
print(json.dumps(loaded))
"""


def test_serving_loads_no_training_or_data_build_code():
    """Importing the engine, the app and the CLI in a fresh interpreter loads no training or data-build module."""
    out = subprocess.run(
        [sys.executable, "-c", SERVING_PROBE], cwd=REPO, capture_output=True, text=True, timeout=300, check=True
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "triage.inference.engine" in loaded and "triage.app.layout" in loaded  # the probe imported them
    bad = [
        m
        for m in loaded
        if m.startswith(("triage.training", "triage.data", "triage.research", "triage.release", "triage.testing"))
        or m.split(".")[0] == "albumentations"
    ]
    assert not bad, bad


def test_the_old_ship_command_still_works_and_says_where_it_moved():
    out = subprocess.run(
        [sys.executable, "-m", "triage.ship", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "--run" in out.stdout
    assert "python -m triage.release.ship" in out.stderr
