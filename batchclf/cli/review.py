"""``review apply``: the review sheet's decisions become the job's verified results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from batchclf.cli.common import Home, friendly_errors

app = typer.Typer(help="Turn review sheet decisions into a job's verified results.", no_args_is_help=True)
LISTED = 10  # unmatched decisions named on the terminal (verified.json lists them all)


@app.command("apply")
@friendly_errors
def apply(
    job: Annotated[str, typer.Argument(metavar="JOB", help="A job folder, job id or daemon day (watch-2026-11-25 or 2026-11-25).", show_default=False)],
    corrections: Annotated[
        List[Path], typer.Argument(metavar="CORRECTIONS.csv...", help="corrections.csv files saved from the review sheet (a newer decision for a row wins).", show_default=False)
    ],
    jobs_dir: Annotated[Optional[Path], typer.Option("--jobs", help="Folder holding the job folders (default: jobs/).")] = None,
    home: Home = None,
):
    """Write JOB/verified.csv and verified.json: every row, with what a person decided made final (results.csv is kept)."""
    from batchclf import paths
    from batchclf.jobs.folder import find_job
    from batchclf.printable import printable
    from batchclf.review.apply import apply_reviews

    folder = find_job(job, jobs_dir or paths.jobs_dir(home))
    note = lambda: typer.echo(f"waiting for another review apply on {printable(str(folder))} to finish", err=True)  # noqa: E731
    result = apply_reviews(folder, corrections, on_wait=note)
    warn = lambda text: typer.echo(f"warning: {text}", err=True)  # noqa: E731
    if result.unmatched:
        names = "; ".join(f"{d.file!r} page {d.page if d.page is not None else '-'}" for d in result.unmatched[:LISTED])
        more = f" and {len(result.unmatched) - LISTED:,} more" if len(result.unmatched) > LISTED else ""
        warn(f"{len(result.unmatched):,} decisions name rows job {result.job_id} does not have, not applied "
             f"(listed in {result.json_path.name}): {names}{more}")
    if result.other_jobs:
        warn(f"{result.other_jobs:,} decisions are for other jobs (their job column) and were not applied")
    if result.older:
        warn(f"{result.older:,} decisions are older than the ones already applied to their rows and were not applied")
    if result.repeated:
        warn(f"{result.repeated:,} lines named a file and page already listed in the same file; the last line counts")
    if result.shared:
        warn(f"{result.shared:,} decisions apply to more than one row (the same name seen twice in the job)")
    counts = result.counts
    typer.echo(
        f"{result.rows:,} rows of {result.job_id}; {result.new:,} decisions applied now. "
        f"A person confirmed {counts['confirmed']:,}, corrected {counts['corrected']:,}, "
        f"marked {counts['not_a_digit']:,} not a digit and {counts['blank']:,} blank."
    )
    typer.echo(str(result.csv_path))
