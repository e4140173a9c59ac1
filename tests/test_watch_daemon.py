"""The inbox daemon end to end: real subprocesses, a real inbox, real watchdog observers.

Waiting is always "until a condition holds or a deadline passes", never a
fixed sleep; the only sleeps are in the slow writer, which *is* the scenario.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from batchclf.watch.lock import lock_path

from .helpers import csv_rows, digit_bytes, drop, report_rows, wait_for

TIMEOUT = 60


class DaemonProcess:
    """``batchclf watch`` in a subprocess, with a real NOTIFY_SOCKET we read."""

    count = 0

    def __init__(self, home: Path, model: Path, *extra: str):
        DaemonProcess.count += 1
        self.home = home
        self.socket_path = home / f"notify-{DaemonProcess.count}.sock"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(self.socket_path))
        self.messages: list[str] = []
        self._checked = 0
        self.log = open(home / f"daemon-{DaemonProcess.count}.log", "w+")
        env = {**os.environ, "NOTIFY_SOCKET": str(self.socket_path), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batchclf", "watch", str(home / "inbox"), "--out", str(home / "jobs"),
             "--model", str(model), "--settle", "0.3", "--max-latency", "0.2", "--rescan", "2", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )

    def expect(self, field: str, timeout: float = TIMEOUT) -> str:
        """The next notify message carrying ``field`` (e.g. "READY=1"), waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            while self._checked < len(self.messages):
                message = self.messages[self._checked]
                self._checked += 1
                if field in message.split("\n"):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {field} from the daemon; log:\n{self.output()}")
            self.socket.settimeout(min(1.0, remaining))
            try:
                self.messages.append(self.socket.recv(65536).decode())
            except socket.timeout:
                if self.proc.poll() is not None:
                    deadline = min(deadline, time.monotonic() + 0.5)  # exited: only queued messages remain

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.socket.close()
        self.log.close()


@pytest.fixture
def daemons():
    started = []

    def start(*args):
        started.append(DaemonProcess(*args))
        return started[-1]

    yield start
    for daemon in started:
        daemon.close()


