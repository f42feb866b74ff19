"""The front door and the pages behind it: a short README whose links, images and numbers hold.

* The README stays under 15 KB and shows the two commands on its first screen; the depth lives in docs/.
* Every relative link and image in the README and in docs/*.md names a file that exists, and a link to a
  heading (``page.md#heading``) names a heading of that page.
* The README's headline table is the committed measurements: ``results/closeup.json`` for the shipped model,
  ``results/experiments.csv`` for the leave-one-source-out runs of its recipe (shown to three decimals).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from conftest import REPO

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
MAX_README_BYTES = 15_000
#: What a laptop shows without scrolling.
FIRST_SCREEN_LINES = 30

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCED = re.compile(r"^```.*?^```", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
    """The Markdown without fenced code blocks and code spans, where a bracket is code, not a link."""
    return CODE_SPAN.sub("", FENCED.sub("", text))


def anchors(page: Path) -> set[str]:
    """The heading anchors of a page, as GitHub writes them (lower case, punctuation dropped, spaces to dashes)."""
    headings = re.findall(r"^#{1,6} (.+)$", FENCED.sub("", page.read_text(encoding="utf-8")), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def broken_links(page: Path) -> list[str]:
    """The relative links and images of a page whose file, or heading, does not exist."""
    bad = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto: - not ours to check offline
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            bad.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            bad.append(target)
    return bad


def test_the_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= MAX_README_BYTES, (
        f"README.md is {len(text.encode())} bytes: move depth to docs/"
    )
    first_screen = text.splitlines()[:FIRST_SCREEN_LINES]
    assert "    bash scripts/serve.sh" in first_screen and "    bash scripts/test.sh" in first_screen


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    assert not broken_links(page), f"{page.relative_to(REPO)}: {broken_links(page)}"


def test_the_link_check_catches_a_missing_file_image_and_heading(tmp_path):
    (tmp_path / "there.md").write_text("# A heading, with punctuation\n\n```\n# not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#a-heading-with-punctuation) ![gone](missing.png) [gone](there.md#nowhere)\n"
        "[gone](there.md#not-a-heading) [web](https://example.org/x) `[code](not-a-link.md)`\n"
    )
    assert broken_links(page) == ["missing.png", "there.md#nowhere", "there.md#not-a-heading"]


def headline_rows() -> dict[str, list[str]]:
    """The README's headline table: first cell -> the other cells."""
    section = README.read_text(encoding="utf-8").split("## The shipped model's numbers", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+\.\d+", cell)]


def test_the_headline_numbers_are_the_committed_measurements():
    closeup = json.loads((REPO / "results" / "closeup.json").read_text())
    assert closeup["checkpoint"] == "models/triage-mnv3s.pt"
    with open(REPO / "results" / "experiments.csv", newline="") as fh:
        runs = {r["name"]: r for r in csv.DictReader(fh)}
    sets = {"test split": "test", "close-up test set": "test_crops", "verified close-ups": "test_crops_verified"}
    rows = headline_rows()
    assert len(rows) == 6, rows
    for label, cells in rows.items():
        n, auc, sensitivity, usefulness = cells
        if label.startswith("leave-one-source-out: "):
            run = runs[f"loso-{label.split(': ')[1]}-long-mnv3s-224px-ema"]
            want = [float(run["holdout_refer_auc"]), *json.loads(run["holdout_refer_auc_ci95"])]
            want += [float(run["holdout_refer_sensitivity"]), float(run["holdout_benign_usefulness"])]
        else:
            key = next(v for k, v in sets.items() if label.startswith(k))
            ranking, shipped = closeup["ranking"][key], closeup["shipped"][key]
            assert int(n.replace(",", "")) == shipped["n"], label
            want = [ranking["refer_auc"], *ranking["refer_auc_ci95"]]
            want += [shipped["refer_sensitivity"], shipped["benign_usefulness"]]
        shown = numbers(auc) + numbers(sensitivity) + numbers(usefulness)
        assert shown == pytest.approx(want, abs=0.0005 + 1e-9), label
