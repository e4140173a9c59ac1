"""Drift: is the model now seeing inputs unlike those it was measured on?

Two figures over the last ``window`` rows the model labelled (``ok`` and
``review``; blank, failed and duplicate rows say nothing about the model):
the share sent to ``review`` and the mean confidence.  They are compared
with a *baseline*:

- the model card's, when it records them (``mnist_test.review_share`` and
  ``mnist_test.mean_confidence``; today's cards do not);
- otherwise the daemon's own first ``window`` labelled rows with this model
  (its sha256), kept in the state file so a restart does not learn again.

Drift starts when the window's review share is above ``factor`` times the
baseline's and at least ``margin`` above it (so a baseline near 0 does not
warn on one row), or when the mean confidence is ``confidence_drop`` below
the baseline's.  It clears only halfway back (hysteresis), so a mix at the
edge gives one warning, not a warning per row.

The state is one JSON file beside the journal (``jobs/watch-drift.json``),
rewritten atomically; :func:`read_drift_state` reads it for ``service
status`` and ``report`` without the daemon and without ``prometheus_client``.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from batchclf.atomic import write_text_atomic

STATE_NAME = "watch-drift.json"
STATE_VERSION = 1
OK, REVIEW = "ok", "review"  # the statuses the model decided (batchclf.jobs.rows); compared as text


@dataclass(frozen=True)
class DriftSettings:
    window: int = 500  # rows; 0 turns drift detection off
    factor: float = 2.0  # review share above factor x baseline...
    margin: float = 0.02  # ...and at least this much above it (a share: 0.02 = 2 points)
    confidence_drop: float = 0.05  # mean confidence this far below the baseline's

    @property
    def enabled(self) -> bool:
        return self.window > 0


@dataclass(frozen=True)
class Baseline:
    review_share: float
    mean_confidence: float | None
    source: str  # "card" or "learned"
    rows: int  # how many rows it was measured on (0: unknown, the card's)


@dataclass(frozen=True)
class Change:
    """A drift that started or cleared: one log line each."""

    drifting: bool
    message: str


def card_baseline(card: dict) -> Baseline | None:
    """The card's measured review share (and mean confidence), when it records them; None otherwise."""
    measured = card.get("mnist_test") if isinstance(card, dict) else None
    share = measured.get("review_share") if isinstance(measured, dict) else None
    if not _fraction(share):
        return None
    confidence = measured.get("mean_confidence")
    return Baseline(float(share), float(confidence) if _fraction(confidence) else None, "card",
                    int(measured.get("n") or 0) if isinstance(measured.get("n"), int) else 0)


