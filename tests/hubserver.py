"""A small in-process fake of the Hugging Face Hub, for tests.

The goal is to exercise the *real* ``huggingface_hub`` client (2.4, 2.5) end to end -- its URL building, headers,
error mapping and caching -- without touching the network. Point the client at the fake with
``HF_ENDPOINT=hub.endpoint`` (read by huggingface_hub at import time, so set it for subprocesses) or by passing
``endpoint=hub.endpoint`` to ``HfApi`` / ``hf_hub_download``.

Usage::

    with FakeHub() as hub:
        sha = hub.add_repo("org/tiny", {"config.json": b"{}", "model.safetensors": Path("big.safetensors")})
        HfApi(endpoint=hub.endpoint, token=False).model_info("org/tiny")
        assert any(h.get("range") for _, p, h in hub.requests if "model.safetensors" in p)

Routes served (everything else answers 404 / 405):

* ``GET /api/models`` -- the model listing ``HfApi.list_models`` pages through (see "Model listing" below).
* ``GET /api/models/{repo}`` and ``GET /api/models/{repo}/revision/{rev}`` -- model info (``?blobs=true`` adds
  sibling sizes, ``?expand=...`` restricts the keys like the Hub does). Besides the files' facts it reports what
  ``add_repo`` was told: ``downloads``, ``likes``, ``trendingScore``, ``pipeline_tag``, ``createdAt``,
  ``lastModified``, ``cardData`` (``{"license": ...}``), the tags, and for a repo with a parsable ``.gguf`` file a
  ``gguf`` field (``total`` parameters, ``architecture``, ``context_length``, from the first such file by name).
* ``GET /api/models/{repo}/tree/{rev}[/{path}]`` -- ``list_repo_tree`` / ``list_repo_files`` (single page).
* ``GET /api/models/{repo}/safetensors-metadata/{index file}`` -- ``get_sharded_safetensors_metadata``.
* ``HEAD|GET /{repo}/resolve/{rev}/{filename}`` -- file metadata and content, with single ``Range`` support.

Model listing (``GET /api/models``), paged the Hub's way: each answer is a JSON list, and while more remain a
``Link: <{endpoint}/api/models?{same query}&cursor=...>; rel="next"`` header, which huggingface_hub's
``utils/_pagination.py`` follows until it is absent (``list_models(limit=N)`` stops early via ``islice``, so it
asks only for the pages it needs). Query parameters, as huggingface_hub 2.5's ``list_models`` sends them:

* ``search`` -- case-insensitive substring of the repo id; ``author`` -- the namespace (case-insensitive).
* ``filter`` (repeatable) -- every value must be one of the repo's tags (its library name and pipeline tag are
  tags too, as on the Hub); ``pipeline_tag``; ``gated=true|false`` (true: "auto" or "manual").
* ``num_parameters=min:6B,max:128B`` (either bound alone too; inclusive; decimal K/M/B/T, fractions allowed:
  ``1.5B``). Judged on the safetensors total, the only parameter count the Hub derives (hub-docs issue #29:
  counts exist "for all repos with safetensors files"), so a repo without one never matches a bound.
* ``sort`` = ``downloads`` | ``likes`` | ``trendingScore`` | ``createdAt`` | ``lastModified``, descending
  (``direction=1`` ascending; huggingface_hub 2.5 no longer sends ``direction``); ties, and the order without
  ``sort``, go by repo id ascending.
* ``limit`` -- page size, capped at ``hub.page_cap`` (1000 by default, the Hub's maximum page; tests lower it);
  without ``limit`` pages are ``page_cap`` long. ``cursor`` -- the opaque token of the next link.
* Item keys: by default ``_id id modelId likes downloads trendingScore private tags pipeline_tag library_name
  createdAt`` (absent facts absent); ``full=true`` adds ``author sha lastModified gated disabled siblings``;
  ``config=true`` adds ``config``; ``cardData=true`` adds ``cardData``; ``expand``/``expand[]`` replaces all of
  that with just the named model-info properties plus ``id``/``_id`` (e.g. ``safetensors``, ``gguf``, ``sha``).
* Private repos are listed only to a request bearing the repo's token. A malformed query (unknown ``sort``, bad
  ``num_parameters``, ``limit`` or ``cursor``) answers 400 without an X-Error-Code.

Error responses mirror what ``huggingface_hub.utils.hf_raise_for_status`` keys on. It dispatches on the
``X-Error-Code`` header first, so every error carries one; the status codes follow the real Hub:

* unknown (or private, without the right token) repo: 401 when no ``Authorization`` header was sent, 404 when one
  was, both with ``X-Error-Code: RepoNotFound`` -> ``RepositoryNotFoundError``. (The client's "bare 401 means
  repo not found" fallback only applies to ``https://`` URLs, so the header is essential for a ``http://`` fake.)
* unknown revision: 404 ``RevisionNotFound`` -> ``RevisionNotFoundError``.
* missing file: 404 ``EntryNotFound`` (plus ``X-Repo-Commit``, which the client uses to cache the miss) ->
  ``RemoteEntryNotFoundError`` (a subclass of ``EntryNotFoundError``).
* gated repo file without the right token: 401 (no token) / 403 (wrong token) ``GatedRepo`` -> ``GatedRepoError``.
  As on the Hub, the *metadata* of a gated repo (model info, tree) stays public; only file contents are gated.

Fault injection (``set_fault(kind, path_contains=..., times=...)``, one fault at a time, on every request whose raw
path contains ``path_contains``; ``times=N`` limits it to the first N such requests, e.g. a 5xx burst):

* ``"status"`` -- answer ``status`` (no X-Error-Code, like an outage); with ``retry_after`` a ``Retry-After`` header.
* ``"delay"`` -- sleep ``delay_s`` before answering normally.
* ``"trickle"`` -- send the body ``chunk`` bytes every ``interval_s`` (for at most ``max_s``, then close).
* ``"reset"`` -- close the connection with a TCP reset before answering.
* ``"truncate"`` -- announce the full Content-Length, send ``keep`` body bytes, close.
* ``"content_length"`` -- announce ``len(body) + delta`` (send the real body; a negative delta leaves the surplus in the
  stream, a positive one then closes).
* ``"redirect_loop"`` -- answer 302 to the same URL (with a growing ``?hop=`` so that no client short-cuts it).
* ``"ignore_range"`` -- serve the whole file (200) even when a Range was asked for.
* ``"body"`` -- answer 200 with ``body`` (bytes) instead of the real JSON, on the API routes.

Waits in faults are bounded (``max_s``) and the server only listens on 127.0.0.1; ``stop()`` ends everything.
``LazyFile(head, size)`` is a file of ``size`` bytes, ``head`` then zeros, generated on the fly (a big safetensors file
whose header is small). ``hub.fault_hits`` counts the requests a fault acted on. ``hub.timeline`` holds a ``Span`` per
request (method, path, Range, arrival and answer times) for tests of what is asked at once.

Differences from the real Hub worth knowing:

* Files are served directly (200/206) instead of via a 302 redirect to a CDN, and there is no Xet support, so the
  client always uses its plain-HTTP download path.
* ``config`` in model info is the whole parsed ``config.json``; the real Hub only returns a subset of keys
  (``architectures``, ``model_type``, ``quantization_config``, ...), so code that needs e.g. ``hidden_size``
  must download ``config.json`` to work against the real Hub.
* Siblings never carry ``lfs`` details; ``blobs=true`` adds ``size`` and ``blobId`` only.
* Listing: the cursor is an offset (base64 JSON), so repos added between two page requests can shift items
  across pages; the Hub's default order without ``sort`` is its own (not id order); ``filter`` knows only exact
  tags (no ``dataset:``/language aliases, no ``apps``/``inference``/``inference_provider``, which are ignored);
  ``expand`` together with ``full``/``config`` is not refused (expand wins; the client refuses it anyway).
  Whether the Hub's page without ``limit`` is exactly 1000 long was not verified against huggingface.co.
* ``trendingScore`` is in every model info answer; the ``gguf`` field lacks the Hub's ``chat_template``,
  ``bos_token`` and ``eos_token``, and split GGUF files are not summed.
* For files given as a ``Path``, the ETag is derived from (path, size, mtime) rather than the content's sha256, so
  that adding a multi-GB file costs nothing. It is deliberately 40 hex chars (not 64) so that the client never
  mistakes it for a sha256 it could verify against.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit

__all__ = ["FakeHub", "LazyFile", "Span"]

# Extensions the Hub stores through LFS in practice. For these, HEAD also answers the X-Linked-* headers the real Hub
# puts on its redirect responses, so that code reading those headers directly sees realistic values.
_LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx", ".npz")
_LFS_MIN_SIZE = 10 * 1024 * 1024

# Read size when streaming files from disk: big enough to be fast, small enough to keep memory flat.
_CHUNK = 1024 * 1024

# A safetensors header larger than this is treated as corrupt (the format itself caps it at 100 MB).
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


# --------------------------------------------------------------------------------------------------------------------
# Repository model
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Span:
    """One request as the fake saw it: when it arrived and when its answer was written (monotonic seconds), so
    that tests can tell which requests were in flight together."""

    method: str
    path: str
    range: str | None
    arrived: float
    done: float | None = None


@dataclass(frozen=True)
class LazyFile:
    """A file of ``size`` bytes: ``head`` followed by zeros, generated as it is served (nothing held in memory)."""

    head: bytes
    size: int


@dataclass
class _File:
    """One file of a repo: bytes in memory, a path read lazily (only the requested slice), or a LazyFile."""

    data: bytes | None
    path: Path | None
    size: int
    etag: str  # unquoted
    blob_id: str
    head: bytes | None = None  # LazyFile: these bytes, then zeros up to size

    @classmethod
    def from_source(cls, source: "bytes | bytearray | Path | str | LazyFile") -> "_File":
        if isinstance(source, LazyFile):
            if source.size < len(source.head):
                raise ValueError("LazyFile size is smaller than its head")
            stamp = hashlib.sha1(source.head + b"\0%d" % source.size).hexdigest()
            return cls(None, None, source.size, stamp, stamp, head=source.head)
        if isinstance(source, (bytes, bytearray)):
            data = bytes(source)
            git_blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            return cls(data, None, len(data), hashlib.sha256(data).hexdigest(), git_blob)
        path = Path(source).resolve()
        st = path.stat()  # fail early on a missing file rather than at request time
        stamp = hashlib.sha1(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
        return cls(None, path, st.st_size, stamp, stamp)

    def read(self, start: int, length: int) -> bytes:
        """Small reads only (headers); use iter_range to stream bodies."""
        return b"".join(self.iter_range(start, length))

    def iter_range(self, start: int, length: int) -> Iterator[bytes]:
        if self.data is not None:
            view = memoryview(self.data)[start : start + length]
            for off in range(0, len(view), _CHUNK):
                yield bytes(view[off : off + _CHUNK])
            return
        if self.head is not None:
            end = min(start + length, self.size)
            pos = start
            while pos < end:
                if pos < len(self.head):
                    piece = self.head[pos : min(end, len(self.head), pos + _CHUNK)]
                else:
                    piece = bytes(min(_CHUNK, end - pos))
                pos += len(piece)
                yield piece
            return
        assert self.path is not None
        with open(self.path, "rb") as fh:
            fh.seek(start)
            remaining = length
            while remaining > 0:
                chunk = fh.read(min(_CHUNK, remaining))
                if not chunk:  # file shrank under us; stop rather than loop forever
                    break
                remaining -= len(chunk)
                yield chunk


def _safetensors_header(f: _File) -> dict | None:
    """Parse a safetensors header (u64 little-endian length, then JSON), or None if it is not a valid one."""
    if f.size < 8:
        return None
    (n,) = struct.unpack("<Q", f.read(0, 8))
    if n == 0 or n > _MAX_SAFETENSORS_HEADER or 8 + n > f.size:
        return None
    try:
        header = json.loads(f.read(8, n))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return header if isinstance(header, dict) else None


def _safetensors_summary(files: dict[str, _File]) -> dict | None:
    """The Hub's ``safetensors`` model-info field: parameter counts per dtype, summed over all shards."""
    per_dtype: dict[str, int] = {}
    found = False
    for name, f in sorted(files.items()):
        if not name.endswith(".safetensors"):
            continue
        header = _safetensors_header(f)
        if header is None:
            continue  # a corrupt file simply does not contribute, so tests can serve broken weights
        found = True
        for tensor_name, info in header.items():
            if tensor_name == "__metadata__" or not isinstance(info, dict):
                continue
            count = 1
            for dim in info.get("shape", []):
                count *= int(dim)
            dtype = str(info.get("dtype"))
            per_dtype[dtype] = per_dtype.get(dtype, 0) + count
    if not found:
        return None
    return {"parameters": per_dtype, "total": sum(per_dtype.values())}


