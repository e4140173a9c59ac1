"""Normalising with OpenCV gives today's digits: fixed outputs on known pages, and each new helper against an independent reference.

The expected digits below were recorded from the numpy/scipy normaliser this one replaced
(main before issue 22), on pages built here from fixed seeds; each path through
``normalize`` has one: the finer crop of a large page, specks and an edge line (the
components' statistics), a float page with light ink, a thin pen (thickening), a small
cell analysed whole, a bold digit cut tight (the second look), and a blank page.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np
import pytest
from PIL import Image

from batchclf.scan import preprocess

# Tolerance against the recorded digits: the same bytes are expected; a different BLAS or
# OpenCV build may round a few pixels one level the other way.
MEAN_TOLERANCE = 0.5 / 255
MAX_TOLERANCE = 8 / 255


def _ring(h, w, box, stroke, ink, paper):
    page = np.full((h, w), paper, np.float32)
    top, bottom, left, right = box
    page[top:bottom, left:right] = ink
    page[top + stroke : bottom - stroke, left + stroke : right - stroke] = paper
    return page


def _lit_and_grainy(page, seed, gradient=0.25, grain=0.03):
    rng = np.random.default_rng(seed)
    h, w = page.shape
    light = np.linspace(0.0, gradient, w, dtype=np.float32)[None, :] + np.linspace(0.0, gradient / 2, h, dtype=np.float32)[:, None]
    return np.clip(page - light + rng.normal(0, grain, page.shape).astype(np.float32), 0, 1)


def _bytes(page):
    return (page * 255).round().astype(np.uint8)


def large_scan():
    """~300 px uint8 scan, uneven light and grain: analysed at a quarter, fitted from a half-size copy."""
    return _bytes(_lit_and_grainy(_ring(310, 270, (60, 250, 70, 190), 22, 0.15, 0.92), seed=1))


def specks_and_edge_line():
    """The large scan with dust and a ruled line along its left edge: three components, two dropped."""
    page = _lit_and_grainy(_ring(310, 270, (60, 250, 70, 190), 22, 0.15, 0.92), seed=2)
    page[10:16, 240:246] = 0.1
    page[290:294, 20:24] = 0.1
    page[:, 0:4] = 0.2
    return _bytes(page)


def light_ink_float():
    """Light ink on a dark page, as float32 (a 16-bit or float TIFF): the float path, no level counts."""
    return 1.0 - _lit_and_grainy(_ring(200, 160, (30, 170, 40, 120), 14, 0.1, 0.95), seed=3, gradient=0.1)


def thin_pen():
    """A 3 px line on a 400 px page: thickened to MNIST's strokes before the fit."""
    page = np.full((400, 400), 0.93, np.float32)
    page[50:350, 198:201] = 0.15
    page[50:53, 150:200] = 0.15
    return _bytes(_lit_and_grainy(page, seed=4, gradient=0.05, grain=0.02))


