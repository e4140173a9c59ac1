"""Where batchclf keeps its folders.

One place resolves them: an explicit flag wins, then ``BATCHCLF_HOME``
(a folder holding ``inbox/``, ``jobs/`` and ``models/``), then the current
directory.  The shipped default model is looked up in the home's ``models/``
first and then inside the installed package, so a wheel install finds it.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "BATCHCLF_HOME"
DEFAULT_MODEL_NAME = "default.keras"
IN_USE_NAME = "IN_USE"  # models/IN_USE names the model in use (batchclf models use NAME)
PACKAGED_MODELS = Path(__file__).resolve().parent / "models"


def home(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env)
    return Path.cwd()


def models_dir(base: Path | None = None) -> Path:
    return home(base) / "models"


def jobs_dir(base: Path | None = None) -> Path:
    return home(base) / "jobs"


def inbox_dir(base: Path | None = None) -> Path:
    return home(base) / "inbox"


def model_in_use(folder: Path) -> Path:
    """The model a models folder puts in use: the one ``IN_USE`` names, else ``default.keras``."""
    pointer = Path(folder) / IN_USE_NAME
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        if name:
            return Path(folder) / name
    return Path(folder) / DEFAULT_MODEL_NAME


def default_model(base: Path | None = None) -> Path:
    """The model used when ``--model`` is absent.

    The home's ``models/`` decides (``IN_USE``, else ``default.keras``); a
    checkout has ``models/default.keras``, and a wheel carries the same file
    as package data under ``batchclf/models/``.
    """
    chosen = model_in_use(models_dir(base))
    if chosen.name != DEFAULT_MODEL_NAME:
        return chosen  # put in use on purpose: if it is gone, say so rather than fall back to another model
    candidates = [
        chosen,
        Path(__file__).resolve().parent.parent / "models" / DEFAULT_MODEL_NAME,
        PACKAGED_MODELS / DEFAULT_MODEL_NAME,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[0]


def card_path(model_path: Path) -> Path:
    """A model's card sits next to it: ``NAME.keras`` -> ``NAME.json``."""
    return Path(model_path).with_suffix(".json")