# GGUF scalar value types and their struct formats (the GGUF spec, ggml's docs/gguf.md: GGUFValueType);
# 8 is a string, 9 an array.
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_MAX_HEADER = 64 * 1024 * 1024  # read at most this much of a file looking for the end of its header


class _GGUFCursor:
    """Sequential little-endian reads from a _File, fetched in blocks (headers are small next to the weights)."""

    def __init__(self, f: _File):
        self.f, self.pos, self.buf, self.buf_start = f, 0, b"", 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > min(self.f.size, _GGUF_MAX_HEADER):
            raise ValueError("GGUF header runs past the end of the file (or the read cap)")
        if end > self.buf_start + len(self.buf):
            self.buf_start = self.pos
            self.buf = self.f.read(self.pos, max(n, _CHUNK))
        out = self.buf[self.pos - self.buf_start : end - self.buf_start]
        self.pos = end
        return out

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self.unpack("<Q")).decode("utf-8", "replace")

    def value(self, vtype: int):
        if vtype in _GGUF_SCALARS:
            return self.unpack(_GGUF_SCALARS[vtype])
        if vtype == 8:
            return self.string()
        if vtype == 9:
            etype, count = self.unpack("<I"), self.unpack("<Q")
            if count > min(self.f.size, _GGUF_MAX_HEADER) - self.pos:  # every element takes at least a byte
                raise ValueError("GGUF array longer than the file")
            return [self.value(etype) for _ in range(count)]
        raise ValueError(f"unknown GGUF value type {vtype}")


