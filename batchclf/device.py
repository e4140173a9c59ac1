"""Which device runs inference and training: the only place that asks TensorFlow about GPUs."""

from __future__ import annotations

from .errors import DeviceError

CHOICES = ("auto", "cpu", "gpu")
# A GPU only pays off with big batches; the CPU prefers cache-sized ones.
DEFAULT_BATCH = {"cpu": 256, "gpu": 2048}


def select(requested: str = "auto") -> str:
    """``auto`` -> the first GPU if TensorFlow sees one, else the CPU; returns a TF device string."""
    import tensorflow as tf

    if requested not in CHOICES:
        raise DeviceError(f"unknown device {requested!r}; choose one of: {', '.join(CHOICES)}")
    gpus = tf.config.list_physical_devices("GPU")
    if requested == "gpu" and not gpus:
        raise DeviceError("--device gpu: TensorFlow sees no GPU (install batchclf[gpu] and check the CUDA driver)")
    if requested == "cpu" or not gpus:
        return "/CPU:0"
    return "/GPU:0"


def kind(device_name: str) -> str:
    return "gpu" if "GPU" in device_name.upper() else "cpu"
