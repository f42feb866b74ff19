"""Mapping each source's label vocabulary onto the four outcomes.

The mapping itself is data (``triage/data/label_map.csv``) so that it can be
reviewed without reading code. Each row maps one ``(source, label)`` to an
outcome or to ``exclude`` with the reason in ``note``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from triage.core.outcomes import OUTCOMES, most_cautious_label

EXCLUDE = "exclude"
LABEL_MAP_PATH = Path(__file__).with_name("label_map.csv")


@dataclass(frozen=True)
class LabelRule:
    """One row of the label map."""

    source: str
    label: str
    outcome: str  # one of OUTCOMES or EXCLUDE
    note: str


@cache
def load_label_map(path: Path = LABEL_MAP_PATH) -> dict[tuple[str, str], LabelRule]:
    """Read the label map CSV into ``{(source, label): LabelRule}``.

    Raises:
        ValueError: on an unknown outcome or a duplicated ``(source, label)``.
    """
    rules: dict[tuple[str, str], LabelRule] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            rule = LabelRule(row["source"], row["label"], row["outcome"], row.get("note", ""))
            if rule.outcome not in OUTCOMES and rule.outcome != EXCLUDE:
                raise ValueError(f"{path}: bad outcome {rule.outcome!r} for {rule.source}/{rule.label}")
            key = (rule.source, rule.label)
            if key in rules:
                raise ValueError(f"{path}: duplicated rule for {key}")
            rules[key] = rule
    return rules


def map_labels(source: str, labels: list[str], rules: dict | None = None) -> tuple[str | None, str]:
    """Map one image's source labels to an outcome.

    Several labels (the multi-label acne set) resolve by
    :data:`triage.core.outcomes.LABEL_PRIORITY`: refer > pustule > milia-like > other. Labels marked
    ``exclude`` are ignored; an image with only excluded labels gets no target.

    Returns:
        ``(outcome, reason)``: outcome is ``None`` when the image is excluded,
        and ``reason`` then says why.

    Raises:
        KeyError: if a label has no rule at all (every label must be reviewed).
    """
    rules = load_label_map() if rules is None else rules
    mapped = []
    for label in labels:
        rule = rules.get((source, label))
        if rule is None:
            raise KeyError(f"label {label!r} of source {source!r} is not in the label map")
        if rule.outcome != EXCLUDE:
            mapped.append(rule.outcome)
    if not mapped:
        return None, "only generic labels: " + ";".join(labels)
    return most_cautious_label(mapped), ""
