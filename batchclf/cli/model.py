"""``train``, ``evaluate`` and ``predict``: the model behind the reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from batchclf import limits

from batchclf.cli.common import (
    AsJson, Data, Detector, Device, Home, Inputs, InputScale, Model, command_line, detector_path, friendly_errors, input_folders,
    model_path,
)


@friendly_errors
def train(
    data: Data = None,
    arch: Annotated[str, typer.Option("--arch", help="Architecture: default or seed (the classic demo).")] = "default",
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, max=limits.MAX_EPOCHS, help="Epochs (default: the architecture's recipe; 3 to fine-tune).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, max=limits.MAX_BATCH, help="Batch size (default: the recipe's).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 1,
    deterministic: Annotated[
        bool, typer.Option("--deterministic", metavar="", help="Force deterministic TensorFlow kernels (about 2x slower on CPU).")
    ] = False,
    extra: Annotated[
        Optional[List[Path]],
        typer.Option("--extra", help="Labelled scans to learn from too: a folder of DIGIT/ sub-folders at any depth, or a USPS file (repeatable)."),
    ] = None,
    from_reviews: Annotated[
        Optional[List[Path]],
        typer.Option("--from-reviews", help="Fine-tune on a person's review: a job folder (its verified.csv, else its corrections.csv), "
                     "or a corrections.csv with the job folder it came from (repeatable)."),
    ] = None,
    inputs: Inputs = None,
    base: Annotated[
        Optional[Path], typer.Option("--base", help="Fine-tune this model instead of training anew (default with --from-reviews: the model in use).")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Output .keras file (default: a new name in models/; never the model in use).")
    ] = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="Skip training: load this model and show its card.")] = None,
    cross_validate: Annotated[
        Optional[int],
        typer.Option("--cross-validate", min=2, max=50, metavar="N",
                     help="Leave-writers-out: fine-tune N times, each without a fold of the writers in the first --extra folder "
                          "(WRITER/DIGIT/...), and score those writers; prints the unseen figures (--out: a folder for the folds)."),
    ] = None,
    home: Home = None,
):
    """Train a CNN on MNIST (plus labelled scans), or fine-tune one on scans and corrections; saved with its card."""
    from batchclf import paths
    from batchclf.cli.render import print_card
    from batchclf.datasets import mnist as datasets
    from batchclf.model import architectures
    from batchclf.model import card as cards

    if model is not None:
        from batchclf.model.predictor import load_keras_model

        load_keras_model(model)
        print_card(model, cards.read(model))
        return
    if cross_validate is not None:
        _cross_validate(cross_validate, extra or [], data, base or paths.default_model(home), out, epochs or 3, seed, home)
        return
    architectures.recipe(arch)
    fine_tuning = base is not None or bool(from_reviews)
    # Both replay MNIST: without --data and offline, say so now, not after TensorFlow's start-up.
    datasets.require_available(data, "fine-tuning (its MNIST replay)" if fine_tuning else "training")
    base = base or (paths.default_model(home) if fine_tuning else None)
    target = out or new_model_path(paths.models_dir(home), f"{base.stem}-tuned" if fine_tuning else arch)
    if target.suffix != ".keras":
        raise typer.BadParameter("--out must end in .keras")
    in_use = paths.default_model(home)
    if target.exists() and in_use.exists() and target.resolve() == in_use.resolve():
        from batchclf.errors import ModelLoadError

        raise ModelLoadError(f"{target} is the model in use; write the new one elsewhere (--out), then: batchclf models use NAME")
    extra_set = _labelled(extra or [], from_reviews or [], input_folders(inputs))
    dataset = datasets.load(data)
    if fine_tuning:
        from batchclf.model.finetune import fine_tune

        card = fine_tune(base, extra_set, dataset, target, epochs=epochs or 3, batch_size=batch_size or 128, seed=seed,
                         command=command_line(), origin=extra_set.origin)
    else:
        from batchclf.model.training import train as run_training

        card = run_training(
            dataset, target, arch=arch, epochs=epochs, batch_size=batch_size, seed=seed,
            deterministic=deterministic, command=command_line(), extra=extra_set if len(extra_set) else None,
        )
    print_card(target, card)
    typer.echo(f"wrote {target}; not in use yet: batchclf models use {target.stem}")


def _cross_validate(folds: int, extra: list[Path], data, base: Path, out: Path | None, epochs: int, seed: int, home) -> None:
    from datetime import datetime, timezone

    from batchclf import paths
    from batchclf.cli.render import print_unseen
    from batchclf.crossval import cross_validate
    from batchclf.datasets import mnist as datasets
    from batchclf.model import card as cards

    datasets.require_available(data, "cross-validation (its MNIST replay)")
    detector = paths.default_detector(home)
    if detector is None:
        from batchclf.errors import ModelNotFoundError

        raise ModelNotFoundError("no not-a-digit detector found to fine-tune beside the classifier (models/detectors/)")
    out = out or paths.models_dir(home) / f"crossval-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
    figures = cross_validate(extra, datasets.load(data), base, detector, out, folds, epochs, seed,
                             cards.review_below(cards.read(base)), log=lambda text: typer.echo(text, err=True))
    print_unseen(figures)
    typer.echo(f"folds, their models and scores: {out}")


def new_model_path(models_dir: Path, stem: str) -> Path:
    """``models/STEM.keras``, or with a UTC time stamp when that exists: training never overwrites a model."""
    from datetime import datetime, timezone

    target = models_dir / f"{stem}.keras"
    if target.exists():
        target = models_dir / f"{stem}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.keras"
    return target


def _labelled(extra: list[Path], reviews: list[Path], inputs: list[Path]):
    """The labelled scans and corrections to learn from, as one set (its ``origin`` is recorded in the card).

    ``inputs``: folders besides the jobs' home where their inputs may be read (``--inputs``).
    """
    from batchclf.datasets.corrections import read_corrections
    from batchclf.datasets.labelled import concatenate, read_labelled
    from batchclf.scan.pool import default_workers

    parts = []
    if extra:
        parts.append(read_labelled(extra, workers=default_workers()))
    if reviews:
        corrections = read_corrections(reviews, inputs=inputs)
        corrections.origin = {"corrections": corrections.sources}
        parts.append(corrections)
    return concatenate(parts)


@friendly_errors
def evaluate(
    model: Model = None,
    data: Annotated[
        Optional[Path],
        typer.Option("--data", help="MNIST (mnist.npz or IDX files; default: Keras download), or labelled scans as for --scans."),
    ] = None,
    scans: Annotated[
        Optional[Path],
        typer.Option("--scans", help="Instead of MNIST: labelled scans (a folder of .../DIGIT/file, or a USPS file)."),
    ] = None,
    baseline: Annotated[
        Optional[Path], typer.Option("--baseline", help="Also score this model on the same set and show both (e.g. a fine-tune's parent).")
    ] = None,
    engine: Annotated[str, typer.Option("--engine", help="How --scans files become rows: local or ray (as for classify).")] = "local",
    input_scale: InputScale = None,
    detector: Detector = "auto",
    as_json: AsJson = False,
    device: Device = "auto",
    home: Home = None,
):
    """Score a model on the MNIST test set or labelled scans: accuracy, per writer and class, confusion, ok rows, review share."""
    from batchclf.datasets import mnist as datasets
    from batchclf.scan.pool import default_workers
    from batchclf.evaluate import evaluate as run_evaluate
    from batchclf.evaluate import evaluate_folder
    from batchclf.model.spec import ModelSpec

    if scans is not None and not scans.exists():
        raise typer.BadParameter(f"{scans} does not exist", param_hint="--scans")
    if scans is None and data is not None and data.exists() and not datasets.is_mnist(data):
        scans, data = data, None  # --data takes the labelled layouts too
    found = detector_path(detector, home)
    predictors = [ModelSpec(path, device=device, input_scale=input_scale, detector=found).predictor()
                  for path in (model_path(model, home), baseline) if path is not None]
    dataset = datasets.load(data) if scans is None else None  # after the models: a broken model is the first error

    def score(predictor) -> dict:
        if scans is not None:
            return evaluate_folder(predictor, scans, workers=default_workers(), engine=engine)
        return run_evaluate(predictor, dataset)

    result = score(predictors[0])
    before = score(predictors[1]) if baseline is not None else None
    if as_json:
        import json

        typer.echo(json.dumps(result if before is None else {**result, "baseline": before}))
        return
    from batchclf.cli.render import print_comparison, print_evaluation

    print_evaluation(result)
    if before is not None:
        print_comparison(result, before)


@friendly_errors
def predict(
    images: Annotated[Optional[List[Path]], typer.Argument(help="Image files to label.")] = None,
    demo: Annotated[bool, typer.Option("--demo", metavar="", help="Label the classic demo's hand-drawn dummy digit.")] = False,
    model: Model = None,
    input_scale: InputScale = None,
    detector: Detector = "auto",
    as_json: AsJson = False,
    device: Device = "auto",
    home: Home = None,
):
    """Label single images (label, calibrated confidence, top 3)."""
    if not images and not demo:
        raise typer.BadParameter("give IMAGE paths or --demo")
    missing = [str(image) for image in images or [] if not image.exists()]
    if missing:
        from batchclf.errors import InputPathError

        raise InputPathError(f"image not found: {', '.join(missing)}")
    from batchclf.cli.render import print_digit, print_predictions
    from batchclf import evaluate as predicting
    from batchclf.model.spec import ModelSpec

    spec = ModelSpec(model_path(model, home), device=device, input_scale=input_scale, detector=detector_path(detector, home))
    predictor = spec.predictor()
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
    _fail_on_unread(results)


def _fail_on_unread(results: list[dict]) -> None:
    """Every row is shown first; then an input that gave no prediction (not an image, unreadable) makes the exit non-zero."""
    from batchclf.jobs.rows import FAILED

    failed = [r for r in results if r["status"] == FAILED]
    if failed:
        from batchclf.cli.render import printable
        from batchclf.errors import FailedRowsError

        first = failed[0]
        raise FailedRowsError(f"{len(failed)} of {len(results)} inputs could not be read, "
                              f"first {printable(first['file'])}: {printable(first.get('error') or 'failed')}")
