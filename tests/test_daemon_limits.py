"""The daemon takes classify's per-file caps: --max-file-mb and --max-pages (one consume path, one set of limits)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from PIL import Image

from .helpers import ink_digit, oneshot, png_bytes


def day_rows(inbox: Path, jobs: Path, model: Path, **options) -> list[dict]:
    """The rows a oneshot daemon run (files kept in the inbox) wrote for today."""
    assert oneshot(inbox, jobs, model, keep=True, **options) == 0
    (day,) = [p for p in jobs.glob("watch-????-??-??") if p.is_dir()]
    with open(day / "results.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def three_page_tiff() -> bytes:
    buffer = io.BytesIO()
    pages = [ink_digit(60) for _ in range(3)]
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:])
    return buffer.getvalue()


def test_the_daemon_refuses_files_over_its_caps_like_classify(tmp_path, tiny_model):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "big.png").write_bytes(png_bytes(Image.effect_noise((1200, 1200), 80).convert("L")))
    (inbox / "pages.tif").write_bytes(three_page_tiff())
    (inbox / "fine.png").write_bytes(png_bytes(ink_digit()))
    assert (inbox / "big.png").stat().st_size > 1024 * 1024

    capped = {row["file"]: row for row in day_rows(inbox, tmp_path / "jobs", tiny_model, max_file_mb=1, max_pages=2)}
    assert capped["big.png"]["status"] == "failed" and "max-file-mb" in capped["big.png"]["error"]
    assert capped["pages.tif"]["status"] == "failed" and "max-pages" in capped["pages.tif"]["error"]
    assert capped["fine.png"]["status"] in ("ok", "review")

    default = [row for row in day_rows(inbox, tmp_path / "jobs2", tiny_model) if row["file"] == "pages.tif"]
    assert len(default) == 3 and all(row["status"] in ("ok", "review") for row in default)  # 3 pages, under the default cap
