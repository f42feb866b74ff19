"""The one preprocessing path shared by data building, training, evaluation and serving.

A photo becomes a *canonical square*: the central square (the spot is
usually centred in a close-up) resized to ``CANONICAL_SIZE``. The data build
caches these squares; serving computes the same square from an upload. The
model transform (``eval_batch``) then resizes to the model's input size,
applies the checkpoint's colour constancy (:func:`colour_constancy`) and
normalises, identically for evaluation and serving; training applies the
same colour constancy to each augmented input.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: Side of the cached canonical square, in pixels.
CANONICAL_SIZE = 176

#: Colour constancy methods a checkpoint may name (``meta["colour_constancy"]``; absent in older ones: "none").
COLOUR_CONSTANCY = ("none", "shades_of_grey")

#: Minkowski norm of Shades-of-Grey: p = 6, as in Finlayson & Trezzi (2004) and the ISIC entries that use it.
SHADES_OF_GREY_P = 6


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


def shades_of_grey(image: np.ndarray, p: int = SHADES_OF_GREY_P) -> np.ndarray:
    """Remove a colour cast: scale each channel so that all three have the same Minkowski ``p``-norm.

    Shades of Grey (Finlayson & Trezzi, 2004) estimates the illuminant as the per-channel ``p``-norm of the
    pixels (p = 1 is grey world, p = inf is max-RGB) and divides it out (a von Kries correction). Each
    channel's gain is ``rms / norm_c``, ``rms`` the root mean square of the three norms, so that the
    corrected channels share one norm and the photo keeps about its brightness.

    Args:
        image: ``(H, W, 3)`` RGB ``uint8``.
        p: the Minkowski norm.

    Returns:
        the corrected ``(H, W, 3)`` ``uint8`` image (rounded, clipped to 0-255).
    """
    x = image.astype(np.float32)
    norms = np.power(np.mean(np.power(x, p), axis=(0, 1), dtype=np.float64), 1.0 / p)
    gains = np.sqrt(np.mean(norms**2)) / np.maximum(norms, 1e-6)  # an empty channel stays empty, never NaN
    return np.clip(np.rint(x * gains.astype(np.float32)), 0, 255).astype(np.uint8)


def colour_constancy(image: np.ndarray, method: str) -> np.ndarray:
    """Apply the colour constancy ``method`` (one of :data:`COLOUR_CONSTANCY`) to an RGB ``uint8`` image.

    Raises:
        ValueError: an unknown method (e.g. a checkpoint from a newer version).
    """
    if method == "none":
        return image
    if method == "shades_of_grey":
        return shades_of_grey(image)
    raise ValueError(f"unknown colour constancy {method!r}; choose from {COLOUR_CONSTANCY}")


def to_tensor_batch(images: np.ndarray, mean: tuple, std: tuple):
    """Normalise ``(N, H, W, 3)`` uint8 images into a float ``(N, 3, H, W)`` channels-last tensor."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous(memory_format=torch.channels_last)
