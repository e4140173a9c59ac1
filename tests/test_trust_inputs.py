"""Nothing is read from outside a job's inputs (issue 23, point 2: the locator), and ``corrections.csv`` is hostile input (point 11).

The review sheet and ``train --from-reviews`` find inputs through
``Job.input_location``: a row's file is read only if its real path is inside
a folder the job recorded (its inputs; a daemon day's inbox, processed/,
failed/), and a recorded folder counts only inside the job's own home
(``HOME/jobs/JOB``) or a folder given with ``report --inputs``.
"""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path

import numpy as np
import pytest

import batchclf
from PIL import Image
from typer.testing import CliRunner

from batchclf.cli import app
from batchclf.errors import DataFileError
from batchclf.jobs.folder import read_job
from batchclf.jobs.rows import make_row
from tests.helpers import item_of, items, write_job_folder

JOB = "20261125T030000Z-00aa"
DAY = "2026-11-25"
ROOT = Path(batchclf.__file__).resolve().parent.parent  # the checkout whose code is under test


def digit_png(path: Path, value: int = 0) -> Path:
    """A small dark stroke on white: decodes, and is not blank."""
    pixels = np.full((40, 40), 255, np.uint8)
    pixels[8:32, 18 + value % 4 : 22 + value % 4] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "L").save(path)
    return path


def review_of_one(file: str, page: int | None = 1) -> dict:
    """A review row reading 1 at 40% (runner-up 7 at 30%), as processed on 2026-11-25."""
    return make_row(file=file, page=page, status="review", label=1, confidence=0.4, second_label=7, second_confidence=0.3,
                    processed_at="2026-11-25T03:00:00.000Z", model="default.keras")


def write_job_named_by_folder(folder: Path, rows: list[dict], meta: dict) -> Path:
    """The job folder ``folder``: results.csv, and a summary.json of the folder's name as job id, updated by ``meta``."""
    return write_job_folder(folder, rows, {"job_id": folder.name, **meta})


@pytest.fixture
def secret(tmp_path) -> Path:
    """An image outside every input folder: the thing that must never be read."""
    return digit_png(tmp_path / "private" / "secret.png", 3)


def watch_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    for name in ("inbox", "processed", "failed", "jobs"):
        (home / name).mkdir(parents=True)
    return home


def write_moves(journal_path: Path, moves: dict[str, str]) -> None:
    """A journal in the daemon's own schema recording ``name -> where it was moved`` on DAY."""
    from batchclf.watch.journal import FileRecord, Journal

    journal = Journal(journal_path)
    journal.decide([], [FileRecord(name, 1, 0, None, "review", DAY, None, "processed") for name in moves])
    journal.mark_moved([(move.id, moves[move.path]) for move in journal.pending_moves()])
    journal.close()


# -- point 2: the locator -----------------------------------------------------------------------


def test_a_job_recording_the_root_as_its_input_reads_nothing_outside_its_home(tmp_path, secret):
    """A handed-over classify job with ``inputs: ["/"]`` once embedded anything its rows named."""
    name = str(secret.relative_to("/"))
    folder = write_job_named_by_folder(tmp_path / "home" / "jobs" / JOB, [review_of_one(name)], {"kind": "classify", "inputs": ["/"], "files_relative_to": "/"})
    assert read_job(folder).input_location(review_of_one(name)) is None


def test_a_daemon_day_never_reads_absolute_or_dotdot_names(tmp_path, secret):
    home = watch_home(tmp_path)
    names = [str(secret), "../private/secret.png", "sub/../../private/secret.png"]
    folder = write_job_named_by_folder(home / "jobs" / f"watch-{DAY}", [review_of_one(n) for n in names], {"kind": "watch", "inbox": str(home / "inbox")})
    (home / "inbox" / "sub").mkdir()
    job = read_job(folder)
    assert [job.input_location(review_of_one(n)) for n in names] == [None, None, None]
    assert {job.locate_input(review_of_one(n)).problem for n in names} == {"outside the inputs"}


