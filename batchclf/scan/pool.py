"""The crash-safe pool of decoding workers: discover -> prepare, in worker processes, in input order.

Memory stays bounded however many files there are: discovery is lazy, and at
most ``workers * 4`` chunks (of at most ``MAX_CHUNK_FILES``) are in flight.  Used by ``classify``'s local
engine, the inbox daemon and the training data readers alike.

Crash-safe dispatch: hand chunks to :meth:`WorkerPool.submit` and collect
them with :meth:`WorkerPool.result`; neither raises when a worker dies, at
whatever moment it dies.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import threading
import time
from collections import deque
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator, NamedTuple

from batchclf.scan.discovery import Candidate
from batchclf.scan.prepare import Prepared, failed, prepare_many, warm_up

CHUNK_FILES = 32  # files per worker task (the daemon's too)
# A stream packs more small files into a task: a 28x28 PNG takes ~60 core-us to prepare, about what
# handing it over costs in a task of 32.  A task grows past CHUNK_FILES until its files hold CHUNK_BYTES,
# up to MAX_CHUNK_FILES; never fewer than CHUNK_FILES, so large scans keep today's short tasks.
CHUNK_BYTES = 1 << 20
MAX_CHUNK_FILES = 256
CHUNKS_IN_FLIGHT_PER_WORKER = 4
CRASH_REASON = "the decoder crashed on this file (its worker process died)"


def default_workers() -> int:
    return max(1, (os.cpu_count() or 1))


def _chunks(candidates: Iterable[Candidate], size: int) -> Iterator[list[Candidate]]:
    iterator = iter(candidates)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _sized_chunks(candidates: Iterable[Candidate], size: int) -> Iterator[list[Candidate]]:
    """Tasks of at least ``size`` files, grown with small files until they hold ``CHUNK_BYTES`` (at most ``MAX_CHUNK_FILES``)."""
    chunk: list[Candidate] = []
    volume = 0
    for candidate in candidates:
        chunk.append(candidate)
        volume += _file_bytes(candidate)
        if len(chunk) >= MAX_CHUNK_FILES or (len(chunk) >= size and volume >= CHUNK_BYTES):
            yield chunk
            chunk, volume = [], 0
    if chunk:
        yield chunk


def _file_bytes(candidate: Candidate) -> int:
    """A candidate's size as far as packing goes: one it will not read (or cannot stat now) weighs nothing."""
    if candidate.escaped or candidate.unreadable:
        return 0
    try:
        return os.stat(candidate.path).st_size
    except OSError:  # gone or unreadable: its worker reports that as the row
        return 0


def prepared_stream(
    candidates: Iterable[Candidate], workers: int, chunk_files: int = CHUNK_FILES, prepare: Callable = prepare_many,
    pool: "WorkerPool | None" = None,
) -> Iterator[Prepared]:
    """Prepared items in input order; ``workers=0`` prepares in this process (tests, tiny jobs).

    ``pool``: a pool already started (:meth:`WorkerPool.start_workers`), with its own prepare function, used
    and left open for its owner to close; None: a pool of ``workers`` is started here for this stream.
    """
    if pool is not None:
        yield from _in_order(_sized_chunks(candidates, chunk_files), pool)
        return
    if workers <= 0:
        for chunk in _chunks(candidates, chunk_files):
            yield from prepare(chunk)
        return
    with WorkerPool(workers, prepare) as pool:
        yield from _in_order(_sized_chunks(candidates, chunk_files), pool)


def _in_order(chunks: Iterable[list[Candidate]], pool: "WorkerPool") -> Iterator[Prepared]:
    """Every chunk through ``pool``, results in input order, at most ``workers * CHUNKS_IN_FLIGHT_PER_WORKER`` chunks in flight."""
    pending: deque = deque()
    limit = pool.workers * CHUNKS_IN_FLIGHT_PER_WORKER
    for chunk in chunks:
        pending.append(pool.submit(chunk))
        if len(pending) >= limit:
            yield from pool.result(*pending.popleft())
    while pending:
        yield from pool.result(*pending.popleft())


# Decoders yield the CPU to inference.  The runtime (LiteRT or TensorFlow) splits each
# batch across its threads and waits for the slowest; a worker that preempts one of
# them stalls them all.  Niced workers still get every cycle inference leaves idle, and
# run at full speed whenever the model waits for them.  Measured on 2 cores:
# 8% more files/s end to end on 28x28 PNGs, on average over six pairs of runs.
WORKER_NICE = 10
# How often a worker checks that the process that started it still lives.
PARENT_CHECK_SECONDS = 0.5
# How long an engine waits for its workers to start before it begins anyway (a worker stuck at start is a crash later).
READY_TIMEOUT_SECONDS = 30.0


def _worker_init(parent: int) -> None:
    os.nice(WORKER_NICE)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="parent-watch", daemon=True).start()


