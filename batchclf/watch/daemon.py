"""The inbox daemon's loop: intake -> prepare (workers) -> dynamic batches -> decide -> reports -> moves.

Each stage has its own module (``intake``, ``dispatch``, ``decide``,
``sinks``, ``moves``); this one runs the loop that joins them.  It is
single-threaded by design: one loop owns the tracker, batcher, journal and
report files, and only waits on one queue (watchdog events, finished
preparation work, and a wake-up on stop), so there are no locks to get
wrong.  ``stop()`` may be called from a signal handler or another thread.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from batchclf import paths
from batchclf.scan.pool import CHUNK_FILES, WorkerPool, default_workers
from batchclf.errors import InboxLockedError, WatchFolderError
from batchclf.jobs import folder as job_folder
from batchclf.jobs.journal import moved_folders
from batchclf.jobs.rows import now_iso
from batchclf.metrics import drift as drift_state
from batchclf.metrics.drift import DriftMonitor
from batchclf.model.spec import ModelSpec
from batchclf.scan.decode import Limits
from batchclf.scan.prepare import prepare_many
from batchclf.watch.batcher import DynamicBatcher
from batchclf.watch.decide import decide
from batchclf.watch.dispatch import Dispatcher
from batchclf.watch.intake import Intake, Taken
from batchclf.watch.journal import Journal
from batchclf.watch.lock import InboxLock
from batchclf.watch.moves import RETRY_EVERY, Mover
from batchclf.watch.notify import Notifier
from batchclf.watch.operations import Operations, daemon_folders, retention_policy
from batchclf.watch.retention import InboxPruner, Retention
from batchclf.watch.observer import BACK, GONE, InboxWatch, filesystem_type, is_network_filesystem
from batchclf.watch.settings import WatchOptions  # declared with the CLI, env and config names
from batchclf.watch.sinks import ReportSinks
from batchclf.watch.stability import StabilityTracker

log = logging.getLogger("batchclf.watch")

INBOX_CHECK_EVERY = 1.0  # seconds between looks at whether the inbox folder is still the one watched
BUSY_CHECK_EVERY = 1.0  # seconds between looks for files a writer keeps changing
DRIFT_STATE_EVERY = 30.0  # seconds between rewrites of the drift state while rows come (and at once on a change)
PRUNE_EVERY = 5.0  # seconds between looks at emptied inbox folders
PRUNE_LOOKBACK_DAYS = 7  # at start, inbox folders emptied by the runs of this many days are looked at again


class Daemon:
    def __init__(self, options: WatchOptions, predictor=None, clock=time.monotonic, notifier: Notifier | None = None,
                 operations: Operations | None = None):
        self.options = options
        self.ops = operations if operations is not None else Operations.from_options(options)
        self.inbox, self.out_dir, self.processed_dir, self.failed_dir = daemon_folders(options)
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
        self.dispatcher: Dispatcher | None = None
        self.lock: InboxLock | None = None
        self.watch: InboxWatch | None = None  # None with --oneshot: nothing to watch
        self._stop = threading.Event()
        self.totals: dict[str, int] = {}
        self.started = now_iso()
        self.started_clock = clock()  # a file found at start waited for us, not in us: its latency starts here
        self.exit_code = 0
        self.metrics = None  # DaemonMetrics with --metrics-file (prometheus_client is imported only then)
        self.drift = DriftMonitor(self.ops.drift)
        self.drift_since: str | None = None
        self.pruner = InboxPruner(self.inbox, self.ops.inbox_folder_grace, clock)
        # Folders earlier runs emptied are looked at in the retention thread (at start and daily), never before the first row.
        self.retention = Retention(retention_policy(options, self.ops), on_removed=self._removed_by_retention,
                                   sweep=self._prune_emptied_before if self.ops.prune_inbox_folders else None)

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
        self._check_inbox()
        self.journal = self._open_journal()  # first: it makes --out, where the inbox lock lives
        try:
            with InboxLock(self.inbox, self.out_dir) as self.lock:
                self.journal.claim(os.fspath(self.inbox))
                self._serve()
        finally:
            self.journal.close()
            self.notifier.close()
        log.info("stopped: %s", self._status_text())
        return self.exit_code

    def _serve(self) -> None:
        own_dirs = (self.processed_dir, self.failed_dir, self.out_dir)
        self.intake = Intake(self.inbox, own_dirs, self.tracker, self.journal, self.clock)
        self.sinks = ReportSinks(self.journal, self.out_dir, self._summary_meta, self.clock)
        self.mover = Mover(self.journal, self.inbox, self.processed_dir, self.failed_dir)
        self._load_model()
        self._recover()
        workers = self.options.workers if self.options.workers is not None else default_workers()
        # classify's prepare, with the same per-file caps (--max-pages, --max-file-mb).
        prepare = functools.partial(prepare_many, limits=Limits.from_options(self.options.max_pages, self.options.max_file_mb))
        pool = WorkerPool(workers, prepare) if workers > 0 else None
        self.dispatcher = Dispatcher(self.inbox, pool, self.events, self._batch_up, prepare)
        try:
            self._start_operations()
            if not self.options.oneshot:
                self.watch = InboxWatch(self.inbox, self.events, self.options.polling, self.options.poll_interval)
                log.info("watching %s with %s", self.inbox, self.watch.start())
            self._log_destinations()
            self.intake.scan()
            self.notifier.send(READY=1, STATUS=self._status_text())
            log.info("ready: model %s on %s, batch %d, latency %.2fs, settle %.2fs",
                     self.predictor.name, self.predictor.device, self.options.max_batch,
                     self.options.max_latency, self.options.settle)
            self._loop(workers)
        finally:
            self.notifier.send(STOPPING=1)
            if self.watch is not None:
                self.watch.stop()
            self._drain()
            if pool is not None:
                pool.close()
            self.sinks.flush(final=True)
            self._finish_operations()

    def _check_inbox(self) -> None:
        """A missing inbox is a mistyped path unless ``create`` says otherwise; never quietly made."""
        if self.inbox.is_dir():
            return
        if self.inbox.exists():
            raise WatchFolderError(f"inbox {self.inbox} is not a folder")
        if not self.options.create:
            raise WatchFolderError(f"inbox {self.inbox} does not exist (check the path, or pass --create to make it)")
        self.inbox.mkdir(parents=True)

    def _open_journal(self) -> Journal:
        path = job_folder.journal_path(self.out_dir)
        try:
            return Journal(path)
        except (OSError, sqlite3.DatabaseError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise WatchFolderError(f"cannot open the journal {path}: {reason} (is --out {self.out_dir} a writable folder?)") from None

    def model_spec(self) -> ModelSpec:
        """The daemon's model, as classify declares its own (the detector resolved against --home)."""
        return ModelSpec(
            # Compiled for the daemon's own batch size: a 32-file batch never pays for 256 padded images.
            model=self.options.model, device=self.options.device, batch_size=self.options.batch_size or self.options.max_batch,
            input_scale=self.options.input_scale, detector=paths.detector(self.options.detector, self.options.home),
            review_below=self.options.review_below, target_error=self.options.target_error,
        )

    def _load_model(self) -> None:
        if self.predictor is None:
            self.predictor = self.model_spec().predictor()
        self.predictor.warm_up()
        self.review_below = self.predictor.review_below

    def _log_destinations(self) -> None:
        if self.options.keep:
            log.info("reports in %s; inputs stay in the inbox (--keep)", self.out_dir)
        else:
            log.info("reports in %s; reported files go to %s, broken ones to %s", self.out_dir, self.processed_dir, self.failed_dir)

    def _loop(self, workers: int) -> None:
        last_rescan = last_status = last_ping = last_move_retry = last_inbox_check = last_busy_check = self.clock()
        last_drift_state = last_prune = last_rescan
        drift_seen = self.drift.seen  # rows taken, not the window's length: a full window's length no longer changes
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
                ready.extend(self._take_batch())
            # Refill the workers before the commit, so they decode while this thread predicts and moves.
            room = self._room(in_flight_limit)
            if room > 0:
                self.dispatcher.submit(self.intake.take(self.tracker.due(limit=room)))
            self._process(ready)
            self.sinks.write_summaries()  # a burst's last rows reach summary.json within seconds, not at the next batch
            if self.mover.failing and now - last_move_retry >= RETRY_EVERY:
                self.mover.move_decided()
                last_move_retry = now
            if now - last_ping >= ping_every:
                self.notifier.send(WATCHDOG=1)
                last_ping = now
            if now - last_status >= self.options.status_interval:
                self.notifier.send(STATUS=self._status_text())
                log.info("counts: %s", self._status_text())
                last_status = now
            if now - last_busy_check >= BUSY_CHECK_EVERY:
                self._log_busy()
                last_busy_check = now
            if self.watch is not None and now - last_inbox_check >= INBOX_CHECK_EVERY:
                self._check_watch()
                last_inbox_check = now
            if self.watch is not None and self.watch.watching and now - last_rescan >= self.options.rescan_interval:
                self.intake.scan()
                last_rescan = now
            self._write_metrics()
            if now - last_drift_state >= DRIFT_STATE_EVERY and self.drift.seen != drift_seen:
                self._write_drift_state()
                last_drift_state, drift_seen = now, self.drift.seen
            if self.ops.prune_inbox_folders and now - last_prune >= PRUNE_EVERY:
                self.pruner.emptied(self.mover.take_emptied())
                self.pruner.prune()
                last_prune = now
            if self.retention.due():
                self._start_retention()
            if self.options.oneshot and not (len(self.tracker) or self.dispatcher.chunks_in_flight or len(self.batcher)):
                break

    def _log_busy(self) -> None:
        """Say once which files a writer has kept changing for longer than a hold, so a silent inbox is explained."""
        for path, seconds in self.tracker.newly_busy(self.intake.arrivals.hold):
            log.info("waiting for %s: still being written (changing for %.0fs); taken once it is still for %gs",
                     self.intake.relative(path) or path, seconds, self.options.settle)

    def _check_watch(self) -> None:
        """An inbox deleted or replaced under the daemon: say so, wait for it, then watch and scan the new folder."""
        change = self.watch.check()
        if change == GONE:
            log.warning("inbox %s is gone: waiting for it to come back", self.inbox)
        elif change == BACK:
            log.warning("inbox %s is back (a new folder): watching it with %s, and scanning it", self.inbox,
                        self.watch.description)
            try:
                self.lock.retake_in_inbox()
            except InboxLockedError as exc:
                # Another daemon (its own --out) took the new folder first: two would move each other's files.
                log.error("%s; stopping", exc)
                self.stop(1)
                return
            self.intake.scan()

    def _room(self, in_flight_limit: int) -> int:
        """Files that may still be taken: the batcher's free capacity, and the chunks the workers may still hold."""
        batcher_room = self.batcher.capacity - len(self.batcher) - self.dispatcher.files_in_flight
        return min(batcher_room, (in_flight_limit - self.dispatcher.chunks_in_flight) * CHUNK_FILES)

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
                self.dispatcher.harvest(raw)
                continue
            if kind == "wake":
                continue
            relative = self.intake.relative(raw)
            if relative is None:
                continue
            if kind == "gone":
                touched.pop(raw, None)
                self.intake.forget(raw)
            elif is_dir:
                self.intake.scan(Path(raw))
            elif relative not in self.intake.in_progress:
                touched[raw] = None
        for raw in touched:
            self.tracker.seen(Path(raw))

    def _batch_up(self, chunk: list[Taken]) -> None:
        for taken in chunk:
            if not self.intake.hold_if_arriving(taken):  # a file still being written waits; the rest go on
                self.batcher.add(taken, arrived=taken.taken_at)

    def _drain(self) -> None:
        """On stop: wait for taken files to be prepared, then report them all."""
        if self.dispatcher is not None:
            self.dispatcher.drain()
        while len(self.batcher):
            self._process(self._take_batch(force=True))

    def _take_batch(self, force: bool = False) -> list[Taken]:
        batch = self.batcher.take(force=force)
        if self.metrics is not None and batch:
            self.metrics.batch(len(batch))
        return batch

    # -- a batch: decide, report, move ------------------------------------------------------------

    def _process(self, batch: list[Taken]) -> None:
        batch = self._without_unchanged(batch)
        if not batch:
            return
        started = self.clock()
        day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        rows, records = decide(batch, self.journal, self.predictor, self.review_below, day, self.options.keep)
        for _, row in rows:
            self.totals[row["status"]] = self.totals.get(row["status"], 0) + 1
        self.journal.decide(rows, records, self.sinks.bases({day}))
        self.sinks.flush()
        self._committed(batch, [row for _, row in rows])
        self.mover.move_decided()
        self.intake.done(batch)
        log.info("batch: %d files, %d rows in %.0f ms", len(batch), len(rows), (self.clock() - started) * 1000)

    def _without_unchanged(self, batch: list[Taken]) -> list[Taken]:
        """Drop files found again with the bytes already reported under their name, size and mtime.

        Only their ctime moved (the same bytes written again, a ``touch``,
        a ``chmod``): not reported or moved again.  Their new ctime is
        recorded, so the next look does not read them.
        """
        new, unchanged = self.intake.partition_unchanged(batch)
        if unchanged:
            self.journal.refresh_ctimes([(taken.previous.id, taken.ctime_ns) for taken in unchanged])
            self.intake.done(unchanged)
            for taken in unchanged:
                log.debug("%s: the same bytes as already reported; not reported again", taken.relative)
        return new

    def _summary_meta(self, day: str, folder: Path) -> dict:
        return {
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
            "review": self.predictor.review,
            **self.journal.tally(day),
        }

    def _recover(self) -> None:
        """Finish what a crash interrupted: report rows decided but not on disk, move files decided but not moved."""
        self.sinks.flush(final=True)
        self.mover.move_decided()

    def _status_text(self) -> str:
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.totals.items())) or "nothing yet"
        in_flight = self.dispatcher.chunks_in_flight if self.dispatcher else 0
        text = f"{counts}; queued={len(self.tracker)} in_flight={in_flight} batching={len(self.batcher)}"
        drift = self.drift.status_text()
        return f"{drift}; {text}" if drift else text

    # -- operations: metrics, drift, retention ---------------------------------------------------

    def _start_operations(self) -> None:
        """After recovery, before the first batch: the metrics file, the drift baseline and window, retention."""
        described = self.predictor.describe()
        if self.ops.metrics_file is not None:
            from batchclf.watch.metrics import DaemonMetrics  # prometheus_client only when metrics are asked for

            self.metrics = DaemonMetrics(self.ops.metrics_file, self.ops.metrics_every, self.clock)
            self.metrics.model(described)
            last = self.journal.last_processed_at()
            if last:
                self.metrics.last_success.set(datetime.fromisoformat(last).timestamp())
            self._write_metrics(force=True)
            log.info("metrics in %s, written every %gs at most", self.ops.metrics_file, self.ops.metrics_every)
        if self.ops.drift.enabled:
            previous = drift_state.load_raw_state(self.out_dir)
            self.drift.baseline = drift_state.card_baseline(self.predictor.card) or drift_state.learned_baseline(
                previous, described.get("sha256"))
            change = self.drift.seed(self.journal.recent_labelled(self.ops.drift.window, self.predictor.name))
            since = drift_state.continued_since(previous, described.get("sha256"))
            if change is not None and change.drifting and since:
                # The drift a previous run (the last nightly run, or before a restart) warned about: not a new warning.
                self.drift_since = since
                log.info("drift continues (since %s): %s", since, change.message.removeprefix("drift: "))
            else:
                self._drift_changed(change)
            self._write_drift_state()
        if self.retention.due():
            self._start_retention()

    def _start_retention(self) -> None:
        policy = self.retention.policy
        if not policy.active:  # only the sweep of emptied inbox folders
            self.retention.start()
            return
        log.info("retention: removing day folders older than %s in %s, %s in %s",
                 _days(policy.keep_processed), policy.processed_dir, _days(policy.keep_failed), policy.failed_dir)
        self.retention.start(skip_days=self.journal.days_with_pending_moves())

    def _prune_emptied_before(self, should_stop) -> None:
        """In the retention thread: inbox folders earlier runs emptied (the nightly run's, or before a restart).

        Each still waits for its grace (the 60 s quiet rule); the journal is
        read on a connection of this thread's own.
        """
        since = (datetime.now(timezone.utc) - timedelta(days=PRUNE_LOOKBACK_DAYS)).strftime("%Y-%m-%d")
        folders = moved_folders(job_folder.journal_path(self.out_dir), since)
        self.pruner.emptied((os.path.join(self.inbox, folder) for folder in folders), due_now=True)
        self.pruner.prune(should_stop)

    def _removed_by_retention(self, folder, files: int, size: int) -> None:
        if self.metrics is not None:  # called from the retention thread: prometheus_client's metrics are thread-safe
            self.metrics.removed(folder.kind, files)

    def _committed(self, batch: list[Taken], rows: list[dict]) -> None:
        """A batch's rows are on disk: metrics and the drift window."""
        if self.metrics is not None:
            now = self.clock()
            self.metrics.committed(rows, [now - max(t.arrived if t.arrived is not None else t.taken_at, self.started_clock)
                                          for t in batch])
        self._drift_changed(self.drift.observe(rows))

    def _drift_changed(self, change) -> None:
        """One log line when drift starts and one when it clears; STATUS= and the state file at once."""
        if change is None:
            return
        if change.drifting:
            self.drift_since = now_iso()
            log.warning("%s", change.message)
        else:
            self.drift_since = None
            log.info("%s", change.message)
        self.notifier.send(STATUS=self._status_text())
        self._write_drift_state()

    def _write_drift_state(self) -> None:
        if not self.ops.drift.enabled:
            return
        try:
            drift_state.write_state(self.out_dir, self.drift.state(self.predictor.describe(), self.drift_since))
        except OSError as exc:
            log.warning("cannot write the drift state in %s: %s", self.out_dir, exc.strerror or exc)

    def _write_metrics(self, force: bool = False) -> None:
        if self.metrics is not None:
            waiting = len(self.tracker) + len(self.intake.in_progress)
            self.metrics.write(waiting, self.mover.failing, self.drift, force=force)

    def _finish_operations(self) -> None:
        self.retention.finish(abort=self.stopping)  # a nightly run finishes its removal; a stop request does not wait
        if self.ops.prune_inbox_folders:
            self.pruner.emptied(self.mover.take_emptied())
            self.pruner.prune()
        self._write_drift_state()
        if self.metrics is not None:
            if self.options.oneshot and self.exit_code == 0:
                self.metrics.last_success.set(time.time())  # the nightly run finished: a success, even with no files
            self.metrics.stopped()
            self._write_metrics(force=True)


def _days(days: int | None) -> str:
    return "never" if days is None else f"{days} days"
