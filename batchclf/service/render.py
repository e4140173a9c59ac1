"""The shipped unit templates filled in with one deployment's absolute paths.

The daemon's folders come from :func:`batchclf.watch.settings.resolve`, the
same resolution ``batchclf watch`` runs, and reach ``ExecStart=`` as the
declared flags.  Only paths go on the command line: the sandbox's
``ReadWritePaths=`` must name the very folders the daemon writes, while
tunables (``max_batch``, ``settle``...) stay in the config file, where an
edit takes effect at the next restart without re-rendering.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

import batchclf
from batchclf.errors import ServiceError
from batchclf.watch.settings import BY_FIELD, CONFIG_NAME, DEFAULT, SETTINGS, Effective

WATCH_SERVICE = "batchclf-watch.service"
NIGHTLY_SERVICE = "batchclf-nightly.service"
NIGHTLY_TIMER = "batchclf-nightly.timer"
DEFAULT_AT = "02:00"

# The folders the daemon writes, in the order ReadWritePaths= names them (then the metrics file's folder).
WRITABLE = ("inbox", "processed_dir", "failed_dir", "out_dir")
# Paths ExecStart= always names: what the sandbox must name too.
PINNED = (*WRITABLE, "metrics_file")
# Where the units put the Prometheus text file unless the settings name one (node_exporter reads the folder).
METRICS_FOLDER, METRICS_NAME = "metrics", "batchclf.prom"

# PrivateTmp=yes gives the service empty private ones: a deployment path under them is invisible to the daemon.
PRIVATE_TMP = (Path("/tmp"), Path("/var/tmp"))

# The NVIDIA driver's control node: on a machine that has it, device = auto means the GPU.
NVIDIA_CTL = Path("/dev/nvidiactl")

# ProtectHome=yes hides these; a deployment that lives under one of them needs "read-only".
HOME_ROOTS = (Path("/home"), Path("/root"), Path("/run/user"))

PRIVATE_DEVICES = """\
# No physical devices: a private /dev with only null, zero, random, the pseudo TTYs and shared memory.
PrivateDevices=yes"""
GPU_DEVICES = """\
# Rendered for a GPU (device = gpu, or auto on a machine with /dev/nvidiactl): PrivateDevices=yes would
# hide /dev/nvidia*, so the device list is closed instead, except for the NVIDIA nodes.
DevicePolicy=closed
DeviceAllow=char-nvidia-frontend rw
DeviceAllow=char-nvidia-uvm rw
DeviceAllow=char-nvidia-caps r"""
SYSTEM_ONLY = """\
# Other users' processes are invisible in /proc.
ProtectProc=invisible
${proc_subset}
# SysV and POSIX IPC objects the service user leaves behind (decode workers' semaphores) go when it stops.
RemoveIPC=yes"""
USER_ONLY = """\
# ProtectProc=, ProcSubset= and RemoveIPC= work only in system units: left out of this user unit."""

MDWE_OFF = """\
# MemoryDenyWriteExecute= stays off: TensorFlow's oneDNN kernels are generated at run time into
# writable+executable memory, so with it the first convolution fails. See docs/deployment.md."""
MDWE_ON = """\
# MemoryDenyWriteExecute=yes forbids writable+executable memory, which TensorFlow's oneDNN kernels
# are generated into: oneDNN is switched off, and inference is a fifth to a half slower.
MemoryDenyWriteExecute=yes
Environment=TF_ENABLE_ONEDNN_OPTS=0"""


@dataclass(frozen=True)
class Deployment:
    """Everything a unit names: the daemon's folders, its executable, who runs it, and when the nightly run is."""

    effective: Effective
    executable: Path
    user: str | None  # None: a user unit (systemctl --user), which runs as its owner
    group: str | None
    at: str = DEFAULT_AT
    deny_write_execute: bool = False
    gpu: bool = False  # rendered for a GPU: the NVIDIA device nodes stay reachable

    @property
    def user_unit(self) -> bool:
        return self.user is None

    def path(self, field: str) -> Path:
        if field == "metrics_file":
            return self.metrics_file
        return self.effective.values[field].value

    @property
    def metrics_file(self) -> Path:
        """The settings' metrics file, else ``<home>/metrics/batchclf.prom``: a service always writes one."""
        chosen = self.effective.values["metrics_file"].value
        return chosen if chosen is not None else self.effective.home / METRICS_FOLDER / METRICS_NAME

    @property
    def writable(self) -> list[Path]:
        """The folders the daemon writes: exactly what the sandbox leaves writable (and ``install`` creates)."""
        folders = [self.path(f) for f in WRITABLE] + [self.metrics_file.parent]
        return list(dict.fromkeys(folders))

    @property
    def readable(self) -> list[Path]:
        """What the daemon must at least read: its folders, model, config, interpreter and code."""
        code = [self.executable, Path(sys.prefix), Path(sys.base_prefix), Path(batchclf.__file__).parent]
        config = [self.effective.config] if self.effective.config else []
        return [self.effective.home, *self.writable, self.path("model"), *config, *code]