def small_cell_with_grid_line():
    """A 95x84 cell of a form (analysed whole): a '7' with a grid line left along its bottom."""
    page = np.full((95, 84), 0.9, np.float32)
    page[18:24, 20:66] = 0.2
    for i in range(55):
        page[24 + i, 60 - i // 2 : 66 - i // 2] = 0.2
    page[91:94, :] = 0.35
    return _bytes(_lit_and_grainy(page, seed=5, gradient=0.08, grain=0.02))


def bold_cut_tight():
    """A bold '0' cut by its 16x16 cell's top and bottom (as USPS cuts them), anti-aliased: blank until the second look."""
    yy, xx = (np.mgrid[0:128, 0:128] + 0.5) / 128 - 0.5
    radius = np.hypot(yy / 0.6, xx / 0.45)
    fine = np.where((radius <= 1.0) & (radius >= 0.35), 0.0, 1.0)
    return fine.reshape(16, 8, 16, 8).mean(axis=(1, 3)).astype(np.float32)


def blank_with_grain():
    rng = np.random.default_rng(6)
    return np.clip(rng.normal(225, 6, (240, 200)), 0, 255).astype(np.uint8)


# Recorded from the numpy/scipy normaliser (main at e6f3676): zlib-compressed, base64 28x28 bytes; None: blank.
EXPECTED = {
    "large_scan": "eNpjYBgY8PnLxw8f379/8/rF82eP0eS+fv79Hwj+/vr54ckjNLlP/7ud/H18vH3tW97dQ5N7/z8IyvL7fBtDLp6BnZmZmZ0h4sMtNLmP/2MYWIA0C0PY+5toch/+x4LlmBnC3l3HoY+ZIfTNNQx9MLmQ11fR5N4h5F5exikX/OIShh/gcs8uYuiLhsoFPT2PW+7xOZxygY/Oosm9/RcDDjM2huAHp9Hk3vwLhLI8HpxC1/ejzc7L3c3VzbLyJrrcu1cfv3589+r5k4c3z6Kb+fb1s0f379y8dvnCubMnByhdAgDaCXmV",
    "specks_and_edge_line": "eNrF0lsLAUEUB/CpFZ/JC3lwyTUsJeRz+ADy5IOhdSeL3G9r7M5o2yKXIe16ONM+Oy9z6tf/dDoNQv8p3dAppUTFyvGwBWYYD8bY63m/0d0GGGU1XyIajcS8FTIHpjHR7OL6lMuVkEsQBBfK0QlnReT4vA6UJbKNCSirjYERVjAtcx5xZuVEPORmWjlRGdha+tizt33XdpfUrg3szPKWbVrA1J8l1xJnhe/NnCi9bALDLGl2oWUD5q5VTzgY8AfcZRkawRfjop0O25UswZkq3q8XM3nU77Sk+p/+5RsNNXmu",
    "light_ink_float": "eNrF0ksOwiAQBmAktMdoaYj3P4smlFetHkIBWwuaSFczdeGmzGaSLz/hMYTstJQ2vbHGWCmB5RTDM8YwpQVYuh3bjneNuELLY2lsQqwmlFJSDxnahZHDpyqH7fk15tJmjlkkN1TFsNxqr+2zYOZ+5f619Q4zYuXNDGK2NHoCtoyi5Zw3wgX4f7MP3vv7I0ZgstfaKKXk+bTXWL4Bk5ZlXA==",
    "thin_pen": "eNpjYBiMgMXK2cMUh5zb////XyhhlxMuK933XRunsU3/1bBLMHIw9PxXx+UYhq5ROZLlOv+p4ZTr+6+JU67inRTO+ONSoHnKAwDFHyNh",
    "small_cell_with_grid_line": "eNpjYBgm4P2bd68+vHv76e37t2/fv3qOInftypVr1y9fvXnj1o0rlx+9Q5Hj4uDg4uIEAg5uZsWnV3GYzshQ+z8OVQQGmBjE3pxkxq6NhaH6fyQuE0Vfn2fCpa3qfzSQxKpN+MU5JiCFVVvl/xhc2oQeX2DBrS0WlzbBJ5dZcWkr/Z+I07YnF8jRJvDwGh5tSTgd+ewyG3ZtzAxluGzDDgByYjwS",
    "bold_cut_tight": "eNrFkr0NwkAMha0ARcQOqUifCZAYgQFgCNpskYoBkFJRUNAisQALsABykbMvl4MGGSMB6Swq+KrTe9I7/wH8gQTSxeXeeKW5XxapCh9GMD35wE+Pgz9NVXgzgGIv0bVMxK2Lsi9UejGEUpA9cYxMnlFKld5ktThN64g6TXZSZ/1/y/ONtArc7VArott52XuVNOzkMJ9M5gdx3EjVextBT3H1fK4ieZRN79WCIRxnkKYwO4aAUn+s8Vawu65zSBLI19cOZTv+xrMyzVqsHqzejZlZs7Z2ZO3WvIkf8gD89/ux",
    "blank_with_grain": None,
}
PAGES = {
    "large_scan": large_scan,
    "specks_and_edge_line": specks_and_edge_line,
    "light_ink_float": light_ink_float,
    "thin_pen": thin_pen,
    "small_cell_with_grid_line": small_cell_with_grid_line,
    "bold_cut_tight": bold_cut_tight,
    "blank_with_grain": blank_with_grain,
}


def _decode(recorded: str) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(recorded)), np.uint8).reshape(28, 28)


