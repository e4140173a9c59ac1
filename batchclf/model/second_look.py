"""The second look: doubtful digits shown to the classifier again, shifted by a pixel each way.

A digit whose label hangs on where exactly its strokes fall on the 28x28 grid
flips between shifted copies; one the model really knows keeps its label.
Averaging the calibrated probabilities over the copies (test-time
augmentation) is run only on the rows below the review threshold, so it costs
a few extra predictions on about a tenth of the rows.
"""

from __future__ import annotations

import numpy as np

# (dy, dx): the image as it is first, then one pixel each way.
SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def shifted(inputs: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``(N, 28, 28, 1)`` inputs moved by ``dy, dx`` pixels, zero (paper) filled: a digit's edge never wraps round."""
    if dy == 0 and dx == 0:
        return inputs
    out = np.zeros_like(inputs)
    height, width = inputs.shape[1:3]
    out[:, max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        inputs[:, max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    return out


def doubtful(probabilities: np.ndarray, review_below: float, flagged: np.ndarray | None = None) -> np.ndarray:
    """The rows a second look may change: below the threshold and not flagged as no digit (that is no doubt)."""
    mask = np.asarray(probabilities).max(axis=1) < review_below
    return mask if flagged is None else mask & ~np.asarray(flagged, bool)


def reconsider(probabilities: np.ndarray, inputs: np.ndarray, rows: np.ndarray, predict) -> np.ndarray:
    """``probabilities`` with the ``rows`` (a bool mask) replaced by the mean over the image and its shifted copies.

    ``predict`` maps ``(M, 28, 28, 1)`` inputs to calibrated probabilities ``(M, 10)``; it is called once,
    on the shifted copies of the doubtful rows only.
    """
    if not rows.any():
        return probabilities
    chosen = inputs[rows]
    copies = np.concatenate([shifted(chosen, dy, dx) for dy, dx in SHIFTS[1:]])
    looked = predict(copies).reshape(len(SHIFTS) - 1, len(chosen), -1)
    out = np.array(probabilities, copy=True)
    out[rows] = (probabilities[rows] + looked.sum(axis=0)) / len(SHIFTS)
    return out
