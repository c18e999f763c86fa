"""The plan search: settings tried against the memory budget of one GPU model.

* ``search_plan``: the cheapest combination that fits: fewest GPUs first, then the training method as asked
  (full > LoRA > QLoRA: "能跑全参就别跑 Lora"), then the least slowdown, the fewest changes, the least memory;
  its ``alternatives`` give, for each method the plan had to give up, the fewest GPUs that keep it;
* ``max_batch`` / ``max_seq``: the largest micro-batch (at this seq) and sequence length (at this batch) that
  fit as asked, by bisection; 0 when even 1 does not fit.

"Fits" means ``device_total_bytes`` (nvidia-smi's view: reserved + CUDA context [+ NCCL]) of the busiest GPU
≤ the GPU's memory. Pure (no I/O) and bounded: a few hundred estimates at most.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace

from .. import vocab
from ..scenarios.finetune import TrainSettings
from .changes import Estimator, Runner, changed_fields, half_precision, lora_settings, zero_settings
from .fit import largest_fitting
from .flags import describe_changes, fmt_bytes, train_command
from .gpus import GPU
from .speed import slowdown

MAX_PLAN_GPUS = 64
# The largest micro-batch / sequence length the bisections try (hfmem.api.train's max_batch / max_seq too).
MAX_BATCH_SEARCH = 1 << 16
MAX_SEQ_SEARCH = 1 << 22


@dataclass
class Plan:
    gpus: int
    changes: dict                    # TrainSettings fields that differ from the settings as asked
    settings: dict                   # the whole TrainSettings of the plan
    device_total_bytes: int
    headroom_bytes: int
    cpu_bytes: int
    method: str
    slowdown: float
    slowdown_parts: list[str]
    sentence: str
    command: str                     # the hfmem train command line that estimates it

    def to_dict(self) -> dict:
        return asdict(self)


def gpu_counts(settings: TrainSettings, limit: int = MAX_PLAN_GPUS) -> list[int]:
    """The current GPU count, then x2, x4, ... up to ``limit`` (only the current one when it is above)."""
    out, g = [], settings.gpus
    while True:
        out.append(g)
        g *= 2
        if g > limit:
            return out


def _methods(s: TrainSettings) -> list[str]:
    order = ["full", "lora", "qlora"]
    return order[order.index(s.method):]


@dataclass(frozen=True)
class _Group:
    method: str
    sharding: tuple  # ("keep",) or (stage, offload_optimizer, offload_param)


def _group_base(s: TrainSettings, gpu: GPU, grp: _Group, gpus: int) -> TrainSettings:
    new = replace(s, gpus=gpus)
    if grp.method != s.method:
        new = lora_settings(new, grp.method, gpu)
    if grp.sharding == _FSDP:
        prec = new.precision
        if prec.startswith("deepspeed"):
            prec = half_precision(s, gpu)  # FSDP trains with torch precisions
        new = replace(new, zero=None, offload_optimizer=False, offload_param=False, fsdp="full_shard",
                      precision=prec)
    elif grp.sharding != ("keep",):
        new = zero_settings(new, gpu, *grp.sharding)
    return new


def _options(s: TrainSettings, gpu: GPU, grp: _Group, new: TrainSettings) -> dict[str, list]:
    """The other dimensions: keep (first) or the memory-saving value."""
    opts: dict[str, list] = {"metrics": [False], "precision": [None], "attn": [None], "ckpt": [False],
                             "batch": [False]}
    if s.full_logits_metrics:
        opts["metrics"].append(True)
    if new.zero is None and new.precision in ("fp32", "amp-bf16", "amp-fp16"):
        opts["precision"].append(half_precision(s, gpu))
    elif new.zero is not None and new.precision == "fp32":  # DeepSpeed's own 16-bit mixed precision
        opts["precision"].append("deepspeed-fp16" if half_precision(s, gpu) == "fp16" else "deepspeed-bf16")
    if new.attn != "flash" and gpu.bf16 is not False:
        opts["attn"].append("flash")
    if not new.grad_ckpt:
        opts["ckpt"].append(True)
    if new.batch > 1:
        opts["batch"].append(True)
    return opts


def _apply(new: TrainSettings, metrics: bool, precision: str | None, attn: str | None, ckpt: bool,
           batch: bool) -> TrainSettings:
    if metrics:
        new = replace(new, full_logits_metrics=False)
    if precision:
        new = replace(new, precision=precision)
    if attn:
        new = replace(new, attn=attn)
    if ckpt:
        new = replace(new, grad_ckpt=True)
    if batch:
        new = replace(new, batch=1, grad_accum=new.grad_accum * new.batch)
    return new


def candidates(settings: TrainSettings, gpu: GPU, gpus: int, method: str | None = None) -> list[TrainSettings]:
    """Every combination the plan search considers at ``gpus`` GPUs (for one method, or all): the training
    method (as asked, LoRA, QLoRA), sharding (as asked, ZeRO-1, ZeRO-2, ZeRO-2 + optimizer offload, ZeRO-3,
    ZeRO-3 + optimizer offload, ZeRO-3 + optimizer and parameter offload, FSDP full_shard — the only sharding
    this estimator takes with LoRA/QLoRA), and each of: dropping full-logit metrics, pure 16-bit precision,
    flash attention (not before Ampere), activation checkpointing, micro-batch 1 + accumulation. Tensor /
    pipeline degrees, sequence length, optimizer and model are kept."""
    out, seen = [], set()
    for grp in _groups(settings, method):
        base = _group_base(settings, gpu, grp, gpus)
        o = _options(settings, gpu, grp, base)
        for s in _settings_of(base, o):
            if repr(s) not in seen:
                seen.add(repr(s))
                out.append(s)
    return out


def _settings_of(base: TrainSettings, o: dict) -> list[TrainSettings]:
    """Every combination of a group's options (metrics × precision × attention × checkpointing × batch)."""
    return [_apply(base, m, p, a, k, b) for m, p, a, k, b in itertools.product(
        o["metrics"], o["precision"], o["attn"], o["ckpt"], o["batch"])]


