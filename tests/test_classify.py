"""The batch job end to end with a tiny model: every file a row, reports complete and safe."""

import csv
import json
import os

import pytest

from batchclf.jobs.rows import COLUMNS

from .helpers import bad_input_corpus, classify, ink_digit, png_bytes


@pytest.fixture(scope="module")
def corpus_job(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("corpus")
    expected = bad_input_corpus(root / "in")
    folder = classify(root, tiny_model, [root / "in"])
    return root, expected, folder


def test_every_file_is_a_row_with_a_specific_reason(corpus_job):
    _, expected, folder = corpus_job
    rows = json.loads((folder / "results.json").read_text())["rows"]
    by_file = {}
    for row in rows:
        by_file.setdefault(row["file"], row)
    assert set(by_file) == set(expected)
    for name, status in expected.items():
        got = by_file[name]["status"]
        assert got in ({"ok", "review"} if status == "ok" else {status}), (name, by_file[name])
    reasons = {name: by_file[name]["error"] for name in expected if expected[name] == "failed"}
    assert reasons["zero-bytes.png"] == "empty file (0 bytes)"
    assert "truncated" in reasons["truncated.png"] or "corrupt" in reasons["truncated.png"]
    assert reasons["text.png"] == "not a recognised image format"
    assert "decompression-bomb" in reasons["bomb.png"] and "20000x20000" in reasons["bomb.png"]
    assert reasons["x.jpg"] == "not a regular file (a directory)"
    assert "FIFO" in reasons["pipe.jpg"]
    if os.geteuid() != 0:
        assert "permission denied" in reasons["unreadable.png"]
    assert all(by_file[n]["sha256"] for n in expected if expected[n] == "ok")


def test_csv_has_schema_and_neutralises_formulas(corpus_job):
    _, expected, folder = corpus_job
    with open(folder / "results.csv", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        body = list(reader)
    assert tuple(header) == COLUMNS
    files = [row[0] for row in body]
    assert "'=HYPERLINK(1).png" in files
    assert "new\nline.png" in files
    assert len(body) == len(json.loads((folder / "results.json").read_text())["rows"])


def test_summary_and_metadata(corpus_job):
    _, expected, folder = corpus_job
    summary = json.loads((folder / "summary.json").read_text())
    full = json.loads((folder / "results.json").read_text())
    assert full["job"] == summary
    assert summary["job_id"] == folder.name
    assert summary["files"] == len(expected)
    assert sum(summary["counts"].values()) == summary["rows"]
    assert summary["model"]["sha256"] and summary["model"]["file"] == "tiny.keras"
    for key in ("started", "finished", "device", "batch_size", "workers", "tensorflow", "files_per_second", "labels"):
        assert key in summary
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left


def test_multipage_tiff_rows_and_file_arguments(tmp_path, tiny_model):
    digit = ink_digit()
    path = tmp_path / "pages.tif"
    digit.save(path, "TIFF", save_all=True, append_images=[digit, digit.rotate(90)])
    single = tmp_path / "single.png"
    single.write_bytes(png_bytes(digit))
    folder = classify(tmp_path, tiny_model, [path, single], batch_size=2)
    rows = json.loads((folder / "results.json").read_text())["rows"]
    assert [(r["file"], r["page"]) for r in rows] == [("pages.tif", 1), ("pages.tif", 2), ("pages.tif", 3), ("single.png", 1)]
    assert json.loads((folder / "summary.json").read_text())["files"] == 2


def test_worker_processes_give_the_same_rows(tmp_path, tiny_model):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(40):
        ink_digit(60 + i).save(inputs / f"d{i:02d}.png")
    (inputs / "bad.png").write_bytes(b"nope")
    strip = lambda rows: [(r["file"], r["status"], r["label"]) for r in rows]
    serial = json.loads((classify(tmp_path, tiny_model, [inputs]) / "results.json").read_text())["rows"]
    parallel = json.loads((classify(tmp_path, tiny_model, [inputs], workers=2, batch_size=16) / "results.json").read_text())["rows"]
    assert strip(serial) == strip(parallel)
    assert len(serial) == 41


def test_review_threshold_marks_rows(tmp_path, tiny_model):
    (tmp_path / "a.png").write_bytes(png_bytes(ink_digit()))
    rows = json.loads((classify(tmp_path, tiny_model, [tmp_path / "a.png"], review_below=1.0) / "results.json").read_text())["rows"]
    assert rows[0]["status"] == "review" and rows[0]["label"] is not None


def test_symlink_out_of_root_is_reported_not_read(tmp_path, tiny_model):
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes(ink_digit()))
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "link.png").symlink_to(outside)
    rows = json.loads((classify(tmp_path, tiny_model, [inputs]) / "results.json").read_text())["rows"]
    assert rows[0]["status"] == "failed" and "outside" in rows[0]["error"]


def test_missing_input_is_an_error(tmp_path, tiny_model):
    from batchclf.errors import InputPathError

    with pytest.raises(InputPathError):
        classify(tmp_path, tiny_model, [tmp_path / "nope"])
