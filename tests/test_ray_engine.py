"""The engine chooser and the Ray Data engine: same rows as the local engine, loopback only, an actor killed mid-job.

Ray runs privately on 127.0.0.1 (dashboard off, usage stats off), started and
shut down by the engine itself; tests skip, saying why, when Ray is not
installed or cannot start here.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from batchclf.engines import get_engine, ray_available
from batchclf.engines.base import EngineSettings
from batchclf.errors import EngineUnavailableError, UnknownEngineError
from tests.helpers import bad_input_corpus, ink_digit, png_bytes

COMPARED = ("file", "page", "status", "label", "second_label", "error", "sha256", "width", "height", "model", "duplicate_of")


# --- the chooser (no Ray needed) ----------------------------------------------------------------


def test_chooser_names_the_engines():
    from batchclf.engines.local import LocalEngine

    assert get_engine("local") is LocalEngine
    with pytest.raises(UnknownEngineError, match=r"unknown engine 'spark'; choose one of: local, ray"):
        get_engine("spark")


def test_ray_engine_without_ray_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    with pytest.raises(EngineUnavailableError) as caught:
        get_engine("ray")
    assert str(caught.value) == "--engine ray needs Ray: pip install 'batchclf[ray]'"
    assert "\n" not in str(caught.value)


def test_crash_ledger_fails_a_file_only_when_it_killed_its_decoder_twice(tmp_path, monkeypatch):
    from batchclf.engines.ray import _CrashLedger

    folder = str(tmp_path / "ledger")  # the job's private folder (the engine makes it with mkdtemp)
    first = _CrashLedger(folder, "job", 100)
    first.begin(100)
    first.begin(101)  # ... and the worker dies here (no done())
    second = _CrashLedger(folder, "job", 100)  # the retry: 101 died once, so it is tried again
    assert not second.culprit(100) and not second.culprit(101)
    second.begin(100)
    second.begin(101)  # dies again on 101
    third = _CrashLedger(folder, "job", 100)
    assert third.culprit(101) and not third.culprit(100) and not third.culprit(102)
    third.done()
    assert not list((tmp_path / "ledger").iterdir())


# --- Ray -------------------------------------------------------------------------------------------


def _ray_or_skip():
    try:
        ray_available()
    except EngineUnavailableError as exc:
        pytest.skip(f"Ray is not installed: {exc}")


def mixed_corpus(root: Path, good: int = 240) -> int:
    """The awkward corpus plus ``good`` varied digits (sizes, formats, blanks, multi-page TIFFs); returns files written."""
    bad_input_corpus(root / "awkward")
    rng = np.random.default_rng(7)
    for index in range(good):
        size = int(rng.integers(28, 240))
        digit = ink_digit(size)
        folder = root / f"batch-{index % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        kind = index % 10
        if kind == 0:
            (folder / f"blank-{index:03d}.png").write_bytes(png_bytes(Image.new("L", (size, size), 235)))
        elif kind == 1:
            buffer = io.BytesIO()
            digit.save(buffer, "TIFF", save_all=True, append_images=[digit.rotate(90), digit.transpose(Image.FLIP_LEFT_RIGHT)])
            (folder / f"pages-{index:03d}.tif").write_bytes(buffer.getvalue())
        elif kind in (2, 3, 4):
            (folder / f"scan-{index:03d}.jpg").write_bytes(png_bytes(digit.convert("RGB").rotate(index % 7), "JPEG", quality=70))
        else:
            shifted = Image.fromarray(np.roll(np.asarray(digit), index % 9, axis=1))
            (folder / f"scan-{index:03d}.png").write_bytes(png_bytes(shifted))
    return good


def local_rows(root: Path, model: Path, detector: Path | None = None) -> list[dict]:
    """The local engine's rows for ``root``, straight from ``classify_stream``."""
    from batchclf.engines.local import classify_stream
    from batchclf.model import card as cards
    from batchclf.model.predictor import Predictor
    from batchclf.scan.discovery import discover

    predictor = Predictor(model, device="cpu", batch_size=64, detector=detector)
    review_below = cards.review_below(predictor.card)
    return list(classify_stream(discover([root]), predictor.score, predictor.batch_size, review_below, predictor.name, 2))


