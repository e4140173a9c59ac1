"""The HTML review sheet (``batchclf report --html FILE``): the doubtful digits in front of the eyes.

One self-contained page: no network, no external files (a
Content-Security-Policy allows only inline styles, inline script and
``data:`` images, so the browser itself proves it).  On top the summary of
each job, then a bar chart of labels and the confidence histogram (inline
SVG, summed over the jobs given), then a card for every ``review`` and
``failed`` row: the original image (at most 160 px), the 28x28 the model saw
(recomputed by the same decode and :func:`batchclf.scan.preprocess.normalize_to_bytes`
as prediction; no TensorFlow), file name, page, label, confidence, second
choice and the reason.  An input file that is gone shows as "missing".

Rows are streamed from ``results.csv`` and the page is rendered as they
come, so a million-row day needs memory for one image at a time.  File
names and reasons are user input: everything goes through Jinja2 with
autoescaping, and data for the script through ``|tojson``.

Corrections
-----------
Under each image is an input for the right digit; "Save corrections.csv"
downloads (through the browser, no server) a CSV of the items filled in,
in grid order::

    file,page,label
    scans/a.png,1,7
    "scans/b,""odd"".tif",2,1

- ``file``: the row's ``file`` exactly as in the job's rows (relative to the
  folder given to ``classify``, or to the daemon's inbox), without the
  apostrophe ``results.csv`` puts before formula-like names;
- ``page``: the 1-based page; empty for a failed file that had no page;
- ``label``: the digit the person typed, ``0`` to ``9``.

UTF-8 without a byte order mark, CRLF line ends, RFC 4180 quoting (a field
holding a quote, comma or line break is quoted, quotes doubled); Python's
``csv.DictReader`` reads it as it is.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import jinja2
import numpy as np
from PIL import Image

from batchclf.errors import ImageDecodeError
from batchclf.jobs.folder import Job, parse_time, row_from_cells
from batchclf.jobs.rows import COLUMNS, FAILED, REVIEW
from batchclf.scan import decode, preprocess

THUMBNAIL_SIDE = 160
TEMPLATE = "review-sheet.html"
DOUBTFUL = (REVIEW, FAILED)

_STATUS_AT = COLUMNS.index("status")
_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("batchclf.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a misspelt name fails the tests instead of rendering empty
    trim_blocks=True,
    lstrip_blocks=True,
)


def write_review_sheet(path: Path, jobs: list[Job], summaries: list[dict]) -> int:
    """Write the review sheet of ``jobs`` (with their :func:`summarise` results) to ``path``; returns the number of items."""
    path = Path(path)
    sections = [_Section(job, summary) for job, summary in zip(jobs, summaries)]
    context = {
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "jobs": [_job_view(summary) for summary in summaries],
        "expected": sum(section.expected for section in sections),
        "labels": _bars([sum(s["labels"][str(k)] for s in summaries) for k in range(10)], [str(k) for k in range(10)]),
        "histogram": _bars(_summed_histogram(summaries), _bin_names(summaries)),
        "sections": sections,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Rendered into a temporary sibling and renamed: a sheet being rewritten is never seen half done.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            _environment.get_template(TEMPLATE).stream(context).dump(handle)
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; a sheet is for others to open
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return sum(section.shown for section in sections)


class _Section:
    """One job's part of the grid; its items are produced while the template renders them."""

    def __init__(self, job: Job, summary: dict):
        self.job = job
        self.id = summary["id"]
        self.expected = sum(summary["counts"][status] for status in DOUBTFUL)
        self.review_below = summary.get("review_below")
        self.shown = 0

    def items(self) -> Iterator[dict]:
        pages = _PageCache()
        for cells in self.job.cells():
            if cells[_STATUS_AT] in DOUBTFUL:
                self.shown += 1
                yield _item(row_from_cells(cells), self.job.input_location, pages, self.review_below)


class _PageCache:
    """The decoded pages of the last file read: the rows of a multi-page TIFF come one after another."""

    def __init__(self):
        self._path: Path | None = None
        self._pages: list[decode.Page] | ImageDecodeError = []
        self._sha256 = ""

    def get(self, path: Path) -> tuple[list[decode.Page], str]:
        if path != self._path:
            self._path = path
            try:
                data = decode.read(path)
                self._sha256 = hashlib.sha256(data).hexdigest()
                self._pages = decode.decode_bytes(data)
            except ImageDecodeError as exc:
                self._pages = exc
        if isinstance(self._pages, ImageDecodeError):
            raise self._pages
        return self._pages, self._sha256


