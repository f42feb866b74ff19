"""Any Pillow image as upright 8-bit RGB: the one conversion serving, the data build and the crops share.

Serving decodes uploads with it (``triage.inference.decode``) and the data build decodes photos and crops with it
(``triage.data``), so a phone photo with an EXIF orientation tag or an alpha channel gives the model the same
pixels in training as in serving. The log names error types only, never EXIF values (which may hold a place
or a name).
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image, ImageOps

logger = logging.getLogger(__name__)


def _composite_on_white(rgba: Image.Image) -> Image.Image:
    """Flatten transparency onto white, as a viewer would show it (black would read as a dark photo)."""
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, flattening transparency onto white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        return _composite_on_white(image) if has_alpha else image
    if mode in ("RGBA", "LA", "La", "RGBa"):
        return _composite_on_white(image.convert("RGBA"))
    if mode.startswith("I") or mode == "F":
        # 16-bit and float greyscale: Pillow's convert("L") clips instead of scaling, so scale ourselves.
        arr = np.asarray(image).astype(np.float64)
        if mode.startswith("I;16") or (mode == "I" and arr.size and arr.max() > 255):
            arr = arr / 257.0
        elif mode == "F" and arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        grey = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    # CMYK (Pillow undoes Adobe's inverted CMYK on decode), YCbCr, LAB, HSV, L, 1.
    return image.convert("RGB")


def orientation_of(image: Image.Image) -> int:
    """Return the EXIF orientation tag (1 when absent or unreadable)."""
    try:
        value = image.getexif().get(0x0112, 1)
        return int(value) if value in range(1, 9) else 1
    except Exception as err:  # Malformed EXIF must not block an otherwise fine photo.
        logger.info("unreadable EXIF ignored: %s", type(err).__name__)
        return 1


def apply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    """Rotate/flip per EXIF; a malformed tag leaves the photo as stored rather than failing."""
    if orientation == 1:
        return image
    try:
        return ImageOps.exif_transpose(image)
    except Exception as err:
        logger.info("EXIF orientation not applied: %s", type(err).__name__)
        return image


def upright_rgb(image: Image.Image) -> Image.Image:
    """``image`` turned upright by its EXIF orientation, as 8-bit RGB (loaded; the file may be closed after)."""
    image.load()
    return to_rgb(apply_orientation(image, orientation_of(image))).copy()
