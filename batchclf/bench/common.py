"""What the benchmarks share: the test digits they draw, the scans they make of them, and how they name the machine."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def sample_digits(n: int, data: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """N 28x28 digits with labels: MNIST test digits with ``data``, else synthetic bars (no download)."""
    if data is not None:
        from batchclf.datasets.mnist import load

        dataset = load(data)
        idx = np.arange(n) % len(dataset.x_test)
        return dataset.x_test[idx], dataset.y_test[idx]
    rng = np.random.default_rng(0)
    digits = np.zeros((n, 28, 28), np.uint8)
    labels = rng.integers(0, 10, n)
    for digit, label in zip(digits, labels):
        digit[6:22, 8 + label : 11 + label] = 255
    return digits, labels


def write_bench_scans(images: np.ndarray, labels: np.ndarray, folder: Path, size: int) -> list[Path]:
    """The benchmarks' "~``size`` px scans": one realistic scan (JPEG or PNG) per digit, every page ~``size`` px.

    ``batchclf bench`` (its case 4) and ``batchclf bench-watch --files scans`` both make their
    files here, so the daemon and ``classify`` are measured on the same kind of file.
    """
    from batchclf.datasets.synthetic import ScanStyle, write_scans

    written = write_scans(images, labels, folder, seed=1, style=ScanStyle(min_side=size, max_side=size))
    return [path for path, _ in written]


def machine() -> str:
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.system()}"
