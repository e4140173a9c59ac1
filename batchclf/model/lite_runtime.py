"""The CPU inference runtime: a model's LiteRT sidecar (``NAME.int8.tflite``), run without TensorFlow.

On a CPU the int8 sidecar costs about a quarter of TensorFlow's time per digit
(docs/models.md, "Inference runtime"), and a job that runs it never imports
TensorFlow (seconds of start-up, hundreds of MB).  The sidecar is written by
:mod:`batchclf.model.lite_export`, which records it in the model's card.

A sidecar is a file handed to us like the model itself, so it is checked
once, here, before any byte of it reaches LiteRT: a regular file of bounded
size, the flatbuffer identifier ``TFL3``, its sha256 the card's, the card's
``source_sha256`` the ``.keras`` file's (a model changed after its export
never runs a stale sidecar), builtin operators only (LiteRT runs no code from
a file then), one float32 input ``(N, 28, 28, 1)`` and one float32 output
``(N, 10)`` or ``(N, 1)``.  A refusal is a :class:`SidecarRefused` naming why;
the predictor then runs TensorFlow and says so in one warning line.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batchclf.model.device import native_chatter_to_debug_log

# The referee runs only the few rows near a decision: a small fixed batch keeps its padding cheap.
REFEREE_BATCH = 8
# Rows left over after the full batches (the second look's shifted copies of a batch's doubtful digits, a
# job's last batch, the daemon's small batches) go through an interpreter of this batch instead: padded to
# a full 256 they cost a whole batch each (per-batch scoring cost 1.6x one call over the same digits).
TAIL_BATCH = 32
# A real sidecar is ~0.4 MB (int8) or ~1.5 MB (fp32); far above that is not one of ours.
MAX_SIDECAR_BYTES = 64 << 20
IDENTIFIER = b"TFL3"  # bytes 4-8 of every TFLite flatbuffer
INPUT = (28, 28, 1)


class SidecarRefused(Exception):
    """The sidecar is not used; the message says why (one line)."""


def cores() -> int:
    """The cores this process may run on (a cgroup or taskset may allow fewer than the machine has)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Sidecars:
    """A model's checked sidecar bytes: the quantised network, and the float one that referees rows near a decision."""

    data: bytes
    name: str
    referee: bytes | None = None
    margin: float = 0.0


def sidecar_names(card: dict) -> list[str]:
    """The file names of the sidecars a (schema-checked) card names, beside its model: what travels with a model."""
    entry = card.get("lite") or {}
    return [name for name in (entry.get("file"), (entry.get("referee") or {}).get("file")) if name]


def read_sidecars(model_path: Path, card: dict, model_sha256: str) -> Sidecars:
    """The checked sidecars the card names; :class:`SidecarRefused` when there are none or one is bad.

    The bytes returned are the ones hashed: LiteRT gets them from memory, so the files cannot change in between.
    """
    entry = card.get("lite")
    if not entry:
        raise SidecarRefused(f"{Path(model_path).name}'s card names no LiteRT sidecar")
    if entry["source_sha256"] != model_sha256:
        raise SidecarRefused(f"{entry['file']} was made from another {Path(model_path).name} (the model changed "
                             "after its export: run python -m batchclf.model.lite_export again)")
    data = _read_checked(Path(model_path).with_name(entry["file"]), entry["sha256"])
    referee = entry.get("referee")
    if not referee:
        return Sidecars(data, entry["file"])
    return Sidecars(data, entry["file"], _read_checked(Path(model_path).with_name(referee["file"]), referee["sha256"]),
                    float(referee["margin"]))


def _read_checked(path: Path, sha256: str) -> bytes:
    """One sidecar file's bytes, if it is what the card says (the schema allows plain file names only: beside the model)."""
    data = _read_bounded(path)
    if data[4:8] != IDENTIFIER:
        raise SidecarRefused(f"{path.name} is not a LiteRT model (no {IDENTIFIER.decode()} identifier)")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise SidecarRefused(f"{path.name}'s sha256 is not the one its card records")
    _require_builtin_ops(data, path.name)
    return data