_FSDP = ("fsdp", vocab.TRAIN_FSDP_STRATEGIES[0])  # full_shard
_SHARDINGS = [(1, False, False), (2, False, False), (2, True, False), (3, False, False), (3, True, False),
              (3, True, True), _FSDP]


def _groups(s: TrainSettings, method: str | None) -> list[_Group]:
    out = []
    for m in ([method] if method else _methods(s)):
        out.append(_Group(m, ("keep",)))
        for sh in _SHARDINGS:
            current = ("fsdp", s.fsdp) if s.fsdp else (s.zero, s.offload_optimizer, s.offload_param)
            if current != sh:
                out.append(_Group(m, sh))
    return out


def _rank_key(base: TrainSettings, s: TrainSettings) -> tuple:
    sd = slowdown(base, s)[0]
    return (sd, len(changed_fields(base, s)))


def _best_at(run: Runner, s: TrainSettings, gpu: GPU, gpus: int, method: str, errors: dict[str, str]):
    """The best fitting candidate for ``method`` at ``gpus`` GPUs, or None.

    Pruning: each group (method x sharding) is first estimated with every memory-saving option on; if that
    does not fit, no member of the group is estimated (each option only ever lowers memory in the estimator).
    The survivors are estimated in order of (slowdown, number of changes) and the first key that fits wins
    (the least memory among equal keys)."""
    cap = gpu.usable_bytes
    pool = []
    for grp in _groups(s, method):
        base = _group_base(s, gpu, grp, gpus)
        o = _options(s, gpu, grp, base)
        floor = _apply(base, o["metrics"][-1], o["precision"][-1], o["attn"][-1], o["ckpt"][-1], o["batch"][-1])
        t = run.total(floor)
        if t is None:
            try:
                run(floor)
            except Exception as exc:
                msg = f"{type(exc).__name__}: {exc}"
                errors.setdefault(msg, f"{describe_changes(s, floor)} on {gpus} GPU(s)")
            # try the group anyway without the pruning bound
        elif t > cap:
            continue
        for cand in _settings_of(base, o):
            pool.append((_rank_key(s, cand), cand))
    pool.sort(key=lambda x: x[0])
    best, best_key = None, None
    for key, cand in pool:
        if best_key is not None and key != best_key:
            break
        t = run.total(cand)
        if t is None or t > cap:
            continue
        if best is None or t < best[1]:
            best, best_key = (cand, t), key
    return best


def _plan(run: Runner, base: TrainSettings, s: TrainSettings, gpu: GPU, total: int, config: dict) -> Plan:
    e = run(s)
    sd, words, _ = slowdown(base, s)
    what = describe_changes(base, s)
    gpus = f"{s.gpus} x {gpu.name}" if s.gpus > 1 else f"one {gpu.name}"
    if not changed_fields(base, s):
        sentence = f"Fits as asked on {gpus}: {fmt_bytes(total)} per GPU of {fmt_bytes(gpu.usable_bytes)}."
    else:
        sentence = (f"Fits on {gpus} with {what}: {fmt_bytes(total)} per GPU of {fmt_bytes(gpu.usable_bytes)}"
                    + (f", {fmt_bytes(e.cpu_bytes)} CPU RAM per node" if e.cpu_bytes else "")
                    + (f"; about {sd:.2f}x the step time as asked ({'; '.join(words)})" if words else
                       "; no slower")
                    + ".")
    return Plan(gpus=s.gpus, changes=changed_fields(base, s), settings=s.to_dict(), device_total_bytes=total,
                headroom_bytes=gpu.usable_bytes - total, cpu_bytes=e.cpu_bytes, method=s.method, slowdown=sd,
                slowdown_parts=words, sentence=sentence, command=train_command(config, s, gpu))


