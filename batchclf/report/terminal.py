"""The report on a terminal: rich tables with inline bars; plain aligned text when piped.

Every text that comes from a job folder (ids, file names, reasons, model
and device names, paths) is shown through :func:`batchclf.printable.printable`
(control characters as ``\\xNN``) and as plain :class:`Text`, never as rich
markup: a name can neither drive the terminal nor break the table.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from batchclf.printable import printable

BAR_WIDTH = 30


def print_job(summary: dict, console: Console) -> None:
    """One job: timing and model, counts per status and label, the confidence histogram, the doubtful rows."""
    plain = not console.is_terminal
    started = _short_time(summary["started"])
    console.print(f"job {printable(summary['id'])} ({summary['kind']})  started {printable(started)}", highlight=False, markup=False)
    console.print(timing_line(summary), highlight=False, markup=False)
    model = summary["model"]
    accuracy = f", card accuracy {model['card_accuracy'] * 100:.2f}%" if model.get("card_accuracy") else ""
    sha = (model.get("sha256") or "")[:12]
    console.print(
        f"model {printable(model.get('file')) or '?'} (sha256 {printable(sha) or '?'}{accuracy}) on {printable(summary.get('device')) or '?'}",
        highlight=False,
        markup=False,
    )
    threshold = review_line(summary)
    if threshold:
        console.print(threshold, highlight=False, markup=False)
    if summary.get("verified") is not None:
        console.print(
            f"reviewed by a person: {person_line(summary['verified'])} (rows from {summary['rows_from']})", highlight=False, markup=False
        )

    rows = summary["rows"]
    statuses = _table(plain, "status", "rows", "share", "")
    for status, n in summary["counts"].items():
        statuses.add_row(status, f"{n:,}", _percent(n / rows if rows else None), _bar(n, rows, plain))
    console.print(statuses)

    labelled = sum(summary["labels"].values())
    labels = _table(plain, "label", "rows", "share", "")
    for label, n in summary["labels"].items():
        labels.add_row(label, f"{n:,}", _percent(n / labelled if labelled else None), _bar(n, max(summary["labels"].values()), plain))
    console.print(labels)

    histogram = summary["confidence_histogram"]
    edges, counts = histogram["edges"], histogram["counts"]
    confidence = _table(plain, "confidence", "rows", "")
    for k, n in enumerate(counts):
        closing = "]" if k == len(counts) - 1 else ")"
        confidence.add_row(f"[{edges[k]:.1f}, {edges[k + 1]:.1f}{closing}", f"{n:,}", _bar(n, max(counts) or 1, plain))
    console.print(confidence)

    if summary["lowest_confidence"]:
        lowest = _table(plain, "lowest confidence", "page", "status", "label", "confidence", "second")
        for row in summary["lowest_confidence"]:
            second = f"{row['second_label']} {_fixed(row['second_confidence'], 3)}" if row.get("second_label") is not None else ""
            lowest.add_row(
                _shown(row["file"]), _text(row["page"]), _shown(row["status"]), _text(row["label"]), _fixed(row["confidence"], 4), second
            )
        console.print(lowest)
    if summary["failures"]:
        failures = _table(plain, "failed file", "page", "reason")
        for row in summary["failures"]:
            failures.add_row(_shown(row["file"]), _text(row["page"]), _shown(row.get("error")))
        console.print(failures)
        if summary["failures_unlisted"]:
            console.print(
                f"... and {summary['failures_unlisted']:,} more failures (see {printable(summary['folder'])}/results.csv)",
                highlight=False,
                markup=False,
            )
    for torn in summary["torn_lines"]:
        console.print(f"warning: skipped a torn last line of results.csv ({printable(torn)})", highlight=False, markup=False)


def timing_line(summary: dict) -> str:
    """"11 files, 12 rows in 4.0 s (2.8 files/s)"; a daemon day says its time was working time and gives its span."""
    line = f"{summary['files']:,} files, {summary['rows']:,} rows in {_seconds(summary['seconds'])}"
    wall = summary.get("wall_seconds")
    if summary["kind"] == "watch":
        line += f" of work ({_rate(summary['files_per_second'])} while working), {_seconds(wall)} first row to last"
    else:
        line += f" ({_rate(summary['files_per_second'])})"
    return line


def review_line(summary: dict) -> str:
    """Where the review threshold came from: "review below 0.97, chosen for at most 0.2% wrong among ok rows; measured ..."."""
    origin = summary.get("review") or {}
    below = origin.get("review_below", summary.get("review_below"))
    if below is None:
        return ""
    line = f"review below {below:g}"
    if origin.get("target_error") is not None:
        line += f", chosen for at most {_share(origin['target_error'])} wrong among ok rows"
    measured = [
        *([_share(origin["expected_error"])] if origin.get("expected_error") is not None else []),
        *([f"at {_share(origin['expected_coverage'])} accepted"] if origin.get("expected_coverage") is not None else []),
    ]
    if measured:
        line += "; measured " + " ".join(measured)
    return line


def person_line(counts: dict) -> str:
    """What a person decided in a job's review: "120 confirmed, 15 corrected, 2 not a digit, 0 blank"."""
    return (
        f"{counts['confirmed']:,} confirmed, {counts['corrected']:,} corrected, "
        f"{counts['not_a_digit']:,} not a digit, {counts['blank']:,} blank"
    )


