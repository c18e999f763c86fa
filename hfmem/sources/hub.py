"""The Hugging Face Hub, reached only through huggingface_hub (token, HF_ENDPOINT, HF_HUB_OFFLINE, HF_HOME,
revision all behave as huggingface_hub documents), and the Hugging Face cache it fills.

Three requests per new model: model info (sha, files, gated status), config.json (downloaded into the
Hugging Face cache, so it is there offline later), and the safetensors headers by HTTP range reads (never
the weights). huggingface_hub is imported here only, and only when the Hub is really needed.

Unreachable Hub, quickly: ``model_info`` is a single request that huggingface_hub does not retry, so it is
our probe. It runs with a short timeout (``HFMEM_HUB_TIMEOUT``, default 5 s); a DNS failure or refused
connection fails at once, a black-holed network after the timeout. 5xx answers are retried twice
(0.5 s, 1 s). Only when it succeeds do we make the downloads, whose own retry loop (≈24 s) would otherwise
make a user wait.
"""

from __future__ import annotations

import json
import os
import time

from ..errors import (
    ConfigError,
    GatedRepoError,
    HubUnavailableError,
    ModelNotFoundError,
    RevisionNotFoundError,
    SafetensorsHeaderError,
)
from ..metadata.config import parse_config
from ..metadata.safetensors import CheckpointHeaders, FileHeader, from_hub_metadata, read_local_header
from . import FetchedMetadata

DEFAULT_ENDPOINT = "https://huggingface.co"
SAFETENSORS_SINGLE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
RETRY_WAITS_S = (0.5, 1.0)


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def _timeout() -> float:
    try:
        return float(os.environ.get("HFMEM_HUB_TIMEOUT", "5"))
    except ValueError:
        return 5.0


def _network_errors() -> tuple[type[BaseException], ...]:
    import httpx2  # huggingface_hub's HTTP client

    from huggingface_hub.errors import OfflineModeIsEnabled

    return (httpx2.TransportError, OfflineModeIsEnabled, ConnectionError, TimeoutError)


def _translate(exc: BaseException, repo_id: str, revision: str | None, what: str) -> BaseException:
    """huggingface_hub's typed errors → ours, with what to do."""
    from huggingface_hub import errors as hf

    rev = f" at revision {revision!r}" if revision else ""
    if isinstance(exc, hf.GatedRepoError):
        return GatedRepoError(
            f"{repo_id} is gated: its files need an access grant",
            hint=f"request access at {endpoint()}/{repo_id}, then pass --token or set HF_TOKEN "
                 "(or run `hf auth login`)")
    if isinstance(exc, hf.RepositoryNotFoundError):
        return ModelNotFoundError(
            f"{repo_id} was not found on {endpoint()}",
            hint="check the repo id; for a private repo pass --token or set HF_TOKEN")
    if isinstance(exc, hf.RevisionNotFoundError):
        return RevisionNotFoundError(f"{repo_id} has no revision {revision!r}",
                                     hint="use a branch, tag or commit sha that exists (default: main)")
    if isinstance(exc, hf.EntryNotFoundError):
        return ConfigError(f"{repo_id}{rev} has no {what}",
                           hint="hfmem needs a transformers config.json; this repo may not be a transformers model")
    if isinstance(exc, hf.SafetensorsParsingError):
        return SafetensorsHeaderError(f"safetensors header of {repo_id}/{what} could not be read: "
                                      f"{str(exc).splitlines()[0][:200]}", hint="the file is damaged or not safetensors")
    if isinstance(exc, hf.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            return GatedRepoError(f"{endpoint()} refused access to {repo_id} (HTTP {status})",
                                  hint="pass a token with read access via --token or HF_TOKEN")
        return HubUnavailableError(f"the Hub answered HTTP {status} for {repo_id} ({what})",
                                   hint="try again later, or pass --offline to use the cache or snapshot")
    if isinstance(exc, _network_errors()):
        err = HubUnavailableError(f"{endpoint()} cannot be reached ({exc.__class__.__name__})",
                                  hint="check the network, or pass --offline to use the cache or snapshot")
        err.network = True
        return err
    return exc


# ---------------------------------------------------------------- remembering an unreachable Hub
# When the probe fails with a network error (not an HTTP answer), we note it for RECHECK_S seconds so that
# the next runs go straight to the caches and the snapshot instead of probing again (~0.4 s each with the
# huggingface_hub import). HFMEM_HUB_RECHECK_S=0 disables it.


def _memo_path():
    from .resultcache import cache_home

    return cache_home() / "hub-unreachable.json"


def recheck_s() -> float:
    try:
        return float(os.environ.get("HFMEM_HUB_RECHECK_S", "60"))
    except ValueError:
        return 60.0


def recently_unreachable() -> float | None:
    """Seconds since the Hub at this endpoint was last found unreachable, if within the recheck window."""
    try:
        memo = json.loads(_memo_path().read_text())
    except (OSError, json.JSONDecodeError):
        return None
    age = time.time() - memo.get("at", 0)
    if memo.get("endpoint") == endpoint() and 0 <= age < recheck_s():
        return age
    return None


def mark_unreachable(reachable: bool = False) -> None:
    path = _memo_path()
    try:
        if reachable:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"endpoint": endpoint(), "at": time.time()}))
        os.replace(tmp, path)
    except OSError:
        pass


def _api(token):
    from huggingface_hub import HfApi
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # hfmem's stdout/stderr are its own: no download bars for kilobyte files
    return HfApi(endpoint=endpoint(), token=token)


