"""classify --dedupe, --target-error and the second look, end to end with tiny models and written cards."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from batchclf.cli import app

from .helpers import classify, ink_digit, png_bytes
from .conftest import synthetic_digits


def rows_of(folder):
    with open(folder / "results.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_dedupe_marks_later_copies_as_duplicates_of_the_first(tmp_path, tiny_model):
    inputs = tmp_path / "in"
    inputs.mkdir()
    one, other = png_bytes(ink_digit(80)), png_bytes(ink_digit(120))
    for name, data in (("a.png", one), ("b.png", other), ("c.png", one), ("d.png", one)):
        (inputs / name).write_bytes(data)
    rows = {row["file"]: row for row in rows_of(classify(tmp_path, tiny_model, [inputs], dedupe=True))}
    assert rows["a.png"]["status"] in ("ok", "review") and rows["b.png"]["status"] in ("ok", "review")
    for copy in ("c.png", "d.png"):
        assert rows[copy]["status"] == "duplicate" and rows[copy]["duplicate_of"] == "a.png#1"
        assert rows[copy]["label"] == "" and rows[copy]["sha256"] == rows["a.png"]["sha256"]
    plain = {row["file"]: row["status"] for row in rows_of(classify(tmp_path / "again", tiny_model, [inputs]))}
    assert "duplicate" not in plain.values()  # off by default: as before


@pytest.fixture
def carded(tmp_path, tiny_model):
    """The tiny model with a card that has a curve: 0.6 keeps 1% wrong, 0.8 keeps 0.1%, 0.95 none."""
    model = tmp_path / "carded.keras"
    shutil.copy(tiny_model, model)
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    card["selective"] = {"curve": [
        {"review_below": 0.4, "coverage": 0.99, "error": 0.03},
        {"review_below": 0.6, "coverage": 0.97, "error": 0.01},
        {"review_below": 0.8, "coverage": 0.90, "error": 0.001},
        {"review_below": 0.95, "coverage": 0.70, "error": 0.0},
    ]}
    model.with_suffix(".json").write_text(json.dumps(card))
    return model


@pytest.mark.parametrize("target,expected", [("1%", 0.6), ("0.002", 0.8), ("0.1%", 0.8), ("0.0001", 0.95)])
def test_target_error_picks_the_threshold_from_the_cards_curve(tmp_path, carded, target, expected):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.png").write_bytes(png_bytes(ink_digit()))
    result = CliRunner().invoke(app, ["classify", str(inputs), "--model", str(carded), "--target-error", target,
                                      "--out", str(tmp_path / "jobs"), "--workers", "0", "--detector", "off"])
    assert result.exit_code == 0, result.output
    summary = json.loads(next((tmp_path / "jobs").glob("*/summary.json")).read_text())
    assert summary["review_below"] == expected
    assert summary["review"]["source"] == "--target-error" and summary["review"]["review_below"] == expected


def test_target_error_refuses_a_card_without_a_curve_in_one_line(tmp_path, tiny_model):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.png").write_bytes(png_bytes(ink_digit()))
    result = CliRunner().invoke(app, ["classify", str(inputs), "--model", str(tiny_model), "--target-error", "0.2%",
                                      "--out", str(tmp_path / "jobs"), "--workers", "0", "--detector", "off"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "no error-vs-coverage curve" in result.stderr and "--review-below" in result.stderr
    assert not list((tmp_path / "jobs").glob("*/summary.json"))


@pytest.mark.parametrize("bad", ["20", "-1%", "nan", "two"])
def test_target_error_out_of_range_is_a_usage_error(tmp_path, carded, bad):
    result = CliRunner().invoke(app, ["classify", str(tmp_path), "--model", str(carded), "--target-error", bad])
    assert result.exit_code == 2


def test_the_second_look_changes_only_doubtful_rows(tmp_path, tiny_model):
    """The same files classified with the card's second look off and on: confident rows are identical."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    images, _ = synthetic_digits(60, seed=5)
    for i, image in enumerate(images):
        Image.fromarray(image).save(inputs / f"{i:02d}.png")
    card = json.loads(tiny_model.with_suffix(".json").read_text())
    first = rows_of(classify(tmp_path / "probe", tiny_model, [inputs]))
    threshold = float(np.median([float(r["confidence"]) for r in first]))  # half the rows on either side
    models = {}
    for name, extra in (("plain", {}), ("looking", {"second_look": True})):
        models[name] = tmp_path / f"{name}.keras"
        shutil.copy(tiny_model, models[name])
        models[name].with_suffix(".json").write_text(json.dumps({**card, "review_below": threshold, **extra}))

    before = {r["file"]: r for r in rows_of(classify(tmp_path / "a", models["plain"], [inputs]))}
    after = {r["file"]: r for r in rows_of(classify(tmp_path / "b", models["looking"], [inputs]))}
    looked = [name for name, row in after.items() if row["second_look"]]
    confident = [name for name, row in before.items() if float(row["confidence"]) >= threshold]
    assert looked and confident  # both kinds are there
    assert set(looked) == set(before) - set(confident)  # exactly the doubtful rows were looked at again
    for name in confident:
        assert {k: v for k, v in after[name].items() if k not in ("processed_at", "model")} == \
               {k: v for k, v in before[name].items() if k not in ("processed_at", "model")}
    for name in looked:
        assert after[name]["second_look"] in ("accepted", "doubtful")
        assert (after[name]["status"] == "ok") == (after[name]["second_look"] == "accepted")
        assert before[name]["status"] == "review" and before[name]["second_look"] == ""
