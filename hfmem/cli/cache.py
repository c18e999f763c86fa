"""``hfmem cache``: list and clear hfmem's result cache."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from ..sources import resultcache, scrub
from .options import Format, FormatOpt
from .output import print_json, stdout_console

app = typer.Typer(help="hfmem's cache of finished analyses (not the Hugging Face cache).", no_args_is_help=True)


@app.command("list")
def list_(fmt: FormatOpt = Format.table) -> None:
    """List cached analyses."""
    rows = []
    for e in resultcache.entries():
        r = e.report
        rows.append({"key": scrub(e.key), "model": r["model"], "source": r["source"], "revision": r["revision"],
                     "parameters": r["inventory"]["num_params"],
                     "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.created)),
                     "file": str(e.path)})
    if fmt is Format.json:
        print_json({"cache_dir": str(resultcache.results_dir()), "entries": rows})
        return
    from rich.table import Table

    t = Table(title=f"hfmem result cache: {resultcache.results_dir()}", title_justify="left")
    for col in ("model", "source", "revision", "parameters", "created"):
        t.add_column(col)
    for row in rows:
        t.add_row(row["model"], row["source"], str(row["revision"] or "")[:12], f"{row['parameters']:,}",
                  row["created"])
    stdout_console().print(t)


@app.command("clear")
def clear(
    model: Annotated[Optional[str], typer.Argument(help="Only entries whose key contains this (e.g. a repo id).")] = None,
) -> None:
    """Delete cached analyses (all, or those of one model)."""
    n = resultcache.clear(model)
    typer.echo(f"removed {n} cached analys{'is' if n == 1 else 'es'} from {resultcache.results_dir()}")


@app.command("path")
def path() -> None:
    """Print the cache folder."""
    typer.echo(str(resultcache.results_dir()))
