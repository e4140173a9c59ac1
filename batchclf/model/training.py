"""Training a model on MNIST and writing it with its card."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from batchclf.model import architectures
from batchclf.model import card as cards
from batchclf.model import device as devices
from batchclf.model import styles
from batchclf.model.calibration import apply_temperature, expected_calibration_error, fit_temperature
from batchclf.datasets.mnist import Dataset
from batchclf.model.flops import flops_per_image
from batchclf.model.metrics import summary
from batchclf.scan.preprocess import mnist_to_input

VALIDATION_SIZE = 5000
EXTRA_SHARE = 0.2  # of every epoch's images, when labelled scans are mixed into a full training


def mix_in(x: np.ndarray, y: np.ndarray, extra_x: np.ndarray, extra_y: np.ndarray, share: float):
    """``x, y`` with ``extra_x, extra_y`` repeated until they are about ``share`` of the mix; also returns the repeats.

    A few hundred scans beside 55,000 MNIST digits would otherwise be a rounding
    error in every epoch; repeated (and augmented differently each time) they count.
    """
    repeats = max(1, round(share / (1 - share) * len(x) / len(extra_x)))
    x = np.concatenate([x, np.tile(extra_x, (repeats,) + (1,) * (extra_x.ndim - 1))])
    y = np.concatenate([y, np.tile(extra_y, repeats)]).astype(np.int64)
    return x, y, repeats


def train(
    data: Dataset,
    out: Path,
    arch: str = "default",
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = 1,
    command: str = "",
    progress: bool = True,
    limit: int | None = None,
    validation_size: int = VALIDATION_SIZE,
    deterministic: bool = False,
    extra=None,
    extra_share: float = EXTRA_SHARE,
) -> dict:
    """Train ``arch`` on ``data``, save ``out`` (.keras) and its card; return the card.

    ``limit`` trains on the first N training images only (for tests);
    ``extra`` (a :class:`~batchclf.datasets.labelled.LabelledSet`) mixes labelled scans in.
    Seeds fix weights, shuffling and augmentation; ``deterministic`` also
    forces deterministic TensorFlow kernels, which halves speed on a CPU.
    """
    recipe = architectures.recipe(arch)  # fail on a bad name before importing TensorFlow
    epochs = epochs or recipe.epochs
    batch_size = batch_size or recipe.batch_size

    tf = devices.tensorflow()
    device = devices.select("auto")  # probes CUDA now, quietly, rather than at the first layer built
    import keras

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()

    images, labels = data.x_train, data.y_train.astype(np.int64)
    if limit:
        images, labels = images[:limit], labels[:limit]
    order = np.random.default_rng(seed).permutation(len(images))
    validation_size = min(validation_size, len(images) // 5)
    val_idx, train_idx = order[:validation_size], order[validation_size:]
    x_train, y_train = images[train_idx], labels[train_idx]
    x_val, y_val = mnist_to_input(images[val_idx]), labels[val_idx]
    x_train = mnist_to_input(x_train)
    if recipe.continental_ones:
        x_train = styles.continental_ones(x_train, y_train, recipe.continental_ones, np.random.default_rng(seed))
    extra_repeats = 0
    if extra is not None:
        x_train, y_train, extra_repeats = mix_in(x_train, y_train, mnist_to_input(extra.images), extra.labels, extra_share)

    steps_per_epoch = max(1, len(x_train) // batch_size)
    model = architectures.build(arch, seed=seed, steps_total=steps_per_epoch * epochs)
    dataset = training_stream(x_train, y_train, batch_size, seed, recipe.augment)

    callbacks = []
    if progress:
        from batchclf.model.progress import keras_callback

        callbacks.append(keras_callback(epochs, steps_per_epoch))
    started = time.perf_counter()
    model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False, verbose=0, callbacks=callbacks)
    training_seconds = time.perf_counter() - started

    val_probs, temperature, test_probs_raw, test_metrics = calibrate_and_score(model, x_val, y_val, data)

    out = Path(out)
    save_atomic(model, out)
    card = {
        "name": out.stem,
        "file": out.name,
        "architecture": arch,
        "architecture_description": recipe.description,
        "parameters": int(model.count_params()),
        "flops_per_image": flops_per_image(model),
        "mnist_test": {
            "accuracy": test_metrics["accuracy"],
            "n": test_metrics["n"],
            "per_class_accuracy": test_metrics["per_class"],
            "confusion": test_metrics["confusion"],
        },
        "calibration": {
            "method": "temperature scaling on a held-out validation split",
            "temperature": temperature,
            "validation_size": int(len(y_val)),
            "validation_ece_before": expected_calibration_error(val_probs, y_val) if len(y_val) else None,
            "validation_ece_after": expected_calibration_error(apply_temperature(val_probs, temperature), y_val)
            if len(y_val)
            else None,
            "test_ece_before": expected_calibration_error(test_probs_raw, data.y_test),
            "test_ece_after": test_metrics["ece"],
        },
        "review_below": cards.FALLBACK_REVIEW_BELOW,
        "training": {
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "deterministic_kernels": deterministic,
            "augmentation": recipe.augment,
            "continental_ones": recipe.continental_ones,
            "train_size": int(len(y_train)),
            "seconds": round(training_seconds, 1),
            "hardware": cards.hardware(),
            "device": devices.kind(device),
            "command": command,
            "data_source": data.source,
            "data_sha256": data.train_sha256,
            "extra": None if extra is None else {
                "sources": extra.sources, "images": int(len(extra)), "repeats": int(extra_repeats), "share": extra_share,
                "per_class": {str(k): int((extra.labels == k).sum()) for k in range(10)},
            },
        },
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    cards.write(out, card)
    return card


def calibrate_and_score(model, x_val, y_val, data: Dataset):
    """Fit the temperature on held-out images, then score the MNIST test set with it.

    Returns ``(validation probabilities, temperature, raw test probabilities, test metrics)``.
    """
    val_probs = model.predict(x_val, batch_size=512, verbose=0)
    temperature = fit_temperature(val_probs, y_val) if len(y_val) else 1.0
    test_probs_raw = model.predict(mnist_to_input(data.x_test), batch_size=512, verbose=0)
    return val_probs, temperature, test_probs_raw, summary(apply_temperature(test_probs_raw, temperature), data.y_test)


def training_stream(x, y, batch_size: int, seed: int, augment: bool):
    import tensorflow as tf

    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch_size, drop_remainder=True)
    )
    if augment:
        from batchclf.model.augment import augment_batch

        dataset = dataset.enumerate().map(
            lambda index, pair: (augment_batch(pair[0], index, seed), pair[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def save_atomic(model, out: Path) -> None:
    from batchclf.atomic import replacing

    with replacing(Path(out), suffix=".partial" + Path(out).suffix) as temporary:  # Keras picks the format by the suffix
        model.save(temporary)
