"""The dependencies are a tested set: floors above the known advisories, and a lock of the versions the suite ran on.

* ``pyproject.toml`` keeps gradio and Pillow at or above the first release without a known advisory (gradio's
  path traversals fixed in 6.7.0 and 6.16.0, its SSRF fixed in 6.20.0; Pillow's out-of-bounds writes fixed in
  12.3.0), and names an advisory in the comment over each floor.
* ``constraints.txt`` pins every package of the project's tree exactly, within ``pyproject.toml``'s ranges, and
  is what ``scripts/lock_deps.py`` writes for this environment: the suite runs on the locked set (after an
  upgrade, refresh the lock with ``python scripts/lock_deps.py``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PYPROJECT = REPO / "pyproject.toml"
LOCK = REPO / "constraints.txt"
#: The newest release of each package with a known advisory: the floor must shut it out.
LAST_ADVISED = {"gradio": "6.19.0", "pillow": "12.2.0", "numpy": "1.21.6"}
ADVISORY = re.compile(r"\b(CVE-\d{4}-\d{4,}|GHSA(-[0-9a-z]{4}){3}|PYSEC-\d{4}-\d+)\b")


def _dependencies() -> dict[str, Requirement]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    return {canonicalize_name(Requirement(d).name): Requirement(d) for d in project["dependencies"]}


def _locked() -> dict[str, Version]:
    pins = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin in {LOCK.name}: {line!r}"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _comment_over(name: str) -> str:
    """The comment lines right above the dependency line for ``name`` in pyproject.toml."""
    lines = PYPROJECT.read_text(encoding="utf-8").splitlines()
    (at,) = [k for k, line in enumerate(lines) if re.match(rf'\s*"{name}\s*[<>=!~]', line, re.I)]
    above = []
    for line in reversed(lines[:at]):
        if not line.strip().startswith("#"):
            break
        above.append(line)
    return "\n".join(above) + lines[at]


@pytest.mark.parametrize("name", sorted(LAST_ADVISED))
def test_floor_is_above_the_known_advisories(name):
    req = _dependencies()[name]
    assert req.specifier, f"{name} has no floor"
    assert not req.specifier.contains(LAST_ADVISED[name]), f"{name}{req.specifier} lets {LAST_ADVISED[name]} in"
    if name != "numpy":  # numpy's advisories are years older than any numpy 2
        assert ADVISORY.search(_comment_over(name)), f"{name}: name the advisory the floor is for in a comment"


def test_lock_pins_every_dependency_within_its_range():
    pins = _locked()
    for name, req in _dependencies().items():
        if req.marker is not None and not req.marker.evaluate():
            continue
        assert name in pins, f"{name} is not in {LOCK.name}: run python scripts/lock_deps.py"
        assert req.specifier.contains(pins[name]), f"{LOCK.name} pins {name}=={pins[name]}, outside {req.specifier}"


def test_suite_runs_on_the_locked_set():
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "lock_deps.py"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
