"""Retention (issue 20): only old day folders the daemon made go, and inbox folders the daemon emptied."""

from __future__ import annotations

import logging
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from batchclf.errors import SettingsError
from batchclf.watch.operations import Operations
from batchclf.watch.retention import InboxPruner, RetentionPolicy, parse_keep, plan, remove_tree

from .helpers import digit_bytes, drop, samples

TODAY = date(2026, 12, 7)


def fill(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture
def site(tmp_path):
    """A home with day folders of every kind: old, recent, not a date, a link, a user's folder elsewhere."""
    home = tmp_path / "home"
    outside = fill(tmp_path / "outside", {"precious.png": b"x" * 10})
    processed, failed, inbox, jobs = home / "processed", home / "failed", home / "inbox", home / "jobs"
    fill(processed, {"2026-10-01/a.png": b"a" * 100, "2026-10-01/sub/b.png": b"b" * 50,  # old: goes
                     "2026-11-06/c.png": b"c",  # 31 days old: goes with 30d
                     "2026-11-07/d.png": b"d",  # 30 days old: stays
                     f"{TODAY}/e.png": b"e",
                     "2026-02-30/f.png": b"f",  # not a date
                     "2026-10-01-extra/g.png": b"g", "old-2026-10-01/h.png": b"h", "notes/2020-01-01/i.png": b"i"})
    (processed / "2026-09-01").symlink_to(outside, target_is_directory=True)  # a link named like a day: not ours
    (processed / "2026-09-02").write_bytes(b"a file named like a day")
    fill(failed, {"2026-08-01/x.png": b"x" * 7, "2026-08-01/x.png.reason.json": b"{}",  # 128 days: goes with 90d
                  "2026-10-01/y.png": b"y"})  # 67 days: stays
    fill(inbox, {"2020-01-01/user.png": b"u"})  # a user's folder of the same pattern, in the inbox
    fill(jobs, {"watch-2020-01-01/results.csv": b"r", "2020-01-01/other": b"o", "watch-journal.sqlite": b"j"})
    return home, outside


def policy(home: Path, processed: int | None = 30, failed: int | None = 90) -> RetentionPolicy:
    return RetentionPolicy(home / "processed", home / "failed", processed, failed, protected=(home / "inbox", home / "jobs"))


def test_only_old_day_folders_go_and_the_dry_run_says_how_much(site):
    home, outside = site
    before = tree(home)
    dry = plan(policy(home), TODAY)
    assert [(f.kind, f.day.isoformat()) for f in dry.folders] == [
        ("failed", "2026-08-01"), ("processed", "2026-10-01"), ("processed", "2026-11-06")]
    assert (dry.files, dry.bytes) == (5, 100 + 50 + 1 + 7 + 2)
    assert dry.line() == "retention: 3 day folders would go (2026-08-01 to 2026-11-06, 5 files, 0.0 MB)"
    assert tree(home) == before  # a dry run removes nothing
    for folder in dry.folders:
        assert remove_tree(os.fspath(folder.path))[2]
    gone = {p for p in before if tuple(p.split("/")[:2]) in (
        ("processed", "2026-10-01"), ("processed", "2026-11-06"), ("failed", "2026-08-01"))}
    assert tree(home) == before - gone
    assert {"failed/2026-10-01/y.png", "processed/2026-11-07/d.png", "processed/2026-09-01", "processed/2026-09-02",
            "processed/notes/2020-01-01/i.png", "inbox/2020-01-01/user.png", "jobs/watch-2020-01-01/results.csv",
            "jobs/2020-01-01/other", "jobs/watch-journal.sqlite", "processed/2026-02-30/f.png"} <= tree(home)
    assert tree(outside) == {"precious.png"}  # the link's target is untouched


def test_by_default_nothing_goes(site):
    home, _ = site
    assert plan(policy(home, None, None), TODAY).folders == ()
    assert not policy(home, None, None).active
    assert Operations().keep_processed is None and Operations().keep_failed is None


def test_a_day_with_files_still_to_move_and_a_folder_holding_the_inbox_stay(tmp_path):
    home = tmp_path
    fill(home / "processed", {"2026-01-01/a.png": b"a", "2026-01-02/b.png": b"b"})
    (home / "processed" / "2026-01-03" / "inbox").mkdir(parents=True)  # the inbox lives in an old-looking folder
    days = plan(RetentionPolicy(home / "processed", home / "failed", 30, None,
                                protected=(home / "processed" / "2026-01-03" / "inbox", home / "jobs")),
                TODAY, skip_days={"2026-01-02"})
    assert [f.day.isoformat() for f in days.folders] == ["2026-01-01"]


def test_keep_periods_parse_and_bad_ones_are_one_clear_error():
    assert parse_keep("30d") == 30 and parse_keep("2w") == 14 and parse_keep("7") == 7 and parse_keep(45) == 45
    assert parse_keep(None) is None and parse_keep("forever") is None and parse_keep("") is None
    for bad in ("0d", "-3d", "30m", "soon", "1.5d"):
        with pytest.raises(SettingsError, match="--keep-failed"):
            parse_keep(bad, "--keep-failed")


def test_removal_goes_to_any_depth_and_never_through_a_link(tmp_path):
    outside = fill(tmp_path / "outside", {"keep.png": b"k"})
    deep = tmp_path / "day"
    path = os.fspath(deep)
    os.mkdir(path)
    for i in range(1200):  # deeper than Python's recursion limit
        path = os.path.join(path, "d")
        os.mkdir(path)
    Path(path, "x.png").write_bytes(b"x")
    os.symlink(outside, os.path.join(deep, "link"))
    files, size, complete = remove_tree(os.fspath(deep))
    assert complete and (files, size) == (2, 1 + len(os.fsencode(outside)))
    assert not deep.exists() and tree(outside) == {"keep.png"}


def test_the_daemon_removes_old_day_folders_at_start(tmp_path, tiny_model, caplog):
    from batchclf.watch.daemon import Daemon, WatchOptions

    inbox, jobs, metrics = tmp_path / "inbox", tmp_path / "jobs", tmp_path / "batchclf.prom"
    inbox.mkdir()
    today = datetime.now(timezone.utc).date()
    old, recent = (today - timedelta(days=40)).isoformat(), (today - timedelta(days=2)).isoformat()
    fill(tmp_path / "processed", {f"{old}/a.png": b"a", f"{recent}/b.png": b"b", "mine/c.png": b"c"})
    fill(tmp_path / "failed", {f"{old}/d.png": b"d"})
    drop(inbox, "new.png", digit_bytes(1))
    with caplog.at_level(logging.INFO, logger="batchclf.watch"):
        assert Daemon(WatchOptions(inbox=inbox, out_dir=jobs, model=tiny_model, oneshot=True, settle=0, workers=0),
                      operations=Operations(metrics_file=metrics, keep_processed=30)).run() == 0
    assert tree(tmp_path / "processed") == {f"{recent}", f"{recent}/b.png", "mine", "mine/c.png", today.isoformat(),
                                            f"{today}/new.png"}
    assert tree(tmp_path / "failed") == {old, f"{old}/d.png"}  # --keep-failed not given: kept
    assert any(f"retention: removed {tmp_path / 'processed' / old} (1 files" in r.getMessage() for r in caplog.records)
    values = samples(metrics)
    assert values[("batchclf_retention_removed_folders_total", (("kind", "processed"),))] == 1
    assert values[("batchclf_retention_removed_files_total", (("kind", "processed"),))] == 1
    assert (jobs / "watch-journal.sqlite").is_file() and next(jobs.glob("watch-*/results.csv")).is_file()


# -- inbox folders ----------------------------------------------------------------------------------------


def test_an_emptied_inbox_folder_goes_after_its_grace_and_one_that_got_a_file_stays(tmp_path):
    inbox = tmp_path / "inbox"
    for folder in ("a/b", "c", "d"):
        (inbox / folder).mkdir(parents=True)
    (inbox / "c" / "new.png").write_bytes(b"arrived meanwhile")
    now = [0.0]
    wall = [os.stat(inbox / "a").st_mtime]
    pruner = InboxPruner(inbox, grace=60, clock=lambda: now[0], wall_clock=lambda: wall[0])
    pruner.emptied([os.fspath(inbox / "a" / "b"), os.fspath(inbox / "c"), os.fspath(inbox), os.fspath(tmp_path)])
    assert len(pruner) == 2  # never the inbox itself, nor anything outside it
    now[0], wall[0] = 59, wall[0] + 59
    assert pruner.prune() == 0 and (inbox / "a" / "b").is_dir()  # within the grace
    now[0], wall[0] = 61, wall[0] + 2
    assert pruner.prune() == 2  # a/b, then a (emptied by it)
    assert tree(inbox) == {"c", "c/new.png", "d"}  # d was never emptied by us: a user's empty folder stays
    assert inbox.is_dir()


def test_a_folder_changed_within_the_grace_waits(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "a").mkdir(parents=True)
    now = [100.0]
    pruner = InboxPruner(inbox, grace=60, clock=lambda: now[0], wall_clock=lambda: os.stat(inbox / "a").st_mtime + 5)
    pruner.emptied([os.fspath(inbox / "a")], due_now=True)
    assert pruner.prune() == 0 and (inbox / "a").is_dir() and len(pruner) == 1  # a file came and went 5 s ago


def test_the_daemon_removes_the_inbox_folders_it_emptied(tmp_path, tiny_model):
    from batchclf.watch.daemon import Daemon, WatchOptions

    inbox, jobs = tmp_path / "inbox", tmp_path / "jobs"
    for folder in ("scans/monday", "scans/tuesday", "empty"):
        (inbox / folder).mkdir(parents=True)
    drop(inbox / "scans" / "monday", "a.png", digit_bytes(1))
    drop(inbox / "scans" / "tuesday", "b.png", digit_bytes(2))
    (inbox / "scans" / "tuesday" / ".hidden").write_bytes(b"not ours to take or remove")
    assert Daemon(WatchOptions(inbox=inbox, out_dir=jobs, model=tiny_model, oneshot=True, settle=0, workers=0),
                  operations=Operations(inbox_folder_grace=0)).run() == 0
    assert tree(inbox) - {".batchclf-watch.lock"} == {"scans", "scans/tuesday", "scans/tuesday/.hidden", "empty"}
    assert tree(tmp_path / "processed") >= {f"{datetime.now(timezone.utc).date()}/scans/monday/a.png"}


def test_operations_come_from_settings_of_these_names_once_declared(tmp_path):
    """The daemon reads the new settings off its options by name: declaring them in settings.py is all it takes."""
    from types import SimpleNamespace

    from batchclf.metrics.drift import DriftSettings

    options = SimpleNamespace(metrics_file=str(tmp_path / "m.prom"), keep_processed="30d", keep_failed="12w",
                              drift_window=200, drift_factor=3.0, drift_margin=None, drift_confidence_drop=0.1)
    assert Operations.from_options(options) == Operations(
        metrics_file=tmp_path / "m.prom", keep_processed=30, keep_failed=84,
        drift=DriftSettings(window=200, factor=3.0, margin=0.02, confidence_drop=0.1))
    assert Operations.from_options(SimpleNamespace()) == Operations()  # today's options: everything off, drift on
    with pytest.raises(SettingsError, match="--keep-processed: expected days like 30d"):
        Operations.from_options(SimpleNamespace(keep_processed="30 days"))


def test_the_dry_run_for_service_status_reads_the_daemons_options(tmp_path):
    from types import SimpleNamespace

    from batchclf.watch.operations import retention_dry_run

    today = datetime.now(timezone.utc).date()
    old = (today - timedelta(days=100)).isoformat()
    fill(tmp_path / "processed", {f"{old}/a.png": b"a" * 1000, f"{today}/b.png": b"b"})
    fill(tmp_path / "failed", {f"{old}/c.png": b"c" * 10})
    options = SimpleNamespace(inbox=tmp_path / "inbox", out_dir=tmp_path / "jobs", processed_dir=None, failed_dir=None,
                              keep_processed="30d")
    dry = retention_dry_run(options)
    assert [(f.kind, f.day.isoformat(), f.files, f.bytes) for f in dry.folders] == [("processed", old, 1, 1000)]
    assert dry.line() == f"retention: 1 day folder would go ({old} to {old}, 1 file, 0.0 MB)"
    assert (tmp_path / "processed" / old / "a.png").is_file()  # nothing removed
    options.keep_processed = None
    assert retention_dry_run(options).line() == "retention: nothing to remove"


def test_start_does_not_wait_for_the_folders_earlier_runs_emptied(tmp_path, tiny_model, monkeypatch):
    """A huge inbox tree to prune must not hold back the first row: it is pruned in the retention thread."""
    import threading

    import batchclf.watch.daemon as daemon_module
    from batchclf.watch.daemon import Daemon, WatchOptions

    from .helpers import report_rows, running, wait_for

    inbox, jobs = tmp_path / "inbox", tmp_path / "jobs"
    (inbox / "monday").mkdir(parents=True)
    drop(inbox / "monday", "a.png", digit_bytes(1))
    # An earlier run empties monday/ and keeps it (it changed within its grace).
    assert Daemon(WatchOptions(inbox=inbox, out_dir=jobs, model=tiny_model, oneshot=True, settle=0, workers=0),
                  operations=Operations(inbox_folder_grace=3600)).run() == 0
    assert tree(inbox) - {".batchclf-watch.lock"} == {"monday"}

    monkeypatch.setattr(daemon_module, "PRUNE_EVERY", 600.0)  # the loop's own look at what it empties: not in this test
    entered, release = threading.Event(), threading.Event()
    real_prune = InboxPruner.prune

    def slow_prune(self, *args, **kwargs):  # a tree that takes as long as the test wants
        entered.set()
        assert release.wait(60)
        return real_prune(self, *args, **kwargs)

    monkeypatch.setattr(InboxPruner, "prune", slow_prune)
    daemon = Daemon(WatchOptions(inbox=inbox, out_dir=jobs, model=tiny_model, settle=0.1, max_latency=0.05, workers=0,
                                 rescan_interval=600), operations=Operations(inbox_folder_grace=0))
    try:
        with running(daemon):
            drop(inbox, "b.png", digit_bytes(2))
            wait_for(lambda: any(row["file"] == "b.png" for row in report_rows(jobs)), timeout=20,
                     what="b.png reported while the emptied folders are still being looked at")
            assert entered.is_set() and (inbox / "monday").is_dir()
            release.set()
            wait_for(lambda: not (inbox / "monday").exists(), timeout=20, what="monday/ pruned once let go")
    finally:
        release.set()
