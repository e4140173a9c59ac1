"""Daemon benchmarks: file-to-row latency at a trickle, and the time to clear a burst.

The daemon runs in this process (real watchdog observer, real files); a
writer drops files with an atomic rename and a tailer polls the day's
``results.jsonl`` every few milliseconds, so latency is measured from the
rename to the moment the row is readable on disk.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .reports import read_jsonl


def _digit_files(n: int, data: Path | None) -> list[bytes]:
    import io

    from .bench import _digits

    images, _ = _digits(n, data)
    out = []
    for digit in images:
        buffer = io.BytesIO()
        Image.fromarray(digit).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


class _Tailer(threading.Thread):
    """Records when each file's row first becomes readable in the day's results.jsonl."""

    def __init__(self, jobs: Path):
        super().__init__(name="bench-tailer", daemon=True)
        self.jobs = jobs
        self.first_seen: dict[str, float] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for path in self.jobs.glob("watch-*/results.jsonl"):
                now = time.monotonic()
                for row in read_jsonl(path):
                    self.first_seen.setdefault(row["file"], now)
            self.halt.wait(0.005)


def _drop(inbox: Path, name: str, data: bytes) -> float:
    tmp = inbox / f".{name}.part"
    tmp.write_bytes(data)
    tmp.rename(inbox / name)
    return time.monotonic()


def run(model: Path, trickle_n: int, rate: float, burst_n: int, settle: float, max_latency: float,
        data: Path | None, workers: int | None) -> dict:
    from .watch.daemon import Daemon, WatchOptions

    payloads = _digit_files(max(trickle_n, burst_n), data)
    results = {}
    for case in ("trickle", "burst"):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            inbox, jobs = home / "inbox", home / "jobs"
            inbox.mkdir()
            daemon = Daemon(WatchOptions(inbox=inbox, out_dir=jobs, model=model, settle=settle,
                                         max_latency=max_latency, workers=workers))
            runner = threading.Thread(target=daemon.run, name="bench-daemon")
            runner.start()
            while not (daemon.predictor is not None and (inbox / ".batchclf-watch.lock").exists() and hasattr(daemon, "review_below")):
                time.sleep(0.05)
            time.sleep(1.0)  # let the observer settle in before the clock starts
            tailer = _Tailer(jobs)
            tailer.start()
            dropped: dict[str, float] = {}
            try:
                if case == "trickle":
                    start = time.monotonic()
                    for i in range(trickle_n):
                        target = start + i / rate
                        time.sleep(max(0.0, target - time.monotonic()))
                        dropped[f"t{i:05d}.png"] = _drop(inbox, f"t{i:05d}.png", payloads[i])
                else:
                    for i in range(burst_n):
                        dropped[f"b{i:05d}.png"] = _drop(inbox, f"b{i:05d}.png", payloads[i])
                deadline = time.monotonic() + 600
                while len(tailer.first_seen) < len(dropped) and time.monotonic() < deadline:
                    time.sleep(0.02)
            finally:
                daemon.stop()
                runner.join()
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
                first_drop = min(dropped.values())
                last_row = max(seen.values()) if seen else float("nan")
                seconds = last_row - first_drop
                results["burst"] = {
                    "files": len(dropped), "reported": len(seen), "seconds": round(seconds, 2),
                    "files_per_s": round(len(seen) / seconds, 1) if seconds > 0 else None,
                }
    return results
