"""The HTML review sheet (``batchclf report --html FILE``): a keyboard-driven review station in one file.

One self-contained page: no network, no external files.  Its
Content-Security-Policy allows ``data:`` images and exactly the sheet's own
style and script (by their sha256, never ``'unsafe-inline'``), no form
target and no ``<base>``: even a future escaping bug could not run script
or send data anywhere.  On top the summary of each job (with the input
folder it read), then a bar chart of labels and the confidence histogram
(inline SVG, summed over the jobs given), then the station: a card for
every ``review`` and ``failed`` row with the original image (at most
160 px), the 28x28 the model saw (recomputed by the same decode and
:func:`batchclf.scan.preprocess.normalize_to_bytes` as prediction; no
TensorFlow), file name, page, label, confidence, second choice and the
reason.  An input file that is gone shows as "missing" (or "removed by
retention" when the daemon's day folder it was moved into was removed by
``--keep-processed`` / ``--keep-failed``), one the job's
inputs rule refuses (:mod:`batchclf.jobs.inputs`: a link leading out, a
name with ``..``, a folder outside the job's home and ``--inputs``) as
"outside the inputs".

Rows are streamed from ``results.csv`` and the page is written as they
come (one JSON block per job, never run as script), so a million-row day
needs memory for one image at a time; the browser draws one page of cards
at a time, so 10,000 cards open and move quickly.  File names, reasons and
folders are user input: the template autoescapes, the data goes through
``|tojson``, the script builds cards with ``textContent``, and every name is
shown inside ``<bdi>`` with control and bidi characters written as escapes
(``scan-17\\u202egnp.fdp``), so a name cannot disguise itself or what
follows it.

Decisions
---------
Keys (see the README): ``Enter``/``Space`` accept the model's label,
``0``-``9`` set the digit, ``n`` not a digit, ``b`` blank, ``u``/``Backspace``
undo, ``a`` accept the rest of a label group.  Decisions are kept in the
browser's local storage under a key made of the sheet's job ids, so a
reload or a closed tab loses nothing (two tabs on one sheet merge each
other's writes card by card, the later change winning); "Save corrections.csv" (or
``Ctrl+S``) downloads every decision, in job and row order::

    file,page,label,decision,decided_at,job
    scans/a.png,1,7,corrected,2026-11-24T08:01:02.345Z,20261124T031502Z-3f9a
    "scans/b,""odd"".tif",2,1,accepted,2026-11-24T08:01:03.012Z,20261124T031502Z-3f9a
    scans/c.png,1,,not-a-digit,2026-11-24T08:01:04.500Z,20261124T031502Z-3f9a

- ``file``: the row's ``file`` exactly as in the job's rows (relative to the
  folder given to ``classify``, or to the daemon's inbox), without the
  apostrophe ``results.csv`` puts before formula-like names;
- ``page``: the 1-based page; empty for a failed file that had no page;
- ``label``: the digit, ``0`` to ``9`` (the model's for ``accepted``); empty
  for ``not-a-digit`` and ``blank``;
- ``decision``: ``accepted``, ``corrected``, ``not-a-digit`` or ``blank``;
- ``decided_at``: when the person decided (UTC, ISO 8601);
- ``job``: the id of the job the row belongs to.

The first three columns are the original format: a reader that looks
columns up by name reads the new file (skipping the ``not-a-digit`` and
``blank`` rows, which have no label), and ``batchclf review apply`` reads
old files (without the new columns: a label is accepted or corrected by
comparison with the model's).  UTF-8
without a byte order mark, CRLF line ends, RFC 4180 quoting.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import jinja2
import markupsafe
import numpy as np
from PIL import Image

from batchclf.atomic import replacing
from batchclf.errors import ImageDecodeError
from batchclf.jobs.folder import RESULTS_CSV, Job, JobKind, parse_time, row_from_cells
from batchclf.jobs.rows import COLUMNS, FAILED, NOT_A_DIGIT, REVIEW
from batchclf.report.summary import IDLE_GAP_SECONDS
from batchclf.scan import decode, preprocess

THUMBNAIL_SIDE = 160
TEMPLATE = "review-sheet.html"
STYLE = "review-sheet.css"
SCRIPT = "review-sheet.js"
DOUBTFUL = (REVIEW, FAILED)
# The Time column's header tooltip: since report_version 2 a daemon day's ``seconds`` is its working time, not its span.
TIME_NOTE = (
    f"A classify job's run time; a daemon day's working time: the gaps between its batches, each counted up to "
    f"{IDLE_GAP_SECONDS:g} s, so waiting for files is left out (the day's span from first row to last is in its cell's tooltip)"
)

_STATUS_AT = COLUMNS.index("status")
_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("batchclf.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a misspelt name fails the tests instead of rendering empty
    trim_blocks=True,
    lstrip_blocks=True,
)


def write_review_sheet(path: Path, jobs: list[Job], summaries: list[dict], note: str | None = None) -> int:
    """Write the review sheet of ``jobs`` (with their :func:`summarise` results) to ``path``; returns the number of items.

    ``note``: a sentence shown under the title (why a sheet has no job: an empty ``--since`` window).
    """
    path = Path(path)
    sections = [_Section(job, summary) for job, summary in zip(jobs, summaries)]
    style, script = _source(STYLE), _source(SCRIPT)
    context = {
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "csp": markupsafe.Markup(content_security_policy(style, script)),  # quotes and base64 only; readable in the source
        "style": markupsafe.Markup(style),  # our own files, verbatim: the CSP hashes exactly these bytes
        "script": markupsafe.Markup(script),
        "sheet_key": sheet_key([section.id for section in sections]),
        "jobs": [_job_view(job, summary) for job, summary in zip(jobs, summaries)],
        "expected": sum(section.expected for section in sections),
        "labels": _bars([sum(s["labels"][str(k)] for s in summaries) for k in range(10)], [str(k) for k in range(10)]),
        "histogram": _bars(_summed_histogram(summaries), _bin_names(summaries)),
        "sections": sections,
        "time_note": TIME_NOTE,
        "note": shown(note[:1].upper() + note[1:]) if note else "",
    }
    # Rendered into a temporary sibling and renamed: a sheet being rewritten is never seen half done.
    with replacing(path) as temporary, open(temporary, "w", encoding="utf-8", newline="\n") as handle:
        _environment.get_template(TEMPLATE).stream(context).dump(handle)
    return sum(section.shown for section in sections)


def content_security_policy(style: str, script: str) -> str:
    """Nothing from the network, no form target, no ``<base>``; only ``data:`` images and the sheet's own style and script."""
    return (
        f"default-src 'none'; img-src data:; style-src {_hash_source(style)}; script-src {_hash_source(script)}; "
        "form-action 'none'; base-uri 'none'"
    )


