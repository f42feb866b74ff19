"""Evaluate any checkpoint on any manifest with the full decision (gate included).

``python -m triage evaluate --checkpoint M --manifest CSV --out DIR``

A declined photo (``cant-assess``) counts as refer-to-doctor in the
four-outcome metrics, with p(refer) = 1 in the ranking metrics; the decline
rate is reported per source and skin type.

Beside the numbers at the checkpoint's own operating point, the ranking of
calibrated p(refer-to-doctor): ``refer_auc`` (refer photos against the other
three outcomes, and against each of them alone) and ``useful_at_95`` (benign
usefulness with the refer threshold set on this manifest for refer
sensitivity 0.95), with group-bootstrap 95% intervals (``triage.core.metrics``).

A manifest with a ``verdict`` column (the verified close-ups,
``results/verified_closeups.csv``) is scored on its ``yes`` rows only.
"""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from triage.core import metrics as M
from triage.core.outcomes import CANT_ASSESS, OUTCOMES, REFER
from triage.core.preprocess import crop_bottom
from triage.data.sources import Record, read_manifest
from triage.inference.decode import UploadError, decode_path

if TYPE_CHECKING:  # annotations only: cutting close-ups (the contact sheets) must not load torch
    from triage.inference.engine import Triage


def evaluate(triage: Triage, manifest: str | Path, out: str | Path, gate: bool = True, bootstrap: int = 1000) -> dict:
    """Run the engine over a manifest and write metrics.json, report.md and two PNGs.

    Returns:
        the metrics dict.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records, verdicts = read_manifest(manifest), verified_mask(manifest)
    if verdicts is not None:
        records = [r for r, keep in zip(records, verdicts, strict=True) if keep]
    y, pred, probs, src, fitz, declined, unreadable, groups = [], [], [], [], [], [], 0, []
    kept: list[Record] = []
    for r in tqdm(records, desc="evaluate", unit="img"):
        try:
            res = _predict_record(triage, r, gate)
        except UploadError:
            unreadable += 1
            continue
        kept.append(r)
        y.append(OUTCOMES.index(r.outcome))
        is_declined = res.outcome == CANT_ASSESS
        declined.append(is_declined)
        pred.append(OUTCOMES.index(REFER) if is_declined else OUTCOMES.index(res.outcome))
        p = res.probabilities or dict.fromkeys(OUTCOMES, 0.0) | {REFER: 1.0}
        probs.append([p[o] for o in OUTCOMES])
        src.append(r.source)
        fitz.append(str(r.fitzpatrick))
        groups.append(r.group or str(r.path))
    y, pred, probs = np.array(y, dtype=int), np.array(pred, dtype=int), np.array(probs, dtype=float)
    src, fitz, declined = np.array(src), np.array(fitz), np.array(declined, dtype=bool)
    result = M.summary(y, pred, probs)
    groups = np.array(groups)
    result["balanced_accuracy_ci95"] = M.bootstrap_ci(y, pred, M.balanced_accuracy, n=bootstrap, groups=groups)
    result["refer_sensitivity_ci95"] = M.bootstrap_ci(y, pred, M.refer_sensitivity, n=bootstrap, groups=groups)
    result["benign_usefulness_ci95"] = M.bootstrap_ci(y, pred, M.benign_usefulness, n=bootstrap, groups=groups)
    result |= M.ranking_cis(probs, y, n=bootstrap, groups=groups)
    result["auc_vs_refer_ci95"] = {
        o: M.ranking_ci(lambda p, t, c=c: M.refer_auc(p, t, [c]), probs, y, n=bootstrap, groups=groups)
        for c, o in enumerate(OUTCOMES)
        if o != REFER
    }
    result["decline_rate"] = round(float(declined.mean()), 4) if len(declined) else float("nan")
    result["unreadable"] = unreadable
    if verdicts is not None:
        result["verified_rows"] = {"kept": int(verdicts.sum()), "of": len(verdicts)}
    for key, values in (("by_source", src), ("by_fitzpatrick", fitz)):
        result[key] = {}
        for v in sorted(set(values.tolist())):
            sel = values == v
            sub = M.summary(y[sel], pred[sel], probs[sel])
            sub["decline_rate"] = round(float(declined[sel].mean()), 4)
            if key == "by_source":  # the sources are the LOSO units: their intervals matter; skin types get points
                sub |= M.ranking_cis(probs[sel], y[sel], n=bootstrap, groups=groups[sel])
            result[key][v] = sub
    result["model_version"] = triage.version
    result["gate"] = gate
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    write_predictions(out / "predictions.csv", kept, pred, declined, probs)
    _plots(y, pred, probs, out)
    (out / "report.md").write_text(render_report(result, str(manifest)))
    return result


def verified_mask(manifest: str | Path) -> np.ndarray | None:
    """For a manifest with a ``verdict`` column, which rows to score (verdict ``yes``); else ``None``.

    The verified close-ups keep a crop only where it really shows the labelled kind of spot; ``no`` and
    ``unsure`` rows are left out. Aligned with :func:`triage.data.sources.read_manifest`, which keeps every row.
    """
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if "verdict" not in (reader.fieldnames or []):
            return None
        return np.array([(row["verdict"] or "").strip().lower() == "yes" for row in reader], dtype=bool)


def write_predictions(path: Path, records: list[Record], pred, declined, probs) -> None:
    """Every scored row with its decision and calibrated probabilities, to recompute metrics without the model."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "source", "group", "fitzpatrick", "box", "decision", "declined"] + list(OUTCOMES))
        for r, d, dec, p in zip(records, pred, declined, probs, strict=True):
            box = ",".join(map(str, r.box)) if r.box else ""
            row = [str(r.path), r.outcome, r.source, r.group, r.fitzpatrick, box, OUTCOMES[d], int(dec)]
            w.writerow(row + [f"{v:.6f}" for v in p])


