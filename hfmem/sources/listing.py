"""Which models there are: the Hub's model listing, or offline the shipped snapshot and the Hugging Face cache.

``hfmem search`` starts here. Online, the listing is huggingface_hub's ``HfApi.list_models`` (``GET /api/models``,
paged by the ``Link: rel="next"`` header), filtered on the Hub's side the way its model pages filter: task
(``pipeline_tag``), library and license (tags), author, a name fragment (``search``), gated or not and a parameter
range (``num_parameters``, judged by the Hub on the safetensors total), sorted by downloads, likes, trending score
or date. Each item is asked for exactly the properties a search reads (``expand``), among them the commit sha, so
that hfmem's per-commit result cache answers a model seen before without a request.

A listing is cached in hfmem's cache (``listings/``) for ``HFMEM_CACHE_TTL`` (one day by default) per endpoint and
query: a second search of the same kind asks the Hub nothing. A cached listing that scanned at least as many models
as asked (or the whole listing) answers a smaller ``limit`` too.

Offline (``--offline``, ``HF_HUB_OFFLINE=1`` or a Hub that cannot be reached) the candidates are the models of the
shipped snapshot and the transformers repos in the Hugging Face cache. They carry no downloads, likes, licenses or
gated flags, so filters on those are refused there rather than silently not applied; the task filter reads the
config's model class through transformers' own task tables (``hfmem.metadata.transformers_facts``).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..errors import HubUnavailableError, UsageError
from . import env_flag, hf_hub_cache_dir, redacted_endpoint

LISTING_SCHEMA = 1
# The properties a search reads of each listed model (huggingface_hub's ExpandModelProperty_T names).
EXPAND = ("sha", "downloads", "likes", "pipeline_tag", "library_name", "gated", "tags", "safetensors",
          "lastModified", "private")
# hfmem's listing orders -> the Hub's ``sort`` values (what huggingface_hub's list_models sends for its ModelSort_T).
HUB_SORTS = {"downloads": "downloads", "likes": "likes", "trending": "trendingScore", "created": "createdAt",
             "modified": "lastModified"}
HUB_PAGE_MAX = 1000  # the Hub serves at most 1000 models per page

# transformers' task names (``MODEL_FOR_<TASK>_MAPPING_NAMES``, as transformers_facts.json holds them) -> the Hub's
# pipeline tags: the pipelines that load each auto class (transformers/pipelines/__init__.py, SUPPORTED_TASKS).
# "model" (the bare AutoModel) serves feature extraction.
TASK_PIPELINE_TAGS: dict[str, str] = {
    "causal_lm": "text-generation", "masked_lm": "fill-mask", "seq_to_seq_causal_lm": "text2text-generation",
    "speech_seq_2_seq": "automatic-speech-recognition", "ctc": "automatic-speech-recognition",
    "image_classification": "image-classification", "image_text_to_text": "image-text-to-text",
    "sequence_classification": "text-classification", "token_classification": "token-classification",
    "question_answering": "question-answering", "audio_classification": "audio-classification",
    "object_detection": "object-detection", "zero_shot_image_classification": "zero-shot-image-classification",
    "image_segmentation": "image-segmentation", "depth_estimation": "depth-estimation", "model": "feature-extraction",
}


@dataclass(frozen=True)
class ListingQuery:
    """What to list: the Hub's own filters. ``min_params`` / ``max_params`` are parameter counts (elements)."""

    search: str | None = None      # a fragment of the repo id
    task: str | None = None        # a Hub pipeline tag: text-generation, fill-mask, ...
    library: str | None = None     # transformers, gguf, diffusers, sentence-transformers, timm, ...
    author: str | None = None
    license: str | None = None     # apache-2.0, mit, llama3.1, ...
    gated: bool | None = None
    min_params: int | None = None
    max_params: int | None = None
    tags: tuple[str, ...] = ()
    order: str | None = None       # a key of HUB_SORTS: the order the Hub hands models out, so the scan meets those
    #                                first; None: by the search's ranking when it is downloads or likes, else downloads

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class ListedModel:
    repo_id: str
    sha: str | None
    downloads: int | None          # None offline (the snapshot and the HF cache do not know)
    likes: int | None
    pipeline_tag: str | None
    library: str | None
    license: str | None
    gated: bool | None
    tags: tuple[str, ...] = ()
    params: int | None = None      # the Hub's safetensors total, or offline the inventory's count
    gguf: bool = False             # the repo holds GGUF files (the Hub's "gguf" tag / library)
    source: str = "hub"            # "hub", "snapshot" or "hf-cache"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tags"] = list(self.tags)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ListedModel":
        return cls(**{**d, "tags": tuple(d.get("tags") or ())})


