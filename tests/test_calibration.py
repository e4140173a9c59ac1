import numpy as np

from batchclf.model.calibration import apply_temperature, expected_calibration_error, fit_temperature
from batchclf.model.metrics import confusion_matrix, summary


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_fit_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 10))
    labels = np.array([rng.choice(10, p=p) for p in softmax(logits)])  # calibrated at T=1
    overconfident = softmax(logits * 3.0)  # as if the true temperature were 3
    temperature = fit_temperature(overconfident, labels)
    assert 2.6 < temperature < 3.4
    before = expected_calibration_error(overconfident, labels)
    after = expected_calibration_error(apply_temperature(overconfident, temperature), labels)
    assert after < before / 2


def test_ece_is_zero_when_confidence_matches_accuracy():
    probs = np.full((10, 10), 0.0)
    probs[:, 0] = 1.0
    labels = np.zeros(10, int)
    assert expected_calibration_error(probs, labels) == 0.0
    labels[:5] = 1  # half wrong at confidence 1.0
    assert abs(expected_calibration_error(probs, labels) - 0.5) < 1e-9


def test_apply_temperature_keeps_argmax_and_normalises():
    probs = softmax(np.random.default_rng(1).normal(size=(50, 10)))
    scaled = apply_temperature(probs, 2.5)
    np.testing.assert_array_equal(scaled.argmax(1), probs.argmax(1))
    np.testing.assert_allclose(scaled.sum(1), 1.0, rtol=1e-6)


def test_summary_confusion_and_per_class():
    labels = np.array([0, 0, 1, 2])
    probs = np.eye(10)[[0, 1, 1, 2]]
    result = summary(probs, labels)
    assert result["accuracy"] == 0.75
    assert result["per_class"]["0"] == 0.5
    assert result["per_class"]["3"] is None
    assert result["confusion"][0][1] == 1
    assert confusion_matrix(labels, labels).trace() == 4
