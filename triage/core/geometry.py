"""Box geometry shared by the data build's lesion crops and the app's tap crops: one way to place a square."""

from __future__ import annotations

from dataclasses import dataclass


def square_inside(cx: float, cy: float, side: float, width: int, height: int) -> tuple[int, int, int, int] | None:
    """A square box of ``side`` centred on (cx, cy), shifted to lie inside the image.

    Returns:
        ``(left, top, right, bottom)`` in pixels, or ``None`` when the image is smaller than ``side``.
    """
    side = int(round(side))
    if side > min(width, height) or side < 1:
        return None
    left = int(round(cx - side / 2))
    top = int(round(cy - side / 2))
    left = min(max(left, 0), width - side)
    top = min(max(top, 0), height - side)
    return left, top, left + side, top + side


@dataclass(frozen=True)
class Box:
    """A crop box in pixels: ``left``/``top`` inclusive, ``right``/``bottom`` exclusive (PIL's convention)."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def side(self) -> int:
        """Width (= height) in pixels."""
        return self.right - self.left

    def as_tuple(self) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` for ``PIL.Image.crop``."""
        return (self.left, self.top, self.right, self.bottom)

    def fractions(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The box as fractions of a ``width`` x ``height`` photo, rounded to 4 places."""
        return (
            round(self.left / width, 4),
            round(self.top / height, 4),
            round(self.right / width, 4),
            round(self.bottom / height, 4),
        )
