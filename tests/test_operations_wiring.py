"""Issue 20 wiring: the operations settings reach the daemon and the nightly run, and their metrics files parse.

The metrics files are read back with ``prometheus_client``'s own parser and
checked against fixed facts of the run (how many files of which kind went
in), never against another output of the same code.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from batchclf.cli import app

from .helpers import ink_digit, png_bytes

runner = CliRunner()


def samples(path: Path) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of a Prometheus text file, as prometheus_client parses it."""
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def fill_inbox(inbox: Path, digits: int, broken: int) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    for i in range(digits):
        (inbox / f"digit-{i}.png").write_bytes(png_bytes(ink_digit(60 + 10 * i)))
    for i in range(broken):
        (inbox / f"broken-{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")


def test_watch_oneshot_writes_the_metrics_file_named_by_the_setting(tmp_path, tiny_model):
    home = tmp_path / "home"
    fill_inbox(home / "inbox", digits=3, broken=1)
    metrics = home / "metrics" / "batchclf.prom"
    before = time.time()
    result = runner.invoke(app, ["watch", "--home", str(home), "--model", str(tiny_model), "--oneshot", "--create",
                                 "--workers", "0", "--settle", "0", "--metrics-file", str(metrics)])
    assert result.exit_code == 0, result.output
    found = samples(metrics)
    rows = {dict(labels)["status"]: value for (name, labels), value in found.items() if name == "batchclf_rows_total"}
    assert rows["failed"] == 1 and rows["ok"] + rows["review"] + rows.get("blank", 0) == 3, rows
    assert before - 1 <= found[("batchclf_last_success_timestamp_seconds", ())] <= time.time() + 1
    assert found[("batchclf_running", ())] == 0  # written at exit
    assert found[("batchclf_inbox_files_waiting", ())] == 0
    assert any(name == "batchclf_model_info" for name, _ in found)
    assert not list(metrics.parent.glob("*.prom.*"))  # no temp file left beside it


def test_classify_metrics_file_records_the_job_and_the_last_success(tmp_path, tiny_model):
    inputs = tmp_path / "scans"
    fill_inbox(inputs, digits=4, broken=1)
    metrics = tmp_path / "metrics" / "nightly.prom"
    before = time.time()
    result = runner.invoke(app, ["classify", str(inputs), "--model", str(tiny_model), "--out", str(tmp_path / "jobs"),
                                 "--workers", "0", "--detector", "off", "--metrics-file", str(metrics)])
    assert result.exit_code == 0, result.output
    found = samples(metrics)
    assert found[("batchclf_last_job_files", ())] == 5
    assert found[("batchclf_last_job_rows", (("status", "failed"),))] == 1
    labelled = sum(v for (name, _), v in found.items() if name == "batchclf_last_job_labels")
    assert labelled == 4
    assert before - 1 <= found[("batchclf_last_success_timestamp_seconds", ())] <= time.time() + 1
    summary = json.loads(next((tmp_path / "jobs").glob("*/summary.json")).read_text())
    assert found[("batchclf_model_info", (("architecture", "tiny"), ("card_accuracy", ""), ("file", summary["model"]["file"]),
                                          ("sha256", summary["model"]["sha256"])))] == 1


def test_classify_without_metrics_file_writes_none(tmp_path, tiny_model):
    inputs = tmp_path / "scans"
    fill_inbox(inputs, digits=1, broken=0)
    result = runner.invoke(app, ["classify", str(inputs), "--model", str(tiny_model), "--out", str(tmp_path / "jobs"),
                                 "--workers", "0", "--detector", "off"])
    assert result.exit_code == 0, result.output
    assert not list(tmp_path.rglob("*.prom"))