def test_a_symlink_in_the_inbox_leading_outside_is_not_followed(tmp_path, secret):
    home = watch_home(tmp_path)
    (home / "inbox" / "link.png").symlink_to(secret)
    digit_png(home / "inbox" / "real.png")
    folder = write_job_named_by_folder(home / "jobs" / f"watch-{DAY}", [review_of_one("link.png"), review_of_one("real.png")], {"kind": "watch", "inbox": str(home / "inbox")})
    job = read_job(folder)
    assert job.input_location(review_of_one("link.png")) is None
    assert job.locate_input(review_of_one("link.png")).problem == "outside the inputs"
    assert job.input_location(review_of_one("real.png")) == Path(os.path.realpath(home / "inbox" / "real.png"))
    assert job.locate_input(review_of_one("gone.png")).problem == "missing"


def test_a_journal_move_outside_processed_and_failed_is_not_read(tmp_path, secret):
    home = watch_home(tmp_path)
    moved = digit_png(home / "processed" / DAY / "moved.png")
    write_moves(home / "jobs" / "watch-journal.sqlite", {"moved.png": str(moved), "stolen.png": str(secret)})
    rows = [review_of_one("moved.png"), review_of_one("stolen.png")]
    job = read_job(write_job_named_by_folder(home / "jobs" / f"watch-{DAY}", rows, {"kind": "watch", "inbox": str(home / "inbox")}))
    assert job.input_location(review_of_one("moved.png")) == Path(os.path.realpath(moved))
    assert job.input_location(review_of_one("stolen.png")) is None


def test_a_day_recording_a_foreign_inbox_reads_only_inside_its_home(tmp_path, secret):
    """Copied elsewhere, a day's recorded inbox (``/``, or the old home) is not inside its new home: nothing is read."""
    home = watch_home(tmp_path)
    name = str(secret.relative_to("/"))
    job = read_job(write_job_named_by_folder(home / "jobs" / f"watch-{DAY}", [review_of_one(name)], {"kind": "watch", "inbox": "/"}))
    assert job.input_location(review_of_one(name)) is None


