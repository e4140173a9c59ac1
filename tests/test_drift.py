"""Drift warnings (issue 20): one warning when the recent rows move away from the baseline, one when they come back."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from batchclf.metrics.drift import (Baseline, DriftMonitor, DriftSettings, card_baseline, learned_baseline,
                                    read_drift_state, state_path, write_state)
from batchclf.watch.operations import Operations

from .helpers import drop, ink_digit, png_bytes, samples


def rows(review: int, ok: int, review_confidence: float = 0.4, ok_confidence: float = 0.99) -> list[dict]:
    return [{"status": "review", "confidence": review_confidence}] * review + [{"status": "ok", "confidence": ok_confidence}] * ok


def mix(n: int, every: int) -> list[dict]:
    """``n`` rows, one in ``every`` sent to review."""
    return [{"status": "review" if i % every == 0 else "ok", "confidence": 0.5 if i % every == 0 else 0.99} for i in range(n)]


def feed(monitor: DriftMonitor, items: list[dict]) -> list[tuple[int, bool]]:
    """Feed rows one at a time: ``(row number, drifting)`` of every change."""
    changes = []
    for i, row in enumerate(items, 1):
        change = monitor.observe([row])
        if change is not None:
            changes.append((i, change.drifting))
    return changes


def test_a_warning_within_a_window_of_a_worse_mix_and_a_clear_within_a_window_of_the_old_one():
    window = 100
    monitor = DriftMonitor(DriftSettings(window=window, factor=2.0, margin=0.02, confidence_drop=1.0))
    assert feed(monitor, mix(window, every=50)) == []  # learning: the first 100 rows are the baseline
    assert monitor.baseline.review_share == pytest.approx(0.02) and monitor.baseline.source == "learned"
    assert monitor.review_threshold() == pytest.approx(0.04)
    # Real handwriting: one row in four to review. The window passes 4% within a fifth of a window (13 rows), and it warns once.
    changes = feed(monitor, mix(5 * window, every=4))
    assert changes == [(changes[0][0], True)] and changes[0][0] <= window // 5
    assert monitor.drifting and "review share" in monitor.status_text()
    # Back to the old mix: cleared once the window is back under 3% (halfway), within one window, never re-raised.
    changes = feed(monitor, mix(5 * window, every=50))
    assert changes == [(changes[0][0], False)] and changes[0][0] <= window
    assert not monitor.drifting and monitor.status_text() == ""


def test_a_mix_at_the_threshold_warns_once_not_per_row():
    monitor = DriftMonitor(DriftSettings(window=50, factor=2.0, margin=0.0, confidence_drop=1.0),
                           baseline=Baseline(0.10, None, "card", 0))
    # 20% is the threshold; rows alternate around it for a long time.
    items = []
    for block in range(40):
        items += mix(25, every=4 if block % 2 else 6)  # 25% then ~17%: across 20% and back, never under 15%
    changes = feed(monitor, items)
    assert [drifting for _, drifting in changes] == [True]


def test_a_drop_in_mean_confidence_alone_warns():
    monitor = DriftMonitor(DriftSettings(window=20, confidence_drop=0.05), baseline=Baseline(0.0, 0.95, "card", 0))
    assert monitor.observe(rows(0, 20, ok_confidence=0.95)) is None
    change = monitor.observe(rows(0, 20, ok_confidence=0.85))  # no more reviews, but far less sure
    assert change.drifting and "mean confidence 0.850" in change.message


def test_nothing_is_judged_before_the_window_is_full_or_when_off():
    monitor = DriftMonitor(DriftSettings(window=10), baseline=Baseline(0.0, None, "card", 0))
    assert monitor.observe(rows(9, 0)) is None  # nine rows of review: not yet a window
    assert monitor.observe(rows(1, 0)).drifting
    off = DriftMonitor(DriftSettings(window=0), baseline=Baseline(0.0, None, "card", 0))
    assert off.observe(rows(100, 0)) is None and off.rows == 0


def test_the_card_baseline_when_the_card_measured_one_and_only_for_the_same_model():
    assert card_baseline({"mnist_test": {"accuracy": 0.99}}) is None  # today's cards: the first rows are the baseline
    assert card_baseline({"mnist_test": {"review_share": 0.004, "mean_confidence": 0.99, "n": 10000}}) == \
        Baseline(0.004, 0.99, "card", 10000)
    assert card_baseline({"mnist_test": {"review_share": 7}}) is None  # not a share: ignored
    state = {"model": {"sha256": "aa"}, "baseline": {"review_share": 0.03, "mean_confidence": 0.9, "source": "learned", "rows": 500}}
    assert learned_baseline(state, "aa") == Baseline(0.03, 0.9, "learned", 500)
    assert learned_baseline(state, "bb") is None  # another model learns its own


def test_the_state_file_reads_back_and_a_broken_one_is_a_problem_not_a_crash(tmp_path):
    assert read_drift_state(tmp_path) is None
    monitor = DriftMonitor(DriftSettings(window=10), baseline=Baseline(0.05, None, "card", 0))
    monitor.observe(rows(5, 5))
    write_state(tmp_path, monitor.state({"file": "m.keras", "sha256": "cd" * 32}, since="2026-12-07T03:00:00.000Z"))
    state = read_drift_state(tmp_path)
    assert state.drifting and state.since == "2026-12-07T03:00:00.000Z" and state.rows == 10
    assert state.review_share == 0.5 and state.baseline_review_share == 0.05 and state.baseline_source == "card"
    assert state.line().startswith("DRIFT since 2026-12-07T03:00:00.000Z: review share 50.0% over the last 10 rows")
    assert json.loads(json.dumps(state.as_dict()))["reasons"] == list(state.reasons)
    for broken in ("{", '{"version": 1, "rows": "many"}', '{"version": 1, "review_share": 3}', "[]", '{"version": 99}'):
        state_path(tmp_path).write_text(broken)
        state = read_drift_state(tmp_path)
        assert state.problem and state.line().startswith("drift: unknown (")


# -- the daemon ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ink_model(tmp_path_factory) -> Path:
    """A model whose confidence follows the amount of ink: a thin ring is a sure 0 (0.83), a solid block anyone's guess."""
    import keras

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(10, activation="softmax")])
    kernel = np.zeros((1, 10), np.float32)
    kernel[0, 0] = -50.0
    bias = np.zeros(10, np.float32)
    bias[0] = 12.0
    model.layers[-1].set_weights([kernel, bias])
    path = tmp_path_factory.mktemp("drift-model") / "ink.keras"
    model.save(path)
    path.with_suffix(".json").write_text(json.dumps({"architecture": "ink", "calibration": {"temperature": 1.0},
                                                     "review_below": 0.5}))
    return path


