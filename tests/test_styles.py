"""The continental "1" drawn into MNIST training digits."""

import numpy as np

from batchclf.model.styles import add_up_stroke, continental_ones

from .helpers import centre_of_mass


def stem(top=4, bottom=24, column=14, width=2):
    digit = np.zeros((28, 28), np.float32)
    digit[top:bottom, column : column + width] = 1.0
    return digit


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


def seven():
    """A plain "7": a top bar and a stem slanting down to the left."""
    digit = np.zeros((28, 28), np.float32)
    digit[4:6, 8:20] = 1.0
    for row in range(6, 24):
        column = int(round(19 - (row - 6) * 0.4))
        digit[row, column - 1 : column + 1] = 1.0
    return digit


def test_a_crossed_seven_gets_a_short_bar_through_its_stem_below_the_top():
    from batchclf.model.styles import cross_seven

    plain = seven()
    crossed = cross_seven(plain, np.random.default_rng(2))
    ink = crossed > 0.5
    rows = np.flatnonzero(ink.any(axis=1))
    widths = ink.sum(axis=1)
    top, bottom = rows[0], rows[-1]
    middle = range(top + int(0.35 * (bottom - top)), top + int(0.7 * (bottom - top)) + 1)
    # The stem is 2 px wide; the bar makes some middle row at least 5 px wide, and the top bar is still the widest.
    assert max(widths[r] for r in middle) >= 5
    assert widths[top : top + 2].max() >= max(widths[r] for r in middle)
    cy, cx = centre_of_mass(crossed)
    assert abs(cy - 13.5) <= 0.5 and abs(cx - 13.5) <= 0.5


def test_a_one_with_a_foot_has_a_base_bar_and_the_up_stroke():
    from batchclf.model.styles import add_foot

    footed = add_foot(stem(), np.random.default_rng(3))
    ink = footed > 0.5
    rows = np.flatnonzero(ink.any(axis=1))
    assert ink[rows[-2] : rows[-1] + 1].sum(axis=1).max() >= 5  # a foot, wider than the 2 px stem
    top_columns = np.flatnonzero(ink[rows[0]])
    assert ink[rows[0] : rows[0] + 8, : top_columns.min()].any()  # and the flag from the top, down to the left


def test_national_styles_change_only_the_chosen_share_of_sevens_and_ones():
    from batchclf.model.styles import national_styles

    labels = np.array([1] * 10 + [7] * 10 + [4] * 10)
    images = np.stack([stem()] * 10 + [seven()] * 10 + [stem()] * 10)[..., None]
    out = national_styles(images, labels, 0.3, np.random.default_rng(4))
    changed = [not np.array_equal(a, b) for a, b in zip(images, out)]
    assert sum(changed[:10]) == 3 and sum(changed[10:20]) == 3 and not any(changed[20:])