def _predict_record(triage: Triage, record: Record, gate: bool):
    """Triage one manifest row: the whole photo, or for a close-up row the part inside its box."""
    if record.box is None:
        return triage.predict_path(record.path, record.crop_bottom, gate=gate)
    return triage.predict_image(closeup_crop(record), gate=gate)


def closeup_crop(record: Record):
    """The part of a close-up row's photo that is judged: decoded as uploads are (EXIF orientation applied),
    its source's watermark strip dropped, then cut to the row's box."""
    return _judged_photo(record.path, record.crop_bottom).crop(record.box)


@functools.lru_cache(maxsize=1)
def _judged_photo(path: Path, share: float):
    """One decoded photo, kept while its close-up rows (adjacent in a manifest) are cut: about 6 per photo."""
    return crop_bottom(decode_path(path).image, share)


def _plots(y, pred, probs, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = M.confusion(y, pred)
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.imshow(cm / np.maximum(cm.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(OUTCOMES)):
        for j in range(len(OUTCOMES)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=9)
    ax.set_xticks(range(4), OUTCOMES, rotation=30, ha="right")
    ax.set_yticks(range(4), OUTCOMES)
    ax.set_xlabel("decision")
    ax.set_ylabel("truth")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=110)
    plt.close(fig)
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0, 1, 16)
    mids, accs = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (conf > lo) & (conf <= hi)
        if sel.sum() >= 5:
            mids.append(conf[sel].mean())
            accs.append(correct[sel].mean())
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.plot(mids, accs, "o-")
    ax.set_xlabel("top probability")
    ax.set_ylabel("share correct")
    ax.set_title(f"Reliability (ECE {M.ece(probs, y):.3f})")
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110)
    plt.close(fig)


def render_report(m: dict, manifest: str) -> str:
    """Markdown summary of a metrics dict."""
    verified = m.get("verified_rows")
    lines = [
        f"# Evaluation of {m['model_version']}",
        "",
        f"Manifest: `{manifest}`; gate: {m['gate']}"
        + (f"; verified rows only (verdict yes: {verified['kept']} of {verified['of']})" if verified else ""),
        "",
        f"- n = {m['n']}, balanced accuracy {m['balanced_accuracy']} (95% CI {m['balanced_accuracy_ci95']})",
        f"- **refer-to-doctor sensitivity {m['refer_sensitivity']}** (95% CI {m['refer_sensitivity_ci95']}) beside "
        f"**benign usefulness {m['benign_usefulness']}** (share of milia-like, pustule and other photos given their "
        f"own outcome); unsafe-miss rate {m['unsafe_miss_rate']}",
        f"- accuracy {m['accuracy']}, macro F1 {m['macro_f1']}, ECE {m.get('ece')}, decline rate {m['decline_rate']}",
        *ranking_lines(m),
        "",
        "| outcome | recall | precision | support |",
        "|---|---|---|---|",
    ]
    for o, c in m["per_class"].items():
        lines.append(f"| {o} | {c['recall']} | {c['precision']} | {c['support']} |")
    for key in ("by_source", "by_fitzpatrick"):
        lines += [
            "",
            f"## {key.replace('_', ' ')}",
            "",
            "| group | n | refer AUC | useful at 95 | balanced acc. | refer sens. | benign usefulness | unsafe miss "
            "| decline rate |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for g, s in m[key].items():
            lines.append(
                f"| {g} | {s['n']} | {_with_ci(s, 'refer_auc')} | {_with_ci(s, 'useful_at_95')} | "
                f"{s['balanced_accuracy']} | {s['refer_sensitivity']} | {s['benign_usefulness']} | "
                f"{s['unsafe_miss_rate']} | {s['decline_rate']} |"
            )
    lines += ["", "![confusion](confusion.png) ![reliability](reliability.png)", ""]
    return "\n".join(lines)


def ranking_lines(m: dict) -> list[str]:
    """The ranking of p(refer-to-doctor): AUC and usefulness at refer sensitivity 0.95, then per benign outcome."""
    if "refer_auc" not in m:
        return []
    at = m["at_95"]
    lines = [
        f"- **refer AUC {_with_ci(m, 'refer_auc')}** (calibrated p(refer-to-doctor), refer photos against the other "
        f"three outcomes) beside **useful at 95 {_with_ci(m, 'useful_at_95')}** (benign usefulness with the refer "
        f"threshold set on this set for refer sensitivity 0.95: p(refer) ≥ {at['refer_threshold']}); 95% group "
        "bootstrap intervals",
        "",
        "| benign outcome | AUC against refer | recall at refer sens. 0.95 | recall at the model's operating point |",
        "|---|---|---|---|",
    ]
    for o, auc in m["auc_vs_refer"].items():
        ci = m.get("auc_vs_refer_ci95", {}).get(o)
        lines.append(f"| {o} | {auc}{_ci(ci)} | {at['recall'][o]} | {m['per_class'][o]['recall']} |")
    return lines


def _with_ci(m: dict, key: str) -> str:
    return f"{m.get(key, '-')}{_ci(m.get(f'{key}_ci95'))}"


def _ci(ci) -> str:
    return f" ({ci[0]}–{ci[1]})" if ci and ci[0] == ci[0] else ""
