"""Daemon benchmarks: file-to-row latency at a trickle, and the time to clear a burst.

The daemon runs as its own process, exactly as deployed (real watchdog
observer, real files, READY=1 over a real notify socket before the clock
starts); this process drops files with an atomic rename and tails the day's
``results.jsonl`` every few milliseconds, so latency runs from the rename to
the moment the row is readable on disk.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from batchclf.bench.common import sample_digits
from batchclf.jobs import folder as job_folder



def _digit_files(n: int, data: Path | None) -> list[bytes]:
    import io

    images, _ = sample_digits(n, data)
    out = []
    for digit in images:
        buffer = io.BytesIO()
        Image.fromarray(digit).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


class _Tailer(threading.Thread):
    """Records when each file's row first becomes readable in the day's results.jsonl.

    Reads only what was appended since the last look, so it costs next to nothing.
    """

    def __init__(self, jobs: Path):
        super().__init__(name="bench-tailer", daemon=True)
        self.jobs = jobs
        self.first_seen: dict[str, float] = {}
        self.halt = threading.Event()
        self._offsets: dict[Path, int] = {}

    def run(self) -> None:
        while not self.halt.is_set():
            for path in self.jobs.glob(f"{job_folder.DAY_PREFIX}*/{job_folder.RESULTS_JSONL}"):
                self._read_new(path)
            self.halt.wait(0.005)

    def _read_new(self, path: Path) -> None:
        offset = self._offsets.get(path, 0)
        with open(path, "rb") as handle:
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
               "--max-batch", str(max_batch)]
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


def run(model: Path, trickle_n: int, rate: float, burst_n: int, settle: float, max_latency: float, max_batch: int,
        data: Path | None, workers: int | None) -> dict:
    import signal

    payloads = _digit_files(max(trickle_n, burst_n), data)
    results = {}
    for case in ("trickle", "burst"):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            inbox, jobs = home / "inbox", home / "jobs"
            inbox.mkdir()
            daemon = _start_daemon(home, model, settle, max_latency, max_batch, workers)
            tailer = _Tailer(jobs)
            tailer.start()
            dropped: dict[str, float] = {}
            try:
                if case == "trickle":
                    start = time.monotonic()
                    for i in range(trickle_n):
                        time.sleep(max(0.0, start + i / rate - time.monotonic()))
                        dropped[f"t{i:05d}.png"] = _drop(inbox, f"t{i:05d}.png", payloads[i])
                else:
                    # Written beforehand on the same filesystem, then renamed in as fast as possible:
                    # the clock measures the daemon, not how fast this process can write files.
                    staging = home / "staging"
                    staging.mkdir()
                    for i in range(burst_n):
                        (staging / f"b{i:05d}.png").write_bytes(payloads[i])
                    for i in range(burst_n):
                        (staging / f"b{i:05d}.png").rename(inbox / f"b{i:05d}.png")
                        dropped[f"b{i:05d}.png"] = time.monotonic()
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
                results["trickle"] = {
                    "files": len(dropped), "rate_per_s": rate, "reported": len(latencies),
                    "p50_s": round(float(np.percentile(latencies, 50)), 3),
                    "p95_s": round(float(np.percentile(latencies, 95)), 3),
                    "p99_s": round(float(np.percentile(latencies, 99)), 3),
                    "target_p95_s": settle + max_latency + 0.5,
                }
            else:
                seconds = (max(seen.values()) if seen else float("nan")) - min(dropped.values())
                # The settle wait is the same for every file of a burst, so the rate after it is the
                # daemon's processing speed, comparable with classify's.
                processing = seconds - settle
                results["burst"] = {
                    "files": len(dropped), "reported": len(seen), "seconds": round(seconds, 2),
                    "files_per_s": round(len(seen) / seconds, 1) if seconds > 0 else None,
                    "files_per_s_after_settle": round(len(seen) / processing, 1) if processing > 0 else None,
                }
    return results