def _read_bounded(path: Path) -> bytes:
    try:
        # O_NONBLOCK: a FIFO put where the sidecar should be is opened without waiting for a writer, then refused.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SidecarRefused(f"{path.name} is missing") from None
    except OSError as exc:
        raise SidecarRefused(f"cannot open {path.name}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise SidecarRefused(f"{path.name} is not a regular file")
        data = handle.read(MAX_SIDECAR_BYTES + 1)
    if len(data) > MAX_SIDECAR_BYTES:
        raise SidecarRefused(f"{path.name} is larger than {MAX_SIDECAR_BYTES >> 20} MB")
    return data


def _require_builtin_ops(data: bytes, name: str) -> None:
    """Builtin operators only: a custom (or TensorFlow "Flex") operator would run code LiteRT looks up by name."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(data, 0)
        codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
        builtin = [max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) for code in codes]
        subgraphs = model.SubgraphsLength()
    except Exception as exc:  # flatbuffers raises whatever a broken offset leads to
        raise SidecarRefused(f"{name} is not a readable LiteRT model ({exc.__class__.__name__})") from None
    if subgraphs != 1:
        raise SidecarRefused(f"{name} has {subgraphs} subgraphs; batchclf runs one")
    if schema.BuiltinOperator.CUSTOM in builtin:
        raise SidecarRefused(f"{name} uses a custom operator; batchclf runs builtin operators only")


class LiteNetwork:
    """One sidecar in a LiteRT interpreter, fed fixed ``(batch_size, 28, 28, 1)`` batches (resized once, never again)."""

    def __init__(self, data: bytes, batch_size: int, name: str, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        try:
            with native_chatter_to_debug_log():  # "Created TensorFlow Lite XNNPACK delegate" on stderr
                self._interpreter = Interpreter(model_content=data, num_threads=threads or cores())
        except Exception as exc:  # LiteRT raises ValueError/RuntimeError on a model it cannot build
            raise SidecarRefused(f"LiteRT cannot load {name}: {_first_line(exc)}") from None
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or tuple(inputs[0]["shape_signature"][1:]) != INPUT or inputs[0]["dtype"] != np.float32:
            raise SidecarRefused(f"{name} does not take float32 (N, 28, 28, 1) inputs")
        if len(outputs) != 1 or len(outputs[0]["shape_signature"]) != 2 or outputs[0]["dtype"] != np.float32 or \
                int(outputs[0]["shape_signature"][1]) not in (1, 10):
            raise SidecarRefused(f"{name} does not give float32 (N, 10) or (N, 1) outputs")
        self.batch_size = int(batch_size)
        self._input, self._output = inputs[0]["index"], outputs[0]["index"]
        try:
            self._interpreter.resize_tensor_input(self._input, [self.batch_size, *INPUT], strict=True)
            with native_chatter_to_debug_log():
                self._interpreter.allocate_tensors()
        except Exception as exc:
            raise SidecarRefused(f"LiteRT cannot run {name} at batch {self.batch_size}: {_first_line(exc)}") from None
        self.width = int(self._interpreter.get_output_details()[0]["shape"][1])
        self._tail = LiteNetwork(data, TAIL_BATCH, name, threads) if self.batch_size > TAIL_BATCH else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Outputs ``(batch_size, width)`` for exactly ``batch_size`` inputs."""
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(batch, np.float32))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)

    def padded(self, images: np.ndarray) -> np.ndarray:
        """Outputs ``(N, width)`` for any ``N`` inputs: fixed batches, the last one padded with blank inputs.

        Up to half a batch left after the full batches goes through the small tail interpreter instead.
        """
        full = len(images) // self.batch_size * self.batch_size
        tail = self._tail if self._tail is not None and len(images) - full <= self.batch_size // 2 else None
        head = images[:full] if tail is not None else images
        out = []
        for start in range(0, len(head), self.batch_size):
            chunk = head[start : start + self.batch_size]
            real = len(chunk)
            if real < self.batch_size:
                chunk = np.concatenate([chunk, np.zeros((self.batch_size - real, *INPUT), np.float32)])
            out.append(self(chunk)[:real])
        if tail is not None and len(images) > full:
            out.append(tail.padded(images[full:]))
        return np.concatenate(out) if out else np.zeros((0, self.width), np.float32)


class Refereed:
    """A quantised network whose rows near a decision are scored again by the float one (the referee).

    Quantising moves an output by a few hundredths at most (``max_probability_change`` in the card); only a row
    that close to a decision can change it: a classifier's top two classes within ``margin``, a detector's score
    within ``margin`` of its ``boundary`` (``flag_above``).  Those rows take the float network's outputs, so
    decisions agree with the Keras model's for a few extra float rows per batch.
    """

    def __init__(self, sidecars: Sidecars, batch_size: int, boundary: float | None = None, threads: int | None = None):
        self.network = LiteNetwork(sidecars.data, batch_size, sidecars.name, threads)
        self.referee = None if sidecars.referee is None else \
            LiteNetwork(sidecars.referee, REFEREE_BATCH, f"{sidecars.name}'s referee", threads)
        if self.referee is not None and self.referee.width != self.network.width:
            raise SidecarRefused(f"{sidecars.name}'s referee gives {self.referee.width} outputs, not {self.network.width}")
        self.margin, self.boundary = sidecars.margin, boundary
        self.width = self.network.width

    def near(self, outputs: np.ndarray) -> np.ndarray:
        """The rows whose decision a quantisation error could change (a bool mask)."""
        if self.width == 1:
            return np.abs(outputs[:, 0] - (0.5 if self.boundary is None else self.boundary)) < self.margin
        top = np.partition(outputs, -2, axis=1)
        return top[:, -1] - top[:, -2] < self.margin

    def padded(self, images: np.ndarray) -> np.ndarray:
        outputs = self.network.padded(images)
        if self.referee is not None and len(outputs):
            rows = self.near(outputs)
            if rows.any():
                outputs = np.array(outputs, copy=True)
                outputs[rows] = self.referee.padded(images[rows])
        return outputs


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:200]