def _gguf_header_summary(f: _File) -> dict | None:
    """The Hub's ``gguf`` model-info field for one file: total parameters (the tensors' element counts summed),
    ``general.architecture`` and ``{arch}.context_length``; None if the file is not GGUF v2/v3."""
    try:
        r = _GGUFCursor(f)
        if r.take(4) != b"GGUF" or r.unpack("<I") not in (2, 3):
            return None
        n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
        kv: dict[str, object] = {}
        for _ in range(n_kv):
            key = r.string()
            kv[key] = r.value(r.unpack("<I"))
        total = 0
        for _ in range(n_tensors):
            r.string()
            count = 1
            for _ in range(r.unpack("<I")):
                count *= r.unpack("<Q")
            r.unpack("<I"), r.unpack("<Q")  # ggml type, data offset
            total += count
    except (ValueError, struct.error, MemoryError):
        return None
    out: dict = {"total": total}
    arch = kv.get("general.architecture")
    if isinstance(arch, str):
        out["architecture"] = arch
        if isinstance(kv.get(f"{arch}.context_length"), int):
            out["context_length"] = kv[f"{arch}.context_length"]
    return out


def _gguf_summary(files: dict[str, _File]) -> dict | None:
    """The first (by name) .gguf file that parses; multi-part and mmproj files are not special-cased."""
    for name in sorted(files):
        if name.endswith(".gguf"):
            summary = _gguf_header_summary(files[name])
            if summary is not None:
                return summary
    return None


@dataclass
class _Repo:
    repo_id: str
    sha: str
    files: dict[str, _File]
    gated: str | bool  # False, "auto" or "manual" -- the JSON value the Hub returns
    private: bool
    token: str | None
    library_name: str | None
    branches: tuple[str, ...]
    config: dict | None
    safetensors: dict | None
    last_modified: str
    tags: list[str] = field(default_factory=list)
    created_at: str = ""
    downloads: int = 0
    likes: int = 0
    trending_score: int = 0
    pipeline_tag: str | None = None
    card_data: dict | None = None
    gguf: dict | None = None

    def resolve_revision(self, revision: str) -> str | None:
        if revision in self.branches or revision == self.sha:
            return self.sha
        return None

    def info(self, *, blobs: bool) -> dict:
        siblings = []
        for name in sorted(self.files):
            entry: dict = {"rfilename": name}
            if blobs:
                entry["size"] = self.files[name].size
                entry["blobId"] = self.files[name].blob_id
            siblings.append(entry)
        info: dict = {
            "_id": self.sha[:24],
            "id": self.repo_id,
            "modelId": self.repo_id,
            "author": self.repo_id.split("/")[0] if "/" in self.repo_id else None,
            "sha": self.sha,
            "lastModified": self.last_modified,
            "createdAt": self.created_at or self.last_modified,
            "private": self.private,
            "gated": self.gated,
            "disabled": False,
            "downloads": self.downloads,
            "likes": self.likes,
            "trendingScore": self.trending_score,
            "tags": list(self.tags),
            "siblings": siblings,
            "spaces": [],
            "usedStorage": sum(f.size for f in self.files.values()),
        }
        # Like the Hub, absent facts are absent keys rather than nulls.
        if self.library_name is not None:
            info["library_name"] = self.library_name
        if self.pipeline_tag is not None:
            info["pipeline_tag"] = self.pipeline_tag
        if self.card_data is not None:
            info["cardData"] = self.card_data
        if self.config is not None:
            info["config"] = self.config
        if self.safetensors is not None:
            info["safetensors"] = self.safetensors
        if self.gguf is not None:
            info["gguf"] = self.gguf
        return info

    def list_item(self, *, full: bool, config: bool, card_data: bool) -> dict:
        """One entry of ``GET /api/models``: the keys the Hub lists by default, plus what ``full`` / ``config`` /
        ``cardData`` add (the same keys ``info`` reports, so both views of a repo agree)."""
        info = self.info(blobs=False)
        keys = ["_id", "id", "modelId", "likes", "downloads", "trendingScore", "private", "tags", "pipeline_tag",
                "library_name", "createdAt"]
        if full:
            # siblings without sizes, as in model info; safetensors/gguf/config stay behind expand, as on the Hub
            keys += ["author", "sha", "lastModified", "gated", "disabled", "siblings"]
        if config:
            keys.append("config")
        if card_data:
            keys.append("cardData")
        return {k: info[k] for k in keys if k in info}


