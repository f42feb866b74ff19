"""Package a training run as the shipped model: ``python -m triage.release.ship --run runs/X``.

Copies ``model.pt`` to ``models/<name>.pt`` with its sha256, writes the test
split as a manifest with paths relative to ``models/`` (so
``python -m triage evaluate`` can re-score it on any clone with the data
beside it), and renders ``models/MODEL_CARD.md`` from the run's metrics.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

from triage.checkpoint import read_checkpoint, write_sha256
from triage.core.outcomes import OUTCOMES
from triage.data.sources import write_split_manifest


def _ci(m: dict, key: str) -> str:
    """``value (low–high)`` of a metric and its ``_ci95`` interval; ``-`` where it was not measured."""
    ci = m.get(f"{key}_ci95")
    return f"{m.get(key, '-')}" + (f" ({ci[0]}–{ci[1]})" if ci and ci[0] == ci[0] else "")


def _row(name: str, m: dict) -> str:
    pc = m["per_class"]
    return (
        f"| {name} | {_ci(m, 'refer_auc')} | {_ci(m, 'useful_at_95')} | "
        f"{m['refer_sensitivity']} | **{m.get('benign_usefulness', '-')}** | {m['balanced_accuracy']} | "
        f"{m['unsafe_miss_rate']} | {pc['milia-like']['recall']} | {pc['milia-like']['precision']} | "
        f"{m.get('ece', '-')} | {m['macro_f1']} |"
    )


def _usefulness_cells(m: dict, recall: dict) -> str:
    """Table cells: n, safety beside usefulness, then per-outcome recall of the benign outcomes."""
    return (
        f"{m['n']} | {m['refer_sensitivity']} | **{m['benign_usefulness']}** | {m['unsafe_miss_rate']} | "
        f"{m['balanced_accuracy']} | {recall['milia-like']} | {recall['pustule']} | {recall['other']} |"
    )


def ranking_lines(model: dict) -> list[str]:
    """The ranking of p(refer-to-doctor) on each test set of the run: AUC, useful at 95, AUC per benign outcome."""
    names = (
        ("whole photos (test split)", "test"),
        ("close-ups (test crops)", "closeup_test"),
        (f"held-out source {model.get('holdout_source', '')}", "holdout"),
    )
    sets = [(name, model[key]) for name, key in names if "refer_auc" in model.get(key, {})]
    if not sets:
        return []
    lines = [
        "",
        "## Ranking: refer AUC and usefulness at refer sensitivity 0.95",
        "",
        "What no threshold changes. Refer AUC: the ROC AUC of calibrated p(refer-to-doctor), refer photos against "
        "milia-like, pustule and other photos (and against each alone). Useful at 95: the share of milia-like, "
        "pustule and other photos given their own outcome when the refer threshold is set on that same set for "
        "refer sensitivity 0.95. 95% group-bootstrap intervals (`triage/core/metrics.py`).",
        "",
        "| set | n | refer AUC | useful at 95 | milia-like vs refer | pustule vs refer | other vs refer |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in sets:
        by = m.get("auc_vs_refer", {})
        lines.append(
            f"| {name} | {m['n']} | {_ci(m, 'refer_auc')} | {_ci(m, 'useful_at_95')} | {by.get('milia-like', '-')} "
            f"| {by.get('pustule', '-')} | {by.get('other', '-')} |"
        )
    return lines


def closeup_lines(model: dict) -> list[str]:
    """The whole-photo test split beside the close-up test set, both at the validation-chosen point."""
    names = (("whole photos (test split)", "test"), ("close-ups (test crops)", "closeup_test"))
    sets = [(name, model[key]) for name, key in names if key in model]
    if len(sets) < 2:
        return []
    lines = [
        "",
        "## Close-up test set",
        "",
        "Lesion-centred crops of the test photos (`triage/data/lesions.py`, `triage/data/crops.py`: the spot fills "
        "about 17-60% of the crop's side), standing in for a client's close-up of one spot. Never used for training, "
        "model selection or thresholds. `models/closeup_test_manifest.csv` lists every crop's photo and box.",
        "",
        "| set | n | refer sens. | benign usefulness | unsafe miss | balanced acc. | milia R | pustule R | other R |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in sets:
        lines.append(f"| {name} | " + _usefulness_cells(m, {k: v["recall"] for k, v in m["per_class"].items()}))
    return lines


#: The model card's part that ``python -m triage.release.ship --refresh-measured`` rewrites from the committed results.
MEASURED_BEGIN = "<!-- measured: begin (python -m triage.release.ship --refresh-measured) -->"
MEASURED_END = "<!-- measured: end -->"


def closeup_bench_lines(result: dict) -> list[str]:
    """Whole photos beside close-ups for the shipped model, from ``results/closeup.json``."""
    lines = [
        "",
        "## Safety beside usefulness, whole photos and close-ups",
        "",
        "Benign usefulness: the share of milia-like, pustule and 'other' photos given their own outcome instead "
        "of 'see a doctor'. Close-up test set: lesion-centred crops of the test photos (never used for training, "
        "selection or thresholds). `python bench/closeup.py`; the validation point chosen on photos and "
        "close-ups together is listed too.",
        "",
        "| policy | set | n | refer sens. | benign usefulness | unsafe miss | balanced acc. | milia R | pustule R "
        "| other R |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    sets = (("test", "test split"), ("test_crops", "close-up test set"), ("test_crops_verified", "verified close-ups"))
    for policy, title in (("shipped", "shipped thresholds"), ("photos_and_closeups", "chosen on photos + close-ups")):
        for key, name in sets:
            if key in result[policy]:  # the verified close-ups only once their verdicts exist
                m = result[policy][key]
                lines.append(f"| {title} | {name} | " + _usefulness_cells(m, m["recall"]))
    lines += _below_target(result["shipped"])
    ranking = result.get("ranking", {})
    if ranking:
        lines += [
            "",
            "The same sets ranked by calibrated p(refer-to-doctor), whatever the thresholds (refer AUC; useful at 95: "
            "benign usefulness with the refer threshold set on that set for refer sensitivity 0.95; 95% "
            "group-bootstrap intervals):",
            "",
            "| set | refer AUC | useful at 95 | milia-like vs refer | pustule vs refer | other vs refer |",
            "|---|---|---|---|---|---|",
        ]
        for key, name in sets:
            if key in ranking:
                m, by = ranking[key], ranking[key]["auc_vs_refer"]
                lines.append(
                    f"| {name} | {_ci(m, 'refer_auc')} | {_ci(m, 'useful_at_95')} | {by['milia-like']} | "
                    f"{by['pustule']} | {by['other']} |"
                )
    return lines


def _below_target(shipped: dict) -> list[str]:
    """A warning under the table for each set where the shipped thresholds miss refer sensitivity 0.95."""
    names = {"test": "test photos", "test_crops": "close-ups", "test_crops_verified": "verified close-ups"}
    low = [(names[k], shipped[k]["refer_sensitivity"]) for k in names if k in shipped]
    low = [(n, v) for n, v in low if v < 0.95]
    if not low:
        return []
    where = "; ".join(f"{n}: {v}" for n, v in low)
    return [
        "",
        f"**Below the safety target** (refer sensitivity ≥ 0.95) at the shipped thresholds on: {where}. The "
        "thresholds are chosen on validation photos and close-ups only, so a test set may land under the target; "
        "a missed refer-to-doctor photo mostly gets 'other', whose page still says when to see a doctor.",
    ]


def _binding_closeups(model: dict) -> list[str]:
    """A failure-mode line when the operating point had to be safe on validation close-ups as well."""
    op = model.get("val_operating_point", {})
    if "closeup_refer_sensitivity" not in op or "test" not in model:
        return []
    return [
        "- The operating point must keep refer sensitivity ≥ 0.95 on validation close-ups as well as on whole "
        f"photos (validation: close-ups {op['closeup_refer_sensitivity']:.3f}, photos {op['refer_sensitivity']:.3f}"
        "). Where the close-ups bind, whole photos get a more cautious point than they need on their own "
        f"(test refer sensitivity {model['test']['refer_sensitivity']}), paid for in benign usefulness."
    ]


def recipe_summary(meta: dict) -> str:
    """The shipped model's recipe in a few words, from the training config stored in its checkpoint."""
    cfg = meta.get("train_config", {})
    parts = ["balanced sampling", "phone augmentation"]
    if float(cfg.get("lesion_crop_p") or 0) > 0:
        parts.append(f"lesion-centred crops p = {cfg['lesion_crop_p']}")
    if cfg.get("diagnosis_labels"):
        parts.append(f"{len(meta.get('diagnoses', []))} diagnosis-level classes summed to outcomes")
    if cfg.get("partial_labels"):
        parts.append("partial labels for multi-outcome crops")
    if float(cfg.get("mixup_alpha") or 0) > 0:
        parts.append(f"mixup (alpha {cfg['mixup_alpha']})")
    if float(cfg.get("ema_decay") or 0) > 0:
        parts.append(f"EMA of the weights ({cfg['ema_decay']})")
    if int(cfg.get("frozen_features") or 0) > 0:
        parts.append(f"first {cfg['frozen_features']} backbone modules kept at ImageNet weights")
    # A checkpoint trained before the option existed chose its epoch on balanced accuracy.
    chosen = SELECTED_ON[cfg.get("select_on", "balanced_accuracy")]
    return ", ".join([*parts, f"{cfg.get('epochs', '?')} epochs", chosen, "calibrated", "safety operating point"])


