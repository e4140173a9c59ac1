"""Builders for test inputs shared by several test modules."""

from __future__ import annotations

import io
import json
import os
import pwd
import stat
import struct
import zlib
from contextlib import contextmanager
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


def centre_of_mass(image) -> tuple[float, float]:
    """(row, column) centre of mass of a 28x28 image's intensities."""
    ys, xs = np.mgrid[0:28, 0:28]
    total = image.sum()
    return (ys * image).sum() / total, (xs * image).sum() / total


# -- the CLI ------------------------------------------------------------------------------------


def invoke(*args):
    """``batchclf ARGS`` through typer's CliRunner, in this process (arguments made strings)."""
    from typer.testing import CliRunner

    from batchclf.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result, text):
    """The command failed with one ``Error: ...`` line on stderr that contains ``text``, and no traceback."""
    assert result.exit_code != 0
    assert result.stderr.startswith("Error: ")
    assert text in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def parse_printed(text: str) -> dict[str, tuple[object, str]]:
    """``batchclf watch --print-config``'s output: ``{name: (value, source)}``."""
    import re
    import tomllib

    values = tomllib.loads(text)
    sources = {}
    for line in text.splitlines():
        match = re.match(r"^#? ?(\w+)(?: = .*|: unset)  # (.+)$", line)
        if match:
            sources[match.group(1)] = match.group(2)
    return {name: (values.get(name), source) for name, source in sources.items()}


# -- classify and watch -------------------------------------------------------------------------


def classify(tmp_path, model, inputs, **kwargs):
    """``batchclf classify`` in this process (no workers unless ``workers=``) into tmp_path/jobs: the job folder."""
    from batchclf.classify import ClassifyOptions, run

    options = ClassifyOptions(model=model, out_dir=tmp_path / "jobs", workers=kwargs.pop("workers", 0), **kwargs)
    return run(inputs, options, progress=False)


def crash_on_poison(candidates, **options):
    """A prepare function for worker processes (``prepare_many``'s signature) that dies like a native decoder fault
    on 'poison' files."""
    import os

    from batchclf.scan.prepare import prepare_many

    if any("poison" in c.path.name for c in candidates):
        os._exit(70)
    return prepare_many(candidates, **options)


WATCH_TIMEOUT = 60  # seconds wait_for waits by default


def wait_for(predicate, timeout=WATCH_TIMEOUT, what="condition"):
    """Poll ``predicate`` until it returns something true (returned), or fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def report_rows(jobs: Path) -> list[dict]:
    """The rows of every watch job's results.jsonl under ``jobs`` (a line still being written left out)."""
    rows = []
    for path in sorted(jobs.glob("watch-*/results.jsonl")):
        rows.extend(read_jsonl(path))
    return rows


def csv_rows(jobs: Path) -> list[dict]:
    """The rows of every watch job's results.csv under ``jobs`` (a line still being written left out)."""
    import csv

    rows = []
    for path in sorted(jobs.glob("watch-*/results.csv")):
        text = path.read_text(encoding="utf-8")
        rows.extend(csv.DictReader(text[: text.rfind("\n") + 1].splitlines(keepends=True)))
    return rows


def drop(inbox: Path, name: str, data: bytes) -> Path:
    """Atomic arrival: write under a temporary name, then rename into place."""
    tmp = inbox / f".{name}.part"
    tmp.write_bytes(data)
    os.replace(tmp, inbox / name)
    return inbox / name


def digit_bytes(i: int) -> bytes:
    """The PNG of the ``i``-th distinct test digit (size and rotation vary with ``i``)."""
    return png_bytes(ink_digit(60 + i % 90).rotate(i % 7))


def oneshot(inbox: Path, jobs: Path, model: Path, **options) -> int:
    """``batchclf watch --oneshot`` in this process (settle 0, no workers): the daemon's exit code."""
    from batchclf.watch.daemon import Daemon, WatchOptions

    return Daemon(WatchOptions(inbox=inbox, out_dir=jobs, model=model, oneshot=True, settle=0, workers=0, **options)).run()


@contextmanager
def running(daemon):
    """``daemon.run()`` in a thread, until the block ends."""
    import threading

    thread = threading.Thread(target=daemon.run, name="daemon-under-test")
    thread.start()
    try:
        yield thread
    finally:
        daemon.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()


