"""The LiteRT runtime (batchclf.model.lite_runtime): agrees with TensorFlow, refuses bad sidecars, never starts TensorFlow."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from batchclf.errors import ModelLoadError
from batchclf.model import card_schema
from batchclf.model import lite_runtime
from batchclf.model.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_DETECTOR = ROOT / "models" / "detectors" / "not-a-digit.keras"


@pytest.fixture(scope="module")
def tiny_with_sidecar(tmp_path_factory, tiny_model):
    """The tiny model with a float LiteRT sidecar recorded in its card, as lite_export writes it."""
    from batchclf.model import card as cards
    from batchclf.model import lite_export
    from batchclf.model.predictor import load_keras_model, sha256_file

    folder = tmp_path_factory.mktemp("lite")
    model = folder / "tiny.keras"
    shutil.copy(tiny_model, model)
    shutil.copy(tiny_model.with_suffix(".json"), folder / "tiny.json")
    data = lite_export.convert(load_keras_model(model), "fp32")
    (folder / "tiny.fp32.tflite").write_bytes(data)
    card = cards.read(model)
    card["lite"] = {"file": "tiny.fp32.tflite", "sha256": lite_export.sha256_bytes(data),
                    "source_sha256": sha256_file(model), "quantisation": "fp32"}
    cards.write(model, card)
    return model


def copy_model(source: Path, folder: Path) -> Path:
    """``source`` with its card and sidecars in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in source.parent.glob(f"{source.stem}.*"):
        shutil.copy(path, folder / path.name)
    return folder / source.name


def edit_card(model: Path, change) -> None:
    card_file = model.with_suffix(".json")
    card = json.loads(card_file.read_text())
    change(card)
    card_file.write_text(json.dumps(card))


@pytest.fixture
def interpreters(monkeypatch):
    """Every model LiteRT is handed in this test, by size (a refused sidecar must never get there)."""
    import ai_edge_litert.interpreter as litert_interpreter

    handed = []
    real = litert_interpreter.Interpreter

    def recording(*args, **kwargs):
        handed.append(len(kwargs.get("model_content") or b""))
        return real(*args, **kwargs)

    monkeypatch.setattr(litert_interpreter, "Interpreter", recording)
    return handed


def test_sidecar_runs_on_the_cpu_and_agrees_with_tensorflow(tiny_with_sidecar, synthetic_dataset, interpreters):
    from batchclf.scan.preprocess import mnist_to_input

    inputs = mnist_to_input(synthetic_dataset.x_test[:100])
    lite = Predictor(tiny_with_sidecar, device="cpu", batch_size=32)
    tensorflow = Predictor(tiny_with_sidecar, device="cpu", batch_size=32, runtime="tensorflow")
    assert lite.runtime == "litert-fp32" and lite.describe()["runtime"] == "litert-fp32"
    assert lite.describe()["lite"]["classifier"]["file"] == "tiny.fp32.tflite"
    assert tensorflow.runtime == "tensorflow" and tensorflow.describe()["runtime"] == "tensorflow"
    assert interpreters  # LiteRT ran the sidecar
    np.testing.assert_allclose(lite.predict(inputs), tensorflow.predict(inputs), atol=1e-4)
    assert lite.predict(inputs[:0]).shape == (0, 10)


@pytest.mark.parametrize("damage, why", [
    ("sha", "sha256 is not the one its card records"),
    ("magic", "no TFL3 identifier"),
    ("keras_changed", "made from another tiny.keras"),
    ("missing", "is missing"),
    ("fifo", "not a regular file"),
])
def test_a_bad_sidecar_is_never_loaded_and_tensorflow_runs(tiny_with_sidecar, tmp_path, interpreters, caplog, damage, why):
    model = copy_model(tiny_with_sidecar, tmp_path / "m")
    sidecar = model.with_name("tiny.fp32.tflite")
    if damage == "sha":
        edit_card(model, lambda card: card["lite"].update(sha256="0" * 64))
    elif damage == "magic":  # the card's hash fits the damaged bytes: the identifier alone refuses them
        data = bytearray(sidecar.read_bytes())
        data[4:8] = b"XXXX"
        sidecar.write_bytes(bytes(data))
        import hashlib

        edit_card(model, lambda card: card["lite"].update(sha256=hashlib.sha256(bytes(data)).hexdigest()))
    elif damage == "keras_changed":  # still a loadable model, but not the file the sidecar was made from
        with zipfile.ZipFile(model, "a") as archive:
            archive.comment = b"retrained"
    elif damage == "missing":
        sidecar.unlink()
    elif damage == "fifo":
        sidecar.unlink()
        os.mkfifo(sidecar)
    with caplog.at_level(logging.WARNING, logger="batchclf.model.predictor"):
        predictor = Predictor(model, device="cpu", batch_size=16)
    assert predictor.runtime == "tensorflow" and predictor.describe()["runtime"] == "tensorflow"
    assert interpreters == []  # LiteRT never saw a byte of it
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "running TensorFlow, not LiteRT" in warnings[0] and why in warnings[0]
    assert predictor.predict(np.zeros((3, 28, 28, 1), np.float32)).shape == (3, 10)
    with pytest.raises(ModelLoadError, match="runtime litert"):  # asked for by name: an error, not a fallback
        Predictor(model, device="cpu", runtime="litert")


