"""Handwriting styles MNIST lacks, drawn into MNIST training digits.

MNIST's writers were American.  Across continental Europe a "1" is written
with a long up-stroke ending at the top of the stem (and a "7" with a bar
through it, which MNIST has only a few of).  A model that never saw such a
"1" reads it as a "7": on the Swiss scans in ``../shared/data/handwritten-scans``
173 of 559 ones were.  :func:`continental_ones` draws the up-stroke into a
share of the training ones, so the model learns both forms.

:func:`national_styles` adds two more that school handwriting models teach
(French, German and Scandinavian copybooks; engineering lettering): the
crossed seven (a short bar through the middle of the stem) and the one with
a foot (a base bar under the stem, with the up-stroke).  They were chosen
from handwriting references, not from any test set.
"""

from __future__ import annotations

import numpy as np

SIDE = 28
CENTRE = (SIDE - 1) / 2


def continental_ones(images: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``images`` ((N, 28, 28, 1) floats in [0, 1]) with ``fraction`` of the ones given an up-stroke."""
    out = images.copy()
    ones = np.flatnonzero(labels == 1)
    chosen = rng.choice(ones, size=int(round(fraction * len(ones))), replace=False) if len(ones) else ones
    for index in chosen:
        out[index, :, :, 0] = add_up_stroke(out[index, :, :, 0], rng)
    return out


def add_up_stroke(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One MNIST-form "1" (28x28 floats, light ink on dark) with a flag from the stem's top down to the left.

    The flag is 25-70% of the stem's height, 20-60 degrees below horizontal,
    as thick as the stem; the result is re-centred by centre of mass as MNIST was.
    """
    found = _extent(digit, 5)
    if found is None:
        return digit
    ink, top, bottom, height = found
    top_x = float(np.flatnonzero(ink[top]).mean())
    half_width = max(0.7, 0.5 * ink.sum() / height)  # the stem's mean width, halved
    length = rng.uniform(0.25, 0.7) * height
    angle = np.deg2rad(rng.uniform(20, 60))
    start = np.array([top + 0.5, top_x])
    end = start + length * np.array([np.sin(angle), -np.cos(angle)])
    flag = np.clip(half_width + 0.5 - _distance_to_segment(start, end), 0.0, 1.0)
    return _centre_by_mass(np.maximum(digit, flag.astype(digit.dtype)))


def national_styles(images: np.ndarray, labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``images`` ((N, 28, 28, 1) floats in [0, 1]) with ``fraction`` of the sevens crossed and of
    the ones given a foot and an up-stroke."""
    out = images.copy()
    for label, draw in ((7, cross_seven), (1, add_foot)):
        members = np.flatnonzero(labels == label)
        chosen = rng.choice(members, size=int(round(fraction * len(members))), replace=False) if len(members) else members
        for index in chosen:
            out[index, :, :, 0] = draw(out[index, :, :, 0], rng)
    return out


def cross_seven(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One MNIST-form "7" with a short bar across its stem, a little below the middle, as thick as the stem."""
    found = _extent(digit, 8)
    if found is None:
        return digit
    ink, top, bottom, height = found
    row = int(round(top + rng.uniform(0.45, 0.6) * height))
    columns = np.flatnonzero(ink[row])
    if not len(columns):
        return digit
    centre = np.array([row + 0.5, float(columns.mean()) + 0.5])
    half = rng.uniform(0.18, 0.3) * height
    tilt = np.deg2rad(rng.uniform(-12, 12))
    offset = half * np.array([np.sin(tilt), np.cos(tilt)])
    half_width = max(0.7, 0.5 * ink.sum() / (2.5 * height))  # a 7 has two strokes: its stem is thinner than ink/height
    bar = np.clip(half_width + 0.5 - _distance_to_segment(centre - offset, centre + offset), 0.0, 1.0)
    return _centre_by_mass(np.maximum(digit, bar.astype(digit.dtype)))


def add_foot(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One MNIST-form "1" with the continental up-stroke and a foot: a base bar centred under the stem."""
    digit = add_up_stroke(digit, rng)
    found = _extent(digit, 5)
    if found is None:
        return digit
    ink, top, bottom, height = found
    bottom_x = float(np.flatnonzero(ink[bottom]).mean()) + 0.5
    half = rng.uniform(0.15, 0.3) * height
    half_width = min(1.6, max(0.7, 0.5 * ink[bottom - 3 : bottom + 1].sum() / 4))  # the stem's, not a blot's
    y = bottom + 0.5 - half_width
    bar = np.clip(half_width + 0.5 - _distance_to_segment(np.array([y, bottom_x - half]), np.array([y, bottom_x + half])), 0.0, 1.0)
    return _centre_by_mass(np.maximum(digit, bar.astype(digit.dtype)))


def _extent(digit: np.ndarray, min_rows: int):
    """``(ink mask, top row, bottom row, height)`` of a digit's ink, or None when it spans fewer than ``min_rows``."""
    ink = digit > 0.5
    rows = np.flatnonzero(ink.any(axis=1))
    if len(rows) < min_rows:
        return None
    return ink, rows[0], rows[-1], rows[-1] - rows[0] + 1


def _distance_to_segment(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    points = np.stack([yy, xx], axis=-1)
    direction = end - start
    t = np.clip(((points - start) @ direction) / max(float(direction @ direction), 1e-6), 0.0, 1.0)
    nearest = start + t[..., None] * direction
    return np.linalg.norm(points - nearest, axis=-1)


def _centre_by_mass(digit: np.ndarray) -> np.ndarray:
    total = float(digit.sum())
    if total <= 0:
        return digit
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    dy = int(round(CENTRE - float((yy * digit).sum()) / total))
    dx = int(round(CENTRE - float((xx * digit).sum()) / total))
    out = np.zeros_like(digit)
    src = digit[max(0, -dy) : SIDE - max(0, dy), max(0, -dx) : SIDE - max(0, dx)]
    out[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return out
