"""Which device runs inference and training: the only place that asks TensorFlow about GPUs.

It is also where TensorFlow is first imported (:func:`tensorflow`), so its
start-up chatter is handled in one place.  A CPU job on the LiteRT runtime
(:mod:`batchclf.model.lite_runtime`) never imports TensorFlow, so ``auto``
first looks, without TensorFlow, whether a GPU can be there at all
(:func:`gpu_possible`), and asks TensorFlow only if one can.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

from batchclf.errors import DeviceError

CHOICES = ("auto", "cpu", "gpu")
# A GPU only pays off with big batches; the CPU prefers cache-sized ones.
DEFAULT_BATCH = {"cpu": 256, "gpu": 2048}

log = logging.getLogger("batchclf.model.device")

# TensorFlow's C++ runtime writes these straight to file descriptor 2 before its
# logging is set up, so TF_CPP_MIN_LOG_LEVEL cannot hold them back: CUDA probing
# on a machine without a GPU, plugin registration, CPU feature notes.  In an
# operator's journal they read like failures ("E0000 ... failed call to cuInit").
_CHATTER = re.compile(
    r"absl::InitializeLog|cudart_stub|Could not find cuda drivers|failed call to cuInit|"
    r"Unable to register cu\w+ factory|computation placer already registered|TF-TRT Warning|"
    r"oneDNN custom operations are on|optimized to use available CPU instructions|"
    r"rebuild TensorFlow with the appropriate compiler flags|Attempting to register factory|"
    r"Created TensorFlow Lite XNNPACK delegate"  # LiteRT (batchclf.model.lite_runtime), once per interpreter
)


@contextlib.contextmanager
def native_chatter_to_debug_log():
    """Catch what native code writes to stderr meanwhile; known chatter goes to the debug log, the rest to stderr."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2: nothing to catch
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines = sink.read().decode("utf-8", "replace").splitlines()
            for line in lines:
                if _CHATTER.search(line):
                    log.debug("tensorflow: %s", line)
                elif line.strip():
                    sys.stderr.write(line + "\n")


def tensorflow():
    """``import tensorflow``, with its native start-up chatter kept out of stderr."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with native_chatter_to_debug_log():
        import tensorflow as tf

        # The first device query probes CUDA ("failed call to cuInit" without a GPU): done here, caught, rather
        # than at the first model load (select() no longer asks TensorFlow when no GPU can be there).
        tf.config.list_physical_devices("GPU")
    return tf


# What a GPU TensorFlow can use leaves on Linux before any library is loaded: the NVIDIA kernel driver
# (/proc/driver/nvidia/version, /dev/nvidia0...), AMD's ROCm compute device (/dev/kfd) and WSL2's GPU
# bridge (/dev/dxg).  Without any of them TensorFlow finds no GPU either (it would only spend seconds
# starting and probing CUDA to say so).
GPU_TRACES = ("/proc/driver/nvidia/version", "/dev/kfd", "/dev/dxg")
NVIDIA_DEVICES = ("/dev", "nvidia[0-9]*")


def gpu_possible() -> bool:
    """Whether a GPU may be there for TensorFlow; False only where that is sure without importing it.

    Only Linux is judged here: elsewhere TensorFlow's GPUs come through plug-ins (Metal on macOS,
    DirectML on Windows) that leave no such trace, so there it is asked, as before.
    """
    if not sys.platform.startswith("linux"):
        return True
    if any(os.path.exists(path) for path in GPU_TRACES):
        return True
    folder, pattern = NVIDIA_DEVICES
    try:
        return any(Path(folder).glob(pattern))
    except OSError:
        return True  # cannot look: ask TensorFlow


def select(requested: str = "auto") -> str:
    """``auto`` -> the first GPU if TensorFlow sees one, else the CPU; returns a TF device string.

    ``cpu``, and ``auto`` where no GPU can be there (:func:`gpu_possible`), answer without importing TensorFlow.
    """
    if requested not in CHOICES:
        raise DeviceError(f"unknown device {requested!r}; choose one of: {', '.join(CHOICES)}")
    if requested == "cpu" or (requested == "auto" and not gpu_possible()):
        return "/CPU:0"
    tf = tensorflow()
    with native_chatter_to_debug_log():  # the first device query probes CUDA
        gpus = tf.config.list_physical_devices("GPU")
    if requested == "gpu" and not gpus:
        raise DeviceError("--device gpu: TensorFlow sees no GPU (install batchclf[gpu] and check the CUDA driver)")
    if requested == "cpu" or not gpus:
        return "/CPU:0"
    return "/GPU:0"


def kind(device_name: str) -> str:
    return "gpu" if "GPU" in device_name.upper() else "cpu"
