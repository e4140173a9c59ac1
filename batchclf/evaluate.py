"""``evaluate`` and ``predict``: scoring a model on MNIST and labelling single images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from batchclf import LABEL_WORDS
from batchclf.datasets.labelled import label_from_path
from batchclf.datasets.mnist import Dataset
from batchclf.jobs.rows import BLANK, NOT_A_DIGIT, OK, REVIEW, make_row
from batchclf.errors import EmptyInputError
from batchclf.scan.discovery import Candidate, display_name
from batchclf.model.metrics import confusion_matrix, summary
from batchclf.model.selective import curve
from batchclf.scan.prepare import prepare
from batchclf.scan.preprocess import mnist_to_input


def evaluate(predictor, data: Dataset) -> dict:

    review_below = predictor.review_below
    scores = predictor.score(mnist_to_input(data.x_test))
    probabilities = scores.probabilities
    flagged = np.zeros(len(probabilities), bool) if scores.flagged is None else scores.flagged
    confident = probabilities.max(1) >= review_below
    ok = confident & ~flagged
    correct = probabilities.argmax(1) == data.y_test
    selective = {"review_below": review_below, "ok_accuracy": float(correct[ok].mean()) if ok.any() else None,
                 "review_share": float((~ok).mean()), **_detector_figures(scores.flagged, confident),
                 "curve": curve(probabilities.max(1), correct, flagged)}
    return {"model": str(predictor.path), "data": data.source, **summary(probabilities, data.y_test), **selective}


def _detector_figures(flagged, confident) -> dict:
    """How many real digits the not-a-digit detector sent to review, and how many of those only it did."""
    if flagged is None:
        return {"not_digit_share": None, "not_digit_extra_share": None}
    flagged, confident = np.asarray(flagged, bool), np.asarray(confident, bool)
    return {"not_digit_share": float(flagged.mean()), "not_digit_extra_share": float((flagged & confident).mean())}


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
        scores = predictor.score(mnist_to_input(np.stack([image for _, image in waiting])))
        flagged = [False] * len(waiting) if scores.flagged is None else scores.flagged.tolist()
        for (entry, _), probs, odd in zip(waiting, scores.probabilities, flagged):
            entry.update(prediction(probs), status=REVIEW if odd else OK, error=NOT_A_DIGIT if odd else None)
    return results


def predict_array(predictor, digit: np.ndarray) -> dict:
    return prediction(predictor.predict(mnist_to_input(digit[None]))[0])


def evaluate_folder(predictor, root: Path, workers: int = 0, engine: str = "local") -> dict:
    """Score a model on labelled scans, through the same pipeline as ``classify``.

    ``root`` is a folder (labels from folder names, ``.../DIGIT/file``; the
    first folder under it groups results, e.g. one group per writer) or a
    USPS digit file.  Blank and failed files count as wrong, so the figure
    is what a user would get.  With the model card's ``review_below``, the
    selective figures say how right the ``ok`` rows are and how many
    digits go to ``review``.  ``engine`` picks how a folder's files become
    rows (:func:`batchclf.engines.get_engine`), as for ``classify``.
    """

    root = Path(root)
    review_below = predictor.review_below
    rows = _usps_rows(predictor, root, review_below) if root.is_file() else _folder_rows(predictor, root, review_below, workers, engine)
    truths, guesses, statuses, groups, flags, confident, confidences = [], [], [], [], [], [], []
    for truth, group, row in rows:
        truths.append(truth)
        guesses.append(row["label"] if row["label"] is not None else -1)
        statuses.append(row["status"])
        groups.append(group)
        flags.append(row["error"] == NOT_A_DIGIT)
        confident.append(row["confidence"] is not None and row["confidence"] >= review_below)
        confidences.append(row["confidence"] if row["confidence"] is not None else 0.0)
    if not truths:  # an accuracy of 0% of 0 images would read as a result
        raise EmptyInputError(f"no labelled images in {root} (expected .../DIGIT/file, e.g. writer1/7/scan.png, or a USPS file)")
    truths_a, guesses_a, statuses_a = np.array(truths, int), np.array(guesses, int), np.array(statuses)
    groups_a = np.array(groups)
    valid = guesses_a >= 0
    correct = guesses_a == truths_a
    ok = statuses_a == OK
    result = {
        "n": int(len(truths_a)),
        "accuracy": float(correct.mean()),
        "per_class": {
            str(c): float(correct[truths_a == c].mean()) if (truths_a == c).any() else None for c in range(10)
        },
        "confusion": confusion_matrix(truths_a[valid], guesses_a[valid]).tolist(),
        "unlabelled_or_failed": int((~valid).sum()),
        "review_below": review_below,
        "ok_accuracy": float(correct[ok].mean()) if ok.any() else None,
        "review_share": float((statuses_a == REVIEW).mean()),
        **_detector_figures(flags if predictor.detector is not None else None, confident),
        "groups": {name: round(float(correct[groups_a == name].mean()), 4) for name in sorted(set(groups))},
        # Blank, failed and flagged rows go to a person whatever the threshold (the second look, where the card asks
        # for it, was taken at the card's threshold).
        "curve": curve(np.array(confidences), correct, ~np.isin(statuses_a, (OK, REVIEW)) | np.array(flags, bool)),
    }
    return {"model": str(predictor.path), "data": str(root), **result}


def _folder_rows(predictor, root: Path, review_below: float, workers: int, engine: str):
    """``(truth, group, row)`` for every labelled file under ``root``; the group is its first folder (a writer)."""
    from batchclf.scan.discovery import discover

    for row in _engine_rows(predictor, discover([root]), review_below, workers, engine):
        truth = label_from_path(row["file"])
        if truth is not None:
            yield truth, row["file"].split("/")[0], row


def _engine_rows(predictor, candidates, review_below: float, workers: int, engine: str):
    """Rows from the chosen engine; the local one reuses the predictor already loaded."""
    if engine == "local":
        from batchclf.engines.local import classify_stream

        yield from classify_stream(candidates, predictor.score, predictor.batch_size, review_below, predictor.name, workers)
        return
    from batchclf.engines import get_engine
    from batchclf.engines.base import EngineSettings
    from batchclf.model.spec import ModelSpec

    spec = ModelSpec(model=predictor.path, batch_size=predictor.batch_size, input_scale=predictor.input_scale,
                     detector=predictor.detector_path, review_below=review_below)
    settings = EngineSettings(spec, workers=workers)
    with get_engine(engine)(settings) as chosen:
        yield from chosen.rows(candidates)


def _usps_rows(predictor, path: Path, review_below: float):
    """A USPS file has no files to decode: its digits take the normalisation ``prepare`` applies after decoding."""
    from batchclf.datasets.usps import read_usps
    from batchclf.engines.consume import consume
    from batchclf.scan.prepare import Prepared
    from batchclf.scan.preprocess import normalize_to_bytes

    raw, labels = read_usps(path)
    images = [normalize_to_bytes(gray) for gray in raw]
    bases = [make_row(file=f"{path.name}:{i + 1}", page=1) if image is not None else
             make_row(file=f"{path.name}:{i + 1}", page=1, status=BLANK) for i, image in enumerate(images)]
    rows = consume([Prepared(base, image) for base, image in zip(bases, images)], predictor, review_below)
    return [(int(label), path.name, row) for label, row in zip(labels, rows)]