def test_inputs_outside_the_home_are_read_only_when_named_on_the_command_line(tmp_path):
    scans = tmp_path / "shared" / "scans"
    digit_png(scans / "a.png")
    folder = write_job_named_by_folder(tmp_path / "home" / "jobs" / JOB, [review_of_one("a.png")], {"kind": "classify", "inputs": [str(scans)]})
    assert read_job(folder).input_location(review_of_one("a.png")) is None
    assert read_job(folder, [tmp_path / "shared"]).input_location(review_of_one("a.png")) == Path(os.path.realpath(scans / "a.png"))
    sheet = tmp_path / "sheet.html"
    runner = CliRunner()
    result = runner.invoke(app, ["report", str(folder), "--html", str(sheet)])
    assert result.exit_code == 0, result.output
    # The cards are drawn by the script from the JSON data: the picture is in the item, or the note says why not.
    refused = item_of(sheet.read_text(encoding="utf-8"), "a.png")
    assert refused["original"] is None and refused["note"] == "outside the inputs"
    result = runner.invoke(app, ["report", str(folder), "--html", str(sheet), "--inputs", str(tmp_path / "shared")])
    assert result.exit_code == 0, result.output
    shown = item_of(sheet.read_text(encoding="utf-8"), "a.png")
    assert shown["original"].startswith("data:image/png;base64,") and shown["note"] is None
    result = runner.invoke(app, ["report", str(folder), "--inputs", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and result.stderr.startswith("Error: --inputs ")


def test_the_review_sheet_never_embeds_an_image_from_outside(tmp_path, secret):
    home = watch_home(tmp_path)
    (home / "inbox" / "link.png").symlink_to(secret)
    rows = [review_of_one("link.png"), review_of_one(str(secret)), review_of_one("../private/secret.png")]
    write_job_named_by_folder(home / "jobs" / f"watch-{DAY}", rows, {"kind": "watch", "inbox": str(home / "inbox")})
    sheet = tmp_path / "sheet.html"
    result = CliRunner().invoke(app, ["report", "--home", str(home), "--html", str(sheet)])
    assert result.exit_code == 0, result.output
    cards = items(sheet.read_text(encoding="utf-8"))
    assert len(cards) == 3 and all(card["original"] is None and card["seen"] is None for card in cards)
    assert {card["note"] for card in cards} == {"outside the inputs"}


def test_the_review_sheet_tells_a_refused_input_from_a_missing_one(tmp_path, secret):
    """The card's note comes from the locator: "outside the inputs" for a link leading out, "missing" for a file gone."""
    home = watch_home(tmp_path)
    (home / "inbox" / "link.png").symlink_to(secret)
    digit_png(home / "inbox" / "real.png")
    rows = [review_of_one("link.png"), review_of_one("gone.png"), review_of_one("real.png")]
    write_job_named_by_folder(home / "jobs" / f"watch-{DAY}", rows, {"kind": "watch", "inbox": str(home / "inbox")})
    sheet = tmp_path / "sheet.html"
    result = CliRunner().invoke(app, ["report", "--home", str(home), "--html", str(sheet)])
    assert result.exit_code == 0, result.output
    html = sheet.read_text(encoding="utf-8")
    assert item_of(html, "link.png")["note"] == "outside the inputs"
    assert item_of(html, "gone.png")["note"] == "missing"
    real = item_of(html, "real.png")
    assert real["note"] is None and real["original"].startswith("data:image/png;base64,")


def test_inside_is_one_real_path_check():
    from batchclf.jobs.inputs import inside

    assert inside("/tmp/x", "/tmp/x/a.png") and inside("/tmp/x", "/tmp/x")
    assert not inside("/tmp/x", "/tmp/xy/a.png") and not inside("/tmp/x", "/tmp/x/../y.png")


def test_the_jobs_layer_imports_nothing_above_it():
    """Layers: jobs sits below watch, report, datasets; not even a function-level import may reach up."""
    above = ("batchclf.watch", "batchclf.report", "batchclf.datasets", "batchclf.engines", "batchclf.model",
             "batchclf.scan", "batchclf.cli", "batchclf.service", "batchclf.bench", "batchclf.classify")
    for source in sorted((ROOT / "batchclf" / "jobs").glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(above), f"{source.name} imports {name}"


# -- point 11: corrections.csv ------------------------------------------------------------------


@pytest.fixture
def corrected(tmp_path):
    """A classify job in its home with three scans, and where its corrections.csv goes."""
    inputs = tmp_path / "home" / "in"
    for i in range(3):
        digit_png(inputs / f"s{i}.png", i)
    job = write_job_named_by_folder(tmp_path / "home" / "jobs" / JOB, [review_of_one(f"s{i}.png") for i in range(3)], {"kind": "classify", "inputs": [str(inputs)]})
    return job


def read(job: Path):
    from batchclf.datasets.corrections import read_corrections

    return read_corrections([job])


HOSTILE = {
    "superscript two": ("s0.png,1,\u00b2\n", ":2: label"),
    "Arabic-Indic one": ("s0.png,1,\u0661\n", ":2: label"),
    "Bengali seven": ("s0.png,1,\u09ed\n", ":2: label"),
    "page x": ("s0.png,x,1\n", ":2: page"),
    "page 1e3": ("s0.png,1e3,1\n", ":2: page"),
    "page Arabic-Indic": ("s0.png,\u0661,1\n", ":2: page"),
    "200 kB field": ("s0.png,1,1\n" + "a" * 200_000 + ",1,1\n", ":3: "),
}


def assert_one_error_naming_file_and_line(corrected, header: str, text: str, where: str) -> None:
    (corrected / "corrections.csv").write_text(header + text, encoding="utf-8")
    with pytest.raises(DataFileError) as raised:
        read(corrected)
    assert str(raised.value).startswith(f"{corrected / 'corrections.csv'}{where}"), str(raised.value)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_corrections_line_is_one_error_naming_file_and_line(corrected, case):
    assert_one_error_naming_file_and_line(corrected, "file,page,label\n", *HOSTILE[case])


STATION_HOSTILE = {
    "unknown decision": ("s0.png,1,1,maybe,,\n", ":2: decision"),
    "a label on a not-a-digit row": ("s0.png,1,1,corrected,,\ns1.png,1,4,not-a-digit,,\n", ":3: label"),
    "no label on a corrected row": ("s0.png,1,,corrected,,\n", ":2: label"),
    "a Bengali seven, accepted": ("s0.png,1,\u09ed,accepted,,\n", ":2: label"),
}


@pytest.mark.parametrize("case", sorted(STATION_HOSTILE))
def test_a_hostile_review_station_line_is_one_error_naming_file_and_line(corrected, case):
    """The sheet's new columns are checked as strictly: known decisions only, a label exactly when the row is a digit."""
    assert_one_error_naming_file_and_line(corrected, "file,page,label,decision,decided_at,job\n", *STATION_HOSTILE[case])


@pytest.mark.parametrize("content", [b"file,page,label\ns0.png,1,1\n\xff\xfe,1,2\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))])
def test_non_utf8_or_binary_corrections_are_one_error(corrected, content):
    (corrected / "corrections.csv").write_bytes(content)
    with pytest.raises(DataFileError, match=r"corrections\.csv(:3)?: (not UTF-8|a binary file)"):
        read(corrected)


def test_one_image_listed_three_times_keeps_the_last_label_with_a_warning(corrected, caplog):
    (corrected / "corrections.csv").write_text("file,page,label\ns0.png,1,1\ns1.png,1,4\ns0.png,1,2\ns0.png,,3\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="batchclf.datasets"):
        data = read(corrected)
    assert len(data) == 2 and sorted(data.labels.tolist()) == [3, 4]
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 2 and all("s0.png page 1 was corrected before" in w for w in warnings)
    assert "the last label, 3, is used" in warnings[-1]


def test_the_number_of_corrections_is_capped(corrected, monkeypatch):
    import batchclf.datasets.decisions as decisions

    monkeypatch.setattr(decisions, "MAX_ROWS", 5)
    lines = "".join(f"s{i % 3}.png,{i + 1},1\n" for i in range(6))
    (corrected / "corrections.csv").write_text("file,page,label\n" + lines, encoding="utf-8")
    with pytest.raises(DataFileError, match=r"corrections\.csv:7: more than 5 corrections"):
        read(corrected)


def test_each_file_is_decoded_once_however_many_rows_name_it(corrected, monkeypatch):
    import batchclf.datasets.corrections as corrections

    calls = []
    real_prepare = corrections.prepare
    monkeypatch.setattr(corrections, "prepare", lambda candidate: calls.append(candidate.path) or real_prepare(candidate))
    lines = "".join(f"s0.png,{page},1\n" for page in range(1, 41)) + "s1.png,1,2\n"
    (corrected / "corrections.csv").write_text("file,page,label\n" + lines, encoding="utf-8")
    data = read(corrected)
    assert len(data) == 2 and data.sources[0]["skipped"] == 39  # pages 2-40 of a one-page scan
    assert len(calls) == 2


def test_corrections_naming_files_outside_the_inputs_are_skipped(tmp_path, secret):
    """``train --from-reviews`` finds images through the same locator: a daemon day's links and absolute names are not read."""
    from batchclf.datasets.corrections import read_corrections

    home = watch_home(tmp_path)
    digit_png(home / "inbox" / "real.png")
    (home / "inbox" / "link.png").symlink_to(secret)
    rows = [review_of_one("real.png"), review_of_one("link.png")]
    day = write_job_named_by_folder(home / "jobs" / f"watch-{DAY}", rows, {"kind": "watch", "inbox": str(home / "inbox")})
    (day / "corrections.csv").write_text(
        f"file,page,label\nreal.png,1,1\nlink.png,1,2\n{secret},1,2\n../private/secret.png,1,2\n", encoding="utf-8"
    )
    data = read_corrections([day])
    assert len(data) == 1 and data.labels.tolist() == [1] and data.sources[0]["skipped"] == 3
