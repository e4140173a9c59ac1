"""Where a job's input files are now, and the one rule for reading them.

The review sheet and ``train --from-reviews`` open the images a job's rows
name.  A job folder is data handed to us: its ``summary.json`` says where
the inputs were, its rows name the files, its journal says where the daemon
moved them, and any of these can lie.  So one rule decides, here:

- a row's ``file`` is a relative name: one that is absolute, holds a ``..``
  part or a NUL is never read;
- an input is read only if its real path (every symlink resolved) is inside
  a folder the job recorded: the folders given to ``classify`` (a file
  given is allowed as itself), or for a daemon day its inbox and the
  ``processed/`` and ``failed/`` beside it;
- and a recorded folder counts only if it is itself inside an *anchor*,
  which a job folder cannot choose: the home the job folder sits in (a job
  in ``HOME/jobs/JOB`` has home ``HOME``, the layout ``classify`` and the
  daemon write), or a folder the user names on the command line
  (``report --inputs DIR``).  A job folder copied elsewhere, or one that
  records ``inputs: ["/"]``, reaches nothing outside those.

:func:`inside` is the one "is this real path inside that folder" check;
:class:`Located` says what was found, or why nothing was (``missing``,
``removed by retention`` or ``outside the inputs``), so the sheet can show
the difference.  "Removed by retention": the journal moved a daemon day's
input into a day folder (``processed/YYYY-MM-DD/`` or ``failed/YYYY-MM-DD/``)
of a recorded processed or failed folder, and that day folder is gone while
the folder holding it is still there (what ``--keep-processed`` /
``--keep-failed`` leave behind; a whole ``processed/`` gone is "missing").
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable, Iterable

JOBS_FOLDER_NAME = "jobs"  # paths.jobs_dir(home) is HOME/jobs: only there does a job folder imply its home
MISSING = "missing"
OUTSIDE = "outside the inputs"
REMOVED = "removed by retention"
DAY_FOLDER = re.compile(r"\A(\d{4})-(\d{2})-(\d{2})\Z")  # processed/YYYY-MM-DD: the day folders retention removes


def day_of(name: str) -> date | None:
    """The date a day folder's name (``processed/YYYY-MM-DD``) gives, or None for any other name (2026-02-30 too)."""
    match = DAY_FOLDER.match(name)
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


@dataclass(frozen=True)
class Located:
    """A row's input: its real path when it may be read, else None and why (:data:`MISSING`, :data:`REMOVED`, :data:`OUTSIDE`)."""

    path: Path | None
    problem: str | None = None


def real(path: str | os.PathLike) -> str:
    """The real path (absolute, every symlink resolved), as a str for :func:`within`."""
    return os.path.realpath(path)


def within(real_folder: str, real_path: str) -> bool:
    """``real_path`` is ``real_folder`` or below it; both already real (see :func:`real`)."""
    if real_path == real_folder:
        return True
    return real_path.startswith(real_folder if real_folder.endswith(os.sep) else real_folder + os.sep)


