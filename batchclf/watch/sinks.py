"""Step 2 of a batch: bring each day's report files up to the journal, and keep ``summary.json`` current.

A day's ``results.csv``/``results.jsonl`` are cut back to their committed
length (a torn or unacknowledged append from before a crash), then the rows
the journal holds beyond it are appended, fsynced and acknowledged.  A
report never shrinks below what the journal did not write: a day new to the
journal (the journal was deleted or replaced) adopts the files as they are,
less a torn last line.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from batchclf.atomic import fsync_dir
from batchclf.jobs import folder as job_folder
from batchclf.jobs import writers
from batchclf.watch.journal import Journal

log = logging.getLogger("batchclf.watch")

SUMMARY_EVERY = 2.0  # seconds between summary.json rewrites: current within this of the last row


class ReportSinks:
    def __init__(self, journal: Journal, out_dir: Path, summary_meta: Callable[[str, Path], dict], clock):
        self.journal, self.out_dir = journal, out_dir
        self.summary_meta, self.clock = summary_meta, clock
        self._summaries_due: set[str] = set()
        self._last_summary = float("-inf")

    def bases(self, days: set[str]) -> dict[str, tuple[int, int]]:
        """For days the journal has never written: the lengths of what is on disk already (kept, never cut)."""
        new = days - self.journal.known_days()
        out = {}
        for day in new:
            folder = self.out_dir / job_folder.day_folder_name(day)
            lengths = tuple(_complete_length(folder / name) for name in (job_folder.RESULTS_CSV, job_folder.RESULTS_JSONL))
            if any(lengths):
                log.warning(
                    "the journal has no record of %s (journal new, deleted or replaced): keeping its reports "
                    "(%d + %d bytes) and appending; files still in the inbox are classified again",
                    folder, *lengths,
                )
            out[day] = lengths
        return out

    def flush(self, final: bool = False) -> None:
        for day, csv_bytes, jsonl_bytes, pending in self.journal.pending_sinks():
            if not pending:
                continue
            folder = job_folder.day_folder(self.out_dir, day)
            csv_path, jsonl_path = folder / job_folder.RESULTS_CSV, folder / job_folder.RESULTS_JSONL
            for path, committed in ((csv_path, csv_bytes), (jsonl_path, jsonl_bytes)):
                if path.exists() and path.stat().st_size != committed:
                    os.truncate(path, committed)
            writer = writers.RowWriter(csv_path, jsonl_path)
            try:
                writer.write([row for _, row in pending], durable=True)
            finally:
                writer.close()
            fsync_dir(folder)
            self.journal.acknowledge(day, csv_path.stat().st_size, jsonl_path.stat().st_size, pending[-1][0])
            self._summaries_due.add(day)
        self.write_summaries(final)

    def write_summaries(self, final: bool = False) -> None:
        """Rewrite the summaries of days with new rows, at most every :data:`SUMMARY_EVERY` seconds (always when final)."""
        if not self._summaries_due or not (final or self.clock() - self._last_summary >= SUMMARY_EVERY):
            return
        for day in sorted(self._summaries_due):
            folder = job_folder.day_folder(self.out_dir, day)
            writers.write_summary(folder / job_folder.SUMMARY_JSON, self.summary_meta(day, folder))
        self._summaries_due.clear()
        self._last_summary = self.clock()


def _complete_length(path: Path, chunk: int = 65536) -> int:
    """The file's length up to its last newline (a torn last line is cut off); 0 when missing."""
    try:
        with open(path, "rb+") as handle:
            size = end = handle.seek(0, os.SEEK_END)
            complete = 0
            while end > 0:
                start = max(0, end - chunk)
                handle.seek(start)
                block = handle.read(end - start)
                if b"\n" in block:
                    complete = start + block.rfind(b"\n") + 1
                    break
                end = start
            if complete != size:
                handle.truncate(complete)
            return complete
    except FileNotFoundError:
        return 0
