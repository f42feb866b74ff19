"""Show the area that was judged: a small copy of the photo with the framed square and the tapped point.

The picture goes into the page as a ``data:`` URI inside the result's HTML, so it is never written to disk
(an image output would be saved in Gradio's cache) and leaves with the page.
"""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageDraw

#: Longest side of the picture in the result, in pixels (a phone screen is about 360 CSS px wide).
THUMB_SIDE = 320
FRAME_COLOUR = (255, 214, 0)  # yellow: visible on every skin tone and on the red of inflamed skin


def area_box(size: tuple[int, int], area: list[float] | tuple[float, ...]) -> tuple[int, int, int, int]:
    """The framed area, given as ``[left, top, right, bottom]`` fractions, in pixels of a photo of ``size``."""
    w, h = size
    left, top, right, bottom = area
    box = (round(left * w), round(top * h), round(right * w), round(bottom * h))
    return (box[0], box[1], max(box[2], box[0] + 1), max(box[3], box[1] + 1))


def framed_thumbnail(
    image: Image.Image, area: list[float] | None = None, point: list[float] | None = None, side: int = THUMB_SIDE
) -> Image.Image:
    """A copy of ``image`` at most ``side`` px long, with ``area`` framed and ``point`` marked when given."""
    thumb = image.convert("RGB")
    thumb.thumbnail((side, side), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(thumb)
    width = max(2, round(max(thumb.size) / 100))
    if area is not None:
        draw.rectangle(area_box(thumb.size, area), outline=FRAME_COLOUR, width=width)
    if point is not None:
        x, y = point[0] * thumb.width, point[1] * thumb.height
        r = 2 * width
        draw.ellipse((x - r, y - r, x + r, y + r), outline=FRAME_COLOUR, width=max(1, width // 2))
    return thumb


def data_uri(image: Image.Image, quality: int = 85) -> str:
    """``image`` as a ``data:image/jpeg;base64,...`` URI (no metadata: a fresh JPEG of the pixels only)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


__all__ = ["THUMB_SIDE", "area_box", "framed_thumbnail", "data_uri"]
