"""Writing rendered units where systemd looks, creating the folders they name, and what to run next.

A unit already there with other contents is never overwritten without
``force``: it may hold a local edit.  The same contents are a no-op, so
running ``install`` twice is safe.  Nothing is written before every unit
has been checked, so a refusal leaves the system as it was.  Plan and
apply run under one lock on the destination folder (:func:`locked`), so two
installs at once never mix: the second sees the first's units.
"""

from __future__ import annotations

import fcntl
import os
import pwd
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from batchclf.atomic import write_text_atomic
from batchclf.errors import ServiceError
from batchclf.service.render import NIGHTLY_TIMER, WATCH_SERVICE, Deployment

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
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ServiceError(f"{dest}: cannot take the install lock ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
    return lines
