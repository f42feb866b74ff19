"""Education content: Markdown files in ``triage/content/``, read on demand."""

from __future__ import annotations

from functools import cache
from pathlib import Path

CONTENT_DIR = Path(__file__).with_name("content")

LEARN_PAGES = [
    ("What are milia?", "milia"),
    ("Milia or pustule?", "milia_vs_pustules"),
    ("How extraction works", "extraction"),
    ("Who should wait", "contraindications"),
    ("Preparing", "preparing"),
    ("After-care", "aftercare"),
    ("Prevention", "prevention"),
    ("Questions", "faq"),
]

#: Extra pages shown under each outcome, most relevant first.
OUTCOME_PAGES = {
    "milia-like": ["milia", "extraction", "preparing"],
    "pustule": ["milia_vs_pustules"],
    "other": ["milia"],
    "refer-to-doctor": ["contraindications"],
    "cant-assess": [],
}


@cache
def page(name: str) -> str:
    """Return the Markdown text of ``content/<name>.md``."""
    return (CONTENT_DIR / f"{name}.md").read_text(encoding="utf-8")


def all_pages() -> list[Path]:
    """Every content file (for the banned-words scan)."""
    return sorted(CONTENT_DIR.glob("*.md"))
