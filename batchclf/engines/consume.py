"""The one consume path: prepared items (found, read, decoded) -> labelled rows.

``classify``'s local engine, the Ray engine's labelling actors and the inbox
daemon's decide step all finish their rows here, so a file gets the same row
whichever way it came (like paperless-ngx's one "consume a document" entry
point shared by every source).  Preparing is :func:`batchclf.scan.prepare.prepare_many`
(in worker processes or Ray tasks); labelling a batch is
:func:`batchclf.engines.labelling.label_rows`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import numpy as np

from batchclf.engines.labelling import label_rows
from batchclf.scan.prepare import Prepared

if TYPE_CHECKING:
    from batchclf.model.predictor import Scores


class Labeller(Protocol):
    """What consuming needs of a predictor (:class:`batchclf.model.predictor.Predictor` is one)."""

    name: str
    review_below: float

    def score(self, images: np.ndarray) -> "Scores": ...


@dataclass(frozen=True)
class ScoreFunction:
    """A bare scoring function as a :class:`Labeller` (callers that hold a score function, not a predictor)."""

    score: Callable[[np.ndarray], "Scores"]
    review_below: float
    name: str


def consume(items: Sequence[Prepared], predictor: Labeller, review_below: float | None = None) -> list[dict]:
    """One row per prepared item, in order: the pages with an image labelled in one model call, the others as they are.

    ``review_below``: the threshold rows are judged by; None: the predictor's own.
    """
    threshold = predictor.review_below if review_below is None else review_below
    return label_rows([item.row for item in items], [item.image for item in items], predictor.score, threshold,
                      predictor.name)
