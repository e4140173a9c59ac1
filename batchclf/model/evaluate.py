"""``evaluate`` and ``predict``: scoring a model on MNIST and labelling single images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from batchclf import LABEL_WORDS
from batchclf.datasets.mnist import Dataset
from batchclf.errors import EmptyInputError
from batchclf.scan.discovery import Candidate, display_name
from batchclf.model.metrics import confusion_matrix, summary
from batchclf.scan.prepare import prepare
from batchclf.scan.preprocess import mnist_to_input


def evaluate(predictor, data: Dataset) -> dict:
    probabilities = predictor.predict(mnist_to_input(data.x_test))
    return {"model": str(predictor.path), "data": data.source, **summary(probabilities, data.y_test)}


def demo_digit() -> np.ndarray:
    """The classic demo's hand-drawn dummy digit: a vertical stroke and a diagonal (28x28 uint8)."""
    digit = np.zeros((28, 28), np.uint8)
    for row in range(5, 23):
        digit[row, 9] = 180
    for i in range(9, 19):
        digit[i, i] = 250
    return digit


def prediction(probabilities: np.ndarray, top: int = 3) -> dict:
    order = probabilities.argsort()[::-1][:top]
    label = int(order[0])
    return {
        "label": label,
        "word": LABEL_WORDS[label],
        "confidence": round(float(probabilities[label]), 6),
        "top": [{"label": int(k), "confidence": round(float(probabilities[k]), 6)} for k in order],
    }


def predict_images(predictor, images: list[Path]) -> list[dict]:
    """One result per page of each image, through the same preprocessing as ``classify``."""
    results, waiting = [], []
    for path in images:
        path = Path(path)
        for item in prepare(Candidate(path.parent, path)):
            entry = {"file": display_name(str(path)), "page": item.row["page"], "status": item.row["status"], "error": item.row["error"]}
            results.append(entry)
            if item.needs_model:
                waiting.append((entry, item.image))
    if waiting:
        probabilities = predictor.predict(mnist_to_input(np.stack([image for _, image in waiting])))
        for (entry, _), probs in zip(waiting, probabilities):
            entry.update(prediction(probs), status="ok")
    return results


def predict_array(predictor, digit: np.ndarray) -> dict:
    return prediction(predictor.predict(mnist_to_input(digit[None]))[0])


def label_from_path(relative: str) -> int | None:
    """The true label of a file in a labelled tree: the nearest folder named 0-9 (``WRITER/7/x.png`` -> 7)."""
    for part in reversed(relative.split("/")[:-1]):
        if len(part) == 1 and part.isdigit():
            return int(part)
    return None


def evaluate_folder(predictor, root: Path, workers: int = 0) -> dict:
    """Score a model on a labelled folder of real scans, through the same pipeline as ``classify``.

    Labels come from folder names (``.../DIGIT/file``); the first path part
    groups results (e.g. one group per writer).  Blank and failed files count
    as wrong, so the figure is what a user would get.
    """
    from batchclf.scan.discovery import discover
    from batchclf.engines.local import classify_stream

    root = Path(root)
    truths, predicted, groups = [], [], {}
    rows = classify_stream(discover([root]), predictor.predict, predictor.batch_size, 0.0, predictor.name, workers)
    for row in rows:
        truth = label_from_path(row["file"])
        if truth is None:
            continue
        guess = row["label"] if row["label"] is not None else -1
        truths.append(truth)
        predicted.append(guess)
        group = groups.setdefault(row["file"].split("/")[0], [0, 0])
        group[0] += int(guess == truth)
        group[1] += 1
    if not truths:  # an accuracy of 0% of 0 images would read as a result
        raise EmptyInputError(f"no labelled images in {root} (expected .../DIGIT/file, e.g. writer1/7/scan.png)")
    truths_a, predicted_a = np.array(truths, int), np.array(predicted, int)
    valid = predicted_a >= 0
    correct = predicted_a == truths_a
    result = {
        "n": int(len(truths_a)),
        "accuracy": float(correct.mean()),
        "per_class": {
            str(c): float(correct[truths_a == c].mean()) if (truths_a == c).any() else None for c in range(10)
        },
        "confusion": confusion_matrix(truths_a[valid], predicted_a[valid]).tolist(),
        "unlabelled_or_failed": int((~valid).sum()),
    }
    result["groups"] = {name: round(ok / n, 4) for name, (ok, n) in sorted(groups.items())}
    return {"model": str(predictor.path), "data": str(root), **result}
