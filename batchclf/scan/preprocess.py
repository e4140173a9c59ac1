"""The one preprocessing module: everything between pixels and the model.

Training feeds MNIST arrays through :func:`mnist_to_input`; prediction feeds
real scans through :func:`normalize` and then the same :func:`mnist_to_input`,
so the two cannot drift.  numpy and OpenCV only (no TensorFlow) so it runs in worker
processes and in ``batchclf report``; OpenCV is imported on the first page normalised
(see :func:`_cv`), so importing this module for :func:`mnist_to_input` stays cheap.
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
# The paper surface is fitted on a grid of about FIT_GRID points a side, in FIT_ROUNDS fits: one
# on the lighter pixels, then one on those within three noise spreads of it.  A quadratic needs
# few points, and a third fit moved the surface by less than the paper's noise (issue 22).
FIT_GRID = 20
FIT_ROUNDS = 2


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
    # A uint8 page's integral image, taken once: the work image's box sums and the finer
    # crop's are both read off it.
    total = _integral(gray) if gray.dtype == np.uint8 and work_factor > 1 else None
    found = _ink_map(*_work_image(gray, work_factor, total), cut_tight)
    if found is None:
        return None
    ink, level = found
    digit = _digit_mask(ink)
    if digit is None:
        return None
    mask, box, whole = digit
    if fit_factor < work_factor:
        fine = _finer_crop(gray, fit_factor, work_factor, ink, mask, box, level, total, whole)
        if fine is None:
            return None
        ink, mask, box = fine
    return _fit_and_centre(ink, mask, box)


def normalize_to_bytes(gray: np.ndarray) -> np.ndarray | None:
    """:func:`normalize`, stored the way MNIST stores digits: ``(28, 28)`` uint8, or ``None`` if blank.

    This is what workers hand to the model (through :func:`mnist_to_input`,
    like the training data).  A uint8 page already in MNIST form is returned
    as it is, without a round trip through floats: the common case of a
    folder of 28x28 digit images costs next to nothing here.
    """
    if isinstance(gray, np.ndarray) and gray.dtype == np.uint8:
        if is_mnist_form(gray):
            return gray
        # A digit fitted from bytes lies in [0, 1] (clipped, and no NaN can come of bytes): no range check.
        image = normalize(gray)
        return None if image is None else _unit_to_bytes(image)
    image = normalize(gray)
    if image is None:
        return None
    low, high = _cv().minMaxLoc(image)[:2]
    # A fitted digit lies in [0, 1]; a float page passed through as MNIST form may not (hostile input).
    return _unit_to_bytes(image) if 0.0 <= low and high <= 1.0 else to_bytes(image)


def to_bytes(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats as MNIST's 0-255 bytes (MNIST-form inputs round-trip exactly)."""
    return _unit_to_bytes(np.clip(image, 0.0, 1.0))


