"""Prepared items -> finished rows: the one place a batch meets the model.

``classify``'s engines (local and Ray) and the inbox daemon all finish rows
here, so a file gets the same row whichever path it took.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from batchclf.jobs.rows import labelled_rows, unlabelled
from batchclf.scan.preprocess import mnist_to_input

if TYPE_CHECKING:
    from batchclf.model.predictor import Scores


def label_rows(
    bases: list[dict], images: list, score: Callable[[np.ndarray], "Scores"], review_below: float, model_name: str
) -> list[dict]:
    """Rows in input order: those with a 28x28 image labelled in one model call, the others (blank, failed) finished as they are.

    ``score`` is :meth:`batchclf.model.predictor.Predictor.score`: probabilities, and the not-a-digit detector's flags.
    """
    need = [index for index, image in enumerate(images) if image is not None]
    out: list = [None] * len(bases)
    if need:
        scores = score(mnist_to_input(np.stack([images[index] for index in need])))
        finished = labelled_rows([bases[index] for index in need], scores.probabilities, review_below, model_name,
                                 scores.flagged, getattr(scores, "looked_again", None))
        for index, row in zip(need, finished):
            out[index] = row
    for index, image in enumerate(images):
        if image is None:
            out[index] = unlabelled(bases[index], model_name)
    return out
