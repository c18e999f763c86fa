"""hfmem's own cache of finished analyses, so that a model seen before is answered without torch.

Location: ``$HFMEM_HOME`` if set, else ``$HF_HOME/hfmem``, else ``$XDG_CACHE_HOME/huggingface/hfmem``, else
``~/.cache/huggingface/hfmem`` — beside the Hugging Face cache, the way huggingface_hub places its own
(``HF_HOME`` defaults to ``$XDG_CACHE_HOME/huggingface``).

One JSON file per key under ``results/v1/``, written to a temporary file in the same folder and renamed
into place (``os.replace`` is atomic on POSIX and Windows), so a crash or a concurrent run never leaves a
half-written entry. Each entry carries a sha256 of its report; an entry that cannot be read, is not
UTF-8 JSON of the expected shape or fails its checksum (hand-edited, truncated by a full disk, written by
another version) is a miss, recomputed and replaced, and ``cache list`` skips it. Temporary files are not
entries; those older than ``TMP_MAX_AGE_S`` (a killed writer's) are swept. A cache that cannot be written
(read-only, full) is not an error: the run works from memory and says so. Entries for a commit sha or a local folder's fingerprint never go stale; entries for a
branch name (``main``) are trusted for ``HFMEM_CACHE_TTL`` seconds (default one day) while online, and
for ever offline.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = 2  # 2: inventories carry the tensor census (Inventory.tensors)
DEFAULT_TTL_S = 24 * 3600
TMP_PREFIX = ".tmp-"
TMP_MAX_AGE_S = 10 * 60  # a temporary file older than this is a killed writer's, not a concurrent one's


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


def _name(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32] + ".json"


def _path(key: str) -> Path:
    return results_dir() / _name(key)


def _checksum(report: dict) -> str:
    return hashlib.sha256(json.dumps(report, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ------------------------------------------------------------------ the shape of an entry
# What ``hfmem.api.ModelReport.from_dict`` and ``Inventory.from_dict`` build from, and what the renderers
# read; anything else is a miss. (The checksum catches edits; this catches entries of another shape.)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _str_or_none(v) -> bool:
    return v is None or isinstance(v, str)


def _strs(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _dict_of(v, check) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and check(x) for k, x in v.items())


def _exact_keys(d, required: set[str], optional: set[str] = frozenset()) -> bool:
    return isinstance(d, dict) and required <= d.keys() <= (required | optional)


_INVENTORY_REQUIRED = {"architecture", "model_type", "method", "num_params", "params_by_dtype", "params_dtype_source",
                       "persistent_buffer_bytes", "non_persistent_buffer_bytes"}
_INVENTORY_OPTIONAL = {"tied_weights", "tied_params", "modules", "layers", "no_split_modules", "accelerate",
                       "checkpoint", "notes", "versions", "tensors"}


def valid_inventory(d) -> bool:
    """``d`` has the shape of ``Inventory.to_dict()``."""
    if not _exact_keys(d, _INVENTORY_REQUIRED, _INVENTORY_OPTIONAL):
        return False
    checks = [
        isinstance(d["architecture"], str), _str_or_none(d["model_type"]), isinstance(d["method"], str),
        _int(d["num_params"]), _dict_of(d["params_by_dtype"], _int), isinstance(d["params_dtype_source"], str),
        _int(d["persistent_buffer_bytes"]), _int(d["non_persistent_buffer_bytes"]),
        isinstance(d.get("tied_weights", []), list) and all(_strs(t) for t in d.get("tied_weights", [])),
        _int(d.get("tied_params", 0)),
        _dict_of(d.get("modules", {}), lambda m: isinstance(m, list) and len(m) == 2 and all(_int(x) for x in m)),
        isinstance(d.get("layers", []), list) and all(
            _exact_keys(g, {"names", "num_params", "buffer_bytes"}) and _strs(g["names"]) and _int(g["num_params"])
            and _int(g["buffer_bytes"]) for g in d.get("layers", [])),
        _strs(d.get("no_split_modules", [])),
        _strs(d.get("notes", [])),
        _dict_of(d.get("versions", {}), lambda x: x is None or isinstance(x, str)),  # torch: None when unused
    ]
    if not all(checks):
        return False
    acc = d.get("accelerate")
    if acc is not None and not (
            _exact_keys(acc, {"model_class", "total_bytes", "largest_layer_bytes", "largest_layer_names"},
                        {"tied_params"}) and isinstance(acc["model_class"], str) and _num(acc["total_bytes"])
            and _num(acc["largest_layer_bytes"]) and _strs(acc["largest_layer_names"])
            and _int(acc.get("tied_params", 0))):
        return False
    ck = d.get("checkpoint")
    if ck is not None and not (
            isinstance(ck, dict) and all(_int(ck.get(k)) for k in ("files", "tensors", "elements", "bytes"))
            and all(_dict_of(ck.get(k, {}), _int) for k in ("elements_by_dtype", "bytes_by_dtype"))):
        return False
    tensors = d.get("tensors", [])
    return isinstance(tensors, list) and all(_valid_tensor(t) for t in tensors)


_TENSOR_INTS = ("count", "params", "in_features", "out_features", "bias")


def _valid_tensor(t) -> bool:
    """One ``meta_model.census`` group: role, name, count and params; a shape or in/out features."""
    return (isinstance(t, dict) and isinstance(t.get("role"), str) and isinstance(t.get("name"), str)
            and "count" in t and "params" in t and all(_int(t[k]) for k in _TENSOR_INTS if k in t)
            and ("shape" in t or ("in_features" in t and "out_features" in t))
            and (not isinstance(t.get("shape"), list) or all(_int(x) for x in t["shape"]))
            and ("shape" not in t or isinstance(t["shape"], list))
            and all(isinstance(t[k], bool) for k in ("tied", "conv1d") if k in t))


_REPORT_KEYS = {"model", "source", "revision", "provenance", "inventory", "notes", "from_result_cache", "config"}
_REPORT_OPTIONAL = {"layout"}  # entries written before composite repos have none: they load as plain models
_COMPONENT_KEYS = {"name", "library", "class_name", "role", "folder", "config", "inventory", "notes"}


def valid_layout(d) -> bool:
    """``d`` has the shape of ``hfmem.model.pipeline.Layout.to_dict()`` (or is None)."""
    if d is None:
        return True
    if not (_exact_keys(d, {"kind", "class_name", "components"}, {"library_version"})
            and isinstance(d["kind"], str) and isinstance(d["class_name"], str)
            and _str_or_none(d.get("library_version")) and isinstance(d["components"], list)):
        return False
    return all(_exact_keys(c, _COMPONENT_KEYS) and all(isinstance(c[k], str) for k in
                                                        ("name", "library", "class_name", "role", "folder"))
               and (c["config"] is None or isinstance(c["config"], dict)) and _strs(c["notes"])
               and (c["inventory"] is None or valid_inventory(c["inventory"])) for c in d["components"])


def valid_report(r) -> bool:
    """``r`` has the shape of ``hfmem.api.ModelReport.to_dict()``."""
    return (_exact_keys(r, _REPORT_KEYS, _REPORT_OPTIONAL) and isinstance(r["model"], str)
            and isinstance(r["source"], str)
            and _str_or_none(r["revision"]) and isinstance(r["provenance"], dict) and _strs(r["notes"])
            and isinstance(r["from_result_cache"], bool) and (r["config"] is None or isinstance(r["config"], dict))
            and valid_inventory(r["inventory"]) and valid_layout(r.get("layout")))


def _load(path: Path, key: str | None = None) -> CacheEntry | None:
    """The entry in ``path``, or None when it is missing, unreadable or ill-formed (for ``key`` if given)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # missing, unreadable, not UTF-8, not JSON, absurdly nested
        return None
    if not (isinstance(data, dict) and data.get("schema") == SCHEMA and isinstance(data.get("key"), str)
            and (key is None or data["key"] == key) and path.name == _name(data["key"])
            and _num(data.get("created")) and isinstance(data.get("report"), dict)):
        return None
    try:
        if data.get("sha256") != _checksum(data["report"]) or not valid_report(data["report"]):
            return None
    except (TypeError, ValueError, RecursionError):
        return None
    return CacheEntry(data["key"], float(data["created"]), data["report"], path)


