"""Research helpers behind the notebooks: the data card as pictures and error analysis of a checkpoint.

The notebooks in ``notebooks/`` only call these functions, so the logic is
tested and reviewed as code. Figures are plain :class:`matplotlib.figure.Figure`
objects (no pyplot state): show them in a notebook, or ``fig.savefig(...)``.

Also a small command line: ``python -m triage.research.analysis split-manifest --data
data/processed --split test --out test_manifest.csv`` writes one split of a
build as a manifest for ``python -m triage evaluate``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from triage.core import metrics as M
from triage.core.outcomes import CANT_ASSESS, OUTCOMES, REFER
from triage.core.preprocess import CANONICAL_SIZE, canonical_square, crop_bottom
from triage.data.sources import write_split_manifest

REPO = Path(__file__).resolve().parents[2]

#: Environment variables that point the notebooks at their inputs, and their defaults (relative to the repository).
NOTEBOOK_SETTINGS: dict[str, tuple[str, str]] = {
    "data": ("TRIAGE_NB_DATA", "data/processed"),
    "checkpoint": ("TRIAGE_NB_CHECKPOINT", "models/triage-mnv3s.pt"),
    "manifest": ("TRIAGE_NB_MANIFEST", "models/test_manifest.csv"),
    "verified": ("TRIAGE_NB_VERIFIED", "results/verified_closeups.csv"),
}

FITZPATRICK_TYPES = (-1, 1, 2, 3, 4, 5, 6)


def notebook_paths() -> dict[str, Path]:
    """The notebooks' inputs: the ``$TRIAGE_NB_*`` variables of :data:`NOTEBOOK_SETTINGS`.

    Unset variables fall back to the real build, the shipped model and the committed verdicts; relative
    paths are taken from the repository root, so a notebook works from any folder.
    """
    out = {}
    for key, (var, default) in NOTEBOOK_SETTINGS.items():
        p = Path(os.environ.get(var) or default)
        out[key] = p if p.is_absolute() else REPO / p
    return out


# -- a build ---------------------------------------------------------------------------------------


@dataclass
class Build:
    """A data build as written by ``python -m triage.data build``.

    Attributes:
        folder: the build folder.
        rows: ``manifest.csv`` rows (strings, as read).
        card: ``data_card.json`` (empty when absent).
        cache: the memory-mapped canonical squares, or ``None`` (a ``--no-cache`` build).
    """

    folder: Path
    rows: list[dict[str, str]]
    card: dict = field(default_factory=dict)
    cache: np.ndarray | None = None


def load_build(folder: str | Path) -> Build:
    """Read a build folder's manifest, data card and (if present) image cache."""
    folder = Path(folder)
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    card_path = folder / "data_card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    cache_path = folder / f"cache_{CANONICAL_SIZE}.npy"
    cache = np.load(cache_path, mmap_mode="r") if cache_path.is_file() else None
    return Build(folder, rows, card, cache)


def square_of(build: Build, row: dict[str, str]) -> np.ndarray:
    """The canonical square of one manifest row: from the cache, else decoded from its file."""
    if build.cache is not None and row.get("cache_row", "") != "":
        return np.asarray(build.cache[int(row["cache_row"])])
    from triage.inference.decode import decode_path

    return canonical_square(decode_path(row["path"]).image)


@dataclass(frozen=True)
class Table:
    """A count table: ``counts[i, j]`` rows with ``row_labels[i]`` and ``col_labels[j]``."""

    row_labels: list[str]
    col_labels: list[str]
    counts: np.ndarray


def crosstab(rows: list[dict], row_key: str, col_key: str, row_order=None, col_order=None) -> Table:
    """Count rows by two columns; orders default to the values seen (sorted), given orders come first."""
    pairs = Counter((str(r[row_key]), str(r[col_key])) for r in rows)

    def order(given, seen: set[str]) -> list[str]:
        given = [str(v) for v in (given or [])]
        return given + sorted(seen - set(given))

    rl = order(row_order, {a for a, _ in pairs})
    cl = order(col_order, {b for _, b in pairs})
    counts = np.array([[pairs[(a, b)] for b in cl] for a in rl], dtype=int).reshape(len(rl), len(cl))
    return Table(rl, cl, counts)


