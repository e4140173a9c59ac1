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
"""

from __future__ import annotations

import io
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

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
ANIMATED_FIRST_FRAME_ONLY = {"GIF", "WEBP", "PNG"}
# Formats whose orientation tag lives in EXIF/TIFF tags; others skip the (costly) EXIF parse.
EXIF_FORMATS = {"JPEG", "MPO", "TIFF", "WEBP"}


@dataclass(frozen=True)
class Page:
    index: int
    gray: np.ndarray  # (H, W), 0 = black: uint8 (white 255) or float32 (white 1.0)
    width: int  # the page's size in the file, before any reduction
    height: int


def decode(path: Path) -> list[Page]:
    """All pages of an image file; raises :class:`ImageDecodeError` with a reason."""
    return decode_bytes(read(path))


def read(path: Path) -> bytes:
    """The file's bytes, after checking it is a readable regular file.

    Opened non-blocking and checked with ``fstat`` on the open descriptor, so a
    FIFO never blocks the job and the checked file is the one that is read.
    """
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
    with open(fd, "rb", closefd=True) as handle:
        try:
            return handle.read()
        except OSError as exc:
            raise ImageDecodeError(f"cannot read file: {exc.strerror or exc}") from exc


def decode_bytes(data: bytes) -> list[Page]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _pages(image)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, MemoryError) as exc:
        raise ImageDecodeError(f"corrupt or truncated image data: {exc}") from exc


def _pages(image: Image.Image) -> list[Page]:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(
            f"image too large (decompression-bomb guard): {width}x{height} pixels exceeds {MAX_PIXELS:,}"
        )
    # n_frames can mean parsing the whole file (APNG, GIF): ask only where every page counts.
    frames = 1 if image.format in ANIMATED_FIRST_FRAME_ONLY else getattr(image, "n_frames", 1)
    pages = []
    for index in range(frames):
        if frames > 1:
            image.seek(index)
            width, height = image.size
        pages.append(Page(index, _to_gray(image), width, height))
    return pages


def _to_gray(image: Image.Image) -> np.ndarray:
    if image.format == "JPEG" and max(image.size) > 2 * DECODE_MAX_SIDE:
        image.draft(image.mode if image.mode in ("L", "RGB") else None, (DECODE_MAX_SIDE, DECODE_MAX_SIDE))
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
