"""One model spec (batchclf.model.spec) and one consume path (batchclf.engines.consume) for every consumer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchclf.engines.base import EngineSettings
from batchclf.model.spec import ModelSpec

from .helpers import ink_digit, png_bytes, ThreesPredictor, threes

ROOT = Path(__file__).resolve().parents[1]




def test_spec_describes_the_model_without_tensorflow(tiny_model):
    code = (
        "import sys, json; from pathlib import Path; from batchclf.model.spec import ModelSpec; "
        f"d = ModelSpec(Path({str(tiny_model)!r}), input_scale=255, second_look=True).describe(); "
        "print(json.dumps([d, 'tensorflow' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    import json

    described, tensorflow = json.loads(out.stdout)
    assert tensorflow is False
    assert described["file"] == "tiny.keras" and described["architecture"] == "tiny"
    assert described["input_scale"] == 255.0 and described["second_look"] is True and described["detector"] is None


def test_engine_settings_split_model_options_into_the_spec(tiny_model):
    settings = EngineSettings.of(model=tiny_model, device="cpu", batch_size=8, second_look=True, workers=2, actors=3)
    assert settings.spec == ModelSpec(tiny_model, device="cpu", batch_size=8, second_look=True)
    assert (settings.workers, settings.actors) == (2, 3)


def test_ray_driver_hands_its_actors_one_resolved_spec(tiny_model):
    pytest.importorskip("pyarrow")
    from batchclf.engines.ray import RayEngine

    engine = RayEngine(EngineSettings.of(model=tiny_model, device="cpu", review_below=0.25, second_look=True))
    # Resolved once in the driver: the device, the batch, the threshold; the second look reaches the actors too.
    assert engine.actor_spec == ModelSpec(tiny_model, device="cpu", batch_size=engine.batch_size, review_below=0.25,
                                          second_look=True)
    assert engine.model["second_look"] is True  # the job records what the actors run, as the local engine does


def test_local_engine_daemon_and_ray_actors_consume_through_one_function(tmp_path, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    from batchclf.engines import consume as consuming
    from batchclf.engines import local, ray
    from batchclf.scan.discovery import discover
    from batchclf.watch import decide as deciding
    from batchclf.watch.intake import Taken

    calls = []
    real = consuming.consume

    def recording(items, predictor, review_below=None):
        calls.append(len(items))
        return real(items, predictor, review_below)

    monkeypatch.setattr(local, "consume", recording)
    monkeypatch.setattr(deciding, "consume", recording)
    monkeypatch.setattr(consuming, "consume", recording)  # the Ray actor looks it up when it labels

    (tmp_path / "a.png").write_bytes(png_bytes(ink_digit()))
    local_rows = list(local.classify_stream(discover([tmp_path]), threes, 8, 0.5, "fake.keras", workers=0))
    assert calls == [1] and local_rows[0]["label"] == 3

    from batchclf.scan.prepare import prepare_many

    item = prepare_many(list(discover([tmp_path])))[0]
    assert item.image is not None
    taken = Taken("a.png", tmp_path / "a.png", 1, 0, 0.0)
    taken.prepared = [item]

    class NoReports:
        def first_reports_of(self, digests):
            return {}

    rows, _ = deciding.decide([taken], NoReports(), ThreesPredictor(), 0.5, "2026-12-07", keep=True)
    assert calls == [1, 1] and rows[0][1]["label"] == 3

    actor = object.__new__(ray.Labeller)
    actor.predictor = ThreesPredictor()
    table = pa.table({"seq": pa.array([0], pa.int64()), "row": pa.array([ray._row_text(item.row)]),
                      "image": pa.array([item.image.tobytes()], pa.binary())})
    assert ray.Labeller.__call__(actor, table).num_rows == 1
    assert calls == [1, 1, 1]


def test_spec_carries_the_runtime_to_the_predictor(tiny_model):
    """auto by default; tensorflow|litert forced; a model without a sidecar cannot be forced onto LiteRT."""
    from batchclf.errors import DeviceError, ModelLoadError

    assert ModelSpec(tiny_model).runtime == "auto"
    assert EngineSettings.of(model=tiny_model, runtime="tensorflow").spec.runtime == "tensorflow"
    described = ModelSpec(tiny_model, device="cpu").describe()
    assert described["runtime"] == "tensorflow" and described["lite"] is None  # its card names no sidecar
    with pytest.raises(ModelLoadError, match="runtime litert: tiny.keras's card names no LiteRT sidecar"):
        ModelSpec(tiny_model, device="cpu", runtime="litert").predictor()
    with pytest.raises(DeviceError, match="unknown runtime 'onnx'"):
        ModelSpec(tiny_model, runtime="onnx").predictor()
    with pytest.raises(DeviceError, match="runs on the CPU"):
        ModelSpec(tiny_model, device="gpu", runtime="litert").predictor()
