"""The command line: each command translates flags into one library call.

One module per command group (``model``, ``classify``, ``watch``,
``report``, ``models``, ``service``, ``bench``, ``review``); options they share are declared once in ``common``.  Library
failures arrive as :class:`batchclf.errors.BatchclfError` and leave as one
``Error: ...`` line on stderr with a non-zero exit code.  Nothing here
imports TensorFlow at module level, so ``--help`` and ``report`` stay fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from batchclf.cli import bench, classify, model, models, report, review, service, watch

app = typer.Typer(
    help="Classify folders of scanned handwritten digits into CSV/JSON reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # inherited by every command and group
)


def _print_version(asked: bool) -> None:
    if asked:
        from batchclf import __version__

        typer.echo(f"batchclf {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", metavar="", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Classify folders of scanned handwritten digits into CSV/JSON reports."""


app.command()(model.train)
app.command()(model.evaluate)
app.command()(model.predict)
app.command()(classify.classify)
app.command(cls=watch.WatchCommand)(watch.watch)
app.command()(report.report)
app.command()(bench.bench)
app.command("bench-watch")(bench.bench_watch)
app.command("bench-report")(bench.bench_report)
app.add_typer(models.app, name="models")
app.add_typer(service.app, name="service")
app.add_typer(review.app, name="review")


def main() -> None:
    app()
