"""``report``: what the jobs did, at a glance, and the doubtful digits in front of the eyes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from batchclf.cli.common import AsJson, Home, Inputs, friendly_errors, input_folders


@friendly_errors
def report(
    jobs: Annotated[
        Optional[List[str]],
        typer.Argument(help="Job folders, job ids or daemon days (watch-2026-11-25); default: the latest job.", show_default=False),
    ] = None,
    jobs_dir: Annotated[Optional[Path], typer.Option("--jobs", help="Folder holding the job folders (default: jobs/).")] = None,
    since: Annotated[
        Optional[str], typer.Option("--since", help="Jobs from this window: a duration (7d, 12h, 2w) or a date (2026-11-01).")
    ] = None,
    last: Annotated[Optional[int], typer.Option("--last", min=1, help="The last N jobs (after --since, if given).")] = None,
    as_json: AsJson = False,
    csv_path: Annotated[Optional[Path], typer.Option("--csv", help="Write the per-job table to this CSV file.")] = None,
    xlsx_path: Annotated[
        Optional[Path], typer.Option("--xlsx", help="Write a workbook (Summary and Rows sheets); needs batchclf\\[xlsx] (pip install 'batchclf\\[xlsx]').")
    ] = None,
    html_path: Annotated[
        Optional[Path], typer.Option("--html", help="Write a self-contained review sheet of every review and failed item.")
    ] = None,
    inputs: Inputs = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when --since finds no job in the window (default: say so, exit 0).")
    ] = False,
    home: Home = None,
):
    """Summarise job folders: counts, labels, confidences, failures; trends over many jobs."""
    from rich.console import Console

    from batchclf import paths
    from batchclf.errors import JobNotFoundError
    from batchclf.printable import printable
    from batchclf.report.collect import collect
    from batchclf.report.terminal import print_job, print_jobs

    folder = jobs_dir or paths.jobs_dir(home)
    result = collect(jobs or [], folder, since, last, input_folders(inputs))
    notes = Console(stderr=True)
    for warning in result.warnings:
        typer.echo(f"warning: {printable(warning)}", err=True)  # whole lines: never wrapped at 80 columns
    if not result.summaries:
        # Only a --since window can be empty: a quiet weekend, not a failure (a cron job must not mail an error).
        quiet = f"no jobs in the window (since {printable(since)}, in {printable(str(folder))})"
        # The files asked for are still written, empty and saying why: a cron job that mails them never sends an
        # earlier run's file left in place as if it were this window's.
        _write_files(result, csv_path, xlsx_path, html_path, notes, quiet)
        if strict:
            raise JobNotFoundError(quiet)
        if as_json:
            typer.echo(quiet, err=True)  # stdout stays one JSON object for the parser
            typer.echo(json.dumps(result.as_json(), indent=2, ensure_ascii=False, allow_nan=False))
        else:
            typer.echo(quiet)
        return
    _write_files(result, csv_path, xlsx_path, html_path, notes)
    if as_json:
        # allow_nan=False: a number that is not JSON (NaN, Infinity) fails here rather than reach a parser.
        typer.echo(json.dumps(result.as_json(), indent=2, ensure_ascii=False, allow_nan=False))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=400)  # piped: whole lines for grep and awk, never wrapped at 80 columns
    if len(result.summaries) == 1:
        print_job(result.summaries[0], console)
    else:
        print_jobs(result.summaries, result.totals, console)
    if result.drift is not None and result.has_daemon_day:
        console.print(printable(result.drift.line()), highlight=False, markup=False)


def _write_files(result, csv_path: Path | None, xlsx_path: Path | None, html_path: Path | None, notes, empty: str | None = None) -> None:
    """The files asked for; ``empty``: the window had no job, and the workbook and sheet say this sentence."""
    from batchclf.report import exports

    if csv_path:
        exports.write_jobs_csv(csv_path, result.summaries)  # no job: the header alone
        notes.print(f"wrote {csv_path}", highlight=False, markup=False)
    if xlsx_path:
        rows = exports.write_workbook(xlsx_path, result.jobs, result.summaries, result.totals, note=empty)
        notes.print(f"wrote {xlsx_path} ({rows:,} rows)", highlight=False, markup=False)
    if html_path:
        from batchclf.report.html import write_review_sheet

        items = write_review_sheet(html_path, result.jobs, result.summaries, note=empty)
        notes.print(f"wrote {html_path} ({items:,} items to review)", highlight=False, markup=False)
