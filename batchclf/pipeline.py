"""The batched pipeline: discover -> prepare (worker processes) -> predict in fixed batches.

Memory stays bounded however many files there are: discovery is lazy, at
most ``workers * 4`` chunks are in flight, and rows leave as soon as their
batch is predicted.  Workers decode the next chunks while the model runs.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator

import numpy as np

from .discovery import Candidate
from .prepare import Prepared, prepare_many
from .preprocess import mnist_to_input
from .rows import FAILED, labelled, make_row, now_iso

CHUNK_FILES = 32
CHUNKS_IN_FLIGHT_PER_WORKER = 4


def default_workers() -> int:
    return max(1, (os.cpu_count() or 1))


def _chunks(candidates: Iterable[Candidate], size: int) -> Iterator[list[Candidate]]:
    iterator = iter(candidates)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def prepared_stream(candidates: Iterable[Candidate], workers: int, chunk_files: int = CHUNK_FILES) -> Iterator[Prepared]:
    """Prepared items in input order; ``workers=0`` prepares in this process (tests, tiny jobs)."""
    chunks = _chunks(candidates, chunk_files)
    if workers <= 0:
        for chunk in chunks:
            yield from prepare_many(chunk)
        return
    # spawn, not fork: the parent may already hold TensorFlow's threads.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque = deque()
        limit = workers * CHUNKS_IN_FLIGHT_PER_WORKER
        for chunk in chunks:
            pending.append((chunk, pool.submit(prepare_many, chunk)))
            if len(pending) >= limit:
                yield from _collect(*pending.popleft())
        while pending:
            yield from _collect(*pending.popleft())


def _collect(chunk: list[Candidate], future) -> list[Prepared]:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        # A decoder crashed the worker (e.g. a native library fault on a hostile file).
        return [
            Prepared(make_row(file=c.relative, status=FAILED, error=f"worker crashed: {exc}", processed_at=now_iso()), None)
            for c in chunk
        ]


def classify_stream(
    candidates: Iterable[Candidate],
    predict: Callable[[np.ndarray], np.ndarray],
    batch_size: int,
    review_below: float,
    model_name: str,
    workers: int,
) -> Iterator[dict]:
    """Rows for every candidate, predicted in batches of ``batch_size``, in input order."""
    waiting: list[Prepared] = []
    labelled_count = 0

    def flush() -> Iterator[dict]:
        nonlocal labelled_count
        images = [item.image for item in waiting if item.needs_model]
        probabilities = iter(predict(mnist_to_input(np.stack(images))) if images else ())
        for item in waiting:
            if item.needs_model:
                yield labelled(item.row, next(probabilities), review_below, model_name)
            else:
                # A blank page was looked at by this job's model settings; a failed file never was.
                yield {**item.row, "model": None if item.row["status"] == FAILED else model_name}
        waiting.clear()
        labelled_count = 0

    for item in prepared_stream(candidates, workers):
        waiting.append(item)
        labelled_count += item.needs_model
        if labelled_count >= batch_size:
            yield from flush()
    if waiting:
        yield from flush()