def test_a_custom_operator_is_refused():
    """LiteRT looks custom operators up by name: a sidecar with one is never run."""
    from ai_edge_litert import schema_py_generated as schema
    import flatbuffers

    builder = flatbuffers.Builder(256)
    schema.OperatorCodeStart(builder)
    schema.OperatorCodeAddBuiltinCode(builder, schema.BuiltinOperator.CUSTOM)
    schema.OperatorCodeAddDeprecatedBuiltinCode(builder, schema.BuiltinOperator.CUSTOM)
    code = schema.OperatorCodeEnd(builder)
    schema.ModelStartOperatorCodesVector(builder, 1)
    builder.PrependUOffsetTRelative(code)
    codes = builder.EndVector()
    schema.SubGraphStart(builder)
    subgraph = schema.SubGraphEnd(builder)
    schema.ModelStartSubgraphsVector(builder, 1)
    builder.PrependUOffsetTRelative(subgraph)
    subgraphs = builder.EndVector()
    schema.ModelStart(builder)
    schema.ModelAddOperatorCodes(builder, codes)
    schema.ModelAddSubgraphs(builder, subgraphs)
    builder.Finish(schema.ModelEnd(builder), file_identifier=b"TFL3")
    with pytest.raises(lite_runtime.SidecarRefused, match="custom operator"):
        lite_runtime._require_builtin_ops(bytes(builder.Output()), "custom.tflite")


@pytest.mark.parametrize("entry, field", [
    ({"file": "../x.tflite"}, "lite.file"),
    ({"file": "/tmp/x.tflite"}, "lite.file"),
    ({"file": "x.keras"}, "lite.file"),
    ({"sha256": "ABC"}, "lite.sha256"),
    ({"source_sha256": 5}, "lite.source_sha256"),
    ({"referee": {"file": "r.tflite", "sha256": "0" * 64, "margin": 2}}, "lite.referee.margin"),
])
def test_card_schema_checks_the_sidecar_entry(entry, field):
    good = {"file": "m.int8.tflite", "sha256": "a" * 64, "source_sha256": "b" * 64, "quantisation": "int8"}
    assert card_schema.validate({"lite": good})
    with pytest.raises(card_schema.CardError, match=field.replace(".", r"\.")):
        card_schema.validate({"lite": {**good, **entry}})
    with pytest.raises(card_schema.CardError, match="lite.sha256 is missing"):
        card_schema.validate({"lite": {key: value for key, value in good.items() if key != "sha256"}})


def test_runtime_tensorflow_forces_tensorflow(tiny_with_sidecar, interpreters):
    from batchclf.model.spec import ModelSpec

    spec = ModelSpec(tiny_with_sidecar, device="cpu", runtime="tensorflow")
    assert spec.describe()["runtime"] == "tensorflow"
    assert spec.predictor().runtime == "tensorflow" and interpreters == []
    assert ModelSpec(tiny_with_sidecar, device="cpu").describe()["runtime"] == "litert-fp32"


def run_python(code: str, timeout: float = 300) -> str:
    return run_python_both(code, timeout)[0]


def run_python_both(code: str, timeout: float = 300) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, done.stderr


def test_auto_device_without_a_gpu_does_not_import_tensorflow():
    code = ("import sys; from batchclf.model import device; "
            "print(device.gpu_possible(), device.select('auto'), device.select('cpu'), 'tensorflow' in sys.modules)")
    possible, auto, cpu, imported = run_python(code).split()
    assert cpu == "/CPU:0"
    if possible == "False":  # this machine (and CI) has no GPU driver: neither answer starts TensorFlow
        assert auto == "/CPU:0" and imported == "False"


def test_a_gpu_driver_trace_sends_auto_to_tensorflow(tmp_path, monkeypatch):
    from batchclf.model import device

    monkeypatch.setattr(device.sys, "platform", "linux")
    monkeypatch.setattr(device, "GPU_TRACES", (str(tmp_path / "no-such-driver"),))
    monkeypatch.setattr(device, "NVIDIA_DEVICES", (str(tmp_path), "nvidia[0-9]*"))
    assert device.gpu_possible() is False
    (tmp_path / "nvidia0").touch()
    assert device.gpu_possible() is True
    monkeypatch.setattr(device.sys, "platform", "darwin")  # Metal's plug-in leaves no trace: TensorFlow is asked
    (tmp_path / "nvidia0").unlink()
    assert device.gpu_possible() is True


