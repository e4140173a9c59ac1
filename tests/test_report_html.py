"""The HTML review sheet: hand-made job folders of both layouts, the page's text, and a real headless Chromium."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from batchclf.jobs.folder import read_job
from batchclf.jobs.rows import COLUMNS, csv_cell, make_row
from batchclf.report.html import write_review_sheet
from batchclf.report.summary import summarise
from batchclf.scan.discovery import Candidate
from batchclf.scan.prepare import prepare
from batchclf.watch.journal import FileRecord, Journal
from tests.helpers import apt_install, ink_digit

CLASSIFY_ID = "20261124T031502Z-3f9a"
DAY = "2026-11-25"
HOSTILE = "<script>alert(1)</script> \"q\" 'x'.png"
HOSTILE_REASON = "<img src=x onerror=alert(2)> not a recognised image format"
NEWLINE = "new\nline.png"
PAPER_BY_PAGE = (235, 195, 155)  # each TIFF page on its own paper grey, to tell which page a thumbnail shows
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
    image = Image.new("L", (size, size), paper)
    font = ImageFont.load_default(size=size * 5 // 6)
    ImageDraw.Draw(image).text((size / 2, size / 2), digit, font=font, fill=25, anchor="mm", stroke_width=2, stroke_fill=25)
    return image


def review(file: str, page: int | None = 1, label: int = 0, confidence: float = 0.41) -> dict:
    return make_row(
        file=file, page=page, status="review", label=label, confidence=confidence, second_label=6,
        second_confidence=0.33, width=120, height=120, model="default.keras", processed_at="2026-11-24T03:15:03.000Z",
    )


def other(file: str, status: str, page: int | None = 1, error: str | None = None) -> dict:
    fields = {"label": 1, "confidence": 0.99, "second_label": 7, "second_confidence": 0.01} if status == "ok" else {}
    return make_row(file=file, page=page, status=status, error=error, processed_at="2026-11-24T03:15:04.000Z", **fields)


def write_job(folder: Path, rows: list[dict], meta: dict) -> Path:
    folder.mkdir(parents=True)
    with open(folder / "results.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows([csv_cell(row[column]) for column in COLUMNS] for row in rows)
    (folder / "summary.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


def newline_names_allowed(folder: Path) -> bool:
    try:
        (folder / NEWLINE).write_bytes(b"")
    except OSError:
        return False
    (folder / NEWLINE).unlink()
    return True


class Fixture:
    """Two jobs (a classify job and a daemon day) and what the sheet must show for them, in grid order."""

    def __init__(self, root: Path):
        self.root = root
        self.scans = root / "scans"
        self.scans.mkdir()
        jobs_dir = root / "jobs"
        digit = ink_digit()
        digit.save(self.scans / "digit.png")
        digit.save(self.scans / "ok.png")
        Image.new("L", (50, 50), 255).save(self.scans / "blank.png")
        (self.scans / HOSTILE).parent.mkdir()  # the "/" of "</script>" makes it a folder and a file in it
        drawn("7").save(self.scans / HOSTILE)
        (self.scans / "bad.png").write_bytes(b"not an image\n" * 10)
        pages = [drawn(digit, paper) for digit, paper in zip("135", PAPER_BY_PAGE)]
        pages[0].save(self.scans / "pages.tif", save_all=True, append_images=pages[1:])
        drawn("2", size=30).save(self.scans / "=small.png")  # formula-like name, tiny image
        self.newline = newline_names_allowed(self.scans)
        rows = [
            review("digit.png"),
            other("ok.png", "ok"),
            other("blank.png", "blank"),
            review("gone.png"),  # deleted since the job ran
            other("pages.tif", "ok", page=1),
            review("pages.tif", page=2, label=3),
            review("pages.tif", page=3, label=5),
            review(HOSTILE, label=7),
            other("bad.png", "failed", page=None, error=HOSTILE_REASON),
            review("=small.png", label=2),
            other("ok.png", "duplicate"),
        ]
        if self.newline:
            drawn("4").save(self.scans / NEWLINE)
            rows.append(review(NEWLINE, label=4))
        meta = {
            "kind": "classify",
            "job_id": CLASSIFY_ID,
            "started": "2026-11-24T03:15:02Z",
            "seconds": 2.5,
            "inputs": [str(self.scans)],
            "review_below": 0.6,
            "model": {"file": "/srv/models/default.keras", "sha256": "ab" * 32, "architecture": "cnn", "card_accuracy": 0.9962},
        }
        self.classify = write_job(jobs_dir / CLASSIFY_ID, rows, meta)
        self.classify_items = [(row["file"], row["page"]) for row in rows if row["status"] in ("review", "failed")]

        inbox, processed, failed = root / "inbox", root / "processed", root / "failed"
        for folder in (inbox, processed, failed):
            folder.mkdir()
        drawn("9").save(inbox / "waiting.png")  # reported but not yet moved
        drawn("8").save(processed / "moved.png")
        (failed / "broken.png").write_bytes(b"\x89PNG truncated")
        journal = Journal(jobs_dir / "watch-journal.sqlite")
        journal.decide([], [
            FileRecord("moved.png", 1, 0, None, "review", DAY, None, "processed"),
            FileRecord("broken.png", 1, 0, None, "failed", DAY, None, "failed"),
        ])
        where = {"moved.png": processed / "moved.png", "broken.png": failed / "broken.png"}
        journal.mark_moved([(move.id, str(where[move.path])) for move in journal.pending_moves()])
        journal.close()
        day_rows = [review("waiting.png", label=9), review("moved.png", label=8), other("broken.png", "failed", None, "corrupt")]
        day_meta = {"kind": "watch", "inbox": str(inbox)}
        self.day = write_job(jobs_dir / f"watch-{DAY}", day_rows + [other("fine.png", "ok")], day_meta)
        self.day_items = [(row["file"], row["page"]) for row in day_rows]

    def write(self, name: str = "review.html", which: tuple[str, ...] = ("classify", "day")) -> tuple[Path, int, list]:
        jobs = [read_job(getattr(self, attribute)) for attribute in which]
        summaries = [summarise(job) for job in jobs]
        path = self.root / name
        return path, write_review_sheet(path, jobs, summaries), summaries


@pytest.fixture(scope="module")
def fixture(tmp_path_factory) -> Fixture:
    return Fixture(tmp_path_factory.mktemp("sheet"))


@pytest.fixture(scope="module")
def sheet(fixture) -> tuple[Path, str, int, list]:
    path, items, summaries = fixture.write()
    return path, path.read_text(encoding="utf-8"), items, summaries


def cards(html: str) -> list[str]:
    return re.findall(r"<article class=\"card .*?</article>", html, re.S)


def card_of(html: str, escaped_file: str, page: int | None = None) -> str:
    matches = [card for card in cards(html) if f">{escaped_file}</p>" in card and (page is None or f"page {page} ·" in card)]
    assert len(matches) == 1, f"{escaped_file} page {page}: {len(matches)} cards"
    return matches[0]


def data_uri_image(card: str, alt: str) -> Image.Image:
    uri = re.search(rf'src="data:image/png;base64,([^"]+)" alt="{alt}', card).group(1)
    return Image.open(io.BytesIO(base64.b64decode(uri)))


# -- the page's contents ------------------------------------------------------------------------


def test_one_card_for_every_review_and_failed_row(fixture, sheet):
    _, html, items, summaries = sheet
    expected = sum(s["counts"]["review"] + s["counts"]["failed"] for s in summaries)
    assert items == expected == len(fixture.classify_items) + len(fixture.day_items)
    assert len(cards(html)) == items
    assert html.count('class="card failed"') == 2


def test_file_names_and_reasons_are_escaped(sheet):
    _, html, _, _ = sheet
    assert "<script>alert" not in html and "<img src=x" not in html
    assert html.count("<script") == 1  # the sheet's own script, nothing from the data
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &#34;q&#34; &#39;x&#39;.png" in html
    assert "&lt;img src=x onerror=alert(2)&gt; not a recognised image format" in html


def test_self_contained_under_a_strict_content_security_policy(sheet):
    _, html, _, _ = sheet
    assert "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'" in html
    assert not re.search(r"""\s(src|href)=["'](?!data:)""", html)
    assert "<link" not in html and "@import" not in html and "url(" not in html