@dataclass
class Listing:
    models: list[ListedModel]
    source: str                    # "hub" or "offline"
    complete: bool                 # the whole listing was read (not cut at the scan limit)
    cached: bool                   # answered from hfmem's listing cache
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- parameter sizes: 7B, 500M, 1.5e9


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMBT]?)\s*$", re.IGNORECASE)
_SCALE = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


def parse_param_count(text: str, flag: str = "--min-params") -> int:
    """``7B`` -> 7_000_000_000: a parameter count as the Hub writes them (decimal K/M/B/T, as in "Llama-3.1-8B")."""
    m = _SIZE.match(str(text))
    if m is None:
        raise UsageError(f"{flag} {text!r} is not a parameter count", hint="e.g. 500M, 7B or 1.5B (decimal K/M/B/T)")
    return int(round(float(m.group(1)) * _SCALE[m.group(2).upper()]))


def _hub_count(n: int) -> str:
    """A count in the Hub's ``num_parameters`` syntax (``min:6B``): the largest unit that writes it exactly."""
    for unit in ("T", "B", "M", "K"):
        if n and n % _SCALE[unit] == 0:
            return f"{n // _SCALE[unit]}{unit}"
    return str(n)


# ---------------------------------------------------------------- the cache of listings


def token_fingerprint(token) -> str:
    """Whose listing it is: private repos are listed to their owners only, so a listing made with one token (or
    none) must not answer another. The token itself is not stored: a hash of it."""
    if token is None:
        from huggingface_hub import get_token  # HF_TOKEN, or the stored login, as huggingface_hub picks it

        token = get_token()
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else "anonymous"


def _listing_path(query: ListingQuery, endpoint_id: str, token=None) -> Path:
    from .resultcache import cache_home

    digest = hashlib.sha256(f"{endpoint_id}\0{token_fingerprint(token)}\0{query.key()}".encode()).hexdigest()[:32]
    return cache_home() / "listings" / f"v{LISTING_SCHEMA}" / f"{digest}.json"


