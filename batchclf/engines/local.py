"""The local engine: decoding worker processes (:mod:`batchclf.scan.pool`), one compiled predictor here.

Three things run at once: the workers decode the next chunks, this thread collects
them into batches (and the caller writes the rows), and a model thread scores the
batch gathered before.  Rows still leave in input order, as soon as their batch is scored.
"""

from __future__ import annotations

import functools
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np

from batchclf.engines.base import EngineSettings, package_version
from batchclf.engines.consume import ScoreFunction, consume
from batchclf.scan.decode import DEFAULT_LIMITS, Limits
from batchclf.scan.discovery import Candidate
from batchclf.scan.pool import WorkerPool, default_workers, prepared_stream
from batchclf.scan.prepare import Prepared, prepare_many

if TYPE_CHECKING:
    from batchclf.model.predictor import Scores

# Batches scored at once, in a thread of their own.  One: a predictor need not be thread-safe, and
# TensorFlow splits each batch over the cores by itself (two calls side by side gave no clear gain on
# 28x28 PNGs, 2 cores).  A runtime that scores a batch on one core and may be called from several
# threads could take more.
MODEL_CALLS = 1
# Batches handed to the model thread and not yet collected: those being scored, and the next, gathered
# from the workers meanwhile.  Without it the workers and the model take turns: the workers wait
# while a batch is scored (they run only a few chunks ahead), the model while the next is gathered.
BATCHES_AHEAD = MODEL_CALLS + 1


def classify_stream(
    candidates: Iterable[Candidate],
    score: Callable[[np.ndarray], "Scores"],
    batch_size: int,
    review_below: float,
    model_name: str,
    workers: int,
    limits: Limits = DEFAULT_LIMITS,
    pool: WorkerPool | None = None,
) -> Iterator[dict]:
    """Rows for every candidate, predicted in batches of ``batch_size``, in input order.

    ``pool``: worker processes already started (:class:`LocalEngine` starts them while the model loads),
    left open; None: ``workers`` processes started for this stream.  ``score`` runs in one thread of its
    own, one batch at a time, while this one gathers the next batch.
    """
    labeller = ScoreFunction(score, review_below, model_name)
    items = prepared_stream(candidates, workers, prepare=functools.partial(prepare_many, limits=limits), pool=pool)
    model = ThreadPoolExecutor(MODEL_CALLS, thread_name_prefix="batchclf-model")
    try:
        scored: deque[Future] = deque()
        for batch in _batches(items, batch_size):
            scored.append(model.submit(consume, batch, labeller))
            while scored and (len(scored) >= BATCHES_AHEAD or scored[0].done()):
                yield from scored.popleft().result()
        while scored:
            yield from scored.popleft().result()
    finally:
        # Stopped early (an error, Ctrl-C, a reader that closes the stream): the batch being scored
        # finishes, the ones waiting for the model are dropped.
        model.shutdown(wait=True, cancel_futures=True)


def _batches(items: Iterable[Prepared], batch_size: int) -> Iterator[list[Prepared]]:
    """Items in runs holding ``batch_size`` that need the model (and the blank or failed ones among them); the last may hold fewer."""
    waiting: list[Prepared] = []
    needs_model = 0
    for item in items:
        waiting.append(item)
        needs_model += item.needs_model
        if needs_model >= batch_size:
            yield waiting
            waiting, needs_model = [], 0
    if waiting:
        yield waiting


class LocalEngine:
    """Today's engine: spawned worker processes decode, one compiled predictor in this process labels."""

    name = "local"

    def __init__(self, settings: EngineSettings):
        self.settings = settings
        self.workers = default_workers() if settings.workers is None else settings.workers
        limits = DEFAULT_LIMITS if settings.limits is None else settings.limits
        self.limits = limits
        # The workers first: they start and import their decoders while the model loads, not after.
        self.pool = WorkerPool(self.workers, functools.partial(prepare_many, limits=limits)) if self.workers > 0 else None
        try:
            started = self.pool.start_workers() if self.pool is not None else []
            self.predictor = settings.spec.predictor()
            self.predictor.warm_up()
            # Ready means ready to work: a LiteRT model loads faster than a spawned worker imports its
            # decoders, and a job's clock (files per second) starts once the engine is ready.
            WorkerPool.wait_ready(started)
        except BaseException:
            self.close()
            raise
        self.review_below = self.predictor.review_below

    def __enter__(self) -> "LocalEngine":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def rows(self, candidates: Iterable) -> Iterator[dict]:
        p = self.predictor
        return classify_stream(candidates, p.score, p.batch_size, self.review_below, p.name, self.workers, self.limits,
                               pool=self.pool)

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
