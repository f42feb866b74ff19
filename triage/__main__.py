"""Command line: ``python -m triage {predict,evaluate} ...``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from triage.decode import UploadError
from triage.engine import DEFAULT_MODEL, ModelLoadError, Triage, combine_results


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run a sub-command."""
    p = argparse.ArgumentParser(
        prog="python -m triage", description="Skin-photo triage (educational only, not a medical opinion)."
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("predict", help="triage one or more photos")
    pr.add_argument("photos", nargs="+")
    pr.add_argument("--model", default=str(DEFAULT_MODEL))
    pr.add_argument("--json", action="store_true", help="print a JSON list, one object per photo")
    pr.add_argument(
        "--combine", action="store_true", help="photos show one area: add the most cautious combined result"
    )
    ev = sub.add_parser("evaluate", help="evaluate a checkpoint on a manifest CSV")
    ev.add_argument("--checkpoint", default=str(DEFAULT_MODEL))
    ev.add_argument("--manifest", required=True)
    ev.add_argument("--out", required=True)
    ev.add_argument("--no-gate", action="store_true", help="skip the quality/OOD gate (model + policy only)")
    ev.add_argument("--bootstrap", type=int, default=1000)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        triage = Triage.load(args.model if args.cmd == "predict" else args.checkpoint)
    except ModelLoadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.cmd == "evaluate":
        from triage.evaluate import evaluate

        m = evaluate(triage, args.manifest, args.out, gate=not args.no_gate, bootstrap=args.bootstrap)
        print(
            json.dumps(
                {
                    k: m[k]
                    for k in (
                        "n",
                        "balanced_accuracy",
                        "refer_sensitivity",
                        "unsafe_miss_rate",
                        "ece",
                        "decline_rate",
                    )
                },
                indent=1,
            )
        )
        return 0
    from tqdm import tqdm

    rows, results = [], []
    for path in tqdm(
        args.photos, desc="predict", unit="photo", disable=len(args.photos) < 5, file=sys.stderr
    ):
        try:
            res = triage.predict_path(path)
            results.append(res)
            rows.append(res.to_dict())
        except UploadError as err:
            rows.append({"file": path, "error": err.user_message})
        except OSError:
            rows.append({"file": path, "error": "The file could not be read. Please check the path."})
    if args.combine and results:
        rows.append({"combined": combine_results(results).to_dict()})
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            if "error" in r:
                print(f"{r['file']}: could not read - {r['error']}")
            elif "combined" in r:
                print(f"combined: {r['combined']['outcome']}")
            else:
                probs = ", ".join(f"{k} {v:.2f}" for k, v in (r["probabilities"] or {}).items())
                print(
                    f"{r['file']}: {r['outcome']}"
                    + (f" ({probs})" if probs else "")
                    + "".join(f"\n  - {s}" for s in r["reasons"])
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
