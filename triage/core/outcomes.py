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

#: Which label a photo with several source labels trains as (the multi-label acne set): refer > pustule >
#: milia-like > other. A training-data choice, not an answer to a person: changing it changes the data build
#: (labels and split fingerprint) and means retraining. Answers are combined by :data:`ANSWER_CAUTION`.
LABEL_PRIORITY: dict[str, int] = {OTHER: 0, MILIA: 1, PUSTULE: 2, REFER: 3}

#: Which answer leads when several photos (or crops) of one area are combined: higher wins. One rule: the
#: answer that sends the person to a doctor, or away from an extraction, wins; a referral is never hidden.
#:
#: * refer-to-doctor: sends the person to a doctor. Nothing outranks it, a declined photo included.
#: * other: "a doctor unless it is clearly a blackhead", so it sends to a doctor too, and never to a milia
#:   extraction.
#: * cant-assess: a photo we could not judge may show anything, so no answer that books (milia-like) or only
#:   postpones (pustule) a treatment may stand in front of it: retake it first. It stays below the two answers
#:   that already send the person to a doctor, which it would only soften ("retake, or a doctor if worried").
#: * pustule: not now, let it settle (away from an extraction, to a doctor only on warning signs).
#: * milia-like: the one answer that leads towards booking an extraction.
ANSWER_CAUTION: dict[str, int] = {MILIA: 0, PUSTULE: 1, CANT_ASSESS: 2, OTHER: 3, REFER: 4}

#: Outcomes that would send a person towards an extraction or "wait and see".
NON_REFER = (MILIA, PUSTULE, OTHER)

#: How soon a doctor should see the spot, least urgent first (set by :func:`triage.core.urgency.urgency_for`):
#: no doctor unless the spot changes or shows a warning sign; a GP within about two weeks; a GP the same day or
#: NHS 111; 999 or A&E now.
ROUTINE = "routine"
SOON = "soon"
TODAY = "today"
EMERGENCY = "emergency"
URGENCIES: tuple[str, ...] = (ROUTINE, SOON, TODAY, EMERGENCY)


def index_of(outcome: str) -> int:
    """Return the model output index of ``outcome``.

    Raises:
        ValueError: if ``outcome`` is not one of the four model outcomes.
    """
    try:
        return OUTCOMES.index(outcome)
    except ValueError as err:
        raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}") from err


def most_cautious_label(labels: list[str] | tuple[str, ...]) -> str:
    """The label a multi-label photo trains as (:data:`LABEL_PRIORITY`: refer > pustule > milia-like > other)."""
    if not labels:
        raise ValueError("no outcomes to combine")
    return max(labels, key=lambda o: LABEL_PRIORITY[o])


def most_cautious(outcomes: list[str] | tuple[str, ...]) -> str:
    """The answer that leads among several (:data:`ANSWER_CAUTION`: refer > other > cant-assess > pustule > milia).

    Raises:
        ValueError: no outcomes, or one that is neither a model outcome nor ``cant-assess``.
    """
    if not outcomes:
        raise ValueError("no outcomes to combine")
    unknown = [o for o in outcomes if o not in ANSWER_CAUTION]
    if unknown:
        raise ValueError(f"unknown outcome(s) {unknown}; expected some of {tuple(ANSWER_CAUTION)}")
    # max() keeps the first of equals, so ties go to the earlier photo.
    return max(outcomes, key=lambda o: ANSWER_CAUTION[o])
