"""Commands through typer's CliRunner, plus subprocess checks of --help and lazy TensorFlow."""

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from batchclf.cli import app

from .helpers import assert_one_line_error, ink_digit, invoke, png_bytes


def test_help_in_a_subprocess():
    done = subprocess.run([sys.executable, "-m", "batchclf", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for command in ("train", "evaluate", "predict", "classify"):
        assert command in done.stdout


def test_help_and_report_paths_never_import_tensorflow():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from batchclf.cli import app\n"
        "r = CliRunner()\n"
        "for args in (['--help'], ['train', '--help'], ['classify', '--help'], ['predict', '--help'], ['evaluate', '--help']):\n"
        "    assert r.invoke(app, args).exit_code == 0, args\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False False"


def test_missing_model_file(tmp_path):
    assert_one_line_error(invoke("predict", "--demo", "--model", tmp_path / "none.keras"), "model file not found")


def test_corrupt_model_file(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    assert_one_line_error(invoke("evaluate", "--model", bad, "--data", tmp_path), "cannot load model")


def test_unreadable_data_file(tmp_path, tiny_model):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"garbage")
    assert_one_line_error(invoke("evaluate", "--model", tiny_model, "--data", junk), "cannot read")


def test_wrong_data_shape(tmp_path, tiny_model):
    arrays = {k: np.zeros((2, 27, 27), np.uint8) for k in ("x_train", "x_test")}
    arrays.update({k: np.zeros(2, np.uint8) for k in ("y_train", "y_test")})
    np.savez(tmp_path / "m.npz", **arrays)
    assert_one_line_error(invoke("train", "--data", tmp_path / "m.npz", "--out", tmp_path / "x.keras"), "expected (N, 28, 28)")


def test_unknown_architecture(tmp_path):
    assert_one_line_error(invoke("train", "--arch", "vgg", "--data", tmp_path), "unknown architecture 'vgg'")


def test_train_then_evaluate_json(tmp_path, synthetic_dataset):
    data = tmp_path / "s.npz"
    np.savez(data, x_train=synthetic_dataset.x_train, y_train=synthetic_dataset.y_train,
             x_test=synthetic_dataset.x_test, y_test=synthetic_dataset.y_test)
    out = tmp_path / "m.keras"
    trained = invoke("train", "--data", data, "--arch", "seed", "--epochs", "1", "--batch-size", "64", "--out", out)
    assert trained.exit_code == 0, trained.output
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["command"].startswith("batchclf ")
    result = invoke("evaluate", "--model", out, "--data", data, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 200
    assert report["accuracy"] == pytest.approx(card["mnist_test"]["accuracy"], abs=1e-6)
    assert {"accuracy", "n", "per_class", "confusion", "ece"} <= set(report)
    table = invoke("evaluate", "--model", out, "--data", data)
    assert "confusion matrix" in table.stdout
    loaded = invoke("train", "--model", out)
    assert loaded.exit_code == 0 and "architecture seed" in loaded.stdout


def test_predict_demo_and_images(tmp_path, tiny_model):
    image = tmp_path / "d.png"
    image.write_bytes(png_bytes(ink_digit()))
    (tmp_path / "bad.png").write_bytes(b"nope")
    result = invoke("predict", "--demo", image, tmp_path / "bad.png", "--model", tiny_model, "--json")
    assert result.exit_code == 3, result.output  # every row printed, then non-zero for the unread file (issue 23)
    rows = json.loads(result.stdout)
    assert [r["file"] for r in rows] == ["<demo>", str(image), str(tmp_path / "bad.png")]
    assert len(rows[0]["top"]) == 3 and rows[0]["word"] in ("zero one two three four five six seven eight nine".split())
    assert rows[2]["status"] == "failed" and rows[2]["error"] == "not a recognised image format"
    shown = invoke("predict", "--demo", "--model", tiny_model)
    assert shown.exit_code == 0 and "@@" in shown.stdout


def test_classify_prints_job_folder_last(tmp_path, tiny_model):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(png_bytes(ink_digit()))
    result = invoke("classify", tmp_path / "in", "--model", tiny_model, "--out", tmp_path / "jobs", "--workers", "0")
    assert result.exit_code == 0, result.output
    folder = result.stdout.strip().splitlines()[-1]
    assert (tmp_path / "jobs") in __import__("pathlib").Path(folder).parents
    assert json.loads((__import__("pathlib").Path(folder) / "summary.json").read_text())["files"] == 1


def test_home_resolution(tmp_path, monkeypatch):
    from batchclf import paths

    monkeypatch.setenv("BATCHCLF_HOME", str(tmp_path / "env"))
    assert paths.jobs_dir() == tmp_path / "env" / "jobs"
    assert paths.jobs_dir(tmp_path / "flag") == tmp_path / "flag" / "jobs"
    monkeypatch.delenv("BATCHCLF_HOME")
    monkeypatch.chdir(tmp_path)
    assert paths.inbox_dir() == tmp_path / "inbox"


def test_evaluate_on_a_labelled_scan_folder(tmp_path, tiny_model):
    for writer in ("w1", "w2"):
        for label in (0, 3):
            folder = tmp_path / "scans" / writer / str(label)
            folder.mkdir(parents=True)
            (folder / "a.png").write_bytes(png_bytes(ink_digit()))
    (tmp_path / "scans" / "w1" / "0" / "broken.png").write_bytes(b"x")
    result = invoke("evaluate", "--model", tiny_model, "--scans", tmp_path / "scans", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 5 and report["unlabelled_or_failed"] == 1
    assert set(report["groups"]) == {"w1", "w2"}
    assert sum(map(sum, report["confusion"])) == 4  # the failed file has no predicted class


def test_native_chatter_goes_to_the_debug_log_and_the_rest_to_stderr(capfd, caplog):
    import logging
    import os

    from batchclf.model.device import native_chatter_to_debug_log

    with caplog.at_level(logging.DEBUG, logger="batchclf.model.device"):
        with native_chatter_to_debug_log():
            os.write(2, b"I0000 cudart_stub.cc:31] Could not find cuda drivers on your machine\n")
            os.write(2, b"a real problem from native code\n")
    err = capfd.readouterr().err
    assert err == "a real problem from native code\n"
    assert any("cudart_stub" in record.getMessage() for record in caplog.records)


def test_tensorflow_start_up_leaves_stderr_clean():
    """On a machine without a GPU, TensorFlow's CUDA probing would print 'E0000 ... failed call to cuInit'."""
    code = "from batchclf.model import device; device.tensorflow(); print(device.select('auto'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in ("/CPU:0", "/GPU:0")
    assert result.stderr == ""


def test_version():
    from batchclf import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"batchclf {__version__}\n"


def test_a_mistyped_home_is_refused_and_not_created(tmp_path, tiny_model):
    missing = tmp_path / "no-such-home"
    for args in (["classify", str(tmp_path), "--model", str(tiny_model)], ["watch", "--oneshot", "--model", str(tiny_model)],
                 ["report"], ["models"]):
        result = invoke(*args, "--home", missing)
        text = " ".join(result.output.replace("│", " ").split())  # rich wraps the message at the box's edge
        assert result.exit_code == 2 and "is not a folder" in text, (args, result.output)
    assert not missing.exists()
