"""``batchclf report`` after ``review apply``: the verified rows are what it counts, and it says so.

A person's decisions (``review apply`` writes ``JOB/verified.csv``) make the
report read that file instead of ``results.csv``: counts per status
(``not-a-digit`` included) and per label are the verified ones,
``rows_from`` names the file and ``verified`` holds what the person decided;
the terminal shows it on one line per job.  Also the review threshold's
origin (``review`` in ``summary.json``) shown and passed on.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.helpers import invoke, sample_job_rows, write_job

JOB = "20261125T030000Z-00aa"
OTHER = "20261126T030000Z-00bb"
HEADER = "file,page,label,decision,decided_at,job\r\n"
DECISIONS = [  # multi.tif page 2 confirmed as 1, doubt.png corrected from 4 to 9, the two failures: not a digit, blank
    f"multi.tif,2,1,accepted,2026-12-01T08:00:00.000Z,{JOB}\r\n",
    f"doubt.png,1,9,corrected,2026-12-01T08:00:01.000Z,{JOB}\r\n",
    f"broken.png,,,not-a-digit,2026-12-01T08:00:02.000Z,{JOB}\r\n",
    f"=cmd|calc.png,,,blank,2026-12-01T08:00:03.000Z,{JOB}\r\n",
]
PERSON = {"rows": 12, "person": 4, "confirmed": 1, "corrected": 1, "not_a_digit": 1, "blank": 1}
ORIGIN = {"review_below": 0.97, "target_error": 0.002, "expected_error": 0.0018, "expected_coverage": 0.9}




@pytest.fixture
def reviewed(tmp_path) -> Path:
    """The job after a person's review was applied to it."""
    folder = write_job(tmp_path / "jobs", JOB, sample_job_rows(JOB), {"seconds": 4.0, "review_below": 0.97, "review": ORIGIN})
    decisions = tmp_path / "corrections.csv"
    decisions.write_text(HEADER + "".join(DECISIONS), encoding="utf-8", newline="")
    applied = invoke("review", "apply", folder, decisions)
    assert applied.exit_code == 0, applied.output
    return folder


