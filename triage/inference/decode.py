"""Decode any upload safely into a clean, small RGB photo.

This is on the serving path: it must stay light (Pillow, numpy, optional
pillow-heif) and never import torch or training code.

Every failure becomes an :class:`UploadError` carrying a short ``code`` and a
plain, kind ``user_message`` for the person. Technical details go to this
module's logger only, and never the image bytes or its EXIF (which may hold a
location or a name).

Limits (values in :mod:`triage.inference.limits`), checked in this order, each before any pixel is decoded:

* ``MAX_BYTES``: the upload's size in bytes.
* ``MAX_JPEG_HEADER_PIXELS``: a JPEG's pixel count as declared in its header.
  JPEGs are decoded at a reduced scale (:meth:`PIL.Image.Image.draft`), so a
  108 MP phone photo never becomes 108 MP in memory.
* ``MAX_PIXELS``: the pixel count that would actually be decoded: for JPEG the
  size after draft reduction, for every other format the header size.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, UnidentifiedImageError

from triage.core.pixels import apply_orientation, orientation_of, to_rgb
from triage.inference import limits

logger = logging.getLogger(__name__)

# Pillow's plugins log every EXIF tag they parse (camera make, GPS position...) at DEBUG level. Keep that
# out of serving logs unless the application has configured the "PIL" logger itself.
if logging.getLogger("PIL").level == logging.NOTSET:
    logging.getLogger("PIL").setLevel(logging.INFO)

# The limits live in triage.inference.limits (one place for every serving limit); these module names are what the
# functions below read, so tests can tighten one limit for this module alone.
MAX_BYTES = limits.MAX_UPLOAD_BYTES
MAX_PIXELS = limits.MAX_PIXELS
MAX_JPEG_HEADER_PIXELS = limits.MAX_JPEG_HEADER_PIXELS

#: Default longest side of the decoded photo. Large enough for the quality checks and the model's crop.
DEFAULT_MAX_SIDE = 1024

#: Smallest side a JPEG's reduced-scale (draft) decoding may go down to. Everything downstream works on far
#: fewer pixels (quality checks on a 256 px shorter side, the model on a 176 px square), so 512 keeps a
#: margin while letting a 12 MP photo decode at 1/4 scale instead of 1/2 (end to end 115 -> 57 ms median,
#: measured side by side with ``bench/latency.py``'s photo).
DRAFT_MIN_SIDE = 512

#: Formats we open. Listing them stops Pillow from trying every plugin it has (EPS would call Ghostscript,
#: and odd formats widen the attack surface). Pillow's JPEG opener also returns MPO (multi-picture) files,
#: which is how many phone JPEGs open.
_ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")
_JPEG_FORMATS = ("JPEG", "MPO")
#: Modes that Pillow resamples properly as they are (alpha premultiplied, 16 bits kept) and that
#: :func:`triage.core.pixels.to_rgb` converts the same way at any size. Not here: palette and 1-bit images
#: (Pillow resizes those nearest-neighbour only) and 32-bit integer or float (their scaling is chosen from the
#: pixel range, which resampling overshoot can shift): those are converted first, then shrunk.
_SHRINK_FIRST_MODES = frozenset(
    {"L", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "I;16", "I;16L", "I;16B", "I;16N"}
)
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
_UNSUPPORTED_BRANDS = {b"avif", b"avis"}

_MESSAGES: dict[str, str] = {
    "empty": "The file is empty. Please choose a photo and try again.",
    "too_large_bytes": (
        f"This file is too large. Please send a photo smaller than {limits.MAX_UPLOAD_BYTES // 2**20} MB."
    ),
    "too_many_pixels": "This image is too large to open. Please send an ordinary phone photo.",
    "not_an_image": "This file doesn't look like a photo. Please send a JPEG, PNG or HEIC photo.",
    "unsupported": "This photo format isn't supported yet. Please send a JPEG, PNG or HEIC photo.",
    "truncated": "The photo seems to be incomplete. Please try sending it again.",
    "corrupt": "The photo seems to be damaged and can't be opened. Please take or choose another one.",
    "unreadable": "The file could not be read. Please choose the photo again.",
    "timeout": "Checking this photo took too long. Please try again, or send an ordinary phone photo.",
}


class UploadError(Exception):
    """An upload we cannot turn into a photo.

    Attributes:
        code: a short machine-readable reason, e.g. ``"empty"`` or ``"truncated"``.
        user_message: a plain, kind sentence that can be shown to the person as is.
    """

    def __init__(self, code: str, user_message: str | None = None) -> None:
        self.code = code
        self.user_message = user_message or _MESSAGES.get(code, _MESSAGES["corrupt"])
        super().__init__(f"{code}: {self.user_message}")


@dataclass
class DecodedPhoto:
    """A decoded upload.

    Attributes:
        image: RGB image, orientation applied, longer side at most ``max_side``, no metadata at all.
        original_size: ``(width, height)`` of the full-resolution photo after orientation.
        format: Pillow's name of the file format, e.g. ``"JPEG"`` or ``"HEIF"``.
        frames: number of frames or pages in the file (only the first is used).
    """

    image: Image.Image
    original_size: tuple[int, int]
    format: str
    frames: int


_heif_lock = threading.Lock()
_heif_state: bool | None = None  # None: not tried yet; True: registered; False: unavailable.


def _heif_available() -> bool:
    """Register the pillow-heif opener once, on first need (its import is slow-ish and optional)."""
    global _heif_state
    with _heif_lock:
        if _heif_state is None:
            try:
                import pillow_heif

                pillow_heif.register_heif_opener()
                _heif_state = True
            except Exception as err:  # ImportError, or a broken native library.
                logger.warning("HEIC support unavailable: %s", type(err).__name__)
                _heif_state = False
        return _heif_state


def _sniff(data: bytes) -> str | None:
    """Classify the first bytes: ``"heif"``, ``"unsupported"``, ``"text"`` or ``None`` (let Pillow try)."""
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _HEIF_BRANDS:
            return "heif"
        if brand in _UNSUPPORTED_BRANDS:
            return "unsupported"
    if data[:4] == b"8BPS" or data[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n" or data[:2] == b"\xff\x0a":
        return "unsupported"  # Photoshop, JPEG XL: real images we simply do not read.
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<", b"{", b"%pdf")):
        return "text"  # SVG, HTML, XML, JSON, PDF: named in the log so refusals are easy to understand.
    return None


def strip_metadata(image: Image.Image) -> Image.Image:
    """Return a fresh RGB copy of ``image``'s pixels with no metadata (no EXIF, ICC, comments, text).

    Building a new image from raw pixels is the only way to be sure nothing rides along: ``info``,
    EXIF, XMP and ICC profiles all live outside the pixel buffer.
    """
    if image.mode != "RGB":
        image = to_rgb(image)
    return Image.frombytes("RGB", image.size, image.tobytes())


def _count_frames(image: Image.Image) -> int:
    try:
        return max(1, int(getattr(image, "n_frames", 1)))
    except Exception as err:  # A broken later frame: we only use the first one anyway.
        logger.info("could not count frames: %s", type(err).__name__)
        return 1


def _classify_load_error(err: BaseException) -> str:
    text = str(err).lower()
    if isinstance(err, EOFError) or "truncated" in text or "end of file" in text:
        return "truncated"
    return "corrupt"


_BYTES_LITERAL = re.compile(r"""b(['"]).*?(?<!\\)\1""")


def _safe_detail(err: BaseException) -> str:
    """The exception for the log, without the header bytes some Pillow messages quote."""
    text = _BYTES_LITERAL.sub("<bytes>", str(err))
    return f"{type(err).__name__}: {text[:160]}"


def decode_upload(data: bytes, max_side: int = DEFAULT_MAX_SIDE) -> DecodedPhoto:
    """Decode an uploaded file into a metadata-free RGB photo.

    Args:
        data: the raw bytes of the upload.
        max_side: longest side of the returned image; larger photos are downscaled, smaller ones kept.

    Returns:
        The decoded photo (first frame or page of multi-frame files).

    Raises:
        UploadError: for anything that is not a readable photo within the limits.
    """
    if max_side < 1:
        raise ValueError("max_side must be positive")
    if not data:
        raise UploadError("empty")
    if len(data) > MAX_BYTES:
        logger.info("upload refused: %d bytes > %d", len(data), MAX_BYTES)
        raise UploadError("too_large_bytes")

    kind = _sniff(data)
    formats = list(_ALLOWED_FORMATS)
    if kind == "text":
        logger.info("upload refused: text or markup, not an image")
        raise UploadError("not_an_image")
    if kind == "unsupported":
        logger.info("upload refused: unsupported image container")
        raise UploadError("unsupported")
    if kind == "heif":
        if not _heif_available():
            raise UploadError("unsupported")
        formats.append("HEIF")

    try:
        # We apply our own, stricter size limits right after open; Pillow's warning between its soft
        # and hard limits is therefore noise here. Its hard limit (DecompressionBombError) still applies.
        # Image.MAX_IMAGE_PIXELS is left alone: it is process-wide and other threads may be decoding.
        # (catch_warnings is not thread-safe either, but at worst it leaves this one warning silenced.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return _decode(data, formats, max_side)
    except UploadError:
        raise
    except Image.DecompressionBombError:
        logger.info("upload refused by Pillow's decompression-bomb limit")
        raise UploadError("too_many_pixels") from None
    except MemoryError:
        logger.warning("upload refused: out of memory while decoding")
        raise UploadError("too_many_pixels") from None
    except UnidentifiedImageError:
        logger.info("upload refused: not a recognised image (%d bytes)", len(data))
        raise UploadError("not_an_image") from None
    except Exception as err:  # Decoder errors come in many types (OSError, SyntaxError, ValueError...).
        code = _classify_load_error(err)
        logger.info("upload refused: %s (%s)", code, _safe_detail(err))
        raise UploadError(code) from None


def _decode(data: bytes, formats: list[str], max_side: int) -> DecodedPhoto:
    """The decode itself; every exception is mapped to an UploadError by the caller."""
    # Never rely on ImageFile.LOAD_TRUNCATED_IMAGES: a truncated photo must be refused, not half-grey.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        logger.warning("ImageFile.LOAD_TRUNCATED_IMAGES is set globally; truncated photos may slip through")

    with Image.open(io.BytesIO(data), formats=formats) as im:
        fmt = im.format or "unknown"
        width, height = im.size
        if width < 1 or height < 1:
            raise UploadError("corrupt")
        header_pixels = width * height
        is_jpeg = fmt in _JPEG_FORMATS
        if header_pixels > (MAX_JPEG_HEADER_PIXELS if is_jpeg else MAX_PIXELS):
            logger.info("upload refused: %s header %dx%d", fmt, width, height)
            raise UploadError("too_many_pixels")

        frames = _count_frames(im)
        if frames > 1:
            im.seek(0)

        if not is_jpeg:
            # PNG keeps EXIF after the pixels, so reading the orientation decodes the image; if that fails it is
            # caught there and the load below decoded it all again (seconds, for a 69-byte PNG claiming
            # 33554433 x 1). Nothing to draft outside JPEG, so load once, here. (Found by bench/fuzz_decode.py.)
            im.load()
        orientation = orientation_of(im)
        original_size = (height, width) if orientation in (5, 6, 7, 8) else (width, height)

        if is_jpeg:
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: the result stays >= DRAFT_MIN_SIDE (or max_side, if
            # smaller) on both axes, so a 4000x3000 photo decodes at 1000x750 in a fraction of the time and memory.
            im.draft("RGB", (min(max_side, DRAFT_MIN_SIDE),) * 2)
            if im.size[0] * im.size[1] > MAX_PIXELS:
                logger.info("upload refused: JPEG still %dx%d after draft", *im.size)
                raise UploadError("too_many_pixels")

        im.load()
        if im.mode in _SHRINK_FIRST_MODES:
            # Shrink before rotating or converting: at full size each of those copies the whole image, and
            # converting 16-bit or alpha pixels takes several times its size (a 40 MP 16-bit PNG of 90 KB
            # needed ~1 GB). In place, so the metadata that orientation reads below stays attached.
            _shrink(im, max_side)
        oriented = apply_orientation(im, orientation)
        rgb = to_rgb(oriented)
        _shrink(rgb, max_side)  # the modes converted at full size (palette, 1-bit, 32-bit)
        clean = strip_metadata(rgb)

    return DecodedPhoto(image=clean, original_size=original_size, format=fmt, frames=frames)


def _shrink(image: Image.Image, max_side: int) -> None:
    """Downscale ``image`` in place so its longer side is at most ``max_side`` (aspect ratio kept)."""
    if max(image.size) > max_side:
        # reducing_gap: a fast integer reduce first, then Lanczos on the smaller image. Pillow cannot reduce()
        # 16-bit images, so those are resampled directly.
        gap = None if image.mode.startswith("I;16") else 3.0
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=gap)


def decode_path(path: str | os.PathLike[str], max_side: int = DEFAULT_MAX_SIDE) -> DecodedPhoto:
    """Decode a photo from disk, refusing oversized files before reading them.

    Args:
        path: the file to read.
        max_side: see :func:`decode_upload`.

    Raises:
        UploadError: as :func:`decode_upload`, plus ``"unreadable"`` when the file cannot be read.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_BYTES:
                logger.info("file refused: %d bytes > %d", size, MAX_BYTES)
                raise UploadError("too_large_bytes")
            # Read one byte past the limit so a file that grows after fstat is still caught.
            data = fh.read(MAX_BYTES + 1)
    except UploadError:
        raise
    except OSError as err:
        logger.info("file unreadable: %s", type(err).__name__)
        raise UploadError("unreadable") from None
    return decode_upload(data, max_side=max_side)
