"""The daemon's pure parts, driven by a fake clock: no sleeps, no threads."""

import socket

import pytest
from pathlib import Path

from batchclf.watch.batcher import DynamicBatcher
from batchclf.watch.notify import Notifier
from batchclf.watch.observer import filesystem_type, is_network_filesystem
from batchclf.watch.stability import CTIME_TICK, StabilityTracker

from .helpers import FakeClock, FakeFiles


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def files():
    return FakeFiles()


def test_file_is_due_only_after_quiet_settle(clock, files):
    tracker = StabilityTracker(1.0, clock, stat=files)
    files.write("a.png", 100, 1)
    tracker.seen("a.png")
    clock.advance(0.9)
    assert tracker.due() == []
    clock.advance(0.2)
    assert [str(f.path) for f in tracker.due()] == ["a.png"]
    assert len(tracker) == 0


def test_growing_file_is_never_taken_half_written(clock, files):
    """A scanner writing in chunks without events in between (PollingObserver case)."""
    tracker = StabilityTracker(1.0, clock, stat=files)
    files.write("scan.tif", 10, 1)
    tracker.seen("scan.tif")
    for size in (20, 30, 40):
        clock.advance(1.5)
        files.write("scan.tif", size, size)  # grew, no event reached us
        assert tracker.due() == []
    clock.advance(1.0)
    assert tracker.due() == [(Path("scan.tif"), 40, 40)]  # judged at its final size


def test_touched_file_with_same_size_is_not_taken_early(clock, files):
    """A rewrite in place keeps the size; the new mtime alone re-arms the wait."""
    tracker = StabilityTracker(1.0, clock, stat=files)
    files.write("a.png", 10, 1)
    tracker.seen("a.png")
    clock.advance(1.1)
    files.write("a.png", 10, 2)
    assert tracker.due() == []
    clock.advance(1.1)
    assert tracker.due() == [(Path("a.png"), 10, 2)]


def test_events_restart_the_quiet_period(clock, files):
    tracker = StabilityTracker(1.0, clock, stat=files)
    files.write("a.png", 1, 1)
    tracker.seen("a.png")
    clock.advance(0.8)
    tracker.seen("a.png")
    clock.advance(0.8)
    assert tracker.due() == []
    assert tracker.next_deadline() == pytest.approx(clock.now + 0.2)


def test_vanished_and_non_regular_paths_are_dropped(clock, files):
    tracker = StabilityTracker(0.5, clock, stat=files)
    files.write("gone.png", 1, 1)
    files.mkdir("dir.jpg")
    tracker.seen("gone.png")
    tracker.seen("dir.jpg")
    del files.files["gone.png"]
    clock.advance(1)
    assert tracker.due() == [] and len(tracker) == 0


def test_forget_on_delete_or_move_away(clock, files):
    tracker = StabilityTracker(0.5, clock, stat=files)
    files.write("a.part", 1, 1)
    tracker.seen("a.part")
    tracker.forget("a.part")
    assert len(tracker) == 0 and tracker.next_deadline() is None


def test_settle_zero_takes_at_once(clock, files):
    tracker = StabilityTracker(0.0, clock, stat=files)
    files.write("a.png", 1, 1)
    tracker.seen("a.png")
    assert len(tracker.due()) == 1


class FakeWallClock:
    """The wall clock ctime is stamped with, running alongside the monotonic fake."""

    def __init__(self, clock, offset=1_700_000_000.0):
        self.clock, self.offset = clock, offset

    def __call__(self):
        return self.clock.now + self.offset


def test_ctime_dates_the_quiet_period_on_local_filesystems(clock, files):
    """A file renamed in 0.6 s before its (delayed) event reached us needs only 0.4 s more."""
    wall = FakeWallClock(clock)
    tracker = StabilityTracker(1.0, clock, stat=files, wall_clock=wall)
    files.write("a.png", 10, 1, ctime=wall() - 0.6)
    tracker.seen("a.png")
    clock.advance(0.3)
    assert tracker.due() == []
    assert tracker.next_deadline() == pytest.approx(clock.now + 0.1 + CTIME_TICK)
    clock.advance(0.2)
    assert tracker.due() == [(Path("a.png"), 10, 1)]


def test_file_complete_before_start_goes_at_once(clock, files):
    wall = FakeWallClock(clock)
    tracker = StabilityTracker(1.0, clock, stat=files, wall_clock=wall)
    files.write("old.png", 10, 1, ctime=wall() - 3600)
    files.write("new.png", 10, 1, ctime=wall())
    tracker.seen("new.png")
    tracker.seen("old.png")
    assert tracker.due() == [(Path("old.png"), 10, 1)]  # not held back behind the newer file
    assert len(tracker) == 1


def test_old_ctime_does_not_excuse_a_change_between_looks(clock, files):
    wall = FakeWallClock(clock)
    tracker = StabilityTracker(1.0, clock, stat=files, wall_clock=wall)
    files.write("a.png", 10, 1, ctime=wall() - 3600)
    tracker.seen("a.png")
    files.write("a.png", 20, 2, ctime=wall())  # appended to after we looked
    assert tracker.due() == []
    clock.advance(1.1)
    assert tracker.due() == [(Path("a.png"), 20, 2)]