def _hash_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _source(name: str) -> str:
    """A template file's text as it is, without Jinja processing (the style and the script are static)."""
    return _environment.loader.get_source(_environment, name)[0]


def sheet_key(job_ids: list[str]) -> str:
    """The local-storage key of a sheet: its jobs, so a sheet written again for the same jobs keeps its decisions."""
    return hashlib.sha256("\n".join(job_ids).encode("utf-8")).hexdigest()[:16]


# Characters a name can use to look like another: C0/C1 controls, bidi overrides and isolates, zero-width marks,
# line and paragraph separators.  They are shown as escapes; the saved file keeps the name exactly.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def shown(text: str) -> str:
    """``text`` with every control, format (bidi, zero-width) and line-separator character written as ``\\xNN`` or ``\\uNNNN``."""
    if text.isprintable() and text.isascii():
        return text
    return "".join(
        (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
        if unicodedata.category(c) in _HIDDEN_CATEGORIES
        else c
        for c in text
    )


class _Section:
    """One job's part of the grid; its items are produced while the template renders them."""

    def __init__(self, job: Job, summary: dict):
        self.job = job
        self.id = summary["id"]
        # The cards are results.csv's doubtful rows; after a review the summary counts verified.csv's, so count them here.
        if summary.get("rows_from", RESULTS_CSV) == RESULTS_CSV:
            self.expected = sum(summary["counts"][status] for status in DOUBTFUL)
        else:
            self.expected = sum(cells[_STATUS_AT] in DOUBTFUL for cells in job.cells())
        self.review_below = summary.get("review_below")
        self.shown = 0

    def items(self) -> Iterator[dict]:
        pages = _PageCache()
        for number, cells in enumerate(self.job.cells(), start=1):
            if cells[_STATUS_AT] in DOUBTFUL:
                self.shown += 1
                yield _item(number, row_from_cells(cells), self.job.locate_input, pages, self.review_below)


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


def _item(number: int, row: dict, locate, pages: _PageCache, review_below: float | None) -> dict:
    """One card's data for the script (JSON): ``file`` exactly as in the rows, ``shown`` as displayed."""
    item = {
        "row": number,  # the row's number in results.csv: a daemon day only appends, so it stays the row's
        "file": row["file"],
        "shown": shown(row["file"]),
        "page": row["page"],
        "status": row["status"],
        "kind": _kind(row),
        "label": row["label"],
        "conf": _finite(row["confidence"]),  # JSON has no NaN: one such row would lose the whole block
        "confidence": _percent(row["confidence"]),
        "second_label": row["second_label"],
        "second_confidence": _percent(row["second_confidence"]),
        "reason": shown(_reason(row, review_below)),
        "original": None,
        "small": False,  # an original this small is enlarged with crisp pixels
        "seen": None,
        "note": None,  # why a picture is not shown
        "changed": False,
    }
    located = locate(row)
    if located.path is None:
        item["note"] = located.problem  # "missing", "removed by retention" or "outside the inputs": the locator says which
        return item
    location = located.path
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


def _kind(row: dict) -> str:
    """The reason a row is doubtful, as the "by reason" view groups it."""
    if row["status"] == FAILED:
        return "failed"
    return "not-a-digit" if row["error"] == NOT_A_DIGIT else "low-confidence"


def _reason(row: dict, review_below: float | None) -> str:
    if row["error"]:
        return row["error"]
    if row["status"] == REVIEW and review_below is not None and row["confidence"] is not None:
        return f"confidence below the review threshold {_percent(review_below)}"
    return "low confidence" if row["status"] == REVIEW else "failed"


def _percent(value: float | None) -> str | None:
    return None if _finite(value) is None else f"{value:.1%}"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _job_view(job: Job, summary: dict) -> dict:
    """A summary's numbers as the strings the table shows, and the folder the job read."""
    model = summary["model"]
    started = summary.get("started")
    return {
        "id": shown(summary["id"]),
        "inputs": [shown(str(folder)) for folder in input_folders(job)],
        "some": {status: count > 0 for status, count in summary["counts"].items()},  # a zero is not an alarm
        "kind": summary["kind"],
        "started": parse_time(started).strftime("%Y-%m-%d %H:%M UTC") if started else "",
        "files": f"{summary['files']:,}",
        "rows": f"{summary['rows']:,}",
        "counts": {status: f"{count:,}" for status, count in summary["counts"].items()},
        "review_rate": _percent(summary["review_rate"]) or "",
        "failed_rate": _percent(summary["failed_rate"]) or "",
        "seconds": _seconds(summary.get("seconds")),
        # A daemon day's seconds are its working time (report_version 2); its wall span goes in the cell's tooltip.
        "wall": _seconds(summary.get("wall_seconds")) if summary["kind"] == JobKind.WATCH.value else "",
        "files_per_second": f"{summary['files_per_second']:,.1f}" if summary.get("files_per_second") is not None else "",
        "model_file": shown(Path(model["file"]).name) if model.get("file") else "",
        "model_path": model.get("file") or "",
        "sha256": (model.get("sha256") or "")[:12],
        "architecture": model.get("architecture") or "",
        "card_accuracy": _percent(model["card_accuracy"]) if model.get("card_accuracy") is not None else "",
    }


def _seconds(seconds: float | None) -> str:
    return f"{seconds:,.1f} s" if seconds is not None else ""


def input_folders(job: Job) -> list[str]:
    """What the job read: the paths given to ``classify``, or the daemon's inbox."""
    if job.meta.get("inbox"):
        return [str(job.meta["inbox"])]
    inputs = job.meta.get("inputs")
    return [str(given) for given in inputs] if isinstance(inputs, list) else []


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
