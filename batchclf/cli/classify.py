"""``classify``: one batch job over files and folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from batchclf.cli.common import BatchSize, Device, Home, Model, ReviewBelow, Workers, command_line, friendly_errors, model_path


@friendly_errors
def classify(
    paths: Annotated[List[Path], typer.Argument(help="Image files and folders (searched recursively).")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for job folders (default: jobs/).")] = None,
    model: Model = None,
    batch_size: BatchSize = None,
    workers: Workers = None,
    review_below: ReviewBelow = None,
    device: Device = "auto",
    home: Home = None,
):
    """Classify scanned digits into a job folder of CSV/JSON reports; prints the folder last."""
    from batchclf import paths as locations
    from batchclf.classify import ClassifyOptions, run
    from batchclf.cli.render import print_job_counts

    options = ClassifyOptions(
        model=model_path(model, home),
        out_dir=out or locations.jobs_dir(home),
        batch_size=batch_size,
        workers=workers,
        review_below=review_below,
        device=device,
        command=command_line(),
    )
    folder = run(paths, options)
    print_job_counts(folder)
    typer.echo(str(folder))
