"""Tap the spot, the pure parts (``triage.inference.tap``, ``triage.inference.combine``, ``triage.app.framed``):
point parsing, point -> crop boxes (borders, small photos, EXIF-rotated photos) and the rule that combines the
crops' answers."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_corpus_module
from PIL import Image

from triage.app.framed import area_box, framed_thumbnail
from triage.core.outcomes import OUTCOMES
from triage.core.policy import Thresholds
from triage.inference.combine import CAUTIOUS, MEAN, combine_crop_probabilities
from triage.inference.decode import decode_upload
from triage.inference.tap import (
    MIN_CROP_SIDE,
    MIN_JUDGED_SIDE,
    POINT_FORMAT_MESSAGE,
    POINT_OUTSIDE_MESSAGE,
    Box,
    PointError,
    crop_box,
    parse_point,
    point_from_pixels,
    tap_boxes,
)

corpus = load_corpus_module()

# -- parsing a point -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.5,0.4", (0.5, 0.4)), (" 0 , 1 ", (0.0, 1.0)), ("1,0", (1.0, 0.0)), (".25,0.75", (0.25, 0.75))],
)
def test_parse_point_reads_two_fractions(text, expected):
    assert parse_point(text) == expected


@pytest.mark.parametrize("text", [None, "", "   "])
def test_a_blank_point_means_the_whole_photo(text):
    assert parse_point(text) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2,x", POINT_FORMAT_MESSAGE),
        ("0.5", POINT_FORMAT_MESSAGE),
        ("0.5,0.5,0.5", POINT_FORMAT_MESSAGE),
        ("nan,0.5", POINT_FORMAT_MESSAGE),
        ("inf,0.5", POINT_FORMAT_MESSAGE),
        ("0.5;0.5", POINT_FORMAT_MESSAGE),
        ("1e0,0.5", POINT_FORMAT_MESSAGE),
        ("2,0.5", POINT_OUTSIDE_MESSAGE),
        ("0.5,-0.1", POINT_OUTSIDE_MESSAGE),
        ("1.0001,0", POINT_OUTSIDE_MESSAGE),
    ],
)
def test_a_bad_point_gets_a_plain_sentence(text, message):
    with pytest.raises(PointError) as err:
        parse_point(text)
    assert err.value.user_message == message
    assert message[0].isupper() and message.endswith(".")


def test_a_tap_in_pixels_becomes_the_pixel_centre_as_fractions():
    assert point_from_pixels(0, 0, 200, 100) == (0.0025, 0.005)
    assert point_from_pixels(199, 99, 200, 100) == (0.9975, 0.995)
    for px, py in [(-1, 5), (5, -1), (200, 5), (5, 100)]:
        with pytest.raises(PointError):
            point_from_pixels(px, py, 200, 100)


# -- point -> boxes ------------------------------------------------------------------------------------------


def test_box_is_a_square_centred_on_the_point():
    box = crop_box(1000, 800, (0.5, 0.5), 0.25)
    assert box == Box(400, 300, 600, 500)
    assert box.side == 200 == 0.25 * 800


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ((0.0, 0.0), Box(0, 0, 320, 320)),  # top-left corner
        ((1.0, 1.0), Box(680, 480, 1000, 800)),  # bottom-right corner
        ((0.02, 0.5), Box(0, 240, 320, 560)),  # left border: shifted in, same size
        ((0.5, 0.99), Box(340, 480, 660, 800)),  # bottom border
    ],
)
def test_near_a_border_the_box_is_shifted_inside_not_cut(point, expected):
    box = crop_box(1000, 800, point, 0.4)
    assert box == expected
    assert box.side == 320
    assert 0 <= box.left < box.right <= 1000 and 0 <= box.top < box.bottom <= 800


def test_the_tapped_point_stays_inside_its_box_everywhere():
    rng = np.random.default_rng(0)
    for _ in range(300):
        w, h = (int(v) for v in rng.integers(40, 3000, 2))
        x, y = (float(v) for v in rng.uniform(0, 1, 2))
        for scale in (0.25, 0.4, 0.6, 1.0, 1.7):
            box = crop_box(w, h, (x, y), scale)
            assert box.right - box.left == box.bottom - box.top <= min(w, h)
            assert 0 <= box.left and box.right <= w and 0 <= box.top and box.bottom <= h
            assert box.left - 1 <= x * w <= box.right + 1 and box.top - 1 <= y * h <= box.bottom + 1


def test_tap_boxes_are_nested_smallest_first():
    # A 12 MP phone photo as decoded (1000 x 750): a quarter, 40% and 60% of the shorter side.
    boxes = tap_boxes(1000, 750, (0.4, 0.6), (0.25, 0.4, 0.6))
    assert [b.side for b in boxes] == [188, 300, 450]


def test_tap_boxes_never_blow_a_few_pixels_up_to_the_model_input():
    # 600 x 400: a quarter would be 100 px; it gets MIN_JUDGED_SIDE instead (the model's canonical square).
    assert [b.side for b in tap_boxes(600, 400, (0.5, 0.5), (0.25, 0.6))] == [MIN_JUDGED_SIDE, 240]
    # A 150 px photo: every scale is the square around the tap, judged once.
    assert [b.side for b in tap_boxes(200, 150, (0.2, 0.5), (0.25, 0.4, 0.6))] == [150]


def test_a_photo_too_small_to_crop_gets_no_boxes():
    # Under MIN_CROP_SIDE there is nothing to judge: the caller says "take a closer photo".
    assert tap_boxes(60, 50, (0.5, 0.5)) == [] and MIN_CROP_SIDE == 64
    assert len(tap_boxes(64, 64, (0.5, 0.5))) == 1


def test_box_fractions_round_trip_to_pixels_at_any_size():
    box = crop_box(1000, 800, (0.3, 0.7), 0.4)
    area = box.fractions(1000, 800)
    assert area_box((1000, 800), area) == box.as_tuple()
    assert area_box((250, 200), area) == (round(box.left / 4), box.top // 4, round(box.right / 4), box.bottom // 4)


# -- EXIF orientation: the point is on the photo as shown ------------------------------------------------------


def _dark_block_centre(image: Image.Image) -> tuple[float, float]:
    dark = np.asarray(image.convert("L")) < 40
    ys, xs = np.nonzero(dark)
    return xs.mean() / image.width, ys.mean() / image.height


def test_a_point_on_an_exif_rotated_photo_frames_the_same_spot_as_on_the_upright_one():
    # The corpus pattern has a dark block at the top-left once upright; the rotated file stores it elsewhere.
    rotated = decode_upload(corpus.make_exif_rotated_jpeg())
    upright = decode_upload(corpus.make_upright_jpeg())
    point = _dark_block_centre(upright.image)
    assert point[0] < 0.5 and point[1] < 0.5  # top-left, as a person sees it
    for photo in (rotated, upright):
        assert photo.original_size == photo.image.size == (160, 96)
        box = crop_box(*photo.image.size, point, 0.6)
        crop = np.asarray(photo.image.crop(box.as_tuple()).convert("L"))
        # The dark block is inside the crop the point names, on the rotated file as on the upright one.
        assert (crop < 40).mean() > 0.1, (box, (crop < 40).mean())


def test_a_point_names_the_same_place_at_any_decoded_size():
    # A 12 MP photo is decoded at 1/4 scale; the fractions do not care.
    full, small = crop_box(4000, 3000, (0.3, 0.6), 0.4), crop_box(1000, 750, (0.3, 0.6), 0.4)
    assert np.allclose(full.fractions(4000, 3000), small.fractions(1000, 750), atol=2e-3)


def test_framed_thumbnail_is_small_and_leaves_the_photo_alone():
    photo = Image.new("RGB", (1000, 750), (200, 150, 130))
    thumb = framed_thumbnail(photo, [0.1, 0.2, 0.5, 0.7333], [0.3, 0.45])
    assert max(thumb.size) == 320 and thumb.size[0] / thumb.size[1] == pytest.approx(1000 / 750, abs=0.01)
    assert photo.getpixel((100, 150)) == (200, 150, 130)  # drawn on a copy
    assert thumb.getpixel((32, 80)) != (200, 150, 130)  # the frame's left edge


# -- the combination rule --------------------------------------------------------------------------------------

T = Thresholds(refer=0.3, abstain=0.5)


def _row(**p: float) -> list[float]:
    return [p.get(o.replace("-", "_"), 0.0) for o in OUTCOMES]


def test_mean_rule_decides_once_on_the_average():
    probs = np.array([_row(milia_like=0.9, refer_to_doctor=0.1), _row(milia_like=0.6, refer_to_doctor=0.4)])
    idx, shown = combine_crop_probabilities(probs, T, MEAN)
    assert OUTCOMES[idx] == "milia-like"  # mean refer 0.25 < 0.3
    assert shown == pytest.approx(probs.mean(0))


def test_cautious_rule_keeps_the_most_cautious_crop_and_shows_its_probabilities():
    probs = np.array([_row(milia_like=0.9, refer_to_doctor=0.1), _row(milia_like=0.6, refer_to_doctor=0.4)])
    idx, shown = combine_crop_probabilities(probs, T, CAUTIOUS)
    assert OUTCOMES[idx] == "refer-to-doctor"  # the second crop alone passes the refer threshold
    assert shown == pytest.approx(probs[1])


def test_one_crop_is_the_same_answer_under_both_rules():
    row = np.array([_row(pustule=0.7, other=0.2, refer_to_doctor=0.1)])
    assert combine_crop_probabilities(row, T, MEAN)[0] == combine_crop_probabilities(row, T, CAUTIOUS)[0] == 1


def test_combination_refuses_nothing_to_combine_and_unknown_rules():
    with pytest.raises(ValueError):
        combine_crop_probabilities(np.zeros((0, 4)), T)
    with pytest.raises(ValueError):
        combine_crop_probabilities(np.array([_row(other=1.0)]), T, "vote")
