"""hfmem's command line: a thin typer layer over ``hfmem.api``.

``hfmem MODEL...`` is short for ``hfmem calc MODEL...``: ``main`` routes a first argument that is not a
command name to ``calc`` (``route_argv``), so the common case needs no sub-command.
"""

from __future__ import annotations

import difflib
import os
import sys

import typer

from .. import __version__
from ..errors import UsageError
from .errors import apply_boundary, error_line
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
apply_boundary(app)  # every command above, once: errors become one line on stderr and an exit code


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hfmem {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


COMMANDS = {"calc", "infer", "train", "simulate", "gpus", "cache", "snapshot"}
ROOT_FLAGS = {"--help", "-h", "--version", "-V"}


def route_argv(argv: list[str]) -> list[str]:
    """Insert ``calc`` unless the first argument is a command or a root flag.

    A first word that is close to a command name (``infr``) and cannot be a model (no ``/``, not a folder
    here), or a first option close to a root flag (``--verison``), is a typo: ``UsageError`` with the
    suggestion, rather than a model id that the Hub then fails to find."""
    if not argv:
        return ["--help"]
    if argv[0] in ("cache", "snapshot") and len(argv) == 1:
        return [argv[0], "--help"]  # a command group alone: its help, as typer's no_args_is_help would
    if argv[0] in COMMANDS or argv[0] in ROOT_FLAGS:
        return argv
    first = argv[0]
    if first.startswith("-"):
        close = difflib.get_close_matches(first, sorted(ROOT_FLAGS - {"-h", "-V"}), n=1, cutoff=0.8)
        if close:
            raise UsageError(f"no such option: {first} (did you mean {close[0]}?)",
                             hint="see `hfmem --help`")
    elif "/" not in first and not os.path.exists(first):
        close = difflib.get_close_matches(first, sorted(COMMANDS), n=1, cutoff=0.75)
        if close:
            raise UsageError(f"no such command: {first} (did you mean `hfmem {close[0]}`?)",
                             hint="see `hfmem --help`; a Hub model id has the form org/name")
    return ["calc", *argv]


def main(argv: list[str] | None = None) -> None:
    """The ``hfmem`` entry point. Usage errors (a typo in a command, an option or a value) are one line on
    stderr and exit 2, like every other error (``hfmem.cli.errors``)."""
    try:
        args = route_argv(list(sys.argv[1:] if argv is None else argv))
        code = app(args=args, prog_name="hfmem", standalone_mode=False)
    except UsageError as exc:
        typer.echo(error_line(exc), err=True)
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # typer's usage errors: bad option, value, command or missing argument
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "hfmem"
        message = " ".join(exc.format_message().split())
        typer.echo(error_line(UsageError(message, hint=f"see `{where} --help`")), err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("hfmem: aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
