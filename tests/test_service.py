"""systemd units rendered from the settings declaration, checked by systemd itself and run as systemd would.

No systemd runs here as PID 1, so the tests do what it would do: parse
``ExecStart=``, start that command with a real ``NOTIFY_SOCKET`` and
``WATCHDOG_USEC``, listen, send SIGTERM; and apply ``MemoryDenyWriteExecute=``
as systemd 252 does, with a seccomp filter.
"""

from __future__ import annotations

import os
import platform
import pwd
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchclf.cli import app
from batchclf.service import render
from batchclf.service.status import lock_holder
from batchclf.watch.lock import lock_path
from batchclf.watch.settings import SETTINGS, resolve

from .helpers import ME, directives, exec_argv, ink_digit, invoke, parse_printed, png_bytes, verify

runner = CliRunner()


# pytest's tmp_path lives under /tmp, which the units refuse: lifted for every test here (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("homes_in_pytest_tmp")


def install_units(tmp_path: Path, model: Path, *extra, dest="units") -> dict[str, str]:
    """``batchclf service install --dest``: the units written, by file name."""
    result = invoke("service", "install", "--home", tmp_path / "home", "--model", model, "--run-as", ME,
                    "--dest", tmp_path / dest, *extra)
    assert result.exit_code == 0, result.output
    return {path.name: path.read_text() for path in sorted((tmp_path / dest).iterdir())}


# -- rendering -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["system", "user"])
def test_systemd_analyze_verify_accepts_the_units(tmp_path, shipped_model, systemd_analyze, scope):
    extra = ["--user"] if scope == "user" else []
    units = install_units(tmp_path, shipped_model, *extra)
    assert set(units) == {"batchclf-watch.service", "batchclf-nightly.service", "batchclf-nightly.timer"}
    done = verify(systemd_analyze, tmp_path / "units", user=bool(extra))
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


def test_systemd_analyze_verify_would_catch_a_broken_unit(tmp_path, shipped_model, systemd_analyze):
    units = install_units(tmp_path, shipped_model, "--nightly-only")
    broken = units["batchclf-nightly.service"].replace(str(render.find_executable()), "/nonexistent/batchclf")
    (tmp_path / "units" / "batchclf-nightly.service").write_text(broken.replace("ProtectHome=", "ProtectHome=maybe"))
    done = verify(systemd_analyze, tmp_path / "units")
    assert done.returncode != 0 and "/nonexistent/batchclf" in done.stderr and "protect home" in done.stderr


def test_paths_with_spaces_and_percent_signs_survive_systemd_quoting(tmp_path, shipped_model, systemd_analyze):
    home = tmp_path / "scans 100% done"
    result = invoke("service", "install", "--home", home, "--model", shipped_model, "--run-as", ME, "--dest", tmp_path / "units")
    assert result.exit_code == 0, result.output
    done = verify(systemd_analyze, tmp_path / "units")
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr
    unit = (tmp_path / "units" / "batchclf-watch.service").read_text()
    argv = [arg.replace("%%", "%") for arg in exec_argv(unit)]  # systemd's specifier escape
    assert argv[2] == str(home / "inbox") and argv[argv.index("--home") + 1] == str(home)
    writable = shlex.split(directives(unit)["ReadWritePaths"][0].replace("%%", "%"))
    assert writable == [str(home / name) for name in ("inbox", "processed", "failed", "jobs", "metrics")]


def test_deny_write_execute_opt_in_verifies(tmp_path, shipped_model, systemd_analyze):
    units = install_units(tmp_path, shipped_model, "--deny-write-execute")
    for name in ("batchclf-watch.service", "batchclf-nightly.service"):
        found = directives(units[name])
        assert found["MemoryDenyWriteExecute"] == ["yes"] and found["Environment"] == ["TF_ENABLE_ONEDNN_OPTS=0"]
    assert verify(systemd_analyze, tmp_path / "units").returncode == 0
    assert "MemoryDenyWriteExecute" not in directives(install_units(tmp_path, shipped_model, dest="plain")["batchclf-watch.service"])


def unprivileged_user() -> str:
    """An account that is neither root nor nobody (systemd-analyze warns about nobody): what User= must stay."""
    for entry in sorted(pwd.getpwall(), key=lambda e: e.pw_uid):
        if 0 < entry.pw_uid < 65534 and entry.pw_name != "nobody":
            return entry.pw_name
    pytest.skip("no unprivileged account on this machine")


