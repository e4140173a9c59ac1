"""``models``: the models in ``models/``, which one is in use, switching it."""

from __future__ import annotations

from typing import Annotated

import typer

from batchclf.cli.common import AsJson, Home, friendly_errors

app = typer.Typer(help="List the models in models/, show a card, switch the model in use.", no_args_is_help=False)


@app.callback(invoke_without_command=True)
@friendly_errors
def models(ctx: typer.Context, home: Home = None, as_json: AsJson = False):
    """List the models in models/ with their cards; the one in use is marked."""
    if ctx.invoked_subcommand is not None:
        return
    from batchclf import paths
    from batchclf.cli.render import print_models
    from batchclf.model.registry import list_models

    entries = list_models(paths.models_dir(home))
    if as_json:
        import json

        typer.echo(json.dumps([{"name": e.name, "path": str(e.path), "in_use": e.in_use, "card": e.card} for e in entries], indent=2))
        return
    print_models(entries, paths.models_dir(home))


@app.command()
@friendly_errors
def use(name: Annotated[str, typer.Argument(help="A model in models/ (default, default.keras).")], home: Home = None):
    """Put a model in use for every later job (atomic; a running daemon keeps its model until restarted)."""
    from batchclf import paths
    from batchclf.model.registry import use as put_in_use

    previous, now = put_in_use(name, paths.models_dir(home))
    typer.echo(f"in use: {now.name} (was {previous.name})")


@app.command()
@friendly_errors
def show(name: Annotated[str, typer.Argument(help="A model in models/, or a path to a .keras file.")], home: Home = None):
    """Print a model's card."""
    from batchclf import paths
    from batchclf.cli.render import print_card
    from batchclf.model import card as cards
    from batchclf.model.registry import find

    path = find(name, paths.models_dir(home))
    print_card(path, cards.read(path))
