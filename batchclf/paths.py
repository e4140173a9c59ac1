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
# The not-a-digit detector (batchclf.model.detector) sits apart from the classifiers, so `batchclf models` never lists it.
DETECTOR_NAME = "detectors/not-a-digit.keras"
IN_USE_NAME = "IN_USE"  # models/IN_USE names the model in use (batchclf models use NAME)
PACKAGED_MODELS = Path(__file__).resolve().parent / "models"  # a wheel's package data
CHECKOUT_MODELS = Path(__file__).resolve().parent.parent / "models"  # a source checkout's models/


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


def shipped_default_model() -> Path | None:
    """The model batchclf ships: the checkout's ``models/default.keras``, else the wheel's package data; None if neither."""
    candidates = [
        CHECKOUT_MODELS / DEFAULT_MODEL_NAME,
        PACKAGED_MODELS / DEFAULT_MODEL_NAME,
    ]
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def default_model(base: Path | None = None) -> Path:
    """The model used when ``--model`` is absent.

    The home's ``models/`` decides (``IN_USE``, else ``default.keras``); a
    checkout has ``models/default.keras``, and a wheel carries the same file
    as package data under ``batchclf/models/``.
    """
    chosen = model_in_use(models_dir(base))
    if chosen.name != DEFAULT_MODEL_NAME or chosen.is_file():
        # Another model put in use on purpose: if it is gone, say so rather than fall back to another model.
        return chosen
    return shipped_default_model() or chosen


def default_detector(base: Path | None = None) -> Path | None:
    """The not-a-digit detector used unless told otherwise: the home's, else the checkout's or the wheel's; None if none."""
    candidates = [
        models_dir(base) / DETECTOR_NAME,
        CHECKOUT_MODELS / DETECTOR_NAME,
        PACKAGED_MODELS / DETECTOR_NAME,
    ]
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def detector(choice: str | Path | None, base: Path | None = None) -> Path | None:
    """A ``--detector`` value as a file: ``off`` -> None, ``auto`` (or unset) -> :func:`default_detector`, else the path."""
    if choice is None or str(choice) == "auto":
        return default_detector(base)
    if str(choice) == "off":
        return None
    return Path(choice)


def card_path(model_path: Path) -> Path:
    """A model's card sits next to it: ``NAME.keras`` -> ``NAME.json``."""
    return Path(model_path).with_suffix(".json")
