"""Command line: ``python -m triage {predict,evaluate,export} ...``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from triage.core.red_flags import RED_FLAGS, FlagError, parse_flags
from triage.inference.decode import UploadError
from triage.inference.engine import DEFAULT_MODEL, ModelLoadError, Triage, combine_results, with_answers
from triage.inference.tap import MAX_PHOTOS, TOO_MANY_PHOTOS_MESSAGE, PointError, parse_point

#: What ``evaluate`` prints (all of it is in ``metrics.json``).
EVALUATE_SUMMARY = (
    "n",
    "balanced_accuracy",
    "refer_sensitivity",
    "benign_usefulness",
    "unsafe_miss_rate",
    "refer_auc",
    "refer_auc_ci95",
    "useful_at_95",
    "useful_at_95_ci95",
    "ece",
    "decline_rate",
)


def get_args_parser() -> argparse.ArgumentParser:
    """The parser of ``predict``, ``evaluate`` and ``export``."""
    p = argparse.ArgumentParser(
        prog="python -m triage", description="Skin-photo triage (educational only, not a medical opinion)."
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("predict", help="triage one or more photos")
    pr.add_argument("photos", nargs="+")
    pr.add_argument("--model", default=None, help=f"checkpoint (default {DEFAULT_MODEL.name}, or its .onnx export)")
    pr.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="run the network in PyTorch (a .pt) or ONNX Runtime (a .onnx from `export`; needs the onnx extra)",
    )
    pr.add_argument("--json", action="store_true", help="print a JSON list, one object per photo")
    pr.add_argument(
        "--combine",
        action="store_true",
        help=f"photos show one area (at most {MAX_PHOTOS}): add the most cautious combined result",
    )
    pr.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="X,Y",
        help="the spot to judge, as fractions of width and height (0-1, after EXIF orientation), e.g. 0.5,0.4; "
        "give it once per photo, in order ('-' for none); photos without one are judged whole",
    )
    pr.add_argument(
        "--flags",
        default="",
        metavar="NAME[=ANSWER],...",
        help="answers to the red-flag questions, which can only make the answer more careful: "
        + "; ".join(f"{f.key}: {f.question}" for f in RED_FLAGS)
        + ". A bare name means yes; NAME=no and NAME=not-sure are allowed too, e.g. --flags changed,eye=no",
    )
    ev = sub.add_parser("evaluate", help="evaluate a checkpoint on a manifest CSV")
    ev.add_argument("--checkpoint", default=str(DEFAULT_MODEL))
    ev.add_argument("--manifest", required=True)
    ev.add_argument("--out", required=True)
    ev.add_argument("--no-gate", action="store_true", help="skip the quality/OOD gate (model + policy only)")
    ev.add_argument("--bootstrap", type=int, default=1000)
    ex = sub.add_parser("export", help="export a checkpoint for other runtimes (ONNX)")
    ex.add_argument("--format", choices=("onnx",), default="onnx")
    ex.add_argument("--checkpoint", default=str(DEFAULT_MODEL))
    ex.add_argument("--out", required=True, help="the file to write, e.g. models/triage-mnv3s.onnx")
    ex.add_argument("--opset", type=int, default=18)
    ex.add_argument("--no-check", action="store_true", help="skip the PyTorch / ONNX Runtime comparison")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run a sub-command."""
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.cmd == "export":
        return _export(args)
    try:
        if args.cmd == "predict" and args.backend == "onnx":
            # Imported here: ONNX Runtime is optional, and the PyTorch path must not need it.
            from triage.inference.onnx_engine import OnnxTriage

            triage = OnnxTriage.load(args.model or DEFAULT_MODEL.with_suffix(".onnx"))
        else:
            triage = Triage.load((args.model or DEFAULT_MODEL) if args.cmd == "predict" else args.checkpoint)
    except ModelLoadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.cmd == "evaluate":
        return _evaluate(triage, args)
    return _predict(triage, args)


def _evaluate(triage: Triage, args: argparse.Namespace) -> int:
    """``evaluate``: write metrics.json, report.md and predictions.csv; print the headline numbers."""
    from triage.research.evaluate import evaluate  # research code: loaded only for this command

    m = evaluate(triage, args.manifest, args.out, gate=not args.no_gate, bootstrap=args.bootstrap)
    print(json.dumps({k: m[k] for k in EVALUATE_SUMMARY}, indent=1))
    return 0


def _predict(triage: Triage, args: argparse.Namespace) -> int:
    """``predict``: judge each photo (around its point, if given), apply the answers, print text or JSON.

    Each result carries its ``urgency`` (:mod:`triage.core.urgency`), the combined one the most urgent.
    """
    from tqdm import tqdm

    if len(args.point) > len(args.photos):
        print(
            f"error: {len(args.point)} points for {len(args.photos)} photos: give at most one per photo.",
            file=sys.stderr,
        )
        return 2
    try:
        answers = parse_flags(args.flags)
    except FlagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    points = args.point + ["-"] * (len(args.photos) - len(args.point))
    rows, results = [], []
    for k, (path, point_text) in enumerate(
        tqdm(
            list(zip(args.photos, points, strict=True)),
            desc="predict",
            unit="photo",
            disable=len(args.photos) < 5,
            file=sys.stderr,
        )
    ):
        if args.combine and k >= MAX_PHOTOS:
            rows.append({"file": path, "error": TOO_MANY_PHOTOS_MESSAGE})
            continue
        try:
            res = triage.predict_path(path, point=None if point_text.strip() == "-" else parse_point(point_text))
            results.append(res)
            rows.append(with_answers(res, answers).to_dict())
        except PointError as err:
            rows.append({"file": path, "error": err.user_message})
        except UploadError as err:
            rows.append({"file": path, "error": err.user_message})
        except OSError:
            rows.append({"file": path, "error": "The file could not be read. Please check the path."})
    if args.combine and results:
        # Combined before the answers are applied, so the combined reasons still name the declined photos.
        rows.append({"combined": with_answers(combine_results(results), answers).to_dict()})
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print("\n".join(_text_line(r) for r in rows))
    return 0


def _text_line(r: dict) -> str:
    """One row of ``predict``'s plain-text output."""
    if "error" in r:
        return f"{r['file']}: not checked - {r['error']}"
    if "combined" in r:
        return f"combined: {r['combined']['outcome']}, urgency {r['combined']['urgency']}"
    probs = ", ".join(f"{k} {v:.2f}" for k, v in (r["probabilities"] or {}).items())
    return (
        f"{r['file']}: {r['outcome']}, urgency {r['urgency']}"
        + (f" (around the spot at {r['point'][0]:.2f},{r['point'][1]:.2f})" if r.get("point") else "")
        + (f" ({probs})" if probs else "")
        + "".join(f"\n  - {s}" for s in r["reasons"])
    )


def _export(args: argparse.Namespace) -> int:
    """``export``: write the ONNX file and print a JSON summary (with the PyTorch comparison)."""
    from triage.release.export import export_onnx

    try:
        summary = export_onnx(args.checkpoint, args.out, opset=args.opset, check=not args.no_check)
    except ModelLoadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ImportError as err:  # onnx / onnxscript are the optional extra
        print(f"error: exporting needs the onnx extra (pip install 'skin-triage[onnx]'): {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
