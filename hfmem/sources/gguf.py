"""GGUF models as a source: a local .gguf file, a folder of them, a Hub repo of quant variants, the HF cache.

A GGUF repo (bartowski/..., unsloth/...-GGUF) holds one file per quantization ("variant"), big ones cut into
parts ``name-00001-of-00003.gguf`` by llama.cpp's gguf-split, often one folder per variant, and optionally a
multimodal projector (``mmproj-*.gguf``). Only headers are read: on the Hub by range requests in growing
windows (``metadata.gguf.WindowReader``), the stream closed once the window is in, so a server that ignores
``Range`` costs one window, never the weights. Sizes come from the model info.

Parsed headers are kept as JSON under ``cache_home()/gguf/v1`` (keyed by endpoint, repo, commit sha and path;
local files by path, size and mtime), so a second run on the same commit makes only the model-info request.
Offline (``--offline``/``HF_HUB_OFFLINE``) or when the Hub is unavailable: the Hugging Face cache (files
downloaded by ``hf download``), then hfmem's own parsed-header cache, else ``OfflineMissError``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import (
    GGUFHeaderError,
    HubUnavailableError,
    ModelNotFoundError,
    OfflineMissError,
    UsageError,
)
from ..metadata.gguf import GGUFHeader, WindowReader, parse_header, read_local_header

CACHE_VERSION = "v1"
MAX_WORKERS = 8

# "-00001-of-00003.gguf", llama.cpp's split naming (llama.cpp ``llama_split_path``: "%s-%05d-of-%05d.gguf")
_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
# Quantization labels as published file names carry them: Q4_K_M, IQ4_XS, Q8_0, F16, BF16, UD-Q4_K_XL,
# MXFP4_MOE, TQ1_0, Q4_0_4_4 ... preceded by a separator and ending the name (or followed by one).
_LABEL = re.compile(r"(?:^|[-_.])((?:UD-)?(?:I?Q\d(?:_[A-Z0-9]+)*|BF16|F16|F32|MXFP4(?:_MOE)?|TQ\d_\d))(?=$|[-.])",
                    re.IGNORECASE)


@dataclass
class GGUFVariant:
    label: str  # quant label: from the file name, else general.file_type, else the file stem
    files: tuple[str, ...]  # repo-relative paths of the parts, in split order
    headers: tuple[GGUFHeader, ...]
    role: str  # "model" or "mmproj"
    size_bytes: int  # sum of the parts' file sizes

    @property
    def metadata(self) -> dict:
        return self.headers[0].metadata if self.headers else {}

    @property
    def tensors(self) -> tuple:
        return tuple(t for h in self.headers for t in h.tensors)

    @property
    def tensor_bytes(self) -> int:
        return sum(h.tensor_bytes for h in self.headers)


@dataclass
class GGUFRepo:
    ref: str  # what the user typed
    source: str  # "hub", "local", "hf-cache"
    revision: str | None  # commit sha for hub / hf-cache
    variants: tuple[GGUFVariant, ...]  # role "model", by size descending
    projectors: tuple[GGUFVariant, ...]  # role "mmproj"
    notes: tuple[str, ...] = ()
    requests: int = 0  # HTTP requests made
    repo_id: str | None = None  # the Hub repo id (hub and hf-cache)


# ---------------------------------------------------------------- names → variants


def _is_mmproj_name(path: str) -> bool:
    return "mmproj" in path.rsplit("/", 1)[-1].lower()


def label_from_name(path: str) -> str | None:
    """The quant label a file name (or else its folder) carries, upper-cased; None if none."""
    parts = path.split("/")
    for piece in (parts[-1], *reversed(parts[:-1])):
        stem = piece
        m = _SPLIT.match(stem)
        if m:
            stem = m.group("stem")
        stem = re.sub(r"\.gguf$", "", stem, flags=re.IGNORECASE)
        found = _LABEL.findall(stem)
        if found:
            return found[-1].upper()
    return None


def label_from_file_type(file_type) -> str | None:
    """llama.cpp's LLAMA_FTYPE name for ``general.file_type`` (gguf-py ``LlamaFileType``): MOSTLY_Q4_K_M →
    Q4_K_M, ALL_F32 → F32."""
    import gguf

    if not isinstance(file_type, int) or isinstance(file_type, bool):
        return None
    try:
        name = gguf.LlamaFileType(file_type).name
    except ValueError:
        return None
    if name == "GUESSED":
        return None
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def _stem(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    m = _SPLIT.match(name)
    return m.group("stem") if m else re.sub(r"\.gguf$", "", name, flags=re.IGNORECASE)


def group_files(names: list[str], *, strict: bool = True) -> list[tuple[str, list[str], str]]:
    """(label, ordered parts, role) per variant. Split parts are grouped by folder and stem; a missing part
    is a GGUFHeaderError naming it (``strict=False``: the incomplete group is left out)."""
    singles: list[str] = []
    splits: dict[tuple[str, str, int], dict[int, str]] = {}
    for name in sorted(n for n in names if n.lower().endswith(".gguf")):
        folder, _, base = name.rpartition("/")
        m = _SPLIT.match(base)
        if m and int(m.group("count")) >= 1:
            key = (folder, m.group("stem"), int(m.group("count")))
            splits.setdefault(key, {})[int(m.group("no"))] = name
        else:
            singles.append(name)
    groups: list[tuple[str, list[str], str]] = []
    for name in singles:
        role = "mmproj" if _is_mmproj_name(name) else "model"
        groups.append((label_from_name(name) or _stem(name), [name], role))
    for (folder, stem, count), parts in sorted(splits.items()):
        missing = [n for n in range(1, count + 1) if n not in parts]
        if missing:
            if not strict:
                continue
            prefix = f"{folder}/" if folder else ""
            first = f"{prefix}{stem}-{missing[0]:05d}-of-{count:05d}.gguf"
            raise GGUFHeaderError(f"split GGUF {prefix}{stem} has {count} parts but {len(missing)} "
                                  f"{'is' if len(missing) == 1 else 'are'} missing, e.g. {first}",
                                  hint="download every part of the split model")
        extra = [n for n in parts if n > count or n < 1]
        ordered = [parts[n] for n in range(1, count + 1)]
        if extra:
            raise GGUFHeaderError(f"split GGUF {stem} has a part numbered {extra[0]} of {count}",
                                  hint="the part names do not agree; download the model again")
        role = "mmproj" if _is_mmproj_name(ordered[0]) else "model"
        groups.append((label_from_name(ordered[0]) or stem, ordered, role))
    return _unique_labels(groups)


def _unique_labels(groups):
    """Two variants with one label (the same quant in two folders) are told apart by their path."""
    seen: dict[tuple[str, str], int] = {}
    for label, _, role in groups:
        seen[(label.lower(), role)] = seen.get((label.lower(), role), 0) + 1
    out = []
    for label, parts, role in groups:
        if seen[(label.lower(), role)] > 1:
            first = parts[0]
            m = _SPLIT.match(first.rsplit("/", 1)[-1])
            label = first[: -len(m.group(0)) + len(m.group("stem"))] if m else re.sub(r"\.gguf$", "", first)
        out.append((label, parts, role))
    return out


def is_gguf_only(names: list[str]) -> bool:
    """Whether a repo/folder holds .gguf files and no transformers config.json (for the resolver)."""
    has_gguf = any(n.lower().endswith(".gguf") for n in names)
    has_config = "config.json" in names  # the repo root's: a transformers model that also ships GGUF
    return has_gguf and not has_config


def _header_role(header: GGUFHeader) -> bool:
    """A projector by its header: general.type "mmproj" (convert_hf_to_gguf.py MmprojModel) or clip.* keys."""
    return header.get("general.type") == "mmproj" or header.architecture == "clip" or any(
        k.startswith("clip.") for k in header.metadata)


def _variant(label: str, files: list[str], headers: list[GGUFHeader], role: str,
             sizes: list[int | None]) -> GGUFVariant:
    if role == "model" and headers and _header_role(headers[0]):
        role = "mmproj"
    if label == _stem(files[0]) and headers:  # no label in the name: general.file_type's
        label = label_from_file_type(headers[0].get("general.file_type")) or label
    _check_split(files, headers)
    size = sum(s if s is not None else (h.file_size or 0) for s, h in zip(sizes, headers))
    return GGUFVariant(label, tuple(files), tuple(headers), role, size)


def _check_split(files: list[str], headers: list[GGUFHeader]) -> None:
    if len(files) < 2:
        return
    for i, (name, h) in enumerate(zip(files, headers)):
        if h.split is not None and h.split != (i, len(files)):
            raise GGUFHeaderError(f"{name} says it is split part {h.split[0] + 1} of {h.split[1]}, but its name "
                                  f"makes it part {i + 1} of {len(files)}",
                                  hint="the parts do not belong together; download the model again")


def _order(variants: list[GGUFVariant]) -> tuple[tuple[GGUFVariant, ...], tuple[GGUFVariant, ...]]:
    models = sorted((v for v in variants if v.role == "model"), key=lambda v: (-v.size_bytes, v.label))
    projs = sorted((v for v in variants if v.role == "mmproj"), key=lambda v: (-v.size_bytes, v.label))
    return tuple(models), tuple(projs)


def _select(groups, select: str | None, ref: str):
    if select is None:
        return groups
    chosen = [g for g in groups if g[0].lower() == select.lower() or g[2] == "mmproj"]
    if not any(g[2] == "model" for g in chosen):
        labels = ", ".join(g[0] for g in groups if g[2] == "model") or "none"
        raise UsageError(f"{ref} has no GGUF variant {select!r}", hint=f"its variants: {labels}")
    return chosen


# ---------------------------------------------------------------- hfmem's parsed-header cache


def _cache_dir() -> Path:
    from .resultcache import cache_home

    return cache_home() / "gguf" / CACHE_VERSION


def _cache_path(*key: object) -> Path:
    digest = hashlib.sha256("|".join(str(k) for k in key).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return _cache_dir() / f"{digest}.json"


def _cache_get(*key: object) -> dict | None:
    try:
        data = json.loads(_cache_path(*key).read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key") == [str(k) for k in key] else None


def _cache_put(value: dict, *key: object) -> None:
    path = _cache_path(*key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{id(value)}-{path.name}")
        tmp.write_text(json.dumps({"key": [str(k) for k in key], **value}))
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written is not an error: the headers were read


def _cached_header(*key: object) -> GGUFHeader | None:
    data = _cache_get(*key)
    if data is None:
        return None
    try:
        return GGUFHeader.from_dict(data["header"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _local_header(path: Path) -> GGUFHeader:
    st = path.stat()
    key = ("local", path.resolve(), st.st_size, st.st_mtime_ns)
    header = _cached_header(*key)
    if header is None:
        header = read_local_header(path)
        _cache_put({"header": header.to_dict()}, *key)
    return header


# ---------------------------------------------------------------- local files and folders


def _load_local(ref: str, path: Path, select: str | None) -> GGUFRepo:
    if path.is_dir():
        root = path
        names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                       if p.suffix.lower() == ".gguf" and p.is_file())
    elif path.is_file():
        root = path.parent
        m = _SPLIT.match(path.name)
        if m:  # a split part: the whole split
            names = sorted(p.name for p in root.iterdir() if p.is_file() and (sm := _SPLIT.match(p.name))
                           and sm.group("stem") == m.group("stem") and sm.group("count") == m.group("count"))
        else:
            names = [path.name]
    else:
        raise UsageError(f"{ref} is neither a .gguf file nor a folder", hint="check the path")
    groups = group_files(names)
    if not any(g[2] == "model" for g in groups) and not (path.is_file() and groups):
        raise ModelNotFoundError(f"{ref} has no .gguf model file",
                                 hint="give a .gguf file, a folder holding some, or a Hub repo id")
    groups = _select(groups, select, ref) if any(g[2] == "model" for g in groups) else groups
    variants = []
    for label, files, role in groups:
        headers = [_local_header(root / f) for f in files]
        variants.append(_variant(label, files, headers, role, [h.file_size for h in headers]))
    models, projs = _order(variants)
    return GGUFRepo(ref, "local", None, models, projs)


# ---------------------------------------------------------------- the Hub


def _hub_header(repo_id: str, path: str, sha: str, token, size: int | None, counter: list, verbose: bool
                ) -> GGUFHeader:
    """A header by range requests in windows; the stream stops at the window's end even if Range is
    ignored (``hub._get(want=)``), so the weights are never downloaded."""
    from huggingface_hub import hf_hub_url

    from . import endpoint_cache_id, hub

    key = ("hub", endpoint_cache_id(), repo_id, sha, path)
    cached = _cached_header(*key)
    if cached is not None:
        return cached
    url = hf_hub_url(repo_id, path, revision=sha, endpoint=hub.endpoint())
    # One HFMEM_HUB_DEADLINE per file: a repo of 20 variants reads 20 headers of several MB each.
    deadline = hub.Deadline(verbose=verbose)

    def fetch(start: int, n: int) -> bytes:
        if size is not None:
            n = min(n, max(0, size - start))
            if n == 0:
                return b""
        end = start + n - 1
        counter.append(1)
        answer = hub._get(url, repo_id=repo_id, what=path, token=token, deadline=deadline,
                          extra_headers={"Range": f"bytes={start}-{end}"}, limit=end + 1, want=end + 1)
        if answer.status_code == 416:
            return b""
        hub._raise_for_status(answer, repo_id, sha, path)
        body = answer.body
        if answer.status_code == 200:  # Range ignored: the file from byte 0, read only as far as asked
            body = body[start:end + 1]
        if size is not None and len(body) < n:
            raise HubUnavailableError(f"the Hub sent {len(body):,} bytes of {repo_id}/{path} at {start:,} where "
                                      f"{n:,} were asked and the file has {size:,}",
                                      hint="try again later, or pass --offline to use the cache")
        return body

    with hub.quiet(verbose):
        header = parse_header(WindowReader(fetch).read, path.rsplit("/", 1)[-1], size)
    _cache_put({"header": header.to_dict()}, *key)
    return header


def _read_all(jobs, read):
    """``read(*job)`` for every job, up to MAX_WORKERS at once; the first error (in job order) is raised."""
    if len(jobs) <= 1:
        return [read(*j) for j in jobs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(jobs)), thread_name_prefix="hfmem-gguf") as pool:
        futures = [pool.submit(read, *j) for j in jobs]
        try:
            return [f.result() for f in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _load_hub(ref: str, repo_id: str, opts, select: str | None) -> GGUFRepo:
    from . import endpoint_cache_id, env_flag, hub
    from .ids import check_repo_id

    revision = getattr(opts, "revision", None)
    token = getattr(opts, "token", None)
    verbose = getattr(opts, "verbose", False)
    check_repo_id(repo_id)
    if getattr(opts, "offline", False) or env_flag("HF_HUB_OFFLINE"):
        return _load_offline(ref, repo_id, revision, select, "offline mode")
    listing_key = ("listing", endpoint_cache_id(), repo_id, revision or "main")
    try:
        deadline = hub.Deadline(verbose=verbose)
        with hub.quiet(verbose):
            info = hub.model_info(repo_id, revision, token, deadline)
    except HubUnavailableError as exc:
        return _load_offline(ref, repo_id, revision, select, f"the Hub is unavailable ({exc.message})")
    sizes = {n: s for n, s in info.sizes.items() if n.lower().endswith(".gguf")}
    _cache_put({"sha": info.sha, "sizes": sizes}, *listing_key)
    groups = group_files(list(sizes))
    if not any(g[2] == "model" for g in groups):
        raise ModelNotFoundError(f"{repo_id} has no .gguf model file",
                                 hint="pick a GGUF repo (e.g. one named ...-GGUF), or use the repo id without "
                                      "GGUF for a transformers model")
    groups = _select(groups, select, repo_id)
    counter: list = []
    jobs = [(repo_id, f, info.sha, token, sizes.get(f), counter, verbose) for _, files, _ in groups for f in files]
    try:
        headers = dict(zip((j[1] for j in jobs), _read_all(jobs, _hub_header)))
    except HubUnavailableError as exc:
        return _load_offline(ref, repo_id, revision, select, f"the Hub is unavailable ({exc.message})")
    variants = [_variant(label, files, [headers[f] for f in files], role, [sizes.get(f) for f in files])
                for label, files, role in groups]
    models, projs = _order(variants)
    return GGUFRepo(ref, "hub", info.sha, models, projs, requests=1 + len(counter), repo_id=repo_id)


def _hf_cache_files(repo_id: str, revision: str | None) -> tuple[str, dict[str, str]] | None:
    """(sha, {repo path: local file}) of the .gguf files of ``repo_id`` in the Hugging Face cache. The
    snapshot folder is found from ``refs/<revision>`` (the cache layout huggingface_hub documents in "Understand
    caching"); each file is then confirmed with huggingface_hub's ``try_to_load_from_cache``."""
    from . import hf_hub_cache_dir

    repo_dir = Path(hf_hub_cache_dir()) / ("models--" + repo_id.replace("/", "--"))
    if not repo_dir.is_dir():
        return None
    rev = revision or "main"
    sha = rev
    ref_file = repo_dir / "refs" / rev
    if ref_file.is_file():
        try:
            sha = ref_file.read_text().strip()
        except OSError:
            return None
    snap = repo_dir / "snapshots" / sha
    if not re.fullmatch(r"[0-9a-f]{40}", sha) or not snap.is_dir():
        return None
    from huggingface_hub import try_to_load_from_cache

    found = {}
    for p in snap.rglob("*"):
        if p.name.lower().endswith(".gguf") and p.exists():
            rel = p.relative_to(snap).as_posix()
            local = try_to_load_from_cache(repo_id, rel, revision=sha)
            if isinstance(local, str):
                found[rel] = local
    return (sha, found) if found else None


def _load_offline(ref: str, repo_id: str, revision: str | None, select: str | None, reason: str) -> GGUFRepo:
    from . import endpoint_cache_id, hf_hub_cache_dir

    notes = []
    in_cache = _hf_cache_files(repo_id, revision)
    if in_cache is not None:
        sha, files = in_cache
        groups = group_files(list(files), strict=False)
        if any(g[2] == "model" for g in groups):
            groups = _select(groups, select, repo_id)
            variants = []
            for label, parts, role in groups:
                headers = [_local_header(Path(files[p])) for p in parts]
                variants.append(_variant(label, parts, headers, role, [h.file_size for h in headers]))
            models, projs = _order(variants)
            notes.append(f"{reason}: read from the Hugging Face cache ({hf_hub_cache_dir()}); only the variants "
                         "downloaded there are listed")
            return GGUFRepo(ref, "hf-cache", sha, models, projs, tuple(notes), repo_id=repo_id)
    listing = _cache_get("listing", endpoint_cache_id(), repo_id, revision or "main")
    if listing is not None and isinstance(listing.get("sha"), str) and isinstance(listing.get("sizes"), dict):
        sha, sizes = listing["sha"], listing["sizes"]
        try:
            groups = _select(group_files(list(sizes)), select, repo_id)
        except (UsageError, GGUFHeaderError):
            groups = []
        variants = []
        for label, parts, role in groups:
            headers = [_cached_header("hub", endpoint_cache_id(), repo_id, sha, p) for p in parts]
            if all(h is not None for h in headers):
                variants.append(_variant(label, parts, headers, role, [sizes.get(p) for p in parts]))
        if any(v.role == "model" for v in variants):
            models, projs = _order(variants)
            notes.append(f"{reason}: answered from hfmem's cache of GGUF headers ({_cache_dir()}); variants "
                         "never read before are not listed")
            return GGUFRepo(ref, "hub", sha, models, projs, tuple(notes), repo_id=repo_id)
    raise OfflineMissError(
        f"{repo_id} is not available offline ({reason}): no .gguf file of it in the Hugging Face cache "
        f"({hf_hub_cache_dir()}) nor its headers in hfmem's cache ({_cache_dir()})",
        hint=f"connect to the Hub once, or download a variant (`hf download {repo_id} --include '*Q4_K_M*'`)")


# ---------------------------------------------------------------- the entry point


def split_ref(ref: str) -> tuple[str, str | None]:
    """``hf.co/org/repo:Q4_K_M`` → (``org/repo``, ``Q4_K_M``), the way llama.cpp's ``-hf repo:quant`` and
    Ollama's ``hf.co/repo:quant`` write it."""
    for prefix in ("https://huggingface.co/", "huggingface.co/", "hf.co/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
            break
    repo, sep, quant = ref.rpartition(":")
    if sep and "/" not in quant and repo:
        return repo, quant or None
    return ref, None


def load_gguf(ref: str, opts=None, *, select: str | None = None) -> GGUFRepo:
    """The GGUF variants of ``ref``: a .gguf file, a folder of them, or a Hub repo id (``repo:QUANT`` selects
    one, as does ``select``). ``opts``: hfmem.api.Options (revision, token, offline, verbose)."""
    if not isinstance(ref, str) or not ref:
        raise UsageError("no model given", hint="give a .gguf file, a folder, or a Hub repo id")
    path = Path(ref).expanduser()
    try:
        local = path.exists() or ref.startswith((".", "/", "~")) or ref.lower().endswith(".gguf") and "/" not in ref
    except (OSError, ValueError):
        local = False
    if local:
        if not path.exists():
            raise UsageError(f"{ref} does not exist", hint="check the path, or give a Hub repo id")
        return _load_local(ref, path, select)
    repo_id, quant = split_ref(ref)
    return _load_hub(ref, repo_id, opts, select or quant)
