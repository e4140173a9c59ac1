"""Issue 13, the batch path: nothing a hostile folder or a clumsy operator does may crash a job or lose a report."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

from batchclf.model.predictor import Scores
from batchclf.scan.discovery import Candidate, discover

from .helpers import assert_one_line_error, child_pids, classify, ink_digit, invoke, is_alive, png_bytes, spawned_workers, tiff_bytes


def classify_results(tmp_path, model, inputs, **kwargs):
    """``classify`` (tests/helpers.py), then the job's results.json, parsed."""
    return json.loads((classify(tmp_path, model, inputs, **kwargs) / "results.json").read_text())


def prepare_file(path: Path, **limits):
    from batchclf.scan.prepare import prepare

    candidate = Candidate(path.parent, path)
    if not limits:
        return [item.row for item in prepare(candidate)]
    from batchclf.scan.decode import Limits

    return [item.row for item in prepare(candidate, Limits(**limits))]


def label_everything(images: np.ndarray) -> Scores:
    out = np.zeros((len(images), 10), np.float32)
    out[:, 3] = 1.0
    return Scores(out)


def partial_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*.partial")]


# 1. Names that are not UTF-8


def test_a_name_that_is_not_utf8_is_a_row_with_its_bytes_escaped(tmp_path, tiny_model):
    from batchclf.scan.discovery import display_name

    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / os.fsdecode(b"\xff\xfe.png")).write_bytes(png_bytes(ink_digit()))
    (inputs / "fine.png").write_bytes(png_bytes(ink_digit()))
    job = classify_results(tmp_path, tiny_model, [inputs])
    rows = {row["file"]: row for row in job["rows"]}
    assert set(rows) == {"\\xff\\xfe.png", "fine.png"}
    assert rows["\\xff\\xfe.png"]["status"] in ("ok", "review") and rows["\\xff\\xfe.png"]["sha256"]
    assert display_name(os.fsdecode(b"dir\xe9/\xff.png")) == "dir\\xe9/\\xff.png"
    assert display_name("ünïcødé.png") == "ünïcødé.png"
    csv_path = next((tmp_path / "jobs").iterdir()) / "results.csv"
    assert "\\xff\\xfe.png" in csv_path.read_text(encoding="utf-8")


# 2. Workers killed at any moment


class KillingModel:
    """A fake model that SIGKILLs a worker during some of its calls: a worker dying while the model runs
    is found only at the next submit, the moment that sank classify."""

    def __init__(self, kill_on_calls: set[int]):
        self.kill_on_calls, self.calls = kill_on_calls, 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.calls += 1
        workers = spawned_workers(os.getpid())
        if self.calls in self.kill_on_calls and workers:
            os.kill(random.choice(workers), signal.SIGKILL)
            time.sleep(0.05)  # the pool notices the death before the next submit
        return label_everything(images)


@contextlib.contextmanager
def a_worker_killed_at_a_random_moment():
    """SIGKILL a random worker once, at a random moment: whatever the pool is doing then."""
    stop = threading.Event()

    def kill_later() -> None:
        while not stop.wait(random.uniform(0.2, 1.0)):
            workers = spawned_workers(os.getpid())
            if workers:
                os.kill(random.choice(workers), signal.SIGKILL)
                return

    killer = threading.Thread(target=kill_later)
    killer.start()
    try:
        yield
    finally:
        stop.set()
        killer.join()


def test_workers_killed_mid_job_never_sink_it(tmp_path):
    from batchclf.engines.local import classify_stream

    folder = tmp_path / "in"
    folder.mkdir()
    names = [f"{i:03d}.png" for i in range(300)]  # more chunks than are in flight: submitting goes on
    for i, name in enumerate(names):
        (folder / name).write_bytes(png_bytes(ink_digit(40 + i % 50)))

    def classify_all(model) -> list[dict]:
        return list(classify_stream(discover([folder]), model, 32, 0.5, "m", workers=2))

    for trial in range(10):
        if trial % 2 == 0:  # a kill at the moment that sank classify
            rows = classify_all(KillingModel({random.randint(1, 2)}))
        else:
            with a_worker_killed_at_a_random_moment():
                rows = classify_all(label_everything)
        assert [row["file"] for row in rows] == names, trial
        for row in rows:
            assert row["label"] == 3 or "crashed" in row["error"], row


# 5. Odd entries in a tree


