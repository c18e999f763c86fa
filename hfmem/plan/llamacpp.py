"""Fit and solve for llama.cpp: does a GGUF variant fit the GPUs at the settings, the largest context that
fits, the most layers that fit (``-ngl``), and the best quant variant of a repo for the GPUs and context.

"Best" is llama.cpp's own quality order: the list of quantization types in tools/quantize/quantize.cpp
(``QUANT_OPTIONS``), which llama-quantize prints with each type's size and perplexity increase on its reference
model; a variant whose label is not in that list (a publisher's own mix such as unsloth's ``UD-Q4_K_XL``) is
placed by its bits per weight among the listed ones, and the answer says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..scenarios.llamacpp import KV_PAD, LlamaCppEstimate, LlamaCppSettings, estimate_llamacpp

# Meta-Llama-3-8B's parameter count (meta-llama/Meta-Llama-3-8B: 8,030,261,248), the model llama-quantize's size
# and perplexity figures are quoted for; turns a figure's file size (GiB) into bits per weight.
LLAMA3_8B_PARAMS = 8_030_261_248
_PPL = re.compile(r"^\s*([\d.]+)G,\s*([+-][\d.]+) ppl @ Llama-3-8B")
_BPW = re.compile(r"^\s*([\d.]+)\s*bpw")


def _quality_order() -> tuple[str, ...]:
    """Highest quality first, from llama.cpp's own quant table (hfmem/reference/llamacpp.py QUANT_TABLE,
    tools/quantize/quantize.cpp QUANT_OPTIONS): F32, BF16, F16 first (lossless or nearly); then every type with
    a perplexity figure on Llama-3-8B, by that figure; a type the table describes by bits per weight alone
    (the IQ and TQ types) goes right after the last figured type at or above its bits per weight."""
    from ..reference.llamacpp import QUANT_TABLE

    figured, by_bpw = [], []
    for q in QUANT_TABLE:
        m = _PPL.match(q.description)
        if m:
            figured.append((float(m.group(2)), q.name, float(m.group(1)) * 2**30 * 8 / LLAMA3_8B_PARAMS))
            continue
        b = _BPW.match(q.description)
        if b:
            by_bpw.append((q.name, float(b.group(1))))
    figured.sort()
    order = ["F32", "BF16", "F16"] + [name for _, name, _ in figured]
    bpw_of = {name: bpw for _, name, bpw in figured}
    for name, bpw in sorted(by_bpw, key=lambda x: -x[1]):
        above = [i for i, n in enumerate(order) if bpw_of.get(n, 99.0) >= bpw]
        order.insert(max(above) + 1, name)
    return tuple(order)


QUALITY_ORDER: tuple[str, ...] = _quality_order()


def _aliases() -> dict[str, str]:
    """QUANT_OPTIONS's "alias for Q4_K_M" entries: Q3_K, Q4_K, Q5_K."""
    from ..reference.llamacpp import QUANT_TABLE

    return {q.name: q.description.split("alias for ", 1)[1].strip() for q in QUANT_TABLE
            if q.description.startswith("alias for ")}


def quality_rank(label: str, bits_per_weight: float | None = None,
                 known_bpw: dict[str, float] | None = None) -> tuple[float, bool]:
    """(rank, listed): a lower rank is better. An unlisted label ranks just after the listed variant of the same
    repo with the nearest bits per weight at or above its own (``known_bpw``: label → bpw of the repo's listed
    variants), or last when nothing is known."""
    key = label.upper()
    key = _aliases().get(key, key)
    if key in QUALITY_ORDER:
        return float(QUALITY_ORDER.index(key)), True
    if bits_per_weight is not None and known_bpw:
        above = [QUALITY_ORDER.index(k.upper()) for k, b in known_bpw.items()
                 if k.upper() in QUALITY_ORDER and b >= bits_per_weight]
        if above:
            return max(above) + 0.5, False
        return -0.5, False
    return float(len(QUALITY_ORDER)), False


