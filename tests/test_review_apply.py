"""``batchclf review apply``: corrections files become a job's verified.csv/json; strict reading of hostile files."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchclf.cli import app
from batchclf.errors import DataFileError
from batchclf.jobs.verified import VERIFIED_COLUMNS, person_counts, person_labels, verified_blocks, verified_rows
from batchclf.datasets.decisions import MAX_BYTES, read_decisions
from tests.helpers import other, review, write_job_folder

JOB_ID = "20261124T031502Z-3f9a"
HEADER = "file,page,label,decision,decided_at,job\r\n"


@pytest.fixture
def job(tmp_path) -> Path:
    rows = [
        review("a.png", label=3),
        review("b.png", label=5),
        review("pages.tif", page=2, label=1),
        other("ok.png", "ok"),
        other("bad.png", "failed", page=None, error="corrupt"),
        review("=formula.png", label=7),
    ]
    return write_job_folder(tmp_path / "jobs" / JOB_ID, rows, {"kind": "classify", "job_id": JOB_ID, "inputs": [str(tmp_path)]})


def corrections(path: Path, text: str, mtime: float | None = None) -> Path:
    path.write_bytes(text.encode("utf-8"))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def verified(folder: Path) -> dict:
    return {(row["file"], row["page"]): row for row in verified_rows(folder)}


def review_apply(*args: str):
    """``batchclf review apply ARGS`` through the real CLI: the CliRunner result."""
    return CliRunner().invoke(app, ["review", "apply", *map(str, args)])


def test_every_row_with_the_final_label_and_results_csv_untouched(job, tmp_path):
    before = (job / "results.csv").read_bytes()
    path = corrections(tmp_path / "c.csv", HEADER + "".join([
        f"a.png,1,3,accepted,2026-12-01T08:00:00.000Z,{JOB_ID}\r\n",
        f"b.png,1,6,corrected,2026-12-01T08:00:01.000Z,{JOB_ID}\r\n",
        f"pages.tif,2,,not-a-digit,2026-12-01T08:00:02.000Z,{JOB_ID}\r\n",
        f"bad.png,,,blank,2026-12-01T08:00:03.000Z,{JOB_ID}\r\n",
        "=formula.png,1,1,corrected,2026-12-01T08:00:04.000Z,\r\n",
    ]))
    done = review_apply(job, path)
    assert done.exit_code == 0, done.output
    assert (job / "results.csv").read_bytes() == before
    rows = verified(job)
    assert len(rows) == 6
    expect = {  # status, label, model_label, decided_by, decision, decided_at
        ("a.png", 1): ("ok", 3, 3, "person", "accepted", "2026-12-01T08:00:00.000Z"),
        ("b.png", 1): ("ok", 6, 5, "person", "corrected", "2026-12-01T08:00:01.000Z"),
        ("pages.tif", 2): ("not-a-digit", None, 1, "person", "not-a-digit", "2026-12-01T08:00:02.000Z"),
        ("bad.png", None): ("blank", None, None, "person", "blank", "2026-12-01T08:00:03.000Z"),
        ("=formula.png", 1): ("ok", 1, 7, "person", "corrected", "2026-12-01T08:00:04.000Z"),
        ("ok.png", 1): ("ok", 1, 1, "model", None, "2026-11-24T03:15:04.000Z"),
    }
    for key, values in expect.items():
        row = rows[key]
        assert (row["status"], row["label"], row["model_label"], row["decided_by"], row["decision"], row["decided_at"]) == values, key
    raw = (job / "verified.csv").read_text(encoding="utf-8")
    assert raw.splitlines()[0] == ",".join(VERIFIED_COLUMNS)
    assert "\n'=formula.png,1,ok,1," in raw  # the same formula guard as results.csv
    document = json.loads((job / "verified.json").read_text(encoding="utf-8"))
    assert document["counts"] == {"person": 5, "confirmed": 1, "corrected": 2, "not_a_digit": 1, "blank": 1}
    assert [row["file"] for row in document["rows"]] == ["a.png", "b.png", "pages.tif", "ok.png", "bad.png", "=formula.png"]
    assert person_counts(job) == {"rows": 6, "person": 5, "confirmed": 1, "corrected": 2, "not_a_digit": 1, "blank": 1}
    assert done.output.splitlines()[-1] == str(job / "verified.csv")
    # What report and training read back.
    assert list(person_labels(job)) == [("a.png", 1, 3), ("b.png", 1, 6), ("=formula.png", 1, 1)]
    (block,) = list(verified_blocks(job))
    assert [(cells[0], cells[2], cells[3]) for cells in block] == [
        ("a.png", "ok", "3"), ("b.png", "ok", "6"), ("pages.tif", "not-a-digit", ""), ("ok.png", "ok", "1"),
        ("bad.png", "blank", ""), ("'=formula.png", "ok", "1"),
    ]


def test_an_old_file_without_the_new_columns_still_applies(job, tmp_path):
    path = corrections(tmp_path / "old.csv", "file,page,label\r\na.png,1,3\r\nb.png,1,9\r\n", mtime=1_780_000_000)
    assert review_apply(job, path).exit_code == 0
    rows = verified(job)
    assert (rows[("a.png", 1)]["decision"], rows[("b.png", 1)]["decision"]) == ("accepted", "corrected")
    assert rows[("b.png", 1)]["decided_at"] == "2026-05-28T20:26:40.000Z"  # when the file was saved


def test_decisions_accumulate_and_a_newer_one_replaces_an_older(job, tmp_path):
    first = corrections(tmp_path / "1.csv", HEADER + "a.png,1,8,corrected,2026-12-01T08:00:00Z,\r\nb.png,1,5,accepted,2026-12-01T08:00:00Z,\r\n")
    second = corrections(tmp_path / "2.csv", HEADER + "a.png,1,3,accepted,2026-12-02T08:00:00Z,\r\npages.tif,2,4,corrected,2026-12-02T08:00:00Z,\r\n")
    stale = corrections(tmp_path / "3.csv", HEADER + "a.png,1,0,corrected,2026-11-30T08:00:00Z,\r\n")
    assert review_apply(job, first).exit_code == 0
    assert review_apply(job, second).exit_code == 0
    done = review_apply(job, stale)
    assert done.exit_code == 0 and "1 decisions are older than the ones already applied" in done.output
    rows = verified(job)
    assert (rows[("a.png", 1)]["label"], rows[("a.png", 1)]["decision"]) == (3, "accepted")  # the newer file's
    assert (rows[("b.png", 1)]["label"], rows[("b.png", 1)]["decided_by"]) == (5, "person")  # kept from the first apply
    assert (rows[("pages.tif", 2)]["label"], rows[("pages.tif", 2)]["decision"]) == (4, "corrected")
    applied = json.loads((job / "verified.json").read_text(encoding="utf-8"))["applied"]
    assert [len(entry["files"]) for entry in applied] == [1, 1, 1] and applied[2]["older"] == 1


def test_a_correction_for_a_row_the_job_does_not_have_is_reported(job, tmp_path):
    path = corrections(tmp_path / "c.csv", HEADER + "a.png,1,3,,,\r\nghost.png,1,4,,,\r\nb.png,2,4,,,\r\nb.png,1,1,,,other-job\r\n")
    done = review_apply(job, path)
    assert done.exit_code == 0
    assert "2 decisions name rows job 20261124T031502Z-3f9a does not have, not applied (listed in verified.json): 'ghost.png' page 1; 'b.png' page 2" in done.output
    assert "1 decisions are for other jobs" in done.output
    assert "1 decisions applied now" in done.output
    unmatched = json.loads((job / "verified.json").read_text(encoding="utf-8"))["unmatched"]
    assert [(u["file"], u["page"], u["label"]) for u in unmatched] == [("ghost.png", 1, 4), ("b.png", 2, 4)]


def test_a_daemon_day_by_its_date(tmp_path):
    jobs = tmp_path / "jobs"
    day = write_job_folder(jobs / "watch-2026-11-25", [review("in.png", label=2), other("fine.png", "ok")], {"kind": "watch", "inbox": str(tmp_path)})
    path = corrections(tmp_path / "c.csv", HEADER + "in.png,1,7,corrected,2026-11-25T10:00:00Z,watch-2026-11-25\r\n")
    done = CliRunner().invoke(app, ["review", "apply", "--jobs", str(jobs), "2026-11-25", str(path)])
    assert done.exit_code == 0, done.output
    assert verified(day)[("in.png", 1)]["label"] == 7
    # The day grows; applying again (no new decisions needed) brings the new rows in and keeps the old decision.
    with open(day / "results.csv", "a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow(["late.png", 1, "ok", 4, 0.99, 1, 0.01, "", "", "", "", "", "2026-11-25T11:00:00.000Z", "", ""])
    empty = corrections(tmp_path / "none.csv", HEADER)
    assert CliRunner().invoke(app, ["review", "apply", "--jobs", str(jobs), "watch-2026-11-25", str(empty)]).exit_code == 0
    rows = verified(day)
    assert rows[("in.png", 1)]["label"] == 7 and rows[("late.png", 1)]["decided_by"] == "model" and len(rows) == 3


@pytest.mark.parametrize(
    "content, message",
    [
        (b"file,page,label\r\na.png,1,\xd9\xa1\r\n", "label '١' is not a digit 0-9"),  # Arabic-Indic one
        ("file,page,label\r\na.png,1,²\r\n".encode(), "label '²' is not a digit 0-9"),
        (b"file,page,label\r\na.png,1,12\r\n", "label '12' is not a digit 0-9"),
        (b"file,page,label\r\na.png,x,1\r\n", "page 'x' is not a page number"),
        (b"file,page,label\r\na.png,1e3,1\r\n", "page '1e3' is not a page number"),
        (b"file,page,label\r\na.png,0,1\r\n", "page '0' is not a page number"),
        (b"file,page,label\r\na.png,1,1\r\n\xff\xfe", "not UTF-8 text"),
        (b"file,page,label\r\n" + b"x" * 200_000 + b",1,1\r\n", "field larger than field limit"),
        (b"file,page,label\r\n" + b"x" * 5000 + b",1,1\r\n", "file is 5,000 characters long"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "a binary file"),
        (b"name,digit\r\na.png,1\r\n", "expected the columns file,page,label"),
        (b"file,page,label,decision\r\na.png,1,1,maybe\r\n", "decision 'maybe' is not one of"),
        (b"file,page,label,decision\r\na.png,1,1,blank\r\n", "label '1' given for a row decided blank"),
        (b"file,page,label,decided_at\r\na.png,1,1,yesterday\r\n", "decided_at 'yesterday' is not an ISO 8601 time"),
        (b"file,page,label\r\na.png,1\r\n", "2 fields, expected 3"),
    ],
)
def test_bad_corrections_are_one_error_line_and_nothing_is_written(job, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    done = review_apply(job, path)
    assert done.exit_code == 1
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}:") and message in lines[0], done.output
    assert not (job / "verified.csv").exists() and not (job / "verified.json").exists()


def test_a_damaged_verified_csv_is_one_error_line(job, tmp_path):
    (job / "verified.csv").write_text("file,page\r\na.png,1\r\n", encoding="utf-8")
    done = review_apply(job, corrections(tmp_path / "c.csv", HEADER))
    assert done.exit_code == 1 and done.output.startswith(f"Error: {job / 'verified.csv'}: not a batchclf verified file")


def test_size_cap_fifo_and_repeated_lines(tmp_path):
    big = tmp_path / "big.csv"
    with open(big, "wb") as handle:
        handle.truncate(MAX_BYTES + 1)
    with pytest.raises(DataFileError, match="larger than 64 MiB"):
        read_decisions(big)
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataFileError, match="not a regular file"):
        read_decisions(fifo)  # would block forever if opened as a file
    repeated = corrections(tmp_path / "r.csv", "\ufefffile,page,label\r\na.png,1,1\r\nb.png,1,2\r\na.png,1,3\r\n")  # a BOM is fine
    found = read_decisions(repeated)
    assert found.repeated == 1 and [(d.file, d.label) for d in found.items] == [("b.png", 2), ("a.png", 3)]


def test_a_second_apply_on_the_same_job_waits_for_the_first(job, tmp_path):
    """Held by another apply (here: the test holds the job folder's flock), review apply waits, then builds on it."""
    import fcntl
    import subprocess
    import sys
    import threading

    path = corrections(tmp_path / "c.csv", HEADER + f"a.png,1,8,corrected,2026-12-01T08:00:00Z,{JOB_ID}\r\n")
    fd = os.open(job, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        second = subprocess.Popen([sys.executable, "-m", "batchclf", "review", "apply", str(job), str(path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        guard = threading.Timer(60, second.kill)  # a hang fails the test, never the run
        guard.start()
        said = second.stderr.readline()  # its note that it waits (an apply that did not wait ends with nothing)
        assert said == f"waiting for another review apply on {job} to finish\n", (said, second.stderr.read())
        assert second.poll() is None and not (job / "verified.csv").exists()
    finally:
        os.close(fd)  # the first apply is done
    out, err = second.communicate(timeout=60)
    guard.cancel()
    assert second.returncode == 0 and not err, err
    assert verified(job)[("a.png", 1)]["label"] == 8
