"""The About and Therapist tabs quote the lowest measured catch rate, for this very model, and the untested phones.

The verified close-ups (checked by eye) are measured by ``python bench/closeup.py`` into ``results/closeup.json``,
not stored in the checkpoint: they are quoted only when that file was measured on the loaded model's version.
"""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from triage.app.about import (
    PHONE_LIMIT,
    lowest_catch_sentence,
    measured_sets,
    model_summary_markdown,
    therapist_limits_markdown,
)

META = {
    "version": "model-a",
    "metrics": {
        "test": {"n": 2790, "refer_sensitivity": 0.9751},
        "closeup_test": {"n": 5559, "refer_sensitivity": 0.953},
    },
}


def bench_json(tmp_path, version: str, sensitivity: float = 0.8925):
    path = tmp_path / "closeup.json"
    path.write_text(
        json.dumps(
            {"version": version, "shipped": {"test_crops_verified": {"n": 276, "refer_sensitivity": sensitivity}}}
        )
    )
    return path


def test_the_lowest_figure_is_quoted_with_what_was_missed(tmp_path):
    sets = measured_sets(META, bench_json(tmp_path, "model-a"))
    assert set(sets) == {"test photos", "close-ups of a single spot", "close-ups checked by eye"}
    said = lowest_catch_sentence(sets)
    assert "276 close-ups checked by eye" in said and "about 89 in every 100" in said and "about 11 in 100" in said


def test_another_models_benchmark_is_not_quoted(tmp_path):
    sets = measured_sets(META, bench_json(tmp_path, "model-b", 0.5))
    assert "close-ups checked by eye" not in sets
    assert "about 95 in every 100" in lowest_catch_sentence(sets)  # the checkpoint's own lowest
    assert measured_sets(META, tmp_path / "missing.json").keys() == sets.keys()


def test_no_numbers_no_sentence():
    assert lowest_catch_sentence({}) is None
    assert PHONE_LIMIT in therapist_limits_markdown({})


@pytest.mark.parametrize("text", [model_summary_markdown, therapist_limits_markdown])
def test_both_tabs_quote_the_shipped_models_lowest_figure_and_the_phones(text):
    from triage.checkpoint import read_checkpoint

    meta = read_checkpoint(REPO / "models" / "triage-mnv3s.pt")["meta"]
    bench = json.loads((REPO / "results" / "closeup.json").read_text())
    if bench.get("version") != meta["version"]:
        pytest.skip("results/closeup.json was measured on another model: run python bench/closeup.py")
    caught = round(100 * bench["shipped"]["test_crops_verified"]["refer_sensitivity"])
    shown = text(meta)
    assert f"about {caught} in every 100" in shown and "checked by eye" in shown
    assert "never tested on photos taken with a phone" in shown
    assert "types V and VI" not in shown