def ray_engine(model: Path, **settings):
    _ray_or_skip()
    from batchclf.engines.ray import RayEngine

    settings = {"device": "cpu", "batch_size": 64, "workers": 1, "actors": 1, **settings}
    engine = RayEngine(EngineSettings.of(model=model, **settings))
    try:
        engine.start()
    except Exception as exc:  # Ray cannot start here (no /dev/shm, sandbox...): say so
        engine.close()
        pytest.skip(f"Ray cannot start here: {exc.__class__.__name__}: {exc}")
    return engine


def ray_listeners() -> list[tuple[str, str]]:
    """``(local address, process)`` of every listening TCP socket owned by a Ray process or this one."""
    if not shutil.which("ss"):
        return []
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 6:
            continue
        process = fields[5]
        if re.search(r'"(ray::[^"]*|raylet|gcs_server|python[^"]*)",pid=', process) and (
            "ray::" in process or "raylet" in process or "gcs_server" in process or f"pid={os.getpid()}," in process
        ):
            found.append((fields[3], process))
    return found


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1") or host.startswith("::ffff:127.")


def test_ray_rows_equal_local_rows_and_ray_listens_on_loopback_only(tmp_path, tiny_model, ink_detector):
    root = tmp_path / "in"
    mixed_corpus(root)
    engine = ray_engine(tiny_model, detector=ink_detector)  # the actors get the not-a-digit detector too
    try:
        from batchclf.scan.discovery import discover

        listeners = ray_listeners()
        rows = list(engine.rows(discover([root])))
        meta = engine.describe()
    finally:
        engine.close()
    import ray

    assert not ray.is_initialized(), "the engine shuts down the Ray it started"
    assert listeners or not shutil.which("ss"), "ss found no Ray sockets at all: the check would prove nothing"
    outward = [entry for entry in listeners if not is_loopback(entry[0])]
    assert not outward, f"Ray listens beyond loopback: {outward}"

    expected = local_rows(root, tiny_model, ink_detector)
    assert len(rows) == len(expected) > 250
    assert meta["model"]["detector"]["file"] == ink_detector.name
    for ray_row, local_row in zip(rows, expected):
        assert {key: ray_row[key] for key in COMPARED} == {key: local_row[key] for key in COMPARED}
        for key in ("confidence", "second_confidence"):
            if local_row[key] is None:
                assert ray_row[key] is None
            else:
                assert abs(ray_row[key] - local_row[key]) <= 1e-5, (ray_row, local_row)
    statuses = {row["status"] for row in rows}
    assert {"failed", "blank"} <= statuses and statuses & {"ok", "review"}
    assert sum(row["page"] == 3 for row in rows) == 24  # every multi-page TIFF gave its three pages
    assert meta["engine"] == "ray" and meta["model"]["file"] == tiny_model.name and meta["ray"]["actors"] == 1


def labeller_pids() -> set[int]:
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"Labeller" in (proc / "cmdline").read_bytes():
                pids.add(int(proc.name))
        except OSError:
            continue
    return pids


def fused_actors() -> list[bytes]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"prepare_block)->" in (cmdline := (proc / "cmdline").read_bytes()):
                found.append(cmdline)
        except OSError:
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the actor process through /proc")
def test_an_actor_killed_mid_job_loses_and_duplicates_nothing(tmp_path, tiny_model):
    from batchclf.scan.discovery import discover

    root = tmp_path / "in"
    for index in range(400):
        (root / f"f{index // 100}").mkdir(parents=True, exist_ok=True)
        (root / f"f{index // 100}" / f"d{index:03d}.png").write_bytes(png_bytes(ink_digit(200 + index % 50)))
    expected = sorted(candidate.relative for candidate in discover([root]))

    engine = ray_engine(tiny_model, batch_size=8)
    killed: list[int] = []
    restarted: set[int] = set()
    try:
        rows = []
        for row in engine.rows(discover([root])):
            rows.append(row)
            if killed and not restarted:
                restarted = labeller_pids() - set(killed)
            if not killed:  # the first rows are in: the job is under way, most files still ahead
                deadline = time.monotonic() + 10
                while not (pids := labeller_pids()) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert pids, "no Labeller actor process found"
                assert not fused_actors(), "decoding must run in tasks, not fused into the labelling actor"
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                killed.extend(pids)
    finally:
        engine.close()
    assert killed
    assert len(rows) == len(expected), "every file exactly one row"
    assert sorted(row["file"] for row in rows) == expected
    assert [row["file"] for row in rows] == [c.relative for c in discover([root])], "input order kept"
    assert all(row["status"] in ("ok", "review") for row in rows)
    assert restarted, "Ray restarted the killed actor and it labelled the rest"