def test_a_symlink_loop_is_a_failed_row(tmp_path, tiny_model):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.png").symlink_to("b.png")
    (inputs / "b.png").symlink_to("a.png")
    (inputs / "good.png").write_bytes(png_bytes(ink_digit()))
    rows = {row["file"]: row for row in classify_results(tmp_path, tiny_model, [inputs])["rows"]}
    assert set(rows) == {"a.png", "b.png", "good.png"}
    assert rows["a.png"]["status"] == rows["b.png"]["status"] == "failed"
    assert "symbolic links" in rows["a.png"]["error"]
    assert rows["good.png"]["status"] in ("ok", "review")


def nested_folders(top: Path, depth: int, name: str = "d") -> list[int]:
    """Make ``top/d/d/.../d`` ``depth`` deep, one level at a time through folder descriptors
    (Path.mkdir(parents=True) would recurse as deep as the tree; full paths would cost depth squared)."""
    fds = [os.open(top, os.O_RDONLY)]
    for _ in range(depth):
        os.mkdir(name, dir_fd=fds[-1])
        fds.append(os.open(name, os.O_RDONLY, dir_fd=fds[-1]))
    return fds


def remove_nested_folders(fds: list[int], name: str = "d") -> None:
    """Undo :func:`nested_folders` bottom up (shutil.rmtree would recurse as deep as the tree)."""
    os.close(fds.pop())
    while fds:
        os.rmdir(name, dir_fd=fds[-1])
        os.close(fds.pop())


def test_a_tree_deeper_than_the_recursion_limit_is_walked(tmp_path):
    depth = sys.getrecursionlimit() + 100
    fds = nested_folders(tmp_path, depth)
    with open(os.open("x.png", os.O_WRONLY | os.O_CREAT, dir_fd=fds[-1]), "wb") as bottom:
        bottom.write(b"x")
    (tmp_path / "top.png").write_bytes(b"x")
    try:
        found = [candidate.relative for candidate in discover([tmp_path])]
        assert found == ["d/" * depth + "x.png", "top.png"]
    finally:
        os.unlink("x.png", dir_fd=fds[-1])
        remove_nested_folders(fds)


# 6. Bounded memory per file


def test_every_tiff_page_is_guarded_against_bombs(tmp_path):
    path = tmp_path / "two.tif"
    # The second page claims 20000x20000: the guard must stop it before decoding, like a first page.
    path.write_bytes(tiff_bytes([ink_digit(), Image.new("L", (20000, 20000), 255)]))
    rows = prepare_file(path)
    assert [row["page"] for row in rows] == [1, 2]
    assert rows[0]["status"] is None  # page 1 went on to the model
    assert rows[1]["status"] == "failed" and "decompression-bomb" in rows[1]["error"] and "20000x20000" in rows[1]["error"]


def test_tiff_pages_are_processed_as_a_stream(tmp_path):
    path = tmp_path / "many.tif"
    path.write_bytes(tiff_bytes([Image.new("L", (1000, 1000), 255)] * 40))
    tracemalloc.start()
    try:
        rows = prepare_file(path, max_pages=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(rows) == 40 and {row["status"] for row in rows} == {"blank"}
    assert peak < 12_000_000  # one 1-megapixel page at a time, not 40 of them


def test_page_count_and_bytes_read_are_capped_with_a_reason(tmp_path):
    pages = tmp_path / "pages.tif"
    pages.write_bytes(tiff_bytes([ink_digit()] * 5))
    [row] = prepare_file(pages, max_pages=3)
    assert row["status"] == "failed" and "5 pages" in row["error"] and "--max-pages" in row["error"]
    sparse = tmp_path / "sparse.png"
    with open(sparse, "wb") as handle:
        handle.write(png_bytes(ink_digit()))
        handle.truncate(2 * 1024**3)  # 2 GB, almost all holes
    clock = time.perf_counter()
    [row] = prepare_file(sparse)
    assert time.perf_counter() - clock < 2.0  # refused, not read
    assert row["status"] == "failed" and "--max-file-mb" in row["error"]


def test_a_file_growing_past_the_cap_while_read_stops_at_the_cap(tmp_path, monkeypatch):
    from batchclf.scan import decode

    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(ink_digit()) + b"\0" * 3_000_000)
    # fstat says small (the file grew after it was checked): reading must still stop at the cap.
    monkeypatch.setattr(decode.os, "fstat", lambda fd, real=os.fstat: os.stat_result((*real(fd)[:6], 10, *real(fd)[7:])))
    [row] = prepare_file(path, max_bytes=1_000_000)
    assert row["status"] == "failed" and "--max-file-mb" in row["error"]


