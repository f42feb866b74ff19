"""The About tab's public view: the model in words a client can read, then the privacy page.

The full model card (``models/MODEL_CARD.md``) is written for the people who build and check the model: its
terms ("benign usefulness", "diagnosis-level labels") are not for a client, and a client can open this tab.
The numbers here come from the loaded checkpoint's own test metrics, and from the close-up benchmark's results
(``python bench/closeup.py``) when they were measured on this very model, so they change with the model.
"""

from __future__ import annotations

import json
from pathlib import Path

from triage.app.content_loader import page

MODEL_CARD_PATH = "models/MODEL_CARD.md"
#: The close-up benchmark's results: the only place the verified close-ups (checked by eye) are measured.
CLOSEUP_RESULTS = Path(__file__).resolve().parents[2] / "results" / "closeup.json"

WHAT_IT_IS = (
    "A small image-recognition model that runs inside this app: your photo is not sent to any other service. "
    "It compares a close-up photo of one skin spot with the example photos it learned from, and gives the "
    "closest of four answers: milia-like bumps, inflamed spots (pustules), something other than milia-like "
    "bumps or pustules, or a doctor's check. A photo it cannot judge (blurry, too dark, not skin) gets "
    '"we couldn\'t assess this photo" instead.'
)
WHAT_DATA = (
    "Public collections of skin photos gathered for research and teaching: clinic photos, skin-atlas "
    "pictures and close-ups taken through a skin magnifier, each labelled by the collection's authors. "
    "Their terms allow research and education only."
)
#: Said on the About and Therapist tabs: every test photo came from a clinic, an atlas or a skin magnifier.
PHONE_LIMIT = (
    "It was never tested on photos taken with a phone: its test photos come from clinics, skin atlases and skin "
    "magnifiers. Photos unlike its examples (another camera, light or distance) are judged less well; some are "
    "declined."
)
LIMITS = [
    "It cannot say what a spot is, and it can be wrong either way. Your therapist checks every spot in person "
    "before any treatment, and only a doctor can give a medical opinion on a spot.",
    "It learned from few photos of milia, few of dark brown or black skin and almost none of clear skin, "
    "so it is less reliable for them.",
    PHONE_LIMIT,
    "It is not meant for children's skin.",
]
NOT_A_DEVICE = (
    "This is an educational tool. It is not a medical device, has not been tested or approved as one, and must "
    "not be used to decide on medical care."
)


#: The red-flag questions (triage.core.red_flags), as the About tab explains them.
QUESTIONS = (
    "The few questions asked beside the photo (is it a new mole or patch, or has it changed over weeks; does it "
    "bleed or fail to heal; is redness spreading, or is there a fever; is the eye swollen or the vision changed) "
    "follow published UK guidance on spots a doctor should see (NICE "
    'and the NHS). An answer can only make the answer more careful: a "yes" always leads to a doctor. They '
    "were chosen from that guidance, not tuned on the example photos, and the numbers above are for photos alone."
)


def _per_100(share: float) -> int:
    return round(100 * float(share))


