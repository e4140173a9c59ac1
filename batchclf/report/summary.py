"""One job's numbers, computed in one streaming pass over its rows.

The rows are the job's ``verified.csv`` when a person's review was applied
(``batchclf review apply``: the final labels and statuses, including
``not-a-digit``), else its ``results.csv``; ``rows_from`` says which, and
``verified`` how many rows a person confirmed, corrected, or marked not a
digit or blank (None without a review).  The pass works on blocks of raw CSV
cells, column by column, and converts only the rows it keeps (the
lowest-confidence ones and the failures), so a million-row day is
summarised in seconds and in constant memory.  The keys of :func:`summarise`
and :func:`totals` are the report's stable JSON schema (listed in the README).
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import timezone
from operator import itemgetter

import numpy as np

from batchclf.errors import JobCorruptError
from batchclf.jobs.folder import RESULTS_CSV, SUMMARY_JSON, Job, parse_time, row_from_cells
from batchclf.jobs.rows import COLUMNS, FAILED, REVIEW
from batchclf.jobs.verified import VERIFIED_CSV, VERIFIED_STATUSES, PersonTally, has_verified, verified_blocks

# A daemon day's working time: the gaps between its rows' distinct processed_at times, each counted up to this.
# Under load batches follow each other well within it (a 32-file batch of 300 px scans takes a fraction of a
# second here, and a file waits at most settle 1 s + max-latency 0.5 s by default); a longer gap is the daemon
# waiting for files (a lunch break, the night), of which only this much counts.  Capped rather than dropped: the
# first batch after a pause took some time too, so the rate is never overstated, only at most this much per pause
# understated.
IDLE_GAP_SECONDS = 5.0
HISTOGRAM_BINS = 10  # confidence histogram: [0.0, 0.1), ..., [0.9, 1.0]
LOWEST_SHOWN = 10
FAILURES_LISTED = 1000  # failures beyond this are counted, not listed (a broken share can fail everything)

_COLUMNS = tuple(itemgetter(COLUMNS.index(c)) for c in ("status", "page", "label", "confidence", "processed_at"))
# Every status the report counts: classify's, and not-a-digit, which a person's review gives (verified.csv).
STATUSES = VERIFIED_STATUSES
# The origin of a job's review threshold (summary.json ``review``), every one a number from 0 to 1.
REVIEW_ORIGIN_KEYS = ("review_below", "target_error", "expected_error", "expected_coverage")


def summarise(job: Job, lowest: int = LOWEST_SHOWN, failures_listed: int = FAILURES_LISTED) -> dict:
    verified = has_verified(job.folder)
    rows_from = VERIFIED_CSV if verified else RESULTS_CSV
    source = job.folder / rows_from  # the file errors name
    statuses: Counter = Counter()
    labels: Counter = Counter()
    histogram = np.zeros(HISTOGRAM_BINS, np.int64)
    files = rows = 0
    least: list = []  # (confidence, seq, cells) of the ``lowest`` least confident rows seen so far
    failures: list[dict] = []
    failures_unlisted = 0
    first_stamp = last_stamp = ""
    times: list[np.ndarray] = []  # a daemon day's distinct row times (epoch seconds), for its working time
    timed_by_rows = job.meta.get("seconds") is None
    tally = PersonTally(source) if verified else None  # who decided what, counted in this same pass
    for block in verified_blocks(job.folder, tally=tally) if verified else job.blocks():
        # Column by column: C-level counting instead of Python work per row.
        status, page, label, confidence, stamp = (list(map(column, block)) for column in _COLUMNS)
        rows += len(block)
        statuses.update(status)
        files += page.count("") + page.count("1")
        labels.update(label)
        scored = [i for i, value in enumerate(confidence) if value]
        if scored:
            values = _confidences([confidence[i] for i in scored], source)
            usable = (values >= 0) & (values <= 1)  # NaN and infinity are no score (the row is still counted)
            if not usable.all():
                scored = [i for i, ok in zip(scored, usable.tolist()) if ok]
                values = values[usable]
        if scored:
            histogram += np.bincount(np.minimum((values * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS - 1), minlength=HISTOGRAM_BINS)
            keep = np.argsort(values, kind="stable")[:lowest]
            least = sorted(least + [(values[k], rows - len(block) + scored[k], block[scored[k]]) for k in keep])[:lowest]
        failed = status.count(FAILED)
        if failed and len(failures) < failures_listed:
            failures.extend(_row(block[i], source) for i, value in enumerate(status) if value == FAILED)
            failed = max(0, len(failures) - failures_listed)
            del failures[failures_listed:]
        failures_unlisted += failed
        earliest = min(filter(None, stamp), default="")
        if earliest:
            first_stamp = min(first_stamp or earliest, earliest)
            last_stamp = max(last_stamp, max(stamp))
            if timed_by_rows:
                times.append(_epoch_seconds(set(filter(None, stamp)), source))
    labels.pop("", None)
    meta = job.meta
    seconds, wall_seconds, finished = _duration(job, first_stamp, last_stamp, times)
    model = meta.get("model") or {}
    return {
        "id": job.id,
        "kind": job.kind.value,
        "folder": str(job.folder),
        "started": meta.get("started") or first_stamp or None,
        "finished": finished,
        "seconds": seconds,
        "wall_seconds": wall_seconds,
        "files": files,
        "rows": rows,
        "files_per_second": _rate(files, seconds),
        "counts": {status: statuses.get(status, 0) for status in STATUSES},
        "review_rate": _share(statuses.get(REVIEW, 0), rows),
        "failed_rate": _share(statuses.get(FAILED, 0), rows),
        "labels": {str(k): labels.get(str(k), 0) for k in range(10)},
        "confidence_histogram": {
            "edges": [round(k / HISTOGRAM_BINS, 2) for k in range(HISTOGRAM_BINS + 1)],
            "counts": histogram.tolist(),
        },
        "model": {
            "file": model.get("file"),
            "sha256": model.get("sha256"),
            "architecture": model.get("architecture"),
            "card_accuracy": model.get("card_accuracy"),
        },
        "device": meta.get("device"),
        "review_below": meta.get("review_below"),
        "review": review_origin(meta, job.folder / SUMMARY_JSON),
        "rows_from": rows_from,
        "verified": tally.counts() if tally is not None else None,
        "lowest_confidence": [_row(cells, source) for _, _, cells in least],
        "failures": failures,
        "failures_unlisted": failures_unlisted,
        "torn_lines": list(job.torn),
    }


def totals(entries: list[dict]) -> dict:
    """Sums over many jobs, and the models they ran (so a model change stands out).

    ``seconds`` is the jobs' working time summed (a classify job's run, a
    daemon day's working time: never a night of waiting), and
    ``files_per_second`` the files of the jobs that have a timing over it:
    the rate while working, over jobs of both kinds, each weighted by its
    time.  A job without a timing (a day of one batch) adds its files to
    ``files`` but not to the rate, which it would inflate.
    """
    counts = {status: sum(entry["counts"][status] for entry in entries) for status in STATUSES}
    rows = sum(entry["rows"] for entry in entries)
    timed = [entry for entry in entries if entry["seconds"]]
    seconds = sum(entry["seconds"] for entry in timed)
    files = sum(entry["files"] for entry in entries)
    reviewed = [entry["verified"] for entry in entries if entry["verified"] is not None]
    models = []
    for entry in entries:
        key = {"file": entry["model"]["file"], "sha256": entry["model"]["sha256"]}
        if key["file"] and key not in models:
            models.append(key)
    return {
        "jobs": len(entries),
        "files": files,
        "rows": rows,
        "seconds": round(seconds, 3),
        "files_per_second": _rate(sum(entry["files"] for entry in timed), seconds),
        "counts": counts,
        "review_rate": _share(counts[REVIEW], rows),
        "failed_rate": _share(counts[FAILED], rows),
        "models": models,
        # Summed over the jobs a person reviewed (None when none was): their rows, and what the person decided.
        "verified": {key: sum(counts[key] for counts in reviewed) for key in reviewed[0]} if reviewed else None,
    }


def review_origin(meta: dict, path) -> dict | None:
    """Where the job's review threshold came from (``review`` in summary.json), checked; None when not recorded.

    ``{"review_below", "target_error", "expected_error", "expected_coverage"}``, each a number from 0 to 1
    or None; other keys are not passed on.  Anything else is one JobCorruptError naming the file and key.
    """
    origin = meta.get("review")
    if origin is None:
        return None
    if not isinstance(origin, dict):
        raise JobCorruptError(f"{path}: review: expected an object, got {repr(origin)[:80]}")
    for key in REVIEW_ORIGIN_KEYS:
        value = origin.get(key)
        if value is not None and not (type(value) in (int, float) and math.isfinite(value) and 0 <= value <= 1):
            raise JobCorruptError(f"{path}: review.{key}: expected a number from 0 to 1, got {repr(value)[:80]}")
    return {key: origin.get(key) for key in REVIEW_ORIGIN_KEYS}


def _rate(files: int, seconds: float | None) -> float | None:
    """Files per second, or None when there is no time to divide by (a tiny duration gives no infinite rate)."""
    if not seconds:
        return None
    rate = round(files / seconds, 2)
    return rate if math.isfinite(rate) else None


def _confidences(cells: list[str], source) -> np.ndarray:
    """A block's confidence cells as numbers (one C-level conversion); text that is no number names the job's file."""
    try:
        return np.array(cells, dtype=np.float64)
    except ValueError:
        bad = next(cell for cell in cells if not _is_float(cell))
        raise JobCorruptError(f"{source}: confidence {bad[:40]!r} is not a number") from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _row(cells: list[str], source) -> dict:
    try:
        return row_from_cells(cells)
    except JobCorruptError as exc:
        raise JobCorruptError(f"{source}: row of {cells[0][:80]!r}: {exc}") from None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _duration(job: Job, first_stamp: str, last_stamp: str, times: list[np.ndarray]) -> tuple[float | None, float | None, str | None]:
    """``(seconds, wall_seconds, finished)``.

    A classify job: its own timing, both.  A daemon day: ``seconds`` is its
    working time (see :func:`working_seconds`), ``wall_seconds`` the span
    from its first row to its last, idle hours included.
    """
    meta = job.meta
    if meta.get("seconds") is not None:
        return float(meta["seconds"]), float(meta["seconds"]), meta.get("finished")
    if not (first_stamp and last_stamp and times):
        return None, None, None
    distinct = np.unique(np.concatenate(times))
    span = float(distinct[-1] - distinct[0])
    return _positive(working_seconds(distinct)), _positive(span), last_stamp


def working_seconds(distinct: np.ndarray, idle_gap: float = IDLE_GAP_SECONDS) -> float:
    """The time a daemon was at work, from its rows' distinct times (sorted epoch seconds).

    The daemon records no batch spans: the rows of a batch share one
    ``processed_at``, stamped when the model answered.  So the gap from one
    row time to the next is the time the next batch took while the daemon
    was busy, and waiting once it grows past ``idle_gap``, which is where it
    is cut (see :data:`IDLE_GAP_SECONDS`).
    """
    return float(np.minimum(np.diff(distinct), idle_gap).sum()) if len(distinct) > 1 else 0.0


def _positive(seconds: float) -> float | None:
    return round(seconds, 3) if seconds > 0 else None


def _epoch_seconds(stamps: set[str], source) -> np.ndarray:
    """Distinct ``processed_at`` texts as epoch seconds (a time without a zone is UTC, as the writers mean it)."""
    out = np.empty(len(stamps), np.float64)
    for k, stamp in enumerate(stamps):
        try:
            moment = parse_time(stamp)
            out[k] = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
        except (ValueError, OverflowError):
            raise JobCorruptError(f"{source}: processed_at {stamp[:40]!r} is not a time") from None
    return out