def model_info(repo_id: str, revision: str | None, token):
    """The probe: one request, short timeout, two retries on 5xx."""
    from huggingface_hub import errors as hf

    api = _api(token)
    for attempt in range(len(RETRY_WAITS_S) + 1):
        try:
            return api.model_info(repo_id, revision=revision, timeout=_timeout())
        except hf.HfHubHTTPError as exc:
            status = getattr(getattr(exc, "response", None), "status_code", 0) or 0
            if status >= 500 and attempt < len(RETRY_WAITS_S) and not isinstance(exc, hf.RepositoryNotFoundError):
                time.sleep(RETRY_WAITS_S[attempt])
                continue
            raise _translate(exc, repo_id, revision, "model info") from None
        except _network_errors() as exc:
            raise _translate(exc, repo_id, revision, "model info") from None


def _download(repo_id: str, filename: str, sha: str, token) -> str:
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo_id, filename, revision=sha, token=token, endpoint=endpoint(),
                               etag_timeout=_timeout())
    except Exception as exc:  # noqa: BLE001 — translated below, unknown ones re-raised
        raise _translate(exc, repo_id, sha, filename) from None


def _headers_from_hub(api, repo_id: str, sha: str, siblings: set[str], token) -> CheckpointHeaders | None:
    if SAFETENSORS_SINGLE in siblings:
        names = [SAFETENSORS_SINGLE]
    elif SAFETENSORS_INDEX in siblings:
        with open(_download(repo_id, SAFETENSORS_INDEX, sha, token)) as fh:
            try:
                names = sorted(set(json.load(fh)["weight_map"].values()))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise SafetensorsHeaderError(f"{repo_id}/{SAFETENSORS_INDEX} has no valid weight_map",
                                             hint="the repository's shard index is damaged") from None
    else:
        return None

    def one(name: str) -> FileHeader:
        try:
            meta = api.parse_safetensors_file_metadata(repo_id, name, revision=sha, timeout=_timeout() * 2)
        except Exception as exc:  # noqa: BLE001
            raise _translate(exc, repo_id, sha, name) from None
        return from_hub_metadata(name, meta)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
        return CheckpointHeaders(list(pool.map(one, names)))


def fetch_hub(repo_id: str, info, token, revision: str | None = None) -> FetchedMetadata:
    """config.json and safetensors headers at the commit ``info.sha``.

    config.json is downloaded by the revision the user asked for (``main`` by default), so that the
    Hugging Face cache records the branch → commit ref and can answer for that branch offline later."""
    sha = info.sha
    config_path = _download(repo_id, "config.json", revision or "main", token)
    with open(config_path, "rb") as fh:
        config = parse_config(fh.read(), f"{repo_id}@{sha[:12]}")
    siblings = {s.rfilename for s in (info.siblings or [])}
    headers = _headers_from_hub(_api(token), repo_id, sha, siblings, token)
    return FetchedMetadata(
        config=config,
        headers=headers,
        source="hub",
        revision=sha,
        provenance={"endpoint": endpoint(), "repo_id": repo_id, "sha": sha,
                    "gated": info.gated or False, "private": bool(info.private),
                    "last_modified": info.last_modified.isoformat() if getattr(info, "last_modified", None) else None,
                    "retrieved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        code_location=repo_id,
    )


def hf_hub_cache_dir() -> str:
    """The Hugging Face cache folder, by huggingface_hub's documented precedence (HF_HUB_CACHE, then the
    deprecated HUGGINGFACE_HUB_CACHE, then HF_HOME/hub, HF_HOME defaulting to $XDG_CACHE_HOME/huggingface).
    Used only to decide whether to look: the lookup itself is huggingface_hub's ``try_to_load_from_cache``."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return os.path.expanduser(os.environ[var])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    home = os.path.expanduser(os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface"))
    return os.path.join(home, "hub")


def load_hf_cache(repo_id: str, revision: str | None) -> FetchedMetadata | None:
    """config.json (and headers, if the weights were downloaded) from the Hugging Face cache, no network."""
    # Cheap check first: most repos are not in the cache, and importing huggingface_hub costs 30-150 ms.
    if not os.path.isdir(os.path.join(hf_hub_cache_dir(), "models--" + repo_id.replace("/", "--"))):
        return None
    from huggingface_hub import try_to_load_from_cache

    rev = revision or "main"

    def cached(name: str) -> str | None:
        path = try_to_load_from_cache(repo_id, name, revision=rev)
        return path if isinstance(path, str) else None

    config_path = cached("config.json")
    if config_path is None:
        return None
    with open(config_path, "rb") as fh:
        config = parse_config(fh.read(), config_path)
    headers = None
    single = cached(SAFETENSORS_SINGLE)
    if single:
        headers = CheckpointHeaders([read_local_header(single)])
    else:
        index = cached(SAFETENSORS_INDEX)
        if index:
            with open(index) as fh:
                shards = sorted(set(json.load(fh).get("weight_map", {}).values()))
            paths = [cached(s) for s in shards]
            if shards and all(paths):
                headers = CheckpointHeaders([read_local_header(p) for p in paths])
    # The snapshot folder name is the commit sha: .../snapshots/<sha>/config.json
    sha = os.path.basename(os.path.dirname(config_path))
    return FetchedMetadata(config=config, headers=headers, source="hf-cache", revision=sha,
                           provenance={"path": os.path.dirname(config_path), "repo_id": repo_id, "sha": sha},
                           code_location=os.path.dirname(config_path))
