"""The out-of-memory advisor: what to do when a fine-tune does not fit.

``advise(estimate_fn, settings, gpu, model_config=...)`` re-runs the closed-form training estimate
(``estimate_fn(settings) -> TrainEstimate``, well under a millisecond) under changed settings and answers:

* ``remedies``: the usual out-of-memory checklist ("显存不足怎么办", what to do when memory runs out), cheapest
  first, each applied *alone* to the settings as asked and quantified for this model: the settings it
  changes, the bytes it saves per GPU (negative when it costs memory), the per-GPU total after it, whether
  that fits, whether it applies at all here, and its price in speed / quality with a rough step-time factor
  (``slowdown``, relative to the settings as asked) and the factor's source where one exists;
* ``plan``: the cheapest combination that fits (see ``search_plan``): fewest GPUs first, then the training
  method as asked (full > LoRA > QLoRA: "能跑全参就别跑 Lora"), then the least slowdown, the fewest changes,
  the least memory; ``alternatives`` gives, for each method the plan had to give up, the fewest GPUs that
  keep it;
* ``max_batch`` / ``max_seq``: the largest micro-batch (at this seq) and sequence length (at this batch) that
  fit as asked, by bisection; 0 when even 1 does not fit.

"Fits" means ``device_total_bytes`` (nvidia-smi's view: reserved + CUDA context [+ NCCL]) of the busiest GPU
≤ the GPU's memory. The advisor is pure (no I/O) and bounded: a few hundred estimates at most.

Speed factors (``SLOWDOWN``) are step-time multipliers. Where a paper gives a number it is cited; every
other factor is labelled rough (an order of magnitude to rank plans by, not a prediction).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from ..scenarios.finetune import TrainEstimate, TrainSettings
from ..units import format_binary
from .fit import largest_fitting
from .gpus import GPU

Estimator = Callable[[TrainSettings], TrainEstimate]

MAX_PLAN_GPUS = 64
MAX_BATCH_SEARCH = 1 << 16     # the same bounds as hfmem.api.train's max_batch / max_seq
MAX_SEQ_SEARCH = 1 << 22
LORA_RANK = 16
LORA_TARGETS = "all-linear"

# Step-time factors and where they come from ("rough" where no measurement backs the number).
SLOWDOWN = {
    "grad_ckpt": (1.35, "Korthikanti et al. 2022 (arXiv 2205.05198): full activation recomputation costs "
                        "30-40% more compute (Table 4: +39% for a 22B model)"),
    "zero3": (1.15, "rough; ZeRO paper (arXiv 1910.02054) §7: ZeRO-1 and ZeRO-2 move the same volume as DDP's "
                    "all-reduce, ZeRO-3 1.5x it; how much of that shows in step time depends on the "
                    "interconnect"),
    "fsdp_full": (1.15, "rough; FSDP FULL_SHARD communicates like ZeRO-3 (1.5x DDP's volume, ZeRO paper §7)"),
    "offload_optimizer": (1.5, "rough; optimizer offload is PCIe-bound: gradients go to the CPU and "
                               "updated weights come back every step, and the CPU runs the Adam step "
                               "(ZeRO-Offload hides part of it at large batch)"),
    "offload_param": (1.5, "rough; parameter offload streams every layer's weights over PCIe in forward "
                           "and backward"),
    "lora": (0.8, "LoRA paper (Hu et al., arXiv 2106.09685): 25% higher training throughput than full "
                  "fine-tuning of GPT-3 175B (1 / 1.25 = 0.8)"),
    "qlora": (1.04, "rough; LoRA's 0.8 times about 1.3 for dequantizing the 4-bit base in every forward and "
                    "backward (QLoRA, Dettmers et al. 2023: slower than LoRA, no single published factor)"),
    "microbatch": (0.05, "rough; about 5% per halving of the micro-batch: smaller matrix multiplies use the "
                         "GPU less well (same global batch through accumulation)"),
    "tp": (0.1, "rough; about 10% per doubling of tensor parallelism inside an NVLink node (two all-reduces "
                "per layer in forward and in backward); much more across nodes"),
    "pp": (None, "Narayanan et al. 2021 (arXiv 2104.04473): the 1F1B pipeline bubble is (p-1)/m of the ideal "
                 "step with m micro-batches per step"),
}


@dataclass
class Remedy:
    id: str
    name: str
    changes: dict
    applicable: bool | None          # None: cannot be judged here (a smaller model)
    reason: str | None               # why it does not apply, or what it needs
    saves_bytes: int | None          # per GPU: before - after; negative when it costs memory
    device_total_bytes: int | None   # per GPU after the change
    fits: bool | None
    gpus: int | None                 # the GPU count the per-GPU numbers are for
    cost: str                        # speed and quality, in words
    slowdown: float | None           # step time relative to the settings as asked (rough where labelled)
    slowdown_source: str | None
    cpu_bytes: int | None = None     # CPU RAM per node when offloading
    notes: list[str] = field(default_factory=list)
    options: list[dict] | None = None       # tensor / pipeline parallel: both variants
    with_more_gpus: dict | None = None      # ZeRO on one data-parallel rank: the same at twice the GPUs
    error: str | None = None
    helps: bool | None = None               # applies and saves memory here (saves_bytes > 0); None: not judged
    why_not_helping: str | None = None      # when helps is False: why (does not apply, saves nothing, costs)

    def to_dict(self) -> dict:
        return asdict(self)


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


@dataclass
class Advice:
    gpu: str
    gpu_memory_bytes: int
    gpus: int
    device_total_bytes: int          # per GPU, as asked
    fits: bool
    headroom_bytes: int
    remedies: list[Remedy]
    plan: Plan | None
    plan_reason: str | None          # why there is no plan (None when there is one)
    alternatives: list[Plan]         # fewest GPUs keeping each training method the plan gives up
    max_batch: int
    max_seq: int
    search: dict                     # what the plan search covered and how many estimates it ran
    notes: list[str] = field(default_factory=list)
    judged: str = "training"         # what device_total_bytes and every remedy are estimates of ("rlhf": all models)
    helping: list[str] = field(default_factory=list)      # ids of the remedies that save memory here, checklist order
    not_helping: list[dict] = field(default_factory=list)  # {id, name, saves_bytes, why} of the others

    def ranked(self) -> list[Remedy]:
        """The remedies that save memory here (saves_bytes > 0), in the checklist's order."""
        return [r for r in self.remedies if r.helps]

    def to_dict(self) -> dict:
        d = asdict(self)
        return d


