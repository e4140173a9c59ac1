"""Fine-tuning a trained model on labelled scans (a user's writers, the review sheet's corrections).

Minutes, not the half hour of a full training: the base model's weights are
the start, the learning rate is small and constant, and a few epochs pass
over a mix of the new scans and a replay sample of MNIST, so the model
learns the new hands without forgetting the old ones.  The new scans are
repeated so that they make up ``extra_share`` of every epoch, whatever
their number.  The result is calibrated again (temperature on held-out
MNIST), written beside its card, and never put in use by itself.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from batchclf.datasets.labelled import LabelledSet
from batchclf.datasets.mnist import Dataset
from batchclf.model import card as cards
from batchclf.model import device as devices
from batchclf.model.calibration import apply_temperature, expected_calibration_error
from batchclf.model.predictor import load_keras_model, sha256_file
from batchclf.model.training import VALIDATION_SIZE, calibrate_and_score, mix_in, save_atomic, training_stream
from batchclf.scan.preprocess import mnist_to_input

EPOCHS = 3
LEARNING_RATE = 2e-4
EXTRA_SHARE = 0.3  # of every epoch's images
REPLAY = 30_000  # MNIST training images replayed per epoch (fewer if the set is smaller)


def with_national_styles(images: np.ndarray, labels: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """MNIST-form uint8 digits with ``share`` of the sevens crossed and of the ones given a foot (:mod:`styles`)."""
    from batchclf.model.styles import national_styles

    styled = national_styles(images.astype(np.float32)[..., None] / 255.0, labels, share, rng)
    return (styled[..., 0] * 255).round().astype(np.uint8)


def fine_tune(
    base: Path,
    extra: LabelledSet,
    data: Dataset,
    out: Path,
    epochs: int = EPOCHS,
    learning_rate: float = LEARNING_RATE,
    extra_share: float = EXTRA_SHARE,
    replay: int = REPLAY,
    seed: int = 1,
    batch_size: int = 128,
    command: str = "",
    origin: dict | None = None,
    progress: bool = True,
    augment: bool = True,
    styles: float = 0.0,
    replay_extra: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """Fine-tune ``base`` on ``extra`` plus replayed MNIST; save ``out`` and its card; return the card."""
    if not len(extra):
        from batchclf.errors import DataFileError

        raise DataFileError("nothing to fine-tune on: no labelled images")
    base = Path(base)
    tf = devices.tensorflow()
    device = devices.select("auto")
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = load_keras_model(base)
    base_card = cards.read(base)

    order = rng.permutation(len(data.x_train))
    held_out = min(VALIDATION_SIZE, len(order) // 5)  # for the temperature; the rest may be replayed
    validation, pool = order[:held_out], order[held_out:]
    replayed = rng.choice(pool, size=min(replay, len(pool)), replace=False)
    replay_x = data.x_train[replayed]
    if styles:
        replay_x = with_national_styles(replay_x, data.y_train[replayed], styles, rng)
    replay_y = data.y_train[replayed]
    if replay_extra is not None:  # e.g. MNIST training digits rendered as scans: replayed beside the plain ones
        replay_x, replay_y = np.concatenate([replay_x, replay_extra[0]]), np.concatenate([replay_y, replay_extra[1]])
    x, y, repeats = mix_in(replay_x, replay_y, extra.images, extra.labels, extra_share)

    steps_per_epoch = max(1, len(x) // batch_size)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="sparse_categorical_crossentropy")
    callbacks = []
    if progress:
        from batchclf.model.progress import keras_callback

        callbacks.append(keras_callback(epochs, steps_per_epoch))
    started = time.perf_counter()
    model.fit(training_stream(mnist_to_input(x), y, batch_size, seed, augment), epochs=epochs,
              steps_per_epoch=steps_per_epoch, shuffle=False, verbose=0, callbacks=callbacks)
    seconds = time.perf_counter() - started

    x_val, y_val = mnist_to_input(data.x_train[validation]), data.y_train[validation]
    val_probs, temperature, _, test = calibrate_and_score(model, x_val, y_val, data)

    out = Path(out)
    save_atomic(model, out)
    card = {
        **{key: base_card[key] for key in ("architecture", "architecture_description", "parameters", "flops_per_image") if key in base_card},
        "name": out.stem,
        "file": out.name,
        "parent": base.name,
        "parent_sha256": sha256_file(base),
        "mnist_test": {"accuracy": test["accuracy"], "n": test["n"], "per_class_accuracy": test["per_class"],
                       "confusion": test["confusion"]},
        "parent_mnist_test_accuracy": base_card.get("mnist_test", {}).get("accuracy"),
        "calibration": {
            "method": "temperature scaling on held-out MNIST training images",
            "temperature": temperature,
            "validation_size": int(len(y_val)),
            "validation_ece_after": expected_calibration_error(apply_temperature(val_probs, temperature), y_val),
            "test_ece_after": test["ece"],
        },
        "review_below": cards.review_below(base_card),
        "fine_tuning": {
            "extra": extra.sources,
            "extra_images": int(len(extra)),
            "extra_per_class": {str(k): int((extra.labels == k).sum()) for k in range(10)},
            "extra_repeats": int(repeats),
            "extra_share": extra_share,
            "replay_mnist": int(len(replayed)),
            "augmentation": augment,
            "national_styles": styles,
            "replay_rendered_scans": 0 if replay_extra is None else int(len(replay_extra[1])),
            **(origin or {}),
            "epochs": epochs,
            "learning_rate": learning_rate,
            "batch_size": batch_size,
            "seed": seed,
            "seconds": round(seconds, 1),
            "hardware": cards.hardware(),
            "device": devices.kind(device),
            "command": command,
            "data_source": data.source,
        },
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    cards.write(out, card)
    return card
