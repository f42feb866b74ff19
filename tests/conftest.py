"""Shared test helpers: synthetic "photos" and the location of the bundled real data.

The default suite runs on generated images only (no network, no real data).
Synthetic photos are smooth random textures with a few coloured blobs, so
that every image is distinct (flat colours would all look alike to the
near-duplicate detector and to the mosaic detector).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="session")
def make_photo() -> Callable[..., Image.Image]:
    """A factory ``make_photo(seed, size=None)`` of distinct synthetic photos (same seed, same photo)."""

    def _make(seed: int, size: tuple[int, int] | None = None) -> Image.Image:
        return synthetic_photo(np.random.default_rng(seed), size)

    return _make


@pytest.fixture(scope="session")
def make_mosaic(make_photo) -> Callable[..., Image.Image]:
    """A factory ``make_mosaic(seeds, tile=128)``: four different synthetic photos tiled 2x2."""

    def _make(seeds: tuple[int, int, int, int], tile: int = 128) -> Image.Image:
        mosaic = Image.new("RGB", (2 * tile, 2 * tile))
        for k, seed in enumerate(seeds):
            mosaic.paste(make_photo(seed, (tile, tile)), ((k % 2) * tile, (k // 2) * tile))
        return mosaic

    return _make


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The bundled real datasets (``$TRIAGE_DATA`` or ``../shared/data``); skips the test when absent."""
    root = Path(os.environ.get("TRIAGE_DATA") or (REPO.parent / "shared" / "data"))
    if not (root / "README.md").is_file():
        pytest.skip("../shared/data not present: real-data tests need the bundled datasets (CI has them)")
    return root
