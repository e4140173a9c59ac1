"""``watch``: the inbox daemon.

Its flags are the click parameters of the settings declaration
(:func:`batchclf.watch.settings.parameters`), so a setting cannot exist in
the config file or a unit without existing here.  Click resolves each one:
the flag, else ``$BATCHCLF_<NAME>``, else the config file (the context's
``default_map``), else the default; ``--print-config`` reports the source
``ctx.get_parameter_source`` names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand

from batchclf.cli.common import Home, fail, friendly_errors
from batchclf.errors import BatchclfError
from batchclf.watch import settings as declared

Config = Annotated[
    Optional[Path],
    typer.Option("--config", help=f"A TOML file of settings (default: ${declared.CONFIG_ENV}, else <home>/{declared.CONFIG_NAME})."),
]
PrintConfig = Annotated[
    bool, typer.Option("--print-config", metavar="", help="Print the effective settings and where each came from, then exit.")
]
_EFFECTIVE = "batchclf.watch.effective"


class WatchCommand(TyperCommand):
    """The ``watch`` command: one click parameter per declared setting, then typer's parameters of the function."""

    def __init__(self, *, params, **kwargs):
        for param in params:
            if param.name in ("home", "config"):
                param.is_eager = True  # the config file is every setting's default_map: known before any of them
        super().__init__(params=declared.parameters() + list(params), **kwargs)

    def make_context(self, info_name, args, parent=None, **extra):  # noqa: D102
        try:  # a bad variable or config file surfaces while click parses: one Error: line, as elsewhere
            return super().make_context(info_name, args, parent=parent, **extra)
        except BatchclfError as exc:
            fail(str(exc), exc.exit_code)

    def invoke(self, ctx: typer.Context):
        try:
            ctx.meta[_EFFECTIVE] = declared.effective(ctx)
        except BatchclfError as exc:
            fail(str(exc), exc.exit_code)
        for s in declared.SETTINGS:  # the function takes the resolved settings, not one argument per flag
            ctx.params.pop(s.field, None)
        return super().invoke(ctx)


@friendly_errors
def watch(ctx: typer.Context, config: Config = None, print_config: PrintConfig = False, home: Home = None):
    """Watch an inbox folder and classify every file that lands in it, exactly once."""
    effective = ctx.meta[_EFFECTIVE]  # config and home were read while parsing (WatchCommand)
    if print_config:
        typer.echo(effective.describe())
        return

    import logging
    import signal

    from batchclf.watch.daemon import Daemon

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    daemon = Daemon(effective.options())
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop(0))
    signal.signal(signal.SIGINT, lambda *_: daemon.stop(130))
    raise typer.Exit(daemon.run())
