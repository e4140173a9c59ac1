import gzip
import struct

import numpy as np
import pytest

from batchclf.datasets.mnist import Dataset, load, read_idx
from batchclf.errors import DataFileError, DataShapeError


def write_idx(path, array, gz=True):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    opener = gzip.open if gz else open
    with opener(path, "wb") as handle:
        handle.write(payload)


def small_arrays(n_train=12, n_test=5):
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }


def write_idx_folder(folder, arrays, gz=True):
    names = {
        "x_train": "train-images-idx3-ubyte",
        "y_train": "train-labels-idx1-ubyte",
        "x_test": "t10k-images-idx3-ubyte",
        "y_test": "t10k-labels-idx1-ubyte",
    }
    for key, stem in names.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arrays[key], gz=gz)


def test_npz_roundtrip(tmp_path):
    arrays = small_arrays()
    np.savez(tmp_path / "mnist.npz", **arrays)
    data = load(tmp_path / "mnist.npz")
    assert isinstance(data, Dataset)
    np.testing.assert_array_equal(data.x_train, arrays["x_train"])
    np.testing.assert_array_equal(data.y_test, arrays["y_test"])


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_gz_and_raw_match_npz(tmp_path, gz):
    arrays = small_arrays()
    write_idx_folder(tmp_path, arrays, gz=gz)
    np.savez(tmp_path / "mnist.npz", **arrays)
    from_idx, from_npz = load(tmp_path), load(tmp_path / "mnist.npz")
    np.testing.assert_array_equal(from_idx.x_train, from_npz.x_train)
    assert from_idx.train_sha256 == from_npz.train_sha256


def test_real_mnist_idx_and_npz_agree(mnist_dir):
    from_idx, from_npz = load(mnist_dir), load(mnist_dir / "mnist.npz")
    assert from_idx.x_train.shape == (60000, 28, 28)
    assert np.bincount(from_idx.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert from_idx.train_sha256 == from_npz.train_sha256


def test_bad_magic_is_clear_error(tmp_path):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"\x12\x34\x08\x03" + b"\x00" * 20)
    with pytest.raises(DataFileError, match="bad magic"):
        read_idx(path)


def test_truncated_idx_is_clear_error(tmp_path):
    path = tmp_path / "t.gz"
    array = np.zeros((3, 28, 28), np.uint8)
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 3, 28, 28)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes()[:-10])
    with pytest.raises(DataFileError, match="header says"):
        read_idx(path)


def test_corrupt_gzip_is_clear_error(tmp_path):
    path = tmp_path / "c.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataFileError, match="cannot read"):
        read_idx(path)


def test_wrong_shape_npz(tmp_path):
    arrays = small_arrays()
    arrays["x_train"] = np.zeros((12, 32, 32), np.uint8)
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(DataShapeError, match=r"x_train has shape \(12, 32, 32\)"):
        load(tmp_path / "m.npz")


def test_labels_out_of_range(tmp_path):
    arrays = small_arrays()
    arrays["y_test"][0] = 11
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(DataShapeError, match="outside 0-9"):
        load(tmp_path / "m.npz")


def test_npz_missing_arrays_and_not_a_zip(tmp_path):
    np.savez(tmp_path / "m.npz", x_train=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DataShapeError, match="missing arrays"):
        load(tmp_path / "m.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataFileError, match="cannot read"):
        load(tmp_path / "junk.npz")


def test_missing_path_and_missing_idx(tmp_path):
    with pytest.raises(DataFileError, match="not found"):
        load(tmp_path / "nope.npz")
    with pytest.raises(DataFileError, match="no train-images-idx3-ubyte"):
        load(tmp_path)


def test_offline_keras_download_says_to_pass_data(monkeypatch):
    from keras.datasets import mnist

    from batchclf.errors import DataDownloadError

    def offline():
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(mnist, "load_data", offline)
    with pytest.raises(DataDownloadError, match="pass --data PATH"):
        load(None)
