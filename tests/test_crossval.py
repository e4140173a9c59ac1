"""Leave-writers-out (``train --cross-validate``): every writer scored once, by models that never saw them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import synthetic_digits

WRITERS = ("anna", "bert", "cleo")


@pytest.fixture
def writers_folder(tmp_path):
    """Three writers, twenty digits each, as 28x28 MNIST-form PNGs (they reach the model unchanged)."""
    root = tmp_path / "writers"
    for w, writer in enumerate(WRITERS):
        images, labels = synthetic_digits(20, seed=10 + w)
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = root / writer / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i}.png")
    return root


def test_every_writer_is_scored_once_by_models_that_never_saw_them(tmp_path, writers_folder, tiny_model, ink_detector,
                                                                    synthetic_dataset, monkeypatch):
    from batchclf import crossval

    monkeypatch.setattr(crossval, "NEGATIVES", 40)
    monkeypatch.setattr(crossval, "SCANNED_DIGITS", 20)
    out = tmp_path / "cv"
    figures = crossval.cross_validate([writers_folder], synthetic_dataset, tiny_model, ink_detector, out, folds=3,
                                      epochs=1, seed=1, review_below=0.5, log=lambda text: None)

    folds = json.loads((out / "folds.json").read_text())["folds"]
    assert sorted(w for fold in folds for w in fold) == sorted(WRITERS) and all(len(fold) == 1 for fold in folds)
    pool = crossval.pooled(out)
    assert sorted(pool["index"].tolist()) == list(range(60))  # each digit scored exactly once
    for index, fold in enumerate(folds):
        with np.load(out / f"fold-{index}" / "scores.npz") as scores:
            assert set(scores["groups"].tolist()) == set(fold)  # a fold scores only its own writers
        card = json.loads((out / f"fold-{index}" / "classifier.json").read_text())
        assert card["fine_tuning"]["extra_images"] == 40  # it learned from the other two writers' 40 digits only
    seen = figures["at_review_below"]
    assert seen["digits"] == 60 and set(seen["per_writer"]) == set(WRITERS)
    assert seen["writers_mean"] == pytest.approx(np.mean(list(seen["per_writer"].values())))
    coverage = [point["coverage"] for point in figures["curve"]]
    assert coverage == sorted(coverage, reverse=True)  # a higher threshold never accepts more
    assert not (out / "final").exists()  # cross-validation measures; it ships nothing


def test_cross_validate_needs_a_writers_folder(tmp_path, tiny_model, ink_detector, synthetic_dataset):
    from batchclf import crossval
    from batchclf.errors import DataFileError

    usps = tmp_path / "zip.train"
    usps.write_text("1 " + " ".join(["-1"] * 256) + "\n")
    with pytest.raises(DataFileError, match="WRITER/DIGIT"):
        crossval.cross_validate([usps], synthetic_dataset, tiny_model, ink_detector, tmp_path / "cv", 2, 1, 1, 0.5)


def test_writer_folds_cut_sorted_writers_into_contiguous_folds():
    from batchclf.crossval import writer_folds

    groups = np.array(["0003", "0001", "0002", "0004", "0001", "0005"])
    assert writer_folds(groups, 2) == [["0001", "0002", "0003"], ["0004", "0005"]]
