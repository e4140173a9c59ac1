"""Classification metrics shared by the model card, ``evaluate`` and reports."""

from __future__ import annotations

import numpy as np

from batchclf.model.calibration import expected_calibration_error


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int = 10) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def summary(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, per-class accuracy (recall), confusion (rows = true) and ECE."""
    predicted = probabilities.argmax(axis=1)
    confusion = confusion_matrix(labels, predicted)
    per_class = {
        str(c): float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else None
        for c in range(10)
    }
    return {
        "n": int(len(labels)),
        "accuracy": float((predicted == labels).mean()) if len(labels) else 0.0,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "ece": expected_calibration_error(probabilities, labels),
    }
