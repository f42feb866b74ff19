"""Plain words for the outcome codes: what a person reads wherever an answer or a group is named.

The codes (``milia-like``, ``refer-to-doctor``, ``cant-assess``) are for programs: the JSON result, the
reason codes, the therapist's probability bars. Clients read these words instead. Pure data and functions,
no Gradio: the engine's reasons for a combined answer use them too.
"""

from __future__ import annotations

from triage.core.outcomes import CANT_ASSESS, MILIA, OTHER, OUTCOMES, PUSTULE, REFER

#: The answer, named for a client ("Triage outcome: a doctor's check").
OUTCOME_WORDS: dict[str, str] = {
    MILIA: "milia-like bumps",
    PUSTULE: "inflamed spots (pustules)",
    OTHER: "something other than milia-like bumps or pustules",
    REFER: "a doctor's check",
    CANT_ASSESS: "couldn't assess",
}

#: The four groups the photo is compared with ("closest to ..."). The refer group is named by what is in it,
#: since "closest to a doctor's check" says nothing about the photo; "other" is shorter than its answer's name,
#: so that a list of groups still reads as one ("... or pustules and spots ..." did not).
GROUP_WORDS: dict[str, str] = {
    MILIA: OUTCOME_WORDS[MILIA],
    PUSTULE: OUTCOME_WORDS[PUSTULE],
    OTHER: "other spots (neither milia-like bumps nor pustules)",
    REFER: "spots a doctor should look at",
}

#: The share at which a group other than the closest one is named ("also resembles ..."). The four shares add
#: up to one, so a group below one in five is less than an even split would give it: naming it would suggest
#: a likeness that is not there. The refer group is named whenever it led to the answer, whatever its share,
#: because its threshold is set low on purpose and the reader must see why a doctor is asked for.
ALSO_SHARE = 0.2


def outcome_words(outcome: str) -> str:
    """The answer in plain words (the code itself only for an unknown outcome, which no model gives)."""
    return OUTCOME_WORDS.get(outcome, outcome)


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def resemblance_lines(
    probabilities: dict[str, float] | None, outcome: str, reason_codes: list[str] | tuple[str, ...] = ()
) -> list[str]:
    """How closely the photo resembles each group, in words and without numbers; pure.

    Numbers such as 0.42 read like the chance that a spot is one thing or another, which they are not: they
    say how alike the photo is to the example photos of each group.

    Args:
        probabilities: the calibrated probabilities by outcome code, or ``None`` when the model did not run.
        outcome: the answer given (the refer group is named whenever it is the answer).
        reason_codes: the engine's reason codes (``"unsure"``: no group stood out).

    Returns:
        One to two sentences.
    """
    if not probabilities:
        return ["Not compared: the photo did not pass the photo checks, so the model did not look at it."]
    ranked = sorted((o for o in OUTCOMES if o in probabilities), key=lambda o: -probabilities[o])
    alike = [o for o in ranked if probabilities[o] >= ALSO_SHARE]
    if "unsure" in reason_codes:
        # The doctor is asked for because no group stood out, not for a likeness to the refer group.
        shown = [GROUP_WORDS[o] for o in (alike if len(alike) > 1 else ranked[:2])]
        return [f"No one group stood out: the photo's features were mixed (most alike: {_joined(shown)})."]
    lines = [f"Closest to {GROUP_WORDS[ranked[0]]}."]
    also = [GROUP_WORDS[o] for o in ranked[1:] if o in alike or (o == REFER and outcome == REFER)]
    if also:
        lines.append(f"Also resembles {_joined(also)}.")
    return lines


__all__ = ["OUTCOME_WORDS", "GROUP_WORDS", "ALSO_SHARE", "outcome_words", "resemblance_lines"]
