"""Daemon benchmarks: file-to-row latency at a trickle, and the time to clear a burst against ``classify``.

The daemon runs as its own process, exactly as deployed (real watchdog
observer, real files, READY=1 over a real notify socket before the clock
starts); this process drops files with an atomic rename and tails the day's
``results.jsonl`` every few milliseconds, so latency runs from the rename to
the moment the row is readable on disk.

The files are 28x28 MNIST PNGs (``digits``) or the ~300 px realistic scans
``batchclf bench`` uses for its case 4 (``scans``).  Each burst round first
runs ``classify`` (the library call ``batchclf bench`` times) on the very
files about to be renamed into the inbox, then the daemon on them, so the
ratio of the two rates is taken on the same files at the same moment;
several rounds interleave the two, so drift of a shared machine hits both.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from batchclf.bench.common import sample_digits, write_bench_scans
from batchclf.jobs import folder as job_folder

FILE_KINDS = ("digits", "scans")
TARGET_VS_CLASSIFY = 0.8  # the daemon's burst rate after the settle, against classify on the same files


def _write_files(kind: str, n: int, data: Path | None, size: int, folder: Path) -> list[Path]:
    """``n`` bench files in ``folder``: 28x28 MNIST PNGs, or the bench's ~``size`` px scans."""
    images, labels = sample_digits(n, data)
    if kind == "scans":
        return write_bench_scans(images, labels, folder, size)
    if kind != "digits":
        raise ValueError(f"unknown kind of bench files: {kind!r} (one of {', '.join(FILE_KINDS)})")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, digit in enumerate(images):
        path = folder / f"{i:06d}.png"
        Image.fromarray(digit).save(path, "PNG")
        paths.append(path)
    return paths


class _Tailer(threading.Thread):
    """Records when each file's row first becomes readable in the day's results.jsonl.

    Reads only what was appended since the last look, through a handle kept open, and looks for
    report files a few times a second once it has one (a new one only comes with a new day), so it
    takes as little CPU as it can from the daemon it measures.
    """

    GLOB_EVERY = 0.25  # seconds between looks for report files, once one is known

    def __init__(self, jobs: Path):
        super().__init__(name="bench-tailer", daemon=True)
        self.jobs = jobs
        self.first_seen: dict[str, float] = {}
        self.halt = threading.Event()
        self._offsets: dict[Path, int] = {}
        self._handles: dict = {}

    def run(self) -> None:
        paths: list[Path] = []
        next_glob = 0.0
        try:
            while not self.halt.is_set():
                if not paths or time.monotonic() >= next_glob:
                    paths = sorted(self.jobs.glob(f"{job_folder.DAY_PREFIX}*/{job_folder.RESULTS_JSONL}"))
                    next_glob = time.monotonic() + self.GLOB_EVERY
                for path in paths:
                    self._read_new(path)
                self.halt.wait(0.005)
        finally:
            for handle in self._handles.values():
                handle.close()

    def _read_new(self, path: Path) -> None:
        offset = self._offsets.get(path, 0)
        handle = self._handles.get(path)
        if handle is None:
            handle = self._handles[path] = open(path, "rb")
        handle.seek(offset)
        chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        if not complete:
            return
        now = time.monotonic()
        self._offsets[path] = offset + len(complete)
        for line in complete.splitlines():
            if line.strip():
                self.first_seen.setdefault(json.loads(line)["file"], now)


def _drop(inbox: Path, name: str, data: bytes) -> float:
    tmp = inbox / f".{name}.part"
    tmp.write_bytes(data)
    tmp.rename(inbox / name)
    return time.monotonic()


