"""The one preprocessing module: everything between pixels and the model.

Training feeds MNIST arrays through :func:`mnist_to_input`; prediction feeds
real scans through :func:`normalize` and then the same :func:`mnist_to_input`,
so the two cannot drift.  numpy only (no TensorFlow) so it runs in worker
processes and in ``batchclf report``.
"""

from __future__ import annotations

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
WORK_MAX_SIDE = 160  # the ink map is analysed at most this large: plenty for a 20 px target
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
    if gray.dtype == np.uint8:
        gray = gray.astype(np.float32) * np.float32(1 / 255)
    else:
        gray = gray.astype(np.float32, copy=False)
    if is_mnist_form(gray):
        return gray.copy()
    ink = _ink_map(_shrink(gray))
    if ink is None:
        return None
    mask = _digit_mask(ink)
    if mask is None:
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


def _shrink(gray: np.ndarray) -> np.ndarray:
    """Box-average down to at most WORK_MAX_SIDE: fast, and averages away paper grain."""
    factor = int(np.ceil(max(gray.shape) / WORK_MAX_SIDE))
    if factor <= 1:
        return gray
    h, w = (gray.shape[0] // factor) * factor, (gray.shape[1] // factor) * factor
    if h == 0 or w == 0:
        return gray
    return gray[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def _ink_map(gray: np.ndarray) -> np.ndarray | None:
    """Ink strength >= 0 per pixel after polarity and uneven-background correction; None if no ink."""
    darkest, lightest = (float(v) for v in np.percentile(gray, [0.5, 99.5]))  # one partition pass
    # The paper level is read off the image's frame, not the whole image: a bold digit cut
    # tight to its edges can be more than half ink, which would flip the polarity.
    paper = _frame_median(gray)
    dark_ink = (paper - darkest) >= (lightest - paper)
    signal = (1.0 - gray) if dark_ink else gray
    residual = signal - _background_surface(signal)
    ink = np.clip(residual, 0.0, None)
    # Paper noise from paper pixels only (below the ink/paper split): a spread over every
    # pixel grows with the share of ink, and would call a bold, tightly cropped digit noise.
    paper_residual = residual[residual < _otsu_threshold(residual.ravel())]
    if paper_residual.size == 0:
        paper_residual = residual
    noise = 1.4826 * float(np.median(np.abs(paper_residual - np.median(paper_residual))))
    peak = float(np.percentile(ink, 99.8)) if ink.size > 100 else float(ink.max())
    if peak < MIN_CONTRAST or peak < NOISE_SIGMAS * 2 * noise:
        return None
    threshold = max(NOISE_SIGMAS * noise, 0.25 * peak, MIN_CONTRAST * 0.5)
    ink = np.clip((ink - threshold * 0.5) / max(peak - threshold * 0.5, 1e-6), 0.0, 1.0)
    ink[residual < threshold * 0.5] = 0.0
    return ink


def _frame_median(gray: np.ndarray) -> float:
    """The median of the outer band (an eighth of the shorter side, at least 1 px): mostly paper."""
    h, w = gray.shape
    band = max(1, min(h, w) // 8)
    if 2 * band >= min(h, w):
        return float(np.median(gray))
    frame = np.concatenate([gray[:band].ravel(), gray[-band:].ravel(), gray[band:-band, :band].ravel(), gray[band:-band, -band:].ravel()])
    return float(np.median(frame))


def _background_surface(signal: np.ndarray) -> np.ndarray:
    """A smooth quadratic fit of the paper level, refitted on paper pixels only.

    Handles uneven lighting (a gradient or vignette across the page) without
    eating into thick strokes the way a morphological filter would.
    """
    h, w = signal.shape
    if h < 4 or w < 4:
        return np.full_like(signal, float(np.median(signal)))
    step = max(1, int(np.ceil(max(h, w) / 40)))  # fit on a sparse grid: a smooth surface needs few points
    yy, xx = np.mgrid[0:h:step, 0:w:step]
    design = _quadratic_design(yy.ravel() / max(h - 1, 1) - 0.5, xx.ravel() / max(w - 1, 1) - 0.5)
    values = signal[::step, ::step].ravel()
    # Start from paper: the lighter 60%, less anything on the ink side of the ink/paper split.
    # The split matters for a digit cropped tight (a "0" filling its frame is nearly half
    # ink, and a quadratic surface through it would fit the ring and erase the digit).
    keep = (values <= np.percentile(values, 60)) & (values < _otsu_threshold(values))
    coefficients = None
    for _ in range(3):
        if keep.sum() < design.shape[1] * 4:
            break
        coefficients, *_ = np.linalg.lstsq(design[keep], values[keep], rcond=None)
        residual = values - design @ coefficients
        spread = 1.4826 * np.median(np.abs(residual[keep])) + 1e-3
        keep = residual < 3 * spread
    if coefficients is None:
        return np.full_like(signal, float(np.median(signal)))
    ys = np.arange(h, dtype=np.float32) / max(h - 1, 1) - 0.5
    xs = np.arange(w, dtype=np.float32) / max(w - 1, 1) - 0.5
    c = coefficients.astype(np.float32)
    return (
        c[0] + c[1] * xs[None, :] + c[2] * ys[:, None] + c[3] * (xs * xs)[None, :]
        + c[4] * (ys * ys)[:, None] + c[5] * ys[:, None] * xs[None, :]
    )


def _otsu_threshold(values: np.ndarray, bins: int = 64) -> float:
    """The level that best splits ``values`` into two classes (Otsu: most between-class variance)."""
    counts, edges = np.histogram(values, bins=bins)
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


def _digit_mask(ink: np.ndarray) -> np.ndarray | None:
    """The pixels that belong to the digit: large connected components, minus specks and edge lines."""
    from scipy import ndimage

    binary = ink > 0
    labels, count = ndimage.label(binary, structure=np.ones((3, 3), bool))
    if count == 0:
        return None
    index = np.arange(1, count + 1)
    mass = ndimage.sum_labels(ink, labels, index)
    boxes = ndimage.find_objects(labels)
    h, w = ink.shape
    keep = np.zeros(count + 1, bool)
    largest = float(mass.max())
    for i, (box, weight) in enumerate(zip(boxes, mass), start=1):
        if weight < SPECK_FRACTION * largest:
            continue
        if _is_edge_line(box, h, w) and weight < largest:
            continue
        keep[i] = True
    if not keep.any():
        # Only edge lines: the largest is still the best guess of the digit.
        keep[int(np.argmax(mass)) + 1] = True
    mask = keep[labels]
    if mask.sum() < 3:
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


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary shape: area over half its perimeter."""
    from scipy import ndimage

    area = float(mask.sum())
    edge = mask & ~ndimage.binary_erosion(mask, border_value=0)
    return 2.0 * area / max(float(edge.sum()), 1.0)


def _fit_and_centre(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from PIL import Image
    from scipy import ndimage

    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    crop = np.where(mask, ink, 0.0)[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    crop_mask = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
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
        Image.fromarray(crop.astype(np.float32), mode="F").resize((new_w, new_h), Image.Resampling.LANCZOS),
        dtype=np.float32,
    )
    resized = np.clip(resized, 0.0, None)
    top = float(np.percentile(resized[resized > 0.05], 90)) if (resized > 0.05).any() else float(resized.max())
    if top > 0:
        resized = np.clip(resized / top, 0.0, 1.0)

    total = float(resized.sum())
    if total <= 0:
        cy, cx = (new_h - 1) / 2, (new_w - 1) / 2
    else:
        cy, cx = ndimage.center_of_mass(resized)
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