def test_gone_and_unreadable_images_are_placeholders(sheet):
    _, html, _, _ = sheet
    gone = card_of(html, "gone.png")
    assert gone.count('<div class="placeholder">missing</div>') == 2 and "<img" not in gone
    assert "<input" not in gone  # nothing to look at, nothing to correct
    assert 'class="placeholder">unreadable: not a recognised image format<' in card_of(html, "bad.png")
    assert 'class="placeholder">unreadable: ' in card_of(html, "broken.png")


def test_daemon_inputs_are_found_in_the_inbox_and_where_the_journal_moved_them(sheet):
    _, html, _, _ = sheet
    for name in ("waiting.png", "moved.png"):
        card = card_of(html, name)
        assert 'alt="original image"' in card and 'alt="the 28×28 the model saw"' in card


def test_the_28x28_is_what_prediction_saw(fixture, sheet):
    _, html, _, _ = sheet
    shown = np.asarray(data_uri_image(card_of(html, "digit.png"), "the 28×28"))
    predicted = prepare(Candidate(fixture.scans, fixture.scans / "digit.png"))[0].image
    assert shown.shape == (28, 28) and np.array_equal(shown, predicted)


def test_a_multi_page_tiff_shows_the_rows_page(sheet):
    _, html, _, _ = sheet
    for page in (2, 3):
        original = data_uri_image(card_of(html, "pages.tif", page), "original image")
        assert max(original.size) <= 160
        assert abs(original.getpixel((2, 2)) - PAPER_BY_PAGE[page - 1]) <= 2


