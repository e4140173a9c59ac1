"""Help text as a reader sees it: -h works everywhere, install hints keep their brackets."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from batchclf.cli import app


@pytest.mark.parametrize("command", [[], ["classify"], ["report"], ["watch"], ["models"], ["review", "apply"], ["service", "print"]])
def test_dash_h_is_help_everywhere(command):
    short = CliRunner().invoke(app, [*command, "-h"], terminal_width=200)
    long = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
    assert short.exit_code == 0 and "Usage:" in short.output
    assert short.output == long.output


@pytest.mark.parametrize("command,hint", [(["classify"], "batchclf[ray]"), (["report"], "batchclf[xlsx]")])
def test_install_hints_keep_their_brackets(command, hint):
    shown = CliRunner().invoke(app, [*command, "--help"], terminal_width=300).output
    assert hint in " ".join(shown.split())
