"""Prometheus metrics (issue 20): the daemon's text file, parsed with prometheus_client's own parser, against the journal."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from pathlib import Path

import pytest
from PIL import Image

from batchclf.metrics.textfile import TextfileWriter, write_job_metrics
from batchclf.watch.operations import Operations

from .helpers import digit_bytes, drop, png_bytes, samples


def by_label(values: dict, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for (n, labels), value in values.items() if n == name}


def run_oneshot(inbox: Path, jobs: Path, model: Path, operations: Operations, **options) -> int:
    from batchclf.watch.daemon import Daemon, WatchOptions

    return Daemon(WatchOptions(inbox=inbox, out_dir=jobs, model=model, oneshot=True, settle=0, workers=0, **options),
                  operations=operations).run()


def journal_counts(jobs: Path) -> tuple[dict[str, int], dict[str, int], int]:
    db = sqlite3.connect(jobs / "watch-journal.sqlite")
    try:
        status = dict(db.execute("SELECT status, COUNT(*) FROM rows GROUP BY status"))
        labels = {str(k): v for k, v in db.execute("SELECT label, COUNT(*) FROM rows WHERE label IS NOT NULL GROUP BY label")}
        files = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    finally:
        db.close()
    return status, labels, files


def test_the_daemons_metrics_file_matches_the_journal(tmp_path, tiny_model):
    inbox, jobs, metrics = tmp_path / "inbox", tmp_path / "jobs", tmp_path / "metrics" / "batchclf.prom"
    inbox.mkdir()
    for i in range(9):
        drop(inbox, f"d{i}.png", digit_bytes(i))
    drop(inbox, "again.png", digit_bytes(0))  # a duplicate
    drop(inbox, "broken.png", b"\x89PNG\r\n\x1a\n not really")  # failed
    drop(inbox, "blank.png", png_bytes(Image.new("L", (60, 60), 250)))
    started = time.time()
    assert run_oneshot(inbox, jobs, tiny_model, Operations(metrics_file=metrics), max_batch=4) == 0
    finished = time.time()

    values = samples(metrics)
    status, labels, files = journal_counts(jobs)
    assert set(status) >= {"duplicate", "failed", "blank"} and set(status) & {"ok", "review"}  # every kind of row
    rows = by_label(values, "batchclf_rows_total", "status")
    assert {k: v for k, v in rows.items() if v} == status
    assert rows.keys() >= {"ok", "review", "blank", "failed", "duplicate"}  # zeros present: rate() works from the start
    assert {k: v for k, v in by_label(values, "batchclf_labels_total", "label").items() if v} == labels
    # Every file went to the model in some batch of at most 4, and each got one latency observation.
    assert values[("batchclf_batch_files_sum", ())] == files == 12
    assert values[("batchclf_batches_total", ())] >= 3
    assert values[("batchclf_batch_files_bucket", (("le", "4.0"),))] == values[("batchclf_batches_total", ())]
    assert values[("batchclf_latency_seconds_count", ())] == files
    assert 0 <= values[("batchclf_latency_seconds_sum", ())] <= files * (finished - started)
    assert values[("batchclf_inbox_files_waiting", ())] == 0
    assert values[("batchclf_moves_pending_retry", ())] == 0
    info = [dict(labels) for (name, labels) in values if name == "batchclf_model_info"]
    assert info == [{"file": "tiny.keras", "sha256": hashlib.sha256(tiny_model.read_bytes()).hexdigest(),
                     "architecture": "tiny", "card_accuracy": ""}]
    assert started - 1 <= values[("batchclf_start_time_seconds", ())] <= finished
    assert started <= values[("batchclf_last_success_timestamp_seconds", ())] <= finished + 1
    assert values[("batchclf_running", ())] == 0  # written at exit
    assert not [p.name for p in metrics.parent.iterdir() if p != metrics]  # no temp file left behind


def test_a_restart_with_nothing_to_do_keeps_the_last_success_of_the_journal(tmp_path, tiny_model):
    """A daemon (not a nightly run) that starts on a quiet inbox says when the last batch really was."""
    from batchclf.watch.daemon import Daemon, WatchOptions

    inbox, jobs, metrics = tmp_path / "inbox", tmp_path / "jobs", tmp_path / "batchclf.prom"
    inbox.mkdir()
    drop(inbox, "a.png", digit_bytes(1))
    assert run_oneshot(inbox, jobs, tiny_model, Operations(metrics_file=metrics)) == 0
    first = samples(metrics)[("batchclf_last_success_timestamp_seconds", ())]
    daemon = Daemon(WatchOptions(inbox=inbox, out_dir=jobs, model=tiny_model, settle=0, workers=0, rescan_interval=60),
                    operations=Operations(metrics_file=metrics))
    import threading

    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and samples(metrics).get(("batchclf_running", ())) != 1:
            time.sleep(0.05)
    finally:
        daemon.stop()
        thread.join()
    values = samples(metrics)
    assert values[("batchclf_rows_total", (("status", "ok"),))] == 0  # a new process: its counters start at 0
    assert abs(values[("batchclf_last_success_timestamp_seconds", ())] - first) < 1.0  # not reset to 0 or to now


def test_a_metrics_file_that_cannot_be_written_never_stops_the_daemon(tmp_path, tiny_model, caplog):
    inbox, jobs = tmp_path / "inbox", tmp_path / "jobs"
    inbox.mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    for i in range(3):
        drop(inbox, f"d{i}.png", digit_bytes(i))
    with caplog.at_level(logging.WARNING, logger="batchclf.metrics"):
        assert run_oneshot(inbox, jobs, tiny_model, Operations(metrics_file=tmp_path / "a-file" / "x.prom")) == 0
    assert len(next(jobs.glob("watch-*/results.csv")).read_text().splitlines()) == 4
    warnings = [r.getMessage() for r in caplog.records if "cannot write the metrics file" in r.getMessage()]
    assert len(warnings) == 1  # said once, not at every write


def test_writes_are_throttled_and_atomic(tmp_path):
    from prometheus_client import CollectorRegistry, Gauge

    now = [100.0]
    registry = CollectorRegistry()
    gauge = Gauge("x", "x", registry=registry)
    writer = TextfileWriter(tmp_path / "m.prom", registry, every=5.0, clock=lambda: now[0])
    gauge.set(1)
    assert writer.write()
    gauge.set(2)
    now[0] += 4.9
    assert not writer.write()  # not due: the file still says 1
    assert samples(tmp_path / "m.prom")[("x", ())] == 1
    now[0] += 0.1
    assert writer.write()
    assert samples(tmp_path / "m.prom")[("x", ())] == 2
    gauge.set(3)
    assert writer.write(force=True)  # at exit
    assert samples(tmp_path / "m.prom")[("x", ())] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["m.prom"]


def test_a_classify_jobs_metrics(tmp_path):
    summary = {
        "job_id": "20261207T025204Z-3458", "kind": "classify", "seconds": 2.5, "files": 12, "rows": 13,
        "counts": {"ok": 10, "review": 2, "failed": 1}, "labels": {"1": 3, "7": 9}, "files_per_second": 4.8,
        "model": {"file": "default.keras", "sha256": "ab" * 32, "architecture": "default", "card_accuracy": 0.9962},
    }
    path = tmp_path / "metrics" / "nightly.prom"
    assert write_job_metrics(path, summary, now=1765000000.0)
    values = samples(path)
    assert by_label(values, "batchclf_last_job_rows", "status") == {"ok": 10, "review": 2, "failed": 1}
    assert by_label(values, "batchclf_last_job_labels", "label") == {"1": 3, "7": 9}
    assert values[("batchclf_last_job_files", ())] == 12
    assert values[("batchclf_last_job_duration_seconds", ())] == 2.5
    assert values[("batchclf_last_job_files_per_second", ())] == 4.8
    assert values[("batchclf_last_job_review_share", ())] == pytest.approx(2 / 13)
    assert values[("batchclf_model_card_accuracy", ())] == 0.9962
    assert values[("batchclf_last_success_timestamp_seconds", ())] == 1765000000.0
    info = [dict(labels) for (name, labels) in values if name == "batchclf_model_info"]
    assert info == [{"file": "default.keras", "sha256": "ab" * 32, "architecture": "default", "card_accuracy": "0.9962"}]
