"""One corrections.csv, one verdict: ``review apply`` and ``train --from-reviews``'s reader parse it the same way.

Each file below was refused by one of the two readers and taken by the
other (or taken differently) before they shared one parser
(:mod:`batchclf.datasets.decisions`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from batchclf.cli import app
from batchclf.errors import DataFileError
from batchclf.jobs.verified import verified_rows
from tests.helpers import png_bytes, review, write_job_folder

JOB_ID = "20261207T050000Z-0c0c"
HEADER = b"file,page,label\r\n"


@pytest.fixture
def job(tmp_path) -> Path:
    """A classify job with two one-page scans that decode (so training finds their images)."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.png", "b.png"):
        pixels = Image.new("L", (40, 40), 255)
        pixels.paste(0, (18, 8, 22, 32))
        (inputs / name).write_bytes(png_bytes(pixels))
    rows = [review("a.png", label=1), review("b.png", label=1)]
    return write_job_folder(tmp_path / "jobs" / JOB_ID, rows, {"kind": "classify", "job_id": JOB_ID, "inputs": [str(inputs)]})


def through_review_apply(job: Path, path: Path) -> str:
    """``Error: ...`` without its prefix, or "taken"."""
    done = CliRunner().invoke(app, ["review", "apply", str(job), str(path)])
    if done.exit_code == 0:
        return "taken"
    lines = done.output.strip().splitlines()
    assert done.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), done.output
    return lines[0].removeprefix("Error: ")


def through_training(job: Path, path: Path) -> str:
    from batchclf.datasets.corrections import read_corrections

    try:
        read_corrections([path, job])
    except DataFileError as exc:
        return str(exc)
    return "taken"


HOSTILE = {
    "a NUL in a name": (HEADER + b"a\x00.png,1,3\r\n", "a binary file"),
    "a column twice": (b"file,page,label,label\r\na.png,1,3,4\r\n", ":1: expected the columns file,page,label"),
    "a short line": (b"file,page,label,decision\r\na.png,1,3\r\n", ":2: 3 fields, expected 4"),
    "a page no file has": (HEADER + b"a.png,99999999,3\r\n", ":2: page '99999999' is not a page number"),
    "a time that is none": (b"file,page,label,decided_at\r\na.png,1,3,yesterday\r\n", ":2: decided_at 'yesterday'"),
    "a label on a blank row": (b"file,page,label,decision\r\na.png,1,3,blank\r\n", ":2: label '3' given for a row decided blank"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_corrections_file_gets_one_verdict_from_both_readers(job, tmp_path, case):
    content, message = HOSTILE[case]
    path = tmp_path / "corrections.csv"
    path.write_bytes(content)
    applied, trained = through_review_apply(job, path), through_training(job, path)
    assert applied == trained, (applied, trained)
    assert applied.startswith(str(path)) and message in applied, applied
    assert not (job / "verified.csv").exists()


def test_an_empty_page_is_the_first_page_for_both(job, tmp_path):
    """The sheet leaves the page empty for a row without one: both readers take it as the file's page 1."""
    path = tmp_path / "corrections.csv"
    path.write_bytes(HEADER + b"a.png,,4\r\n")
    assert through_review_apply(job, path) == "taken"
    decided = {(row["file"], row["page"]): row for row in verified_rows(job)}
    assert (decided[("a.png", 1)]["decided_by"], decided[("a.png", 1)]["label"]) == ("person", 4)
    from batchclf.datasets.corrections import read_corrections

    data = read_corrections([path, job])
    assert data.labels.tolist() == [4] and data.sources[0]["skipped"] == 0


def test_one_row_cap_for_both(job, tmp_path, monkeypatch):
    """The cap is batchclf.limits.MAX_DECISIONS, read in one place: lowered there for the test, both readers refuse."""
    import batchclf.datasets.decisions as decisions
    from batchclf.limits import MAX_DECISIONS

    assert decisions.MAX_ROWS == MAX_DECISIONS == 1_000_000
    monkeypatch.setattr(decisions, "MAX_ROWS", 3)
    path = tmp_path / "corrections.csv"
    path.write_bytes(HEADER + b"".join(b"a.png,%d,1\r\n" % page for page in range(1, 5)))
    applied, trained = through_review_apply(job, path), through_training(job, path)
    assert applied == trained == f"{path}:5: more than 3 corrections; split the file"
