"""Which jobs a report covers: named ones, the latest, or a window (``--since``, ``--last``)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from batchclf.errors import JobNotFoundError, SinceError
from batchclf.jobs.folder import JobKind, find_job, kind_of, list_jobs, started_at

_DURATION = re.compile(r"^([0-9]{1,12})\s*([mhdw])\Z")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``12h``, ``30m``, ``2w`` back from now, or a date/time (``2026-11-01``, ISO 8601; UTC unless it says)."""
    now = now or datetime.now(timezone.utc)
    text = text.strip()
    duration = _DURATION.match(text)
    if duration:
        try:
            return now - timedelta(**{_UNITS[duration.group(2)]: int(duration.group(1))})
        except OverflowError:  # 99999999d: before the year 1
            raise SinceError(f"--since {text!r}: reaches back before the year 1; give a shorter window") from None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SinceError(f"--since {text!r}: expected a duration like 7d, 12h, 30m, 2w or a date like 2026-11-01") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def select_jobs(
    refs: list[str], jobs_dir: Path, since: str | None = None, last: int | None = None, warnings: list[str] | None = None
) -> list[Path]:
    """Job folders, oldest first: the named ones, else those in the window, else the latest one.

    A window (``since``) with no job in it is no error: an empty list (a quiet
    weekend is not a failure for a cron job; the CLI says so, and fails only
    with ``--strict``).  No job at all without a window is one.
    Folders under ``jobs_dir`` named like jobs but not valid ones are skipped, each with a line in ``warnings``.
    """
    if refs:
        return [find_job(ref, jobs_dir) for ref in refs]
    folders = list_jobs(jobs_dir, warnings)
    if since is not None:
        cutoff = parse_since(since)
        folders = [folder for folder in folders if _ends_after(folder, cutoff)]
    if last is not None:
        folders = folders[-last:] if last > 0 else []
    elif since is None:
        folders = folders[-1:]
    if not folders and since is None:
        raise JobNotFoundError(f"no jobs in {jobs_dir}")
    return folders


def _ends_after(folder: Path, cutoff: datetime) -> bool:
    """A daemon day counts while any part of it is after the cutoff; a classify job by its start."""
    start = started_at(folder)
    if kind_of(folder) is JobKind.WATCH:
        try:
            return start + timedelta(days=1) > cutoff
        except OverflowError:  # watch-9999-12-31: its end is past any cutoff
            return True
    return start >= cutoff
