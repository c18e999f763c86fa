"""The Hugging Face Hub, reached only through huggingface_hub (token, HF_ENDPOINT, HF_HUB_OFFLINE, HF_HOME,
revision all behave as huggingface_hub documents), and the Hugging Face cache it fills.

What a new model costs, in round trips: model info (sha, file sizes, gated status); then, at once, config.json
(also put into the Hugging Face cache by ``hf_hub_download``, so it is there offline later) and either the single
``model.safetensors``'s header or the shard index; then every shard's header at once. A header is read by HTTP
range requests (never the weights): one read of the first 100 kB, which holds the 8-byte length prefix and the
whole header of nearly every published file, and a second read only for the rest of a longer header. So a
single-file model takes 2 round trips and a sharded one 3, whatever its shard count. The model info is read
from its JSON here, not through ``huggingface_hub.ModelInfo``, whose module alone takes longer to import than
the whole answer takes otherwise. huggingface_hub's shared client speaks HTTP/1.1 with keep-alive; hfmem uses
it as the user configured it (proxies, certificates), not a client of its own. huggingface_hub is imported here
only, and only when the Hub is really needed.

A misbehaving Hub costs a bounded wait. hfmem makes its own requests with huggingface_hub's shared HTTP client
(``get_session``, ``build_hf_headers``, ``hf_hub_url``, ``hf_raise_for_status``), streamed, so that it keeps
the clock:

* **One deadline per model**: ``HFMEM_HUB_DEADLINE`` (default 8 s) for all the Hub requests of one model
  together, retries and waits included. Past it hfmem stops reading (a body trickling in byte by byte is
  abandoned between chunks, whatever httpx's per-read timeout says), falls back to hfmem's result cache, the
  Hugging Face cache or the shipped snapshot, and says so in a note ("the Hub did not answer within 8 s
  (...)"); when none of them has the model it exits 8 naming what it searched.
* **Each request** waits at most ``HFMEM_HUB_TIMEOUT`` (default 5 s) for the server (connect and each read),
  never more than the deadline has left. A DNS failure or refused connection fails at once, a black-holed
  network after the timeout; neither is retried.
* **Retries**: 408, 429 and 5xx answers, and a connection cut mid-answer, are retried twice (0.5 s, 1 s), only
  while the deadline has room; a ``Retry-After`` is honoured only if it fits in what is left, else hfmem gives
  up at once. Redirects are followed by hand, at most 10, each inside the deadline (a loop is reported).
* **Bounded reads**: bodies are capped (model info 50 MB, config.json and the shard index 20 MB); a
  safetensors header is read as its 8-byte length prefix plus that many bytes (at most the format's 100 MB),
  and the stream is closed there, even when the server ignores ``Range`` and sends the whole file.
* Lengths are checked against the model info's file sizes, so a wrong ``Content-Length`` is reported as the
  Hub's fault, not as a damaged config.json; a body that is not the JSON the Hub sends is reported the same way.
* huggingface_hub's retry chatter ("Retrying in 1s...") stays off the screen unless ``--verbose``.

The config.json copy for the Hugging Face cache is made by ``hf_hub_download`` after hfmem's own read of it
succeeded, in a background thread hfmem waits for only until the deadline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import threading
import time
from dataclasses import dataclass

from ..errors import (
    ConfigError,
    GatedRepoError,
    HubUnavailableError,
    ModelNotFoundError,
    RevisionNotFoundError,
    SafetensorsHeaderError,
)
from ..metadata.config import parse_config
from ..metadata.safetensors import CheckpointHeaders, FileHeader, read_local_header
from . import FetchedMetadata, hf_hub_cache_dir, redacted_endpoint, scrub  # noqa: F401 (hf_hub_cache_dir: public here too)

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
            hint=f"request access at {redacted_endpoint()}/{repo_id}, then pass --token or set HF_TOKEN "
                 "(or run `hf auth login`)")
    if isinstance(exc, hf.RepositoryNotFoundError):
        return ModelNotFoundError(
            f"{repo_id} was not found on {redacted_endpoint()}",
            hint="check the repo id; for a private repo pass --token or set HF_TOKEN")
    if isinstance(exc, hf.RevisionNotFoundError):
        return RevisionNotFoundError(f"{repo_id} has no revision {revision!r}",
                                     hint="use a branch, tag or commit sha that exists (default: main)")
    if isinstance(exc, hf.EntryNotFoundError):
        return ConfigError(f"{repo_id}{rev} has no {what}",
                           hint="hfmem needs a transformers config.json; this repo may not be a transformers model")
    if isinstance(exc, hf.SafetensorsParsingError):
        return SafetensorsHeaderError(f"safetensors header of {repo_id}/{what} could not be read: "
                                      f"{scrub(str(exc)).splitlines()[0][:200]}", hint="the file is damaged or not safetensors")
    if isinstance(exc, hf.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            return GatedRepoError(f"{redacted_endpoint()} refused access to {repo_id} (HTTP {status})",
                                  hint="pass a token with read access via --token or HF_TOKEN")
        return HubUnavailableError(f"the Hub answered HTTP {status} for {repo_id} ({what})",
                                   hint="try again later, or pass --offline to use the cache or snapshot")
    if isinstance(exc, _network_errors()):
        err = HubUnavailableError(f"{redacted_endpoint()} cannot be reached ({exc.__class__.__name__})",
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
        memo = json.loads(_memo_path().read_bytes().decode("utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not UTF-8, not JSON: no memo
        return None
    at = memo.get("at") if isinstance(memo, dict) else None
    if not isinstance(at, (int, float)) or isinstance(at, bool) or at != at:
        return None  # ill-formed (hand-edited, or written by something else): no memo; the next write replaces it
    age = time.time() - at
    if memo.get("endpoint") == redacted_endpoint() and 0 <= age < recheck_s():
        return age
    return None


def mark_unreachable(reachable: bool = False) -> None:
    path = _memo_path()
    try:
        if reachable:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")  # threads too
        tmp.write_text(json.dumps({"endpoint": redacted_endpoint(), "at": time.time()}))
        os.replace(tmp, path)
    except OSError:
        pass


# ---------------------------------------------------------------- the deadline and bounded requests

DEFAULT_DEADLINE_S = 8.0
MAX_ATTEMPTS = len(RETRY_WAITS_S) + 1
MAX_REDIRECTS = 10
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
MAX_INFO_BYTES = 50_000_000
MAX_FILE_BYTES = 20_000_000  # config.json, the shard index
HEADER_PROBE_BYTES = 100_000  # first range read of a safetensors file: prefix + most headers in one go

_log = logging.getLogger("hfmem.hub")


def deadline_s() -> float:
    """``HFMEM_HUB_DEADLINE``: seconds for all the Hub requests of one model (default 8)."""
    try:
        value = float(os.environ.get("HFMEM_HUB_DEADLINE", DEFAULT_DEADLINE_S))
    except ValueError:
        return DEFAULT_DEADLINE_S
    return value if value > 0 else DEFAULT_DEADLINE_S


class Deadline:
    """The time left for one model's Hub requests; every wait and every read is cut to it."""

    def __init__(self, total_s: float | None = None, verbose: bool = False):
        self.total_s = deadline_s() if total_s is None else total_s
        self.verbose = verbose
        self._start = time.monotonic()
        # What this model's Hub reads had to work around, for the report's notes. Kept per model (not per
        # process) because several models are fetched at once in threads.
        self.notes: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def left(self) -> float:
        return self.total_s - self.elapsed()

    def expired(self, what: str) -> HubUnavailableError:
        err = HubUnavailableError(f"the Hub did not answer within {self.total_s:g} s ({what}; "
                                  "HFMEM_HUB_DEADLINE)",
                                  hint="try again later, raise HFMEM_HUB_DEADLINE, or pass --offline")
        err.network = True
        err.deadline = True
        return err

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise self.expired(what)

    def request_timeout(self) -> float:
        """What one connect or read may wait: HFMEM_HUB_TIMEOUT, never past the deadline."""
        return max(0.01, min(_timeout(), self.left()))

    def say(self, message: str) -> None:
        (_log.warning if self.verbose else _log.debug)("hfmem: %s", message)


