"""The daemon against odd inbox entries and slow writers (issue 23, points 2, 8 and 16).

Each test failed on the code before its fix: outside symlinks stayed in the inbox, FIFOs and
devices were dropped without a row, and a file written with pauses longer than --settle was
reported once per partial state while the log counted moves that never happened.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from .helpers import FakeClock, FakeFiles, digit_bytes, drop, ink_digit, oneshot, png_bytes, report_rows, running, wait_for

MOVED = re.compile(r"moved (\d+) files? \((\d+) of them to ")


def moves_logged(text: str) -> tuple[int, int]:
    """(files moved, of them to failed/) summed over the daemon's "moved N files" lines."""
    found = [tuple(map(int, m.groups())) for m in MOVED.finditer(text)]
    return sum(n for n, _ in found), sum(f for _, f in found)


def only_day(home: Path) -> str:
    (day,) = {row["processed_at"][:10] for row in report_rows(home / "jobs")}
    return day


# -- point 2: an outside symlink is moved to failed/, as a link ----------------------------------------------------


def test_a_symlink_leading_outside_is_moved_to_failed_as_a_link_and_logged_as_moved(home, tiny_model, caplog):
    inbox, jobs = home / "inbox", home / "jobs"
    secret = home / "secret.png"
    secret.write_bytes(digit_bytes(4))
    (inbox / "link.png").symlink_to(secret)
    with caplog.at_level(logging.INFO, logger="batchclf.watch"):
        assert oneshot(inbox, jobs, tiny_model) == 0
    (row,) = report_rows(jobs)
    assert row["status"] == "failed" and "outside" in row["error"] and row["sha256"] is None
    assert not os.path.lexists(inbox / "link.png")  # gone from the inbox: the sheet can no longer follow it
    moved = home / "failed" / only_day(home) / "link.png"
    assert moved.is_symlink() and os.readlink(moved) == str(secret)  # the link itself moved...
    assert secret.read_bytes() == digit_bytes(4)  # ...never its target
    assert (moved.parent / "link.png.reason.json").is_file()
    assert moves_logged(caplog.text) == (1, 1)
    assert oneshot(inbox, jobs, tiny_model) == 0 and len(report_rows(jobs)) == 1


# -- point 16: FIFOs, device nodes, links to devices ---------------------------------------------------------------


def make_odd_entry(inbox: Path, kind: str) -> Path:
    path = inbox / f"{kind}.png"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        try:
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # the same device as /dev/null
        except PermissionError:
            pytest.skip("cannot make a device node here (the link-to-/dev/zero case covers devices)")
    else:
        path.symlink_to("/dev/zero")
    return path


@pytest.mark.timeout(120)  # opening a FIFO for reading would block for ever
@pytest.mark.parametrize("kind", ["fifo", "device", "link-to-dev-zero"])
def test_a_fifo_or_device_is_one_failed_row_and_moved_to_failed(home, tiny_model, caplog, kind):
    inbox, jobs = home / "inbox", home / "jobs"
    entry = make_odd_entry(inbox, kind)
    before = os.lstat(entry)
    drop(inbox, "fine.png", digit_bytes(2))
    with caplog.at_level(logging.INFO, logger="batchclf.watch"):
        assert oneshot(inbox, jobs, tiny_model) == 0
    rows = {row["file"]: row for row in report_rows(jobs)}
    assert sorted(rows) == sorted([entry.name, "fine.png"])
    assert rows[entry.name]["status"] == "failed" and "not a regular file" in rows[entry.name]["error"]
    assert not os.path.lexists(entry)
    moved = home / "failed" / only_day(home) / entry.name
    after = os.lstat(moved)
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino  # the entry itself
    assert moves_logged(caplog.text) == (2, 1)
    assert oneshot(inbox, jobs, tiny_model) == 0 and len(report_rows(jobs)) == 2  # once


@pytest.mark.timeout(120)
def test_a_fifo_that_cannot_be_moved_is_reported_once_and_logged_once(home, tiny_model, caplog):
    inbox, jobs = home / "inbox", home / "jobs"
    os.mkfifo(inbox / "pipe.png")
    (home / "not-a-folder").write_text("a file where failed/ should be")
    with caplog.at_level(logging.INFO, logger="batchclf.watch"):
        assert oneshot(inbox, jobs, tiny_model, failed_dir=home / "not-a-folder" / "failed") == 0
        assert oneshot(inbox, jobs, tiny_model, failed_dir=home / "not-a-folder" / "failed") == 0
    (row,) = report_rows(jobs)
    assert row["status"] == "failed" and "not a regular file" in row["error"]
    assert stat.S_ISFIFO(os.lstat(inbox / "pipe.png").st_mode)  # left where it is
    assert caplog.text.count("cannot move pipe.png") == 2  # once per run, not per look
    assert moves_logged(caplog.text) == (0, 0)


