"""The local engine: decoding worker processes (:mod:`batchclf.scan.pool`), one compiled predictor here.

Rows leave as soon as their batch is predicted; workers decode the next chunks while the model runs.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np

from batchclf.engines.base import EngineSettings, package_version
from batchclf.engines.consume import ScoreFunction, consume
from batchclf.scan.decode import DEFAULT_LIMITS, Limits
from batchclf.scan.discovery import Candidate
from batchclf.scan.pool import default_workers, prepared_stream
from batchclf.scan.prepare import Prepared, prepare_many

if TYPE_CHECKING:
    from batchclf.model.predictor import Scores


def classify_stream(
    candidates: Iterable[Candidate],
    score: Callable[[np.ndarray], "Scores"],
    batch_size: int,
    review_below: float,
    model_name: str,
    workers: int,
    limits: Limits = DEFAULT_LIMITS,
) -> Iterator[dict]:
    """Rows for every candidate, predicted in batches of ``batch_size``, in input order."""
    waiting: list[Prepared] = []
    labelled_count = 0
    labeller = ScoreFunction(score, review_below, model_name)

    def flush() -> list[dict]:
        nonlocal labelled_count
        rows = consume(waiting, labeller)
        waiting.clear()
        labelled_count = 0
        return rows

    for item in prepared_stream(candidates, workers, prepare=functools.partial(prepare_many, limits=limits)):
        waiting.append(item)
        labelled_count += item.needs_model
        if labelled_count >= batch_size:
            yield from flush()
    if waiting:
        yield from flush()


class LocalEngine:
    """Today's engine: spawned worker processes decode, one compiled predictor in this process labels."""

    name = "local"

    def __init__(self, settings: EngineSettings):
        self.settings = settings
        self.predictor = settings.spec.predictor()
        self.predictor.warm_up()
        self.review_below = self.predictor.review_below
        self.workers = default_workers() if settings.workers is None else settings.workers

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def rows(self, candidates: Iterable) -> Iterator[dict]:
        extra = {} if self.settings.limits is None else {"limits": self.settings.limits}
        p = self.predictor
        return classify_stream(candidates, p.score, p.batch_size, self.review_below, p.name, self.workers, **extra)

    def describe(self) -> dict:
        return {
            "engine": self.name,
            "model": self.predictor.describe(),
            "device": self.predictor.device,
            "batch_size": self.predictor.batch_size,
            "workers": self.workers,
            "review_below": self.review_below,
            "review": self.predictor.review,
            "tensorflow": package_version("tensorflow"),
        }
