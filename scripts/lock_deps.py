"""Write ``constraints.txt``: the exact version of every package in the project's dependency tree, as installed here.

Usage:
    python scripts/lock_deps.py [--out constraints.txt] [--check]

Run it in the environment the test suite has just passed in. It reads ``pyproject.toml``'s dependencies and all
its extras (``dev`` holds the test tools), follows each package's own requirements through the installed
distributions (markers evaluated for this interpreter, extras followed where asked for) and writes one
``name==version`` line per package, sorted: a ``pip freeze`` of the project's tree and nothing else in the
environment. ``scripts/setup.sh`` installs with it (``pip install -c constraints.txt -e '.[dev]'``).

``--check`` writes nothing and exits 1 when the file differs from what would be written (a package was added,
removed or upgraded since the lock was made).
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import platform
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "constraints.txt"
HEADER = """\
# The exact versions the test suite passed with: the project's dependency tree (pyproject.toml, all extras).
# Made by `python scripts/lock_deps.py` in that environment; scripts/setup.sh installs with
#   pip install -c constraints.txt -e '.[dev]'
"""


def project_requirements(pyproject: Path) -> list[Requirement]:
    """The dependencies and every extra's requirements that ``pyproject.toml`` names."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return [Requirement(line) for line in lines]


def applies(req: Requirement, extras: frozenset[str]) -> bool:
    """Whether ``req`` holds on this interpreter for a package installed with ``extras``."""
    if req.marker is None:
        return True
    return any(req.marker.evaluate({"extra": extra}) for extra in extras or {""})


def installed_tree(roots: list[Requirement]) -> dict[str, str]:
    """``{canonical name: installed version}`` for ``roots`` and everything they require, as installed here.

    A requirement whose marker does not hold here, or whose package is not installed, is left out.
    """
    found: dict[str, str] = {}
    todo = [(req, frozenset([""])) for req in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, parent_extras = todo.pop()
        if not applies(req, parent_extras):
            continue
        name, extras = canonicalize_name(req.name), frozenset(req.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[name] = dist.version
        todo += [(Requirement(line), extras | {""}) for line in dist.requires or []]
    return found


def lock_text(pyproject: Path = REPO / "pyproject.toml") -> str:
    """The constraints file for this environment."""
    own = canonicalize_name(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["name"])
    tree = installed_tree(project_requirements(pyproject))
    tree.pop(own, None)
    where = f"# Python {platform.python_version()}, {platform.system()} {platform.machine()}.\n"
    return HEADER + where + "".join(f"{name}=={version}\n" for name, version in sorted(tree.items()))


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, compare) the constraints file."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--check", action="store_true", help="compare only; exit 1 when the file is out of date")
    args = p.parse_args(argv)
    text = lock_text()
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if same else 'out of date: run python scripts/lock_deps.py'}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"{args.out}: {text.count('==')} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
