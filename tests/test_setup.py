"""``scripts/setup.sh`` installs once, quietly, and again only when ``pyproject.toml`` changes.

Run for real (a new virtual environment, real pip) on a one-module project in a temporary folder, with this
repository's ``setup.sh`` and a ``pyproject.toml`` in the same style as ours (SPDX licence string,
``license-files``). The repository's own ``pyproject.toml`` is checked for the same two fields.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO

PYPROJECT = """[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "setup-probe"
version = "{version}"
requires-python = ">=3.11"
license = "Apache-2.0"
license-files = ["LICENSE"]

[project.optional-dependencies]
dev = []

[tool.setuptools]
py-modules = ["probe"]
"""
#: What packaging noise looks like in a terminal (setuptools' deprecation boxes, pip's warnings).
NOISE = ("warning", "deprecat", "!!", "*****")


def _setup(project: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"PYTHON": sys.executable}
    return subprocess.run(
        ["bash", "scripts/setup.sh"], cwd=project, env=env, capture_output=True, text=True, timeout=900
    )


def _installed_version(project: Path) -> str:
    code = "import importlib.metadata as m; print(m.version('setup-probe'))"
    return subprocess.run(
        [str(project / ".venv" / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_repository_declares_an_spdx_licence_with_its_file():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert meta["project"]["license"] == "Apache-2.0"
    assert all((REPO / f).is_file() for f in meta["project"]["license-files"])
    assert "Apache License" in (REPO / "LICENSE").read_text(encoding="utf-8")[:200]


@pytest.mark.slow
def test_setup_installs_once_quietly_and_again_when_pyproject_changes(tmp_path):
    project = tmp_path / "probe"
    (project / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "setup.sh", project / "scripts" / "setup.sh")
    shutil.copy2(REPO / "LICENSE", project / "LICENSE")
    (project / "probe.py").write_text("VALUE = 1\n")
    (project / "pyproject.toml").write_text(PYPROJECT.format(version="0.1"))
    (project / "constraints.txt").write_text("# nothing to pin: the probe has no dependencies\n")

    first = _setup(project)
    assert first.returncode == 0, first.stderr[-3000:]
    shown = (first.stdout + first.stderr).lower()
    assert not [n for n in NOISE if n in shown], f"packaging noise on the terminal:\n{shown}"
    assert _installed_version(project) == "0.1"
    log = project / ".venv" / "install.log"
    installed_at = log.stat().st_mtime_ns

    again = _setup(project)  # nothing changed: no install, nothing printed
    assert again.returncode == 0 and again.stdout == again.stderr == ""
    assert log.stat().st_mtime_ns == installed_at, "pip ran again although pyproject.toml did not change"

    (project / "pyproject.toml").write_text(PYPROJECT.format(version="0.2"))
    changed = _setup(project)
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert _installed_version(project) == "0.2"
    assert log.stat().st_mtime_ns != installed_at
