"""Education content: Markdown files in ``triage/app/content/``, read on demand."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from triage.core import red_flags

CONTENT_DIR = Path(__file__).with_name("content")

#: When to call 999 or go to A&E (defined beside the red-flag questions, whose answers can raise it). Every
#: outcome page, the doctor-check page and the pages about inflamed spots carry this sentence word for word, so
#: a client reads one rule wherever they land.
EMERGENCY_LINE = red_flags.EMERGENCY_LINE

#: Who judges what, in one sentence on every outcome page: the therapist checks and may stop; the medical
#: opinion is a doctor's. ("Say what a spot is" clashed with the therapist confirming a blackhead in person.)
WHO_JUDGES_LINE = (
    "Before any treatment, your therapist checks your skin in person and stops if unsure; only a doctor can give "
    "a medical opinion on a spot."
)

#: A spot near the eye, said one way on every page that names it (a painful, red or swollen one is same-day).
NEAR_EYE_LINE = "See a doctor the same day about a spot near the eye that is painful, red or swollen."

#: Blisters and crusts, said one way on every page that names them.
BLISTERS_LINE = (
    "Blisters or golden crusts, such as cold sores or impetigo, are catching: ask a pharmacist, and have no facial "
    "until they have cleared; see a doctor the same day for painful blisters near the eye, or with a fever."
)

#: After a treatment, on the removal page and the after-care page alike.
AFTER_TREATMENT_LINE = (
    "See a doctor the same day if the treated area becomes more painful, swollen or hot, oozes pus, or you get a fever."
)

#: Learn tab, in order. Each page's title is its own ``# heading``, so the tab, the page and the
#: *italic* cross-references between pages all use one name.
LEARN_ORDER = [
    "milia",
    "milia_vs_pustules",
    "extraction",
    "contraindications",
    "preparing",
    "aftercare",
    "prevention",
    "doctor_check",
    "faq",
]

#: Extra pages shown under each outcome, most relevant first.
OUTCOME_PAGES = {
    # The answer that leads to a booking: who should wait comes before how it is done.
    "milia-like": ["contraindications", "extraction", "preparing"],
    "pustule": ["milia_vs_pustules"],
    # Moles, lumps and scars land here as well as blackheads: what a doctor should see.
    "other": ["doctor_check"],
    # Nothing beside the request to see a doctor, so no booking or facial page can dilute it.
    "refer-to-doctor": [],
    "cant-assess": [],
}

#: What each section of ``contraindications.md`` asks of the client (the printable summary's verdict uses it).
CONTRAINDICATION_ACTIONS = {
    "See a doctor first": "doctor",
    "Wait until the skin has healed": "wait",
    "Wait a set time": "wait",
    "Tell your therapist first": "discuss",
}

_ITEM = re.compile(r"^- \*\*(?P<label>.+?)\*\*:\s*(?P<detail>.+)$")


@dataclass(frozen=True)
class Contraindication:
    """One line of the "Who should wait" list.

    Attributes:
        label: the bold lead, also the therapist's checklist entry.
        detail: what to do about it, as the client reads it.
        action: ``"doctor"``, ``"wait"`` or ``"discuss"`` (from the section it is in).
    """

    label: str
    detail: str
    action: str


@cache
def page(name: str) -> str:
    """Return the Markdown text of ``content/<name>.md``."""
    return (CONTENT_DIR / f"{name}.md").read_text(encoding="utf-8")


def title(name: str) -> str:
    """The page's ``# heading`` (its name everywhere it is linked from)."""
    first = page(name).lstrip().splitlines()[0]
    if not first.startswith("# "):
        raise ValueError(f"content/{name}.md does not start with a '# ' title")
    return first[2:].strip()


def learn_pages() -> list[tuple[str, str]]:
    """``(title, name)`` of every Learn tab page, in order."""
    return [(title(n), n) for n in LEARN_ORDER]


def parse_contraindications(markdown: str) -> list[Contraindication]:
    """The ``- **label**: detail`` items of a "Who should wait" page, with their section's action; pure.

    Raises:
        ValueError: an item sits under a heading missing from ``CONTRAINDICATION_ACTIONS``.
    """
    items, section = [], None
    for line in markdown.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif m := _ITEM.match(line.strip()):
            if section not in CONTRAINDICATION_ACTIONS:
                raise ValueError(f"contraindication {m['label']!r} is under an unknown heading {section!r}")
            items.append(Contraindication(m["label"].strip(), m["detail"].strip(), CONTRAINDICATION_ACTIONS[section]))
    return items


def contraindications() -> list[Contraindication]:
    """The one contraindication list: the "Who should wait" page and the therapist's checklist both show it."""
    return parse_contraindications(page("contraindications"))


def all_pages() -> list[Path]:
    """Every content file (for the banned-words scan)."""
    return sorted(CONTENT_DIR.glob("*.md"))
