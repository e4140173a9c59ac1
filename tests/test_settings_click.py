"""Issue 21 §3: the daemon's settings are resolved by click itself, not by a hand-written resolver.

The flag wins (COMMANDLINE), then ``BATCHCLF_<NAME>`` (ENVIRONMENT), then the TOML file, which is the
context's ``default_map`` (DEFAULT_MAP), then the default; ``--print-config`` reports what
``ctx.get_parameter_source`` says.  The ``watch`` function no longer has one argument per setting.
"""

from __future__ import annotations

import inspect

import typer.main

from batchclf.cli import app
from batchclf.cli import watch as watch_cli

WATCH = typer.main.get_command(app).commands["watch"]


def _context(tmp_path, *args):
    return WATCH.make_context("watch", ["--home", str(tmp_path), *args])


def test_click_records_where_each_setting_came_from(tmp_path, monkeypatch, clean_env):
    (tmp_path / "batchclf.toml").write_text("max_batch = 8\nsettle = 2.5\nkeep_failed = 90\n")
    monkeypatch.setenv("BATCHCLF_SETTLE", "3")
    monkeypatch.setenv("BATCHCLF_MAX_LATENCY", "0.75")
    ctx = _context(tmp_path, "--max-latency", "0.1", "--polling")
    sources = {name: ctx.get_parameter_source(name).name for name in
               ("max_latency", "polling", "settle", "max_batch", "keep_failed", "drift_window")}
    assert sources == {"max_latency": "COMMANDLINE", "polling": "COMMANDLINE", "settle": "ENVIRONMENT",
                       "max_batch": "DEFAULT_MAP", "keep_failed": "DEFAULT_MAP", "drift_window": "DEFAULT"}
    assert ctx.params["max_latency"] == 0.1 and ctx.params["settle"] == 3.0 and ctx.params["max_batch"] == 8
    assert ctx.default_map == {"max_batch": 8, "settle": 2.5, "keep_failed": "90"}  # the TOML file, by parameter


def test_an_empty_variable_is_unset_and_the_file_wins(tmp_path, monkeypatch, clean_env):
    (tmp_path / "batchclf.toml").write_text("settle = 2.5\n")
    monkeypatch.setenv("BATCHCLF_SETTLE", "")
    ctx = _context(tmp_path)
    assert ctx.get_parameter_source("settle").name == "DEFAULT_MAP" and ctx.params["settle"] == 2.5


def test_home_and_config_are_read_before_any_setting_whatever_the_order(tmp_path, clean_env):
    config = tmp_path / "other.toml"
    config.write_text("max_batch = 7\n")
    # --config written after a setting: click still reads it first (eager), so the file fills the default_map.
    ctx = WATCH.make_context("watch", ["--settle", "2", "--config", str(config), "--home", str(tmp_path)])
    assert ctx.params["max_batch"] == 7 and ctx.get_parameter_source("max_batch").name == "DEFAULT_MAP"


def test_the_watch_function_has_no_argument_per_setting():
    # The settings are click parameters of the command, not a rewritten signature of the function.
    assert list(inspect.signature(watch_cli.watch).parameters) == ["ctx", "config", "print_config", "home"]