def test_ctime_in_the_future_or_without_wall_clock_waits_the_full_settle(clock, files):
    wall = FakeWallClock(clock)
    skewed = StabilityTracker(1.0, clock, stat=files, wall_clock=wall)
    untrusted = StabilityTracker(1.0, clock, stat=files)  # network filesystem: ctime is the server's
    files.write("a.png", 10, 1, ctime=wall() + 30)
    files.write("b.png", 10, 1, ctime=wall() - 3600)
    skewed.seen("a.png")
    untrusted.seen("b.png")
    clock.advance(0.9)
    assert skewed.due() == [] and untrusted.due() == []
    clock.advance(0.2)
    assert len(skewed.due()) == 1 and len(untrusted.due()) == 1


def test_batch_goes_when_full(clock):
    batcher = DynamicBatcher(3, 0.5, clock)
    for i in range(2):
        batcher.add(i)
    assert not batcher.ready()
    batcher.add(2)
    assert batcher.ready() and batcher.take() == [0, 1, 2]


def test_batch_goes_when_oldest_waited_max_latency(clock):
    batcher = DynamicBatcher(64, 0.5, clock)
    batcher.add("a", arrived=clock.now)
    clock.advance(0.3)
    batcher.add("b")
    assert not batcher.ready() and batcher.take() == []
    assert batcher.next_deadline() == pytest.approx(clock.now + 0.2)
    clock.advance(0.2)
    assert batcher.take() == ["a", "b"]


def test_batcher_is_bounded_and_takes_at_most_max_batch(clock):
    batcher = DynamicBatcher(2, 10, clock, capacity=3)
    for i in range(3):
        batcher.add(i)
    assert not batcher.has_room()
    with pytest.raises(OverflowError):
        batcher.add(3)
    assert batcher.take() == [0, 1]
    assert batcher.take(force=True) == [2]
    assert batcher.take(force=True) == []


def test_notify_sends_datagrams_to_a_real_socket(tmp_path, monkeypatch):
    address = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(address)
    server.settimeout(5)
    try:
        notifier = Notifier(address)
        assert notifier.send(READY=1, STATUS="ok=1")
        assert server.recv(4096) == b"READY=1\nSTATUS=ok=1"
        monkeypatch.setenv("WATCHDOG_USEC", "4000000")
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        assert notifier.watchdog_interval() == 2.0
        notifier.close()
    finally:
        server.close()


def test_notify_is_a_no_op_without_socket(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled and notifier.send(READY=1) is False


def test_network_filesystem_detection(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/sda1 / ext4 rw 0 0\n"
        "server:/export /mnt/scans nfs4 rw 0 0\n"
        "//nas/share /mnt/smb cifs rw 0 0\n"
        "sshfs#host: /mnt/fuse fuse.sshfs rw 0 0\n"
    )
    assert filesystem_type("/mnt/scans/inbox", mounts) == "nfs4"
    assert filesystem_type("/mnt/smb/x", mounts) == "cifs"
    assert filesystem_type("/mnt/fuse", mounts) == "fuse.sshfs"
    assert filesystem_type("/home/u", mounts) == "ext4"
    assert all(map(is_network_filesystem, ["nfs4", "cifs", "fuse.sshfs"]))
    assert not is_network_filesystem("ext4")


def test_due_limit_keeps_the_rest_tracked_oldest_first(clock, files):
    tracker = StabilityTracker(0.5, clock, stat=files)
    for name in ("c.png", "a.png", "b.png"):
        files.write(name, 1, 1)
        tracker.seen(name)
        clock.advance(0.1)
    clock.advance(1)
    assert [str(f.path) for f in tracker.due(limit=2)] == ["c.png", "a.png"]
    assert len(tracker) == 1
    assert [str(f.path) for f in tracker.due(limit=2)] == ["b.png"]


def test_journal_answers_a_burst_in_few_queries(tmp_path):
    """known_many and first_reports_of page through SQLite's parameter limit and match exactly."""
    from batchclf.watch.journal import FileRecord, Journal

    journal = Journal(tmp_path / "journal.sqlite")
    try:
        records = [
            FileRecord(path=f"f{i}.png", size=i, mtime_ns=i, sha256=f"sha{i % 1500}", status="ok", day="2026-11-24",
                       first_row=f"watch-2026-11-24/f{i}.png#1", move_kind=None)
            for i in range(2000)
        ]
        journal.decide([], records)
        asked = [(f"f{i}.png", i, i) for i in range(0, 2500, 7)] + [("f3.png", 3, 99)]  # last: same path, new mtime
        assert journal.known_many(asked) == {identity for identity in asked if identity[1] < 2000 and identity[2] == identity[1]}
        firsts = journal.first_reports_of([f"sha{i}" for i in range(1500)] + ["sha-none"])
        assert len(firsts) == 1500 and firsts["sha1400"] == "watch-2026-11-24/f1400.png#1"
        assert firsts["sha100"] == "watch-2026-11-24/f100.png#1"  # f100 and f1600 share it: the first report wins
        assert journal.known("f5.png", 5, 5) and not journal.known("f5.png", 5, 6)
    finally:
        journal.close()