# -- helpers ---------------------------------------------------------------------------------------------

class _Runner:
    """``estimate_fn`` with a cache (keyed by the settings' repr: lora_targets may be a list) and a count."""

    def __init__(self, fn: Estimator):
        self.fn = fn
        self.cache: dict[str, TrainEstimate | Exception] = {}
        self.calls = 0

    def __call__(self, s: TrainSettings) -> TrainEstimate:
        key = repr(s)
        hit = self.cache.get(key)
        if hit is None:
            self.calls += 1
            try:
                hit = self.fn(s)
            except Exception as exc:  # an invalid combination, or an estimator gap: reported, never fatal
                hit = exc
            self.cache[key] = hit
        if isinstance(hit, Exception):
            raise hit
        return hit

    def total(self, s: TrainSettings) -> int | None:
        try:
            return self(s).device_total_bytes
        except Exception:
            return None


def _text_config(config: dict) -> dict:
    tc = config.get("text_config")
    return tc if isinstance(tc, dict) else config


def _half(settings: TrainSettings, gpu: GPU) -> str:
    if settings.precision in ("fp16", "amp-fp16", "deepspeed-fp16", "deepspeed-mixed") or gpu.bf16 is False:
        return "fp16"
    return "bf16"


def _deepspeed_precision(settings: TrainSettings, gpu: GPU) -> str:
    if settings.precision.startswith("deepspeed") or settings.precision == "fp32":
        return settings.precision  # DeepSpeed trains fp32 as it is (ZeRO partitions fp32 states)
    return "deepspeed-fp16" if _half(settings, gpu) == "fp16" else "deepspeed-bf16"


def _diff(base: TrainSettings, s: TrainSettings) -> dict:
    out = {}
    for name in TrainSettings.__dataclass_fields__:
        a, b = getattr(base, name), getattr(s, name)
        if a != b:
            out[name] = b
    return out


def _factor(s: TrainSettings) -> tuple[float, list[tuple[str, float, str]]]:
    """Absolute step-time factor of the settings' speed-relevant choices (micro-batch aside)."""
    parts: list[tuple[str, float, str]] = []

    def add(key: str, label: str, value: float | None = None):
        f, src = SLOWDOWN[key]
        parts.append((label, f if value is None else value, src))

    if s.grad_ckpt:
        add("grad_ckpt", "activation checkpointing")
    if s.zero == 3:
        add("zero3", "ZeRO-3")
    if s.fsdp in ("full_shard", "hybrid_shard"):
        add("fsdp_full", f"FSDP {s.fsdp}")
    if s.offload_optimizer:
        add("offload_optimizer", "optimizer offload")
    if s.offload_param:
        add("offload_param", "parameter offload")
    if s.method == "lora":
        add("lora", "LoRA")
    if s.method == "qlora":
        add("qlora", "QLoRA")
    if s.tp > 1:
        add("tp", f"tensor parallel {s.tp}", 1 + SLOWDOWN["tp"][0] * math.log2(s.tp))
    if s.pp > 1:
        add("pp", f"pipeline parallel {s.pp}", 1 + (s.pp - 1) / max(1, s.grad_accum))
    return math.prod(p[1] for p in parts), parts