def report_json(*args) -> dict:
    result = invoke("report", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_json_counts_the_verified_rows_and_names_the_file(reviewed):
    (job,) = report_json(reviewed)["jobs"]
    assert job["rows_from"] == "verified.csv"
    assert job["verified"] == PERSON
    # Two review rows decided (now ok), a failure marked not a digit, one blank: the verified statuses.
    assert job["counts"] == {"ok": 8, "review": 0, "blank": 2, "failed": 0, "duplicate": 1, "not-a-digit": 1}
    assert job["rows"] == 12 and job["review_rate"] == 0 and job["failed_rate"] == 0
    assert job["labels"]["4"] == 1 and job["labels"]["9"] == 1 and job["labels"]["1"] == 2  # doubt.png: 4 corrected to 9
    assert job["failures"] == []


def test_a_job_nobody_reviewed_reads_results_csv(tmp_path):
    folder = write_job(tmp_path / "jobs", JOB, sample_job_rows(JOB))
    (job,) = report_json(folder)["jobs"]
    assert job["rows_from"] == "results.csv" and job["verified"] is None and job["review"] is None
    assert job["counts"] == {"ok": 6, "review": 2, "blank": 1, "failed": 2, "duplicate": 1, "not-a-digit": 0}


def test_terminal_shows_what_the_person_decided_on_one_line(reviewed):
    result = invoke("report", reviewed)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "reviewed by a person: 1 confirmed, 1 corrected, 1 not a digit, 1 blank (rows from verified.csv)" in lines
    status = {line.split()[0]: line.split()[1] for line in lines if line.split()[:1] in (["ok"], ["review"], ["not-a-digit"])}
    assert status == {"ok": "8", "review": "0", "not-a-digit": "1"}


def test_many_jobs_one_line_each_with_the_review_and_totals(reviewed):
    other = write_job(reviewed.parent, OTHER, sample_job_rows(JOB))
    report = report_json(reviewed, other)
    assert [job["rows_from"] for job in report["jobs"]] == ["verified.csv", "results.csv"]
    assert report["totals"]["verified"] == PERSON
    assert report["totals"]["counts"]["not-a-digit"] == 1 and report["totals"]["counts"]["review"] == 2
    result = invoke("report", reviewed, other)
    assert result.exit_code == 0, result.output
    line = {name: next(text for text in result.output.splitlines() if name in text) for name in (JOB, OTHER)}
    assert line[JOB].rstrip().endswith("1 confirmed, 1 corrected, 1 not a digit, 1 blank")
    assert line[OTHER].rstrip().endswith("-")
    assert "not-a-digit 1" in result.output.splitlines()[-1]  # the totals' status line


def test_csv_export_has_the_person_columns(reviewed, tmp_path):
    other = write_job(reviewed.parent, OTHER, sample_job_rows(JOB))
    table = tmp_path / "jobs.csv"
    result = invoke("report", reviewed, other, "--csv", table)
    assert result.exit_code == 0, result.output
    with open(table, newline="", encoding="utf-8") as handle:
        lines = list(csv.DictReader(handle))
    first, second = lines
    assert (first["rows_from"], first["not-a-digit"], first["review"], first["ok"]) == ("verified.csv", "1", "0", "8")
    assert (first["person_confirmed"], first["person_corrected"], first["person_not_a_digit"], first["person_blank"]) == ("1", "1", "1", "1")
    assert second["rows_from"] == "results.csv" and second["person_confirmed"] == "" and second["review"] == "2"


def test_xlsx_summary_titles_and_totals_line_up_and_rows_are_verified(reviewed, tmp_path):
    openpyxl = pytest.importorskip("openpyxl", reason="openpyxl (the xlsx extra) is not installed")
    book = tmp_path / "jobs.xlsx"
    result = invoke("report", reviewed, "--xlsx", book)
    assert result.exit_code == 0, result.output
    workbook = openpyxl.load_workbook(book)
    titles, job, _, total = list(workbook["Summary"].values)
    by_title, totals = dict(zip(titles, job)), dict(zip(titles, total))
    assert by_title["Not a digit"] == 1 and by_title["Review"] == 0 and by_title["Rows from"] == "verified.csv"
    assert by_title["Corrected by a person"] == 1 and by_title["Confirmed by a person"] == 1
    assert totals["Job"] == "Total" and totals["Not a digit"] == 1 and totals["OK"] == 8 and totals["Blank (person)"] == 1
    rows = list(workbook["Rows"].values)
    doubt = next(r for r in rows if r[1] == "doubt.png")
    assert doubt[3:5] == ("ok", 9)  # status, label: the person's


def test_the_review_threshold_origin_is_shown_and_passed_on(reviewed, tmp_path):
    result = invoke("report", reviewed)
    assert "review below 0.97, chosen for at most 0.2% wrong among ok rows; measured 0.18% at 90% accepted" in result.output.splitlines()
    (job,) = report_json(reviewed)["jobs"]
    assert job["review"] == ORIGIN
    plain = write_job(tmp_path / "old", JOB, sample_job_rows(JOB), {"review_below": 0.95})  # an old job: only the threshold
    result = invoke("report", plain)
    assert "review below 0.95" in result.output.splitlines() and "chosen for" not in result.output


@pytest.mark.parametrize("origin, key", [({"target_error": 2}, "review.target_error"), ({"expected_error": "0.1"}, "review.expected_error"),
                                         ([0.97], "review")])
def test_a_bad_review_origin_is_one_error_naming_the_key(tmp_path, origin, key):
    folder = write_job(tmp_path / "jobs", JOB, sample_job_rows(JOB), {"review": origin})
    result = invoke("report", folder, "--json")
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: {folder / 'summary.json'}: {key}: "), result.output


def test_a_damaged_verified_csv_is_one_error_naming_it(reviewed):
    path = reviewed / "verified.csv"
    path.write_text(path.read_text(encoding="utf-8") + "short,row\n", encoding="utf-8")
    result = invoke("report", reviewed)
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: {path}: "), result.output


def test_the_review_sheet_of_a_reviewed_job_still_counts_its_cards(reviewed, tmp_path):
    """The sheet's cards are results.csv's doubtful rows (4 here): its header must not say "nothing to review"."""
    sheet = tmp_path / "sheet.html"
    result = invoke("report", reviewed, "--html", sheet)
    assert result.exit_code == 0, result.output
    assert "(4 items to review)" in result.stderr
    assert "4 items to review" in sheet.read_text(encoding="utf-8")


def test_a_day_that_grew_after_its_review_is_reported_with_a_warning(reviewed):
    """The daemon appends to a day's results.csv; the report says the verified rows are behind instead of hiding it."""
    import os

    verified = (reviewed / "verified.csv").stat().st_mtime
    os.utime(reviewed / "results.csv", (verified + 60, verified + 60))
    result = invoke("report", reviewed, "--json")
    assert result.exit_code == 0, result.output
    assert f"warning: {reviewed}: results.csv changed after verified.csv was written" in result.stderr
    os.utime(reviewed / "results.csv", (verified - 60, verified - 60))
    assert "warning" not in invoke("report", reviewed, "--json").stderr


def test_a_verified_row_decided_by_nobody_known_is_one_error_naming_its_line(reviewed):
    path = reviewed / "verified.csv"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(",person,", ",robot,", 1), encoding="utf-8")
    result = invoke("report", reviewed)
    assert result.exit_code == 1 and result.stderr.startswith(f"Error: {path}: line "), result.output
    assert "decided_by 'robot'" in result.stderr


@pytest.mark.parametrize("output", [(), ("--json",)])
def test_the_report_reads_a_jobs_verified_csv_once(reviewed, monkeypatch, output):
    """The counts per status and label and what the person decided come from one pass over verified.csv."""
    import builtins

    real_open = builtins.open
    opened = []

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, Path)) and Path(file).name == "verified.csv":
            opened.append(Path(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    result = invoke("report", reviewed, *output)
    assert result.exit_code == 0, result.output
    assert opened == [reviewed / "verified.csv"]
    if output:
        assert json.loads(result.output)["jobs"][0]["verified"] == PERSON
    else:
        assert "1 confirmed, 1 corrected, 1 not a digit, 1 blank" in result.output
