"""Detecting 2x2 mosaics: four photos tiled into one image.

A seam between two tiles is a straight line where the image changes
abruptly along (nearly) its whole length. Natural close-ups almost never
have such a line through their middle, so an image with both a vertical and
a horizontal seam in its central band is taken to be a mosaic.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SIDE = 128
EDGE = 18.0  # grey-level step that counts as a break
BAND = (0.2, 0.8)  # seams are searched in the central band only


def seam_strength(gray: np.ndarray, axis: int) -> float:
    """Best share of a full-length line with a break, over positions in the central band.

    Args:
        gray: 2-D float array.
        axis: 1 for vertical seams (steps between columns), 0 for horizontal ones.
    """
    step = np.abs(np.diff(gray, axis=axis))
    if axis == 0:
        step = step.T  # rows of `step` now run along the seam direction
    # A seam pixel steps sharply across the seam but not along its neighbours.
    coverage = (step > EDGE).mean(axis=0)
    n = len(coverage)
    lo, hi = int(n * BAND[0]), int(n * BAND[1])
    return float(coverage[lo:hi].max()) if hi > lo else 0.0


def mosaic_score(image: Image.Image) -> float:
    """Return min(vertical, horizontal) seam strength; high means a 2x2 mosaic."""
    g = np.asarray(image.convert("L").resize((SIDE, SIDE), Image.Resampling.BILINEAR), dtype=np.float32)
    return min(seam_strength(g, 1), seam_strength(g, 0))


def is_mosaic(image: Image.Image, threshold: float = 0.45) -> bool:
    """True when the image looks like photos tiled together."""
    return mosaic_score(image) >= threshold
