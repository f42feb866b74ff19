"""Find candidate spots in a skin photo and cut lesion-centred crops around them.

Clients photograph *one* spot; the atlases mostly hold faces and cheeks with many. To teach the model what a
single milium or pustule looks like, the data build cuts crops centred on candidate spots found here, and the
close-up test set is made the same way from the test split.

Detection: Laplacian-of-Gaussian blobs (the method of ``skimage.feature.blob_log``, computed with OpenCV,
which is about ten times faster here) on three local-contrast channels of CIE Lab: brighter than the
surrounding skin (milia, whiteheads, pustule heads), redder (papules, pustules) and darker (blackheads, moles,
many growths). Each channel is the pixel minus a wide Gaussian of itself, so an evenly lit or evenly tanned
patch of skin gives nothing and only spots stand out. Spots must sit on skin (the ring around them mostly
passes the app's skin-colour rule), which drops eyes, lashes, hair, text and black corners. Pure functions of the
pixels; nothing here is used when serving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from triage.core.geometry import square_inside

#: Longer side the detector works at. The bundled photos are at most 512 px; spots of 3-40 px show at this size.
DETECT_SIDE = 256
#: Blob sigmas searched (pixels at ``DETECT_SIDE``); radius is sigma * sqrt(2).
MIN_SIGMA, MAX_SIGMA = 1.5, 12.0
#: A "bright" spot whose centre has every channel at least this is glare or a white watermark, not a spot.
WHITE_LEVEL = 225
#: A "dark" spot whose centre has every channel at most this is a black corner or a pupil, not a spot on skin.
BLACK_LEVEL = 20
#: Largest ratio of principal curvatures of a spot (SIFT's edge test uses 10; round spots are near 1).
EDGE_RATIO = 4.0
#: Crop side as a multiple of the spot's diameter: the spot fills about 1/1.7 = 60%, 1/3 = 33% and 1/6 = 17%
#: of the crop's side (the 15-60% range of a client's single-spot close-up).
CROP_SCALES = (1.7, 3.0, 6.0)
#: Smallest crop side, in pixels of the original photo: below it a crop is mostly interpolation.
MIN_CROP_SIDE = 40


@dataclass(frozen=True)
class Spot:
    """A candidate spot in original-image pixel coordinates."""

    x: float
    y: float
    radius: float
    kind: str  # "bright" | "red" | "dark"
    score: float


def contrast_channels(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Local-contrast maps (float32, >= 0) of bright, red and dark spots for an RGB uint8 image."""
    import cv2

    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    light, red = lab[..., 0], lab[..., 1]
    # A wide surround (sigma ~ 1/12 of the side) stands for "the skin around the spot".
    sigma = max(rgb.shape[:2]) / 12
    d_light = light - cv2.GaussianBlur(light, (0, 0), sigma)
    d_red = red - cv2.GaussianBlur(red, (0, 0), sigma)
    return {
        "bright": np.clip(d_light, 0, None) / 60.0,
        "red": np.clip(d_red, 0, None) / 25.0,
        "dark": np.clip(-d_light, 0, None) / 60.0,
    }


#: Which kinds of spot stand for an outcome's lesions (the others are ignored for that outcome).
KINDS_FOR_OUTCOME = {
    "milia-like": ("bright",),
    "pustule": ("bright", "red"),
    "other": ("dark", "red", "bright"),
    "refer-to-doctor": ("dark", "red", "bright"),
}


def log_blobs(
    chan: np.ndarray, threshold: float, num_sigma: int = 6, max_edge_ratio: float = EDGE_RATIO
) -> list[tuple[float, float, float]]:
    """Round bright blobs of ``chan``: local maxima of the scale-normalised negative Laplacian of Gaussian.

    Peaks on ridges (a glint along an eyelid or a lip, a skin fold, a hair) are dropped with SIFT's edge test:
    the ratio of the two principal curvatures of the smoothed channel at the peak must stay below
    ``max_edge_ratio``; a round spot curves alike in every direction.

    Returns:
        ``(y, x, sigma)`` per blob, as ``skimage.feature.blob_log`` gives them.
    """
    import cv2

    sigmas = np.geomspace(MIN_SIGMA, MAX_SIGMA, num_sigma)
    smooth = [cv2.GaussianBlur(chan, (0, 0), s) for s in sigmas]
    stack = np.stack([-cv2.Laplacian(g, cv2.CV_32F) * s**2 for g, s in zip(smooth, sigmas, strict=True)])
    # A peak is the largest value in its 3x3 neighbourhood at its own and the neighbouring scales.
    spatial = np.stack([cv2.dilate(layer, np.ones((3, 3), np.uint8)) for layer in stack])
    neighbours = spatial.copy()
    neighbours[1:] = np.maximum(neighbours[1:], spatial[:-1])
    neighbours[:-1] = np.maximum(neighbours[:-1], spatial[1:])
    peaks = (stack >= neighbours) & (stack > threshold)
    out = []
    h, w = chan.shape
    for k, y, x in zip(*np.nonzero(peaks), strict=True):
        if not (0 < y < h - 1 and 0 < x < w - 1):
            continue
        g = smooth[k]
        dxx = g[y, x + 1] + g[y, x - 1] - 2 * g[y, x]
        dyy = g[y + 1, x] + g[y - 1, x] - 2 * g[y, x]
        dxy = (g[y + 1, x + 1] - g[y + 1, x - 1] - g[y - 1, x + 1] + g[y - 1, x - 1]) / 4
        trace, det = dxx + dyy, dxx * dyy - dxy**2
        if det <= 0 or trace**2 / det >= (max_edge_ratio + 1) ** 2 / max_edge_ratio:
            continue  # a saddle or a ridge, not a round spot
        out.append((float(y), float(x), float(sigmas[k])))
    return out


