"""``service``: systemd units for the daemon and a nightly run; ``print``, ``install``, ``status``.

The folders come from the same resolution as ``batchclf watch`` (flags >
``BATCHCLF_*`` > config file > defaults), so a unit starts the daemon the
user would get by typing ``batchclf watch`` in the home.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from batchclf.cli.common import AsJson, Home, NewHome, friendly_errors
from batchclf.watch import settings

app = typer.Typer(help="Run the daemon as a systemd service, or nightly from a timer.", no_args_is_help=True)

Inbox = Annotated[Optional[Path], typer.Option("--inbox", help="Folder the daemon watches (default: <home>/inbox).")]
Model = Annotated[
    Optional[Path],
    typer.Option("--model", help="Pin this .keras model (default: the one <home>/models puts in use at each start)."),
]
Config = Annotated[
    Optional[Path], typer.Option("--config", help=f"Settings file (default: ${settings.CONFIG_ENV}, else <home>/{settings.CONFIG_NAME}).")
]
UserUnit = Annotated[bool, typer.Option("--user", metavar="", help="A user unit (systemctl --user) instead of a system unit.")]
RunAs = Annotated[
    Optional[str], typer.Option("--run-as", help="User= of the system unit (default: you; under sudo, whoever ran sudo).")
]
At = Annotated[str, typer.Option("--at", help="Time of the nightly run, HH:MM.")]
NightlyOnly = Annotated[bool, typer.Option("--nightly-only", metavar="", help="Only the nightly service and its timer, no daemon.")]
DenyWriteExecute = Annotated[
    bool,
    typer.Option("--deny-write-execute", help="Add MemoryDenyWriteExecute=yes; turns off TensorFlow's oneDNN (inference a fifth to a half slower)."),
]


def _units(inbox, home, model, config, user, run_as, at, nightly_only, deny_write_execute):
    from batchclf.service import render

    effective = settings.resolve({"inbox": inbox, "model": model}, home=home, config=config)
    deployment = render.deployment(effective, user_unit=user, run_as=run_as, at=at, deny_write_execute=deny_write_execute)
    return deployment, render.render(deployment, nightly_only=nightly_only)


def _note_if_root(deployment) -> None:
    if deployment.user == "root":
        typer.echo("note: the units run the daemon as root; --run-as USER gives it an account of its own", err=True)


def _warn_ownership(deployment, root: bool | None = None) -> None:
    from batchclf.service.install import ownership_fixes

    for line in ownership_fixes(deployment, root=root):
        typer.echo(line, err=True)


@app.command("print")
@friendly_errors
def print_units(
    inbox: Inbox = None, home: NewHome = None, model: Model = None, config: Config = None, user: UserUnit = False,
    run_as: RunAs = None, at: At = "02:00", nightly_only: NightlyOnly = False, deny_write_execute: DenyWriteExecute = False,
):
    """Print the rendered units."""
    deployment, units = _units(inbox, home, model, config, user, run_as, at, nightly_only, deny_write_execute)
    from batchclf.service.install import metrics_hint

    typer.echo("\n".join(f"# --- {name}\n{text}" for name, text in units.items()), nl=False)
    for line in metrics_hint(deployment):
        typer.echo(line, err=True)
    _warn_ownership(deployment, root=True)  # missing folders: `sudo batchclf service install` creates them for the user
    _note_if_root(deployment)


@app.command()
@friendly_errors
def install(
    inbox: Inbox = None, home: NewHome = None, model: Model = None, config: Config = None, user: UserUnit = False,
    run_as: RunAs = None, at: At = "02:00", nightly_only: NightlyOnly = False, deny_write_execute: DenyWriteExecute = False,
    dest: Annotated[Optional[Path], typer.Option("--dest", help="Write the units here instead (packaging, review).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", metavar="", help="Say what would be done; change nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", metavar="", help="Replace units that differ from the rendered ones.")] = False,
):
    """Write the units, create the folders they name, and print the systemctl commands that enable them."""
    from contextlib import nullcontext

    from batchclf.service import install as installer

    deployment, units = _units(inbox, home, model, config, user, run_as, at, nightly_only, deny_write_execute)
    target = dest.absolute() if dest else (installer.user_units() if user else installer.SYSTEM_UNITS)
    # Plan and apply under one lock, so two installs at once never mix; a dry run takes none (it would create the folder).
    with nullcontext() if dry_run else installer.locked(target):
        installer.check_never_both(units, target, deployment.path("inbox"))
        steps = installer.plan(units, target, [target, *deployment.writable], force=force)
        for step in steps:
            typer.echo(("would " if dry_run else "") + str(step))
        if not dry_run:
            installer.apply(steps, units, owner=deployment.user)
    typer.echo("\n".join(installer.next_commands(deployment, units, target)))
    _warn_ownership(deployment)
    _note_if_root(deployment)


@app.command()
@friendly_errors
def status(inbox: Inbox = None, home: Home = None, config: Config = None, as_json: AsJson = False):
    """Whether a daemon holds the inbox, its pid, the journal's last entry, today's counts, drift and retention (no systemd needed)."""
    from batchclf.service.status import status as read_status

    result = read_status(settings.resolve({"inbox": inbox}, home=home, config=config))
    typer.echo(result.to_json() if as_json else "\n".join(result.lines()))
