"""The layout's rules, checked on the source: who may import whom, and how big a module or function may grow.

The flow is data -> training -> checkpoint -> inference -> app (docs/ARCHITECTURE.md). Serving (inference, app)
must load no training or data-build code: both rules are checked twice, on the source (every import statement,
lazy ones in functions included) and in a fresh interpreter (what importing the engine, the app and the CLI
actually loads). No module may reach itself through the modules it imports (no import cycle), lazy imports counted.
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


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """``triage.data.build`` for ``triage/data/build.py``, ``triage.data`` for ``triage/data/__init__.py``."""
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package and the modules of the package it imports, lazy imports included.

    ``from triage.data import build`` names the module ``triage.data.build``; ``from triage.data.crops import
    read_crop_rows`` names ``triage.data.crops``. A package's ``__init__`` counts only where it is named.
    """
    known = {module_name(p, package): p for p in sorted(package.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name in known}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in known:
                targets |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
                }
        graph[name] = targets - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as ``[a, b, ..., a]``, or ``[]`` when the graph has none (depth-first search)."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if target in path:
                return path[path.index(target) :] + [target]
            if target not in done:
                cycle = visit(target, path)
                if cycle:
                    return cycle
        done.add(path.pop())
        return []

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start, [])
            if cycle:
                return cycle
    return []


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "triage.data.build" in graph["triage.data.__main__"]  # the graph sees ``from triage.data.build import``
    cycle = find_cycle(graph)
    assert not cycle, " -> ".join(cycle)


def test_the_cycle_checker_finds_a_cycle_and_only_a_cycle(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a"}}) == []  # a diamond is no cycle
    # A lazy import inside a function closes a circle as surely as one at the top of the module.
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from pkg.sub.b import f\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from pkg.sub import c\n")
    (pkg / "sub" / "c.py").write_text("import os\n")
    assert import_graph(pkg) == {
        "pkg": set(),
        "pkg.sub": set(),
        "pkg.sub.a": {"pkg.sub.b"},
        "pkg.sub.b": {"pkg.sub.c"},
        "pkg.sub.c": set(),
    }
    assert find_cycle(import_graph(pkg)) == []
    (pkg / "sub" / "c.py").write_text("def g():\n    import pkg.sub.a\n")
    assert find_cycle(import_graph(pkg)) == ["pkg.sub.a", "pkg.sub.b", "pkg.sub.c", "pkg.sub.a"]
    # On the real package: the build imports the cache, so a cache that reads the build closes a circle.
    graph = import_graph()
    assert find_cycle(graph) == []
    graph["triage.data.cache"].add("triage.data.build")
    cycle = find_cycle(graph)
    assert cycle[0] == cycle[-1] and {"triage.data.cache", "triage.data.build"} <= set(cycle), cycle


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
