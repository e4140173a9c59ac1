"""The batched stream: bounded memory, fixed batch shapes, input order."""

import itertools
import os

import numpy as np
import pytest

from batchclf.model.predictor import Scores
from batchclf.scan.discovery import Candidate, discover, is_ignored
from batchclf.engines.local import classify_stream
from batchclf.scan.pool import CHUNK_FILES, CHUNKS_IN_FLIGHT_PER_WORKER, MAX_CHUNK_FILES

from .helpers import crash_on_poison, ink_digit, png_bytes


class CountingCandidates:
    """An endless supply of the same image, counting how many were pulled."""

    def __init__(self, path):
        self.path, self.pulled = path, 0

    def __iter__(self):
        for i in itertools.count():
            self.pulled += 1
            yield Candidate(self.path.parent, self.path)


def fake_predict(shapes):
    def predict(images):
        shapes.append(images.shape)
        out = np.zeros((len(images), 10), np.float32)
        out[:, 3] = 1.0
        return Scores(out)

    return predict


@pytest.mark.parametrize("workers", [0, 1])
def test_stream_is_lazy_and_bounded(tmp_path, workers):
    image = tmp_path / "d.png"
    image.write_bytes(png_bytes(ink_digit()))
    source = CountingCandidates(image)
    shapes = []
    rows = classify_stream(source, fake_predict(shapes), batch_size=16, review_below=0.5, model_name="m", workers=workers)
    first = list(itertools.islice(rows, 40))
    assert [r["label"] for r in first] == [3] * 40
    chunk = CHUNK_FILES if workers == 0 else MAX_CHUNK_FILES  # a stream through workers packs small files into bigger tasks
    bound = 16 + 40 + chunk * (1 + max(workers, 1) * CHUNKS_IN_FLIGHT_PER_WORKER)
    assert source.pulled <= bound  # never the whole (endless) input
    assert all(shape == (16, 28, 28, 1) for shape in shapes)
    rows.close()


def test_rows_keep_input_order_and_last_batch_is_short(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(21):
        (folder / f"{i:02d}.png").write_bytes(png_bytes(ink_digit(50 + i)))
    shapes = []
    rows = list(classify_stream(discover([folder]), fake_predict(shapes), 8, 0.5, "m", workers=0))
    assert [r["file"] for r in rows] == [f"{i:02d}.png" for i in range(21)]
    assert [s[0] for s in shapes] == [8, 8, 5]  # the Predictor pads the short batch, see test_training


def test_discovery_skips_clutter_and_recurses(tmp_path):
    for name in ("a.png", "sub/b.jpg", ".hidden.png", "c.png.part", "d.tmp", "e.crdownload", "~$f.png", "Thumbs.db", ".DS_Store", "@eaDir/g.png"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert [c.relative for c in discover([tmp_path])] == ["a.png", "sub/b.jpg"]
    assert is_ignored("x.part") and not is_ignored("x.png")


def test_file_argument_is_relative_to_its_folder(tmp_path):
    (tmp_path / "one.png").write_bytes(b"x")
    assert [c.relative for c in discover([tmp_path / "one.png"])] == ["one.png"]


def test_a_crashing_decoder_fails_one_file_and_the_job_goes_on(tmp_path):
    from batchclf.scan.pool import prepared_stream

    folder = tmp_path / "in"
    folder.mkdir()
    names = [f"{i:02d}.png" for i in range(12)]
    names[5] = "05-poison.png"
    for name in names:
        (folder / name).write_bytes(png_bytes(ink_digit()))
    items = list(prepared_stream(discover([folder]), workers=2, chunk_files=3, prepare=crash_on_poison))
    assert [item.row["file"] for item in items] == names
    statuses = {item.row["file"]: item.row["status"] for item in items}
    assert statuses.pop("05-poison.png") == "failed"
    assert set(statuses.values()) == {None}  # the others were prepared normally (the model labels them later)
    poisoned = next(item for item in items if item.row["file"] == "05-poison.png")
    assert "crashed on this file" in poisoned.row["error"]


def report_niceness(candidates):
    """A prepare function that tells how nice its worker process runs."""
    import os

    return [os.nice(0)]


def test_workers_run_niced_below_inference():
    from batchclf.scan.pool import WORKER_NICE, WorkerPool

    with WorkerPool(1, report_niceness) as pool:
        [worker_niceness] = pool.result(*pool.submit([]))
    assert worker_niceness == min(os.nice(0) + WORKER_NICE, 19)
