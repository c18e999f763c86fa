"""The one place where errors become messages: a line on stderr, an exit code, no traceback.

``apply_boundary(app)`` wraps every registered command (sub-command groups included) in ``error_boundary``
once, in ``hfmem.cli``: only an ``HfmemError`` becomes a message with its own exit code; any other exception
(a plain ``ValueError`` included) is an internal error, exit 70. Set ``HFMEM_DEBUG=1`` to get the traceback
instead. A ``SettingsError`` names its setting in the Python API's terms; ``cli_message`` puts the flag
(``options.SETTING_FLAGS``) in its place.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys

import typer

from ..errors import HfmemError, SettingsError
from ..sources import scrub


def cli_message(exc: HfmemError) -> str:
    """``str(exc)``, with a ``SettingsError``'s API setting name (``lora_targets``, ``zero=``) replaced by
    its flag (``--lora-targets``, ``--zero``) from the one table ``options.SETTING_FLAGS``."""
    text = str(exc)
    source = exc if isinstance(exc, SettingsError) else exc.__context__  # hfmem.api re-raises some as UsageError
    setting = source.setting if isinstance(source, SettingsError) and str(source) in text else None
    if setting:
        from .options import SETTING_FLAGS

        flag = SETTING_FLAGS.get(setting)
        if flag and flag not in text:
            text = re.sub(rf"(?<![\w-]){re.escape(setting)}=", f"{flag} ", text)
            text = re.sub(rf"(?<![\w.-]){re.escape(setting)}(?![\w-])", flag, text)
    return text


def error_line(exc: HfmemError) -> str:
    """The one line an error becomes; credentials of a URL (HF_ENDPOINT's included) never reach it."""
    return scrub(f"hfmem: error: {cli_message(exc)}")


@contextlib.contextmanager
def error_boundary():
    try:
        yield
    except HfmemError as exc:
        if os.environ.get("HFMEM_DEBUG"):
            raise
        typer.echo(error_line(exc), err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("hfmem: interrupted", err=True)
        raise typer.Exit(130) from None
    except BrokenPipeError:  # `hfmem ... | head`: the reader left; stop quietly, as a SIGPIPE'd command does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush cannot fail again
        raise typer.Exit(141) from None
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except Exception as exc:  # a bug: still one line, with how to see more
        if os.environ.get("HFMEM_DEBUG"):
            raise
        first = scrub(str(exc)).splitlines()[0][:200] if str(exc) else ""
        typer.echo(f"hfmem: internal error: {exc.__class__.__name__}: {first} "
                   "(set HFMEM_DEBUG=1 for the traceback and report it)", err=True)
        sys.stderr.flush()
        raise typer.Exit(70) from None


def bounded(command):
    """``command`` run inside ``error_boundary`` (its signature kept for typer)."""
    if getattr(command, "__hfmem_bounded__", False):
        return command

    @functools.wraps(command)
    def run(*args, **kwargs):
        with error_boundary():
            return command(*args, **kwargs)

    run.__hfmem_bounded__ = True
    return run


def apply_boundary(app: typer.Typer) -> typer.Typer:
    """Wrap every command registered on ``app`` and on its sub-typers in ``error_boundary``: the one place
    the boundary is applied."""
    for info in app.registered_commands:
        if info.callback is not None:
            info.callback = bounded(info.callback)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            apply_boundary(group.typer_instance)
    return app
