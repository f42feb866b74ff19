"""Tests for triage.core.quality on generated images: each reason fires on a crafted photo and not on skin."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from triage.core.quality import (
    MESSAGES,
    REASONS,
    QualityReport,
    QualityThresholds,
    assess_quality,
    measure,
    skin_mask,
)

LIGHT = (205, 150, 125)
MEDIUM = (160, 110, 80)
DARK = (95, 60, 45)
DEEP = (70, 45, 35)
FORBIDDEN = re.compile(r"diagnos|benign|malignant|harmless|\bsafe", re.IGNORECASE)


def skin_texture(base: tuple[int, int, int], size: tuple[int, int] = (512, 384), seed: int = 0) -> Image.Image:
    """A realistic-ish close-up of skin: base tone, soft shading, pore-scale grain and a few small spots.

    Args:
        base: the RGB skin tone.
        size: ``(width, height)``.
        seed: noise seed.
    """
    w, h = size
    rng = np.random.default_rng(seed)

    def smooth(cells: int, amp: float) -> np.ndarray:
        field = rng.normal(0, 1, (cells, cells)).astype(np.float32)
        return amp * cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)

    # Shading scales with the tone (light changes brightness multiplicatively), grain is pore-scale.
    shade = 1.0 + smooth(5, 0.08) + smooth(24, 0.03)
    grain = rng.normal(0, 1, (h, w)).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), 0.8) * 5.0
    arr = np.array(base, np.float32)[None, None, :] * shade[..., None] + grain[..., None]
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    spot = tuple(int(c * 0.6) for c in base)
    for _ in range(5):
        x, y, r = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h, rng.uniform(3, 9)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=spot)
    return image


@pytest.mark.parametrize("tone", [LIGHT, MEDIUM, DARK, DEEP], ids=["light", "medium", "dark", "deep"])
def test_skin_textures_of_every_tone_pass(tone):
    report = assess_quality(skin_texture(tone))
    assert report.ok, (report.reasons, report.measures)
    assert report.measures["skin_fraction"] > 0.9
    assert report.messages() == []


@pytest.mark.parametrize("tone", [LIGHT, DARK])
def test_skin_passes_at_phone_resolution(tone):
    report = assess_quality(skin_texture(tone, size=(1024, 768)))
    assert report.ok, (report.reasons, report.measures)


def test_too_small():
    report = assess_quality(skin_texture(LIGHT).resize((48, 36)))
    assert "too_small" in report.reasons
    assert report.measures["min_side"] == 36


def test_one_pixel_is_too_small_and_does_not_crash():
    report = assess_quality(Image.new("RGB", (1, 1), LIGHT))
    assert "too_small" in report.reasons


@pytest.mark.parametrize("tone", [LIGHT, DARK])
def test_too_blurry(tone):
    sharp = skin_texture(tone, size=(256, 256))
    blurred = sharp.filter(ImageFilter.GaussianBlur(4))
    report = assess_quality(blurred)
    assert report.reasons == ["too_blurry"], report.measures
    assert report.measures["sharpness"] < assess_quality(sharp).measures["sharpness"] / 10


def test_blur_at_phone_resolution_is_judged_at_working_size():
    # Mild blur at 1024 px vanishes at the working size; heavy blur does not.
    big = skin_texture(LIGHT, size=(1024, 768))
    assert assess_quality(big.filter(ImageFilter.GaussianBlur(1))).ok
    assert "too_blurry" in assess_quality(big.filter(ImageFilter.GaussianBlur(16))).reasons


def test_sharpness_does_not_depend_on_upload_resolution():
    big = skin_texture(LIGHT, size=(1024, 1024))
    small = big.resize((256, 256), Image.Resampling.BOX)
    a, b = measure(big)["sharpness"], measure(small)["sharpness"]
    assert abs(a - b) / b < 0.05


@pytest.mark.parametrize("factor", [0.15, 0.2])
def test_too_dark(factor):
    dim = Image.eval(skin_texture(LIGHT), lambda v: int(v * factor))
    report = assess_quality(dim)
    assert "too_dark" in report.reasons
    assert report.measures["brightness"] < 40


def test_too_dark_by_clipping():
    # Mean luma is fine but most of the frame is crushed to black (a spot lit in a dark room).
    image = skin_texture(LIGHT)
    image.paste((0, 0, 0), (0, 0, 512, 270))
    report = assess_quality(image)
    assert "too_dark" in report.reasons
    assert report.measures["dark_clip"] > 0.6


def test_too_bright():
    washed = Image.eval(skin_texture(LIGHT), lambda v: min(255, int(v * 2.5)))
    report = assess_quality(washed)
    assert "too_bright" in report.reasons
    assert report.measures["highlight_clip"] > 0.6 or report.measures["brightness"] > 235


@pytest.mark.parametrize(
    "colour",
    [(60, 140, 50), (80, 140, 230), (128, 128, 128), (30, 40, 120)],
    ids=["grass", "sky", "grey", "navy"],
)
def test_too_little_skin(colour):
    rng = np.random.default_rng(1)
    # Texture is mostly luma (shared by the channels) with a little colour noise, as in a real photo.
    noise = rng.normal(0, 20, (300, 400, 1)) + rng.normal(0, 4, (300, 400, 3))
    arr = np.clip(np.array(colour)[None, None, :] + noise, 0, 255)
    report = assess_quality(Image.fromarray(arr.astype(np.uint8)))
    assert report.reasons == ["too_little_skin"], report.measures
    assert report.measures["skin_fraction"] < 0.25


def test_skin_mask_tones_and_non_skin():
    tones = np.array([[LIGHT, MEDIUM, DARK, DEEP]], dtype=np.uint8)
    assert skin_mask(tones).all()
    others = np.array([[(60, 140, 50), (80, 140, 230), (128, 128, 128), (0, 0, 0), (255, 255, 255)]], np.uint8)
    assert not skin_mask(others).any()


def test_several_reasons_and_messages_in_order():
    tiny_dark_grass = Image.new("RGB", (30, 30), (5, 20, 5))
    report = assess_quality(tiny_dark_grass)
    assert report.reasons == [r for r in REASONS if r in report.reasons]
    assert {"too_small", "too_dark", "too_little_skin"} <= set(report.reasons)
    assert not report.ok
    assert report.messages() == [MESSAGES[r] for r in report.reasons]


def test_messages_are_plain_and_never_medical():
    assert set(MESSAGES) == set(REASONS)
    for reason, text in MESSAGES.items():
        assert text.strip().endswith("."), reason
        assert not FORBIDDEN.search(text), (reason, text)
    assert "blurry" in MESSAGES["too_blurry"] and "steady" in MESSAGES["too_blurry"]


def test_measures_are_named_floats():
    measures = assess_quality(skin_texture(LIGHT)).measures
    expected = {"width", "height", "min_side", "sharpness", "brightness", "contrast", "highlight_clip"}
    assert expected | {"dark_clip", "skin_fraction"} <= set(measures)
    assert all(isinstance(v, float) for v in measures.values())
    assert measures["width"] == 512 and measures["height"] == 384


def test_thresholds_can_be_overridden():
    image = skin_texture(LIGHT)
    assert "too_small" in assess_quality(image, QualityThresholds(min_side=1000)).reasons
    assert "too_blurry" in assess_quality(image, QualityThresholds(min_sharpness=1e9)).reasons
    assert assess_quality(image, QualityThresholds()).ok


def test_assess_quality_is_pure_and_accepts_any_mode():
    image = skin_texture(DARK)
    before = image.tobytes()
    assess_quality(image)
    assert image.tobytes() == before and image.mode == "RGB"
    assert assess_quality(image.convert("RGBA")).measures == assess_quality(image).measures
    grey = assess_quality(image.convert("L"))
    assert "too_little_skin" in grey.reasons  # no colour, no skin evidence


def test_report_ok_property():
    assert QualityReport(measures={}, reasons=[]).ok
    assert not QualityReport(measures={}, reasons=["too_dark"]).ok
