"""The one preprocessing path shared by data building, training, evaluation and serving.

A photo becomes a *canonical square*: the central square (the spot is
usually centred in a close-up) resized to ``CANONICAL_SIZE``. The data build
caches these squares; serving computes the same square from an upload. The
model transform (``eval_transform``) then resizes to the model's input size
and normalises, identically for evaluation and serving.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: Side of the cached canonical square, in pixels.
CANONICAL_SIZE = 176


def crop_bottom(image: Image.Image, share: float) -> Image.Image:
    """Drop the bottom ``share`` of the image (used for atlas watermarks)."""
    if share <= 0:
        return image
    w, h = image.size
    return image.crop((0, 0, w, max(1, round(h * (1 - share)))))


def canonical_square(image: Image.Image, size: int = CANONICAL_SIZE) -> np.ndarray:
    """Centre-crop ``image`` to a square and resize it to ``size`` x ``size``.

    Args:
        image: an RGB PIL image.
        size: output side in pixels.

    Returns:
        ``uint8`` array of shape ``(size, size, 3)``.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = image.crop((left, top, left + side, top + side))
    square = square.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(square, dtype=np.uint8)


def to_tensor_batch(images: np.ndarray, mean: tuple, std: tuple):
    """Normalise ``(N, H, W, 3)`` uint8 images into a float ``(N, 3, H, W)`` channels-last tensor."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous(memory_format=torch.channels_last)