def test_a_changed_file_is_flagged_and_a_vanished_page_is_a_placeholder(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    drawn("6").save(scans / "edited.png")
    rows = [{**review("edited.png"), "sha256": "0" * 64}, review("edited.png", page=4)]
    job = read_job(write_job(tmp_path / "jobs" / CLASSIFY_ID, rows, {"kind": "classify", "inputs": [str(scans)]}))  # HOME/jobs/JOB: its inputs are in its home
    path = tmp_path / "sheet.html"
    assert write_review_sheet(path, [job], [summarise(job)]) == 2
    changed, vanished = cards(path.read_text(encoding="utf-8"))
    assert "The file has changed since it was classified." in changed and 'alt="original image"' in changed
    assert 'class="placeholder">page 4 is not in the file now<' in vanished


def test_nothing_to_review(fixture, tmp_path):
    folder = write_job(tmp_path / "20261126T010000Z-00aa", [other("ok.png", "ok")], {"kind": "classify", "inputs": []})
    job = read_job(folder)
    path = tmp_path / "empty.html"
    assert write_review_sheet(path, [job], [summarise(job)]) == 0
    html = path.read_text(encoding="utf-8")
    assert "Nothing to review" in html and 'id="save"' not in html and not cards(html)


def test_writing_a_sheet_imports_no_tensorflow(fixture):
    program = (
        "import sys\n"
        "from pathlib import Path\n"
        "from batchclf.jobs.folder import read_job\n"
        "from batchclf.report.html import write_review_sheet\n"
        "from batchclf.report.summary import summarise\n"
        "jobs = [read_job(Path(p)) for p in sys.argv[2:]]\n"
        "assert write_review_sheet(Path(sys.argv[1]), jobs, [summarise(j) for j in jobs]) > 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))\n"
    )
    args = [str(fixture.root / "no-tf.html"), str(fixture.classify), str(fixture.day)]
    done = subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- in a real browser --------------------------------------------------------------------------


def chromium_or_skip() -> Path:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"browser test skipped: playwright is not importable ({exc}); pip install -e '.[dev]'")
    if not CHROMIUM.exists():
        apt_install("chromium")
    if not CHROMIUM.exists():
        pytest.skip(f"browser test skipped: {CHROMIUM} is missing and could not be installed (apt-get install chromium, as root)")
    return CHROMIUM


def test_in_headless_chromium(fixture, sheet, tmp_path):
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    path, _, items, _ = sheet
    order = fixture.classify_items + fixture.day_items
    corrected = {(HOSTILE, 1): "7", (NEWLINE if fixture.newline else "=small.png", 1): "3"}
    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            page.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.goto(path.as_uri())
            assert page.locator("article.card").count() == items
            assert page.locator("article.card img.thumb").count() >= items - 4  # gone, bad, broken: placeholders
            names = page.locator("article.card .file")
            assert names.nth(order.index((HOSTILE, 1))).text_content() == HOSTILE
            if fixture.newline:
                assert names.nth(order.index((NEWLINE, 1))).text_content() == NEWLINE

            # Inputs come in grid order, minus the cards without an image to judge.
            inputs = page.locator(".correction input")
            keys = [json.loads(key) for key in inputs.evaluate_all("list => list.map(i => i.dataset.key)")]
            assert [(k["file"], k["page"]) for k in keys] == [
                item for item in order if item not in {("gone.png", 1), ("bad.png", None), ("broken.png", None)}
            ]
            positions = [(k["file"], k["page"]) for k in keys]
            inputs.nth(positions.index(("digit.png", 1))).press_sequentially("x")  # not a digit: refused
            assert inputs.nth(positions.index(("digit.png", 1))).input_value() == ""
            for key, digit in corrected.items():
                inputs.nth(positions.index(key)).fill(digit)
            assert page.locator("#status").text_content() == "2 corrections (not saved)"
            inputs.nth(0).focus()
            page.keyboard.press("Enter")  # Enter walks the grid like Tab
            assert json.loads(page.evaluate("document.activeElement.dataset.key")) == keys[1]
            with page.expect_download() as download_info:
                page.click("#save")
            download = download_info.value
            assert download.suggested_filename == "corrections.csv"
            saved = Path(download.path()).read_bytes().decode("utf-8")

            page.evaluate("window.scrollTo(0, 0)")  # the sticky toolbar back on top for the picture
            screenshot = tmp_path / "review-sheet.png"
            page.screenshot(path=str(screenshot), full_page=True)
            if os.environ.get("BATCHCLF_ARTIFACTS"):
                artefacts = Path(os.environ["BATCHCLF_ARTIFACTS"])
                artefacts.mkdir(parents=True, exist_ok=True)
                shutil.copy(screenshot, artefacts / "test_report_html-review-sheet.png")
        finally:
            browser.close()

    lines = ["file,page,label", "\"<script>alert(1)</script> \"\"q\"\" 'x'.png\",1,7"]
    lines.append('"new\nline.png",1,3' if fixture.newline else "=small.png,1,3")
    assert saved == "\r\n".join(lines) + "\r\n"
    assert list(csv.DictReader(io.StringIO(saved, newline=""))) == [
        {"file": file, "page": str(page_number), "label": label} for (file, page_number), label in corrected.items()
    ]
    assert not problems, problems
