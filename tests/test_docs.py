"""The README and the pages in docs/ point at things that exist.

Every repository path they name in backticks (``batchclf/...``, ``docs/...``,
``tests/...``, ``models/...``, ``.ci/run``) is a file or folder of the
checkout, every page they link to exists, and every ``#anchor`` of such a
link is a heading of that page: files move, and a page that sends a newcomer
to a path that is gone is wrong without anyone noticing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from batchclf.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
# A repository path inside a code span: not the tail of a longer path (/opt/batchclf/bin/...).
REPO_PATH = re.compile(r"(?<![\w./~-])((?:batchclf|docs|tests|models)/[^\s`'\"()\[\],;:]*|\.ci/run|\.importlinter)")
# Words that stand for a name the reader picks, not a file of the checkout (models/NAME.keras).
PLACEHOLDERS = re.compile(r"<[^>]*>|\b(?:NAME|DIR|FILE|JOB|PATH|WRITER|DIGIT|YYYY-MM-DD)\b")
# Files batchclf writes at run time, named as what they will be called; none is part of the checkout.
WRITTEN_AT_RUN_TIME = {"models/IN_USE", "models/default-tuned.keras"}
LINK = re.compile(r"\]\(([^)\s]+)\)")


def code_spans(text: str) -> list[str]:
    """The text of every inline code span, fenced blocks left out (they hold commands, not references)."""
    return CODE_SPAN.findall(FENCE.sub("", text))


def named_paths(page: Path) -> set[str]:
    found = set()
    for span in code_spans(page.read_text(encoding="utf-8")):
        for path in REPO_PATH.findall(span):
            path = path.rstrip(".")
            if not PLACEHOLDERS.search(path) and path not in WRITTEN_AT_RUN_TIME:
                found.add(path)
    return found


def exists(path: str) -> bool:
    if any(c in path for c in "*?["):
        return any(ROOT.glob(path))
    return (ROOT / path).exists()


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, code marks and punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def links(page: Path) -> list[tuple[Path, str]]:
    """Local links of a page: (target file, anchor or ''); web links are left out."""
    out = []
    for target in LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        out.append(((page.parent / file).resolve() if file else page, anchor))
    return out


def test_the_pattern_finds_paths_and_skips_placeholders(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("`batchclf/scan/preprocess.py`, run `python -m x tests/test_cli.py`, `/opt/batchclf/bin/pip`,\n"
                    "`models/NAME.keras`, `jobs/<job-id>/`, `models/IN_USE`, and `docs/cards/seed.json`.\n"
                    "```\nbatchclf/not/a/reference.py\n```\n")
    assert named_paths(page) == {"batchclf/scan/preprocess.py", "tests/test_cli.py", "docs/cards/seed.json"}
    assert slug("Local against Ray (`python -m batchclf.bench.engines`)") == "local-against-ray-python--m-batchclfbenchengines"


def test_the_readme_names_the_reference_pages():
    targets = {target for target, _ in links(README)}
    assert (ROOT / "docs" / "deployment.md").resolve() in targets
    assert {p.resolve() for p in PAGES[1:]} <= targets | {(ROOT / "docs" / "deployment.md").resolve()}, (
        "a page in docs/ that the README does not link to: nobody finds it")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_repository_path_named_exists(page):
    missing = sorted(path for path in named_paths(page) if not exists(path))
    assert not missing, f"{page.name} names paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_local_link_and_anchor_exists(page):
    broken = []
    for target, anchor in links(page):
        if not target.exists():
            broken.append(str(target.relative_to(ROOT)))
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{target.relative_to(ROOT)}#{anchor}")
    assert not broken, f"{page.name} links to what does not exist: {broken}"


def test_the_command_table_lists_every_command():
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index("## The command line"):]
    table = FENCE.search(section).group(0)
    group = typer.main.get_command(app)
    missing = []
    for name, command in group.commands.items():
        if not re.search(rf"batchclf {re.escape(name)}\s", table):
            missing.append(name)
        for sub in getattr(command, "commands", {}):
            if not re.search(rf"batchclf {re.escape(name)}\s+[\w|]*\b{re.escape(sub)}\b", table):
                missing.append(f"{name} {sub}")
    assert not missing, f"the README's command table lacks: {missing}"


def test_every_module_the_layout_names_exists():
    """docs/layout.md names modules relative to batchclf/ (a row's folder, then its files)."""
    package = ROOT / "batchclf"
    missing = []
    for row in re.findall(r"^\| (`.+?) \| (.+) \|$", (ROOT / "docs" / "layout.md").read_text(encoding="utf-8"), re.M):
        first, owns = (CODE_SPAN.findall(cell) for cell in row)
        folders = [name for name in first if name.endswith("/")]
        missing += [name for name in first if not (package / name).exists()]
        if len(folders) == 1:
            missing += [f"{folders[0]}{name}" for name in owns
                        if re.fullmatch(r"[\w/]+\.py", name) and not (package / folders[0] / name).exists()]
    assert not missing, f"docs/layout.md names modules that do not exist under batchclf/: {missing}"
