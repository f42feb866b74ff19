"""Side-by-side training experiments, one lever at a time: ``results/experiments.csv``.

    python bench/experiments.py run screen-crops-off screen-crops-on   # train (resumable), then record
    python bench/experiments.py record screen-crops-on                  # re-read a finished run folder
    python bench/experiments.py table                                   # the table of docs/EXPERIMENTS.md
    python bench/experiments.py loso                                    # held-out refer AUC, source by family
    python bench/experiments.py run --threads 1 --workers 1 NAME &      # two runs side by side on 2 cores

Every experiment is the 160 px recipe shipped second (``configs/mobilenet_v3_small.yaml``) with a few fields changed
(``EXPERIMENTS``), trained with ``train.py`` into ``runs/experiments/<name>``. A run that stopped part-way
continues from its last epoch when started again (``train.py --resume``). Each row holds the
exact command, its seed, the build it trained on (``data``: the split fingerprint's first 8 hex digits), the
wall time, the model-step milliseconds, the ranking of p(refer-to-doctor)
(``refer_auc`` and ``useful_at_95`` with group-bootstrap 95% intervals, ``triage.core.metrics``) and the numbers at
the validation-chosen safety point, on the whole-photo test split, the close-up test set (lesion-centred crops
of test photos) and, for leave-one-source-out rows, all photos of the held-out source. Rows recorded before a
column existed keep it empty.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "experiments.csv"
RUNS = Path("runs/experiments")
CONFIG = "configs/mobilenet_v3_small.yaml"

#: Screening rows share one budget: 3 epochs, no baselines.
SCREEN = {"epochs": 3, "baseline": False}
#: Full-length rows: the 160 px recipe's 8 epochs, no baselines.
FULL = {"epochs": 8, "baseline": False}
#: For rows that choose their epoch on the ranking (validation useful_at_95, AUC breaking ties). The recipe file
#: pins ``select_on: balanced_accuracy``, that model's choice, which every row above was trained with.
RANKED = {"select_on": "useful_at_95"}
#: Larger networks and longer runs: 12 and 20 epochs, chosen on the ranking like RANKED.
LADDER = {"epochs": 12, "baseline": False} | RANKED
LONG = {"epochs": 20, "baseline": False} | RANKED
#: An EMA of the weights over about the last 500 steps (1.8 epochs of 271 steps at batch 48) is what is validated
#: and shipped (``triage.training.ema``).
EMA = {"ema_decay": 0.998}
SHADES_OF_GREY = {"colour_constancy": "shades_of_grey"}
#: EfficientNet-Lite0 and Lite2 at the input sides of their ImageNet training (``triage.models.backbones.BACKBONES``).
LITE0_224 = {"arch": "efficientnet_lite0", "image_size": 224}
LITE2_260 = {"arch": "efficientnet_lite2", "image_size": 260}
#: Rows that decide the recipe run with two seeds (``--seed``: sampling, augmentation, initial head, dropout).
SEEDS = (0, 1)
# Each recipe states both levers, so that a row keeps its meaning whatever the shipped config says.
CROPS_OFF = {"lesion_crop_p": 0.0, "diagnosis_labels": "false"}
CROPS = {"lesion_crop_p": 0.5, "diagnosis_labels": "false"}
DIAGNOSES = CROPS | {"diagnosis_labels": "true"}

#: Recipes by name suffix: what each changes and how its row is described.
RECIPES: dict[str, tuple[str, dict]] = {
    "crops-off": ("crops off (the first recipe shipped)", CROPS_OFF),
    "crops-on": ("crops on", CROPS),
    "crops-on-192px": ("crops on, input 192 px", CROPS | {"image_size": 192}),
    "diagnoses-crops-on": ("crops on + diagnosis-level labels (the 160 px recipe shipped second)", DIAGNOSES),
    "efficientnet-lite0-crops-on": ("crops on, EfficientNet-Lite0 backbone", CROPS | {"arch": "efficientnet_lite0"}),
    # Colour constancy alone, on the 160 px recipe (both rows state it, whatever the config file says).
    "colour-off": ("the 160 px recipe, colour constancy off", DIAGNOSES | {"colour_constancy": "none"}),
    "colour-on": ("the 160 px recipe + Shades-of-Grey colour constancy", DIAGNOSES | SHADES_OF_GREY),
    # The backbone ladder, each at its ImageNet input side, with an EMA of the weights (warm-up + cosine is the
    # schedule of every run); MobileNetV3-Small at 224 px is the equal-budget control.
    "mnv3s-224px-ema": ("MobileNetV3-Small, 224 px, EMA", DIAGNOSES | {"image_size": 224} | EMA),
    "lite0-224px-ema": ("EfficientNet-Lite0, 224 px, EMA", DIAGNOSES | LITE0_224 | EMA),
    "lite2-260px-ema": ("EfficientNet-Lite2, 260 px, EMA", DIAGNOSES | LITE2_260 | EMA),
    # Lite0 with its stem and first three blocks kept at ImageNet weights: about half the training step (1.0 s
    # against 1.87 s at batch 32), which brings 12 epochs near the 3 h retraining budget on 2 cores.
    "lite0-frozen6-224px-ema": (
        "EfficientNet-Lite0, 224 px, EMA, stem and first 3 blocks frozen",
        DIAGNOSES | LITE0_224 | EMA | {"frozen_features": 6},
    ),
    # Candidate crops of multi-outcome photos trained on their outcome set (needs a build that cut them).
    "partial-labels-mnv3s-224px-ema": (
        "MobileNetV3-Small, 224 px, EMA + partial labels",
        DIAGNOSES | {"image_size": 224} | EMA | {"partial_labels": "true"},
    ),
    # The 224 px input read from 256 px squares instead of upsampled 176 px ones: more real detail where the
    # photos have it (needs `python -m triage.data cache --size 256` on the build first, triage.data.cache).
    "squares256-mnv3s-224px-ema": (
        "MobileNetV3-Small, 224 px from 256 px squares, EMA",
        DIAGNOSES | {"image_size": 224, "canonical_size": 256} | EMA,
    ),
    # Mixup (triage.training.mixup) on the shipped recipe: smoother boundaries between outcomes, aimed at the
    # unseen-source gap; its leave-one-source-out rows are the ones that decide.
    "mixup-mnv3s-224px-ema": (
        "MobileNetV3-Small, 224 px, EMA + mixup (alpha 0.2)",
        DIAGNOSES | {"image_size": 224} | EMA | {"mixup_alpha": 0.2},
    ),
}
#: The backbone ladder's rungs, MobileNetV3-Small (the equal-budget control) first.
LADDER_RECIPES = ["mnv3s-224px-ema", "lite0-224px-ema", "lite2-260px-ema", "lite0-frozen6-224px-ema"]
LOSO_SOURCES = ("roboflow_acne", "ascid", "fitzpatrick17k")
#: Every bundled source, for the rows of the build with MILK10k (the eighth source), where each one is held out.
ALL_SOURCES = ("ascid", "fitzpatrick17k", "ham10000", "isic9", "roboflow_acne", "dermnet_nz", "msld_v2", "milk10k")
FULL_LOSO_RECIPES = ["crops-off", "crops-on", "diagnoses-crops-on"]


def _rows(
    prefix: str, budget: dict, lever: str, recipes: list[str], sources: tuple[str, ...] = (), seeds: tuple = (0,)
) -> dict:
    """Experiments ``<prefix><recipe>`` (or ``loso-<source>-<prefix><recipe>`` for each held-out source).

    Each seed but 0 (the default) adds ``<prefix><recipe>-seed<n>``, the same recipe with ``--seed n``.
    """
    out = {}
    for recipe in recipes:
        what, change = RECIPES[recipe]
        for seed in () if sources else seeds:
            out[f"{prefix}{recipe}" + (f"-seed{seed}" if seed else "")] = {
                "lever": lever.format(what) + (f", seed {seed}" if seed else ""),
                "set": budget | change | ({"seed": seed} if seed else {}),
            }
        for src in sources:
            out[f"loso-{src}-{prefix}{recipe}"] = {
                "lever": lever.format(what),
                "set": budget | change | {"holdout_source": src},
            }
    return out


#: Heads on frozen DINOv2 features (``python -m triage.training.heads``), trained on the eight-source build's
#: feature cache (``python -m triage.training.features``): minutes each, so every source can be held out.
#: Each head's learning rate or length was chosen on validation photos of the eight-source split, by the key that
#: chooses epochs (useful at 95, then refer AUC), never on a test or held-out source: logistic regression 0.367 /
#: 0.833 at lr 0.002 and 0.397 / 0.840 at lr 0.01; the MLP 0.442 / 0.859 at 40 epochs and 0.456 / 0.853 at 80.
HEADS = {
    "logreg": ("DINOv2 ViT-S/14 frozen + logistic regression", {"lr": 0.01}),
    "mlp": ("DINOv2 ViT-S/14 frozen + MLP head", {"epochs": 80}),
    # Half the draws on lesion-centred crops, as the CNN recipe (lesion_crop_p 0.5): trained on whole photos only,
    # both heads rank close-ups far below the CNN (0.64 and 0.66 against 0.80).
    "logreg-crops": ("DINOv2 ViT-S/14 frozen + logistic regression, crops", {"lr": 0.01, "crop_share": 0.5}),
    "mlp-crops": ("DINOv2 ViT-S/14 frozen + MLP head, crops", {"epochs": 80, "crop_share": 0.5}),
}


def _head_rows(sources: tuple[str, ...] = (), seeds: tuple = (0,)) -> dict:
    """Experiments ``dinov2-<head>`` (``-seed<n>`` beyond seed 0) or ``loso-<source>-dinov2-<head>``."""
    out = {}
    for head, (what, recipe) in HEADS.items():
        for seed in () if sources else seeds:
            out[f"dinov2-{head}" + (f"-seed{seed}" if seed else "")] = {
                "lever": "8 sources, " + what + (f", seed {seed}" if seed else ""),
                "set": {"kind": head} | recipe | ({"seed": seed} if seed else {}),
                "runner": "heads",
            }
        for src in sources:
            out[f"loso-{src}-dinov2-{head}"] = {
                "lever": "8 sources, leave-one-source-out, " + what,
                "set": {"kind": head} | recipe | {"holdout_source": src},
                "runner": "heads",
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
    **_rows("ranked-", FULL | RANKED, "8 epochs, {}", ["colour-off", "colour-on"], seeds=SEEDS),
    **_rows("ladder-", LADDER, "12 epochs, {}", LADDER_RECIPES, seeds=SEEDS),
    **_rows("long-", LONG, "20 epochs, {}", ["mnv3s-224px-ema"], seeds=SEEDS),
    **_rows("long-", LONG, "20 epochs, leave-one-source-out, {}", ["mnv3s-224px-ema"], LOSO_SOURCES),
    **_rows("", LONG, "20 epochs, {}", ["partial-labels-mnv3s-224px-ema", "squares256-mnv3s-224px-ema"], seeds=SEEDS),
    **_rows("", LONG, "20 epochs, {}", ["mixup-mnv3s-224px-ema"], seeds=SEEDS),
    **_rows("", LONG, "20 epochs, leave-one-source-out, {}", ["mixup-mnv3s-224px-ema"], LOSO_SOURCES),
    # The shipped recipe on the build with MILK10k (rows above: the seven-source build); `data` names the build.
    **_rows("eight-", LONG, "8 sources, 20 epochs, {}", ["mnv3s-224px-ema"], seeds=(1,)),
    **_rows("eight-", LONG, "8 sources, 20 epochs, leave-one-source-out, {}", ["mnv3s-224px-ema"], ALL_SOURCES),
    **_head_rows(seeds=SEEDS),
    **_head_rows(ALL_SOURCES),
}

#: The ranking columns of each set (``<prefix>_refer_auc``, ``<prefix>_refer_auc_ci95``, ...); an interval is
#: written as ``[low, high]``.
RANKING = ("refer_auc", "refer_auc_ci95", "useful_at_95", "useful_at_95_ci95")
SETS = (("test", "test"), ("closeup_test", "closeup"), ("holdout", "holdout"))

COLUMNS = [
    "name",
    "lever",
    "command",
    "epochs",
    "seed",
    "data",
    "wall_seconds",
    "model_step_ms",
    *(f"{prefix}_{k}" for _, prefix in SETS for k in RANKING),
    "test_balanced_accuracy",
    "test_refer_sensitivity",
    "test_benign_usefulness",
    "test_unsafe_miss_rate",
    "test_pustule_recall",
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
    "holdout_pustule_recall",
    "holdout_closeup_benign_usefulness",
]


def command(name: str) -> list[str]:
    """The ``train.py`` (or, for a head on cached features, ``triage.training.heads``) command line of an experiment."""
    if EXPERIMENTS[name].get("runner") == "heads":
        args = [sys.executable, "-m", "triage.training.heads", "--out", str(RUNS), "--name", name]
    else:
        args = [sys.executable, "train.py", "-c", CONFIG, "--out", str(RUNS), "--name", name]
    for k, v in EXPERIMENTS[name]["set"].items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


def compute_flags(threads: int | None, workers: int | None) -> list[str]:
    """``train.py`` flags for the CPU share of a run; they change its speed, not its result, so rows omit them.

    Two runs side by side on 2 cores should each get ``threads=1, workers=1``: the defaults (2 threads plus a
    loader worker each) make them fight over the cores and both run slower than one after the other.
    """
    flags = [f"--threads={threads}"] if threads else []
    return flags + ([f"--workers={workers}"] if workers is not None else [])


def train(name: str, threads: int | None = None, workers: int | None = None) -> None:
    """Train one experiment, resuming its run folder when an earlier attempt stopped part-way."""
    run = ROOT / RUNS / name
    if (run / "metrics.json").exists():
        return
    resumable = (run / "config.yaml").exists() and EXPERIMENTS[name].get("runner") != "heads"
    args = [sys.executable, "train.py", "--resume", str(RUNS / name)] if resumable else None
    heads = EXPERIMENTS[name].get("runner") == "heads"  # a head has no data-loader workers
    subprocess.run((args or command(name)) + compute_flags(threads, None if heads else workers), cwd=ROOT, check=True)


def row(name: str, timing: bool = True) -> dict:
    """One CSV row from a finished run folder (``timing``: also time its model step, a few seconds)."""
    run = ROOT / RUNS / name
    m = json.loads((run / "metrics.json").read_text())
    model = m["model"]
    cfg = {}
    for config in (run / "config.yaml", run / "config.json"):  # a training run's, or a head's (JSON is YAML)
        if config.exists():
            cfg = yaml.safe_load(config.read_text())
    out = {
        "name": name,
        "lever": EXPERIMENTS[name]["lever"],
        "command": "python " + " ".join(command(name)[1:]),
        "epochs": len(model["history"]),
        "seed": cfg.get("seed", ""),
        "data": m.get("data_fingerprint", "")[:8],  # which build: rows before MILK10k left it empty (b8bdb959)
        "wall_seconds": m["wall_seconds"],
        "model_step_ms": model_step_ms(run / "model.pt") if timing else "",
        "holdout_source": model.get("holdout_source", ""),
    }
    for key, prefix in SETS:
        s = model.get(key)
        for metric in ("balanced_accuracy", "refer_sensitivity", "benign_usefulness", "unsafe_miss_rate"):
            out[f"{prefix}_{metric}"] = s[metric] if s else ""
        for metric in RANKING:  # empty for a run recorded before the ranking was measured
            v = s.get(metric, "") if s else ""
            out[f"{prefix}_{metric}"] = json.dumps(list(v)) if isinstance(v, list | tuple) else v
    for key, prefix in (("test", "test"), ("closeup_test", "closeup"), ("holdout", "holdout")):
        s = model.get(key)
        out[f"{prefix}_pustule_recall"] = s["per_class"]["pustule"]["recall"] if s else ""
    c = model.get("closeup_test")
    out["closeup_milia_recall"] = c["per_class"]["milia-like"]["recall"] if c else ""
    hc = model.get("holdout_closeup")
    out["holdout_closeup_benign_usefulness"] = hc["benign_usefulness"] if hc else ""
    return out


def model_step_ms(checkpoint: Path, repeats: int = 50) -> float | str:
    """Median milliseconds of the model step on 2 threads (``triage.research.step_timing``); empty without a model.

    Measured when the row is recorded, on whatever else the machine is doing: compare rows recorded alike.
    """
    if not checkpoint.exists():
        return ""
    from triage.inference.engine import Triage
    from triage.research.step_timing import benchmark_input, time_model_step

    engine = Triage.load(checkpoint, threads=2)
    return round(statistics.median(time_model_step(engine, benchmark_input(engine), repeats)), 2)


def record(names: list[str]) -> dict[str, dict]:
    """Insert or replace the rows of ``names`` in ``results/experiments.csv`` (experiment order); returns them.

    The file is rewritten with :data:`COLUMNS`: a column added since a row was recorded stays empty there.
    """
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
    return {n: rows[n] for n in names}


def table() -> str:
    """``results/experiments.csv`` as Markdown: the ranked rows first, then the rows recorded before the ranking.

    A row counts as ranked once it holds a test refer AUC; the earlier rows (their run folders were not kept, so
    they cannot be scored again) get a table of their own without the ranking columns.
    """
    with open(RESULTS, newline="") as fh:
        rows = list(csv.DictReader(fh))
    ranked = [r for r in rows if r.get("test_refer_auc")]
    earlier = [r for r in rows if not r.get("test_refer_auc")]
    lines = [
        "| experiment (`run <name>`) | epochs | seed | test: AUC / useful at 95 | "
        "test: refer sens. / benign useful. / bal. acc. | "
        "close-up: AUC / useful at 95 | close-up: refer sens. / benign useful. / milia R / pustule R | "
        "held-out source: AUC / useful at 95 / refer sens. / benign useful. | model step | wall |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ranked:
        held = (
            f"{r['holdout_source']}: {ranking_cell(r, 'holdout')} / {_held_out_point(r)}"
            if r["holdout_source"]
            else "-"
        )
        step = f"{r['model_step_ms']} ms" if r.get("model_step_ms") else "-"
        lines.append(
            f"| `{r['name']}`: {r['lever']} | {r['epochs']} | {seed_of(r)} | {ranking_cell(r, 'test')} | "
            f"{_test_point(r)} | {ranking_cell(r, 'closeup')} | {_closeup_point(r)} | {held} | {step} | {_wall(r)} |"
        )
    if earlier:
        lines += [
            "",
            "Recorded before the ranking was measured (thresholded numbers only; their models were not kept):",
            "",
            "| experiment (`run <name>`) | epochs | seed | test: refer sens. / benign useful. / bal. acc. | "
            "close-up: refer sens. / benign useful. / milia R / pustule R | "
            "held-out source: refer sens. / benign useful. | wall |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in earlier:
            held = f"{r['holdout_source']}: {_held_out_point(r)}" if r["holdout_source"] else "-"
            lines.append(
                f"| `{r['name']}`: {r['lever']} | {r['epochs']} | {seed_of(r)} | {_test_point(r)} | "
                f"{_closeup_point(r)} | {held} | {_wall(r)} |"
            )
    return "\n".join(lines)


#: The leave-one-source-out families compared source by source (``loso-<source>-<suffix>``), in table order.
LOSO_FAMILIES = (
    ("CNN, 7 sources", "long-mnv3s-224px-ema"),
    ("CNN, 8 sources", "eight-mnv3s-224px-ema"),
    ("DINOv2 + logistic regression", "dinov2-logreg"),
    ("DINOv2 + MLP", "dinov2-mlp"),
    ("DINOv2 + logistic regression, crops", "dinov2-logreg-crops"),
    ("DINOv2 + MLP, crops", "dinov2-mlp-crops"),
)


def loso_table() -> str:
    """Held-out refer AUC [95% CI] of every family for every source, then each family's mean and worst source.

    The mean and the worst are over the sources that family has been run on (their count is shown), so read
    them side by side only where the counts agree.
    """
    with open(RESULTS, newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    lines = [
        "| held-out source | " + " | ".join(f for f, _ in LOSO_FAMILIES) + " |",
        "|---|" + "---|" * len(LOSO_FAMILIES),
    ]
    aucs: dict[str, list[float]] = {f: [] for f, _ in LOSO_FAMILIES}
    for src in ALL_SOURCES:
        cells = []
        for family, suffix in LOSO_FAMILIES:
            r = rows.get(f"loso-{src}-{suffix}")
            if r and r.get("holdout_refer_auc"):
                aucs[family].append(float(r["holdout_refer_auc"]))
                ci = json.loads(r["holdout_refer_auc_ci95"]) if r.get("holdout_refer_auc_ci95") else None
                cells.append(r["holdout_refer_auc"] + (f" [{ci[0]}, {ci[1]}]" if ci else ""))
            else:
                cells.append("not run")
        lines.append(f"| {src} | " + " | ".join(cells) + " |")
    for label, fn in (("mean", statistics.fmean), ("worst", min)):
        cells = [f"{fn(v):.3f} ({len(v)} sources)" if v else "-" for v in aucs.values()]
        lines.append(f"| **{label}** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _test_point(r: dict) -> str:
    return f"{r['test_refer_sensitivity']} / **{r['test_benign_usefulness']}** / {r['test_balanced_accuracy']}"


def _closeup_point(r: dict) -> str:
    return (
        f"{r['closeup_refer_sensitivity']} / **{r['closeup_benign_usefulness']}** / {r['closeup_milia_recall']} / "
        f"{r['closeup_pustule_recall']}"
    )


def _held_out_point(r: dict) -> str:
    return f"{r['holdout_refer_sensitivity']} / {r['holdout_benign_usefulness']}"


def _wall(r: dict) -> str:
    return f"{float(r['wall_seconds']) / 60:.0f} min"


def seed_of(r: dict) -> str:
    """A row's seed: as recorded, else its command's ``--seed``, else 0.

    Rows recorded before the seed column existed ran without ``--seed``, so with ``TrainConfig``'s default seed,
    0, which no recipe file has ever changed.
    """
    if r.get("seed"):
        return str(r["seed"])
    words = (r.get("command") or "").split()
    return words[words.index("--seed") + 1] if "--seed" in words[:-1] else "0"


def ranking_cell(r: dict, prefix: str) -> str:
    """``AUC (CI) / useful at 95 (CI)`` of one set of a CSV row; ``-`` where the row predates the ranking."""
    parts = []
    for metric in ("refer_auc", "useful_at_95"):
        value, ci = r.get(f"{prefix}_{metric}") or "", r.get(f"{prefix}_{metric}_ci95") or ""
        if not value:
            return "-"
        lo_hi = json.loads(ci) if ci else None
        parts.append(f"{value} ({lo_hi[0]}–{lo_hi[1]})" if lo_hi else value)
    return " / ".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: an action, experiment names, and for ``run`` the CPU share (names before or after it)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=["run", "record", "table", "loso"])
    p.add_argument("names", nargs="*", help=f"experiments: {', '.join(EXPERIMENTS)}")
    p.add_argument("--threads", type=int, help="run: torch threads per run (1 when two runs share 2 cores)")
    p.add_argument("--workers", type=int, help="run: data-loader workers per run (1 when two runs share 2 cores)")
    args = p.parse_intermixed_args(argv)
    unknown = set(args.names) - set(EXPERIMENTS)
    if unknown:
        p.error(f"unknown experiment(s): {sorted(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    args = parse_args(argv)
    if args.action in ("table", "loso"):
        print(table() if args.action == "table" else loso_table())
        return 0
    for name in args.names:
        if args.action == "run":
            train(name, args.threads, args.workers)
        print(json.dumps(record([name])[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
