"""Write a tiny generated dataset for trying the bring-your-own-data workflow end to end.

Usage:
    python scripts/tiny_dataset.py --out /tmp/tiny [--per-outcome 12] [--duplicates 2] [--seed 0]

Writes ``<out>/imagefolder/<outcome>/*.png|jpg`` (skin-like synthetic photos with a colour cast per outcome,
a few mirrored copies among them) and ``<out>/manifest.csv`` over the same files with source and skin type.
Feed either one to ``python -m triage.data build`` (see docs/BRING_YOUR_OWN_DATA.md), not both: they hold
the same photos.
"""

from __future__ import annotations

import argparse
import json
import sys

from triage.testing.synthetic import write_tiny_dataset


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, write the dataset and print where it went (JSON)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--per-outcome", type=int, default=12, help="distinct photos per outcome (default 12)")
    p.add_argument("--duplicates", type=int, default=2, help="mirrored copies per outcome (default 2)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    tiny = write_tiny_dataset(args.out, args.per_outcome, args.duplicates, args.seed)
    print(
        json.dumps(
            {
                "image_folder": str(tiny.image_folder),
                "manifest": str(tiny.manifest),
                "images": tiny.n_images,
                "mirrored_copies": tiny.n_duplicates,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
