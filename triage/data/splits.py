"""The group-aware split: whole duplicate groups go to train, val or test, stratified by outcome and source,
and the fingerprint that says two builds split alike."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict

import numpy as np

SPLITS = ("train", "val", "test")
SPLIT_SHARES = (0.70, 0.15, 0.15)


def split_groups(
    groups: list[int], strata: list[str], seed: int, shares: tuple[float, ...] = SPLIT_SHARES
) -> list[str]:
    """Assign whole groups to splits, stratified, deterministic for a seed.

    Each group takes the stratum of its members' most frequent value. Groups
    are visited largest first (ties in seeded random order) and each goes to
    the split furthest below its target share within its stratum.

    Returns:
        the split name of every element.
    """
    rng = np.random.default_rng(seed)
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    keys = sorted(members)
    order = rng.permutation(len(keys))
    gkeys = sorted((keys[k] for k in order), key=lambda g: -len(members[g]))  # stable: keeps shuffle in ties
    stratum_total = Counter(strata)
    filled: dict[str, list[int]] = defaultdict(lambda: [0] * len(shares))
    split_of_group: dict[int, int] = {}
    for g in gkeys:
        stratum = Counter(strata[i] for i in members[g]).most_common(1)[0][0]
        got = filled[stratum]
        total = stratum_total[stratum]
        deficits = [shares[s] * total - got[s] for s in range(len(shares))]
        s = int(np.argmax(deficits))
        split_of_group[g] = s
        got[s] += len(members[g])
    return [SPLITS[split_of_group[g]] for g in groups]


def fingerprint(sha_split: list[tuple[str, str]]) -> str:
    """sha256 over the sorted ``(sha256, split)`` pairs: equal splits give equal prints."""
    h = hashlib.sha256()
    for sha, split in sorted(sha_split):
        h.update(f"{sha}\t{split}\n".encode())
    return h.hexdigest()
