"""The one preprocessing module: everything between pixels and the model.

Training feeds MNIST arrays through :func:`mnist_to_input`; prediction feeds
real scans through :func:`normalize` and then the same :func:`mnist_to_input`,
so the two cannot drift.  numpy only (no TensorFlow) so it runs in worker
processes and in ``batchclf report``.
"""

from __future__ import annotations

import functools

import numpy as np

SIZE = 28


def mnist_to_input(images: np.ndarray) -> np.ndarray:
    """MNIST-form uint8 ``(N, 28, 28)`` (or float in [0,1]) -> model input ``(N, 28, 28, 1)`` float32 in [0, 1]."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        out = images.astype(np.float32) / 255.0
    else:
        out = np.clip(images.astype(np.float32), 0.0, 1.0)
    return out.reshape(-1, SIZE, SIZE, 1)


# --- Real scans -> MNIST form --------------------------------------------------
#
# MNIST digits were size-normalised to fit a 20x20 box keeping their aspect
# ratio, anti-aliased, then centred by centre of mass in a 28x28 field, light
# ink on black.  ``normalize`` rebuilds that from a photo or scan of dark (or
# light) ink on paper of any size.

BOX = 20
# The page is analysed small: the ink map, the paper surface and the components are found
# on a box average with the largest integer box that keeps the longer side at least
# WORK_MIN_SIDE (so 64-127 px: a digit of half the page keeps 30 px or more there, more
# than the 20 px it ends at), which also averages away paper grain.  Only the final fit
# takes the digit's crop from a finer copy, at most FIT_MAX_SIDE a side (the size the
# whole page used to be analysed at).
WORK_MIN_SIDE = 64
FIT_MAX_SIDE = 160
MIN_CONTRAST = 0.10  # ink must differ from paper by 10% of full scale to count
NOISE_SIGMAS = 4.0
SPECK_FRACTION = 0.06  # components smaller than this share of the largest are specks
# MNIST strokes are about 2-3 px wide in the 20 px box; thinner pens are thickened to this.
TARGET_STROKE = 0.11


def normalize(gray: np.ndarray) -> np.ndarray | None:
    """A grayscale page -> a 28x28 float32 MNIST-form digit in [0, 1], or ``None`` if blank.

    ``gray`` is float in [0, 1] or uint8 in [0, 255]; 0 is black either way.
    """
    gray = np.asarray(gray)
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise ValueError(f"expected a 2-D grayscale image, got shape {gray.shape}")
    if gray.dtype != np.uint8:
        gray = gray.astype(np.float32, copy=False)
    if is_mnist_form(gray):
        return gray * np.float32(1 / 255) if gray.dtype == np.uint8 else gray.copy()
    work_factor = _work_factor(gray.shape)
    fit_factor = _factor(gray.shape, FIT_MAX_SIDE)
    digit = _normalize_at(gray, work_factor, fit_factor)
    if digit is None and work_factor > fit_factor:
        # Averaging over larger boxes fades a fine, faint pen: before a page is called
        # blank it is looked at once more at the finer size, as a whole.
        digit = _normalize_at(gray, fit_factor, fit_factor)
    if digit is None:
        # A bold digit cut tight to its cell (USPS's 16x16 digits, a form's cell) can touch
        # the frame the paper level is read from, and its anti-aliased edges, which lie on
        # the paper side of the ink/paper split, pass for paper noise as strong as the ink.
        # Before such a page is called blank it is looked at once more as cut tight.
        digit = _normalize_at(gray, fit_factor, fit_factor, cut_tight=True)
    return digit


def _normalize_at(gray: np.ndarray, work_factor: int, fit_factor: int, cut_tight: bool = False) -> np.ndarray | None:
    """Analyse ``gray`` averaged over ``work_factor`` boxes; fit the digit from ``fit_factor`` boxes."""
    sums = _box_sum(gray, work_factor)
    levels = (sums, 1.0 / (255 * work_factor * work_factor)) if sums.dtype != np.float32 else None
    found = _ink_map(_unit(sums, work_factor), levels, cut_tight)
    if found is None:
        return None
    ink, level = found
    mask = _digit_mask(ink)
    if mask is None:
        return None
    if fit_factor < work_factor:
        ink, mask = _finer_crop(gray, fit_factor, work_factor, ink, mask, level)
        if ink is None:
            return None
    return _fit_and_centre(ink, mask)


def normalize_to_bytes(gray: np.ndarray) -> np.ndarray | None:
    """:func:`normalize`, stored the way MNIST stores digits: ``(28, 28)`` uint8, or ``None`` if blank.

    This is what workers hand to the model (through :func:`mnist_to_input`,
    like the training data).  A uint8 page already in MNIST form is returned
    as it is, without a round trip through floats: the common case of a
    folder of 28x28 digit images costs next to nothing here.
    """
    if isinstance(gray, np.ndarray) and gray.dtype == np.uint8 and is_mnist_form(gray):
        return gray
    image = normalize(gray)
    return None if image is None else to_bytes(image)


def to_bytes(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats as MNIST's 0-255 bytes (MNIST-form inputs round-trip exactly)."""
    return np.rint(np.clip(image, 0.0, 1.0) * np.float32(255)).astype(np.uint8)


