"""The label map: every source label is reviewed, and several labels resolve to the most cautious."""

from __future__ import annotations

import csv
from collections import Counter

import pytest

from triage.core.outcomes import MILIA, OTHER, OUTCOMES, PUSTULE, REFER, most_cautious_label
from triage.data.labels import EXCLUDE, LABEL_MAP_PATH, load_label_map, map_labels
from triage.data.sources import REGISTRY


def _rows() -> list[dict[str, str]]:
    with open(LABEL_MAP_PATH, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_label_map_rows_are_unique_and_valid():
    rows = _rows()
    assert rows
    keys = Counter((r["source"], r["label"]) for r in rows)
    assert [k for k, c in keys.items() if c > 1] == []
    assert {r["outcome"] for r in rows} <= {*OUTCOMES, EXCLUDE}
    assert all(r["label"] and r["label"] == r["label"].strip() for r in rows)
    assert len(load_label_map()) == len(rows)


def test_every_excluded_label_says_why():
    excluded = [r for r in _rows() if r["outcome"] == EXCLUDE]
    assert [(r["source"], r["label"]) for r in excluded if not r["note"].strip()] == []


def test_label_map_sources_are_registered():
    in_map = {r["source"] for r in _rows()}
    assert in_map == set(REGISTRY)


@pytest.mark.parametrize(
    ("source", "labels", "expected"),
    [
        ("roboflow_acne", ["Whitehead", "Purulent"], PUSTULE),
        ("roboflow_acne", ["Purulent", "Whitehead"], PUSTULE),  # order does not matter
        ("roboflow_acne", ["Milium", "Cystic"], REFER),
        ("roboflow_acne", ["Blackhead", "Whitehead"], MILIA),
        ("roboflow_acne", ["Blackhead", "Keloid"], OTHER),
        ("roboflow_acne", ["Papular", "Whitehead"], MILIA),  # excluded labels are ignored
        ("roboflow_acne", ["Scars", "Blackhead", "Purulent", "Conglobata"], REFER),
        ("ham10000", ["MEL", "NV"], REFER),
        ("ascid", ["Milia"], MILIA),
    ],
)
def test_multi_label_resolves_to_most_cautious(source, labels, expected):
    assert map_labels(source, labels) == (expected, "")


def test_only_generic_labels_are_excluded():
    outcome, reason = map_labels("roboflow_acne", ["Papular", "Acne"])
    assert outcome is None
    assert "Papular" in reason and "Acne" in reason


@pytest.mark.parametrize(
    ("source", "labels"),
    [("roboflow_acne", ["Whitehead", "Comedone"]), ("ascid", ["milia"]), ("no_such_source", ["Milia"])],
)
def test_unknown_label_raises(source, labels):
    with pytest.raises(KeyError):
        map_labels(source, labels)


def test_caution_order():
    assert most_cautious_label([OTHER, MILIA]) == MILIA
    assert most_cautious_label([MILIA, PUSTULE, OTHER]) == PUSTULE
    assert most_cautious_label([PUSTULE, REFER, MILIA]) == REFER
    with pytest.raises(ValueError):
        most_cautious_label([])


@pytest.mark.parametrize(
    "bad_rows",
    [
        [["ascid", "Milia", "milia-like", ""], ["ascid", "Milia", "other", ""]],  # duplicated rule
        [["ascid", "Milia", "milia", ""]],  # not an outcome
    ],
)
def test_load_label_map_rejects_bad_files(tmp_path, bad_rows):
    path = tmp_path / "label_map.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "label", "outcome", "note"])
        w.writerows(bad_rows)
    with pytest.raises(ValueError):
        load_label_map(path)


@pytest.mark.shared
def test_every_bundle_label_is_in_the_map(shared_data):
    rules = load_label_map()
    missing: set[tuple[str, str]] = set()
    for name in REGISTRY:
        with open(shared_data / name / "labels.csv", newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                labels = [lab for lab in row["labels"].split(";") if lab]
                missing |= {(name, lab) for lab in labels if (name, lab) not in rules}
    assert sorted(missing) == []
