"""Tap the spot: a point on the photo becomes the square crop boxes judged around it. Pure functions.

A point is given as fractions of the photo's width and height (0-1), measured on the photo as it is shown,
that is after its EXIF orientation: the decoder (:mod:`triage.inference.decode`) applies the orientation before
anything else sees the pixels, so the same fractions name the same spot at any decoded size.

Each box is a square centred on the point whose side is a share of the photo's shorter side
(:data:`TAP_SCALES`), but never fewer pixels than the model's canonical square (:data:`MIN_JUDGED_SIDE`,
176 px) unless the photo itself is smaller: a smaller crop would be blown up to the model's input, and the
blur reads as "unsure". On a 12 MP phone photo (decoded at 1000 x 750) the three scales are 187, 300 and
450 px; on a 200 px photo all three are the photo's shorter side, i.e. the square around the tap. Near a
border the box is shifted inwards rather than cut, so the model always sees a whole square of skin.
"""

from __future__ import annotations

import math
import re

from triage.core.geometry import Box, square_inside
from triage.core.preprocess import CANONICAL_SIZE

#: Sides of the crops judged around a tapped point, as shares of the photo's shorter side. Chosen with
#: ``bench/tap_rule.py`` on close-up crops of the test split (see docs/APP.md, "Tap the spot, measured").
TAP_SCALES: tuple[float, ...] = (0.25, 0.4, 0.6)

#: Fewest pixels a crop is given when the photo has them: the model's canonical square (no upscaling).
MIN_JUDGED_SIDE = CANONICAL_SIZE

#: Smallest crop side, in decoded pixels, worth judging at all: the photo-quality check's own minimum
#: (``QualityThresholds.min_side``); a smaller square is a handful of pixels blown up to the model's input.
MIN_CROP_SIDE = 64

#: Most photos of one area answered together (the app has three photo slots; ``predict --combine`` follows).
MAX_PHOTOS = 3

POINT_FORMAT_MESSAGE = (
    "The point should be two numbers between 0 and 1 separated by a comma, "
    "across then down, for example 0.5,0.4 for the middle of the photo a little above centre."
)
POINT_OUTSIDE_MESSAGE = "The point is outside the photo. Please tap on the spot itself, inside the photo."
TOO_MANY_PHOTOS_MESSAGE = (
    f"Please send at most {MAX_PHOTOS} photos of one area. This photo was not checked; the others were."
)

_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*$")


class PointError(ValueError):
    """A point that cannot be used; ``user_message`` is a plain sentence for the person."""

    def __init__(self, user_message: str) -> None:
        self.user_message = user_message
        super().__init__(user_message)


def check_point(x: float, y: float) -> tuple[float, float]:
    """Return ``(x, y)`` as floats when both lie in [0, 1].

    Raises:
        PointError: a coordinate is not a finite number, or lies outside the photo.
    """
    try:
        x, y = float(x), float(y)
    except (TypeError, ValueError):
        raise PointError(POINT_FORMAT_MESSAGE) from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise PointError(POINT_FORMAT_MESSAGE)
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise PointError(POINT_OUTSIDE_MESSAGE)
    return x, y


def parse_point(text: str | None) -> tuple[float, float] | None:
    """Parse ``"X,Y"`` (fractions of width and height) into a point; blank means no point.

    Raises:
        PointError: not two numbers, or a number outside [0, 1].
    """
    if text is None or not str(text).strip():
        return None
    parts = str(text).split(",")
    if len(parts) != 2 or not all(_NUMBER.match(p) for p in parts):
        raise PointError(POINT_FORMAT_MESSAGE)
    return check_point(float(parts[0]), float(parts[1]))


def point_from_pixels(px: float, py: float, width: int, height: int) -> tuple[float, float]:
    """A tap at pixel ``(px, py)`` of a ``width`` x ``height`` photo, as fractions (the pixel's centre).

    Raises:
        PointError: the pixel lies outside the photo.
    """
    if width <= 0 or height <= 0:
        raise PointError(POINT_OUTSIDE_MESSAGE)
    if not (0 <= px < width and 0 <= py < height):
        raise PointError(POINT_OUTSIDE_MESSAGE)
    return check_point((px + 0.5) / width, (py + 0.5) / height)


def crop_box(width: int, height: int, point: tuple[float, float], scale: float, min_px: int = 0) -> Box:
    """The square of side ``scale`` x the shorter side, centred on ``point``, shifted inside the photo.

    Args:
        width: photo width in pixels (after orientation).
        height: photo height in pixels.
        point: ``(x, y)`` fractions in [0, 1].
        scale: side as a share of ``min(width, height)``; values above 1 are treated as 1.
        min_px: the side is at least this many pixels when the photo allows.

    Returns:
        A box that lies entirely inside the photo (at least 1 pixel).
    """
    x, y = check_point(*point)
    short = min(width, height)
    side = max(1, min(max(round(min(scale, 1.0) * short), min_px), short))
    # The box's corner is clamped, not the point: the box keeps its size and the spot stays inside it
    # (the same geometry as the data build's lesion-centred crops).
    return Box(*square_inside(x * width, y * height, side, width, height))


def tap_boxes(
    width: int,
    height: int,
    point: tuple[float, float],
    scales: tuple[float, ...] = TAP_SCALES,
    min_side: int = MIN_CROP_SIDE,
    min_px: int = MIN_JUDGED_SIDE,
) -> list[Box]:
    """The crops judged for a tap, smallest first: at least ``min_px`` a side where the photo allows.

    Returns:
        Distinct boxes (on a small photo several scales give the same square); empty when the photo is too
        small to judge (shorter side under ``min_side``), which the caller turns into "take a closer photo".
    """
    boxes: list[Box] = []
    for scale in sorted(scales):
        box = crop_box(width, height, point, scale, min_px)
        if box.side >= min_side and box not in boxes:
            boxes.append(box)
    return boxes


def oriented_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """Size of a photo once its EXIF ``orientation`` (1-8) is applied: 5-8 swap width and height."""
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


__all__ = [
    "TAP_SCALES",
    "MIN_CROP_SIDE",
    "MIN_JUDGED_SIDE",
    "MAX_PHOTOS",
    "Box",
    "PointError",
    "check_point",
    "parse_point",
    "point_from_pixels",
    "crop_box",
    "tap_boxes",
    "oriented_size",
]
