"""Exporting a Keras model to a LiteRT sidecar (``NAME.int8.tflite`` beside ``NAME.keras``) and recording it in the card.

TensorFlow stays the training and GPU runtime; on a CPU, inference runs the
sidecar through LiteRT (:mod:`batchclf.model.lite_runtime`), about 4x
cheaper per digit with int8 weights and activations.  Quantising changes a
few labels, so an export measures, before anything is written, how often the
sidecar agrees with the Keras model it came from, on every set it is given:
labels (argmax) for a classifier, flags at the card's ``flag_above`` for a
not-a-digit detector.  The card's ``lite`` entry records the file, its
sha256, the sha256 of the ``.keras`` it was made from (a model changed
after its export never runs its stale sidecar), the quantisation, those
figures and the exact command.

Calibration (the activation ranges of int8) uses training data only: MNIST
training digits, USPS ``zip.train`` and MNIST training digits rendered as
scans, plus drawn non-digits for a detector; never a set it is measured on.

    python -m batchclf.model.lite_export models/default.keras --data ../shared/data/mnist \\
        --usps ../shared/data/usps/zip.train.gz --check ../shared/data/usps/zip.test.gz --check ../shared/data/handwritten-scans
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import io
import shlex
import sys
from pathlib import Path

import numpy as np

from batchclf.model import card as cards
from batchclf.model.lite_runtime import Refereed, Sidecars

# int8: weights and activations int8 (float32 in and out); dynamic: int8 weights, float activations; fp32: no quantising.
QUANTISATIONS = ("int8", "dynamic", "fp32")
CALIBRATION_SEED = 2026
CHECK_BATCH = 256
# Issue 22's bar for running a sidecar instead of the Keras model: labels (flags) it agrees on, on every set checked.
MIN_AGREEMENT = 0.9995


def sidecar_path(model_path: Path, quantisation: str) -> Path:
    """``models/default.keras`` -> ``models/default.int8.tflite``."""
    model_path = Path(model_path)
    return model_path.with_name(f"{model_path.stem}.{quantisation}.tflite")


def calibration_inputs(mnist: Path, usps: Path | None, per_source: int, detector: bool,
                       seed: int = CALIBRATION_SEED) -> tuple[np.ndarray, dict]:
    """Model inputs ``(N, 28, 28, 1)`` from training data only, and what they were (for the card).

    MNIST training digits as they are and rendered as scans (through decoding and the normaliser, as prediction
    reads a file), USPS training digits, and for a detector drawn non-digits (training fonts) both ways.
    """
    from batchclf.datasets import nondigits
    from batchclf.datasets.labelled import read_labelled
    from batchclf.datasets.mnist import load
    from batchclf.scan.preprocess import mnist_to_input

    rng = np.random.default_rng(seed)
    train = load(mnist).x_train
    picked = train[rng.choice(len(train), 2 * per_source, replace=False)]
    parts = {"mnist_train": picked[:per_source]}
    rendered = [nondigits.as_scan_input(digit, rng) for digit in picked[per_source:]]
    parts["mnist_train_rendered_scans"] = np.stack([image for image in rendered if image is not None])
    if usps is not None:
        usps_digits = read_labelled([Path(usps)]).images
        parts["usps_train"] = usps_digits[rng.choice(len(usps_digits), min(per_source, len(usps_digits)), replace=False)]
    if detector:
        fonts, _ = nondigits.font_split(nondigits.installed_fonts())
        source = nondigits.Source(fonts, train)
        drawn = [nondigits.draw(str(nondigits.TRAINING_KINDS[i % len(nondigits.TRAINING_KINDS)]), source, rng)
                 for i in range(per_source)]
        half = len(drawn) // 2
        as_files = [nondigits.to_mnist_form(c) if c.shape != (28, 28) else c for c in drawn[:half]]
        as_scans = [nondigits.as_scan_input(c, rng) for c in drawn[half:]]
        parts["drawn_non_digits"] = np.stack(as_files + [image for image in as_scans if image is not None])
    inputs = np.concatenate([mnist_to_input(images) for images in parts.values()])
    inputs = inputs[rng.permutation(len(inputs))]
    return inputs, {"seed": seed, "inputs": {name: int(len(images)) for name, images in parts.items()}}


def convert(model, quantisation: str, representative: np.ndarray | None = None) -> bytes:
    """The ``.tflite`` bytes of a loaded Keras model, builtin ops only (LiteRT runs nothing else)."""
    from batchclf.model import device as devices

    tf = devices.tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if quantisation == "int8"
                                           else tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantisation in ("int8", "dynamic"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantisation == "int8":
        converter.representative_dataset = lambda: ([representative[i : i + 1]] for i in range(len(representative)))
    # The converter prints the SavedModel it goes through (signatures, captures) to stdout, and more to fd 2.
    with devices.native_chatter_to_debug_log(), contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def keras_outputs(model, inputs: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(model(inputs[i : i + CHECK_BATCH], training=False))
                           for i in range(0, len(inputs), CHECK_BATCH)])


def lite_outputs(sidecars, inputs: np.ndarray, flag_above: float | None) -> np.ndarray:
    """What the runtime gives for ``inputs`` (:class:`~batchclf.model.lite_runtime.Refereed`, as the predictor runs it)."""
    from batchclf.model.lite_runtime import Refereed

    return Refereed(sidecars, CHECK_BATCH, boundary=flag_above).padded(inputs)


def agreement(reference: np.ndarray, lite: np.ndarray, flag_above: float | None) -> dict:
    """How often the sidecar says what the Keras model says: labels for a classifier, flags for a detector."""
    n = len(reference)
    if flag_above is None:
        differ = int((reference.argmax(1) != lite.argmax(1)).sum())
        return {"n": n, "labels_differ": differ, "agreement": 1.0 - differ / n,
                "max_probability_change": round(float(np.abs(reference - lite).max()), 4)}
    reference, lite = reference.reshape(-1), lite.reshape(-1)
    flips = int(((reference > flag_above) != (lite > flag_above)).sum())
    return {"n": n, "flags_differ": flips, "agreement": 1.0 - flips / n, "flagged": int((reference > flag_above).sum()),
            "max_probability_change": round(float(np.abs(reference - lite).max()), 4)}


def check_sets(mnist: Path, checks: list[Path], non_digits: int) -> dict[str, np.ndarray]:
    """The sets an export is measured on, as model inputs: MNIST test, each ``--check`` path, measuring non-digits."""
    from batchclf.datasets import nondigits
    from batchclf.datasets.labelled import read_labelled
    from batchclf.datasets.mnist import load
    from batchclf.scan.preprocess import mnist_to_input

    data = load(mnist)
    sets = {"mnist_test": mnist_to_input(data.x_test)}
    for path in checks:
        sets[Path(path).name] = mnist_to_input(read_labelled([Path(path)]).images)
    if non_digits:
        _, fonts = nondigits.font_split(nondigits.installed_fonts())  # faces neither network trained on
        rng = np.random.default_rng(CALIBRATION_SEED + 1)
        source = nondigits.Source(fonts, data.x_test)
        drawn = [nondigits.draw(str(nondigits.KINDS[i % len(nondigits.KINDS)]), source, rng) for i in range(non_digits)]
        scans = [nondigits.as_scan_input(c, rng) for c in drawn]
        sets["drawn_non_digits"] = mnist_to_input(np.stack([image for image in scans if image is not None]))
    return sets


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export(model_path: Path, quantisation: str, mnist: Path, usps: Path | None, checks: list[Path],
           per_source: int = 1024, non_digits: int = 1000, referee_margin: float = 0.0, command: str = "",
           log=print) -> dict:
    """Convert, measure, then write the sidecar and the card's ``lite`` entry; returns that entry."""
    from batchclf.atomic import write_bytes_atomic
    from batchclf.model.predictor import load_keras_model, sha256_file

    model_path = Path(model_path)
    card = cards.read(model_path)
    flag_above = float(card["flag_above"]) if "flag_above" in card else None  # a detector's card has one
    model = load_keras_model(model_path)
    if tuple(model.input_shape[1:]) != (28, 28, 1) or isinstance(model.output_shape, list):
        raise SystemExit(f"{model_path}: only models taking (28, 28, 1) inputs get a LiteRT sidecar")
    calibration = None
    representative = None
    if quantisation == "int8":
        log(f"calibrating on training data ({per_source} per source) ...")
        representative, calibration = calibration_inputs(mnist, usps, per_source, detector=flag_above is not None)
    data = convert(model, quantisation, representative)
    target, referee_target = sidecar_path(model_path, quantisation), sidecar_path(model_path, "fp32")
    referee = convert(model, "fp32") if referee_margin > 0 and quantisation != "fp32" else None
    sidecars = Sidecars(data, target.name, referee, referee_margin)
    figures = {}
    for name, inputs in check_sets(mnist, checks, non_digits if flag_above is not None else 0).items():
        reference = keras_outputs(model, inputs)
        figures[name] = agreement(reference, lite_outputs(sidecars, inputs, flag_above), flag_above)
        if referee is not None:  # how many rows the referee scores: its cost
            near = Refereed(sidecars, CHECK_BATCH, flag_above).near(lite_outputs(Sidecars(data, target.name), inputs, flag_above))
            figures[name]["refereed"] = int(near.sum())
        log(f"{name}: {figures[name]}")
    short = {name: figure["agreement"] for name, figure in figures.items() if figure["agreement"] < MIN_AGREEMENT}
    if short:  # nothing written: the model keeps running on TensorFlow
        raise SystemExit(f"{model_path.name}: the {quantisation} sidecar agrees with the model on less than "
                         f"{MIN_AGREEMENT:.2%} of " + ", ".join(f"{name} ({value:.3%})" for name, value in short.items())
                         + "; not written (try --referee-margin or another --quantisation)")
    write_bytes_atomic(target, data)
    entry = {
        "file": target.name,
        "sha256": sha256_bytes(data),
        "source_sha256": sha256_file(model_path),
        "quantisation": quantisation,
    }
    if referee is not None:
        write_bytes_atomic(referee_target, referee)
        entry["referee"] = {"file": referee_target.name, "sha256": sha256_bytes(referee), "margin": referee_margin}
    entry.update({
        "calibration": calibration,
        "agreement": figures,
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
    card["lite"] = entry
    cards.write(model_path, card)
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchclf.model.lite_export", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a .keras model with its card (classifier or not-a-digit detector)")
    parser.add_argument("--quantisation", choices=QUANTISATIONS, default="int8")
    parser.add_argument("--data", type=Path, required=True, help="MNIST (training digits calibrate, test digits check)")
    parser.add_argument("--usps", type=Path, help="USPS zip.train: more training digits to calibrate on")
    parser.add_argument("--check", type=Path, action="append", default=[],
                        help="a labelled folder or USPS file to measure agreement on (repeatable); never calibrated on")
    parser.add_argument("--per-source", type=int, default=1024, help="calibration inputs per source")
    parser.add_argument("--non-digits", type=int, default=1000, help="drawn non-digits (unseen fonts) a detector is checked on")
    parser.add_argument("--referee-margin", type=float, default=0.0,
                        help="also write the float sidecar, to score again rows this near a decision (0: none)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.referee_margin <= 1.0:
        parser.error("--referee-margin must be in [0, 1]")
    command = "python -m batchclf.model.lite_export " + shlex.join(sys.argv[1:] if argv is None else argv)
    entry = export(args.model, args.quantisation, args.data, args.usps, args.check, args.per_source, args.non_digits,
                   args.referee_margin, command)
    print(f"wrote {entry['file']} ({entry['quantisation']}) and its card entry")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