@dataclass
class LlamaCppFit:
    gpu_name: str
    gpu_bytes: int                    # usable bytes per GPU (mixed devices: the smallest)
    fits: bool
    max_context: int | None           # the largest context per sequence that fits with these layers (None: none)
    max_gpu_layers: int               # the most -ngl that fits at this context (0..n_layer+1)
    ram_bytes: int | None = None
    ram_fits: bool | None = None
    device_bytes: tuple[int, ...] | None = None  # mixed devices: each GPU's usable bytes, in device order

    def margin_bytes(self, est: "LlamaCppEstimate") -> int:
        """The least memory left on any GPU (negative: short by that much)."""
        caps = self.device_bytes or (self.gpu_bytes,) * len(est.gpus)
        return min((cap - d.total_bytes for d, cap in zip(est.gpus, caps)), default=self.gpu_bytes)


def capacities(gpu, devices, count: int) -> "int | tuple[int, ...] | None":
    """What each GPU is judged on: one number for identical GPUs (``gpu.usable_bytes``), or one per device in
    device order when ``devices`` (detected, mixed) differ."""
    if gpu is None:
        return None
    if devices and len(devices) == count and len({d.usable_bytes for d in devices}) > 1:
        return tuple(int(d.usable_bytes) for d in devices)
    return int(gpu.usable_bytes)


def fits(est: LlamaCppEstimate, gpu_bytes: "int | tuple[int, ...]", ram_bytes: int | None = None) -> bool:
    """Every GPU's total within its memory (``gpu_bytes``: the same for all, or one per device in order)."""
    caps = gpu_bytes if isinstance(gpu_bytes, tuple) else (gpu_bytes,) * len(est.gpus)
    ok = all(d.total_bytes <= cap for d, cap in zip(est.gpus, caps) if d.total_bytes > 0)
    if ram_bytes is not None:
        ok = ok and est.cpu.total_bytes <= ram_bytes
    return ok


def _est(headers, model, s, projector_bytes):
    return estimate_llamacpp(headers, model, s, projector_bytes=projector_bytes)


def max_context(headers, model, s: LlamaCppSettings, gpu_bytes: "int | tuple[int, ...]", *, ram_bytes: int | None = None,
                projector_bytes: int = 0, cap: int | None = None) -> int | None:
    """The largest context per sequence (a multiple of 256 / parallel cells) that fits, by bisection; at most
    ``cap`` (the model's trained context by default)."""
    cap = cap or model.n_ctx_train or 131072
    step = max(1, KV_PAD // s.parallel)

    def ok(ctx: int) -> bool:
        return fits(_est(headers, model, replace(s, context=ctx), projector_bytes), gpu_bytes, ram_bytes)

    lo, hi = step, max(step, cap // step * step)
    if not ok(lo):
        return None
    if ok(hi):
        return hi
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if mid <= lo:
            break
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def max_gpu_layers(headers, model, s: LlamaCppSettings, gpu_bytes: "int | tuple[int, ...]", *, projector_bytes: int = 0,
                   ram_bytes: int | None = None) -> int:
    """The largest ``-ngl`` (0 .. n_layer + 1) that fits; memory grows with every layer offloaded."""
    lo, hi = 0, model.n_layer + 1

    def ok(n: int) -> bool:
        return fits(_est(headers, model, replace(s, n_gpu_layers=n), projector_bytes), gpu_bytes, ram_bytes)

    if ok(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def solve(headers, model, s: LlamaCppSettings, est: LlamaCppEstimate, gpu_name: str,
          gpu_bytes: "int | tuple[int, ...]", *,
          ram_bytes: int | None = None, projector_bytes: int = 0) -> LlamaCppFit:
    ok = fits(est, gpu_bytes, ram_bytes)
    mixed = isinstance(gpu_bytes, tuple)
    return LlamaCppFit(
        gpu_name=gpu_name, gpu_bytes=min(gpu_bytes) if mixed else gpu_bytes, fits=ok,
        device_bytes=gpu_bytes if mixed else None,
        max_context=max_context(headers, model, s, gpu_bytes, ram_bytes=ram_bytes, projector_bytes=projector_bytes),
        max_gpu_layers=max_gpu_layers(headers, model, s, gpu_bytes, projector_bytes=projector_bytes,
                                      ram_bytes=ram_bytes),
        ram_bytes=ram_bytes, ram_fits=None if ram_bytes is None else est.cpu.total_bytes <= ram_bytes)