def search_plan(run: Estimator, settings: TrainSettings, gpu: GPU, *, limit: int = MAX_PLAN_GPUS,
                model_config: dict | None = None):
    """(plan or None, reason or None, alternatives, search info).

    GPU counts: the current one, x2, x4, ... up to ``limit`` (64). Order: fewest GPUs, then the training method
    as asked before LoRA before QLoRA (a method change wins only with strictly fewer GPUs), then least
    slowdown, fewest changed settings, least memory. Bounded: each method stops at the first GPU count where
    it fits, and at the count where an earlier method already fits; inside a count, ``_best_at`` prunes whole
    groups and stops at the first rank that fits. ``alternatives``: for each method better ranked than the
    plan's, its own fewest-GPU plan (listed when one exists up to ``limit`` with fewer GPUs than every
    method ranked above it: a LoRA plan needing as many GPUs as full fine-tuning is not an alternative)."""
    run = run if isinstance(run, Runner) else Runner(run)
    counts = gpu_counts(settings, limit)
    errors: dict[str, str] = {}  # estimator error -> the first combination that raised it
    found: dict[str, tuple[int, TrainSettings, int]] = {}
    stop_at = None  # a later method wins only with strictly fewer GPUs than an earlier method's plan
    for method in _methods(settings):
        for g in counts:
            if stop_at is not None and g >= stop_at:
                break
            best = _best_at(run, settings, gpu, g, method, errors)
            if best is not None:
                found[method] = (g, best[0], best[1])
                stop_at = g if stop_at is None else min(stop_at, g)
                break
    info = {"gpu_counts": counts, "methods": _methods(settings),
            "dimensions": ["training method", "ZeRO stage and offload, or FSDP full_shard", "full-logit metrics",
                           "pure 16-bit precision", "flash attention", "activation checkpointing",
                           "micro-batch 1 + accumulation"],
            "kept": "tensor / pipeline parallel degrees, sequence length, optimizer, model",
            "estimates": run.calls,
            "errors": [f"{where}: {msg}" for msg, where in errors.items()]}
    if not found:
        reason = (f"nothing searched fits {gpu.name} ({fmt_bytes(gpu.usable_bytes)}) with up to {counts[-1]} GPUs: "
                  "not even QLoRA / ZeRO-3 with offload, activation checkpointing and micro-batch 1; "
                  "shorten the sequence (max_seq), use tensor / pipeline parallelism or a larger GPU")
        return None, reason, [], info
    order = _methods(settings)
    best_m = min(found, key=lambda m: (found[m][0], order.index(m)))
    g, s, total = found[best_m]
    plan = _plan(run, settings, s, gpu, total, model_config or {})
    alts = [_plan(run, settings, found[m][1], gpu, found[m][2], model_config or {}) for m in order
            if m in found and m != best_m and order.index(m) < order.index(best_m)]
    info["estimates"] = run.calls
    return plan, None, alts, info


# -- limits as asked -------------------------------------------------------------------------------------

def max_batch(run: Estimator, settings: TrainSettings, gpu: GPU, hi: int = MAX_BATCH_SEARCH) -> int:
    """The largest micro-batch at ``settings.seq`` that fits (0 when 1 does not)."""
    run = run if isinstance(run, Runner) else Runner(run)
    ok = lambda b: _fits_total(run, replace(settings, batch=b), gpu)  # noqa: E731
    return largest_fitting(ok, 1, hi) if ok(1) else 0


def max_seq(run: Estimator, settings: TrainSettings, gpu: GPU, hi: int = MAX_SEQ_SEARCH) -> int:
    """The largest sequence length at ``settings.batch`` that fits (0 when 1 does not)."""
    run = run if isinstance(run, Runner) else Runner(run)
    ok = lambda q: _fits_total(run, replace(settings, seq=q), gpu)  # noqa: E731
    return largest_fitting(ok, 1, hi) if ok(1) else 0


def _fits_total(run: Estimator, s: TrainSettings, gpu: GPU) -> bool:
    r = run if isinstance(run, Runner) else Runner(run)
    t = r.total(s)
    return t is not None and t <= gpu.usable_bytes