def _ready() -> int:
    """A worker's first task: it starts, imports what preparing needs and decodes one made-up page (see ``warm_up``)."""
    try:
        warm_up()
    except Exception:  # only a head start: a real chunk meets the same fault and reports it properly
        pass
    return os.getpid()


def _exit_when_orphaned(parent: int) -> None:
    """End this worker once its parent is gone (``kill -9`` of classify or the daemon).

    A worker blocked on the task queue never notices by itself: it holds
    that pipe's write end too.  Not ``PR_SET_PDEATHSIG``: Linux sends that
    signal when the parent *thread* that spawned the worker ends, and the
    pool may spawn from any thread.  With the workers gone, multiprocessing's
    resource tracker sees its pipe close and exits as well.
    """
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)


class Dispatch(NamedTuple):
    """A chunk handed to the pool: what :meth:`WorkerPool.result` needs to collect it."""

    chunk: list[Candidate]
    future: Future
    generation: int  # the pool that took it, so a crash restarts the pool only once


def _broken_future() -> Future:
    future: Future = Future()
    future.set_exception(BrokenProcessPool("the worker pool broke before this chunk could be handed over"))
    return future


class WorkerPool:
    """Spawned worker processes that outlive a worker crash.

    A native fault on a hostile file (or a ``kill``) ends a worker and breaks
    every task in flight, and the pool with them.  Wherever that is found
    (handing over a chunk, or collecting one), the pool is replaced and each
    broken chunk is retried one file per task; the file that kills a worker
    again becomes a ``failed`` row, and the job goes on.
    """

    def __init__(self, workers: int, prepare: Callable):
        self.workers, self.prepare = workers, prepare
        self.generation = 0
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # spawn, not fork: the parent may already hold TensorFlow's threads.
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init, initargs=(os.getpid(),),
        )

    def start_workers(self) -> list[Future]:
        """Start every worker now; returns what says each is ready (:meth:`wait_ready`).

        The executor spawns a worker only when a task arrives, and a spawned worker then imports
        numpy, Pillow and the decoders (~0.2 s of CPU each): started while the model loads, that
        no longer delays the first chunk.  A worker that dies here is found by the next
        :meth:`submit` or :meth:`result`, as always.
        """
        started = []
        for _ in range(self.workers):
            try:
                started.append(self._pool.submit(_ready))
            except BrokenProcessPool:
                break
        return started

    @staticmethod
    def wait_ready(started: list[Future], timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Wait until the workers :meth:`start_workers` started are ready (or gone, or ``timeout`` passed): never raises."""
        wait(started, timeout=timeout)

    def _restart(self, generation: int) -> None:
        if generation == self.generation:  # futures of an older pool need no second restart
            # No cancel_futures: the broken pool fails its own futures, and result() retries those file by file.
            self._pool.shutdown(wait=False)
            self._pool = self._start()
            self.generation += 1

    def submit(self, chunk: list[Candidate]) -> Dispatch:
        """Hand ``chunk`` to a worker; never raises: a pool found broken is replaced, then tried once more."""
        for _ in range(2):
            generation = self.generation
            try:
                return Dispatch(chunk, self._pool.submit(self.prepare, chunk), generation)
            except BrokenProcessPool:
                self._restart(generation)
        return Dispatch(chunk, _broken_future(), generation)  # result() retries it file by file

    def result(self, chunk: list[Candidate], future: Future, generation: int) -> list[Prepared]:
        """The prepared items of a dispatched chunk; never raises (a crash costs at most the file that caused it)."""
        try:
            return future.result()
        except (BrokenProcessPool, CancelledError):
            return self.after_crash(chunk, generation)
        except Exception as exc:  # e.g. a result that cannot be unpickled: the chunk fails, the job goes on
            return [failed(candidate.relative, f"unexpected error: {exc.__class__.__name__}: {exc}") for candidate in chunk]

    def after_crash(self, chunk: list[Candidate], generation: int) -> list[Prepared]:
        """A chunk whose worker died: restart the pool once, then prepare its files one per task.

        The one-file tasks run side by side; those a new crash breaks are run
        once more strictly alone, so only a file that kills its worker by
        itself is failed.
        """
        self._restart(generation)
        out = []
        for dispatch in [self.submit([candidate]) for candidate in chunk]:
            try:
                out.extend(dispatch.future.result())
            except (BrokenProcessPool, CancelledError):
                out.extend(self._alone(dispatch.chunk[0]))
        return out

    def _alone(self, candidate: Candidate) -> list[Prepared]:
        """One file in a task of its own, on a fresh pool if need be: if its worker dies now, the file is the likely cause."""
        dispatch = self.submit([candidate])
        try:
            return dispatch.future.result()
        except (BrokenProcessPool, CancelledError):
            self._restart(dispatch.generation)
            return [failed(candidate.relative, CRASH_REASON)]

    def __enter__(self) -> "WorkerPool":
        return self

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __exit__(self, *exc) -> bool:
        self.close()
        return False
