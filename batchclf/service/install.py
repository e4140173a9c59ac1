"""Writing rendered units where systemd looks, creating the folders they name, and what to run next.

A unit already there with other contents is never overwritten without
``force``: it may hold a local edit.  The same contents are a no-op, so
running ``install`` twice is safe.  Nothing is written before every unit
has been checked, so a refusal leaves the system as it was.  Plan and
apply run under one lock on the destination folder (:func:`locked`), so two
installs at once never mix: the second sees the first's units.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from batchclf.atomic import FolderLock, write_text_atomic
from batchclf.errors import ServiceError
from batchclf.service.render import NIGHTLY_SERVICE, NIGHTLY_TIMER, WATCH_SERVICE, Deployment

SYSTEM_UNITS = Path("/etc/systemd/system")


def user_units() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


@dataclass(frozen=True)
class Step:
    action: str  # "write", "unchanged", "replace" (with force) or "mkdir"
    path: Path

    def __str__(self) -> str:
        return f"{self.action:9} {self.path}"


@contextmanager
def locked(dest: Path):
    """Hold an exclusive lock on the folder ``dest`` (created when missing) while the caller plans and applies.

    Without it two installs at once each checked the units, then each wrote
    theirs: a changed unit overwritten without ``--force``, or a watch unit
    of one home beside a nightly unit of the other.  The lock is ``flock``
    on the folder itself, not on a lock file in it: nothing is left beside
    the units (``systemd-analyze verify`` of the folder, packaging), and the
    kernel releases it when the process dies, so a killed install blocks no one.
    """
    try:
        dest.mkdir(parents=True, exist_ok=True)
        lock = FolderLock(dest)
    except OSError as exc:
        raise ServiceError(f"{dest}: cannot take the install lock ({exc.strerror})") from None
    with lock:
        yield


def plan(units: dict[str, str], dest: Path, folders: list[Path], force: bool = False) -> list[Step]:
    """What installing would do; raises before anything is done if a changed unit is in the way."""
    steps = [Step("mkdir", folder) for folder in folders if not folder.is_dir()]
    changed = []
    for name, text in units.items():
        path = dest / name
        if not path.exists():
            steps.append(Step("write", path))
        elif path.read_text(encoding="utf-8", errors="replace") == text:
            steps.append(Step("unchanged", path))
        elif force:
            steps.append(Step("replace", path))
        else:
            changed.append(str(path))
    if changed:
        raise ServiceError(f"{', '.join(changed)}: already there with other contents; --force replaces it")
    return steps


def check_never_both(units: dict[str, str], dest: Path, inbox: Path) -> None:
    """Refuse a nightly run for an inbox a daemon unit in ``dest`` already serves, and the reverse.

    Both would take the one inbox lock (the nightly run then fails every
    night) and write one journal. A full install writes the nightly units
    beside the daemon's as the alternative to enable, so a nightly unit
    counts as a deployment of its own only when no daemon unit there serves
    the same inbox (it came from ``--nightly-only``).
    """
    inbox = Path(os.path.abspath(inbox))
    daemon, nightly = served_inbox(dest / WATCH_SERVICE), served_inbox(dest / NIGHTLY_SERVICE)
    if WATCH_SERVICE not in units and daemon == inbox:
        raise ServiceError(f"{dest / WATCH_SERVICE} already runs the daemon on {inbox}: a nightly timer for the same inbox "
                           "would fail on the daemon's inbox lock (never both); give the nightly run its own --home")
    if WATCH_SERVICE in units and nightly == inbox and daemon != inbox:
        raise ServiceError(f"{dest / NIGHTLY_SERVICE} already runs nightly on {inbox} (--nightly-only): a daemon on the "
                           "same inbox would make it fail on the inbox lock (never both); use another --home, or remove "
                           "the nightly units first")


def served_inbox(unit: Path) -> Path | None:
    """The inbox an installed unit's ``ExecStart=batchclf watch INBOX ...`` names; None when absent or not ours."""
    try:
        lines = unit.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("ExecStart="):
            try:
                argv = shlex.split(line[len("ExecStart="):])  # our quoting: plain words or C-escaped "..."
            except ValueError:
                return None
            if len(argv) > 2 and argv[1] == "watch" and not argv[2].startswith("-"):
                # Undo the unit escapes render._command adds ($$ for $, %% for %).
                return Path(os.path.abspath(argv[2].replace("$$", "$").replace("%%", "%")))
    return None