@pytest.mark.timeout(120)  # copying /dev/zero would never end
def test_across_filesystems_a_link_moves_as_a_link_and_a_device_is_never_copied(home, tiny_model, caplog):
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(home).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's temp folder")
    inbox, jobs = home / "inbox", home / "jobs"
    failed_dir = Path(os.path.join(other, f"batchclf-test-{os.getpid()}-{home.name}"))
    (inbox / "zero-link.png").symlink_to("/dev/zero")
    try:
        os.mknod(inbox / "zero-device.png", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero's own numbers
    except PermissionError:
        pytest.skip("cannot make a device node here")
    try:
        with caplog.at_level(logging.INFO, logger="batchclf.watch"):
            assert oneshot(inbox, jobs, tiny_model, failed_dir=failed_dir) == 0
        rows = {row["file"]: row for row in report_rows(jobs)}
        assert sorted(rows) == ["zero-device.png", "zero-link.png"]
        assert all(row["status"] == "failed" and "not a regular file" in row["error"] for row in rows.values())
        moved = failed_dir / only_day(home) / "zero-link.png"
        assert moved.is_symlink() and os.readlink(moved) == "/dev/zero" and not os.path.lexists(inbox / "zero-link.png")
        assert stat.S_ISCHR(os.lstat(inbox / "zero-device.png").st_mode)  # left, never read: logged once
        assert caplog.text.count("cannot move zero-device.png") == 1
        assert moves_logged(caplog.text) == (1, 1)
    finally:
        shutil.rmtree(failed_dir, ignore_errors=True)


# -- point 8: slow writers -----------------------------------------------------------------------------------------


def slow_daemon(inbox: Path, jobs: Path, model: Path, settle: float):
    from batchclf.watch.daemon import Daemon, WatchOptions

    options = WatchOptions(inbox=inbox, out_dir=jobs, model=model, settle=settle, max_latency=0.05, workers=0,
                           rescan_interval=600, review_below=0.0)
    return Daemon(options)


def write_in_pieces(path: Path, data: bytes, pieces: int, pause: float, stop_after: int | None = None) -> threading.Thread:
    """A writer thread: ``data`` in ``pieces`` writes with ``pause`` seconds between them (a stalled network copy)."""
    size = len(data) // pieces + 1

    def write():
        with open(path, "wb") as handle:
            for n, start in enumerate(range(0, len(data), size)):
                if stop_after is not None and n == stop_after:
                    return
                if n:
                    time.sleep(pause)
                handle.write(data[start : start + size])
                handle.flush()

    thread = threading.Thread(target=write, name="slow-writer")
    thread.start()
    return thread


def big_scan() -> bytes:
    """A real image large enough that every piece of it is a truncated file (not a tiny header)."""
    data = png_bytes(ink_digit(400).rotate(5), compress_level=0)
    assert len(data) > 50_000
    return data


def test_a_writer_pausing_longer_than_settle_gives_one_row_and_one_move(home, tiny_model, caplog, no_thread_leaks):
    inbox, jobs = home / "inbox", home / "jobs"
    data = big_scan()
    daemon = slow_daemon(inbox, jobs, tiny_model, settle=0.2)
    with caplog.at_level(logging.INFO, logger="batchclf.watch"), running(daemon):
        wait_for(lambda: daemon.predictor is not None and "ready:" in caplog.text, what="start")
        writer = write_in_pieces(inbox / "slow.png", data, pieces=5, pause=0.8)  # each pause is four settles
        writer.join()
        wait_for(lambda: report_rows(jobs), what="the slow file's row")
        wait_for(lambda: not (inbox / "slow.png").exists(), timeout=10, what="the move")
    rows = report_rows(jobs)
    assert [(r["file"], r["status"]) for r in rows] == [("slow.png", "ok")]
    assert (home / "processed" / only_day(home) / "slow.png").read_bytes() == data
    assert moves_logged(caplog.text) == (1, 0)
    assert "waiting for slow.png" in caplog.text  # the operator sees why it is not reported yet


def test_a_file_left_truncated_by_its_writer_is_failed_once_when_it_stops_changing(home, tiny_model, caplog, no_thread_leaks):
    inbox, jobs = home / "inbox", home / "jobs"
    data = big_scan()
    daemon = slow_daemon(inbox, jobs, tiny_model, settle=0.2)
    with caplog.at_level(logging.INFO, logger="batchclf.watch"), running(daemon):
        wait_for(lambda: daemon.predictor is not None and "ready:" in caplog.text, what="start")
        writer = write_in_pieces(inbox / "stalled.png", data, pieces=5, pause=0.8, stop_after=3)  # never finished
        writer.join()
        last_write = datetime.now(timezone.utc)
        wait_for(lambda: report_rows(jobs), timeout=30, what="the stalled file's row")
        wait_for(lambda: not (inbox / "stalled.png").exists(), timeout=10, what="the move")
    (row,) = report_rows(jobs)
    assert row["file"] == "stalled.png" and row["status"] == "failed" and "truncated" in row["error"]
    # Failed only once its writer had stopped, and then moved with everything it wrote.
    assert datetime.fromisoformat(row["processed_at"].replace("Z", "+00:00")) >= last_write
    assert (home / "failed" / only_day(home) / "stalled.png").stat().st_size == 3 * (len(data) // 5 + 1)
    assert moves_logged(caplog.text) == (1, 1)


def test_a_file_kept_busy_by_its_writer_is_logged_as_waiting(home, tiny_model, caplog, no_thread_leaks):
    from batchclf.watch.arrival import hold_seconds
    from batchclf.watch.daemon import BUSY_CHECK_EVERY

    inbox, jobs = home / "inbox", home / "jobs"
    data = big_scan()
    daemon = slow_daemon(inbox, jobs, tiny_model, settle=0.25)
    # Changing every 0.05 s (never still for a settle) for longer than the hold and a look for busy files.
    pieces = int((hold_seconds(0.25) + 2 * BUSY_CHECK_EVERY) / 0.05)
    with caplog.at_level(logging.INFO, logger="batchclf.watch"), running(daemon):
        wait_for(lambda: daemon.predictor is not None and "ready:" in caplog.text, what="start")
        write_in_pieces(inbox / "busy.png", data, pieces=pieces, pause=0.05).join()
        wait_for(lambda: report_rows(jobs), what="the busy file's row")
    assert [(r["file"], r["status"]) for r in report_rows(jobs)] == [("busy.png", "ok")]
    assert caplog.text.count("waiting for busy.png: still being written") == 1


def test_holding_a_file_is_bounded(tmp_path):
    """A file that changes and stays broken for ever is reported after MAX_HOLDS changes, not held for ever."""
    from batchclf.scan.prepare import failed
    from batchclf.watch.arrival import HOLD, MAX_HOLDS, REPORT, Arrivals

    arrivals = Arrivals(settle=1.0)
    truncated = [failed("x.png", "corrupt or truncated image data: image file is truncated")]
    verdicts = [arrivals.verdict("x.png", (size, size, size), truncated) for size in range(1, MAX_HOLDS + 3)]
    assert verdicts == [HOLD] * MAX_HOLDS + [REPORT, HOLD]  # reported once, then a new arrival is held afresh
    assert arrivals.verdict("y.png", (1, 1, 1), truncated) == HOLD
    assert arrivals.verdict("y.png", (1, 1, 1), truncated) == REPORT  # unchanged through its hold: broken
    refused = [failed("z.png", "not a regular file (a FIFO)")]
    assert arrivals.verdict("z.png", (0, 0, 0), refused) == REPORT  # decided at intake, never held


def test_a_hold_outlasts_events_that_change_nothing_and_ends_at_a_change():
    from batchclf.watch.stability import StabilityTracker

    clock, files = FakeClock(), FakeFiles()
    tracker = StabilityTracker(0.5, clock, stat=files)
    files.write("x.png", 10, 1)
    tracker.hold("x.png", 5.0)
    clock.advance(1.0)
    tracker.seen("x.png")  # the writer closing the file: nothing changed
    clock.advance(1.0)
    assert tracker.due() == []  # still held, not failed after a mere settle
    files.write("x.png", 20, 2)  # the writer resumed
    tracker.seen("x.png")
    clock.advance(0.6)
    assert tracker.due() == [(Path("x.png"), 20, 2)]  # read again after the usual settle


def test_a_file_changing_for_long_is_named_once_and_fifos_are_tracked():
    import stat as stat_module

    from batchclf.watch.stability import StabilityTracker

    clock, files = FakeClock(), FakeFiles()
    tracker = StabilityTracker(0.5, clock, stat=files)
    for size in range(1, 40):
        files.write("busy.png", size, size)
        tracker.seen("busy.png")
        clock.advance(0.25)
    assert tracker.newly_busy(after=5.0) == [(Path("busy.png"), pytest.approx(9.5))]
    assert tracker.newly_busy(after=5.0) == []  # once
    files.files["pipe.png"] = (0, 7, stat_module.S_IFIFO | 0o644, 0.0)
    tracker.seen("pipe.png")
    clock.advance(1.0)
    assert (Path("pipe.png"), 0, 7) in tracker.due()  # handed to intake, which refuses it with a row
