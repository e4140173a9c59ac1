"""A job's ``summary.json``, read and checked once: every reader after this trusts its types and ranges.

The file may come from anywhere (a job folder copied from another machine,
an editor, a disk that lied): it is read only if it is a regular file of
sane size, parsed as strict JSON (no ``NaN``/``Infinity``, no number that
overflows to infinity, no nesting past Python's stack), and the keys the
readers use are checked for type and range.  Anything else is one
:class:`JobCorruptError` naming the file and the key.  Keys no reader uses
are kept as they are.
"""

from __future__ import annotations

import json
import math
import os
import stat
from datetime import datetime
from pathlib import Path

from batchclf.errors import BatchclfError, JobCorruptError

MAX_SUMMARY_BYTES = 16 * 1024 * 1024  # a classify job lists its inputs: thousands of paths still fit
MAX_SECONDS = 1e9  # about 32 years: longer is not a job's duration
MAX_COUNT = 10**15

_TEXT = (str, type(None))
_TIMES = ("started", "finished", "updated", "daemon_started")
_TEXTS = ("job_id", "device", "inbox", "files_relative_to", "day", "processed", "failed")
_MODEL_TEXTS = ("file", "sha256", "architecture")


def read_summary(path: Path) -> dict:
    """The checked contents of ``summary.json`` at ``path`` (which must exist)."""
    path = Path(path)
    text = _read_text(path)
    try:
        meta = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise JobCorruptError(f"{path}: nested too deep to be a job summary") from None
    except ValueError as exc:  # JSONDecodeError, non-finite numbers, integers too long to parse
        raise JobCorruptError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise JobCorruptError(f"{path}: expected a JSON object")
    _check(meta, path)
    return meta


def read_regular_file(path: Path, limit: int, error: type[BatchclfError] = JobCorruptError) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes, else ``error`` naming it.

    Opened without blocking and checked on the open descriptor: a FIFO
    would hang the reader until someone writes, a device (``/dev/zero``)
    would never end, and a file swapped after a check would not be caught.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise error(f"{path}: not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    with open(fd, "rb", buffering=0) as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"{path}: not a regular file")
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise error(f"{path}: larger than {limit // (1024 * 1024)} MiB")
    return data


def _read_text(path: Path) -> str:
    data = read_regular_file(path, MAX_SUMMARY_BYTES)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobCorruptError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is out of range")
    return value


def _check(meta: dict, path: Path) -> None:
    def bad(key: str, expected: str):
        shown = repr(meta_value(key))
        raise JobCorruptError(f"{path}: {key}: expected {expected}, got {shown[:80]}")

    def meta_value(key: str):
        value = meta
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    if meta.get("kind") not in (None, "classify", "watch"):
        bad("kind", '"classify" or "watch"')
    for key in _TEXTS:
        if not isinstance(meta.get(key), _TEXT):
            bad(key, "text")
    for key in _TIMES:
        if not _is_time(meta.get(key)):
            bad(key, "an ISO 8601 time")
    if not _is_number(meta.get("seconds"), 0, MAX_SECONDS):
        bad("seconds", f"a number of seconds from 0 to {MAX_SECONDS:g}")
    if not _is_number(meta.get("review_below"), 0, 1):
        bad("review_below", "a number from 0 to 1")
    inputs = meta.get("inputs")
    if inputs is not None and not (isinstance(inputs, list) and all(isinstance(item, str) for item in inputs)):
        bad("inputs", "a list of paths")
    model = meta.get("model")
    if model is not None:
        if not isinstance(model, dict):
            bad("model", "an object")
        for key in _MODEL_TEXTS:
            if not isinstance(model.get(key), _TEXT):
                bad(f"model.{key}", "text")
        if not _is_number(model.get("card_accuracy"), 0, 1):
            bad("model.card_accuracy", "a number from 0 to 1")
    for key in ("rows", "files"):
        if not _is_count(meta.get(key)):
            bad(key, "a whole number from 0")
    for key in ("counts", "labels"):
        table = meta.get(key)
        if table is not None and not (isinstance(table, dict) and all(_is_count(n) and n is not None for n in table.values())):
            bad(key, "an object of whole numbers from 0")


def _is_number(value, low: float, high: float) -> bool:
    """None (not recorded), or a finite int/float (never a bool) in [low, high]."""
    if value is None:
        return True
    return type(value) in (int, float) and low <= value <= high


def _is_count(value) -> bool:
    return value is None or (type(value) is int and 0 <= value <= MAX_COUNT)


def _is_time(value) -> bool:
    if value is None:
        return True
    if not isinstance(value, str) or len(value) > 64:
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
