"""Loading a saved model safely and predicting through one compiled function."""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batchclf.model import card as cards
from batchclf.model import device as devices
from batchclf.model import lite_runtime
from batchclf.model import second_look
from batchclf.model import trust
from batchclf.model.calibration import apply_temperature
from batchclf.errors import DeviceError, ModelLoadError, ModelNotFoundError


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_keras_model(path: Path):
    """The one door every model load goes through (classifier, detector, a fine-tune's base, Ray actors, ``train --model``).

    Before TensorFlow starts: the file must be a Keras model file and the
    installed Keras must have every known safe-mode fix (:mod:`batchclf.model.trust`).
    Then safe mode is on (no Lambda or other code from the file), and a
    refusal is one line (:func:`batchclf.model.trust.load_failure`), never the layer config Keras appends.
    """
    path = Path(path)
    trust.check_before_load(path)
    devices.tensorflow()
    import keras

    trust.require_safe_keras(keras.__version__)  # the module really imported, in case another copy shadows the installed one
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises ValueError, OSError, zipfile errors...
        raise trust.load_failure(path, exc) from exc


def describe_detector(path: Path | None) -> dict | None:
    """The not-a-digit detector as job metadata records it (None: no detector), read without TensorFlow."""
    if path is None:
        return None
    path = Path(path)
    if not path.exists():
        raise ModelNotFoundError(f"detector file not found: {path}")
    trust.check_model_file(path)
    card = cards.read(path, detector=True)  # checks flag_above is there, a number in [0, 1]
    return {"file": path.name, "path": str(path), "sha256": sha256_file(path), "flag_above": float(card["flag_above"])}


def second_look_wanted(card: dict, asked: bool | None) -> bool:
    """The second look (model.second_look) as the card says (the shipped card measured its curve with it), unless told."""
    return bool(card.get("second_look", False) if asked is None else asked)


def model_description(path: Path, card: dict, sha256: str, input_scale: float, detector: dict | None,
                      second_look: bool, runtime: str, lite_files: dict | None = None) -> dict:
    """The model as job metadata records it (every job names the exact file it ran): one shape for the predictor and the spec."""
    return {
        "file": path.name,
        "path": str(path),
        "sha256": sha256,
        "architecture": card.get("architecture"),
        "card_accuracy": card.get("mnist_test", {}).get("accuracy"),
        "temperature": cards.temperature(card),
        "card": bool(card),  # a model trained elsewhere: temperature 1 and the default review threshold
        "input_scale": input_scale,
        "detector": detector,
        "second_look": second_look,
        "runtime": runtime,  # tensorflow, or litert-QUANTISATION running the sidecars named in lite
        "lite": lite_files,
    }


SUPPORTED_INPUTS = ((28, 28, 1), (28, 28), (784,))


def model_input_shape(model, path: Path) -> tuple[int, ...]:
    """The per-image input shape of ``model``, if it is one we can feed a 28x28 digit to."""
    shape = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    if shape not in SUPPORTED_INPUTS:
        found = model.input_shape
        raise ModelLoadError(
            f"{path}: the model takes input of shape {found}; batchclf feeds (28, 28, 1), (28, 28) or (784,) digits"
        )
    outputs = model.output_shape
    if isinstance(outputs, list) or tuple(outputs[1:]) != (10,):
        raise ModelLoadError(f"{path}: the model gives output of shape {outputs}; batchclf needs 10 class probabilities")
    return shape


def check_detector_shape(model, path: Path) -> None:
    """A detector takes the classifier's (28, 28, 1) inputs and gives one probability each."""
    if isinstance(model.input_shape, list) or tuple(model.input_shape[1:]) != (28, 28, 1) or \
            isinstance(model.output_shape, list) or tuple(model.output_shape[1:]) != (1,):
        raise ModelLoadError(f"{path}: a not-a-digit detector takes (28, 28, 1) and gives (1,); this one takes "
                             f"{model.input_shape} and gives {model.output_shape}")


