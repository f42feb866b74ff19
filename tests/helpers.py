"""Helpers the tests share that are not fixtures."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(relpath: str) -> ModuleType:
    """A script of the repository (``train.py``, ``bench/*.py``, ``scripts/*.py``: not a package), loaded by path.

    Loaded once per session under ``script_<stem>``, and registered in ``sys.modules`` because dataclasses look
    their module up there while the class is built.
    """
    path = REPO / relpath
    name = f"script_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