def is_mnist_form(gray: np.ndarray) -> bool:
    """28x28 with light ink on a dark background: already normalised, pass through unchanged.

    Works on floats in [0, 1] and on uint8 in [0, 255] alike.
    """
    if gray.shape != (SIZE, SIZE):
        return False
    full = 255 if gray.dtype == np.uint8 else 1.0  # uint8 sums accumulate in uint64: no overflow
    border_mean = (float(gray.sum()) - float(gray[2:-2, 2:-2].sum())) / 208.0  # the 2 px frame: 784 - 576 pixels
    return border_mean < 0.2 * full and float(gray.max()) > 0.5 * full


# --- Sizes --------------------------------------------------------------------------


def _factor(shape: tuple[int, int], side: int) -> int:
    """The integer box size that brings the longer side to at most ``side`` (1: keep it)."""
    factor = int(np.ceil(max(shape) / side))
    return factor if factor > 1 and min(shape) >= factor else 1


def _work_factor(shape: tuple[int, int]) -> int:
    """The largest integer box that keeps the longer side at least WORK_MIN_SIDE (1: keep it)."""
    factor = max(shape) // WORK_MIN_SIDE
    return factor if factor > 1 and min(shape) >= factor else 1


def _box_sum(gray: np.ndarray, factor: int) -> np.ndarray:
    """Sums over ``factor`` x ``factor`` boxes (a ragged last row or column is dropped).

    uint8 pages are summed exactly in integers, one strided slice at a time:
    several times faster than numpy's reduction over a reshaped axis pair.
    """
    if factor == 1:
        return gray
    h, w = (gray.shape[0] // factor) * factor, (gray.shape[1] // factor) * factor
    wide = np.uint16 if gray.dtype == np.uint8 and factor <= 16 else (np.uint32 if gray.dtype == np.uint8 else np.float32)
    rows = gray[0:h:factor, :w].astype(wide)
    for i in range(1, factor):
        rows += gray[i:h:factor, :w]
    out = rows[:, 0::factor].copy()
    for j in range(1, factor):
        out += rows[:, j::factor]
    return out


def _unit(summed: np.ndarray, factor: int = 1) -> np.ndarray:
    """Box sums (or a page) as float32 box means in [0, 1]."""
    full = 255.0 if summed.dtype in (np.uint8, np.uint16, np.uint32) else 1.0
    scale = np.float32(1.0 / (full * factor * factor))
    if scale == 1 and summed.dtype == np.float32:
        return summed
    return summed * scale if summed.dtype == np.float32 else summed.astype(np.float32) * scale


# --- The ink map ----------------------------------------------------------------------


class _Level:
    """What the ink map was cut with, so a finer copy of the same page can be cut alike."""

    def __init__(self, dark_ink: bool, surface: np.ndarray, threshold: float, peak: float, shape: tuple[int, int]):
        self.dark_ink, self.surface, self.threshold, self.peak, self.shape = dark_ink, surface, threshold, peak, shape

    def ink(self, signal: np.ndarray, background: np.ndarray | float) -> np.ndarray:
        half = self.threshold * 0.5
        return np.clip((signal - background - half) * np.float32(1.0 / max(self.peak - half, 1e-6)), 0.0, 1.0)


def _ink_map(gray: np.ndarray, levels: tuple[np.ndarray, float] | None = None,
             cut_tight: bool = False) -> tuple[np.ndarray, _Level] | None:
    """Ink strength in [0, 1] per pixel after polarity and uneven-background correction; None if no ink.

    ``levels``: the same image as integers (box sums of a uint8 page) and the scale that
    makes them ``gray``; its quantiles then come from one count of its levels, not a sort.
    ``cut_tight``: read the paper level off the outermost pixel ring only, and the paper
    noise off paper pixels away from any ink (see :func:`normalize`).
    """
    band = 1 if cut_tight else None
    if levels is not None:
        sums, scale = levels
        darkest, lightest = (v * scale for v in _level_quantiles(sums.ravel(), (0.5, 99.5)))
        paper = _level_quantiles(_frame(sums, band), (50.0,))[0] * scale
    else:
        darkest, lightest = _quantiles(gray.ravel(), (0.5, 99.5))  # one partition pass
        paper = _median(_frame(gray, band))
    # The paper level is read off the image's frame, not the whole image: a bold digit cut
    # tight to its edges can be more than half ink, which would flip the polarity.
    dark_ink = (paper - darkest) >= (lightest - paper)
    signal = (1.0 - gray) if dark_ink else gray
    # A cell cut tight is too small and too inky for a surface through its paper: its paper is one level.
    coefficients = _paper_level(signal) if cut_tight else _background_surface(signal)
    background = _surface(coefficients, signal.shape, signal.shape) if coefficients.ndim else coefficients
    residual = signal - background
    # Paper noise from paper pixels only (below the ink/paper split): a spread over every
    # pixel grows with the share of ink, and would call a bold, tightly cropped digit noise.
    flat = residual.ravel()
    below = flat < _otsu_threshold(flat)
    if cut_tight:
        below = _away_from_ink(below.reshape(residual.shape)).ravel()
    paper_residual = flat[below]
    if paper_residual.size == 0:
        paper_residual = flat
    noise = 1.4826 * _median(np.abs(paper_residual - _median(paper_residual)))
    if flat.size > 100:
        peak = max(_high_quantile(flat, 99.8, below, paper_residual.size), 0.0)
    else:
        peak = max(float(flat.max()), 0.0)
    if peak < MIN_CONTRAST or peak < NOISE_SIGMAS * 2 * noise:
        return None
    threshold = max(NOISE_SIGMAS * noise, 0.25 * peak, MIN_CONTRAST * 0.5)
    level = _Level(dark_ink, coefficients, threshold, peak, signal.shape)
    return level.ink(signal, background), level


def _level_quantiles(levels: np.ndarray, percents) -> list[float]:
    """``np.percentile`` (linear interpolation) of non-negative integers, from one count of their levels."""
    cumulative = np.cumsum(np.bincount(levels))
    n = int(cumulative[-1])
    positions = [p / 100.0 * (n - 1) for p in percents]
    ranks = []
    for x in positions:
        lo = int(np.floor(x))
        ranks += [lo, min(lo + 1, n - 1)]
    values = np.searchsorted(cumulative, ranks, side="right")  # the level holding each rank
    out = []
    for i, x in enumerate(positions):
        a, b = float(values[2 * i]), float(values[2 * i + 1])
        out.append(a + (b - a) * (x - np.floor(x)))
    return out


def _high_quantile(values: np.ndarray, percent: float, below: np.ndarray, n_below: int) -> float:
    """``np.percentile(values, percent)`` for a high ``percent``, sorting only the values not ``below`` a split."""
    n = values.size
    x = percent / 100.0 * (n - 1)
    lo = int(np.floor(x))
    if lo < n_below or n_below == n:
        return _quantiles(values, (percent,))[0]
    upper = values[~below]
    hi = min(lo + 1, n - 1)
    part = np.partition(upper, sorted({lo - n_below, hi - n_below}))
    a, b = float(part[lo - n_below]), float(part[hi - n_below])
    return a + (b - a) * (x - lo)


def _quantiles(values: np.ndarray, percents) -> list[float]:
    """``np.percentile(values, percents)`` (linear interpolation) from a single partition."""
    n = values.size
    positions = [p / 100.0 * (n - 1) for p in percents]
    kth = sorted({int(np.floor(x)) for x in positions} | {min(int(np.floor(x)) + 1, n - 1) for x in positions})
    part = np.partition(values, kth)
    out = []
    for x in positions:
        lo = int(np.floor(x))
        hi = min(lo + 1, n - 1)
        a, b = float(part[lo]), float(part[hi])
        out.append(a + (b - a) * (x - lo))
    return out


def _median(values: np.ndarray) -> float:
    (value,) = _quantiles(values, (50.0,))
    return value


def _paper_level(signal: np.ndarray) -> np.ndarray:
    """The paper's one level (a 0-d array, like a surface too small to fit): the median on the paper side."""
    flat = signal.ravel()
    paper = flat[flat < _otsu_threshold(flat)]
    return np.asarray(_median(paper if paper.size else flat), np.float32)


def _away_from_ink(paper: np.ndarray) -> np.ndarray:
    """The paper pixels whose 3x3 neighbourhood is all paper: no anti-aliased stroke edge among them."""
    from scipy import ndimage

    inner = ndimage.binary_erosion(paper, np.ones((3, 3), bool), border_value=1)
    return inner if np.count_nonzero(inner) >= 8 else paper


def _frame(gray: np.ndarray, band: int | None = None) -> np.ndarray:
    """The outer band (an eighth of the shorter side, at least 1 px, unless ``band`` says; the whole image
    if that is all): mostly paper."""
    h, w = gray.shape
    band = band or max(1, min(h, w) // 8)
    if 2 * band >= min(h, w):
        return gray.ravel()
    return np.concatenate([gray[:band].ravel(), gray[-band:].ravel(), gray[band:-band, :band].ravel(), gray[band:-band, -band:].ravel()])


def _background_surface(signal: np.ndarray) -> np.ndarray:
    """A smooth quadratic fit of the paper level, refitted on paper pixels only: its 6 coefficients.

    Handles uneven lighting (a gradient or vignette across the page) without
    eating into thick strokes the way a morphological filter would.  A page
    too small or too inky to fit gives a constant (a 0-d array).
    """
    h, w = signal.shape
    if h < 4 or w < 4:
        return np.asarray(_median(signal.ravel()), np.float32)
    step = max(1, int(np.ceil(max(h, w) / 40)))  # fit on a sparse grid: a smooth surface needs few points
    design = _grid_design(h, w, step)
    values = signal[::step, ::step].ravel().astype(np.float64)
    # Start from paper: the lighter 60%, less anything on the ink side of the ink/paper split.
    # The split matters for a digit cropped tight (a "0" filling its frame is nearly half
    # ink, and a quadratic surface through it would fit the ring and erase the digit).
    (light,) = _quantiles(values, (60.0,))
    keep = (values <= light) & (values < _otsu_threshold(values))
    coefficients = None
    for refit in range(3):
        if np.count_nonzero(keep) < design.shape[1] * 4:
            break
        # Least squares through the normal equations: 6 unknowns on centred coordinates
        # are well conditioned, and a 6x6 solve costs a fraction of an SVD.
        weighted = design.T * keep
        try:
            coefficients = np.linalg.solve(weighted @ design, weighted @ values)
        except np.linalg.LinAlgError:
            coefficients, *_ = np.linalg.lstsq(design[keep], values[keep], rcond=None)
        if refit == 2:
            break  # the last fit: its pixels to keep would go unused
        residual = values - design @ coefficients
        spread = 1.4826 * _median(np.abs(residual[keep])) + 1e-3
        keep = residual < 3 * spread
    if coefficients is None:
        return np.asarray(_median(signal.ravel()), np.float32)
    return coefficients.astype(np.float32)


@functools.lru_cache(maxsize=256)
def _grid_design(h: int, w: int, step: int) -> np.ndarray:
    """The quadratic design matrix on every ``step``-th pixel of an ``h`` x ``w`` image (pages repeat sizes)."""
    ys = np.arange(0, h, step) / max(h - 1, 1) - 0.5
    xs = np.arange(0, w, step) / max(w - 1, 1) - 0.5
    yy, xx = np.repeat(ys, len(xs)), np.tile(xs, len(ys))
    design = _quadratic_design(yy, xx)
    design.flags.writeable = False
    return design


def _surface(c: np.ndarray, shape: tuple[int, int], frame: tuple[int, int], rows=None, cols=None) -> np.ndarray:
    """The quadratic paper surface at pixel coordinates ``rows`` x ``cols`` of a ``frame``-sized image.

    Coordinates are in the frame's pixels and may be fractional (the centres of a finer
    copy's pixels); by default the whole frame, of ``shape``.
    """
    h, w = frame
    ys = (np.arange(shape[0], dtype=np.float32) if rows is None else rows.astype(np.float32)) / max(h - 1, 1) - 0.5
    xs = (np.arange(shape[1], dtype=np.float32) if cols is None else cols.astype(np.float32)) / max(w - 1, 1) - 0.5
    along_x = c[0] + c[1] * xs + c[3] * (xs * xs)
    along_y = c[2] * ys + c[4] * (ys * ys)
    return along_x[None, :] + along_y[:, None] + (c[5] * ys)[:, None] * xs[None, :]


def _otsu_threshold(values: np.ndarray, bins: int = 64) -> float:
    """The level that best splits ``values`` into two classes (Otsu: most between-class variance).

    The histogram is ``np.histogram``'s (equal bins over the range) counted with one bincount.
    """
    low, high = float(values.min()), float(values.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    width = (high - low) / bins
    index = ((values - low) * (1.0 / width)).astype(np.intp)
    np.minimum(index, bins - 1, out=index)
    counts = np.bincount(index, minlength=bins)[:bins]
    edges = low + width * np.arange(bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    mass_low = np.cumsum(counts * centres)
    mean_low = mass_low / np.maximum(weight_low, 1)
    mean_high = (mass_low[-1] - mass_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def _quadratic_design(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(xs), xs, ys, xs * xs, ys * ys, xs * ys], axis=1)


# --- The digit --------------------------------------------------------------------------


def _digit_mask(ink: np.ndarray) -> np.ndarray | None:
    """The pixels that belong to the digit: large connected components, minus specks and edge lines."""
    from scipy import ndimage

    binary = ink > 0
    labels, count = ndimage.label(binary, structure=np.ones((3, 3), bool))
    if count == 0:
        return None
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=count + 1)
    mass[0] = 0.0
    largest = float(mass.max())
    keep = np.zeros(count + 1, bool)
    candidates = np.flatnonzero(mass >= SPECK_FRACTION * largest)  # specks never need their box
    boxes = ndimage.find_objects(labels)
    h, w = ink.shape
    for i in candidates:
        if _is_edge_line(boxes[i - 1], h, w) and mass[i] < largest:
            continue
        keep[i] = True
    if not keep.any():
        # Only edge lines: the largest is still the best guess of the digit.
        keep[int(np.argmax(mass))] = True
    mask = keep[labels]
    if np.count_nonzero(mask) < 3:
        return None
    return mask


def _is_edge_line(box, h: int, w: int) -> bool:
    """A long thin component touching the border: a ruled or grid line left by cutting the scan."""
    rows, cols = box
    height, width = rows.stop - rows.start, cols.stop - cols.start
    touches = rows.start == 0 or cols.start == 0 or rows.stop == h or cols.stop == w
    thin = max(height, width) >= 6 * max(min(height, width), 1)
    long = height >= 0.4 * h or width >= 0.4 * w
    return touches and thin and long


def _finer_crop(gray, fit_factor: int, work_factor: int, ink: np.ndarray, mask: np.ndarray, level: _Level):
    """The digit's ink and mask cut from a finer copy of the page (box size ``fit_factor``).

    Only the digit's box (and one work pixel around it) is averaged and cut, with
    the polarity, paper surface, threshold and peak found on the work image.  A
    fine pixel is the digit's when it is ink and its work pixel is the digit or
    touches it without belonging to another component (a speck or an edge line).
    """
    h, w = mask.shape
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1 = max(rows[0] - 1, 0), min(rows[-1] + 2, h)  # work pixels, one around the box
    c0, c1 = max(cols[0] - 1, 0), min(cols[-1] + 2, w)
    allowed = _dilate_3x3(mask[r0:r1, c0:c1])
    allowed &= ~((ink[r0:r1, c0:c1] > 0) & ~mask[r0:r1, c0:c1])
    top, left = r0 * work_factor, c0 * work_factor
    region = gray[top : r1 * work_factor, left : c1 * work_factor]
    fine = _unit(_box_sum(region, fit_factor), fit_factor)
    signal = (1.0 - fine) if level.dark_ink else fine
    # Each fine pixel's centre in page pixels, then in work pixels (a work pixel i covers
    # page pixels [i f, (i + 1) f), so page coordinate p is work coordinate (p + 0.5) / f - 0.5).
    fy = top + fit_factor * np.arange(signal.shape[0]) + (fit_factor - 1) / 2
    fx = left + fit_factor * np.arange(signal.shape[1]) + (fit_factor - 1) / 2
    wy, wx = (fy + 0.5) / work_factor - 0.5, (fx + 0.5) / work_factor - 0.5
    coefficients = level.surface
    background = _surface(coefficients, signal.shape, level.shape, wy, wx) if coefficients.ndim else coefficients
    fine_ink = level.ink(signal, background)
    parent_y = np.clip((fy // work_factor).astype(np.intp) - r0, 0, allowed.shape[0] - 1)
    parent_x = np.clip((fx // work_factor).astype(np.intp) - c0, 0, allowed.shape[1] - 1)
    fine_mask = allowed[parent_y[:, None], parent_x[None, :]] & (fine_ink > 0)
    if np.count_nonzero(fine_mask) < 3:
        return None, None
    return fine_ink, fine_mask


def _dilate_3x3(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by a 3x3 square, as two 1-D passes (the square is separable)."""
    rows = mask.copy()
    rows[1:] |= mask[:-1]
    rows[:-1] |= mask[1:]
    out = rows.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary shape: area over half its perimeter.

    The perimeter is the shape less its erosion by a cross (scipy's default element,
    outside the image counts as background), computed on shifted views.
    """
    area = float(np.count_nonzero(mask))
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
    edge_count = area - float(np.count_nonzero(inner))
    return 2.0 * area / max(edge_count, 1.0)


def _fit_and_centre(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from PIL import Image
    from scipy import ndimage

    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    crop_mask = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    crop = np.where(crop_mask, ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], np.float32(0.0))
    longest = max(crop.shape)

    # A fine pen on a big scan shrinks to a faint 1 px line; MNIST strokes are bolder.
    wanted = TARGET_STROKE * longest
    width = _stroke_width(crop_mask)
    if width < 0.6 * wanted:
        grow = int(round(wanted - width))
        if grow >= 1:
            crop = np.pad(crop, grow)
            crop = ndimage.grey_dilation(crop, footprint=_disk(grow))
            longest = max(crop.shape)

    scale = BOX / longest
    new_h = max(1, int(round(crop.shape[0] * scale)))
    new_w = max(1, int(round(crop.shape[1] * scale)))
    resized = np.asarray(
        Image.fromarray(crop.astype(np.float32, copy=False), mode="F").resize((new_w, new_h), Image.Resampling.LANCZOS),
        dtype=np.float32,
    )
    resized = np.clip(resized, 0.0, None)
    inked = resized[resized > 0.05]
    top = _quantiles(inked, (90.0,))[0] if inked.size else float(resized.max())
    if top > 0:
        resized = np.clip(resized * np.float32(1.0 / top), 0.0, 1.0)

    total = float(resized.sum())
    if total <= 0:
        cy, cx = (new_h - 1) / 2, (new_w - 1) / 2
    else:
        cy = float(resized.sum(axis=1) @ np.arange(new_h)) / total
        cx = float(resized.sum(axis=0) @ np.arange(new_w)) / total
    top_left_y = int(round(SIZE / 2 - 0.5 - cy))
    top_left_x = int(round(SIZE / 2 - 0.5 - cx))
    top_left_y = min(max(top_left_y, 0), SIZE - new_h)
    top_left_x = min(max(top_left_x, 0), SIZE - new_w)
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top_left_y : top_left_y + new_h, top_left_x : top_left_x + new_w] = resized
    return out


def _disk(radius: int) -> np.ndarray:
    """A round footprint of diameter ``radius + 1``: dilation by it widens a stroke by ``radius``."""
    size = radius + 1
    centre = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy - centre) ** 2 + (xx - centre) ** 2 <= (centre + 0.5) ** 2
