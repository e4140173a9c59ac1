"""``batchclf review apply JOB CORRECTIONS.csv ...``: a person's decisions become the job's verified results.

Every row of the job (``results.csv``, streamed through :func:`read_job`)
goes to ``JOB/verified.csv`` (format: :mod:`batchclf.jobs.verified`) and
``JOB/verified.json``, each written atomically; ``results.csv`` is never
touched, so the machine's own answer stays beside the verified one.

Decisions accumulate: the ones applied before are read back from the
existing ``verified.csv``, and a decision for the same ``file,page``
replaces an earlier one unless it is older (by ``decided_at``; an old
corrections file without that column counts as decided when it was saved).
A decision naming a ``file,page`` the job does not have is never dropped
silently: it is returned in :attr:`Applied.unmatched` and listed in
``verified.json``.  A decision whose ``job`` column names another job is
left out and counted.  Works the same for a daemon day, whose rows only
grow: apply again later and the new rows come in with the old decisions.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from batchclf.atomic import FolderLock, write_text_atomic
from batchclf.datasets.decisions import Decision, Decisions, read_decisions, row_key
from batchclf.errors import JobCorruptError, OutputPathError
from batchclf.jobs.folder import Job, read_job
from batchclf.jobs.rows import OK, csv_cell, now_iso
from batchclf.jobs.verified import (
    ACCEPTED,
    BLANK,
    COUNT_KEYS,
    CORRECTED,
    MODEL,
    NOT_A_DIGIT,
    PERSON,
    VERIFIED_COLUMNS,
    VERIFIED_CSV,
    VERIFIED_JSON,
    has_verified,
    person_rows,
)

VERIFIED_VERSION = 1
UNMATCHED_LISTED = 1000  # verified.json lists at most this many unmatched decisions (all are counted)


@dataclass
class Applied:
    """What one ``review apply`` did."""

    job_id: str
    folder: Path
    rows: int = 0
    counts: dict = field(default_factory=dict)  # rows a person decided, by kind (jobs.verified.COUNT_KEYS), over all applies
    new: int = 0  # decisions from the files given this time that found their row
    unmatched: list[Decision] = field(default_factory=list)  # this time's decisions naming no row of the job
    other_jobs: int = 0  # decisions whose job column names another job
    older: int = 0  # decisions older than the one already applied for their row
    repeated: int = 0  # lines naming a file,page again inside one file (the last counts)
    shared: int = 0  # decisions that matched more than one row (a daemon day can see a name twice)

    @property
    def csv_path(self) -> Path:
        return self.folder / VERIFIED_CSV

    @property
    def json_path(self) -> Path:
        return self.folder / VERIFIED_JSON


def apply_reviews(folder: Path, corrections: list[Path], on_wait: Callable[[], None] | None = None) -> Applied:
    """Apply the corrections files to the job in ``folder``; every file is checked before anything is written.

    One apply at a time per job: from reading back the decisions applied
    before to writing the new files, the job folder is locked (a second
    apply waits, calling ``on_wait``, then builds on the first one's result:
    both sets of decisions land).
    """
    job = read_job(folder)
    files = [read_decisions(Path(path)) for path in corrections]
    try:
        lock = FolderLock(job.folder, on_busy=on_wait)
    except OSError as exc:
        raise OutputPathError(f"{job.folder}: cannot lock the job folder to apply a review ({exc.strerror or exc})") from None
    with lock:
        return _apply(job, files)


def _apply(job: Job, files: list[Decisions]) -> Applied:
    result = Applied(job.id, job.folder)
    decisions = _applied_before(job.folder)
    fresh: set = set()
    for found in files:
        result.repeated += found.repeated
        for decision in found.items:
            if decision.job is not None and decision.job != job.id:
                result.other_jobs += 1
                continue
            earlier = decisions.get(decision.key)
            if earlier is not None and earlier.decided_at > decision.decided_at:
                result.older += 1
                continue
            decisions[decision.key] = decision
            fresh.add(decision.key)

    matched: Counter = Counter()
    counts = Counter()
    rows = []
    for row in job.rows():
        decision = decisions.get(row_key(row))
        verified = _verified(row, decision)
        if decision is not None:
            matched[decision.key] += 1
            counts[COUNT_KEYS[verified["decision"]]] += 1
        rows.append(verified)
    result.rows = len(rows)
    result.counts = {key: counts[key] for key in COUNT_KEYS.values()}
    result.unmatched = [decisions[key] for key in decisions if key in fresh and not matched[key]]
    result.shared = sum(1 for key in fresh if matched[key] > 1)
    result.new = sum(1 for key in fresh if matched[key])

    history = _history(job.folder)
    history.append({
        "applied_at": now_iso(),
        "files": [{"path": str(found.path), "sha256": found.sha256, "decisions": len(found.items)} for found in files],
        "decisions": result.new,
        "unmatched": len(result.unmatched),
        "other_jobs": result.other_jobs,
        "older": result.older,
    })
    summary = {
        "verified_version": VERIFIED_VERSION,
        "job": {"id": job.id, "kind": job.kind.value, "folder": str(job.folder), "rows": result.rows},
        "counts": {"person": sum(result.counts.values()), **result.counts},
        "applied": history,
        "unmatched": [_listed(decision) for decision in result.unmatched[:UNMATCHED_LISTED]],
    }
    # JSON first, CSV last: the CSV is what a later apply, the report and training read back.
    write_text_atomic(result.json_path, _json(summary, rows))
    write_text_atomic(result.csv_path, _csv(rows))
    return result


def _verified(row: dict, decision: Decision | None) -> dict:
    """A results row with the person's decision (if any) made final."""
    extra = {"model_label": row["label"]}
    if decision is None:
        return {**row, **extra, "decided_by": MODEL, "decided_at": row["processed_at"], "decision": None}
    person = {**extra, "decided_by": PERSON, "decided_at": decision.decided_at}
    if decision.decision in (NOT_A_DIGIT, BLANK):
        return {**row, **person, "status": decision.decision, "label": None, "decision": decision.decision}
    kind = ACCEPTED if decision.label == row["label"] else CORRECTED
    return {**row, **person, "status": OK, "label": decision.label, "decision": kind}