def outcome_source_table(rows: list[dict]) -> Table:
    """Images per outcome (rows, in model order) and source (columns)."""
    return crosstab(rows, "label", "source", row_order=OUTCOMES)


def fitzpatrick_table(rows: list[dict]) -> Table:
    """Images per split (rows) and Fitzpatrick skin type (columns; ``-1`` = unknown)."""
    return crosstab(rows, "split", "fitzpatrick", row_order=("train", "val", "test"), col_order=FITZPATRICK_TYPES)


def plot_table(
    table: Table, title: str = "", normalise_rows: bool = False, xlabel: str = "", ylabel: str = ""
) -> Figure:
    """A count table as a heatmap with the counts written in (colour: share of the row if ``normalise_rows``)."""
    c = table.counts
    shade = c / np.maximum(c.sum(1, keepdims=True), 1) if normalise_rows else c / max(c.max(), 1)
    fig = Figure(figsize=(1.2 + 0.9 * max(len(table.col_labels), 2), 1.0 + 0.5 * max(len(table.row_labels), 2)))
    ax = fig.subplots()
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(c.shape[0]):
        for j in range(c.shape[1]):
            ax.text(
                j,
                i,
                str(c[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="black" if shade[i, j] < 0.6 else "white",
            )
    ax.set_xticks(range(len(table.col_labels)), table.col_labels, rotation=30, ha="right")
    ax.set_yticks(range(len(table.row_labels)), table.row_labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_fitzpatrick(table: Table, title: str = "Fitzpatrick skin type per split") -> Figure:
    """Grouped bars: images per skin type, one bar per split (``-1`` shown as "unknown")."""
    fig = Figure(figsize=(7, 3.2))
    ax = fig.subplots()
    width = 0.8 / max(len(table.row_labels), 1)
    x = np.arange(len(table.col_labels))
    for i, split in enumerate(table.row_labels):
        ax.bar(x + (i - (len(table.row_labels) - 1) / 2) * width, table.counts[i], width, label=split)
    ax.set_xticks(x, ["unknown" if v == "-1" else f"type {v}" for v in table.col_labels])
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def image_grid(
    images: list[np.ndarray], titles: list[str], ncols: int = 6, size: float = 1.7, suptitle: str = ""
) -> Figure:
    """Show images in a grid with a small title each."""
    n = max(len(images), 1)
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    # Constrained layout leaves room for the suptitle, which tight_layout would overlap.
    fig = Figure(figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, img, t in zip(axes, images, titles, strict=False):
        ax.imshow(img)
        ax.set_title(t, fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def outcome_rows_grid(rows: list[dict], image_of, title_of, per_outcome: int, seed: int, suptitle: str) -> Figure:
    """A grid with one row per outcome of ``per_outcome`` random ``rows`` of that outcome (blank when short)."""
    rng = np.random.default_rng(seed)
    images, titles = [], []
    for outcome in OUTCOMES:
        pool = [r for r in rows if r["label"] == outcome]
        pick = rng.choice(len(pool), min(per_outcome, len(pool)), replace=False) if pool else []
        chosen = [pool[i] for i in pick]
        images += [image_of(r) for r in chosen] + [np.full((8, 8, 3), 255, np.uint8)] * (per_outcome - len(chosen))
        titles += [f"{outcome}\n{title_of(r)}" for r in chosen] + [""] * (per_outcome - len(chosen))
    return image_grid(images, titles, ncols=per_outcome, suptitle=suptitle)


def example_grid(build: Build, per_outcome: int = 6, split: str | None = None, seed: int = 0) -> Figure:
    """Random examples of every outcome, one row each (titled with source and skin type)."""
    rows = [r for r in build.rows if split is None or r["split"] == split]
    return outcome_rows_grid(
        rows,
        lambda r: square_of(build, r),
        lambda r: f"{r['source']}, type {_fitz(r['fitzpatrick'])}",
        per_outcome,
        seed,
        "Examples per outcome" + (f" ({split})" if split else ""),
    )


def crop_grid(build: Build, per_outcome: int = 8, split: str | None = "train", seed: int = 0) -> Figure:
    """A random contact sheet of lesion-centred crops, one row per outcome (titled with source, kind, scale).

    Used to check by eye how often a crop really holds a spot (see ``triage/data/lesions.py``).
    """
    from triage.data.cache import open_crop_cache
    from triage.data.crops import read_crop_rows

    squares = open_crop_cache(build.folder)
    return outcome_rows_grid(
        [c for c in read_crop_rows(build.folder) if split is None or c["split"] == split],
        lambda c: np.asarray(squares[int(c["crop_row"])]),
        lambda c: f"{c['source']}, {c['kind']} x{c['scale']}",
        per_outcome,
        seed,
        "Lesion-centred crops" + (f" ({split})" if split else ""),
    )


def duplicate_groups(rows: list[dict]) -> list[list[dict]]:
    """Groups of the build with more than one image (copies of one photo), largest first."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by[r["group"]].append(r)
    return sorted((g for g in by.values() if len(g) > 1), key=lambda g: (-len(g), g[0]["group"]))


def duplicate_grid(build: Build, groups: list[list[dict]], max_groups: int = 6, max_members: int = 5) -> Figure:
    """One row per duplicate group: its images, titled with source, outcome and split."""
    images, titles = [], []
    max_members = max([min(len(g), max_members) for g in groups[:max_groups]], default=1)
    for g in groups[:max_groups]:
        for k in range(max_members):
            if k < len(g):
                images.append(square_of(build, g[k]))
                titles.append(f"{g[k]['group']}: {g[k]['source']}\n{g[k]['label']}, {g[k]['split']}")
            else:
                images.append(np.full((8, 8, 3), 255, np.uint8))
                titles.append("")
    shown = min(len(groups), max_groups)
    return image_grid(images, titles, ncols=max_members, suptitle=f"Duplicate groups ({shown} of {len(groups)} shown)")


def _fitz(v) -> str:
    return "?" if str(v) in ("", "-1") else str(v)


# -- error analysis --------------------------------------------------------------------------------


@dataclass
class Scored:
    """A checkpoint's answers on a manifest, one entry per readable photo.

    Attributes:
        records: the manifest records (:class:`triage.data.sources.Record`).
        y: true outcome indices.
        probs: the model's calibrated probabilities, ``(n, 4)``, also for photos the gate declined.
        decision: the full decision (an outcome or ``cant-assess``).
        reason_codes: why, per photo.
        unreadable: manifest rows that could not be decoded (left out of everything else).
    """

    records: list
    y: np.ndarray
    probs: np.ndarray
    decision: list[str]
    reason_codes: list[list[str]]
    unreadable: int = 0

    @property
    def source(self) -> np.ndarray:
        """Source per photo."""
        return np.array([r.source for r in self.records])

    @property
    def fitzpatrick(self) -> np.ndarray:
        """Fitzpatrick type per photo, as strings (``-1`` = unknown)."""
        return np.array([str(r.fitzpatrick) for r in self.records])

    @property
    def pred(self) -> np.ndarray:
        """Decision as outcome indices, a declined photo counting as refer-to-doctor (as ``evaluate`` counts it)."""
        return np.array([OUTCOMES.index(REFER if d == CANT_ASSESS else d) for d in self.decision], dtype=int)

    @property
    def declined(self) -> np.ndarray:
        """Whether the gate declined each photo."""
        return np.array([d == CANT_ASSESS for d in self.decision], dtype=bool)


def score_manifest(triage, manifest: str | Path, gate: bool = True, limit: int | None = None) -> Scored:
    """Run a loaded engine (:class:`triage.inference.engine.Triage`) over a manifest CSV.

    Keeps the model's probabilities for every readable photo, also where the
    gate declined it, so that the model's own errors and its calibration can be
    studied apart from the gate.

    Args:
        triage: a loaded engine.
        manifest: ``path,label[,source,group,fitzpatrick]`` CSV.
        gate: apply the quality / OOD gate to the decision.
        limit: score only the first ``limit`` rows (a quick look at a large manifest).
    """
    from triage.data.sources import read_manifest
    from triage.inference.decode import UploadError, decode_path

    records = read_manifest(manifest)[:limit]
    kept, probs, decision, codes, unreadable = [], [], [], [], 0
    for r in records:
        try:
            image = decode_path(r.path).image
        except (UploadError, OSError):
            unreadable += 1
            continue
        res = triage.predict_image(image, r.crop_bottom, gate=gate)
        if res.probabilities is None:  # declined before the model ran: ask the model anyway
            p, _ = triage.model_outputs(triage.input_tensor(crop_bottom(image, r.crop_bottom)))
            p = p[0]
        else:
            p = [res.probabilities[o] for o in OUTCOMES]
        kept.append(r)
        probs.append(p)
        decision.append(res.outcome)
        codes.append(res.reason_codes)
    y = np.array([OUTCOMES.index(r.outcome) for r in kept], dtype=int)
    return Scored(kept, y, np.array(probs, dtype=float).reshape(-1, len(OUTCOMES)), decision, codes, unreadable)


def decision_table(scored: Scored) -> Table:
    """Truth (rows) x full decision (columns, ``cant-assess`` last)."""
    rows = [{"truth": OUTCOMES[t], "decision": d} for t, d in zip(scored.y, scored.decision, strict=True)]
    return crosstab(rows, "truth", "decision", row_order=OUTCOMES, col_order=(*OUTCOMES, CANT_ASSESS))


def confident_mistakes(scored: Scored, k: int = 12) -> list[int]:
    """Indices of the model's most confident mistakes (top class wrong), most confident first."""
    top = scored.probs.argmax(1) if len(scored.y) else np.zeros(0, int)
    wrong = np.flatnonzero(top != scored.y)
    order = np.argsort(-scored.probs[wrong].max(1), kind="stable")
    return [int(i) for i in wrong[order][:k]]


def mistake_grid(scored: Scored, idx: list[int], ncols: int = 6) -> Figure:
    """The photos at ``idx`` (canonical squares), titled truth -> model's top class, probability, source, type."""
    from triage.inference.decode import decode_path

    images, titles = [], []
    for i in idx:
        r = scored.records[i]
        images.append(canonical_square(crop_bottom(decode_path(r.path).image, r.crop_bottom)))
        top = int(scored.probs[i].argmax())
        titles.append(
            f"{OUTCOMES[scored.y[i]]} -> {OUTCOMES[top]} {scored.probs[i, top]:.2f}\n"
            f"{r.source}, type {_fitz(r.fitzpatrick)}, {scored.decision[i]}"
        )
    return image_grid(images, titles, ncols=ncols, size=2.0, suptitle="Most confident mistakes (truth -> model)")


def group_metrics(scored: Scored, by: str) -> list[dict]:
    """Metrics of the full decision per ``by`` = ``"source"`` or ``"fitzpatrick"`` (like ``evaluate``'s)."""
    values = scored.source if by == "source" else scored.fitzpatrick
    pred, declined = scored.pred, scored.declined
    out = []
    for v in sorted(set(values.tolist()), key=lambda s: (len(s), s)):
        sel = values == v
        s = M.summary(scored.y[sel], pred[sel], scored.probs[sel])
        out.append(
            {
                by: v,
                "n": s["n"],
                "balanced_accuracy": s["balanced_accuracy"],
                "refer_sensitivity": s["refer_sensitivity"],
                "unsafe_miss_rate": s["unsafe_miss_rate"],
                "decline_rate": round(float(declined[sel].mean()), 4),
                "ece": s["ece"],
            }
        )
    return out


def plot_group_metrics(
    table: list[dict], by: str, keys: tuple[str, ...] = ("balanced_accuracy", "refer_sensitivity", "decline_rate")
) -> Figure:
    """Grouped horizontal bars of ``keys`` per group, with each group's ``n`` in its label."""
    labels = [f"{_fitz(r[by]) if by == 'fitzpatrick' else r[by]} (n={r['n']})" for r in table]
    fig = Figure(figsize=(8, 0.9 + 0.45 * len(table) * max(len(keys), 1) / 2))
    ax = fig.subplots()
    y = np.arange(len(table))
    h = 0.8 / max(len(keys), 1)
    for k, key in enumerate(keys):
        vals = [np.nan_to_num(float(r[key]), nan=0.0) for r in table]
        ax.barh(y + (k - (len(keys) - 1) / 2) * h, vals, h, label=key.replace("_", " "))
    ax.set_yticks(y, labels)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_title(f"Per {'skin type' if by == 'fitzpatrick' else by} (declined photos count as refer)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> dict:
    """Top-label reliability: mean confidence, share correct and count per equal-width bin (empty bins left out)."""
    probs, y = np.asarray(probs), np.asarray(y)
    conf = probs.max(1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(1) == y) if len(probs) else np.zeros(0, bool)
    edges = np.linspace(0, 1, bins + 1)
    out = {"confidence": [], "accuracy": [], "count": [], "ece": M.ece(probs, y, bins) if len(probs) else float("nan")}
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            out["confidence"].append(float(conf[sel].mean()))
            out["accuracy"].append(float(correct[sel].mean()))
            out["count"].append(int(sel.sum()))
    return out


def plot_reliability(probs: np.ndarray, y: np.ndarray, bins: int = 10, title: str = "Calibration") -> Figure:
    """Reliability curve (marker size ~ photos in the bin) with the diagonal and the ECE."""
    r = reliability(probs, y, bins)
    fig = Figure(figsize=(4.2, 4.2))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "--", color="grey")
    sizes = 10 + 200 * np.asarray(r["count"]) / max(sum(r["count"]), 1)
    ax.plot(r["confidence"], r["accuracy"], "-", color="C0")
    ax.scatter(r["confidence"], r["accuracy"], s=sizes, color="C0", zorder=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("top probability")
    ax.set_ylabel("share correct")
    ax.set_title(f"{title} (ECE {r['ece']:.3f}, n={len(y)})")
    fig.tight_layout()
    return fig


def markdown_table(rows: list[dict], empty: str = "(no rows)") -> str:
    """Rows of equal keys as a Markdown table (for ``IPython.display.Markdown``); ``empty`` when there are none."""
    if not rows:
        return empty
    keys = list(rows[0])
    lines = ["| " + " | ".join(k.replace("_", " ") for k in keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def read_rows(csv_path: str | Path) -> list[dict[str, str]]:
    """A CSV's rows as read (strings, column order kept in each dict)."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# -- split manifests -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Command line: ``split-manifest``."""
    p = argparse.ArgumentParser(prog="python -m triage.research.analysis", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sm = sub.add_parser("split-manifest", help="write one split of a build as a manifest CSV")
    sm.add_argument("--data", default="data/processed", help="build folder")
    sm.add_argument("--split", choices=("train", "val", "test"), default="test")
    sm.add_argument("--out", required=True)
    args = p.parse_args(argv)
    n = write_split_manifest(args.data, args.split, args.out)
    print(f"{n} {args.split} rows -> {args.out}")
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main())