def get(key: str) -> CacheEntry | None:
    """The entry for ``key``; None when there is none or it is ill-formed (the next ``put`` replaces it)."""
    return _load(_path(key), key)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder renamed into place, so a reader
    never sees half a file; the temporary file is removed if writing fails (OSError propagates)."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def put(key: str, report: dict) -> str | None:
    """Atomically write one entry. A cache that cannot be written (read-only, full) is not an error for the
    user: the answer is still given, from memory, and the returned note says so (None when written)."""
    try:
        write_atomically(_path(key), json.dumps({"schema": SCHEMA, "key": key, "created": time.time(),
                                                 "sha256": _checksum(report), "report": report}))
    except OSError as exc:
        return not_writable_note(exc)
    return None


def not_writable_note(exc: OSError) -> str:
    why = exc.strerror or exc.__class__.__name__
    return f"hfmem's cache at {cache_home()} is not writable ({why}): nothing cached"


def _is_tmp(path: Path) -> bool:
    return path.name.startswith(TMP_PREFIX)


def sweep_tmp(max_age_s: float = TMP_MAX_AGE_S) -> int:
    """Remove temporary files older than ``max_age_s`` (a killed writer's); a concurrent writer's stays."""
    removed = 0
    now = time.time()
    try:
        candidates = list(results_dir().glob(TMP_PREFIX + "*"))
    except OSError:
        return 0
    for tmp in candidates:
        try:
            if now - tmp.stat().st_mtime > max_age_s:
                tmp.unlink()
                removed += 1
        except OSError:
            continue
    return removed


def _files() -> list[Path]:
    try:
        return sorted(p for p in results_dir().glob("*.json") if not _is_tmp(p) and p.is_file())
    except OSError:
        return []


def entries() -> list[CacheEntry]:
    """The well-formed entries; ill-formed ones are skipped (each is a miss when its model is analysed)."""
    sweep_tmp()
    return [e for e in (_load(p) for p in _files()) if e is not None]


def clear(match: str | None = None) -> int:
    """Delete entries (those whose key contains ``match``, or all); returns how many were removed. Ill-formed
    entries, which can never be answered from, are removed too (and counted) whatever ``match`` says."""
    removed = 0
    for path in _files():
        if match is not None:
            entry = _load(path)
            if entry is not None and match not in entry.key:
                continue
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            from ..errors import HfmemError

            raise HfmemError(f"cannot remove {path} ({exc.strerror or exc.__class__.__name__}); removed {removed} "
                             "before it", hint="check the permissions of hfmem's cache folder") from None
    sweep_tmp()
    return removed