def _item(row: dict, locate, pages: _PageCache, review_below: float | None) -> dict:
    item = {
        "file": row["file"],
        "page": row["page"],
        "status": row["status"],
        "label": row["label"],
        "confidence": _percent(row["confidence"]),
        "second_label": row["second_label"],
        "second_confidence": _percent(row["second_confidence"]),
        "reason": _reason(row, review_below),
        "key": {"file": row["file"], "page": row["page"]},
        "original": None,
        "small": False,  # an original this small is enlarged with crisp pixels
        "seen": None,
        "note": None,  # why a picture is not shown
        "changed": False,
    }
    location = locate(row)
    if location is None:
        item["note"] = "missing"
        return item
    try:
        item.update(_pictures(row, location, pages))
    except Exception as exc:  # one strange file never loses the whole sheet
        item["note"] = f"cannot show: {exc.__class__.__name__}: {exc}"
    return item


def _pictures(row: dict, location: Path, pages: _PageCache) -> dict:
    """The row's page as it is now, and the 28x28 that prediction makes of it."""
    try:
        file_pages, sha256 = pages.get(location)
    except ImageDecodeError as exc:
        return {"note": f"unreadable: {exc}"}
    index = (row["page"] or 1) - 1
    if index >= len(file_pages):
        return {"note": f"page {index + 1} is not in the file now"}
    gray = file_pages[index].gray
    original, small = _thumbnail(gray)
    shown = {"original": original, "small": small, "changed": bool(row["sha256"]) and row["sha256"] != sha256}
    try:
        seen = preprocess.normalize_to_bytes(gray)
    except Exception as exc:  # the failure prediction met: the original still shows
        return {**shown, "note": f"preprocessing failed: {exc}"}
    if seen is None:
        return {**shown, "note": "blank after preprocessing"}
    return {**shown, "seen": _png_uri(Image.fromarray(seen, "L"))}


def _thumbnail(gray: np.ndarray) -> tuple[str, bool]:
    """A PNG data URI of the page at most THUMBNAIL_SIDE px, and whether it is small (shown pixelated)."""
    image = Image.fromarray(gray if gray.dtype == np.uint8 else preprocess.to_bytes(gray), "L")
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    return _png_uri(image), max(image.size) < THUMBNAIL_SIDE // 2


def _png_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _reason(row: dict, review_below: float | None) -> str:
    if row["error"]:
        return row["error"]
    if row["status"] == REVIEW and review_below is not None and row["confidence"] is not None:
        return f"confidence below the review threshold {_percent(review_below)}"
    return "low confidence" if row["status"] == REVIEW else "failed"


def _percent(value: float | None) -> str | None:
    return None if value is None else f"{value:.1%}"


def _job_view(summary: dict) -> dict:
    """A summary's numbers as the strings the table shows."""
    model = summary["model"]
    started = summary.get("started")
    return {
        "id": summary["id"],
        "kind": summary["kind"],
        "started": parse_time(started).strftime("%Y-%m-%d %H:%M UTC") if started else "",
        "files": f"{summary['files']:,}",
        "rows": f"{summary['rows']:,}",
        "counts": {status: f"{count:,}" for status, count in summary["counts"].items()},
        "review_rate": _percent(summary["review_rate"]) or "",
        "failed_rate": _percent(summary["failed_rate"]) or "",
        "seconds": f"{summary['seconds']:,.1f} s" if summary.get("seconds") is not None else "",
        "files_per_second": f"{summary['files_per_second']:,.1f}" if summary.get("files_per_second") is not None else "",
        "model_file": Path(model["file"]).name if model.get("file") else "",
        "model_path": model.get("file") or "",
        "sha256": (model.get("sha256") or "")[:12],
        "architecture": model.get("architecture") or "",
        "card_accuracy": _percent(model["card_accuracy"]) if model.get("card_accuracy") is not None else "",
    }


def _summed_histogram(summaries: list[dict]) -> list[int]:
    counts = [s["confidence_histogram"]["counts"] for s in summaries]
    return [sum(column) for column in zip(*counts)] if counts else []


def _bin_names(summaries: list[dict]) -> list[str]:
    if not summaries:
        return []
    edges = summaries[0]["confidence_histogram"]["edges"]
    return [f"{round(low * 100)}–{round(high * 100)}" for low, high in zip(edges, edges[1:])]


def _bars(counts: list[int], names: list[str]) -> list[dict]:
    """Bars scaled to the tallest (heights in 0..100) for the template's SVG charts."""
    tallest = max(counts, default=0) or 1
    return [
        {"name": name, "count": f"{count:,}", "shown": _compact(count), "height": round(100 * count / tallest, 1)}
        for name, count in zip(names, counts)
    ]


def _compact(count: int) -> str:
    """A count short enough to stand above a bar: 9,999, 12.3k, 1.2M."""
    if count < 10_000:
        return f"{count:,}"
    if count < 1_000_000:
        return f"{count / 1000:.1f}k"
    return f"{count / 1_000_000:.1f}M"
