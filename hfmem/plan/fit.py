"""Fit and solve for serving: does it fit this GPU, and the limits that do .

Each answer re-runs the closed-form estimate (``scenarios.inference.estimate_inference``, microseconds), so
the solvers are plain bisections over a quantity the memory grows with: context, batch, GPU count, weight
format. What "fits" means:

* transformers: ``device_total_bytes`` (nvidia-smi's view: reserved + CUDA context) ≤ the GPU's memory;
* vLLM: everything vLLM needs (weights, profiled activations, CUDA graphs, CUDA context, and the KV blocks
  for ``batch`` sequences of ``context`` tokens) ≤ ``gpu_memory_utilization`` × the GPU's memory: vLLM
  refuses to start otherwise ("No available memory for the cache blocks" / max-model-len too long).

"The GPU's memory" is ``GPU.usable_bytes``: the total CUDA reports to a process where the catalog has it
(vLLM sizes its budget from ``torch.cuda.mem_get_info()``'s total), else the catalog's ``memory_bytes``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from ..scenarios.inference import (InferenceEstimate, InferenceSettings, attention_heads, estimate_inference,
                                   kv_heads)
from ..scenarios.weights import FORMATS
from .gpus import GPU

MAX_CONTEXT_SEARCH = 1 << 24    # 16M tokens: beyond any model's declared context
MAX_BATCH_SEARCH = 1 << 20
MAX_TP = 64


@dataclass
class FitResult:
    gpu: str
    gpu_memory_bytes: int
    gpus: int
    capacity_bytes: int            # per GPU: the memory the engine may use
    gpu_usable_bytes: int          # the GPU memory the fit is judged on (CUDA-reported total when known)
    gpu_capacity_basis: str        # "cuda-total", or the catalog's memory_basis ("nvidia-smi", "marketed", ...)
    needed_bytes: int              # per GPU, at the given settings
    fits: bool
    headroom_bytes: int            # capacity - needed (negative when it does not fit)
    max_context: int | None        # at the given batch; None when not even 1 token fits
    max_context_limited_by: str | None  # "memory" or "model" (max_position_embeddings)
    max_batch: int | None          # at the given context (vLLM: concurrent sequences); 0 if none fits
    min_gpus: int | None           # fewest GPUs (tensor parallel) at the given settings; None: no count fits
    min_gpus_note: str | None
    weight_format_that_fits: str | None
    weight_formats: list[dict] = field(default_factory=list)  # every format tried: bytes and verdict
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


Estimator = Callable[[InferenceSettings], InferenceEstimate]


def capacity_bytes(gpu: GPU, settings: InferenceSettings) -> int:
    if settings.engine == "vllm":
        return int(settings.gpu_memory_utilization * gpu.usable_bytes)
    return int(gpu.usable_bytes)


def _fits(estimate: Estimator, settings: InferenceSettings, cap: int) -> bool:
    return estimate(settings).device_total_bytes <= cap


def largest_fitting(ok: Callable[[int], bool], lo: int, hi: int) -> int:
    """The largest n in [lo, hi] with ok(n), given ok(lo) and ok monotone decreasing: an exponential probe
    from lo (cheap when the answer is small), then bisection."""
    step = lo
    while step < hi and ok(min(hi, step * 2)):
        step = min(hi, step * 2)
    if step >= hi:
        return hi
    lo, hi = step, min(hi, step * 2) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def valid_tp_degrees(config: dict, limit: int = MAX_TP) -> list[int]:
    """Tensor-parallel degrees an engine accepts: the attention heads divide evenly, and the KV heads
    either divide evenly or are replicated a whole number of times (vLLM's checks)."""
    heads = attention_heads(config) or 1
    n_kv = kv_heads(config)
    out = []
    for tp in range(1, limit + 1):
        if heads % tp:
            continue
        if n_kv is not None and n_kv % tp and tp % n_kv:
            continue
        out.append(tp)
    return out


def solve(estimate: Estimator, settings: InferenceSettings, gpu: GPU, config: dict, *,
          formats: list[str] | None = None, checkpoint_format: str | None = None,
          model_max_context: int | None = None) -> FitResult:
    """Verdict and limits for ``settings`` on ``settings.tp`` GPUs of type ``gpu``."""
    s = replace(settings, gpu_memory_bytes=gpu.usable_bytes)
    cap = capacity_bytes(gpu, s)
    est = estimate(s)
    needed = est.device_total_bytes
    notes: list[str] = [gpu.capacity_note()]

    # max context at this batch
    hi_ctx = model_max_context or MAX_CONTEXT_SEARCH
    if _fits(estimate, replace(s, context=1), cap):
        max_ctx = largest_fitting(lambda c: _fits(estimate, replace(s, context=c), cap), 1, hi_ctx)
        limited = "model" if model_max_context and max_ctx == model_max_context else "memory"
    else:
        max_ctx, limited = None, None

    # max batch (vLLM: concurrent sequences) at this context
    if _fits(estimate, replace(s, batch=1), cap):
        max_b = largest_fitting(lambda b: _fits(estimate, replace(s, batch=b), cap), 1, MAX_BATCH_SEARCH)
    else:
        max_b = 0

    # fewest GPUs
    min_gpus, min_note = None, None
    degrees = valid_tp_degrees(config)
    for tp in degrees:
        if _fits(estimate, replace(s, tp=tp), cap):
            min_gpus = tp
            break
    if min_gpus is None:
        worst = estimate(replace(s, tp=degrees[-1]))
        min_note = (f"does not fit on any number of {gpu.name} up to tensor parallel {degrees[-1]}: "
                    f"{worst.device_total_bytes:,} B per GPU needed at tp={degrees[-1]} against "
                    f"{cap:,} B available (replicated parts, activations and KV per GPU)")
        notes.append(min_note)

    # weight formats, from the largest footprint down; suggest the least compressed one that fits
    tried: list[dict] = []
    best = None
    ceiling = None
    for fmt in formats or []:
        try:
            # --bnb-compute-dtype describes bitsandbytes' 4-bit Linear: it travels with the 4-bit formats only
            keep_bnb = FORMATS[fmt].family == "bnb4" if fmt in FORMATS else False
            e = estimate(replace(s, weights_format=fmt, compute_dtype=None,
                                 bnb_compute_dtype=s.bnb_compute_dtype if keep_bnb else None))
        except ValueError as exc:  # a format this model's shapes or settings cannot take
            tried.append({"format": fmt, "stored_weights_bytes": None, "device_total_bytes": None,
                          "fits": False, "error": str(exc)})
            continue
        ok = e.device_total_bytes <= cap
        tried.append({"format": fmt, "stored_weights_bytes": e.stored_weights_bytes,
                      "device_total_bytes": e.device_total_bytes, "fits": ok})
        if fmt == checkpoint_format:
            ceiling = e.stored_weights_bytes
    for row in tried:
        if row["stored_weights_bytes"] is None or (ceiling is not None and row["stored_weights_bytes"] > ceiling):
            continue  # never suggest a wider format than the checkpoint stores
        if row["fits"]:
            best = row["format"]
            break
    return FitResult(gpu=gpu.name, gpu_memory_bytes=gpu.memory_bytes, gpus=s.tp, capacity_bytes=cap,
                     gpu_usable_bytes=gpu.usable_bytes, gpu_capacity_basis=gpu.capacity_basis,
                     needed_bytes=needed, fits=needed <= cap, headroom_bytes=cap - needed, max_context=max_ctx,
                     max_context_limited_by=limited, max_batch=max_b, min_gpus=min_gpus, min_gpus_note=min_note,
                     weight_format_that_fits=best, weight_formats=tried, notes=notes)


def estimator_for(tensors: list[dict], config: dict, *, checkpoint_format: str, buffer_bytes: int,
                  checkpoint_stored_bytes: int | None) -> Estimator:
    def run(settings: InferenceSettings) -> InferenceEstimate:
        return estimate_inference(tensors, config, settings, checkpoint_format=checkpoint_format,
                                  buffer_bytes=buffer_bytes, checkpoint_stored_bytes=checkpoint_stored_bytes)
    return run


# -- the verdict with its margin (stated confidence) ------------------------------------------------------

@dataclass(frozen=True)
class FitVerdict:
    """``fits`` as a verdict: ``kind`` "fits" (the band's high end fits too), "fits-within-band" (the estimate
    fits, the band's high end does not) or "does-not-fit"; ``margin_bytes`` = capacity − needed;
    ``margin_low_bytes`` = capacity − the band's high end (None without a band); ``sentence`` says it."""

    kind: str
    sentence: str
    margin_bytes: int
    margin_low_bytes: int | None


def fit_verdict(capacity_bytes: int, needed_bytes: int, band: dict | None) -> FitVerdict:
    """The verdict for ``needed_bytes`` (the device total) against ``capacity_bytes``, given the device total's
    ``band`` from ``plan.confidence.confidence_of`` (low_bytes, high_bytes, level, cases; None: no band)."""
    from ..units import format_binary as size

    margin = int(capacity_bytes) - int(needed_bytes)
    if band is None:
        if margin >= 0:
            return FitVerdict("fits", f"fits with {size(margin)} to spare (no measured band for the device total)",
                              margin, None)
        return FitVerdict("does-not-fit", f"does not fit (needs {size(-margin)} more)", margin, None)
    high, low = int(band["high_bytes"]), int(band["low_bytes"])
    margin_low = int(capacity_bytes) - high
    est = int(needed_bytes)
    # the band of the measured value relative to the estimate: what a user reads as "−X%/+Y%"
    rel = f"{low / est - 1:+.1%}/{high / est - 1:+.1%}" if est else "-"
    claim = f"{band['level']:.0%} band from {band['cases']} measured cases"
    if margin < 0:
        tail = f"; within the band a run may need as little as {size(low)}" if low <= capacity_bytes else ""
        return FitVerdict("does-not-fit", f"does not fit (needs {size(-margin)} more{tail})", margin, margin_low)
    if margin_low >= 0:
        return FitVerdict("fits", f"fits with {size(margin)} to spare; {claim}: a run lands within {rel} of the "
                                  f"estimate, at most {size(high)} ({size(margin_low)} to spare)", margin, margin_low)
    return FitVerdict("fits-within-band", f"fits, but within the band: a run may need up to {size(high)} "
                                          f"({size(-margin_low)} more than the {size(capacity_bytes)} available; "
                                          f"{claim})", margin, margin_low)
