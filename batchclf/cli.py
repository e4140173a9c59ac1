"""The command line: each command translates flags into one library call.

Library failures arrive as :class:`batchclf.errors.BatchclfError` and leave
as one ``Error: ...`` line on stderr with a non-zero exit code.  Nothing here
imports TensorFlow at module level, so ``--help`` and ``report`` stay fast.
"""

from __future__ import annotations

import functools
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import BatchclfError

app = typer.Typer(
    help="Classify folders of scanned handwritten digits into CSV/JSON reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

HomeOption = typer.Option(None, "--home", help="Folder holding inbox/, jobs/, models/ (default: $BATCHCLF_HOME, else the current folder).")


@app.callback()
def root() -> None:
    """Classify folders of scanned handwritten digits into CSV/JSON reports."""


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def friendly_errors(function):
    """Turn library errors into ``Error: ...`` and an exit code, never a traceback."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except BatchclfError as exc:
            _fail(str(exc), exc.exit_code)

    return wrapper


def _command_line() -> str:
    return "batchclf " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])


def _model_path(model: Optional[Path], home: Optional[Path]) -> Path:
    from . import paths

    return model if model is not None else paths.default_model(home)


@app.command()
@friendly_errors
def train(
    data: Optional[Path] = typer.Option(None, "--data", help="mnist.npz or a folder of IDX files (default: Keras download)."),
    arch: str = typer.Option("default", "--arch", help="Architecture: default or seed (the classic demo)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Epochs (default: the architecture's recipe)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Batch size (default: the recipe's)."),
    seed: int = typer.Option(1, "--seed", help="Random seed."),
    deterministic: bool = typer.Option(False, "--deterministic", help="Force deterministic TensorFlow kernels (about 2x slower on CPU)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output .keras file (default: models/ARCH.keras)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Skip training: load this model and show its card."),
    home: Optional[Path] = HomeOption,
):
    """Train a CNN on MNIST and save it with its model card (or --model to load one)."""
    from . import architectures, paths
    from . import card as cards
    from . import data as datasets

    if model is not None:
        from .modelio import load_keras_model

        load_keras_model(model)
        _print_card(model, cards.read(model))
        return
    architectures.recipe(arch)
    target = out or paths.models_dir(home) / f"{arch}.keras"
    if target.suffix != ".keras":
        raise typer.BadParameter("--out must end in .keras")
    dataset = datasets.load(data)
    from .training import train as run_training

    card = run_training(
        dataset, target, arch=arch, epochs=epochs, batch_size=batch_size, seed=seed,
        deterministic=deterministic, command=_command_line(),
    )
    _print_card(target, card)


def _print_card(model_path: Path, card: dict) -> None:
    from rich.console import Console

    console = Console()
    test = card.get("mnist_test", {})
    console.print(f"[bold]{model_path}[/bold]")
    if not card:
        console.print("no model card")
        return
    console.print(
        f"architecture {card.get('architecture')}  parameters {card.get('parameters'):,}  "
        f"FLOPs/image {card.get('flops_per_image', 0) / 1e6:.1f} M"
    )
    if test:
        console.print(f"MNIST test accuracy {test['accuracy'] * 100:.2f}% on {test['n']} images")
    calibration = card.get("calibration", {})
    if calibration:
        console.print(
            f"temperature {calibration['temperature']:.3f}  test ECE {calibration['test_ece_before']:.4f} -> {calibration['test_ece_after']:.4f}"
        )


ModelOption = typer.Option(None, "--model", help="A .keras model (default: models/default.keras).")
DeviceOption = typer.Option("auto", "--device", help="auto (GPU when TensorFlow sees one), cpu or gpu.")


@app.command()
@friendly_errors
def evaluate(
    model: Optional[Path] = ModelOption,
    data: Optional[Path] = typer.Option(None, "--data", help="mnist.npz or a folder of IDX files (default: Keras download)."),
    scans: Optional[Path] = typer.Option(None, "--scans", help="Instead of MNIST: a folder of real scans labelled by folder name (.../DIGIT/file)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    device: str = DeviceOption,
    home: Optional[Path] = HomeOption,
):
    """Score a model on the MNIST test set (or labelled scans): accuracy, per-class, confusion, ECE."""
    from . import data as datasets
    from .evaluate import evaluate as run_evaluate
    from .evaluate import evaluate_folder
    from .modelio import Predictor
    from .pipeline import default_workers

    predictor = Predictor(_model_path(model, home), device=device)
    if scans is not None:
        if not scans.is_dir():
            raise typer.BadParameter(f"{scans} is not a folder", param_hint="--scans")
        result = evaluate_folder(predictor, scans, workers=default_workers())
    else:
        result = run_evaluate(predictor, datasets.load(data))
    if as_json:
        import json

        typer.echo(json.dumps(result))
        return
    from .render import print_evaluation

    print_evaluation(result)


@app.command()
@friendly_errors
def predict(
    images: Optional[List[Path]] = typer.Argument(None, help="Image files to label."),
    demo: bool = typer.Option(False, "--demo", help="Label the classic demo's hand-drawn dummy digit."),
    model: Optional[Path] = ModelOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    device: str = DeviceOption,
    home: Optional[Path] = HomeOption,
):
    """Label single images (label, calibrated confidence, top 3)."""
    if not images and not demo:
        raise typer.BadParameter("give IMAGE paths or --demo")
    from . import evaluate as predicting
    from .modelio import Predictor
    from .render import print_digit, print_predictions

    predictor = Predictor(_model_path(model, home), device=device)
    results = []
    if demo:
        digit = predicting.demo_digit()
        if not as_json:
            print_digit(digit)
        results.append({"file": "<demo>", "page": 1, "status": "ok", "error": None, **predicting.predict_array(predictor, digit)})
    results.extend(predicting.predict_images(predictor, images or []))
    if as_json:
        import json

        typer.echo(json.dumps(results))
    else:
        print_predictions(results)


@app.command()
@friendly_errors
def classify(
    paths: List[Path] = typer.Argument(..., help="Image files and folders (searched recursively)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for job folders (default: jobs/)."),
    model: Optional[Path] = ModelOption,
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Images per model call (default: 256 on CPU, 2048 on GPU)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Decode worker processes (default: CPU count; 0 = in-process)."),
    review_below: Optional[float] = typer.Option(None, "--review-below", min=0.0, max=1.0, help="Mark rows below this confidence 'review' (default: the model card's)."),
    device: str = DeviceOption,
    home: Optional[Path] = HomeOption,
):
    """Classify scanned digits into a job folder of CSV/JSON reports; prints the folder last."""
    from . import paths as locations
    from .classify import ClassifyOptions, run

    options = ClassifyOptions(
        model=_model_path(model, home),
        out_dir=out or locations.jobs_dir(home),
        batch_size=batch_size,
        workers=workers,
        review_below=review_below,
        device=device,
        command=_command_line(),
    )
    folder = run(paths, options)
    from .render import print_job_counts

    print_job_counts(folder)
    typer.echo(str(folder))


@app.command()
@friendly_errors
def bench(
    n: int = typer.Option(5000, "--n", min=10, help="Images per end-to-end case (large scans use n/5)."),
    size: int = typer.Option(300, "--size", min=32, help="Side of the large scans in pixels."),
    model: Optional[Path] = ModelOption,
    data: Optional[Path] = typer.Option(None, "--data", help="MNIST (npz or IDX folder) to draw test digits from (default: synthetic digits)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Decode worker processes."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Images per model call."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    home: Optional[Path] = HomeOption,
):
    """Measure images/s: naive per-image predict, batched arrays, end-to-end classify."""
    from .bench import machine, run_all, table

    rows = table(run_all(_model_path(model, home), n, size, data, workers, batch_size))
    if as_json:
        import json

        typer.echo(json.dumps({"machine": machine(), "command": _command_line(), "results": rows}))
        return
    from .render import print_bench

    print_bench(rows, machine())


@app.command()
@friendly_errors
def watch(
    inbox: Optional[Path] = typer.Argument(None, help="Folder to watch (default: inbox/)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the daily job folders and the journal (default: jobs/)."),
    model: Optional[Path] = ModelOption,
    max_batch: int = typer.Option(64, "--max-batch", min=1, help="Send a batch to the model at this many files..."),
    max_latency: float = typer.Option(0.5, "--max-latency", min=0.0, help="...or when the oldest file has waited this long (s)."),
    settle: float = typer.Option(1.0, "--settle", min=0.0, help="A file is taken after this long with no change (s)."),
    polling: bool = typer.Option(False, "--polling", help="Poll instead of inotify (automatic on NFS/SMB/FUSE)."),
    poll_interval: float = typer.Option(1.0, "--poll-interval", min=0.05, help="Seconds between polls."),
    rescan: float = typer.Option(60.0, "--rescan", min=0.1, help="Seconds between full rescans that catch lost events."),
    oneshot: bool = typer.Option(False, "--oneshot", help="Process what is in the inbox now, then exit."),
    keep: bool = typer.Option(False, "--keep", help="Leave files in the inbox (the journal prevents reprocessing)."),
    processed: Optional[Path] = typer.Option(None, "--processed", help="Where reported files go (default: processed/ beside the inbox)."),
    failed: Optional[Path] = typer.Option(None, "--failed", help="Where broken files go (default: failed/ beside the inbox)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Decode worker processes (0 = in-process)."),
    review_below: Optional[float] = typer.Option(None, "--review-below", min=0.0, max=1.0, help="Mark rows below this confidence 'review'."),
    device: str = DeviceOption,
    home: Optional[Path] = HomeOption,
):
    """Watch an inbox folder and classify every file that lands in it, exactly once."""
    import logging
    import signal

    from . import paths as locations
    from .watch.daemon import Daemon, WatchOptions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = WatchOptions(
        inbox=inbox or locations.inbox_dir(home), out_dir=out or locations.jobs_dir(home), model=_model_path(model, home),
        max_batch=max_batch, max_latency=max_latency, settle=settle, polling=polling, poll_interval=poll_interval,
        rescan_interval=rescan, oneshot=oneshot, keep=keep, processed_dir=processed, failed_dir=failed,
        workers=workers, review_below=review_below, device=device,
    )
    daemon = Daemon(options)
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop(0))
    signal.signal(signal.SIGINT, lambda *_: daemon.stop(130))
    raise typer.Exit(daemon.run())


@app.command("bench-watch")
@friendly_errors
def bench_watch(
    trickle: int = typer.Option(400, "--trickle", min=10, help="Files dropped one by one at --rate."),
    rate: float = typer.Option(20.0, "--rate", min=0.1, help="Files per second in the trickle."),
    burst: int = typer.Option(5000, "--burst", min=10, help="Files dropped at once."),
    settle: float = typer.Option(1.0, "--settle", min=0.0, help="The daemon's --settle."),
    max_latency: float = typer.Option(0.5, "--max-latency", min=0.0, help="The daemon's --max-latency."),
    max_batch: int = typer.Option(64, "--max-batch", min=1, help="The daemon's --max-batch."),
    model: Optional[Path] = ModelOption,
    data: Optional[Path] = typer.Option(None, "--data", help="MNIST to draw test digits from (default: synthetic)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Decode worker processes."),
    home: Optional[Path] = HomeOption,
):
    """Measure the daemon: file-to-row latency (p50/p95/p99) at a trickle, and burst files/s."""
    import json
    import logging

    from .bench import machine
    from .bench_watch import run

    logging.basicConfig(level=logging.WARNING)
    result = run(_model_path(model, home), trickle, rate, burst, settle, max_latency, max_batch, data, workers)
    typer.echo(json.dumps({"machine": machine(), "command": _command_line(), **result}, indent=2))


def main() -> None:
    app()