def measured_sets(meta: dict, closeup_results: Path = CLOSEUP_RESULTS) -> dict[str, dict]:
    """The test sets measured for this model, by name in words: ``{"test photos": {"n": ..., ...}, ...}``.

    The checkpoint holds its test photos and close-ups; the close-ups checked by eye come from the close-up
    benchmark's results, and only when those were measured on this model version (another model's numbers
    would be wrong here).

    Args:
        meta: the loaded checkpoint's metadata.
        closeup_results: the benchmark's JSON (missing or unreadable: left out).
    """
    metrics = meta.get("metrics") or {}
    sets = {"test photos": metrics.get("test"), "close-ups of a single spot": metrics.get("closeup_test")}
    try:
        bench = json.loads(closeup_results.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        bench = {}
    if isinstance(bench, dict) and bench.get("version") == meta.get("version"):
        sets["close-ups checked by eye"] = (bench.get("shipped") or {}).get("test_crops_verified")
    return {name: m for name, m in sets.items() if isinstance(m, dict) and "refer_sensitivity" in m}


def lowest_catch_sentence(sets: dict[str, dict], whose: str = "Its") -> str | None:
    """The lowest measured share of doctor's cases sent to a doctor, in words; ``None`` without any; pure.

    Args:
        sets: :func:`measured_sets`.
        whose: the sentence's first word ("Its", or "The model's" where the model was not named before).
    """
    if not sets:
        return None
    name, m = min(sets.items(), key=lambda item: item[1]["refer_sensitivity"])
    caught = _per_100(m["refer_sensitivity"])
    return (
        f"{whose} lowest measured figure, on {m['n']:,} {name}: it asked for a doctor's check for about {caught} in "
        f"every 100 spots that needed one, so about {100 - caught} in 100 got another answer."
    )


def therapist_limits_markdown(meta: dict) -> str:
    """The Therapist tab's note: the lowest measured catch rate and the untested phone photos."""
    lowest = lowest_catch_sentence(measured_sets(meta), "The model's")
    said = f"{lowest} " if lowest else ""
    return f"**Before you rely on the answer.** {said}{PHONE_LIMIT} Your in-person check decides."


def doctor_case_sentences(metrics: dict) -> str:
    """How often the model sent a doctor's case to a doctor in tests, in words; pure.

    Args:
        metrics: the checkpoint's ``meta["metrics"]`` (``test`` and, when measured, ``closeup_test``).

    Returns:
        One or two sentences; without test numbers, a pointer to the model card.
    """
    test = metrics.get("test") or {}
    if "refer_sensitivity" not in test:
        return f"This model's test results are in the full model card ({MODEL_CARD_PATH})."
    said = (
        f"In tests on {test['n']:,} photos it had never seen, it asked for a doctor's check for about "
        f"{_per_100(test['refer_sensitivity'])} in every 100 spots that a doctor should see"
    )
    closeup = metrics.get("closeup_test") or {}
    if "refer_sensitivity" in closeup:
        said += f" (about {_per_100(closeup['refer_sensitivity'])} in 100 on close-ups of a single spot)"
    said += ". The others were given another answer, which is one reason every spot is checked in person."
    if "benign_usefulness" in test:
        said += (
            " It is set to be careful, so it sends many other spots to a doctor too: only about "
            f"{_per_100(test['benign_usefulness'])} in 100 photos of milia-like bumps, pustules and other spots "
            "got their own answer."
        )
    return said


def model_summary_markdown(meta: dict) -> str:
    """The model in plain words (what it is, its data, how often it refers, its limits, not a device)."""
    limits = "\n".join(f"- {line}" for line in LIMITS)
    lowest = lowest_catch_sentence(measured_sets(meta))
    return (
        "# About this tool\n\n"
        f"{NOT_A_DEVICE}\n\n"
        f"## What it is\n\n{WHAT_IT_IS}\n\n"
        f"## What it learned from\n\n{WHAT_DATA}\n\n"
        f"## How often it sends a spot that needs a doctor to a doctor\n\n"
        f"{doctor_case_sentences(meta.get('metrics') or {})}"
        f"{' ' + lowest if lowest else ''}\n\n"
        f"## The questions beside the photo\n\n{QUESTIONS}\n\n"
        f"## Its limits\n\n{limits}\n\n"
        f"The full technical model card, with the results by data source and skin type and how the model was "
        f"trained, is in the project's repository: `{MODEL_CARD_PATH}`. Model version "
        f"`{meta.get('version', 'unknown')}`."
    )


def about_markdown(meta: dict) -> str:
    """The About tab: the model summary for a client, then the privacy page.

    Args:
        meta: the loaded checkpoint's metadata (``Triage.meta``).
    """
    return model_summary_markdown(meta) + "\n\n---\n\n" + page("privacy")


__all__ = [
    "about_markdown",
    "model_summary_markdown",
    "doctor_case_sentences",
    "lowest_catch_sentence",
    "measured_sets",
    "therapist_limits_markdown",
    "MODEL_CARD_PATH",
    "PHONE_LIMIT",
]