def block(size: int) -> bytes:
    gray = np.full((120, 120), 240, np.uint8)
    gray[20 : 20 + size, 20 : 20 + size * 4 // 5] = 20
    return png_bytes(Image.fromarray(gray, "L"))


class Recorder:
    def __init__(self):
        self.statuses: list[str] = []

    def send(self, **fields) -> bool:
        if "STATUS" in fields:
            self.statuses.append(fields["STATUS"])
        return True

    def watchdog_interval(self):
        return None

    def close(self) -> None:
        pass


def test_the_daemon_warns_once_when_inputs_review_more_and_clears_when_the_mix_returns(tmp_path, ink_model, caplog):
    from batchclf.watch.daemon import Daemon, WatchOptions

    inbox, jobs, metrics = tmp_path / "inbox", tmp_path / "jobs", tmp_path / "batchclf.prom"
    inbox.mkdir()
    operations = Operations(metrics_file=metrics, drift=DriftSettings(window=20, factor=2.0, margin=0.1, confidence_drop=0.05))

    def run(files: dict[str, bytes]) -> tuple[list[str], list[str]]:
        for name, data in files.items():
            drop(inbox, name, data)
        notifier = Recorder()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="batchclf.watch"):
            daemon = Daemon(WatchOptions(inbox=inbox, out_dir=jobs, model=ink_model, oneshot=True, settle=0, workers=0,
                                         max_batch=2), notifier=notifier, operations=operations)
            assert daemon.run() == 0
        said = [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.getMessage().startswith("drift")]
        return said, notifier.statuses

    # Digits like the ones it knows: 20 rings are the baseline (none to review), no warning.
    said, _ = run({f"ring{i:02}.png": png_bytes(ink_digit(60 + i)) for i in range(20)})
    assert said == []
    state = read_drift_state(jobs)
    assert not state.drifting and state.baseline_review_share == 0.0 and state.baseline_source == "learned"
    assert samples(metrics)[("batchclf_drift", ())] == 0
    # Inputs that review more, in a new run (the baseline and the window come back from the state file and journal).
    said, statuses = run({f"block{i:02}.png": block(60 + 3 * i) for i in range(10)})
    assert len(said) == 1 and said[0].startswith("WARNING drift: ")  # one warning, not one per row
    assert any(status.startswith("DRIFT: ") for status in statuses)
    state = read_drift_state(jobs)
    assert state.drifting and state.since and state.line().startswith("DRIFT since ")
    assert samples(metrics)[("batchclf_drift", ())] == 1
    # The old mix again, in the next run: that run says the drift goes on (no new warning), then clears it within
    # one window (20 rows), once.
    said, statuses = run({f"ring{i:02}.png": png_bytes(ink_digit(60 + i)) for i in range(20, 45)})
    assert len(said) == 2 and said[0].startswith(f"INFO drift continues (since {state.since}): ")
    assert said[1].startswith("INFO drift cleared: ")
    assert not statuses[-1].startswith("DRIFT")
    assert not read_drift_state(jobs).drifting
    assert samples(metrics)[("batchclf_drift", ())] == 0
    assert samples(metrics)[("batchclf_recent_review_share", ())] == 0.0


