import json

import numpy as np
import pytest

from batchclf.model.predictor import Predictor, load_keras_model
from batchclf.model.training import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_dataset):
    out = tmp_path_factory.mktemp("train") / "small.keras"
    card = train(synthetic_dataset, out, arch="seed", epochs=1, batch_size=32, seed=7, command="pytest", progress=False)
    return out, card


def test_model_and_card_are_written(trained):
    out, card = trained
    assert out.is_file()
    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert on_disk == card
    for key in ("architecture", "parameters", "flops_per_image", "mnist_test", "calibration", "training", "versions", "created"):
        assert key in card
    assert card["architecture"] == "seed"
    assert card["parameters"] == 1274326
    test = card["mnist_test"]
    assert set(test["per_class_accuracy"]) == {str(k) for k in range(10)}
    assert np.array(test["confusion"]).sum() == 200
    training = card["training"]
    assert training["epochs"] == 1 and training["seed"] == 7 and training["command"] == "pytest"
    assert len(training["data_sha256"]) == 64 and training["hardware"]["cpu_count"]
    calibration = card["calibration"]
    assert calibration["temperature"] > 0
    assert {"validation_ece_before", "validation_ece_after", "test_ece_before", "test_ece_after"} <= set(calibration)
    assert card["versions"]["tensorflow"] and card["versions"]["keras"].startswith("3")


def test_synthetic_digits_are_learned(trained):
    _, card = trained
    assert card["mnist_test"]["accuracy"] > 0.5


def test_saved_model_loads_in_safe_mode_and_predicts_calibrated(trained, synthetic_dataset):
    out, card = trained
    assert load_keras_model(out) is not None
    predictor = Predictor(out, device="cpu", batch_size=64)
    assert predictor.temperature == pytest.approx(card["calibration"]["temperature"])
    probs = predictor.predict(synthetic_dataset.x_test[:70, :, :, None] / 255.0)
    assert probs.shape == (70, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    predictor.predict(synthetic_dataset.x_test[:5, :, :, None] / 255.0)
    assert predictor.traces() == 1  # padded short batches never retrace


def test_same_seed_same_split_and_weights_start(tmp_path, synthetic_dataset):
    a = train(synthetic_dataset, tmp_path / "a.keras", arch="seed", epochs=1, batch_size=64, seed=3, progress=False)
    b = train(synthetic_dataset, tmp_path / "b.keras", arch="seed", epochs=1, batch_size=64, seed=3, progress=False)
    assert a["calibration"]["validation_size"] == b["calibration"]["validation_size"]
    assert a["mnist_test"]["accuracy"] == pytest.approx(b["mnist_test"]["accuracy"], abs=0.05)


@pytest.mark.parametrize("arch", ["seed", "default"])
def test_same_seed_builds_the_same_initial_weights_and_another_seed_does_not(arch):
    from batchclf.model.architectures import build

    first, again, other = (build(arch, seed=seed).get_weights() for seed in (3, 3, 4))
    assert len(first) == len(again) == len(other) > 0
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    kernels = [i for i, w in enumerate(first) if w.ndim >= 2]  # biases start at zero whatever the seed
    assert kernels and all(not np.array_equal(first[i], other[i]) for i in kernels)
