"""``train``, ``evaluate`` and ``predict``: the model behind the reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from batchclf.cli.common import AsJson, Data, Device, Home, Model, command_line, friendly_errors, model_path


@friendly_errors
def train(
    data: Data = None,
    arch: Annotated[str, typer.Option("--arch", help="Architecture: default or seed (the classic demo).")] = "default",
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Epochs (default: the architecture's recipe).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Batch size (default: the recipe's).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 1,
    deterministic: Annotated[
        bool, typer.Option("--deterministic", help="Force deterministic TensorFlow kernels (about 2x slower on CPU).")
    ] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Output .keras file (default: models/ARCH.keras).")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="Skip training: load this model and show its card.")] = None,
    home: Home = None,
):
    """Train a CNN on MNIST and save it with its model card (or --model to load one)."""
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
    architectures.recipe(arch)
    target = out or paths.models_dir(home) / f"{arch}.keras"
    if target.suffix != ".keras":
        raise typer.BadParameter("--out must end in .keras")
    dataset = datasets.load(data)
    from batchclf.model.training import train as run_training

    card = run_training(
        dataset, target, arch=arch, epochs=epochs, batch_size=batch_size, seed=seed,
        deterministic=deterministic, command=command_line(),
    )
    print_card(target, card)


@friendly_errors
def evaluate(
    model: Model = None,
    data: Data = None,
    scans: Annotated[
        Optional[Path],
        typer.Option("--scans", help="Instead of MNIST: a folder of real scans labelled by folder name (.../DIGIT/file)."),
    ] = None,
    as_json: AsJson = False,
    device: Device = "auto",
    home: Home = None,
):
    """Score a model on the MNIST test set (or labelled scans): accuracy, per-class, confusion, ECE."""
    from batchclf.datasets import mnist as datasets
    from batchclf.engines.local import default_workers
    from batchclf.model.evaluate import evaluate as run_evaluate
    from batchclf.model.evaluate import evaluate_folder
    from batchclf.model.predictor import Predictor

    predictor = Predictor(model_path(model, home), device=device)
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
    from batchclf.cli.render import print_evaluation

    print_evaluation(result)


@friendly_errors
def predict(
    images: Annotated[Optional[List[Path]], typer.Argument(help="Image files to label.")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Label the classic demo's hand-drawn dummy digit.")] = False,
    model: Model = None,
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
    from batchclf.model import evaluate as predicting
    from batchclf.model.predictor import Predictor

    predictor = Predictor(model_path(model, home), device=device)
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