def _unit_to_bytes(image: np.ndarray) -> np.ndarray:
    """:func:`to_bytes` of float32 known to lie in [0, 1] (as :func:`normalize` returns them): no clipping pass.

    OpenCV's scaled conversion in one call: the float32 product by 255, rounded half to even
    (as ``np.rint``), and the absolute value, a no-op here.
    """
    return _cv().convertScaleAbs(image, alpha=255.0)


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
    factor = -(-max(shape) // side)
    return factor if factor > 1 and min(shape) >= factor else 1


def _work_factor(shape: tuple[int, int]) -> int:
    """The largest integer box that keeps the longer side at least WORK_MIN_SIDE (1: keep it)."""
    factor = max(shape) // WORK_MIN_SIDE
    return factor if factor > 1 and min(shape) >= factor else 1


def _work_image(gray: np.ndarray, factor: int, total: np.ndarray | None = None) -> tuple[np.ndarray, tuple[np.ndarray, float] | None]:
    """The page averaged over ``factor`` boxes as float32 in [0, 1], and for a uint8 page its levels.

    The levels are the exact integer box sums and the scale that makes them the means: the
    ink map counts them instead of sorting.  Sums, not means rounded to uint8: a rounded
    work image moves the ink/paper split on a few pages in a hundred.  ``total``: the uint8
    page's :func:`_integral`, if taken already.
    """
    if gray.dtype != np.uint8:
        return _box_mean(gray, factor), None
    if factor == 1:
        return _unit(gray), (gray, 1 / 255)
    sums = _box_sum(gray, factor, total)
    return _unit(sums, factor * factor), (sums, 1 / (255 * factor * factor))


def _integral(gray: np.ndarray) -> np.ndarray:
    """OpenCV's integral image of a uint8 page: int32 running sums, float64 (still exact) where int32 would overflow."""
    cv2 = _cv()
    wide = gray.size * 255 >= 2**31
    return cv2.integral(gray, sdepth=cv2.CV_64F if wide else cv2.CV_32S)


def _box_sum(gray: np.ndarray, factor: int, total: np.ndarray | None = None) -> np.ndarray:
    """Exact integer sums of a uint8 page over ``factor`` x ``factor`` boxes (a ragged last row or column is dropped)."""
    total = _integral(gray) if total is None else total
    return _sums_in(total, factor, 0, 0, gray.shape[0] // factor, gray.shape[1] // factor)


def _sums_in(total: np.ndarray, factor: int, top: int, left: int, rows: int, cols: int) -> np.ndarray:
    """Integer sums over ``rows`` x ``cols`` boxes of ``factor`` pixels from page pixel (``top``, ``left``), off an integral image.

    The integral image at the boxes' corners only, copied together (a strided view's
    subtraction costs several times a contiguous one's), then differences of its rows (sums
    over bands of ``factor`` rows) and of their columns.  Both differences run over the flat
    copy: the columns' difference across a row's end lands in a last column that is dropped.
    """
    bottom, right = top + rows * factor, left + cols * factor
    corners = np.ascontiguousarray(total[top : bottom + 1 : factor, left : right + 1 : factor]).ravel()
    width = cols + 1
    bands = corners[width:] - corners[:-width]
    sums = np.empty(rows * width, bands.dtype)
    np.subtract(bands[1:], bands[:-1], out=sums[:-1])
    sums = sums.reshape(rows, width)[:, :cols]
    return sums.astype(np.int64) if sums.dtype == np.float64 else sums


def _box_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Float32 means over ``factor`` x ``factor`` boxes (a ragged last row or column is dropped).

    OpenCV's area resampling at an integer factor is exactly the box mean.
    """
    if factor == 1:
        return image
    h, w = image.shape[0] // factor, image.shape[1] // factor
    cv2 = _cv()
    return cv2.resize(image[: h * factor, : w * factor], (w, h), interpolation=cv2.INTER_AREA)


def _unit(levels: np.ndarray, area: int = 1) -> np.ndarray:
    """Integer levels (a uint8 page, or sums over ``area`` pixels of one) as float32 in [0, 1]; float32 is already."""
    if levels.dtype == np.float32:
        return levels
    # Converted, then scaled in place: the same float32 product as a multiply with dtype=float32,
    # without its buffered casts.
    unit = levels.astype(np.float32)
    unit *= np.float32(1 / (255 * area))
    return unit


_CV2 = None


def _cv():
    """OpenCV, imported on first use and kept to one thread.

    Each worker process normalises on its own core, and on images this small OpenCV's
    thread pool would only add hand-offs between threads.
    """
    global _CV2
    if _CV2 is None:
        import cv2

        cv2.setNumThreads(1)
        _CV2 = cv2
    return _CV2


# --- The ink map ----------------------------------------------------------------------


class _Level:
    """What the ink map was cut with, so a finer copy of the same page can be cut alike."""

    def __init__(self, dark_ink: bool, surface: np.ndarray, threshold: float, peak: float, shape: tuple[int, int]):
        self.dark_ink, self.surface, self.threshold, self.peak, self.shape = dark_ink, surface, threshold, peak, shape

    def ink(self, residual: np.ndarray) -> np.ndarray:
        """Ink strength from the signal less the paper surface (scaled in place: ``residual`` is spent)."""
        half = self.threshold * 0.5
        residual -= np.float32(half)
        residual *= np.float32(1.0 / max(self.peak - half, 1e-6))
        return _clip01(residual)


def _clip01(image: np.ndarray) -> np.ndarray:
    """``np.clip(image, 0, 1)`` in place, as OpenCV's two thresholds: they pick the same values (no arithmetic),
    and cost less than numpy's maximum and minimum (about 4 against 6 us on a work image)."""
    cv2 = _cv()
    cv2.threshold(image, 0.0, 0.0, cv2.THRESH_TOZERO, dst=image)  # x > 0 ? x : 0
    return cv2.threshold(image, 1.0, 1.0, cv2.THRESH_TRUNC, dst=image)[1]  # x > 1 ? 1 : x


def _ink_map(gray: np.ndarray, levels: tuple[np.ndarray, float] | None = None,
             cut_tight: bool = False) -> tuple[np.ndarray, _Level] | None:
    """Ink strength in [0, 1] per pixel after polarity and uneven-background correction; None if no ink.

    ``levels``: the same image as integers (box sums of a uint8 page) and the scale that
    makes them ``gray``; its quantiles then come from one count of its levels, not a sort.
    ``cut_tight``: read the paper level off the outermost pixel ring only, and the paper
    noise off paper pixels away from any ink (see :func:`normalize`).
    """
    band = 1 if cut_tight else None
    fitted = not cut_tight and min(gray.shape) >= 4  # a paper surface will be fitted
    if fitted:
        # Polarity off the surface fit's grid, sorted once: its extremes, its frame's median, and
        # (the fit's start) its 60% level all come from the same sorted values.
        step = _grid_step(gray.shape)
        grid = gray[::step, ::step].copy()  # a copy of its own (a step of 1 would view the page): sorted in place below
        paper = _median(grid.take(_frame_index(grid.shape, band)), scratch=True)
        ordered = grid.reshape(-1)
        ordered.sort()
        darkest, lightest = _sorted_quantile(ordered, 0.5), _sorted_quantile(ordered, 99.5)
    elif levels is not None:
        sums, scale = _byte_levels(*levels)
        counts = np.bincount(sums.ravel())
        darkest, lightest = (v * scale for v in _count_quantiles(counts, (0.5, 99.5)))
        paper = _count_quantiles(_frame_counts(sums, counts, band), (50.0,))[0] * scale
    else:
        darkest, lightest = _quantiles(gray.ravel(), (0.5, 99.5))  # one partition pass
        paper = _median(_frame(gray, band))
    # The paper level is read off the image's frame, not the whole image: a bold digit cut
    # tight to its edges can be more than half ink, which would flip the polarity.
    dark_ink = (paper - darkest) >= (lightest - paper)
    signal = (1.0 - gray) if dark_ink else gray
    # A cell cut tight is too small and too inky for a surface through its paper: its paper is one level.
    if fitted:
        coefficients, fit_noise = _background_surface(signal, _signal_levels(ordered, dark_ink))
    else:
        coefficients, fit_noise = (_paper_level(signal), None) if cut_tight else _background_surface(signal)
    if coefficients.ndim:
        residual = _surface(coefficients, signal.shape)  # a fresh array: the residual is made in it
        np.subtract(signal, residual, out=residual)
    else:
        residual = signal - coefficients
    flat = residual.ravel()
    if fit_noise is not None:
        # The surface's fit measured the paper noise already, on paper pixels only (its grid).
        noise, peak = fit_noise, _peak(flat)
    else:
        # Paper noise from paper pixels only (below the ink/paper split): a spread over every
        # pixel grows with the share of ink, and would call a bold, tightly cropped digit noise.
        split = _otsu_threshold(flat)
        if cut_tight:
            noise, peak = _noise_and_peak_masked(flat, _away_from_ink((flat < split).reshape(residual.shape)).ravel())
        else:
            noise, peak = _noise_and_peak(flat, split, _deciding_noise)
    if peak < MIN_CONTRAST or peak < NOISE_SIGMAS * 2 * noise:
        return None
    threshold = _threshold(noise, peak)
    level = _Level(dark_ink, coefficients, threshold, peak, signal.shape)
    return level.ink(residual), level


def _grid_step(shape: tuple[int, int]) -> int:
    """Every how many pixels the paper surface is fitted: about FIT_GRID points along the longer side."""
    return max(1, -(-max(shape) // FIT_GRID))


def _sorted_quantile(ordered: np.ndarray, percent: float) -> float:
    """``np.percentile`` (linear interpolation) of values already in ascending order."""
    n = ordered.size
    x = percent / 100.0 * (n - 1)
    lo = int(x)
    a, b = float(ordered[lo]), float(ordered[min(lo + 1, n - 1)])
    return a + (b - a) * (x - lo)


def _signal_levels(ordered: np.ndarray, dark_ink: bool) -> tuple[float, float, float]:
    """The fit grid's lowest, highest and 60% signal levels from its sorted float32 page values.

    For dark ink the signal is 1 - page, each value rounded to float32 as the signal image
    holds it: its ascending order is the page's reversed.
    """
    if not dark_ink:
        return float(ordered[0]), float(ordered[-1]), _sorted_quantile(ordered, 60.0)
    one, n = np.float32(1.0), ordered.size
    x = 0.6 * (n - 1)
    lo = int(x)
    a, b = float(one - ordered[n - 1 - lo]), float(one - ordered[max(n - 2 - lo, 0)])
    return float(one - ordered[-1]), float(one - ordered[0]), a + (b - a) * (x - lo)


def _byte_levels(sums: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """Box sums as the 256 levels of their means (rounded), and the scale that makes those [0, 1].

    Only the polarity is read off these levels (the paper's level against the darkest and
    lightest): counting 256 levels costs a fraction of counting every possible sum (up to
    255 f² of them), and a rounding of half a level never decides which way the ink lies.
    """
    if sums.dtype == np.uint8 or sums.dtype == np.int64:  # a page analysed whole; or a huge page's exact sums
        return sums, scale
    return _cv().convertScaleAbs(sums, alpha=scale * 255.0), 1 / 255


def _peak(flat: np.ndarray) -> float:
    """The ink peak: the 99.8th percentile of the residuals (linear interpolation, as ``np.percentile``), at least 0.

    Sorts only the values above three quarters of the largest: on a page with a digit those are
    the core of its strokes, still ten times the top 0.2% the percentile reads (about 110 of a
    work image's 4,000, against 10); all of them otherwise.
    """
    n = flat.size
    high = _cv().minMaxLoc(flat)[1]
    if n <= 100:
        return max(high, 0.0)
    x = 99.8 / 100.0 * (n - 1)
    lo = int(x)
    top = flat[flat > 0.75 * high] if high > 0 else flat
    first = n - top.size  # the rank of the smallest value kept
    if lo < first:
        top, first = flat, 0
    ordered = np.sort(top)
    a, b = float(ordered[lo - first]), float(ordered[min(lo + 1, n - 1) - first])
    return max(a + (b - a) * (x - lo), 0.0)


def _threshold(noise: float, peak: float) -> float:
    """The ink/paper cut: clear of the paper noise, and of the faint halo around strong ink."""
    return max(NOISE_SIGMAS * noise, 0.25 * peak, MIN_CONTRAST * 0.5)


def _deciding_noise(bound: float, peak: float) -> bool:
    """Whether any paper noise up to ``bound`` gives the same blank test and threshold as ``bound`` itself."""
    return NOISE_SIGMAS * 2 * bound <= peak and NOISE_SIGMAS * bound <= max(0.25 * peak, MIN_CONTRAST * 0.5)


def _noise_and_peak(flat: np.ndarray, split: float, enough=None) -> tuple[float, float]:
    """The paper noise (1.4826 MAD of the residuals below ``split``) and the ink peak (their 99.8th percentile, >= 0).

    From one sort of the residuals: the paper's are its first part (no masking and copying),
    and every quantile is read off it.  ``enough(bound, peak)``: whether an upper bound of
    the noise will do in its place; the bound costs two reads, the median deviation a search
    (on a clean page the ink peak is many times the noise, and only the peak sets the threshold).
    """
    cv2 = _cv()
    ordered = cv2.sort(flat.reshape(1, -1), cv2.SORT_EVERY_ROW | cv2.SORT_ASCENDING)[0]
    n = ordered.size
    if n <= 100:
        peak = max(float(ordered[-1]), 0.0)
    else:
        x = 99.8 / 100.0 * (n - 1)
        lo = int(x)
        a, b = float(ordered[lo]), float(ordered[min(lo + 1, n - 1)])
        peak = max(a + (b - a) * (x - lo), 0.0)
    # As ``flat < split`` counts them: the comparison is made in the residuals' float32.
    n_below = int(ordered.searchsorted(ordered.dtype.type(split), side="left"))
    paper = ordered[:n_below] if n_below else ordered
    centre = _sorted_median(paper)
    if enough is not None:
        bound = 1.4826 * _deviation_bound(paper, centre)
        if enough(bound, peak):
            return bound, peak
    return 1.4826 * _sorted_deviation_median(paper, centre), peak


def _deviation_bound(ordered: np.ndarray, centre: float) -> float:
    """An upper bound of :func:`_sorted_deviation_median` from two order statistics.

    The values from rank n//4 to rank n//4 + n//2 are n//2 + 1 of the n, all within D of the
    centre (D the larger distance of the two ends to it): the median deviation is at most D.
    Widened by a millionth for the float32 rounding of the deviations.
    """
    n = ordered.size
    i = n // 4
    c = float(np.float32(centre))  # the centre the deviations are taken from
    spread = max(c - float(ordered[i]), float(ordered[i + n // 2]) - c, 0.0)
    return spread * (1 + 1e-6) + 1e-12


def _noise_and_peak_masked(flat: np.ndarray, below: np.ndarray) -> tuple[float, float]:
    """:func:`_noise_and_peak` with the paper given as a mask (a cell cut tight: its paper away from the ink)."""
    paper_residual = flat[below]
    n_below = paper_residual.size
    if n_below == 0:
        paper_residual = flat.copy()
    deviation = paper_residual - _median(paper_residual, scratch=True)
    noise = 1.4826 * _median(np.abs(deviation, out=deviation), scratch=True)
    if flat.size > 100:
        peak = max(_high_quantile(flat, 99.8, below, n_below if n_below else flat.size), 0.0)
    else:
        peak = max(float(flat.max()), 0.0)
    return noise, peak


def _sorted_deviation_median(ordered: np.ndarray, centre: float) -> float:
    """``np.median(np.abs(ordered - centre))`` for float32 values in ascending order, without a second sort.

    The deviations below the centre, read backwards, and those above it are two ascending
    runs; the middle ranks of both together are found by bisection on the first run's share.
    Exact differences order as the float32 ones do (rounding keeps order), so only the two
    values picked are rounded to float32, as the array arithmetic would round them.
    """
    n = ordered.size
    centre32 = np.float32(centre)
    split = int(ordered.searchsorted(centre32))  # below: ordered[:split] < centre
    item, c = ordered.item, float(centre32)

    def below(i):  # i-th smallest deviation among those below the centre
        return c - item(split - 1 - i)

    def above(j):  # j-th smallest deviation among the rest
        return item(split + j) - c

    n_below, n_above = split, n - split
    rank = (n - 1) // 2  # the 0-based rank of the lower middle value
    # i: how many of the rank + 1 smallest deviations lie below the centre.
    low, high = max(0, rank + 1 - n_above), min(rank + 1, n_below)
    while low < high:
        i = (low + high) // 2
        if below(i) < above(rank - i):  # the (i+1)-th from below is among the rank + 1 smallest
            low = i + 1
        else:
            high = i
    i, j = low, rank + 1 - low  # taken from below and from above
    lower_middle = max(below(i - 1) if i > 0 else -np.inf, above(j - 1) if j > 0 else -np.inf)
    if n % 2:
        return float(np.float32(lower_middle))
    upper_middle = min(below(i) if i < n_below else np.inf, above(j) if j < n_above else np.inf)
    a, b = float(np.float32(lower_middle)), float(np.float32(upper_middle))
    return a + (b - a) * 0.5


def _sorted_median(ordered: np.ndarray) -> float:
    """``np.median`` of values already in ascending order."""
    n = ordered.size
    lo = (n - 1) // 2
    a, b = float(ordered[lo]), float(ordered[min(lo + 1, n - 1)])
    return a + (b - a) * (0.5 * (n - 1) - lo)


def _count_quantiles(counts: np.ndarray, percents) -> list[float]:
    """``np.percentile`` (linear interpolation) of the integers that ``counts`` counts (``np.bincount``'s)."""
    cumulative = counts.cumsum()
    n = int(cumulative[-1])
    positions = [p / 100.0 * (n - 1) for p in percents]
    ranks = []
    for x in positions:
        lo = int(x)  # x >= 0: the floor
        ranks += [lo, min(lo + 1, n - 1)]
    values = cumulative.searchsorted(ranks, side="right").tolist()  # the level holding each rank
    return [a + (b - a) * (x - int(x)) for x, a, b in zip(positions, values[0::2], values[1::2])]


def _high_quantile(values: np.ndarray, percent: float, below: np.ndarray, n_below: int) -> float:
    """``np.percentile(values, percent)`` for a high ``percent``, sorting only the values not ``below`` a split."""
    n = values.size
    x = percent / 100.0 * (n - 1)
    lo = int(x)  # x >= 0: the floor
    if lo < n_below or n_below == n:
        return _quantiles(values, (percent,))[0]
    hi = min(lo + 1, n - 1)
    a, b = _ranked(values[~below], (lo - n_below, hi - n_below), scratch=True)
    return a + (b - a) * (x - lo)


def _quantiles(values: np.ndarray, percents) -> list[float]:
    """``np.percentile(values, percents)`` (linear interpolation) from one partition (or sort) of ``values``."""
    n = values.size
    positions = [p / 100.0 * (n - 1) for p in percents]
    ranks = [k for x in positions for k in (int(x), min(int(x) + 1, n - 1))]  # x >= 0: int is the floor
    found = _ranked(values, ranks)
    return [a + (b - a) * (x - int(x)) for x, a, b in zip(positions, found[0::2], found[1::2])]


def _median(values: np.ndarray, scratch: bool = False) -> float:
    """``np.median`` of a 1-D array from one partition (or sort); ``scratch``: ``values`` is a temporary that may be reordered."""
    n = values.size
    lo = (n - 1) // 2
    if lo + 1 >= n:
        return float(values[lo])  # a single value
    a, b = _ranked(values, (lo, lo + 1), scratch)
    return a + (b - a) * (0.5 * (n - 1) - lo)


def _magnitude_quantile(values: np.ndarray, percent: float) -> float:
    """:func:`_quantiles` of non-negative float64 values (50: the median), reordering them: ranked as their bits.

    Non-negative doubles order as their bits read as int64 do, and numpy ranks integers
    faster than floats (8 against 12 us on a fit's 700 paper deviations).
    """
    n = values.size
    x = percent / 100.0 * (n - 1)
    lo = int(x)
    hi = min(lo + 1, n - 1)
    bits = values.view(np.int64)
    if n < PARTITION_FROM:  # a grid this coarse: sorting beats partitioning
        bits.sort()
    else:
        bits.partition((lo, hi) if hi > lo else lo)
    a, b = float(values[lo]), float(values[hi])
    return a + (b - a) * (x - lo)


SORT_FROM = 2048  # from about this many values OpenCV's sort beats numpy's partition (2x at 5,000 ink-map residuals)
# Below about this many values numpy's sort beats its partition on a page's levels, which
# repeat (many equal paper values): 1 against 6 us at 136 fitted-digit values, even at 600.
PARTITION_FROM = 700


def _ranked(values: np.ndarray, ranks, scratch: bool = False) -> list[float]:
    """The values of a 1-D array at the given 0-based ranks in sorted order.

    ``scratch``: ``values`` is a temporary that may be reordered.
    """
    if values.size >= SORT_FROM:
        cv2 = _cv()
        ordered = cv2.sort(values.reshape(1, -1), cv2.SORT_EVERY_ROW | cv2.SORT_ASCENDING)[0]
    else:
        ordered = values if scratch else values.copy()
        if values.size < PARTITION_FROM:
            ordered.sort()
        else:
            ordered.partition(sorted(set(ranks)))
    return [float(ordered[k]) for k in ranks]


def _paper_level(signal: np.ndarray) -> np.ndarray:
    """The paper's one level (a 0-d array, like a surface too small to fit): the median on the paper side."""
    flat = signal.ravel()
    paper = flat[flat < _otsu_threshold(flat)]
    return np.asarray(_median(paper, scratch=True) if paper.size else _median(flat), np.float32)


def _away_from_ink(paper: np.ndarray) -> np.ndarray:
    """The paper pixels whose 3x3 neighbourhood is all paper: no anti-aliased stroke edge among them.

    (OpenCV's erosion counts outside the image as paper.)"""
    inner = _cv().erode(paper.view(np.uint8), _SQUARE_3X3).view(bool)
    return inner if np.count_nonzero(inner) >= 8 else paper


def _frame_counts(levels: np.ndarray, counts: np.ndarray, band: int | None = None) -> np.ndarray:
    """``np.bincount`` of :func:`_frame` of integer ``levels``, given ``counts``, theirs: the count of all less the inside's."""
    band = _band(levels.shape, band)
    if band is None:
        return counts
    return counts - np.bincount(levels[band:-band, band:-band].ravel(), minlength=counts.size)


def _band(shape: tuple[int, int], band: int | None) -> int | None:
    """The frame's width: ``band``, by default an eighth of the shorter side (at least 1 px); None if that is the whole image."""
    band = band or max(1, min(shape) // 8)
    return None if 2 * band >= min(shape) else band


@functools.lru_cache(maxsize=512)
def _frame_index(shape: tuple[int, int], band: int | None = None) -> np.ndarray:
    """The flat indices of :func:`_frame`'s pixels in an image of ``shape``, for ``take``.

    Cached for a fit grid's shapes (about FIT_GRID on the longer side: few of them), where
    one ``take`` costs a fraction of the frame's four slices and their concatenation.
    """
    index = _frame(np.arange(shape[0] * shape[1]).reshape(shape), band)
    index.flags.writeable = False
    return index


def _frame(gray: np.ndarray, band: int | None = None) -> np.ndarray:
    """The outer band (an eighth of the shorter side, at least 1 px, unless ``band`` says; the whole image
    if that is all): mostly paper."""
    band = _band(gray.shape, band)
    if band is None:
        return gray.ravel()
    return np.concatenate([gray[:band].ravel(), gray[-band:].ravel(), gray[band:-band, :band].ravel(), gray[band:-band, -band:].ravel()])


def _background_surface(signal: np.ndarray, levels: tuple[float, float, float] | None = None) -> tuple[np.ndarray, float | None]:
    """A smooth quadratic fit of the paper level, refitted on paper pixels only: its 6 coefficients, and the paper noise.

    Handles uneven lighting (a gradient or vignette across the page) without
    eating into thick strokes the way a morphological filter would.  A page
    too small or too inky to fit gives a constant (a 0-d array) and no noise (None).
    ``levels``: the grid's lowest, highest and 60% signal levels, if known (:func:`_signal_levels`).
    The noise is the robust spread (1.4826 MAD) of the paper the last fit went through,
    measured on the fit's grid: the ink map thresholds by it instead of splitting and
    sorting every residual of the page again.
    """
    h, w = signal.shape
    if h < 4 or w < 4:
        return np.asarray(_median(signal.ravel()), np.float32), None
    step = _grid_step(signal.shape)  # fit on a sparse grid: a smooth surface needs few points
    grid = signal[::step, ::step].astype(np.float64)
    values = grid.ravel()
    ys, xs = _grid_powers(h, step), _grid_powers(w, step)  # [1, t, t², t³, t⁴] along each side
    # Start from paper: the lighter 60%, less anything on the ink side of the ink/paper split.
    # The split matters for a digit cropped tight (a "0" filling its frame is nearly half
    # ink, and a quadratic surface through it would fit the ring and erase the digit).
    cv2 = _cv()
    if levels is not None:
        low, high, light = levels
    else:
        low, high, _, _ = cv2.minMaxLoc(values)
        # A page's signal is never negative, but a float page handed in may be: then no bit ranking.
        light = _magnitude_quantile(values.copy(), 60.0) if low >= 0 else _quantiles(values, (60.0,))[0]
    split = _otsu_threshold(values, extent=(low, high))
    keep = grid <= light if light < split else grid < split  # both bounds, by whichever is the tighter
    coefficients = noise = None
    weights = np.empty((2,) + grid.shape)
    along_y, along_x = ys[:, :3], xs[:, :3].T
    count = np.count_nonzero(keep)
    for refit in range(FIT_ROUNDS):
        if count < 6 * 4:
            break
        weights[0] = keep
        # Least squares through the normal equations: 6 unknowns on centred coordinates are
        # well conditioned, and OpenCV's 6x6 solve costs a fraction of numpy's (or of an SVD).
        # The terms are products of powers of y and x on a grid, so every entry of the normal
        # equations is a weighted moment sum y^a x^b: two small separable products give them
        # all (the 0/1 weights K for DᵀKD, K times the values for DᵀKv).
        np.multiply(weights[0], grid, out=weights[1])
        moments = (ys.T @ weights @ xs).take(_NORMAL_MOMENTS)  # of (2, 5, 5): [K or Kv][power of y][power of x]
        solved, coefficients = cv2.solve(moments[:36].reshape(6, 6), moments[36:].reshape(6, 1), flags=cv2.DECOMP_LU)
        if not solved:
            design = (ys[:, None, _TERM_Y] * xs[None, :, _TERM_X]).reshape(-1, 6)
            coefficients = np.linalg.lstsq(design[keep.ravel()], values[keep.ravel()], rcond=None)[0][:, None]
        if refit == FIT_ROUNDS - 1:
            break  # the last fit: its pixels to keep would go unused
        residual = grid - along_y @ _terms(coefficients.ravel()) @ along_x
        deviation = residual[keep]
        spread = 1.4826 * _magnitude_quantile(np.abs(deviation, out=deviation), 50.0)
        kept = residual < 3 * (spread + 1e-3)
        noise = _paper_noise(residual[kept])
        kept_count = np.count_nonzero(kept)
        if kept_count == count and not np.count_nonzero(kept ^ keep):
            break  # the same pixels would give the same fit
        keep, count = kept, kept_count
    if coefficients is None:
        return np.asarray(_median(signal.ravel()), np.float32), None
    return coefficients.ravel().astype(np.float32), noise


def _paper_noise(paper: np.ndarray) -> float:
    """1.4826 times the median absolute deviation from their median of a fit's paper residuals (reordered, spent).

    The paper the last fit went through: every pixel within three spreads of the surface (the
    spread itself was measured on the lighter part only, and would call the grain too fine).
    """
    if paper.size == 0:
        return 0.0
    paper.sort()
    paper -= _sorted_median(paper)
    return 1.4826 * _magnitude_quantile(np.abs(paper, out=paper), 50.0)


# The surface's terms 1, x, y, x², y², xy as powers (of y, of x), and the normal equations'
# entries (term i times term j) as the moments they are.
_TERM_Y = np.array([0, 0, 1, 0, 2, 1])
_TERM_X = np.array([0, 1, 0, 2, 0, 1])
# Flat indices into the (2, 5, 5) moments: the 6x6 matrix DᵀKD, then the right-hand side DᵀKv.
_NORMAL_MOMENTS = np.concatenate([((_TERM_Y[:, None] + _TERM_Y) * 5 + _TERM_X[:, None] + _TERM_X).ravel(), 25 + _TERM_Y * 5 + _TERM_X])


def _terms(c: np.ndarray, dtype=None) -> np.ndarray:
    """The 6 coefficients as the 3x3 matrix C with c0 + c1 x + c2 y + c3 x² + c4 y² + c5 xy = [1 y y²] C [1 x x²]ᵀ.

    In ``c``'s dtype unless ``dtype`` says (float32 coefficients widen exactly to doubles).
    """
    c0, c1, c2, c3, c4, c5 = c.tolist()  # Python floats: cheaper to lay out than numpy scalars
    return np.array([[c0, c1, c3], [c2, c5, 0.0], [c4, 0.0, 0.0]], c.dtype if dtype is None else dtype)


@functools.lru_cache(maxsize=512)
def _grid_powers(n: int, step: int) -> np.ndarray:
    """``[1, t, t², t³, t⁴]`` at every ``step``-th of ``n`` pixel coordinates, ``t`` centred to [-0.5, 0.5]."""
    t = np.arange(0, n, step) / max(n - 1, 1) - 0.5
    powers = t[:, None] ** np.arange(5)
    powers.flags.writeable = False
    return powers


def _surface(c: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The quadratic paper surface with coefficients ``c`` over a whole image of ``shape``."""
    h, w = shape
    # c0 + c1 x + c2 y + c3 x² + c4 y² + c5 xy  =  [1 y y²] C [1 x x²]ᵀ
    terms = _terms(c.astype(np.float32, copy=False))
    return _product(_powers(h, h) @ terms, _powers(w, w).T)


@functools.lru_cache(maxsize=512)
def _powers(n: int, frame: int) -> np.ndarray:
    """``[1, t, t²]`` for the ``n`` first pixels of a ``frame``-long side, ``t`` centred on it (pages repeat sizes)."""
    powers = _coordinate_powers(np.arange(n), frame)
    powers.flags.writeable = False
    return powers


def _coordinate_powers(coordinates: np.ndarray, frame: int) -> np.ndarray:
    """``[1, t, t²]`` at pixel coordinates (maybe fractional) along a ``frame``-long side, ``t`` from -0.5 to 0.5."""
    powers = np.empty((coordinates.size, 3), np.float32)
    powers[:, 0] = 1.0
    t = powers[:, 1]
    np.divide(coordinates, max(frame - 1, 1), out=t, casting="unsafe")
    t -= 0.5
    np.multiply(t, t, out=powers[:, 2])
    return powers


def _otsu_threshold(values: np.ndarray, bins: int = 64, extent: tuple[float, float] | None = None) -> float:
    """The level that best splits ``values`` into two classes (Otsu: most between-class variance).

    The histogram is ``np.histogram``'s (``bins`` equal bins over the range).  Each value's
    bin number goes to OpenCV's Otsu as a byte: the split that maximises the variance
    between classes of bin numbers is the split between classes of values, as the bin
    centres are the numbers scaled and shifted.  ``extent``: their minimum and maximum, if known.
    """
    cv2 = _cv()
    low, high = cv2.minMaxLoc(values)[:2] if extent is None else extent
    if low == high:
        low, high = low - 0.5, high + 0.5
    width = (high - low) / bins
    index = values - low
    index *= 1.0 / width
    cv2.threshold(index, bins - 1, bins - 1, cv2.THRESH_TRUNC, dst=index)  # the top value into the last bin
    last_low_bin, _ = cv2.threshold(index.astype(np.uint8), 0, 255, cv2.THRESH_OTSU)
    return low + width * (int(last_low_bin) + 1)


# --- The digit --------------------------------------------------------------------------


def _digit_mask(ink: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int], bool] | None:
    """The pixels that belong to the digit: large connected components, minus specks and edge lines.

    Returns the mask, its bounding box ``(top, bottom, left, right)`` (bottom and right
    exclusive), read off the kept components' boxes, and whether it is all the ink (every
    component kept: there is no other ink to keep the finer crop from).
    """
    cv2 = _cv()
    binary = (ink > 0).view(np.uint8)
    count, labels = cv2.connectedComponents(binary, connectivity=8, ltype=cv2.CV_32S)
    if count <= 1:
        return None
    if count == 2:
        # One component (most pages): it is the digit; its statistics would cost three times the labelling.
        if cv2.countNonZero(binary) < 3:
            return None
        left, top, width, height = cv2.boundingRect(binary)
        return binary.view(bool), (top, top + height, left, left + width), True
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8, ltype=cv2.CV_32S)
    # Each component's ink (label 0, the background, has none).
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=count).tolist()
    largest = max(mass)
    h, w = ink.shape
    candidates = [i for i in range(1, count) if mass[i] >= SPECK_FRACTION * largest]  # specks never need their box
    boxes = stats[candidates].tolist()  # left, top, width, height, area
    kept = [(i, box) for i, box in zip(candidates, boxes) if not (_is_edge_line(box, h, w) and mass[i] < largest)]
    if not kept:
        # Only edge lines: the largest is still the best guess of the digit.
        i = mass.index(largest)
        kept = [(i, stats[i].tolist())]
    if sum(box[4] for _, box in kept) < 3:
        return None
    if len(kept) == 1:
        mask = labels == kept[0][0]
    else:
        wanted = np.zeros(count, bool)
        wanted[[i for i, _ in kept]] = True
        mask = wanted[labels]
    top = min(box[1] for _, box in kept)
    bottom = max(box[1] + box[3] for _, box in kept)
    left = min(box[0] for _, box in kept)
    right = max(box[0] + box[2] for _, box in kept)
    return mask, (top, bottom, left, right), len(kept) == count - 1


def _is_edge_line(stat: list[int], h: int, w: int) -> bool:
    """A long thin component touching the border: a ruled or grid line left by cutting the scan.

    ``stat``: the component's row of OpenCV's statistics (left, top, width, height, area)."""
    left, top, width, height = stat[:4]
    touches = top == 0 or left == 0 or top + height == h or left + width == w
    thin = max(height, width) >= 6 * max(min(height, width), 1)
    long = height >= 0.4 * h or width >= 0.4 * w
    return touches and thin and long


def _finer_crop(gray, fit_factor: int, work_factor: int, ink: np.ndarray, mask: np.ndarray, box, level: _Level,
                total: np.ndarray | None = None, whole: bool = False):
    """The digit's ink, mask and box cut from a finer copy of the page (box size ``fit_factor``), or None.

    Only the digit's box (and one work pixel around it) is averaged and cut, with
    the polarity, paper surface, threshold and peak found on the work image.  A
    fine pixel is the digit's when it is ink and its work pixel is the digit or
    touches it without belonging to another component (a speck or an edge line).
    ``whole``: the mask is all the ink (there is no other component to keep apart).
    """
    cv2 = _cv()
    h, w = ink.shape
    top_row, bottom_row, left_col, right_col = box
    r0, r1 = max(top_row - 1, 0), min(bottom_row + 1, h)  # work pixels, one around the box
    c0, c1 = max(left_col - 1, 0), min(right_col + 1, w)
    near = mask[r0:r1, c0:c1]
    allowed = cv2.dilate(near.view(np.uint8), _SQUARE_3X3).view(bool)  # outside the image counts as not the digit
    if not whole:
        other_ink = (ink[r0:r1, c0:c1] > 0) > near  # ink of another component (a > b: a and not b)
        allowed = allowed > other_ink
    top, left = r0 * work_factor, c0 * work_factor
    rows = (r1 - r0) * work_factor // fit_factor  # a ragged last fine row or column is dropped
    cols = (c1 - c0) * work_factor // fit_factor
    if total is not None and fit_factor > 1:  # a uint8 page's box sums, off its integral image
        region = None
        fine = _unit(_sums_in(total, fit_factor, top, left, rows, cols), fit_factor * fit_factor)
    else:
        region = gray[top : top + rows * fit_factor, left : left + cols * fit_factor]
        fine, _ = _work_image(region, fit_factor)
    if fine.base is None and fine is not region:  # a fresh array: turned into the residual in place
        residual = np.subtract(1.0, fine, out=fine) if level.dark_ink else fine
    else:
        residual = (1.0 - fine) if level.dark_ink else fine.copy()
    powers_y, parent_y = _fine_axis(rows, fit_factor, work_factor)
    powers_x, parent_x = _fine_axis(cols, fit_factor, work_factor)
    coefficients = level.surface
    if coefficients.ndim:
        # The surface in the crop's own coordinates: t = (r0 + u) / (h - 1) - 0.5 is linear in the
        # fine pixel's work coordinate u from the crop's edge, so [1 t t²] = [1 u u²] M with M
        # from the crop's place, and the cached powers of u serve every crop of this length.
        frame_h, frame_w = level.shape  # the work image the surface was fitted on
        terms = _shifted(r0, frame_h) @ _terms(coefficients, np.float64) @ _shifted(c0, frame_w).T
        residual -= _product(powers_y @ terms, powers_x.T)
    else:
        residual -= coefficients
    fine_ink = level.ink(residual)
    fine_mask = allowed.take(parent_x, axis=1).take(parent_y, axis=0)  # columns first: the slower take on fewer rows
    fine_mask &= fine_ink > 0
    x, y, width, height = cv2.boundingRect(fine_mask.view(np.uint8))
    if width == 0 or cv2.countNonZero(fine_mask.view(np.uint8)) < 3:
        return None
    return fine_ink, fine_mask, (y, y + height, x, x + width)


@functools.lru_cache(maxsize=256)
def _fine_axis(n: int, fit_factor: int, work_factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Along ``n`` fine pixels cut from a work pixel's edge: ``[1, u, u²]`` of each one's centre u in work pixels, and the work pixel under it.

    Both from that edge (a crop's first work pixel is added to the centres; the parents are
    already where the crop's allowed map counts from).  A fine pixel k's centre is page
    coordinate p = k f + (f - 1) / 2 from the edge; a work pixel i covers page pixels
    [i w, (i + 1) w), so p is work coordinate (p + 0.5) / w - 0.5, under work pixel p // w.
    """
    page = np.arange(n) * fit_factor + (fit_factor - 1) / 2
    centres = (page + 0.5) / work_factor - 0.5
    powers = centres[:, None] ** np.arange(3)
    parents = (page // work_factor).astype(np.intp)
    powers.flags.writeable = parents.flags.writeable = False
    return powers, parents


@functools.lru_cache(maxsize=4096)
def _shifted(start: int, frame: int) -> np.ndarray:
    """M with [1 t t²] = [1 u u²] M for t = (start + u) / (frame - 1) - 0.5: a side's powers from a crop's own coordinate u.

    Cached (read-only): keyed on a work image's side and a crop's start along it, which repeat
    across a folder's pages of one size (building the 3x3 costs more than a look-up).
    """
    a = 1.0 / max(frame - 1, 1)
    b = start * a - 0.5
    shifted = np.array([[1.0, b, b * b], [0.0, a, 2 * a * b], [0.0, 0.0, a * a]])
    shifted.flags.writeable = False
    return shifted


_SQUARE_3X3 = np.ones((3, 3), np.uint8)
_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)


@functools.lru_cache(maxsize=8)
def _steps_cached(n: int) -> np.ndarray:
    steps = np.arange(n, dtype=np.float64)
    steps.flags.writeable = False
    return steps


def _steps(n: int) -> np.ndarray:
    """0, 1, ..., n - 1 as floats, read-only: a slice of a cached power-of-two-long run."""
    size = 1 << max(n - 1, 1).bit_length()
    return _steps_cached(size)[:n]


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary shape: area over half its perimeter.

    The perimeter is the shape less its erosion by a cross, outside the image
    counting as background.
    """
    cv2 = _cv()
    pixels = mask.view(np.uint8)
    area = float(cv2.countNonZero(pixels))
    inner = cv2.erode(pixels, _CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    edge_count = area - float(cv2.countNonZero(inner))
    return 2.0 * area / max(edge_count, 1.0)


def _fit_and_centre(ink: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The digit's ink inside ``box`` fitted into the 20x20 box (aspect kept) and centred by mass in 28x28."""
    cv2 = _cv()
    top, bottom, left, right = box
    crop_mask = mask[top:bottom, left:right]
    # Only the digit's pixels (ink is never negative).  Multiplied in float32 (by 0 or 1: exact), and
    # turned into the doubles the fit resamples in by the resize: a product in doubles of float32
    # and bool views goes through numpy's buffered casts, at about twice the cost.
    crop = np.multiply(ink[top:bottom, left:right], crop_mask)
    longest = max(crop.shape)

    # A fine pen on a big scan shrinks to a faint 1 px line; MNIST strokes are bolder.
    wanted = TARGET_STROKE * longest
    # A stroke width is never below 2 (area over half a perimeter of at most the area, and
    # a digit has 3 pixels or more): a digit up to 30 px is never thickened, and its width
    # need not be measured.
    width = _stroke_width(crop_mask) if 0.6 * wanted > 2.0 else 2.0
    if width < 0.6 * wanted:
        grow = int(round(wanted - width))
        if grow >= 1:
            crop = cv2.copyMakeBorder(crop, grow, grow, grow, grow, cv2.BORDER_CONSTANT, value=0)
            crop = cv2.dilate(crop, _disk(grow), anchor=_disk_anchor(grow), borderType=cv2.BORDER_CONSTANT, borderValue=0)
            longest = max(crop.shape)

    scale = BOX / longest
    new_h = max(1, int(round(crop.shape[0] * scale)))
    new_w = max(1, int(round(crop.shape[1] * scale)))
    resized = _lanczos_resize(crop, new_h, new_w)
    cv2.threshold(resized, 0.0, 0.0, cv2.THRESH_TOZERO, dst=resized)  # the filter's negative lobes
    top_level = _inked_level(resized)
    if top_level > 0:
        resized *= np.float32(1.0 / top_level)
        cv2.threshold(resized, 1.0, 1.0, cv2.THRESH_TRUNC, dst=resized)

    # Centre of mass with numpy's float32 sums, not OpenCV's moments (in doubles): on a digit
    # symmetric to the pixel the centre falls on a half pixel, and the last bit decides its side.
    total = float(resized.sum())
    if total <= 0:
        cy, cx = (new_h - 1) / 2, (new_w - 1) / 2
    else:
        cy = float(resized.sum(axis=1) @ _steps(new_h)) / total
        cx = float(resized.sum(axis=0) @ _steps(new_w)) / total
    top_left_y = int(round(SIZE / 2 - 0.5 - cy))
    top_left_x = int(round(SIZE / 2 - 0.5 - cx))
    top_left_y = min(max(top_left_y, 0), SIZE - new_h)
    top_left_x = min(max(top_left_x, 0), SIZE - new_w)
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top_left_y : top_left_y + new_h, top_left_x : top_left_x + new_w] = resized
    return out


def _inked_level(resized: np.ndarray) -> float:
    """The 90th percentile (``np.percentile``'s) of the fitted digit's inked values (above 0.05); its maximum if none.

    From one sort of all its values: the inked ones are the sorted tail.
    """
    ordered = np.sort(resized, axis=None)
    n = ordered.size
    k = n - int(ordered.searchsorted(np.float32(0.05), side="right"))  # as ``resized > 0.05`` counts in float32
    if k == 0:
        return float(ordered[-1])
    x = 90.0 / 100.0 * (k - 1)
    lo = int(x)
    a, b = float(ordered[n - k + lo]), float(ordered[n - k + min(lo + 1, k - 1)])
    return a + (b - a) * (x - lo)


def _lanczos_resize(image: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    """Pillow's antialiased Lanczos resize of a float32 (or float64) image (rows, then columns) to float32, as two small matrix products.

    The digit has been fitted this way since the first version; Pillow does the same sums
    pixel by pixel, and its per-call set-up costs more than the products on a digit this size.
    """
    out = image
    # In doubles, each pass rounded to float32 as Pillow stores it: the same floats but for a
    # rare last bit, so a digit symmetric to the pixel is centred as it was.
    if new_w != image.shape[1]:
        out = _product(np.asarray(out, np.float64), _lanczos_weights(image.shape[1], new_w).T).astype(np.float32)
    if new_h != image.shape[0]:
        out = _product(_lanczos_weights(image.shape[0], new_h), out.astype(np.float64)).astype(np.float32)
    return out if out is not image else image.astype(np.float32)  # a copy: the caller scales it in place


# OpenBLAS (numpy's) runs a product on one thread up to 65536 x 4 multiply-adds; above that it
# hands it to threads, whose hand-offs and waiting cost more than the product on a worker that
# has one core.  OpenCV's product stays on the calling thread but costs about twice numpy's
# single-threaded one, and more per call (4 against 1.5 us on the paper surface).
BLAS_ONE_THREAD = 65536 * 4


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` by numpy on one thread where OpenBLAS keeps it there, else by OpenCV."""
    if a.shape[0] * a.shape[1] * b.shape[1] <= BLAS_ONE_THREAD:
        return a @ b
    cv2 = _cv()
    return cv2.gemm(a, b, 1.0, None, 0.0)


@functools.lru_cache(maxsize=1024)
def _lanczos_weights(in_size: int, out_size: int) -> np.ndarray:
    """The ``(out_size, in_size)`` matrix of Pillow's Lanczos (a = 3) resampling, as Pillow computes it.

    Downscaling widens the kernel by the scale (that is the antialiasing); each output
    pixel's weights are normalised to sum to one.
    """
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 3.0 * filter_scale
    centres = (np.arange(out_size) + 0.5) * scale
    # Each output pixel reads the input pixels [first, last) (C's truncation, as Pillow has it);
    # only that band is computed: a weight costs two sines, and a job meets many sizes.
    first = np.maximum((centres - support + 0.5).astype(np.intp), 0)
    last = np.minimum((centres + support + 0.5).astype(np.intp), in_size)
    span = int((last - first).max())
    pixels = first[:, None] + np.arange(span)
    x = (pixels - centres[:, None] + 0.5) * (1.0 / filter_scale)
    inside = (pixels < last[:, None]) & (x >= -3.0) & (x < 3.0)
    # sinc(x) sinc(x / 3), each sin(πt) / (πt) with t multiplied as Pillow does, and 1 at x = 0.
    zero = x == 0.0
    x[zero] = 1.0
    a, b = x * np.pi, (x / 3.0) * np.pi
    band = (np.sin(a) / a) * (np.sin(b) / b)
    band[zero] = 1.0
    band[~inside] = 0.0
    totals = band.cumsum(axis=1)[:, -1:]  # summed left to right, as Pillow sums them
    band /= np.where(totals != 0.0, totals, 1.0)
    # Laid into the full matrix, padded on the right so a band near the end needs no clipping.
    weights = np.zeros((out_size, in_size + span))
    weights[np.arange(out_size)[:, None], pixels] = band
    weights = np.ascontiguousarray(weights[:, :in_size])
    weights.flags.writeable = False
    return weights


@functools.lru_cache(maxsize=64)
def _disk(radius: int) -> np.ndarray:
    """A round footprint of diameter ``radius + 1``: dilation by it widens a stroke by ``radius``."""
    size = radius + 1
    centre = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size]
    disk = ((yy - centre) ** 2 + (xx - centre) ** 2 <= (centre + 0.5) ** 2).astype(np.uint8)
    disk.flags.writeable = False
    return disk


def _disk_anchor(radius: int) -> tuple[int, int]:
    """Where the disk sits on each pixel: its middle, or for an even size the pixel before the middle
    (the footprint's origin since the first version, which dilated with scipy's grey_dilation)."""
    size = radius + 1
    return ((size - 1) // 2, (size - 1) // 2)
