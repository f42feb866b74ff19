"""The triage vocabulary: the four outcomes, defined once.

Every other module imports from here; nothing else spells the class list.
The order is the model's output order and never changes without retraining.
"""

from __future__ import annotations

MILIA = "milia-like"
PUSTULE = "pustule"
OTHER = "other"
REFER = "refer-to-doctor"

#: Model output order.
OUTCOMES: tuple[str, ...] = (MILIA, PUSTULE, OTHER, REFER)

#: Not a model class: the safety gate declined the photo (poor quality, not skin).
CANT_ASSESS = "cant-assess"

#: Caution rank used when several labels or photos must be combined: higher wins.
CAUTION: dict[str, int] = {OTHER: 0, MILIA: 1, PUSTULE: 2, REFER: 3, CANT_ASSESS: 4}

#: Outcomes that would send a person towards an extraction or "wait and see".
NON_REFER = (MILIA, PUSTULE, OTHER)


def index_of(outcome: str) -> int:
    """Return the model output index of ``outcome``.

    Raises:
        ValueError: if ``outcome`` is not one of the four model outcomes.
    """
    try:
        return OUTCOMES.index(outcome)
    except ValueError as err:
        raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}") from err


def most_cautious(outcomes: list[str] | tuple[str, ...]) -> str:
    """Return the most cautious of several outcomes (refer > pustule > milia-like > other)."""
    if not outcomes:
        raise ValueError("no outcomes to combine")
    return max(outcomes, key=lambda o: CAUTION[o])
