"""Photo quality checks: is this photo good enough to look at?

Each check is a named, measured reason, so the app can tell the person exactly
what to fix ("too blurry", "too dark"...) and logs can show the measured value.
The checks are pure functions of the pixels; thresholds live in
:class:`QualityThresholds` and were measured on the bundled data (see
``bench/quality_rates.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

#: Shorter side the photo is resized to before measuring sharpness and light, so the measures do not
#: depend on the upload's resolution (a 12 MP photo and its 256 px copy score alike).
WORKING_SHORT_SIDE = 256

#: Longer side of the small copy used for the per-pixel skin rule (fast, and skin is a large-area property).
SKIN_MAX_SIDE = 128

#: Skin rule bounds (inclusive, OpenCV 8-bit YCrCb); see :func:`skin_mask`.
SKIN_CR = (130, 180)
SKIN_CB = (77, 140)
SKIN_Y = (15, 250)

TOO_SMALL = "too_small"
TOO_BLURRY = "too_blurry"
TOO_DARK = "too_dark"
TOO_BRIGHT = "too_bright"
TOO_LITTLE_SKIN = "too_little_skin"

#: Every reason code, in the order they are reported.
REASONS: tuple[str, ...] = (TOO_SMALL, TOO_BLURRY, TOO_DARK, TOO_BRIGHT, TOO_LITTLE_SKIN)

#: One plain sentence per reason: what went wrong and what to do. No medical judgement in them.
MESSAGES: dict[str, str] = {
    TOO_SMALL: ("The photo is too small to see the spot. Please send a larger photo, taken closer to the spot."),
    TOO_BLURRY: ("The photo is too blurry to assess. Hold the phone steady, tap to focus on the spot and try again."),
    TOO_DARK: "The photo is too dark. Please take it again in good daylight or with more light on the spot.",
    TOO_BRIGHT: ("The photo is too bright or washed out. Please avoid direct flash or strong sunlight and try again."),
    TOO_LITTLE_SKIN: (
        "We can't see enough skin in this photo. Please take a close-up with the spot in the middle "
        "and skin filling most of the picture."
    ),
}


@dataclass(frozen=True)
class QualityThresholds:
    """Limits for the quality checks.

    How the defaults were chosen: ``bench/quality_rates.py`` on the bundled data (all 3,649
    fitzpatrick17k photos plus 400 from each other folder, 5,776 in all; shorter side at most 256 px,
    JPEG quality 80), with each photo also blurred (shorter side 256, Gaussian sigma 4) as a control.

    * ``min_side``: below 64 px a spot is a handful of pixels (0.14% of the real photos are smaller).
    * ``min_sharpness``: variance of the Laplacian (see :func:`measure`). Real photos: 0.5th percentile
      14.5, 1st 19.0, 2nd 23.7 (the lowest are soft small clinical and smooth dermoscopic photos); the
      blurred controls: median 2.0, 99.5th percentile 3.9, maximum 9.0. At 10, 0.12% of real photos
      (msld_v2: 4 of 127, visibly blurry) and 100% of the blurred controls are flagged.
    * Light: mean luma 40-235 and at most 60% of pixels clipped (luma <= 5 or >= 250). Real photos' mean
      luma spans 61-209 (0.5th-99.5th percentile); 0.12% are flagged too dark (mostly small photos
      letterboxed in black, 1% of roboflow_acne), 0.03% too bright.
    * ``min_skin_fraction``: share of pixels passing :func:`skin_mask`. At 0.25, 0.0-1.7% of the
      fitzpatrick17k photos of each Fitzpatrick type I-VI are flagged (types V and VI: 0%), at most 2%
      of any folder; 24 of 30 non-skin photos are flagged (skin-coloured scenes such as wood, a ginger
      cat, coffee or a stained tissue slide pass: colour alone cannot tell them from skin).
    """

    min_side: int = 64
    min_sharpness: float = 10.0
    min_brightness: float = 40.0
    max_brightness: float = 235.0
    max_dark_clip: float = 0.6
    max_highlight_clip: float = 0.6
    min_skin_fraction: float = 0.25


@dataclass
class QualityReport:
    """What the quality checks measured and which ones failed.

    Attributes:
        measures: named measurements (see :func:`assess_quality`).
        reasons: failed checks, codes from :data:`REASONS`; empty when the photo is usable.
    """

    measures: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.reasons

    def messages(self) -> list[str]:
        """Return one plain sentence per failed check, in reporting order."""
        return [MESSAGES[r] for r in self.reasons]


def _working_copy(image: Image.Image) -> Image.Image:
    """Downscale so the shorter side is ``WORKING_SHORT_SIDE``; never upscale.

    Upscaling would invent blur (interpolation is smooth) and fail small but crisp photos, so photos already
    smaller are measured as they are; ``too_small`` handles the really small ones.
    """
    w, h = image.size
    short = min(w, h)
    if short <= WORKING_SHORT_SIDE:
        return image
    scale = WORKING_SHORT_SIDE / short
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # BOX averages whole source pixels: no aliasing that would fake sharpness, and it is fast.
    return image.resize(size, Image.Resampling.BOX, reducing_gap=2.0)


def skin_mask(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel skin rule in YCrCb that holds across skin tones.

    Chai & Ngan's chroma box (Cr 133-173, Cb 77-127), widened to ``SKIN_CR`` and ``SKIN_CB``. Luma is
    deliberately not used beyond dropping near-black and near-white pixels (whose chroma is unreliable):
    skin tones differ mostly in luma while their chroma stays in a narrow band. The widening was measured
    (``bench/quality_rates.py``): with Chai & Ngan's box 6.5% of Fitzpatrick type I and 5.0% of type VI
    photos, and 21% of dermoscopic photos, fell under the skin threshold; cool-lit atlas photos sit just
    below Cr 133 and dermoscopic ones above Cb 127.

    Args:
        rgb: ``uint8`` array of shape ``(H, W, 3)``.

    Returns:
        Boolean array of shape ``(H, W)``.
    """
    ycrcb = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2YCrCb)
    y, cr, cb = ycrcb[..., 0], ycrcb[..., 1], ycrcb[..., 2]
    return (
        (cr >= SKIN_CR[0])
        & (cr <= SKIN_CR[1])
        & (cb >= SKIN_CB[0])
        & (cb <= SKIN_CB[1])
        & (y >= SKIN_Y[0])
        & (y <= SKIN_Y[1])
    )


