"""Side-by-side training experiments, one lever at a time: ``results/experiments.csv``.

    python bench/experiments.py run screen-crops-off screen-crops-on   # train (resumable), then record
    python bench/experiments.py record screen-crops-on                  # re-read a finished run folder
    python bench/experiments.py table                                   # the README table (Markdown)

Every experiment is the shipped recipe (``configs/mobilenet_v3_small.yaml``) with a few fields changed
(``EXPERIMENTS``), trained with ``train.py`` into ``runs/experiments/<name>``. A run interrupted by the end of a
working session continues from its last epoch when started again (``train.py --resume``). Each row holds the
exact command, the wall time and the numbers at the validation-chosen safety point on the whole-photo test
split, the close-up test set (lesion-centred crops of test photos) and, for leave-one-source-out rows, all
photos of the held-out source.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "experiments.csv"
RUNS = Path("runs/experiments")
CONFIG = "configs/mobilenet_v3_small.yaml"

#: Screening rows share one budget: 3 epochs, no baselines.
SCREEN = {"epochs": 3, "baseline": False}
#: Full-length rows: the shipped recipe's 8 epochs, no baselines (the winner's shipped run adds them).
FULL = {"epochs": 8, "baseline": False}
# Each recipe states both levers, so that a row keeps its meaning whatever the shipped config says.
CROPS_OFF = {"lesion_crop_p": 0.0, "diagnosis_labels": "false"}
CROPS = {"lesion_crop_p": 0.5, "diagnosis_labels": "false"}
DIAGNOSES = CROPS | {"diagnosis_labels": "true"}

#: Recipes by name suffix: what each changes and how its row is described.
RECIPES: dict[str, tuple[str, dict]] = {
    "crops-off": ("crops off (the recipe shipped before)", CROPS_OFF),
    "crops-on": ("crops on", CROPS),
    "crops-on-192px": ("crops on, input 192 px", CROPS | {"image_size": 192}),
    "diagnoses-crops-on": ("crops on + diagnosis-level labels (the shipped recipe)", DIAGNOSES),
    "efficientnet-lite0-crops-on": ("crops on, EfficientNet-Lite0 backbone", CROPS | {"arch": "efficientnet_lite0"}),
}
LOSO_SOURCES = ("roboflow_acne", "ascid", "fitzpatrick17k")
FULL_LOSO_RECIPES = ["crops-off", "crops-on", "diagnoses-crops-on"]


def _rows(prefix: str, budget: dict, lever: str, recipes: list[str], sources: tuple[str, ...] = ()) -> dict:
    """Experiments ``<prefix><recipe>`` (or ``loso-<source>-<prefix><recipe>`` for each held-out source)."""
    out = {}
    for recipe in recipes:
        what, change = RECIPES[recipe]
        if not sources:
            out[f"{prefix}{recipe}"] = {"lever": lever.format(what), "set": budget | change}
        for src in sources:
            out[f"loso-{src}-{prefix}{recipe}"] = {
                "lever": lever.format(what),
                "set": budget | change | {"holdout_source": src},
            }
    return out


EXPERIMENTS: dict[str, dict] = {
    "screen-crops-off": {"lever": "lesion-centred crops: off (reference)", "set": SCREEN | CROPS_OFF},
    "screen-crops-on": {"lever": "lesion-centred crops: on (p = 0.5)", "set": SCREEN | CROPS},
    **_rows("screen-", SCREEN, "{}", ["crops-on-192px", "diagnoses-crops-on", "efficientnet-lite0-crops-on"]),
    **_rows("full-", FULL, "8 epochs, {}", ["crops-off", "crops-on", "diagnoses-crops-on"]),
    **_rows("", SCREEN, "leave-one-source-out, {}", ["crops-on"], LOSO_SOURCES),
    **_rows("", SCREEN, "leave-one-source-out, {}", ["crops-off"], LOSO_SOURCES),
    **_rows("full-", FULL, "8 epochs, leave-one-source-out, {}", FULL_LOSO_RECIPES, LOSO_SOURCES),
}

COLUMNS = [
    "name",
    "lever",
    "command",
    "epochs",
    "wall_seconds",
    "test_balanced_accuracy",
    "test_refer_sensitivity",
    "test_benign_usefulness",
    "test_unsafe_miss_rate",
    "closeup_balanced_accuracy",
    "closeup_refer_sensitivity",
    "closeup_benign_usefulness",
    "closeup_unsafe_miss_rate",
    "closeup_milia_recall",
    "closeup_pustule_recall",
    "holdout_source",
    "holdout_balanced_accuracy",
    "holdout_refer_sensitivity",
    "holdout_benign_usefulness",
    "holdout_unsafe_miss_rate",
    "holdout_closeup_benign_usefulness",
]


def command(name: str) -> list[str]:
    """The ``train.py`` command line of an experiment."""
    args = [sys.executable, "train.py", "-c", CONFIG, "--out", str(RUNS), "--name", name]
    for k, v in EXPERIMENTS[name]["set"].items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


def train(name: str) -> None:
    """Train one experiment, resuming its run folder when an earlier attempt stopped part-way."""
    run = ROOT / RUNS / name
    if (run / "metrics.json").exists():
        return
    args = [sys.executable, "train.py", "--resume", str(RUNS / name)] if (run / "config.yaml").exists() else None
    subprocess.run(args or command(name), cwd=ROOT, check=True)


def row(name: str) -> dict:
    """One CSV row from a finished run folder."""
    m = json.loads((ROOT / RUNS / name / "metrics.json").read_text())
    model = m["model"]
    out = {
        "name": name,
        "lever": EXPERIMENTS[name]["lever"],
        "command": "python " + " ".join(command(name)[1:]),
        "epochs": len(model["history"]),
        "wall_seconds": m["wall_seconds"],
        "holdout_source": model.get("holdout_source", ""),
    }
    for key, prefix in (("test", "test"), ("closeup_test", "closeup"), ("holdout", "holdout")):
        s = model.get(key)
        for metric in ("balanced_accuracy", "refer_sensitivity", "benign_usefulness", "unsafe_miss_rate"):
            out[f"{prefix}_{metric}"] = s[metric] if s else ""
    c = model.get("closeup_test")
    out["closeup_milia_recall"] = c["per_class"]["milia-like"]["recall"] if c else ""
    out["closeup_pustule_recall"] = c["per_class"]["pustule"]["recall"] if c else ""
    hc = model.get("holdout_closeup")
    out["holdout_closeup_benign_usefulness"] = hc["benign_usefulness"] if hc else ""
    return out


def record(names: list[str]) -> None:
    """Insert or replace the rows of ``names`` in ``results/experiments.csv`` (experiment order)."""
    rows: dict[str, dict] = {}
    if RESULTS.exists():
        with open(RESULTS, newline="") as fh:
            rows = {r["name"]: r for r in csv.DictReader(fh)}
    for n in names:
        rows[n] = row(n)
    order = [n for n in EXPERIMENTS if n in rows] + [n for n in rows if n not in EXPERIMENTS]
    RESULTS.parent.mkdir(exist_ok=True)
    with open(RESULTS, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows[n] for n in order)


def table() -> str:
    """``results/experiments.csv`` as a Markdown table, safety and usefulness side by side."""
    with open(RESULTS, newline="") as fh:
        rows = list(csv.DictReader(fh))
    lines = [
        "| experiment | epochs | test: refer sens. / benign useful. / bal. acc. | close-up: refer sens. / benign "
        "useful. / milia R / pustule R | held-out source: refer sens. / benign useful. | wall |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        held = (
            f"{r['holdout_source']}: {r['holdout_refer_sensitivity']} / {r['holdout_benign_usefulness']}"
            if r["holdout_source"]
            else "-"
        )
        lines.append(
            f"| {r['lever']} | {r['epochs']} | {r['test_refer_sensitivity']} / **{r['test_benign_usefulness']}** / "
            f"{r['test_balanced_accuracy']} | {r['closeup_refer_sensitivity']} / **{r['closeup_benign_usefulness']}** "
            f"/ {r['closeup_milia_recall']} / {r['closeup_pustule_recall']} | {held} | "
            f"{float(r['wall_seconds']) / 60:.0f} min |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=["run", "record", "table"])
    p.add_argument("names", nargs="*", help=f"experiments: {', '.join(EXPERIMENTS)}")
    args = p.parse_args(argv)
    unknown = set(args.names) - set(EXPERIMENTS)
    if unknown:
        p.error(f"unknown experiment(s): {sorted(unknown)}")
    if args.action == "table":
        print(table())
        return 0
    for name in args.names:
        if args.action == "run":
            train(name)
        record([name])
        print(json.dumps(row(name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
