"""Which source answers a model reference, in which order, under which result-cache key and max age.

The chain (``resolve``), for a folder: hfmem's result cache (keyed by the folder's fingerprint), else the
folder itself. For a Hub repo id:

1. the result cache's entry for the branch/tag/sha — a commit sha never changes, so its entry has no max
   age; a branch's entry is trusted for ``HFMEM_CACHE_TTL`` (``resultcache.ttl_s``) while online;
2. offline (``--offline``, ``HF_HUB_OFFLINE``), or the Hub found unreachable less than
   ``HFMEM_HUB_RECHECK_S`` ago (``hub.recently_unreachable``): the offline chain below;
3. the Hub: ``model_info`` gives the sha; the result cache's entry for that sha answers (and refreshes the
   branch entry's age), else the config and safetensors headers are fetched. A Hub that fails (network,
   5xx, ``HFMEM_HUB_DEADLINE``) falls back to the offline chain, with the reason in a note;
4. offline chain: the branch's result-cache entry at any age, else the Hugging Face cache (its own
   result-cache entry by sha, else built from it), else hfmem's shipped snapshot, else ``OfflineMissError``.

``resolve`` stops short of building an inventory: it returns either a finished report (a cache hit, the
snapshot) or the metadata to build one from, with the keys it is cached under. ``finish`` stores the built
report and adds the notes on how this run got it (those are never cached).
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HubUnavailableError, OfflineMissError, UnsupportedArchitectureError, UsageError
from ..inventory.model import Inventory
from ..report import ModelReport, Options
from . import FetchedMetadata, endpoint_cache_id, env_flag, hf_hub_cache_dir, resultcache, snapshot
from .ids import _bad_id, _is_path, check_repo_id, matches_repo_id_rule

_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class Resolution:
    """What the chain found for one model: a finished ``report``, or the ``meta`` to build one from."""

    model: str  # the name the report carries: the reference as given (a folder) or the repo id
    report: ModelReport | None = None  # answered as is: a result-cache hit or the shipped snapshot
    meta: FetchedMetadata | None = None  # else: what to build the inventory from
    source: str = ""  # "hub", "local", "hf-cache" (the built report's source)
    revision: str | None = None
    keys: tuple[str, ...] = ()  # result-cache keys the built report is stored under, in this order
    notes: list[str] = field(default_factory=list)  # how this run got it: added after storing, never cached


def _key(*parts: object) -> str:
    return "|".join(str(p) for p in parts)


def _variant(opts: Options) -> str:
    """The options that change an inventory, for the cache key."""
    if opts.headers_only:
        return "headers"
    if opts.trust_remote_code:
        return "remote-code"
    return "meta-model" if opts.meta_model else "default"  # same figures, another route and accelerate view


def hub_cache_key(repo_id: str, revision: str | None = None, options: Options | None = None) -> str:
    """The result-cache key of a Hub model at a branch, tag or sha (HF_ENDPOINT's credentials only hashed)."""
    return _key("hub", endpoint_cache_id(), repo_id, revision or "main", _variant(options or Options()))


def _cached(key: str, opts: Options, *, max_age_s: float | None) -> ModelReport | None:
    if not opts.use_cache:
        return None
    entry = resultcache.get(key)  # None for an ill-formed entry too: recomputed and replaced
    if entry is None or (max_age_s is not None and entry.age_s() > max_age_s):
        return None
    try:
        report = ModelReport.from_dict(entry.report)
    except (TypeError, ValueError, KeyError, AttributeError):  # resultcache checked the shape; belt and braces
        return None
    report.from_result_cache = True
    return report


def _store(keys: tuple[str, ...], report: ModelReport) -> None:
    """Cache what the analysis found under each of ``keys``; how this run got it (fallback notes, cache hit)
    is not stored. A cache that cannot be written (read-only, full) leaves the answer as it is, with a note
    that nothing was cached."""
    data = report.to_dict()
    data["from_result_cache"] = False
    data["notes"] = [n for n in data["notes"] if not n.startswith("hfmem's cache at ")]
    for key in keys:
        note = resultcache.put(key, data)
        if note and note not in report.notes:
            report.notes.append(note)


def _resolve_local(ref: str, folder: Path, opts: Options) -> Resolution:
    from .local import check_folder, fingerprint, load_local

    check_folder(ref, folder)  # never raises but UsageError: unreadable parents, FIFOs and loops say what they are

    key = _key("local", folder.resolve(), fingerprint(folder), _variant(opts))
    hit = _cached(key, opts, max_age_s=None)
    if hit:
        return Resolution(ref, report=hit)
    return Resolution(ref, meta=load_local(folder), source="local", revision=None, keys=(key,))


def _from_snapshot(repo_id: str, opts: Options, reason: str) -> ModelReport | None:
    entry = snapshot.lookup(repo_id)
    if entry is None:
        return None
    if opts.revision and opts.revision not in ("main", entry.provenance.get("sha")):
        return None  # the snapshot holds one revision; a different one is not there
    if entry.inventory is None:
        raise UnsupportedArchitectureError(
            f"{repo_id}: {reason}, and the shipped snapshot has only its config — {entry.error}",
            hint="connect to the Hub (safetensors headers) or pass --trust-remote-code with network access")
    notes = [f"{reason}: answered from hfmem's shipped snapshot {entry.built_at} "
             f"({entry.provenance.get('origin', 'snapshot')}); the Hub's current revision may differ"]
    if _variant(opts) != "default":
        notes.append("the snapshot's inventory was computed without --headers-only/--trust-remote-code")
    return ModelReport(repo_id, "snapshot", entry.provenance.get("sha") or f"snapshot-{entry.snapshot_id}",
                       entry.provenance, Inventory.from_dict(entry.inventory), notes, config=entry.config)


def _in_hf_cache(repo_id: str) -> bool:
    """Whether the Hugging Face cache has a folder for ``repo_id`` (``hub.load_hf_cache`` looks, through
    huggingface_hub, only then). ``check_repo_id`` imports huggingface_hub (≈30 ms with its HTTP client), so
    the offline chain calls it only where huggingface_hub is then given the id: an id that fails it but
    passes ``matches_repo_id_rule`` is still refused before any Hugging Face cache lookup, while a warm answer
    from hfmem's cache or the shipped snapshot never imports huggingface_hub."""
    import os

    return os.path.isdir(os.path.join(hf_hub_cache_dir(), "models--" + repo_id.replace("/", "--")))


def _resolve_offline(repo_id: str, opts: Options, reason: str, branch_key: str) -> Resolution:
    hit = _cached(branch_key, opts, max_age_s=None)
    if hit:
        hit.notes.append(f"{reason}: answered from hfmem's result cache")
        return Resolution(repo_id, report=hit)
    meta = None
    if _in_hf_cache(repo_id):  # else hub.py is not even imported (a warm snapshot answer's 6 ms)
        from .hub import load_hf_cache

        check_repo_id(repo_id)  # huggingface_hub reads the Hugging Face cache: its validator first
        meta = load_hf_cache(repo_id, opts.revision)
    if meta is not None:
        key = _key("hf-cache", repo_id, meta.revision, _variant(opts))
        note = f"{reason}: answered from the Hugging Face cache ({meta.provenance['path']})"
        report = _cached(key, opts, max_age_s=None)
        if report is not None:
            report.notes.append(note)
            return Resolution(repo_id, report=report)
        return Resolution(repo_id, meta=meta, source="hf-cache", revision=meta.revision, keys=(key,), notes=[note])
    report = _from_snapshot(repo_id, opts, reason)
    if report is not None:
        return Resolution(repo_id, report=report)
    raise OfflineMissError(
        f"{repo_id} is not available offline ({reason}): it is in neither hfmem's result cache "
        f"({resultcache.results_dir()}), the Hugging Face cache ({hf_hub_cache_dir()}), nor the shipped "
        f"snapshot ({snapshot.describe_location()})",
        hint="connect to the Hub once, or download its config.json (`hf download REPO config.json`)")


def _branch_hit(repo_id: str, opts: Options) -> tuple[str, ModelReport | None]:
    """The result-cache key of ``repo_id`` at the asked revision, and its entry if fresh enough."""
    rev = opts.revision or "main"
    branch_key = hub_cache_key(repo_id, rev, opts)
    # A commit sha never changes; a branch is trusted for the cache TTL while online.
    return branch_key, _cached(branch_key, opts, max_age_s=None if _SHA.match(rev) else resultcache.ttl_s())


def _resolve_hub(repo_id: str, opts: Options) -> Resolution:
    endpoint = endpoint_cache_id()
    branch_key, hit = _branch_hit(repo_id, opts)
    if hit:
        return Resolution(repo_id, report=hit)
    if opts.offline or env_flag("HF_HUB_OFFLINE"):
        return _resolve_offline(repo_id, opts, "offline mode", branch_key)
    check_repo_id(repo_id)  # huggingface_hub's own validator, before huggingface_hub is given the id
    from . import hub

    age = hub.recently_unreachable()
    if age is not None:
        return _resolve_offline(repo_id, opts, f"the Hub was unreachable {age:.0f} s ago (rechecked after "
                                f"HFMEM_HUB_RECHECK_S={hub.recheck_s():.0f} s)", branch_key)
    started = time.monotonic()
    deadline = hub.Deadline(verbose=opts.verbose)  # one HFMEM_HUB_DEADLINE for all of this model's requests
    try:
        if opts.progress:  # a slow or retried Hub request is a wait the user sees (the CLI's spinner)
            opts.progress(f"asking the Hub about {repo_id}")
        with hub.quiet(opts.verbose):
            info = hub.model_info(repo_id, opts.revision, opts.token, deadline)
        hub.mark_unreachable(reachable=True)
        sha_key = _key("hub", endpoint, repo_id, info.sha, _variant(opts))
        hit = _cached(sha_key, opts, max_age_s=None)
        if hit:
            _store((branch_key,), hit)  # refresh the branch entry's age: the sha did not move
            return Resolution(repo_id, report=hit)
        if opts.progress:
            opts.progress(f"reading {repo_id}'s config.json and safetensors headers from the Hub")
        with hub.quiet(opts.verbose):
            meta = hub.fetch_hub(repo_id, info, opts.token, opts.revision, deadline)
        fetch_notes = list(dict.fromkeys(deadline.notes))
    except HubUnavailableError as exc:
        if exc.network:
            hub.mark_unreachable()
        reason = (exc.message if getattr(exc, "deadline", False)
                  else f"the Hub is unavailable ({exc.message}, after {time.monotonic() - started:.1f} s)")
        return _resolve_offline(repo_id, opts, reason, branch_key)
    return Resolution(repo_id, meta=meta, source="hub", revision=meta.revision, keys=(sha_key, branch_key),
                      notes=list(fetch_notes))


def resolve(model: str, opts: Options) -> Resolution:
    """Walk the chain for ``model`` (a folder or a Hub repo id); see the module docstring for the order."""
    if not isinstance(model, str) or not model:
        raise UsageError("no model given", hint="use ORG/NAME (e.g. baichuan-inc/Baichuan-7B) or a model folder")
    if _is_path(model):
        return _resolve_local(model, Path(model).expanduser(), opts)
    if not matches_repo_id_rule(model):
        raise _bad_id(model)
    found = _PREFETCHED.pop(_prefetch_key(model, opts), None)
    if isinstance(found, Exception):
        raise found
    return found if found is not None else _resolve_hub(model, opts)


# ---------------------------------------------------------------- many models at once
# ``hfmem A B C`` and the *_many functions resolve every Hub model before building any inventory: the ones
# hfmem's result cache answers first, in order, then the others fetched from the Hub at once, at most
# MODELS_AT_ONCE in flight (each with its own HFMEM_HUB_DEADLINE and its own shard reads, up to 8). Only the
# fetching runs in threads; inventories are built one by one afterwards in the caller's thread (building a
# meta model patches torch globally, and the progress lines keep their order). What a thread found, or the
# error it met, waits in _PREFETCHED until ``resolve`` asks for that model with the same options.
MODELS_AT_ONCE = 8
_PREFETCHED: dict[tuple, "Resolution | Exception"] = {}


def _prefetch_key(model: str, opts: Options) -> tuple:
    return (model, _variant(opts), opts.revision, opts.token, opts.use_cache, opts.offline, opts.verbose)


@contextlib.contextmanager
def together(models: list[str], opts: Options, revisions: dict[str, str] | None = None):
    """Within this block, ``resolve`` answers ``models`` from one concurrent fetch (see above); ``revisions``:
    a revision per model (``hfmem search`` judges each at the commit the listing gave), else ``opts.revision``."""
    keys = prefetch(models, opts, revisions)
    try:
        yield
    finally:
        release(keys)


def prefetch(models: list[str], opts: Options, revisions: dict[str, str] | None = None) -> list[tuple]:
    """Fetch ``models`` at once (blocking) and hold what was found for ``resolve``; the keys go to ``release``.
    ``together`` in two halves, for a caller that fetches the next models while it works on these
    (``hfmem search``)."""
    return _prefetch(models, opts, revisions or {})


def release(keys: list[tuple]) -> None:
    """Drop what ``prefetch`` held and ``resolve`` did not take."""
    for key in keys:
        _PREFETCHED.pop(key, None)


def _prefetch(models: list[str], opts: Options, revisions: dict[str, str]) -> list[tuple]:
    if opts.offline or env_flag("HF_HUB_OFFLINE"):
        return []  # the offline chain reads local files only: nothing to overlap
    ids = [m for m in dict.fromkeys(models) if isinstance(m, str) and m and not _is_path(m)
           and matches_repo_id_rule(m)]
    if len(ids) < 2:
        return []
    def at(repo_id: str) -> Options:  # the options ``resolve`` will be called with for this model
        rev = revisions.get(repo_id)
        return Options(**{**opts.__dict__, "revision": rev}) if rev else opts

    keys, pending = [], []
    for repo_id in ids:
        key = _prefetch_key(repo_id, at(repo_id))
        if key in _PREFETCHED:
            continue  # another caller's block holds it
        _, hit = _branch_hit(repo_id, at(repo_id))
        if hit:
            _PREFETCHED[key] = Resolution(repo_id, report=hit)
            keys.append(key)
        else:
            pending.append((repo_id, key))
    if len(pending) < 2:
        return keys  # one fetch gains nothing from a thread; ``resolve`` does it

    def fetch(repo_id: str):
        try:
            return _resolve_hub(repo_id, at(repo_id))
        except Exception as exc:  # noqa: BLE001 - handed back to ``resolve``, which raises it in the caller
            return exc

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(MODELS_AT_ONCE, len(pending)), thread_name_prefix="hfmem-model") as pool:
        for (repo_id, key), found in zip(pending, pool.map(fetch, [r for r, _ in pending])):
            _PREFETCHED[key] = found
            keys.append(key)
    return keys


_CONFIG = object()


def finish(found: Resolution, inventory: Inventory, *, layout: dict | None = None, config=_CONFIG) -> ModelReport:
    """The report of an inventory built from ``found.meta``: stored under ``found.keys``, then given the
    notes on how this run got it. ``layout``: a composite repo's (``Layout.to_dict()``); ``config``: the one
    the report carries when it is not config.json (None for a diffusers pipeline)."""
    meta = found.meta
    report = ModelReport(found.model, found.source, found.revision, meta.provenance, inventory,
                         config=meta.config.raw if config is _CONFIG else config, layout=layout)
    if found.source == "hub" and report.provenance.get("gated"):
        report.notes.append("gated repository: read with your token")  # a fact of the repo: cached with it
    _store(found.keys, report)
    report.notes.extend(n for n in found.notes if n not in report.notes)
    return report