def ownership_fixes(d: Deployment, root: bool | None = None) -> list[str]:
    """For a system unit: the folders its user could not write, each as a warning, then the commands that fix them.

    Judged by owner, group and mode bits (not ACLs). A folder ``install``
    will create is fine when root runs it (it hands them to the user);
    otherwise it is created by whoever runs ``install``.
    """
    if d.user_unit:
        return []
    try:
        account = pwd.getpwnam(d.user)
    except KeyError:
        return []
    if account.pw_uid == 0:
        return []
    root = os.geteuid() == 0 if root is None else root
    groups = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if d.user in g.gr_mem}
    owner = f"{d.user}:{d.group}"
    chown, create, lines = [], [], []
    for folder in d.writable:
        try:
            info = os.stat(folder)
        except FileNotFoundError:
            if not root:
                lines.append(f"warning: {folder} does not exist yet and would not be {d.user}'s: the daemon could not write it")
                create.append(folder)
            continue
        except OSError:
            continue
        if not _writable_by(info, account.pw_uid, groups):
            lines.append(f"warning: {folder} is not writable by {d.user} (owner {_name(info)}, mode "
                         f"{stat.S_IMODE(info.st_mode):04o}): the daemon would fail on it")
            chown.append(folder)
    if chown:
        lines.append("fix: sudo chown " + owner + " " + " ".join(shlex.quote(str(f)) for f in chown))
    if create:
        lines.append(f"fix: sudo install -d -o {d.user} -g {d.group} " + " ".join(shlex.quote(str(f)) for f in create))
    return lines


def _writable_by(info: os.stat_result, uid: int, groups: set[int]) -> bool:
    if not stat.S_ISDIR(info.st_mode):
        return False
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IWUSR and info.st_mode & stat.S_IXUSR)
    if info.st_gid in groups:
        return bool(info.st_mode & stat.S_IWGRP and info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IWOTH and info.st_mode & stat.S_IXOTH)


def _name(info: os.stat_result) -> str:
    try:
        user = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        user = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return f"{user}:{group}"


def apply(steps: list[Step], units: dict[str, str], owner: str | None) -> None:
    """Carry out ``steps``; new folders go to ``owner`` when root creates them for a system unit."""
    for step in steps:
        if step.action in ("write", "replace"):
            write_text_atomic(step.path, units[step.path.name])
            os.chmod(step.path, 0o644)  # systemd warns about units others cannot read
        elif step.action == "mkdir":
            made = _missing_parents(step.path)
            step.path.mkdir(parents=True, exist_ok=True)
            if owner and os.geteuid() == 0:
                account = pwd.getpwnam(owner)
                for folder in made:
                    os.chown(folder, account.pw_uid, account.pw_gid)


def _missing_parents(folder: Path) -> list[Path]:
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing


def next_commands(d: Deployment, units: dict[str, str], dest: Path) -> list[str]:
    """The systemctl commands that put the installed units to work (comments start with '#')."""
    systemctl = "systemctl --user" if d.user_unit else "systemctl"
    standard = user_units() if d.user_unit else SYSTEM_UNITS
    lines = []
    if dest != standard:
        lines.append(f"# the units are in {dest}; systemd reads {standard}: copy or link them there first")
    lines.append(f"{systemctl} daemon-reload")
    if WATCH_SERVICE in units:
        lines.append(f"{systemctl} enable --now {WATCH_SERVICE}")
        lines.append(f"# or a nightly run instead of the daemon (never both on one inbox): {systemctl} enable --now {NIGHTLY_TIMER}")
    else:
        lines.append(f"{systemctl} enable --now {NIGHTLY_TIMER}")
    if d.user_unit:
        lines.append(f"loginctl enable-linger {pwd.getpwuid(os.geteuid()).pw_name}  # run without a login session")
    unit = WATCH_SERVICE if WATCH_SERVICE in units else NIGHTLY_TIMER
    journal = "journalctl --user" if d.user_unit else "journalctl"
    lines.append(f"# logs: {journal} -u {unit.replace('.timer', '.service')} -f; timers: {systemctl} list-timers")
    lines += metrics_hint(d)
    return lines


def metrics_hint(d: Deployment) -> list[str]:
    """How to point node_exporter's textfile collector at the units' metrics file."""
    folder = d.metrics_file.parent
    lines = [f"# metrics: {d.metrics_file}; point node_exporter at its folder: "
             f"node_exporter --collector.textfile.directory={shlex.quote(str(folder))}"]
    if not d.user_unit:
        lines.append(f"# the unit's UMask=0027 makes the file readable by group {d.group}, not by others: "
                     f"sudo usermod -aG {d.group} <node_exporter's user>")
    return lines
