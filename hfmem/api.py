"""The public Python API: ``analyze`` a model (source → metadata → inventory) and build its calculator table.

The CLI is a thin layer over these functions; everything it prints is in the objects returned here.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import HfmemError, HubUnavailableError, OfflineMissError, UnsupportedArchitectureError, UsageError
from .inventory.model import Inventory
from .scenarios.calculator import CalculatorTable, calculator_table

if TYPE_CHECKING:
    from .simulate import SimResult
from .sources import FetchedMetadata, env_flag
from .sources import resultcache, snapshot
from .sources.local import load_local, looks_like_path

_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.\-]{0,95}/)?[A-Za-z0-9][\w.\-]{0,95}$")
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class ModelReport:
    """One analysed model: where its metadata came from and its exact inventory."""

    model: str  # as given
    source: str  # "hub", "local", "hf-cache", "snapshot"
    revision: str | None  # commit sha, snapshot id, or None for a local folder
    provenance: dict
    inventory: Inventory
    notes: list[str] = field(default_factory=list)  # about the source (offline, cache); inventory notes apart
    from_result_cache: bool = False
    config: dict | None = None  # config.json as read (simulate builds the model from it)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inventory"] = self.inventory.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelReport":
        d = dict(d)
        d["inventory"] = Inventory.from_dict(d["inventory"])
        return cls(**d)

    def table(self, mode: str = "exact", adam_rule: str | None = None) -> CalculatorTable:
        return calculator_table(self.inventory, mode, adam_rule)


@dataclass
class Options:
    revision: str | None = None
    token: str | None = None
    offline: bool = False
    trust_remote_code: bool = False
    use_cache: bool = True  # read the result cache (a fresh analysis is always written)
    headers_only: bool = False  # count from safetensors headers alone: no torch, no model code
    progress: Callable[[str], None] | None = None  # told what slow step starts (the CLI prints it on a TTY)


def _build(meta: FetchedMetadata, opts: Options) -> Inventory:
    from .inventory.build import build_inventory

    if opts.progress:
        opts.progress(f"counting {meta.config.origin} (first analysis; later runs answer from hfmem's cache)")
    return build_inventory(meta.config, meta.headers, trust_remote_code=opts.trust_remote_code,
                           code_location=meta.code_location, revision=meta.revision if meta.source == "hub" else None,
                           token=opts.token, headers_only=opts.headers_only)


def _key(*parts: object) -> str:
    return "|".join(str(p) for p in parts)


def _variant(opts: Options) -> str:
    """The options that change an inventory, for the cache key."""
    return "headers" if opts.headers_only else ("remote-code" if opts.trust_remote_code else "default")


def _cached(key: str, opts: Options, *, max_age_s: float | None) -> ModelReport | None:
    if not opts.use_cache:
        return None
    entry = resultcache.get(key)
    if entry is None or (max_age_s is not None and entry.age_s() > max_age_s):
        return None
    report = ModelReport.from_dict(entry.report)
    report.from_result_cache = True
    return report


def _store(key: str, report: ModelReport) -> None:
    """Cache what the analysis found; how this run got it (fallback notes, cache hit) is not stored."""
    data = report.to_dict()
    data["from_result_cache"] = False
    resultcache.put(key, data)


def _analyze_local(ref: str, folder: Path, opts: Options) -> ModelReport:
    if not folder.is_dir():
        raise UsageError(f"{ref} is not a folder", hint="give a model folder with config.json, or a Hub repo id")
    from .sources.local import fingerprint

    key = _key("local", folder.resolve(), fingerprint(folder), _variant(opts))
    hit = _cached(key, opts, max_age_s=None)
    if hit:
        return hit
    meta = load_local(folder)
    report = ModelReport(ref, "local", None, meta.provenance, _build(meta, opts), config=meta.config.raw)
    _store(key, report)
    return report


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
    notes = [f"{reason}: answered from hfmem's shipped snapshot {entry.snapshot_id} "
             f"({entry.provenance.get('origin', 'snapshot')}); the Hub's current revision may differ"]
    if _variant(opts) != "default":
        notes.append("the snapshot's inventory was computed without --headers-only/--trust-remote-code")
    return ModelReport(repo_id, "snapshot", entry.provenance.get("sha") or f"snapshot-{entry.snapshot_id}",
                       entry.provenance, Inventory.from_dict(entry.inventory), notes, config=entry.config)


def _analyze_offline(repo_id: str, opts: Options, reason: str, branch_key: str) -> ModelReport:
    hit = _cached(branch_key, opts, max_age_s=None)
    if hit:
        hit.notes.append(f"{reason}: answered from hfmem's result cache")
        return hit
    from .sources.hub import load_hf_cache

    meta = load_hf_cache(repo_id, opts.revision)
    if meta is not None:
        key = _key("hf-cache", repo_id, meta.revision, _variant(opts))
        report = _cached(key, opts, max_age_s=None)
        if report is None:
            report = ModelReport(repo_id, "hf-cache", meta.revision, meta.provenance, _build(meta, opts),
                                 config=meta.config.raw)
            _store(key, report)
        report.notes.append(f"{reason}: answered from the Hugging Face cache ({meta.provenance['path']})")
        return report
    report = _from_snapshot(repo_id, opts, reason)
    if report is not None:
        return report
    raise OfflineMissError(
        f"{repo_id} is not available offline ({reason}): it is in neither hfmem's result cache, the Hugging "
        "Face cache, nor the shipped snapshot",
        hint="connect to the Hub once, or download its config.json (`hf download REPO config.json`)")


def analyze(model: str, options: Options | None = None, **kwargs) -> ModelReport:
    """Analyse one model: a local folder or a Hub repo id. Keyword arguments are ``Options`` fields."""
    opts = options or Options(**kwargs)
    if looks_like_path(model):
        return _analyze_local(model, Path(model).expanduser(), opts)
    repo_id = model
    if not _REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id:
        raise UsageError(f"{model!r} is neither a folder nor a Hub repo id",
                         hint="use ORG/NAME (e.g. baichuan-inc/Baichuan-7B) or a path to a model folder")
    endpoint = os.environ.get("HF_ENDPOINT", "")
    rev = opts.revision or "main"
    branch_key = _key("hub", endpoint, repo_id, rev, _variant(opts))
    # A commit sha never changes; a branch is trusted for the cache TTL while online.
    hit = _cached(branch_key, opts, max_age_s=None if _SHA.match(rev) else resultcache.ttl_s())
    if hit:
        return hit
    if opts.offline or env_flag("HF_HUB_OFFLINE"):
        return _analyze_offline(repo_id, opts, "offline mode", branch_key)
    from .sources import hub

    age = hub.recently_unreachable()
    if age is not None:
        return _analyze_offline(repo_id, opts, f"the Hub was unreachable {age:.0f} s ago (rechecked after "
                                f"HFMEM_HUB_RECHECK_S={hub.recheck_s():.0f} s)", branch_key)
    started = time.monotonic()
    try:
        info = hub.model_info(repo_id, opts.revision, opts.token)
        hub.mark_unreachable(reachable=True)
        sha_key = _key("hub", endpoint, repo_id, info.sha, _variant(opts))
        hit = _cached(sha_key, opts, max_age_s=None)
        if hit:
            _store(branch_key, hit)  # refresh the branch entry's age: the sha did not move
            return hit
        meta = hub.fetch_hub(repo_id, info, opts.token, opts.revision)
    except HubUnavailableError as exc:
        if exc.network:
            hub.mark_unreachable()
        reason = f"the Hub is unavailable ({exc.message}, after {time.monotonic() - started:.1f} s)"
        return _analyze_offline(repo_id, opts, reason, branch_key)
    report = ModelReport(repo_id, "hub", meta.revision, meta.provenance, _build(meta, opts), config=meta.config.raw)
    if report.provenance.get("gated"):
        report.notes.append("gated repository: read with your token")
    _store(sha_key, report)
    _store(branch_key, report)
    return report


def analyze_many(models: list[str], options: Options | None = None, *,
                 on_error: Callable[[str, HfmemError], None] | None = None, **kwargs) -> list[ModelReport]:
    """Analyse several models. Without ``on_error`` the first failure raises; with it, each failing model is
    handed to ``on_error`` and left out, so the others are still answered."""
    opts = options or Options(**kwargs)
    reports = []
    for m in models:
        try:
            reports.append(analyze(m, opts))
        except HfmemError as exc:
            if on_error is None:
                raise
            on_error(m, exc)
    return reports


# ---------------------------------------------------------------- simulate


@dataclass
class SimulationReport:
    """``hfmem simulate``'s answer for one model: where it came from and what the simulation measured."""

    report: ModelReport
    result: "SimResult"
    notes: list[str] = field(default_factory=list)


