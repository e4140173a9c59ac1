"""What a model card may hold: checked once, when :func:`batchclf.model.card.read` reads it.

A card is a file handed to us like any other, and some of its fields decide
rows: ``calibration.temperature`` divides the logits, ``input_scale``
multiplies the pixels, ``review_below`` and a detector's ``flag_above`` send
rows to review.  A zero, negative, infinite or NaN value there silently turns
review off or inverts the ranking, so every field we read has a type and a
range here.  Cards also carry many informational fields (per-class figures,
the training command, hardware...) and new ones get added: keys not listed
here are allowed, but every number anywhere must be finite, and the whole
card is bounded in size and depth.

No jsonschema: the rules are a dozen fields, one table and a walk.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from batchclf.limits import MAX_INPUT_SCALE

MAX_BYTES = 1 << 20  # a real card is ~5 kB
MAX_DEPTH = 32  # a real card nests 4 deep
MAX_INT = 2**53  # larger integers lose precision as floats (and 10**400 cannot become one)


class CardError(ValueError):
    """A card breaks a rule; the message names the field (``calibration.temperature``)."""


@dataclass(frozen=True)
class Rule:
    kind: str  # "text", "count", "number", "object", "flag", "sha256", "sidecar"
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the low bound itself is refused
    nullable: bool = False

    def describe(self) -> str:
        if self.kind == "text":
            return "a string"
        if self.kind == "object":
            return "an object"
        if self.kind == "flag":
            return "true or false"
        if self.kind == "sha256":
            return "64 lowercase hex digits"
        if self.kind == "sidecar":
            return "a plain file name ending .tflite (no folder)"
        if self.kind == "count":
            return f"a whole number from 0 to {MAX_INT}"
        low = "" if self.low is None else (f"> {self.low:g}" if self.low_open else f">= {self.low:g}")
        high = "" if self.high is None else f"<= {self.high:g}"
        bounds = " and ".join(part for part in (low, high) if part)
        return "a finite number" + (f" {bounds}" if bounds else "")


SHARE = Rule("number", 0.0, 1.0, nullable=True)  # an accuracy, an ECE: a fraction, or null when not measured
TEXT = Rule("text", nullable=True)

# Fields batchclf reads (to decide rows or to print them): their type and range.
RULES: dict[tuple[str, ...], Rule] = {
    ("name",): TEXT,
    ("file",): TEXT,
    ("kind",): TEXT,
    ("architecture",): TEXT,
    ("architecture_description",): TEXT,
    ("created",): TEXT,
    ("parent",): TEXT,
    ("parent_sha256",): TEXT,
    ("parameters",): Rule("count", nullable=True),
    ("flops_per_image",): Rule("count", nullable=True),
    ("mnist_test",): Rule("object"),
    ("mnist_test", "accuracy"): SHARE,
    ("mnist_test", "n"): Rule("count", nullable=True),
    ("parent_mnist_test_accuracy",): SHARE,
    ("calibration",): Rule("object"),
    # Probabilities are softmax(logits / T): T <= 0 gives NaN or an inverted ranking; T huge, uniform guesses.
    ("calibration", "temperature"): Rule("number", 0.0, 100.0, low_open=True),
    ("calibration", "test_ece_before"): SHARE,
    ("calibration", "test_ece_after"): SHARE,
    ("calibration", "validation_ece_before"): SHARE,
    ("calibration", "validation_ece_after"): SHARE,
    # Below this calibrated confidence a row goes to review: 0 would send nothing there.
    ("review_below",): Rule("number", 0.0, 1.0, low_open=True),
    # Pixels are multiplied by this (255 for a model trained on raw 0-255 pixels): 0 makes every input the same.
    ("input_scale",): Rule("number", 0.0, MAX_INPUT_SCALE, low_open=True),
    # A detector flags inputs whose not-a-digit probability is above this.
    ("flag_above",): Rule("number", 0.0, 1.0),
    # Doubtful rows get the second look (batchclf.model.second_look) unless the card says false.
    ("second_look",): Rule("flag"),
    ("selective",): Rule("object"),
    # The LiteRT sidecar (batchclf.model.lite_export): a file beside the model, run on a CPU only while both hashes match.
    ("lite",): Rule("object"),
    ("lite", "file"): Rule("sidecar"),
    ("lite", "sha256"): Rule("sha256"),
    ("lite", "source_sha256"): Rule("sha256"),
    ("lite", "quantisation"): Rule("text"),
    ("lite", "referee"): Rule("object"),  # the float sidecar that scores again the rows near a decision
    ("lite", "referee", "file"): Rule("sidecar"),
    ("lite", "referee", "sha256"): Rule("sha256"),
    ("lite", "referee", "margin"): Rule("number", 0.0, 1.0),
}
# A ``lite`` entry is used only with all of these (the runtime compares both hashes before reading the file).
LITE_REQUIRED = ("file", "sha256", "source_sha256", "quantisation")
# The error-vs-coverage curve (batchclf.model.selective) picks the review threshold for --target-error:
# each point's fields, checked point by point.
CURVE_POINT: dict[str, Rule] = {
    "review_below": Rule("number", 0.0, 1.0, low_open=True),
    "coverage": Rule("number", 0.0, 1.0),
    "error": Rule("number", 0.0, 1.0),
}
MAX_CURVE_POINTS = 1000


def dotted(path: tuple) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def validate(card: Any, detector: bool = False) -> dict:
    """``card`` if it keeps every rule; else :class:`CardError` naming the first field that does not."""
    if not isinstance(card, dict):
        raise CardError(f"the card must be a JSON object, not {_kind_of(card)}")
    _check_shape(card)
    for path, rule in RULES.items():
        found, value = _lookup(card, path)
        if found:
            _check_rule(path, rule, value)
    found, curve = _lookup(card, ("selective", "curve"))
    if found:
        _check_curve(curve)
    if isinstance(card.get("lite"), dict):
        missing = [key for key in LITE_REQUIRED if key not in card["lite"]]
        if missing:
            raise CardError(f"lite.{missing[0]} is missing (a LiteRT sidecar entry needs {', '.join(LITE_REQUIRED)})")
        referee = card["lite"].get("referee")
        missing = [key for key in ("file", "sha256", "margin") if isinstance(referee, dict) and key not in referee]
        if missing:
            raise CardError(f"lite.referee.{missing[0]} is missing")
    if detector and "flag_above" not in card:
        raise CardError("flag_above is missing (a not-a-digit detector's card needs its threshold)")
    return card


def _check_shape(card: dict) -> None:
    """Every number finite and representable, nothing nested deeper than MAX_DEPTH (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, tuple, int]] = [(card, (), 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise CardError(f"{dotted(path)} is nested deeper than {MAX_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((item, (*path, key), depth + 1) for key, item in items)
        elif isinstance(value, float) and not math.isfinite(value):
            raise CardError(f"{dotted(path)} is {value}, not a finite number")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise CardError(f"{dotted(path)} is a number too large ({len(str(abs(value)))} digits)")


def _check_curve(curve: Any) -> None:
    if not isinstance(curve, list) or not 1 <= len(curve) <= MAX_CURVE_POINTS:
        raise CardError(f"selective.curve must be a list of 1 to {MAX_CURVE_POINTS} points, not {_shown(curve)}")
    for index, point in enumerate(curve):
        if not isinstance(point, dict):
            raise CardError(f"selective.curve.{index} must be an object, not {_shown(point)}")
        for key, rule in CURVE_POINT.items():
            if key not in point:
                raise CardError(f"selective.curve.{index}.{key} is missing")
            _check_rule(("selective", "curve", index, key), rule, point[key])


def _lookup(card: dict, path: tuple) -> tuple[bool, Any]:
    value: Any = card
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return False, None
        value = value[key]
    return True, value


def _check_rule(path: tuple, rule: Rule, value: Any) -> None:
    if value is None and rule.nullable:
        return
    if rule.kind == "text":
        ok = isinstance(value, str)
    elif rule.kind == "object":
        ok = isinstance(value, dict)
    elif rule.kind == "flag":
        ok = isinstance(value, bool)
    elif rule.kind == "sha256":
        ok = isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    elif rule.kind == "sidecar":
        ok = isinstance(value, str) and value.endswith(".tflite") and _plain_name(value)
    elif rule.kind == "count":
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and _in_range(rule, value)
    if not ok:
        raise CardError(f"{dotted(path)} must be {rule.describe()}, not {_shown(value)}")


def _plain_name(name: str) -> bool:
    """A name that stays beside the model: no folder part, no parent, nothing a terminal would act on."""
    return 0 < len(name) <= 255 and "/" not in name and "\\" not in name and name not in (".", "..") and \
        not name.startswith(".") and name.isprintable()


def _in_range(rule: Rule, value: float) -> bool:
    if rule.low is not None and (value < rule.low or (rule.low_open and value == rule.low)):
        return False
    return rule.high is None or value <= rule.high


def _kind_of(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _shown(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return _kind_of(value)
    text = json.dumps(value)  # as the card spells it; ASCII with escapes, so a hostile value cannot reach the terminal raw
    return text if len(text) <= 40 else text[:37] + "..."