# --------------------------------------------------------------------------------------------------------------------
# Model listing (GET /api/models)
# --------------------------------------------------------------------------------------------------------------------

# The Hub's sort keys for models (huggingface_hub's list_models maps its snake_case ModelSort_T onto these).
_SORT_KEYS = {
    "downloads": lambda r: r.downloads,
    "likes": lambda r: r.likes,
    "trendingScore": lambda r: r.trending_score,
    "lastModified": lambda r: r.last_modified,  # ISO-8601 strings of one format sort as the times do
    "createdAt": lambda r: r.created_at or r.last_modified,
}

# Decimal multipliers of the Hub's num_parameters syntax ("min:6B,max:128B", as in huggingface_hub's list_models
# docstring and the Hub's /models?num_parameters= page filter).
_PARAM_UNITS = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


def _truthy(query: dict[str, list[str]], key: str) -> bool:
    return query.get(key, ["false"])[-1].lower() in ("1", "true")


def _parse_param_count(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMBT]?)\s*", text, flags=re.IGNORECASE)
    if m is None:
        raise ValueError(f"invalid parameter count {text!r} (expected e.g. 500M, 6B, 1.5T)")
    # Decimal arithmetic on the digits, not floats: "1.1B" must be exactly 1_100_000_000.
    whole, _, frac = m.group(1).partition(".")
    scale = _PARAM_UNITS[m.group(2).upper()]
    return int(whole) * scale + (int(frac) * scale // 10 ** len(frac) if frac else 0)


def _parse_num_parameters(text: str) -> tuple[int | None, int | None]:
    """``"min:6B,max:128B"`` -> (6e9, 128e9) as ints; either bound may be missing. Both bounds are inclusive."""
    lo = hi = None
    for part in text.split(","):
        key, sep, value = part.partition(":")
        key = key.strip().lower()
        if not sep or key not in ("min", "max"):
            raise ValueError(f"invalid num_parameters {text!r} (expected e.g. min:6B,max:128B)")
        if key == "min":
            lo = _parse_param_count(value)
        else:
            hi = _parse_param_count(value)
    return lo, hi


def _select_models(repos: list["_Repo"], query: dict[str, list[str]]) -> list["_Repo"]:
    """The repos a listing query matches, in the order the Hub would list them (ValueError: a bad query)."""
    out = list(repos)
    search = query.get("search", [""])[-1]
    if search:
        out = [r for r in out if search.lower() in r.repo_id.lower()]
    author = query.get("author", [""])[-1]
    if author:
        out = [r for r in out if "/" in r.repo_id and r.repo_id.split("/")[0].lower() == author.lower()]
    for wanted in query.get("filter", []):
        out = [r for r in out if wanted in r.tags or wanted in (r.library_name, r.pipeline_tag)]
    pipeline = query.get("pipeline_tag", [""])[-1]
    if pipeline:
        out = [r for r in out if r.pipeline_tag == pipeline]
    gated = query.get("gated", [""])[-1].lower()
    if gated:
        if gated not in ("true", "false"):
            raise ValueError(f"gated must be true or false, got {gated!r}")
        out = [r for r in out if bool(r.gated) == (gated == "true")]
    num_parameters = query.get("num_parameters", [""])[-1]
    if num_parameters:
        lo, hi = _parse_num_parameters(num_parameters)
        # Judged on the safetensors total (the Hub's parameter count comes from safetensors headers only), so a repo
        # without one cannot satisfy any bound.
        out = [r for r in out if r.safetensors is not None
               and (lo is None or r.safetensors["total"] >= lo) and (hi is None or r.safetensors["total"] <= hi)]

    out.sort(key=lambda r: r.repo_id)  # the tie-break (and the order without sort=): ids ascending
    sort = query.get("sort", [""])[-1]
    if sort:
        if sort not in _SORT_KEYS:
            raise ValueError(f"unknown sort {sort!r} (one of {', '.join(_SORT_KEYS)})")
        direction = query.get("direction", ["-1"])[-1]
        if direction not in ("-1", "1"):
            raise ValueError(f"direction must be -1 or 1, got {direction!r}")
        # list.sort is stable, so equal keys keep the id order in both directions.
        out.sort(key=_SORT_KEYS[sort], reverse=direction == "-1")
    return out


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def _decode_cursor(token: str) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["offset"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"invalid cursor {token!r}") from None
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"invalid cursor {token!r}")
    return offset


# --------------------------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------------------------


_FAULT_KINDS = ("status", "delay", "trickle", "reset", "truncate", "content_length", "redirect_loop", "ignore_range",
                "body")


