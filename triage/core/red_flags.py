"""Red-flag questions beside the photo: answers that can only make the answer more careful. Pure functions.

A photo cannot show whether a mole or patch is new, whether a spot has changed over weeks, bleeds, has not healed,
or comes with spreading redness or fever; published guidance weighs exactly these before any picture (NICE NG12's
weighted 7-point checklist, NHS advice on non-healing sores and on cellulitis). So the app asks a few yes / no /
not-sure questions, and this module turns the answers into caution, applied after the photo's own decision and
its safety gate:

* a "yes" that guidance ties to a doctor makes the answer refer-to-doctor, whatever the photo showed (a photo
  that could not be assessed included), and the first reason says which answer did it;
* "not sure" never changes the answer: it adds the line saying what to watch for;
* "no" and a skipped question change nothing. Nothing here can lower a referral or a photo's own answer.

How soon each yes asks for a doctor is its ``urgency`` (:mod:`triage.core.urgency` turns it into the answer's
level). The questions were chosen from guidance, not tuned on data; the model card's numbers are photo-only. Each
question's source is recorded in ``docs/CONTENT.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from triage.core.outcomes import EMERGENCY, REFER, SOON, TODAY

YES = "yes"
NO = "no"
NOT_SURE = "not-sure"
ANSWERS = (YES, NO, NOT_SURE)

#: Said in the same words wherever an emergency is named (the content pages carry the same sentence). Its
#: conditions are the ``eye`` question's and the far end of the ``unwell`` question's (NHS *Cellulitis*).
EMERGENCY_LINE = (
    "Call 999 or go to A&E now if there is red, hot, painful swelling around the eye, a change in your vision, "
    "you feel very unwell, or a red area is spreading fast and you have a fever."
)


class FlagError(ValueError):
    """An answer the app does not know; its message is a plain sentence that lists the known questions."""


@dataclass(frozen=True)
class RedFlag:
    """One question.

    Each is worded so that an ordinary new pimple, tender for a few days, is a "no": the app asks what a GP
    would ask, not what every spot has.

    Attributes:
        key: its name in the API and on the command line (``--flags changed``).
        question: one line, as the client reads it.
        if_yes: the reason shown first when the answer is yes (the answer then is refer-to-doctor).
        if_not_sure: the line added when the answer is "not sure" (the answer itself stays).
        urgency: how soon a yes asks for a doctor (:data:`triage.core.outcomes.URGENCIES`): ``"soon"``;
            ``"today"`` (the emergency line follows the reason, saying when it is more than that);
            ``"emergency"`` (the emergency line comes first).
    """

    key: str
    question: str
    if_yes: str
    if_not_sure: str
    urgency: str = SOON


RED_FLAGS: tuple[RedFlag, ...] = (
    RedFlag(
        "changed",
        "Is it a new mole or patch, or has it changed in size, shape or colour over weeks?",
        "You said it is a new mole or patch, or has changed over weeks: a doctor should see it within two weeks, "
        "whatever the photo shows.",
        "Check the spot again in 4-6 weeks (a photo beside a ruler helps), and see a doctor if it changes.",
    ),
    RedFlag(
        "bleeding",
        "Does it bleed, crust or ooze without being picked, or has it not healed within 4 weeks?",
        "You said the spot bleeds, crusts or has not healed: a doctor should see it within two weeks, whatever "
        "the photo shows.",
        "If it bleeds without being picked, or has not healed within 4 weeks, see a doctor.",
    ),
    RedFlag(
        "unwell",
        "Is redness or heat spreading from it, or do you have a fever or feel unwell?",
        "You said redness or heat is spreading, or you have a fever or feel unwell: please see a doctor today, "
        "whatever the photo shows.",
        "If redness or heat starts to spread, or you get a fever or feel unwell, see a doctor the same day.",
        urgency=TODAY,
    ),
    RedFlag(
        "eye",
        "Is there red, hot, painful swelling around the eye, or a change in your vision?",
        "You said there is swelling around the eye or a change in your vision: this needs emergency care now.",
        EMERGENCY_LINE,
        urgency=EMERGENCY,
    ),
)
FLAGS_BY_KEY = {f.key: f for f in RED_FLAGS}


def _unknown(what: str) -> FlagError:
    known = ", ".join(FLAGS_BY_KEY)
    return FlagError(f"{what} Known questions: {known}; answers: {', '.join(ANSWERS)}.")


def check_answers(answers: dict[str, str] | None) -> dict[str, str]:
    """Validate answers (``{"changed": "yes", ...}``) and return them in question order; ``None`` is no answers.

    Raises:
        FlagError: an unknown question or answer.
    """
    answers = answers or {}
    for key, value in answers.items():
        if key not in FLAGS_BY_KEY:
            raise _unknown(f"There is no question called {key!r}.")
        if value not in ANSWERS:
            raise _unknown(f"{value!r} is not an answer to {key!r}.")
    return {f.key: answers[f.key] for f in RED_FLAGS if f.key in answers}


def parse_flags(text: str | None) -> dict[str, str]:
    """Answers from text: ``"changed,bleeding=no,eye=not-sure"`` (a bare name means yes); empty is no answers.

    Raises:
        FlagError: an unknown question or answer, or the same question twice.
    """
    answers: dict[str, str] = {}
    for item in (text or "").split(","):
        item = item.strip().lower()
        if not item:
            continue
        key, _, value = item.partition("=")
        key, value = key.strip(), (value.strip().replace(" ", "-").replace("_", "-") or YES)
        if key in answers:
            raise _unknown(f"The question {key!r} was answered twice.")
        answers[key] = value
    return check_answers(answers)


def apply_red_flags(
    outcome: str, reasons: list[str], reason_codes: list[str], answers: dict[str, str] | None
) -> tuple[str, list[str], list[str]]:
    """The answer after the red-flag questions: only ever the same or more careful.

    Args:
        outcome: the photo's answer after the decision policy and the safety gate.
        reasons: its reasons (kept, after the ones the answers add).
        reason_codes: its reason codes (kept; ``flag_<key>`` is added for each yes).
        answers: ``{question key: "yes" | "no" | "not-sure"}``; skipped questions are simply absent.

    Returns:
        ``(outcome, reasons, reason_codes)``: refer-to-doctor with the answers' reasons first when any answer
        is a yes; otherwise the same outcome, with a line added for each "not sure".

    Raises:
        FlagError: an unknown question or answer.
    """
    answers = check_answers(answers)
    yes = [FLAGS_BY_KEY[k] for k, v in answers.items() if v == YES]
    not_sure = [FLAGS_BY_KEY[k].if_not_sure for k, v in answers.items() if v == NOT_SURE]
    if not yes:
        return outcome, list(reasons) + not_sure, list(reason_codes)
    levels = {f.urgency for f in yes}
    said = [f.if_yes for f in yes]
    if EMERGENCY in levels:
        said.insert(0, EMERGENCY_LINE)
    elif TODAY in levels:
        said.append(EMERGENCY_LINE)
    said += [r for r in list(reasons) + not_sure if r not in said]
    return REFER, said, [f"flag_{f.key}" for f in yes] + list(reason_codes)


__all__ = [
    "ANSWERS",
    "EMERGENCY_LINE",
    "FLAGS_BY_KEY",
    "NOT_SURE",
    "NO",
    "RED_FLAGS",
    "YES",
    "FlagError",
    "RedFlag",
    "apply_red_flags",
    "check_answers",
    "parse_flags",
]