def deployment(effective: Effective, *, user_unit: bool = False, run_as: str | None = None, at: str = DEFAULT_AT,
               deny_write_execute: bool = False) -> Deployment:
    """A deployment of the settings ``effective``; a system unit runs as ``run_as`` (default: whoever asked)."""
    user = group = None
    if not user_unit:
        user = run_as or invoking_user()
        try:
            group = grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name
        except KeyError:
            raise ServiceError(f"no user {user!r} on this machine (--run-as)") from None
    d = Deployment(effective, find_executable(), user, group, check_time(at), deny_write_execute, for_gpu(effective))
    check_not_in_private_tmp(d)
    return d


def for_gpu(effective: Effective) -> bool:
    """Render for a GPU: ``device = gpu``, or ``auto`` (the default) on a machine with the NVIDIA driver loaded."""
    device = effective.values["device"].value
    return device == "gpu" or (device == "auto" and NVIDIA_CTL.exists())


def check_not_in_private_tmp(d: Deployment) -> None:
    """Refuse a deployment path under /tmp or /var/tmp: with PrivateTmp=yes the service sees empty ones there."""
    for path in d.readable:
        for shown in dict.fromkeys((Path(os.path.abspath(path)), Path(os.path.realpath(path)))):
            hidden = next((root for root in PRIVATE_TMP if _inside(shown, root)), None)
            if hidden is not None:
                raise ServiceError(f"{path}: under {hidden}, which the units' PrivateTmp=yes replaces with an empty "
                                   "folder of the service's own, so the daemon would not see it; use a folder under "
                                   "/srv or /var/lib")


def invoking_user() -> str:
    """The user behind the command: under sudo the one who ran sudo, not root."""
    if os.geteuid() == 0 and os.environ.get("SUDO_USER"):
        return os.environ["SUDO_USER"]
    return pwd.getpwuid(os.geteuid()).pw_name


def find_executable() -> Path:
    """The installed ``batchclf`` script: beside this interpreter (a venv's bin/), else on PATH."""
    beside = Path(os.path.abspath(sys.executable)).parent / "batchclf"
    for candidate in (beside, shutil.which("batchclf")):
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return Path(os.path.abspath(candidate))
    raise ServiceError(f"no batchclf executable beside {sys.executable} or on PATH; install batchclf into a venv first")


def check_time(at: str) -> str:
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", at)
    if not match:
        raise ServiceError(f"--at {at!r}: expected HH:MM, e.g. 02:00")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def exec_argv(d: Deployment, oneshot: bool = False) -> list[str]:
    """``batchclf watch`` with the folders spelled out absolute, through their declared flags.

    The written folders are always pinned: the sandbox names the same ones.
    A model is pinned only when chosen; by default the daemon takes the one
    ``<home>/models`` puts in use at each start, so ``batchclf models use``
    and a restart roll out a new model without rendering again.
    """
    argv = [str(d.executable), "watch"]
    for s in SETTINGS:
        chosen = d.effective.values[s.field].source != DEFAULT
        if s.type is Path and (s.field in PINNED or chosen):
            value = str(d.path(s.field))
            argv += [value] if s.positional else [s.flag, value]
    argv += ["--home", str(d.effective.home)]
    if d.effective.config and d.effective.config != d.effective.home / CONFIG_NAME:
        argv += ["--config", str(d.effective.config)]  # found elsewhere at render time: pin it
    if oneshot:
        argv.append(BY_FIELD["oneshot"].flag)
    return argv


