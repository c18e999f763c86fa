"""The remedy catalogue: the usual out-of-memory checklist ("显存不足怎么办", what to do when memory runs out),
cheapest first, each applied *alone* to the settings as asked and quantified for this model: the settings it
changes, the bytes it saves per GPU (negative when it costs memory), the per-GPU total after it, whether that
fits, whether it applies at all here, and its price in speed / quality (``hfmem.plan.speed``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ..scenarios.finetune import TrainSettings
from ..scenarios.inference import attention_heads, kv_heads, language_tower
from .changes import (LORA_RANK, LORA_TARGETS, Estimator, Runner, changed_fields, half_precision, lora_settings,
                      zero_settings)
from .flags import fmt_bytes, train_command
from .gpus import GPU
from .speed import slowdown


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


REMEDY_IDS = ("drop_full_logits_metrics", "half_precision", "flash_attention", "smaller_micro_batch",
              "shorter_context", "zero1", "zero2", "zero2_offload", "zero3", "zero3_offload", "smaller_model",
              "lora", "qlora", "tensor_pipeline_parallel", "activation_checkpointing")


class _Ctx:
    def __init__(self, run: Runner, s: TrainSettings, gpu: GPU, config: dict):
        self.run, self.s, self.gpu, self.cap = run, s, gpu, int(gpu.usable_bytes)
        self.config = config
        self.before = run(s).device_total_bytes

    def remedy(self, rid: str, name: str, new: TrainSettings | None, cost: str, *, applicable: bool = True,
               reason: str | None = None, notes: list[str] | None = None) -> Remedy:
        notes = list(notes or [])
        if new is None:  # nothing to change: saves 0
            new = self.s
        changes = changed_fields(self.s, new)
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
            r.notes.append(f"costs {fmt_bytes(-r.saves_bytes)} more per GPU than the settings as asked")
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
    s, half = c.s, half_precision(c.s, c.gpu)
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
        new = replace(new, precision=half_precision(s, c.gpu))
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




def _r_zero(c: _Ctx, rid: str) -> Remedy:
    s = c.s
    stage, off_opt, off_param, name = _ZERO[rid]
    new = zero_settings(s, c.gpu, stage, off_opt, off_param)
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
        fb = zero_settings(s, c.gpu, 3, True, False)
        r2 = c.remedy(rid, "ZeRO-3 + optimizer offload", fb, cost, applicable=True, notes=notes + [
            f"ZeRO-3 with parameter offload could not be estimated ({r.error}); optimizer offload only"])
        return r2
    return r


def _r_smaller_model(c: _Ctx) -> Remedy:
    cmd = train_command(c.config, c.s, c.gpu, extra_model="SMALLER-MODEL")
    return Remedy(id="smaller_model", name="a smaller base model", changes={}, applicable=None,
                  reason="cannot be computed here: the advisor knows only this model; compare candidates "
                         f"side by side with `{cmd}`",
                  saves_bytes=None, device_total_bytes=None, fits=None, gpus=c.s.gpus,
                  cost="quality: a smaller model knows less; choose the smallest that meets the need "
                       "(model states scale with the parameter count)",
                  slowdown=None, slowdown_source=None)




def _r_lora(c: _Ctx) -> Remedy:
    s = c.s
    cost = ("faster (LoRA paper: 25% higher throughput); quality usually a little below full fine-tuning "
            "(run full fine-tuning if it fits); adapters are tiny to save")
    if s.method != "full":
        return c.remedy("lora", "LoRA", None, cost, applicable=False, reason=f"already {s.method}")
    return c.remedy("lora", f"LoRA (rank {LORA_RANK}, {LORA_TARGETS})", lora_settings(s, "lora", c.gpu), cost)


def _r_qlora(c: _Ctx) -> Remedy:
    s = c.s
    cost = ("slower than LoRA (the 4-bit base is dequantized in every forward and backward; rough); quality "
            "close to 16-bit LoRA in the QLoRA paper, below full fine-tuning")
    if s.method == "qlora":
        return c.remedy("qlora", "QLoRA", None, cost, applicable=False, reason="already in use")
    new = lora_settings(s, "qlora", c.gpu)
    notes = []
    if new.precision != s.precision:
        notes.append(f"QLoRA computes in 16-bit: {new.precision} instead of {s.precision}")
    return c.remedy("qlora", f"QLoRA ({s.qlora_format}, rank {new.lora_rank})", new, cost, notes=notes)


def _r_parallel(c: _Ctx) -> Remedy:
    s = c.s
    # the language tower's heads, KV heads and layers (hfmem.model.describe); an MLA latent (no KV heads of
    # its own) and a model without KV heads split as their query heads do
    tower = language_tower(c.config)
    heads = attention_heads(c.config) or 0
    kv = kv_heads(c.config) or heads
    layers = tower.num_layers if tower else 0
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
        options.append({"kind": kind, "changes": changed_fields(s, new), "device_total_bytes": total,
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
    c = _Ctx(run if isinstance(run, Runner) else Runner(run), settings, gpu, model_config or {})
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
            parts.append(f"costs {fmt_bytes(-r.saves_bytes)} more per GPU than the settings as asked")
        elif r.saves_bytes == 0:
            parts.append("saves nothing for this run")
        parts += [n for n in r.notes if not n.startswith("costs ")]  # what the change does here
    elif not parts:
        parts.append("changes nothing here")
    r.why_not_helping = "; ".join(dict.fromkeys(parts))
