"""The report as files for other tools: the per-job table as CSV, a workbook for office users.

The workbook (openpyxl, the ``xlsx`` extra) has a "Summary" sheet (one line
per job and the totals) and a "Rows" sheet (every row of the jobs, from
``verified.csv`` when a person's review was applied, as the report counts
them, streamed in openpyxl's write-only mode so a big job never sits in memory).  Cells
hold real numbers and shares as percentages, under readable titles.
"""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from itertools import chain, islice
from pathlib import Path

from batchclf.atomic import replacing
from batchclf.errors import ExportError
from batchclf.jobs.folder import Job
from batchclf.jobs.rows import COLUMNS, STATUSES, csv_cell
from batchclf.jobs.verified import COUNT_KEYS, has_verified, verified_rows
from batchclf.printable import printable
from batchclf.report.summary import STATUSES as REPORTED_STATUSES

# The review's columns come last, so a reader of the older table by position still finds its columns.
PERSON_COLUMNS = tuple(f"person_{key}" for key in COUNT_KEYS.values())
JOB_COLUMNS = (
    "job", "kind", "started", "seconds", "files", "rows", *STATUSES,
    "review_rate", "failed_rate", "files_per_second", "model", "model_sha256",
    *(status for status in REPORTED_STATUSES if status not in STATUSES), "rows_from", *PERSON_COLUMNS, "wall_seconds",
)
JOB_TITLES = (
    "Job", "Kind", "Started (UTC)", "Seconds", "Files", "Rows", "OK", "Review", "Blank", "Failed", "Duplicate",
    "Review share", "Failed share", "Files per second", "Model", "Model SHA-256",
    "Not a digit", "Rows from", "Confirmed by a person", "Corrected by a person", "Not a digit (person)", "Blank (person)",
    "Wall seconds (first row to last)",
)
ROW_TITLES = {
    "file": "File", "page": "Page", "status": "Status", "label": "Label", "confidence": "Confidence",
    "second_label": "Second label", "second_confidence": "Second confidence", "error": "Reason",
    "sha256": "SHA-256", "width": "Width (px)", "height": "Height (px)", "model": "Model",
    "processed_at": "Processed at (UTC)", "duplicate_of": "Duplicate of", "second_look": "Second look",
}
EXCEL_MAX_ROWS = 1_048_576  # a sheet's hard limit, header included

# How the workbook shows numbers: shares as percentages, times as real dates (UTC; a spreadsheet has no zones).
PERCENT = "0.0%"
DATE_TIME = "yyyy-mm-dd hh:mm:ss"
SECONDS = "#,##0.0"
PERCENT_COLUMNS = ("review_rate", "failed_rate")
DATE_COLUMNS = ("started",)  # the Summary sheet's; the Rows sheet's is processed_at
DECIMAL_COLUMNS = ("seconds", "files_per_second", "wall_seconds")
WIDTH_SAMPLE = 1000  # the Rows sheet's widths are fitted to its first rows (it is streamed: a big job never sits in memory)
MAX_WIDTH = 60  # characters: a very long file name does not push every other column off the screen


def job_line(summary: dict) -> dict:
    """One job as a flat record in :data:`JOB_COLUMNS` order (the person's counts empty for a job nobody reviewed)."""
    return {
        "job": summary["id"], "kind": summary["kind"], "started": summary["started"], "seconds": summary["seconds"],
        "files": summary["files"], "rows": summary["rows"], **summary["counts"],
        "review_rate": summary["review_rate"], "failed_rate": summary["failed_rate"],
        "files_per_second": summary["files_per_second"],
        "model": summary["model"]["file"], "model_sha256": summary["model"]["sha256"],
        "rows_from": summary["rows_from"], **_person(summary["verified"]), "wall_seconds": summary.get("wall_seconds"),
    }


def total_line(totals: dict) -> dict:
    """The totals as a flat record in :data:`JOB_COLUMNS` order (what has no total is None)."""
    return {
        **dict.fromkeys(JOB_COLUMNS), "job": "Total", "kind": f"{totals['jobs']} jobs", "seconds": totals["seconds"],
        "files": totals["files"], "rows": totals["rows"], **totals["counts"],
        "review_rate": totals["review_rate"], "failed_rate": totals["failed_rate"], "files_per_second": totals["files_per_second"],
        **_person(totals["verified"]),
    }


