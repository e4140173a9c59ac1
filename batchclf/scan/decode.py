"""Decoding image files into grayscale pages, with a specific reason when it fails.

Every supported format and mode ends up as one grayscale array, 0 = black:
uint8 in [0, 255] for 8-bit images (the common case, kept as bytes so a
page already in MNIST form is never converted), float32 in [0, 1] for
16-bit, 32-bit and float images.  Alpha is composited on white and EXIF
orientation applied.  A
multi-page TIFF yields one page per frame; GIF and WebP yield their first
frame.  Large JPEGs are decoded at reduced size with ``draft()``, large
images of other formats are box-reduced right after decoding, because the
normaliser never needs more than a few hundred pixels.

Memory per file is bounded: at most ``Limits.max_bytes`` are read (hashed
as they arrive), pages are decoded one at a time as the caller asks for
them, every page's size is checked against ``MAX_PIXELS`` before it is
decoded, and a file with more than ``Limits.max_pages`` pages is refused.
Pillow is only asked to open the documented formats: a file in any other
format (EPS content named ``.png``, which Pillow would hand to
Ghostscript, or DDS, ICO, SGI, TGA...) is refused, not sniffed.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from batchclf.errors import ImageDecodeError

SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".bmp", ".dib", ".gif", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}
)
# A guard against decompression bombs: a scanned digit never needs this many pixels.
# It is checked from the header, before any pixel is decoded; it replaces
# Pillow's own (larger) limit so every oversized file gets the same message.
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = None
# Longest side kept after decoding; the normaliser works at a fraction of this.
DECODE_MAX_SIDE = 512
# A JPEG is decoded at a reduced DCT scale (1/2, 1/4, 1/8) only while its longer side stays
# at least this: the normaliser's finest look at a page (its final fit) is at most 160 px.
DRAFT_MIN_SIDE = 160
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# libspng inflates and unfilters a 300 px scan about 1.5x faster than Pillow but costs more
# per call: below this many pixels Pillow is as fast (measured on 90 px scans).
PNG_FAST_MIN_PIXELS = 128 * 128
try:
    import pyspng as spng
except ImportError:  # optional: without it Pillow decodes every PNG
    spng = None
# Pillow's names of the formats the README documents (PPM also reads PGM, PBM and PNM).
ACCEPTED_FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "GIF", "WEBP", "PPM")
ACCEPTED_NAMES = "JPEG, PNG, TIFF, BMP, GIF, WebP, PGM/PPM"
# Refused formats recognisable by their first bytes, so the reason can name them.
REFUSED_SIGNATURES = {
    b"%!PS": "EPS",
    b"\xc5\xd0\xd3\xc6": "EPS",  # DOS EPS binary header
    b"DDS ": "DDS",
    b"\x00\x00\x01\x00": "ICO",
    b"\x01\xda": "SGI",
    b"8BPS": "PSD",
    b"%PDF": "PDF",
}
# Per-file caps (``classify --max-pages``, ``--max-file-mb``): a scan of digits never comes near them.
MAX_PAGES = 1_000
MAX_FILE_MB = 256
MB = 1024 * 1024
READ_CHUNK = MB
ANIMATED_FIRST_FRAME_ONLY = {"GIF", "WEBP", "PNG"}
# Formats whose orientation tag lives in EXIF/TIFF tags; others skip the (costly) EXIF parse.
EXIF_FORMATS = {"JPEG", "MPO", "TIFF", "WEBP"}


@dataclass(frozen=True)
class Page:
    index: int
    gray: np.ndarray  # (H, W), 0 = black: uint8 (white 255) or float32 (white 1.0)
    width: int  # the page's size in the file, before any reduction
    height: int


@dataclass(frozen=True)
class Limits:
    """What one input file may cost: pages decoded and bytes read."""

    max_pages: int = MAX_PAGES
    max_bytes: int = MAX_FILE_MB * MB

    @classmethod
    def from_options(cls, max_pages: int | None = None, max_file_mb: int | None = None) -> "Limits":
        return cls(max_pages or MAX_PAGES, (max_file_mb or MAX_FILE_MB) * MB)


DEFAULT_LIMITS = Limits()


def read(path: Path, max_bytes: int = DEFAULT_LIMITS.max_bytes) -> bytes:
    """The file's bytes (see :func:`read_hashed`)."""
    return read_hashed(path, max_bytes)[0]