def security_user_line(systemd_analyze: str, unit: Path) -> str:
    """The User= line of ``systemd-analyze security --offline=true``: how systemd itself read the unit's identity."""
    done = subprocess.run([systemd_analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True, timeout=60)
    (line,) = [line for line in done.stdout.splitlines() if "User=/DynamicUser=" in line]
    return line


# Issue 23 point 4: a value ending in a backslash joined the next line (User=) into it, a trailing space was trimmed.
HOSTILE = [
    ("home", "home\\"), ("home", "home\\\\"), ("home", "home "), ("home", "home\t"), ("inbox", "in\\"), ("inbox", "in "),
    ("home", 'a\\b "q" $HOME %h ;é'), ("inbox", "x\\y $USER %i ' ;"),
]


@pytest.mark.parametrize("where, name", HOSTILE)
def test_hostile_paths_never_cost_the_units_their_user(tmp_path, shipped_model, systemd_analyze, where, name):
    user = unprivileged_user()
    home = tmp_path / name if where == "home" else tmp_path / "home"
    inbox = tmp_path / name if where == "inbox" else home / "inbox"
    result = invoke("service", "install", "--home", home, "--inbox", inbox, "--model", shipped_model, "--run-as", user,
                    "--dest", tmp_path / "units")
    if result.exit_code != 0:  # refused: one line, and nothing written or created
        assert result.exit_code == 1 and result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.output
        assert "cannot go into a unit file" in result.stderr
        assert not (tmp_path / "units").exists() and not home.exists() and not inbox.exists()
        return
    done = verify(systemd_analyze, tmp_path / "units")
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr
    for service in ("batchclf-watch.service", "batchclf-nightly.service"):
        unit = tmp_path / "units" / service
        for text in unit.read_text().splitlines():  # systemd.syntax(7): what would make systemd read another value
            trailing = len(text) - len(text.rstrip("\\"))
            assert trailing % 2 == 0, f"{text!r} continues onto the next line"
            assert text.startswith("#") or text == text.strip(" \t"), f"{text!r}: systemd trims the value"
        line = security_user_line(systemd_analyze, unit)
        assert line.startswith("✓") and "non-root" in line, line
        found = directives(unit.read_text())
        assert found["User"] == [user] and found["WorkingDirectory"] == [str(home).replace("%", "%%")]
        assert found["Description"][0].endswith(str(inbox).replace("%", "%%") + ("" if service == "batchclf-watch.service" else ", then exit"))
        argv = [arg.replace("$$", "$").replace("%%", "%") for arg in exec_argv(unit.read_text())]
        assert argv[2] == str(inbox) and argv[argv.index("--home") + 1] == str(home)


def test_paths_are_absolute_and_exec_start_is_the_installed_executable(tmp_path, shipped_model):
    units = install_units(tmp_path, shipped_model)
    for name in ("batchclf-watch.service", "batchclf-nightly.service"):
        found = directives(units[name])
        argv = exec_argv(units[name])
        assert Path(argv[0]).is_absolute() and os.access(argv[0], os.X_OK) and Path(argv[0]).name == "batchclf"
        assert argv[0] == str(Path(sys.executable).parent / "batchclf")  # this venv's, not some other one on PATH
        assert argv[1] == "watch"
        paths = [a for a in argv[2:] if not a.startswith("--")] + found["WorkingDirectory"] + shlex.split(found["ReadWritePaths"][0])
        assert paths and all(Path(p).is_absolute() for p in paths), paths
        assert found["WorkingDirectory"] == [str(tmp_path / "home")]
        assert found["User"] == [ME] and found["Group"]


@pytest.mark.parametrize("name", ["batchclf-watch.service", "batchclf-nightly.service"])
def test_exec_start_flags_parse_with_the_real_cli_and_name_the_sandboxed_folders(tmp_path, shipped_model, name):
    unit = install_units(tmp_path, shipped_model)[name]
    argv = exec_argv(unit)
    for s in SETTINGS:  # every path setting is spelled out, through its declared flag
        assert s.type is not Path or s.positional or s.flag in argv
    result = runner.invoke(app, [*argv[1:], "--print-config"], env={"BATCHCLF_OUT": "/elsewhere"})
    assert result.exit_code == 0, result.output
    printed = parse_printed(result.stdout)
    home = tmp_path / "home"
    expected = {"inbox": home / "inbox", "out": home / "jobs", "processed": home / "processed",
                "failed": home / "failed", "model": shipped_model, "metrics_file": home / "metrics" / "batchclf.prom"}
    for key, path in expected.items():
        assert printed[key] == (str(path), "flag"), key  # flags win over the environment
    assert printed["oneshot"][0] is (name == "batchclf-nightly.service")
    writable = shlex.split(directives(unit)["ReadWritePaths"][0])
    assert directives(unit)["RequiresMountsFor"] == directives(unit)["ReadWritePaths"]
    assert sorted(writable) == sorted([*(str(expected[k]) for k in ("inbox", "processed", "failed", "out")), str(home / "metrics")])


def test_without_model_the_unit_follows_the_model_in_use(tmp_path, shipped_model):
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    shutil.copy(shipped_model, home / "models" / "next.keras")
    result = invoke("service", "install", "--home", home, "--run-as", ME, "--dest", tmp_path / "units")
    assert result.exit_code == 0, result.output
    argv = exec_argv((tmp_path / "units" / "batchclf-watch.service").read_text())
    assert "--model" not in argv and argv[argv.index("--home") + 1] == str(home)
    assert invoke("models", "use", "next", "--home", home).exit_code == 0  # what a restart then picks up
    printed = parse_printed(runner.invoke(app, [*argv[1:], "--print-config"]).stdout)
    assert printed["model"] == (str(home / "models" / "next.keras"), "default")


def test_user_unit_has_no_user_and_is_wanted_by_default_target(tmp_path, shipped_model):
    units = install_units(tmp_path, shipped_model, "--user")
    found = directives(units["batchclf-watch.service"])
    assert "User" not in found and "Group" not in found and found["WantedBy"] == ["default.target"]
    assert directives(install_units(tmp_path, shipped_model, dest="system")["batchclf-watch.service"])["WantedBy"] == [
        "multi-user.target"
    ]


def test_timer_time_and_nightly_only(tmp_path, shipped_model):
    units = install_units(tmp_path, shipped_model, "--at", "23:15", "--nightly-only")
    assert set(units) == {"batchclf-nightly.service", "batchclf-nightly.timer"}
    timer = directives(units["batchclf-nightly.timer"])
    assert timer["OnCalendar"] == ["*-*-* 23:15:00"] and timer["Persistent"] == ["true"] and timer["RandomizedDelaySec"]
    service = directives(units["batchclf-nightly.service"])
    assert service["Type"] == ["oneshot"] and exec_argv(units["batchclf-nightly.service"])[-1] == "--oneshot"
    default = directives(install_units(tmp_path, shipped_model, dest="default")["batchclf-nightly.timer"])
    assert default["OnCalendar"] == ["*-*-* 02:00:00"]
    for bad in ("25:00", "2am", "02:60"):
        result = invoke("service", "print", "--at", bad, "--home", tmp_path)
        assert result.exit_code == 1 and result.stderr.startswith("Error: --at") and result.stderr.count("\n") == 1


def test_watch_service_directives(tmp_path, shipped_model):
    found = directives(install_units(tmp_path, shipped_model)["batchclf-watch.service"])
    expected = {
        "Type": "notify", "Restart": "on-failure", "KillMode": "mixed", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
        "PrivateTmp": "yes", "PrivateNetwork": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes", "RestrictAddressFamilies": "AF_UNIX", "LockPersonality": "yes",
        "SystemCallFilter": "@system-service",
    }
    assert {key: found[key] for key in expected} == {key: [value] for key, value in expected.items()}
    assert int(found["WatchdogSec"][0]) >= 10 and int(found["TimeoutStopSec"][0]) >= 60
    assert found["ProtectHome"][0] in ("yes", "read-only")


def test_protect_home_hides_homes_unless_the_deployment_lives_there(tmp_path, shipped_model, monkeypatch):
    deployment = render.deployment(resolve({"model": shipped_model}, home=tmp_path / "srv", environ={}), run_as=ME)
    monkeypatch.setattr(render, "HOME_ROOTS", (tmp_path / "homes",))
    assert directives(render.render(deployment)["batchclf-watch.service"])["ProtectHome"] == ["yes"]
    monkeypatch.setattr(render, "HOME_ROOTS", (tmp_path,))
    assert directives(render.render(deployment)["batchclf-watch.service"])["ProtectHome"] == ["read-only"]


def test_unknown_run_as_user_is_one_error_line(tmp_path):
    result = invoke("service", "print", "--run-as", "no-such-user-here", "--home", tmp_path)
    assert result.exit_code == 1 and result.stderr == "Error: no user 'no-such-user-here' on this machine (--run-as)\n"


# -- install ---------------------------------------------------------------------------------------


def test_install_writes_units_creates_folders_and_prints_systemctl(tmp_path, shipped_model):
    args = ["service", "install", "--home", tmp_path / "home", "--model", shipped_model, "--run-as", ME,
            "--dest", tmp_path / "units"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    for folder in ("inbox", "processed", "failed", "jobs"):
        assert (tmp_path / "home" / folder).is_dir()
    assert "systemctl daemon-reload" in first.stdout and "systemctl enable --now batchclf-watch.service" in first.stdout
    again = invoke(*args)
    assert again.exit_code == 0 and again.stdout.count("unchanged") == 3 and "write " not in again.stdout


def test_install_refuses_to_overwrite_a_changed_unit_without_force(tmp_path, shipped_model):
    units = install_units(tmp_path, shipped_model)
    edited = tmp_path / "units" / "batchclf-watch.service"
    edited.write_text(units["batchclf-watch.service"] + "# a local edit\n")
    (tmp_path / "units" / "batchclf-nightly.timer").unlink()
    args = ["service", "install", "--home", tmp_path / "home", "--model", shipped_model, "--run-as", ME,
            "--dest", tmp_path / "units", "--at", "03:00"]
    refused = invoke(*args)
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1
    assert refused.stderr.startswith(f"Error: {edited}") and "--force" in refused.stderr
    assert edited.read_text().endswith("# a local edit\n")
    assert not (tmp_path / "units" / "batchclf-nightly.timer").exists()  # refused before writing anything
    forced = invoke(*args, "--force")
    assert forced.exit_code == 0 and "replace" in forced.stdout
    assert edited.read_text() == units["batchclf-watch.service"]
    assert "OnCalendar=*-*-* 03:00:00" in (tmp_path / "units" / "batchclf-nightly.timer").read_text()


def test_two_installs_at_once_never_mix_or_overwrite_units(tmp_path, shipped_model, monkeypatch):
    """Issue 23 point 9: plan + apply run under one lock, so of two installs of different homes one wins whole."""
    import typer

    from batchclf.cli.service import install
    from batchclf.service import install as installer

    checked = installer.plan

    def slow_plan(*args, **kwargs):
        steps = checked(*args, **kwargs)
        time.sleep(0.01)  # widen the window between one install's check and its writes
        return steps

    monkeypatch.setattr(installer, "plan", slow_plan)

    def one(dest: Path, home: Path) -> int:
        try:
            install(inbox=None, home=home, model=shipped_model, config=None, user=False, run_as=ME, at="02:00",
                    nightly_only=False, deny_write_execute=False, dest=dest, dry_run=False, force=False)
        except typer.Exit as exc:
            return exc.exit_code
        return 0

    for trial in range(20):
        dest = tmp_path / f"units-{trial}"
        homes = [tmp_path / f"home-{trial}-a", tmp_path / f"home-{trial}-b"]
        with ThreadPoolExecutor(2) as pool:
            codes = list(pool.map(one, [dest, dest], homes))
        assert sorted(codes) == [0, 1], (trial, codes)  # the second saw the first's units and refused them
        winner, loser = homes[codes.index(0)], homes[codes.index(1)]
        written = {path.name: path.read_text() for path in dest.iterdir()}
        assert set(written) == {"batchclf-watch.service", "batchclf-nightly.service", "batchclf-nightly.timer"}
        for name in ("batchclf-watch.service", "batchclf-nightly.service"):
            argv = exec_argv(written[name])
            assert argv[argv.index("--home") + 1] == str(winner) and str(loser) not in written[name], (trial, name)


def test_dry_run_changes_nothing(tmp_path, shipped_model):
    result = invoke("service", "install", "--home", tmp_path / "home", "--model", shipped_model, "--run-as", ME,
                    "--dest", tmp_path / "units", "--dry-run", "--user")
    assert result.exit_code == 0, result.output
    assert "would write" in result.stdout and "would mkdir" in result.stdout and "systemctl --user enable" in result.stdout
    assert not (tmp_path / "units").exists() and not (tmp_path / "home").exists()


# -- status ----------------------------------------------------------------------------------------


def hand_made_journal(path: Path, day: str) -> None:
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE files (id INTEGER PRIMARY KEY, path TEXT, size INTEGER, mtime_ns INTEGER, sha256 TEXT, status TEXT,"
        " day TEXT, first_row TEXT, move_to TEXT, moved INTEGER DEFAULT 0, reason TEXT);"
        "CREATE TABLE rows (seq INTEGER PRIMARY KEY, day TEXT, status TEXT, label INTEGER, first_page INTEGER, row TEXT);"
    )
    files = [("old.png", "ok", "2026-01-01", None, 0), ("a.png", "ok", day, "/p/a.png", 1), ("b.png", "failed", day, "/f/b.png", 1)]
    for name, status, file_day, move_to, moved in files:
        db.execute("INSERT INTO files (path, size, mtime_ns, status, day, move_to, moved) VALUES (?, 1, 1, ?, ?, ?, ?)",
                   (name, status, file_day, move_to, moved))
        db.execute("INSERT INTO rows (day, status, first_page, row) VALUES (?, ?, 1, ?)",
                   (file_day, status, f'{{"file": "{name}", "processed_at": "{file_day}T10:00:00Z"}}'))
    db.commit()
    db.close()


def test_status_sees_the_lock_holder_and_reads_the_journal(tmp_path):
    from datetime import datetime, timezone

    from batchclf.service.status import status

    home = tmp_path / "home"
    (home / "inbox").mkdir(parents=True)
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    hand_made_journal(home / "jobs" / "watch-journal.sqlite", day)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from batchclf.watch.lock import InboxLock; "
         "InboxLock(sys.argv[1], sys.argv[2]).acquire(); print('locked', flush=True); sys.stdin.read()",
         str(home / "inbox"), str(home / "jobs")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        running = invoke("service", "status", "--home", home)
        assert running.exit_code == 0, running.output
        assert f"running, pid {holder.pid}" in running.stdout
        assert f"today:   {day}: 2 files; rows failed 1, ok 1" in running.stdout
        assert f"last:    b.png (failed) at {day}T10:00:00Z, now /f/b.png" in running.stdout
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    stopped = status(resolve(home=home, environ={}))
    assert not stopped.running and stopped.pid == holder.pid  # the lock file still names the last daemon
    as_json = invoke("service", "status", "--home", home, "--json")
    assert '"running": false' in as_json.stdout and '"files_today": 2' in as_json.stdout


def test_status_of_an_inbox_never_watched(tmp_path):
    result = invoke("service", "status", "--inbox", tmp_path / "inbox", "--home", tmp_path)
    assert result.exit_code == 0, result.output
    assert "never started on this inbox" in result.stdout and "no journal yet" in result.stdout


# -- the daemon as systemd starts it ---------------------------------------------------------------


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from /proc (children of children too)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


class NotifySocket:
    """The socket systemd listens on for a Type=notify service."""

    def __init__(self):
        self.folder = tempfile.mkdtemp(prefix="notify-")  # short: AF_UNIX paths stop at 108 bytes
        self.path = os.path.join(self.folder, "notify")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.received: list[tuple[float, str]] = []

    def wait_for(self, field: str, timeout: float, proc: subprocess.Popen) -> float:
        """When the next message carrying ``field`` arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.socket.settimeout(0.5)
            try:
                message = self.socket.recv(65536).decode()
            except socket.timeout:
                if proc.poll() is not None:
                    break
                continue
            self.received.append((time.monotonic(), message))
            if field in message.split("\n"):
                return self.received[-1][0]
        raise AssertionError(f"no {field} within {timeout}s; got {[m for _, m in self.received]}")

    def close(self):
        self.socket.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def test_daemon_started_from_the_rendered_exec_start_speaks_sd_notify_and_leaves_no_worker(tmp_path, tiny_model):
    units = install_units(tmp_path, tiny_model)
    argv = exec_argv(units["batchclf-watch.service"])
    inbox = tmp_path / "home" / "inbox"
    for i in range(6):  # already waiting: the daemon starts its decode workers at once
        (inbox / f"digit-{i}.png").write_bytes(png_bytes(ink_digit(60 + 10 * i)))
    notify = NotifySocket()
    log = open(tmp_path / "daemon.log", "w+")
    env = {**os.environ, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"}  # ping every 0.5 s
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(argv, cwd=directives(units["batchclf-watch.service"])["WorkingDirectory"][0],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        notify.wait_for("READY=1", 90, proc)
        deadline = time.monotonic() + 30
        while len(list((tmp_path / "home" / "processed").rglob("*.png"))) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = descendants(proc.pid)
        assert workers, "the daemon started no worker processes"
        pings = [notify.wait_for("WATCHDOG=1", 5, proc) for _ in range(3)]
        assert max(b - a for a, b in zip(pings, pings[1:])) < 1.0  # inside WatchdogSec/2 of the unit's 1 s here
        running = invoke("service", "status", "--home", tmp_path / "home")
        assert f"running, pid {proc.pid}" in running.stdout and ": 6 files; rows " in running.stdout, running.stdout
        proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1", 30, proc)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if alive(pid)], "worker processes outlived the daemon"
        assert lock_holder(lock_path(inbox, tmp_path / "home" / "jobs")) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
        log.seek(0)
        print(log.read()[-3000:])
        log.close()


# -- MemoryDenyWriteExecute= -----------------------------------------------------------------------

# systemd 252's MemoryDenyWriteExecute= (seccomp_memory_deny_write_execute): EPERM for mmap with
# PROT_WRITE|PROT_EXEC, for mprotect/pkey_mprotect adding PROT_EXEC, and for shmat with SHM_EXEC.
# The filter is installed with no_new_privs, then the unit's command is exec'd, workers inherit it.
DENY_WRITE_EXECUTE = r"""
import ctypes, os, struct, sys
LD, JEQ, JSET, AND, RET = 0x20, 0x15, 0x45, 0x54, 0x06
ALLOW, EPERM, X86_64 = 0x7FFF0000, 0x00050001, 0xC000003E
program = [(LD, 0, 0, 4), (JEQ, 0, "allow", X86_64), (LD, 0, 0, 0),
           (JEQ, "mmap", 0, 9), (JEQ, "mprotect", 0, 10), (JEQ, "mprotect", 0, 329), (JEQ, "shmat", 0, 30),
           (RET, 0, 0, ALLOW)]
labels = {}
for label, check in (("mmap", [(LD, 0, 0, 32), (AND, 0, 0, 6), (JEQ, "eperm", "allow", 6)]),
                     ("mprotect", [(LD, 0, 0, 32), (JSET, "eperm", "allow", 4)]),
                     ("shmat", [(LD, 0, 0, 32), (JSET, "eperm", "allow", 0o100000)]),
                     ("eperm", [(RET, 0, 0, EPERM)]), ("allow", [(RET, 0, 0, ALLOW)])):
    labels[label] = len(program)
    program += check
jump = lambda target, at: labels[target] - at - 1 if isinstance(target, str) else target
code = b"".join(struct.pack("HBBI", op, jump(jt, i), jump(jf, i), k) for i, (op, jt, jf, k) in enumerate(program))
buffer = ctypes.create_string_buffer(code)
class Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
if libc.prctl(22, 2, ctypes.byref(Program(len(program), ctypes.addressof(buffer))), 0, 0):  # SECCOMP_MODE_FILTER
    raise OSError(ctypes.get_errno(), "seccomp")
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("the filter let a writable+executable mapping through")
except OSError:
    pass
os.execv(sys.argv[1], sys.argv[1:])
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the seccomp filter spells x86_64 system call numbers")
def test_memory_deny_write_execute_breaks_onednn_and_the_opt_in_unit_runs(tmp_path, tiny_model):
    """Without --deny-write-execute the units leave it off, because TensorFlow then fails; with it, it works."""

    def rendered(name: str, *extra: str) -> tuple[list[str], dict]:
        base = tmp_path / name
        unit = install_units(base, tiny_model, "--nightly-only", *extra)["batchclf-nightly.service"]
        (base / "home" / "inbox" / "digit.png").write_bytes(png_bytes(ink_digit()))
        env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
        env.update(value.split("=", 1) for value in directives(unit).get("Environment", []))
        return exec_argv(unit), env

    def under_the_filter(argv: list[str], env: dict) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", DENY_WRITE_EXECUTE, *argv], env=env,
                              capture_output=True, text=True, timeout=180)

    runs = [rendered("plain"), rendered("opted", "--deny-write-execute")]  # CliRunner is not thread-safe
    with ThreadPoolExecutor(2) as both:  # two TensorFlow start-ups side by side
        plain, opted = both.map(lambda run: under_the_filter(*run), runs)
    assert plain.returncode != 0 and "could not create a primitive" in plain.stderr, plain.stderr[-2000:]
    assert opted.returncode == 0, opted.stderr[-2000:]
    assert list((tmp_path / "opted" / "home" / "processed").rglob("digit.png"))
