"""The daemon's settings: one declaration behind the flags, the environment and the config file."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from batchclf.cli import app
from batchclf.watch import settings
from batchclf.watch.settings import SETTINGS, SettingsError, WatchOptions, resolve

from .helpers import parse_printed

runner = CliRunner()


def print_config(*args, env=None) -> dict[str, tuple[object, str]]:
    """``batchclf watch --print-config ARGS`` through the real CLI: ``{name: (value, source)}``."""
    result = runner.invoke(app, ["watch", "--print-config", *map(str, args)], env=env)
    assert result.exit_code == 0, result.output
    return parse_printed(result.stdout)


def test_every_setting_is_a_watch_flag_and_every_watch_flag_a_setting_or_locator():
    click_command = typer.main.get_command(app).commands["watch"]
    by_name = {param.name: param for param in click_command.params}
    for s in SETTINGS:
        param = by_name.pop(s.field)
        if s.positional:
            assert param.param_type_name == "argument"
        else:
            assert s.flag in param.opts
            assert s.help in param.help and s.env in param.help
    assert set(by_name) == {"config", "print_config", "home"}


def test_declaration_covers_watch_options_and_derives_every_name():
    declared = {s.field for s in SETTINGS}
    internal = {f.name for f in dataclasses.fields(WatchOptions)} - declared
    assert internal == {"batch_size", "status_interval", "home"}  # set by code, never by users
    by_name = {s.name: s for s in SETTINGS}
    assert by_name["out"].field == "out_dir" and by_name["out"].flag == "--out" and by_name["out"].env == "BATCHCLF_OUT"
    assert by_name["rescan"].field == "rescan_interval" and by_name["max_batch"].flag == "--max-batch"
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)


def test_precedence_flag_over_env_over_config_over_default(tmp_path, clean_env):
    (tmp_path / "batchclf.toml").write_text('max_batch = 8\nsettle = 2.5\nmax_latency = 0.25\nout = "results"\n')
    env = {"BATCHCLF_SETTLE": "3", "BATCHCLF_MAX_LATENCY": "0.75"}
    printed = print_config("--home", tmp_path, "--max-latency", "0.1", env=env)
    assert printed["max_latency"] == (0.1, "flag")
    assert printed["settle"] == (3.0, "env BATCHCLF_SETTLE")
    assert printed["max_batch"] == (8, "config")
    assert printed["poll_interval"] == (1.0, "default")
    assert printed["out"] == (str(tmp_path / "results"), "config")  # relative to the config file
    assert printed["inbox"] == (str(tmp_path / "inbox"), "default")
    assert printed["processed"] == (str(tmp_path / "processed"), "default")
    assert printed["workers"] == (None, "default")


def test_print_config_output_is_a_config_file_that_round_trips(tmp_path, clean_env):
    result = runner.invoke(app, ["watch", "--print-config", "--home", str(tmp_path), "--settle", "4", "--keep"])
    (tmp_path / "copy.toml").write_text(result.stdout)
    (tmp_path / "elsewhere").mkdir()
    again = print_config("--config", tmp_path / "copy.toml", "--home", tmp_path / "elsewhere")
    assert again["settle"] == (4.0, "config") and again["keep"] == (True, "config")
    assert again["inbox"] == (str(tmp_path / "inbox"), "config")


def test_config_location_flag_env_then_home(tmp_path, clean_env):
    (tmp_path / "a.toml").write_text("max_batch = 2\n")
    (tmp_path / "b.toml").write_text("max_batch = 3\n")
    (tmp_path / "batchclf.toml").write_text("max_batch = 4\n")
    assert resolve(home=tmp_path).values["max_batch"].value == 4
    env = {settings.CONFIG_ENV: str(tmp_path / "b.toml")}
    assert resolve(home=tmp_path, environ=env).values["max_batch"].value == 3
    assert resolve(home=tmp_path, config=tmp_path / "a.toml", environ=env).values["max_batch"].value == 2


def test_booleans_can_be_switched_off_by_flag_and_read_from_env(tmp_path, clean_env):
    env = {"BATCHCLF_POLLING": "yes", "BATCHCLF_KEEP": "on"}
    printed = print_config("--home", tmp_path, "--no-keep", env=env)
    assert printed["polling"] == (True, "env BATCHCLF_POLLING")
    assert printed["keep"] == (False, "flag")


def test_options_reach_the_daemon_under_their_field_names(tmp_path, clean_env):
    options = resolve({"rescan_interval": 5.0, "processed_dir": tmp_path / "done"}, home=tmp_path).options()
    assert isinstance(options, WatchOptions)
    assert options.rescan_interval == 5.0 and options.processed_dir == tmp_path / "done"
    assert options.failed_dir == tmp_path / "failed" and options.out_dir == tmp_path / "jobs"


@pytest.mark.parametrize(
    "text, message",
    [
        ("max_bacth = 3\n", "unknown setting 'max_bacth' (did you mean 'max_batch'?)"),
        ('max_batch = "many"\n', "max_batch: expected an integer, got \"many\""),
        ("max_batch = 0\n", "max_batch: must be at least 1, got 0"),
        ("keep = 1\n", "keep: expected true or false, got 1"),
        ("settle = true\n", "settle: expected a number, got true"),
        ('device = "tpu"\n', "device: must be one of auto, cpu, gpu"),
        ("inbox = [1, 2]\n", "inbox: expected a path, got list"),
        ("max_batch = = 3\n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_error_line(tmp_path, clean_env, text, message):
    (tmp_path / "batchclf.toml").write_text(text)
    result = runner.invoke(app, ["watch", "--print-config", "--home", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.output
    assert message in result.stderr and str(tmp_path / "batchclf.toml") in result.stderr


def test_unreadable_or_missing_config_and_bad_env_are_one_error_line(tmp_path, clean_env):
    folder = tmp_path / "a-folder.toml"
    folder.mkdir()
    for args, env, message in [
        (["--config", folder], None, "cannot read the config file"),
        (["--config", tmp_path / "none.toml"], None, "config file not found (flag --config)"),
        ([], {settings.CONFIG_ENV: str(tmp_path / "none.toml")}, "config file not found (env BATCHCLF_CONFIG)"),
        ([], {"BATCHCLF_MAX_BATCH": "lots"}, "$BATCHCLF_MAX_BATCH: expected an integer, got 'lots'"),
        ([], {"BATCHCLF_KEEP": "maybe"}, "$BATCHCLF_KEEP: expected true or false"),
        (["--device", "tpu"], None, "--device: must be one of auto, cpu, gpu"),
    ]:
        result = runner.invoke(app, ["watch", "--print-config", "--home", str(tmp_path), *map(str, args)], env=env)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr == f"Error: {result.stderr[7:]}" and result.stderr.count("\n") == 1
        assert message in result.stderr, result.stderr


def test_resolve_raises_settings_error_a_batchclf_error(tmp_path):
    (tmp_path / "batchclf.toml").write_text("[watch]\nmax_batch = 3\n")
    with pytest.raises(SettingsError, match="unknown setting 'watch'"):
        resolve(home=tmp_path, environ={})


def test_print_config_never_imports_tensorflow(tmp_path):
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from batchclf.cli import app\n"
        f"r = CliRunner().invoke(app, ['watch', '--print-config', '--home', {str(tmp_path)!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False False"


def test_watch_help_shows_each_setting_with_its_env_and_config_key():
    result = runner.invoke(app, ["watch", "--help"], terminal_width=200, env={"COLUMNS": "200"})
    text = re.sub(r"[\s│]+", " ", result.stdout)  # undo rich's wrapping inside its box
    for s in SETTINGS:
        assert s.env in text and f"config key {s.name}" in text
        assert s.positional or s.flag in text


# -- the operations settings (issue 20): metrics file, retention, drift ---------------------------


def test_operations_settings_from_flag_env_and_config_reach_operations(tmp_path, clean_env):
    from batchclf.watch.operations import Operations

    (tmp_path / "batchclf.toml").write_text('metrics_file = "metrics/batchclf.prom"\nkeep_failed = 90\ndrift_factor = 3\n')
    env = {"BATCHCLF_KEEP_PROCESSED": "12w", "BATCHCLF_DRIFT_MARGIN": "0.05"}
    printed = print_config("--home", tmp_path, "--drift-window", "0", "--drift-confidence-drop", "0.1", env=env)
    assert printed["metrics_file"] == (str(tmp_path / "metrics" / "batchclf.prom"), "config")  # relative to the file
    assert printed["keep_processed"] == ("12w", "env BATCHCLF_KEEP_PROCESSED")
    assert printed["keep_failed"] == ("90", "config")
    assert printed["drift_window"] == (0, "flag") and printed["drift_factor"] == (3.0, "config")
    assert printed["drift_margin"] == (0.05, "env BATCHCLF_DRIFT_MARGIN")
    assert printed["drift_confidence_drop"] == (0.1, "flag")
    ops = Operations.from_options(resolve({"keep_processed": "30d", "drift_window": 0}, home=tmp_path, environ={}).options())
    assert ops.keep_processed == 30 and ops.keep_failed == 90 and ops.metrics_file == tmp_path / "metrics" / "batchclf.prom"
    assert ops.drift.window == 0 and not ops.drift.enabled and ops.drift.factor == 3.0


def test_operations_settings_default_to_off_and_keep_everything(tmp_path, clean_env):
    printed = print_config("--home", tmp_path)
    for name in ("metrics_file", "keep_processed", "keep_failed"):
        assert printed[name] == (None, "default")
    assert printed["drift_window"] == (500, "default") and printed["drift_factor"] == (2.0, "default")
    assert printed["drift_margin"] == (0.02, "default") and printed["drift_confidence_drop"] == (0.05, "default")


@pytest.mark.parametrize(
    "flag, env, key, bad, message",
    [
        ("--keep-processed", "BATCHCLF_KEEP_PROCESSED", "keep_processed", "3x", "expected days like 30d or 12w (or forever), got '3x'"),
        ("--keep-failed", "BATCHCLF_KEEP_FAILED", "keep_failed", "0d", "must be at least 1d, got '0d'"),
        ("--drift-window", "BATCHCLF_DRIFT_WINDOW", "drift_window", "-1", "must be at least 0, got -1"),
        ("--drift-window", "BATCHCLF_DRIFT_WINDOW", "drift_window", "100001", "must be at most 100000, got 100001"),
        ("--drift-factor", "BATCHCLF_DRIFT_FACTOR", "drift_factor", "0.5", "must be at least 1, got 0.5"),
        ("--drift-factor", "BATCHCLF_DRIFT_FACTOR", "drift_factor", "nan", "must be a finite number"),
        ("--drift-margin", "BATCHCLF_DRIFT_MARGIN", "drift_margin", "1.5", "must be at most 1, got 1.5"),
        ("--drift-confidence-drop", "BATCHCLF_DRIFT_CONFIDENCE_DROP", "drift_confidence_drop", "-0.1", "must be at least 0"),
    ],
)
def test_bad_operations_settings_are_one_error_line_from_every_source(tmp_path, clean_env, flag, env, key, bad, message):
    def refused(args, environ=None):
        result = runner.invoke(app, ["watch", "--print-config", "--home", str(tmp_path), *args], env=environ)
        assert result.exit_code != 0, (args, environ, result.output)
        return result.stderr

    # The environment and the config file go through the one settings check: one Error line naming where.
    from_env = refused([], {env: bad})
    assert from_env.startswith(f"Error: ${env}: ") and from_env.count("\n") == 1 and message in from_env, from_env
    toml_value = f'"{bad}"' if key.startswith("keep") else bad
    (tmp_path / "batchclf.toml").write_text(f"{key} = {toml_value}\n")
    from_config = refused([])
    assert from_config.startswith("Error: ") and from_config.count("\n") == 1
    assert f"{tmp_path / 'batchclf.toml'}: {key}: " in from_config and message in from_config
    (tmp_path / "batchclf.toml").unlink()
    from_flag = refused([flag, bad])
    if key.startswith("keep"):  # text: only the settings check can refuse it, naming the flag
        assert from_flag == f"Error: {flag}: {message}\n"
    else:  # numbers: click refuses them by the same declared bounds before resolution
        assert flag in from_flag