def slowdown(base: TrainSettings, s: TrainSettings) -> tuple[float, list[str], str | None]:
    """Step time of ``s`` relative to ``base``: (factor, the parts that differ in words, their sources)."""
    fb, pb = _factor(base)
    fs, ps = _factor(s)
    factor = fs / fb
    old = {p[0]: p for p in pb}
    new = {p[0]: p for p in ps}
    words, sources = [], []
    for label, (_, f, src) in new.items():
        if label not in old or old[label][1] != f:
            words.append(f"{label} x{f:.2f}")
            sources.append(src)
    for label, (_, f, src) in old.items():
        if label not in new:
            words.append(f"no {label} (/{f:.2f})")
            sources.append(src)
    if s.batch < base.batch:
        k, src = SLOWDOWN["microbatch"]
        f = 1 + k * math.log2(base.batch / s.batch)
        factor *= f
        words.append(f"micro-batch {base.batch} -> {s.batch} x{f:.2f}")
        sources.append(src)
    return round(factor, 4), words, "; ".join(dict.fromkeys(sources)) or None


def _cli_flags(base: TrainSettings, s: TrainSettings) -> str:
    """``hfmem train`` flags for the fields of ``s`` that differ from ``base``."""
    flags = []
    for name, value in _diff(base, s).items():
        opt = "--" + name.replace("_", "-")
        if name == "overheads":
            flags.append("(the same --cuda-context / --nccl / --fragmentation)")
            continue
        if name == "adamw_impl":
            opt = "--optimizer-impl"
        if isinstance(value, bool):
            flags.append(opt if value else {"grad_ckpt": "--no-grad-ckpt"}.get(name, f"(no {opt})"))
        elif value is None:
            flags.append(f"(no {opt})")
        elif name == "lora_targets" and not isinstance(value, str):
            flags.append(f"{opt} {','.join(value)}")
        else:
            flags.append(f"{opt} {value}")
    return " ".join(flags)


def _command(config: dict, s: TrainSettings, gpu: GPU, *, extra_model: str | None = None) -> str:
    """The ``hfmem train`` command line for ``s`` (its non-default settings) on ``gpu``."""
    name = config.get("_name_or_path") or _text_config(config).get("_name_or_path") or "MODEL"
    models = f"{name} {extra_model}" if extra_model else name
    flags = _cli_flags(TrainSettings(), s)
    if "--precision" not in flags:  # hfmem train picks a precision from --zero / --rlhf when none is given
        flags = f"--precision {s.precision} {flags}".strip()
    gpu_name = gpu.memory_marketed if gpu.anonymous and gpu.memory_marketed else gpu.name
    return " ".join(p for p in ("hfmem train", models, config.get("_command_flags"), flags, f"--gpu {gpu_name}")
                    if p)


def _g(n: int | None) -> str:
    return "-" if n is None else format_binary(n)


def _describe(base: TrainSettings, s: TrainSettings) -> str:
    """The changes in words, for the plan's sentence."""
    d = _diff(base, s)
    words = []
    if "method" in d:
        words.append({"lora": f"LoRA (rank {s.lora_rank}, {s.lora_targets})",
                      "qlora": f"QLoRA ({s.qlora_format} base, rank {s.lora_rank})"}.get(s.method, s.method))
    if "zero" in d or "offload_optimizer" in d or "offload_param" in d:
        if s.zero is not None:
            off = " + optimizer and parameter offload" if s.offload_param else (
                " + optimizer offload" if s.offload_optimizer else "")
            words.append(f"DeepSpeed ZeRO-{s.zero}{off} ({s.precision})")
    elif "precision" in d and not ("fsdp" in d and s.fsdp):
        words.append(f"{'pure ' if s.precision in ('bf16', 'fp16') else ''}{s.precision} instead of {base.precision}")
    if "fsdp" in d:
        if s.fsdp:
            words.append(f"FSDP {s.fsdp} ({s.precision})")
        elif s.zero is None:
            words.append("no FSDP")
    if "attn" in d:
        words.append(f"{s.attn} attention")
    if "grad_ckpt" in d:
        words.append("activation checkpointing" if s.grad_ckpt else "no activation checkpointing")
    if "batch" in d:
        words.append(f"micro-batch {s.batch} x accumulation {s.grad_accum}")
    if "full_logits_metrics" in d:
        words.append("no full-logit evaluation metrics")
    if "seq" in d:
        words.append(f"seq {s.seq:,}")
    if "tp" in d:
        words.append(f"tensor parallel {s.tp}")
    if "pp" in d:
        words.append(f"pipeline parallel {s.pp}")
    named = {"method", "zero", "offload_optimizer", "offload_param", "precision", "fsdp", "attn", "grad_ckpt", "batch",
             "grad_accum", "full_logits_metrics", "seq", "tp", "pp", "lora_rank", "lora_targets", "dora",
             "qlora_format", "gpus"}
    rest = {k: v for k, v in d.items() if k not in named}
    if rest:  # anything else the plan changed, as the flags that set it
        words.append(_cli_flags(replace(s, **{k: getattr(base, k) for k in rest}), s))
    if not words and d:
        words.append(_cli_flags(base, s))
    return ", ".join(words)


# -- the remedies ----------------------------------------------------------------------------------------

REMEDY_IDS = ("drop_full_logits_metrics", "half_precision", "flash_attention", "smaller_micro_batch",
              "shorter_context", "zero1", "zero2", "zero2_offload", "zero3", "zero3_offload", "smaller_model",
              "lora", "qlora", "tensor_pipeline_parallel", "activation_checkpointing")