@pytest.mark.parametrize("name", sorted(PAGES))
def test_known_pages_give_the_recorded_digits(name):
    digit = preprocess.normalize_to_bytes(PAGES[name]())
    if EXPECTED[name] is None:
        assert digit is None
        return
    assert digit is not None, f"{name} came back blank"
    difference = np.abs(digit.astype(np.int16) - _decode(EXPECTED[name]).astype(np.int16)) / 255
    assert difference.mean() <= MEAN_TOLERANCE and difference.max() <= MAX_TOLERANCE, (
        f"{name}: mean {difference.mean() * 255:.2f} levels, max {difference.max() * 255:.0f} levels from the recorded digit"
    )


def test_the_recorded_digits_are_mnist_form():
    """The anchors themselves: 20 px on the long side, centred by mass, black frame (so 'alike' cannot mean 'alike and wrong')."""
    for name, recorded in EXPECTED.items():
        if recorded is None:
            continue
        digit = _decode(recorded).astype(np.float64)
        rows, cols = np.flatnonzero(digit.max(axis=1) > 12), np.flatnonzero(digit.max(axis=0) > 12)
        assert 19 <= max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21, name
        ys, xs = np.mgrid[0:28, 0:28]
        centre = np.array([(ys * digit).sum(), (xs * digit).sum()]) / digit.sum()
        assert np.abs(centre - 13.5).max() <= 1.0, name
        assert digit[0].max() == 0 and digit[:, 0].max() == 0 and digit[-1].max() == 0 and digit[:, -1].max() == 0, name


@pytest.mark.parametrize(
    "size,new_size",
    [((160, 120), (20, 15)), ((57, 80), (14, 20)), ((16, 12), (20, 15)), ((3, 40), (2, 20)), ((101, 7), (20, 1)), ((20, 20), (20, 20))],
)
def test_the_fit_resamples_as_pillows_lanczos(size, new_size):
    """The fit's two matrix products give Pillow's antialiased Lanczos resize, which the digits were fitted with."""
    image = np.random.default_rng(7).random(size).astype(np.float32)
    pillow = np.asarray(Image.fromarray(image, "F").resize(new_size[::-1], Image.Resampling.LANCZOS), np.float32)
    np.testing.assert_allclose(preprocess._lanczos_resize(image, *new_size), pillow, rtol=2.5e-7, atol=0)  # within a float32 bit or two