@pytest.mark.integration
def test_mnist_then_real_handwriting_warns_and_mnist_again_clears(tmp_path, shipped_model, mnist, caplog):
    """The issue's scenario with the shipped models: MNIST test digits, then real handwriting the models never saw
    (USPS zip.test: the Swiss writers are in their training now), then MNIST again."""
    from batchclf.watch.daemon import Daemon, WatchOptions

    usps = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "usps" / "zip.test.gz"
    if not usps.is_file():
        pytest.skip(f"USPS test digits not found at {usps} (CI keeps ../shared/data beside the checkout)")
    window = 500
    inbox, jobs = tmp_path / "inbox", tmp_path / "jobs"
    inbox.mkdir()
    operations = Operations(drift=DriftSettings(window=window))  # the defaults: 500 rows, 2x and 2 points, 0.05
    from batchclf.datasets.usps import write_usps_scans

    write_usps_scans(usps, tmp_path / "usps")
    unseen = sorted((tmp_path / "usps").rglob("*.png"))[:window]

    def run(files: dict[str, bytes]) -> list[str]:
        for name, data in files.items():
            drop(inbox, name, data)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="batchclf.watch"):
            assert Daemon(WatchOptions(inbox=inbox, out_dir=jobs, model=shipped_model, oneshot=True, settle=0, workers=0,
                                       detector="off"), operations=operations).run() == 0
        return [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.getMessage().startswith("drift")]

    def digits(start: int, n: int) -> dict[str, bytes]:
        return {f"mnist-{i:05}.png": png_bytes(Image.fromarray(mnist.x_test[i])) for i in range(start, start + n)}

    assert run(digits(0, window)) == []  # the baseline: MNIST sends well under 1% to review
    baseline = read_drift_state(jobs).baseline_review_share
    assert baseline < 0.02
    said = run({f"usps-{i:04}-{p.name}": p.read_bytes() for i, p in enumerate(unseen)})
    assert len(said) == 1 and said[0].startswith("WARNING drift: review share")
    state = read_drift_state(jobs)
    assert state.drifting and state.review_share > max(2 * baseline, baseline + 0.02)
    said = run(digits(window, window + 100))
    assert said[0].startswith("INFO drift continues") and said[-1].startswith("INFO drift cleared: ")
    assert not read_drift_state(jobs).drifting


def test_a_running_daemon_keeps_rewriting_the_state_once_the_window_is_full(tmp_path, ink_model, monkeypatch):
    """The window's length stops changing once it is full: the state file must still follow the rows that come."""
    import batchclf.watch.daemon as daemon_module
    from batchclf.watch.daemon import Daemon, WatchOptions

    from .helpers import running, wait_for

    monkeypatch.setattr(daemon_module, "DRIFT_STATE_EVERY", 0.0)  # rewrite at each loop turn that saw new rows
    inbox, jobs = tmp_path / "inbox", tmp_path / "jobs"
    inbox.mkdir()
    # A factor, margin and drop no mix can cross: no drift starts, so no change of state writes the file either.
    never = DriftSettings(window=2, factor=100.0, margin=1.0, confidence_drop=1.0)
    daemon = Daemon(WatchOptions(inbox=inbox, out_dir=jobs, model=ink_model, settle=0.1, max_latency=0.05, workers=0,
                                 rescan_interval=600), notifier=Recorder(), operations=Operations(drift=never))

    def state_after(rows: int):
        state = read_drift_state(jobs)
        return state if state is not None and state.rows == rows and state.baseline_review_share is not None else None

    with running(daemon):
        for i in range(2):
            drop(inbox, f"ring{i}.png", png_bytes(ink_digit(60 + i)))
        full = wait_for(lambda: state_after(2), timeout=30, what="the state of a full window")
        assert full.review_share == 0.0 and full.mean_confidence > 0.7  # thin rings: sure zeros
        for i in range(2):
            drop(inbox, f"block{i}.png", block(60 + 3 * i))
        # Two more rows, the window still 2 long: the file shows the blocks (reviewed, unsure) before the daemon stops.
        later = wait_for(lambda: (s := state_after(2)) is not None and s.review_share == 1.0 and s,
                         timeout=30, what="the state rewritten for rows past a full window")
        assert later.mean_confidence < full.mean_confidence
        assert not later.drifting


def test_the_window_seeded_at_start_holds_the_last_rows_of_this_model_not_fewer(tmp_path):
    """Rows of another model among the latest (a day run with another model) must not crowd this model's out."""
    from batchclf.watch.journal import Journal

    def row(model: str, status: str, confidence: float | None) -> tuple[str, dict]:
        return "2026-12-07", {"file": "x.png", "page": 1, "status": status, "label": 1, "confidence": confidence,
                              "model": model}

    journal = Journal(tmp_path / "journal.sqlite")
    try:
        journal.decide([row("a.keras", "ok", 0.91), row("a.keras", "review", 0.42), row("a.keras", "ok", 0.93),
                        row("a.keras", "blank", None), row("a.keras", "ok", float("nan")),  # no measurement either
                        row("b.keras", "ok", 0.99), row("b.keras", "review", 0.3)], [])
        assert journal.recent_labelled(3, "a.keras") == [(False, 0.91), (True, 0.42), (False, 0.93)]
        assert journal.recent_labelled(1, "b.keras") == [(True, 0.3)]
        assert journal.recent_labelled(5, "c.keras") == []
    finally:
        journal.close()
