"""``bench``, ``bench-watch`` and ``bench-report``: throughput, latency and report speed on this machine."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from batchclf.cli.common import AsJson, BatchSize, Detector, Home, Model, Workers, command_line, friendly_errors, model_path

BenchData = Annotated[
    Optional[Path], typer.Option("--data", help="MNIST (npz or IDX folder) to draw test digits from (default: synthetic digits).")
]


@friendly_errors
def bench(
    n: Annotated[int, typer.Option("--n", min=10, help="Images per end-to-end case (large scans use n/5).")] = 5000,
    size: Annotated[int, typer.Option("--size", min=32, help="Side of the large scans in pixels.")] = 300,
    model: Model = None,
    data: BenchData = None,
    workers: Workers = None,
    batch_size: BatchSize = None,
    detector: Detector = "auto",
    as_json: AsJson = False,
    home: Home = None,
):
    """Measure images/s: naive per-image predict, batched arrays, end-to-end classify (also on a mixed JPEG/PNG/TIFF/BMP set, against a plain-decode floor); and each file's cost per stage."""
    from batchclf.bench.common import machine
    from batchclf.bench.throughput import run_all, table

    run = run_all(model_path(model, home), n, size, data, workers, batch_size, detector=detector, home=home)
    rows, stages = table(run), run.stage_rows()
    if as_json:
        import json

        typer.echo(json.dumps({"machine": machine(), "command": command_line(), "networks": run.networks, "results": rows,
                               "stages": stages}))
        return
    from batchclf.cli.render import print_bench

    print_bench(rows, f"{machine()}; networks: {run.networks}", stages)


class BenchFiles(str, Enum):
    digits = "digits"
    scans = "scans"


@friendly_errors
def bench_watch(
    trickle: Annotated[int, typer.Option("--trickle", min=0, help="Files dropped one by one at --rate (0: no trickle).")] = 400,
    rate: Annotated[float, typer.Option("--rate", min=0.1, help="Files per second in the trickle.")] = 20.0,
    burst: Annotated[int, typer.Option("--burst", min=10, help="Files dropped at once.")] = 5000,
    files: Annotated[
        BenchFiles,
        typer.Option("--files", help="digits (28x28 MNIST PNGs) or scans (the ~--size px JPEG/PNG scans of `batchclf bench`)."),
    ] = BenchFiles.digits,
    size: Annotated[int, typer.Option("--size", min=32, help="Side of the scans in pixels (with --files scans).")] = 300,
    rounds: Annotated[
        int, typer.Option("--rounds", min=1, help="Bursts, each after classify on the same files: classify, daemon, classify, daemon...")
    ] = 1,
    settle: Annotated[float, typer.Option("--settle", min=0.0, help="The daemon's --settle.")] = 1.0,
    max_latency: Annotated[float, typer.Option("--max-latency", min=0.0, help="The daemon's --max-latency.")] = 0.5,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="The daemon's --max-batch.")] = 32,
    model: Model = None,
    data: BenchData = None,
    workers: Workers = None,
    home: Home = None,
):
    """Measure the daemon: file-to-row latency (p50/p95/p99) at a trickle, and burst files/s against classify on the same files."""
    import json
    import logging

    from batchclf.bench.common import machine
    from batchclf.bench.daemon import run

    logging.basicConfig(level=logging.WARNING)
    result = run(model_path(model, home), trickle, rate, burst, settle, max_latency, max_batch, data, workers,
                 files=files.value, size=size, rounds=rounds)
    typer.echo(json.dumps({"machine": machine(), "command": command_line(), **result}, indent=2))


@friendly_errors
def bench_report(
    rows: Annotated[int, typer.Option("--rows", min=1, help="Rows in the generated job.")] = 1_000_000,
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timed report runs (fresh process each).")] = 3,
):
    """Measure report on a generated job of N rows: seconds and peak memory."""
    import json

    from batchclf.bench.common import machine
    from batchclf.bench.report import run

    typer.echo(json.dumps({"machine": machine(), "command": command_line(), **run(rows, repeats)}, indent=2))
