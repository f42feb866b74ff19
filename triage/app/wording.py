"""Plain words for the outcome codes: what a person reads wherever an answer or a group is named.

The codes (``milia-like``, ``refer-to-doctor``, ``cant-assess``) are for programs: the JSON result, the
reason codes, the therapist's probability bars. Clients read these words instead. Pure data and functions,
no Gradio. The card's headline and next step come from the answer's urgency first (:mod:`triage.core.urgency`):
an emergency or a same-day doctor leads the card whatever the photo showed; otherwise the outcome's own words,
which carry its time limit, do.
"""

from __future__ import annotations

from triage.core.outcomes import CANT_ASSESS, EMERGENCY, MILIA, OTHER, OUTCOMES, PUSTULE, REFER, ROUTINE, SOON, TODAY

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


HEADLINES = {
    MILIA: "This photo looks most like our milia-like examples",
    PUSTULE: "This photo looks most like inflamed spots (pustules)",
    OTHER: "This photo looks most like something other than milia-like bumps or pustules",
    # Not "before any facial": a doctor should see it whether or not a facial is planned.
    REFER: "Please have a doctor check this spot soon",
    CANT_ASSESS: "We couldn't assess this photo",
}
NEXT_STEP = {
    MILIA: (
        "Next step: read who should wait below, then book a milia consultation if you would like them removed. "
        "A bump that grows, bleeds, crusts or looks unlike the others needs a doctor instead. Please don't squeeze "
        "them or use a needle."
    ),
    PUSTULE: (
        "Next step: let the spots settle without picking them; a pharmacist can help with ordinary spots. See a GP "
        "if a spot has not gone within 4 weeks, or if it is a deep, hard or painful lump. See a doctor the same day "
        "for a fever, spreading redness, or a painful, red or swollen spot near the eye."
    ),
    # The "other" page's rule: a doctor unless it is clearly a blackhead, confirmed in person.
    OTHER: (
        "Next step: see your GP within two weeks, whether or not you plan a facial, unless it is clearly a blackhead "
        "(a therapist can check that in person). This answer is sometimes given for skin cancers: a single dark spot, "
        "a new or changing one, a mole, patch, lump or raised scar goes to a doctor."
    ),
    REFER: (
        "Next step: ask your GP to see you within two weeks, whether or not you plan a facial, and tell them if it "
        "is growing, bleeding, or a sore that has not healed."
    ),
    CANT_ASSESS: "Next step: retake the photo (tips below), or see a doctor if you are worried.",
}
#: The therapist tab's card: what the therapist does next (the client's lines above speak to the client).
THERAPIST_NEXT_STEP = {
    MILIA: (
        "For the therapist: check in person first. If they are milia and nothing on the checklist below applies, "
        "extraction can be offered. Stop and refer to a doctor if unsure, if a bump will not come out (do not try "
        "again), or if a bump grows, bleeds, crusts or looks unlike the others."
    ),
    PUSTULE: (
        "For the therapist: no extraction or facial over inflamed spots; offer a later appointment once they have "
        "settled. Crusts or small blisters may be catching: no facial until a pharmacist or doctor has cleared "
        "them. A spot not gone within 4 weeks, or a deep, hard or painful lump: the client sees a GP. Fever, "
        "spreading redness, or a painful, red or swollen spot near the eye: a doctor the same day."
    ),
    OTHER: (
        "For the therapist: this answer is sometimes given for skin cancers. Treat only what you confirm in person "
        "to be a blackhead. A single dark spot, one that is new or changing, a mole, patch, lump or raised scar: no "
        "treatment on it, and the client sees their GP within two weeks, whatever their facial plans."
    ),
    REFER: (
        "For the therapist: no treatment on or around this spot. Ask the client to see their GP within two weeks, "
        "whatever their facial plans, and to say if it is growing, bleeding, or a sore that has not healed."
    ),
    CANT_ASSESS: (
        "For the therapist: the app gave no answer for this photo. Retake it (close, in focus, in daylight), or "
        "rely on the in-person check; if in doubt, no treatment and a doctor's check."
    ),
}
#: The urgencies that lead the card whatever the outcome (an answer to a question raised them).
URGENT_HEADLINES = {
    EMERGENCY: "Get help now: call 999 or go to A&E",
    TODAY: "Please see a doctor today",
}
URGENT_NEXT_STEP = {
    EMERGENCY: (
        "Next step: call 999 or go to A&E now; the photo's answer can wait. Leave the spot alone, and have no facial "
        "until a doctor has seen it."
    ),
    TODAY: (
        "Next step: ask your GP surgery to see you today, or call NHS 111 if it is closed. Leave the spot alone, and "
        "have no facial until a doctor has seen it."
    ),
}
URGENT_THERAPIST_NEXT_STEP = {
    EMERGENCY: "For the therapist: stop, and no treatment. The client needs emergency care now: 999 or A&E.",
    TODAY: "For the therapist: no treatment. The client should see a GP today, or call NHS 111 if the GP is closed.",
}
#: The urgency in words, on the therapist's card and the printable summary.
URGENCY_WORDS = {
    EMERGENCY: "Emergency: call 999 or go to A&E now.",
    TODAY: "Today: a GP appointment the same day, or NHS 111.",
    SOON: "Soon: a GP appointment within about two weeks.",
    ROUTINE: "Routine: no doctor's appointment, unless the spot changes or shows a sign the next step names.",
}


def headline(outcome: str, urgency: str) -> str:
    """The card's headline: an emergency or a same-day doctor first, else the outcome's own."""
    return URGENT_HEADLINES.get(urgency) or HEADLINES[outcome]


def next_step(outcome: str, urgency: str, for_therapist: bool = False) -> str:
    """The card's next step, for the client or (``for_therapist``) the therapist; urgent ones lead as above."""
    urgent, own = (URGENT_THERAPIST_NEXT_STEP, THERAPIST_NEXT_STEP) if for_therapist else (URGENT_NEXT_STEP, NEXT_STEP)
    return urgent.get(urgency) or own[outcome]


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


__all__ = [
    "OUTCOME_WORDS",
    "GROUP_WORDS",
    "ALSO_SHARE",
    "HEADLINES",
    "NEXT_STEP",
    "THERAPIST_NEXT_STEP",
    "URGENT_HEADLINES",
    "URGENT_NEXT_STEP",
    "URGENT_THERAPIST_NEXT_STEP",
    "URGENCY_WORDS",
    "headline",
    "next_step",
    "outcome_words",
    "resemblance_lines",
]
