"""The one place where errors become messages: a line on stderr, an exit code, no traceback.

Set ``HFMEM_DEBUG=1`` to get the traceback instead.
"""

from __future__ import annotations

import contextlib
import os
import sys

import typer

from ..errors import HfmemError
from ..sources import scrub


def error_line(exc: HfmemError) -> str:
    """The one line an error becomes; credentials of a URL (HF_ENDPOINT's included) never reach it."""
    return scrub(f"hfmem: error: {exc}")


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