def _person(counts: dict | None) -> dict:
    return {f"person_{key}": None if counts is None else counts[key] for key in COUNT_KEYS.values()}


def job_rows(job: Job):
    """The rows the report reads for a job: its verified.csv when a person's review was applied, else results.csv."""
    return verified_rows(job.folder) if has_verified(job.folder) else job.rows()


def write_jobs_csv(path: Path, summaries: list[dict]) -> None:
    try:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(JOB_COLUMNS)
            for summary in summaries:
                line = job_line(summary)
                writer.writerow(csv_cell(line[column]) for column in JOB_COLUMNS)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_workbook(path: Path, jobs: list[Job], summaries: list[dict], totals: dict, note: str | None = None) -> int:
    """Write the workbook; returns how many rows went to the Rows sheet.

    ``note``: a sentence shown under the totals (why a workbook has no job: an empty ``--since`` window).

    Both sheets: a bold header row frozen under an autofilter, columns as wide
    as their contents (the Rows sheet's measured on its first
    :data:`WIDTH_SAMPLE` rows), times as spreadsheet dates, shares as
    percentages.  Every text cell goes through :func:`_cell`, the one guard:
    no text from a job folder (file names, reasons, job ids, model names) can
    become a formula or break the file.
    """
    try:
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.cell.cell import Cell
        from openpyxl.styles import Font
        from openpyxl.utils import get_column_letter
    except ImportError:
        raise ExportError("--xlsx needs openpyxl: pip install 'batchclf[xlsx]'") from None
    path = Path(path)
    _check_destination(path)

    book = Workbook(write_only=True)
    bold = Font(bold=True)

    def formatted(sheet, value, number_format):
        if value is None or value.__class__ is str:
            return _cell(sheet, value)
        cell = WriteOnlyCell(sheet, value=value)
        cell.number_format = number_format
        return cell

    def date(sheet, value):
        """A UTC time text as a spreadsheet date; a text that is no time stays text (through the guard)."""
        moment = _spreadsheet_time(value)
        return _cell(sheet, value) if moment is None else formatted(sheet, moment, DATE_TIME)

    def fit_widths(sheet, titles, lines):
        """Each column as wide as its title (and the autofilter's button) or its widest value in ``lines``."""
        widths = [len(title) + 2 for title in titles]
        for values in lines:
            for k, value in enumerate(values):
                widths[k] = max(widths[k], _width(value))
        for k, width in enumerate(widths, start=1):
            sheet.column_dimensions[get_column_letter(k)].width = min(width + 1, MAX_WIDTH)

    def header(sheet, titles):
        sheet.freeze_panes = "A2"  # the titles stay in view
        cells = []
        for title in titles:
            cell = _cell(sheet, title)
            cell = cell if isinstance(cell, Cell) else WriteOnlyCell(sheet, value=cell)
            cell.font = bold
            cells.append(cell)
        sheet.append(cells)

    def filter_over(sheet, columns, last_row):
        sheet.auto_filter.ref = f"A1:{get_column_letter(columns)}{last_row}"

    # Summary: one line per job under the filter; a blank line and the totals below it (sorting keeps them last).
    summary_sheet = book.create_sheet("Summary")
    job_values = [[job_line(summary)[column] for column in JOB_COLUMNS] for summary in summaries]
    total = total_line(totals)
    total_values = [total[column] for column in JOB_COLUMNS]

    def summary_cells(sheet, values):
        out = []
        for column, value in zip(JOB_COLUMNS, values):
            if column in PERCENT_COLUMNS:
                out.append(formatted(sheet, value, PERCENT))
            elif column in DATE_COLUMNS:
                out.append(date(sheet, value))
            elif column in DECIMAL_COLUMNS:
                out.append(formatted(sheet, value, SECONDS))
            else:
                out.append(_cell(sheet, value))
        return out

    fit_widths(summary_sheet, JOB_TITLES, [*job_values, total_values])
    header(summary_sheet, JOB_TITLES)
    for values in job_values:
        summary_sheet.append(summary_cells(summary_sheet, values))
    filter_over(summary_sheet, len(JOB_TITLES), 1 + len(job_values))
    summary_sheet.append([])
    summary_sheet.append(summary_cells(summary_sheet, total_values))
    if note:
        summary_sheet.append([])
        summary_sheet.append([_cell(summary_sheet, note)])

    # Rows: every row of every job, streamed; widths fitted to the first rows.
    rows_sheet = book.create_sheet("Rows")
    titles = ["Job", *(ROW_TITLES[column] for column in COLUMNS)]
    stamp = 1 + COLUMNS.index("processed_at")

    def row_cells(sheet, values):
        # A cell object per row: openpyxl reuses an appended cell for the next values of its row.
        return [date(sheet, value) if k == stamp else _cell(sheet, value) for k, value in enumerate(values)]

    def all_rows():
        for job in jobs:
            for row in job_rows(job):
                yield [job.id, *(row[column] for column in COLUMNS)]

    stream = all_rows()
    first = list(islice(stream, WIDTH_SAMPLE))
    fit_widths(rows_sheet, titles, first)
    header(rows_sheet, titles)
    written, left_out = 0, 0
    for values in chain(first, stream):
        if written + 1 >= EXCEL_MAX_ROWS:
            left_out += 1
            continue
        rows_sheet.append(row_cells(rows_sheet, values))
        written += 1
    filter_over(rows_sheet, len(titles), 1 + written)
    if left_out:
        note = book.create_sheet("Note")
        note.append([_cell(note, f"{left_out} rows did not fit into one sheet; results.csv (verified.csv, after a review) holds them all.")])
    _save(book, path)
    return written


