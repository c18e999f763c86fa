"""hfmem's own cache of finished analyses, so that a model seen before is answered without torch.

Location: ``$HFMEM_HOME`` if set, else ``$HF_HOME/hfmem``, else ``$XDG_CACHE_HOME/huggingface/hfmem``, else
``~/.cache/huggingface/hfmem`` — beside the Hugging Face cache, the way huggingface_hub places its own
(``HF_HOME`` defaults to ``$XDG_CACHE_HOME/huggingface``).

One JSON file per key under ``results/v1/``, written to a temporary file in the same folder and renamed
into place (``os.replace`` is atomic on POSIX and Windows), so a crash or a concurrent run never leaves a
half-written entry. Entries for a commit sha or a local folder's fingerprint never go stale; entries for a
branch name (``main``) are trusted for ``HFMEM_CACHE_TTL`` seconds (default one day) while online, and
for ever offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = 2  # 2: inventories carry the tensor census (Inventory.tensors)
DEFAULT_TTL_S = 24 * 3600


def cache_home() -> Path:
    if os.environ.get("HFMEM_HOME"):
        return Path(os.environ["HFMEM_HOME"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hfmem"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "huggingface" / "hfmem"


def results_dir() -> Path:
    return cache_home() / "results" / f"v{SCHEMA}"


def ttl_s() -> float:
    try:
        return float(os.environ.get("HFMEM_CACHE_TTL", DEFAULT_TTL_S))
    except ValueError:
        return DEFAULT_TTL_S


@dataclass
class CacheEntry:
    key: str
    created: float
    report: dict
    path: Path

    def age_s(self) -> float:
        return time.time() - self.created


def _path(key: str) -> Path:
    return results_dir() / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")


def get(key: str) -> CacheEntry | None:
    path = _path(key)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # missing or unreadable: recompute (and overwrite on store)
    if data.get("schema") != SCHEMA or data.get("key") != key:
        return None
    return CacheEntry(key, data["created"], data["report"], path)


def put(key: str, report: dict) -> None:
    """Atomically write one entry. Failure to write (read-only home) is not an error for the user."""
    import tempfile

    folder = results_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"schema": SCHEMA, "key": key, "created": time.time(), "report": report}, fh)
            os.replace(tmp, _path(key))
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass


def entries() -> list[CacheEntry]:
    out = []
    for path in sorted(results_dir().glob("*.json")):
        try:
            data = json.loads(path.read_text())
            out.append(CacheEntry(data["key"], data["created"], data["report"], path))
        except (OSError, json.JSONDecodeError, KeyError):
            continue
    return out


def clear(match: str | None = None) -> int:
    """Delete entries (those whose key contains ``match``, or all); returns how many were removed."""
    removed = 0
    folder = results_dir()
    for path in folder.glob("*.json"):
        if match is not None:
            try:
                if match not in json.loads(path.read_text()).get("key", ""):
                    continue
            except (OSError, json.JSONDecodeError):
                pass
        path.unlink(missing_ok=True)
        removed += 1
    for tmp in folder.glob(".tmp-*"):  # leftovers of a killed writer
        tmp.unlink(missing_ok=True)
    return removed