def _cached_listing(path: Path, limit: int) -> Listing | None:
    from .resultcache import ttl_s

    try:
        doc = json.loads(path.read_text())
        if doc.get("schema") != LISTING_SCHEMA or time.time() - float(doc["created"]) > ttl_s():
            return None
        if not doc["complete"] and int(doc["scanned"]) < limit:
            return None  # a shorter scan than asked: list again
        models = [ListedModel.from_dict(d) for d in doc["models"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, stale or damaged: the next listing replaces it
    age = time.time() - float(doc["created"])
    return Listing(models[:limit], "hub", doc["complete"] and len(models) <= limit, True,
                   [f"the listing was read from hfmem's cache ({age / 60:.0f} min old; --refresh lists again)"])


def _store_listing(path: Path, listing: Listing, limit: int) -> str | None:
    from .resultcache import not_writable_note, write_atomically

    doc = {"schema": LISTING_SCHEMA, "created": time.time(), "complete": listing.complete, "scanned": limit,
           "models": [m.to_dict() for m in listing.models]}
    try:
        write_atomically(path, json.dumps(doc))
    except OSError as exc:
        return not_writable_note(exc)
    return None


# ---------------------------------------------------------------- the cache of search rows
# A row is pinned to a commit (the listing's sha), the job's settings, the GPU and hfmem's version (the key is
# ``api._search_row_keys``), so it never goes stale: a second search reads it instead of fetching and estimating.

ROWS_SCHEMA = 1


def _row_path(key: str) -> Path:
    from .resultcache import cache_home

    return cache_home() / "search-rows" / f"v{ROWS_SCHEMA}" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")


def cached_row(key: str):
    """(kind, SearchRow | Skipped) stored under ``key``, or None."""
    from ..plan.hub_search import SearchRow, Skipped

    try:
        doc = json.loads(_row_path(key).read_text())
        if doc.get("schema") != ROWS_SCHEMA or doc.get("key") != key:
            return None
        kind, value = doc["kind"], doc["value"]
        return kind, (SearchRow.from_dict(value) if kind == "row" else Skipped(**value))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store_row(key: str, kind: str, value: dict) -> None:
    from .resultcache import write_atomically

    try:
        write_atomically(_row_path(key), json.dumps({"schema": ROWS_SCHEMA, "key": key, "kind": kind, "value": value}))
    except OSError:
        pass  # a cache that cannot be written costs the next search time, not this answer


# ---------------------------------------------------------------- online


def _license_of(tags) -> str | None:
    return next((t.split(":", 1)[1] for t in tags if t.startswith("license:")), None)


def _int_or_none(v) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _listed(item: dict) -> ListedModel | None:
    """One item of the Hub's listing JSON -> ListedModel (None for an item without an id)."""
    repo_id = item.get("id") or item.get("modelId")
    if not isinstance(repo_id, str):
        return None
    tags = tuple(t for t in (item.get("tags") or ()) if isinstance(t, str))
    st = item.get("safetensors")
    total = _int_or_none(st.get("total")) if isinstance(st, dict) else None
    gated = item.get("gated")
    library = item.get("library_name")
    return ListedModel(
        repo_id=repo_id, sha=item.get("sha") if isinstance(item.get("sha"), str) else None,
        downloads=_int_or_none(item.get("downloads")), likes=_int_or_none(item.get("likes")),
        pipeline_tag=item.get("pipeline_tag") if isinstance(item.get("pipeline_tag"), str) else None,
        library=library if isinstance(library, str) else None, license=_license_of(tags),
        gated=None if gated is None else bool(gated), tags=tags, params=total or None,
        gguf="gguf" in tags or library == "gguf", source="hub")


def _params(query: ListingQuery, limit: int) -> list[tuple[str, str]]:
    """The listing's query string, as huggingface_hub's ``HfApi.list_models`` writes it (``filter`` and ``expand``
    repeated; the Hub sorts the listing descending by the key)."""
    params: list[tuple[str, str]] = []
    filters = [*query.tags, *([query.library] if query.library else []),
               *([f"license:{query.license}"] if query.license else [])]
    params += [("filter", f) for f in filters]
    for key, value in (("author", query.author), ("search", query.search), ("pipeline_tag", query.task)):
        if value:
            params.append((key, value))
    if query.gated is not None:
        params.append(("gated", "true" if query.gated else "false"))
    bounds = [f"min:{_hub_count(query.min_params)}"] if query.min_params is not None else []
    bounds += [f"max:{_hub_count(query.max_params)}"] if query.max_params is not None else []
    if bounds:
        params.append(("num_parameters", ",".join(bounds)))
    params += [("sort", HUB_SORTS[query.order]), ("limit", str(limit))]
    params += [("expand", e) for e in EXPAND]
    return params


def _list_hub(query: ListingQuery, limit: int, token, progress=None) -> Listing:
    """Page through ``GET /api/models`` with hfmem's own request policy (``hub._get``: one HFMEM_HUB_DEADLINE
    per page, 5xx/429 and cut connections retried twice, refused connections and timeouts not retried),
    following the ``Link: rel="next"`` header. One more model than ``limit`` is asked for, to know whether the
    listing goes on."""
    from . import hub

    url: str | None = f"{hub.endpoint()}/api/models"
    params: list | None = _params(query, min(limit + 1, HUB_PAGE_MAX))
    models: list[ListedModel] = []
    while url is not None:
        deadline = hub.Deadline()
        answer = hub._get(url, repo_id="the model listing", what="model listing", token=token, deadline=deadline,
                          params=params, limit=hub.MAX_INFO_BYTES)
        hub._raise_for_status(answer, "the model listing", None, "model listing")
        page = hub._json(answer, "the model listing", "model listing")
        if not isinstance(page, list):
            raise HubUnavailableError(f"the Hub's model listing is not a list ({type(page).__name__})",
                                      hint="check HF_ENDPOINT and any proxy, or pass --offline")
        for item in page:
            listed = _listed(item) if isinstance(item, dict) else None
            if listed is None:
                continue
            if len(models) == limit:
                return Listing(models, "hub", False, False)  # one more exists: the scan is cut here
            models.append(listed)
        if progress is not None:
            progress(len(models))
        nxt = answer.response.links.get("next", {}).get("url")  # the next URL carries the whole query
        url, params = (nxt, None) if nxt and page else (None, None)
    return Listing(models, "hub", True, False)


# ---------------------------------------------------------------- offline


def _offline_task(config: dict) -> str | None:
    """The Hub pipeline tag of a config's model class, from transformers' task tables; None when unknown."""
    from ..metadata.transformers_facts import class_task

    arch = (config.get("architectures") or [None])[0]
    task = class_task(arch) if isinstance(arch, str) else None
    return TASK_PIPELINE_TAGS.get(task) if task else None


def _offline_candidates() -> list[tuple[str, dict, int | None, str, str | None]]:
    """(repo id, config, parameter count, source, sha) of every model the snapshot or the HF cache holds."""
    from . import snapshot

    out: dict[str, tuple] = {}
    index = snapshot.load_index() or {}
    folder = snapshot.snapshot_dir()
    for repo_id, rel in index.get("models", {}).items():
        try:
            entry = json.loads((folder / rel / "entry.json").read_text())
            config = json.loads((folder / rel / "config.json").read_text())
        except (OSError, ValueError):
            continue
        params = (entry.get("inventory") or {}).get("num_params")
        # the revision a snapshot answer reports (sources.resolve._from_snapshot), which pins its search rows
        sha = (entry.get("provenance") or {}).get("sha") or f"snapshot-{index.get('snapshot_id')}"
        out[repo_id.lower()] = (repo_id, config, params, "snapshot", sha)
    cache = Path(hf_hub_cache_dir())
    if cache.is_dir():
        for repo_dir in sorted(cache.glob("models--*")):
            repo_id = repo_dir.name[len("models--"):].replace("--", "/")
            ref = repo_dir / "refs" / "main"
            try:
                sha = ref.read_text().strip()
                config = json.loads((repo_dir / "snapshots" / sha / "config.json").read_text())
            except (OSError, ValueError):
                continue  # no main ref or no config.json: nothing a search can read
            if isinstance(config, dict):
                out.setdefault(repo_id.lower(), (repo_id, config, None, "hf-cache", sha))
    return sorted(out.values(), key=lambda c: c[0].lower())


def _list_offline(query: ListingQuery, limit: int, reason: str) -> Listing:
    refused = [flag for flag, value in (("--license", query.license), ("--gated/--no-gated", query.gated),
                                        ("--tag", query.tags)) if value not in (None, ())]
    if refused:
        raise UsageError(f"{reason}: {', '.join(refused)} cannot be judged offline: the shipped snapshot and the "
                         "Hugging Face cache hold no model cards or Hub tags",
                         hint="search online, or leave those filters out")
    if query.library not in (None, "transformers"):
        raise UsageError(f"{reason}: --library {query.library} cannot be judged offline: the shipped snapshot holds "
                         "transformers models only", hint="search online, or leave --library out")
    models = []
    for repo_id, config, params, source, sha in _offline_candidates():
        if query.search and query.search.lower() not in repo_id.lower():
            continue
        if query.author and repo_id.split("/")[0].lower() != query.author.lower():
            continue
        task = _offline_task(config)
        if query.task and task != query.task:
            continue
        if (query.min_params is not None or query.max_params is not None) and params is None:
            continue  # as the Hub does: a model without a parameter count is outside any range
        if query.min_params is not None and params < query.min_params:
            continue
        if query.max_params is not None and params > query.max_params:
            continue
        models.append(ListedModel(repo_id=repo_id, sha=sha, downloads=None, likes=None, pipeline_tag=task,
                                  library="transformers", license=None, gated=None, params=params, source=source))
    notes = [f"{reason}: searched the {len(models)} matching models of hfmem's shipped snapshot and the Hugging "
             "Face cache, not the Hub"]
    return Listing(models[:limit], "offline", len(models) <= limit, False, notes)


# ---------------------------------------------------------------- the entry point


def list_models(query: ListingQuery, *, limit: int, token=None, offline: bool = False, refresh: bool = False,
                progress=None) -> Listing:
    """The models matching ``query``, at most ``limit``, in the Hub's order (``query.sort``); offline, the
    snapshot's and the HF cache's in id order. A Hub that cannot be reached falls back to offline with a note."""
    if query.order is None:
        query = replace(query, order="downloads")
    if query.order not in HUB_SORTS:
        raise UsageError(f"unknown listing order {query.order!r}", hint=f"one of {', '.join(HUB_SORTS)}")
    if offline or env_flag("HF_HUB_OFFLINE"):
        return _list_offline(query, limit, "offline mode")
    from . import endpoint_cache_id
    from . import hub

    age = hub.recently_unreachable()
    if age is not None:
        return _list_offline(query, limit, f"the Hub was unreachable {age:.0f} s ago")
    path = _listing_path(query, endpoint_cache_id(), token)
    if not refresh:
        hit = _cached_listing(path, limit)
        if hit is not None:
            return hit
    try:
        listing = _list_hub(query, limit, token, progress)
        hub.mark_unreachable(reachable=True)
    except HubUnavailableError as exc:
        if exc.network:
            hub.mark_unreachable()
        listing = _list_offline(query, limit, f"the Hub's model listing at {redacted_endpoint()} is unavailable "
                                              f"({exc.message})")
        return listing
    note = _store_listing(path, listing, limit)
    if note:
        listing.notes.append(note)
    return listing
