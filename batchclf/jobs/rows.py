"""The one row schema shared by ``classify``, the inbox daemon and every report.

A row describes one page of one input file.  Everything downstream (CSV,
JSON, JSONL, summaries, the review sheet) reads these keys, so they are
defined once here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

import numpy as np

COLUMNS = (
    "file",
    "page",
    "status",
    "label",
    "confidence",
    "second_label",
    "second_confidence",
    "error",
    "sha256",
    "width",
    "height",
    "model",
    "processed_at",
    "duplicate_of",
    # Added later, so at the end: files written before it have the columns up to here (LEGACY_COLUMNS).
    "second_look",
)
LEGACY_COLUMNS = COLUMNS[: COLUMNS.index("second_look")]
# ``second_look``: what the second look (batchclf.model.second_look) made of a doubtful row; empty when it took none.
ACCEPTED_ON_SECOND_LOOK, STILL_DOUBTFUL = "accepted", "doubtful"

OK, REVIEW, BLANK, FAILED, DUPLICATE = "ok", "review", "blank", "failed", "duplicate"
STATUSES = (OK, REVIEW, BLANK, FAILED, DUPLICATE)
# The reason a row the not-a-digit detector flagged carries (batchclf.model.detector).
NOT_A_DIGIT = "not a digit"
# The reason of a row whose model output was no number (nan, inf: a broken model, card or input scale).
NOT_FINITE = "the model gave no finite confidence"

# Spreadsheets run a cell starting with these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_row(**fields) -> dict:
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise KeyError(f"not row columns: {sorted(unknown)}")
    row = {column: None for column in COLUMNS}
    row.update(fields)
    return row


def labelled_rows(bases: list[dict], probabilities, review_below: float, model: str, not_digit=None,
                  looked_again=None) -> list[dict]:
    """Fill label, confidences and status of a batch's rows from their calibrated probabilities ``(N, 10)``.

    ``not_digit`` is the not-a-digit detector's verdict per row (None: no
    detector): a flagged row goes to ``review`` whatever its confidence, with
    the reason in ``error`` (the column that says why a row is not ``ok``).
    ``looked_again`` marks the rows the second look reconsidered: their
    ``second_look`` says whether it accepted them.
    A row is ``ok`` only if its probabilities are finite and its confidence
    at least ``review_below``: the last guard, so no bad setting, card or
    model turns NaN into ``ok`` (NaN compares false with any threshold).
    Such a row goes to review with its confidences empty (NaN is not JSON).
    One sort and one timestamp per batch (its rows were labelled together):
    this runs for every image, so nothing per row is done twice.
    """
    probabilities = np.asarray(probabilities)
    if not len(bases):
        return []
    top2 = np.argsort(-probabilities, axis=1, kind="stable")[:, :2]
    confidences = np.take_along_axis(probabilities, top2, axis=1).tolist()
    flagged = [False] * len(bases) if not_digit is None else np.asarray(not_digit, bool).tolist()
    looked = [False] * len(bases) if looked_again is None else np.asarray(looked_again, bool).tolist()
    # One NaN anywhere makes a row's probabilities meaningless (argsort would sort it last and pick a finite "winner").
    all_finite = np.isfinite(probabilities).all(axis=1).tolist()
    stamp = now_iso()
    rows = []
    for base, (first, second), (confidence, runner_up), odd, finite, again in zip(
            bases, top2.tolist(), confidences, flagged, all_finite, looked):
        accepted = finite and not odd and confidence >= review_below
        rows.append({
            **base,
            "status": OK if accepted else REVIEW,
            "label": first,
            "confidence": round(confidence, 6) if finite else None,
            "second_label": second if finite else None,
            "second_confidence": round(runner_up, 6) if finite else None,
            "error": NOT_A_DIGIT if odd else NOT_FINITE if not finite else base.get("error"),
            "model": model,
            "processed_at": stamp,
            "second_look": (ACCEPTED_ON_SECOND_LOOK if accepted else STILL_DOUBTFUL) if again else None,
        })
    return rows


def duplicate(row: dict, first: str, model: str) -> dict:
    """A page of a file whose bytes were reported before: ``duplicate``, pointing at that file's first row.

    No label of its own (the first row has it); the same shape from ``classify --dedupe`` and the daemon.
    """
    cleared = {"label": None, "confidence": None, "second_label": None, "second_confidence": None, "error": None,
               "second_look": None}
    return {**row, **cleared, "status": DUPLICATE, "duplicate_of": first, "model": model, "processed_at": now_iso()}


def content_digest(rows: Iterable[dict]) -> str | None:
    """The sha256 by which a file's rows (all its pages) take part in duplicate detection; None when they do not.

    The one duplicate rule, for ``classify --dedupe`` and the daemon alike: a
    file any of whose rows failed (unreadable, a page that did not decode or
    preprocess) is neither marked a duplicate nor counted as the first copy of
    its bytes.  A duplicate points at its first copy's rows for its labels, and
    a failed page has none to lend; the failure may also not last (a page
    limit raised, a read error), so the same bytes arriving again are labelled
    afresh.  Rows before or after labelling give the same answer: labelling
    never makes a row failed.
    """
    digest = None
    for row in rows:
        if row["status"] == FAILED:
            return None
        digest = digest or row.get("sha256")
    return digest


def unlabelled(row: dict, model: str) -> dict:
    """Finish a row the model did not label: a blank page was judged under this model's settings, a failed file never was."""
    return {**row, "model": None if row["status"] == FAILED else model}


def starts_file(row: dict) -> bool:
    """The row of a file's first page (failed files have no page): counts each file once."""
    return row.get("page") in (None, 1)


def csv_cell(value):
    """A CSV cell a spreadsheet shows as text: formula-like strings get a leading apostrophe."""
    if value is None:
        return ""
    if value.__class__ is str and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value  # numbers: the csv module formats them
