"""Spot detection and lesion-centred crops: geometry, detection on drawn spots, and which labels may be cropped."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from triage.core.geometry import square_inside
from triage.data.crops import crop_eligible, crops_for_image, label_describes_spots
from triage.data.lesions import find_spots, spot_crops

SKIN = (205, 150, 125)


def skin_with_spots(spots: list[tuple[int, int, int, tuple[int, int, int]]], size=(320, 240), seed=0) -> np.ndarray:
    """A skin-coloured photo with grain and discs ``(x, y, radius, colour)`` drawn on it."""
    img = Image.new("RGB", size, SKIN)
    d = ImageDraw.Draw(img)
    for x, y, r, colour in spots:
        d.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    arr = np.asarray(img).astype(np.float32)
    arr += np.random.default_rng(seed).normal(0, 3, arr.shape[:2])[:, :, None]
    return np.clip(arr, 0, 255).astype(np.uint8)


def test_square_inside_is_centred_inside_and_shifted_at_borders():
    assert square_inside(100, 80, 40, 320, 240) == (80, 60, 120, 100)
    # Near the top-left corner the box slides inside the image instead of leaving it.
    assert square_inside(5, 3, 40, 320, 240) == (0, 0, 40, 40)
    # Near the bottom-right corner too.
    assert square_inside(318, 239, 40, 320, 240) == (280, 200, 320, 240)
    # Larger than the photo: no box.
    assert square_inside(100, 100, 241, 320, 240) is None


def test_finds_a_milium_like_white_spot_and_a_red_papule_where_they_are():
    rgb = skin_with_spots([(90, 120, 5, (236, 224, 198)), (230, 100, 8, (200, 70, 70))])
    bright = find_spots(rgb, kinds=("bright",))
    red = find_spots(rgb, kinds=("red",))
    assert bright and np.hypot(bright[0].x - 90, bright[0].y - 120) < 4
    assert red and np.hypot(red[0].x - 230, red[0].y - 100) < 4
    assert 3 <= bright[0].radius <= 10 and 5 <= red[0].radius <= 14


def test_plain_skin_has_no_spots_and_a_white_glare_or_black_corner_is_not_one():
    assert find_spots(skin_with_spots([])) == []
    glare = skin_with_spots([(160, 120, 6, (255, 255, 255))])
    assert find_spots(glare, kinds=("bright",)) == []
    corner = skin_with_spots([])
    corner[:60, :60] = 0  # a black rotation corner: its edge is dark, but not a spot on skin
    assert all(s.x > 60 or s.y > 60 for s in find_spots(corner))


def test_crops_frame_the_spot_at_each_scale():
    rgb = skin_with_spots([(160, 120, 12, (236, 224, 198))], size=(480, 360))
    spots = find_spots(rgb, kinds=("bright",))
    crops = spot_crops(Image.fromarray(rgb), spots[:1])
    assert len(crops) == 3
    for spot, _scale, (left, top, right, bottom) in crops:
        assert right - left == bottom - top
        assert left <= spot.x <= right and top <= spot.y <= bottom
    sides = sorted(b[2] - b[0] for _, _, b in crops)
    assert sides[0] < sides[1] < sides[2]


@pytest.mark.parametrize(
    ("source", "labels", "outcome", "expected"),
    [
        ("ascid", ["Milia"], "milia-like", True),
        ("roboflow_acne", ["Purulent"], "pustule", True),
        ("roboflow_acne", ["Purulent", "Papular"], "pustule", True),  # the generic label carries no target
        ("roboflow_acne", ["Purulent", "Blackhead"], "pustule", False),  # spots of two outcomes in one photo
        ("ascid", ["Eczema"], "refer-to-doctor", False),  # about a whole area
        ("ascid", ["Rosacea"], "refer-to-doctor", False),
        ("ascid", ["Carcinoma"], "refer-to-doctor", True),
        ("ham10000", ["NV"], "other", False),  # dermoscopic: already one lesion filling the frame
        ("dermnet_nz", ["Melanocytic naevus"], "other", True),
        ("dermnet_nz", ["Atopic dermatitis"], "refer-to-doctor", False),
        ("dermnet_nz", ["Molluscum contagiosum"], "refer-to-doctor", True),
    ],
)
def test_only_labels_that_describe_each_spot_give_crops(source, labels, outcome, expected):
    assert crop_eligible(source, labels, outcome) is expected


def test_dermnet_area_topics_are_not_spots_even_with_a_spot_word():
    assert not label_describes_spots("dermnet_nz", "Naevus flammeus simplex", "other")
    assert label_describes_spots("dermnet_nz", "Cherry angioma", "other")


def test_crops_for_image_reads_a_real_file_and_never_raises_on_a_broken_one(tmp_path):
    good = tmp_path / "spot.jpg"
    Image.fromarray(skin_with_spots([(160, 120, 6, (236, 224, 198))])).save(good, quality=95)
    crops = crops_for_image(str(good), 0.0, "milia-like")
    assert crops and all(square.shape == (176, 176, 3) for _, square in crops)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:200])
    assert crops_for_image(str(broken), 0.0, "milia-like") == []
