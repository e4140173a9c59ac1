"""``batchclf bench-watch --files scans``: the daemon's burst on the bench's ~300 px scans, against classify."""

from __future__ import annotations

import json

from PIL import Image
from typer.testing import CliRunner

from batchclf.bench import daemon as bench_daemon
from batchclf.cli import app


def test_scans_are_the_bench_scans(tmp_path):
    paths = bench_daemon._write_files("scans", 4, None, 300, tmp_path)
    assert len(paths) == 4
    for path in paths:
        assert path.suffix in (".jpg", ".png")
        with Image.open(path) as image:
            assert 270 <= max(image.size) <= 420  # a ~300 px page (the bench's pages are 0.9-1.4 x the side)


def test_burst_of_scans_against_classify(tiny_model):
    result = CliRunner().invoke(app, [
        "bench-watch", "--files", "scans", "--burst", "20", "--trickle", "0", "--rounds", "2",
        "--settle", "0.2", "--max-latency", "0.1", "--workers", "1", "--model", str(tiny_model),
    ])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert "scans" in out["files"]
    assert "trickle" not in out
    burst = out["burst"]
    assert len(burst["rounds"]) == 2
    for round_ in burst["rounds"]:
        assert list(round_) == ["classify", "daemon", "daemon_vs_classify"]  # classify first, then the daemon
        assert round_["classify"]["files"] == 20
        assert round_["daemon"]["files"] == round_["daemon"]["reported"] == 20
        assert round_["classify"]["files_per_s"] > 0
        assert round_["daemon"]["files_per_s_after_settle"] > round_["daemon"]["files_per_s"] > 0
        assert round_["daemon_vs_classify"] == round(
            round_["daemon"]["files_per_s_after_settle"] / round_["classify"]["files_per_s"], 3
        )
    assert burst["daemon_vs_classify"] == [r["daemon_vs_classify"] for r in burst["rounds"]]
    assert burst["target_daemon_vs_classify"] == 0.8
    assert burst["target_met"] == all(r >= 0.8 for r in burst["daemon_vs_classify"])
