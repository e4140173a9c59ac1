"""``batchclf bench-report``: how long ``report`` takes on a big job, and how much memory it holds.

Writes a classify job folder of N realistic rows (the daemon's and classify's
own :class:`~batchclf.jobs.writers.RowWriter`, 5% review, 1% failed, 1% blank)
in a temporary folder, then times the report's summary pass over it in a
fresh process, so the peak RSS is the report's alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from batchclf.jobs import folder as job_folder
from batchclf.jobs import writers
from batchclf.jobs.rows import BLANK, FAILED, OK, REVIEW, make_row

_MEASURE = """
import json, resource, sys, time
from pathlib import Path
started = time.perf_counter()
from batchclf.report.collect import collect
report = collect([sys.argv[1]], Path(sys.argv[1]).parent)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "rows": report.totals["rows"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "tensorflow_imported": "tensorflow" in sys.modules}))
"""


def write_big_job(out_dir: Path, rows: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = job_folder.create_job_folder(out_dir)
    writer = writers.RowWriter(folder / job_folder.RESULTS_CSV, job_folder.partial(folder, job_folder.RESULTS_JSONL))
    kinds = rng.choice([OK, REVIEW, FAILED, BLANK], size=rows, p=[0.93, 0.05, 0.01, 0.01])
    labels = rng.integers(0, 10, rows)
    confidences = np.where(kinds == OK, rng.uniform(0.9, 1.0, rows), rng.uniform(0.3, 0.9, rows))
    batch = []
    for i in range(rows):
        status = str(kinds[i])
        file = f"writer{i % 97:02d}/scan-{i:07d}.png"
        if status in (OK, REVIEW):
            row = make_row(file=file, page=1, status=status, label=int(labels[i]), confidence=round(float(confidences[i]), 6),
                           second_label=int((labels[i] + 1) % 10), second_confidence=round(1 - float(confidences[i]), 6),
                           sha256="%064x" % i, width=300, height=300, model="default.keras", processed_at="2026-12-02T02:00:00.000Z")
        elif status == BLANK:
            row = make_row(file=file, page=1, status=status, sha256="%064x" % i, width=300, height=300,
                           model="default.keras", processed_at="2026-12-02T02:00:00.000Z")
        else:
            row = make_row(file=file, status=status, error="not a recognised image format", processed_at="2026-12-02T02:00:00.000Z")
        batch.append(row)
        if len(batch) == 10_000:
            writer.write(batch)
            batch.clear()
    writer.write(batch)
    writer.close()
    os.unlink(job_folder.partial(folder, job_folder.RESULTS_JSONL))
    meta = {"job_id": folder.name, "kind": "classify", "started": "2026-12-02T02:00:00.000Z", "seconds": 600.0,
            "model": {"file": "default.keras", "sha256": "0" * 64}, "inputs": []}
    writers.write_summary(folder / job_folder.SUMMARY_JSON, meta)
    return folder


def run(rows: int, repeats: int = 3) -> dict:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        folder = write_big_job(Path(out), rows)
        written = time.perf_counter() - started
        size_mb = (folder / job_folder.RESULTS_CSV).stat().st_size / 1e6
        runs = []
        for _ in range(repeats):
            done = subprocess.run([sys.executable, "-c", _MEASURE, str(folder)], capture_output=True, text=True, check=True)
            runs.append(json.loads(done.stdout))
    best = min(runs, key=lambda r: r["seconds"])
    return {
        "rows": rows, "csv_mb": round(size_mb, 1), "write_seconds": round(written, 2),
        "report_seconds": [round(r["seconds"], 2) for r in runs], "best_seconds": round(best["seconds"], 2),
        "rows_per_second": round(rows / best["seconds"]), "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        "tensorflow_imported": any(r["tensorflow_imported"] for r in runs),
    }
