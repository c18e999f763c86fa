"""Fine-tuning memory per GPU: model states (precision × optimizer, LoRA/QLoRA), sharding (ZeRO, FSDP, TP,
PP), activations, overheads; peaks by phase. Pure functions over (census, config, settings): no I/O.

Composition (the parts live in their own modules):

* trainable / frozen parameters: the census (full fine-tune) or ``peft.lora_adapters`` (LoRA, DoRA; QLoRA
  freezes a 4-bit base whose bytes come from ``weights.weights_bytes``);
* model states: ``training.model_states`` (weights, fp32 master weights, gradients, optimizer states, the
  optimizer step's temporaries);
* sharding: ``sharding.zero_states`` / ``fsdp_states`` / ``ddp_states`` / ``single_device_states`` on the
  census one tensor/pipeline-parallel rank holds (``tensor_parallel_census``, ``pipeline_stage_census``);
* activations and peaks by phase: ``train_activations``;
* overheads: CUDA context, NCCL (more than one GPU), the caching allocator's reserve.

The three totals are labelled as for ``hfmem infer``: ``peak_allocated_bytes`` (max_memory_allocated on the
busiest GPU), ``peak_reserved_bytes``, ``device_total_bytes`` (nvidia-smi, with the CUDA context).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from .. import vocab
from ..errors import SettingsError
from ..model import describe
from . import peft as peftmod
from . import sharding, training
from .overheads import Overheads, reserved_bytes

METHODS = vocab.METHODS
PRECISIONS = tuple(training.PRECISIONS)
ATTNS = vocab.ATTNS
FSDP = vocab.TRAIN_FSDP_STRATEGIES


class TrainSettingsError(SettingsError):
    """A setting out of range or a combination that does not exist; the message names it (exit 2)."""


@dataclass(frozen=True)
class TrainSettings:
    method: str = "full"
    precision: str = "bf16"          # see training.PRECISIONS; deepspeed-* with --zero
    optimizer: str = "adamw"
    adamw_impl: str = "fused"        # HF Trainer's default optimizer is adamw_torch_fused (torch >= 2.8)
    batch: int = 1                   # micro-batch per GPU
    seq: int = 2048
    grad_accum: int = 1
    grad_ckpt: bool = False
    attn: str | None = None          # None: transformers' default (sdpa; eager where it has no SDPA)
    lora_rank: int = vocab.LORA_RANK
    lora_targets: object = vocab.LORA_TARGETS   # "all-linear", a list of names, a regex, or None (PEFT's default)
    dora: bool = False
    qlora_format: str = "nf4-dq"
    zero: int | None = None
    offload_optimizer: bool = False
    offload_param: bool = False
    fsdp: str | None = None
    gpus: int = 1                    # world size
    tp: int = 1
    pp: int = 1
    gpus_per_node: int = 8
    full_logits_metrics: bool = False   # an eval that keeps every logit (compute_metrics / preprocess not set)
    optimizer_in_backward: bool = False  # step each parameter in a post-accumulate-grad hook and free its grad
    eval_generate_batch: int = 0         # an evaluation that generates: sequences at once ...
    eval_generate_tokens: int = 0        # ... of this many tokens (prompt + generated), e.g. PEFT's 50 x 800
    target_seq: int | None = None        # encoder-decoders: label tokens per sample (None: seq, within the
                                         # decoder's positions)
    image_size: int | None = None        # vision inputs: side in pixels (None: the config's image_size, else 224)
    audio_seconds: float | None = None   # audio inputs: seconds per sample (None: 10 s; Whisper: 30 s windows)
    images: int = 0                      # vision-language models: images per sequence (tokens join seq)
    overheads: Overheads = field(default_factory=Overheads)

    def validate(self) -> "TrainSettings":
        if self.method not in METHODS:
            raise TrainSettingsError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.precision not in training.PRECISIONS:
            raise TrainSettingsError(f"precision must be one of {', '.join(training.PRECISIONS)}, not {self.precision!r}")
        if self.optimizer not in training.OPTIMIZERS:
            raise TrainSettingsError(f"optimizer must be one of {', '.join(training.OPTIMIZERS)}, not {self.optimizer!r}")
        if self.attn is not None and self.attn not in ATTNS:
            raise TrainSettingsError(f"attn must be one of {', '.join(ATTNS)}, not {self.attn!r}")
        if int(self.eval_generate_batch) < 0 or int(self.eval_generate_tokens) < 0:
            raise TrainSettingsError("eval-generate batch and tokens must be 0 or more")
        if int(self.images) < 0:
            raise TrainSettingsError(f"images must be 0 or more (got {self.images})", setting="images")
        for name in ("target_seq", "image_size"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise TrainSettingsError(f"{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})",
                                         setting=name)
        if self.audio_seconds is not None and not float(self.audio_seconds) > 0:
            raise TrainSettingsError(f"audio-seconds must be more than 0 (got {self.audio_seconds})",
                                     setting="audio_seconds")
        for name in ("batch", "seq", "grad_accum", "gpus", "tp", "pp", "lora_rank", "gpus_per_node"):
            if int(getattr(self, name)) < 1:
                raise TrainSettingsError(f"{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if self.gpus % (self.tp * self.pp):
            raise TrainSettingsError(f"gpus={self.gpus} is not a multiple of tp × pp = {self.tp * self.pp}",
                                     setting="gpus")
        if self.zero is not None and self.zero not in (0, 1, 2, 3):
            raise TrainSettingsError("zero must be 0, 1, 2 or 3")
        if self.zero is not None and self.fsdp:
            raise TrainSettingsError("choose DeepSpeed ZeRO or FSDP, not both")
        if self.fsdp and self.fsdp not in FSDP:
            raise TrainSettingsError(f"fsdp must be one of {', '.join(FSDP)}")
        if (self.offload_optimizer or self.offload_param) and self.zero is None:
            raise TrainSettingsError("offloading needs DeepSpeed ZeRO (zero=1/2/3)", setting="zero")
        if self.offload_param and self.zero != 3:
            raise TrainSettingsError("parameter offload needs ZeRO stage 3")
        if self.offload_optimizer and self.zero == 0:
            raise TrainSettingsError("optimizer offload needs ZeRO stage 1, 2 or 3")
        if self.precision.startswith("deepspeed") and self.zero is None:
            raise TrainSettingsError("deepspeed-* precisions need a ZeRO stage, zero=0-3 (DeepSpeed runs them)",
                                     setting="zero")
        if self.fsdp and self.precision.startswith("deepspeed"):
            raise TrainSettingsError("FSDP trains with torch precisions (fp32, amp-*, bf16, fp16)")
        if self.optimizer_in_backward and (self.zero is not None or self.fsdp or self.grad_accum > 1):
            raise TrainSettingsError("optimizer in backward needs plain data parallel and no gradient accumulation "
                                     "(each gradient is applied and freed as soon as it is complete)")
        if self.attn == "flash" and self.precision == "fp32":
            raise TrainSettingsError("flash attention needs fp16/bf16 activations: use amp-bf16 or bf16")
        if self.method == "qlora" and (self.zero == 3 or self.fsdp in ("full_shard", "hybrid_shard")):
            # QLoRA + ZeRO-3/FSDP exists (bnb_4bit_quant_storage) but shards a packed uint8 base; modelled as
            # sharded weights below
            pass
        return self

    @property
    def data_parallel(self) -> int:
        return self.gpus // (self.tp * self.pp)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["overheads"] = self.overheads.to_dict()
        return d


@dataclass
class TrainEstimate:
    settings: TrainSettings
    trainable_params: int
    frozen_params: int
    components: dict[str, int]         # per GPU at the peak phase
    phases: dict[str, int]             # per GPU: forward, backward, optimizer_step (peak allocated)
    peak_phase: str
    peak_allocated_bytes: int
    peak_reserved_bytes: int
    device_total_bytes: int
    cpu_bytes: int                     # CPU RAM per node (offload), 0 without
    cpu_components: dict[str, int]
    activations: dict                  # the activation estimate's parts and source
    scheme: str
    assumptions: list[str]
    notes: list[str]
    adapters: dict | None = None
    # what the micro-batch is for a model estimated from its own code (batch, tokens, image_size,
    # audio_seconds, target_tokens); empty for decoder LMs (read ``settings``)
    batch_inputs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["settings"] = self.settings.to_dict()
        return d


# -- trainable / frozen ------------------------------------------------------------------------------------

def _split(tensors: list[dict], s: TrainSettings, model_type: str | None):
    """(trainable census, frozen census, adapter plan or None)."""
    if s.method == "full":
        return list(tensors), [], None
    targets = s.lora_targets
    plan = peftmod.lora_adapters(tensors, rank=s.lora_rank, targets=targets, dora=s.dora, model_type=model_type)
    return list(plan.adapters) + list(plan.saved), list(plan.frozen), plan


def _bytes_per_elem(precision: str) -> int:
    return training.precision_of(precision).weight_bytes


def resolve_attn(settings: TrainSettings, config: dict) -> tuple[TrainSettings, list[str]]:
    """``settings`` with the attention transformers would use for this model when ``attn`` is None (sdpa;
    eager where transformers has no SDPA path), and the assumptions to list; an explicit sdpa for such a
    model is refused (TrainSettingsError), as transformers refuses it. Also names the text_config fields
    filled in from transformers' defaults."""
    from dataclasses import replace

    from ..metadata.config import defaults_assumption
    from .attention import choose

    notes: list[str] = []
    attn, note, refusal = choose(config, settings.attn)
    if refusal:
        raise TrainSettingsError(refusal)
    if settings.attn is None:
        settings = replace(settings, attn=attn)
        notes.append(note or "attention: sdpa (transformers' default)")
    defaults = defaults_assumption(config)
    if defaults:
        notes.append(defaults)
    return settings, notes


