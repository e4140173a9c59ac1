"""Issue 23, points 5 and 7: no setting, flag or config file can disable review, hang, exhaust memory or crash.

- Every float setting is finite and inside its declared range, from the
  config file, the environment or a flag; the number flags of classify,
  evaluate and predict share one option type that refuses nan and inf.
- A row whose confidence is not a finite number is never ``ok``.
- The config file is read only when it is a regular file of sane size;
  every integer setting and flag has an upper bound.
"""

from __future__ import annotations

import math
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from batchclf.cli import app
from batchclf.engines.labelling import label_rows
from batchclf.jobs.rows import OK, REVIEW, labelled_rows, make_row
from batchclf.watch import settings
from batchclf.watch.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
# The bounds as docs/reliability.md and --help state them.
MAX_BATCH, MAX_WORKERS, MAX_SECONDS = 16384, 256, 86400
FLOATS = [s for s in SETTINGS if s.type is float]
INTEGERS = [s for s in SETTINGS if s.type is int]


def print_config_in(home: Path, *args, env=None):
    """``batchclf watch --print-config --home HOME ARGS`` through the real CLI: the CliRunner result, as it is."""
    return runner.invoke(app, ["watch", "--print-config", "--home", str(home), *map(str, args)], env=env)


def assert_one_error_line(result, *needles):
    assert result.exit_code == 1, result.output
    assert result.stdout == "", result.stdout  # nothing printed as if the settings were fine
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


# -- point 5: nan and infinity ---------------------------------------------------------------------


def test_every_float_setting_is_declared_with_both_bounds():
    assert {s.name for s in FLOATS} == {"max_latency", "settle", "poll_interval", "rescan", "input_scale", "review_below",
                                        "drift_factor", "drift_margin", "drift_confidence_drop"}
    for s in FLOATS + INTEGERS:
        assert s.minimum is not None and s.maximum is not None and math.isfinite(s.maximum), s.name


@pytest.mark.parametrize("s", FLOATS, ids=lambda s: s.name)
@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_nan_and_infinity_are_refused_from_the_config_file(tmp_path, clean_env, s, text):
    (tmp_path / "batchclf.toml").write_text(f"{s.name} = {text}\n")
    assert_one_error_line(print_config_in(tmp_path), f"{s.name}: must be a finite number")


@pytest.mark.parametrize("s", FLOATS, ids=lambda s: s.name)
@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "1e999"])
def test_nan_and_infinity_are_refused_from_the_environment(tmp_path, clean_env, s, text):
    assert_one_error_line(print_config_in(tmp_path, env={s.env: text}), f"${s.env}: must be a finite number")


@pytest.mark.parametrize("s", FLOATS, ids=lambda s: s.name)
def test_nan_is_refused_as_a_watch_flag(tmp_path, clean_env, s):
    result = print_config_in(tmp_path, s.flag, "nan")
    assert result.exit_code != 0 and result.stdout == "", result.output


def test_review_below_nan_no_longer_reaches_the_daemon(tmp_path, clean_env):
    (tmp_path / "batchclf.toml").write_text("review_below = nan\nmax_latency = nan\n")
    with pytest.raises(settings.SettingsError, match="must be a finite number"):
        settings.resolve(home=tmp_path, environ={})


def test_large_but_finite_intervals_are_refused_too(tmp_path, clean_env):
    (tmp_path / "batchclf.toml").write_text("settle = 1e300\n")
    assert_one_error_line(print_config_in(tmp_path), f"settle: must be at most {MAX_SECONDS}")


@pytest.mark.parametrize("command, flag", [(["classify", "inbox"], "--input-scale"), (["predict", "x.png"], "--input-scale"),
                                           (["evaluate"], "--input-scale"), (["classify", "inbox"], "--review-below")])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_number_flags_of_classify_predict_evaluate_refuse_nan_and_inf(command, flag, value):
    result = runner.invoke(app, [*command, flag, value])
    assert result.exit_code == 2, result.output  # a usage error, before any model is loaded
    assert "Invalid value" in result.output and flag in result.output


def test_gpus_per_actor_refuses_nan():
    result = runner.invoke(app, ["classify", "inbox", "--gpus-per-actor", "nan"])
    assert result.exit_code == 2 and "--gpus-per-actor" in result.output


def test_a_row_without_a_finite_confidence_is_never_ok():
    bases = [make_row(file=f"{k}.png", page=1) for k in range(4)]
    probabilities = np.full((4, 10), 0.01)
    probabilities[0, 3] = 0.91  # a fine row
    probabilities[1] = np.nan  # input_scale inf or a temperature of 0 gave this
    probabilities[2, 5] = np.inf
    probabilities[3, 1], probabilities[3, 2] = 0.9, np.nan  # the runner-up alone is broken
    rows = labelled_rows(bases, probabilities, review_below=0.5, model="m.keras")
    assert rows[0]["status"] == OK and rows[0]["label"] == 3 and rows[0]["error"] is None
    for row in rows[1:]:
        assert row["status"] == REVIEW and "no finite confidence" in row["error"], row
        assert row["confidence"] is None and row["second_confidence"] is None  # NaN is not JSON


def test_a_threshold_that_is_not_a_number_sends_everything_to_review():
    bases = [make_row(file="a.png", page=1)]
    probabilities = np.eye(10)[[7]]
    assert labelled_rows(bases, probabilities, review_below=float("nan"), model="m")[0]["status"] == REVIEW
    assert labelled_rows(bases, probabilities, review_below=0.5, model="m")[0]["status"] == OK