def _skin_around(skin: np.ndarray, x: float, y: float, r: float) -> float:
    """Share of skin pixels in the ring between 1.5 and 3 radii around (x, y)."""
    h, w = skin.shape
    r_out = max(3 * r, 4)
    x0, x1 = int(max(0, x - r_out)), int(min(w, x + r_out + 1))
    y0, y1 = int(max(0, y - r_out)), int(min(h, y + r_out + 1))
    yy, xx = np.mgrid[y0:y1, x0:x1]
    d = np.hypot(xx - x, yy - y)
    ring = (d >= 1.5 * r) & (d <= r_out)
    return float(skin[y0:y1, x0:x1][ring].mean()) if ring.any() else 0.0


def find_spots(
    rgb: np.ndarray,
    kinds: tuple[str, ...] = ("bright", "red", "dark"),
    max_spots: int = 6,
    threshold: float = 0.15,
    margin: float = 0.04,
    min_skin: float = 0.8,
) -> list[Spot]:
    """Candidate spots of an RGB uint8 photo, strongest first.

    Args:
        rgb: ``(H, W, 3)`` uint8 image.
        kinds: which contrast channels to search (see :data:`KINDS_FOR_OUTCOME`).
        max_spots: how many to return at most (after non-overlap suppression across channels).
        threshold: ``blob_log`` threshold on the normalised contrast maps.
        margin: ignore blobs whose centre lies within this share of the side from an edge (frames, corners).
        min_skin: least share of skin-coloured pixels around a spot: eyes, lashes, hair, nostrils, text and
            black corners are not spots on skin.

    Returns:
        spots in the input's pixel coordinates.
    """
    from triage.core.quality import skin_mask

    h, w = rgb.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    small = rgb
    if scale < 1:
        small = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * scale)), max(1, round(h * scale)))))
    sh, sw = small.shape[:2]
    skin = skin_mask(small)
    chans = contrast_channels(small)
    found: list[Spot] = []
    for kind in kinds:
        chan = chans[kind]
        for y, x, s in log_blobs(chan, threshold):
            if not (margin * sw <= x < (1 - margin) * sw and margin * sh <= y < (1 - margin) * sh):
                continue
            r = s * np.sqrt(2)
            if _skin_around(skin, x, y, r) < min_skin:
                continue
            centre = small[int(y), int(x)]
            if kind == "bright" and centre.min() >= WHITE_LEVEL:
                continue  # glare on shiny skin or an eye, or a watermark: not a spot
            if kind == "dark" and centre.max() <= BLACK_LEVEL:
                continue  # a black frame or rotation corner, a pupil or a nostril
            # Score: contrast at the centre times the spot's size, so one clear spot beats specks of noise, and
            # a spot near the middle of the photo beats one at its edge: whoever took it framed what mattered.
            off_centre = np.hypot(x / sw - 0.5, y / sh - 0.5) / np.hypot(0.5, 0.5)
            score = float(chan[int(y), int(x)]) * float(np.sqrt(r)) * (1.0 - 0.5 * off_centre)
            found.append(Spot(x / scale, y / scale, r / scale, kind, score))
    found.sort(key=lambda s: -s.score)
    kept: list[Spot] = []
    for s in found:
        if all(np.hypot(s.x - k.x, s.y - k.y) > max(s.radius, k.radius) for k in kept):
            kept.append(s)
        if len(kept) == max_spots:
            break
    return kept


def spot_crops(
    image: Image.Image, spots: list[Spot], scales: tuple[float, ...] = CROP_SCALES, min_side: int = MIN_CROP_SIDE
) -> list[tuple[Spot, float, tuple[int, int, int, int]]]:
    """Crop boxes around each spot at each scale (spot diameter x scale), skipping ones too small or too big.

    A crop is at least ``min_side`` pixels (a small spot then fills less of it than its scale says); scales
    that give the same box once clamped are kept once.
    """
    out = []
    w, h = image.size
    for s in spots:
        boxes = set()
        for k in scales:
            side = max(2 * s.radius * k, min_side)
            if 2 * s.radius * k < min_side / 2:
                continue  # the spot would be a speck even in the smallest allowed crop
            box = square_inside(s.x, s.y, side, w, h)
            if box is not None and box not in boxes:
                boxes.add(box)
                out.append((s, k, box))
    return out