#: How :func:`recipe_summary` says which validation score chose the epoch (``TrainConfig.select_on``).
SELECTED_ON = {
    "useful_at_95": "epoch chosen on validation useful at 95 (AUC breaks ties)",
    "refer_auc": "epoch chosen on validation refer AUC",
    "balanced_accuracy": "epoch chosen on validation balanced accuracy",
}


def loso_lines(rows: list[dict]) -> list[str]:
    """Fine-tuned leave-one-source-out rows of ``results/experiments.csv`` as a table."""
    rows = [r for r in rows if r.get("holdout_source")]
    if not rows:
        return []
    lines = [
        "",
        "## Fine-tuned leave-one-source-out",
        "",
        "Each recipe trained, selected and calibrated without one source, then scored on every photo of that "
        "source at its validation-chosen safety point: the closest proxy here for an atlas or camera the model "
        "has never seen. `python bench/experiments.py run <name>`; commands and wall times in "
        "`results/experiments.csv`.",
        "",
        "| held-out source | recipe | epochs | refer AUC | useful at 95 | refer sens. | benign usefulness | "
        "unsafe miss | balanced acc. | benign usefulness on its close-ups |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        auc, useful = (_csv_ci(r, f"holdout_{k}") for k in ("refer_auc", "useful_at_95"))
        lines.append(
            f"| {r['holdout_source']} | {r['lever']} | {r.get('epochs', '')} | {auc} | {useful} | "
            f"{r['holdout_refer_sensitivity']} | "
            f"**{r['holdout_benign_usefulness']}** | {r['holdout_unsafe_miss_rate']} | "
            f"{r['holdout_balanced_accuracy']} | {r['holdout_closeup_benign_usefulness']} |"
        )
    return lines


def _csv_ci(r: dict, key: str) -> str:
    """A ``results/experiments.csv`` value with its ``[low, high]`` interval; ``-`` where the row predates it."""
    value, ci = r.get(key) or "-", r.get(f"{key}_ci95") or ""
    return value + (" ({}–{})".format(*json.loads(ci)) if ci else "")


def measured_section(closeup_json: Path, experiments_csv: Path) -> str:
    """The card's measured part (between the markers), from whichever result files exist."""
    lines = [MEASURED_BEGIN]
    if closeup_json.exists():
        lines += closeup_bench_lines(json.loads(closeup_json.read_text()))
    if experiments_csv.exists():
        with open(experiments_csv, newline="") as fh:
            lines += loso_lines(list(csv.DictReader(fh)))
    return "\n".join([*lines, "", MEASURED_END])


def refresh_measured(card: str, section: str) -> str:
    """``card`` with its measured part replaced by ``section`` (appended when the card has none yet)."""
    if MEASURED_BEGIN in card and MEASURED_END in card:
        head, rest = card.split(MEASURED_BEGIN, 1)
        return head + section + rest.split(MEASURED_END, 1)[1]
    return card.rstrip("\n") + "\n\n" + section + "\n"


def render_card(meta: dict, report: dict, size_mb: float, sha: str, command: str) -> str:
    """The model card, from the checkpoint metadata and the run's metrics.json."""
    t = report["model"]["test"]
    sources = sorted(t.get("by_source", {}))  # the sources of the test split: those the model was trained on
    lines = [
        "# Model card: skin-photo triage",
        "",
        f"Version `{meta['version']}` · architecture `{meta['arch']}` · input {meta['image_size']} px · "
        f"{size_mb:.1f} MB · sha256 `{sha}`",
        "",
        "## Intended use",
        "Educational triage of a close-up photo of one skin spot before an extraction facial: "
        "milia-like / pustule / other / refer-to-doctor, with a 'can't assess' gate for poor or non-skin photos. "
        "It gives a next step (book, wait, see a doctor, retake), never a medical opinion.",
        "",
        "## Out of scope",
        "Any medical decision; screening for skin cancer; photos that are not close-ups of skin; use without "
        "an in-person check by a therapist or doctor; children's skin; people the data does not represent well "
        "(see per-skin-type numbers below).",
        "",
        "## Data",
        f"{len(sources)} public sources ({', '.join(sources)}; see `data/README` in the bundle"
        " and `triage/data/sources.py` for licences: research / non-commercial). "
        f"Group-aware split, fingerprint `{meta['data_fingerprint']}`. "
        "Training uses the train split, model selection and all thresholds the validation split only.",
        "",
        "## Test-split results (after the decision policy, model + policy only)",
        "",
        "| model | refer AUC | useful at 95 | refer sens. | benign usefulness | balanced acc. | unsafe miss "
        "| milia recall | milia precision | ECE | macro F1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        _row(f"shipped ({recipe_summary(meta)})", t),
    ]
    if "standard_recipe" in report:
        lines.append(
            _row("standard recipe (plain CE, no balancing, outcome labels, argmax)", report["standard_recipe"]["test"])
        )
    if "linear_probe" in report:
        lines.append(_row("frozen ImageNet features + logistic regression", report["linear_probe"]["test"]))
    lines += [
        "",
        f"Balanced accuracy 95% CI (group bootstrap): {t['balanced_accuracy_ci95']}; "
        f"refer sensitivity 95% CI: {t['refer_sensitivity_ci95']}; benign usefulness 95% CI: "
        f"{t.get('benign_usefulness_ci95', '-')}. Benign usefulness: the share of milia-like, pustule and 'other' "
        "photos that get their own outcome instead of 'see a doctor' (a tool that refers everyone scores 0).",
        "",
        "### Per outcome",
        "",
        "| outcome | recall | precision | support |",
        "|---|---|---|---|",
    ]
    lines += [f"| {o} | {c['recall']} | {c['precision']} | {c['support']} |" for o, c in t["per_class"].items()]
    for key, title in (("by_source", "Per source"), ("by_fitzpatrick", "Per Fitzpatrick skin type (-1 = unknown)")):
        lines += [
            "",
            f"### {title}",
            "",
            "| group | n | refer AUC | useful at 95 | refer sens. | benign usefulness | balanced acc. | unsafe miss "
            "| accuracy |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {g} | {s['n']} | {s.get('refer_auc', '-')} | {s.get('useful_at_95', '-')} | "
            f"{s['refer_sensitivity']} | {s.get('benign_usefulness', '-')} | "
            f"{s['balanced_accuracy']} | {s['unsafe_miss_rate']} | {s['accuracy']} |"
            for g, s in t[key].items()
        ]
    lines += ranking_lines(report["model"])
    lines += closeup_lines(report["model"])
    loso = report.get("linear_probe_leave_one_source_out") or {}
    if loso:
        lines += [
            "",
            "### Leave one source out",
            "",
            "Linear probe on frozen ImageNet features, trained without the source and tested on all of it.",
            "",
            "| held-out source | n | balanced acc. | accuracy | refer sens. |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {s} | {m['n']} | {m['balanced_accuracy']} | {m['accuracy']} | {m['refer_sensitivity']} |"
            for s, m in loso.items()
        ]
    m = report["model"]
    lines += [
        "",
        "## Calibration and operating point",
        f"- Temperature {m['temperature']:.3f} (validation NLL {m['val_nll_before']:.3f} → {m['val_nll_after']:.3f}); "
        f"test ECE {m['test_ece_uncalibrated']:.3f} before, {t.get('ece')} after.",
        f"- refer-to-doctor whenever its probability ≥ {meta['refer_threshold']} (≥ "
        f"{meta.get('refer_threshold_other') or meta['refer_threshold']} when the likeliest other outcome is "
        f"'other'), or the top probability < {meta['abstain_threshold']}; chosen on validation for refer "
        "sensitivity ≥ 0.95 and unsafe-miss ≤ 0.02 "
        f"(validation: {json.dumps({k: round(v, 4) for k, v in m['val_operating_point'].items()})}).",
        f"- Out-of-distribution gate: Mahalanobis distance on pooled features, threshold = the "
        f"{meta['ood']['quantile']:.0%} quantile of validation scores ({meta['ood']['threshold']:.2f}).",
        "",
        "## Known failure modes",
        f"- The safety operating point sends many pustule and 'other' photos to refer-to-doctor (test recall "
        f"{t['per_class']['pustule']['recall']} and {t['per_class']['other']['recall']}): the price of refer "
        "sensitivity ≥ 0.95 with this small model. A client then hears 'see a doctor first', never 'book'.",
        *_binding_closeups(m),
        "- Source shortcut: most 'other' examples are dermoscopic (HAM10000, ISIC) while milia and pustules are "
        "clinical web photos; clinical 'other' photos (atlas moles, keloids) are the weakest group.",
        "- Milia examples are few (443 images, mostly one web-scraped source); the roboflow 'Milium' label is noisy.",
        "- Dark skin types (V-VI) are under-represented; check the per-type table before relying on it.",
        "- Healthy skin is nearly absent from training (33 photos).",
        "",
        "## How to retrain",
        f"`{command}` (then `python -m triage.release.ship --run runs/<folder>`). "
        f"Training wall time of this run: {report.get('wall_seconds', '?')} s on a 2-core CPU "
        f"(model {m['train_seconds']} s; the rest is the baselines, calibration and OOD fitting).",
        "",
        "Re-score the shipped model: `python -m triage evaluate --checkpoint models/triage-mnv3s.pt "
        "--manifest models/test_manifest.csv --out artifacts/eval --no-gate` reproduces the table above; "
        "without `--no-gate` the quality and OOD gate also run (declined photos count as refer-to-doctor).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", help="the training run to ship")
    p.add_argument(
        "--refresh-measured",
        action="store_true",
        help="only rewrite the model card's measured part from results/closeup.json and results/experiments.csv",
    )
    p.add_argument("--name", default="triage-mnv3s")
    p.add_argument("--models", default="models")
    p.add_argument("--command", default="python train.py -c configs/mobilenet_v3_small_224.yaml")
    args = p.parse_args(argv)
    models = Path(args.models)
    section = measured_section(Path("results/closeup.json"), Path("results/experiments.csv"))
    if args.refresh_measured:
        card_path = models / "MODEL_CARD.md"
        card_path.write_text(refresh_measured(card_path.read_text(), section))
        print(f"rewrote the measured part of {card_path}")
        return 0
    if not args.run:
        p.error("--run is required (or --refresh-measured)")
    run = Path(args.run)
    models.mkdir(exist_ok=True)
    dest = models / f"{args.name}.pt"
    # Read (and verified against its recorded sha256) once: only a checkpoint that matches it is shipped.
    meta = read_checkpoint(run / "model.pt")["meta"]
    shutil.copyfile(run / "model.pt", dest)
    sha = write_sha256(dest)
    report = json.loads((run / "metrics.json").read_text())
    cfg = json.loads(json.dumps(meta["train_config"]))
    n = write_split_manifest(cfg["data"], "test", models / "test_manifest.csv")
    if (Path(cfg["data"]) / "crops.csv").exists():
        write_split_manifest(cfg["data"], "test", models / "closeup_test_manifest.csv", closeups=True)
    card = render_card(meta, report, dest.stat().st_size / 1e6, sha, args.command)
    (models / "MODEL_CARD.md").write_text(refresh_measured(card, section))
    print(f"shipped {dest} ({sha[:12]}), test manifest {n} rows, classes {list(OUTCOMES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
