"""The inbox daemon's loop: intake -> prepare (workers) -> dynamic batches -> journal -> reports -> moves.

Single-threaded by design: one loop owns the tracker, batcher, journal and
report files, and only waits on one queue (watchdog events, finished
preparation work, and a wake-up on stop), so there are no locks to get
wrong.  ``stop()`` may be called from a signal handler or another thread.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import shutil
import threading
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from batchclf.jobs import folder as job_folder
from batchclf.jobs import writers as reports
from batchclf.atomic import fsync_dir, write_text_atomic
from batchclf.scan.discovery import Candidate, is_ignored
from batchclf.engines.local import WorkerPool
from batchclf.scan.prepare import Prepared, failed, prepare_many
from batchclf.scan.preprocess import mnist_to_input
from batchclf.jobs.rows import DUPLICATE, FAILED, labelled_rows, now_iso, unlabelled
from batchclf.watch.batcher import DynamicBatcher
from batchclf.watch.journal import FileRecord, Journal
from batchclf.watch.lock import LOCK_NAME, InboxLock
from batchclf.watch.notify import Notifier
from batchclf.watch.observer import filesystem_type, is_network_filesystem, start_observer
from batchclf.watch.stability import StabilityTracker, StableFile

log = logging.getLogger("batchclf.watch")

SUMMARY_EVERY = 2.0  # seconds between summary.json rewrites under load (and always at stop)
CHUNK_FILES = 32  # files per worker task; at a trickle chunks are as small as what settled together


@dataclass
class WatchOptions:
    inbox: Path
    out_dir: Path
    model: Path
    max_batch: int = 64
    max_latency: float = 0.5
    settle: float = 1.0
    polling: bool = False
    poll_interval: float = 1.0
    oneshot: bool = False
    keep: bool = False
    rescan_interval: float = 60.0
    workers: int | None = None
    device: str = "auto"
    batch_size: int | None = None
    review_below: float | None = None
    processed_dir: Path | None = None  # default: <inbox parent>/processed
    failed_dir: Path | None = None  # default: <inbox parent>/failed
    status_interval: float = 60.0


@dataclass
class Taken:
    """A stable file taken from the inbox, with the identity the journal keys on."""

    relative: str
    path: Path
    size: int
    mtime_ns: int
    taken_at: float
    prepared: list[Prepared] = field(default_factory=list)


class Daemon:
    def __init__(self, options: WatchOptions, predictor=None, clock=time.monotonic, notifier: Notifier | None = None):
        self.options = options
        self.inbox = Path(options.inbox).resolve()
        self.out_dir = Path(options.out_dir).resolve()
        self.processed_dir = Path(options.processed_dir or self.inbox.parent / "processed").resolve()
        self.failed_dir = Path(options.failed_dir or self.inbox.parent / "failed").resolve()
        self._inbox_prefix = os.fspath(self.inbox) + os.sep
        self._own_dirs = tuple(os.fspath(p) for p in (self.processed_dir, self.failed_dir, self.out_dir))
        self.clock = clock
        self.events: queue.Queue = queue.Queue()
        # ctime dates a file's last change only where this machine's clock stamps it.
        local = not is_network_filesystem(filesystem_type(self.inbox))
        self.tracker = StabilityTracker(options.settle, clock, wall_clock=time.time if local else None)
        # Bounded intake: at most eight batches' worth of files (28x28 bytes each once decoded)
        # are being decoded or waiting at once, enough to keep the workers busy during a commit.
        self.batcher: DynamicBatcher[Taken] = DynamicBatcher(
            options.max_batch, options.max_latency, clock, capacity=8 * options.max_batch
        )
        self.notifier = notifier or Notifier()
        self.predictor = predictor
        self._stop = threading.Event()
        self._in_progress: set[str] = set()
        self._in_flight: dict[Future, list[Taken]] = {}
        self.totals: dict[str, int] = {}
        self._summaries_due: set[str] = set()
        self._made_dirs: set[str] = set()
        self._last_summary = float("-inf")
        self.started = now_iso()
        self.exit_code = 0

    # -- control -----------------------------------------------------------------------------------

    def stop(self, exit_code: int = 0) -> None:
        """Stop intake, finish what was taken, flush, return from :meth:`run`."""
        self.exit_code = exit_code
        self._stop.set()
        self.events.put(("wake", "", False))

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- main loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        self.inbox.mkdir(parents=True, exist_ok=True)
        with InboxLock(self.inbox):
            self.journal = Journal(job_folder.journal_path(self.out_dir))
            try:
                self._load_model()
                self._recover()
                workers = self.options.workers if self.options.workers is not None else max(1, os.cpu_count() or 1)
                pool = WorkerPool(workers, prepare_many) if workers > 0 else None
                observer = None
                try:
                    if not self.options.oneshot:
                        observer, description = start_observer(
                            self.inbox, self.events, self.options.polling, self.options.poll_interval
                        )
                        log.info("watching %s with %s", self.inbox, description)
                    self._scan()
                    self.notifier.send(READY=1, STATUS=self._status_text())
                    log.info("ready: model %s on %s, batch %d, latency %.2fs, settle %.2fs",
                             self.predictor.name, self.predictor.device, self.options.max_batch,
                             self.options.max_latency, self.options.settle)
                    self._loop(pool, workers)
                finally:
                    self.notifier.send(STOPPING=1)
                    if observer is not None:
                        observer.stop()
                        observer.join(timeout=10)
                    self._drain()
                    if pool is not None:
                        pool.close()
                    self._flush_reports(final=True)
            finally:
                self.journal.close()
                self.notifier.close()
        log.info("stopped: %s", self._status_text())
        return self.exit_code

    def _load_model(self) -> None:
        if self.predictor is None:
            from batchclf.model.predictor import Predictor

            # Compiled for the daemon's own batch size: a 64-file batch never pays for 256 padded images.
            self.predictor = Predictor(
                self.options.model, device=self.options.device, batch_size=self.options.batch_size or self.options.max_batch
            )
        self.predictor.warm_up()
        from batchclf.model import card as cards

        self.review_below = cards.review_below(self.predictor.card, self.options.review_below)

    def _loop(self, pool, workers: int) -> None:
        last_rescan = last_status = last_ping = self.clock()
        ping_every = self.notifier.watchdog_interval() or 1.0
        in_flight_limit = max(1, workers) * 8
        while not self.stopping:
            self._wait_for_events(self._timeout(in_flight_limit))
            if self.stopping:
                break
            now = self.clock()
            # Under load several batches are ready at once: predict them batch by batch but
            # commit them together, so the fsyncs of one commit are shared by more files.
            ready: list[Taken] = []
            while self.batcher.ready():
                ready.extend(self.batcher.take())
            # Refill the workers before the commit, so they decode while this thread predicts and moves.
            if self._room(in_flight_limit) > 0:
                self._take(self.tracker.due(limit=self._room(in_flight_limit)), pool)
            self._process(ready)
            if now - last_ping >= ping_every:
                self.notifier.send(WATCHDOG=1)
                last_ping = now
            if now - last_status >= self.options.status_interval:
                self.notifier.send(STATUS=self._status_text())
                log.info("counts: %s", self._status_text())
                last_status = now
            if not self.options.oneshot and now - last_rescan >= self.options.rescan_interval:
                self._scan()
                last_rescan = now
            if self.options.oneshot and not (len(self.tracker) or self._in_flight or len(self.batcher)):
                break

    def _room(self, in_flight_limit: int) -> int:
        return min(self._batcher_room(), (in_flight_limit - len(self._in_flight)) * CHUNK_FILES)

    def _timeout(self, in_flight_limit: int) -> float:
        """How long to wait for events: until the next file may settle or the next batch falls due.

        With no room to take files, a settled file is no reason to wake: the
        next "done" event from a worker is.
        """
        tracker_deadline = self.tracker.next_deadline() if self._room(in_flight_limit) > 0 else None
        deadlines = [d for d in (tracker_deadline, self.batcher.next_deadline()) if d is not None]
        if not deadlines:
            return 0.5
        return min(max(min(deadlines) - self.clock(), 0.0), 0.5)

    def _wait_for_events(self, timeout: float) -> None:
        """Handle every queued event; a file touched by several events is looked at once."""
        try:
            events = [self.events.get(timeout=timeout) if timeout > 0 else self.events.get_nowait()]
        except queue.Empty:
            return
        while True:
            try:
                events.append(self.events.get_nowait())
            except queue.Empty:
                break
        touched: dict[str, None] = {}
        for kind, raw, is_dir in events:
            if kind == "done":
                self._harvest(raw)
                continue
            if kind == "wake":
                continue
            relative = self._relative(raw)
            if relative is None:
                continue
            if kind == "gone":
                touched.pop(raw, None)
                self.tracker.forget(Path(raw))
            elif is_dir:
                self._scan(Path(raw))
            elif relative not in self._in_progress:
                touched[raw] = None
        for raw in touched:
            self.tracker.seen(Path(raw))

    def _relative(self, path) -> str | None:
        """The inbox-relative name of a candidate input, or None for clutter and our own files.

        String operations only: this runs for every watchdog event.
        """
        path = os.fspath(path)
        if not path.startswith(self._inbox_prefix):
            return None
        relative = path[len(self._inbox_prefix) :]
        parts = relative.split(os.sep)
        if not relative or parts[-1] == LOCK_NAME or any(is_ignored(part) for part in parts):
            return None
        if any(path == own or path.startswith(own + os.sep) for own in self._own_dirs):
            return None
        return "/".join(parts)

    def _scan(self, folder: Path | None = None) -> None:
        """Queue every file under ``folder`` (default: the inbox) that is new to the journal."""
        for dirpath, dirnames, filenames in os.walk(folder or self.inbox):
            dirnames[:] = sorted(d for d in dirnames if self._relative(os.path.join(dirpath, d)) is not None)
            found = []
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                relative = self._relative(path)
                if relative is None or relative in self._in_progress or path in self.tracker:
                    continue
                try:
                    info = os.stat(path)
                except OSError:
                    continue
                found.append(((relative, info.st_size, info.st_mtime_ns), path))
            known = self.journal.known_many([identity for identity, _ in found])
            for identity, path in found:
                if identity not in known:
                    self.tracker.seen(Path(path))

    # -- intake and preparation ---------------------------------------------------------------------

    def _take(self, stable: list[StableFile], pool) -> None:
        candidates = []
        for path, size, mtime_ns in stable:
            relative = self._relative(path)
            if relative is not None:
                candidates.append(((relative, size, mtime_ns), path))
        known = self.journal.known_many([identity for identity, _ in candidates])
        taken = []
        now = self.clock()
        for (relative, size, mtime_ns), path in candidates:
            if (relative, size, mtime_ns) in known:
                continue
            self._in_progress.add(relative)
            taken.append(Taken(relative, path, size, mtime_ns, now))
        for start in range(0, len(taken), CHUNK_FILES):
            chunk = taken[start : start + CHUNK_FILES]
            candidates = [Candidate(self.inbox, t.path) for t in chunk]
            if pool is None:
                self._prepared(chunk, prepare_many(candidates))
                continue
            _, future, generation = pool.submit(candidates)
            self._in_flight[future] = (chunk, candidates, generation, pool)
            future.add_done_callback(lambda f: self.events.put(("done", f, False)))

    def _harvest(self, future: Future) -> None:
        entry = self._in_flight.pop(future, None)
        if entry is None:
            return
        chunk, candidates, generation, pool = entry
        try:
            items = future.result()
        except BrokenProcessPool:  # a decoder killed its worker: retry file by file, fail only the culprit
            items = pool.after_crash(candidates, generation)
        except Exception as exc:
            items = [failed(t.relative, f"unexpected error: {exc}") for t in chunk]
        self._prepared(chunk, items)

    def _prepared(self, chunk: list[Taken], items: list[Prepared]) -> None:
        by_file: dict[str, list[Prepared]] = {}
        for item in items:
            by_file.setdefault(item.row["file"], []).append(item)
        for taken in chunk:
            taken.prepared = by_file.get(taken.relative) or [failed(taken.relative, "no result from the decoder")]
            self.batcher.add(taken, arrived=taken.taken_at)

    def _batcher_room(self) -> int:
        """Files that may still be taken: the batcher's capacity less what it holds and what is being prepared."""
        preparing = sum(len(entry[0]) for entry in self._in_flight.values())
        return self.batcher.capacity - len(self.batcher) - preparing

    def _drain(self) -> None:
        """On stop: wait for taken files to be prepared, then report them all."""
        for future in list(self._in_flight):
            try:
                future.result(timeout=60)
            except Exception:
                pass
            self._harvest(future)
        while len(self.batcher):
            self._process(self.batcher.take(force=True))

    # -- a batch: predict, decide, report, move ---------------------------------------------------------

    def _process(self, batch: list[Taken]) -> None:
        if not batch:
            return
        started = self.clock()
        day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        job = job_folder.day_folder_name(day)
        seen_in_batch: dict[str, str] = {}
        duplicates: dict[str, str] = {}
        digests = {}
        for taken in batch:
            sha = next((p.row["sha256"] for p in taken.prepared if p.row.get("sha256")), None)
            if sha is not None and not any(p.row["status"] == FAILED for p in taken.prepared):
                digests[taken.relative] = sha
        reported = self.journal.first_reports_of(list(digests.values()))
        for taken in batch:
            sha = digests.get(taken.relative)
            if sha is None:
                continue
            first = seen_in_batch.get(sha) or reported.get(sha)
            if first:
                duplicates[taken.relative] = first
            else:
                seen_in_batch[sha] = f"{job}/{taken.relative}#1"

        to_predict = [p for t in batch if t.relative not in duplicates for p in t.prepared if p.needs_model]
        probabilities = self.predictor.predict(mnist_to_input(np.stack([p.image for p in to_predict]))) if to_predict else ()
        labelled = iter(labelled_rows([p.row for p in to_predict], probabilities, self.review_below, self.predictor.name))

        rows, records = [], []
        for taken in batch:
            file_rows = []
            for item in taken.prepared:
                if taken.relative in duplicates:
                    row = {**item.row, "status": DUPLICATE, "duplicate_of": duplicates[taken.relative],
                           "model": self.predictor.name, "processed_at": now_iso()}
                elif item.needs_model:
                    row = next(labelled)
                else:
                    row = unlabelled(item.row, self.predictor.name)
                file_rows.append(row)
            rows.extend((day, row) for row in file_rows)
            # Every taken file has at least one row (_prepared guarantees it).
            lead = file_rows[0]
            broken = any(r["status"] == FAILED for r in file_rows)
            target = None if self.options.keep else str((self.failed_dir if broken else self.processed_dir) / day / taken.relative)
            records.append(
                FileRecord(
                    path=taken.relative, size=taken.size, mtime_ns=taken.mtime_ns,
                    sha256=lead.get("sha256"), status=lead["status"], day=day,
                    first_row=None if taken.relative in duplicates else f"{job}/{taken.relative}#1",
                    move_to=target, reason=lead.get("error") if broken else None,
                )
            )
            for row in file_rows:
                self.totals[row["status"]] = self.totals.get(row["status"], 0) + 1

        self.journal.decide(rows, records)
        self._flush_reports()
        self._move_decided()
        for taken in batch:
            self._in_progress.discard(taken.relative)
        log.info("batch: %d files, %d rows in %.0f ms", len(batch), len(rows), (self.clock() - started) * 1000)

    def _flush_reports(self, final: bool = False) -> None:
        """Bring each day's report files up to the journal: cut torn tails, append, fsync, acknowledge."""
        for day, csv_bytes, jsonl_bytes, pending in self.journal.pending_sinks():
            if not pending:
                continue
            folder = job_folder.day_folder(self.out_dir, day)
            csv_path, jsonl_path = folder / job_folder.RESULTS_CSV, folder / job_folder.RESULTS_JSONL
            for path, committed in ((csv_path, csv_bytes), (jsonl_path, jsonl_bytes)):
                if path.exists() and path.stat().st_size != committed:
                    os.truncate(path, committed)
            writer = reports.RowWriter(csv_path, jsonl_path)
            try:
                writer.write([row for _, row in pending], durable=True)
            finally:
                writer.close()
            fsync_dir(folder)
            self.journal.acknowledge(day, csv_path.stat().st_size, jsonl_path.stat().st_size, pending[-1][0])
            self._summaries_due.add(day)
        if self._summaries_due and (final or self.clock() - self._last_summary >= SUMMARY_EVERY):
            for day in sorted(self._summaries_due):
                self._write_summary(day, job_folder.day_folder(self.out_dir, day))
            self._summaries_due.clear()
            self._last_summary = self.clock()

    def _write_summary(self, day: str, folder: Path) -> None:
        meta = {
            "job_id": folder.name,
            "kind": job_folder.JobKind.WATCH.value,
            "inbox": str(self.inbox),
            "day": day,
            "daemon_started": self.started,
            "updated": now_iso(),
            "model": self.predictor.describe(),
            "device": self.predictor.device,
            "max_batch": self.options.max_batch,
            "max_latency": self.options.max_latency,
            "settle": self.options.settle,
            "review_below": self.review_below,
            **self.journal.tally(day),
        }
        reports.write_summary(folder / job_folder.SUMMARY_JSON, meta)

    def _move_decided(self) -> None:
        moved, failed = [], 0
        failed_prefix = os.fspath(self.failed_dir) + os.sep
        for file_id, relative, target in self.journal.unmoved():
            source = os.path.join(self._inbox_prefix, relative)
            final = unique_path(target)
            parent = os.path.dirname(final)
            if parent not in self._made_dirs:
                os.makedirs(parent, exist_ok=True)
                self._made_dirs.add(parent)
            try:
                os.rename(source, final)
            except FileNotFoundError:
                final = None  # moved before a crash, or removed by the user
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                shutil.move(source, final)  # processed/ on another filesystem
            else:
                if final.startswith(failed_prefix):
                    self._write_reason(Path(final), relative)
                    failed += 1
                log.debug("moved %s -> %s", relative, final)
            moved.append((file_id, final))
        if moved:
            self.journal.mark_moved(moved)
            log.info("moved %d files (%d of them to %s)", len(moved), failed, self.failed_dir)

    def _write_reason(self, moved_to: Path, relative: str) -> None:
        row = self.journal.db.execute(
            "SELECT reason, sha256, day FROM files WHERE path = ? ORDER BY id DESC LIMIT 1", (relative,)
        ).fetchone()
        reason, sha256, day = row if row else (None, None, None)
        write_text_atomic(
            moved_to.with_name(moved_to.name + ".reason.json"),
            json.dumps({"file": relative, "error": reason, "sha256": sha256, "day": day, "moved_to": str(moved_to)}, indent=2) + "\n",
        )

    def _recover(self) -> None:
        """Finish what a crash interrupted: report rows decided but not on disk, move files decided but not moved."""
        self._flush_reports(final=True)
        self._move_decided()

    def _status_text(self) -> str:
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.totals.items())) or "nothing yet"
        return f"{counts}; queued={len(self.tracker)} in_flight={len(self._in_flight)} batching={len(self.batcher)}"


def unique_path(path: str) -> str:
    """``path``, or ``name-1.ext``, ``name-2.ext``... if taken: a move never overwrites.

    Strings, not Paths: this runs once per file moved.
    """
    if not os.path.lexists(path):
        return path
    stem, suffix = os.path.splitext(path)
    for n in range(1, 100000):
        candidate = f"{stem}-{n}{suffix}"
        if not os.path.lexists(candidate):
            return candidate
    raise FileExistsError(f"no free name for {path}")
