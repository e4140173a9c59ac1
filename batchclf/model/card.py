"""Model cards: the JSON file next to every saved model (``NAME.keras`` -> ``NAME.json``)."""

from __future__ import annotations

import json
import os
import platform
import stat
from pathlib import Path

from batchclf.atomic import write_text_atomic
from batchclf.errors import ModelLoadError
from batchclf.model import card_schema
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


def read(model_path: Path, detector: bool = False) -> dict:
    """The card of a model, checked against :mod:`batchclf.model.card_schema`; ``{}`` when it has none.

    The one place a card is read.  A card that is not a regular file, too
    large, not JSON, nested too deep, or has a field of the wrong type or
    range is refused with one line naming the card file and the field.
    ``detector``: the card of a not-a-digit detector, which must carry ``flag_above``.
    """
    path = card_path(model_path)
    try:
        # O_NONBLOCK: a FIFO put where the card should be is opened without waiting for a writer, then refused.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        if detector:
            raise ModelLoadError(f"{model_path}: a detector needs its card ({path.name}) with flag_above") from None
        return {}
    except OSError as exc:
        raise ModelLoadError(f"cannot read model card {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise card_schema.CardError("not a regular file")
            raw = handle.read(card_schema.MAX_BYTES + 1)
        if len(raw) > card_schema.MAX_BYTES:
            raise card_schema.CardError(f"larger than {card_schema.MAX_BYTES:,} bytes")
        card = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        return card_schema.validate(card, detector=detector)
    except card_schema.CardError as exc:
        raise ModelLoadError(f"bad model card {path}: {exc}") from None
    except RecursionError:
        raise ModelLoadError(f"bad model card {path}: nested deeper than {card_schema.MAX_DEPTH} levels") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read model card {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # not UTF-8, not JSON
        raise ModelLoadError(f"bad model card {path}: not JSON ({_first_line(exc)})") from None


def _refuse_constant(name: str):
    # JSON has no NaN or Infinity; Python's json accepts them unless told otherwise.
    raise card_schema.CardError(f"holds {name}, which is not a finite number (nor JSON)")


def _first_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return text[:200]


def temperature(card: dict) -> float:
    return float(card.get("calibration", {}).get("temperature", 1.0))


def input_scale(card: dict, override: float | None = None) -> float:
    """What pixels in [0, 1] are multiplied by: the user's flag, else the card's, else 1."""
    return float(override if override is not None else card.get("input_scale", 1.0))


def review_below(card: dict, override: float | None = None) -> float:
    """The confidence below which rows are marked ``review``: the user's flag, else the card's."""
    if override is not None:
        return override
    return float(card.get("review_below", FALLBACK_REVIEW_BELOW))


def review_threshold(card: dict, review_below_flag: float | None = None, target_error: float | None = None,
                     model_name: str = "the model") -> dict:
    """The review threshold and where it came from, as job metadata records it (``review``).

    ``--review-below`` wins; else ``--target-error`` picks the lowest threshold whose measured
    error among accepted digits keeps the budget, from the card's error-vs-coverage curve
    (:mod:`batchclf.model.selective`); else the card's own ``review_below``.
    """
    if review_below_flag is not None:
        return {"review_below": float(review_below_flag), "source": "--review-below"}
    if target_error is None:
        return {"review_below": review_below(card), "source": "card" if "review_below" in card else "default"}
    from batchclf.model.selective import choose

    curve = card.get("selective", {}).get("curve")
    if not curve:
        raise ModelLoadError(f"{model_name}'s card has no error-vs-coverage curve (selective.curve), so --target-error "
                             "cannot choose a threshold: use --review-below, or a model whose card has one "
                             "(batchclf train --cross-validate measures it)")
    chosen = choose(curve, float(target_error))
    return {"review_below": chosen.review_below, "source": "--target-error", "target_error": float(target_error),
            "expected_error": chosen.expected_error, "expected_coverage": chosen.expected_coverage, "met": chosen.met,
            "measured_on": card.get("selective", {}).get("measured_on")}