def inside(folder: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Is the real path of ``path`` (symlinks resolved) inside the real path of ``folder`` (or the folder itself)?"""
    return within(real(folder), real(path))


def is_relative_name(name) -> bool:
    """A row's ``file`` that may be joined to a folder: relative, no ``..`` part, no NUL, not empty."""
    if not isinstance(name, str) or not name or "\0" in name:
        return False
    if name.startswith(("/", os.sep)) or os.path.isabs(name):
        return False
    return ".." not in name.replace(os.sep, "/").split("/")


def implied_home(job_folder: Path) -> Path | None:
    """The home a job folder's place says it belongs to: ``HOME`` for ``HOME/jobs/JOB``, else None."""
    jobs = Path(os.path.abspath(job_folder)).parent
    return jobs.parent if jobs.name == JOBS_FOLDER_NAME else None


def anchors(job_folder: Path, given: Iterable[Path] = ()) -> list[str]:
    """The real folders a job's recorded places must lie in: its implied home and the folders the user gave."""
    home = implied_home(job_folder)
    return [real(folder) for folder in ([home] if home else []) + list(given)]


def anchored(recorded: Iterable[str | os.PathLike], anchor_list: list[str]) -> list[str]:
    """The real paths of the recorded places that lie inside an anchor; the rest are dropped."""
    kept = []
    for place in recorded:
        place_real = real(place)
        if any(within(anchor, place_real) for anchor in anchor_list) and place_real not in kept:
            kept.append(place_real)
    return kept


class InputLocator:
    """Finds a row's input among candidate places and reads it only inside the allowed folders.

    ``candidates(name)`` yields where the file may be (joined paths, the
    journal's moves); ``allowed`` are real folders (or real files, allowed
    as themselves).  ``gone(name)``, when given, says why a name found
    nowhere is gone (:data:`REMOVED`), or None for plain :data:`MISSING`.
    """

    def __init__(self, candidates: Callable[[str], Iterable[str | os.PathLike | None]], allowed: list[str],
                 gone: Callable[[str], str | None] | None = None):
        self._candidates = candidates
        self.allowed = allowed
        self._gone = gone

    def __call__(self, name) -> Located:
        if not is_relative_name(name):
            return Located(None, OUTSIDE)
        refused = False
        for candidate in self._candidates(name):
            if candidate is None:
                continue
            try:
                candidate_real = real(candidate)
            except (OSError, ValueError):
                continue
            if not os.path.isfile(candidate_real):
                continue
            if any(within(folder, candidate_real) for folder in self.allowed):
                return Located(Path(candidate_real))
            refused = True
        if refused:
            return Located(None, OUTSIDE)
        return Located(None, (self._gone and self._gone(name)) or MISSING)


def classify_locator(meta: dict, job_folder: Path, given: Iterable[Path] = ()) -> InputLocator:
    """A classify job: rows are relative to ``files_relative_to`` (several inputs) or to the one folder given.

    Allowed: each recorded input (a folder and what is under it, a file as
    itself) that lies inside an anchor.
    """
    inputs = [str(given_input) for given_input in meta.get("inputs") or []]
    bases = [meta["files_relative_to"]] if meta.get("files_relative_to") else []
    bases += [given_input if os.path.isdir(given_input) else os.path.dirname(given_input) for given_input in inputs]
    bases = list(dict.fromkeys(bases))
    allowed = anchored(inputs, anchors(job_folder, given))
    return InputLocator(lambda name: (os.path.join(base, name) for base in bases), allowed)


def watch_locator(meta: dict, job_folder: Path, moved: dict[str, str], given: Iterable[Path] = ()) -> InputLocator:
    """A daemon day: rows are inbox-relative; ``moved`` (from the journal) says where each went.

    Allowed: the recorded inbox and the ``processed/`` and ``failed/`` beside
    it (and those the day recorded, if it did), each inside an anchor.  An
    input moved into a day folder of one of those that retention removed is
    :data:`REMOVED`.
    """
    inbox = meta.get("inbox") or None
    destinations = []
    if inbox:
        parent = os.path.dirname(os.path.abspath(inbox))
        destinations += [os.path.join(parent, "processed"), os.path.join(parent, "failed")]
    destinations += [meta[key] for key in ("processed", "failed") if isinstance(meta.get(key), str)]
    anchor_list = anchors(job_folder, given)
    allowed = anchored(([inbox] if inbox else []) + destinations, anchor_list)
    kept_in = anchored(destinations, anchor_list)

    def candidates(name: str):
        yield moved.get(name)
        if inbox:
            yield os.path.join(inbox, name)

    def gone(name: str) -> str | None:
        target = moved.get(name)
        return REMOVED if target and removed_day_folder(target, kept_in) else None

    return InputLocator(candidates, allowed, gone)


def removed_day_folder(target: str | os.PathLike, folders: list[str]) -> bool:
    """Was ``target`` inside a ``YYYY-MM-DD`` day folder, directly under one of the real ``folders``, that is gone
    while that folder is still there?  Only places inside ``folders`` are looked at (a journal can name anything)."""
    try:
        target_real = real(target)  # a path that no longer exists resolves as far as it does
    except (OSError, ValueError):
        return False
    for folder in folders:
        if target_real == folder or not within(folder, target_real):
            continue
        day = os.path.relpath(target_real, folder).split(os.sep)[0]
        if day_of(day) is not None and os.path.isdir(folder) and not os.path.lexists(os.path.join(folder, day)):
            return True
    return False