def test_label_rows_guards_a_model_that_outputs_nan():
    class Scores:
        probabilities = np.full((2, 10), np.nan)
        flagged = None

    bases = [make_row(file=f"{k}.png", page=1) for k in range(2)]
    images = [np.zeros((28, 28), np.float32)] * 2
    rows = label_rows(bases, images, lambda _: Scores, review_below=0.0, model_name="m")
    assert [row["status"] for row in rows] == [REVIEW, REVIEW]  # even with review_below = 0


# -- point 7: the config file and the limits -------------------------------------------------------


def run_cli(args: list[str], env: dict | None = None, memory: int | None = None, timeout: float = 60):
    """The real CLI in a child process: a hang or a runaway read cannot take the test run with it."""
    def limit():
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHCLF_")}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run([sys.executable, "-m", "batchclf", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, preexec_fn=limit, cwd=ROOT)  # -m puts the cwd first on sys.path


@pytest.mark.parametrize("how", ["flag", "env", "service print"])
def test_a_fifo_as_config_is_refused_at_once(tmp_path, how):
    fifo = tmp_path / "batchclf.toml.fifo"
    os.mkfifo(fifo)
    if how == "flag":
        args, env = ["watch", "--print-config", "--home", str(tmp_path), "--config", str(fifo)], None
    elif how == "env":
        args, env = ["watch", "--print-config", "--home", str(tmp_path)], {settings.CONFIG_ENV: str(fifo)}
    else:
        args, env = ["service", "print", "--home", str(tmp_path), "--config", str(fifo)], None
    try:
        done = run_cli(args, env, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the FIFO blocked the command (it waited for a writer)")
    assert done.returncode == 1 and done.stdout == "", done.stdout + done.stderr
    assert done.stderr == f"Error: {fifo}: cannot read the config file (it is a FIFO, not a regular file)\n"


def test_dev_zero_as_config_is_refused_unread(tmp_path):
    # Under a 1 GiB address-space cap: the old reader ran out of memory here (and would take the machine's).
    done = run_cli(["watch", "--print-config", "--home", str(tmp_path), "--config", "/dev/zero"], memory=1 << 30)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == "Error: /dev/zero: cannot read the config file (it is a device or socket, not a regular file)\n"


def test_an_oversized_config_file_is_refused(tmp_path, clean_env):
    (tmp_path / "batchclf.toml").write_text("# padding\n" * (settings.MAX_CONFIG_BYTES // 10) + "max_batch = 2\n")
    assert_one_error_line(print_config_in(tmp_path), "larger than 1024 KiB")


@pytest.mark.parametrize("text", ["x = " + "[" * 5000 + "]" * 5000, "x = " + "{a = " * 3000 + "1" + "}" * 3000])
def test_a_deeply_nested_config_is_one_error_line(tmp_path, clean_env, text):
    (tmp_path / "batchclf.toml").write_text(text + "\n")
    assert_one_error_line(print_config_in(tmp_path), "nested too deeply", str(tmp_path / "batchclf.toml"))


@pytest.mark.parametrize("key", [s.name for s in SETTINGS if s.type is Path])
@pytest.mark.parametrize("value", ['""', '"  "', '"in\\u0000box"'])
def test_an_empty_or_nul_path_in_the_config_is_refused(tmp_path, clean_env, key, value):
    (tmp_path / "batchclf.toml").write_text(f"{key} = {value}\n")
    result = print_config_in(tmp_path)
    assert_one_error_line(result, f"{key}: ")
    assert "empty path" in result.stderr or "NUL" in result.stderr


def test_an_empty_inbox_no_longer_becomes_the_config_folder(tmp_path, clean_env):
    (tmp_path / "batchclf.toml").write_text('inbox = ""\n')
    with pytest.raises(settings.SettingsError, match="empty path"):
        settings.resolve(home=tmp_path, environ={})


@pytest.mark.parametrize("name, huge, bound", [("max_batch", 100_000_000, MAX_BATCH), ("workers", 100_000, MAX_WORKERS)])
def test_integer_settings_have_an_upper_bound(tmp_path, clean_env, name, huge, bound):
    (tmp_path / "batchclf.toml").write_text(f"{name} = {huge}\n")
    assert_one_error_line(print_config_in(tmp_path), f"{name}: must be at most {bound}")
    env = {settings.BY_NAME[name].env: str(huge)}
    assert_one_error_line(print_config_in(tmp_path, env=env), f"must be at most {bound}")
    flagged = print_config_in(tmp_path, settings.BY_NAME[name].flag, huge)
    assert flagged.exit_code == 2 and str(bound) in flagged.output


@pytest.mark.parametrize("flag, huge", [("--batch-size", 100_000_000), ("--workers", 100_000), ("--max-pages", 10**9),
                                        ("--max-file-mb", 10**9), ("--actors", 100_000)])
def test_integer_flags_of_classify_have_an_upper_bound(flag, huge):
    result = runner.invoke(app, ["classify", "inbox", flag, str(huge)])
    assert result.exit_code == 2 and "Invalid value" in result.output and flag in result.output


def test_classify_refuses_unbounded_batch_and_workers_from_code(tmp_path):
    from batchclf.classify import ClassifyOptions, run
    from batchclf.errors import SettingsError

    for options in (ClassifyOptions(model=tmp_path / "m.keras", out_dir=tmp_path, batch_size=10**9),
                    ClassifyOptions(model=tmp_path / "m.keras", out_dir=tmp_path, workers=10**6)):
        with pytest.raises(SettingsError, match="must be"):
            run([tmp_path], options)
    assert list(tmp_path.iterdir()) == []  # refused before any job folder


def test_help_states_the_bounds():
    for command, needle in [(["watch"], f"1<=x<={MAX_BATCH}"), (["classify"], f"0<=x<={MAX_WORKERS}")]:
        result = runner.invoke(app, [*command, "--help"], terminal_width=200, env={"COLUMNS": "200"})
        assert needle in result.stdout
