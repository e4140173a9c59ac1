"""``classify``: one batch job over files and folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from batchclf import limits
from batchclf.cli.common import (
    BatchSize, Detector, Device, Home, InputScale, MaxFileMb, MaxPages, Model, ReviewBelow, TargetError, Workers, command_line, detector_path,
    float_option, friendly_errors, model_path,
)


@friendly_errors
def classify(
    paths: Annotated[List[Path], typer.Argument(help="Image files and folders (searched recursively).")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for job folders (default: jobs/).")] = None,
    model: Model = None,
    batch_size: BatchSize = None,
    workers: Workers = None,
    review_below: ReviewBelow = None,
    target_error: TargetError = None,
    device: Device = "auto",
    input_scale: InputScale = None,
    detector: Detector = "auto",
    max_pages: MaxPages = None,
    max_file_mb: MaxFileMb = None,
    strict: Annotated[bool, typer.Option("--strict", metavar="", help="Exit 3 when any row failed (the job is still written).")] = False,
    dedupe: Annotated[
        bool, typer.Option("--dedupe", metavar="",
                           help="A file with the same bytes as an earlier one of the job: 'duplicate' rows pointing at its first row (as the daemon).")
    ] = False,
    # "\\[": rich reads an unescaped [...] in help as markup and drops it.
    engine: Annotated[str, typer.Option("--engine", help="local (worker processes here) or ray (Ray Data; pip install 'batchclf\\[ray]').")] = "local",
    ray_address: Annotated[
        Optional[str], typer.Option("--ray-address", help="Join a Ray cluster: auto or ray://HOST:PORT (default: a private Ray on 127.0.0.1).")
    ] = None,
    actors: Annotated[
        Optional[int],
        typer.Option("--actors", min=1, max=limits.MAX_ACTORS,
                     help="Ray labelling actors, each loading the model once."),
    ] = None,
    gpus_per_actor: Annotated[
        float,
        float_option("--gpus-per-actor", 0.0, limits.MAX_GPUS_PER_ACTOR,
                     "GPUs per Ray labelling actor (0: CPU)."),
    ] = 0.0,
    metrics_file: Annotated[
        Optional[Path],
        typer.Option("--metrics-file", help="When the job is complete, write its Prometheus metrics here (node_exporter's "
                                            "textfile collector; a *.prom file), with batchclf_last_success_timestamp_seconds."),
    ] = None,
    home: Home = None,
):
    """Classify scanned digits into a job folder of CSV/JSON reports; prints the folder last."""
    from batchclf import paths as locations
    from batchclf.classify import ClassifyOptions, run
    from batchclf.cli.render import print_job_counts
    from batchclf.errors import FailedRowsError
    from batchclf.jobs.folder import read_job

    options = ClassifyOptions(
        model=model_path(model, home),
        out_dir=out or locations.jobs_dir(home),
        batch_size=batch_size,
        workers=workers,
        review_below=review_below,
        target_error=target_error,
        device=device,
        command=command_line(),
        max_pages=max_pages,
        max_file_mb=max_file_mb,
        dedupe=dedupe,
        engine=engine,
        input_scale=input_scale,
        detector=detector_path(detector, home),
        ray_address=ray_address,
        actors=actors,
        gpus_per_actor=gpus_per_actor,
        metrics_file=metrics_file.absolute() if metrics_file else None,
    )
    folder = run(paths, options)
    print_job_counts(folder)
    typer.echo(str(folder))
    failures = read_job(folder).meta["counts"].get("failed", 0)
    if strict and failures:
        raise FailedRowsError(f"{failures} failed row{'s' if failures > 1 else ''} in job {folder.name} (--strict)")