def _start_daemon(home: Path, model: Path, settle: float, max_latency: float, max_batch: int, workers: int | None):
    """``batchclf watch`` as its own process, as in production; returns once it sent READY=1."""
    import os
    import socket
    import subprocess
    import sys

    address = str(home / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(120)
    command = [sys.executable, "-m", "batchclf", "watch", str(home / "inbox"), "--out", str(home / "jobs"),
               "--model", str(model), "--settle", str(settle), "--max-latency", str(max_latency),
               "--max-batch", str(max_batch), "--detector", "off"]  # the classifier alone, as classify is timed here
    if workers is not None:
        command += ["--workers", str(workers)]
    process = subprocess.Popen(command, env={**os.environ, "NOTIFY_SOCKET": address},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while b"READY=1" not in listener.recv(4096).split(b"\n"):
            pass
    finally:
        listener.close()
    return process


def _rate(files: int, seconds: float) -> float | None:
    return round(files / seconds, 1) if seconds > 0 else None


def _classify(folder: Path, model: Path, workers: int | None) -> dict:
    """``classify`` on ``folder``, timed as ``batchclf bench`` times it (the job's own seconds)."""
    from batchclf.bench.throughput import end_to_end
    from batchclf.classify import ClassifyOptions

    # No detector (ClassifyOptions' default): the daemon here runs with --detector off too.
    result = end_to_end("classify", folder, ClassifyOptions(model=model, out_dir=Path("."), workers=workers))
    return {"files": result.images, "seconds": round(result.seconds, 3), "files_per_s": _rate(result.images, result.seconds)}


def _daemon_case(case: str, sources: list[Path], model: Path, settle: float, max_latency: float, max_batch: int,
                 workers: int | None, rate: float, classify_first: bool) -> dict:
    """One daemon process, fed ``sources`` (copied, never moved) as a trickle at ``rate`` or a burst."""
    import signal

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        inbox, jobs = home / "inbox", home / "jobs"
        inbox.mkdir()
        staging = None
        classified = None
        if case == "burst":
            # Written beforehand on the same filesystem, then renamed in as fast as possible:
            # the clock measures the daemon, not how fast this process can write files.
            staging = home / "staging"
            staging.mkdir()
            for source in sources:
                shutil.copyfile(source, staging / source.name)
            if classify_first:  # the very files about to be renamed in, before the daemon exists
                classified = _classify(staging, model, workers)
        daemon = _start_daemon(home, model, settle, max_latency, max_batch, workers)
        tailer = _Tailer(jobs)
        tailer.start()
        dropped: dict[str, float] = {}
        try:
            if case == "trickle":
                start = time.monotonic()
                for i, source in enumerate(sources):
                    time.sleep(max(0.0, start + i / rate - time.monotonic()))
                    name = f"t-{source.name}"
                    dropped[name] = _drop(inbox, name, source.read_bytes())
            else:
                for source in sources:
                    (staging / source.name).rename(inbox / source.name)
                    dropped[source.name] = time.monotonic()
            deadline = time.monotonic() + 600
            while len(tailer.first_seen) < len(dropped) and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
            tailer.halt.set()
            tailer.join()
    seen = tailer.first_seen
    if case == "trickle":
        latencies = np.array([seen[name] - t for name, t in dropped.items() if name in seen])
        return {
            "files": len(dropped), "rate_per_s": rate, "reported": len(latencies),
            "p50_s": round(float(np.percentile(latencies, 50)), 3),
            "p95_s": round(float(np.percentile(latencies, 95)), 3),
            "p99_s": round(float(np.percentile(latencies, 99)), 3),
            "target_p95_s": settle + max_latency + 0.5,
        }
    seconds = (max(seen.values()) if seen else float("nan")) - min(dropped.values())
    # The settle wait is the same for every file of a burst, so the rate after it is the
    # daemon's processing speed, comparable with classify's.
    processing = seconds - settle
    daemon = {
        "files": len(dropped), "reported": len(seen), "seconds": round(seconds, 2),
        "files_per_s": _rate(len(seen), seconds), "files_per_s_after_settle": _rate(len(seen), processing),
    }
    if classified is None:
        return {"daemon": daemon}
    out = {"classify": classified, "daemon": daemon}
    after, reference = daemon["files_per_s_after_settle"], classified["files_per_s"]
    out["daemon_vs_classify"] = round(after / reference, 3) if after and reference else None
    return out


def run(model: Path, trickle_n: int, rate: float, burst_n: int, settle: float, max_latency: float, max_batch: int,
        data: Path | None, workers: int | None, files: str = "digits", size: int = 300, rounds: int = 1,
        compare: bool = True) -> dict:
    """The trickle (skipped when ``trickle_n`` is 0), then ``rounds`` bursts, each after ``classify`` on its files."""
    names = {"digits": "28x28 MNIST PNGs", "scans": f"~{size} px scans (JPEG/PNG, as batchclf bench case 4)"}
    with tempfile.TemporaryDirectory() as tmp:
        sources = _write_files(files, max(trickle_n, burst_n), data, size, Path(tmp) / "files")
        results: dict = {"files": names[files]}
        if trickle_n > 0:
            results["trickle"] = _daemon_case("trickle", sources[:trickle_n], model, settle, max_latency, max_batch,
                                              workers, rate, False)
        rounds_out = [
            _daemon_case("burst", sources[:burst_n], model, settle, max_latency, max_batch, workers, rate, compare)
            for _ in range(rounds)
        ]
    last = rounds_out[-1]["daemon"]
    burst = {**last, "settle_s": settle, "rounds": rounds_out}  # the last round's keys at the top, as before rounds
    if compare:
        ratios = [r["daemon_vs_classify"] for r in rounds_out]
        burst["daemon_files_per_s_after_settle"] = [r["daemon"]["files_per_s_after_settle"] for r in rounds_out]
        burst["classify_files_per_s"] = [r["classify"]["files_per_s"] for r in rounds_out]
        burst["daemon_vs_classify"] = ratios
        burst["target_daemon_vs_classify"] = TARGET_VS_CLASSIFY
        burst["target_met"] = all(r is not None and r >= TARGET_VS_CLASSIFY for r in ratios)
    results["burst"] = burst
    return results