def test_classify_with_the_ray_engine_writes_the_usual_job_folder(tmp_path, tiny_model):
    """The command's path: discovery and the job folder in batchclf, rows from Ray, ``engine: ray`` in the metadata."""
    _ray_or_skip()
    from batchclf.classify import ClassifyOptions, run
    from batchclf.jobs.folder import read_job

    root = tmp_path / "in"
    root.mkdir()
    for i in range(12):
        (root / f"d{i}.png").write_bytes(png_bytes(ink_digit(60 + i)))
    (root / "broken.png").write_bytes(b"not an image")
    jobs = {}
    for engine in ("local", "ray"):
        options = ClassifyOptions(model=tiny_model, out_dir=tmp_path / engine, workers=1, engine=engine, actors=1)
        jobs[engine] = read_job(run([root], options, progress=False))
    assert jobs["ray"].meta["engine"] == "ray" and jobs["local"].meta["engine"] == "local"
    assert jobs["ray"].meta["counts"] == jobs["local"].meta["counts"]
    by_file = {engine: {r["file"]: r for r in job.rows()} for engine, job in jobs.items()}
    assert by_file["ray"].keys() == by_file["local"].keys()
    for name, row in by_file["local"].items():
        other = by_file["ray"][name]
        assert (row["status"], row["label"], row["error"]) == (other["status"], other["label"], other["error"])


def test_evaluate_scans_on_the_ray_engine_scores_like_local(tmp_path, tiny_model):
    _ray_or_skip()
    from batchclf.evaluate import evaluate_folder
    from batchclf.model.predictor import Predictor

    for digit in ("0", "7"):
        folder = tmp_path / "scans" / "writer" / digit
        folder.mkdir(parents=True)
        for i in range(4):
            (folder / f"{i}.png").write_bytes(png_bytes(ink_digit(50 + i)))
    predictor = Predictor(tiny_model, device="cpu")
    local = evaluate_folder(predictor, tmp_path / "scans", workers=0)
    ray = evaluate_folder(predictor, tmp_path / "scans", workers=1, engine="ray")
    assert ray["n"] == local["n"] == 8
    assert ray["accuracy"] == local["accuracy"] and ray["confusion"] == local["confusion"]


def test_actors_get_the_shipped_models_litert_sidecars(tmp_path):
    """What the driver ships an actor (model, card, the sidecars the card names) lets the actor run LiteRT as the driver records."""
    from batchclf.engines.ray import model_files, write_model_files
    from batchclf.model.spec import ModelSpec

    root = Path(__file__).resolve().parents[1] / "models"
    classifier = model_files(root / "default.keras")
    detector = model_files(root / "detectors" / "not-a-digit.keras", detector=True)
    assert {name for name, _ in classifier} == {"default.keras", "default.json", "default.dynamic.tflite", "default.fp32.tflite"}
    assert {name for name, _ in detector} >= {"not-a-digit.keras", "not-a-digit.json", "not-a-digit.int8.tflite"}
    actor_folder = tmp_path / "actor"
    actor_folder.mkdir()
    spec = ModelSpec(write_model_files(actor_folder, classifier), device="cpu",
                     detector=write_model_files(actor_folder / "detector", detector))
    described = spec.describe()
    assert described["runtime"].startswith("litert-")
    assert described["runtime"] == ModelSpec(root / "default.keras", device="cpu",
                                             detector=root / "detectors" / "not-a-digit.keras").describe()["runtime"]


def test_the_ray_job_records_the_runtime_its_cpu_actors_run(monkeypatch):
    """On a machine with a GPU driver but CPU actors, the job's metadata names LiteRT, what the actors run (no Ray started)."""
    from batchclf.engines.ray import RayEngine
    from batchclf.model import device as devices
    from batchclf.model.spec import ModelSpec

    monkeypatch.setattr(devices, "gpu_possible", lambda: True)
    root = Path(__file__).resolve().parents[1] / "models"
    engine = RayEngine(EngineSettings(ModelSpec(root / "default.keras", detector=root / "detectors" / "not-a-digit.keras")))
    assert engine.kind == "cpu"
    assert engine.model["runtime"].startswith("litert-")
