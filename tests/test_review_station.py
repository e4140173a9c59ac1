"""The review station in headless Chromium, keyboard only: 200 items decided, a reload, an undo, a group accept,
the downloaded corrections.csv, then ``batchclf review apply`` and its verified.csv row by row; and a 10,000-card sheet.

No mouse event at all: an init script (outside the page's CSP) records every trusted mouse or pointer event and
the test asserts there was none.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchclf.cli import app
from batchclf.jobs.folder import read_job
from batchclf.jobs.verified import VERIFIED_COLUMNS, person_counts
from batchclf.report.html import write_review_sheet
from batchclf.report.summary import summarise
from tests.helpers import Browser, chromium_or_skip, drawn, other, review, write_job_folder

JOB_ID = "20261201T080000Z-5e11"
ITEMS = 200
OK_ROWS = 20  # rows after the 200 review rows that a person never sees: decided_by model
PAGE = 60  # cards per page in the sheet's script
RECORD_MOUSE = """
window.__mouse = [];
for (const type of ["mousedown", "mouseup", "click", "dblclick", "pointerdown", "pointerup", "contextmenu", "wheel"]) {
  window.addEventListener(type, (event) => { if (event.isTrusted) window.__mouse.push(type); }, true);
}
"""


def model_label(i: int) -> int:
    return i % 10


def confidence(i: int) -> float:
    return round(0.30 + (i * 37 % 60) / 100, 2)


def planned_key(i: int) -> str:
    """The key pressed on item ``i`` in the main pass (a mix of every kind of decision)."""
    if i % 11 == 5:
        return "n"
    if i % 13 == 6:
        return "b"
    if i % 7 == 3:
        return str((model_label(i) + 1) % 10)  # a correction
    if i % 9 == 4:
        return str(model_label(i))  # typing the model's own digit is an accept
    return "Enter" if i % 2 else "Space"


def outcome(i: int, key: str) -> tuple[str, str]:
    """(label, decision) as corrections.csv writes them."""
    if key in ("n", "b"):
        return "", {"n": "not-a-digit", "b": "blank"}[key]
    if key in ("Enter", "Space"):
        return str(model_label(i)), "accepted"
    return key, "accepted" if int(key) == model_label(i) else "corrected"


def name(i: int) -> str:
    return f"scan-{i:03d}.png"


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    root = tmp_path_factory.mktemp("station")
    scans = root / "scans"
    scans.mkdir()
    for i in range(ITEMS):
        drawn(str(model_label(i)), paper=235 - (i % 5) * 10).save(scans / name(i))
    rows = [review(name(i), label=model_label(i), confidence=confidence(i)) for i in range(ITEMS)]
    rows += [other(f"fine-{k}.png", "ok") for k in range(OK_ROWS)]
    folder = write_job_folder(root / "jobs" / JOB_ID, rows, {"kind": "classify", "job_id": JOB_ID, "inputs": [str(scans)]})
    job = read_job(folder)
    sheet = root / "station.html"
    assert write_review_sheet(sheet, [job], [summarise(job)]) == ITEMS
    return root, folder, sheet


def press(page, key: str) -> None:
    page.keyboard.press(key)


def current_row(page) -> int:
    """The results.csv row number of the card marked current."""
    return int(page.locator("article.card.current").get_attribute("data-id").rsplit("#", 1)[1])


def test_two_hundred_items_keyboard_only_then_review_apply(station, tmp_path):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    root, folder, sheet = station
    expected: dict[int, tuple[str, str]] = {}  # item index -> (label, decision)
    with sync_playwright() as playwright:
        browser = Browser(playwright)
        try:
            page = browser.page
            browser.context.add_init_script(RECORD_MOUSE)
            browser.open(sheet)
            assert page.locator("article.card").count() == PAGE  # one page drawn, not 200 cards
            assert current_row(page) == 1

            def decide(i: int, key: str) -> None:
                assert current_row(page) == i + 1, f"item {i}"
                press(page, key)
                expected[i] = outcome(i, key)

            for i in range(50):
                decide(i, planned_key(i))
                if i == 20:
                    press(page, "u")  # undo: back on item 20, its decision gone
                    assert current_row(page) == 21
                    assert "to do" in page.locator("article.card.current .decision").text_content()
                    del expected[20]
                    decide(20, "7")
                if i == 30:
                    press(page, "Backspace")
                    del expected[30]
                    decide(30, "Enter")
            assert "corrected" in page.locator('article.card[data-id$="#4"]').get_attribute("class")
            assert page.locator("#progress").text_content().startswith("Done 50 · to do 150 · ")

            page.reload()  # nothing lost: decisions, the current item, the page of cards
            page.wait_for_selector("#grid[data-ready]", state="attached")
            assert page.locator("#progress").text_content() == "Done 50 · to do 150 · 50 not saved"
            assert current_row(page) == 51
            assert "not-a-digit" in page.locator('article.card[data-id$="#6"]').get_attribute("class")  # item 5: n
            for i in range(50, 100):
                decide(i, planned_key(i))

            # Group verification: all the model's "0"s side by side, the odd one corrected, the rest accepted at once.
            press(page, "v")
            assert page.locator('.views button[aria-pressed="true"]').text_content() == "By label"
            press(page, "Home")
            zeros = sorted((i for i in range(ITEMS) if model_label(i) == 0), key=lambda i: (confidence(i), i))
            assert current_row(page) == zeros[0] + 1
            decide(zeros[0], "6")
            rest = [i for i in zeros[1:] if i not in expected]
            press(page, "a")
            assert page.locator("#message").text_content() == f"Accepted {len(rest)} of label 0"
            expected.update({i: ("0", "accepted") for i in rest})
            assert page.locator("article.card.current .label").text_content() == "1"  # on to the next group
            for _ in range(3):
                press(page, "v")  # label -> confidence -> reason -> job
            assert page.locator('.views button[aria-pressed="true"]').text_content() == "By job"

            press(page, "Home")
            press(page, "PageDown")
            for _ in range(100 - PAGE):
                press(page, "ArrowRight")
            for i in range(100, ITEMS):
                if i in expected:  # accepted with its group
                    assert "accepted" in page.locator("article.card.current").get_attribute("class")
                    press(page, "ArrowRight")
                else:
                    decide(i, planned_key(i))
            assert page.locator("#message").text_content() == "That was the last item of this view"
            assert page.locator("#progress").text_content().startswith(f"Done {ITEMS} · to do 0 · ")
            assert re.search(r" · \d+\.\d s per item · \d+ not saved$", page.locator("#progress").text_content())

            with page.expect_download() as download_info:
                press(page, "Control+s")
            download = download_info.value
            assert download.suggested_filename == "corrections.csv"
            saved = Path(download.path()).read_bytes().decode("utf-8")
            assert page.locator("#progress").text_content().endswith(" · saved")
            assert page.evaluate("window.__mouse") == []
        finally:
            browser.close()
    assert not browser.problems, browser.problems
    assert not browser.requests, browser.requests

    # The file: the documented columns first, every decision in row order, CRLF, no BOM.
    assert saved.startswith("file,page,label,decision,decided_at,job\r\n") and saved.endswith("\r\n")
    lines = list(csv.DictReader(io.StringIO(saved, newline="")))
    assert [(line["file"], line["page"], line["label"], line["decision"], line["job"]) for line in lines] == [
        (name(i), "1", *expected[i], JOB_ID) for i in range(ITEMS)
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["decided_at"]) for line in lines)
    decisions = [decision for _, decision in expected.values()]
    assert all(decisions.count(kind) > 5 for kind in ("accepted", "corrected", "not-a-digit", "blank"))  # every kind tried

    corrections = tmp_path / "corrections.csv"
    corrections.write_text(saved, encoding="utf-8", newline="")
    results_before = (folder / "results.csv").read_bytes()
    done = CliRunner().invoke(app, ["review", "apply", str(folder), str(corrections)])
    assert done.exit_code == 0, done.output
    assert (folder / "results.csv").read_bytes() == results_before

    with open(folder / "verified.csv", newline="", encoding="utf-8") as handle:
        verified = list(csv.DictReader(handle))
    assert list(verified[0]) == list(VERIFIED_COLUMNS)
    assert len(verified) == ITEMS + OK_ROWS
    for i, row in enumerate(verified[:ITEMS]):
        label, decision = expected[i]
        assert (row["file"], row["page"], row["model_label"]) == (name(i), "1", str(model_label(i)))
        assert (row["label"], row["decision"], row["decided_by"]) == (label, decision, "person"), i
        assert row["status"] == {"not-a-digit": "not-a-digit", "blank": "blank"}.get(decision, "ok")
        assert row["decided_at"] == lines[i]["decided_at"]
    for row in verified[ITEMS:]:
        assert (row["status"], row["label"], row["decided_by"], row["decision"]) == ("ok", "1", "model", "")
    counts = person_counts(folder)
    assert counts["person"] == ITEMS and counts["confirmed"] == decisions.count("accepted")
    assert counts["corrected"] == decisions.count("corrected") and counts["not_a_digit"] == decisions.count("not-a-digit")


# -- 10,000 cards -------------------------------------------------------------------------------

BIG = 10_000


def test_ten_thousand_cards_open_quickly_and_the_last_one_is_reached(tmp_path):
    chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    scans = tmp_path / "scans"
    scans.mkdir()
    files = 100
    for k in range(files):
        drawn(str(k % 10), paper=240 - k % 40, size=96).save(scans / f"d{k:03d}.png")
    # 100 files, 100 rows each (pages of a day's repeated names): each card still gets its own pictures.
    rows = [review(f"d{k:03d}.png", page=p + 1, label=k % 10, confidence=0.5) for k in range(files) for p in range(BIG // files)]
    folder = write_job_folder(tmp_path / "jobs" / JOB_ID, rows, {"kind": "classify", "job_id": JOB_ID, "inputs": [str(scans)]})
    job = read_job(folder)
    sheet = tmp_path / "big.html"
    started = time.perf_counter()
    assert write_review_sheet(sheet, [job], [summarise(job)]) == BIG
    written = time.perf_counter() - started
    with sync_playwright() as playwright:
        browser = Browser(playwright)
        try:
            page = browser.page
            started = time.perf_counter()
            browser.open(sheet)
            first_cards = time.perf_counter() - started
            paint = page.evaluate(
                "performance.getEntriesByType('paint').map(e => [e.name, e.startTime])"
            )
            assert page.locator("article.card").count() == 60
            started = time.perf_counter()
            press(page, "End")
            page.wait_for_selector("article.card.current", state="visible")
            to_last = time.perf_counter() - started
            assert page.locator("#pager").text_content() == f"item {BIG:,} of {BIG:,} · page 167 of 167"
            last = page.locator("article.card.current")
            assert last.locator(".file bdi").text_content() == f"d{files - 1:03d}.png"
            assert "page 100 ·" in last.locator(".facts").text_content()
            assert last.evaluate("node => { const r = node.getBoundingClientRect(); return r.bottom <= innerHeight && r.top >= 0; }")
            started = time.perf_counter()
            page.mouse.wheel(0, 100000)  # the page itself scrolls to its end (a measurement, not part of the keyboard test)
            while not page.evaluate("scrollY + innerHeight >= document.documentElement.scrollHeight - 2"):  # no wait_for_function: the CSP forbids eval
                assert time.perf_counter() - started < 30
                page.wait_for_timeout(20)
            wheel = time.perf_counter() - started
        finally:
            browser.close()
    assert not browser.problems, browser.problems
    figures = {"sheet_mb": round(sheet.stat().st_size / 1e6, 1), "write_s": round(written, 1), "open_to_first_cards_s": round(first_cards, 2),
               "paint_ms": dict(paint), "end_key_to_last_card_s": round(to_last, 2), "scroll_to_bottom_s": round(wheel, 2)}
    print("\n10,000 cards:", json.dumps(figures))
    if os.environ.get("BATCHCLF_ARTIFACTS"):
        Path(os.environ["BATCHCLF_ARTIFACTS"]).mkdir(parents=True, exist_ok=True)
        (Path(os.environ["BATCHCLF_ARTIFACTS"]) / "review-station-10k.json").write_text(json.dumps(figures), encoding="utf-8")
    assert first_cards < 60 and to_last < 30  # a sanity bound on a loaded 2-core machine, not a target


def test_two_tabs_on_one_sheet_merge_their_decisions(tmp_path):
    """The sheet open twice (two pages of one browser): each tab's writes merge the other's, card by card, the later
    change winning (a decision, or its undo); neither tab's decisions are lost, and both save the same corrections.csv."""
    chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    scans = tmp_path / "scans"
    scans.mkdir()
    for i in range(5):
        drawn(str(model_label(i))).save(scans / name(i))
    job_id = "20261207T060000Z-7ab5"
    rows = [review(name(i), label=model_label(i)) for i in range(5)]
    job = read_job(write_job_folder(tmp_path / "jobs" / job_id, rows, {"kind": "classify", "job_id": job_id, "inputs": [str(scans)]}))
    sheet = tmp_path / "sheet.html"
    assert write_review_sheet(sheet, [job], [summarise(job)]) == 5

    def done(page) -> str:
        return re.match(r"Done \d+", page.locator("#progress").inner_text()).group(0)

    def saved(page) -> list[list[str]]:
        with page.expect_download() as download_info:
            press(page, "Control+s")
        lines = list(csv.reader(io.StringIO(Path(download_info.value.path()).read_text(encoding="utf-8"))))
        return [line[:4] for line in lines[1:]]  # file, page, label, decision

    def later(page, *keys) -> None:
        page.wait_for_timeout(30)  # each change a few milliseconds after the other tab's
        for key in keys:
            press(page, key)

    with sync_playwright() as playwright:
        browser = Browser(playwright)
        try:
            first = browser.page
            browser.open(sheet)
            second = browser.context.new_page()
            second.goto(sheet.as_uri())
            second.wait_for_selector("#grid[data-ready]", state="attached")
            later(first, "Enter", "7")  # item 0 accepted, item 1 corrected to 7
            expect(second.locator("#progress")).to_have_text(re.compile(r"^Done 2\b"))
            later(second, "ArrowRight", "ArrowRight", "b")  # item 2 blank: a write that used to drop the first tab's two
            expect(first.locator("#progress")).to_have_text(re.compile(r"^Done 3\b"))
            later(first, "u")  # undo item 1: removed in both tabs
            expect(second.locator("#progress")).to_have_text(re.compile(r"^Done 2\b"))
            later(first, "ArrowRight", "ArrowRight", "5")  # item 3: 5 here, then 6 in the other tab, which wins
            later(second, "6")
            expect(first.locator(f'[data-id="{job_id}#4"] .decision')).to_have_text("corrected 6 (model 3)")
            expected = [[name(0), "1", "0", "accepted"], [name(2), "1", "", "blank"], [name(3), "1", "6", "corrected"]]
            assert saved(first) == expected
            assert saved(second) == expected
            assert done(first) == done(second) == "Done 3"
            third = browser.context.new_page()  # opened afresh: what both left in storage
            third.goto(sheet.as_uri())
            third.wait_for_selector("#grid[data-ready]", state="attached")
            assert saved(third) == expected
            assert "merged" in second.locator("#message").inner_text() or "merged" in first.locator("#message").inner_text()
            assert browser.problems == []
        finally:
            browser.close()
