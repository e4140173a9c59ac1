"""How the tests themselves are laid out: helpers shared by test modules live in tests/helpers.py (fixtures in
tests/conftest.py), so no test module imports another one.  Importing a test module runs its module-level code,
registers its fixtures a second time and couples two files that should change independently."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_test_modules(path: Path) -> list[str]:
    """``line: import`` of every import (at any depth, inside functions too) of a ``test_*`` module of tests/."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 0 and module != "tests" and not module.startswith("tests."):
                continue  # a library, not one of ours
            if node.level > 1:
                continue  # above tests/: the package under test
            base = module.removeprefix("tests").lstrip(".") if node.level == 0 else module
            # "from . import test_x" and "from tests import test_x" name the module in the alias.
            names = [base] if base else [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name.removeprefix("tests.").split(".")[0].startswith("test_"):
                found.append(f"{node.lineno}: {name}")
    return found


def test_no_test_module_imports_another_test_module():
    offenders = {
        path.name: imports
        for path in sorted(TESTS.glob("*.py"))
        if (imports := imported_test_modules(path))
    }
    assert offenders == {}, f"move the shared helpers to tests/helpers.py (fixtures to tests/conftest.py): {offenders}"