@dataclass(frozen=True)
class Scores:
    """What one batch of inputs got: calibrated class probabilities, and the not-a-digit detector's say."""

    probabilities: np.ndarray  # (N, 10)
    not_digit: np.ndarray | None = None  # (N,) the detector's probability that an input is not one digit; None: no detector
    flag_above: float = 1.0  # the detector card's threshold
    looked_again: np.ndarray | None = None  # (N,) rows the second look reconsidered; None: no second look asked

    @property
    def flagged(self) -> np.ndarray | None:
        return None if self.not_digit is None else self.not_digit > self.flag_above


class Predictor:
    """A model plus its card, predicting calibrated probabilities in fixed-size batches.

    The runtime is picked once (:func:`choose_runtime`): on a CPU, the model's
    LiteRT sidecars when its card (and the detector's) names valid ones
    (:mod:`batchclf.model.lite_runtime`, no TensorFlow at all); else TensorFlow,
    whose prediction function is traced once for ``(batch_size, 28, 28, 1)``.
    Either way the last, short batch is padded, so no batch ever changes
    shape; with a ``detector`` (:mod:`batchclf.model.detector`) the same call
    also gives its not-a-digit probabilities.
    """

    def __init__(self, model_path: Path, device: str = "auto", batch_size: int | None = None, input_scale: float | None = None,
                 detector: Path | None = None, second_look: bool | None = None, review_below: float | None = None,
                 target_error: float | None = None, runtime: str = "auto"):
        self.path = Path(model_path)
        # A bad model file, card, detector or Keras fails here, in one line, before TensorFlow starts.
        trust.check_before_load(self.path)
        self.card = cards.read(self.path)
        # The review threshold, resolved once for every row this predictor labels (the second look needs it too).
        self.review = cards.review_threshold(self.card, review_below, target_error, self.path.name)
        if not self.review.get("met", True):
            logging.getLogger(__name__).warning(
                "%s's card measured no threshold with at most %.3g%% wrong among accepted digits; using the strictest, "
                "%g (%.3g%% measured)", self.path.name, 100 * target_error, self.review["review_below"],
                100 * self.review["expected_error"])
        self.detector_path = Path(detector) if detector is not None else None
        self.detector_info = describe_detector(detector)
        self.flag_above = self.detector_info["flag_above"] if self.detector_info else 1.0
        self.temperature = cards.temperature(self.card)
        self.sha256 = sha256_file(self.path)
        # Pixels in [0, 1] unless the user or the card says the model was trained on raw 0-255 values.
        self.input_scale = cards.input_scale(self.card, input_scale)
        self.second_look = second_look_wanted(self.card, second_look)
        self.device = runtime_device(runtime, device)
        self.batch_size = int(batch_size or devices.DEFAULT_BATCH[devices.kind(self.device)])
        plan = choose_runtime(runtime, devices.kind(self.device), self.path, self.card, self.sha256,
                              self.detector_path, self.detector_info)
        if plan.lite is not None:
            try:
                self._networks = LiteNetworks(plan, self.batch_size, self.input_scale, self.flag_above)
            except lite_runtime.SidecarRefused as exc:  # LiteRT itself would not build or run it
                plan = refused(runtime, str(exc))
        if plan.lite is None:
            self._networks = TensorflowNetworks(self.path, self.detector_path, self.device, self.batch_size,
                                                self.input_scale)
        self.runtime = plan.runtime
        self.lite_files = plan.files
        self.model, self.detector = self._networks.model, self._networks.detector
        self.input_shape = self._networks.input_shape

    @property
    def review_below(self) -> float:
        return self.review["review_below"]

    @property
    def name(self) -> str:
        return self.path.name

    def describe(self) -> dict:
        """The model as job metadata records it (every job names the exact file it ran, and the runtime that ran it)."""
        return model_description(self.path, self.card, self.sha256, self.input_scale, self.detector_info, self.second_look,
                                 self.runtime, self.lite_files)

    def warm_up(self) -> None:
        self.predict(np.zeros((1, 28, 28, 1), np.float32))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities ``(N, 10)`` for model inputs ``(N, 28, 28, 1)``."""
        return self.score(images).probabilities

    def score(self, images: np.ndarray) -> Scores:
        """Calibrated class probabilities and (with a detector) not-a-digit probabilities for inputs ``(N, 28, 28, 1)``.

        With the second look on, the rows below the review threshold that the detector did not flag
        are shown again shifted a pixel each way, and get the mean of the five looks.
        """
        images = np.asarray(images, dtype=np.float32).reshape(-1, 28, 28, 1)
        if not len(images):
            return Scores(np.zeros((0, 10), np.float32), None if self.detector is None else np.zeros(0, np.float32),
                          self.flag_above)
        raw, not_digit = self._networks.score(images)
        probabilities = apply_temperature(raw, self.temperature)
        scores = Scores(probabilities, not_digit, self.flag_above)
        if not self.second_look:
            return scores
        rows = second_look.doubtful(probabilities, self.review_below, scores.flagged)
        looked = second_look.reconsider(probabilities, images, rows, self._looked_again)
        return Scores(looked, scores.not_digit, self.flag_above, rows)

    def _looked_again(self, copies: np.ndarray) -> np.ndarray:
        return apply_temperature(self._networks.classify(copies), self.temperature)

    def traces(self) -> int:
        """How many times the prediction function was traced (1 once warmed up; LiteRT's shape is fixed once: 1)."""
        return self._networks.traces()


RUNTIMES = ("auto", "tensorflow", "litert")


@dataclass(frozen=True)
class RuntimePlan:
    """Which runtime a predictor uses: ``tensorflow``, or ``litert-QUANTISATION`` with the checked sidecars."""

    runtime: str
    lite: tuple | None = None  # (classifier Sidecars, detector Sidecars or None)
    files: dict | None = None  # the sidecar files job metadata names: {"classifier": {...}, "detector": {...}}


def runtime_device(runtime: str, device: str) -> str:
    """The TF device string; ``litert`` runs on the CPU (asking nobody), and refuses an explicit ``--device gpu``."""
    if runtime not in RUNTIMES:
        raise DeviceError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    if runtime == "litert":
        if device == "gpu":
            raise DeviceError("runtime litert runs on the CPU; it cannot run with --device gpu")
        devices.select(device)  # an unknown device name still fails as it always did
        return "/CPU:0"
    return devices.select(device)


def refused(runtime: str, why: str) -> RuntimePlan:
    """TensorFlow instead of the sidecars, with one warning line saying why; ``litert`` asked for explicitly: an error."""
    if runtime == "litert":
        raise ModelLoadError(f"runtime litert: {why}")
    logging.getLogger(__name__).warning("running TensorFlow, not LiteRT: %s", why)
    return RuntimePlan("tensorflow")


def choose_runtime(runtime: str, device_kind: str, path: Path, card: dict, sha256: str,
                   detector_path: Path | None = None, detector_info: dict | None = None) -> RuntimePlan:
    """LiteRT on a CPU when the classifier (and the detector, if one is used) have valid sidecars; else TensorFlow.

    A model whose card names no sidecar (one trained or brought by the user) runs TensorFlow without a word;
    a named sidecar that is missing, changed, or made from another model file is never read by LiteRT:
    TensorFlow runs and one warning line says why.  Nothing here imports TensorFlow.
    """
    if runtime == "tensorflow" or device_kind != "cpu":
        return RuntimePlan("tensorflow")
    if not card.get("lite") and runtime == "auto":
        return RuntimePlan("tensorflow")
    try:
        classifier = lite_runtime.read_sidecars(path, card, sha256)
        files = {"classifier": _sidecar_record(card)}
        detector = None
        if detector_path is not None:
            detector_card = cards.read(detector_path, detector=True)
            detector = lite_runtime.read_sidecars(detector_path, detector_card, detector_info["sha256"])
            files["detector"] = _sidecar_record(detector_card)
    except lite_runtime.SidecarRefused as exc:
        return refused(runtime, str(exc))
    return RuntimePlan(f"litert-{card['lite']['quantisation']}", (classifier, detector), files)


def _sidecar_record(card: dict) -> dict:
    entry = card["lite"]
    record = {"file": entry["file"], "sha256": entry["sha256"], "quantisation": entry["quantisation"]}
    if entry.get("referee"):
        record["referee"] = {key: entry["referee"][key] for key in ("file", "sha256", "margin")}
    return record


class LiteNetworks:
    """The classifier (and detector) sidecars in LiteRT: the same outputs as :class:`TensorflowNetworks`, no TensorFlow."""

    def __init__(self, plan: RuntimePlan, batch_size: int, input_scale: float, flag_above: float):
        classifier, detector = plan.lite
        self.model = lite_runtime.Refereed(classifier, batch_size)
        self.detector = None if detector is None else lite_runtime.Refereed(detector, batch_size, boundary=flag_above)
        if self.model.width != 10 or (self.detector is not None and self.detector.width != 1):
            raise lite_runtime.SidecarRefused("the sidecars give the wrong outputs (a classifier 10, a detector 1)")
        self.scale = input_scale
        self.input_shape = lite_runtime.INPUT
        # A LiteRT interpreter is not thread-safe (TensorFlow's compiled function is): one caller at a time.
        self._lock = threading.Lock()

    def score(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        with self._lock:
            probabilities = self.model.padded(self._scaled(images))
            return probabilities, None if self.detector is None else self.detector.padded(images)[:, 0]

    def classify(self, images: np.ndarray) -> np.ndarray:
        with self._lock:
            return self.model.padded(self._scaled(images))

    def _scaled(self, images: np.ndarray) -> np.ndarray:
        return images if self.scale == 1.0 else images * np.float32(self.scale)

    def traces(self) -> int:
        return 1


class TensorflowNetworks:
    """The Keras classifier (and detector) in one compiled TensorFlow function, traced once for the batch shape."""

    def __init__(self, path: Path, detector_path: Path | None, device: str, batch_size: int, input_scale: float):
        tf = devices.tensorflow()
        self.device, self.batch_size = device, batch_size
        with tf.device(device):
            self.model = load_keras_model(path)
            self.detector = load_keras_model(detector_path) if detector_path is not None else None
        if self.detector is not None:
            check_detector_shape(self.detector, detector_path)
        self.input_shape = model_input_shape(self.model, path)
        spec = tf.TensorSpec([batch_size, 28, 28, 1], tf.float32)
        model, shape, scale = self.model, (batch_size, *self.input_shape), input_scale
        detector = self.detector

        @tf.function(input_signature=[spec], reduce_retracing=False)
        def forward(images):
            # The one adapter between our 28x28x1 inputs and what the model takes (784, 28x28 or 28x28x1).
            probabilities = model(tf.reshape(images * scale, shape), training=False)
            if detector is None:
                return probabilities, tf.zeros([0])
            return probabilities, tf.reshape(detector(images, training=False), [-1])

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)], reduce_retracing=True)
        def classify_only(images):
            # The second look's shifted copies: the classifier alone, on as many rows as there are doubtful ones.
            return model(tf.reshape(images * scale, (-1, *shape[1:])), training=False)

        self._forward = forward
        self._classify_only = classify_only

    def score(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        import tensorflow as tf

        outputs, flags = [], []
        with tf.device(self.device):
            for start in range(0, len(images), self.batch_size):
                chunk = images[start : start + self.batch_size]
                real = len(chunk)
                if real < self.batch_size:
                    chunk = np.concatenate([chunk, np.zeros((self.batch_size - real, 28, 28, 1), np.float32)])
                probabilities, not_digit = self._forward(tf.constant(chunk))
                outputs.append(probabilities.numpy()[:real])
                flags.append(not_digit.numpy()[:real])
        return np.concatenate(outputs), None if self.detector is None else np.concatenate(flags)

    def classify(self, copies: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        with tf.device(self.device):
            return self._classify_only(tf.constant(copies)).numpy()

    def traces(self) -> int:
        return self._forward.experimental_get_tracing_count()
