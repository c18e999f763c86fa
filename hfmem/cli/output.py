"""The one output sink: data to stdout, hints and progress to stderr."""

from __future__ import annotations

import json
import shutil
import sys


def _quiet_progress() -> None:
    """Stop and clear the progress indicator (``hfmem.cli.progress``) before anything else is printed."""
    from .progress import stop_all

    stop_all()


def stdout_console():
    from rich.console import Console

    _quiet_progress()

    # Piped output still gets a table wide enough for the four calculator columns; COLUMNS, where set, is the
    # width asked for (as on a terminal), also in a pipe.
    import os

    width = (shutil.get_terminal_size((120, 24)).columns if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit()
             else 120)
    return Console(width=max(width, 100), highlight=False, soft_wrap=False)


def print_json(data) -> None:
    _quiet_progress()
    from ..sources import scrub  # no URL credentials in any output (HF_ENDPOINT's are stripped at the source too)

    sys.stdout.write(scrub(json.dumps(data, indent=2)) + "\n")


def print_text(text: str) -> None:
    _quiet_progress()
    from ..sources import scrub

    sys.stdout.write(scrub(text))


def hint(message: str) -> None:
    _quiet_progress()
    from ..sources import scrub

    sys.stderr.write(scrub(message) + "\n")


def finish(fmt, reports, failures, emits: dict[str, str], *, json_doc, markdown, rich) -> None:
    """The end of every estimate command: the JSON document, the emitted launch texts, or the table /
    Markdown; then one stderr line per model that failed and the first failure's exit code."""
    import typer

    from .errors import error_line
    from .options import Format

    if fmt is Format.json:
        print_json(json_doc(reports, failures, emits))
    elif emits:
        print_text("".join(text if text.endswith("\n") else text + "\n" for text in emits.values()))
    elif reports:
        if fmt is Format.markdown:
            print_text(markdown(reports))
        else:
            rich(stdout_console(), reports)
    _quiet_progress()
    for _, exc in failures:
        typer.echo(error_line(exc), err=True)
    if failures:
        raise typer.Exit(failures[0][1].exit_code)