_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved: int | None = None


@contextlib.contextmanager
def quiet(verbose: bool = False):
    """huggingface_hub's logger held at ERROR while hfmem talks to the Hub (its retry warnings, "Retrying in
    1s...", are not the user's business); ``verbose`` leaves it alone. Nested uses (the cache-fill thread)
    restore the level when the last one ends."""
    global _quiet_depth, _quiet_saved
    if verbose:
        yield
        return
    hf_logger = logging.getLogger("huggingface_hub")
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_saved = hf_logger.level
            hf_logger.setLevel(logging.ERROR)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _quiet_saved is not None:
                hf_logger.setLevel(_quiet_saved)
                _quiet_saved = None


class _Answer:
    """A response read to its end (or to the bytes wanted): status, headers, body, final URL."""

    def __init__(self, response, body: bytes):
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers
        self.body = body

    def for_hf(self):
        """A buffered copy huggingface_hub's ``hf_raise_for_status`` can read."""
        import httpx2

        headers = [(k, v) for k, v in self.headers.items()
                   if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
        return httpx2.Response(self.status_code, headers=headers, content=self.body, request=self.response.request)


def _read_body(response, deadline: Deadline, what: str, limit: int, want: int | None) -> bytes:
    """The body, chunk by chunk with the deadline checked between chunks (a trickle cannot outlast it); stops
    after ``want`` bytes (a header read), refuses more than ``limit``."""
    buf = bytearray()
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    for chunk in response.iter_raw():
        buf += chunk
        if want is not None and encoding == "identity" and len(buf) >= want:
            return bytes(buf[:want])
        if len(buf) > limit:
            raise HubUnavailableError(f"the Hub sent more than {limit // 1_000_000} MB for {what}",
                                      hint="try again later, or pass --offline to use the cache or snapshot")
        if deadline.left() <= 0:
            raise deadline.expired(f"{what}: {len(buf):,} bytes received in {deadline.elapsed():.1f} s")
    if encoding in ("gzip", "deflate", "x-gzip"):
        import zlib

        try:
            data = zlib.decompressobj(wbits=47).decompress(bytes(buf), limit + 1)
        except zlib.error:
            raise HubUnavailableError(f"the Hub's {what} could not be decompressed ({encoding})",
                                      hint="try again later, or pass --offline to use the cache or snapshot") from None
        return data[:want] if want is not None else data
    if encoding not in ("identity", ""):
        raise HubUnavailableError(f"the Hub sent {what} with an unsupported encoding {encoding!r}",
                                  hint="try again later, or pass --offline to use the cache or snapshot")
    return bytes(buf)


def _once(url: str, headers: dict, params: dict | None, deadline: Deadline, what: str, limit: int,
          want: int | None) -> _Answer:
    """One GET through huggingface_hub's shared client, redirects followed by hand inside the deadline."""
    import httpx2
    from huggingface_hub.utils import get_session

    client = get_session()
    request = client.build_request("GET", url, headers=headers, params=params,
                                   timeout=deadline.request_timeout())
    for _hop in range(MAX_REDIRECTS + 1):
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            nxt = getattr(response, "next_request", None)
            if response.is_redirect and nxt is not None:
                deadline.check(f"{what}: redirected")
                nxt.extensions["timeout"] = httpx2.Timeout(deadline.request_timeout()).as_dict()
                request = nxt
                continue
            return _Answer(response, _read_body(response, deadline, what, limit, want))
        finally:
            response.close()
    raise HubUnavailableError(f"the Hub redirected {what} more than {MAX_REDIRECTS} times (a redirect loop)",
                              hint="check HF_ENDPOINT and any proxy, or pass --offline to use the cache or snapshot")


def _retry_after(headers) -> float | None:
    value = (headers.get("retry-after") or "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: not worth parsing; the normal back-off applies


def _get(url: str, *, repo_id: str, what: str, token, deadline: Deadline, params: dict | None = None,
         extra_headers: dict | None = None, limit: int = MAX_FILE_BYTES, want: int | None = None) -> _Answer:
    """GET with hfmem's retry policy: 408/429/5xx and cut connections retried twice while the deadline has
    room, Retry-After honoured only when it fits; timeouts and refused connections not retried. HTTP errors
    are left in the answer (the caller maps them through ``hf_raise_for_status``)."""
    import httpx2
    from huggingface_hub.utils import build_hf_headers

    headers = build_hf_headers(token=token, headers={"Accept-Encoding": "identity", **(extra_headers or {})})
    for attempt in range(1, MAX_ATTEMPTS + 1):
        deadline.check(what)
        capped = deadline.request_timeout() < _timeout()  # this request's waits end at the deadline
        try:
            answer = _once(url, headers, params, deadline, what, limit, want)
        except httpx2.TimeoutException as exc:
            if capped or deadline.left() <= 0.05:
                raise deadline.expired(f"{what}: no answer after {deadline.elapsed():.1f} s") from None
            err = HubUnavailableError(f"{redacted_endpoint()} timed out on {what} ({exc.__class__.__name__} after "
                                      f"HFMEM_HUB_TIMEOUT={_timeout():g} s)",
                                      hint="check the network, or pass --offline to use the cache or snapshot")
            err.network = True
            raise err from None
        except (httpx2.ConnectError, httpx2.ProxyError, httpx2.UnsupportedProtocol) as exc:
            raise _translate(exc, repo_id, None, what) from None
        except (httpx2.TransportError, httpx2.DecodingError) as exc:  # cut mid-answer, bad framing
            if attempt < MAX_ATTEMPTS and RETRY_WAITS_S[attempt - 1] < deadline.left():
                deadline.say(f"{what}: {exc.__class__.__name__}, retrying in {RETRY_WAITS_S[attempt - 1]:g} s")
                time.sleep(RETRY_WAITS_S[attempt - 1])
                continue
            err = HubUnavailableError(f"the Hub's answer for {what} was cut off or garbled "
                                      f"({exc.__class__.__name__}, {attempt} tries)",
                                      hint="try again later, or pass --offline to use the cache or snapshot")
            err.network = True
            raise err from None
        if answer.status_code not in RETRY_STATUSES:
            return answer
        wait = _retry_after(answer.headers)
        if wait is not None and wait > deadline.left():
            raise HubUnavailableError(
                f"the Hub answered HTTP {answer.status_code} for {repo_id} ({what}) and asked to retry after "
                f"{wait:g} s, more than the {max(0.0, deadline.left()):.1f} s left of HFMEM_HUB_DEADLINE="
                f"{deadline.total_s:g} s", hint="try again later, or pass --offline to use the cache or snapshot")
        if wait is None:
            wait = RETRY_WAITS_S[attempt - 1] if attempt < MAX_ATTEMPTS else 0.0
        if attempt == MAX_ATTEMPTS or wait >= deadline.left():
            return answer  # the caller reports the status
        deadline.say(f"{what}: HTTP {answer.status_code}, retrying in {wait:g} s")
        time.sleep(wait)
    return answer  # not reached


def _raise_for_status(answer: _Answer, repo_id: str, revision: str | None, what: str) -> None:
    from huggingface_hub.utils import hf_raise_for_status

    if answer.status_code < 300:
        return
    if answer.status_code < 400:  # a redirect without a usable Location
        raise HubUnavailableError(f"the Hub answered HTTP {answer.status_code} for {repo_id} ({what}) "
                                  "without a usable redirect",
                                  hint="try again later, or pass --offline to use the cache or snapshot")
    try:
        hf_raise_for_status(answer.for_hf())
    except Exception as exc:  # noqa: BLE001 — translated below
        raise _translate(exc, repo_id, revision, what) from None
    raise HubUnavailableError(f"the Hub answered HTTP {answer.status_code} for {repo_id} ({what})",
                              hint="try again later, or pass --offline to use the cache or snapshot")


def _json(answer: _Answer, repo_id: str, what: str):
    try:
        return json.loads(answer.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HubUnavailableError(f"the Hub's {what} for {repo_id} is not JSON ({len(answer.body):,} bytes, "
                                  f"{answer.headers.get('content-type', 'no content type')})",
                                  hint="check HF_ENDPOINT and any proxy, or pass --offline") from None


def _check_length(answer: _Answer, repo_id: str, filename: str, expected: int | None) -> None:
    if expected is not None and len(answer.body) != expected:
        raise HubUnavailableError(f"the Hub sent {len(answer.body):,} bytes of {repo_id}/{filename}; its file "
                                  f"list says {expected:,} (a cut or mislabelled answer)",
                                  hint="try again later, or pass --offline to use the cache or snapshot")


@dataclass(frozen=True)
class HubModelInfo:
    """What hfmem takes from the Hub's model info: the commit, the files with their sizes, access."""

    sha: str
    sizes: dict[str, int | None]  # every file of the commit; its size in bytes where the Hub gave one
    gated: bool | str = False  # False, "auto" or "manual", as the Hub says
    private: bool = False
    last_modified: str | None = None  # ISO 8601


def _last_modified(value) -> str | None:
    if not isinstance(value, str):
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        return None


def parse_model_info(data) -> HubModelInfo | None:
    """The fields hfmem needs from the Hub's ``/api/models`` JSON, checked; None when sha or files are missing.
    Field names as the Hub sends them (``sha``, ``siblings[].rfilename``, ``siblings[].size`` with
    ``blobs=true``, ``gated``, ``private``, ``lastModified``)."""
    if not isinstance(data, dict):
        return None
    sha, siblings = data.get("sha"), data.get("siblings")
    if not isinstance(sha, str) or not sha or not isinstance(siblings, list):
        return None
    sizes: dict[str, int | None] = {}
    for entry in siblings:
        name = entry.get("rfilename") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            return None
        size = entry.get("size")
        sizes[name] = size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None
    gated = data.get("gated", False)
    return HubModelInfo(sha=sha, sizes=sizes, gated=gated if isinstance(gated, str) and gated else False,
                        private=data.get("private") is True, last_modified=_last_modified(data.get("lastModified")))


def model_info(repo_id: str, revision: str | None, token, deadline: Deadline | None = None) -> HubModelInfo:
    """The probe: model info with file sizes, one request (retried on 5xx/429 inside the deadline)."""
    from urllib.parse import quote

    deadline = deadline or Deadline()
    base = f"{endpoint()}/api/models/{repo_id}"
    url = base if revision is None else f"{base}/revision/{quote(revision, safe='')}"
    answer = _get(url, repo_id=repo_id, what="model info", token=token, deadline=deadline,
                  params={"blobs": "true"}, limit=MAX_INFO_BYTES)
    _raise_for_status(answer, repo_id, revision, "model info")
    info = parse_model_info(_json(answer, repo_id, "model info"))
    if info is None:
        raise HubUnavailableError(f"the Hub's model info for {repo_id} lacks the commit sha and file list "
                                  f"({len(answer.body):,} bytes)",
                                  hint="check HF_ENDPOINT and any proxy, or pass --offline")
    return info


def _fetch_file(repo_id: str, filename: str, sha: str, token, deadline: Deadline, expected: int | None) -> bytes:
    from huggingface_hub import hf_hub_url

    url = hf_hub_url(repo_id, filename, revision=sha, endpoint=endpoint())
    answer = _get(url, repo_id=repo_id, what=filename, token=token, deadline=deadline)
    _raise_for_status(answer, repo_id, sha, filename)
    _check_length(answer, repo_id, filename, expected)
    return answer.body


_LOCAL_WRITE_ERRNOS = ("EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "EFBIG")


def _local_write_error(exc: BaseException) -> bool:
    """An OSError of this machine's file system (a read-only or full Hugging Face cache), not of the network or
    the Hub (huggingface_hub's HTTP and offline errors are OSErrors too)."""
    import errno

    from huggingface_hub import errors as hf

    codes = {getattr(errno, n) for n in _LOCAL_WRITE_ERRNOS if hasattr(errno, n)}
    return (isinstance(exc, OSError) and exc.errno in codes
            and not isinstance(exc, (hf.HfHubHTTPError, hf.OfflineModeIsEnabled, ConnectionError, TimeoutError)))


def _fill_hf_cache(repo_id: str, filename: str, revision: str, token, deadline: Deadline):
    """Put ``filename`` into the Hugging Face cache with ``hf_hub_download`` (so it is there offline), in a
    thread waited for only until the deadline; best effort: hfmem already holds the bytes."""
    from huggingface_hub import hf_hub_download

    def run():
        with quiet(deadline.verbose):
            try:
                hf_hub_download(repo_id, filename, revision=revision, token=token, endpoint=endpoint(),
                                etag_timeout=deadline.request_timeout())
            except Exception as exc:  # noqa: BLE001 — a cache we could not fill is not an error
                deadline.say(f"{filename} not copied to the Hugging Face cache ({exc.__class__.__name__})")
                if _local_write_error(exc):  # read-only or full: the user should know why offline use will miss
                    deadline.notes.append(f"the Hugging Face cache at {hf_hub_cache_dir()} is not writable "
                                  f"({exc.strerror or exc.__class__.__name__}): {filename} read into memory, "
                                  "not cached")

    thread = threading.Thread(target=run, name=f"hfmem-cache-{filename}", daemon=True)
    thread.start()
    return thread


def _header_of(repo_id: str, name: str, sha: str, token, deadline: Deadline, size: int | None) -> FileHeader:
    """A safetensors header by range reads: the 8-byte length prefix, then that many bytes (≤ 100 MB). The
    stream is closed as soon as they are in, so a server that ignores Range costs the header, not the file."""
    from huggingface_hub import hf_hub_url

    from ..metadata.safetensors import MAX_HEADER_BYTES, parse_header_json

    def bad(what: str) -> SafetensorsHeaderError:
        return SafetensorsHeaderError(f"safetensors header of {repo_id}/{name} could not be read: {what}",
                                      hint="the file is damaged or not safetensors")

    url = hf_hub_url(repo_id, name, revision=sha, endpoint=endpoint())

    def span(start: int, end: int) -> bytes:
        answer = _get(url, repo_id=repo_id, what=name, token=token, deadline=deadline,
                      extra_headers={"Range": f"bytes={start}-{end}"}, limit=end + 1, want=end + 1)
        if answer.status_code == 416:
            raise bad(f"the file has fewer than {start + 1:,} bytes")
        _raise_for_status(answer, repo_id, sha, name)
        body = answer.body
        if answer.status_code == 200:  # Range ignored: the whole file from byte 0, read only as far as needed
            body = body[start:end + 1]
        return body

    first = span(0, HEADER_PROBE_BYTES - 1)
    if len(first) < 8:
        raise bad(f"the file is {len(first)} bytes, shorter than the 8-byte length prefix")
    (n,) = struct.unpack("<Q", first[:8])
    if n > MAX_HEADER_BYTES:
        raise bad(f"it declares a {n:,}-byte header, over the format's 100 MB limit")
    if size is not None and 8 + n > size:
        raise bad(f"it declares a {n:,}-byte header but the file has {size - 8:,} bytes after the prefix")
    header = first[8:8 + n]
    if len(header) < n:
        if len(first) < HEADER_PROBE_BYTES:  # the file itself ended
            raise bad(f"it declares a {n:,}-byte header but the file ends after {len(first) - 8:,}")
        header += span(len(first), 8 + n - 1)
        if len(header) < n:
            raise bad(f"it declares a {n:,}-byte header but the file ends after {len(header):,}")
    try:
        return parse_header_json(name, header)
    except SafetensorsHeaderError as exc:  # named with the repo, as the other header errors
        rest = exc.message.removeprefix(f"safetensors header of {name}").lstrip(": ")
        raise bad(f"it {rest}" if rest.startswith(("is ", "has ", "declares ")) else rest) from None


def fetch_hub(repo_id: str, info: HubModelInfo, token, revision: str | None = None,
              deadline: Deadline | None = None) -> FetchedMetadata:
    """config.json and safetensors headers at the commit ``info.sha``, inside ``deadline``.

    config.json and the first header read (the single file's header, or the shard index) are asked for at once,
    then all shard headers at once. config.json is also put into the Hugging Face cache by the revision the user
    asked for (``main`` by default), so that the cache records the branch → commit ref and can answer for that
    branch offline later."""
    from concurrent.futures import ThreadPoolExecutor

    from ..metadata.safetensors import shard_names

    deadline = deadline or Deadline()
    sha, sizes = info.sha, info.sizes
    from . import composite
    from .gguf import is_gguf_only

    if is_gguf_only(list(sizes)):
        from ..errors import GGUFRepoError

        raise GGUFRepoError(f"{repo_id} holds GGUF files and no config.json",
                            hint=f"`hfmem infer {repo_id}` answers it for llama.cpp")

    if composite.detect([n for n in sizes if "/" not in n]) != composite.P.TRANSFORMERS:
        return _fetch_composite(repo_id, info, token, revision, deadline)

    def header(name: str) -> FileHeader:
        return _header_of(repo_id, name, sha, token, deadline, sizes.get(name))

    def index() -> list[str]:
        body = _fetch_file(repo_id, SAFETENSORS_INDEX, sha, token, deadline, sizes.get(SAFETENSORS_INDEX))
        return shard_names(f"{repo_id}/{SAFETENSORS_INDEX}", body)  # plain file names only, never paths

    # Threads for the concurrent reads, up to 8 at once (huggingface_hub's client is shared and thread-safe);
    # on any failure the reads not yet started are dropped and the first error in this order is raised:
    # config.json, then the checkpoint.
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="hfmem-hub") as pool:
        try:
            raw = pool.submit(_fetch_file, repo_id, "config.json", sha, token, deadline, sizes.get("config.json"))
            first = (pool.submit(header, SAFETENSORS_SINGLE) if SAFETENSORS_SINGLE in sizes
                     else pool.submit(index) if SAFETENSORS_INDEX in sizes else None)
            config = parse_config(raw.result(), f"{repo_id}@{sha[:12]}")
            filler = _fill_hf_cache(repo_id, "config.json", revision or "main", token, deadline)
            headers = None
            if first is not None and SAFETENSORS_SINGLE in sizes:
                headers = CheckpointHeaders([first.result()])
            elif first is not None:
                names = first.result()
                headers = CheckpointHeaders(list(pool.map(header, names)))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    filler.join(timeout=max(0.0, deadline.left()))
    meta = FetchedMetadata(
        config=config,
        headers=headers,
        source="hub",
        revision=sha,
        provenance=_provenance(repo_id, info),
        code_location=repo_id,
    )
    if composite.is_timm_config(config.raw):
        read = ["config.json"] + ([SAFETENSORS_SINGLE] if SAFETENSORS_SINGLE in sizes else
                                  [SAFETENSORS_INDEX] if SAFETENSORS_INDEX in sizes else [])
        meta.composite = composite.timm_composite(config, headers, read)
        meta.provenance["files_read"] = read
    return meta


def _provenance(repo_id: str, info: HubModelInfo) -> dict:
    return {"endpoint": redacted_endpoint(), "repo_id": repo_id, "sha": info.sha,
            "gated": info.gated or False, "private": info.private, "last_modified": info.last_modified,
            "retrieved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


class HubReader:
    """A repo's files at one commit, for ``composite``: names from the model info, small files read whole,
    safetensors files by their header only (``_header_of``), all inside one ``Deadline``."""

    def __init__(self, repo_id: str, info: HubModelInfo, token, deadline: Deadline):
        self.repo_id, self.info, self.token, self.deadline = repo_id, info, token, deadline

    def names(self, folder: str) -> list[str]:
        prefix = f"{folder}/" if folder else ""
        return sorted(n[len(prefix):] for n in self.info.sizes
                      if n.startswith(prefix) and "/" not in n[len(prefix):])

    def read(self, path: str) -> bytes:
        return _fetch_file(self.repo_id, path, self.info.sha, self.token, self.deadline, self.info.sizes.get(path))

    def header(self, path: str) -> FileHeader:
        return _header_of(self.repo_id, path, self.info.sha, self.token, self.deadline, self.info.sizes.get(path))

    def origin(self, path: str) -> str:
        return f"{self.repo_id}@{self.info.sha[:12]}/{path}"


def _fetch_composite(repo_id: str, info: HubModelInfo, token, revision: str | None,
                     deadline: Deadline) -> FetchedMetadata:
    """A diffusers pipeline or sentence-transformers model: its index file, then every component's config and
    headers, the components at once (up to 8 reads in flight). The JSON files read are also put into the
    Hugging Face cache (by the revision asked for), so that the offline chain finds the repo later."""
    from concurrent.futures import ThreadPoolExecutor

    from . import composite
    from .local import pipeline_metadata

    reader = HubReader(repo_id, info, token, deadline)
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="hfmem-hub") as pool:
        try:
            if composite.MODEL_INDEX in info.sizes:
                comp = composite.load_diffusers(reader, pool)
                meta = pipeline_metadata(comp, "hub", info.sha, _provenance(repo_id, info),
                                         reader.origin(composite.MODEL_INDEX))
            else:
                comp, config, headers = composite.load_sentence_transformers(reader, pool)
                meta = FetchedMetadata(config=config, headers=headers, source="hub", revision=info.sha,
                                       provenance=dict(_provenance(repo_id, info), files_read=comp.files_read),
                                       code_location=repo_id, composite=comp)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    fillers = [_fill_hf_cache(repo_id, name, revision or "main", token, deadline)
               for name in comp.files_read if name.endswith(".json") and not name.endswith(".index.json")]
    for filler in fillers:
        filler.join(timeout=max(0.0, deadline.left()))
    return meta


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

    from . import composite

    for marker in (composite.MODEL_INDEX, composite.MODULES):
        found = cached(marker)
        if found is not None:  # the snapshot folder (named by the commit sha) is read like a local folder
            root = os.path.dirname(found)
            sha = os.path.basename(root)
            kind, comp, (st_config, st_headers) = composite.load_folder(root)
            provenance = {"path": root, "repo_id": repo_id, "sha": sha, "files_read": comp.files_read}
            if kind == composite.P.DIFFUSERS_PIPELINE:
                from .local import pipeline_metadata

                return pipeline_metadata(comp, "hf-cache", sha, provenance, found)
            return FetchedMetadata(config=st_config, headers=st_headers, source="hf-cache", revision=sha,
                                   provenance=provenance, code_location=root, composite=comp)

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
            from ..metadata.safetensors import read_local_index

            shards = read_local_index(index)  # validated: plain file names inside the snapshot folder
            paths = [cached(s) for s in shards]
            if shards and all(paths):
                headers = CheckpointHeaders([read_local_header(p) for p in paths])
    # The snapshot folder name is the commit sha: .../snapshots/<sha>/config.json
    sha = os.path.basename(os.path.dirname(config_path))
    meta = FetchedMetadata(config=config, headers=headers, source="hf-cache", revision=sha,
                           provenance={"path": os.path.dirname(config_path), "repo_id": repo_id, "sha": sha},
                           code_location=os.path.dirname(config_path))
    if composite.is_timm_config(config.raw):
        meta.composite = composite.timm_composite(config, headers, ["config.json"])
    return meta
