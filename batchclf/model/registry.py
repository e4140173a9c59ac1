"""The models a user manages: what is in ``models/``, which one is in use, switching it.

The model in use is named in ``models/IN_USE`` (one line, a file name in
``models/``); without that file it is ``default.keras``.  Switching rewrites
``IN_USE`` atomically (temp file, fsync, rename), so a job that starts while
someone switches gets the old model or the new one, never a mix; a running
daemon keeps the model it loaded until it is restarted.  Training writes
new files and never touches ``IN_USE``: a new model is never put in use by
accident.  Nothing here imports TensorFlow.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from batchclf import paths
from batchclf.atomic import write_text_atomic
from batchclf.errors import ModelLoadError, ModelNotFoundError
from batchclf.model import card as cards



@dataclass(frozen=True)
class ModelEntry:
    name: str  # the file's stem: ``default`` for ``default.keras``
    path: Path
    card: dict
    in_use: bool


def list_models(models_dir: Path) -> list[ModelEntry]:
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    current = paths.model_in_use(models_dir).name
    return [
        ModelEntry(path.stem, path, _card_or_note(path), path.name == current)
        for path in sorted(models_dir.glob("*.keras"))
    ]


def find(name: str, models_dir: Path) -> Path:
    """A model given by name (``default``), file name (``default.keras``) or path."""
    given = Path(name)
    candidates = [given] if given.suffix == ".keras" and given.parent != Path(".") else []
    stem = given.name[: -len(".keras")] if given.name.endswith(".keras") else given.name
    candidates.append(Path(models_dir) / f"{stem}.keras")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = ", ".join(entry.name for entry in list_models(models_dir)) or "none"
    raise ModelNotFoundError(f"no model {name} in {models_dir} (models there: {known})")


def use(name: str, models_dir: Path) -> tuple[Path, Path]:
    """Put a model of ``models_dir`` in use; returns ``(previous, now)``."""
    models_dir = Path(models_dir)
    target = find(name, models_dir)
    if target.resolve().parent != models_dir.resolve():
        raise ModelLoadError(f"{target} is not in {models_dir}: copy it there (with its .json card) first")
    _check_archive(target)
    previous = paths.model_in_use(models_dir)
    write_text_atomic(models_dir / paths.IN_USE_NAME, target.name + "\n")
    return previous, target


def _check_archive(path: Path) -> None:
    """A ``.keras`` file is a zip holding ``config.json``: refuse anything else before it is in use."""
    try:
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                raise ModelLoadError(f"{path} is not a Keras model (no config.json inside)")
    except zipfile.BadZipFile:
        raise ModelLoadError(f"{path} is not a Keras model (not a .keras archive)") from None


def _card_or_note(path: Path) -> dict:
    try:
        return cards.read(path)
    except ModelLoadError as exc:
        return {"error": str(exc)}
