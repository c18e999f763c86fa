"""The shipped offline snapshot (``cache/`` at the top of the project): config.json, provenance and the
precomputed inventory of popular models, so that the main job answers with no network and no torch.

Layout::

    cache/index.json                         snapshot id, versions used, repo id -> folder
    cache/models/<org>/<name>/config.json    the config as obtained (verbatim)
    cache/models/<org>/<name>/entry.json     provenance + inventory (null when it cannot be counted offline)

Built and refreshed by ``hfmem snapshot build`` (from a folder of reference configs) and
``hfmem snapshot refresh`` (from the Hub); never edited by hand.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = 1


def snapshot_dir() -> Path:
    """Where the snapshot is read from: ``HFMEM_SNAPSHOT_DIR``, else the copy an installed wheel carries
    (``hfmem/_snapshot``, pyproject.toml maps ``cache/`` there), else ``cache/`` of a source checkout."""
    if os.environ.get("HFMEM_SNAPSHOT_DIR"):
        return Path(os.environ["HFMEM_SNAPSHOT_DIR"])
    package = Path(__file__).resolve().parents[1]
    shipped = package / "_snapshot"
    if (shipped / "index.json").is_file():
        return shipped
    return package.parent / "cache"


def describe_location(folder: Path | None = None) -> str:
    """The snapshot folder as a message names it, saying when it has no index (so nothing was searched)."""
    folder = folder or snapshot_dir()
    return str(folder) if (folder / "index.json").is_file() else f"{folder}, which holds no snapshot"


@dataclass
class SnapshotEntry:
    repo_id: str
    snapshot_id: str
    config: dict
    provenance: dict
    inventory: dict | None
    error: str | None

    @property
    def built_at(self) -> str:
        """The day this entry was written (a refresh rewrites single entries, not the snapshot's date)."""
        return self.provenance.get("built_at") or self.snapshot_id


_index_cache: dict[Path, dict] = {}


def load_index(folder: Path | None = None) -> dict | None:
    folder = folder or snapshot_dir()
    if folder not in _index_cache:
        try:
            _index_cache[folder] = json.loads((folder / "index.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None
    return _index_cache[folder]


def lookup(repo_id: str, folder: Path | None = None) -> SnapshotEntry | None:
    folder = folder or snapshot_dir()
    index = load_index(folder)
    if not index:
        return None
    rel = index["models"].get(repo_id)
    if rel is None:  # the Hub treats repo ids case-insensitively
        rel = next((v for k, v in index["models"].items() if k.lower() == repo_id.lower()), None)
    if rel is None:
        return None
    entry = json.loads((folder / rel / "entry.json").read_text())
    config = json.loads((folder / rel / "config.json").read_text())
    return SnapshotEntry(entry["repo_id"], index["snapshot_id"], config, entry["provenance"],
                         entry.get("inventory"), entry.get("error"))


# ---------------------------------------------------------------- building


def read_sources_md(reference: Path) -> dict[str, dict]:
    """Provenance rows of hub-reference/SOURCES.md: repo id -> {source, form, notes}."""
    out: dict[str, dict] = {}
    path = reference / "SOURCES.md"
    if not path.is_file():
        return out
    section = ""
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and re.fullmatch(r"[\w.-]+/[\w.-]+", cells[0]):
            out[cells[0]] = {"source": cells[2], "form": cells[3], "notes": cells[4],
                             "section": section or "sources"}
    return out


def _atomic_write(path: Path, text: str) -> None:
    # only building a snapshot writes one; reading it (every offline answer) does not import the writer
    from .resultcache import write_atomically

    write_atomically(path, text)


def write_entry(out: Path, repo_id: str, config_bytes: bytes, provenance: dict, inventory: dict | None,
                error: str | None) -> str:
    """Write one model's folder whole: both files go to a fresh folder that then replaces the old one, so a
    failure leaves the previous entry (or none), never a config from one fetch beside an entry from another."""
    import tempfile

    rel = f"models/{repo_id}"
    final = out / rel
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.new-", dir=final.parent))
    try:
        (staging / "config.json").write_text(config_bytes.decode())
        entry = {"repo_id": repo_id, "provenance": provenance, "inventory": inventory, "error": error}
        (staging / "entry.json").write_text(json.dumps(entry, indent=1, sort_keys=True) + "\n")
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
        os.replace(staging, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return rel


def write_index(out: Path, models: dict[str, str], versions: dict[str, str], *,
                snapshot_id: str | None = None) -> None:
    """Write index.json. A build dates the snapshot today; a refresh keeps the date it was built
    (``snapshot_id``) and records when it was refreshed."""
    from .. import __version__

    now = time.gmtime()
    index = {"schema": SCHEMA, "snapshot_id": snapshot_id or time.strftime("%Y-%m-%d", now),
             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", now),
             "hfmem": __version__, "versions": versions, "models": dict(sorted(models.items()))}
    if snapshot_id:
        index["refreshed"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", now)
    _atomic_write(out / "index.json", json.dumps(index, indent=1) + "\n")
    _index_cache.pop(out, None)


def reference_repos(reference: Path) -> list[str]:
    """Every <org>/<name>/config.json under the reference folder except ``_unmapped/``."""
    repos = []
    for cfg in sorted(reference.glob("*/*/config.json")):
        org = cfg.parent.parent.name
        if org.startswith("_"):
            continue
        repos.append(f"{org}/{cfg.parent.name}")
    return repos


def clean(out: Path) -> None:
    """Remove entries of a previous build (the snapshot is rebuilt whole)."""
    if (out / "models").is_dir():
        shutil.rmtree(out / "models")


def _record(out: Path, repo_id: str, config_bytes: bytes, provenance: dict, headers, state: dict, progress) -> None:
    """Count one model (or keep why it cannot be counted) and write its entry; ``state`` collects the index
    (``models``), the outcome per repo (``results``) and the versions used."""
    from ..errors import HfmemError
    from ..inventory.build import build_inventory
    from ..inventory.meta_model import versions
    from ..metadata.config import parse_config

    try:
        inv = build_inventory(parse_config(config_bytes, repo_id), headers)
        inventory, error = inv.to_dict(), None
    except HfmemError as exc:
        inventory, error = None, exc.message
    state["versions"] = versions()
    state["models"][repo_id] = write_entry(out, repo_id, config_bytes, provenance, inventory, error)
    state["results"][repo_id] = error
    if progress:
        progress(repo_id, error)


def build_from_reference(references: list[Path], out: Path, progress=None) -> dict[str, str | None]:
    """Rebuild the snapshot from folders of reference configs (each ``<org>/<name>/config.json``, with its own
    SOURCES.md for provenance). Returns repo id -> error (None when counted). A repo id found in two folders is
    a UsageError: which copy the snapshot holds must not depend on the order of the folders."""
    from ..errors import UsageError

    if isinstance(references, (str, Path)):
        references = [Path(references)]
    found: dict[str, Path] = {}
    for reference in references:
        for repo_id in reference_repos(reference):
            if repo_id in found:
                raise UsageError(f"{repo_id} is in both {found[repo_id]} and {reference}",
                                 hint="keep one reference config per repo id")
            found[repo_id] = reference
    sources = {ref: read_sources_md(ref) for ref in references}
    today = time.strftime("%Y-%m-%d", time.gmtime())
    clean(out)
    state: dict = {"models": {}, "results": {}, "versions": {}}
    for repo_id, reference in found.items():
        provenance = {"origin": "reference config", "reference": sources[reference].get(repo_id, {}),
                      "built_at": today, "sha": None}
        _record(out, repo_id, (reference / repo_id / "config.json").read_bytes(), provenance, None, state, progress)
    write_index(out, state["models"], state["versions"])
    return state["results"]


@dataclass
class RefreshResult:
    """What a refresh did: the models it rewrote (repo id -> None, or why they could not be counted) and the
    ones the Hub could not give (repo id -> the error), whose entries were left as they were."""
    updated: dict[str, str | None]
    failed: dict[str, Exception]


def refresh_from_hub(repo_ids: list[str], out: Path, token=None, progress=None) -> RefreshResult:
    """Re-fetch config.json and safetensors headers from the Hub for these models and recount them.
    A model the Hub cannot give keeps its existing entry; the index is rewritten only when an entry was,
    and keeps the snapshot's date (each entry carries the day it was fetched)."""
    from ..errors import HfmemError
    from . import hub

    index = load_index(out) or {"models": {}, "versions": {}}
    state: dict = {"models": dict(index["models"]), "results": {}, "versions": index.get("versions", {})}
    failed: dict[str, Exception] = {}
    for repo_id in repo_ids:
        try:
            meta = hub.fetch_hub(repo_id, hub.model_info(repo_id, None, token), token)
        except HfmemError as exc:
            failed[repo_id] = exc
            if progress:
                progress(repo_id, exc.message)
            continue
        provenance = dict(meta.provenance, origin="hub", built_at=meta.provenance["retrieved_at"][:10])
        _record(out, repo_id, meta.config.text, provenance, meta.headers, state, progress)
    if state["results"]:
        write_index(out, state["models"], state["versions"], snapshot_id=index.get("snapshot_id"))
    return RefreshResult(state["results"], failed)
