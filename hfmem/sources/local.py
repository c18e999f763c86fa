"""A model folder on disk: config.json and, if present, *.safetensors / model.safetensors.index.json."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import ConfigError
from ..metadata.config import parse_config
from ..metadata.safetensors import read_local_checkpoint
from . import FetchedMetadata


def looks_like_path(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or Path(ref).expanduser().is_dir()


def fingerprint(folder: Path) -> str:
    """Identifies the folder's content for the result cache: config.json's bytes and each safetensors
    file's name, size and modification time (headers are not re-read to decide)."""
    h = hashlib.sha256()
    cfg = folder / "config.json"
    h.update(cfg.read_bytes() if cfg.is_file() else b"")
    for p in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.safetensors.index.json")):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_local(folder: Path) -> FetchedMetadata:
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ConfigError(f"{folder} has no config.json", hint="point hfmem at a transformers model folder")
    config = parse_config(cfg_path.read_bytes(), str(cfg_path))
    headers = read_local_checkpoint(folder)
    return FetchedMetadata(
        config=config,
        headers=headers,
        source="local",
        revision=None,
        provenance={"path": str(folder), "fingerprint": fingerprint(folder)},
        code_location=str(folder),
    )
