"""Generated skin-like photos and a tiny dataset, for tests, notebooks and the bring-your-own-data example.

Nothing here is used by serving or training. :func:`synthetic_photo` makes one
distinct "photo" (a smooth random texture with a few blurred spots), so that
the near-duplicate and mosaic detectors see every image as different.
:func:`write_tiny_dataset` writes a small ImageFolder tree plus a manifest CSV
over the same files, with a colour cast per outcome so that a model can learn
a little in a couple of batches, and a few flipped copies so that the build
has duplicate groups to find. ``scripts/tiny_dataset.py`` is its command line.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from triage.core.outcomes import OUTCOMES

#: A per-channel colour cast per outcome: something a small model can pick up in two epochs, mild enough that
#: most photos still pass the quality gate's skin-colour check.
OUTCOME_CAST: dict[str, tuple[float, float, float]] = {
    OUTCOMES[0]: (1.06, 1.06, 1.04),  # milia-like: paler
    OUTCOMES[1]: (1.06, 0.93, 0.90),  # pustule: redder
    OUTCOMES[2]: (0.95, 0.99, 1.02),  # other: cooler
    OUTCOMES[3]: (0.78, 0.68, 0.62),  # refer-to-doctor: darker
}

#: Source names of the tiny dataset (two, so per-source views have something to compare).
TINY_SOURCES = ("clinic_a", "clinic_b")

#: Fitzpatrick types cycled through the tiny dataset; -1 is "unknown" (written as an empty cell).
TINY_FITZPATRICK = (1, 2, 3, 4, 5, 6, -1)


def synthetic_photo(
    rng: np.random.Generator, size: tuple[int, int] | None = None, min_side: int = 160, max_side: int = 300
) -> Image.Image:
    """Make one distinct skin-like "photo": a smooth noise texture plus a few blurred ellipses.

    Args:
        rng: seeded generator; the image is fully determined by its state.
        size: ``(width, height)``; random in ``[min_side, max_side]`` when ``None``.

    Returns:
        an RGB PIL image.
    """
    if size is None:
        size = (int(rng.integers(min_side, max_side + 1)), int(rng.integers(min_side, max_side + 1)))
    w, h = size
    tone = np.array([rng.uniform(150, 230), rng.uniform(100, 185), rng.uniform(80, 165)], dtype=np.float32)
    # Smooth noise: coarse shading and finer mottling (shared by the channels, like lighting and
    # pores), plus a faint coarse colour cast per channel.
    lum = _smooth_noise(rng, (w, h), int(rng.integers(5, 9)), 30.0)
    lum += _smooth_noise(rng, (w, h), int(rng.integers(12, 20)), 14.0)
    arr = tone[None, None, :] + lum[:, :, None]
    for c in range(3):
        arr[:, :, c] += _smooth_noise(rng, (w, h), 4, 8.0)
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="RGB")
    # A few soft-edged spots of varied colour and size.
    for _ in range(int(rng.integers(3, 7))):
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
        rx, ry = rng.uniform(0.03, 0.14) * w, rng.uniform(0.03, 0.14) * h
        colour = tuple(int(v) for v in rng.integers(30, 240, size=3))
        mask = Image.new("L", (w, h), 0)
        ImageDraw.Draw(mask).ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=int(rng.integers(150, 256)))
        mask = mask.filter(ImageFilter.GaussianBlur(rng.uniform(2.0, 5.0)))
        image = Image.composite(Image.new("RGB", (w, h), colour), image, mask)
    return image


def _smooth_noise(rng: np.random.Generator, size: tuple[int, int], cells: int, amp: float) -> np.ndarray:
    """A ``(h, w)`` float field of Gaussian noise on a ``cells`` x ``cells`` grid, bicubic-upsampled."""
    small = rng.normal(0.0, 1.0, size=(cells, cells)).astype(np.float32)
    return amp * np.asarray(Image.fromarray(small, mode="F").resize(size, Image.Resampling.BICUBIC))


def cast_and_grain(photo: Image.Image, seed: int, cast: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Image.Image:
    """Apply a per-channel colour cast and fine grain to ``photo``.

    The grain matters: without it the smooth textures are too soft for the
    sharpness check, and evaluation would decline every photo.
    """
    arr = np.asarray(photo, dtype=np.float32) * np.asarray(cast, dtype=np.float32)
    arr += np.random.default_rng(seed).normal(0.0, 6.0, (photo.height, photo.width, 1))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="RGB")


@dataclass(frozen=True)
class TinyDataset:
    """Where :func:`write_tiny_dataset` put things.

    Attributes:
        root: the output folder.
        image_folder: the ImageFolder tree (``<outcome>/<file>``), for ``--image-folder``.
        manifest: ``manifest.csv`` over the same files with source, group and skin type, for ``--manifest``.
        n_images: files written (photos plus duplicate copies).
        n_duplicates: flipped copies of earlier photos among them.
    """

    root: Path
    image_folder: Path
    manifest: Path
    n_images: int
    n_duplicates: int


def write_tiny_dataset(
    out: str | Path, per_outcome: int = 12, duplicates: int = 2, seed: int = 0, sides: tuple[int, int] = (112, 176)
) -> TinyDataset:
    """Write a small generated dataset: an ImageFolder tree and a manifest CSV over the same files.

    Photos alternate between PNG and JPEG and between the two sources of
    :data:`TINY_SOURCES`; skin types cycle through :data:`TINY_FITZPATRICK`.
    The first ``duplicates`` photos of every outcome also get a mirrored copy
    (a second file), which the data build must put in one group with the original.

    Args:
        out: output folder (created; existing files of the same names are overwritten).
        per_outcome: distinct photos per outcome (12 gives every outcome in every split).
        duplicates: mirrored copies per outcome.
        seed: base seed; the same seed writes the same bytes.
        sides: smallest and largest image side in pixels.

    Returns:
        the paths written, as a :class:`TinyDataset`.
    """
    root = Path(out)
    folder = root / "imagefolder"
    rows: list[dict[str, str]] = []
    n_dup = 0
    for k, outcome in enumerate(OUTCOMES):
        (folder / outcome).mkdir(parents=True, exist_ok=True)
        for j in range(per_outcome):
            i = k * per_outcome + j
            rng = np.random.default_rng(seed * 100_003 + i)
            size = (int(rng.integers(sides[0], sides[1] + 1)), int(rng.integers(sides[0], sides[1] + 1)))
            image = cast_and_grain(synthetic_photo(rng, size), seed * 100_003 + i, OUTCOME_CAST[outcome])
            meta = {"source": TINY_SOURCES[(j // 2) % 2], "fitzpatrick": TINY_FITZPATRICK[i % 7]}
            rows.append(_save(image, folder / outcome / f"{outcome}-{j:03d}", i % 2 == 0, outcome, meta, root))
            if j < duplicates:
                # A mirrored copy: a different file with the same content, as real collections have.
                copy = ImageOps.mirror(image)
                rows.append(_save(copy, folder / outcome / f"{outcome}-{j:03d}-mirror", True, outcome, meta, root))
                n_dup += 1
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "source", "group", "fitzpatrick"])
        w.writeheader()
        w.writerows(rows)
    return TinyDataset(root, folder, manifest, len(rows), n_dup)


def _save(image: Image.Image, stem: Path, png: bool, outcome: str, meta: dict, root: Path) -> dict[str, str]:
    path = stem.with_suffix(".png" if png else ".jpg")
    image.save(path, **({} if png else {"quality": 92}))
    fitz = int(meta["fitzpatrick"])
    return {
        "path": path.relative_to(root).as_posix(),  # relative: the manifest reader resolves it against the CSV
        "label": outcome,
        "source": meta["source"],
        "group": "",  # left to the build's duplicate finder (which must find the mirrored copies)
        "fitzpatrick": str(fitz) if fitz > 0 else "",
    }


def write_tiny_checkpoint(
    path: str | Path,
    arch: str = "mobilenet_v3_small",
    image_size: int = 64,
    temperature: float = 1.7,
    seed: int = 0,
    diagnosis_outcomes: list[int] | None = None,
    data_fingerprint: str = "0" * 64,
) -> Path:
    """Save a random-weight but complete checkpoint (temperature, thresholds, OOD state) and its ``.sha256``.

    With ``diagnosis_outcomes`` (the outcome index of each diagnosis class), the head is the diagnosis-level
    :class:`triage.models.backbones.OutcomeHead` of a model trained with ``diagnosis_labels``.

    Batch-norm statistics are re-estimated on a few generated photos and the
    OOD state is fitted on their features, so outputs are finite and every
    output of the exported graph is exercised. For export, notebook and
    serving tests: no training needed.

    Returns:
        ``path``.
    """
    import torch

    from triage.checkpoint import checkpoint_meta, save_checkpoint
    from triage.core.preprocess import canonical_square
    from triage.core.transforms import eval_batch
    from triage.models.backbones import BACKBONES, build_model, features
    from triage.models.ood import fit_ood
    from triage.training import recalibrate_batchnorm

    spec = BACKBONES[arch]
    torch.manual_seed(seed)
    groups = list(diagnosis_outcomes) if diagnosis_outcomes else None
    model = build_model(arch, len(OUTCOMES), None, groups=groups).to(memory_format=torch.channels_last)
    squares = np.stack(
        [
            canonical_square(cast_and_grain(synthetic_photo(np.random.default_rng(seed + i), (96, 96)), i))
            for i in range(24)
        ]
    )
    recalibrate_batchnorm(model, squares, np.arange(len(squares)), image_size, spec.mean, spec.std, n=24, batch=12)
    model.eval()
    with torch.no_grad():
        f = features(model, eval_batch(list(squares), image_size, spec.mean, spec.std)).numpy()
    y = np.arange(len(f)) % len(OUTCOMES)
    meta = checkpoint_meta(
        version=f"tiny-random-{arch}-{seed}",
        arch=arch,
        classes=list(OUTCOMES),
        image_size=image_size,
        mean=spec.mean,
        std=spec.std,
        temperature=temperature,
        refer_threshold=0.4,
        abstain_threshold=0.3,
        data_fingerprint=data_fingerprint,
        ood=fit_ood(f[:16], y[:16], f[16:], 0.95),
        dropout=0.2,
        train_config={"arch": arch, "image_size": image_size, "seed": seed},
    )
    if groups:
        meta["diagnosis_outcomes"] = groups
        meta["diagnoses"] = [f"tiny:{i}" for i in range(len(groups))]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, meta, path)
    return path
