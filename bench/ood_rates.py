"""How often the safety gate declines valid skin photos versus non-skin photos.

Usage:
    python bench/ood_rates.py [--model models/triage-mnv3s.pt] [--manifest models/test_manifest.csv]

Valid photos: the test manifest (needs the bundled data beside the repo).
Non-skin photos: scikit-image's bundled samples (if scikit-image is installed;
it is not a project dependency) and generated scenes. For each set it reports
the share declined by the quality checks, by the out-of-distribution score,
and by either.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from triage.core.outcomes import CANT_ASSESS
from triage.data.sources import read_manifest
from triage.inference.engine import DEFAULT_MODEL, Triage
from triage.testing.non_skin import non_skin_photos


def _rates(results) -> dict:
    n = len(results)
    quality = sum(1 for r in results if r.outcome == CANT_ASSESS and "not_like_skin" not in r.reason_codes)
    ood = sum(1 for r in results if "not_like_skin" in r.reason_codes)
    # OOD score alone, whatever the quality checks said (the model also runs on declined photos here).
    return {
        "n": n,
        "declined_by_quality": round(quality / n, 4),
        "declined_by_ood": round(ood / n, 4),
        "declined_total": round((quality + ood) / n, 4),
    }


def main() -> None:
    """Run both sets through the engine and print JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--manifest", default="models/test_manifest.csv")
    p.add_argument("--limit", type=int, default=0, help="use only the first N valid photos")
    p.add_argument("--out", default="results/ood_rates.json")
    args = p.parse_args()
    triage = Triage.load(args.model)
    out = {"model_version": triage.version, "ood_threshold": triage.meta["ood"]["threshold"]}
    records = read_manifest(args.manifest)
    if args.limit:
        records = records[: args.limit]
    valid = [triage.predict_path(r.path, r.crop_bottom) for r in records]
    out["valid_test_photos"] = _rates(valid)
    non_skin = non_skin_photos()
    results = {name: triage.predict_image(img) for name, img in non_skin.items()}
    out["non_skin_photos"] = _rates(list(results.values()))
    out["non_skin_ood_only"] = round(
        float(
            np.mean(
                [
                    triage.model_outputs(triage.input_tensor(img))[1][0] > out["ood_threshold"]
                    for img in non_skin.values()
                ]
            )
        ),
        4,
    )
    out["non_skin_not_declined"] = sorted(k for k, r in results.items() if r.outcome != CANT_ASSESS)
    text = json.dumps(out, indent=1)
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