@pytest.mark.parametrize("shape,factor", [((301, 263), 4), ((128, 90), 2), ((999, 700), 15), ((17, 5), 3)])
def test_box_sums_from_the_integral_image_are_exact(shape, factor):
    page = np.random.default_rng(8).integers(0, 256, shape).astype(np.uint8)
    h, w = shape[0] // factor * factor, shape[1] // factor * factor
    exact = page[:h, :w].astype(np.int64).reshape(h // factor, factor, w // factor, factor).sum(axis=(1, 3))
    np.testing.assert_array_equal(preprocess._box_sum(page, factor), exact)


def test_box_sums_of_a_page_too_large_for_int32_running_sums():
    page = np.full((3000, 2900), 255, np.uint8)  # 255 x 8.7 million pixels: past int32
    page[-5:, -5:] = 7
    sums = preprocess._box_sum(page, 16)
    assert sums.shape == (187, 181)
    assert (sums[:-1, :-1] == 255 * 256).all()
    assert sums[-1, -1] == 255 * 256  # the ragged last rows and columns (3000 = 187 x 16 + 8) are dropped


def _otsu_reference(values, bins=64):
    """Otsu over np.histogram's bins, written plainly: the split after the bin with the most between-class variance."""
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    best, split = -1.0, None
    for k in range(bins):
        low, high = counts[: k + 1], counts[k + 1 :]
        if low.sum() == 0 or high.sum() == 0:
            continue
        mean_low = (low * centres[: k + 1]).sum() / low.sum()
        mean_high = (high * centres[k + 1 :]).sum() / high.sum()
        between = low.sum() * high.sum() * (mean_low - mean_high) ** 2
        if between > best:
            best, split = between, edges[k + 1]
    return split


@pytest.mark.parametrize("seed", range(5))
def test_otsu_split_matches_the_plain_definition(seed):
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(0.1, 0.05, 4000), rng.normal(0.6, 0.1, 600 + 300 * seed)]).astype(np.float32)
    assert preprocess._otsu_threshold(values) == pytest.approx(_otsu_reference(values), abs=1e-6)


def test_noise_and_peak_from_one_sort_match_numpys_median_and_percentile():
    rng = np.random.default_rng(9)
    residual = np.concatenate([rng.normal(0, 0.02, 5000), rng.uniform(0.3, 0.8, 400)]).astype(np.float32)
    split = 0.15
    paper = residual[residual < split]
    noise, peak = preprocess._noise_and_peak(residual, split)
    assert noise == pytest.approx(1.4826 * np.median(np.abs(paper - np.median(paper))), rel=1e-6)
    assert peak == pytest.approx(np.percentile(residual, 99.8), rel=1e-6)


def test_the_one_component_shortcut_keeps_the_whole_component():
    """The usual page has one component: its mask and box are those of every ink pixel, as scipy labels them."""
    from scipy import ndimage

    ink = np.zeros((70, 60), np.float32)
    ink[10:50, 20:26] = 0.8
    ink[10:14, 20:45] = 0.5
    labels, count = ndimage.label(ink > 0, structure=np.ones((3, 3), bool))
    assert count == 1
    mask, box, whole = preprocess._digit_mask(ink)
    assert whole
    np.testing.assert_array_equal(mask, labels == 1)
    (rows, cols), = ndimage.find_objects(labels)
    assert box == (rows.start, rows.stop, cols.start, cols.stop)


def test_normalise_cost_runs_the_given_normaliser_over_every_page():
    """The bench's normalise stage, with any normaliser (how an old and a new one are compared interleaved)."""
    from batchclf.bench.stages import normalise_cost

    seen, images = [], []
    seconds = normalise_cost([np.zeros((4, 4)), np.ones((5, 5))], lambda gray: seen.append(gray.shape) or gray.shape, 2, images)
    assert seen == [(4, 4), (5, 5)] * 2 and images == [(4, 4), (5, 5)] and seconds >= 0.0


@pytest.mark.parametrize("seed", range(40))
def test_median_deviation_without_a_second_sort(seed):
    """The paper noise's median absolute deviation, found by bisection on the sorted residuals, as the plain definition."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    values = np.sort((rng.integers(-4, 5, n) * 0.1 if seed % 2 else rng.normal(0, 1, n)).astype(np.float32))  # ties when odd
    lo = (n - 1) // 2
    centre = float(values[lo]) + (float(values[min(lo + 1, n - 1)]) - float(values[lo])) * (0.5 * (n - 1) - lo)
    deviations = np.sort(np.abs(values - np.float32(centre)))
    a, b = float(deviations[lo]), float(deviations[min(lo + 1, n - 1)])
    assert preprocess._sorted_deviation_median(values, centre) == a + (b - a) * (0.5 * (n - 1) - lo)


# --- Issue 22, second round: the cheaper steps, each against a plain reference ----------------------


@pytest.mark.parametrize("seed", range(40))
def test_the_noise_bound_is_never_below_the_median_deviation(seed):
    """The two-read bound that stands in for the paper noise when it already decides the threshold."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    values = np.sort((rng.integers(-4, 5, n) * 0.01 if seed % 2 else rng.normal(0, 0.02, n)).astype(np.float32))
    centre = float(np.median(values))
    exact = float(np.median(np.abs(values - np.float32(centre))))
    assert preprocess._deviation_bound(values, centre) >= exact