def measure(image: Image.Image) -> dict[str, float]:
    """Compute the quality measures of ``image``.

    Returns:
        ``width``, ``height``, ``min_side`` (pixels, as given); ``sharpness`` (variance of the 3x3
        Laplacian of luma, 0-255 scale, on a copy downscaled to a shorter side of ``WORKING_SHORT_SIDE``:
        about the resolution the model sees, so blur invisible at that size does not count, and a
        12 MP photo scores like its 256 px copy); ``brightness`` (mean luma, 0-255); ``contrast``
        (standard deviation of luma); ``highlight_clip`` (share of pixels with luma >= 250);
        ``dark_clip`` (share with luma <= 5); ``skin_fraction`` (share of pixels passing
        :func:`skin_mask`, on a copy at most ``SKIN_MAX_SIDE`` px).
    """
    rgb_image = image if image.mode == "RGB" else image.convert("RGB")
    w, h = rgb_image.size
    work = _working_copy(rgb_image)
    luma = np.asarray(work.convert("L"), dtype=np.float32)
    laplacian = cv2.Laplacian(luma, cv2.CV_32F, ksize=1)

    small = rgb_image.copy()
    small.thumbnail((SKIN_MAX_SIDE, SKIN_MAX_SIDE), Image.Resampling.BOX)
    skin = skin_mask(np.asarray(small))

    return {
        "width": float(w),
        "height": float(h),
        "min_side": float(min(w, h)),
        "sharpness": float(laplacian.var()),
        "brightness": float(luma.mean()),
        "contrast": float(luma.std()),
        "highlight_clip": float((luma >= 250).mean()),
        "dark_clip": float((luma <= 5).mean()),
        "skin_fraction": float(skin.mean()),
    }


def reasons_for(measures: dict[str, float], thresholds: QualityThresholds) -> list[str]:
    """Return the failed checks for already computed ``measures``."""
    t = thresholds
    failed = {
        TOO_SMALL: measures["min_side"] < t.min_side,
        TOO_BLURRY: measures["sharpness"] < t.min_sharpness,
        TOO_DARK: measures["brightness"] < t.min_brightness or measures["dark_clip"] > t.max_dark_clip,
        TOO_BRIGHT: (measures["brightness"] > t.max_brightness or measures["highlight_clip"] > t.max_highlight_clip),
        TOO_LITTLE_SKIN: measures["skin_fraction"] < t.min_skin_fraction,
    }
    return [r for r in REASONS if failed[r]]


def assess_quality(image: Image.Image, thresholds: QualityThresholds | None = None) -> QualityReport:
    """Measure ``image`` and list every quality check it fails.

    Args:
        image: a PIL image (any mode; converted to RGB for measuring).
        thresholds: limits to apply; the measured defaults when ``None``.

    Returns:
        The measures and failed reasons. Pure: the image is not modified.
    """
    measures = measure(image)
    return QualityReport(measures=measures, reasons=reasons_for(measures, thresholds or QualityThresholds()))
