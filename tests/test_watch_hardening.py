"""The daemon against a hostile inbox and a clumsy operator (issue 13): each test failed on the code before its fix."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from batchclf.jobs.folder import day_folder_name
from batchclf.watch.journal import FileRecord, Journal, JournalInboxError
from batchclf.watch.lock import lock_path

from .helpers import csv_rows, digit_bytes, drop, ink_digit, oneshot, png_bytes, remove_tree, report_rows, running, wait_for


@pytest.mark.parametrize("loss", ["deleted", "emptied"])
def test_a_lost_journal_never_shrinks_the_days_report(home, tiny_model, loss):
    inbox, jobs = home / "inbox", home / "jobs"
    drop(inbox, "first.png", digit_bytes(1))
    assert oneshot(inbox, jobs, tiny_model) == 0
    journal = jobs / "watch-journal.sqlite"
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{journal}{suffix}")
        if path.exists():
            path.unlink()
    if loss == "emptied":
        journal.write_bytes(b"")
    drop(inbox, "second.png", digit_bytes(2))
    assert oneshot(inbox, jobs, tiny_model) == 0
    assert [r["file"] for r in report_rows(jobs)] == ["first.png", "second.png"]
    assert [r["file"] for r in csv_rows(jobs)] == ["first.png", "second.png"]
    csv_text = next(jobs.glob("watch-*/results.csv")).read_text()
    assert csv_text.count("file,page,status") == 1  # the header is not written twice


def test_an_unwritable_processed_folder_never_blocks_classification_or_restart(home, tiny_model, caplog):
    inbox, jobs = home / "inbox", home / "jobs"
    (home / "not-a-folder").write_text("a file where processed/ should be")
    drop(inbox, "a.png", digit_bytes(3))
    with caplog.at_level(logging.WARNING, logger="batchclf.watch"):
        assert oneshot(inbox, jobs, tiny_model, processed_dir=home / "not-a-folder" / "processed") == 0
    assert [r["file"] for r in report_rows(jobs)] == ["a.png"]
    assert (inbox / "a.png").exists() and "retried" in caplog.text
    # Restart with the option fixed: the file goes where the option says now, and is not classified again.
    assert oneshot(inbox, jobs, tiny_model, processed_dir=home / "processed") == 0
    day = report_rows(jobs)[0]["processed_at"][:10]
    assert (home / "processed" / day / "a.png").is_file() and not (inbox / "a.png").exists()
    assert [r["file"] for r in report_rows(jobs)] == ["a.png"]


def test_a_second_inbox_on_one_journal_is_refused(home, tiny_model):
    jobs = home / "jobs"
    (home / "other").mkdir()
    drop(home / "inbox", "a.png", digit_bytes(1))
    assert oneshot(home / "inbox", jobs, tiny_model) == 0
    with pytest.raises(JournalInboxError, match="own --out"):
        oneshot(home / "other", jobs, tiny_model)


def test_recovery_never_moves_a_new_file_under_an_old_name(home, tiny_model):
    """Crash between the rename and mark_moved, then a different file arrives under the same name."""
    inbox, jobs = home / "inbox", home / "jobs"
    day = time.strftime("%Y-%m-%d", time.gmtime())
    journal = Journal(jobs / "watch-journal.sqlite")
    journal.claim(os.fspath(inbox.resolve()))
    journal.decide([], [FileRecord("x.png", 11, 12, "0" * 64, "ok", day, f"{day_folder_name(day)}/x.png#1", "processed")])
    journal.close()
    drop(inbox, "x.png", digit_bytes(7))  # the new file: another size and mtime
    assert oneshot(inbox, jobs, tiny_model) == 0
    rows = report_rows(jobs)
    assert [r["file"] for r in rows] == ["x.png"] and rows[0]["status"] in ("ok", "review")  # classified, not swept away


def test_a_symlink_out_of_the_inbox_is_reported_not_read(home, tiny_model):
    inbox, jobs = home / "inbox", home / "jobs"
    secret = home / "secret.png"
    secret.write_bytes(digit_bytes(4))
    (inbox / "link.png").symlink_to(secret)
    assert oneshot(inbox, jobs, tiny_model) == 0
    (row,) = report_rows(jobs)
    assert row["status"] == "failed" and "outside" in row["error"] and row["sha256"] is None
    assert secret.exists()


def test_link_loops_and_very_deep_trees_are_skipped_not_fatal(home, tiny_model, caplog):
    inbox, jobs = home / "inbox", home / "jobs"
    (inbox / "a.png").symlink_to(inbox / "b.png")
    (inbox / "b.png").symlink_to(inbox / "a.png")
    deep = inbox
    for _ in range(1100):  # one mkdir at a time: os.makedirs itself recurses
        deep = deep / "d"
        deep.mkdir()
    drop(deep, "bottom.png", digit_bytes(5))
    drop(inbox, "fine.png", digit_bytes(6))
    try:
        with caplog.at_level(logging.WARNING, logger="batchclf.watch"):
            assert oneshot(inbox, jobs, tiny_model) == 0
        files = sorted(r["file"] for r in report_rows(jobs))
        assert "fine.png" in files and any(f.endswith("/bottom.png") for f in files)
        assert "a.png" in caplog.text  # the loop is logged as skipped
    finally:
        remove_tree(home)  # pytest's own clean-up of old temp folders recurses, and would crash on this tree


def test_summary_is_current_soon_after_a_burst(home, tiny_model, no_thread_leaks):
    from batchclf.watch.daemon import Daemon, WatchOptions
    from batchclf.watch.sinks import SUMMARY_EVERY

    inbox, jobs = home / "inbox", home / "jobs"
    daemon = Daemon(WatchOptions(inbox=inbox, out_dir=jobs, model=tiny_model, settle=0.1, max_latency=0.05, workers=0, max_batch=4))
    thread = threading.Thread(target=daemon.run, name="daemon-under-test")
    thread.start()
    try:
        wait_for(lambda: lock_path(inbox, jobs).exists() and daemon.predictor is not None, what="start")
        drop(inbox, "first.png", digit_bytes(0))
        wait_for(lambda: len(report_rows(jobs)) == 1, what="the first row")  # its summary is written at once
        for i in range(1, 9):  # the burst lands within SUMMARY_EVERY of that write, and nothing comes after it
            drop(inbox, f"burst{i}.png", digit_bytes(i))
        wait_for(lambda: len(report_rows(jobs)) == 9, what="the burst's rows")

        def summary_rows():
            path = next(jobs.glob("watch-*/summary.json"), None)
            return path is not None and json.loads(path.read_text())["rows"] == 9

        wait_for(summary_rows, timeout=SUMMARY_EVERY + 2, what="summary.json to count the whole burst")
    finally:
        daemon.stop()
        thread.join(timeout=30)


def test_a_name_that_is_not_utf8_is_a_row_and_moves_with_its_bytes(home, tiny_model):
    inbox, jobs = home / "inbox", home / "jobs"
    raw = os.fsdecode(b"\xff\xfe-scan.png")
    (inbox / raw).write_bytes(digit_bytes(3))
    assert oneshot(inbox, jobs, tiny_model) == 0
    (row,) = report_rows(jobs)
    assert row["file"] == "\\xff\\xfe-scan.png" and row["status"] in ("ok", "review")
    day = row["processed_at"][:10]
    assert os.path.exists(os.path.join(home / "processed" / day, raw))
    assert not any(name.endswith("-scan.png") for name in os.listdir(inbox))
    # A second run finds nothing new: the journal knows the file by the name reports show.
    assert oneshot(inbox, jobs, tiny_model) == 0 and len(report_rows(jobs)) == 1
    from batchclf.jobs.folder import read_job

    located = read_job(jobs / f"watch-{day}").input_location(row)
    assert located is not None and os.fsencode(located.name) == b"\xff\xfe-scan.png"


@pytest.mark.parametrize("case", ["missing inbox", "inbox is a file", "out is a file", "corrupt journal"])
def test_clumsy_folders_are_one_error_line_and_create_nothing(tmp_path, tiny_model, case):
    from typer.testing import CliRunner

    from batchclf.cli import app

    inbox, jobs = tmp_path / "inbox", tmp_path / "jobs"
    if case != "missing inbox":
        inbox.mkdir()
    if case == "inbox is a file":
        inbox.rmdir()
        inbox.write_text("not a folder")
    if case == "out is a file":
        jobs.write_text("not a folder")
    if case == "corrupt journal":
        jobs.mkdir()
        (jobs / "watch-journal.sqlite").write_bytes(b"this is not a database, but it is not empty either" * 100)
    result = CliRunner().invoke(app, ["watch", str(inbox), "--out", str(jobs), "--model", str(tiny_model), "--oneshot"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1 and "Traceback" not in result.output
    expected = {"missing inbox": "does not exist", "inbox is a file": "not a folder", "out is a file": "journal",
                "corrupt journal": "watch-journal.sqlite"}[case]
    assert expected in result.output
    if case == "missing inbox":
        assert not inbox.exists() and not jobs.exists()
        result = CliRunner().invoke(app, ["watch", str(inbox), "--out", str(jobs), "--model", str(tiny_model), "--oneshot", "--create"])
        assert result.exit_code == 0, result.output
        assert inbox.is_dir()


# -- issue 13 point 8: the inbox deleted and recreated under a running daemon --------------------------------------


class PingRecorder:
    """A notifier that records what the daemon tells systemd, pinging every 0.1 s."""

    def __init__(self):
        self.sent: list[dict] = []

    def send(self, **fields) -> bool:
        self.sent.append(fields)
        return True

    def watchdog_interval(self) -> float:
        return 0.1

    def close(self) -> None:
        pass

    @property
    def pings(self) -> int:
        return sum("WATCHDOG" in fields for fields in self.sent)


def live_daemon(inbox: Path, jobs: Path, model: Path, notifier=None):
    """A daemon whose rescan never comes during a test: only the watch can find new files."""
    from batchclf.watch.daemon import Daemon, WatchOptions

    options = WatchOptions(inbox=inbox, out_dir=jobs, model=model, settle=0.1, max_latency=0.05, workers=0, rescan_interval=600)
    return Daemon(options, notifier=notifier)


def test_a_recreated_inbox_is_watched_again_and_stays_locked(home, tiny_model, no_thread_leaks):
    from batchclf.errors import InboxLockedError

    inbox, jobs = home / "inbox", home / "jobs"
    with running(live_daemon(inbox, jobs, tiny_model)):
        drop(inbox, "before.png", digit_bytes(1))
        wait_for(lambda: len(report_rows(jobs)) == 1, what="the first file")
        remove_tree(inbox)
        inbox.mkdir()
        with pytest.raises(InboxLockedError, match="already watched"):
            oneshot(inbox, jobs, tiny_model)  # the lock did not go away with the folder
        drop(inbox, "after.png", digit_bytes(2))
        wait_for(lambda: [r["file"] for r in report_rows(jobs)] == ["before.png", "after.png"], timeout=5,
                 what="a file in the recreated inbox, long before the rescan")
        with pytest.raises(InboxLockedError, match="already watched"):
            oneshot(inbox, home / "other-jobs", tiny_model)  # nor with another --out: the new folder is locked too


def test_a_missing_inbox_is_logged_and_waited_for_while_pinging_the_watchdog(home, tiny_model, no_thread_leaks, caplog):
    inbox, jobs = home / "inbox", home / "jobs"
    notifier = PingRecorder()
    with caplog.at_level(logging.INFO, logger="batchclf.watch"), running(live_daemon(inbox, jobs, tiny_model, notifier)) as thread:
        wait_for(lambda: any("READY" in fields for fields in notifier.sent), what="ready")
        remove_tree(inbox)
        wait_for(lambda: f"inbox {inbox} is gone" in caplog.text, timeout=5, what="the missing inbox in the log")
        pings = notifier.pings
        wait_for(lambda: notifier.pings >= pings + 3, timeout=3, what="watchdog pings while the inbox is missing")
        assert thread.is_alive()
        inbox.mkdir()
        drop(inbox, "back.png", digit_bytes(3))
        wait_for(lambda: [r["file"] for r in report_rows(jobs)] == ["back.png"], timeout=5, what="a file in the inbox come back")
    assert f"inbox {inbox} is back" in caplog.text


# -- issue 13 point 9: a new file with an old file's name, size and mtime --------------------------------------------


def same_size_scans() -> tuple[bytes, bytes]:
    """Two different images whose files have the same length (uncompressed BMP of one size)."""
    first, second = (png_bytes(ink_digit(80).rotate(angle), "BMP") for angle in (0, 40))
    assert len(first) == len(second) and first != second
    return first, second


def put(path: Path, data: bytes, mtime_ns: int) -> None:
    """Write ``data`` (atomically) and give the file this mtime, as ``cp -p`` or ``touch -d`` would."""
    drop(path.parent, path.name, data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_a_new_file_with_an_old_files_name_size_and_mtime_is_classified(home, tiny_model):
    inbox, jobs = home / "inbox", home / "jobs"
    first, second = same_size_scans()
    put(inbox / "x.bmp", first, mtime_ns=1_700_000_000_000_000_000)
    assert oneshot(inbox, jobs, tiny_model) == 0
    put(inbox / "x.bmp", second, mtime_ns=1_700_000_000_000_000_000)
    assert oneshot(inbox, jobs, tiny_model) == 0
    rows = report_rows(jobs)
    assert [r["file"] for r in rows] == ["x.bmp", "x.bmp"] and rows[0]["sha256"] != rows[1]["sha256"]
    assert rows[1]["status"] in ("ok", "review") and not (inbox / "x.bmp").exists()


def test_a_kept_file_is_read_again_only_when_its_ctime_changes_and_never_reported_twice(home, tiny_model, monkeypatch):
    from batchclf.watch import daemon as daemon_module

    inbox, jobs = home / "inbox", home / "jobs"
    reads = []
    prepare = daemon_module.prepare_many
    monkeypatch.setattr(daemon_module, "prepare_many", lambda candidates, **options: reads.extend(candidates) or prepare(candidates, **options))
    first, _ = same_size_scans()
    put(inbox / "x.bmp", first, mtime_ns=1_700_000_000_000_000_000)
    assert oneshot(inbox, jobs, tiny_model, keep=True) == 0 and len(reads) == 1
    assert oneshot(inbox, jobs, tiny_model, keep=True) == 0 and len(reads) == 1  # unchanged: not even read
    put(inbox / "x.bmp", first, mtime_ns=1_700_000_000_000_000_000)  # the same bytes written again: a new ctime
    assert oneshot(inbox, jobs, tiny_model, keep=True) == 0 and len(reads) == 2  # read, found the same...
    assert [r["file"] for r in report_rows(jobs)] == ["x.bmp"]  # ...and not reported again
    assert oneshot(inbox, jobs, tiny_model, keep=True) == 0 and len(reads) == 2  # its new ctime is remembered


def test_recovery_never_moves_a_new_file_with_the_old_files_size_and_mtime(home, tiny_model):
    """As above, but the newcomer has the very size and mtime of the file moved before the crash: only ctime tells."""
    inbox, jobs = home / "inbox", home / "jobs"
    day = time.strftime("%Y-%m-%d", time.gmtime())
    new = drop(inbox, "x.png", digit_bytes(7))
    info = new.stat()
    journal = Journal(jobs / "watch-journal.sqlite")
    journal.claim(os.fspath(inbox.resolve()))
    journal.decide([], [FileRecord("x.png", info.st_size, info.st_mtime_ns, "0" * 64, "ok", day,
                                   f"{day_folder_name(day)}/x.png#1", "processed", ctime_ns=info.st_ctime_ns - 1)])
    journal.close()
    assert oneshot(inbox, jobs, tiny_model) == 0
    rows = report_rows(jobs)
    assert [r["file"] for r in rows] == ["x.png"] and rows[0]["status"] in ("ok", "review")
