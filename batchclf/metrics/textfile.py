"""Prometheus text files for node_exporter's textfile collector, written with ``prometheus_client``.

Each writer owns its own :class:`~prometheus_client.CollectorRegistry` (never
the global one, which would also export this process's Python internals) and
writes it with :func:`~prometheus_client.write_to_textfile`: a temp file
``PATH.<pid>.<thread>`` beside the target, then a rename, so the collector
never reads half a file (it reads only ``*.prom`` names, so it never sees
the temp file either).

A metrics file that cannot be written never stops the work it describes:
the failure is logged once, and the next write tries again.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, Info, write_to_textfile

log = logging.getLogger("batchclf.metrics")

PREFIX = "batchclf"


def model_metrics(registry: CollectorRegistry, model: dict) -> None:
    """The model as an info metric (file, sha256, architecture, card accuracy) and its card accuracy as a number.

    ``model`` is the job metadata's ``model`` (``Predictor.describe()``).
    """
    accuracy = model.get("card_accuracy")
    Info(f"{PREFIX}_model", "The model in use: file, sha256, architecture and the card's MNIST test accuracy.",
         registry=registry).info({
             "file": str(model.get("file") or ""),
             "sha256": str(model.get("sha256") or ""),
             "architecture": str(model.get("architecture") or ""),
             "card_accuracy": "" if accuracy is None else f"{float(accuracy):.6g}",
         })
    if accuracy is not None:
        Gauge(f"{PREFIX}_model_card_accuracy", "The model card's MNIST test accuracy (0-1).",
              registry=registry).set(float(accuracy))


def last_success_gauge(registry: CollectorRegistry) -> Gauge:
    return Gauge(f"{PREFIX}_last_success_timestamp_seconds",
                 "Unix time of the last committed batch (daemon) or of the last run that finished (nightly, classify).",
                 registry=registry)


class TextfileWriter:
    """Writes one registry to ``path``, at most every ``every`` seconds (always when forced)."""

    def __init__(self, path: Path, registry: CollectorRegistry, every: float, clock=time.monotonic):
        self.path, self.registry, self.every, self.clock = Path(path), registry, every, clock
        self._last = float("-inf")
        self._failing = False
        if self.path.suffix != ".prom":
            log.warning("metrics file %s: node_exporter's textfile collector reads only *.prom files", self.path)

    def due(self) -> bool:
        return self.clock() - self._last >= self.every

    def write(self, force: bool = False) -> bool:
        """Write now if due (or forced); False when not written (not due, or it failed)."""
        if not force and not self.due():
            return False
        self._last = self.clock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(os.fspath(self.path), self.registry)
        except OSError as exc:
            if not self._failing:
                log.warning("cannot write the metrics file %s: %s (retried every %gs)", self.path,
                            exc.strerror or exc, self.every)
                self._failing = True
            return False
        if self._failing:
            log.info("metrics file %s written again", self.path)
            self._failing = False
        return True


def write_job_metrics(path: Path, summary: dict, now: float | None = None) -> bool:
    """The metrics of one finished ``classify`` job (its ``summary.json`` metadata), for a cron or timer run.

    Gauges of the last job (a batch job has no counters that outlive it), and
    ``batchclf_last_success_timestamp_seconds`` = now, so one alert rule
    ("nothing for 2 hours / 26 hours") serves the daemon and the nightly run.
    Returns False when the file could not be written (logged; the job stands).
    """
    registry = CollectorRegistry()
    rows = Gauge(f"{PREFIX}_last_job_rows", "Rows of the last classify job, by status.", ["status"], registry=registry)
    for status, count in (summary.get("counts") or {}).items():
        rows.labels(status=str(status)).set(count)
    labels = Gauge(f"{PREFIX}_last_job_labels", "Rows of the last classify job, by label.", ["label"], registry=registry)
    for label, count in (summary.get("labels") or {}).items():
        labels.labels(label=str(label)).set(count)
    simple = {
        "files": ("Files of the last classify job.", summary.get("files")),
        "duration_seconds": ("How long the last classify job ran.", summary.get("seconds")),
        "files_per_second": ("Files per second of the last classify job.", summary.get("files_per_second")),
    }
    for name, (text, value) in simple.items():
        if value is not None:
            Gauge(f"{PREFIX}_last_job_{name}", text, registry=registry).set(float(value))
    total = sum((summary.get("counts") or {}).values())
    if total:
        Gauge(f"{PREFIX}_last_job_review_share", "Share of the last classify job's rows marked review.",
              registry=registry).set((summary.get("counts") or {}).get("review", 0) / total)
    if summary.get("model"):
        model_metrics(registry, summary["model"])
    last_success_gauge(registry).set(time.time() if now is None else now)
    return TextfileWriter(path, registry, every=0.0).write(force=True)
