"""Gather a report: pick the jobs, read each back, summarise it, add up the totals."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from batchclf.jobs.folder import Job, JobKind, read_job
from batchclf.jobs.verified import VERIFIED_CSV
from batchclf.metrics.drift import DriftState, read_drift_state
from batchclf.report.select import select_jobs
from batchclf.report.summary import summarise, totals

# Bumped when a documented JSON key changes meaning or goes away.  2: a daemon day's ``seconds`` and
# ``files_per_second`` are its working time and the rate over it (1: first row to last, idle hours included,
# now ``wall_seconds``); the totals' rate leaves out the files of jobs without a timing.
REPORT_VERSION = 2


@dataclass
class Report:
    jobs: list[Job]
    summaries: list[dict]
    totals: dict
    warnings: list[str] = field(default_factory=list)  # job folders skipped, and why
    drift: DriftState | None = None  # the daemon's drift state in the jobs folder; None where no daemon ran

    def as_json(self) -> dict:
        """The ``--json`` object; its keys are listed in the README."""
        return {"report_version": REPORT_VERSION, "jobs": self.summaries, "totals": self.totals,
                "drift": None if self.drift is None else self.drift.as_dict()}

    @property
    def has_daemon_day(self) -> bool:
        return any(summary["kind"] == JobKind.WATCH.value for summary in self.summaries)


def collect(
    refs: list[str], jobs_dir: Path, since: str | None = None, last: int | None = None, inputs: list[Path] | None = None
) -> Report:
    """``inputs``: folders the user names as holding the jobs' inputs (see :mod:`batchclf.jobs.inputs`).

    A ``since`` window with no job in it gives a report of no jobs (see :func:`select_jobs`).
    """
    warnings: list[str] = []
    jobs = [read_job(folder, inputs or ()) for folder in select_jobs(refs, jobs_dir, since, last, warnings)]
    summaries = [summarise(job) for job in jobs]
    warnings += [behind for job, summary in zip(jobs, summaries) if (behind := _verified_behind(job, summary))]
    return Report(jobs, summaries, totals(summaries), warnings, _drift(jobs, jobs_dir))


def _drift(jobs: list[Job], jobs_dir: Path) -> DriftState | None:
    """The drift state beside the daemon days reported (their jobs folder), else in ``jobs_dir``."""
    days = [job.folder.parent for job in jobs if job.kind is JobKind.WATCH]
    return read_drift_state(days[-1] if days else jobs_dir)


def _verified_behind(job: Job, summary: dict) -> str | None:
    """A warning when a daemon day grew after its review was applied: verified.csv lacks the rows added since."""
    if summary["rows_from"] != VERIFIED_CSV:
        return None
    try:
        behind = job.results_csv.stat().st_mtime > (job.folder / VERIFIED_CSV).stat().st_mtime
    except OSError:
        return None
    if not behind:
        return None
    return (f"{job.folder}: results.csv changed after {VERIFIED_CSV} was written; rows added since are not counted "
            f"(run batchclf review apply {job.id} again)")
