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

from dataclasses import dataclass
from pathlib import Path

from batchclf import paths
from batchclf.atomic import write_text_atomic
from batchclf.errors import ModelLoadError, ModelNotFoundError
from batchclf.model import card as cards
from batchclf.model import trust


@dataclass(frozen=True)
class ModelEntry:
    name: str  # the file's stem: ``default`` for ``default.keras``
    path: Path
    card: dict
    in_use: bool


def list_models(models_dir: Path) -> list[ModelEntry]:
    """The ``.keras`` files in ``models_dir``, and the shipped model as ``default`` when the folder has no ``default.keras``."""
    models_dir = Path(models_dir)
    found = sorted(models_dir.glob("*.keras")) if models_dir.is_dir() else []
    shipped = paths.shipped_default_model()
    if shipped is not None and not any(path.name == paths.DEFAULT_MODEL_NAME for path in found):
        found = sorted([*found, shipped], key=lambda path: path.name)
    current = paths.model_in_use(models_dir).name
    return [ModelEntry(path.stem, path, _card_or_note(path), path.name == current) for path in found]


def find(name: str, models_dir: Path) -> Path:
    """A model given by name (``default``), file name (``default.keras``) or path.

    ``default`` is always found: the folder's ``default.keras``, else the
    shipped one (the checkout's, or the installed package's).
    """
    given = Path(name)
    candidates = [given] if given.suffix == ".keras" and given.parent != Path(".") else []
    stem = given.name[: -len(".keras")] if given.name.endswith(".keras") else given.name
    candidates.append(Path(models_dir) / f"{stem}.keras")
    if f"{stem}.keras" == paths.DEFAULT_MODEL_NAME and given.parent == Path("."):
        candidates.append(paths.shipped_default_model())
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            return candidate
    known = ", ".join(entry.name for entry in list_models(models_dir)) or "none"
    raise ModelNotFoundError(f"no model {name} in {models_dir} (models there: {known})")


def use(name: str, models_dir: Path) -> tuple[Path, Path]:
    """Put a model of ``models_dir`` (or the shipped default) in use; returns ``(previous, now)``."""
    models_dir = Path(models_dir)
    target = find(name, models_dir)
    shipped = target == paths.shipped_default_model()
    if not shipped and target.resolve().parent != models_dir.resolve():
        raise ModelLoadError(f"{target} is not in {models_dir}: copy it there (with its .json card) first")
    trust.check_model_file(target)  # a .keras zip with config.json, before anything is in use
    previous = paths.model_in_use(models_dir)
    # The shipped default is named like a file of the folder: paths.default_model falls back to the shipped one.
    models_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(models_dir / paths.IN_USE_NAME, target.name + "\n")
    return previous, target


def _card_or_note(path: Path) -> dict:
    try:
        return cards.read(path)
    except ModelLoadError as exc:
        return {"error": str(exc)}