def read_hashed(path: Path, max_bytes: int = DEFAULT_LIMITS.max_bytes) -> tuple[bytes, str]:
    """The file's bytes and their sha256, after checking it is a readable regular file of at most ``max_bytes``.

    Opened non-blocking and checked with ``fstat`` on the open descriptor, so a
    FIFO never blocks the job and the checked file is the one that is read.
    A file larger than the cap (a 2 GB sparse ``.png``) is refused unread.
    """
    fd, size = _open_regular(path)
    with open(fd, "rb", buffering=0, closefd=True) as handle:
        if size > max_bytes:
            raise _too_large(max_bytes)
        try:
            return _read_capped(handle, size, max_bytes)
        except OSError as exc:
            raise ImageDecodeError(f"cannot read file: {exc.strerror or exc}") from exc


def _open_regular(path: Path) -> tuple[int, int]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError as exc:
        raise ImageDecodeError(f"permission denied: {exc.strerror}") from exc
    except FileNotFoundError as exc:
        raise ImageDecodeError("file vanished before it could be read") from exc
    except OSError as exc:
        raise ImageDecodeError(f"cannot open file: {exc.strerror or exc}") from exc
    info = os.fstat(fd)
    problem = None
    if stat.S_ISDIR(info.st_mode):
        problem = "not a regular file (a directory)"
    elif not stat.S_ISREG(info.st_mode):
        problem = "not a regular file (a FIFO, socket or device)"
    elif info.st_size == 0:
        problem = "empty file (0 bytes)"
    if problem:
        os.close(fd)
        raise ImageDecodeError(problem)
    return fd, info.st_size


def _read_capped(handle, size: int, max_bytes: int) -> tuple[bytes, str]:
    """Hash the bytes as they arrive; a file that grows past the cap while it is read is cut off there."""
    chunks, total, digest = [], 0, hashlib.sha256()
    want = size + 1  # one read for a file that keeps the size fstat saw; the extra byte notices growth
    while chunk := handle.read(min(want, max_bytes + 1 - total)):
        total += len(chunk)
        if total > max_bytes:
            raise _too_large(max_bytes)
        digest.update(chunk)
        chunks.append(chunk)
        want = READ_CHUNK
    return b"".join(chunks), digest.hexdigest()  # one chunk, the usual case: joined without a copy


def _too_large(max_bytes: int) -> ImageDecodeError:
    mb = f"{max_bytes / MB:g}"
    return ImageDecodeError(f"file too large: more than {mb} MB (limit: --max-file-mb {mb})")


def decode_bytes(data: bytes, limits: Limits = DEFAULT_LIMITS) -> list[Page]:
    """All pages of an image file's bytes; raises :class:`ImageDecodeError` with a reason."""
    return list(iter_pages(data, limits))


