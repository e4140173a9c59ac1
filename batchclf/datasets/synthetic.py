"""Realistic scanned-digit images made from MNIST digits, for tests and benchmarks.

Each MNIST digit is rendered large, inverted to dark ink on light paper,
rotated a little, placed off-centre on a page of random size with a colour
tint, uneven lighting, paper grain, blur and (often) JPEG compression: the
kinds of damage :func:`batchclf.scan.preprocess.normalize` has to undo.  Use MNIST
*test* digits so a model is never scored on what it trained on.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class ScanStyle:
    min_side: int = 60
    max_side: int = 420
    max_rotation_deg: float = 8.0
    noise_sigma: tuple[float, float] = (0.01, 0.06)
    jpeg_probability: float = 0.6


def render_scan(digit: np.ndarray, rng: np.random.Generator, style: ScanStyle = ScanStyle()) -> Image.Image:
    """One MNIST digit (28x28 uint8, light on dark; or a wider canvas) -> an RGB 'scan' of dark ink on light paper."""
    side = int(rng.integers(style.min_side, style.max_side + 1))
    page_w = int(side * rng.uniform(0.9, 1.4))
    page_h = int(side * rng.uniform(0.9, 1.4))
    digit_side = int(side * rng.uniform(0.45, 0.8))
    # A wider canvas (two digits side by side) keeps its shape: it is as high as a digit, and the page widens.
    glyph_w = digit_side * digit.shape[1] // digit.shape[0]
    page_w = max(page_w, int(glyph_w * 1.1))
    glyph = Image.fromarray(digit).resize((glyph_w, digit_side), Image.Resampling.BICUBIC)
    glyph = glyph.rotate(float(rng.uniform(-1, 1) * style.max_rotation_deg), resample=Image.Resampling.BICUBIC)
    ink = np.zeros((page_h, page_w), np.float32)
    top = int(rng.integers(0, max(1, page_h - digit_side)))
    left = int(rng.integers(0, max(1, page_w - glyph_w)))
    ink[top : top + digit_side, left : left + glyph_w] = np.asarray(glyph, np.float32)[
        : page_h - top, : page_w - left
    ] / 255.0

    yy, xx = np.mgrid[0:page_h, 0:page_w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * xx / page_w + np.sin(angle) * yy / page_h) * rng.uniform(0.0, 0.25)
    paper = np.clip(rng.uniform(0.8, 1.0) - gradient, 0.4, 1.0)
    ink_darkness = rng.uniform(0.6, 0.95)
    luminance = paper * (1.0 - ink_darkness * ink)
    luminance += rng.normal(0.0, rng.uniform(*style.noise_sigma), luminance.shape).astype(np.float32)

    tint = rng.uniform(0.85, 1.0, size=3)
    ink_colour = rng.choice([np.array([0.2, 0.2, 0.25]), np.array([0.1, 0.15, 0.6]), np.array([0.1, 0.1, 0.1])])
    rgb = luminance[..., None] * tint[None, None, :]
    rgb = rgb * (1 - ink[..., None] * 0.3) + ink[..., None] * 0.3 * ink_colour * luminance[..., None]
    image = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    blur = rng.uniform(0.0, 1.2) * side / 150
    if blur > 0.3:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    return image


def scan_bytes(image: Image.Image, rng: np.random.Generator, style: ScanStyle = ScanStyle()) -> tuple[bytes, str]:
    """Encode a rendered scan as JPEG (often, at low quality) or PNG; returns ``(bytes, suffix)``."""
    buffer = io.BytesIO()
    if rng.uniform() < style.jpeg_probability:
        image.save(buffer, "JPEG", quality=int(rng.integers(40, 92)))
        return buffer.getvalue(), ".jpg"
    image.save(buffer, "PNG")
    return buffer.getvalue(), ".png"


def write_scans(
    images: np.ndarray, labels: np.ndarray, folder: Path, seed: int = 0, style: ScanStyle = ScanStyle()
) -> list[tuple[Path, int]]:
    """Write one scan per digit into ``folder``; returns ``(path, true label)`` pairs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = []
    for i, (digit, label) in enumerate(zip(images, labels)):
        data, suffix = scan_bytes(render_scan(digit, rng, style), rng, style)
        path = folder / f"scan-{i:06d}-{int(label)}{suffix}"
        path.write_bytes(data)
        written.append((path, int(label)))
    return written


def write_labelled_folders(images: np.ndarray, labels: np.ndarray, folder: Path, n: int, seed: int) -> int:
    """``n`` random digits as scans in ``folder/DIGIT/``, the layout ``batchclf evaluate --scans`` reads."""
    chosen = np.random.default_rng(seed).choice(len(images), n, replace=False)
    for label in range(10):
        picked = chosen[labels[chosen] == label]
        write_scans(images[picked], labels[picked], Path(folder) / str(label), seed=label)
    return n


if __name__ == "__main__":
    import sys

    from batchclf.datasets.mnist import load

    if len(sys.argv) != 5:
        sys.exit("usage: python -m batchclf.datasets.synthetic MNIST_PATH N SEED OUT_FOLDER  (draws MNIST *test* digits)")
    dataset = load(Path(sys.argv[1]))
    print(write_labelled_folders(dataset.x_test, dataset.y_test, Path(sys.argv[4]), int(sys.argv[2]), int(sys.argv[3])))
