"""Writing report files: CSV and JSONL rows, ``results.json`` and ``summary.json`` (names: :mod:`batchclf.jobs.folder`).

Rows stream to disk as they come, so a job of any size runs in bounded
memory.  Finished files appear under their final names by rename only, so a
reader never sees half a report; the daemon's append-only files are
flushed and fsynced per batch before any input file is moved.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

from batchclf.atomic import replacing, write_text_atomic
from batchclf.jobs.rows import COLUMNS, LEGACY_COLUMNS, csv_cell, starts_file


class Tally:
    """Counts per status and per label, kept as rows pass by."""

    def __init__(self, counts: dict | None = None, labels: dict | None = None, files: int = 0):
        self.status = Counter(counts or {})
        self.labels = Counter({str(k): v for k, v in (labels or {}).items()})
        self.rows = sum(self.status.values())
        self.files = files

    def add(self, row: dict) -> None:
        self.rows += 1
        self.status[row["status"]] += 1
        if starts_file(row):
            self.files += 1
        if row.get("label") is not None:
            self.labels[str(row["label"])] += 1

    def as_dict(self) -> dict:
        return {
            "rows": self.rows,
            "files": self.files,
            "counts": dict(sorted(self.status.items())),
            "labels": {str(k): self.labels[str(k)] for k in range(10) if self.labels[str(k)]},
        }


_dumps = json.JSONEncoder(ensure_ascii=False).encode


class RowWriter:
    """Appends rows to a CSV and a JSONL file (header written once)."""

    def __init__(self, csv_path: Path, jsonl_path: Path):
        self.csv_path, self.jsonl_path = Path(csv_path), Path(jsonl_path)
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        new_csv = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        # A daemon day begun by an older batchclf keeps its columns to the end of the day: one header per file.
        self.columns = COLUMNS if new_csv else _existing_columns(self.csv_path)
        self._csv = open(self.csv_path, "a", newline="", encoding="utf-8")
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
        self._writer = csv.writer(self._csv)
        if new_csv:
            self._writer.writerow(COLUMNS)

    def write(self, rows: list[dict], durable: bool = False) -> None:
        self._writer.writerows([csv_cell(row.get(column)) for column in self.columns] for row in rows)
        self._jsonl.write("".join(_dumps(row) + "\n" for row in rows))
        if durable:
            self.sync()

    def sync(self) -> None:
        for handle in (self._csv, self._jsonl):
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> None:
        for handle in (self._csv, self._jsonl):
            if not handle.closed:
                handle.flush()
                handle.close()


def _existing_columns(path: Path) -> tuple[str, ...]:
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader([handle.readline()]), [])
    return LEGACY_COLUMNS if header == list(LEGACY_COLUMNS) else COLUMNS


def write_results_json(path: Path, meta: dict, jsonl_path: Path) -> None:
    """``{"job": meta, "rows": [...]}`` built by streaming the JSONL rows, written atomically."""
    path = Path(path)
    with replacing(path, suffix=".partial") as tmp, open(tmp, "w", encoding="utf-8") as out, \
            open(jsonl_path, encoding="utf-8") as rows:
        out.write('{"job": ' + json.dumps(meta, ensure_ascii=False) + ', "rows": [')
        first = True
        for line in rows:
            line = line.strip()
            if not line:
                continue
            out.write(("\n" if first else ",\n") + line)
            first = False
        out.write("\n]}\n")


def write_summary(path: Path, meta: dict) -> None:
    write_text_atomic(path, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