def iter_pages(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Iterator[Page]:
    """The pages of an image file's bytes, decoded one at a time as they are asked for.

    Raises :class:`ImageDecodeError` with a reason, possibly after some pages
    were yielded (a corrupt or oversized later page).
    """
    if spng is not None and data[:8] == PNG_SIGNATURE:
        page = _png_fast(data)
        if page is not None:
            yield page
            return
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
            yield from _pages(image, limits)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(_unrecognised(data)) from exc
    except MemoryError as exc:  # its message is empty: say what happened
        raise ImageDecodeError("out of memory while decoding the image") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageDecodeError(f"corrupt or truncated image data: {str(exc) or exc.__class__.__name__}") from exc


def _unrecognised(data: bytes) -> str:
    for signature, name in REFUSED_SIGNATURES.items():
        if data.startswith(signature):
            return f"{name} files are not read (accepted formats: {ACCEPTED_NAMES})"
    return "not a recognised image format"


def _pages(image: Image.Image, limits: Limits) -> Iterator[Page]:
    # n_frames can mean parsing the whole file (APNG, GIF): ask only where every page counts.
    frames = 1 if image.format in ANIMATED_FIRST_FRAME_ONLY else getattr(image, "n_frames", 1)
    if frames > limits.max_pages:
        raise ImageDecodeError(
            f"too many pages: {frames:,} pages exceed the limit of {limits.max_pages:,} (--max-pages {limits.max_pages})"
        )
    for index in range(frames):
        if index:
            image.seek(index)
        width, height = image.size  # from the header: checked before a pixel of this page is decoded
        if width * height > MAX_PIXELS:
            raise ImageDecodeError(
                f"image too large (decompression-bomb guard): {width}x{height} pixels exceeds {MAX_PIXELS:,}"
            )
        yield Page(index, _to_gray(image), width, height)


def _png_fast(data: bytes) -> Page | None:
    """An 8-bit grey or RGB PNG without transparency, EXIF or animation, by libspng; None: Pillow's turn.

    Anything else (other depths and colour types, a tRNS, eXIf or acTL chunk, a small
    image, a file libspng refuses) goes the Pillow way, so a bad file gets the same
    reason as before.
    """
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    if depth != 8 or colour not in (0, 2) or not PNG_FAST_MIN_PIXELS <= width * height <= MAX_PIXELS:
        return None
    pos = 33
    while pos + 8 <= len(data):  # chunk headers up to the image data: tRNS, eXIf and acTL come before it
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind in (b"tRNS", b"eXIf", b"acTL"):
            return None
        if kind in (b"IDAT", b"IEND"):
            break
        pos += 12 + length
    try:
        array = spng.load(data)
    except Exception:  # libspng refuses it: Pillow says why
        return None
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.shape[:2] != (height, width) or array.dtype != np.uint8 or array.ndim == 3 and array.shape[2] != 3:
        return None
    if array.ndim == 2:
        gray = Image.frombuffer("L", (width, height), array.tobytes(), "raw", "L", 0, 1)
    else:  # Pillow's own RGB -> L, so the grey levels are the ones its path gives
        gray = Image.frombuffer("RGB", (width, height), array.tobytes(), "raw", "RGB", 0, 1).convert("L")
    factor = max(gray.size) // DECODE_MAX_SIDE
    if factor > 1:
        gray = gray.reduce(factor)
    return Page(0, np.frombuffer(gray.tobytes(), np.uint8).reshape(gray.size[1], gray.size[0]), width, height)


def _draft_jpeg(image: Image.Image) -> None:
    """Decode a JPEG straight to grey (only the luma plane of a colour one) at the smallest DCT
    scale that keeps its longer side at least DRAFT_MIN_SIDE."""
    width, height = image.size
    scale = 1
    while scale < 8 and max(width, height) // (2 * scale) >= DRAFT_MIN_SIDE:
        scale *= 2
    image.draft("L" if image.mode in ("L", "RGB") else None, (max(1, width // scale), max(1, height // scale)))


def _to_gray(image: Image.Image) -> np.ndarray:
    if image.format == "JPEG":
        _draft_jpeg(image)
    image.load()
    if image.format in EXIF_FORMATS or "exif" in image.info:
        image = ImageOps.exif_transpose(image)
    factor = max(image.size) // DECODE_MAX_SIDE
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _wide_to_unit(image, factor)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif mode in ("P", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("RGB")
    if image.mode in ("LA", "RGBA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, rgba)
    gray = image if image.mode == "L" else image.convert("L")
    if factor > 1:
        gray = gray.reduce(factor)
    # tobytes + frombuffer is markedly cheaper than np.asarray(image) for small images.
    return np.frombuffer(gray.tobytes(), np.uint8).reshape(gray.size[1], gray.size[0])


def _wide_to_unit(image: Image.Image, factor: int) -> np.ndarray:
    """16-bit, 32-bit integer and float images: scale by the range the values use."""
    array = np.asarray(image).astype(np.float32)
    if factor > 1:
        h, w = (array.shape[0] // factor) * factor, (array.shape[1] // factor) * factor
        array = array[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    top = float(array.max()) if array.size else 0.0
    low = float(array.min()) if array.size else 0.0
    if image.mode == "F" and low >= 0.0 and top <= 1.0:
        return array
    if low >= 0 and top <= 255 and image.mode not in ("I;16", "I;16B", "I;16L", "I;16N"):
        return array / 255.0
    if low >= 0 and top <= 65535:
        return array / 65535.0
    span = top - low
    return (array - low) / span if span > 0 else np.zeros_like(array)
