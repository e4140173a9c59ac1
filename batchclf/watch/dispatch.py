"""Preparing taken files in the worker processes, without ever waiting on them.

Chunks go to the :class:`~batchclf.scan.pool.WorkerPool`; each finished
future puts a ``done`` event on the daemon's queue, and the daemon's loop
harvests it.  A chunk whose worker died is retried file by file by the pool,
so only the file that kills a worker again becomes a ``failed`` row.
"""

from __future__ import annotations

import queue
from concurrent.futures import Future
from typing import Callable

from batchclf.scan.pool import CHUNK_FILES, WorkerPool
from batchclf.scan.discovery import Candidate
from batchclf.scan.prepare import Prepared, failed
from batchclf.watch.intake import Taken


class Dispatcher:
    def __init__(
        self, inbox, pool: WorkerPool | None, events: queue.Queue, on_prepared: Callable[[list[Taken]], None],
        prepare: Callable[[list[Candidate]], list[Prepared]],
    ):
        self.inbox, self.pool, self.events, self.on_prepared = inbox, pool, events, on_prepared
        self.prepare = prepare  # what runs without a pool; the pool was built with the same function
        self._in_flight: dict[Future, tuple[list[Taken], list[Candidate], int]] = {}

    @property
    def chunks_in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def files_in_flight(self) -> int:
        return sum(len(entry[0]) for entry in self._in_flight.values())

    def submit(self, taken: list[Taken]) -> None:
        for start in range(0, len(taken), CHUNK_FILES):
            chunk = taken[start : start + CHUNK_FILES]
            # A refusal made at intake travels as the candidate's reason: prepare reports it and opens nothing.
            candidates = [Candidate(self.inbox, t.path, escaped=t.escaped, unreadable=t.refused) for t in chunk]
            if self.pool is None:
                self._prepared(chunk, self.prepare(candidates))
                continue
            _, future, generation = self.pool.submit(candidates)  # never raises: a broken pool gives a broken future
            self._in_flight[future] = (chunk, candidates, generation)
            future.add_done_callback(lambda f: self.events.put(("done", f, False)))

    def harvest(self, future: Future) -> None:
        entry = self._in_flight.pop(future, None)
        if entry is None:
            return
        chunk, candidates, generation = entry
        # Never raises: a chunk whose worker died is retried file by file, and only the culprit fails.
        self._prepared(chunk, self.pool.result(candidates, future, generation))

    def drain(self, timeout: float = 60) -> None:
        """On stop: wait for every chunk in flight and hand its files on."""
        for future in list(self._in_flight):
            try:
                future.result(timeout=timeout)
            except Exception:
                pass
            self.harvest(future)

    def _prepared(self, chunk: list[Taken], items: list[Prepared]) -> None:
        by_file: dict[str, list[Prepared]] = {}
        for item in items:
            by_file.setdefault(item.row["file"], []).append(item)
        for taken in chunk:
            taken.prepared = by_file.get(taken.relative) or [failed(taken.relative, "no result from the decoder")]
        self.on_prepared(chunk)
