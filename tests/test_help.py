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


def test_an_error_naming_a_hostile_file_shows_its_control_characters_escaped(tmp_path):
    hostile = tmp_path / "scan\x1b]0;owned\x07.keras"
    result = CliRunner().invoke(app, ["predict", "--demo", "--model", str(hostile)])
    assert result.exit_code == 1 and result.stderr.startswith("Error: ")
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "\\x1b]0;owned\\x07.keras" in result.stderr


@pytest.mark.parametrize("flag,value", [("--epochs", "100000"), ("--batch-size", "100000000")])
def test_training_numbers_are_bounded(flag, value):
    result = CliRunner().invoke(app, ["train", flag, value])
    assert result.exit_code == 2
