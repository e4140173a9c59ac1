"""``batchclf report`` for an operator: a daemon day's rate while working, a quiet window, the workbook,
drift, and inputs that retention removed (issue 20, "Reports an operator trusts")."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchclf.cli import app
from batchclf.jobs.folder import read_job
from batchclf.jobs.rows import make_row
from batchclf.report.collect import collect
from batchclf.report.summary import summarise

from .helpers import write_job

DAY = "2026-11-25"
MORNING = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)
EVENING = MORNING + timedelta(hours=8)


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def row_at(file: str, when: datetime, status: str = "ok", confidence: float = 0.99) -> dict:
    """A row processed at ``when``, by default ok at 99%; a failed one is a truncated file with no page."""
    labelled = status in ("ok", "review")
    return make_row(
        file=file, page=1 if status != "failed" else None, status=status, label=3 if labelled else None,
        confidence=confidence if labelled else None, second_label=5 if labelled else None,
        second_confidence=round(1 - confidence, 6) if labelled else None,
        error="truncated file" if status == "failed" else None, model="default.keras", processed_at=stamp(when),
    )


def burst(start: datetime, prefix: str, batches: int = 10, size: int = 30) -> list[dict]:
    """A burst as the daemon writes it: batches 0.5 s apart, one processed_at per batch; a blank row stamped
    by its worker a little before its batch."""
    rows = []
    for b in range(batches):
        when = start + timedelta(seconds=0.5 * b)
        rows += [row_at(f"{prefix}/{b}-{k}.png", when) for k in range(size - 1)]
        rows.append(row_at(f"{prefix}/{b}-blank.png", when - timedelta(seconds=0.2), status="blank"))
    return rows


@pytest.fixture
def idle_day(tmp_path) -> Path:
    """A daemon day: 300 files at 08:00 (4.5 s of batches), the daemon idle for 8 hours, 300 more at 16:00."""
    rows = burst(MORNING, "morning") + burst(EVENING, "evening")
    return write_job(tmp_path / "jobs", f"watch-{DAY}", rows, {"inbox": str(tmp_path / "inbox"), "day": DAY})


# -- 1. the rate while working --------------------------------------------------------------------------


def test_a_daemon_days_rate_leaves_out_the_idle_hours_and_keeps_the_wall_span(idle_day):
    summary = summarise(read_job(idle_day))
    assert summary["files"] == 600
    # First row (the first blank, 07:59:59.8) to last (16:00:04.5).
    assert summary["wall_seconds"] == 8 * 3600 + 4.7
    # Each burst: 0.2 s before its first batch + 9 gaps of 0.5 s = 4.7 s; the 8 h between count 5 s (the idle cut).
    assert summary["seconds"] == pytest.approx(4.7 + 5.0 + 4.7)
    assert summary["files_per_second"] == round(600 / 14.4, 2)  # 41.67, not 600 / 8 h = 0.02
    assert summary["finished"] == stamp(EVENING + timedelta(seconds=4.5))


def test_the_terminal_and_json_say_working_time_and_wall_span(idle_day):
    result = CliRunner().invoke(app, ["report", str(idle_day)])
    assert result.exit_code == 0, result.output
    assert "600 files, 600 rows in 14.4 s of work (41.7 files/s while working), 8h00m first row to last" in result.output
    result = CliRunner().invoke(app, ["report", str(idle_day), "--json"])
    job = json.loads(result.stdout)["jobs"][0]
    assert (job["seconds"], job["wall_seconds"], job["files_per_second"]) == (14.4, 28804.7, 41.67)
    assert json.loads(result.stdout)["report_version"] == 2  # seconds changed meaning for a daemon day


def test_totals_over_both_kinds_are_files_over_working_time(idle_day):
    jobs = idle_day.parent
    rows = [row_at(f"{i}.png", MORNING) for i in range(100)]
    write_job(jobs, "20261125T020000Z-00aa", rows, {"started": "2026-11-25T02:00:00.000Z", "seconds": 10.0})
    # A day of one batch: no time to divide by; its files are counted, but not in the rate they would inflate.
    write_job(jobs, "watch-2026-11-24", [row_at(f"{i}.png", MORNING - timedelta(days=1)) for i in range(50)], {"inbox": "/nowhere"})
    report = collect([], jobs, last=10)
    by_id = {summary["id"]: summary for summary in report.summaries}
    assert by_id["watch-2026-11-24"]["seconds"] is None and by_id["watch-2026-11-24"]["files_per_second"] is None
    assert report.totals["files"] == 750
    assert report.totals["seconds"] == pytest.approx(24.4)
    assert report.totals["files_per_second"] == round(700 / 24.4, 2)
    result = CliRunner().invoke(app, ["report", "--jobs", str(jobs), "--last", "10"])
    assert result.exit_code == 0, result.output
    total = next(line for line in result.output.splitlines() if line.startswith("total"))
    assert "28.7" in total
    assert "files/s: while working (24.4 s of work in all" in result.output


# -- 2. a quiet window ------------------------------------------------------------------------------------


@pytest.fixture
def old_jobs(tmp_path) -> Path:
    write_job(tmp_path / "jobs", "20200101T020000Z-00aa", [row_at("a.png", MORNING)], {"started": "2020-01-01T02:00:00.000Z", "seconds": 1.0})
    return tmp_path / "jobs"


def test_an_empty_since_window_is_said_and_exits_0(old_jobs, tmp_path):
    result = CliRunner().invoke(app, ["report", "--jobs", str(old_jobs), "--since", "7d"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("no jobs in the window (since 7d") and "Error" not in result.output
    result = CliRunner().invoke(app, ["report", "--jobs", str(old_jobs), "--since", "7d", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)  # stdout stays one JSON object; the sentence goes to stderr
    assert data["jobs"] == [] and data["totals"]["jobs"] == 0 and "no jobs in the window" in result.stderr


@pytest.mark.parametrize("strict", [False, True])
def test_an_empty_window_still_writes_the_files_asked_for_saying_so(old_jobs, tmp_path, strict):
    """A cron job mailing report.xlsx / review.html must never send the previous run's files as this window's."""
    from openpyxl import load_workbook

    xlsx, html, table = tmp_path / "r.xlsx", tmp_path / "r.html", tmp_path / "r.csv"
    for stale in (xlsx, html, table):
        stale.write_text("yesterday's report")
    args = ["report", "--jobs", str(old_jobs), "--since", "7d", "--xlsx", str(xlsx), "--html", str(html), "--csv", str(table)]
    result = CliRunner().invoke(app, args + (["--strict"] if strict else []))
    assert result.exit_code == (1 if strict else 0), result.output
    said = f"no jobs in the window (since 7d, in {old_jobs})"
    book = load_workbook(xlsx, read_only=True)
    summary = [[cell for cell in line if cell is not None] for line in book["Summary"].iter_rows(values_only=True)]
    assert [said] in summary and ["Total", "0 jobs", 0, 0, 0, 0, 0, 0, 0, 0, 0] in summary
    assert list(book["Rows"].iter_rows(values_only=True))[1:] == []  # the header alone
    page = html.read_text(encoding="utf-8")
    assert "No jobs in the window (since 7d" in page and "yesterday" not in page and "in 0 jobs" in page
    assert table.read_text(encoding="utf-8").splitlines()[0].startswith("job,kind,started") and len(table.read_text().splitlines()) == 1


def test_strict_makes_an_empty_window_exit_1(old_jobs):
    result = CliRunner().invoke(app, ["report", "--jobs", str(old_jobs), "--since", "7d", "--strict"])
    assert result.exit_code == 1 and result.output.startswith("Error: no jobs in the window (since 7d")
    # --strict changes nothing when the window has jobs.
    result = CliRunner().invoke(app, ["report", "--jobs", str(old_jobs), "--since", "2019-12-31", "--strict"])
    assert result.exit_code == 0 and "20200101T020000Z-00aa" in result.output


def test_no_jobs_at_all_without_a_window_is_still_an_error(tmp_path):
    (tmp_path / "jobs").mkdir()
    result = CliRunner().invoke(app, ["report", "--jobs", str(tmp_path / "jobs")])
    assert result.exit_code == 1 and result.output.startswith("Error: no jobs in")


# -- 3. the workbook --------------------------------------------------------------------------------------


def test_the_workbook_has_dates_percentages_fitted_widths_and_a_frozen_filtered_header(idle_day, tmp_path):
    openpyxl = pytest.importorskip("openpyxl", reason="openpyxl (the xlsx extra) is not installed")
    jobs = idle_day.parent
    long_name = "scans/a-rather-long-folder-name/page-0001.png"  # 44 characters
    rows = [row_at(long_name, MORNING, status="review", confidence=0.5), row_at("=HYPERLINK(1).png", MORNING)]
    write_job(jobs, "20261125T020000Z-00aa", rows, {"started": "2026-11-25T02:00:00.000Z", "seconds": 2.0})
    book_path = tmp_path / "report.xlsx"
    result = CliRunner().invoke(app, ["report", "--jobs", str(jobs), "--last", "5", "--xlsx", str(book_path)])
    assert result.exit_code == 0, result.output
    book = openpyxl.load_workbook(book_path)

    summary = book["Summary"]
    titles = [cell.value for cell in summary[1]]
    assert summary.freeze_panes == "A2" and all(cell.font.bold for cell in summary[1])
    last_column = openpyxl.utils.get_column_letter(len(titles))
    assert summary.auto_filter.ref == f"A1:{last_column}3"  # the two jobs; the totals stay out of the filter
    lines = {summary.cell(row=r, column=1).value: r for r in (2, 3)}
    classify_line, day_line = lines["20261125T020000Z-00aa"], lines[f"watch-{DAY}"]
    started = summary.cell(row=classify_line, column=titles.index("Started (UTC)") + 1)
    assert started.is_date and started.value == datetime(2026, 11, 25, 2, 0)
    review = summary.cell(row=classify_line, column=titles.index("Review share") + 1)
    assert review.value == 0.5 and review.number_format == "0.0%"
    total_row = [cell.value for cell in summary[5]]
    assert total_row[0] == "Total" and summary.cell(row=5, column=titles.index("Review share") + 1).number_format == "0.0%"
    assert "Wall seconds (first row to last)" in titles
    wall = summary.cell(row=day_line, column=titles.index("Wall seconds (first row to last)") + 1).value
    assert wall == 28804.7
    job_width = summary.column_dimensions["A"].width
    assert job_width >= len("20261125T020000Z-00aa")

    rows_sheet = book["Rows"]
    header = [cell.value for cell in rows_sheet[1]]
    assert rows_sheet.freeze_panes == "A2"
    assert rows_sheet.auto_filter.ref == f"A1:{openpyxl.utils.get_column_letter(len(header))}{1 + 2 + 600}"
    stamp_column = header.index("Processed at (UTC)") + 1
    processed = rows_sheet.cell(row=2, column=stamp_column)
    assert processed.is_date and processed.value == datetime(2026, 11, 25, 8, 0) and "yyyy" in processed.number_format
    file_column = openpyxl.utils.get_column_letter(header.index("File") + 1)
    assert rows_sheet.column_dimensions[file_column].width >= len(long_name)
    assert rows_sheet.column_dimensions[file_column].width < 2 * len(long_name)  # fitted, not merely wide
    (hostile,) = [cell for (cell,) in rows_sheet.iter_rows(min_col=2, max_col=2) if cell.value == "=HYPERLINK(1).png"]
    assert hostile.data_type == "s"  # still text through the one guard


# -- 4. drift ---------------------------------------------------------------------------------------------

DRIFT_STATE = {
    "version": 1, "updated": "2026-12-07T03:10:00Z", "model": {"file": "default.keras", "sha256": "ab" * 32},
    "window": 500, "rows": 500, "review_share": 0.21, "mean_confidence": 0.88,
    "baseline": {"review_share": 0.04, "mean_confidence": 0.97, "source": "learned", "rows": 500},
    "thresholds": {"review_share": 0.08, "mean_confidence": 0.92}, "drifting": True,
    "since": "2026-12-07T02:55:00.000Z", "reasons": ["review share 21.0% over the last 500 rows (baseline 4.0%)"],
}


def test_drift_is_in_the_json_and_under_a_daemon_days_terminal_report(idle_day):
    (idle_day.parent / "watch-drift.json").write_text(json.dumps(DRIFT_STATE))
    result = CliRunner().invoke(app, ["report", str(idle_day), "--json"])
    assert result.exit_code == 0, result.output
    drift = json.loads(result.stdout)["drift"]
    assert drift["drifting"] is True and drift["since"] == "2026-12-07T02:55:00.000Z"
    assert drift["reasons"] == DRIFT_STATE["reasons"] and drift["review_share"] == 0.21
    assert drift["baseline_review_share"] == 0.04 and drift["problem"] is None
    result = CliRunner().invoke(app, ["report", str(idle_day)])
    assert "DRIFT since 2026-12-07T02:55:00.000Z: review share 21.0% over the last 500 rows (baseline 4.0%)" in result.output


def test_no_daemon_no_drift(old_jobs):
    result = CliRunner().invoke(app, ["report", "--jobs", str(old_jobs), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["drift"] is None
    result = CliRunner().invoke(app, ["report", "--jobs", str(old_jobs)])
    assert "drift" not in result.output.lower()


# -- 5. inputs that retention removed ---------------------------------------------------------------------


def daemon_home(root: Path, gone: tuple[str, ...]) -> Path:
    """A daemon's home whose journal moved a.png into processed/2026-11-01/, b.png into processed/2026-11-20/
    (still there, the file deleted by hand), c.png into processed/archive/ and d.png into failed/2026-11-01/;
    then the folders in ``gone`` are removed, as retention (or a person) would."""
    from batchclf.watch.journal import FileRecord, Journal

    inbox, jobs = root / "inbox", root / "jobs"
    inbox.mkdir(parents=True)
    jobs.mkdir()
    where = {
        "a.png": root / "processed" / "2026-11-01" / "a.png", "b.png": root / "processed" / "2026-11-20" / "b.png",
        "c.png": root / "processed" / "archive" / "c.png", "d.png": root / "failed" / "2026-11-01" / "sub" / "d.png",
    }
    for place in where.values():
        place.parent.mkdir(parents=True, exist_ok=True)
        place.write_bytes(b"not looked at")
    journal = Journal(jobs / "watch-journal.sqlite")
    journal.decide([], [FileRecord(name, 1, 0, None, "review", "2026-11-01", None, "processed") for name in where])
    journal.mark_moved([(move.id, str(where[move.path])) for move in journal.pending_moves()])
    journal.close()
    for name in gone:
        target = root / name
        if target.is_file():
            target.unlink()
            continue
        for path in sorted(target.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        target.rmdir()
    rows = [row_at(name, MORNING - timedelta(days=24), status="review", confidence=0.4) for name in where]
    write_job(jobs, "watch-2026-11-01", rows, {"inbox": str(inbox), "day": "2026-11-01"})
    return root


def problems(home: Path) -> dict[str, str | None]:
    job = read_job(home / "jobs" / "watch-2026-11-01")
    return {row["file"]: job.locate_input(row).problem for row in job.rows()}


def test_inputs_whose_day_folder_retention_removed_say_so(tmp_path):
    home = daemon_home(tmp_path / "home", gone=("processed/2026-11-01", "processed/2026-11-20/b.png", "processed/archive", "failed/2026-11-01"))
    assert problems(home) == {
        "a.png": "removed by retention",  # processed/2026-11-01/ gone, processed/ still there
        "b.png": "missing",  # its day folder is still there: the file itself went
        "c.png": "missing",  # not a day folder: retention never removes it
        "d.png": "removed by retention",  # failed/2026-11-01/sub/d.png
    }


def test_a_whole_processed_folder_gone_is_missing_not_retention(tmp_path):
    home = daemon_home(tmp_path / "home", gone=("processed",))
    assert problems(home)["a.png"] == "missing"


def test_a_journal_pointing_outside_the_home_is_never_called_retention(tmp_path):
    from batchclf.jobs.inputs import watch_locator

    home = tmp_path / "home"
    (home / "jobs" / "watch-2026-11-01").mkdir(parents=True)
    (tmp_path / "elsewhere" / "processed").mkdir(parents=True)
    locate = watch_locator({"inbox": str(home / "inbox")}, home / "jobs" / "watch-2026-11-01",
                           {"a.png": str(tmp_path / "elsewhere" / "processed" / "2026-11-01" / "a.png")})
    assert locate("a.png").problem == "missing"


def test_the_review_sheet_shows_removed_by_retention(tmp_path):
    home = daemon_home(tmp_path / "home", gone=("processed/2026-11-01", "processed/archive"))
    sheet = tmp_path / "review.html"
    result = CliRunner().invoke(app, ["report", str(home / "jobs" / "watch-2026-11-01"), "--html", str(sheet)])
    assert result.exit_code == 0, result.output
    blocks = re.findall(r'<script type="application/json" class="items" data-job="[^"]*">(.*?)</script>', sheet.read_text(), re.S)
    notes = {item["file"]: item["note"] for block in blocks for item in json.loads(block)}
    assert notes["a.png"] == "removed by retention" and notes["c.png"] == "missing"
