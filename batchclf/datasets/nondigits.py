"""Things that land in a digit inbox but are not one digit, drawn for training and measuring the detector.

Four kinds, the ones a form's digit cells really receive:

- ``letter``: a letter from an installed font, slanted, rotated, thinned or
  thickened.  Letters that *are* digit shapes in handwriting (O o Q D, I l i j,
  Z z, S s, B b, G, g q) are left out: no model can tell them from 0, 1, 2,
  5, 6, 8, 9, and a form's digit cell holding one is read as the digit.
- ``pair``: two MNIST digits side by side (touching or apart): a cell with two digits.
- ``strokes``: a scribble of two to six random pen strokes.
- ``crossed``: an MNIST digit crossed out (a long diagonal, an X, or a zig-zag over it).

``blob`` (a smudge or an ink splash) is drawn for training only.

Every item starts as a light-on-dark canvas like an MNIST digit.  Half are
kept in that form (28 px, what a user's 28x28 files look like); the other
half are rendered as scans by :func:`batchclf.datasets.synthetic.render_scan`
and brought back through the prediction path (decode, then
:func:`batchclf.scan.preprocess.normalize_to_bytes`), so the detector learns
from what the model will be shown, never from the renderer's artefacts.
Real digits used as the other class take the same two routes.

The split is fixed: training draws from fonts of the DejaVu *Sans* families
and MNIST training digits; measuring draws from the *Serif* and math fonts and
MNIST test digits, with other random seeds.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

KINDS = ("letter", "pair", "strokes", "crossed")
TRAINING_KINDS = (*KINDS, "blob")
# Letters a handwritten digit cell cannot tell from a digit (see the module docstring).
DIGIT_LIKE = set("OoQDIliljZzSsBbGgq")
LETTERS = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in DIGIT_LIKE]
FONT_FOLDERS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")
SIDE = 28
BOX = 20  # MNIST fits each digit into a 20x20 box, centred by mass in 28x28
SUPER = 4  # strokes are drawn at 4x and reduced, for anti-aliased edges like a scan's


def installed_fonts() -> list[Path]:
    """Every TrueType/OpenType font file found in the usual folders, sorted (so splits are reproducible)."""
    found = set()
    for folder in FONT_FOLDERS:
        if folder.is_dir():
            found.update(p for p in folder.rglob("*") if p.suffix.lower() in (".ttf", ".otf"))
    return sorted(found)


def font_split(fonts: list[Path]) -> tuple[list[Path], list[Path]]:
    """``(training, measuring)`` fonts: serif and math faces are kept for measuring.

    Fonts of other families (neither name) go to training, so a machine with
    more fonts trains on more, and always measures on faces it never trained on.
    """
    measuring = [f for f in fonts if "serif" in f.name.lower() or "math" in f.name.lower()]
    training = [f for f in fonts if f not in measuring]
    return training, measuring


@dataclass(frozen=True)
class Source:
    """What one draw may use: fonts and real digits (light on dark, 28x28 uint8)."""

    fonts: list[Path]
    digits: np.ndarray


def draw(kind: str, source: Source, rng: np.random.Generator) -> np.ndarray:
    """One light-on-dark uint8 canvas of ``kind`` (28 px high; a pair is wider)."""
    if kind == "letter":
        return letter(rng.choice(source.fonts), str(rng.choice(LETTERS)), rng)
    if kind == "pair":
        first, second = rng.choice(len(source.digits), 2)
        return pair(source.digits[first], source.digits[second], rng)
    if kind == "strokes":
        return strokes(rng)
    if kind == "crossed":
        return crossed(source.digits[rng.integers(len(source.digits))], rng)
    if kind == "blob":
        return blob(rng)
    raise ValueError(f"unknown kind {kind!r}; expected one of {TRAINING_KINDS}")


def letter(font_path: Path, char: str, rng: np.random.Generator) -> np.ndarray:
    font = ImageFont.truetype(str(font_path), 96)
    canvas = Image.new("L", (160, 160), 0)
    ImageDraw.Draw(canvas).text((32, 16), char, fill=255, font=font)
    shear = rng.uniform(-0.35, 0.35)
    canvas = canvas.transform(canvas.size, Image.Transform.AFFINE, (1, shear, -shear * 80, 0, 1, 0),
                              resample=Image.Resampling.BICUBIC)
    canvas = canvas.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BICUBIC)
    weight = int(rng.integers(-1, 3))  # thinner or bolder than the face: pens differ
    if weight > 0:
        canvas = canvas.filter(ImageFilter.MaxFilter(2 * weight * 3 + 1))
    elif weight < 0:
        canvas = canvas.filter(ImageFilter.MinFilter(3))
    return to_mnist_form(np.asarray(canvas))


def pair(first: np.ndarray, second: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two digits cut to their ink and set side by side, up to 2 px overlapping or up to 8 px apart."""
    a, b = _crop(first), _crop(second)
    scale = rng.uniform(0.8, 1.15, size=2)
    a, b = (_scaled(d, s) for d, s in ((a, scale[0]), (b, scale[1])))
    gap = int(rng.integers(-2, 9))
    height = max(a.shape[0], b.shape[0]) + 4
    width = a.shape[1] + b.shape[1] + max(gap, 0) + 8
    canvas = np.zeros((height, width), np.uint8)
    shift = int(rng.integers(-2, 3))
    top_a = (height - a.shape[0]) // 2
    top_b = int(np.clip((height - b.shape[0]) // 2 + shift, 0, height - b.shape[0]))
    canvas[top_a : top_a + a.shape[0], 4 : 4 + a.shape[1]] = a
    left_b = 4 + a.shape[1] + gap
    region = canvas[top_b : top_b + b.shape[0], left_b : left_b + b.shape[1]]
    np.maximum(region, b[:, : region.shape[1]], out=region)
    return _fit_height(canvas)


def strokes(rng: np.random.Generator) -> np.ndarray:
    """Two to six smooth random strokes in one box: a scribble."""
    canvas = Image.new("L", (SIDE * SUPER, SIDE * SUPER), 0)
    pen = ImageDraw.Draw(canvas)
    width = int(rng.uniform(1.5, 3.2) * SUPER)
    for _ in range(int(rng.integers(2, 7))):
        points = _bezier(rng.uniform(4, 24, size=(4, 2)) * SUPER)
        pen.line([tuple(p) for p in points], fill=255, width=width, joint="curve")
    return to_mnist_form(np.asarray(canvas))


def crossed(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A digit struck through past its ink: a long diagonal, an X or a zig-zag (never a lone bar, which a 7 can have)."""
    canvas = Image.fromarray(digit).resize((SIDE * SUPER, SIDE * SUPER), Image.Resampling.BICUBIC)
    pen = ImageDraw.Draw(canvas)
    rows, cols = np.nonzero(digit > 64)
    top, bottom, left, right = (v * SUPER for v in (rows.min(), rows.max(), cols.min(), cols.max()))
    over = 2 * SUPER
    width = int(rng.uniform(1.8, 3.2) * SUPER)
    style = rng.integers(3)
    if style == 0 and cols.max() - cols.min() < 10:
        style = 1  # one diagonal along a narrow digit (a 1) is just a slanted 1
    if style == 0:  # one long diagonal, either way
        line = [(left - over, bottom + over), (right + over, top - over)]
        pen.line(line if rng.uniform() < 0.5 else [(x, top + bottom - y) for x, y in line], fill=255, width=width)
    elif style == 1:  # an X
        pen.line([(left - over, top - over), (right + over, bottom + over)], fill=255, width=width)
        pen.line([(left - over, bottom + over), (right + over, top - over)], fill=255, width=width)
    else:  # a zig-zag scribbled over the digit
        turns = int(rng.integers(3, 7))
        ys = np.linspace(top, bottom, turns)
        xs = [left - over if i % 2 == 0 else right + over for i in range(turns)]
        pen.line(list(zip(xs, ys)), fill=255, width=width, joint="curve")
    return to_mnist_form(np.asarray(canvas))


def blob(rng: np.random.Generator) -> np.ndarray:
    """A smudge: a soft blot, or an ink splash of irregular outline (training only)."""
    canvas = Image.new("L", (SIDE * SUPER, SIDE * SUPER), 0)
    pen = ImageDraw.Draw(canvas)
    cx, cy = rng.uniform(10, 18, size=2) * SUPER
    if rng.uniform() < 0.5:
        rx, ry = rng.uniform(4, 10, size=2) * SUPER
        pen.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=int(rng.integers(120, 256)))
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(2, 8)))
    else:
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(7, 14))))
        radii = rng.uniform(3, 10, len(angles)) * SUPER
        pen.polygon([(cx + r * np.cos(a), cy + r * np.sin(a)) for a, r in zip(angles, radii)], fill=255)
    return to_mnist_form(np.asarray(canvas))


def to_mnist_form(canvas: np.ndarray) -> np.ndarray:
    """Ink cut to its box, fitted into 20x20 keeping its shape, centred by mass in 28x28 (how MNIST was made)."""
    ink = _crop(canvas)
    scale = BOX / max(ink.shape)
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    fitted = np.asarray(Image.fromarray(ink).resize(size, Image.Resampling.LANCZOS), np.float32)
    out = np.zeros((SIDE, SIDE), np.float32)
    total = fitted.sum()
    yy, xx = np.mgrid[0 : fitted.shape[0], 0 : fitted.shape[1]]
    cy = (yy * fitted).sum() / total if total else fitted.shape[0] / 2
    cx = (xx * fitted).sum() / total if total else fitted.shape[1] / 2
    top = int(np.clip(round(SIDE / 2 - cy), 0, SIDE - fitted.shape[0]))
    left = int(np.clip(round(SIDE / 2 - cx), 0, SIDE - fitted.shape[1]))
    out[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted
    return np.clip(out, 0, 255).astype(np.uint8)


def as_scan_input(canvas: np.ndarray, rng: np.random.Generator, style=None) -> np.ndarray | None:
    """``canvas`` rendered as a scan file's bytes and brought back the way prediction reads a file: 28x28 uint8, or None if blank."""
    from batchclf.datasets.synthetic import ScanStyle, render_scan, scan_bytes
    from batchclf.scan.decode import decode_bytes
    from batchclf.scan.preprocess import normalize_to_bytes

    style = style or ScanStyle(max_side=240)
    data, _ = scan_bytes(render_scan(canvas, rng, style), rng, style)
    return normalize_to_bytes(decode_bytes(data)[0].gray)


def scan_file(canvas: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """``canvas`` as the bytes of a scan file and its suffix (for writing a measuring set to disk)."""
    from batchclf.datasets.synthetic import render_scan, scan_bytes

    return scan_bytes(render_scan(canvas, rng), rng)


def mnist_form_png(canvas: np.ndarray) -> bytes:
    """``canvas`` as a 28x28 grayscale PNG, dark ink on white like a user's small digit files."""
    buffer = io.BytesIO()
    square = canvas if canvas.shape == (SIDE, SIDE) else to_mnist_form(canvas)
    Image.fromarray(255 - square).save(buffer, "PNG")
    return buffer.getvalue()


def _crop(canvas: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(canvas > 16)
    if not len(rows):
        return canvas
    return canvas[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _scaled(ink: np.ndarray, scale: float) -> np.ndarray:
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    return np.asarray(Image.fromarray(ink).resize(size, Image.Resampling.BICUBIC))


def _fit_height(canvas: np.ndarray) -> np.ndarray:
    """A wide canvas scaled to 28 px high (its ink 20 px high), width to match: the page a pair is drawn on."""
    ink = _crop(canvas)
    scale = BOX / ink.shape[0]
    width = max(1, round(ink.shape[1] * scale))
    fitted = np.asarray(Image.fromarray(ink).resize((width, BOX), Image.Resampling.LANCZOS))
    out = np.zeros((SIDE, width + 8), np.uint8)
    out[4 : 4 + BOX, 4 : 4 + width] = fitted
    return out


def _bezier(control: np.ndarray, steps: int = 24) -> np.ndarray:
    t = np.linspace(0.0, 1.0, steps)[:, None]
    p0, p1, p2, p3 = control
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3