def test_a_clean_pages_noise_bound_gives_the_threshold_and_verdict_of_the_exact_noise():
    """On a clean page the ink peak dwarfs the noise: the bound stands in, the cut and the verdict are the exact noise's."""
    rng = np.random.default_rng(3)
    residual = np.concatenate([rng.normal(0, 0.01, 6000), rng.uniform(0.5, 0.9, 300)]).astype(np.float32)
    split = 0.2
    paper = residual[residual < split]
    exact = 1.4826 * float(np.median(np.abs(paper - np.median(paper))))
    noise, peak = preprocess._noise_and_peak(residual, split, preprocess._deciding_noise)
    assert peak == pytest.approx(np.percentile(residual, 99.8), rel=1e-6)
    assert noise >= exact  # the bound, not the exact figure: the search was skipped
    assert max(4 * noise, 0.25 * peak, 0.05) == max(4 * exact, 0.25 * peak, 0.05) == 0.25 * peak
    assert not peak < 8 * noise and not peak < 8 * exact


def test_a_noisy_pages_noise_is_the_exact_median_deviation():
    """When the noise could set the threshold, the exact figure is used."""
    rng = np.random.default_rng(4)
    residual = np.concatenate([rng.normal(0, 0.05, 6000), rng.uniform(0.3, 0.5, 300)]).astype(np.float32)
    split = 0.25
    paper = residual[residual < split]
    noise, _ = preprocess._noise_and_peak(residual, split, preprocess._deciding_noise)
    assert noise == pytest.approx(1.4826 * np.median(np.abs(paper - np.median(paper))), rel=1e-6)


@pytest.mark.parametrize(
    "factor,top,left,rows,cols",
    # the last two: a crop ending at the page's last whole box row and column, and one column wide (the flat differences wrap there)
    [(2, 12, 8, 30, 17), (3, 0, 0, 40, 33), (1, 5, 9, 11, 4), (4, 28, 36, 1, 1), (2, 1, 1, 80, 68), (5, 3, 100, 20, 1)],
)
def test_crop_sums_off_the_pages_integral_image_are_exact(factor, top, left, rows, cols):
    """The finer crop's box sums, read off the integral image the work image was read off."""
    page = np.random.default_rng(5).integers(0, 256, (161, 137)).astype(np.uint8)
    crop = page[top : top + rows * factor, left : left + cols * factor].astype(np.int64)
    exact = crop.reshape(rows, factor, cols, factor).sum(axis=(1, 3))
    np.testing.assert_array_equal(preprocess._sums_in(preprocess._integral(page), factor, top, left, rows, cols), exact)


