"""Between the decode workers and the model: workers started while the model loads, the next batch gathered while one is scored."""

from __future__ import annotations

import multiprocessing
import threading
import time

import numpy as np
import pytest

from batchclf.engines.base import EngineSettings
from batchclf.engines.local import BATCHES_AHEAD, LocalEngine, classify_stream
from batchclf.model.predictor import Scores
from batchclf.scan.discovery import Candidate, discover

from .helpers import crash_on_poison, ink_digit, png_bytes

GUARD_SECONDS = 10  # only a guard against hanging: nothing here is timed


class FakePredictor:
    name, review_below, batch_size, device, review = "fake.keras", 0.5, 4, "cpu", {}

    def warm_up(self):
        pass

    def score(self, images):
        out = np.zeros((len(images), 10), np.float32)
        out[:, 7] = 1.0
        return Scores(out)

    def describe(self):
        return {"file": self.name}


class SpecThatCounts:
    """A model spec whose loading records how many worker processes are already running, or fails."""

    def __init__(self, fail: bool = False):
        self.fail, self.children_at_load = fail, None

    def predictor(self):
        self.children_at_load = len(multiprocessing.active_children())
        if self.fail:
            raise RuntimeError("the model would not load")
        return FakePredictor()


def _folder(tmp_path, names):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(png_bytes(ink_digit()))
    return folder


def test_workers_start_while_the_model_loads(tmp_path):
    spec = SpecThatCounts()
    folder = _folder(tmp_path, [f"{i:02d}.png" for i in range(10)])
    with LocalEngine(EngineSettings(spec, workers=2)) as engine:
        assert spec.children_at_load == 2  # spawned before the model loads, not when the first chunk is sent
        rows = list(engine.rows(discover([folder])))
    assert [row["file"] for row in rows] == [f"{i:02d}.png" for i in range(10)]
    assert {row["label"] for row in rows} == {7}
    assert multiprocessing.active_children() == []  # closed with the engine


def test_a_model_that_fails_to_load_leaves_no_workers():
    spec = SpecThatCounts(fail=True)
    with pytest.raises(RuntimeError):
        LocalEngine(EngineSettings(spec, workers=2))
    assert spec.children_at_load == 2
    assert multiprocessing.active_children() == []


def test_the_next_batch_is_gathered_while_one_is_scored(tmp_path):
    """The model scores batch 1 only once the workers' stream has moved on into batch 2: the two overlap."""
    from batchclf.scan.pool import CHUNK_FILES

    image = tmp_path / "d.png"
    image.write_bytes(png_bytes(ink_digit()))
    batch = CHUNK_FILES  # workers=0 reads a chunk at a time: batch 1 is the first chunk, batch 2 the next
    pulled = 0
    moved_on = threading.Event()

    def candidates():
        nonlocal pulled
        for _ in range(5 * batch):
            pulled += 1
            if pulled > batch:
                moved_on.set()
            yield Candidate(image.parent, image)

    overlapped = []

    def score(images):
        if not overlapped:  # the first batch: wait until the next one is being gathered
            overlapped.append(moved_on.wait(GUARD_SECONDS))
        return FakePredictor().score(images)

    rows = list(classify_stream(candidates(), score, batch, 0.5, "m", workers=0))
    assert overlapped == [True]
    assert len(rows) == 5 * batch and {row["label"] for row in rows} == {7}


def test_batches_ahead_are_bounded(tmp_path):
    """While the model is stuck on a batch, at most BATCHES_AHEAD batches (plus one chunk being read) are held."""
    image = tmp_path / "d.png"
    image.write_bytes(png_bytes(ink_digit()))
    from batchclf.scan.pool import CHUNK_FILES

    batch, pulled = CHUNK_FILES, 0
    release = threading.Event()

    def candidates():
        nonlocal pulled
        while True:
            pulled += 1
            yield Candidate(image.parent, image)

    def score(images):
        release.wait(GUARD_SECONDS)
        return FakePredictor().score(images)

    rows = classify_stream(candidates(), score, batch, 0.5, "m", workers=0)
    reader = threading.Thread(target=lambda: next(rows))
    reader.start()
    deadline = time.monotonic() + GUARD_SECONDS
    while pulled <= batch and time.monotonic() < deadline:  # the next batch is being gathered...
        time.sleep(0.01)
    reader.join(0.5)  # ...and the stream may run on as far as it will while the model is stuck
    held = pulled
    release.set()
    reader.join(GUARD_SECONDS)
    rows.close()
    assert batch < held <= BATCHES_AHEAD * batch + CHUNK_FILES


