"""Gather a report: pick the jobs, read each back, summarise it, add up the totals."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from batchclf.jobs.folder import Job, read_job
from batchclf.jobs.verified import VERIFIED_CSV
from batchclf.report.select import select_jobs
from batchclf.report.summary import summarise, totals

REPORT_VERSION = 1  # bumped when a documented JSON key changes meaning or goes away


@dataclass
class Report:
    jobs: list[Job]
    summaries: list[dict]
    totals: dict
    warnings: list[str] = field(default_factory=list)  # job folders skipped, and why

    def as_json(self) -> dict:
        """The ``--json`` object; its keys are listed in the README."""
        return {"report_version": REPORT_VERSION, "jobs": self.summaries, "totals": self.totals}


def collect(
    refs: list[str], jobs_dir: Path, since: str | None = None, last: int | None = None, inputs: list[Path] | None = None
) -> Report:
    """``inputs``: folders the user names as holding the jobs' inputs (see :mod:`batchclf.jobs.inputs`)."""
    warnings: list[str] = []
    jobs = [read_job(folder, inputs or ()) for folder in select_jobs(refs, jobs_dir, since, last, warnings)]
    summaries = [summarise(job) for job in jobs]
    warnings += [behind for job, summary in zip(jobs, summaries) if (behind := _verified_behind(job, summary))]
    return Report(jobs, summaries, totals(summaries), warnings)


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