def estimate_training(tensors: list[dict], config: dict, settings: TrainSettings, *,
                      largest_layer_params: int | None = None) -> TrainEstimate:
    """Per-GPU memory of one training step (micro-batch ``batch`` × ``seq``) under ``settings``."""
    from . import train_activations as acts
    from . import weights as wmod

    s, attn_notes = resolve_attn(settings.validate(), config)
    notes: list[str] = []
    assumptions: list[str] = list(attn_notes)
    types = describe(config).model_types
    model_type = types[-1] if types else None  # the language model's type (PEFT's default targets follow it)
    census = list(tensors)
    if s.tp > 1:
        census = sharding.tensor_parallel_census(census, s.tp, vocab_parallel=True)
        assumptions.append(f"tensor parallel {s.tp}: Megatron-style column/row-parallel linear layers and a "
                           "vocab-parallel embedding/LM head; norms replicated")
    if s.pp > 1:
        census = sharding.pipeline_stage_census(census, s.pp, 0)
        assumptions.append(f"pipeline parallel {s.pp}: numbers for the first stage (embedding + L/p layers; "
                           "in 1F1B it holds L layers' worth of activations, Korthikanti Eq. 5)")
    trainable, frozen, plan = _split(census, s, model_type)
    lora_targets = s.lora_targets
    if plan is not None and lora_targets is None:  # PEFT's default for the model type: what it matched
        lora_targets = list(dict.fromkeys(m["name"] for m in plan.matched_modules))
    targets_text = (", ".join(lora_targets) if isinstance(lora_targets, (list, tuple)) else str(lora_targets)) + (
        f" = PEFT's default for {model_type}, LoraConfig(target_modules=None)" if s.lora_targets is None else "")

    # model states
    if s.method == "full":
        states = training.model_states(trainable, (), s.precision, s.optimizer, adamw_impl=s.adamw_impl)
        base_bytes = 0
    else:
        # PEFT keeps adapters in fp32 (autocast_adapter_dtype=True): fp32 weights, grads and optimizer states,
        # like torch.autocast AMP; the frozen base stays at the model's width (16-bit, or 4-bit for QLoRA).
        base_width = 4 if s.precision in ("fp32",) else 2
        adapter_prec = "fp32" if s.precision == "fp32" else "amp-bf16"
        if s.zero is not None:
            # DeepSpeed casts the whole module (adapters too) to its 16-bit dtype and keeps an fp32 master
            # copy + fp32 states of the trainable adapters only
            adapter_prec = s.precision
        if s.method == "qlora":
            q = wmod.weights_bytes(frozen, s.qlora_format, compute_dtype="bfloat16", quantize_experts=False)
            base_bytes = q.stored_bytes
            states = training.model_states(trainable, (), adapter_prec, s.optimizer, adamw_impl=s.adamw_impl)
            assumptions.append(f"QLoRA: frozen base in {s.qlora_format} ({q.quantized_params:,} parameters "
                               "quantized; embeddings, LM head, norms and fused experts stay 16-bit as "
                               "bitsandbytes leaves them)")
        else:
            base_bytes = 0
            states = training.model_states(trainable, frozen, adapter_prec, s.optimizer, adamw_impl=s.adamw_impl,
                                           frozen_weight_bytes=base_width)
        assumptions.append(f"{s.method.upper()}: adapters (rank {s.lora_rank}, targets {targets_text}) in fp32 "
                           "as PEFT creates them (autocast_adapter_dtype=True); base frozen")
    if s.optimizer_in_backward:
        # torch's Tensor.register_post_accumulate_grad_hook pattern (torchtune optimizer_in_bwd, LOMO): each
        # parameter is stepped as soon as its gradient is complete and the gradient is freed, so at most
        # about one tensor's gradient (and its step temporaries) is alive, never the whole set
        largest = training.largest_tensor_numel(trainable)
        g_bytes = training.precision_of(states.precision).gradient_bytes
        one = largest * g_bytes
        states = replace(states, gradients_bytes=min(states.gradients_bytes, one),
                         optimizer_step_temporary_bytes=min(states.optimizer_step_temporary_bytes, one),
                         notes=states.notes + ("optimizer in backward: one gradient (the largest tensor's, "
                                               f"{largest:,} elements) alive at a time",))
        assumptions.append("optimizer in backward (post-accumulate-grad hooks): gradients are applied and freed "
                           "one parameter at a time")
    if s.zero is not None:
        cfg = sharding.ZeroConfig(stage=s.zero, data_parallel=s.data_parallel, gpus_per_node=s.gpus_per_node,
                                  offload_optimizer=s.offload_optimizer, offload_param=s.offload_param)
        sharded = sharding.zero_states(states, cfg, largest_layer_params=largest_layer_params)
    elif s.fsdp:
        sharded = sharding.fsdp_states(states, s.data_parallel, largest_unit_params=largest_layer_params or 0,
                                       strategy=s.fsdp, gpus_per_node=s.gpus_per_node)
    elif s.data_parallel > 1:
        sharded = sharding.ddp_states(states)
    else:
        sharded = sharding.single_device_states(states)
    gpu_comp = sharded.gpu_components()
    if base_bytes:
        shard = s.data_parallel if (s.zero == 3 or s.fsdp in ("full_shard",)) else 1
        if not s.offload_param:
            gpu_comp["weights_bytes"] = gpu_comp.get("weights_bytes", 0) + math.ceil(base_bytes / shard)

    # activations (one micro-batch) and the peaks by phase
    amp = {"amp-bf16": "bf16", "amp-fp16": "fp16"}.get(s.precision)
    if s.method != "full" and s.precision != "fp32":
        amp = None  # the base runs in its 16-bit dtype; the fp32 adapters are PEFT's, not autocast's
    dtype_bytes = 4 if s.precision == "fp32" else 2
    lora = {"r": s.lora_rank, "targets": lora_targets, "dora": s.dora} if s.method != "full" else False
    act = acts.activation_bytes(config, batch=s.batch, seq=s.seq, attn=s.attn, dtype_bytes=dtype_bytes,
                                grad_ckpt=s.grad_ckpt, tp=s.tp, pp=s.pp, lora=lora, amp=amp)
    assumptions += list(act.assumptions)
    by_phase: dict[str, int] = {}
    for c in sharded.gpu:
        by_phase.setdefault(c.phase, 0)
        by_phase[c.phase] += c.bytes
    grads = gpu_comp.get("gradients_bytes", 0)
    optim = gpu_comp.get("optimizer_bytes", 0)
    weights_now = by_phase.get("persistent", 0) - grads - optim + (gpu_comp.get("weights_bytes", 0) - sum(
        c.bytes for c in sharded.gpu if c.name == "weights_bytes"))
    pk = acts.peak_by_phase(act, weights_bytes=weights_now, grads_bytes=grads, optimizer_state_bytes=optim,
                            optimizer_temp_bytes=by_phase.get("step", 0), grad_accum=s.grad_accum,
                            grad_bytes_per_element=training.precision_of(states.precision).gradient_bytes,
                            embeddings_trainable=s.method == "full")
    phases = {"forward": int(pk.forward_bytes), "backward": int(pk.backward_bytes) + by_phase.get("backward", 0),
              "optimizer_step": int(pk.optimizer_step_bytes)}
    step_extra = by_phase.get("step", 0)
    static = weights_now + optim
    if s.full_logits_metrics:
        # Trainer.evaluate without preprocess_logits_for_metrics gathers every logit: b × s × V in fp32
        from .inference import vocab_size

        vocab = vocab_size(config)
        extra_eval = 4 * s.batch * s.seq * vocab
        phases["evaluation"] = static + grads + extra_eval + act.saved_bytes // 2
        notes.append("evaluation keeps every logit (b × s × vocab fp32) for compute_metrics")
    if s.eval_generate_batch and s.eval_generate_tokens:
        # Evaluation between steps (Trainer / PEFT's suite): gradients freed (zero_grad(set_to_none=True)),
        # optimizer states still allocated, generate() over the eval batch: its KV cache and prefill peak.
        from . import infer_activations, kv_cache

        eb, et = s.eval_generate_batch, s.eval_generate_tokens
        kv = kv_cache.kv_cache_bytes(kv_cache.kv_layout(config), batch=eb, tokens=et, kv_bytes_per_elem=dtype_bytes)
        gen = infer_activations.prefill_activation_bytes(config, batch=eb, context=et,
                                                         attn=None if s.attn == "eager" else s.attn,
                                                         dtype_bytes=dtype_bytes)
        phases["evaluation_generate"] = static + kv + gen.bytes
        assumptions.append(f"evaluation generates {eb} sequences of {et} tokens between steps: weights and "
                           "optimizer states stay, gradients are freed, plus the KV cache and prefill activations")
    peak_phase = max(phases, key=phases.get)
    allocated = phases[peak_phase]
    churn = act.saved_bytes + grads + step_extra
    reserved = reserved_bytes(allocated, churn, s.overheads.allocator_fragmentation)
    context = s.overheads.cuda_context_bytes + (s.overheads.nccl_bytes if s.gpus > 1 else 0)
    comps = {
        "weights_bytes": gpu_comp.get("weights_bytes", 0),
        "master_weights_bytes": gpu_comp.get("master_weights_bytes", 0),
        "gradients_bytes": gpu_comp.get("gradients_bytes", 0),
        "optimizer_bytes": gpu_comp.get("optimizer_bytes", 0),
    }
    for k, v in gpu_comp.items():
        if k not in comps:
            comps[k] = v
    comps["activations_bytes"] = act.saved_bytes
    comps["allocator_reserve_bytes"] = reserved - allocated
    comps["cuda_context_bytes"] = s.overheads.cuda_context_bytes
    if s.gpus > 1:
        comps["nccl_bytes"] = s.overheads.nccl_bytes
    assumptions += list(sharded.assumptions) + list(states.notes)
    assumptions += [
        f"micro-batch {s.batch} × seq {s.seq}" + (f", gradient accumulation {s.grad_accum} (gradients stay "
                                                  "allocated between micro-batches)" if s.grad_accum > 1 else ""),
        "peak_allocated = the largest of the phases (end of forward, backward, optimizer step): the peak is not "
        "the sum of every part",
        f"peak_reserved adds {s.overheads.allocator_fragmentation:.0%} of activations, gradients and step "
        "temporaries (measured reserved/allocated 1.07-1.49, the fitcheck project's "
        "published T4 runs, github.com/Anassbzdd/fitcheck)",
        "device_total adds the CUDA context" + (" and NCCL" if s.gpus > 1 else ""),
    ]
    adapters = None
    if plan is not None:
        adapters = {"targets": lora_targets, "trainable_params": plan.trainable_params,
                    "adapter_params": plan.adapter_params,
                    "matched_modules": plan.matched_modules, "rank": plan.rank, "dora": plan.dora,
                    "notes": list(plan.notes)}
    return TrainEstimate(
        settings=s, trainable_params=states.trainable_params,
        frozen_params=states.frozen_params + (sum(t.get("params", 0) for t in frozen) if base_bytes else 0),
        components=comps, phases=phases, peak_phase=peak_phase, peak_allocated_bytes=allocated,
        peak_reserved_bytes=reserved, device_total_bytes=reserved + context, cpu_bytes=sharded.cpu_peak_bytes,
        cpu_components=sharded.cpu_components(),
        activations={"saved_bytes": act.saved_bytes, "by_part": dict(act.by_part),
                     "source": act.coefficients_source},
        scheme=sharded.scheme, assumptions=list(dict.fromkeys(assumptions)), notes=notes, adapters=adapters)