def test_rows_keep_input_order_through_a_crash_with_a_started_pool(tmp_path):
    from batchclf.scan.pool import WorkerPool, prepared_stream

    names = [f"{i:02d}.png" for i in range(12)]
    names[5] = "05-poison.png"
    folder = _folder(tmp_path, names)
    with WorkerPool(2, crash_on_poison) as pool:
        pool.start_workers()
        items = list(prepared_stream(discover([folder]), 2, chunk_files=3, pool=pool))
        again = list(prepared_stream(discover([folder]), 2, chunk_files=3, pool=pool))  # the pool outlives a stream
    for got in (items, again):
        assert [item.row["file"] for item in got] == names
        statuses = {item.row["file"]: item.row["status"] for item in got}
        assert statuses.pop("05-poison.png") == "failed" and set(statuses.values()) == {None}


def test_rows_keep_input_order_with_batches_finishing_out_of_order(tmp_path, monkeypatch):
    """Two batches scored side by side, the later one finishing first: rows still leave in input order."""
    from batchclf.engines import local

    monkeypatch.setattr(local, "MODEL_CALLS", 2)
    monkeypatch.setattr(local, "BATCHES_AHEAD", 3)
    names = [f"{i:03d}.png" for i in range(40)]
    folder = _folder(tmp_path, names)
    first_started, second_done = threading.Event(), threading.Event()
    calls = []

    def score(images):
        calls.append(len(images))
        if len(calls) == 1:  # the first batch waits until the second is done
            first_started.set()
            second_done.wait(GUARD_SECONDS)
        elif len(calls) == 2:
            second_done.set()
        return FakePredictor().score(images)

    rows = list(local.classify_stream(discover([folder]), score, 8, 0.5, "m", workers=0))
    assert second_done.is_set()
    assert [row["file"] for row in rows] == names


def loaded_decoders(candidates):
    """A prepare function that tells which lazily loaded decoders its worker already holds."""
    import sys

    return [sorted(name for name in ("PIL.PngImagePlugin", "cv2") if name in sys.modules)]


def test_started_workers_have_their_decoders_loaded():
    """Started ahead, a worker has decoded a made-up page: Pillow's plugins and OpenCV are loaded before the first chunk."""
    from batchclf.scan.pool import WorkerPool

    with WorkerPool(1, loaded_decoders) as pool:
        pool.start_workers()
        [loaded] = pool.result(*pool.submit([]))  # one worker: this task runs after the warm-up task
    assert loaded == ["PIL.PngImagePlugin", "cv2"]



def test_the_engine_is_ready_only_once_its_workers_are(monkeypatch):
    """A model that loads at once (LiteRT) still leaves the engine waiting for its workers: the job's clock starts on ready workers."""
    from batchclf.scan import pool as pools

    started = []
    original = pools.WorkerPool.start_workers

    def remember(self):
        futures = original(self)
        started.extend(futures)
        return futures

    monkeypatch.setattr(pools.WorkerPool, "start_workers", remember)
    with LocalEngine(EngineSettings(SpecThatCounts(), workers=2)):
        assert len(started) == 2
        assert all(future.done() and future.exception() is None for future in started)


def test_a_classify_job_records_its_startup_apart(tmp_path):
    from pathlib import Path

    from batchclf.classify import ClassifyOptions, run
    from batchclf.jobs.folder import read_job

    folder = _folder(tmp_path, ["a.png", "b.png"])
    model = Path(__file__).resolve().parents[1] / "models" / "default.keras"
    job = run([folder], ClassifyOptions(model=model, out_dir=tmp_path / "jobs", workers=0), progress=False)
    meta = read_job(job).meta
    assert meta["startup_seconds"] > 0 and meta["seconds"] > 0


def test_a_stream_packs_small_files_into_bigger_tasks_and_keeps_large_ones_short(tmp_path):
    from batchclf.scan.pool import CHUNK_BYTES, CHUNK_FILES, MAX_CHUNK_FILES, _sized_chunks

    small, large = tmp_path / "small.png", tmp_path / "large.png"
    small.write_bytes(b"x" * 300)  # a 28x28 PNG's size
    large.write_bytes(b"x" * (CHUNK_BYTES // 8))  # eight of them fill a task's bytes
    sizes = [len(chunk) for chunk in _sized_chunks([Candidate(tmp_path, small)] * 300, CHUNK_FILES)]
    assert sizes == [MAX_CHUNK_FILES, 300 - MAX_CHUNK_FILES]
    sizes = [len(chunk) for chunk in _sized_chunks([Candidate(tmp_path, large)] * 70, CHUNK_FILES)]
    assert sizes == [CHUNK_FILES, CHUNK_FILES, 6]  # never fewer files than before: large scans keep short tasks
    ghost = Candidate(tmp_path, tmp_path / "gone.png")  # vanished since it was found: weighs nothing, still sent
    assert [len(chunk) for chunk in _sized_chunks([ghost] * 40, CHUNK_FILES)] == [40]