class _Ctx:
    def __init__(self, run: _Runner, s: TrainSettings, gpu: GPU, config: dict):
        self.run, self.s, self.gpu, self.cap = run, s, gpu, int(gpu.usable_bytes)
        self.config = config
        self.before = run(s).device_total_bytes

    def remedy(self, rid: str, name: str, new: TrainSettings | None, cost: str, *, applicable: bool = True,
               reason: str | None = None, notes: list[str] | None = None) -> Remedy:
        notes = list(notes or [])
        if new is None:  # nothing to change: saves 0
            new = self.s
        changes = _diff(self.s, new)
        sd, words, src = slowdown(self.s, new)
        r = Remedy(id=rid, name=name, changes=changes, applicable=applicable, reason=reason, saves_bytes=None,
                   device_total_bytes=None, fits=None, gpus=new.gpus, cost=cost, slowdown=sd,
                   slowdown_source=src, notes=notes)
        try:
            e = self.run(new)
        except Exception as exc:
            r.error = f"{type(exc).__name__}: {exc}"
            r.applicable = False
            r.reason = r.reason or f"could not be estimated: {exc}"
            return r
        r.device_total_bytes = e.device_total_bytes
        r.saves_bytes = self.before - e.device_total_bytes
        r.fits = e.device_total_bytes <= self.cap
        if e.cpu_bytes:
            r.cpu_bytes = e.cpu_bytes
        if changes and r.saves_bytes < 0:
            r.notes.append(f"costs {_g(-r.saves_bytes)} more per GPU than the settings as asked")
        return r


def _r_metrics(c: _Ctx) -> Remedy:
    cost = ("none for training; evaluation must reduce the logits itself (preprocess_logits_for_metrics, e.g. "
            "argmax) or compute metrics on generated text")
    if not c.s.full_logits_metrics:
        return c.remedy("drop_full_logits_metrics", "drop metrics over full logits", None, cost, applicable=False,
                        reason="not in use: the settings do not keep every logit for compute_metrics "
                               "(--full-logits-metrics)")
    return c.remedy("drop_full_logits_metrics", "drop metrics over full logits",
                    replace(c.s, full_logits_metrics=False), cost,
                    notes=["Trainer.evaluate without preprocess_logits_for_metrics gathers batch x seq x vocab "
                           "fp32 logits"])


def _r_half(c: _Ctx) -> Remedy:
    s, half = c.s, _half(c.s, c.gpu)
    name = f"{half} instead of {s.precision}"
    if s.precision in ("bf16", "fp16") or s.precision.startswith("deepspeed"):
        reason = f"already 16-bit ({s.precision})"
        if "bf16" in s.precision and c.gpu.bf16 is False:
            reason += f"; but {c.gpu.name} has no bfloat16: use fp16 / deepspeed-fp16"
        return c.remedy("half_precision", "bf16/fp16 precision", None, "-", applicable=False, reason=reason)
    notes = []
    if half == "fp16" and c.gpu.bf16 is False:
        notes.append(f"{c.gpu.name} has no bfloat16 (pre-Ampere): fp16 instead")
    elif c.gpu.bf16 is None:
        notes.append(f"bfloat16 support of {c.gpu.name} is unknown; V100/T4-class GPUs need fp16")
    cost = (f"faster (16-bit tensor cores; not counted); pure {half} keeps no fp32 master weights, so tiny "
            "updates can be lost (bf16 is the usual choice for LLMs)"
            + ("; pure fp16 also risks overflow, and HF Trainer refuses fp16=True on fp16 weights (use a custom "
               "loop, or DeepSpeed fp16 with loss scaling)" if half == "fp16" else ""))
    return c.remedy("half_precision", name, replace(s, precision=half), cost, notes=notes)


def _r_flash(c: _Ctx) -> Remedy:
    s = c.s
    cost = "faster as well (FlashAttention-2; not counted); exact attention, no quality cost"
    if s.attn == "flash":
        return c.remedy("flash_attention", "flash attention", None, cost, applicable=False, reason="already in use")
    if c.gpu.bf16 is False:
        return c.remedy("flash_attention", "flash attention", None, cost, applicable=False,
                        reason=f"FlashAttention-2 needs an Ampere or newer GPU; {c.gpu.name} is older (SDPA's "
                               "memory-efficient kernel is the alternative)")
    new, notes = replace(s, attn="flash"), []
    if s.precision == "fp32":
        new = replace(new, precision=_half(s, c.gpu))
        notes.append(f"flash attention needs 16-bit activations: computed with pure {new.precision} (remedy 2), "
                     "so the saving includes that remedy's")
    if s.attn == "sdpa":
        notes.append("SDPA already dispatches to a memory-efficient / flash kernel without a mask, so the "
                     "saving over SDPA is small")
    return c.remedy("flash_attention", "flash attention", new, cost, notes=notes)


