"""Canonical squares of another side for an existing build: ``cache_<size>.npy`` and ``crops_<size>.npy``.

The build writes its squares at :data:`triage.core.preprocess.CANONICAL_SIZE` (176 px). A model whose input is
larger than that trains on upsampled squares; this module decodes the same photos and the same crop boxes
again at a larger side, so that a run can choose its squares (``TrainConfig.canonical_size``) and nothing else
changes: rows, splits, groups, crops and the fingerprint stay those of the build. The checkpoint records the
side, and serving cuts its squares at that side (``triage.inference.engine``), so training and serving agree.
It reads the build's photos and crops with their owners' readers (``sources.read_parents``,
``crops.read_crop_rows``), and opens a build's crop squares of a chosen side for training (:func:`open_crop_cache`).

    python -m triage.data cache --size 256 [--out data/processed]
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from triage.core.pixels import upright_rgb
from triage.core.preprocess import CANONICAL_SIZE, canonical_square, crop_bottom
from triage.data.crops import crop_cache_path, read_crop_rows
from triage.data.sources import read_parents


def photo_cache_path(data_dir: Path, size: int = CANONICAL_SIZE) -> Path:
    """Where a build keeps its canonical squares of side ``size``."""
    return Path(data_dir) / f"cache_{size}.npy"


def missing_cache_message(path: Path, size: int) -> str:
    """What to run when a run asks for squares the build does not hold yet."""
    return f"{path} is missing: write the {size} px squares first with `python -m triage.data cache --size {size}`"


def open_crop_cache(data_dir: Path, size: int = CANONICAL_SIZE) -> np.ndarray | None:
    """The crop cache of side ``size``, memory-mapped (``None`` for a build without crops).

    Raises:
        FileNotFoundError: the build cut crops, but holds no squares of that side yet (``python -m triage.data cache``).
    """
    path = crop_cache_path(data_dir, size)
    if path.exists():
        return np.load(path, mmap_mode="r")
    if size != CANONICAL_SIZE and read_crop_rows(data_dir):
        raise FileNotFoundError(missing_cache_message(path, size))
    return None


def squares_of(path: str, crop_share: float, size: int, boxes: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
    """One photo's canonical square (no boxes) or the squares of its crop boxes, decoded as the build does.

    Raises:
        OSError: the file cannot be read any more (the build kept it, so the data changed underneath).
    """
    with Image.open(path) as im:
        image = crop_bottom(upright_rgb(im), crop_share)
    if not boxes:
        return [canonical_square(image, size)]
    return [canonical_square(image.crop(box), size) for box in boxes]


def _job(args: tuple) -> list[np.ndarray]:
    return squares_of(*args)


def _write(path: Path, jobs: list[tuple], n: int, size: int, workers: int, desc: str) -> None:
    """Run the jobs in order and write their squares, row after row, into a new ``.npy`` at ``path``."""
    tmp = path.with_suffix(".partial.npy")  # a stopped write never leaves a cache that looks finished
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    row = 0
    if workers <= 1:
        results = map(_job, jobs)
        pool = None
    else:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(_job, jobs, chunksize=32)
    try:
        for squares in tqdm(results, total=len(jobs), desc=desc, unit="img"):
            for sq in squares:
                arr[row] = sq
                row += 1
    finally:
        if pool is not None:
            pool.shutdown()
    if row != n:
        raise RuntimeError(f"{desc}: wrote {row} squares, expected {n}")
    arr.flush()
    del arr
    tmp.replace(path)


def write_caches(data_dir: Path, size: int, workers: int = 2) -> dict:
    """Write ``cache_<size>.npy`` (every photo) and, where the build cut crops, ``crops_<size>.npy``.

    Rows follow the build's: ``cache_row`` of ``manifest.csv`` and ``crop_row`` of ``crops.csv``.

    Returns:
        counts and wall time, also recorded under ``caches`` in the build's ``data_card.json``.
    """
    t0 = time.time()
    data_dir = Path(data_dir)
    parents = sorted(read_parents(data_dir), key=lambda p: p["cache_row"])
    if [p["cache_row"] for p in parents] != list(range(len(parents))):
        raise ValueError(f"{data_dir}/manifest.csv: cache rows are not 0..n-1")
    jobs = [(p["path"], p["crop_bottom"], size, []) for p in parents]
    _write(photo_cache_path(data_dir, size), jobs, len(parents), size, workers, f"photos at {size} px")
    out = {"size": size, "photos": len(parents), "crops": 0}

    crops = read_crop_rows(data_dir, candidates=True)
    if crops:
        if [int(r["crop_row"]) for r in crops] != list(range(len(crops))):
            raise ValueError(f"{data_dir}/crops.csv: crop rows are not 0..n-1")
        # Each photo is decoded once for all its boxes (the build writes a photo's crops one after another).
        by_photo: dict[int, list[tuple[int, ...]]] = {}
        for r in crops:
            by_photo.setdefault(int(r["cache_row"]), []).append(tuple(int(v) for v in r["box"].split(",")))
        runs = 1 + sum(a["cache_row"] != b["cache_row"] for a, b in zip(crops, crops[1:], strict=False))
        if runs != len(by_photo):  # the squares are written photo by photo, so they must follow crop_row
            raise ValueError(f"{data_dir}/crops.csv: a photo's crops are not consecutive")
        jobs = [(parents[i]["path"], parents[i]["crop_bottom"], size, boxes) for i, boxes in by_photo.items()]
        _write(crop_cache_path(data_dir, size), jobs, len(crops), size, workers, f"crops at {size} px")
        out["crops"] = len(crops)
    out["wall_seconds"] = round(time.time() - t0, 1)
    card_path = data_dir / "data_card.json"
    if card_path.exists():
        card = json.loads(card_path.read_text())
        card.setdefault("caches", {})[str(size)] = out
        card_path.write_text(json.dumps(card, indent=2))
    return out
