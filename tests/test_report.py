"""``batchclf report`` on hand-made job folders: exact counts, both layouts, many jobs, exports, damage."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchclf.cli import app
from batchclf.errors import JobCorruptError, JobNotFoundError
from batchclf.jobs.folder import JobKind, find_job, read_job
from batchclf.jobs.rows import COLUMNS
from batchclf.report.collect import collect
from batchclf.report.select import SinceError, parse_since, select_jobs
from batchclf.report.summary import summarise

from .helpers import REPORT_MODEL, row, sample_job_rows, write_job


@pytest.fixture
def classify_job(tmp_path):
    """12 rows over 11 files: 6 ok, 2 review, 1 blank, 2 failed, 1 duplicate; a 2-page TIFF."""
    rows = sample_job_rows("20261125T030000Z-00aa")
    meta = {"started": "2026-11-25T03:00:00.000Z", "finished": "2026-11-25T03:00:04.000Z", "seconds": 4.0, "inputs": [str(tmp_path / "in")]}
    return write_job(tmp_path / "jobs", "20261125T030000Z-00aa", rows, meta)


def test_one_job_exact_counts(classify_job):
    summary = summarise(read_job(classify_job))
    assert summary["kind"] == "classify" and summary["id"] == "20261125T030000Z-00aa"
    assert summary["rows"] == 12 and summary["files"] == 11
    assert summary["counts"] == {"ok": 6, "review": 2, "blank": 1, "failed": 2, "duplicate": 1, "not-a-digit": 0}
    assert summary["labels"] == {"0": 1, "1": 2, "2": 1, "3": 1, "4": 2, "5": 0, "6": 0, "7": 1, "8": 0, "9": 0}
    assert summary["confidence_histogram"]["counts"] == [0, 0, 0, 0, 1, 0, 1, 0, 0, 6]
    assert summary["seconds"] == 4.0 and summary["files_per_second"] == 2.75
    assert summary["review_rate"] == round(2 / 12, 6) and summary["failed_rate"] == round(2 / 12, 6)
    assert [r["file"] for r in summary["lowest_confidence"][:3]] == ["multi.tif", "doubt.png", "ok0.png"]
    assert summary["lowest_confidence"][0]["page"] == 2 and summary["lowest_confidence"][0]["confidence"] == 0.41
    # The formula guard written into the CSV is removed on reading back.
    assert [(r["file"], r["error"]) for r in summary["failures"]] == [
        ("broken.png", "not a recognised image format"), ("=cmd|calc.png", "truncated file")]
    assert summary["model"]["card_accuracy"] == 0.9962


def test_daemon_day_layout_and_span(tmp_path):
    stamps = ["2026-11-25T08:00:00.000Z", "2026-11-25T08:00:10.000Z", "2026-11-25T08:00:20.000Z"]
    rows = [row(f"f{i}.png", processed_at=s) for i, s in enumerate(stamps)] + [row("g.png", status="review", confidence=0.5, processed_at=stamps[1])]
    folder = write_job(tmp_path / "jobs", "watch-2026-11-25", rows, {"inbox": str(tmp_path / "inbox"), "day": "2026-11-25"}, jsonl=True)
    job = read_job(folder)
    assert job.kind is JobKind.WATCH
    summary = summarise(job)
    assert summary["rows"] == 4 and summary["counts"]["review"] == 1
    # Rows 10 s apart: the daemon waited between them, and each gap counts only up to the 5 s idle cut.
    assert summary["wall_seconds"] == 20.0
    assert summary["seconds"] == 10.0 and summary["files_per_second"] == 0.4
    assert summary["started"] == stamps[0] and summary["finished"] == stamps[-1]
    assert find_job("2026-11-25", tmp_path / "jobs") == folder
    assert find_job("watch-2026-11-25", tmp_path / "jobs") == folder


def test_torn_last_line_is_skipped_and_reported(classify_job):
    with open(classify_job / "results.csv", "a", encoding="utf-8") as handle:
        handle.write("half.png,1,ok,3,0.9")  # no newline: a row being written when the writer stopped
    summary = summarise(read_job(classify_job))
    assert summary["rows"] == 12
    assert len(summary["torn_lines"]) == 1 and "half.png" in summary["torn_lines"][0]


def test_torn_inside_a_quoted_name_is_skipped(classify_job):
    with open(classify_job / "results.csv", "a", encoding="utf-8") as handle:
        handle.write('"name with\nnewline.png,1,o')
    summary = summarise(read_job(classify_job))
    assert summary["rows"] == 12 and summary["torn_lines"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "summary.json").unlink(), "summary.json: missing"),
        (lambda f: (f / "summary.json").write_text('{"job_id": '), "summary.json: not valid JSON"),
        (lambda f: (f / "results.csv").unlink(), "results.csv: missing"),
        (lambda f: (f / "results.csv").write_text("file,page\nx.png,1\n"), "not a batchclf results file"),
        (lambda f: (f / "results.csv").write_text(",".join(COLUMNS) + "\nx.png,1,ok\n" + "y.png," * 13 + "\n"), "row 1: 3 fields"),
        (lambda f: (f / "results.csv").write_bytes(",".join(COLUMNS).encode() + b"\n\xff\xfe,1\n"), "not UTF-8"),
    ],
)
def test_damaged_job_gives_one_error_line(classify_job, damage, message):
    damage(classify_job)
    result = CliRunner().invoke(app, ["report", str(classify_job)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ") and message in result.output
    assert "Traceback" not in result.output


def test_half_written_classify_job_says_so(tmp_path):
    folder = tmp_path / "jobs" / "20261125T030000Z-00bb"
    folder.mkdir(parents=True)
    (folder / ".results.csv.partial").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(JobCorruptError, match="still running or was interrupted"):
        read_job(folder)


def test_missing_job_and_empty_jobs_folder(tmp_path):
    (tmp_path / "jobs").mkdir()
    with pytest.raises(JobNotFoundError, match="no jobs in"):
        select_jobs([], tmp_path / "jobs")
    result = CliRunner().invoke(app, ["report", "nope", "--jobs", str(tmp_path / "jobs")])
    assert result.exit_code == 1 and result.output.startswith("Error: no job nope")


def many_jobs(jobs: Path) -> list[Path]:
    folders = []
    for day, review in (("20", 1), ("21", 1), ("22", 6)):
        rows = [row(f"{i}.png") for i in range(20 - review)] + [row(f"r{i}.png", status="review", confidence=0.5) for i in range(review)]
        meta = {"started": f"2026-11-{day}T02:00:00.000Z", "seconds": 10.0}
        folders.append(write_job(jobs, f"202611{day}T020000Z-00{day}", rows, meta))
    other = dict(REPORT_MODEL, sha256="cd" * 32)
    day = [row("a.png", processed_at="2026-11-23T09:00:00.000Z"), row("b.png", status="failed", page=None, error="x", processed_at="2026-11-23T09:00:05.000Z")]
    folders.append(write_job(jobs, "watch-2026-11-23", day, {"model": other, "inbox": "/nowhere"}))
    return folders


def test_many_jobs_aggregate_and_window(tmp_path):
    jobs = tmp_path / "jobs"
    folders = many_jobs(jobs)
    assert select_jobs([], jobs) == folders[-1:]  # no JOB: the latest
    assert select_jobs([], jobs, last=2) == folders[-2:]
    assert select_jobs([], jobs, since="2026-11-21") == folders[1:]
    report = collect([], jobs, last=30)
    assert report.totals["jobs"] == 4 and report.totals["rows"] == 62 and report.totals["files"] == 62
    assert report.totals["counts"] == {"ok": 53, "review": 8, "blank": 0, "failed": 1, "duplicate": 0, "not-a-digit": 0}
    assert report.totals["seconds"] == 35.0
    assert [m["sha256"][:2] for m in report.totals["models"]] == ["ab", "cd"]
    assert [s["review_rate"] for s in report.summaries[:3]] == [0.05, 0.05, 0.3]


def test_many_jobs_terminal_table_marks_model_change(tmp_path):
    many_jobs(tmp_path / "jobs")
    result = CliRunner().invoke(app, ["report", "--jobs", str(tmp_path / "jobs"), "--last", "30"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert sum("20261120T020000Z-0020" in line or "watch-2026-11-23" in line for line in lines) == 2
    assert "(changed)" in next(line for line in lines if "watch-2026-11-23" in line)
    assert "30.0%" in next(line for line in lines if "20261122T020000Z-0022" in line)
    assert any(line.startswith("total") and "4 jobs" in line for line in lines)


def test_since_parsing():
    from datetime import datetime, timezone

    now = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
    assert parse_since("7d", now) == datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    assert parse_since("12h", now) == datetime(2026, 12, 2, 0, 0, tzinfo=timezone.utc)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=timezone.utc)
    with pytest.raises(SinceError):
        parse_since("last tuesday", now)


def test_json_keys_are_the_documented_ones(classify_job):
    result = CliRunner().invoke(app, ["report", str(classify_job), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"report_version", "jobs", "totals", "drift"}
    assert set(data["jobs"][0]) == {
        "id", "kind", "folder", "started", "finished", "seconds", "wall_seconds", "files", "rows", "files_per_second", "counts",
        "review_rate", "failed_rate", "labels", "confidence_histogram", "model", "device", "review_below",
        "lowest_confidence", "failures", "failures_unlisted", "torn_lines", "review", "rows_from", "verified",
    }
    assert set(data["totals"]) == {
        "jobs", "files", "rows", "seconds", "files_per_second", "counts", "review_rate", "failed_rate", "models", "verified",
    }
    readme = (Path(__file__).resolve().parent.parent / "docs" / "reports.md").read_text()
    for key in list(data) + list(data["jobs"][0]) + list(data["totals"]):
        assert f"`{key}`" in readme, f"README does not document report key {key}"


def test_csv_and_xlsx_exports(classify_job, tmp_path):
    openpyxl = pytest.importorskip("openpyxl", reason="openpyxl (the xlsx extra) is not installed")
    table, book = tmp_path / "jobs.csv", tmp_path / "jobs.xlsx"
    result = CliRunner().invoke(app, ["report", str(classify_job), "--csv", str(table), "--xlsx", str(book)])
    assert result.exit_code == 0, result.output
    with open(table, newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == 1 and lines[0]["review"] == "2" and lines[0]["files"] == "11"
    workbook = openpyxl.load_workbook(book)
    summary = list(workbook["Summary"].values)
    assert summary[0][:5] == ("Job", "Kind", "Started (UTC)", "Seconds", "Files")
    assert summary[1][4] == 11 and summary[1][3] == 4
    rows = list(workbook["Rows"].values)
    assert len(rows) == 13 and rows[0][:4] == ("Job", "File", "Page", "Status")
    assert rows[1][4] == 0 and rows[1][5] == 0.95  # label and confidence are numbers, not text
    hostile = next(r for r in rows if r[1] and "cmd" in r[1])
    assert hostile[1] == "=cmd|calc.png"
    assert workbook["Rows"].cell(row=rows.index(hostile) + 1, column=2).data_type == "s"  # text, never a formula


def test_xlsx_without_openpyxl_says_how_to_install(classify_job, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    result = CliRunner().invoke(app, ["report", str(classify_job), "--xlsx", str(tmp_path / "x.xlsx")])
    assert result.exit_code == 1 and "pip install 'batchclf[xlsx]'" in result.output


def test_report_never_imports_tensorflow(classify_job):
    code = (
        "import sys\nfrom batchclf.cli import app\n"
        "try:\n    app([\"report\", sys.argv[1], \"--json\"])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'tensorflow' not in sys.modules, 'report imported TensorFlow'\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(classify_job)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_hostile_names_are_text_on_the_terminal(tmp_path):
    rows = [row("[bold red]x[/].png", status="failed", page=None, error="[link=file:///etc]y[/link]")]
    folder = write_job(tmp_path / "jobs", "20261125T030000Z-00cc", rows)
    result = CliRunner().invoke(app, ["report", str(folder)])
    assert "[bold red]x[/].png" in result.output and "[link=file:///etc]y[/link]" in result.output


def test_failures_beyond_the_cap_are_counted_not_listed(classify_job):
    summary = summarise(read_job(classify_job), lowest=2, failures_listed=1)
    assert [r["file"] for r in summary["failures"]] == ["broken.png"] and summary["failures_unlisted"] == 1
    assert [r["confidence"] for r in summary["lowest_confidence"]] == [0.41, 0.62]


def test_blocks_keep_every_row_across_block_edges(tmp_path):
    rows = [row(f"{i}.png", confidence=0.5 + i / 20000) for i in range(9000)]
    folder = write_job(tmp_path / "jobs", "20261125T030000Z-00dd", rows)
    job = read_job(folder)
    assert [len(b) for b in job.blocks(size=4096)] == [4096, 4096, 808]
    with open(folder / "results.csv", "a") as handle:
        handle.write("torn.png,1")
    assert sum(len(b) for b in job.blocks(size=4096)) == 9000 and len(job.torn) == 1
    assert summarise(job)["lowest_confidence"][0]["file"] == "0.png"


def test_input_location_never_follows_a_link_out_of_the_input_folder(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "real.png").write_bytes(b"x")
    (tmp_path / "outside.png").write_bytes(b"x")
    (inputs / "link.png").symlink_to(tmp_path / "outside.png")
    folder = write_job(tmp_path / "jobs", "20261125T030000Z-00ee", [row("real.png"), row("link.png")], {"inputs": [str(inputs)]})
    job = read_job(folder)
    real, link = job.rows()
    assert job.input_location(real) == inputs / "real.png" and job.input_location(link) is None

