"""Model cards: the JSON file next to every saved model (``NAME.keras`` -> ``NAME.json``)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from batchclf.atomic import write_text_atomic
from batchclf.errors import ModelLoadError
from batchclf.paths import card_path

# Used when a card has no fitted review threshold: below this calibrated
# confidence a row is marked ``review``.
FALLBACK_REVIEW_BELOW = 0.9


def hardware() -> dict:
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def write(model_path: Path, card: dict) -> Path:
    path = card_path(model_path)
    write_text_atomic(path, json.dumps(card, indent=2, sort_keys=False) + "\n")
    return path


def read(model_path: Path) -> dict:
    """The card of a model, or ``{}`` when it has none (a model trained elsewhere)."""
    path = card_path(model_path)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read model card {path}: {exc}") from exc


def temperature(card: dict) -> float:
    return float(card.get("calibration", {}).get("temperature", 1.0))


def review_below(card: dict, override: float | None = None) -> float:
    """The confidence below which rows are marked ``review``: the user's flag, else the card's."""
    if override is not None:
        return override
    return float(card.get("review_below", FALLBACK_REVIEW_BELOW))
