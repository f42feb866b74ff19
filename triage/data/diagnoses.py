"""Diagnosis-level training labels: each source's own label as a class of its own, summed back to outcomes.

The four outcomes are coarse: "refer-to-doctor" holds melanomas, eczema and lupus alike, "other" moles and
keloids. Training on the sources' own labels (``ham10000:NV``, ``dermnet_nz:Acne vulgaris``) asks the network
to tell those apart, and serving sums the probabilities of the diagnoses of each outcome
(:class:`triage.models.backbones.OutcomeHead`), so everything after the model still sees four outcomes. A diagnosis
with fewer than ``min_count`` training photos is folded into its outcome's catch-all class (``pustule:*``).
Pure functions: the vocabulary depends on the training split alone and is written into the checkpoint.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from triage.core.outcomes import OUTCOMES


def diagnosis_key(source: str, source_labels: str) -> str:
    """The class name of one photo's diagnosis: its source and the source's own label(s)."""
    return f"{source}:{source_labels}"


def catch_all(outcome: str) -> str:
    """The class holding an outcome's rare diagnoses."""
    return f"{outcome}:*"


def vocabulary(keys: Sequence[str], y: Sequence[int], min_count: int) -> tuple[list[str], list[int]]:
    """The diagnosis classes and the outcome index of each.

    The first ``len(OUTCOMES)`` classes are the outcomes' catch-alls, in outcome order (so an outcome always
    has a class even when none of its diagnoses is frequent), then every diagnosis with at least
    ``min_count`` photos, sorted by outcome and name.

    Args:
        keys: :func:`diagnosis_key` of each training photo.
        y: outcome index of each training photo.
        min_count: fewest photos for a diagnosis to be a class of its own.

    Raises:
        ValueError: when one diagnosis key appears under two outcomes (the label map would be ambiguous).
    """
    outcome_of: dict[str, int] = {}
    for k, c in zip(keys, y, strict=True):
        if outcome_of.setdefault(k, int(c)) != int(c):
            raise ValueError(f"diagnosis {k!r} appears under two outcomes")
    counts = Counter(keys)
    frequent = sorted((outcome_of[k], k) for k, n in counts.items() if n >= min_count)
    names = [catch_all(o) for o in OUTCOMES] + [k for _, k in frequent]
    return names, list(range(len(OUTCOMES))) + [c for c, _ in frequent]


def encode(keys: Sequence[str], y: Sequence[int], names: Sequence[str]) -> np.ndarray:
    """The diagnosis class index of each photo: its own class if it has one, else its outcome's catch-all."""
    index = {n: i for i, n in enumerate(names)}
    return np.asarray([index.get(k, int(c)) for k, c in zip(keys, y, strict=True)], dtype=np.int64)