@pytest.mark.parametrize("fit_factor,work_factor,r0,c0", [(1, 2, 3, 0), (2, 3, 10, 7), (2, 4, 0, 21), (3, 5, 4, 4)])
def test_the_surface_in_a_crops_own_coordinates(fit_factor, work_factor, r0, c0):
    """The paper surface at each fine pixel of a crop, and the work pixel under it, as the plain formulas give them."""
    h, w = 70, 58  # the work image the surface was fitted on
    rows, cols = 23, 31
    c = np.array([0.1, -0.03, 0.05, 0.02, -0.04, 0.015])
    powers_y, parent_y = preprocess._fine_axis(rows, fit_factor, work_factor)
    powers_x, parent_x = preprocess._fine_axis(cols, fit_factor, work_factor)
    terms = preprocess._shifted(r0, h) @ preprocess._terms(c) @ preprocess._shifted(c0, w).T
    surface = powers_y @ terms @ powers_x.T
    # A fine pixel's centre in page pixels, then in work pixels (work pixel i covers page pixels [i f, (i + 1) f)).
    page_y = r0 * work_factor + np.arange(rows) * fit_factor + (fit_factor - 1) / 2
    page_x = c0 * work_factor + np.arange(cols) * fit_factor + (fit_factor - 1) / 2
    ty = ((page_y + 0.5) / work_factor - 0.5) / (h - 1) - 0.5
    tx = ((page_x + 0.5) / work_factor - 0.5) / (w - 1) - 0.5
    y, x = ty[:, None], tx[None, :]
    expected = c[0] + c[1] * x + c[2] * y + c[3] * x**2 + c[4] * y**2 + c[5] * x * y
    np.testing.assert_allclose(surface, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(parent_y, np.floor(page_y / work_factor).astype(int) - r0)
    np.testing.assert_array_equal(parent_x, np.floor(page_x / work_factor).astype(int) - c0)


@pytest.mark.parametrize("solver", ["opencv", "lstsq"])
def test_the_paper_surface_fit_recovers_the_lighting_under_a_digit(solver, monkeypatch):
    """Uneven light (a known quadratic) under a bold stroke: the fit through the paper alone finds the quadratic.

    ``lstsq``: OpenCV's solve reports a singular system, and numpy's least squares takes over.
    """
    if solver == "lstsq":
        monkeypatch.setattr(preprocess._cv(), "solve", lambda *args, **kwargs: (False, None))
    h, w = 90, 75
    y, x = np.mgrid[0:h, 0:w]
    ty, tx = y / (h - 1) - 0.5, x / (w - 1) - 0.5
    c = np.array([0.12, 0.05, -0.04, 0.06, 0.03, -0.05])
    lighting = c[0] + c[1] * tx + c[2] * ty + c[3] * tx**2 + c[4] * ty**2 + c[5] * tx * ty
    signal = lighting.astype(np.float32)
    signal[20:70, 30:40] += 0.7  # the stroke: ink on the signal's high side
    signal[20:30, 30:60] += 0.7
    np.testing.assert_allclose(preprocess._background_surface(signal)[0], c, atol=2e-6)


@pytest.mark.parametrize("seed", range(20))
def test_quantiles_of_magnitudes_ranked_as_bits_are_numpys(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 2500))
    values = np.abs(rng.integers(-6, 7, n) * 0.125 if seed % 2 else rng.normal(0, 1, n))  # ties (and zeros) when odd
    assert preprocess._magnitude_quantile(values.copy(), 50.0) == np.median(values)
    assert preprocess._magnitude_quantile(values.copy(), 60.0) == pytest.approx(np.percentile(values, 60), rel=1e-15, abs=0)


def test_a_stroke_is_never_measured_below_two_pixels_wide():
    """Why a digit of at most 30 px is never measured for thickening (TARGET_STROKE x 30 x 0.6 < 2)."""
    rng = np.random.default_rng(9)
    for _ in range(50):
        mask = rng.random((int(rng.integers(3, 40)), int(rng.integers(3, 40)))) < rng.random()
        if np.count_nonzero(mask) >= 3:
            assert preprocess._stroke_width(mask) >= 2.0
    assert 0.6 * preprocess.TARGET_STROKE * 30 <= 2.0


@pytest.mark.parametrize("seed", range(12))
def test_the_fitted_digits_top_level_is_numpys_90th_inked_percentile(seed):
    rng = np.random.default_rng(seed)
    resized = (rng.random((20, int(rng.integers(1, 21)))) * (seed % 4 != 0) * rng.random()).astype(np.float32)
    inked = resized[resized > 0.05]
    expected = np.percentile(inked, 90) if inked.size else resized.max()
    assert preprocess._inked_level(resized) == pytest.approx(float(expected), rel=1e-7, abs=0)


