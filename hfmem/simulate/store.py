"""Simulations kept on disk, so that a model calibrated from its own code once answers instantly afterwards.

One JSON file per (config, mode, settings, torch and transformers versions) under hfmem's cache home
(``HFMEM_HOME``, else ``$HF_HOME/hfmem``, else ``~/.cache/huggingface/hfmem``), ``simulations/v1/``. Written
atomically (a temporary file renamed into place), so a killed run leaves nothing half-written; a file that does
not parse is ignored and rewritten. Reading needs neither torch nor transformers: the versions in the key come
from package metadata.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .result import SimResult

SCHEMA = 1


def _versions() -> dict[str, str]:
    from ..inventory.meta_model import versions

    return versions()


def store_dir() -> Path:
    from ..sources.resultcache import cache_home

    return cache_home() / "simulations" / f"v{SCHEMA}"


def key(config: dict, mode: str, settings: dict) -> str:
    doc = {"config": config, "mode": mode, "settings": settings, "versions": _versions()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]


def get(k: str) -> SimResult | None:
    path = store_dir() / f"{k}.json"
    try:
        return SimResult.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def put(k: str, result: SimResult) -> None:
    """Store ``result``; a cache that cannot be written is skipped (the answer is still given)."""
    from ..sources.resultcache import write_atomically

    try:
        write_atomically(store_dir() / f"{k}.json", json.dumps(result.to_dict()))
    except OSError:
        pass
