"""Dataset registry and readers.

Each bundled source declares its licence, citation, expected image count,
photo modality and any per-source clean-up (e.g. cropping a watermark). Two
generic readers serve researchers' own data: a manifest CSV and an
ImageFolder tree. Readers return :class:`Record` rows; nothing here decodes
pixels.

The data root is configurable (``--data-root`` or ``TRIAGE_DATA``); nothing
in the package assumes where the bundle lives.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from triage.core.outcomes import OUTCOMES
from triage.data.crops import read_crop_rows
from triage.data.labels import map_labels

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".heic", ".heif")


@dataclass
class Record:
    """One image with its labels, before any pixels are read."""

    path: Path
    source: str
    labels: list[str]
    outcome: str | None
    exclude_reason: str = ""
    fitzpatrick: int = -1
    link_id: str = ""  # an id that links copies across sources (e.g. the ISIC id)
    group: str = ""  # a caller-given group (manifest), merged with duplicate groups
    crop_bottom: float = 0.0  # share of the image height to drop (watermarks)
    box: tuple[int, int, int, int] | None = None  # a close-up: (left, top, right, bottom) after crop_bottom


@dataclass(frozen=True)
class Source:
    """A registered data source."""

    name: str
    modality: str  # "clinical" or "dermoscopic"
    expected_count: int
    licence: str
    citation: str
    reader: Callable[[Source, Path], list[Record]] = field(repr=False)
    crop_bottom: float = 0.0
    note: str = ""


class CountMismatch(RuntimeError):
    """A source folder does not hold the number of images the registry expects."""


def default_data_root() -> Path | None:
    """Return the data root from ``TRIAGE_DATA``, or ``None`` when unset."""
    value = os.environ.get("TRIAGE_DATA")
    return Path(value) if value else None


def read_labels_csv(source: Source, root: Path) -> list[Record]:
    """Read a bundle folder (``images/`` + ``labels.csv``) and map its labels.

    Args:
        source: the registered source; its ``name`` is the folder name.
        root: the data root holding one folder per source.
    """
    folder = root / source.name
    records = []
    with open(folder / "labels.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            labels = [x for x in row["labels"].split(";") if x]
            outcome, reason = map_labels(source.name, labels)
            fitz = int(row.get("fitzpatrick") or -1)
            records.append(
                Record(
                    path=folder / row["file"],
                    source=source.name,
                    labels=labels,
                    outcome=outcome,
                    exclude_reason=reason,
                    fitzpatrick=fitz if 1 <= fitz <= 6 else -1,
                    link_id=row.get("isic_id") or "",
                    crop_bottom=source.crop_bottom,
                )
            )
    return records


def read_manifest(csv_path: str | Path, source_name: str = "manifest") -> list[Record]:
    """Read a manifest CSV: ``path,label`` required, ``source,group,fitzpatrick,box`` optional.

    ``label`` must be one of the four outcomes. Relative paths are resolved
    against the CSV's folder. ``box`` (``left,top,right,bottom`` in pixels, after the source's watermark
    crop) makes the row a close-up: the part of the photo inside the box is what gets judged.
    """
    csv_path = Path(csv_path)
    records = []
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"path", "label"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{csv_path}: manifest lacks column(s) {sorted(missing)}")
        for i, row in enumerate(reader, start=2):
            label = (row["label"] or "").strip()  # a short row has None here
            if label not in OUTCOMES:
                raise ValueError(f"{csv_path}:{i}: label {label!r} is not one of {OUTCOMES}")
            path = Path(row["path"])
            if not path.is_absolute():
                path = csv_path.parent / path
            fitz = int(row.get("fitzpatrick") or -1)
            source = row.get("source") or source_name
            registered = REGISTRY.get(source)
            records.append(
                Record(
                    path=path,
                    source=source,
                    labels=[label],
                    outcome=label,
                    fitzpatrick=fitz if 1 <= fitz <= 6 else -1,
                    group=row.get("group") or "",
                    # Rows of a registered source get that source's clean-up (e.g. watermark crop).
                    crop_bottom=registered.crop_bottom if registered else 0.0,
                    box=parse_box(row.get("box") or ""),
                )
            )
    return records


def parse_box(text: str) -> tuple[int, int, int, int] | None:
    """``"l,t,r,b"`` as four ints (``None`` for an empty string).

    Raises:
        ValueError: for anything but four integers with left < right and top < bottom.
    """
    if not text.strip():
        return None
    parts = [int(v) for v in text.split(",")]
    if len(parts) != 4 or not (parts[0] < parts[2] and parts[1] < parts[3]):
        raise ValueError(f"box {text!r} is not left,top,right,bottom")
    return parts[0], parts[1], parts[2], parts[3]


def write_manifest(records: list[Record], csv_path: str | Path) -> None:
    """Write records with a target as a manifest CSV (absolute paths)."""
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "source", "group", "fitzpatrick"])
        for r in records:
            if r.outcome is not None:
                writer.writerow([str(Path(r.path).resolve()), r.outcome, r.source, r.group, r.fitzpatrick])


def read_image_folder(root: str | Path, source_name: str = "imagefolder") -> list[Record]:
    """Read an ImageFolder tree: one sub-folder per outcome, images inside (any depth)."""
    root = Path(root)
    unknown = [p.name for p in root.iterdir() if p.is_dir() and p.name not in OUTCOMES]
    if unknown:
        raise ValueError(f"{root}: folders {sorted(unknown)} are not outcomes {OUTCOMES}")
    records = []
    for outcome in OUTCOMES:
        folder = root / outcome
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                records.append(Record(path=path, source=source_name, labels=[outcome], outcome=outcome))
    return records


_RESEARCH = "research / non-commercial use"

REGISTRY: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            "ascid",
            "clinical",
            1926,
            "no licence stated; web-scraped: " + _RESEARCH,
            "Augmented Skin Conditions Image Dataset (Kaggle), via GitHub bluepeach1121/skin-condition-ML",
            read_labels_csv,
            note="itself augmented: flipped/rotated copies inside the folder",
        ),
        Source(
            "fitzpatrick17k",
            "clinical",
            3649,
            "labels CC BY-NC-SA 3.0; images: " + _RESEARCH,
            "Groh et al., Evaluating deep neural networks trained on clinical images in dermatology "
            "with the Fitzpatrick 17k dataset, CVPR-W 2021",
            read_labels_csv,
        ),
        Source(
            "ham10000",
            "dermoscopic",
            3377,
            "CC BY-NC-SA 4.0",
            "Tschandl et al., The HAM10000 dataset, Sci. Data 5, 180161 (2018)",
            read_labels_csv,
            note="several photos of one lesion under different ISIC ids",
        ),
        Source(
            "isic9",
            "dermoscopic",
            1095,
            "ISIC archive, per-image CC licences",
            "Skin cancer ISIC 9-class set (Kaggle), ISIC archive images",
            read_labels_csv,
        ),
        Source(
            "roboflow_acne",
            "clinical",
            2551,
            "stated CC BY 4.0, re-uses ACNE04 and DermNet NZ: " + _RESEARCH,
            "Roboflow Acne Dataset (University of Sri Jayewardenepura)",
            read_labels_csv,
            note="many 2x2 mosaics; multi-label; Milium label noisy",
        ),
        Source(
            "dermnet_nz",
            "clinical",
            7740,
            "DermNet NZ: educational / " + _RESEARCH,
            "DermNet NZ atlas (dermnetnz.org), via GitHub MinhKemm/DermNet_Dataset",
            read_labels_csv,
            crop_bottom=0.22,
            note="watermark bottom-left: bottom 22% cropped",
        ),
        Source(
            "msld_v2",
            "clinical",
            127,
            "CC (per original badge): " + _RESEARCH,
            "Mpox Skin Lesion Dataset v2.0 (Ali et al.)",
            read_labels_csv,
            note="the only healthy-skin photos",
        ),
        Source(
            "milk10k",
            "clinical",
            3085,
            "CC BY-NC 4.0 (attribution: MILK study team): non-commercial use",
            "ISIC MILK10k training set (2025), clinical close-ups, via GitHub pbanavara/milk10k",
            read_labels_csv,
            note="one lesion per photo, 96% biopsy-proven; basal cell carcinomas capped at 900; "
            "marker-pen outlines on some cancers",
        ),
    ]
}


def load_source(name: str, root: str | Path, check_count: bool = True) -> list[Record]:
    """Read one registered source from the data root and check its image count.

    Raises:
        KeyError: unknown source name.
        FileNotFoundError: the source folder is missing.
        CountMismatch: the folder holds a different number of rows than registered.
    """
    source = REGISTRY[name]
    root = Path(root)
    if not (root / name / "labels.csv").is_file():
        raise FileNotFoundError(f"{root / name}/labels.csv not found (is --data-root / TRIAGE_DATA right?)")
    records = source.reader(source, root)
    if check_count and len(records) != source.expected_count:
        raise CountMismatch(f"{name}: expected {source.expected_count} images, found {len(records)}")
    return records


def write_split_manifest(folder: str | Path, split: str, out_csv: str | Path, closeups: bool = False) -> int:
    """Write one split of a build as a manifest CSV (paths relative to the CSV) for ``python -m triage evaluate``.

    With ``closeups``, the rows are the split's lesion-centred crops (``crops.csv`` of the build), each
    with its ``box``: the close-up test set.

    Returns:
        rows written.
    """
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / "manifest.csv", newline="", encoding="utf-8") as fh:
        photos = list(csv.DictReader(fh))
    rows = [dict(r, box="") for r in photos if r["split"] == split]
    if closeups:
        path_of = {r["cache_row"]: r["path"] for r in photos}
        rows = [dict(r, path=path_of[r["cache_row"]]) for r in read_crop_rows(folder) if r["split"] == split]
    columns = ["path", "label", "source", "group", "fitzpatrick"] + (["box"] if closeups else [])
    with open(out_csv, "w", newline="") as oh:
        w = csv.writer(oh)
        w.writerow(columns)
        for r in rows:
            rel = os.path.relpath(r["path"], out_csv.parent.resolve())
            w.writerow([rel] + [r[c] for c in columns[1:]])
    return len(rows)


def read_parents(out: Path) -> list[dict]:
    """The build's photos as :func:`triage.data.crops.build_crops` wants them (from ``manifest.csv``)."""
    with open(out / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [
        {
            "path": r["path"],
            "crop_bottom": REGISTRY[r["source"]].crop_bottom if r["source"] in REGISTRY else 0.0,
            "cache_row": int(r["cache_row"]),
            "split": r["split"],
            "label": r["label"],
            "source": r["source"],
            "source_labels": [x for x in r["source_labels"].split(";") if x],
            "group": r["group"],
            "fitzpatrick": int(r["fitzpatrick"]),
        }
        for r in rows
    ]
