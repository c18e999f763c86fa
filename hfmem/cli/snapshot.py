"""``hfmem snapshot``: build, refresh and list the shipped offline snapshot (``cache/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from ..sources import snapshot
from .options import Format, FormatOpt, TokenOpt
from .output import hint, print_json, stdout_console

app = typer.Typer(help="The offline snapshot of Hub metadata that hfmem ships (cache/).", no_args_is_help=True)

OutOpt = Annotated[Optional[Path], typer.Option("--out", help="Snapshot folder (default: the shipped cache/).")]


def _progress(repo_id: str, error: str | None) -> None:
    hint(f"  {repo_id}: {'counted' if error is None else 'no inventory: ' + error}")


@app.command("build")
def build(
    reference: Annotated[list[Path], typer.Option(
        "--from", metavar="<path>",
        help="Folder of <org>/<name>/config.json (+ SOURCES.md); repeat it to build from several.")],
    out: OutOpt = None,
) -> None:
    """Rebuild the snapshot from reference configs (no network)."""
    for folder in reference:
        if not folder.is_dir():
            raise UsageError(f"{folder} is not a folder", hint="pass the hub-reference folder with --from")
    results = snapshot.build_from_reference(reference, out or snapshot.snapshot_dir(), _progress)
    bad = sum(e is not None for e in results.values())
    hint(f"snapshot: {len(results)} models, {len(results) - bad} counted, {bad} config only")


@app.command("refresh")
def refresh(
    models: Annotated[Optional[list[str]], typer.Argument(help="Repo ids (default: every model in the snapshot).")] = None,
    out: OutOpt = None,
    token: TokenOpt = None,
) -> None:
    """Re-fetch config.json and safetensors headers from the Hub and recount."""
    folder = out or snapshot.snapshot_dir()
    repos = models or sorted((snapshot.load_index(folder) or {"models": {}})["models"])
    result = snapshot.refresh_from_hub(repos, folder, token, _progress)
    done = f"snapshot refresh: {len(result.updated)} of {len(repos)} updated from the Hub"
    if result.failed and not result.updated:
        first = next(iter(result.failed.values()))
        raise type(first)(f"{done}, nothing written to {folder} — {first.message}",
                          hint=getattr(first, "hint", None))
    hint(done + (f"; {len(result.failed)} left as they were (the Hub could not give them)"
                 if result.failed else ""))


@app.command("list")
def list_(out: OutOpt = None, fmt: FormatOpt = Format.table) -> None:
    """List the models in the snapshot."""
    folder = out or snapshot.snapshot_dir()
    index = snapshot.load_index(folder)
    if index is None:
        raise UsageError(f"no snapshot at {folder}", hint="build one with `hfmem snapshot build --from DIR`")
    rows = []
    for repo_id in index["models"]:
        e = snapshot.lookup(repo_id, folder)
        rows.append({"model": repo_id, "parameters": e.inventory["num_params"] if e.inventory else None,
                     "origin": e.provenance.get("origin"), "error": e.error})
    if fmt is Format.json:
        print_json({"snapshot_id": index["snapshot_id"], "versions": index["versions"], "models": rows})
        return
    from rich.table import Table

    t = Table(title=f"hfmem snapshot {index['snapshot_id']} ({len(rows)} models)", title_justify="left")
    for col in ("model", "parameters", "origin"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["model"], f"{r['parameters']:,}" if r["parameters"] else f"— ({r['error']})", r["origin"])
    stdout_console().print(t)