def _r_microbatch(c: _Ctx) -> Remedy:
    s = c.s
    cost = ("same global batch, so the same training; each step runs more, smaller micro-batches (slower per "
            "sample; rough)")
    name = "smaller micro-batch + gradient accumulation"
    if s.batch == 1:
        return c.remedy("smaller_micro_batch", name, None, cost, applicable=False, reason="micro-batch is already 1")
    divisors = [d for d in range(s.batch - 1, 0, -1) if s.batch % d == 0]
    chosen = divisors[-1]
    for d in divisors:  # the largest micro-batch that fits, keeping micro-batch x accumulation
        t = c.run.total(replace(s, batch=d, grad_accum=s.grad_accum * (s.batch // d)))
        if t is not None and t <= c.cap:
            chosen = d
            break
    new = replace(s, batch=chosen, grad_accum=s.grad_accum * (s.batch // chosen))
    return c.remedy("smaller_micro_batch", name, new, cost,
                    notes=[f"global batch {s.batch * s.grad_accum} per data-parallel rank kept: micro-batch "
                           f"{new.batch} x accumulation {new.grad_accum}"])


def _r_seq(c: _Ctx) -> Remedy:
    s = c.s
    cost = ("changes the task: examples longer than the new length are truncated or must be split; per step it "
            "is faster")
    if s.seq < 2:
        return c.remedy("shorter_context", "shorter context", None, cost, applicable=False, reason="seq is 1")
    new = replace(s, seq=s.seq // 2)
    r = c.remedy("shorter_context", f"shorter context ({s.seq:,} -> {new.seq:,})", new, cost)
    r.slowdown, r.slowdown_source = 1.0, "not counted (faster per step)"
    return r


_ZERO = {
    "zero1": (1, False, False, "ZeRO-1"),
    "zero2": (2, False, False, "ZeRO-2"),
    "zero2_offload": (2, True, False, "ZeRO-2 + optimizer offload"),
    "zero3": (3, False, False, "ZeRO-3"),
    "zero3_offload": (3, True, True, "ZeRO-3 + optimizer and parameter offload"),
}


def _zero_rank(stage: int | None, off_opt: bool, off_param: bool) -> int:
    """Position in the checklist's ZeRO list (less memory further down): none/0, 1, 2, 2 + offload, 3, 3 + offload."""
    if not stage:
        return 0
    return {1: 1, 2: 3 if off_opt else 2, 3: 5 if off_opt else 4}[stage]


def _zero_settings(s: TrainSettings, gpu: GPU, stage: int, off_opt: bool, off_param: bool) -> TrainSettings:
    return replace(s, zero=stage, offload_optimizer=off_opt, offload_param=off_param, fsdp=None,
                   precision=_deepspeed_precision(s, gpu))


def _r_zero(c: _Ctx, rid: str) -> Remedy:
    s = c.s
    stage, off_opt, off_param, name = _ZERO[rid]
    new = _zero_settings(s, c.gpu, stage, off_opt, off_param)
    dp = s.data_parallel
    speed = {1: "ZeRO-1 moves the same volume as DDP (ZeRO paper)",
             2: "ZeRO-2 moves the same volume as DDP (ZeRO paper)",
             3: "ZeRO-3 moves 1.5x DDP's volume: parameters are all-gathered in forward and backward "
                "(ZeRO paper)"}[stage]
    if off_opt:
        speed += "; offload is PCIe-bound and the CPU runs the optimizer step; needs CPU RAM (cpu_bytes)"
    cost = speed + "; no quality cost (the same optimizer math, DeepSpeed mixed precision with fp32 master weights)"
    if (s.zero, s.offload_optimizer, s.offload_param) == (stage, off_opt, off_param):
        return c.remedy(rid, name, None, cost, applicable=False, reason="already in use")
    notes: list[str] = []
    applicable, reason = True, None
    if _zero_rank(s.zero, s.offload_optimizer, s.offload_param) > _zero_rank(stage, off_opt, off_param):
        applicable = False
        reason = (f"already uses a ZeRO setting that saves more (ZeRO-{s.zero}"
                  + (" + offload" if s.offload_optimizer else "") + "): this would give memory back")
    if s.fsdp:
        notes.append(f"replaces FSDP {s.fsdp} (DeepSpeed or FSDP, not both)")
    if new.precision != s.precision:
        notes.append(f"DeepSpeed trains in {new.precision}: 16-bit weights and gradients plus an fp32 master copy "
                     "and fp32 Adam states (and an fp32 gradient at the step)"
                     + (" — more than a pure 16-bit run holds, so with few GPUs it can cost memory"
                        if s.precision in ("bf16", "fp16") else ""))
    if dp == 1 and not off_opt and applicable:
        applicable = False
        reason = ("ZeRO shards over data-parallel ranks: with 1 data-parallel GPU nothing is sharded"
                  + (" and DeepSpeed's fp32 master weights come on top" if s.precision in ("bf16", "fp16") else ""))
    elif dp == 1:
        notes.append("offload works on one GPU: the optimizer states" + (" and parameters" if off_param else "")
                     + " live in CPU RAM")
    r = c.remedy(rid, name, new, cost, applicable=applicable, reason=reason, notes=notes)
    if dp == 1 and not off_opt:
        more = replace(new, gpus=new.gpus * 2)
        t = c.run.total(more)
        if t is not None:
            r.with_more_gpus = {"gpus": more.gpus, "device_total_bytes": t, "fits": t <= c.cap,
                                "saves_bytes": c.before - t}
    if rid == "zero3_offload" and r.error is not None:
        # parameter offload could not be estimated: fall back to optimizer offload alone, and say so
        fb = _zero_settings(s, c.gpu, 3, True, False)
        r2 = c.remedy(rid, "ZeRO-3 + optimizer offload", fb, cost, applicable=True, notes=notes + [
            f"ZeRO-3 with parameter offload could not be estimated ({r.error}); optimizer offload only"])
        return r2
    return r


def _r_smaller_model(c: _Ctx) -> Remedy:
    cmd = _command(c.config, c.s, c.gpu, extra_model="SMALLER-MODEL")
    return Remedy(id="smaller_model", name="a smaller base model", changes={}, applicable=None,
                  reason="cannot be computed here: the advisor knows only this model; compare candidates "
                         f"side by side with `{cmd}`",
                  saves_bytes=None, device_total_bytes=None, fits=None, gpus=c.s.gpus,
                  cost="quality: a smaller model knows less; choose the smallest that meets the need "
                       "(model states scale with the parameter count)",
                  slowdown=None, slowdown_source=None)


def _lora_settings(s: TrainSettings, method: str, gpu: GPU) -> TrainSettings:
    new = replace(s, method=method)
    if s.method == "full":
        new = replace(new, lora_rank=LORA_RANK, lora_targets=LORA_TARGETS, dora=False)
    if method == "qlora" and s.precision == "fp32":
        # bitsandbytes 4-bit computes in 16-bit
        new = replace(new, precision=_half(s, gpu) if s.zero is None else
                      ("deepspeed-fp16" if _half(s, gpu) == "fp16" else "deepspeed-bf16"))
    return new


def _r_lora(c: _Ctx) -> Remedy:
    s = c.s
    cost = ("faster (LoRA paper: 25% higher throughput); quality usually a little below full fine-tuning "
            "(run full fine-tuning if it fits); adapters are tiny to save")
    if s.method != "full":
        return c.remedy("lora", "LoRA", None, cost, applicable=False, reason=f"already {s.method}")
    return c.remedy("lora", f"LoRA (rank {LORA_RANK}, {LORA_TARGETS})", _lora_settings(s, "lora", c.gpu), cost)


def _r_qlora(c: _Ctx) -> Remedy:
    s = c.s
    cost = ("slower than LoRA (the 4-bit base is dequantized in every forward and backward; rough); quality "
            "close to 16-bit LoRA in the QLoRA paper, below full fine-tuning")
    if s.method == "qlora":
        return c.remedy("qlora", "QLoRA", None, cost, applicable=False, reason="already in use")
    new = _lora_settings(s, "qlora", c.gpu)
    notes = []
    if new.precision != s.precision:
        notes.append(f"QLoRA computes in 16-bit: {new.precision} instead of {s.precision}")
    return c.remedy("qlora", f"QLoRA ({s.qlora_format}, rank {new.lora_rank})", new, cost, notes=notes)


def _r_parallel(c: _Ctx) -> Remedy:
    s = c.s
    tc = _text_config(c.config)
    heads = int(tc.get("num_attention_heads") or tc.get("n_head") or 0)
    kv = int(tc.get("num_key_value_heads") or heads or 0)
    layers = int(tc.get("num_hidden_layers") or tc.get("n_layer") or 0)
    name = "tensor / pipeline parallel (x2 GPUs)"
    base_cost = "needs Megatron-LM-style training code (powerful but fiddly to set up)"
    options, best = [], None
    cands = []
    tp = s.tp * 2
    if heads and heads % tp == 0 and (not kv or kv % tp == 0 or tp % kv == 0):
        cands.append(("tensor parallel", replace(s, tp=tp, gpus=s.gpus * 2)))
    else:
        options.append({"kind": "tensor parallel", "tp": tp, "applicable": False,
                        "reason": f"{heads} attention heads / {kv} KV heads do not split {tp} ways"})
    pp = s.pp * 2
    if not layers or layers >= pp:
        cands.append(("pipeline parallel", replace(s, pp=pp, gpus=s.gpus * 2)))
    for kind, new in cands:
        total = c.run.total(new)
        sd, _, src = slowdown(s, new)
        options.append({"kind": kind, "changes": _diff(s, new), "device_total_bytes": total,
                        "fits": None if total is None else total <= c.cap,
                        "saves_bytes": None if total is None else c.before - total, "slowdown": sd,
                        "slowdown_source": src})
        if total is not None and (best is None or total < best[2]):
            best = (kind, new, total)
    if best is None:
        r = c.remedy("tensor_pipeline_parallel", name, None, base_cost, applicable=False,
                     reason="neither split applies to this model")
    else:
        kind, new, _ = best
        if kind == "tensor parallel":
            cost = ("tensor parallel: two all-reduces per layer in forward and backward, fine inside an NVLink "
                    "node, slow across nodes; " + base_cost)
        else:
            cost = (f"pipeline parallel: a bubble of (p-1)/m = {pp - 1}/{s.grad_accum} of the step with "
                    f"{s.grad_accum} micro-batch(es) per step (raise gradient accumulation to shrink it); "
                    + base_cost)
        r = c.remedy("tensor_pipeline_parallel", f"{kind} {tp if kind.startswith('tensor') else pp} "
                     f"(x2 GPUs: {new.gpus})", new, cost,
                     notes=["per-GPU numbers on twice the GPUs; the other split is in options"])
    r.options = options
    return r


def _r_ckpt(c: _Ctx) -> Remedy:
    s = c.s
    cost = ("slower: each layer's forward runs again in backward, 30-40% more compute (Korthikanti 2022); "
            "so it is the last remedy listed; no quality cost")
    if s.grad_ckpt:
        return c.remedy("activation_checkpointing", "activation checkpointing", None, cost, applicable=False,
                        reason="already in use")
    return c.remedy("activation_checkpointing", "activation (gradient) checkpointing",
                    replace(s, grad_ckpt=True), cost)


def remedies(run: Estimator, settings: TrainSettings, gpu: GPU, *, model_config: dict) -> list[Remedy]:
    """The checklist's remedies, in its order, each applied alone to ``settings``."""
    c = _Ctx(run if isinstance(run, _Runner) else _Runner(run), settings, gpu, model_config or {})
    out = [_r_metrics(c), _r_half(c), _r_flash(c), _r_microbatch(c), _r_seq(c)]
    out += [_r_zero(c, rid) for rid in ("zero1", "zero2", "zero2_offload", "zero3", "zero3_offload")]
    out += [_r_smaller_model(c), _r_lora(c), _r_qlora(c), _r_parallel(c), _r_ckpt(c)]
    for r in out:
        _judge(r)
    return out


def _judge(r: Remedy) -> None:
    """``helps``: the remedy applies and lowers the per-GPU total (saves_bytes > 0); else ``why_not_helping``.
    A remedy that cannot be judged here (a smaller model) keeps ``helps`` None."""
    if r.applicable is None:
        return
    r.helps = bool(r.applicable) and bool(r.changes) and r.saves_bytes is not None and r.saves_bytes > 0
    if r.helps:
        return
    parts = [r.reason] if r.reason else []
    if r.changes and r.saves_bytes is not None:
        if r.saves_bytes < 0:
            parts.append(f"costs {_g(-r.saves_bytes)} more per GPU than the settings as asked")
        elif r.saves_bytes == 0:
            parts.append("saves nothing for this run")
        parts += [n for n in r.notes if not n.startswith("costs ")]  # what the change does here
    elif not parts:
        parts.append("changes nothing here")
    r.why_not_helping = "; ".join(dict.fromkeys(parts))


# -- the plan search -------------------------------------------------------------------------------------

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
        new = _lora_settings(new, grp.method, gpu)
    if grp.sharding == _FSDP:
        prec = new.precision
        if prec.startswith("deepspeed"):
            prec = _half(s, gpu)  # FSDP trains with torch precisions
        new = replace(new, zero=None, offload_optimizer=False, offload_param=False, fsdp="full_shard",
                      precision=prec)
    elif grp.sharding != ("keep",):
        new = _zero_settings(new, gpu, *grp.sharding)
    return new


def _options(s: TrainSettings, gpu: GPU, grp: _Group, new: TrainSettings) -> dict[str, list]:
    """The other dimensions: keep (first) or the memory-saving value."""
    opts: dict[str, list] = {"metrics": [False], "precision": [None], "attn": [None], "ckpt": [False],
                             "batch": [False]}
    if s.full_logits_metrics:
        opts["metrics"].append(True)
    if new.zero is None and new.precision in ("fp32", "amp-bf16", "amp-fp16"):
        opts["precision"].append(_half(s, gpu))
    elif new.zero is not None and new.precision == "fp32":  # DeepSpeed's own 16-bit mixed precision
        opts["precision"].append("deepspeed-fp16" if _half(s, gpu) == "fp16" else "deepspeed-bf16")
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
        for m in o["metrics"]:
            for p in o["precision"]:
                for a in o["attn"]:
                    for k in o["ckpt"]:
                        for b in o["batch"]:
                            s = _apply(base, m, p, a, k, b)
                            if repr(s) not in seen:
                                seen.add(repr(s))
                                out.append(s)
    return out


_FSDP = ("fsdp", "full_shard")
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
    return (sd, len(_diff(base, s)))


def _best_at(run: _Runner, s: TrainSettings, gpu: GPU, gpus: int, method: str, errors: dict[str, str]):
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
                errors.setdefault(msg, f"{_describe(s, floor)} on {gpus} GPU(s)")
            # try the group anyway without the pruning bound
        elif t > cap:
            continue
        for m in o["metrics"]:
            for p in o["precision"]:
                for a in o["attn"]:
                    for k in o["ckpt"]:
                        for b in o["batch"]:
                            cand = _apply(base, m, p, a, k, b)
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


def _plan(run: _Runner, base: TrainSettings, s: TrainSettings, gpu: GPU, total: int, config: dict) -> Plan:
    e = run(s)
    sd, words, _ = slowdown(base, s)
    what = _describe(base, s)
    gpus = f"{s.gpus} x {gpu.name}" if s.gpus > 1 else f"one {gpu.name}"
    if not _diff(base, s):
        sentence = f"Fits as asked on {gpus}: {_g(total)} per GPU of {_g(gpu.usable_bytes)}."
    else:
        sentence = (f"Fits on {gpus} with {what}: {_g(total)} per GPU of {_g(gpu.usable_bytes)}"
                    + (f", {_g(e.cpu_bytes)} CPU RAM per node" if e.cpu_bytes else "")
                    + (f"; about {sd:.2f}x the step time as asked ({'; '.join(words)})" if words else
                       "; no slower")
                    + ".")
    return Plan(gpus=s.gpus, changes=_diff(base, s), settings=s.to_dict(), device_total_bytes=total,
                headroom_bytes=gpu.usable_bytes - total, cpu_bytes=e.cpu_bytes, method=s.method, slowdown=sd,
                slowdown_parts=words, sentence=sentence, command=_command(config, s, gpu))


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
    run = run if isinstance(run, _Runner) else _Runner(run)
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
        reason = (f"nothing searched fits {gpu.name} ({_g(gpu.usable_bytes)}) with up to {counts[-1]} GPUs: "
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
    run = run if isinstance(run, _Runner) else _Runner(run)
    ok = lambda b: _fits_total(run, replace(settings, batch=b), gpu)  # noqa: E731
    return largest_fitting(ok, 1, hi) if ok(1) else 0


def max_seq(run: Estimator, settings: TrainSettings, gpu: GPU, hi: int = MAX_SEQ_SEARCH) -> int:
    """The largest sequence length at ``settings.batch`` that fits (0 when 1 does not)."""
    run = run if isinstance(run, _Runner) else _Runner(run)
    ok = lambda q: _fits_total(run, replace(settings, seq=q), gpu)  # noqa: E731
    return largest_fitting(ok, 1, hi) if ok(1) else 0


def _fits_total(run: Estimator, s: TrainSettings, gpu: GPU) -> bool:
    r = run if isinstance(run, _Runner) else _Runner(run)
    t = r.total(s)
    return t is not None and t <= gpu.usable_bytes


# -- the whole advice ------------------------------------------------------------------------------------

def advise(estimate_fn: Estimator, settings: TrainSettings, gpu: GPU, *, model_config: dict | None = None,
           model_name: str | None = None, plan_limit: int = MAX_PLAN_GPUS, seq_limit: int | None = None,
           command_flags: str | None = None, judged: str = "training") -> Advice:
    """Remedies, the cheapest plan that fits, and max micro-batch / seq as asked, on ``gpu`` (per GPU).
    ``estimate_fn`` may return any estimate with ``device_total_bytes`` and ``cpu_bytes`` (hfmem.api passes the
    RLHF estimate with --rlhf, so every remedy is judged on all the models). ``model_name`` and
    ``command_flags`` (e.g. "--rlhf ppo") only label the suggested ``hfmem train`` command lines;
    ``seq_limit``: the longest sequence the model can run (a learned position table), which caps max_seq."""
    run = _Runner(estimate_fn)
    if model_name:
        model_config = {**(model_config or {}), "_name_or_path": model_name}
    if command_flags:
        model_config = {**(model_config or {}), "_command_flags": command_flags}
    settings = settings.validate()
    est = run(settings)  # the settings as asked must estimate: let its error through
    cap = int(gpu.usable_bytes)
    rem = remedies(run, settings, gpu, model_config=model_config or {})
    plan, reason, alts, info = search_plan(run, settings, gpu, limit=plan_limit, model_config=model_config)
    mb = max_batch(run, settings, gpu)
    ms = max_seq(run, settings, gpu, hi=seq_limit or MAX_SEQ_SEARCH)
    notes = []
    tc = _text_config(model_config or {})
    mpe = tc.get("max_position_embeddings")
    if seq_limit and ms == seq_limit:
        notes.append(f"max_seq {ms:,} is the model's limit: its learned position-embedding table has "
                     f"{seq_limit:,} positions")
    elif isinstance(mpe, int) and ms > mpe:
        notes.append(f"max_seq {ms:,} is a memory limit: the model declares max_position_embeddings {mpe:,}")
    if gpu.bf16 is False and "bf16" in settings.precision:
        notes.append(f"{gpu.name} has no bfloat16: the remedies use fp16 / deepspeed-fp16")
    info["estimates"] = run.calls
    return Advice(gpu=gpu.name, gpu_memory_bytes=cap, gpus=settings.gpus, device_total_bytes=est.device_total_bytes,
                  fits=est.device_total_bytes <= cap, headroom_bytes=cap - est.device_total_bytes, remedies=rem,
                  plan=plan, plan_reason=reason, alternatives=alts, max_batch=mb, max_seq=ms, search=info,
                  notes=notes, judged=judged, helping=[r.id for r in rem if r.helps],
                  not_helping=[{"id": r.id, "name": r.name, "saves_bytes": r.saves_bytes, "why": r.why_not_helping}
                               for r in rem if r.helps is False])
