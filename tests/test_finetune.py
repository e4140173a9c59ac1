"""Learning from users' scans: labelled folders, USPS files, corrections.csv, and a fine-tune that changes what it should."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from batchclf.datasets.corrections import read_corrections
from batchclf.datasets.labelled import label_from_path, read_labelled
from batchclf.errors import DataFileError
from batchclf.jobs.rows import COLUMNS, make_row

from .helpers import ink_digit


def scan(size=90, column=True):
    """A dark vertical (or horizontal) stroke on paper: a shape the synthetic bars never showed the model."""
    gray = np.full((size, size), 235, np.uint8)
    if column:
        gray[size // 6 : size * 5 // 6, size // 2 - 5 : size // 2 + 5] = 15
    else:
        gray[size // 2 - 5 : size // 2 + 5, size // 6 : size * 5 // 6] = 15
    return Image.fromarray(gray, "L")


def test_labelled_folders_at_any_depth(tmp_path):
    for writer in ("anna", "ben"):
        for digit in ("0", "7"):
            folder = tmp_path / "scans" / writer / "page1" / digit
            folder.mkdir(parents=True)
            ink_digit().save(folder / "a.png")
    (tmp_path / "scans" / "anna" / "page1" / "0" / "blank.png").parent.mkdir(exist_ok=True)
    Image.new("L", (60, 60), 240).save(tmp_path / "scans" / "anna" / "page1" / "0" / "blank.png")
    (tmp_path / "scans" / "notes.png").write_bytes(b"no digit folder: not labelled")
    data = read_labelled([tmp_path / "scans"])
    assert len(data) == 4 and sorted(data.labels.tolist()) == [0, 0, 7, 7]
    assert sorted(set(data.groups.tolist())) == ["anna", "ben"]
    assert data.images.shape == (4, 28, 28) and data.images.dtype == np.uint8
    (source,) = data.sources
    assert source["images"] == 4 and source["skipped"] == 1 and len(source["sha256"]) == 64
    assert label_from_path("w/3/x.png") == 3 and label_from_path("x.png") is None


def test_usps_text_files(tmp_path):
    ink = np.full(256, -1.0)
    ink[np.arange(256).reshape(16, 16)[3:13, 7:9].ravel()] = 1.0  # a "1"
    lines = [" ".join(["1", *map(str, ink)]), " ".join(["0", *["-1"] * 256])]  # the second is blank paper
    (tmp_path / "zip.train").write_text("\n".join(lines) + "\n")
    data = read_labelled([tmp_path / "zip.train"])
    assert data.labels.tolist() == [1] and data.sources[0]["skipped"] == 1
    (tmp_path / "bad.train").write_text("1 2 3\n")
    with pytest.raises(DataFileError, match="not a USPS digit file"):
        read_labelled([tmp_path / "bad.train"])


def corrected_job(tmp_path, count=12):
    """A classify job whose doubtful rows are vertical strokes, corrected to 5 in corrections.csv."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    rows = []
    for i in range(count):
        scan(80 + i).save(inputs / f"s{i}.png")
        rows.append(make_row(file=f"s{i}.png", page=1, status="review", label=1, confidence=0.4))
    job = tmp_path / "jobs" / "20261125T030000Z-0aaa"
    job.mkdir(parents=True)
    with open(job / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows([["" if r[c] is None else r[c] for c in COLUMNS] for r in rows])
    (job / "summary.json").write_text(json.dumps({"job_id": job.name, "kind": "classify", "inputs": [str(inputs)]}))
    with open(job / "corrections.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "page", "label"])
        writer.writerows([[f"s{i}.png", 1, 5] for i in range(count)] + [["gone.png", 1, 5]])
    return job


def test_corrections_are_found_through_their_job(tmp_path):
    job = corrected_job(tmp_path)
    data = read_corrections([job])
    assert len(data) == 12 and set(data.labels.tolist()) == {5}
    assert data.sources[0]["skipped"] == 1  # gone.png
    loose = tmp_path / "corrections.csv"
    loose.write_bytes((job / "corrections.csv").read_bytes())
    assert len(read_corrections([loose, job])) == 12  # a downloaded file plus the job it came from
    with pytest.raises(DataFileError, match="give the job folder"):
        read_corrections([loose])
    (job / "corrections.csv").write_text("file,page,label\ns0.png,1,x\n")
    with pytest.raises(DataFileError, match="not a digit"):
        read_corrections([job])


SHEET_HEADER = "file,page,label,decision,decided_at,job\r\n"


def sheet_file(path, job, lines):
    """A corrections.csv as the review station saves it: ``(file, label, decision)`` per line."""
    path.write_text(SHEET_HEADER + "".join(
        f"{file},1,{label},{decision},2026-12-01T08:00:{i:02d}.000Z,{job.name}\r\n" for i, (file, label, decision) in enumerate(lines)
    ), encoding="utf-8", newline="")
    return path


def test_a_review_station_file_with_rows_that_are_no_digit_reads(tmp_path):
    """The sheet's new columns: not-a-digit and blank rows have no label and are left out, not an error."""
    job = corrected_job(tmp_path)
    sheet_file(job / "corrections.csv", job, [("s0.png", 5, "corrected"), ("s1.png", "", "not-a-digit"),
                                             ("s2.png", "", "blank"), ("s3.png", 1, "accepted")])
    data = read_corrections([job])
    assert data.labels.tolist() == [5, 1]
    assert data.sources[0]["no_digit"] == 2 and data.sources[0]["images"] == 2 and data.sources[0]["skipped"] == 0


def test_a_job_with_verified_csv_teaches_what_the_person_decided(tmp_path):
    """``train --from-reviews JOB`` after ``review apply``: the person's accepted and corrected digits, not corrections.csv."""
    from batchclf.review.apply import apply_reviews

    job = corrected_job(tmp_path)  # its corrections.csv says 5 for all twelve: not what the person decided last
    decided = sheet_file(tmp_path / "decided.csv", job, [("s0.png", 1, "accepted"), ("s1.png", 7, "corrected"),
                                                         ("s2.png", "", "not-a-digit"), ("s3.png", "", "blank")])
    apply_reviews(job, [decided])
    data = read_corrections([job])
    assert data.labels.tolist() == [1, 7]  # s0 confirmed as the model's 1, s1 corrected to 7; the model's own rows are no lesson
    (source,) = data.sources
    assert source["path"] == str(job / "verified.csv") and source["images"] == 2 and source["no_digit"] == 2
    assert len(source["sha256"]) == 64
    given = read_corrections([job / "verified.csv"])  # named as a file, it is still the person's decisions only
    assert given.labels.tolist() == [1, 7]


@pytest.mark.parametrize("cell, value", [("label", "12"), ("label", "-3"), ("page", "0")])
def test_a_tampered_verified_csv_is_one_error(tmp_path, cell, value):
    """verified.csv is a job's file: its person rows pass the same digit and page checks as a corrections line."""
    from batchclf.review.apply import apply_reviews

    job = corrected_job(tmp_path)
    apply_reviews(job, [sheet_file(tmp_path / "decided.csv", job, [("s0.png", 1, "accepted")])])
    path = job / "verified.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        records = list(csv.reader(handle))
    column = records[0].index(cell)
    records[1][column] = value  # s0.png: the row the person decided
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(records)
    with pytest.raises(DataFileError, match=rf"verified\.csv: s0\.png page .*: {cell} '{value}'"):
        read_corrections([job])


def test_train_passes_inputs_to_the_corrections_reader(tmp_path, synthetic_npz, monkeypatch):
    """``train --from-reviews JOB --inputs DIR``: the folder reaches read_corrections; a folder that is none is one error."""
    import batchclf.datasets.corrections as corrections
    from typer.testing import CliRunner

    from batchclf.cli import app

    seen = {}

    def fake(sources, inputs=None):
        seen.update(sources=sources, inputs=inputs)
        raise DataFileError("stopped before training")

    monkeypatch.setattr(corrections, "read_corrections", fake)
    job = corrected_job(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    base = tmp_path / "base.keras"
    base.write_bytes(b"never loaded: the test stops before")
    runner = CliRunner()
    common = ["train", "--from-reviews", str(job), "--data", str(synthetic_npz), "--base", str(base), "--out", str(tmp_path / "t.keras")]
    result = runner.invoke(app, [*common, "--inputs", str(shared)])
    assert result.exit_code == 1 and "stopped before training" in result.output, result.output
    assert seen == {"sources": [job], "inputs": [shared]}
    result = runner.invoke(app, [*common, "--inputs", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and result.stderr.startswith("Error: --inputs "), result.output


def test_corrections_of_a_job_with_inputs_outside_its_home_need_inputs(tmp_path):
    """The same rule as the sheet: inputs outside the job's home are read only from a folder the user names."""
    (tmp_path / "home").mkdir()
    job = corrected_job(tmp_path / "home")
    moved = tmp_path / "elsewhere"
    (tmp_path / "home" / "in").rename(moved)
    meta = json.loads((job / "summary.json").read_text())
    (job / "summary.json").write_text(json.dumps({**meta, "inputs": [str(moved)]}))
    with pytest.raises(DataFileError, match="none of the corrected images"):
        read_corrections([job])
    assert len(read_corrections([job], inputs=[moved])) == 12


def test_fine_tune_learns_the_corrections_and_keeps_the_rest(tmp_path, tiny_model, synthetic_dataset):
    from batchclf.model.finetune import fine_tune
    from batchclf.model.predictor import Predictor
    from batchclf.scan.preprocess import mnist_to_input

    corrections = read_corrections([corrected_job(tmp_path)])
    before = Predictor(tiny_model, device="cpu")
    assert (before.predict(mnist_to_input(corrections.images)).argmax(1) == 5).mean() < 0.5
    accuracy_before = (before.predict(mnist_to_input(synthetic_dataset.x_test)).argmax(1) == synthetic_dataset.y_test).mean()

    out = tmp_path / "models" / "tuned.keras"
    card = fine_tune(tiny_model, corrections, synthetic_dataset, out, epochs=4, replay=600, augment=False,
                     learning_rate=3e-3, progress=False, origin={"corrections": corrections.sources})
    after = Predictor(out, device="cpu")
    assert (after.predict(mnist_to_input(corrections.images)).argmax(1) == 5).mean() >= 0.9
    accuracy_after = (after.predict(mnist_to_input(synthetic_dataset.x_test)).argmax(1) == synthetic_dataset.y_test).mean()
    assert accuracy_after >= accuracy_before - 0.03
    assert card["parent"] == "tiny.keras" and len(card["parent_sha256"]) == 64
    assert card["fine_tuning"]["extra_images"] == 12 and card["fine_tuning"]["corrections"][0]["images"] == 12
    assert json.loads(out.with_suffix(".json").read_text())["mnist_test"]["accuracy"] == card["mnist_test"]["accuracy"]


@pytest.fixture
def synthetic_npz(tmp_path, synthetic_dataset):
    path = tmp_path / "synthetic.npz"
    d = synthetic_dataset
    np.savez(path, x_train=d.x_train, y_train=d.y_train, x_test=d.x_test, y_test=d.y_test)
    return path


def test_cli_fine_tunes_from_reviews_and_never_replaces_the_model_in_use(tmp_path, tiny_model, synthetic_npz):
    import shutil

    from typer.testing import CliRunner

    from batchclf.cli import app

    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    shutil.copy(tiny_model, home / "models" / "default.keras")
    shutil.copy(tiny_model.with_suffix(".json"), home / "models" / "default.json")
    job = corrected_job(tmp_path)
    runner = CliRunner()
    refused = runner.invoke(app, ["train", "--from-reviews", str(job), "--data", str(synthetic_npz), "--home", str(home),
                                  "--out", str(home / "models" / "default.keras")])
    assert refused.exit_code == 1 and "is the model in use" in refused.output
    done = runner.invoke(app, ["train", "--from-reviews", str(job), "--data", str(synthetic_npz), "--home", str(home), "--epochs", "1"])
    assert done.exit_code == 0, done.output
    card = json.loads((home / "models" / "default-tuned.json").read_text())
    assert card["parent"] == "default.keras" and card["fine_tuning"]["corrections"][0]["images"] == 12
    assert "batchclf models use default-tuned" in done.output
    from batchclf import paths

    assert paths.default_model(home).name == "default.keras"  # still the one in use


def test_cli_evaluate_a_usps_file_with_a_baseline(tmp_path, tiny_model):
    from typer.testing import CliRunner

    from batchclf.cli import app

    ink = np.full((16, 16), -1.0)
    ink[3:13, 7:9] = 1.0
    (tmp_path / "zip.test").write_text("".join(" ".join(["1", *map(str, ink.ravel())]) + "\n" for _ in range(5)))
    result = CliRunner().invoke(app, ["evaluate", "--scans", str(tmp_path / "zip.test"), "--model", str(tiny_model),
                                      "--baseline", str(tiny_model), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["n"] == 5 and set(data["groups"]) == {"zip.test"} and "review_share" in data and "ok_accuracy" in data
    assert data["baseline"]["accuracy"] == data["accuracy"]
