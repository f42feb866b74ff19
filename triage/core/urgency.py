"""How soon a doctor should see the spot: one urgency level in every answer. Pure functions.

The levels (:data:`triage.core.outcomes.URGENCIES`), least urgent first:

* ``routine``: the answer asks for no doctor, unless the spot changes or shows a sign on its page's "When to see
  a doctor" line (milia-like, pustule, and a photo that could not be assessed);
* ``soon``: a GP appointment within about two weeks, the NHS's urgent route for a suspected skin cancer (the
  "other" answer, which is sometimes given for skin cancers, and refer-to-doctor);
* ``today``: a GP the same day, or NHS 111 (a yes to spreading redness, heat, fever or feeling unwell);
* ``emergency``: 999 or A&E now (a yes to swelling around the eye or a change in vision).

The photo's answer sets the starting level and each "yes" to a red-flag question sets its own
(:attr:`triage.core.red_flags.RedFlag.urgency`); the most urgent wins, so an answer can only raise the level,
as it can only make the outcome more careful. "No", "not sure" and a skipped question change nothing. Each
rule's source is in ``docs/CONTENT.md``.
"""

from __future__ import annotations

from collections.abc import Iterable

from triage.core.outcomes import CANT_ASSESS, MILIA, OTHER, PUSTULE, REFER, ROUTINE, SOON, URGENCIES
from triage.core.red_flags import FLAGS_BY_KEY, YES, check_answers

#: The level of each answer before any question is answered.
OUTCOME_URGENCY: dict[str, str] = {MILIA: ROUTINE, PUSTULE: ROUTINE, CANT_ASSESS: ROUTINE, OTHER: SOON, REFER: SOON}

#: The reason code :func:`triage.core.red_flags.apply_red_flags` adds for each yes (``flag_eye``).
FLAG_CODE_PREFIX = "flag_"


def most_urgent(levels: Iterable[str]) -> str:
    """The most urgent of ``levels`` (several photos of one area, or a photo and its answers).

    Raises:
        ValueError: no levels, or one that is not in :data:`triage.core.outcomes.URGENCIES`.
    """
    levels = list(levels)
    if not levels:
        raise ValueError("no urgency levels to combine")
    unknown = [u for u in levels if u not in URGENCIES]
    if unknown:
        raise ValueError(f"unknown urgency level(s) {unknown}; expected some of {URGENCIES}")
    return max(levels, key=URGENCIES.index)


def urgency_for(outcome: str, reason_codes: Iterable[str] = (), answers: dict[str, str] | None = None) -> str:
    """The urgency of an answer, from its outcome, its reason codes and the red-flag answers.

    Args:
        outcome: the answer (a model outcome or ``cant-assess``), after the red-flag answers were applied or not.
        reason_codes: its reason codes; a ``flag_<key>`` code counts as the yes it records, so a result whose
            answers were applied before gets the same level as one that still carries them.
        answers: ``{question key: "yes" | "no" | "not-sure"}``, or ``None``.

    Returns:
        one of :data:`triage.core.outcomes.URGENCIES`.

    Raises:
        ValueError: an unknown outcome; :class:`triage.core.red_flags.FlagError` (a ``ValueError``) for an unknown
            question or answer.
    """
    if outcome not in OUTCOME_URGENCY:
        raise ValueError(f"unknown outcome {outcome!r}; expected one of {tuple(OUTCOME_URGENCY)}")
    said_yes = {key for key, value in check_answers(answers).items() if value == YES}
    said_yes |= {c.removeprefix(FLAG_CODE_PREFIX) for c in reason_codes if c.startswith(FLAG_CODE_PREFIX)}
    return most_urgent([OUTCOME_URGENCY[outcome]] + [FLAGS_BY_KEY[k].urgency for k in said_yes if k in FLAGS_BY_KEY])


__all__ = ["FLAG_CODE_PREFIX", "OUTCOME_URGENCY", "most_urgent", "urgency_for"]