def print_jobs(summaries: list[dict], totals: dict, console: Console) -> None:
    """Many jobs: one line each and the totals; a model change or a review rate well above the usual is marked."""
    plain = not console.is_terminal
    table = _table(plain, "started", "job", "kind", "files", "review", "failed", "files/s", "model", "reviewed by a person")
    rates = sorted(s["review_rate"] for s in summaries if s["review_rate"] is not None)
    usual = rates[len(rates) // 2] if rates else None
    previous_model = None
    for summary in summaries:
        model = summary["model"]
        model_text = Text(f"{printable(model.get('file')) or '?'} {printable((model.get('sha256') or '')[:8])}")
        if previous_model is not None and model.get("sha256") != previous_model:
            model_text.append(" (changed)", style=None if plain else "bold yellow")
        previous_model = model.get("sha256")
        review = _percent(summary["review_rate"])
        if not plain and usual is not None and summary["review_rate"] is not None and summary["review_rate"] > max(2 * usual, usual + 0.01):
            review = f"[bold red]{review}[/]"
        table.add_row(
            _shown(_short_time(summary["started"])), _shown(summary["id"]), summary["kind"], f"{summary['files']:,}",
            review, _percent(summary["failed_rate"]), _rate(summary["files_per_second"], unit=""), model_text,
            person_line(summary["verified"]) if summary.get("verified") is not None else "-",
        )
    table.add_section()
    table.add_row(
        "total", f"{totals['jobs']} jobs", "", f"{totals['files']:,}", _percent(totals["review_rate"]),
        _percent(totals["failed_rate"]), _rate(totals["files_per_second"], unit=""), f"{len(totals['models'])} model(s)",
        person_line(totals["verified"]) if totals.get("verified") is not None else "-",
    )
    console.print(table)
    console.print(
        f"files/s: while working ({_seconds(totals['seconds'])} of work in all; a daemon day's waiting for files is not counted)",
        highlight=False, markup=False,
    )
    counts = ", ".join(f"{status} {n:,}" for status, n in totals["counts"].items())
    console.print(f"rows: {counts}", highlight=False)


def _table(plain: bool, *columns: str) -> Table:
    # Piped output stays greppable: no box drawing, no colour.
    table = Table(*columns, box=None if plain else box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in table.columns[1:]:
        column.justify = "right" if column.header in ("rows", "share", "files", "review", "failed", "files/s", "confidence") else "left"
    return table


def _bar(n: int, of: int, plain: bool) -> str:
    width = round(BAR_WIDTH * n / of) if of else 0
    if n and not width:
        width = 1  # a non-zero count is never invisible
    return ("#" if plain else "█") * width


def _share(share: float) -> str:
    """A small share with the digits it has: 0.002 as 0.2%, 0.0018 as 0.18%, 0.9 as 90%."""
    return f"{share * 100:.3g}%"


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def _rate(rate: float | None, unit: str = " files/s") -> str:
    return "-" if rate is None else f"{rate:,.1f}{unit}"


def _seconds(seconds: float | None) -> str:
    if seconds is None:
        return "? s"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{rest:02d}s"


def _short_time(stamp: str | None) -> str:
    return stamp.replace("T", " ")[:19] if stamp else "?"


def _text(value) -> str:
    return "" if value is None else str(value)


def _shown(value) -> Text:
    """Text from a job folder as a table cell: controls escaped, never read as markup."""
    return Text(printable(value))


def _fixed(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"

