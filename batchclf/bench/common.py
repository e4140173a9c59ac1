"""What both benchmarks share: the test digits they draw, and how they name the machine."""

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


def machine() -> str:
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.system()}"
