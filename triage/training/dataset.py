"""The built data as arrays: splits read from the build folder, and the cached-image dataset."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from triage.core.outcomes import OUTCOMES
from triage.core.preprocess import CANONICAL_SIZE, colour_constancy
from triage.data.cache import missing_cache_message, photo_cache_path
from triage.data.crops import read_crop_rows
from triage.data.diagnoses import diagnosis_key


@dataclass
class Split:
    """One split's rows, as arrays (``rows`` index the photo cache, or the crop cache for a close-up set)."""

    rows: np.ndarray
    y: np.ndarray
    source: np.ndarray
    fitz: np.ndarray
    group: np.ndarray
    parent: np.ndarray | None = None  # close-up sets: the photo-cache row each crop was cut from
    diagnosis: np.ndarray | None = None  # triage.data.diagnoses.diagnosis_key of each row
    candidates: np.ndarray | None = None  # close-up sets: a candidate crop's outcome set (";"-joined), else ""

    def subset(self, keep: np.ndarray) -> Split:
        """The rows where ``keep`` is true."""
        optional = {f: getattr(self, f) for f in ("parent", "diagnosis", "candidates")}
        return Split(
            *(getattr(self, f)[keep] for f in ("rows", "y", "source", "fitz", "group")),
            **{f: None if v is None else v[keep] for f, v in optional.items()},
        )


def _split_from_rows(rows: list[dict], row_key: str) -> Split:
    def col(key, conv=str):
        return np.asarray([conv(r[key]) for r in rows])

    if not rows:
        empty = np.zeros(0, dtype=int)
        none = np.zeros(0, dtype=str)
        return Split(empty, empty, none, empty, none, parent=empty, diagnosis=none, candidates=none)
    return Split(
        col(row_key, int),
        np.asarray([OUTCOMES.index(r["label"]) for r in rows]),
        col("source"),
        col("fitzpatrick", int),
        col("group"),
        parent=col("cache_row", int),
        diagnosis=np.asarray([diagnosis_key(r["source"], r["source_labels"]) for r in rows]),
        candidates=np.asarray([r.get("candidates", "") for r in rows]),
    )


def load_splits(
    data_dir: Path, holdout_source: str = "", candidates: bool = False, canonical_size: int = CANONICAL_SIZE
) -> tuple[np.ndarray, dict[str, Split], str]:
    """Load the image cache (memory-mapped), the splits and the data fingerprint.

    Besides ``train``, ``val`` and ``test``, the dict holds the close-up sets ``train_crops``, ``val_crops``
    and ``test_crops`` (empty when the build cut no lesion-centred crops; their ``rows`` index the crop cache,
    :func:`triage.data.cache.open_crop_cache`), and with ``holdout_source`` also ``holdout`` (every photo of that
    source, whatever its split) and ``holdout_crops``, while the other sets lose that source and any copy of its
    photos filed under another source (the same duplicate group). ``canonical_size``
    picks the squares' side (:mod:`triage.data.cache`).
    """
    path = photo_cache_path(data_dir, canonical_size)
    if not path.exists() and canonical_size != CANONICAL_SIZE:
        raise FileNotFoundError(missing_cache_message(path, canonical_size))
    cache = np.load(path, mmap_mode="r")
    with open(data_dir / "manifest.csv", newline="") as fh:
        photos = list(csv.DictReader(fh))
    crop_rows = read_crop_rows(data_dir, candidates)
    splits: dict = {}
    # Copies of a held-out photo filed under another source (the build groups them) leave the other sets too.
    held_groups = {r["group"] for r in photos if r["source"] == holdout_source} if holdout_source else set()
    for name, rows, key in (("", photos, "cache_row"), ("_crops", crop_rows, "crop_row")):
        if holdout_source:
            held_out = [r for r in rows if r["source"] == holdout_source and not r.get("candidates")]
            splits[f"holdout{name}"] = _split_from_rows(held_out, key)
            rows = [r for r in rows if r["group"] not in held_groups]
        for sp in ("train", "val", "test"):
            splits[f"{sp}{name}"] = _split_from_rows([r for r in rows if r["split"] == sp], key)
    fp = (data_dir / "fingerprint.txt").read_text().strip()
    return cache, splits, fp