@pytest.mark.parametrize("m,k,n", [(34, 3, 29), (120, 140, 20), (160, 160, 20)])  # below and above OpenBLAS's one-thread size
def test_products_on_either_side_of_the_blas_threading_size(m, k, n):
    rng = np.random.default_rng(6)
    a, b = rng.random((m, k)), rng.random((k, n))
    np.testing.assert_allclose(preprocess._product(a, b), a @ b, rtol=1e-13)


def test_clipping_by_opencvs_thresholds_is_numpys_clip():
    image = np.random.default_rng(7).normal(0.5, 0.8, (50, 40)).astype(np.float32)
    np.testing.assert_array_equal(preprocess._clip01(image.copy()), np.clip(image, 0.0, 1.0))


@pytest.mark.parametrize("shape,band", [((70, 58), None), ((9, 40), None), ((16, 16), 1), ((3, 3), None)])
def test_the_frames_level_counts_are_the_counts_of_its_pixels(shape, band):
    levels = np.random.default_rng(8).integers(0, 4000, shape)
    counts = np.bincount(levels.ravel())
    frame = np.bincount(preprocess._frame(levels, band), minlength=counts.size)
    np.testing.assert_array_equal(preprocess._frame_counts(levels, counts, band), frame)


@pytest.mark.parametrize("n", [1, 2, 7, 136, 699, 700, 2500])
def test_quantiles_by_sort_or_partition_are_numpys(n):
    values = np.random.default_rng(n).integers(0, 9, n).astype(np.float64)  # many ties, as a page's levels
    np.testing.assert_allclose(preprocess._quantiles(values, (0.5, 60.0, 99.5)), np.percentile(values, [0.5, 60.0, 99.5]), rtol=1e-12)


def test_bytes_by_opencvs_scaled_conversion_round_as_numpy():
    """Half-way values (k / 510 lands on or next to n + 0.5 once scaled) round to even, as ``np.rint`` does."""
    rng = np.random.default_rng(10)
    image = np.concatenate([np.arange(511) / 510, rng.random(1307), [0.0, 1.0]]).astype(np.float32).reshape(20, 91)
    expected = np.rint(image * np.float32(255)).astype(np.uint8)
    np.testing.assert_array_equal(preprocess._unit_to_bytes(image), expected)


def test_a_float_page_in_mnist_form_out_of_range_is_clipped_to_bytes():
    """Bytes skip the clipping pass only for values in [0, 1]: a float page passed through as it is gets clipped."""
    page = np.zeros((28, 28), np.float32)
    page[8:20, 12:16] = 3.0  # above 1
    page[10, 13] = 0.5
    page[5, 5] = -0.4  # below 0: 0, not |x| scaled
    out = preprocess.normalize_to_bytes(page)
    np.testing.assert_array_equal(out, np.rint(np.clip(page, 0, 1) * 255).astype(np.uint8))


# --- Issue 22, third round: outputs within a tolerance, no longer bit-identical ---------------


