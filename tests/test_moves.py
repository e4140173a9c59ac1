"""A move never overwrites: a file already in processed/ or failed/ under the same name stays as it was."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from .helpers import ink_digit, oneshot, png_bytes


@pytest.mark.parametrize("name,content,where", [
    ("digit.png", png_bytes(ink_digit()), "processed"),
    ("broken.png", b"not an image at all", "failed"),
])
def test_a_move_never_overwrites_a_file_of_the_same_name(tmp_path, tiny_model, name, content, where):
    inbox, jobs = tmp_path / "inbox", tmp_path / "jobs"
    inbox.mkdir()
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    earlier = tmp_path / where / day / name
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"yesterday's file of the same name")
    (inbox / name).write_bytes(content)

    assert oneshot(inbox, jobs, tiny_model) == 0

    assert earlier.read_bytes() == b"yesterday's file of the same name"
    moved = [p for p in earlier.parent.iterdir() if p != earlier and p.suffix == ".png"]  # not the .reason.json beside it
    assert len(moved) == 1 and moved[0].read_bytes() == content  # under a new name (digit-1.png), bytes intact
    assert not (inbox / name).exists()
