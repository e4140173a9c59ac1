"""``batchclf bench``'s structure: it times the networks classify runs, and its mixed set and floor are what they say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from batchclf import paths
from batchclf.bench import mixed
from batchclf.bench.stages import StageCost, StageTable
from batchclf.bench.throughput import bench_options
from batchclf.classify import model_spec
from .conftest import REAL_DEFAULT_DETECTOR


def _home_with_detector(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "models" / "detectors").mkdir(parents=True)
    (home / "models" / "detectors" / "not-a-digit.keras").write_bytes(b"stand-in")
    return home


def test_bench_runs_the_detector_classify_resolves(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "default_detector", REAL_DEFAULT_DETECTOR)  # conftest hides it from other tests
    home = _home_with_detector(tmp_path)
    spec = model_spec(bench_options(Path("m.keras"), None, 64, "auto", home))
    assert spec.detector == home / "models" / "detectors" / "not-a-digit.keras"
    assert spec.detector == paths.detector("auto", home)  # as `classify --detector auto --home HOME` resolves it
    assert spec.batch_size == 64 and spec.second_look is None  # None: as the card says, as classify


def test_bench_detector_off_and_explicit(tmp_path):
    home = _home_with_detector(tmp_path)
    assert model_spec(bench_options(Path("m.keras"), None, None, "off", home)).detector is None
    chosen = tmp_path / "other.keras"
    assert model_spec(bench_options(Path("m.keras"), None, None, chosen, home)).detector == chosen


def test_mixed_set_has_four_formats_at_about_370px(tmp_path):
    digits = np.zeros((20, 28, 28), np.uint8)
    digits[:, 6:22, 12:16] = 255
    written = mixed.write_mixed_scans(digits, np.arange(20) % 10, tmp_path / "mixed")
    assert len(written) == 20 and all(path.is_file() for path in written)
    formats = {}
    sides = []
    for path in written:
        with Image.open(path) as image:
            formats[image.format] = formats.get(image.format, 0) + 1
            sides.append(sum(image.size) / 2)
    assert formats["TIFF"] == 2 and formats["BMP"] == 2  # one in ten of each
    assert formats["JPEG"] + formats["PNG"] == 16 and formats["JPEG"] > 0 and formats["PNG"] > 0
    assert 280 <= np.mean(sides) <= 460
    text = mixed.describe(written)
    assert "TIFF 10%" in text and "BMP 10%" in text and text.endswith("px")
    assert mixed.plain_decode_cost(written, repeats=1) > 0


def test_floor_and_ratio_in_the_stage_table():
    table = StageTable("5. mixed", 10, 2, [StageCost("decode", 1500.0, 10), StageCost("inference", 500.0, 10)], floor=1000.0)
    out = table.as_dict(500.0)
    assert out["ideal_files_per_s"] == 1000.0 and out["vs_ideal"] == 0.5
    assert out["plain_decode_floor_files_per_s"] == 2000.0  # 2 cores / 1,000 core-us
    assert out["vs_floor"] == 0.25
    floor_rows = [row for row in out["not_summed"] if row["stage"] == "plain-decode floor"]
    assert floor_rows and "0.25 of it" in floor_rows[0]["note"]
    plain = StageTable("3. small", 10, 2, [StageCost("decode", 1500.0, 10)]).as_dict(500.0)
    assert "vs_floor" not in plain and all(row["stage"] != "plain-decode floor" for row in plain["not_summed"])
