"""``evaluate`` and ``predict``: scoring a model on MNIST and labelling single images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import LABEL_WORDS
from .data import Dataset
from .discovery import Candidate
from .metrics import summary
from .prepare import prepare
from .preprocess import mnist_to_input


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
            entry = {"file": str(path), "page": item.row["page"], "status": item.row["status"], "error": item.row["error"]}
            results.append(entry)
            if item.needs_model:
                waiting.append((entry, item.image))
    if waiting:
        probabilities = predictor.predict(np.stack([image for _, image in waiting])[..., None])
        for (entry, _), probs in zip(waiting, probabilities):
            entry.update(prediction(probs), status="ok")
    return results


def predict_array(predictor, digit: np.ndarray) -> dict:
    return prediction(predictor.predict(mnist_to_input(digit[None]))[0])