def _applied_before(folder: Path) -> dict:
    """The decisions an earlier apply made, read back from ``verified.csv`` (one per ``file,page``)."""
    if not has_verified(folder):
        return {}
    earlier = {}
    for row in person_rows(folder):
        kind = row["decision"] if row["decision"] in (NOT_A_DIGIT, BLANK) else None
        file, page = row_key(row)
        decision = Decision(file, page, row["label"], kind, row["decided_at"] or "", None)
        earlier[decision.key] = decision
    return earlier


def _history(folder: Path) -> list:
    """The earlier applies listed in ``verified.json``; a damaged file is refused rather than overwritten blindly."""
    path = folder / VERIFIED_JSON
    if not path.is_file():
        return []
    try:
        with open(path, encoding="utf-8") as handle:
            applied = json.load(handle).get("applied")
    except (ValueError, RecursionError, AttributeError) as exc:
        raise JobCorruptError(f"{path}: not a batchclf verified file ({exc.__class__.__name__}); move it away to apply anew") from None
    if not isinstance(applied, list):
        raise JobCorruptError(f"{path}: not a batchclf verified file (no list 'applied'); move it away to apply anew")
    return applied


def _listed(decision: Decision) -> dict:
    return {"file": decision.file, "page": decision.page, "label": decision.label, "decision": decision.decision,
            "decided_at": decision.decided_at}


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(VERIFIED_COLUMNS)
    writer.writerows([csv_cell(row[column]) for column in VERIFIED_COLUMNS] for row in rows)
    return buffer.getvalue()


def _json(summary: dict, rows: list[dict]) -> str:
    dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
    lines = ",\n".join(dumps({column: _finite(row[column]) for column in VERIFIED_COLUMNS}) for row in rows)
    head = dumps(summary)
    return head[:-1] + ', "rows": [\n' + lines + "\n]}\n"


def _finite(value):
    """JSON has no NaN or infinity: such a number (only a damaged results.csv holds one) becomes null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
