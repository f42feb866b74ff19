"""Word runs shared between two texts: keeps the education pages in our own words.

The content pages take facts from a few clinic web pages ("seed" pages) but must not take their wording.
A run is ``RUN`` consecutive words after normalising case and punctuation, so "Don't squeeze" in one text
and "don’t SQUEEZE!" in another count as the same two words.

The seed pages belong to others and are not in this repository; only short digests of their runs are
(``tests/data/seed_runs.txt``, written by ``scripts/seed_runs.py``), so the check runs on a fresh clone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

#: Words in a run: long enough that ordinary phrases ("if you have a", "around the eyes") never trip it.
RUN = 7

_APOSTROPHES = re.compile(r"['’‘`]")
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` with punctuation and Markdown marks dropped.

    Apostrophes are removed rather than split on, so "don't" and "don’t" both become "dont".
    """
    return _WORD.findall(_APOSTROPHES.sub("", text.lower()))


def runs(text: str, n: int = RUN) -> set[tuple[str, ...]]:
    """Every run of ``n`` consecutive words in ``text``."""
    w = words(text)
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def digest(run: Iterable[str]) -> str:
    """A short, stable digest of one run (16 hex digits of its sha256)."""
    return hashlib.sha256(" ".join(run).encode("utf-8")).hexdigest()[:16]


def shared_runs(text: str, digests: set[str], n: int = RUN) -> list[str]:
    """The runs of ``text`` whose digest is in ``digests``, as readable phrases, sorted."""
    return sorted(" ".join(r) for r in runs(text, n) if digest(r) in digests)