class DriftMonitor:
    """The rolling window, the baseline and the drifting flag; pure (no clock, no files)."""

    def __init__(self, settings: DriftSettings, baseline: Baseline | None = None):
        self.settings = settings
        self.baseline = baseline
        self._window: deque[tuple[bool, float]] = deque(maxlen=max(1, settings.window))
        self._reviews = 0  # running sums over the window: judging a batch costs O(batch), not O(window)
        self._confidence = 0.0
        self._learning: list[tuple[bool, float]] = []
        # Rows taken since start, never going down: once the window is full its length stops changing,
        # so "has anything new come?" must be asked of this count, not of ``rows``.
        self.seen = 0
        self.drifting = False
        self.reasons: list[str] = []

    # -- figures -------------------------------------------------------------------------------------

    @property
    def rows(self) -> int:
        return len(self._window)

    @property
    def review_share(self) -> float | None:
        return self._reviews / len(self._window) if self._window else None

    @property
    def mean_confidence(self) -> float | None:
        return self._confidence / len(self._window) if self._window else None

    def _push(self, item: tuple[bool, float]) -> None:
        if len(self._window) == self._window.maxlen:
            old_review, old_confidence = self._window[0]
            self._reviews -= old_review
            self._confidence -= old_confidence
        self._window.append(item)
        self.seen += 1
        self._reviews += item[0]
        self._confidence += item[1]

    def review_threshold(self) -> float | None:
        """The review share above which drift starts."""
        if self.baseline is None:
            return None
        b = self.baseline.review_share
        return max(self.settings.factor * b, b + self.settings.margin)

    def confidence_threshold(self) -> float | None:
        if self.baseline is None or self.baseline.mean_confidence is None:
            return None
        return self.baseline.mean_confidence - self.settings.confidence_drop

    # -- rows ----------------------------------------------------------------------------------------

    def observe(self, rows: Iterable[dict]) -> Change | None:
        """Take a batch's rows; the change of state they caused, if any."""
        if not self.settings.enabled:
            return None
        for row in rows:
            if row.get("status") not in (OK, REVIEW) or row.get("confidence") is None:
                continue
            item = (row["status"] == REVIEW, float(row["confidence"]))
            self._push(item)
            if self.baseline is None:
                self._learning.append(item)
                if len(self._learning) >= self.settings.window:
                    self.baseline = _measured(self._learning)
                    self._learning = []
        return self._judge()

    def seed(self, items: Iterable[tuple[bool, float]]) -> Change | None:
        """Fill the window with earlier rows (oldest first), e.g. the journal's, so a restart judges at once."""
        if not self.settings.enabled:
            return None
        for item in items:
            self._push((bool(item[0]), float(item[1])))
        self._confidence = sum(c for _, c in self._window)  # re-summed once: no drift of float rounding from here
        return self._judge()

    def _judge(self) -> Change | None:
        if self.baseline is None or len(self._window) < self.settings.window:
            return None  # not enough rows yet to say anything
        share, confidence = self.review_share, self.mean_confidence
        high, low = self.review_threshold(), self.confidence_threshold()
        b = self.baseline
        if not self.drifting:
            reasons = []
            if share > high:
                reasons.append(f"review share {share:.1%} over the last {self.rows} rows, above {high:.1%} "
                               f"(baseline {b.review_share:.1%}, {self.describe_baseline()})")
            if low is not None and confidence < low:
                reasons.append(f"mean confidence {confidence:.3f} over the last {self.rows} rows, below {low:.3f} "
                               f"(baseline {b.mean_confidence:.3f})")
            if reasons:
                self.drifting, self.reasons = True, reasons
                return Change(True, "drift: " + "; ".join(reasons))
            return None
        # Clear only halfway back to the baseline: a mix at the threshold must not flap.
        share_back = share <= (b.review_share + high) / 2
        confidence_back = low is None or confidence >= (b.mean_confidence + low) / 2
        if share_back and confidence_back:
            self.drifting, self.reasons = False, []
            text = f"review share {share:.1%}" + (f", mean confidence {confidence:.3f}" if confidence is not None else "")
            return Change(False, f"drift cleared: {text} over the last {self.rows} rows, back near the baseline "
                                 f"({b.review_share:.1%}, {self.describe_baseline()})")
        return None

    def describe_baseline(self) -> str:
        if self.baseline is None:
            return "none yet"
        if self.baseline.source == "card":
            return "from the model card"
        return f"the daemon's first {self.baseline.rows} rows with this model"

    def status_text(self) -> str:
        """A few words for systemd's STATUS=."""
        if not self.drifting:
            return ""
        return "DRIFT: " + "; ".join(reason.split(" (")[0] for reason in self.reasons)

    # -- state file ----------------------------------------------------------------------------------

    def state(self, model: dict, since: str | None) -> dict:
        b = self.baseline
        return {
            "version": STATE_VERSION,
            "updated": _now_iso(),
            "model": {"file": model.get("file"), "sha256": model.get("sha256")},
            "window": self.settings.window,
            "rows": self.rows,
            "review_share": self.review_share,
            "mean_confidence": self.mean_confidence,
            "baseline": None if b is None else {"review_share": b.review_share, "mean_confidence": b.mean_confidence,
                                                 "source": b.source, "rows": b.rows},
            "thresholds": {"review_share": self.review_threshold(), "mean_confidence": self.confidence_threshold()},
            "drifting": self.drifting,
            "since": since if self.drifting else None,
            "reasons": list(self.reasons),
        }


def _measured(items: list[tuple[bool, float]]) -> Baseline:
    return Baseline(sum(r for r, _ in items) / len(items), sum(c for _, c in items) / len(items), "learned", len(items))


