"""The one output sink: data to stdout, hints and progress to stderr."""

from __future__ import annotations

import json
import shutil
import sys


def stdout_console():
    from rich.console import Console

    # Piped output still gets a table wide enough for the four calculator columns.
    width = shutil.get_terminal_size((120, 24)).columns if sys.stdout.isatty() else 120
    return Console(width=max(width, 100), highlight=False, soft_wrap=False)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def print_text(text: str) -> None:
    sys.stdout.write(text)


def hint(message: str) -> None:
    sys.stderr.write(message + "\n")
