"""The USPS ZIP-code digits as image files, to score the model on real scans of another origin.

The set (Le Cun et al., 1990, as distributed with *The Elements of Statistical
Learning*) stores each digit as a text line: the label, then 16x16 values in
[-1, 1] (+1 = ink).  They become dark-ink-on-white PNGs in ``DIGIT/`` folders,
which ``batchclf evaluate --scans`` reads.  The digits are deslanted and cut
tight to their ink, so they test the opposite of MNIST's padded framing:
digits that touch every edge and can be half ink.

    python -m batchclf.datasets.usps ../shared/data/usps/zip.test.gz /tmp/usps-test
    batchclf evaluate --scans /tmp/usps-test
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 16


def read_usps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)``: uint8 ``(N, 16, 16)`` dark ink on white, and int labels."""
    images, labels = [], []
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as lines:
        for number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 1 + SIDE * SIDE:
                raise ValueError(f"{path}:{number}: expected {1 + SIDE * SIDE} values, got {len(fields)}")
            labels.append(int(float(fields[0])))
            values = np.asarray(fields[1:], np.float64).reshape(SIDE, SIDE)
            images.append(np.rint((1.0 - values) / 2.0 * 255).astype(np.uint8))
    return np.stack(images), np.asarray(labels)


def write_usps_scans(path: Path, folder: Path) -> int:
    """Write every digit of a USPS file as ``folder/DIGIT/NNNNN.png``; returns how many."""
    images, labels = read_usps(path)
    for index, (image, label) in enumerate(zip(images, labels)):
        target = Path(folder) / str(label)
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target / f"{index:05d}.png")
    return len(images)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m batchclf.datasets.usps ZIP_FILE OUT_FOLDER")
    print(write_usps_scans(Path(sys.argv[1]), Path(sys.argv[2])))
