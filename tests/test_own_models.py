"""Bring your own Keras model: a Keras 2 style ``.h5``, flat or 2-D inputs, raw 0-255 pixels, no card."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from batchclf.cli import app
from batchclf.errors import ModelLoadError

from .conftest import synthetic_digits
from .helpers import ink_digit, png_bytes


def own_model(path, input_shape, raw_pixels=False, seed_arch=False):
    """Train a small model on synthetic digits with the given input layout, and save it (no card)."""
    import keras

    x, y = synthetic_digits(512, seed=3)
    images = x.astype(np.float32) if raw_pixels else x.astype(np.float32) / 255.0
    images = images.reshape((-1, *input_shape))
    keras.utils.set_random_seed(0)
    layers = [keras.Input(input_shape)]
    if seed_arch:  # the classic article's mnist_model.h5, shrunk
        layers += [keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
                   keras.layers.Dense(16, activation="relu")]
    else:
        layers += [keras.layers.Flatten(), keras.layers.Dense(32, activation="relu")]
    model = keras.Sequential(layers + [keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(images, y, epochs=4, verbose=0)
    model.save(path)
    return path


@pytest.mark.parametrize("input_shape, name", [((28, 28, 1), "mnist_model.h5"), ((784,), "flat.keras"), ((28, 28), "square.h5")])
def test_own_models_classify_like_ours(tmp_path, input_shape, name):
    model = own_model(tmp_path / name, input_shape, seed_arch=input_shape == (28, 28, 1))
    from batchclf.model.predictor import Predictor
    from batchclf.scan.preprocess import mnist_to_input

    x, y = synthetic_digits(200, seed=2)
    predictor = Predictor(model, device="cpu")
    assert (predictor.predict(mnist_to_input(x)).argmax(1) == y).mean() > 0.9
    assert predictor.describe()["card"] is False and predictor.temperature == 1.0


def test_raw_pixel_models_need_their_scale(tmp_path):
    model = own_model(tmp_path / "raw.h5", (28, 28, 1), raw_pixels=True)
    from batchclf.model.predictor import Predictor
    from batchclf.scan.preprocess import mnist_to_input

    x, y = synthetic_digits(200, seed=2)
    scaled = Predictor(model, device="cpu", input_scale=255)
    assert (scaled.predict(mnist_to_input(x)).argmax(1) == y).mean() > 0.9
    (tmp_path / "raw.json").write_text(json.dumps({"input_scale": 255}))  # or the card says so
    assert Predictor(model, device="cpu").input_scale == 255.0


def test_an_unsupported_input_shape_is_one_clear_line(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    model.save(tmp_path / "cifar.keras")
    from batchclf.model.predictor import Predictor

    with pytest.raises(ModelLoadError, match=r"takes input of shape \(None, 32, 32, 3\)"):
        Predictor(tmp_path / "cifar.keras", device="cpu")
    (tmp_path / "scan.png").write_bytes(png_bytes(ink_digit()))
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "scan.png"), "--model", str(tmp_path / "cifar.keras")])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and result.output.count("\n") == 1


def test_classify_with_an_h5_model_records_that_it_has_no_card(tmp_path):
    model = own_model(tmp_path / "mnist_model.h5", (28, 28, 1), raw_pixels=True, seed_arch=True)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(png_bytes(ink_digit()))
    result = CliRunner().invoke(app, ["classify", str(tmp_path / "in"), "--model", str(model), "--input-scale", "255",
                                      "--out", str(tmp_path / "jobs"), "--workers", "0"])
    assert result.exit_code == 0, result.output
    folder = result.output.strip().splitlines()[-1]
    meta = json.loads((tmp_path / "jobs" / folder.rsplit("/", 1)[-1] / "summary.json").read_text())
    assert meta["model"]["file"] == "mnist_model.h5" and meta["model"]["card"] is False and meta["model"]["input_scale"] == 255.0
