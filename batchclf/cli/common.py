"""What every command shares: option declarations, the error translation, the command line.

Options are declared once here as ``Annotated`` types, so ``--home`` or
``--workers`` read the same in every command.  Flags carry ``metavar=""``:
they take no value, so ``--help`` shows no ``<bool>`` type beside them.
"""

from __future__ import annotations

import functools
import math
import shlex
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from batchclf import limits
from batchclf.errors import BatchclfError
from batchclf.printable import printable
from batchclf.watch.settings import BY_FIELD


def _finite(value: Optional[float]) -> Optional[float]:
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def float_option(flag: str, minimum: float, maximum: float, help: str):
    """The one option type of every number flag: finite and inside ``[minimum, maximum]``.

    click's range alone lets ``nan`` through (it compares false with both
    ends): ``--input-scale nan`` labelled every digit 0 with status ok.
    """
    return typer.Option(flag, min=minimum, max=maximum, callback=_finite, help=help)


def declared_setting(field: str):
    """A flag the daemon also takes as a setting: its name, range and help from the one settings declaration
    (``batchclf.watch.settings``), so ``classify --workers`` and ``watch --workers`` cannot drift apart."""
    setting = BY_FIELD[field]
    # The daemon's help says "unset" (a setting can come from four places); a command's flag has a default.
    help = setting.help.replace("(unset: ", "(default: ")
    if setting.type is float:
        return float_option(setting.flag, setting.minimum, setting.maximum, help)
    if setting.choices or setting.minimum is None:
        return typer.Option(setting.flag, help=help)
    return typer.Option(setting.flag, min=setting.minimum, max=setting.maximum, help=help)


MaxPages = Annotated[Optional[int], declared_setting("max_pages")]
MaxFileMb = Annotated[Optional[int], declared_setting("max_file_mb")]


def _existing_folder(value: Optional[Path]) -> Optional[Path]:
    # A mistyped --home must not quietly become a new, empty home with its own jobs/.
    if value is not None and not value.is_dir():
        raise typer.BadParameter(f"{value} is not a folder (a mistyped path? `batchclf service install` creates a new home)")
    return value


Home = Annotated[
    Optional[Path],
    typer.Option("--home", callback=_existing_folder,
                 help="Folder holding inbox/, jobs/, models/ (default: $BATCHCLF_HOME, else the current folder)."),
]
NewHome = Annotated[
    Optional[Path],
    typer.Option("--home", help="Folder holding inbox/, jobs/, models/; created when missing (default: $BATCHCLF_HOME, else the current folder)."),
]
Model = Annotated[Optional[Path], typer.Option("--model", help="A .keras model (default: models/default.keras).")]
Device = Annotated[str, declared_setting("device")]
Data = Annotated[
    Optional[Path], typer.Option("--data", help="mnist.npz or a folder of IDX files (default: Keras download).")
]
Workers = Annotated[Optional[int], declared_setting("workers")]
BatchSize = Annotated[
    Optional[int],
    typer.Option("--batch-size", min=1, max=limits.MAX_BATCH,
                 help="Images per model call (default: 256 on CPU, 2048 on GPU)."),
]
ReviewBelow = Annotated[Optional[float], declared_setting("review_below")]
def _target_error(value: Optional[float]) -> Optional[float]:
    # One range, the daemon's setting's: a typo like 20 (meaning 20%?) is refused, not taken as "anything goes".
    setting = BY_FIELD["target_error"]
    if value is not None and not (math.isfinite(value) and setting.minimum <= value <= setting.maximum):
        raise typer.BadParameter(f"{value:g} is not a share from {setting.minimum:g} to {setting.maximum:g} (e.g. 0.2% or 0.002)")
    return value


TargetError = Annotated[
    Optional[limits.Share],
    typer.Option("--target-error", parser=limits.Share, callback=_target_error, metavar="SHARE",
                 help=BY_FIELD["target_error"].help.replace("(unset: ", "(default: ")),
]
InputScale = Annotated[Optional[float], declared_setting("input_scale")]
Detector = Annotated[
    str,
    typer.Option("--detector", envvar="BATCHCLF_DETECTOR", show_envvar=False,
                 help="The not-a-digit detector: a .keras file, auto (models/detectors/not-a-digit.keras) or off [env BATCHCLF_DETECTOR]."),
]
AsJson = Annotated[bool, typer.Option("--json", metavar="", help="Print one JSON object instead of tables.")]
# Where a job's inputs may be read besides its home (batchclf.jobs.inputs): report --html and train --from-reviews.
Inputs = Annotated[
    Optional[List[Path]],
    typer.Option(
        "--inputs",
        help="A folder holding the jobs' input files, when it is not inside the jobs' home (repeatable); "
        "the jobs' inputs are read only there or in the home.",
    ),
]


def input_folders(inputs: Optional[List[Path]]) -> list[Path]:
    """The ``--inputs`` folders, each checked to be one (a typo must not quietly read nothing)."""
    from batchclf.errors import InputPathError

    for folder in inputs or []:
        if not folder.is_dir():
            raise InputPathError(f"--inputs {folder}: not a folder")
    return list(inputs or [])


def fail(message: str, code: int = 1) -> None:
    # Messages name files handed to us: a hostile name must not reach the terminal as control characters.
    typer.echo(f"Error: {printable(message)}", err=True)
    raise typer.Exit(code)


def friendly_errors(function):
    """Turn library errors into ``Error: ...`` and an exit code, never a traceback."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except BatchclfError as exc:
            fail(str(exc), exc.exit_code)

    return wrapper


def command_line() -> str:
    """The command as the user typed it, for job metadata and model cards."""
    return "batchclf " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])


def model_path(model: Optional[Path], home: Optional[Path]) -> Path:
    from batchclf import paths

    return model if model is not None else paths.default_model(home)


def detector_path(choice: str, home: Optional[Path]) -> Optional[Path]:
    from batchclf import paths

    return paths.detector(choice, home)
