"""``batchclf models``: listing, showing and switching the model in use, without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest
from typer.testing import CliRunner

from batchclf import paths
from batchclf.cli import app
from batchclf.errors import ModelLoadError, ModelNotFoundError
from batchclf.model.registry import find, list_models, use


def fake_model(folder, name, accuracy=0.99, **card):
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{name}.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    (folder / f"{name}.json").write_text(json.dumps({"architecture": "default", "mnist_test": {"accuracy": accuracy}, **card}))
    return folder / f"{name}.keras"


def test_switching_the_model_in_use(tmp_path):
    models = tmp_path / "models"
    fake_model(models, "default")
    tuned = fake_model(models, "tuned", parent="default.keras")
    assert paths.default_model(tmp_path) == models / "default.keras"
    assert [(e.name, e.in_use) for e in list_models(models)] == [("default", True), ("tuned", False)]
    previous, now = use("tuned", models)
    assert (previous.name, now) == ("default.keras", tuned)
    assert paths.default_model(tmp_path) == tuned
    assert [(e.name, e.in_use) for e in list_models(models)] == [("default", False), ("tuned", True)]
    result = CliRunner().invoke(app, ["models", "use", "default.keras", "--home", str(tmp_path)])
    assert result.exit_code == 0 and "in use: default.keras (was tuned.keras)" in result.output
    assert paths.default_model(tmp_path) == models / "default.keras"


def test_a_removed_model_in_use_is_an_error_not_a_silent_fallback(tmp_path):
    models = tmp_path / "models"
    fake_model(models, "default")
    use(str(fake_model(models, "tuned")), models)
    (models / "tuned.keras").unlink()
    assert paths.default_model(tmp_path) == models / "tuned.keras"  # loading it then fails with the name


def test_refuses_what_is_not_a_keras_model(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="not a .keras archive"):
        use("broken", models)
    with pytest.raises(ModelNotFoundError, match="no model nope"):
        find("nope", models)
    assert not (models / "IN_USE").exists()
    result = CliRunner().invoke(app, ["models", "use", "nope", "--home", str(tmp_path)])
    assert result.exit_code == 1 and result.output.startswith("Error: no model nope")


def test_list_and_show_without_tensorflow(tmp_path):
    fake_model(tmp_path / "models", "default", accuracy=0.9962, created="2026-11-24T12:54:11+00:00")
    code = (
        "import sys\nfrom batchclf.cli import app\n"
        "for args in (['models', '--home', sys.argv[1]], ['models', 'show', 'default', '--home', sys.argv[1]]):\n"
        "    try:\n        app(args)\n    except SystemExit as e:\n        assert not e.code, e.code\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "99.62%" in done.stdout and "2026-11-24T12:54:11" in done.stdout