@dataclass
class _Fault:
    kind: str
    path_contains: str = ""
    delay_s: float = 0.0
    status: int = 500
    times: int | None = None  # act on the first N matching requests only (None: all)
    retry_after: str | None = None
    chunk: int = 1
    interval_s: float = 0.5
    max_s: float = 60.0  # a trickle never lasts longer than this (the server stops itself)
    keep: int = 0
    delta: int = 0
    body: bytes | None = None


class _HubError(Exception):
    """An error answer: status, X-Error-Code (may be None) and message, plus any extra headers."""

    def __init__(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _parse_range(value: str | None, size: int) -> tuple[int, int] | None | str:
    """Inclusive (start, end) for a single ``bytes=`` range, None to serve the whole file, "unsatisfiable" for 416.

    Like common servers we clip an end past EOF, and ignore (serve 200) anything we do not understand, including
    multi-range requests, which the HF client never sends.
    """
    if not value:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value)
    if m is None or (m.group(1) == "" and m.group(2) == ""):
        return None
    first, last = m.group(1), m.group(2)
    if first == "":  # suffix range: the last N bytes
        n = int(last)
        if n == 0:
            return "unsatisfiable"
        return (max(0, size - n), size - 1) if size else "unsatisfiable"
    start = int(first)
    end = int(last) if last else size - 1
    if end < start:
        return None  # syntactically invalid per RFC 9110 -> ignore the header
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


