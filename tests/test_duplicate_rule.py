"""One duplicate rule for ``classify --dedupe`` and the daemon (:func:`batchclf.jobs.rows.content_digest`).

The same files, prepared once, go through both: classify's way (labelled by the
one consume path, then :class:`batchclf.classify.Duplicates`) and the daemon's
(:func:`batchclf.watch.decide.decide` against a real journal, in one batch and
one file per batch).  Each file ends with the same statuses, fixed here: a file
with a failed page is neither a duplicate nor a first copy, so a good copy of
failed bytes is labelled, and of two good copies the second is the duplicate.
No TensorFlow: the model is a function that reads every image as a 3.
"""

from __future__ import annotations

import numpy as np
import pytest

from batchclf.classify import Duplicates
from batchclf.engines.labelling import label_rows
from batchclf.jobs.rows import FAILED, make_row
from batchclf.scan.prepare import Prepared
from batchclf.watch.decide import decide
from batchclf.watch.intake import Taken
from batchclf.watch.journal import Journal

from tests.helpers import ThreesPredictor, threes

DAY = "2026-12-07"
IMAGE = np.full((28, 28), 128, np.uint8)


def page(file: str, sha: str, number: int | None = 1) -> Prepared:
    return Prepared(make_row(file=file, page=number, sha256=sha), IMAGE)


def failed_page(file: str, sha: str | None, number: int | None, reason: str) -> Prepared:
    return Prepared(make_row(file=file, page=number, sha256=sha, status=FAILED, error=reason), None)


# In arrival order: (file, its prepared pages).
FILES = [
    # A two-page TIFF whose second page does not decode (say, past --max-pages), then a copy of its bytes.
    ("scan.tif", [page("scan.tif", "a" * 64), failed_page("scan.tif", "a" * 64, 2, "page 2: too many pages")]),
    ("scan-copy.tif", [page("scan-copy.tif", "a" * 64), failed_page("scan-copy.tif", "a" * 64, 2, "page 2: too many pages")]),
    # A file that failed whole, then a good copy of the same bytes (the limit was raised, a read error passed).
    ("first-try.png", [failed_page("first-try.png", "b" * 64, None, "read error")]),
    ("second-try.png", [page("second-try.png", "b" * 64)]),
    # Two good copies.
    ("one.png", [page("one.png", "c" * 64)]),
    ("two.png", [page("two.png", "c" * 64)]),
]
EXPECTED = {
    "scan.tif": ["ok", "failed"],
    "scan-copy.tif": ["ok", "failed"],
    "first-try.png": ["failed"],
    "second-try.png": ["ok"],
    "one.png": ["ok"],
    "two.png": ["duplicate"],
}


def statuses(rows: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in rows:
        out.setdefault(row["file"], []).append(row["status"])
    return out


def classify_rows() -> list[dict]:
    prepared = [item for _, items in FILES for item in items]
    labelled = label_rows([item.row for item in prepared], [item.image for item in prepared], threes, 0.5, "fake.keras")
    return list(Duplicates().mark(labelled))


def daemon_rows(tmp_path, per_batch: int) -> list[dict]:
    journal = Journal(tmp_path / f"journal-{per_batch}.sqlite")
    out = []
    for start in range(0, len(FILES), per_batch):
        batch = []
        for file, items in FILES[start : start + per_batch]:
            taken = Taken(file, tmp_path / file, 1, 0, 0.0)
            taken.prepared = items
            batch.append(taken)
        rows, records = decide(batch, journal, ThreesPredictor(), 0.5, DAY, keep=True)
        journal.decide(rows, records)  # committed: the next batch's files look their bytes up here
        out += [row for _, row in rows]
    journal.close()
    return out


def test_classify_dedupe_follows_the_rule():
    rows = classify_rows()
    assert statuses(rows) == EXPECTED
    assert [row["duplicate_of"] for row in rows if row["status"] == "duplicate"] == ["one.png#1"]


@pytest.mark.parametrize("per_batch", [len(FILES), 1], ids=["one batch", "a batch per file"])
def test_the_daemon_follows_the_same_rule(tmp_path, per_batch):
    rows = daemon_rows(tmp_path, per_batch)
    assert statuses(rows) == EXPECTED
    assert [row["duplicate_of"] for row in rows if row["status"] == "duplicate"] == [f"watch-{DAY}/one.png#1"]


def test_classify_dedupe_and_the_daemon_give_the_same_statuses(tmp_path):
    assert statuses(classify_rows()) == statuses(daemon_rows(tmp_path, 1)) == statuses(daemon_rows(tmp_path, len(FILES)))
