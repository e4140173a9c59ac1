"""The layering holds: import-linter's contract (.importlinter) finds no upward import, inline ones included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_no_module_imports_from_a_higher_layer():
    linter = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if linter is None:
        pytest.skip("import-linter is not installed (it comes with the dev extra: pip install -e '.[dev]')")
    done = subprocess.run([linter, str(ROOT / ".importlinter")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_every_package_of_batchclf_is_in_a_layer():
    """A new top-level module must be placed in the contract, or the contract would not see it."""
    text = (ROOT / ".importlinter").read_text()
    named = {part.strip() for line in text.splitlines() if line.startswith("    batchclf.")
             for part in line.replace(":", "|").split("|")}
    found = {f"batchclf.{p.stem}" for p in (ROOT / "batchclf").iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").is_file()) and not p.name.startswith("__")}
    assert found - named == set()