def _spreadsheet_time(value) -> datetime | None:
    """A time text as the naive UTC datetime a spreadsheet holds (it knows no zones); None when it is no time."""
    if value.__class__ is not str or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(timezone.utc)
        except OverflowError:
            return None
    moment = moment.replace(tzinfo=None)
    return moment if moment.year >= 1900 else None  # a spreadsheet's dates start in 1900


def _width(value) -> int:
    """The characters a value takes in a cell, about: a date as its format, a share as "12.3%"."""
    if value is None:
        return 0
    if isinstance(value, float):
        return len(f"{value:,.4f}".rstrip("0")) + 1
    text = str(value)
    return len(DATE_TIME) if _spreadsheet_time(text) is not None else len(text)


def _check_destination(path: Path) -> None:
    """Refuse a place the workbook cannot go before any of it is built (openpyxl leaves half-written sheets behind)."""
    if path.is_dir():
        raise ExportError(f"cannot write {path}: it is a folder (give a file name, e.g. {path / 'report.xlsx'})")
    if not path.parent.is_dir():
        raise ExportError(f"cannot write {path}: no folder {path.parent}")


def _save(book, path: Path) -> None:
    """Save to a hidden sibling and rename: a failed save leaves no half workbook under the real name."""
    try:
        with replacing(path, suffix=".partial") as temporary:
            book.save(temporary)
    except OSError as exc:
        for sheet in book.worksheets:  # close openpyxl's pending row writers, which would complain at exit
            rows = getattr(sheet, "_rows", None)
            if rows is not None:
                try:
                    rows.close()
                except Exception:  # its file is already gone: nothing left to finish
                    pass
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None


def _cell(sheet, value):
    """The one guard for a workbook cell: text shows as typed, never runs.

    Control characters (which the xlsx XML cannot hold) are shown escaped,
    as on the terminal; a text starting with ``=`` (which openpyxl would
    store as a formula: ``=HYPERLINK(...)``, ``=WEBSERVICE(...)``) is stored
    as a string cell.  Numbers and empty cells pass as they are.
    """
    if value.__class__ is not str:
        return value
    if not value.isprintable():
        value = printable(value)
    if value.startswith("="):
        from openpyxl.cell import WriteOnlyCell

        cell = WriteOnlyCell(sheet, value=value)
        cell.data_type = "s"  # shown as typed, never run: names are user input
        return cell
    return value
