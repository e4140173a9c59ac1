"""Builders for test inputs shared by several test modules."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def png_bytes(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def ink_digit(size: int = 120) -> Image.Image:
    """A dark ring ('0'-like) on light paper."""
    gray = np.full((size, size), 240, np.uint8)
    gray[size // 5 : size * 4 // 5, size // 3 : size * 2 // 3] = 20
    gray[size // 5 + size // 10 : size * 4 // 5 - size // 10, size // 3 + size // 14 : size * 2 // 3 - size // 14] = 240
    return Image.fromarray(gray, "L")


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG that claims to be ``width`` x ``height``: the decompression-bomb case, without the memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def bad_input_corpus(folder: Path) -> dict[str, str]:
    """Write the corpus of awkward inputs; returns ``{relative name: expected status}`` (``ok`` means ok/review)."""
    folder.mkdir(parents=True, exist_ok=True)
    digit = ink_digit()
    expected = {}

    def put(name: str, data: bytes, status: str) -> None:
        (folder / name).write_bytes(data)
        expected[name] = status

    good_png = png_bytes(digit)
    good_jpeg = png_bytes(digit.convert("RGB"), "JPEG")
    put("zero-bytes.png", b"", "failed")
    put("truncated.png", good_png[: len(good_png) // 2], "failed")
    put("truncated.jpg", good_jpeg[: len(good_jpeg) // 3], "failed")
    put("text.png", b"this is not an image\n" * 20, "failed")
    put("random.png", np.random.default_rng(0).bytes(4096), "failed")
    put("one-pixel.png", png_bytes(Image.new("L", (1, 1), 255)), "blank")
    put("bomb.png", huge_png_header(20000, 20000), "failed")
    frames = [digit.convert("P"), Image.new("P", digit.size, 0)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    put("animated.gif", buffer.getvalue(), "ok")
    sixteen = (np.asarray(digit, np.uint16) * 257).astype(np.uint16)
    put("sixteen-bit.png", png_bytes(Image.fromarray(sixteen)), "ok")
    put("cmyk.jpg", png_bytes(digit.convert("CMYK"), "JPEG"), "ok")
    put("palette-transparent.png", png_bytes(digit.convert("RGB").convert("P"), transparency=0), "ok")
    put("name with spaces.png", good_png, "ok")
    put("ünïcødé-数字.png", good_png, "ok")
    put("new\nline.png", good_png, "ok")
    put("=HYPERLINK(1).png", good_png, "ok")
    (folder / "x.jpg").mkdir()
    expected["x.jpg"] = "failed"
    os.mkfifo(folder / "pipe.jpg")
    expected["pipe.jpg"] = "failed"
    put("unreadable.png", good_png, "ok" if os.geteuid() == 0 else "failed")
    (folder / "unreadable.png").chmod(0)
    # Clutter that must be skipped, never reported.
    (folder / ".hidden.png").write_bytes(good_png)
    (folder / "scan.png.part").write_bytes(good_png)
    (folder / "Thumbs.db").write_bytes(b"x")
    return expected


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a (possibly live) JSONL report: a last line still being written is left out."""
    text = Path(path).read_text(encoding="utf-8")
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def remove_tree(root: Path) -> None:
    """``shutil.rmtree`` without recursion, for trees deeper than Python's stack (pytest's own cleanup would crash)."""
    folders, stack = [], [os.fspath(root)]
    while stack:
        folder = stack.pop()
        folders.append(folder)
        for entry in os.scandir(folder):
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            else:
                os.unlink(entry.path)
    for folder in reversed(folders):
        os.rmdir(folder)


def apt_install(package: str) -> bool:
    """Install a Debian package for a test when we are root with apt-get; True if the install ran and succeeded.

    A fresh machine has no package lists yet: ``apt-get update`` runs once when
    the first install cannot find the package.
    """
    import shutil
    import subprocess

    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")):
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(install, capture_output=True, timeout=900, env=env).returncode == 0:
        return True
    subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600, env=env)
    return subprocess.run(install, capture_output=True, timeout=900, env=env).returncode == 0


def child_pids(pid: int) -> list[int]:
    """The live child processes of ``pid`` (Linux: /proc/PID/task/*/children)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # the task ended while we looked
            continue
    return children


def spawned_workers(pid: int) -> list[int]:
    """The multiprocessing worker processes (spawn start method) that ``pid`` started."""
    workers = []
    for child in child_pids(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(child)
        except OSError:
            continue
    return workers


def is_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def tiff_bytes(pages: list[Image.Image], compression: str = "tiff_deflate") -> bytes:
    """A multi-page TIFF of ``pages``."""
    return png_bytes(pages[0], "TIFF", save_all=True, append_images=pages[1:], compression=compression)
