"""The continental "1" drawn into MNIST training digits."""

import numpy as np

from batchclf.model.styles import add_up_stroke, continental_ones


def stem(top=4, bottom=24, column=14, width=2):
    digit = np.zeros((28, 28), np.float32)
    digit[top:bottom, column : column + width] = 1.0
    return digit


def centre_of_mass(digit):
    yy, xx = np.mgrid[0:28, 0:28]
    return (yy * digit).sum() / digit.sum(), (xx * digit).sum() / digit.sum()


def test_up_stroke_runs_down_left_from_the_top_of_the_stem():
    plain = stem()
    flagged = add_up_stroke(plain, np.random.default_rng(0))
    assert flagged.sum() > plain.sum() * 1.2  # real ink was added
    ink = flagged > 0.5
    rows = np.flatnonzero(ink.any(axis=1))
    top_row_columns = np.flatnonzero(ink[rows[0]])
    left_of_top = ink[rows[0] : rows[0] + 8, : top_row_columns.min()]
    assert left_of_top.any()  # the flag leaves the stem's top towards the left, going down
    assert not ink[: rows[0]].any()
    cy, cx = centre_of_mass(flagged)
    assert abs(cy - 13.5) <= 0.5 and abs(cx - 13.5) <= 0.5  # re-centred by mass, as MNIST


def test_only_the_chosen_share_of_ones_changes():
    rng = np.random.default_rng(1)
    labels = np.array([1] * 10 + [7] * 10)
    images = np.stack([stem()] * 20)[..., None]
    out = continental_ones(images, labels, 0.4, rng)
    changed = [not np.array_equal(a, b) for a, b in zip(images, out)]
    assert sum(changed[:10]) == 4 and not any(changed[10:])
    assert np.array_equal(images, np.stack([stem()] * 20)[..., None])  # the input is left alone


def test_a_near_empty_digit_is_left_alone():
    digit = np.zeros((28, 28), np.float32)
    digit[10, 10] = 1.0
    assert np.array_equal(add_up_stroke(digit, np.random.default_rng(0)), digit)