class CachedImages(Dataset):
    """Canonical squares from the cache, augmented for training.

    With ``crops`` (a crop cache, the rows of each photo's lesion-centred crops and a share ``crop_p``),
    a draw of a photo that has crops is replaced, ``crop_p`` of the time, by one of its crops picked at
    random, augmented by ``crop_transform`` (which must not zoom in further: the crop already frames the spot).
    ``labels`` replaces the outcome targets (``split.y``), e.g. by diagnosis classes. ``colour``: the colour
    constancy applied to each augmented image (:func:`triage.core.preprocess.colour_constancy`), as serving does.
    With ``set_targets`` (``n_classes`` and, per candidate crop row, its class mask,
    :func:`triage.training.partial.candidate_masks`) every target is a ``(n_classes,)`` set: one class for a
    photo or an ordinary crop, the candidate set for a candidate crop (``training.partial.CandidateSetLoss``).
    """

    def __init__(
        self,
        cache: np.ndarray,
        split: Split,
        transform,
        mean,
        std,
        crops: tuple[np.ndarray, list[np.ndarray], float, object] | None = None,
        labels: np.ndarray | None = None,
        colour: str = "none",
        set_targets: tuple[int, dict[int, np.ndarray]] | None = None,
    ) -> None:
        self.cache, self.split, self.transform, self.colour = cache, split, transform, colour
        self.set_targets = set_targets
        self.labels = split.y if labels is None else labels
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.crops = crops

    def __len__(self) -> int:
        return len(self.split.rows)

    def __getitem__(self, i: int):
        image, tf, crop_row = None, self.transform, None
        if self.crops is not None:
            crop_cache, crop_rows_of, crop_p, crop_tf = self.crops
            options = crop_rows_of[i]
            # np.random is seeded per loader worker (worker_init_fn), so this is reproducible.
            if len(options) and np.random.random() < crop_p:
                crop_row = int(options[np.random.randint(len(options))])
                image, tf = np.asarray(crop_cache[crop_row]), crop_tf
        if image is None:
            image = np.asarray(self.cache[self.split.rows[i]])
        # After augmentation: the camera-like casts it draws are what colour constancy must undo.
        img = colour_constancy(tf(image=image)["image"], self.colour)
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
        return (x - self.mean) / self.std, self._target(i, crop_row)

    def _target(self, i: int, crop_row: int | None) -> int | torch.Tensor:
        """Row ``i``'s class index, or with ``set_targets`` its class set (a candidate crop's own set)."""
        if self.set_targets is None:
            return int(self.labels[i])
        n_classes, masks = self.set_targets
        if crop_row is not None and crop_row in masks:
            return torch.from_numpy(masks[crop_row].astype(np.float32))
        return F.one_hot(torch.tensor(int(self.labels[i])), n_classes).float()


def images_for(set_name: str, cache: np.ndarray, crop_cache: np.ndarray | None) -> np.ndarray | None:
    """The array a set's ``rows`` index: the crop cache for close-up sets (``*_crops``), else the photo cache."""
    return crop_cache if set_name.endswith("_crops") else cache


def crops_by_photo(split: Split, crops: Split) -> list[np.ndarray]:
    """For each photo of ``split``, the crop-cache rows of its crops (empty where it has none)."""
    by_parent: dict[int, list[int]] = {}
    for row, parent in zip(crops.rows.tolist(), crops.parent.tolist(), strict=True):
        by_parent.setdefault(parent, []).append(row)
    return [np.asarray(by_parent.get(r, []), dtype=int) for r in split.rows.tolist()]
