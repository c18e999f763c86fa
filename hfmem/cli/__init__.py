"""hfmem's command line: a thin typer layer over ``hfmem.api``.

``hfmem MODEL...`` is short for ``hfmem calc MODEL...``: ``main`` routes a first argument that is not a
command name to ``calc`` (``route_argv``), so the common case needs no sub-command.
"""

from __future__ import annotations

import sys

import typer

from .. import __version__
from . import cache, snapshot
from .calc import calc
from .gpus import gpus
from .infer import infer
from .simulate import simulate
from .train import train

app = typer.Typer(
    name="hfmem",
    help="How much GPU memory a Hugging Face Hub model needs, before you download it.\n\n"
         "hfmem MODEL... is short for hfmem calc MODEL...",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command("calc")(calc)
app.command("infer")(infer)
app.command("train")(train)
app.command("simulate")(simulate)
app.command("gpus")(gpus)
app.add_typer(cache.app, name="cache")
app.add_typer(snapshot.app, name="snapshot")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hfmem {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


COMMANDS = {"calc", "infer", "train", "simulate", "gpus", "cache", "snapshot"}
ROOT_FLAGS = {"--help", "-h", "--version"}


def route_argv(argv: list[str]) -> list[str]:
    """Insert ``calc`` unless the first argument is a command or a root flag."""
    if not argv or argv[0] in COMMANDS or argv[0] in ROOT_FLAGS:
        return argv
    return ["calc", *argv]


def main(argv: list[str] | None = None) -> None:
    args = route_argv(list(sys.argv[1:] if argv is None else argv))
    app(args=args, prog_name="hfmem")