def test_cpu_classify_job_on_the_lite_path_never_imports_tensorflow(tiny_with_sidecar, tmp_path):
    from .helpers import ink_digit, png_bytes

    inbox = tmp_path / "in"
    inbox.mkdir()
    for i in range(5):
        (inbox / f"d{i}.png").write_bytes(png_bytes(ink_digit()))
    code = (
        "import sys, json; from pathlib import Path; from batchclf.classify import ClassifyOptions, run; "
        f"job = run([Path({str(inbox)!r})], ClassifyOptions(model=Path({str(tiny_with_sidecar)!r}), "
        f"out_dir=Path({str(tmp_path / 'jobs')!r}), workers=0, device='cpu'), progress=False); "
        "print(json.dumps([str(job), 'tensorflow' in sys.modules, 'keras' in sys.modules]))"
    )
    out, err = run_python_both(code)
    job, tensorflow, keras = json.loads(out.strip().splitlines()[-1])
    assert tensorflow is False and keras is False
    assert "XNNPACK" not in err  # LiteRT's start-up note goes to the debug log, like TensorFlow's
    meta = json.loads((Path(job) / "summary.json").read_text())
    assert meta["model"]["runtime"] == "litert-fp32"


@pytest.mark.skipif(not SHIPPED_DETECTOR.is_file(), reason="shipped detector missing")
def test_shipped_sidecars_agree_with_tensorflow_on_mnist(shipped_model, mnist):
    """The first 1,000 MNIST test digits: >= 99.9% the same labels, every detector flag the same."""
    from batchclf.scan.preprocess import mnist_to_input

    inputs = mnist_to_input(mnist.x_test[:1000])
    lite = Predictor(shipped_model, device="cpu", detector=SHIPPED_DETECTOR, second_look=False)
    tensorflow = Predictor(shipped_model, device="cpu", detector=SHIPPED_DETECTOR, second_look=False, runtime="tensorflow")
    assert lite.runtime.startswith("litert-") and tensorflow.runtime == "tensorflow"
    fast, reference = lite.score(inputs), tensorflow.score(inputs)
    assert (fast.probabilities.argmax(1) == reference.probabilities.argmax(1)).mean() >= 0.999
    assert (fast.flagged != reference.flagged).sum() == 0
    assert np.abs(fast.probabilities - reference.probabilities).max() < 0.1  # quantised, not another model
    # The second look, too, runs on the sidecar and keeps the labels.
    looked = Predictor(shipped_model, device="cpu", detector=SHIPPED_DETECTOR, second_look=True).score(inputs)
    assert looked.looked_again is not None
    assert (looked.probabilities.argmax(1) == reference.probabilities.argmax(1)).mean() >= 0.995


def test_rows_after_the_full_batches_go_through_the_small_tail_batch(monkeypatch):
    """A few rows (the second look's copies, a daemon's small batch) are not padded to a whole batch of 256, and
    which interpreter scores a row does not change its outputs."""
    data = (ROOT / "models" / "default.fp32.tflite").read_bytes()
    network = lite_runtime.LiteNetwork(data, 256, "default.fp32.tflite")
    invoked = []
    real_call = lite_runtime.LiteNetwork.__call__

    def counting(self, batch):
        invoked.append(self.batch_size)
        return real_call(self, batch)

    monkeypatch.setattr(lite_runtime.LiteNetwork, "__call__", counting)
    images = np.random.default_rng(7).random((300, 28, 28, 1), np.float32)
    few = network.padded(images[:20])
    assert invoked == [lite_runtime.TAIL_BATCH]  # 20 rows: one small batch, not a batch of 256
    invoked.clear()
    many = network.padded(images)
    assert invoked == [256, 32, 32]  # 300 = one full batch, then 44 rows in small batches
    assert few.shape == (20, 10) and many.shape == (300, 10)
    np.testing.assert_allclose(many[:20], few, atol=1e-5)
    invoked.clear()
    alone = np.concatenate([network.padded(images[i : i + 1]) for i in range(256, 300)])
    np.testing.assert_allclose(many[256:], alone, atol=1e-5)


def test_an_export_that_agrees_too_rarely_writes_nothing(tiny_model, mnist_dir, tmp_path, monkeypatch):
    """Below 99.95% agreement on any set checked, no sidecar is written and the card names none: TensorFlow keeps running."""
    from batchclf.model import lite_export

    model = copy_model(tiny_model, tmp_path)
    card_before = model.with_suffix(".json").read_bytes()
    monkeypatch.setattr(lite_export, "check_sets", lambda *args: {"mnist_test": np.random.default_rng(1).random(
        (64, 28, 28, 1), np.float32)})
    monkeypatch.setattr(lite_export, "agreement", lambda *args: {"n": 64, "labels_differ": 1, "agreement": 0.9990})
    with pytest.raises(SystemExit, match="less than 99.95% of mnist_test"):
        lite_export.export(model, "fp32", mnist_dir, None, [], log=lambda *_: None)
    assert not list(tmp_path.glob("*.tflite"))
    assert model.with_suffix(".json").read_bytes() == card_before