def test_a_decoder_out_of_memory_has_a_specific_reason(tmp_path, monkeypatch):
    from batchclf.scan import decode

    path = tmp_path / "a.png"
    path.write_bytes(png_bytes(ink_digit()))

    def exhausted(image):
        raise MemoryError()

    monkeypatch.setattr(decode, "_to_gray", exhausted)
    [row] = prepare_file(path)
    assert row["status"] == "failed" and "memory" in row["error"]


def test_classify_limits_are_options(tmp_path, tiny_model):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "pages.tif").write_bytes(tiff_bytes([ink_digit()] * 3))
    (inputs / "big.png").write_bytes(png_bytes(ink_digit()) + os.urandom(1_500_000))
    result = invoke("classify", inputs, "--model", tiny_model, "--out", tmp_path / "jobs", "--workers", "0",
                    "--max-pages", "2", "--max-file-mb", "1")
    assert result.exit_code == 0, result.output
    folder = Path(result.stdout.strip().splitlines()[-1])
    job = json.loads((folder / "results.json").read_text())
    errors = {row["file"]: row["error"] for row in job["rows"]}
    assert "--max-pages 2" in errors["pages.tif"] and "--max-file-mb 1" in errors["big.png"]
    assert job["job"]["max_pages"] == 2 and job["job"]["max_file_mb"] == 1


# 12. kill -9 of classify


def test_kill_9_of_classify_takes_its_workers_down(tmp_path, tiny_model):
    inputs = tmp_path / "in"
    inputs.mkdir()
    slow = png_bytes(Image.new("L", (4000, 4000), 255))  # 16 megapixels to decode, a few KB on disk
    for i in range(300):
        (inputs / f"{i:03d}.png").write_bytes(slow)
    command = [sys.executable, "-m", "batchclf", "classify", str(inputs), "--model", str(tiny_model),
               "--out", str(tmp_path / "jobs"), "--workers", "2"]
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    helpers = []
    try:
        deadline = time.monotonic() + 90
        while len(spawned_workers(job.pid)) < 2 and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        helpers = child_pids(job.pid)  # the workers and multiprocessing's resource tracker
        assert len(spawned_workers(job.pid)) == 2, "classify never started its workers"
        job.kill()
        job.wait()
        deadline = time.monotonic() + 5
        while any(map(is_alive, helpers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in helpers if is_alive(pid)], "workers or the resource tracker outlived classify"
    finally:
        job.kill()
        for pid in helpers:
            if is_alive(pid):
                os.kill(pid, signal.SIGKILL)


# 14. --out that cannot be written


def read_only_place(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        return locked / "jobs"
    return Path("/sys/batchclf-test-jobs")  # read-only even for root


def test_out_on_a_file_or_a_read_only_place_is_one_error_line(tmp_path, tiny_model):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(png_bytes(ink_digit()))
    a_file = tmp_path / "out.txt"
    a_file.write_text("x")
    for out in (a_file, read_only_place(tmp_path)):
        result = invoke("classify", tmp_path / "in", "--model", tiny_model, "--out", out, "--workers", "0")
        assert result.exit_code == 1
        assert_one_line_error(result, str(out))
    assert not partial_files(tmp_path)


def test_a_write_failure_mid_job_leaves_no_partial_files(tmp_path, tiny_model, monkeypatch):
    import errno

    from batchclf.jobs import writers

    def full_disk(self, rows, durable=False):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers.RowWriter, "write", full_disk)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(png_bytes(ink_digit()))
    result = invoke("classify", tmp_path / "in", "--model", tiny_model, "--out", tmp_path / "jobs", "--workers", "0")
    assert result.exit_code == 1
    assert_one_line_error(result, "No space left on device")
    assert str(tmp_path / "jobs") in result.stderr
    assert not partial_files(tmp_path) and not list((tmp_path / "jobs").iterdir())


# 15. Exit codes


def test_nothing_to_do_is_an_error(tmp_path, tiny_model):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden.png").write_bytes(b"x")
    classified = invoke("classify", tmp_path / "empty", "--model", tiny_model, "--out", tmp_path / "jobs")
    assert classified.exit_code == 1
    assert_one_line_error(classified, "nothing to classify")
    assert not (tmp_path / "jobs").exists() or not list((tmp_path / "jobs").iterdir())
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "a.png").write_bytes(png_bytes(ink_digit()))
    evaluated = invoke("evaluate", "--model", tiny_model, "--scans", tmp_path / "scans")
    assert evaluated.exit_code == 1
    assert_one_line_error(evaluated, "no labelled images")
    predicted = invoke("predict", tmp_path / "nope.png", "--model", tiny_model)
    assert predicted.exit_code == 1
    assert_one_line_error(predicted, "nope.png")


