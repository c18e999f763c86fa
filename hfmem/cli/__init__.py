"""hfmem's command line: a thin typer layer over ``hfmem.api``.

``hfmem MODEL...`` is short for ``hfmem calc MODEL...``: ``main`` routes a first argument that is not a
command name to ``calc`` (``route_argv``), so the common case needs no sub-command.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from .. import __version__
from ..errors import UsageError
from .errors import apply_boundary, error_line

# The commands, in the order ``hfmem --help`` lists them: name -> (module, attribute, a command group?).
# Registered lazily (``build_app``): a run imports only the module of the command it runs.
_REGISTRY: dict[str, tuple[str, str, bool]] = {
    "calc": (".calc", "calc", False),
    "infer": (".infer", "infer", False),
    "train": (".train", "train", False),
    "simulate": (".simulate", "simulate", False),
    "search": (".search", "search", False),
    "gpus": (".gpus", "gpus", False),
    "serve": (".serve", "serve", False),
    "cache": (".cache", "app", True),
    "snapshot": (".snapshot", "app", True),
    "measure": (".measure", "app", True),
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hfmem {__version__}")
        raise typer.Exit()


def _root(version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


def _root_group():
    """The root command group: typer's, and at <TAB> on the first word a model id of the shipped snapshot too
    (``hfmem ORG/NAME`` is ``hfmem calc ORG/NAME``), through click's public ``shell_complete``."""
    from typer.core import TyperGroup

    class RootGroup(TyperGroup):
        def shell_complete(self, ctx, incomplete):
            items = super().shell_complete(ctx, incomplete)
            if "/" in incomplete:  # a command name has no "/": this is a model
                from click.shell_completion import CompletionItem

                from .complete import model_ids

                items += [CompletionItem(m) for m in model_ids(incomplete)]
            return items

    return RootGroup


def build_app(names=None) -> typer.Typer:
    """The typer app with the commands ``names`` (default: all of them, in ``--help`` order), each wrapped in
    the error boundary. ``main`` builds it with the one command a run invokes, so that only that command's
    module is imported and only its parameters are built; ``hfmem.cli.app`` is the full app."""
    app = typer.Typer(
        name="hfmem",
        help="How much GPU memory a Hugging Face Hub model needs, before you download it.\n\n"
             "hfmem MODEL... is short for hfmem calc MODEL...",
        no_args_is_help=True,
        cls=_root_group(),
        add_completion=True,  # --install-completion / --show-completion (values: hfmem.cli.complete)
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    wanted = set(_REGISTRY if names is None else names)
    for name, (module, attribute, group) in _REGISTRY.items():
        if name not in wanted:
            continue
        target = getattr(importlib.import_module(module, __name__), attribute)
        if group:
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)
    app.callback()(_root)
    apply_boundary(app)  # every command above, once: errors become one line on stderr and an exit code
    return app


def __getattr__(name: str):
    """``hfmem.cli.app``: the full app (every command), built on first use (tests, docs/generate_cli_reference.py)."""
    if name == "app":
        app = build_app()
        globals()["app"] = app
        return app
    raise AttributeError(f"module 'hfmem.cli' has no attribute {name!r}")


COMMANDS = {"calc", "infer", "train", "simulate", "search", "gpus", "serve", "cache", "snapshot", "measure"}
ROOT_FLAGS = {"--help", "-h", "--version", "-V", "--install-completion", "--show-completion"}


def route_argv(argv: list[str]) -> list[str]:
    """Insert ``calc`` unless the first argument is a command or a root flag.

    A first word that is close to a command name (``infr``) and cannot be a model (no ``/``, not a folder
    here), or a first option close to a root flag (``--verison``), is a typo: ``UsageError`` with the
    suggestion, rather than a model id that the Hub then fails to find."""
    if not argv:
        return ["--help"]
    if argv[0] in ("cache", "snapshot", "measure") and len(argv) == 1:
        return [argv[0], "--help"]  # a command group alone: its help, as typer's no_args_is_help would
    if argv[0] in COMMANDS or argv[0] in ROOT_FLAGS:
        return argv
    first = argv[0]
    import difflib  # only a first word that is not a command gets here

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


def _run(app: typer.Typer, args: list[str]):
    """Run ``args`` on ``app`` as typer's ``standalone_mode=False`` does: the command's return value, or the
    code of a ``typer.Exit`` it raised. A plain command line (``fast.plain_call``) calls the command with the
    values typer would give it, without typer's per-parameter pydantic validators; any other goes to typer."""
    from .fast import plain_call

    plain = None if os.environ.get("_HFMEM_COMPLETE") else plain_call(app, args)  # shell completion: typer's
    if plain is None:
        return app(args=args, prog_name="hfmem", standalone_mode=False)
    callback, kwargs = plain
    try:
        return callback(**kwargs)
    except typer.Exit as exc:
        return exc.exit_code


def main(argv: list[str] | None = None) -> None:
    """The ``hfmem`` entry point. Usage errors (a typo in a command, an option or a value) are one line on
    stderr and exit 2, like every other error (``hfmem.cli.errors``)."""
    from .progress import stop_all

    try:
        args = route_argv(list(sys.argv[1:] if argv is None else argv))
        # Only the command this run invokes is registered (a root flag, --help included, needs them all).
        app = build_app([args[0]] if args[0] in COMMANDS else None)
        code = _run(app, args)
    except UsageError as exc:
        stop_all()  # the progress indicator's line is cleared before the error line
        typer.echo(error_line(exc), err=True)
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # typer's usage errors: bad option, value, command or missing argument
        stop_all()
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "hfmem"
        message = " ".join(exc.format_message().split())
        typer.echo(error_line(UsageError(message, hint=f"see `{where} --help`")), err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        stop_all()
        typer.echo("hfmem: aborted", err=True)
        sys.exit(1)
    stop_all()  # a command that printed nothing leaves no spinner behind
    sys.exit(code if isinstance(code, int) else 0)