def test_daemon_end_to_end(home, daemons, tiny_model):
    inbox, jobs = home / "inbox", home / "jobs"
    drop(inbox, "before-start.png", digit_bytes(1))  # arrived while the daemon was down
    daemon = daemons(home, tiny_model, "--workers", "1")
    daemon.expect("READY=1")
    wait_for(lambda: any(r["file"] == "before-start.png" for r in report_rows(jobs)), what="start-up catch-up")

    # Written as x.part then renamed: taken from the move event's destination.
    (inbox / "renamed.png.part").write_bytes(digit_bytes(2))
    os.rename(inbox / "renamed.png.part", inbox / "renamed.png")

    # A slow scanner: chunks with pauses shorter than --settle, never read half-written.
    slow = digit_bytes(3) + b"\0" * 0  # a valid PNG; truncated it would be 'failed'
    with open(inbox / "slow.png", "wb") as handle:
        for start in range(0, len(slow), len(slow) // 4 + 1):
            handle.write(slow[start : start + len(slow) // 4 + 1])
            handle.flush()
            time.sleep(0.15)

    # Same content under another name, a broken file, and a subfolder.
    drop(inbox, "copy-of-renamed.png", digit_bytes(2))
    drop(inbox, "broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg")
    (inbox / "sub").mkdir()
    drop(inbox / "sub", "nested.png", digit_bytes(4))

    expected = {"before-start.png", "renamed.png", "slow.png", "copy-of-renamed.png", "broken.jpg", "sub/nested.png"}
    wait_for(lambda: expected <= {r["file"] for r in report_rows(jobs)}, what="first files")

    # A burst.
    for i in range(150):
        drop(inbox, f"burst-{i:03d}.png", digit_bytes(100 + i))
    expected |= {f"burst-{i:03d}.png" for i in range(150)}
    wait_for(lambda: expected <= {r["file"] for r in report_rows(jobs)}, what="the burst")

    # A second daemon on the same inbox is refused at once.
    second = subprocess.run(
        [sys.executable, "-m", "batchclf", "watch", str(inbox), "--out", str(home / "jobs2"), "--model", str(tiny_model)],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert second.returncode != 0
    assert "Error: inbox" in second.stderr and "already watched" in second.stderr

    status = daemon.expect("WATCHDOG=1")
    assert status
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=20) == 0
    daemon.expect("STOPPING=1", timeout=5)

    rows = report_rows(jobs)
    by_file = {r["file"]: r for r in rows}
    assert sorted(r["file"] for r in rows) == sorted(expected), "every file exactly once"
    assert len(csv_rows(jobs)) == len(rows)
    assert by_file["slow.png"]["status"] in ("ok", "review")
    assert by_file["slow.png"]["sha256"] == hashlib.sha256(slow).hexdigest()
    assert by_file["copy-of-renamed.png"]["status"] == "duplicate"
    assert by_file["copy-of-renamed.png"]["duplicate_of"].endswith("/renamed.png#1")
    assert by_file["broken.jpg"]["status"] == "failed"
    day = by_file["broken.jpg"]["processed_at"][:10]
    reason = json.loads((home / "failed" / day / "broken.jpg.reason.json").read_text())
    assert reason["error"] == by_file["broken.jpg"]["error"]
    assert (home / "processed" / day / "sub" / "nested.png").is_file()
    assert not [p for p in inbox.rglob("*") if p.is_file() and not p.name.startswith(".")]
    summary = json.loads(next(jobs.glob("watch-*/summary.json")).read_text())
    assert summary["files"] == len(expected) and summary["counts"]["duplicate"] == 1
    assert any(m.startswith("READY=1") and "STATUS=" in m for m in daemon.messages)


def test_kill_9_during_a_burst_loses_and_repeats_nothing(home, daemons, tiny_model):
    inbox, jobs = home / "inbox", home / "jobs"
    daemon = daemons(home, tiny_model, "--workers", "1", "--max-batch", "16")
    daemon.expect("READY=1")
    names = [f"b-{i:03d}.png" for i in range(300)]
    for i, name in enumerate(names):
        drop(inbox, name, digit_bytes(i))
    wait_for(lambda: len(report_rows(jobs)) >= 40, what="some rows before the kill")
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait(timeout=10)

    again = daemons(home, tiny_model, "--oneshot", "--workers", "0")
    assert again.proc.wait(timeout=120) == 0, again.output()
    rows = report_rows(jobs)
    assert sorted(r["file"] for r in rows) == sorted(names)
    assert len(csv_rows(jobs)) == len(names)
    day = rows[0]["processed_at"][:10]
    assert sorted(p.name for p in (home / "processed" / day).iterdir()) == sorted(names)


def test_keep_leaves_files_and_never_reports_twice(home, daemons, tiny_model):
    inbox, jobs = home / "inbox", home / "jobs"
    for i in range(5):
        drop(inbox, f"k{i}.png", digit_bytes(i))
    for _ in range(2):
        run = daemons(home, tiny_model, "--oneshot", "--keep", "--workers", "0", "--settle", "0")
        assert run.proc.wait(timeout=120) == 0, run.output()
    assert sorted(r["file"] for r in report_rows(jobs)) == [f"k{i}.png" for i in range(5)]
    assert len(list(inbox.glob("k*.png"))) == 5


def test_recovery_cuts_a_torn_report_and_writes_pending_rows_once(home, tiny_model, no_thread_leaks):
    """Crash between the journal decision and the report write, with a torn last line on disk."""
    from batchclf.jobs.folder import day_folder_name
    from batchclf.watch.daemon import Daemon, WatchOptions
    from batchclf.watch.journal import FileRecord, Journal

    inbox, jobs = home / "inbox", home / "jobs"
    drop(inbox, "first.png", digit_bytes(1))
    options = WatchOptions(inbox=inbox, out_dir=jobs, model=tiny_model, oneshot=True, settle=0, workers=0)
    assert Daemon(options).run() == 0
    day_rows = report_rows(jobs)
    assert [r["file"] for r in day_rows] == ["first.png"]
    day = day_rows[0]["processed_at"][:10]

    # Simulate the crash: a decided batch whose rows never fully reached the report files.
    journal = Journal(jobs / "watch-journal.sqlite")
    row = {**day_rows[0], "file": "second.png", "sha256": "0" * 64}
    drop(inbox, "second.png", digit_bytes(2))
    info = (inbox / "second.png").stat()
    journal.decide([(day, row)], [FileRecord("second.png", info.st_size, info.st_mtime_ns, "0" * 64, "ok", day,
                                             f"{day_folder_name(day)}/second.png#1", "processed")])
    journal.close()
    folder = jobs / day_folder_name(day)
    with open(folder / "results.jsonl", "a") as handle:
        handle.write('{"file": "second.png", "status": "o')  # torn write
    with open(folder / "results.csv", "a") as handle:
        handle.write("second.png,1,o")

    assert Daemon(options).run() == 0
    rows = report_rows(jobs)
    assert [r["file"] for r in rows] == ["first.png", "second.png"]
    assert [r["file"] for r in csv_rows(jobs)] == ["first.png", "second.png"]
    assert (home / "processed" / day / "second.png").is_file()


def test_in_process_daemon_with_native_observer_stops_cleanly(home, tiny_model, no_thread_leaks):
    from batchclf.watch.daemon import Daemon, WatchOptions

    inbox, jobs = home / "inbox", home / "jobs"
    daemon = Daemon(WatchOptions(inbox=inbox, out_dir=jobs, model=tiny_model, settle=0.2, max_latency=0.1, workers=0))
    thread = threading.Thread(target=daemon.run, name="daemon-under-test")
    thread.start()
    try:
        wait_for(lambda: lock_path(inbox, jobs).exists() and daemon.predictor is not None, what="start")
        drop(inbox, "live.png", digit_bytes(5))
        wait_for(lambda: [r["file"] for r in report_rows(jobs)] == ["live.png"], what="the live file")
    finally:
        daemon.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_polling_observer_sees_files(home, daemons, tiny_model):
    inbox, jobs = home / "inbox", home / "jobs"
    daemon = daemons(home, tiny_model, "--polling", "--poll-interval", "0.2", "--workers", "0", "--rescan", "600")
    daemon.expect("READY=1")
    drop(inbox, "polled.png", digit_bytes(9))
    wait_for(lambda: [r["file"] for r in report_rows(jobs)] == ["polled.png"], what="polled file")
    assert "PollingObserver" in daemon.output()
    daemon.proc.send_signal(signal.SIGINT)
    assert daemon.proc.wait(timeout=20) in (0, 130)


def test_a_decoder_crash_fails_only_its_file(home, tiny_model, monkeypatch, no_thread_leaks):
    from batchclf.watch import daemon as daemon_module
    from batchclf.watch.daemon import Daemon, WatchOptions

    from .helpers import crash_on_poison

    inbox, jobs = home / "inbox", home / "jobs"
    names = ["a.png", "b-poison.png", "c.png", "d.png"]
    for i, name in enumerate(names):
        drop(inbox, name, digit_bytes(i))
    monkeypatch.setattr(daemon_module, "prepare_many", crash_on_poison)
    options = WatchOptions(inbox=inbox, out_dir=jobs, model=tiny_model, oneshot=True, settle=0, workers=1)
    assert Daemon(options).run() == 0
    rows = {r["file"]: r for r in report_rows(jobs)}
    assert sorted(rows) == names
    assert rows["b-poison.png"]["status"] == "failed" and "crashed on this file" in rows["b-poison.png"]["error"]
    assert all(rows[n]["status"] in ("ok", "review") for n in names if n != "b-poison.png")
    day = rows["a.png"]["processed_at"][:10]
    assert (home / "failed" / day / "b-poison.png.reason.json").is_file()
