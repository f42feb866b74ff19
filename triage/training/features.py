"""The DINOv2 feature cache: frozen-backbone features of every photo and crop of a build, per view.

    python -m triage.training.features --data data/processed            # every view, resumable
    python -m triage.training.features --data data/processed --views photos/eval,crops/eval

A head on frozen features trains in minutes, which is what makes a leave-one-source-out run for every source
affordable on 2 cores; the backbone's forward pass (about 0.1-0.2 s an image on one core) is paid once, here.

A view is a set (``photos``: the build's photo cache; ``crops``: its lesion-centred crops) and a way to show each
square to the network: ``eval`` (the serving transform), ``mirror`` (the same, flipped left to right) or
``augN`` (the training augmentation drawn with seed N: tight close-up crops, colour casts, blur, as the CNN is
trained). Each view is one float16 array ``<set>_<view>.npy`` of shape ``[rows, 2 + 16, 384]`` (class token,
mean patch token, 4 x 4 pooled patch tokens; :func:`triage.models.dinov2.pooled_tokens`) under
``<build>/features/dinov2/``, filled in chunks; ``meta.json`` records after each chunk how many rows are done, the
seconds spent and the rows skipped with their reason, so a stopped run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from triage.core.transforms import eval_batch
from triage.data.cache import open_crop_cache, photo_cache_path
from triage.data.crops import read_crop_rows
from triage.models.dinov2 import DEFAULT_WEIGHTS, INPUT_SIZE, MEAN, POOL_GRID, STD, WIDTH, dinov2_features, load_dinov2

#: The views in the order they are worth computing: what evaluation needs first, then training variety.
DEFAULT_VIEWS = ("photos/eval", "crops/eval", "photos/mirror", "photos/aug0", "crops/mirror", "photos/aug1")
TOKENS = 2 + POOL_GRID * POOL_GRID
CHUNK = 64
BATCH = 16


def feature_dir(data_dir: Path) -> Path:
    """Where a build's DINOv2 features live."""
    return Path(data_dir) / "features" / "dinov2"


def view_path(data_dir: Path, view: str) -> Path:
    """The array of one view (``photos/eval`` -> ``photos_eval.npy``)."""
    return feature_dir(data_dir) / (view.replace("/", "_") + ".npy")


def view_transform(view: str) -> Callable[[np.ndarray], np.ndarray]:
    """The function that turns one cached square into the 224 px RGB image the network sees in ``view``."""
    kind = view.split("/", 1)[1]
    if kind == "eval":
        return lambda square: square
    if kind == "mirror":
        return lambda square: np.ascontiguousarray(square[:, ::-1])
    if kind.startswith("aug"):
        from triage.training.augment import train_transform

        # Crops already frame one spot: their training views do not zoom in further (as in training).
        tight = 0.0 if view.startswith("crops/") else 0.35
        tf = train_transform(INPUT_SIZE, seed=int(kind[3:]), tight_crop_p=tight)
        return lambda square: tf(image=np.asarray(square))["image"]
    raise ValueError(f"unknown view {view!r}: eval, mirror or augN")


def squares_of(data_dir: Path, view: str) -> np.ndarray:
    """The memory-mapped squares a view reads."""
    if view.startswith("photos/"):
        return np.load(photo_cache_path(data_dir), mmap_mode="r")
    crops = open_crop_cache(data_dir)
    if crops is None:
        raise FileNotFoundError(f"{data_dir} has no crop cache: run `python -m triage.data crops` first")
    return crops


def row_order(data_dir: Path, view: str, n: int) -> np.ndarray:
    """The order a view's rows are computed in: for crops, validation and test crops first.

    The close-up sets that score a head (validation and test crops) are then ready hours before the training
    crops. ``done`` in ``meta.json`` counts positions in this order, which depends on the build alone.
    """
    if not view.startswith("crops/"):
        return np.arange(n)
    rows = read_crop_rows(data_dir, candidates=True)
    held = np.array([r["split"] != "train" for r in sorted(rows, key=lambda r: int(r["crop_row"]))], dtype=bool)
    if len(held) != n:
        raise RuntimeError(f"crops.csv lists {len(held)} crops, the crop cache holds {n}")
    return np.concatenate([np.flatnonzero(held), np.flatnonzero(~held)])


def done_rows(data_dir: Path, view: str) -> np.ndarray:
    """The rows of a view already computed (all of them once it is finished; none before it starts)."""
    record = _read_meta(data_dir)["views"].get(view)
    if record is None:
        return np.zeros(0, dtype=np.int64)
    return row_order(data_dir, view, record["rows"])[: record["done"]]