def _is_lfs(name: str, f: _File) -> bool:
    return name.endswith(_LFS_SUFFIXES) or f.size >= _LFS_MIN_SIZE


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a client opening ten connections at once (several models
    # fetched together) has the surplus SYNs dropped and retried after a second, a stall no real server has.
    request_queue_size = 128
    hub: "FakeHub"

    def handle_error(self, request, client_address) -> None:
        # Clients hanging up mid-response (timeouts in fault tests, Range reads that stop early) are expected;
        # anything else is a bug in the fake and the handler already recorded it in hub.errors.
        pass


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 so httpx keeps connections alive, as it would against the real Hub; this means every response must
    # carry an accurate Content-Length.
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as web servers set it: headers and body go out as separate writes, and with Nagle's
    # algorithm on, the body of every answer on a reused connection waits for the client's delayed ACK
    # (about 40 ms on Linux) -- a stall the real Hub does not have, which would dominate any timing.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format, *args) -> None:  # noqa: A002 - signature fixed by the base class
        pass  # tests assert on hub.requests instead of scraping stderr

    def setup(self) -> None:
        super().setup()
        self.server.hub._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.hub._track(self.connection, add=False)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _other(self) -> None:
        self._dispatch(self.command)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other

    # ---- dispatch ---------------------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        hub = self.server.hub
        headers = {k.lower(): v for k, v in self.headers.items()}
        span = hub._record(method, self.path, headers)
        try:
            self._answer(method, headers)
        finally:
            span.done = time.monotonic()

    def _answer(self, method: str, headers: dict[str, str]) -> None:
        hub = self.server.hub
        self._fault = fault = hub._fault_for(self.path)
        try:
            if fault is not None:
                if fault.kind == "delay":
                    hub._sleep(fault.delay_s)
                elif fault.kind == "status":
                    extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
                    raise _HubError(fault.status, None, f"Injected fault: HTTP {fault.status}", extra)
                elif fault.kind == "reset":
                    # SO_LINGER 0: close() sends a RST instead of a FIN
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                elif fault.kind == "redirect_loop":
                    url = urlsplit(self.path)
                    hop = int(parse_qs(url.query).get("hop", ["0"])[-1]) + 1
                    self.send_response(302)
                    self.send_header("Location", f"{url.path}?hop={hop}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                elif fault.kind == "body" and self.path.startswith("/api/"):
                    self._emit(200, {"Content-Type": "application/json; charset=utf-8"}, [fault.body or b""],
                               len(fault.body or b""))
                    return
            self._route(method, headers)
        except _HubError as err:
            self._send_error(err)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout):
            self.close_connection = True  # the client went away; nothing left to tell it
        except Exception as exc:  # noqa: BLE001 - a fake bug must show up in the test, not kill the thread silently
            hub.errors.append(exc)
            self.close_connection = True  # headers may already be out; don't reuse a possibly garbled stream
            try:
                self._send_error(_HubError(500, None, f"FakeHub internal error: {exc!r}"))
            except OSError:
                self.close_connection = True

    def _route(self, method: str, headers: dict[str, str]) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        # Split before unquoting: the client percent-encodes revisions such as "refs%2Fpr%2F1" precisely so that
        # their slashes do not look like path separators.
        segments = [unquote(s) for s in url.path.split("/")[1:]]
        if segments[-1:] == [""]:
            segments.pop()

        if segments == ["api", "models"]:
            if method != "GET":
                raise _HubError(405, None, "Method not allowed")
            self._list_models(url.query, headers)
            return
        if segments[:2] == ["api", "models"] and len(segments) > 2:
            if method != "GET":
                raise _HubError(405, None, "Method not allowed")
            self._api_models(segments[2:], query, headers)
            return
        if "resolve" in segments[1:]:
            i = segments.index("resolve", 1)
            if len(segments) >= i + 3:
                if method not in ("GET", "HEAD"):
                    raise _HubError(405, None, "Method not allowed")
                repo_id = "/".join(segments[:i])
                self._resolve(method, repo_id, segments[i + 1], "/".join(segments[i + 2 :]), headers)
                return
        raise _HubError(404, None, "Sorry, we can't find the page you are looking for.")

    # ---- API routes --------------------------------------------------------------------------------------------

    def _api_models(self, rest: list[str], query: dict[str, list[str]], headers: dict[str, str]) -> None:
        hub = self.server.hub
        # repo ids are "name" or "namespace/name"; prefer whichever is registered, else guess from the shape.
        if "/".join(rest[:2]) in hub._repos and len(rest) >= 2:
            repo_id, tail = "/".join(rest[:2]), rest[2:]
        elif rest[0] in hub._repos:
            repo_id, tail = rest[0], rest[1:]
        elif len(rest) >= 2 and rest[1] not in ("revision", "tree", "safetensors-metadata"):
            repo_id, tail = "/".join(rest[:2]), rest[2:]
        else:
            repo_id, tail = rest[0], rest[1:]
        repo = hub._repo_for(repo_id, headers)

        if not tail or (tail[0] == "revision" and len(tail) == 2):
            if tail:
                self._revision(repo, tail[1])
            blobs = query.get("blobs", ["false"])[-1].lower() in ("1", "true")
            info = repo.info(blobs=blobs)
            expand = query.get("expand", []) + query.get("expand[]", [])
            if expand:
                # With expand, the Hub returns only the requested properties (plus the ids).
                info = {k: v for k, v in info.items() if k in ("_id", "id") or k in expand}
            self._send_json(200, info, {"X-Repo-Commit": repo.sha})
        elif tail[0] == "tree" and len(tail) >= 2:
            sha = self._revision(repo, tail[1])
            recursive = query.get("recursive", ["false"])[-1].lower() in ("1", "true")
            self._send_json(200, self._tree(repo, "/".join(tail[2:]), recursive), {"X-Repo-Commit": sha})
        elif tail[0] == "safetensors-metadata" and len(tail) >= 2:
            hub._check_gated(repo, headers)
            self._send_json(200, self._sharded_metadata(repo, "/".join(tail[1:])), {"X-Repo-Commit": repo.sha})
        else:
            raise _HubError(404, None, "Sorry, we can't find the page you are looking for.")

    def _list_models(self, raw_query: str, headers: dict[str, str]) -> None:
        """``GET /api/models``: filter, sort, then serve one page and a ``Link: <next>; rel="next"`` header."""
        hub = self.server.hub
        pairs = parse_qsl(raw_query, keep_blank_values=True)
        query: dict[str, list[str]] = {}
        for k, v in pairs:
            query.setdefault(k, []).append(v)
        with hub._lock:
            repos = list(hub._repos.values())
        visible = [r for r in repos if not r.private or hub._authorized(r, headers)]
        try:
            chosen = _select_models(visible, query)
            offset = _decode_cursor(query.get("cursor", [""])[-1])
            limit = query.get("limit", [""])[-1]
            page_size = hub.page_cap
            if limit:
                if not re.fullmatch(r"\d+", limit) or int(limit) < 1:
                    raise ValueError(f"limit must be a positive integer, got {limit!r}")
                page_size = min(int(limit), hub.page_cap)
        except ValueError as exc:
            raise _HubError(400, None, str(exc)) from None
        page = chosen[offset : offset + page_size]

        expand = query.get("expand", []) + query.get("expand[]", [])
        if expand:
            # As on the Hub, expand replaces the default keys: the listed properties plus the ids.
            items = [{k: v for k, v in r.info(blobs=False).items() if k in ("_id", "id") or k in expand}
                     for r in page]
        else:
            items = [r.list_item(full=_truthy(query, "full"), config=_truthy(query, "config"),
                                 card_data=_truthy(query, "cardData")) for r in page]

        extra: dict[str, str] = {}
        if offset + page_size < len(chosen):
            rest = [(k, v) for k, v in pairs if k != "cursor"]
            rest.append(("cursor", _encode_cursor(offset + page_size)))
            extra["Link"] = f'<{hub.endpoint}/api/models?{urlencode(rest)}>; rel="next"'
        self._send_json(200, items, extra)

    def _revision(self, repo: _Repo, revision: str) -> str:
        sha = repo.resolve_revision(revision)
        if sha is None:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha

    def _tree(self, repo: _Repo, base: str, recursive: bool) -> list[dict]:
        prefix = base.rstrip("/") + "/" if base else ""
        if base and not any(name.startswith(prefix) for name in repo.files):
            raise _HubError(404, "EntryNotFound", f"{base} does not exist on \"{repo.branches[0]}\"",
                            {"X-Repo-Commit": repo.sha})
        entries: dict[str, dict] = {}
        for name in sorted(repo.files):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix) :].split("/")
            # Every intermediate folder shows up as a "directory" entry; without recursion we stop at the first level.
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                tree_id = hashlib.sha1(f"{repo.sha}:{folder}".encode()).hexdigest()
                entries.setdefault(folder, {"type": "directory", "oid": tree_id, "path": folder})
                if not recursive:
                    break
            if recursive or len(parts) == 1:
                f = repo.files[name]
                entries[name] = {"type": "file", "oid": f.blob_id, "size": f.size, "path": name}
        return list(entries.values())

    def _sharded_metadata(self, repo: _Repo, index_name: str) -> dict:
        index_file = repo.files.get(index_name)
        if index_file is None:
            raise _HubError(404, "EntryNotFound", f"{index_name} does not exist", {"X-Repo-Commit": repo.sha})
        index = json.loads(index_file.read(0, index_file.size))
        headers = {}
        for shard in sorted(set(index.get("weight_map", {}).values())):
            f = repo.files.get(shard)
            header = _safetensors_header(f) if f is not None else None
            if header is None:
                raise _HubError(404, "EntryNotFound", f"Shard {shard} is missing or not a safetensors file")
            headers[shard] = header
        return {"index": index, "headers": headers}

    # ---- file routes -------------------------------------------------------------------------------------------

    def _resolve(self, method: str, repo_id: str, revision: str, filename: str, headers: dict[str, str]) -> None:
        hub = self.server.hub
        repo = hub._repo_for(repo_id, headers)
        sha = self._revision(repo, revision)
        hub._check_gated(repo, headers)
        f = repo.files.get(filename)
        if f is None:
            raise _HubError(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": sha})

        base = {
            "X-Repo-Commit": sha,
            "ETag": f'"{f.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if _is_lfs(filename, f):
            base["X-Linked-Etag"] = f'"{f.etag}"'
            base["X-Linked-Size"] = str(f.size)

        rng = _parse_range(headers.get("range"), f.size) if method == "GET" else None
        if self._fault is not None and self._fault.kind == "ignore_range":
            rng = None
        if rng == "unsatisfiable":
            # A bare 416, as S3/CloudFront send it; the client reports the Content-Range in its error message.
            raise _HubError(416, None, "Requested Range Not Satisfiable", {**base, "Content-Range": f"bytes */{f.size}"})
        if rng is None:
            status, start, length = 200, 0, f.size
        else:
            start, end = rng  # type: ignore[misc]
            status, length = 206, end - start + 1
            base["Content-Range"] = f"bytes {start}-{end}/{f.size}"

        self._emit(status, base, None if method == "HEAD" else f.iter_range(start, length), length,
                   key=f"{repo_id}/{filename}")

    # ---- responses ---------------------------------------------------------------------------------------------

    def _send_json(self, status: int, payload: object, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        headers = {**(extra or {}), "Content-Type": "application/json; charset=utf-8"}
        self._emit(status, headers, None if self.command == "HEAD" else [body], len(body))

    def _emit(self, status: int, headers: dict[str, str], chunks, length: int, key: str | None = None) -> None:
        """Status line, headers and body (``chunks``, None for HEAD), with the body-level faults applied."""
        hub = self.server.hub
        fault = self._fault if status < 300 or self._fault is None or self._fault.kind != "status" else None
        kind = fault.kind if fault is not None else None
        declared = length + (fault.delta if kind == "content_length" else 0)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(max(0, declared)))
        self.end_headers()
        if chunks is None:
            return
        sent = 0
        started = time.monotonic()
        for chunk in chunks:
            if kind == "truncate":
                chunk = chunk[: max(0, fault.keep - sent)]
            if kind == "trickle":
                for i in range(0, len(chunk), max(1, fault.chunk)):
                    if time.monotonic() - started > fault.max_s or hub._stopping.is_set():
                        self.close_connection = True
                        return
                    piece = chunk[i : i + max(1, fault.chunk)]
                    if key:
                        hub._count_bytes(key, len(piece))
                    self.wfile.write(piece)
                    self.wfile.flush()
                    sent += len(piece)
                    hub._sleep(fault.interval_s)
                continue
            if chunk:
                # Count before writing: once the client holds the bytes it may assert on the counter, possibly before
                # this thread gets scheduled again (wfile is unbuffered, so nothing lingers after write()).
                if key:
                    hub._count_bytes(key, len(chunk))
                self.wfile.write(chunk)
                sent += len(chunk)
            if kind == "truncate" and sent >= fault.keep:
                break
        if kind in ("truncate", "content_length"):
            self.close_connection = True  # the framing is wrong: this connection is spent

    def _send_error(self, err: _HubError) -> None:
        extra = dict(err.headers)
        extra.pop("Content-Type", None)
        if err.code is not None:
            extra["X-Error-Code"] = err.code
        # Header values must be latin-1 and single-line; the JSON body carries the message verbatim anyway.
        extra["X-Error-Message"] = err.message.encode("latin-1", "replace").decode("latin-1").replace("\n", " ")
        self._send_json(err.status, {"error": err.message}, extra)


# --------------------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------------------


def in_flight_at_most(spans: list) -> int:
    """The most requests in flight at once among ``spans`` (``FakeHub.timeline``): a request that arrived before
    another's answer was written overlaps it."""
    events = sorted([(s.arrived, 1) for s in spans] + [(s.done, -1) for s in spans])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


class FakeHub:
    """A local Hugging Face Hub lookalike. See the module docstring for the protocol it speaks.

    Attributes:
        endpoint: ``http://127.0.0.1:PORT`` once started.
        requests: every request received, as ``(method, raw path incl. query, headers)`` with header names
            lower-cased (e.g. ``headers.get("range")``), in arrival order.
        bytes_served: body bytes handed to the socket per ``"{repo_id}/{filename}"``, to assert that a weight
            file was only sampled (header read) and never downloaded.
        errors: exceptions raised inside the fake itself (answered as 500); a healthy test leaves it empty.
        page_cap: the longest page ``GET /api/models`` serves (default 1000, the Hub's cap); set it to e.g. 7 to
            exercise paging with a few dozen repos. Each page is one entry in ``requests``.
    """

    def __init__(self) -> None:
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.Lock()
        self._fault: _Fault | None = None
        self._stopping = threading.Event()
        self.fault_hits = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.endpoint: str = ""
        self.requests: list[tuple[str, str, dict]] = []
        self.timeline: list[Span] = []  # the same requests with when each arrived and was answered
        self.bytes_served: dict[str, int] = {}
        self.errors: list[BaseException] = []
        # The largest page GET /api/models serves (the Hub's is 1000); tests lower it to exercise paging.
        self.page_cap: int = 1000

    # ---- configuration -----------------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes | Path],
        *,
        revision_sha: str | None = None,
        gated: bool | str = False,
        private: bool = False,
        token: str | None = None,
        library_name: str | None = "transformers",
        branches: tuple[str, ...] = ("main",),
        downloads: int = 0,
        likes: int = 0,
        pipeline_tag: str | None = None,
        license: str | None = None,  # noqa: A002 - the Hub's own name for it
        tags: tuple[str, ...] = (),
        created_at: str | None = None,
        last_modified: str | None = None,
        trending_score: int = 0,
    ) -> str:
        """Register (or replace) a model repo and return its commit sha.

        ``token`` is the one bearer token that may read a private repo or a gated repo's files. ``gated`` may be
        True (reported as "auto") or the Hub's literal "auto"/"manual". Without ``revision_sha`` the sha is derived
        from the repo id and file contents, so it is stable across runs.

        The listing facts (``downloads``, ``likes``, ``trending_score``, ``pipeline_tag``, ``license``, extra
        ``tags``, ``created_at`` / ``last_modified`` as ISO-8601 strings, default: now) show up in model info and in
        ``GET /api/models``, where they filter and sort. Tags are built the Hub's way: library name, pipeline tag,
        "safetensors" / "gguf" when such weights are present, the config's model_type, the extra tags,
        "license:<id>", "region:us". A license is also reported as ``cardData: {"license": ...}``.
        """
        if not branches:
            raise ValueError("a repo needs at least one branch")
        table = {name.lstrip("/"): _File.from_source(src) for name, src in files.items()}
        if revision_sha is None:
            digest = hashlib.sha1(repo_id.encode())
            for name in sorted(table):
                digest.update(f"\0{name}\0{table[name].etag}".encode())
            revision_sha = digest.hexdigest()
        if not re.fullmatch(r"[0-9a-f]{40}", revision_sha):
            raise ValueError(f"revision_sha must be 40 lowercase hex chars, got {revision_sha!r}")

        config = None
        if "config.json" in table:
            try:
                parsed = json.loads(table["config.json"].read(0, table["config.json"].size))
                config = parsed if isinstance(parsed, dict) else None
            except (UnicodeDecodeError, json.JSONDecodeError):
                config = None  # serve a broken config.json as-is, but the API (like the Hub) has no parsed view
        safetensors = _safetensors_summary(table)

        gguf = _gguf_summary(table)
        has_gguf = any(name.endswith(".gguf") for name in table)

        all_tags = [t for t in (library_name, pipeline_tag, "safetensors" if safetensors else None,
                                "gguf" if has_gguf else None) if t]
        if config and isinstance(config.get("model_type"), str):
            all_tags.append(config["model_type"])
        all_tags += list(tags)
        if license:
            all_tags.append(f"license:{license}")
        all_tags.append("region:us")
        all_tags = list(dict.fromkeys(all_tags))  # the Hub lists each tag once

        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        repo = _Repo(
            repo_id=repo_id,
            sha=revision_sha,
            files=table,
            gated=("auto" if gated is True else gated) if gated else False,
            private=private,
            token=token,
            library_name=library_name,
            branches=tuple(branches),
            config=config,
            safetensors=safetensors,
            last_modified=last_modified or now,
            tags=all_tags,
            created_at=created_at or last_modified or now,
            downloads=int(downloads),
            likes=int(likes),
            trending_score=int(trending_score),
            pipeline_tag=pipeline_tag,
            card_data={"license": license} if license else None,
            gguf=gguf,
        )
        with self._lock:
            self._repos[repo_id] = repo
        return revision_sha

    def set_fault(self, kind: str | None, *, path_contains: str = "", delay_s: float = 0.0, status: int = 500,
                  times: int | None = None, retry_after: str | int | None = None, chunk: int = 1,
                  interval_s: float = 0.5, max_s: float = 60.0, keep: int = 0, delta: int = 0,
                  body: bytes | None = None) -> None:
        """Make requests whose raw path contains ``path_contains`` misbehave (see the module docstring for the
        kinds): ``"status"`` answers ``status`` (no X-Error-Code, like a Hub outage), ``"delay"`` sleeps ``delay_s``
        before answering normally, and so on. ``times`` limits the fault to the first N matching requests.
        ``None`` clears the fault."""
        if kind is not None and kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        if kind == "content_length" and delta == 0:
            raise ValueError("content_length needs a non-zero delta")
        fault = None if kind is None else _Fault(
            kind, path_contains, float(delay_s), int(status), times, None if retry_after is None else str(retry_after),
            int(chunk), float(interval_s), float(max_s), int(keep), int(delta), body)
        with self._lock:
            self._fault = fault
            self.fault_hits = 0

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.timeline.clear()
            self.bytes_served.clear()

    # ---- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> "FakeHub":
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.hub = self
        self._server = server
        self.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        # A short poll interval keeps stop() snappy.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeHub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # ends fault sleeps and trickles
        server.shutdown()
        # Kick out idle keep-alive connections (httpx pools them) so their handler threads end now.
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- internals used by the handler -------------------------------------------------------------------------

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)

    def _record(self, method: str, path: str, headers: dict) -> "Span":
        span = Span(method, path, headers.get("range"), time.monotonic())
        with self._lock:
            self.requests.append((method, path, headers))
            self.timeline.append(span)
        return span

    def _count_bytes(self, key: str, n: int) -> None:
        with self._lock:
            self.bytes_served[key] = self.bytes_served.get(key, 0) + n

    def _fault_for(self, path: str) -> _Fault | None:
        with self._lock:
            fault = self._fault
            if fault is None or fault.path_contains not in path:
                return None
            if fault.times is not None and self.fault_hits >= fault.times:
                return None
            self.fault_hits += 1
            return fault

    def _sleep(self, seconds: float) -> None:
        """A fault's wait, cut short by stop()."""
        self._stopping.wait(min(seconds, 3600.0))

    def _repo_for(self, repo_id: str, headers: dict[str, str]) -> _Repo:
        """Look a repo up the way the Hub does: private repos are indistinguishable from missing ones."""
        with self._lock:
            repo = self._repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized(repo, headers)):
            # The Hub answers 401 to anonymous callers and 404 to authenticated ones; both carry RepoNotFound.
            status = 404 if headers.get("authorization") else 401
            raise _HubError(status, "RepoNotFound", "Repository not found")
        return repo

    def _check_gated(self, repo: _Repo, headers: dict[str, str]) -> None:
        if not repo.gated or self._authorized(repo, headers):
            return
        if not headers.get("authorization"):
            raise _HubError(
                401,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted. You must have access to it and be authenticated "
                "to access it. Please log in.",
            )
        raise _HubError(
            403,
            "GatedRepo",
            f"Access to model {repo.repo_id} is restricted and you are not in the authorized list. "
            f"Visit {self.endpoint}/{repo.repo_id} to ask for access.",
        )

    @staticmethod
    def _authorized(repo: _Repo, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        return repo.token is not None and scheme.lower() == "bearer" and value.strip() == repo.token