class FakeClock:
    """A monotonic clock that moves only when told (``advance``)."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class FakeFiles:
    """stat() for an imaginary folder: size and mtime we control."""

    def __init__(self):
        self.files = {}

    def write(self, path, size, mtime_ns, ctime=0.0):
        self.files[str(path)] = (size, mtime_ns, stat.S_IFREG | 0o644, ctime)

    def mkdir(self, path):
        self.files[str(path)] = (0, 0, stat.S_IFDIR | 0o755, 0.0)

    def __call__(self, path):
        if str(path) not in self.files:
            raise FileNotFoundError(path)
        size, mtime_ns, mode, ctime = self.files[str(path)]
        seconds = mtime_ns // 10**9
        return os.stat_result(
            (mode, 0, 0, 1, 0, 0, size, seconds, seconds, int(ctime)), {"st_mtime_ns": mtime_ns, "st_ctime": ctime}
        )


def samples(path: Path) -> dict[tuple[str, tuple], float]:
    """Every sample of a Prometheus text file, as prometheus_client parses it: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


# -- systemd units ------------------------------------------------------------------------------

ME = pwd.getpwuid(os.geteuid()).pw_name  # the user running the tests, for --run-as


def directives(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit (comments and section headers aside), by key."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def exec_argv(unit: str) -> list[str]:
    """The ExecStart= command line of a unit, split into arguments."""
    import shlex

    (line,) = directives(unit)["ExecStart"]
    return shlex.split(line)  # systemd's double quotes and backslash escapes, as the shell's


def verify(systemd_analyze: str, folder: Path, user: bool = False):
    """``systemd-analyze [--user] verify`` of every unit file in ``folder``: the CompletedProcess."""
    import subprocess
    import tempfile

    runtime = Path(tempfile.mkdtemp(prefix="xdg-"))  # a user manager needs a runtime folder, even offline
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    scope = ["--user"] if user else []
    return subprocess.run([systemd_analyze, *scope, "verify", *sorted(map(str, folder.iterdir()))],
                          capture_output=True, text=True, env=env, timeout=60)


# -- job folders for `batchclf report` ----------------------------------------------------------

REPORT_MODEL = {"file": "default.keras", "sha256": "ab" * 32, "architecture": "default", "card_accuracy": 0.9962}


def write_results_csv(folder: Path, rows: list[dict]) -> None:
    """``folder/results.csv``: the header and ``rows`` as classify and watch write them."""
    import csv

    from batchclf.jobs.rows import COLUMNS, csv_cell

    with open(folder / "results.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows([csv_cell(r[c]) for c in COLUMNS] for r in rows)


def row(file, status="ok", label=3, confidence=0.99, page=1, **fields):
    """A result row, by default ok at 99%; the runner-up is label+1; failed and blank rows carry no scores."""
    from batchclf.jobs.rows import make_row

    labelled = status in ("ok", "review")
    return make_row(
        file=file, page=page, status=status,
        label=label if labelled else None, confidence=confidence if labelled else None,
        second_label=(label + 1) % 10 if labelled else None, second_confidence=round(1 - confidence, 6) if labelled else None,
        processed_at=fields.pop("processed_at", "2026-11-25T03:00:00.000Z"), model="default.keras", **fields,
    )


def write_job(jobs: Path, name: str, rows: list[dict], meta: dict | None = None, jsonl: bool = False) -> Path:
    """The job folder ``jobs/name``: results.csv (and results.jsonl when ``jsonl``), and a summary.json with the
    job id, its kind (``watch-`` names are watch jobs), REPORT_MODEL and a CPU device, updated by ``meta``."""
    folder = jobs / name
    folder.mkdir(parents=True)
    write_results_csv(folder, rows)
    if jsonl:
        (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    kind = "watch" if name.startswith("watch-") else "classify"
    summary = {"job_id": name, "kind": kind, "model": REPORT_MODEL, "device": "/CPU:0", **(meta or {})}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def write_job_folder(folder: Path, rows: list[dict], meta: dict) -> Path:
    """The job folder ``folder``: results.csv, and ``meta`` as its whole summary.json (nothing added)."""
    folder.mkdir(parents=True)
    write_results_csv(folder, rows)
    (folder / "summary.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


# -- the HTML review sheet ----------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def drawn(digit: str, paper: int = 235, size: int = 120) -> Image.Image:
    """A printed digit, dark on ``paper`` grey: real enough for the screenshot to read."""
    from PIL import ImageDraw, ImageFont

    image = Image.new("L", (size, size), paper)
    font = ImageFont.load_default(size=size * 5 // 6)
    ImageDraw.Draw(image).text((size / 2, size / 2), digit, font=font, fill=25, anchor="mm", stroke_width=2, stroke_fill=25)
    return image


def review(file: str, page: int | None = 1, label: int = 0, confidence: float = 0.41) -> dict:
    """A review row (runner-up 6 at 33%), as processed on 2026-11-24."""
    from batchclf.jobs.rows import make_row

    return make_row(
        file=file, page=page, status="review", label=label, confidence=confidence, second_label=6,
        second_confidence=0.33, width=120, height=120, model="default.keras", processed_at="2026-11-24T03:15:03.000Z",
    )


def other(file: str, status: str, page: int | None = 1, error: str | None = None) -> dict:
    """A row that is not a review: ``ok`` reads 1 at 99%, any other status carries no scores."""
    from batchclf.jobs.rows import make_row

    fields = {"label": 1, "confidence": 0.99, "second_label": 7, "second_confidence": 0.01} if status == "ok" else {}
    return make_row(file=file, page=page, status=status, error=error, processed_at="2026-11-24T03:15:04.000Z", **fields)


def items(html: str) -> list[dict]:
    """The cards' data, from the JSON blocks the sheet's script draws them from (grid order)."""
    import re

    blocks = re.findall(r'<script type="application/json" class="items" data-job="([^"]*)">(.*?)</script>', html, re.S)
    return [{**item, "job": job} for job, block in blocks for item in json.loads(block)]


def item_of(html: str, file: str, page: int | None = None) -> dict:
    """The one card of ``file`` (on ``page``, when given) in the sheet."""
    matches = [item for item in items(html) if item["file"] == file and (page is None or item["page"] == page)]
    assert len(matches) == 1, f"{file} page {page}: {len(matches)} items"
    return matches[0]


def chromium_or_skip() -> Path:
    """Debian's Chromium driven by Playwright; never installed by a test."""
    import pytest

    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"browser test skipped: playwright is not importable ({exc}); pip install -e '.[dev]'")
    if not CHROMIUM.exists():
        pytest.skip(f"browser test skipped: {CHROMIUM} is missing; install chromium (CI installs it in .ci/run)")
    return CHROMIUM


class Browser:
    """One headless Chromium page that records console errors, page errors and every request that is not a file:// or data: one."""

    def __init__(self, playwright, viewport=(1280, 900)):
        self.browser = playwright.chromium.launch(executable_path=str(chromium_or_skip()), args=CHROMIUM_ARGS)
        self.context = self.browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda message: message.type == "error" and self.problems.append(f"console: {message.text}"))
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.context.route("**/*", self._route)

    def _route(self, route):
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            self.requests.append(url)
            route.abort()

    def open(self, path: Path, station: bool = True) -> None:
        self.page.goto(path.as_uri())
        if station:  # the script has drawn the first page of cards
            self.page.wait_for_selector("#grid[data-ready]", state="attached", timeout=60000)

    def close(self) -> None:
        self.browser.close()


def sample_job_rows(job_id: str) -> list[dict]:
    """12 rows over 11 files: 6 ok, 2 review, 1 blank, 2 failed (one formula-like name), 1 duplicate; a 2-page TIFF."""
    return (
        [row(f"ok{i}.png", label=i, confidence=0.95 + i / 100) for i in range(5)]
        + [row("multi.tif", page=1, label=7, confidence=0.97), row("multi.tif", page=2, status="review", label=1, confidence=0.41)]
        + [row("doubt.png", status="review", label=4, confidence=0.62)]
        + [row("empty.png", status="blank")]
        + [row("broken.png", status="failed", page=None, error="not a recognised image format"),
           row("=cmd|calc.png", status="failed", page=None, error="truncated file")]
        + [row("copy.png", status="duplicate", duplicate_of=f"{job_id}/ok1.png#1")]
    )


def threes(images):
    """A scoring function that calls every digit a sure 3 (a stand-in for the model where the model is not the point)."""
    from batchclf.model.predictor import Scores

    out = np.zeros((len(images), 10), np.float32)
    out[:, 3] = 1.0
    return Scores(out)


class ThreesPredictor:
    """A labeller (engines.consume.Labeller) that calls every digit a sure 3."""

    name = "fake.keras"
    review_below = 0.5
    score = staticmethod(threes)
