"""Loading MNIST-layout data sets: a Keras ``mnist.npz`` or a folder of IDX files.

Every array is validated (shape ``(N, 28, 28)`` uint8 images, integer labels
0-9, matching lengths) so a bad file fails here, with its name, instead of
deep inside training.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batchclf.errors import DataDownloadError, DataFileError, DataShapeError

IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IDX_UBYTE = 0x08
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def is_mnist(path: Path) -> bool:
    """Whether ``path`` holds MNIST (an ``.npz``, or a folder with IDX files) rather than labelled scans."""
    path = Path(path)
    if path.is_file():
        return path.suffix == ".npz"
    return any((path / name).exists() or (path / f"{name}.gz").exists() for name in IDX_NAMES.values())


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str

    @property
    def train_sha256(self) -> str:
        """Hash of the training arrays, equal for the npz and IDX forms of the same data."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.x_train, dtype=np.uint8).tobytes())
        digest.update(np.ascontiguousarray(self.y_train, dtype=np.uint8).tobytes())
        return digest.hexdigest()


def load(path: Path | None = None) -> Dataset:
    """Load MNIST from ``path`` (npz file or IDX folder), or Keras's download when ``None``."""
    if path is None:
        return _load_keras_download()
    path = Path(path)
    if path.is_dir():
        return load_idx_folder(path)
    if path.is_file():
        return load_npz(path)
    raise DataFileError(f"data path not found: {path}")


def load_npz(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise DataShapeError(f"{path}: missing arrays {', '.join(missing)} (expected Keras mnist.npz layout)")
            arrays = {key: archive[key] for key in NPZ_KEYS}
    except DataFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataFileError(f"cannot read {path}: {exc}") from exc
    return _validated(arrays, str(path))


def load_idx_folder(folder: Path) -> Dataset:
    arrays = {key: read_idx(_find_idx(folder, stem)) for key, stem in IDX_NAMES.items()}
    return _validated(arrays, str(folder))


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DataFileError(f"{folder}: no {stem}[.gz] file")


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzip or raw), checking magic number, dtype and size."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataFileError(f"cannot read {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataFileError(f"{path}: not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != IDX_UBYTE:
        raise DataFileError(f"{path}: IDX data type 0x{dtype_code:02x} is not unsigned byte")
    header_end = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header_end:
        raise DataFileError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header_end])
    expected = int(np.prod(shape))
    if len(raw) - header_end != expected:
        raise DataFileError(
            f"{path}: IDX header says {expected} values, file holds {len(raw) - header_end}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_end).reshape(shape)


def _validated(arrays: dict[str, np.ndarray], source: str) -> Dataset:
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataShapeError(f"{source}: x_{split} has shape {images.shape}, expected (N, 28, 28)")
        if images.dtype != np.uint8:
            raise DataShapeError(f"{source}: x_{split} has dtype {images.dtype}, expected uint8")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataShapeError(
                f"{source}: y_{split} has shape {labels.shape}, expected ({len(images)},)"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataShapeError(f"{source}: y_{split} has dtype {labels.dtype}, expected integers")
        if len(labels) and (labels.min() < 0 or labels.max() > 9):
            raise DataShapeError(f"{source}: y_{split} has labels outside 0-9")
    return Dataset(
        x_train=np.asarray(arrays["x_train"]),
        y_train=np.asarray(arrays["y_train"], dtype=np.int64),
        x_test=np.asarray(arrays["x_test"]),
        y_test=np.asarray(arrays["y_test"], dtype=np.int64),
        source=source,
    )


MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"  # what keras.datasets.mnist fetches
PROBE_SECONDS = 5


def keras_cache() -> Path:
    """Where Keras keeps its downloads (``$KERAS_HOME``, else ``~/.keras``)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def cached_download() -> Path | None:
    """Keras's cached ``mnist.npz``, if an earlier download left one (Keras falls back to /tmp/.keras when its home is read-only)."""
    for home in (keras_cache(), Path("/tmp/.keras")):
        if (home / "datasets" / "mnist.npz").is_file():
            return home / "datasets" / "mnist.npz"
    return None


def require_available(path: Path | None, purpose: str) -> None:
    """Before TensorFlow starts: say now, in one line, when ``purpose`` will find no MNIST.

    ``--data`` must exist; without it, Keras needs a cached copy or a download
    that answers (a HEAD request, a few seconds at most), else the user would
    learn it only after TensorFlow's start-up and a failed fetch.
    """
    if path is not None:
        if not Path(path).exists():
            raise DataFileError(f"data path not found: {path}")
        return
    if cached_download() is not None:
        return
    problem = _download_problem()
    if problem is not None:
        raise DataDownloadError(
            f"{purpose} needs MNIST: pass --data PATH (a mnist.npz or a folder of IDX files); "
            f"no copy is cached in {keras_cache() / 'datasets'} and the download is not reachable ({problem})"
        )


def _download_problem() -> str | None:
    """None when MNIST's download URL answers; else why not."""
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(MNIST_URL, method="HEAD"), timeout=PROBE_SECONDS):
            return None
    except (OSError, ValueError) as exc:  # URLError, timeouts, HTTP errors are OSErrors
        return " ".join(str(getattr(exc, "reason", None) or exc).split())[:200] or exc.__class__.__name__


def _load_keras_download() -> Dataset:
    from keras.datasets import mnist  # heavy: only on this path

    try:
        (x_train, y_train), (x_test, y_test) = mnist.load_data()
    except Exception as exc:  # keras raises plain Exception subclasses for network errors
        raise DataDownloadError(
            f"could not download MNIST ({exc.__class__.__name__}: {exc}); "
            "pass --data PATH to a mnist.npz or a folder of IDX files"
        ) from exc
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return _validated(arrays, "keras.datasets.mnist")
