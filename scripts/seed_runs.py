"""Write the digests of every 7-word run of the seed pages to ``tests/data/seed_runs.txt``.

Usage:
    python scripts/seed_runs.py [--seeds ../shared/seeds] [--out tests/data/seed_runs.txt]

The seed pages are the clinic web pages the education content takes its facts from. Their text is not ours
to copy into the repository; the digests are enough for ``tests/test_content.py`` to fail when a content page
repeats a run of their words. Rerun this whenever the seed pages change.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from triage.testing.overlap import RUN, digest, runs

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SEEDS = Path(os.environ.get("TRIAGE_SEEDS", REPO.parent / "shared" / "seeds"))


def seed_digests(folder: Path) -> set[str]:
    """Digests of every run of ``RUN`` words in each text file of ``folder``."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".txt", ".md", ".html"))
    return {digest(r) for p in files for r in runs(p.read_text(encoding="utf-8", errors="replace"))}


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and write the digest file."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=Path, default=DEFAULT_SEEDS, help="folder of seed pages (text)")
    p.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "seed_runs.txt")
    args = p.parse_args(argv)
    if not args.seeds.is_dir():
        p.error(f"no such folder: {args.seeds}")
    digests = sorted(seed_digests(args.seeds))
    header = f"# sha256[:16] of every {RUN}-word run of the seed pages (scripts/seed_runs.py); one per line\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + "\n".join(digests) + "\n", encoding="utf-8")
    print(f"{args.out}: {len(digests)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