def render(d: Deployment, nightly_only: bool = False) -> dict[str, str]:
    """Unit file name -> contents: the daemon's service (unless ``nightly_only``), the nightly service and timer."""
    protect_home, protect_home_why = _protect_home(d)
    read_write_paths = " ".join(_word(str(p)) for p in d.writable)
    common = {
        "version": unit_value(batchclf.__version__),
        "inbox": unit_value(str(d.path("inbox"))),
        "working_directory": unit_value(str(d.effective.home)),
        "identity": "" if d.user_unit else f"User={unit_value(d.user)}\nGroup={unit_value(d.group)}",
        "read_write_paths": read_write_paths,
        "sandbox": _fill("sandbox.in", {
            "read_write_paths": read_write_paths,
            "protect_home": protect_home,
            "protect_home_why": protect_home_why,
            "memory_deny_write_execute": MDWE_ON if d.deny_write_execute else MDWE_OFF,
            "devices": GPU_DEVICES if d.gpu else PRIVATE_DEVICES,
            "system_only": USER_ONLY if d.user_unit else Template(SYSTEM_ONLY).substitute(proc_subset=_proc_subset(d)),
        }).rstrip("\n"),
        "wanted_by": "default.target" if d.user_unit else "multi-user.target",
    }
    units = {}
    if not nightly_only:
        units[WATCH_SERVICE] = _fill(WATCH_SERVICE + ".in", {**common, "exec_start": _command(exec_argv(d))})
    units[NIGHTLY_SERVICE] = _fill(NIGHTLY_SERVICE + ".in", {**common, "exec_start": _command(exec_argv(d, oneshot=True))})
    units[NIGHTLY_TIMER] = _fill(NIGHTLY_TIMER + ".in", {**common, "at": unit_value(d.at), "on_calendar": unit_value(f"*-*-* {d.at}:00")})
    return units


def _proc_subset(d: Deployment) -> str:
    # TensorFlow and the decode workers run under subset=pid, and the daemon reads its mount table from
    # /proc/self/mounts, which stays visible; CUDA reads /proc/driver/nvidia, which it would hide.
    if d.gpu:
        return "# ProcSubset=pid is not set: CUDA reads /proc/driver/nvidia, which it hides."
    return "ProcSubset=pid"


def _protect_home(d: Deployment) -> tuple[str, str]:
    under = sorted({str(root) for root in HOME_ROOTS for path in d.readable if _inside(path, root)})
    if under:
        return "read-only", (f"# read-only, not yes: part of this deployment lives under {', '.join(under)}, which yes would hide.\n"
                             "# ReadWritePaths= above stay writable; deploy under /srv or /opt to hide home folders entirely.")
    return "yes", "# Home folders are hidden: nothing of this deployment lives under /home, /root or /run/user."


def _inside(path: Path, root: Path) -> bool:
    path = Path(os.path.abspath(path))
    return path == root or root in path.parents


def _fill(template: str, values: dict[str, str]) -> str:
    """A shipped template with ``values``; a line that was only a placeholder and came out empty is dropped."""
    text = resources.files("batchclf.service").joinpath("units", template).read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines():
        filled = Template(line).substitute(values)
        if filled or not re.fullmatch(r"\$\{\w+\}", line.strip()):
            lines.append(filled)
    return "\n".join(lines) + "\n"


def _command(argv: list[str]) -> str:
    # ExecStart= expands $VAR as well as %-specifiers: escape both.
    return " ".join(_word(arg).replace("$", "$$") for arg in argv)


def _word(arg: str) -> str:
    """One word of a systemd list setting: plain if it can be, else double-quoted with C escapes."""
    arg = unit_value(arg)
    if re.fullmatch(r"[\w./:@+=,%-]+", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit_value(text: str) -> str:
    """Every value written into a unit passes here: refused unless systemd reads it back as written; ``%`` escaped.

    systemd.syntax(7): a line ending in a backslash is joined with the next
    one (a ``--home`` ending in ``\\`` swallowed the ``User=`` line below
    ``WorkingDirectory=``, and the service ran as root), and spaces around a
    value are trimmed.  Plain settings (``WorkingDirectory=``,
    ``Description=``, ``User=``) have no quoting to protect either, so such a
    value is refused with one line, as are control characters (a line break
    starts a new directive) and text that is not UTF-8, which systemd ignores.
    List and command words are quoted on top of this by :func:`_word`.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ServiceError(f"{text!r}: not UTF-8, which a unit file must be; rename it") from None
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise ServiceError(f"{text!r}: a line break or other control character cannot go into a unit file; rename it")
    if text.endswith("\\"):
        raise ServiceError(f"{text!r}: a path ending in a backslash cannot go into a unit file "
                           "(systemd would join the next line to it); rename it")
    if text != text.strip(" "):
        raise ServiceError(f"{text!r}: a path starting or ending with a space cannot go into a unit file "
                           "(systemd would trim it); rename it")
    return text.replace("%", "%%")