def _fraction(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- the state file ------------------------------------------------------------------------------------


def state_path(jobs_dir: Path) -> Path:
    return Path(jobs_dir) / STATE_NAME


def write_state(jobs_dir: Path, state: dict) -> None:
    write_text_atomic(state_path(jobs_dir), json.dumps(state, indent=2) + "\n")


@dataclass(frozen=True)
class DriftState:
    """What ``service status`` and ``report`` show; ``problem`` says why a state file could not be used."""

    drifting: bool
    reasons: tuple[str, ...]
    since: str | None
    updated: str | None
    rows: int
    window: int
    review_share: float | None
    mean_confidence: float | None
    baseline_review_share: float | None
    baseline_source: str | None
    model_sha256: str | None
    problem: str | None = None

    def line(self) -> str:
        """One line for a terminal."""
        if self.problem:
            return f"drift: unknown ({self.problem})"
        if self.drifting:
            return f"DRIFT since {self.since}: " + "; ".join(self.reasons)
        if self.baseline_review_share is None:
            return f"drift: no baseline yet ({self.rows} of {self.window} rows seen)"
        share = "?" if self.review_share is None else f"{self.review_share:.1%}"
        source = "the model card" if self.baseline_source == "card" else "the daemon's first rows with this model"
        return (f"drift: none (review share {share} over the last {self.rows} rows, "
                f"baseline {self.baseline_review_share:.1%} from {source})")

    def as_dict(self) -> dict:
        return {key: (list(value) if isinstance(value, tuple) else value) for key, value in self.__dict__.items()}


def read_drift_state(jobs_dir: Path) -> DriftState | None:
    """The drift state the daemon last wrote in ``jobs_dir``; None when there is none (no daemon ran there).

    A state file that cannot be read or makes no sense gives a state with
    ``problem`` set, never an exception: it must not break ``status`` or ``report``.
    """
    path = state_path(jobs_dir)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return _problem(f"{path}: {getattr(exc, 'strerror', None) or exc}")
    try:
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION:
            raise ValueError("not a drift state of this version")
        baseline = raw.get("baseline")
        if baseline is not None and not isinstance(baseline, dict):
            raise ValueError("bad baseline")
        reasons = raw.get("reasons") or []
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            raise ValueError("bad reasons")
        return DriftState(
            drifting=_typed(raw.get("drifting"), bool, False),
            reasons=tuple(reasons),
            since=_typed(raw.get("since"), str, None),
            updated=_typed(raw.get("updated"), str, None),
            rows=_typed(raw.get("rows"), int, 0),
            window=_typed(raw.get("window"), int, 0),
            review_share=_share(raw.get("review_share")),
            mean_confidence=_share(raw.get("mean_confidence")),
            baseline_review_share=_share((baseline or {}).get("review_share")),
            baseline_source=_typed((baseline or {}).get("source"), str, None),
            model_sha256=_typed((raw.get("model") or {}).get("sha256"), str, None),
        )
    except (ValueError, TypeError, AttributeError) as exc:
        return _problem(f"{path}: {exc}")


def _typed(value, kind, default):
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"unexpected value {value!r}")
    return value


def _share(value) -> float | None:
    if value is None:
        return None
    if not _fraction(value):
        raise ValueError(f"not a share: {value!r}")
    return float(value)


def _problem(text: str) -> DriftState:
    return DriftState(False, (), None, None, 0, 0, None, None, None, None, None, problem=text)


def learned_baseline(state: dict | None, sha256: str | None) -> Baseline | None:
    """The baseline a previous run learned for this very model (same sha256), from its state file's raw dict."""
    if not isinstance(state, dict) or not sha256:
        return None
    baseline, model = state.get("baseline"), state.get("model")
    if not isinstance(baseline, dict) or not isinstance(model, dict) or model.get("sha256") != sha256:
        return None
    if baseline.get("source") != "learned" or not _fraction(baseline.get("review_share")):
        return None
    confidence = baseline.get("mean_confidence")
    rows = baseline.get("rows")
    return Baseline(float(baseline["review_share"]), float(confidence) if _fraction(confidence) else None, "learned",
                    rows if isinstance(rows, int) and not isinstance(rows, bool) else 0)


def continued_since(state: dict | None, sha256: str | None) -> str | None:
    """When the drift a previous run of this model reported began, if it ended that run still drifting."""
    if not isinstance(state, dict) or not sha256 or not isinstance(state.get("model"), dict):
        return None
    if state["model"].get("sha256") != sha256 or state.get("drifting") is not True:
        return None
    since = state.get("since")
    return since if isinstance(since, str) else None


def load_raw_state(jobs_dir: Path) -> dict | None:
    """The state file as written, for the daemon to take its learned baseline back; None when absent or unreadable."""
    try:
        raw = json.loads(state_path(jobs_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None
