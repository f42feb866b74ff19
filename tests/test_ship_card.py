"""The model card's measured part: rendered from the committed result files and replaced in place."""

from __future__ import annotations

from triage.release.ship import (
    MEASURED_BEGIN,
    MEASURED_END,
    closeup_bench_lines,
    loso_lines,
    recipe_summary,
    refresh_measured,
)


def test_refresh_replaces_only_the_measured_part_and_appends_it_once():
    card = "# Model card\n\nintro\n"
    first = refresh_measured(card, f"{MEASURED_BEGIN}\nold numbers\n{MEASURED_END}")
    assert first.startswith(card.rstrip("\n")) and first.count(MEASURED_BEGIN) == 1
    second = refresh_measured(first + "\nafter\n", f"{MEASURED_BEGIN}\nnew numbers\n{MEASURED_END}")
    assert "new numbers" in second and "old numbers" not in second
    assert second.count(MEASURED_BEGIN) == 1 and second.endswith("\nafter\n") and "intro" in second


def test_loso_table_lists_only_held_out_rows_with_safety_beside_usefulness():
    rows = [
        {"holdout_source": "", "lever": "screen"},
        {
            "holdout_source": "ascid",
            "lever": "leave-one-source-out, crops on",
            "holdout_refer_sensitivity": "0.95",
            "holdout_benign_usefulness": "0.41",
            "holdout_unsafe_miss_rate": "0.01",
            "holdout_balanced_accuracy": "0.5",
            "holdout_closeup_benign_usefulness": "0.2",
        },
    ]
    lines = loso_lines(rows)
    body = [line for line in lines if line.startswith("| ascid")]
    assert len(body) == 1 and "0.95 | **0.41**" in body[0]
    assert loso_lines(rows[:1]) == []


def test_recipe_summary_names_the_levers_the_checkpoint_was_trained_with():
    plain = {"train_config": {"epochs": 8, "lesion_crop_p": 0.0, "diagnosis_labels": False}}
    assert "crops" not in recipe_summary(plain) and "diagnosis" not in recipe_summary(plain)
    dx = {
        "train_config": {"epochs": 8, "lesion_crop_p": 0.5, "diagnosis_labels": True},
        "diagnoses": ["a", "b", "c", "d", "e"],
    }
    text = recipe_summary(dx)
    assert "lesion-centred crops p = 0.5" in text and "5 diagnosis-level classes" in text and "8 epochs" in text

    ema = {"train_config": {"epochs": 20, "ema_decay": 0.998, "partial_labels": True}}
    assert "EMA of the weights (0.998)" in recipe_summary(ema) and "partial labels" in recipe_summary(ema)
    assert "EMA" not in text and "partial" not in text


def test_closeup_section_warns_where_the_shipped_thresholds_miss_the_safety_target():
    def cells(sens: float) -> dict:
        recall = {"milia-like": 0.5, "pustule": 0.3, "other": 0.4, "refer-to-doctor": sens}
        return {
            "n": 10,
            "refer_sensitivity": sens,
            "benign_usefulness": 0.4,
            "unsafe_miss_rate": 0.01,
            "balanced_accuracy": 0.5,
            "recall": recall,
        }

    safe = {"test": cells(0.97), "test_crops": cells(0.953)}
    result = {"shipped": safe, "photos_and_closeups": safe}
    assert not any("Below the safety target" in line for line in closeup_bench_lines(result))
    result["shipped"] = safe | {"test_crops_verified": cells(0.8925)}
    warning = [line for line in closeup_bench_lines(result) if "Below the safety target" in line]
    assert len(warning) == 1 and "verified close-ups: 0.8925" in warning[0] and "close-ups: 0.953" not in warning[0]
