"""The daemon's Prometheus metrics (``--metrics-file``): what an alert rule needs, in one registry.

Counters start at 0 with each daemon process (Prometheus takes a reset in
its stride; ``batchclf_start_time_seconds`` dates it).  The daemon's loop
calls :meth:`DaemonMetrics.batch` as batches go to the model,
:meth:`DaemonMetrics.committed` once rows are on disk, and
:meth:`DaemonMetrics.write` with the current gauges: the file is written at
most every few seconds, and once more at exit.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from batchclf.jobs.rows import BLANK, DUPLICATE, FAILED, OK, REVIEW
from batchclf.metrics.drift import DriftMonitor
from batchclf.metrics.textfile import PREFIX, TextfileWriter, last_success_gauge, model_metrics

STATUSES = (OK, REVIEW, BLANK, FAILED, DUPLICATE)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# Settle (1 s) plus half the batching window plus the work is ~1.3 s; the upper buckets catch backlogs.
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class DaemonMetrics:
    def __init__(self, path: Path, every: float, clock=time.monotonic):
        r = self.registry = CollectorRegistry()
        self.rows = Counter(f"{PREFIX}_rows", "Rows reported by this daemon process, by status.", ["status"], registry=r)
        self.labels = Counter(f"{PREFIX}_labels", "Rows reported with a label, by label.", ["label"], registry=r)
        # Children looked up once (``labels()`` takes a lock each time); all present from 0, so rate() works at once.
        self._by_status = {status: self.rows.labels(status=status) for status in STATUSES}
        self._by_label = {str(label): self.labels.labels(label=str(label)) for label in range(10)}
        self.batches = Counter(f"{PREFIX}_batches", "Batches sent to the model.", registry=r)
        self.batch_files = Histogram(f"{PREFIX}_batch_files", "Files per batch sent to the model.",
                                     buckets=BATCH_BUCKETS, registry=r)
        self.latency = Histogram(f"{PREFIX}_latency_seconds",
                                 "From a file seen complete in the inbox (or the daemon's start) to its row on disk.",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.waiting = Gauge(f"{PREFIX}_inbox_files_waiting", "Files in the inbox seen but not yet reported.", registry=r)
        self.moves_pending = Gauge(f"{PREFIX}_moves_pending_retry",
                                   "Reported files whose move out of the inbox failed and is being retried.", registry=r)
        self.recent_rows = Gauge(f"{PREFIX}_recent_rows", "Labelled rows in the recent window (at most the drift window).",
                                 registry=r)
        # Registered at their first value: a share or a mean of no rows is no 0 (an alert would fire on it).
        self._later = {
            "recent_review": (f"{PREFIX}_recent_review_share", "Share of the recent labelled rows marked review."),
            "recent_confidence": (f"{PREFIX}_recent_mean_confidence", "Mean confidence of the recent labelled rows."),
            "baseline_review": (f"{PREFIX}_drift_baseline_review_share",
                                "The review share the recent window is compared with (the card's, or the first rows')."),
        }
        self._gauges: dict[str, Gauge] = {}
        self.drift = Gauge(f"{PREFIX}_drift", "1 while the recent rows drift from the baseline (see the log), else 0.",
                           registry=r)
        self.retention_folders = Counter(f"{PREFIX}_retention_removed_folders",
                                         "Day folders removed by retention, by kind.", ["kind"], registry=r)
        self.retention_files = Counter(f"{PREFIX}_retention_removed_files", "Files removed by retention, by kind.",
                                       ["kind"], registry=r)
        for kind in ("processed", "failed"):
            self.retention_folders.labels(kind=kind)
            self.retention_files.labels(kind=kind)
        self.running = Gauge(f"{PREFIX}_running", "1 while the daemon runs; 0 written at exit.", registry=r)
        self.started = Gauge(f"{PREFIX}_start_time_seconds", "Unix time this daemon process started.", registry=r)
        self.last_success = last_success_gauge(r)
        self.started.set(time.time())
        self.running.set(1)
        self.writer = TextfileWriter(path, r, every, clock)

    def model(self, described: dict) -> None:
        model_metrics(self.registry, described)

    def batch(self, files: int) -> None:
        self.batches.inc()
        self.batch_files.observe(files)

    def committed(self, rows: list[dict], latencies: list[float], when: float | None = None) -> None:
        """Rows now on disk, and each file's latency."""
        # Counted per batch first: a labelled child costs a lookup and a lock, a dict increment does not.
        statuses = collections.Counter(row["status"] for row in rows)
        labels = collections.Counter(str(row["label"]) for row in rows if row.get("label") not in (None, ""))
        for status, count in statuses.items():
            (self._by_status.get(status) or self.rows.labels(status=status)).inc(count)
        for label, count in labels.items():
            (self._by_label.get(label) or self.labels.labels(label=label)).inc(count)
        for seconds in latencies:
            self.latency.observe(max(0.0, seconds))
        self.last_success.set(time.time() if when is None else when)

    def removed(self, kind: str, files: int) -> None:
        self.retention_folders.labels(kind=kind).inc()
        self.retention_files.labels(kind=kind).inc(files)

    def write(self, waiting: int, moves_pending: int, drift: DriftMonitor, force: bool = False) -> bool:
        if not force and not self.writer.due():
            return False
        self.waiting.set(waiting)
        self.moves_pending.set(moves_pending)
        self.recent_rows.set(drift.rows)
        if drift.review_share is not None:
            self._set("recent_review", drift.review_share)
            self._set("recent_confidence", drift.mean_confidence)
        self.drift.set(1 if drift.drifting else 0)
        if drift.baseline is not None:
            self._set("baseline_review", drift.baseline.review_share)
        return self.writer.write(force=True)

    def _set(self, key: str, value: float) -> None:
        if key not in self._gauges:
            name, text = self._later[key]
            self._gauges[key] = Gauge(name, text, registry=self.registry)
        self._gauges[key].set(value)

    def stopped(self) -> None:
        self.running.set(0)
