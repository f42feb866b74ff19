"""Generate the hostile-upload corpus: odd, broken and malicious files for ``triage.inference.decode``.

This module is the one copy of the generators: the tests and ``bench/fuzz_decode.py`` import it, and
``scripts/make_corpus.py`` writes every case into a folder (default ``tests/corpus/generated``, which git
ignores)::

    python scripts/make_corpus.py [--out DIR] [--skip-huge]

Each case is a :class:`Case`: a file name, a function returning the file's bytes (``None`` when this
machine cannot make it, e.g. no HEIC encoder) and what decoding should give: ``"ok"`` or the
``UploadError`` code.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests" / "corpus" / "generated"

#: Strings planted in metadata; they must never come out of ``decode_upload`` or into logs.
SECRET_MAKE = "SecretCameraMake-1234"
SECRET_COMMENT = b"secret comment: patient name here"
GPS_IFD = 0x8825
ORIENTATION = 0x0112


@dataclass(frozen=True)
class Case:
    """One corpus file.

    Attributes:
        name: file name (its extension is what an uploader would claim, not necessarily the truth).
        make: returns the file's bytes, or ``None`` when it cannot be made here.
        expect: ``"ok"`` when it must decode, otherwise the expected ``UploadError.code``.
        note: why the case exists.
    """

    name: str
    make: Callable[[], bytes | None]
    expect: str
    note: str = ""


# ----------------------------------------------------------------------------------------------------------
# Building blocks


def textured_rgb(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A smooth, photo-like RGB texture (compresses like a photo, unlike flat colour or white noise)."""
    w, h = size
    rng = np.random.default_rng(seed)
    small = rng.uniform(60, 220, size=(8, 8, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), dtype=np.int16)
    noise = rng.normal(0, 6, size=(h, w, 1)).astype(np.int16)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    """Encode ``image`` with Pillow into bytes."""
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def jpeg(size: tuple[int, int] = (96, 64), seed: int = 0, quality: int = 90, **params) -> bytes:
    """A small textured JPEG."""
    return encode(textured_rgb(size, seed), "JPEG", quality=quality, **params)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC over type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` RGB but whose IDAT holds one tiny row.

    A decoder that trusts the header allocates ``width * height * 3`` bytes (2.7 GB for 30000 x 30000)
    before noticing the data is short: the classic decompression bomb shape, in a ~100-byte file.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x80" * 30)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def srgb_icc() -> bytes:
    """An sRGB ICC profile, to check profiles are dropped."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def secret_exif(orientation: int | None = None) -> Image.Exif:
    """EXIF with a camera make and a GPS position (and optionally an orientation)."""
    exif = Image.Exif()
    exif[0x010F] = SECRET_MAKE
    exif[GPS_IFD] = {1: "N", 2: (51.0, 30.0, 12.5), 3: "W", 4: (0.0, 7.0, 39.0)}
    if orientation is not None:
        exif[ORIENTATION] = orientation
    return exif


def upright_pattern(size: tuple[int, int] = (160, 96)) -> Image.Image:
    """A landscape picture whose orientation is obvious (a dark block top-left on a textured ground)."""
    image = textured_rgb(size, seed=7)
    image.paste((20, 20, 20), (0, 0, size[0] // 3, size[1] // 3))
    image.paste((240, 240, 240), (size[0] * 2 // 3, size[1] * 2 // 3, size[0], size[1]))
    return image


# ----------------------------------------------------------------------------------------------------------
# Cases


def make_empty() -> bytes:
    return b""


def make_text_renamed() -> bytes:
    return b"This is a shopping list, renamed to .jpg.\nmilk\neggs\n"


def make_html() -> bytes:
    return b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>\n"


def make_svg() -> bytes:
    return (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
        b'<circle cx="50" cy="50" r="40" fill="rgb(205,150,125)"/><script>alert(1)</script></svg>\n'
    )


def make_truncated_jpeg() -> bytes:
    data = jpeg((256, 192), seed=1)
    return data[: len(data) // 2]


def make_truncated_png() -> bytes:
    data = encode(textured_rgb((256, 192), seed=2), "PNG")
    return data[: len(data) * 6 // 10]


def make_one_pixel() -> bytes:
    return encode(Image.new("RGB", (1, 1), (205, 150, 125)), "PNG")


def make_png_bomb() -> bytes:
    return png_with_header(30000, 30000)


def make_sixteen_pixels() -> bytes:
    return encode(textured_rgb((16, 16), seed=13), "PNG")


def make_rgb16_png() -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one, so the chunks are built here): a red ramp."""
    width, height = 64, 32
    pixels = np.zeros((height, width, 3), dtype=">u2")
    pixels[..., 0] = np.linspace(0, 65535, width).astype(np.uint16)[None, :]
    pixels[..., 1] = 40000
    pixels[..., 2] = 1000
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter type 0 on every row
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def gif_with_screen(width: int, height: int) -> bytes:
    """A 4x4 GIF whose logical screen claims ``width`` x ``height`` (Pillow's size is the logical screen)."""
    data = encode(Image.new("P", (4, 4), 0), "GIF")
    return data[:6] + struct.pack("<HH", width, height) + data[10:]


def make_gif_bomb() -> bytes:
    return gif_with_screen(65535, 65535)


def make_tall_gif() -> bytes:
    """Fuzz finding: ~40 bytes, screen 255 x 65535 (16.7 MP, legal): decodes, at the cost of a 16.7 MP canvas."""
    return gif_with_screen(255, 65535)


def make_wide_truncated_png() -> bytes:
    """Fuzz finding: ~70 bytes claiming 33554433 x 1 (legal pixel count, no data): was decoded twice, ~1.5 s each."""
    return png_with_header(33554433, 1)


def make_jpeg_header_bomb() -> bytes:
    """A 16x16 JPEG whose SOF0 header claims 65500 x 65500 (4.3 GP, over MAX_JPEG_HEADER_PIXELS)."""
    data = jpeg((16, 16), seed=14)
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", 65500, 65500) + data[sof + 9 :]


def tiff_with_header(width: int, height: int) -> bytes:
    """A 1x1 uncompressed little-endian TIFF whose ImageWidth / ImageLength tags are patched to the given size."""
    data = bytearray(encode(Image.new("RGB", (1, 1), (205, 150, 125)), "TIFF"))
    assert data[:4] == b"II*\x00", data[:4]
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd : ifd + 2])
    for k in range(count):
        entry = ifd + 2 + 12 * k
        tag, kind = struct.unpack("<HH", data[entry : entry + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength
            value = width if tag == 256 else height
            data[entry + 8 : entry + 12] = struct.pack("<I", value) if kind == 4 else struct.pack("<HH", value, 0)
    return bytes(data)


def make_tiff_bomb() -> bytes:
    return tiff_with_header(30000, 30000)


def make_png_over_limit() -> bytes:
    # 8000 x 8000 = 64 MP: under Pillow's own bomb warning (89 MP), over our MAX_PIXELS (40 MP).
    return png_with_header(8000, 8000)


def make_animated_gif() -> bytes:
    frames = [Image.new("RGB", (64, 48), c) for c in ((200, 40, 40), (40, 200, 40), (40, 40, 200))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def make_multipage_tiff() -> bytes:
    pages = [Image.new("RGB", (64, 48), c) for c in ((200, 40, 40), (40, 200, 40), (40, 40, 200))]
    return encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def make_cmyk_jpeg() -> bytes:
    return encode(textured_rgb((96, 64), seed=3).convert("CMYK"), "JPEG", quality=90)


def make_gray16_png() -> bytes:
    ramp = np.tile(np.linspace(0, 65535, 128).astype(np.uint16), (64, 1))
    image = Image.fromarray(ramp)  # uint16 -> mode "I;16"
    assert image.mode == "I;16", image.mode
    return encode(image, "PNG")


def make_palette_transparent_png() -> bytes:
    # Left half transparent, right half opaque red: decode must show white on the left, not black.
    image = Image.new("P", (64, 32), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 - 2) * 3)
    image.paste(1, (32, 0, 64, 32))
    return encode(image, "PNG", transparency=0)


def make_rgba_png() -> bytes:
    image = Image.new("RGBA", (64, 32), (0, 0, 0, 0))
    image.paste((205, 150, 125, 255), (32, 0, 64, 32))
    return encode(image, "PNG")


def make_grayscale_jpeg() -> bytes:
    return encode(textured_rgb((96, 64), seed=4).convert("L"), "JPEG", quality=90)


def make_webp() -> bytes:
    return encode(textured_rgb((96, 64), seed=5), "WEBP", quality=90)


def make_bmp() -> bytes:
    return encode(textured_rgb((96, 64), seed=6), "BMP")


def make_heic() -> bytes | None:
    """A HEIC photo, or ``None`` when pillow-heif (or its HEVC encoder) is missing here."""
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        return encode(textured_rgb((96, 64), seed=8), "HEIF", quality=90)
    except Exception:
        return None


def make_garbage_appended_jpeg() -> bytes:
    return jpeg(seed=9) + b"\x00GARBAGE" * 64


def make_polyglot_zip_jpeg() -> bytes:
    """A valid JPEG with a zip archive appended: also a valid zip. Must open as the JPEG only."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("payload.txt", "not for the image decoder")
    return jpeg(seed=10) + buf.getvalue()


def make_exif_rotated_jpeg() -> bytes:
    """The upright pattern stored rotated, with EXIF orientation 6 ("rotate 90 degrees clockwise to view")."""
    stored = upright_pattern().transpose(Image.Transpose.ROTATE_90)
    return encode(stored, "JPEG", quality=95, exif=secret_exif(orientation=6).tobytes())


def make_upright_jpeg() -> bytes:
    return encode(upright_pattern(), "JPEG", quality=95)


def make_metadata_jpeg() -> bytes:
    return jpeg(seed=11, exif=secret_exif().tobytes(), icc_profile=srgb_icc(), comment=SECRET_COMMENT)


def make_metadata_png() -> bytes:
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", SECRET_COMMENT.decode())
    text.add_text("Author", SECRET_MAKE)
    return encode(
        textured_rgb((96, 64), seed=12),
        "PNG",
        pnginfo=text,
        exif=secret_exif().tobytes(),
        icc_profile=srgb_icc(),
    )


def make_huge_jpeg(size: tuple[int, int] = (12000, 9000)) -> bytes:
    """A 108 MP JPEG, made quickly: a greyscale gradient scaled up, as RGB, quality 50 (~1-2 MB)."""
    gradient = Image.linear_gradient("L").resize(size, Image.Resampling.BILINEAR)
    rgb = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient))
    return encode(rgb, "JPEG", quality=50)


def png_repeated_row(width: int, height: int, bit_depth: int, colour_type: int, row: bytes) -> bytes:
    """A PNG of ``height`` copies of one raw ``row``, compressed as a stream (a 40 MP file in under a second).

    Tiny on disk, large in memory: the shape of an upload that costs the server far more than its size.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    compressor = zlib.compressobj(9)
    line = b"\x00" + row  # filter type 0
    idat = b"".join(compressor.compress(line) for _ in range(height)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


#: Side of the square "large but legal" images: 6300 x 6300 = 39.7 MP, just under ``MAX_PIXELS``.
LEGAL_MAX_SIDE = 6300


def make_huge_gray16_png() -> bytes:
    """39.7 MP 16-bit greyscale stripes in ~90 KB (converting it at full size once took ~1 GB of memory)."""
    return png_repeated_row(LEGAL_MAX_SIDE, LEGAL_MAX_SIDE, 16, 0, b"\xff\xff\x00\x00" * (LEGAL_MAX_SIDE // 2))


def make_huge_rgba_png() -> bytes:
    """39.7 MP half-transparent skin tone in ~160 KB (alpha: flattened onto white, after shrinking)."""
    return png_repeated_row(LEGAL_MAX_SIDE, LEGAL_MAX_SIDE, 8, 6, bytes((205, 150, 125, 128)) * LEGAL_MAX_SIDE)


def make_not_an_image_binary() -> bytes:
    return bytes(range(256)) * 8


CASES: tuple[Case, ...] = (
    Case("empty.jpg", make_empty, "empty", "zero bytes"),
    Case("text_renamed.jpg", make_text_renamed, "not_an_image", "plain text with a .jpg name"),
    Case("page.html", make_html, "not_an_image", "HTML with a script"),
    Case("drawing.svg", make_svg, "not_an_image", "SVG (XML, may carry scripts)"),
    Case("random_binary.jpg", make_not_an_image_binary, "not_an_image", "binary that is no image"),
    Case("truncated.jpg", make_truncated_jpeg, "truncated", "first half of a JPEG"),
    Case("truncated.png", make_truncated_png, "truncated", "first 60% of a PNG"),
    Case("one_pixel.png", make_one_pixel, "ok", "1x1: decodes; quality checks flag it"),
    Case("sixteen.png", make_sixteen_pixels, "ok", "16x16: decodes; quality checks flag it"),
    Case("bomb_30000.png", make_png_bomb, "too_many_pixels", "IHDR 30000x30000, ~100 bytes"),
    Case("header_8000.png", make_png_over_limit, "too_many_pixels", "IHDR 8000x8000: over MAX_PIXELS"),
    Case("bomb_65535.gif", make_gif_bomb, "too_many_pixels", "GIF logical screen 65535x65535"),
    Case("bomb_65500.jpg", make_jpeg_header_bomb, "too_many_pixels", "JPEG SOF0 65500x65500"),
    Case("bomb_30000.tiff", make_tiff_bomb, "too_many_pixels", "TIFF tags 30000x30000, ~150 bytes"),
    Case("tall_255x65535.gif", make_tall_gif, "ok", "fuzz finding: tiny GIF, 16.7 MP screen"),
    Case("wide_33554433x1.png", make_wide_truncated_png, "truncated", "fuzz finding: tiny PNG, one huge row"),
    Case("animated.gif", make_animated_gif, "ok", "3 frames: first one used"),
    Case("multipage.tiff", make_multipage_tiff, "ok", "3 pages: first one used"),
    Case("cmyk.jpg", make_cmyk_jpeg, "ok", "CMYK JPEG"),
    Case("gray16.png", make_gray16_png, "ok", "16-bit greyscale PNG (I;16)"),
    Case("rgb16.png", make_rgb16_png, "ok", "16 bits per channel RGB PNG"),
    Case("palette_transparent.png", make_palette_transparent_png, "ok", "palette with transparency"),
    Case("rgba.png", make_rgba_png, "ok", "alpha channel"),
    Case("grayscale.jpg", make_grayscale_jpeg, "ok", "8-bit greyscale JPEG"),
    Case("photo.webp", make_webp, "ok", "WebP"),
    Case("photo.bmp", make_bmp, "ok", "BMP"),
    Case("photo.heic", make_heic, "ok", "HEIC (needs pillow-heif with an encoder to make)"),
    Case("garbage_appended.jpg", make_garbage_appended_jpeg, "ok", "bytes after the JPEG end marker"),
    Case("polyglot_zip.jpg", make_polyglot_zip_jpeg, "ok", "JPEG + zip archive appended"),
    Case("exif_rotated.jpg", make_exif_rotated_jpeg, "ok", "EXIF orientation 6, GPS"),
    Case("upright.jpg", make_upright_jpeg, "ok", "what exif_rotated.jpg must decode to"),
    Case("metadata.jpg", make_metadata_jpeg, "ok", "EXIF with GPS, ICC profile, comment"),
    Case("metadata.png", make_metadata_png, "ok", "text chunks, EXIF with GPS, ICC profile"),
    Case("huge_12000x9000.jpg", make_huge_jpeg, "ok", "108 MP: decoded at 1/8 scale via draft"),
    Case("huge_gray16_6300.png", make_huge_gray16_png, "ok", "39.7 MP 16-bit PNG, ~90 KB: shrunk before converting"),
    Case("huge_rgba_6300.png", make_huge_rgba_png, "ok", "39.7 MP RGBA PNG, ~160 KB: shrunk before flattening"),
)

#: Cases by file name.
BY_NAME: dict[str, Case] = {case.name: case for case in CASES}


def write_corpus(out: Path, skip_huge: bool = False) -> dict[str, str]:
    """Write every case into ``out``; return ``{name: expect}`` for the cases written (also as JSON)."""
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for case in CASES:
        if skip_huge and case.name.startswith("huge_"):
            continue
        data = case.make()
        if data is None:
            print(f"skipped {case.name}: cannot be made on this machine", file=sys.stderr)
            continue
        (out / case.name).write_bytes(data)
        written[case.name] = case.expect
    (out / "expected.json").write_text(json.dumps(written, indent=1) + "\n", encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> None:
    """Write the corpus (``scripts/make_corpus.py``)."""
    parser = argparse.ArgumentParser(description="Write the hostile-upload corpus.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder (default {DEFAULT_OUT})")
    parser.add_argument("--skip-huge", action="store_true", help="leave out the huge_* cases (slow to make)")
    args = parser.parse_args(argv)
    written = write_corpus(args.out, skip_huge=args.skip_huge)
    print(f"wrote {len(written)} files to {args.out}")


if __name__ == "__main__":
    main()
