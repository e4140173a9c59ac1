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
    mask, box = preprocess._digit_mask(ink)
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
