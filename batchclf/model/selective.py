"""Review set by an error budget: the error-vs-coverage curve and the threshold it gives.

A model's card carries ``selective.curve``: for each candidate review
threshold, the share of digits accepted (``coverage``) and the share of
accepted digits that were wrong (``error``), measured on writers the model
never saw (leave-writers-out), with the not-a-digit detector and the second
look as ``classify`` runs them.  ``--target-error 0.2%`` picks the lowest
threshold whose measured error is within the budget, so as few digits as
possible go to a person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Candidate review thresholds: fine steps near 1, where the budget of a careful user lies.
THRESHOLDS = tuple(sorted({round(float(t), 4) for t in np.concatenate(
    [np.arange(0.5, 0.9, 0.05), np.arange(0.9, 0.99, 0.01), np.arange(0.99, 0.999, 0.001), [0.999, 0.9995, 0.9999]])}))


@dataclass(frozen=True)
class Choice:
    review_below: float
    expected_error: float  # among accepted rows, as measured
    expected_coverage: float
    target_error: float
    met: bool  # False: even the strictest threshold measured more error than the budget


def curve(confidence: np.ndarray, correct: np.ndarray, refused: np.ndarray | None = None,
          thresholds=THRESHOLDS) -> list[dict]:
    """Coverage and error among accepted digits at each threshold.

    ``confidence``: per digit, the confidence the decision uses at that row
    (a function of the threshold is allowed: pass a 2-D array ``(len(thresholds), N)``);
    ``correct``: whether the label given would be right; ``refused``: digits
    sent to review whatever their confidence (the detector's, a blank).
    """
    confidence = np.asarray(confidence, np.float64)
    correct = np.asarray(correct, bool)
    refused = np.zeros(len(correct), bool) if refused is None else np.asarray(refused, bool)
    points = []
    for i, threshold in enumerate(thresholds):
        conf = confidence[i] if confidence.ndim == 2 else confidence
        correct_now = correct[i] if correct.ndim == 2 else correct
        accepted = (conf >= threshold) & ~refused
        n = int(accepted.sum())
        wrong = int((accepted & ~correct_now).sum())
        points.append({"review_below": float(threshold), "coverage": n / len(refused) if len(refused) else 0.0,
                       "error": wrong / n if n else 0.0, "accepted": n, "wrong": wrong})
    return points


def choose(points: list[dict], target_error: float) -> Choice:
    """The lowest threshold whose measured error among accepted digits is at most ``target_error``.

    The error is not monotone in the threshold on a finite set; the lowest
    threshold *from which on* every higher one also keeps the budget is taken,
    so a lucky dip in the curve never lowers the bar.
    """
    ordered = sorted(points, key=lambda p: p["review_below"])
    chosen = ordered[-1]
    for point in reversed(ordered):
        if point["error"] > target_error:
            break
        chosen = point
    return Choice(chosen["review_below"], chosen["error"], chosen["coverage"], target_error,
                  met=chosen["error"] <= target_error)
