"""Bold digits cut tight to their cell are digits, and a blank cell stays blank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from batchclf.scan.preprocess import normalize_to_bytes

ROOT = Path(__file__).resolve().parent.parent
USPS_TEST = ROOT.parent / "shared" / "data" / "usps" / "zip.test.gz"
# Eight clearly legible zip.test digits (0-based line, label) that used to come back blank.
BOLD = {136: 0, 224: 3, 764: 8, 899: 8, 1601: 5, 1631: 0, 1671: 0, 1892: 8}


def _centre_of_mass(digit: np.ndarray) -> np.ndarray:
    return np.array(ndimage.center_of_mass(digit.astype(np.float64)))


@pytest.fixture(scope="module")
def usps_test():
    if not USPS_TEST.is_file():
        pytest.skip(f"USPS test digits not found at {USPS_TEST} (CI keeps ../shared/data/usps beside the checkout)")
    from batchclf.datasets.usps import read_usps

    return read_usps(USPS_TEST)


@pytest.mark.parametrize("index", sorted(BOLD))
def test_the_eight_bold_usps_digits_are_not_blank(usps_test, index):
    raw, labels = usps_test
    assert labels[index] == BOLD[index]
    digit = normalize_to_bytes(raw[index])
    assert digit is not None, f"zip.test line {index} (a {BOLD[index]}) came back blank"
    # MNIST form: light ink on black, fitted into the 20x20 box and centred by mass in 28x28.
    rows, cols = np.nonzero(digit > 30)
    assert rows.max() - rows.min() <= 21 and cols.max() - cols.min() <= 21
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) >= 15
    assert np.abs(_centre_of_mass(digit) - 13.5).max() <= 2.0
    assert digit[0].max() == 0 and digit[:, 0].max() == 0  # the frame is background


def test_no_usps_test_digit_is_blank(usps_test):
    raw, _ = usps_test
    assert [i for i, gray in enumerate(raw) if normalize_to_bytes(gray) is None] == []


@pytest.mark.parametrize("size", [16, 28, 90, 300])
def test_a_blank_cell_with_paper_grain_stays_blank(size):
    rng = np.random.default_rng(size)
    paper = np.clip(rng.normal(225, 6, (size, size)), 0, 255).astype(np.uint8)
    assert normalize_to_bytes(paper) is None
