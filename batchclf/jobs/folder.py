"""Job folders: ids that sort by time, and where a job's files live."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path


def new_job_id(now: datetime | None = None) -> str:
    """``20261124T031502Z-3f9a``: sorts by start time; the suffix keeps same-second jobs apart."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def create_job_folder(out_dir: Path, job_id: str | None = None) -> Path:
    out_dir = Path(out_dir)
    while True:
        folder = out_dir / (job_id or new_job_id())
        try:
            folder.mkdir(parents=True, exist_ok=False)
            return folder
        except FileExistsError:
            job_id = None