@pytest.mark.parametrize("seed,ink_share", [(0, 0.1), (1, 0.002), (2, 0.0), (3, 0.5)])
def test_ink_peak_is_numpys_99_8th_percentile(seed, ink_share):
    """The peak sorts only the values near the top: it is still ``np.percentile(values, 99.8)`` (at least 0)."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 0.02, 5000).astype(np.float32)
    inked = rng.random(5000) < ink_share
    values[inked] += rng.uniform(0.2, 0.8, int(inked.sum())).astype(np.float32)
    expected = max(float(np.percentile(values, 99.8)), 0.0)
    assert preprocess._peak(values) == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("values", [np.full(50, -0.2, np.float32), -np.abs(np.random.default_rng(4).normal(0, 0.1, 3000)).astype(np.float32),
                                    np.linspace(0, 1, 80, dtype=np.float32)])
def test_ink_peak_on_pages_without_ink_or_tiny(values):
    expected = max(float(values.max() if values.size <= 100 else np.percentile(values, 99.8)), 0.0)  # 100 values or fewer: the largest
    assert preprocess._peak(values) == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("sigma", [0.005, 0.02, 0.05])
def test_surface_fit_measures_the_paper_noise(sigma):
    """The fit's last spread is the paper noise the ink map thresholds by: the grain's sigma, ink and lighting apart."""
    rng = np.random.default_rng(5)
    h, w = 72, 70
    y, x = np.mgrid[0:h, 0:w]
    ty, tx = y / (h - 1) - 0.5, x / (w - 1) - 0.5
    c = np.array([0.12, 0.05, -0.04, 0.06, 0.03, -0.05])
    signal = (c[0] + c[1] * tx + c[2] * ty + c[3] * tx**2 + c[4] * ty**2 + c[5] * tx * ty + rng.normal(0, sigma, (h, w))).astype(np.float32)
    signal[15:60, 25:33] += 0.7  # strokes: ink on the signal's high side
    signal[15:23, 25:55] += 0.7
    coefficients, noise = preprocess._background_surface(signal)
    assert noise == pytest.approx(sigma, rel=0.2)
    np.testing.assert_allclose(coefficients, c, atol=max(6 * sigma, 2e-3))


def _bench_like(light_ink=False, gradient=0.0, grain=0.0, seed=0):
    """A ~300 px uint8 page (analysed at a quarter, fitted from a half-size crop, as a bench scan) with a ring."""
    page = _ring(300, 280, (60, 250, 80, 200), 20, 0.15, 0.9)
    if gradient or grain:
        page = _lit_and_grainy(page, seed, gradient, grain)
    return _bytes(1.0 - page if light_ink else page)


@pytest.mark.parametrize("light_ink", [False, True])
def test_uneven_light_and_grain_on_a_bench_sized_page_give_the_flat_page_digit(light_ink):
    """Fixed properties, not recorded outputs: the same ring under a lighting gradient and grain gives the flat page's
    digit within a few levels, centred by mass at (13.5, 13.5), 20 px tall; a page of lighting and grain alone is blank."""
    from .helpers import centre_of_mass

    flat = preprocess.normalize_to_bytes(_bench_like(light_ink)).astype(int)
    for seed, gradient in [(1, 0.15), (2, 0.25)]:
        lit = preprocess.normalize_to_bytes(_bench_like(light_ink, gradient, 0.03, seed)).astype(int)
        assert np.abs(lit - flat).mean() < 6 and np.abs(lit - flat).max() < 96
        cy, cx = centre_of_mass(lit / 255.0)
        assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1
        rows = np.flatnonzero(lit.max(axis=1) > 12)
        assert 19 <= rows[-1] - rows[0] + 1 <= 21
    blank = _lit_and_grainy(np.full((300, 280), 0.9, np.float32), 3, 0.25, 0.03)
    assert preprocess.normalize_to_bytes(_bytes(1.0 - blank if light_ink else blank)) is None


@pytest.mark.parametrize("shape,band,ring", [((17, 15), None, 1), ((20, 18), None, 2), ((6, 5), 1, 1), ((3, 3), None, 1), ((2, 5), None, None)])
def test_the_frames_flat_indices_pick_its_band_of_pixels(shape, band, ring):
    """A fit grid's frame by one ``take``: each pixel within ``ring`` of the border once, nothing inside (the whole grid if that is all)."""
    index = preprocess._frame_index(shape, band)
    rows, cols = np.unravel_index(index, shape)
    assert len(set(index.tolist())) == index.size
    if ring is None:
        assert index.size == shape[0] * shape[1]
        return
    inside = (rows >= ring) & (rows < shape[0] - ring) & (cols >= ring) & (cols < shape[1] - ring)
    assert not inside.any()
    assert index.size == shape[0] * shape[1] - (shape[0] - 2 * ring) * (shape[1] - 2 * ring)
    assert not index.flags.writeable  # cached: shared by every page with this grid
