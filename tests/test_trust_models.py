"""Issue 23, the model side: no code from model files, cards checked, a private Ray ledger, a newcomer's papercuts.

Each test fails on the code before the fix (checked against a copy of it).
"""

from __future__ import annotations

import io
import json
import os
import stat
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from batchclf import paths
from batchclf.errors import ModelLoadError

from .helpers import ink_digit, invoke, png_bytes

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def wide_terminal(monkeypatch):
    """Tables wide enough that no cell is wrapped (CliRunner's terminal is 80 columns)."""
    from batchclf.cli import render

    monkeypatch.setattr(render.console, "_width", 250)


def one_error_line(result, *texts):
    """The command failed with exactly one line, ``Error: ...``, holding every text; no traceback, no dump."""
    assert result.exit_code != 0, result.output
    assert result.stderr.startswith("Error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    for text in texts:
        assert text in result.stderr, (text, result.stderr)
    return result.stderr


def with_card(tmp_path, model: Path, card, name="m") -> Path:
    """A copy of ``model`` with ``card`` (a dict, or raw text) beside it."""
    target = tmp_path / f"{name}{model.suffix}"
    target.write_bytes(model.read_bytes())
    target.with_suffix(".json").write_text(card if isinstance(card, str) else json.dumps(card))
    return target


def fake_keras(folder: Path, name: str, card: dict | None = None) -> Path:
    """A zip with config.json: enough for `batchclf models` (which never loads TensorFlow)."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{name}.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    if card is not None:
        (folder / f"{name}.json").write_text(json.dumps(card))
    return folder / f"{name}.keras"


# --- 1. code from a model file ------------------------------------------------------------------


def test_pyproject_requires_the_keras_with_every_safe_mode_fix():
    from batchclf.model import trust

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "keras>=3.13.2" in dependencies  # CVE-2025-9905 fixed in 3.11.3, CVE-2026-1462 in 3.13.2
    assert trust.SAFE_KERAS_TEXT == "3.13.2"


@pytest.mark.parametrize("version, safe", [
    ("3.11.2", False), ("3.11.3", False), ("3.12.0", False), ("3.13.1", False), ("3.13.2rc1", False),
    ("3.13.2.dev20260101", False), ("2.15.0", False), ("3.13.2", True), ("3.15.1", True), ("3.16.0.post1", True),
    ("4.0.0", True),
])
def test_a_keras_older_than_the_floor_is_refused_before_any_load(monkeypatch, tiny_model, version, safe):
    from batchclf.model import predictor, trust

    monkeypatch.setattr(trust, "installed_keras_version", lambda: version)
    if safe:
        trust.require_safe_keras()
        return
    with pytest.raises(ModelLoadError) as caught:
        predictor.load_keras_model(tiny_model)
    message = str(caught.value)
    assert "\n" not in message and f"Keras {version}" in message and "keras>=3.13.2" in message


def test_an_old_keras_module_shadowing_the_installed_one_is_refused_too(monkeypatch, tiny_model):
    import keras

    from batchclf.model import predictor

    monkeypatch.setattr(keras, "__version__", "3.11.2")  # metadata says 3.15, the module imported is older
    with pytest.raises(ModelLoadError, match="Keras 3.11.2"):
        predictor.load_keras_model(tiny_model)


def test_every_model_load_goes_through_the_keras_check(monkeypatch, tiny_model, ink_detector):
    """Classifier, detector, a fine-tune's base and the Ray engine all refuse an old Keras, each in one line."""
    from batchclf.engines.base import EngineSettings
    from batchclf.model import finetune, predictor, trust

    monkeypatch.setattr(trust, "installed_keras_version", lambda: "3.11.2")
    with pytest.raises(ModelLoadError, match="Keras 3.11.2"):
        predictor.Predictor(tiny_model, device="cpu")
    with pytest.raises(ModelLoadError, match="Keras 3.11.2"):
        predictor.load_keras_model(ink_detector)
    assert finetune.load_keras_model is predictor.load_keras_model  # the base model of a fine-tune
    try:
        from batchclf.engines.ray import RayEngine
    except ImportError:  # pragma: no cover - Ray is a dev dependency here
        pytest.skip("Ray is not installed")
    with pytest.raises(ModelLoadError, match="Keras 3.11.2"):
        RayEngine(EngineSettings.of(model=tiny_model, device="cpu"))  # the driver refuses before any actor starts
    result = invoke("predict", "--demo", "--model", tiny_model, "--detector", "off")
    one_error_line(result, "Keras 3.11.2", "keras>=3.13.2")


@pytest.fixture(scope="module")
def lambda_models(tmp_path_factory):
    """A real model with a Lambda layer that would leave a canary file if its code ever ran, as .keras and .h5."""
    import keras

    folder = tmp_path_factory.mktemp("lambda")
    canary = folder / "code-ran"
    leave_canary = eval(f"lambda x: (open({str(canary)!r}, 'w').close(), x)[1]")  # the path inside the code, no closure
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Flatten(),
        keras.layers.Lambda(leave_canary),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.save(folder / "lambda.keras")
    model.save(folder / "lambda.h5")
    if canary.exists():
        canary.unlink()  # saving traces the layer once
    return folder, canary


@pytest.mark.parametrize("name", ["lambda.keras", "lambda.h5"])
def test_a_lambda_model_is_refused_in_one_line_without_a_config_dump(lambda_models, name):
    folder, canary = lambda_models
    result = invoke("predict", "--demo", "--model", folder / name, "--detector", "off")
    line = one_error_line(result, "cannot load model", "Lambda", "never runs code")
    assert "safe_mode=False" not in line and "{" not in line  # neither Keras's advice nor the layer config
    assert not canary.exists()


def test_a_config_naming_an_outside_function_is_refused_in_one_line_without_a_config_dump(tmp_path):
    """A .keras whose config.json makes a Dense layer's activation ``os.system`` (the CVE-2025-1550 shape)."""
    import keras

    inputs = keras.Input((28, 28, 1))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs)))
    clean = tmp_path / "clean.keras"
    model.save(clean)
    with zipfile.ZipFile(clean) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
    dense["config"]["activation"] = {"module": "os", "class_name": "function", "config": "system", "registered_name": "system"}
    files["config.json"] = json.dumps(config).encode()
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(evil, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    line = one_error_line(invoke("predict", "--demo", "--model", evil, "--detector", "off"), "cannot load model")
    assert "registered_name" not in line and "{" not in line and len(line) < 400


def test_a_text_file_named_keras_is_not_a_keras_model_file_rather_than_not_found(tmp_path):
    fake = tmp_path / "fake.keras"
    fake.write_text("hello\n")
    line = one_error_line(invoke("predict", "--demo", "--model", fake, "--detector", "off"), "not a Keras model file")
    assert "not found" not in line.lower()
    h5 = tmp_path / "fake.h5"
    h5.write_text("hello\n")
    one_error_line(invoke("predict", "--demo", "--model", h5, "--detector", "off"), "not a Keras model file", "HDF5")


# --- 6. model cards ----------------------------------------------------------------------------------


BAD_CARDS = [
    ({"calibration": {"temperature": 0}}, "calibration.temperature"),
    ({"calibration": {"temperature": -1}}, "calibration.temperature"),
    ({"calibration": {"temperature": "1"}}, "calibration.temperature"),
    ({"calibration": {"temperature": True}}, "calibration.temperature"),
    ('{"calibration": {"temperature": NaN}}', "NaN"),
    ('{"calibration": {"temperature": Infinity}}', "Infinity"),
    ('{"calibration": {"temperature": 1e999}}', "calibration.temperature"),
    ({"input_scale": 0}, "input_scale"),
    ({"input_scale": -255}, "input_scale"),
    ({"review_below": 0}, "review_below"),
    ({"review_below": 1.5}, "review_below"),
    ({"review_below": None}, "review_below"),
    ({"calibration": [1, 2]}, "calibration"),
    ({"mnist_test": "99%"}, "mnist_test"),
    ({"mnist_test": {"accuracy": 99.6}}, "mnist_test.accuracy"),
    ({"parameters": "many"}, "parameters"),
    ({"parameters": 10 ** 400}, "parameters"),
    ({"parent": 5}, "parent"),
    ('{"x": 1, "notes": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}", "nested deeper"),
    ('{"extra": ' + "[" * 40 + "]" * 40 + "}", "nested deeper"),
    ("[1, 2, 3]", "JSON object"),
    ("{\"calibration\": ", "not JSON"),
    (b"\xff\xfe{}".decode("latin-1"), "not JSON"),
]


@pytest.mark.parametrize("card, field", BAD_CARDS, ids=[str(i) for i in range(len(BAD_CARDS))])
def test_a_bad_card_is_one_line_naming_the_card_and_the_field(tmp_path, card, field):
    from batchclf.model import card as cards

    model = fake_keras(tmp_path, "m")
    model.with_suffix(".json").write_text(card if isinstance(card, str) else json.dumps(card), encoding="latin-1")
    with pytest.raises(ModelLoadError) as caught:
        cards.read(model)
    message = str(caught.value)
    assert "\n" not in message and str(model.with_suffix(".json")) in message and field in message


def test_a_detector_card_needs_flag_above_in_0_1(tmp_path):
    from batchclf.model import card as cards

    detector = fake_keras(tmp_path, "d", {"kind": "not-a-digit detector", "flag_above": 1.5})
    with pytest.raises(ModelLoadError, match=r"d\.json.*flag_above must be a finite number >= 0 and <= 1"):
        cards.read(detector, detector=True)
    detector.with_suffix(".json").write_text(json.dumps({"kind": "not-a-digit detector"}))
    with pytest.raises(ModelLoadError, match="flag_above"):
        cards.read(detector, detector=True)
    detector.with_suffix(".json").write_text(json.dumps({"flag_above": 0.0}))
    assert cards.read(detector, detector=True)["flag_above"] == 0.0


def test_good_cards_pass_with_their_unknown_fields(tmp_path):
    from batchclf.model import card as cards

    for shipped in (ROOT / "models" / "default.keras", ROOT / "models" / paths.DETECTOR_NAME):
        assert cards.read(shipped, detector="detectors" in str(shipped))  # the real cards keep the rules
    future = {"calibration": {"temperature": 1.3}, "review_below": 1.0, "input_scale": 255,
              "selective": {"coverage": [0.5, 0.9, 1.0], "error": [0.001, 0.004, 0.02]}, "anything": [None, True, "x"]}
    model = fake_keras(tmp_path, "m", future)
    assert cards.read(model) == future
    (tmp_path / "bare.keras").write_bytes(model.read_bytes())
    assert cards.read(tmp_path / "bare.keras") == {}  # no card: a model trained elsewhere


def test_a_card_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path):
    from batchclf.model import card as cards

    model = fake_keras(tmp_path, "m")
    os.mkfifo(model.with_suffix(".json"))  # reading it would block forever
    with pytest.raises(ModelLoadError, match="not a regular file"):
        cards.read(model)


def test_a_card_with_temperature_zero_stops_the_model_before_tensorflow(tmp_path, tiny_model):
    bad = with_card(tmp_path, tiny_model, {"calibration": {"temperature": 0}})
    one_error_line(invoke("predict", "--demo", "--model", bad, "--detector", "off"), "m.json", "calibration.temperature")
    one_error_line(invoke("models", "show", bad), "m.json", "calibration.temperature")


# --- 3. the Ray engine's crash ledger --------------------------------------------------------------


def _block(root: Path, n: int = 2):
    import pickle

    import pyarrow as pa

    from batchclf.scan.discovery import discover

    root.mkdir()
    for i in range(n):
        (root / f"d{i}.png").write_bytes(png_bytes(ink_digit(60)))
    candidates = list(discover([root]))
    return pa.table({"seq": pa.array(range(len(candidates)), pa.int64()),
                     "candidate": pa.array([pickle.dumps(c) for c in candidates], pa.binary())})


def test_the_ledger_never_writes_through_a_hostile_folder_in_the_shared_temp(tmp_path, monkeypatch):
    """Another user's ``$TMPDIR/batchclf-ray-ledger`` (a symlink to a folder of symlinks) is not followed."""
    pytest.importorskip("pyarrow")
    from batchclf.engines.ray import prepare_block

    shared = tmp_path / "tmp"
    victim = tmp_path / "victim"
    shared.mkdir()
    victim.mkdir()
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    (shared / "batchclf-ray-ledger").symlink_to(victim)
    (victim / "job-0").symlink_to(precious)  # the file the old ledger opened (token-firstseq)
    monkeypatch.setattr("tempfile.tempdir", str(shared))
    out = prepare_block(_block(tmp_path / "in"), token="job")
    assert out.num_rows == 2
    assert precious.read_text() == "keep me\n"
    assert sorted(p.name for p in victim.iterdir()) == ["job-0"]


def test_the_ledger_folder_is_private_and_refuses_one_it_does_not_own(tmp_path):
    from batchclf.engines.ray import LedgerFolderError, _CrashLedger, new_ledger_folder

    folder = new_ledger_folder()
    try:
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700 and os.stat(folder).st_uid == os.geteuid()
    finally:
        os.rmdir(folder)

    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(elsewhere)
    with pytest.raises(LedgerFolderError, match="symlink"):
        _CrashLedger(str(tmp_path / "link"), "job", 0)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # another user could plant files here
    with pytest.raises(LedgerFolderError, match="not private"):
        _CrashLedger(str(shared), "job", 0)

    private = tmp_path / "private"  # created by the task (a node of a cluster without the driver's folder)
    ledger = _CrashLedger(str(private), "job", 0)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    ledger.done()
    (private / "job-0").symlink_to(precious)  # a planted symlink where a retry's record would be
    ledger = _CrashLedger(str(private), "job", 0)
    ledger.begin(0)
    ledger.done()
    assert precious.read_text() == "keep me\n"


# --- 13. a newcomer's papercuts --------------------------------------------------------------------


def test_evaluate_baseline_renders_the_comparison_as_a_table(tmp_path, tiny_model, wide_terminal):
    scans = tmp_path / "scans" / "writer1"
    for label in (3, 7):
        (scans / str(label)).mkdir(parents=True)
        (scans / str(label) / "a.png").write_bytes(png_bytes(ink_digit(80)))
    baseline = with_card(tmp_path, tiny_model, tiny_model.with_suffix(".json").read_text(), name="parent")
    result = invoke("evaluate", "--model", tiny_model, "--baseline", baseline, "--scans", tmp_path / "scans",
                    "--detector", "off", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "parent.keras" in result.output and "tiny.keras" in result.output and "change" in result.output
    assert "writer1" in result.output


@pytest.fixture
def installed_layout(tmp_path, monkeypatch):
    """batchclf as a wheel install sees it: no checkout beside the package, the shipped model as package data."""
    packaged = tmp_path / "site-packages" / "batchclf" / "models"
    fake_keras(packaged, "default", {"architecture": "default", "mnist_test": {"accuracy": 0.9962}})
    monkeypatch.setattr(paths, "CHECKOUT_MODELS", tmp_path / "no-checkout" / "models", raising=False)
    monkeypatch.setattr(paths, "PACKAGED_MODELS", packaged)
    home = tmp_path / "home"
    fake_keras(home / "models", "tuned", {"architecture": "default", "parent": "default.keras"})
    (home / "models" / paths.IN_USE_NAME).write_text("tuned.keras\n")
    return home, packaged / "default.keras"


def test_the_shipped_model_is_listed_and_selectable_as_default_outside_the_checkout(installed_layout, wide_terminal):
    home, shipped = installed_layout
    listing = invoke("models", "--home", home)
    assert listing.exit_code == 0, listing.output
    assert "default" in listing.output and "99.62%" in listing.output and "tuned" in listing.output
    switched = invoke("models", "use", "default", "--home", home)
    assert switched.exit_code == 0, switched.output
    assert "in use: default.keras (was tuned.keras)" in switched.output
    assert paths.default_model(home) == shipped
    shown = invoke("models", "show", "default", "--home", home)
    assert shown.exit_code == 0 and "99.62%" in shown.output
    assert invoke("models", "use", "tuned", "--home", home).exit_code == 0
    assert paths.default_model(home) == home / "models" / "tuned.keras"


def test_train_from_reviews_without_data_offline_says_so_before_tensorflow(tmp_path, monkeypatch):
    from batchclf.datasets import mnist

    monkeypatch.setattr(mnist, "cached_download", lambda: None)
    monkeypatch.setattr(mnist, "_download_problem", lambda: "Name or service not known")
    for heavy in ("tensorflow", "keras"):
        monkeypatch.setitem(sys.modules, heavy, None)  # importing either now raises: the check must come first
    (tmp_path / "models").mkdir()
    corrections = tmp_path / "corrections.csv"
    corrections.write_text("file,page,label\n")
    result = invoke("train", "--from-reviews", corrections, "--home", tmp_path)
    one_error_line(result, "needs MNIST", "--data PATH", "Name or service not known")


def test_predict_on_a_text_file_shows_the_failed_row_and_exits_non_zero(tmp_path, tiny_model, wide_terminal):
    hello = tmp_path / "hello.txt"
    hello.write_text("hello\n")
    digit = tmp_path / "seven.png"
    digit.write_bytes(png_bytes(ink_digit(80)))
    result = invoke("predict", hello, digit, "--model", tiny_model, "--detector", "off", "--device", "cpu")
    assert result.exit_code == 3, result.output
    assert "hello.txt" in result.stdout and "seven.png" in result.stdout  # every row is still shown
    one_error_line(result, "1 of 2 inputs could not be read", "hello.txt")
    as_json = invoke("predict", hello, "--json", "--model", tiny_model, "--detector", "off", "--device", "cpu")
    assert as_json.exit_code == 3 and json.loads(as_json.stdout)[0]["status"] == "failed"


def test_training_progress_shows_no_accuracy_it_did_not_measure():
    """A fine-tune compiles without an accuracy metric: its bar said ``acc 0.0000`` for the whole run."""
    from rich.console import Console

    from batchclf.model.progress import keras_callback

    screen = io.StringIO()
    callback = keras_callback(1, 2, console=Console(file=screen, width=200, force_terminal=False))
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    callback.on_train_batch_end(0, {"loss": 0.75})
    callback.on_train_batch_end(1, {"loss": 0.5})
    callback.on_epoch_end(0, {"loss": 0.5})
    callback.on_train_end()
    shown = screen.getvalue()
    assert "loss 0.5000" in shown and "acc" not in shown
    screen.truncate(0)
    callback.on_train_begin()
    callback.on_train_batch_end(0, {"loss": 0.5, "accuracy": 0.875})
    callback.on_train_end()
    assert "acc 0.8750" in screen.getvalue()


# --- 14. card fields reach the terminal escaped ------------------------------------------------------


def test_card_fields_reach_the_terminal_with_control_characters_escaped(tmp_path, wide_terminal):
    hostile = {"architecture": "x\x1b[2Jy", "created": "2026\x07\u202e", "parent": "p\x1b]0;pwned\x07",
               "mnist_test": {"accuracy": 0.5}}
    fake_keras(tmp_path / "models", "evil\x1b[1A", hostile)
    listing = invoke("models", "--home", tmp_path)
    shown = invoke("models", "show", "evil\x1b[1A", "--home", tmp_path)
    for result in (listing, shown):
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\x07" not in result.output and "\u202e" not in result.output
        assert "\\x1b[2J" in result.output and "\\x07" in result.output
    assert "\\x1b[1A" in listing.output and "\\u202e" in listing.output
