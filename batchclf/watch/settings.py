"""The daemon's settings, declared once: the fields of :class:`WatchOptions`.

Each setting is a dataclass field carrying its help text, its limits and
its user-facing name.  From that one declaration come

- the ``batchclf watch`` flags (``--max-batch``; see ``batchclf.cli.watch``),
- the environment (``BATCHCLF_MAX_BATCH``),
- the config file keys (``max_batch = 128`` in TOML),
- the flags the rendered systemd units pass (``batchclf.service.units``).

:func:`parameters` turns them into click parameters (typer's click), and click
merges the sources: flag > environment (the setting's variable) > config file
(the context's ``default_map``) > default; ``ctx.get_parameter_source`` says
which one won (:func:`effective`).  ``batchclf watch`` parses with them, and
:func:`resolve` feeds them values for every other caller (``service``, tests).
The config file is ``--config``, else ``$BATCHCLF_CONFIG``, else
``<home>/batchclf.toml`` when it exists.  Nothing here imports TensorFlow.
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import os
import stat
import tomllib
import types
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Callable, Mapping, Optional, get_type_hints

import typer
import typer.core
import typer.main

from batchclf import paths
from batchclf.errors import SettingsError
from batchclf.limits import (
    MAX_BATCH, MAX_DRIFT_FACTOR, MAX_DRIFT_WINDOW, MAX_FILE_MB, MAX_INPUT_SCALE, MAX_PAGES, MAX_SECONDS, MAX_TARGET_ERROR,
    MAX_WORKERS, MIN_TARGET_ERROR, Share,
)
from batchclf.watch.retention import parse_keep

ENV_PREFIX = "BATCHCLF_"
CONFIG_ENV = "BATCHCLF_CONFIG"
CONFIG_NAME = "batchclf.toml"
# A settings file is a few hundred bytes: anything past this is not one (or is /dev/zero).
MAX_CONFIG_BYTES = 1 << 20

FLAG, ENV, CONFIG, DEFAULT = "flag", "env", "config", "default"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def setting(default=MISSING, *, help: str, name: str | None = None, minimum: float | None = None,
            maximum: float | None = None, choices: tuple[str, ...] = (), positional: bool = False,
            derive: Callable[[Path, dict], Path] | None = None, derived: str = "",
            validate: Callable[[object, str], object] | None = None):
    """A :class:`WatchOptions` field that users can set.

    ``name`` is the config key and gives the flag and the variable (default:
    the field name); ``derive(home, chosen)`` computes a path default from
    the home and the settings resolved before it, described by ``derived``;
    ``validate(value, where)`` checks a value in words a range cannot say
    (raising :class:`SettingsError` naming ``where``), in the one check
    every source passes (:func:`_checked`).
    """
    spec = dict(help=help, name=name, minimum=minimum, maximum=maximum, choices=choices, positional=positional,
                derive=derive, derived=derived, validate=validate)
    return field(default=default, metadata={"setting": spec})


@dataclass
class WatchOptions:
    inbox: Path = setting(help="Folder to watch.", positional=True,
                          derive=lambda home, _: paths.inbox_dir(home), derived="<home>/inbox")
    out_dir: Path = setting(name="out", help="Folder for the daily job folders and the journal.",
                            derive=lambda home, _: paths.jobs_dir(home), derived="<home>/jobs")
    model: Path = setting(help="A .keras model.", derive=lambda home, _: paths.default_model(home),
                          derived="<home>/models/default.keras, else the shipped one")
    # 32, not 64: on ~300 px scans smaller batches keep decoding and the model overlapping (bench-watch --files scans:
    # 0.81-0.86 of classify at 32, 0.74-0.79 at 64); on 28x28 digits it costs ~4% of the burst rate.
    max_batch: int = setting(32, minimum=1, maximum=MAX_BATCH, help="Send a batch to the model at this many files...")
    max_latency: float = setting(0.5, minimum=0.0, maximum=MAX_SECONDS,
                                 help="...or when the oldest file has waited this long (s).")
    settle: float = setting(1.0, minimum=0.0, maximum=MAX_SECONDS, help="A file is taken after this long with no change (s).")
    polling: bool = setting(False, help="Poll instead of inotify (automatic on NFS/SMB/FUSE).")
    poll_interval: float = setting(1.0, minimum=0.05, maximum=MAX_SECONDS, help="Seconds between polls.")
    oneshot: bool = setting(False, help="Process what is in the inbox now, then exit.")
    keep: bool = setting(False, help="Leave files in the inbox (the journal prevents reprocessing).")
    create: bool = setting(False, help="Create the inbox when it is missing (otherwise a missing inbox is an error: a mistyped path).")
    rescan_interval: float = setting(60.0, name="rescan", minimum=0.1, maximum=MAX_SECONDS,
                                     help="Seconds between full rescans that catch lost events.")
    workers: int | None = setting(None, minimum=0, maximum=MAX_WORKERS, help="Decode worker processes (unset: one per CPU; 0 = in-process).")
    # The same per-file caps as classify's (batchclf.scan.decode.Limits): one consume path, one set of limits.
    max_pages: int | None = setting(None, minimum=1, maximum=MAX_PAGES, help="Refuse files with more pages than this (unset: 1000).")
    max_file_mb: int | None = setting(None, minimum=1, maximum=MAX_FILE_MB,
                                      help="Refuse files larger than this many MB (unset: 256).")
    device: str = setting("auto", choices=("auto", "cpu", "gpu"), help="auto (GPU when TensorFlow sees one), cpu or gpu.")
    # Not a setting: the compiled batch follows max_batch, so a 32-file batch never pays for 256 padded images.
    batch_size: int | None = None
    input_scale: float | None = setting(None, minimum=1.0, maximum=MAX_INPUT_SCALE,
                                        help="255 for a model trained on raw 0-255 pixels (unset: the model card's, else 1).")
    detector: str = setting("auto", help="The not-a-digit detector: a .keras file, auto or off.",
                            derive=lambda home, _: str(paths.default_detector(home) or "off"),
                            derived="<home>/models/detectors/not-a-digit.keras, else the shipped one, else off")
    review_below: float | None = setting(None, minimum=0.0, maximum=1.0,
                                         help="Mark rows below this confidence 'review' (unset: the model card's).")
    target_error: Share | None = setting(None, minimum=MIN_TARGET_ERROR, maximum=MAX_TARGET_ERROR,
                                         help="At most this share of ok rows wrong, e.g. 0.2%: the review threshold "
                                              "from the card's error-vs-coverage curve (instead of --review-below).")
    processed_dir: Path | None = setting(None, name="processed", help="Where reported files go.",
                                         derive=lambda _, chosen: chosen["inbox"].parent / "processed",
                                         derived="processed/ beside the inbox")
    failed_dir: Path | None = setting(None, name="failed", help="Where broken files go.",
                                      derive=lambda _, chosen: chosen["inbox"].parent / "failed",
                                      derived="failed/ beside the inbox")
    # Operations (batchclf.watch.operations.Operations.from_options reads these by name).
    metrics_file: Path | None = setting(None, help="Write Prometheus metrics here (node_exporter's textfile collector; "
                                                   "a *.prom file), at most every 5 s and at exit (unset: none).")
    keep_processed: str | None = setting(None, validate=parse_keep,
                                         help="Remove processed/YYYY-MM-DD folders older than this: 30d, 12w, 30 (days) "
                                              "or forever (unset: keep everything).")
    keep_failed: str | None = setting(None, validate=parse_keep,
                                      help="Remove failed/YYYY-MM-DD folders older than this: 30d, 12w, 30 (days) "
                                           "or forever (unset: keep everything).")
    drift_window: int = setting(500, minimum=0, maximum=MAX_DRIFT_WINDOW,
                                help="Drift warning over the last this many labelled rows (0 = off).")
    drift_factor: float = setting(2.0, minimum=1.0, maximum=MAX_DRIFT_FACTOR,
                                  help="Drift when the review share is above this times the baseline's...")
    drift_margin: float = setting(0.02, minimum=0.0, maximum=1.0,
                                  help="...and at least this much above it (0.02 = 2 points).")
    drift_confidence_drop: float = setting(0.05, minimum=0.0, maximum=1.0,
                                           help="Drift also when the mean confidence is this far below the baseline's.")
    # Not a setting: how often the counts reach the log and systemd's STATUS= (tests shorten it).
    status_interval: float = 60.0
    # Not a setting: the home the settings were resolved against, so "auto" (a detector) means the home's.
    home: Path | None = None


@dataclass(frozen=True)
class Setting:
    """One user-settable field of :class:`WatchOptions`, with every name it goes by."""

    field: str
    name: str
    type: type  # Path, int, float, bool or str
    default: object  # MISSING when derived; None means "unset" (the daemon picks)
    help: str
    minimum: float | None
    maximum: float | None
    choices: tuple[str, ...]
    positional: bool
    derive: Callable[[Path, dict], Path] | None
    derived: str
    validate: Callable[[object, str], object] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def default_text(self) -> str:
        if self.derive is not None:
            return self.derived
        if self.default is None:
            return "unset"
        return _toml_value(self.default)


def _declared() -> tuple[Setting, ...]:
    hints = get_type_hints(WatchOptions)
    out = []
    for f in fields(WatchOptions):
        spec = f.metadata.get("setting")
        if spec is None:
            continue
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # ``int | None``
            (kind,) = [arg for arg in kind.__args__ if arg is not type(None)]
        out.append(Setting(field=f.name, name=spec["name"] or f.name, type=kind, default=f.default,
                           help=spec["help"], minimum=spec["minimum"], maximum=spec["maximum"], choices=spec["choices"],
                           positional=spec["positional"], derive=spec["derive"], derived=spec["derived"],
                           validate=spec["validate"]))
    return tuple(out)


SETTINGS: tuple[Setting, ...] = _declared()
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
BY_FIELD: dict[str, Setting] = {s.field: s for s in SETTINGS}


# -- resolution ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    value: object
    source: str  # FLAG, ENV, CONFIG or DEFAULT


@dataclass
class Effective:
    """The settings a daemon would run with, and where each came from."""

    home: Path
    home_source: str
    config: Path | None  # the config file read, if any
    config_source: str
    values: dict[str, Value]  # by field name

    def options(self) -> WatchOptions:
        return WatchOptions(**{name: v.value for name, v in self.values.items()}, home=self.home)

    def describe(self) -> str:
        """The effective settings as a TOML config file, each line saying where its value came from."""
        config = f"{self.config} ({self.config_source})" if self.config else f"none ({self.config_source})"
        lines = [
            "# batchclf watch: effective settings (flag > env > config > default)",
            f"# home: {self.home} ({self.home_source})",
            f"# config: {config}",
        ]
        for s in SETTINGS:
            v = self.values[s.field]
            source = f"{ENV} {s.env}" if v.source == ENV else v.source
            if v.value is None:
                lines.append(f"# {s.name}: unset  # {source}")
            else:
                lines.append(f"{s.name} = {_toml_value(v.value)}  # {source}")
        return "\n".join(lines)


# -- resolution by click -------------------------------------------------------------------------
#
# Click (typer's) owns the precedence: a value from the command line (COMMANDLINE), else the setting's
# variable (ENVIRONMENT, per-option ``envvar``), else the config file (DEFAULT_MAP, the context's
# ``default_map``), else the default; ``ctx.get_parameter_source`` tells which one won.  The checks stay
# ours (one place, the same one-line errors): a value is converted by the function that knows its source.

_WHERE = "batchclf.settings.where"  # ctx.meta: (home, its source, config file, its source)
_ENVIRON = "batchclf.settings.environ"  # ctx.meta: the environment to read (default: os.environ)
_CONFIG_ERROR = "batchclf.settings.config_error"  # ctx.meta: why the config file could not be read
_SOURCES = {"COMMANDLINE": FLAG, "ENVIRONMENT": ENV, "DEFAULT_MAP": CONFIG}


def _source(ctx, name: str) -> str:
    found = ctx.get_parameter_source(name)
    return _SOURCES.get(found.name, DEFAULT) if found is not None else DEFAULT


def _reading_sources(kind: type) -> type:
    """A subclass of typer's parameter class ``kind`` that reads a setting's variable and the config file and checks
    what it gets.  A subclass of the same layout, so the parameters typer built can take it on."""

    class Sourced(kind):

        @property
        def setting(self) -> Setting:
            return BY_FIELD[self.name]

        def value_from_envvar(self, ctx):
            text = ctx.meta.get(_ENVIRON, os.environ).get(self.setting.env)
            return text or None  # an empty variable is unset, as before; parsed as text by parse_text below

        def consume_value(self, ctx, opts):
            _read_config_once(ctx)  # --home and --config are eager, so they are known by now
            return super().consume_value(ctx, opts)

        def process_value(self, ctx, value):
            s = self.setting
            source = _source(ctx, self.name)
            if source != FLAG:
                _config_error(ctx)
            if value is None or source == DEFAULT:
                return super().process_value(ctx, value)
            if source == ENV:
                return parse_text(s, value, f"${s.env}")
            if source == CONFIG:
                return value  # load_config typed and checked it, naming the file and the key
            value = super().process_value(ctx, value)  # typer's own flag parsing: ranges, SHARE, paths
            _config_error(ctx)
            return None if value is None else _checked(s, _absolute(value) if s.type is Path else value, s.flag)

    Sourced.__name__ = Sourced.__qualname__ = f"Setting{kind.__name__}"
    return Sourced


def help_text(s: Setting) -> str:
    # Parentheses, not brackets: rich would read "[default: ...]" as markup and drop it.
    return f"{s.help} (default: {s.default_text()}; env {s.env}; config key {s.name})"


def _declaration(s: Setting) -> inspect.Parameter:
    """One setting as a typer parameter: its flag, help, limits, variable; default None = not given."""
    if s.positional:
        info = typer.Argument(help=help_text(s), metavar=s.name.upper(), show_default=False)
    elif s.type is bool:
        info = typer.Option(f"{s.flag}/--no-{s.flag[2:]}", metavar="", help=help_text(s), show_default=False)
    elif s.type is Share:  # "0.2%" as well as 0.002: click's float type would refuse the first
        info = typer.Option(s.flag, help=help_text(s), parser=Share, metavar="SHARE", show_default=False)
    else:
        info = typer.Option(s.flag, help=help_text(s), min=s.minimum, max=s.maximum, show_default=False)
    return inspect.Parameter(s.field, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[s.type], info])


def _settings_command() -> typer.core.TyperCommand:
    def watch(**_):
        """Every setting, declared for click by typer (its public route: a command of an app)."""

    watch.__signature__ = inspect.Signature([_declaration(s) for s in SETTINGS])
    app = typer.Typer(add_completion=False)
    app.command()(watch)
    return typer.main.get_command(app)


_SOURCED: dict[type, type] = {}


def parameters() -> list:
    """Fresh click parameters of every setting (a command owns its parameters), reading every source."""
    out = []
    for param in _settings_command().params:
        kind = type(param)
        if kind not in _SOURCED:
            _SOURCED[kind] = _reading_sources(kind)
        param.__class__ = _SOURCED[kind]
        out.append(param)
    return out


def _read_config_once(ctx: typer.Context) -> None:
    """Find the home and the config file, and make the file the context's ``default_map``.

    A config error waits (:func:`_config_error`) until click has parsed the flags: a bad flag is a usage
    error and is reported first, as when the file was read after parsing.
    """
    if _WHERE in ctx.meta:
        return
    environ = ctx.meta.get(_ENVIRON, os.environ)
    home_dir, home_source = _home(ctx.params.get("home"), environ)
    ctx.meta[_WHERE] = (home_dir, home_source, None, "")
    ctx.default_map = {}
    try:
        config_path, config_source = _config_path(ctx.params.get("config"), environ, home_dir)
        from_file = load_config(config_path) if config_path is not None else {}
    except SettingsError as exc:
        ctx.meta[_CONFIG_ERROR] = exc
        return
    ctx.default_map = {BY_NAME[name].field: value for name, value in from_file.items()}
    ctx.meta[_WHERE] = (home_dir, home_source, config_path, config_source)


def _config_error(ctx: typer.Context) -> None:
    if _CONFIG_ERROR in ctx.meta:
        raise ctx.meta[_CONFIG_ERROR]


def effective(ctx: typer.Context) -> Effective:
    """The settings a parsed context holds, each with the source click says it came from."""
    _read_config_once(ctx)
    _config_error(ctx)
    home_dir, home_source, config_path, config_source = ctx.meta[_WHERE]
    values: dict[str, Value] = {}
    chosen: dict[str, object] = {}
    for s in SETTINGS:
        source = _source(ctx, s.field)
        value = ctx.params.get(s.field)
        if source == FLAG and value is None:
            source = DEFAULT
        if source != DEFAULT:
            values[s.field] = Value(value, source)
        elif s.derive is not None:
            derived = s.derive(home_dir, chosen)
            values[s.field] = Value(_absolute(derived) if s.type is Path else derived, DEFAULT)
        else:
            values[s.field] = Value(s.default, DEFAULT)
        chosen[s.field] = values[s.field].value
    return Effective(home_dir, home_source, config_path, config_source, values)


def resolve(flags: Mapping[str, object] | None = None, *, home: Path | None = None, config: Path | None = None,
            environ: Mapping[str, str] | None = None) -> Effective:
    """The settings from flags given as values (by field name, None = not given), through the same click parameters.

    For callers that are not ``batchclf watch`` itself (``service print/install/status``, tests).
    """
    flags = flags or {}
    unknown = set(flags) - set(BY_FIELD)
    if unknown:
        raise TypeError(f"not settings: {sorted(unknown)}")
    command = _settings_command()
    command.params = parameters()
    ctx = typer.Context(command, info_name="watch")
    ctx.meta[_ENVIRON] = os.environ if environ is None else environ
    ctx.params.update(home=home, config=config)
    given = {name: value for name, value in flags.items() if value is not None}
    with ctx:
        for param in command.params:
            param.handle_parse_result(ctx, given, [])
    return effective(ctx)


def _home(flag: Path | None, environ: Mapping[str, str]) -> tuple[Path, str]:
    if flag is not None:
        return _absolute(flag), "flag --home"
    if environ.get(paths.HOME_ENV):
        return _absolute(environ[paths.HOME_ENV]), f"env {paths.HOME_ENV}"
    return Path.cwd(), "the current folder"


def _config_path(flag: Path | None, environ: Mapping[str, str], home: Path) -> tuple[Path | None, str]:
    """The config file to read: an explicit one must exist, the one in the home only may."""
    if flag is not None:
        explicit, source = _absolute(flag), "flag --config"
    elif environ.get(CONFIG_ENV):
        explicit, source = _absolute(environ[CONFIG_ENV]), f"env {CONFIG_ENV}"
    else:
        candidate = home / CONFIG_NAME
        if candidate.is_file():
            return candidate, "found in the home"
        return None, f"no {candidate}"
    if not explicit.exists():
        raise SettingsError(f"{explicit}: config file not found ({source})")
    return explicit, source


def load_config(path: Path) -> dict[str, object]:
    """A TOML config file as typed values by setting name; relative paths are relative to the file."""
    data = read_config_bytes(path)
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:  # tomllib recurses per level of [[[...]]] or {a = {b = ...}}
        raise SettingsError(f"{path}: not valid TOML (arrays or tables nested too deeply)") from None
    out = {}
    for key, raw in table.items():
        s = BY_NAME.get(key)
        if s is None:
            close = difflib.get_close_matches(key, BY_NAME, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(BY_NAME)
            raise SettingsError(f"{path}: unknown setting {key!r} ({hint})")
        out[key] = parse_toml(s, raw, f"{path}: {key}", base=path.parent)
    return out


def read_config_bytes(path: Path) -> bytes:
    """The bytes of a config file that is a regular file of at most :data:`MAX_CONFIG_BYTES`.

    Opened non-blocking and checked with ``fstat`` on the open descriptor: a
    FIFO given as ``--config`` would otherwise block ``watch`` and ``service
    print`` forever, and ``/dev/zero`` would be read until memory runs out.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the config file ({exc.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
            raise SettingsError(f"{path}: cannot read the config file (it is {kind}, not a regular file)")
        data = b""
        while len(data) <= MAX_CONFIG_BYTES:  # one byte past the cap tells a file too large
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the config file ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise SettingsError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB, not a settings file")
    return data


# -- values ----------------------------------------------------------------------------------------


def parse_text(s: Setting, text: str, where: str) -> object:
    """A value written as text (an environment variable) into the setting's type."""
    try:
        if s.type is bool:
            lowered = text.strip().lower()
            if lowered not in _TRUE | _FALSE:
                raise ValueError
            value = lowered in _TRUE
        elif s.type is Path:
            value = _absolute(_path_text(text, where))
        else:
            value = s.type(text.strip())
    except ValueError:
        raise SettingsError(f"{where}: expected {_kind(s)}, got {text!r}") from None
    return _checked(s, value, where)


def parse_toml(s: Setting, raw: object, where: str, base: Path) -> object:
    """A value from the config file: TOML already typed it, so only check it."""
    expected = {bool: (bool,), int: (int,), float: (int, float), Share: (int, float, str), str: (str,), Path: (str,)}[s.type]
    if s.validate is not None and s.type is str and isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)  # keep_processed = 30: days, as "30" would be
    if not isinstance(raw, expected) or (isinstance(raw, bool) and s.type is not bool):
        raise SettingsError(f"{where}: expected {_kind(s)}, got {_toml_value(raw) if _plain(raw) else type(raw).__name__}")
    if s.type is Path:
        return _checked(s, _absolute(base / Path(_path_text(raw, where)).expanduser()), where)
    try:
        value = s.type(raw)
    except ValueError:  # a Share written as text that is no number ("two %")
        raise SettingsError(f"{where}: expected {_kind(s)}, got {_toml_value(raw)}") from None
    return _checked(s, value, where)


def _path_text(text: str, where: str) -> str:
    # "" would silently become the config file's own folder (or the current one): a mistake, never a choice.
    if not text.strip():
        raise SettingsError(f"{where}: an empty path (write \".\" for the folder the config file is in)")
    if "\0" in text:
        raise SettingsError(f"{where}: a path cannot contain a NUL character")
    return text


def _checked(s: Setting, value, where: str):
    """The one check of a value's range, whatever it came from (flag, environment, config file).

    NaN compares false with everything, so without the finiteness check
    ``review_below = nan`` passed both bounds and sent nothing to review.
    """
    if issubclass(s.type, float) and not math.isfinite(value):
        raise SettingsError(f"{where}: must be a finite number, got {value}")
    if s.minimum is not None and value < s.minimum:
        raise SettingsError(f"{where}: must be at least {s.minimum:g}, got {value}")
    if s.maximum is not None and value > s.maximum:
        raise SettingsError(f"{where}: must be at most {s.maximum:g}, got {value}")
    if s.choices and value not in s.choices:
        raise SettingsError(f"{where}: must be one of {', '.join(s.choices)}, got {value!r}")
    if s.validate is not None:
        s.validate(value, where)
    return value


def _kind(s: Setting) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", Share: "a share (0.002 or 0.2%)", str: "text",
            Path: "a path"}[s.type]


def _plain(raw) -> bool:
    return isinstance(raw, (bool, int, float, str))


def _absolute(path) -> Path:
    """Absolute without resolving symlinks: the path the user named, from the current folder."""
    return Path(os.path.abspath(Path(path).expanduser()))


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    # TOML basic strings take JSON's escapes; raw non-ASCII avoids JSON's surrogate pairs, which TOML lacks.
    return json.dumps(str(value), ensure_ascii=False)
