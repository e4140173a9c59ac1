"""One atomic write for every file batchclf publishes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from batchclf.atomic import replacing, write_text_atomic

ROOT = Path(__file__).resolve().parent.parent


def test_a_finished_write_has_umask_permissions_and_leaves_no_temporary(tmp_path):
    old = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "a.json", "{}\n")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").read_text() == "{}\n"
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "sheet.html"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with replacing(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("the writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.html"]


def test_the_temporary_keeps_the_suffix_a_writer_needs(tmp_path):
    with replacing(tmp_path / "m.keras", suffix=".partial.keras") as temporary:
        assert temporary.parent == tmp_path and temporary.name.endswith(".partial.keras")
        temporary.write_bytes(b"x")
    assert (tmp_path / "m.keras").read_bytes() == b"x"


def test_no_module_renames_files_into_place_by_itself():
    """os.replace / mkstemp appear only in batchclf/atomic.py: one rule for fsync, permissions and clean-up."""
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "batchclf").rglob("*.py")
                 if path.name != "atomic.py" and re.search(r"\bos\.replace\(|\bmkstemp\(", path.read_text())]
    assert offenders == []
