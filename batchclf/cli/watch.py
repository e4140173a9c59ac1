"""``watch``: the inbox daemon.

Its flags are generated from the settings declaration
(:mod:`batchclf.watch.settings`), so a setting cannot exist in the config
file or a unit without existing here.  Every setting flag defaults to None,
"not given", which lets the environment and the config file fill it in.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from batchclf.cli.common import Home, friendly_errors
from batchclf.limits import Share
from batchclf.watch import settings as declared

Config = Annotated[
    Optional[Path],
    typer.Option("--config", help=f"A TOML file of settings (default: ${declared.CONFIG_ENV}, else <home>/{declared.CONFIG_NAME})."),
]
PrintConfig = Annotated[
    bool, typer.Option("--print-config", metavar="", help="Print the effective settings and where each came from, then exit.")
]


def option_for(s: declared.Setting) -> inspect.Parameter:
    """The typer parameter of one setting: its flag, help, limits; default None = not given."""
    # Parentheses, not brackets: rich would read "[default: ...]" as markup and drop it.
    help_text = f"{s.help} (default: {s.default_text()}; env {s.env}; config key {s.name})"
    if s.positional:
        info = typer.Argument(help=help_text, metavar=s.name.upper(), show_default=False)
    elif s.type is bool:
        info = typer.Option(f"{s.flag}/--no-{s.flag[2:]}", metavar="", help=help_text, show_default=False)
    elif s.type is Share:  # "0.2%" as well as 0.002: click's float type would refuse the first
        info = typer.Option(s.flag, help=help_text, parser=Share, metavar="SHARE", show_default=False)
    else:
        info = typer.Option(s.flag, help=help_text, min=s.minimum, max=s.maximum, show_default=False)
    return inspect.Parameter(s.field, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[s.type], info])


def with_setting_flags(command):
    """Give ``command(config, print_config, home, **settings)`` one typer parameter per declared setting."""
    fixed = [
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Config),
        inspect.Parameter("print_config", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=PrintConfig),
        inspect.Parameter("home", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Home),
    ]
    parameters = [option_for(s) for s in declared.SETTINGS] + fixed
    command.__signature__ = inspect.Signature(parameters)
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    return command


@with_setting_flags
@friendly_errors
def watch(config: Optional[Path] = None, print_config: bool = False, home: Optional[Path] = None, **given):
    """Watch an inbox folder and classify every file that lands in it, exactly once."""
    effective = declared.resolve(given, home=home, config=config)
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