def simulation_config(report: ModelReport) -> dict:
    """The config the simulation builds: the repo's own, or for a mapped custom-code family its
    transformers equivalent (same tensors)."""
    from .simulate import SimulationError

    inv = report.inventory
    if report.config is None:
        raise SimulationError(f"{report.model}: no config.json at hand for the simulation",
                              hint="run with --no-cache to fetch it again")
    if inv.method == "meta-model":
        return report.config
    if inv.method == "meta-model (mapped)":
        from .metadata.custom_maps import map_custom_config

        mapped = map_custom_config(report.config)
        return dict(mapped.config, model_type=mapped.model_type, architectures=[mapped.architecture])
    raise SimulationError(
        f"{report.model}: model_type '{inv.model_type}' has no transformers implementation to run "
        f"({inv.method}); hfmem simulates transformers' own model code only",
        hint="use `hfmem calc` for its weights, or a model transformers implements")


def simulate_model(model: str, mode: str = "train", options: Options | None = None,
                   **settings) -> SimulationReport:
    """Run ``hfmem simulate`` for one model: resolve it like ``analyze``, then simulate a training step
    (``mode="train"``: batch, seq, dtype, attn, grad_ckpt, optimizer, optimizer_impl, amp, iterations,
    gpu_emulation, lora) or a prefill + decode (``mode="infer"``: batch, context, new_tokens, dtype, attn,
    gpu_emulation)."""
    from . import simulate as sim

    opts = options or Options()
    report = analyze(model, opts)
    if report.config is None:  # an entry cached by an older hfmem: fetch again
        report = analyze(model, Options(**{**opts.__dict__, "use_cache": False}))
    config = simulation_config(report)
    if opts.progress:
        opts.progress(f"simulating {model} ({mode}) on fake tensors")
    if mode == "train":
        result = sim.simulate_train(config, **settings)
    elif mode == "infer":
        result = sim.simulate_infer(config, **settings)
    else:
        raise UsageError(f"unknown mode {mode!r}", hint="use --mode train or --mode infer")
    notes = list(report.notes)
    if report.inventory.method == "meta-model (mapped)":
        notes.append(f"custom '{report.inventory.model_type}' code not run: simulated as "
                     f"{report.inventory.architecture} (same tensors; the custom code's own buffers and "
                     "kernels are not modelled)")
    return SimulationReport(report, result, notes)