def _read_meta(data_dir: Path) -> dict:
    path = feature_dir(data_dir) / "meta.json"
    return json.loads(path.read_text()) if path.exists() else {"views": {}}


def _write_meta(data_dir: Path, meta: dict) -> None:
    path = feature_dir(data_dir) / "meta.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
    tmp.replace(path)  # atomic: a run stopped mid-write leaves the previous record


def _images(squares: np.ndarray, rows: np.ndarray, transform, skipped: Counter) -> tuple[list[int], list[np.ndarray]]:
    """The transformed images of ``rows``; a blank or failing square is skipped and counted with its reason."""
    kept, images = [], []
    for i in rows.tolist():
        square = np.asarray(squares[i])
        if not square.any():
            skipped["blank square in the cache"] += 1
            continue
        try:
            images.append(transform(square))
        except Exception as e:  # noqa: BLE001  (one odd square must not stop hours of work; it is counted)
            skipped[f"transform failed: {type(e).__name__}"] += 1
            continue
        kept.append(i)
    return kept, images


def extract_view(data_dir: Path, view: str, model: torch.nn.Module, precision: str = "bf16") -> dict:
    """Fill one view's array, continuing after the rows already done; returns its record in ``meta.json``."""
    data_dir = Path(data_dir)
    squares, transform = squares_of(data_dir, view), view_transform(view)
    meta = _read_meta(data_dir)
    record = meta["views"].setdefault(view, {"rows": len(squares), "done": 0, "seconds": 0.0, "skipped": {}})
    if record["rows"] != len(squares):
        raise RuntimeError(f"{view}: the build changed ({len(squares)} rows, cached {record['rows']}); delete it")
    path = view_path(data_dir, view)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "r+" if path.exists() else "w+"
    out = np.lib.format.open_memmap(path, mode=mode, dtype=np.float16, shape=(len(squares), TOKENS, WIDTH))
    skipped, order = Counter(record["skipped"]), row_order(data_dir, view, len(squares))
    bar = tqdm(total=len(squares), initial=record["done"], desc=view, unit="img", smoothing=0.05)
    while record["done"] < len(squares):
        start = time.perf_counter()
        rows = order[record["done"] : record["done"] + CHUNK]
        kept, images = _images(squares, rows, transform, skipped)
        for b in range(0, len(kept), BATCH):
            x = eval_batch(images[b : b + BATCH], INPUT_SIZE, MEAN, STD).contiguous()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                f = dinov2_features(model, x)
            feats = torch.cat([f["cls"][:, None], f["mean"][:, None], f["grid"]], dim=1).float().numpy()
            out[kept[b : b + BATCH]] = feats.astype(np.float16)
        out.flush()
        step = min(CHUNK, len(squares) - record["done"])
        record.update(done=record["done"] + step, seconds=record["seconds"] + time.perf_counter() - start)
        record["skipped"] = dict(skipped)
        _write_meta(data_dir, meta)
        bar.update(step)
    bar.close()
    return record


def extract(data_dir: Path, views: tuple[str, ...] = DEFAULT_VIEWS, weights: Path = DEFAULT_WEIGHTS,
            precision: str = "bf16") -> dict:  # fmt: skip
    """Fill every view in order (each resumable) and record the backbone file and precision they came from."""
    model = load_dinov2(weights)
    meta = _read_meta(data_dir)
    if meta.get("precision", precision) != precision:
        raise RuntimeError(f"cached features were computed in {meta['precision']}, not {precision}")
    meta.update(precision=precision, weights=str(weights))
    feature_dir(data_dir).mkdir(parents=True, exist_ok=True)
    _write_meta(data_dir, meta)
    for view in views:
        extract_view(data_dir, view, model, precision)
    return _read_meta(data_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m triage.training.features", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/processed"))
    parser.add_argument("--views", default=",".join(DEFAULT_VIEWS))
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--precision", choices=("bf16", "fp32"), default="bf16",
        help="bf16 autocast is about 3x faster on CPUs with bf16 units; features agree with fp32 to cosine 0.9999",
    )  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = extract(args.data, tuple(v for v in args.views.split(",") if v), args.weights, args.precision)
    for view, r in meta["views"].items():
        print(f"{view}: {r['done']}/{r['rows']} rows, {r['seconds'] / 60:.1f} min, skipped {r['skipped'] or 0}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
