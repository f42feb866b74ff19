"""Tests for triage.inference.decode: every hostile upload is a DecodedPhoto or a kind UploadError, nothing else.

The files come from ``triage.testing.corpus`` (the one copy of the generators), built in memory or under
``tmp_path``; no real data is needed.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import load_corpus_module
from PIL import Image, ImageFile

from triage.inference import decode
from triage.inference.decode import (
    DEFAULT_MAX_SIDE,
    DRAFT_MIN_SIDE,
    DecodedPhoto,
    UploadError,
    decode_path,
    decode_upload,
    strip_metadata,
)

REPO = Path(__file__).resolve().parents[1]


corpus = load_corpus_module()
CASES = [c for c in corpus.CASES if not c.name.startswith("huge_")]


@pytest.fixture(scope="module")
def huge_jpeg() -> bytes:
    return corpus.make_huge_jpeg()


def _decode_or_error(data: bytes) -> DecodedPhoto | UploadError:
    try:
        return decode_upload(data)
    except UploadError as err:
        return err


def _mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case_decodes_or_refuses_kindly(case):
    data = case.make()
    if data is None:
        pytest.skip(f"{case.name}: cannot be made here (no encoder)")
    result = _decode_or_error(data)
    if case.expect == "ok":
        assert isinstance(result, DecodedPhoto), f"{case.name}: {result!r}"
        assert result.image.mode == "RGB"
        assert max(result.image.size) <= decode.DEFAULT_MAX_SIDE
        assert result.frames >= 1
    else:
        assert isinstance(result, UploadError), f"{case.name} decoded but should be refused"
        assert result.code == case.expect
        assert result.user_message.strip()
        assert "Traceback" not in result.user_message


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decode_path_matches_decode_upload(case, tmp_path):
    data = case.make()
    if data is None:
        pytest.skip(f"{case.name}: cannot be made here")
    path = tmp_path / case.name
    path.write_bytes(data)
    try:
        photo = decode_path(path)
        assert case.expect == "ok"
        assert photo.image.tobytes() == decode_upload(data).image.tobytes()
    except UploadError as err:
        assert err.code == case.expect


def test_write_corpus_writes_expectations(tmp_path):
    written = corpus.write_corpus(tmp_path / "gen", skip_huge=True)
    assert (tmp_path / "gen" / "expected.json").is_file()
    assert written["bomb_30000.png"] == "too_many_pixels"
    assert all((tmp_path / "gen" / name).is_file() for name in written)


def test_png_bomb_is_refused_fast_without_allocating():
    data = corpus.make_png_bomb()
    assert len(data) < 200
    start = time.perf_counter()
    with pytest.raises(UploadError) as info:
        decode_upload(data)
    assert time.perf_counter() - start < 0.5  # 2.7 GB would take far longer to allocate and fill.
    assert info.value.code == "too_many_pixels"


def test_png_bomb_is_refused_even_when_pillow_limit_is_disabled(monkeypatch):
    # Our own header check must hold even if some other code switched Pillow's bomb check off.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(UploadError) as info:
        decode_upload(corpus.make_png_bomb())
    assert info.value.code == "too_many_pixels"


def test_global_pillow_settings_untouched():
    before = Image.MAX_IMAGE_PIXELS
    decode_upload(corpus.jpeg())
    _decode_or_error(corpus.make_png_bomb())
    _decode_or_error(corpus.make_truncated_jpeg())
    assert Image.MAX_IMAGE_PIXELS == before
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_huge_jpeg_decodes_fast_via_draft(huge_jpeg):
    start = time.perf_counter()
    photo = decode_upload(huge_jpeg)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"108 MP JPEG took {elapsed:.2f}s"
    assert max(photo.image.size) <= 1024
    assert photo.original_size == (12000, 9000)
    assert photo.format == "JPEG"


def test_large_photo_downscaled_to_max_side():
    data = corpus.encode(corpus.textured_rgb((2400, 1600)), "PNG")
    photo = decode_upload(data, max_side=512)
    assert photo.image.size == (512, 341)
    assert photo.original_size == (2400, 1600)


def test_small_photo_not_upscaled():
    photo = decode_upload(corpus.jpeg((50, 30)))
    assert photo.image.size == (50, 30)


def test_exif_rotated_jpeg_matches_upright():
    rotated = decode_upload(corpus.make_exif_rotated_jpeg())
    upright = decode_upload(corpus.make_upright_jpeg())
    assert rotated.image.size == upright.image.size == (160, 96)
    assert rotated.original_size == (160, 96)
    assert _mean_abs_diff(rotated.image, upright.image) < 4.0  # JPEG noise only.
    # The dark marker block is top-left once orientation is applied.
    assert np.asarray(rotated.image)[:20, :40].mean() < 40


def test_large_exif_rotated_jpeg_reports_oriented_size():
    stored = corpus.textured_rgb((4000, 3000)).transpose(Image.Transpose.ROTATE_90)  # 3000 x 4000 stored
    exif = Image.Exif()
    exif[corpus.ORIENTATION] = 6
    data = corpus.encode(stored, "JPEG", quality=80, exif=exif.tobytes())
    photo = decode_upload(data)
    assert photo.original_size == (4000, 3000)
    # Decoded at 1/4 scale (draft), upright: landscape, 4:3, within the working size.
    w, h = photo.image.size
    assert w > h and w * 3 == h * 4 and DRAFT_MIN_SIDE <= h and w <= DEFAULT_MAX_SIDE


@pytest.mark.parametrize("name", ["metadata.jpg", "metadata.png", "exif_rotated.jpg"])
def test_metadata_never_survives(name):
    photo = decode_upload(corpus.BY_NAME[name].make())
    image = photo.image
    assert not set(image.info) & {"exif", "icc_profile", "comment", "Comment", "Author", "xmp", "dpi"}
    assert image.info == {}
    assert len(image.getexif()) == 0
    out = io.BytesIO()
    image.save(out, "PNG")
    assert corpus.SECRET_MAKE.encode() not in out.getvalue()
    assert corpus.SECRET_COMMENT not in out.getvalue()


def test_strip_metadata_returns_clean_rgb():
    source = Image.open(io.BytesIO(corpus.make_metadata_jpeg()))
    assert "exif" in source.info
    clean = strip_metadata(source)
    assert clean.mode == "RGB" and clean.info == {} and len(clean.getexif()) == 0
    assert clean.tobytes() == source.convert("RGB").tobytes()
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert strip_metadata(rgba).getpixel((0, 0)) == (255, 255, 255)


def test_logs_hold_no_metadata(caplog):
    caplog.set_level(logging.DEBUG)
    decode_upload(corpus.make_metadata_jpeg())
    decode_upload(corpus.make_exif_rotated_jpeg())
    _decode_or_error(corpus.make_metadata_jpeg()[:400])
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert corpus.SECRET_MAKE not in text
    assert corpus.SECRET_COMMENT.decode() not in text


def test_animated_gif_first_frame():
    photo = decode_upload(corpus.make_animated_gif())
    assert photo.frames == 3 and photo.format == "GIF"
    r, g, b = photo.image.getpixel((10, 10))
    assert r > 150 and g < 100 and b < 100  # the first frame is red


def test_multipage_tiff_first_page():
    photo = decode_upload(corpus.make_multipage_tiff())
    assert photo.frames == 3 and photo.format == "TIFF"
    assert photo.image.getpixel((10, 10)) == (200, 40, 40)


def test_palette_transparency_composited_on_white():
    photo = decode_upload(corpus.make_palette_transparent_png())
    assert photo.image.getpixel((5, 5)) == (255, 255, 255)
    assert photo.image.getpixel((50, 5)) == (255, 0, 0)


def test_rgba_composited_on_white():
    photo = decode_upload(corpus.make_rgba_png())
    assert photo.image.getpixel((5, 5)) == (255, 255, 255)
    assert photo.image.getpixel((50, 5)) == (205, 150, 125)


def test_16bit_png_scaled_not_clipped():
    photo = decode_upload(corpus.make_gray16_png())
    row = np.asarray(photo.image)[0, :, 0].astype(int)
    assert row[0] <= 2 and row[-1] >= 253
    assert abs(row[64] - 128) <= 4  # mid-grey stays mid-grey (clipping would give 255)
    assert np.all(np.diff(row) >= 0)


def test_cmyk_jpeg_colours_close_to_rgb_source():
    photo = decode_upload(corpus.make_cmyk_jpeg())
    source = corpus.textured_rgb((96, 64), seed=3)
    assert _mean_abs_diff(photo.image, source) < 12


def test_grayscale_becomes_rgb():
    photo = decode_upload(corpus.make_grayscale_jpeg())
    arr = np.asarray(photo.image)
    assert arr.shape == (64, 96, 3)
    assert np.array_equal(arr[..., 0], arr[..., 1])


def test_one_pixel_decodes():
    photo = decode_upload(corpus.make_one_pixel())
    assert photo.image.size == (1, 1) and photo.original_size == (1, 1)


def test_heic_decodes_when_pillow_heif_can_encode():
    data = corpus.make_heic()
    if data is None:
        pytest.skip("pillow-heif cannot encode HEIC here, so no HEIC sample can be made")
    photo = decode_upload(data)
    assert photo.format == "HEIF"
    assert photo.image.size == (96, 64)
    assert _mean_abs_diff(photo.image, corpus.textured_rgb((96, 64), seed=8)) < 10


def test_heic_orientation_applied_and_metadata_dropped():
    if corpus.make_heic() is None:
        pytest.skip("pillow-heif cannot encode HEIC here")
    stored = corpus.upright_pattern().transpose(Image.Transpose.ROTATE_90)
    data = corpus.encode(stored, "HEIF", quality=95, exif=corpus.secret_exif(orientation=6).tobytes())
    photo = decode_upload(data)
    assert photo.image.size == (160, 96) and photo.original_size == (160, 96)
    assert _mean_abs_diff(photo.image, corpus.upright_pattern()) < 6
    assert photo.image.info == {} and len(photo.image.getexif()) == 0


def test_heic_without_pillow_heif_is_unsupported(monkeypatch):
    data = corpus.make_heic()
    if data is None:
        pytest.skip("no HEIC sample")
    monkeypatch.setattr(decode, "_heif_available", lambda: False)
    with pytest.raises(UploadError) as info:
        decode_upload(data)
    assert info.value.code == "unsupported"
    assert "HEIC" in info.value.user_message or "format" in info.value.user_message


def test_polyglot_opens_as_jpeg():
    photo = decode_upload(corpus.make_polyglot_zip_jpeg())
    assert photo.format == "JPEG" and photo.image.size == (96, 64)


def test_too_large_bytes(monkeypatch, tmp_path):
    data = corpus.jpeg((200, 200))
    monkeypatch.setattr(decode, "MAX_BYTES", len(data) - 1)
    with pytest.raises(UploadError) as info:
        decode_upload(data)
    assert info.value.code == "too_large_bytes"
    path = tmp_path / "big.jpg"
    path.write_bytes(data)
    with pytest.raises(UploadError) as info:
        decode_path(path)
    assert info.value.code == "too_large_bytes"


def test_decode_path_checks_size_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "sparse.jpg"
    with open(path, "wb") as fh:
        fh.truncate(decode.MAX_BYTES + 1)  # sparse: no 20 MiB actually written
    read_sizes = []
    real_open = open

    def spy_open(*args, **kwargs):
        fh = real_open(*args, **kwargs)
        original_read = fh.read

        def read(n=-1):
            read_sizes.append(n)
            return original_read(n)

        fh.read = read
        return fh

    monkeypatch.setattr("builtins.open", spy_open)
    with pytest.raises(UploadError) as info:
        decode_path(path)
    assert info.value.code == "too_large_bytes"
    assert read_sizes == []


def test_decode_path_missing_file(tmp_path):
    with pytest.raises(UploadError) as info:
        decode_path(tmp_path / "nope.jpg")
    assert info.value.code == "unreadable"
    assert info.value.user_message


def test_jpeg_too_many_pixels_after_draft(monkeypatch):
    # With a tiny MAX_PIXELS even the draft-reduced JPEG is too big: refused, not decoded.
    monkeypatch.setattr(decode, "MAX_PIXELS", 1000)
    with pytest.raises(UploadError) as info:
        decode_upload(corpus.jpeg((200, 200)))
    assert info.value.code == "too_many_pixels"


def test_upload_error_has_code_and_message():
    err = UploadError("truncated")
    assert err.code == "truncated" and err.user_message.endswith(".")
    assert UploadError("not_an_image", "Custom sentence.").user_message == "Custom sentence."


def test_no_torch_import():
    # The serving path must stay light: decoding must not pull in torch.
    code = "import sys, triage.inference.decode; sys.exit('torch' in sys.modules)"
    import subprocess

    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the corrupt EXIF we make.
def test_fuzzed_files_never_raise_anything_else():
    # Truncations and random byte flips of small valid files in every format: only our two outcomes.
    rng = np.random.default_rng(0)
    image = corpus.textured_rgb((48, 32))
    seeds = [corpus.encode(image, fmt) for fmt in ("JPEG", "PNG", "GIF", "TIFF", "BMP", "WEBP")]
    seeds += [corpus.make_animated_gif(), corpus.make_metadata_jpeg(), corpus.make_heic()]
    for data in filter(None, seeds):
        variants = [data[:cut] for cut in range(1, len(data), max(1, len(data) // 12))]
        for _ in range(25):
            flipped = bytearray(data)
            for pos in rng.integers(0, len(data), size=int(rng.integers(1, 6))):
                flipped[pos] = int(rng.integers(0, 256))
            variants.append(bytes(flipped))
        for variant in variants:
            result = _decode_or_error(variant)
            assert isinstance(result, DecodedPhoto | UploadError)
            if isinstance(result, UploadError):
                assert result.user_message


def test_log_detail_hides_quoted_bytes():
    err = SyntaxError("not a TIFF file (header b'II*\\x00secret' not valid)")
    detail = decode._safe_detail(err)
    assert "secret" not in detail and detail.startswith("SyntaxError")
