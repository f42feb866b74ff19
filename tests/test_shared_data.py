"""Checks on the real bundled datasets (skipped when ``../shared/data`` is absent; CI has it).

The split checks read ``data/processed/manifest.csv`` when the repository has
a build, else run one build of the whole bundle into a temporary folder
(about 75 s on 2 cores, without the image cache). Set ``TRIAGE_TEST_REBUILD=1``
to check a fresh build of the current code even when a build exists.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from triage.core.outcomes import OUTCOMES
from triage.data.sources import REGISTRY, load_source
from triage.data.splits import SPLITS, fingerprint

pytestmark = pytest.mark.shared

REPO = Path(__file__).resolve().parents[1]
#: The split fingerprint of the whole bundle (eight sources, seed 0), as data/DATA_CARD.md records it. A change
#: in the sources, the label map, the grouping or the split moves it: update both, and say why in the commit.
BUNDLE_FINGERPRINT = "435798977de3dd67d4ae57a4324b285fc08e66c44f586dcaade3100ee48178e9"


@pytest.mark.parametrize("name", list(REGISTRY))
def test_registered_source_loads_with_expected_count(shared_data, name):
    records = load_source(name, shared_data)  # raises CountMismatch on a wrong count
    assert len(records) == REGISTRY[name].expected_count
    missing = [r.path for r in records if not Path(r.path).is_file()]
    assert missing[:5] == []


@pytest.fixture(scope="module")
def processed(shared_data, tmp_path_factory) -> Path:
    """A folder holding manifest.csv of a full build: the repository's, or one built now."""
    existing = REPO / "data" / "processed"
    if (existing / "manifest.csv").is_file() and os.environ.get("TRIAGE_TEST_REBUILD") != "1":
        return existing
    out = tmp_path_factory.mktemp("processed")
    # The package may not be installed: make `python -m triage.data` importable from the checkout.
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "triage.data",
            "build",
            "--data-root",
            str(shared_data),
            "--out",
            str(out),
            "--no-cache",
        ],
        cwd=REPO,
        env=env,
        check=True,
        timeout=900,
    )
    return out


@pytest.fixture(scope="module")
def manifest_rows(processed) -> list[dict[str, str]]:
    with open(processed / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows
    return rows


def test_no_group_straddles_splits(manifest_rows):
    splits_of_group: dict[str, set[str]] = defaultdict(set)
    for r in manifest_rows:
        splits_of_group[r["group"]].add(r["split"])
    straddling = {g: sorted(s) for g, s in splits_of_group.items() if len(s) > 1}
    assert straddling == {}


def test_no_identical_file_in_two_splits(manifest_rows):
    splits_of_sha: dict[str, set[str]] = defaultdict(set)
    for r in manifest_rows:
        splits_of_sha[r["sha256"]].add(r["split"])
    assert [sha for sha, s in splits_of_sha.items() if len(s) > 1] == []


def test_every_split_has_every_outcome(manifest_rows):
    seen: dict[str, set[str]] = defaultdict(set)
    for r in manifest_rows:
        seen[r["split"]].add(r["label"])
    assert set(seen) == set(SPLITS)
    for split in SPLITS:
        assert seen[split] == set(OUTCOMES), split


def test_fingerprint_matches_manifest(processed, manifest_rows):
    recorded = (processed / "fingerprint.txt").read_text().strip()
    assert fingerprint([(r["sha256"], r["split"]) for r in manifest_rows]) == recorded


def test_the_bundle_splits_as_pinned(processed):
    assert (processed / "fingerprint.txt").read_text().strip() == BUNDLE_FINGERPRINT
    assert BUNDLE_FINGERPRINT in (REPO / "data" / "DATA_CARD.md").read_text()
