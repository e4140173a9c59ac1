"""Shared fixtures: real MNIST when ../shared is beside the checkout, tiny models otherwise."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MNIST_DIR = Path(os.environ.get("BATCHCLF_TEST_MNIST", ROOT.parent / "shared" / "data" / "mnist"))
SHIPPED_MODEL = ROOT / "models" / "default.keras"
# Tests run without the shipped not-a-digit detector unless they ask for one (--detector, detector=):
# their tiny models read drawn bars, which the detector rightly calls no digits.  The variable
# reaches commands run as subprocesses; the fixture below covers "auto" inside this process.
os.environ.setdefault("BATCHCLF_DETECTOR", "off")


from batchclf import paths as _paths  # noqa: E402

# The real lookup, for the tests that check it (the fixture below hides it from all others).
REAL_DEFAULT_DETECTOR = _paths.default_detector


@pytest.fixture(autouse=True)
def no_default_detector(monkeypatch):
    from batchclf import paths

    monkeypatch.setattr(paths, "default_detector", lambda base=None: None)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (MNIST_DIR / "mnist.npz").is_file():
        pytest.skip(f"real MNIST not found at {MNIST_DIR} (CI keeps ../shared/data/mnist beside the checkout)")
    return MNIST_DIR


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    from batchclf.datasets.mnist import load

    return load(mnist_dir / "mnist.npz")


@pytest.fixture(scope="session")
def shipped_model() -> Path:
    if not SHIPPED_MODEL.is_file():
        pytest.skip(f"shipped model missing at {SHIPPED_MODEL}")
    return SHIPPED_MODEL


def synthetic_digits(n: int, seed: int = 0):
    """Crude but learnable 28x28 'digits': class k is a bright bar at row 2+2k, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = (rng.random((n, 28, 28)) * 40).astype(np.uint8)
    for image, label in zip(images, labels):
        image[2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return images, labels.astype(np.int64)


@pytest.fixture(scope="session")
def synthetic_dataset():
    from batchclf.datasets.mnist import Dataset

    x_train, y_train = synthetic_digits(600, seed=1)
    x_test, y_test = synthetic_digits(200, seed=2)
    return Dataset(x_train, y_train, x_test, y_test, source="synthetic")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A very small trained model with a card, for fast pipeline and CLI tests."""
    import keras

    x, y = synthetic_digits(512, seed=3)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x[..., None] / 255.0, y, epochs=3, verbose=0)
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    model.save(path)
    path.with_suffix(".json").write_text(
        json.dumps({"architecture": "tiny", "calibration": {"temperature": 1.0}, "review_below": 0.5})
    )
    return path


@pytest.fixture
def no_thread_leaks():
    """Fail a test that leaves threads running (as watchdog's own test-suite does)."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    for thread in leaked:
        thread.join(timeout=5)
    still = [t.name for t in leaked if t.is_alive()]
    assert not still, f"threads leaked: {still}"


@pytest.fixture(scope="session")
def ink_detector(tmp_path_factory) -> Path:
    """A detector that flags an image with much ink (mean > 0.2): a blot, not a thin digit."""
    import keras

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.layers[-1].set_weights([np.array([[60.0]], np.float32), np.array([-12.0], np.float32)])
    path = tmp_path_factory.mktemp("detectors") / "blots.keras"
    model.save(path)
    path.with_suffix(".json").write_text(json.dumps({"kind": "not-a-digit detector", "flag_above": 0.5}))
    return path


@pytest.fixture
def home(tmp_path):
    """A daemon home in tmp_path, with its empty inbox/."""
    (tmp_path / "inbox").mkdir()
    return tmp_path


@pytest.fixture
def clean_env(monkeypatch):
    """No BATCHCLF_* setting, config file or home from the environment of whoever runs the tests."""
    from batchclf.watch import settings
    from batchclf.watch.settings import SETTINGS

    for name in [s.env for s in SETTINGS] + [settings.CONFIG_ENV, "BATCHCLF_HOME"]:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def homes_in_pytest_tmp(monkeypatch):
    """pytest's tmp_path lives under /tmp, which the units refuse (PrivateTmp=yes hides it): lifted where a test
    only needs some home.  The refusal itself is tested in tests/test_operations_wiring.py, with the real list."""
    from batchclf.service import render

    monkeypatch.setattr(render, "PRIVATE_TMP", (), raising=False)


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    """``systemd-analyze``, or skip saying why (tests never install anything: .ci/run installs systemd)."""
    import shutil

    found = shutil.which("systemd-analyze")
    if not found:
        pytest.skip("systemd-analyze is missing: install systemd (CI installs it in .ci/run)")
    return found