def test_failed_rows_exit_0_or_3_with_strict(tmp_path, tiny_model):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(png_bytes(ink_digit()))
    (tmp_path / "in" / "bad.png").write_bytes(b"nope")
    common = ("classify", tmp_path / "in", "--model", tiny_model, "--out", tmp_path / "jobs", "--workers", "0")
    assert invoke(*common).exit_code == 0
    strict = invoke(*common, "--strict")
    assert strict.exit_code == 3 and "1 failed" in strict.stderr
    (tmp_path / "in" / "bad.png").unlink()
    assert invoke(*common, "--strict").exit_code == 0


# 17. Several roots


def test_rows_of_several_roots_say_which_root(tmp_path, tiny_model):
    for root in ("a", "b"):
        (tmp_path / root).mkdir()
        (tmp_path / root / "x.png").write_bytes(png_bytes(ink_digit()))
    (tmp_path / "b" / "sub").mkdir()
    (tmp_path / "b" / "sub" / "y.png").write_bytes(png_bytes(ink_digit()))
    assert [c.relative for c in discover([tmp_path / "a", tmp_path / "b"])] == ["a/x.png", "b/sub/y.png", "b/x.png"]
    assert [c.relative for c in discover([tmp_path / "b"])] == ["sub/y.png", "x.png"]  # one root: as before
    job = classify_results(tmp_path, tiny_model, [tmp_path / "a", tmp_path / "b" / "x.png"])
    assert [row["file"] for row in job["rows"]] == ["a/x.png", "b/x.png"]
    assert job["job"]["files_relative_to"] == str(tmp_path)


# 18. Only the documented formats


def test_only_documented_formats_are_opened(tmp_path):
    digit = ink_digit()
    refused = {
        "EPS": png_bytes(digit, "EPS"),
        "DDS": png_bytes(digit.convert("RGB"), "DDS"),
        "ICO": png_bytes(digit, "ICO"),
        "SGI": png_bytes(digit, "SGI"),
        "SPIDER": png_bytes(digit.convert("F"), "SPIDER"),
        "TGA": png_bytes(digit, "TGA"),
    }
    for name, data in refused.items():
        path = tmp_path / f"{name}.png"
        path.write_bytes(data)
        [row] = prepare_file(path)
        assert row["status"] == "failed", name
        if name in ("EPS", "DDS", "ICO", "SGI"):  # recognisable by their first bytes
            assert f"{name} files are not read" in row["error"], row["error"]
        else:
            assert row["error"] == "not a recognised image format", row["error"]
    accepted = {"a.bmp": "BMP", "a.pgm": "PPM", "a.ppm": "PPM", "a.tif": "TIFF", "a.webp": "WEBP", "a.jpg": "JPEG"}
    for name, fmt in accepted.items():
        image = digit.convert("RGB") if name in ("a.ppm", "a.webp") else digit
        (tmp_path / name).write_bytes(png_bytes(image, fmt))
        [row] = prepare_file(tmp_path / name)
        assert row["status"] is None, (name, row)


# 19. A symlinked folder on the command line


def test_a_symlinked_folder_argument_is_walked(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "x.png").write_bytes(b"x")
    (tmp_path / "outside.png").write_bytes(b"x")
    (real / "out.png").symlink_to(tmp_path / "outside.png")
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    found = {c.relative: c.escaped for c in discover([tmp_path / "link"])}
    assert found == {"out.png": True, "x.png": False}  # links inside the tree keep their rule


# 20. A smoothed rate


def test_the_progress_rate_is_smoothed():
    from rich.progress import Progress

    from batchclf.classify import _files_per_second_column

    now = [0.0]
    progress = Progress(get_time=lambda: now[0])
    task = progress.add_task("classify", total=None)
    column = _files_per_second_column()
    shown = []
    for _ in range(40):  # batches of 256 files land at once every 0.1 s: 2,560 files/s
        now[0] += 0.1
        for _ in range(256):
            now[0] += 1e-6
            progress.advance(task)
        text = column.render(progress.tasks[0]).plain
        if text:
            shown.append(float(text.split()[0]))
    assert shown and all(2_000 < rate < 3_200 for rate in shown), shown
