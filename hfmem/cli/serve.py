"""``hfmem serve``: the web app (a Gradio Blocks app over ``hfmem.api``) on this machine, or with ``--space DIR`` the
folder of a Hugging Face Space that runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import MeasureUnavailableError, UsageError
from .options import OfflineOpt, TokenOpt

GRADIO_MISSING = "hfmem serve needs gradio: pip install 'hfmem[web]'"


class WebUnavailableError(MeasureUnavailableError):
    """gradio is not installed: exit 69 (sysexits' EX_UNAVAILABLE, "a support program or file does not exist"),
    as for the other optional packages a command needs; the arguments are fine (not 2), and it is not a bug (70)."""


def _free_port(host: str) -> int:
    """A port the OS says is free on ``host`` (``--port 0``)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any free port).")] = 7860,
    space: Annotated[Optional[Path], typer.Option(
        "--space", help="Write the folder of a Hugging Face Space that runs this app to DIR, and exit.",
        metavar="DIR")] = None,
    offline: OfflineOpt = False,
    token: TokenOpt = None,
) -> None:
    """Open hfmem's web app: the calculator table, serving, fine-tuning, compare and search, with plots and
    a shareable link for every answer (the same numbers as the command line). Prints its URL on stderr."""
    if space is not None:
        from ..web.space import write_space

        if space.exists() and not space.is_dir():
            raise UsageError(f"--space {space}: a file is there, not a folder", hint="name a new or existing folder")
        try:
            written = write_space(space)
        except OSError as exc:  # a read-only place, a full disk: the user's to fix, not a bug
            raise UsageError(f"--space {space}: cannot write the Space there ({exc.strerror or exc})",
                             hint="choose a folder you can write to") from None
        typer.echo(f"wrote a Hugging Face Space to {space} ({len(written)} files): upload the folder to a "
                   "Gradio Space", err=True)
        return
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: a port is 0 to 65535", hint="0 picks any free port")
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry; the machine may have no network
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise WebUnavailableError(GRADIO_MISSING) from None
    from ..api import Options
    from ..web.app import build_app, launch

    demo = build_app(Options(offline=offline, token=token))
    try:
        launch(demo, host=host, port=port or _free_port(host))
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise UsageError(f"--host {host} --port {port}: cannot listen there ({exc})",
                         hint="--port 0 picks a free port") from None
    typer.echo(f"hfmem serve: {demo.local_url} (Ctrl+C stops it)", err=True)
    import sys

    sys.stderr.flush()
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
