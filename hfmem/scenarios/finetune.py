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
from ..vocab import DTYPE_BYTES, canonical_dtype
from ..errors import SettingsError
from ..model import describe
from . import peft as peftmod
from . import sharding, training
from .overheads import Overheads, reserved_bytes

METHODS = vocab.METHODS
PRECISIONS = tuple(training.PRECISIONS)
ATTNS = vocab.ATTNS
FSDP = vocab.TRAIN_FSDP_STRATEGIES
BNB_COMPUTE_DTYPES = ("fp32", "bf16", "fp16")          # BitsAndBytesConfig(bnb_4bit_compute_dtype=...)
BNB_QUANT_STORAGES = ("uint8", "bf16", "fp16", "fp32")  # BitsAndBytesConfig(bnb_4bit_quant_storage=...)
ADAPTER_DTYPES = ("fp32", "bf16", "fp16")
LOSS_PATHS = ("5.x", "4.46", "4.x")


# TrainSettings field -> the ZeroConfig / DeepSpeed size it sets
_ZERO_SIZE_FIELDS = {"zero_reduce_bucket": "reduce_bucket_size", "zero_allgather_bucket": "allgather_bucket_size",
                     "zero_prefetch_bucket": "prefetch_bucket_size", "zero_max_live_params": "max_live_parameters",
                     "zero_persistence_threshold": "param_persistence_threshold"}


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
    # zero_grad(set_to_none=...): True is torch >= 2.0's default (torch 2.0 changed nn.Module.zero_grad's and
    # Optimizer.zero_grad's default to True); False -- torch < 2.0's default, which the 2022 Trainer's
    # model.zero_grad() ran -- zeroes the gradients in place, so they stay allocated through forward and backward
    grads_set_to_none: bool = True
    attn: str | None = None          # None: transformers' default (sdpa; eager where it has no SDPA)
    lora_rank: int = vocab.LORA_RANK
    lora_targets: object = vocab.LORA_TARGETS   # "all-linear", a list of names, a regex, or None (PEFT's default)
    dora: bool = False
    qlora_format: str = "nf4-dq"
    # QLoRA as PEFT, bitsandbytes and TRL run it; None: the recipes' default, stated in assumptions
    prepare_kbit: bool | None = None     # peft.prepare_model_for_kbit_training (None: on for qlora, off for lora)
    bnb_compute_dtype: str | None = None  # bnb_4bit_compute_dtype fp32|bf16|fp16 (None: the precision's 16-bit
                                          # dtype, as the recipes set it; bitsandbytes' own default is fp32)
    bnb_quant_storage: str = "uint8"     # bnb_4bit_quant_storage: the packed base's dtype label (same bytes)
    adapter_dtype: str | None = None     # fp32|bf16|fp16 (None: fp32, PEFT's autocast_adapter_dtype=True)
    lora_dropout: float = 0.0            # LoraConfig(lora_dropout=...), PEFT's default 0.0
    reentrant: bool | None = None        # checkpoint use_reentrant (None: transformers 5.24's default, False)
    loss_path: str = "5.x"               # transformers' causal-LM loss: 5.x ForCausalLMLoss, 4.x shift + copy
    zero: int | None = None
    offload_optimizer: bool = False
    offload_param: bool = False
    fsdp: str | None = None
    # FSDP CPUOffload(offload_params=True) (accelerate fsdp_offload_params): shards, gradients, optimizer on CPU
    fsdp_offload: bool = False
    # DeepSpeed zero_optimization sizes in elements: a number (5e8), "auto" (HF Trainer's hidden-size rule, for
    # reduce / prefetch / persistence) or None (DeepSpeed's default: sharding.ZERO_SIZE_DEFAULTS)
    zero_reduce_bucket: int | str | None = None        # reduce_bucket_size
    zero_allgather_bucket: int | str | None = None     # allgather_bucket_size (stage 1/2)
    zero_prefetch_bucket: int | str | None = None      # stage3_prefetch_bucket_size
    zero_max_live_params: int | str | None = None      # stage3_max_live_parameters
    zero_persistence_threshold: int | str | None = None  # stage3_param_persistence_threshold
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
        if self.fsdp_offload and not self.fsdp:
            raise TrainSettingsError("fsdp_offload needs FSDP: set an FSDP sharding strategy (full_shard, ...)",
                                     setting="fsdp_offload")
        for name, key in _ZERO_SIZE_FIELDS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if self.zero is None:
                raise TrainSettingsError(f"{name} is a DeepSpeed ZeRO size: it needs a ZeRO stage (zero 0-3)",
                                         setting=name)
            try:
                sharding.parse_zero_size(value, key, setting=name)
            except SettingsError as exc:
                raise TrainSettingsError(str(exc), setting=name) from None
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
        self._validate_qlora_recipe()
        if self.method == "qlora" and (self.zero == 3 or self.fsdp in ("full_shard", "hybrid_shard")):
            # QLoRA + ZeRO-3/FSDP exists (bnb_4bit_quant_storage) but shards a packed uint8 base; modelled as
            # sharded weights below
            pass
        return self

    def _validate_qlora_recipe(self) -> None:
        """The QLoRA-recipe settings (prepare_kbit, bnb_*, adapter_dtype, lora_dropout, reentrant, loss_path)."""
        for name, allowed in (("bnb_compute_dtype", BNB_COMPUTE_DTYPES), ("bnb_quant_storage", BNB_QUANT_STORAGES),
                              ("adapter_dtype", ADAPTER_DTYPES), ("loss_path", LOSS_PATHS)):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise TrainSettingsError(f"{name} must be one of {', '.join(allowed)}, "
                                         f"not {value!r}", setting=name)
        try:
            p = float(self.lora_dropout)
        except (TypeError, ValueError):
            p = float("nan")
        if not 0.0 <= p < 1.0:  # torch.nn.Dropout refuses p outside [0, 1]; p = 1 zeroes every input
            raise TrainSettingsError(f"lora_dropout must be from 0 up to (not including) 1 (got {self.lora_dropout})",
                                     setting="lora_dropout")
        if self.prepare_kbit and self.method != "qlora":
            # prepare_model_for_kbit_training on a 16-bit model would cast every parameter to fp32
            raise TrainSettingsError("prepare_kbit applies to a k-bit base: use it with method qlora",
                                     setting="prepare_kbit")
        if self.method != "qlora" and (self.bnb_compute_dtype is not None or self.bnb_quant_storage != "uint8"):
            raise TrainSettingsError("bnb_compute_dtype and bnb_quant_storage set the 4-bit base: use them with "
                                     "method qlora", setting="bnb_compute_dtype" if self.bnb_compute_dtype
                                     else "bnb_quant_storage")
        if self.method == "full" and (self.adapter_dtype is not None or p > 0):
            raise TrainSettingsError("adapter_dtype and lora_dropout are LoRA settings: use method lora or qlora",
                                     setting="adapter_dtype" if self.adapter_dtype is not None else "lora_dropout")

    @property
    def sharded_qlora(self) -> bool:
        """QLoRA whose 4-bit base is sharded (FSDP full/hybrid shard or ZeRO-3): TRL's ``is_sharded_qlora``."""
        return self.method == "qlora" and (self.zero == 3 or self.fsdp in ("full_shard", "hybrid_shard"))

    @property
    def prepare_kbit_on(self) -> bool:
        """prepare_model_for_kbit_training: as asked, else on for single-device / DDP QLoRA (PEFT's and TRL's
        QLoRA recipes call it) and off for sharded QLoRA: TRL's SFTTrainer skips it when the Params4bit weights
        are sharded ("one should never call ... prepare_model_for_kbit_training when doing QLoRA + FSDP /
        DS-Zero3", trl/trainer/sft_trainer.py)."""
        if self.prepare_kbit is not None:
            return bool(self.prepare_kbit)
        return self.method == "qlora" and not self.sharded_qlora

    @property
    def adapter_width(self) -> str | None:
        """The adapters' dtype: as asked; for sharded QLoRA TRL's get_peft_model(autocast_adapter_dtype=False)
        keeps them in the model's 16-bit dtype (trl/trainer/utils.py / sft_trainer.py); None: PEFT's fp32."""
        if self.adapter_dtype is not None:
            return self.adapter_dtype
        if self.sharded_qlora and self.precision in ("bf16", "fp16"):
            return self.precision
        return None

    @property
    def bnb_compute(self) -> str:
        """bnb_4bit_compute_dtype: as asked, else the recipes' 16-bit dtype (fp16 with an fp16 precision)."""
        if self.bnb_compute_dtype is not None:
            return self.bnb_compute_dtype
        return "fp16" if self.precision in ("fp16", "amp-fp16", "deepspeed-fp16", "deepspeed-mixed") else "bf16"

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
        if s.adapter_width in ("bf16", "fp16"):
            # LoraConfig / get_peft_model(autocast_adapter_dtype=False) on a 16-bit base: the adapters, their
            # gradients and torch AdamW's states (zeros_like the parameter) at that width
            adapter_prec = s.adapter_width
        if s.zero is not None:
            # DeepSpeed casts the whole module (adapters too) to its 16-bit dtype and keeps an fp32 master
            # copy + fp32 states of the trainable adapters only
            adapter_prec = s.precision
        if s.method == "qlora":
            # prepare_model_for_kbit_training (peft 0.21 utils/other.py): every fp16/bf16 parameter whose class
            # is not Params4bit -> fp32 (embeddings, LM head, norms); the packed 4-bit weights keep their bytes
            # whatever bnb_4bit_quant_storage labels them (a Params4bit of a bf16 storage is excluded by class)
            kept = "float32" if s.prepare_kbit_on else "bfloat16"
            q = wmod.weights_bytes(frozen, s.qlora_format, compute_dtype=kept, quantize_experts=False)
            base_bytes = q.stored_bytes
            states = training.model_states(trainable, (), adapter_prec, s.optimizer, adamw_impl=s.adamw_impl)
            assumptions.append(f"QLoRA: frozen base in {s.qlora_format} ({q.quantized_params:,} parameters "
                               "quantized; embeddings, LM head, norms and fused experts stay "
                               + ("fp32: prepare_model_for_kbit_training casts every non-Params4bit fp16/bf16 "
                                  "parameter to fp32" if s.prepare_kbit_on else "16-bit as bitsandbytes leaves "
                                  "them (no prepare_model_for_kbit_training)") + ")")
            assumptions.append(f"bitsandbytes: bnb_4bit_compute_dtype={s.bnb_compute}"
                               + (" (the QLoRA recipes' setting; bitsandbytes' own default is fp32)"
                                  if s.bnb_compute_dtype is None else "")
                               + f", bnb_4bit_quant_storage={s.bnb_quant_storage} (the packed bytes are the same; "
                               "only the dtype FSDP sees differs); each 4-bit Linear dequantizes its whole weight "
                               "for the matmul (MatMul4Bit, forward and backward) and saves no activation")
            if s.prepare_kbit_on:
                s = replace(s, grad_ckpt=True)  # use_gradient_checkpointing=True, its default
                assumptions.append("prepare_model_for_kbit_training (PEFT's and TRL's QLoRA recipes call it): "
                                   "use_gradient_checkpointing=True enables gradient checkpointing; the fp32 "
                                   "embedding output makes the residual stream fp32 (Linear4bit returns its "
                                   "input's dtype), so every checkpointed layer input is 4 B per element")
        else:
            base_bytes = 0
            states = training.model_states(trainable, frozen, adapter_prec, s.optimizer, adamw_impl=s.adamw_impl,
                                           frozen_weight_bytes=base_width)
        width = s.adapter_width or ("fp32" if s.zero is None else s.precision)
        assumptions.append(f"{s.method.upper()}: adapters (rank {s.lora_rank}, targets {targets_text}) in {width} "
                           + ("(adapter-dtype)" if s.adapter_dtype is not None else
                              "as TRL creates them for sharded QLoRA (get_peft_model(autocast_adapter_dtype="
                              "False)); prepare_model_for_kbit_training not called, as TRL skips it"
                              if s.adapter_width is not None else
                              "as PEFT creates them (autocast_adapter_dtype=True)")
                           + f"; base frozen; lora_dropout={s.lora_dropout:g}"
                           + (" (PEFT's LoraConfig default)" if not s.lora_dropout else ""))
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
    # QLoRA under ZeRO-3 / FSDP: the packed 4-bit base shards and gathers with the rest (a float
    # bnb_4bit_quant_storage makes it a float-typed parameter); split into what is sharded (packed data + the
    # 16-bit parameters), what every rank keeps (the quant_state), one layer's share and the root unit's
    quantized_base = None
    sharded_base = s.method == "qlora" and base_bytes and (s.zero == 3 or (s.fsdp and s.fsdp != "no_shard"))
    if sharded_base:
        kept_width = 4 if s.prepare_kbit_on else 2  # the width of the base's non-quantized parameters (kept)

        def _split_base(qe):
            packed = -(-qe.quantized_params // 2)  # two 4-bit values per byte
            unquantized = (qe.logical_params - qe.quantized_params) * kept_width
            return packed + unquantized, max(0, qe.stored_bytes - packed - unquantized)

        _, _, n_layers = sharding.census_units(frozen)
        layer_entries = [e for e in sharding.census_of(frozen) if e.count and n_layers and e.count >= n_layers
                         and e.count % n_layers == 0 and e.role != "embedding"]
        flat_all, qstate_all = _split_base(q)  # the whole base, as counted above
        flat_layers, _ = (_split_base(wmod.weights_bytes(layer_entries, s.qlora_format, compute_dtype=kept,
                                                         quantize_experts=False)) if layer_entries else (0, 0))
        quantized_base = sharding.QuantizedBase(
            flat_bytes=flat_all, replicated_bytes=qstate_all, unit_bytes=flat_layers // max(n_layers, 1),
            root_bytes=flat_all - flat_layers, unit_trainable_params=states.trainable_params // max(n_layers, 1))
        storage = s.bnb_quant_storage
        assumptions.append(f"QLoRA sharded ({'ZeRO-3' if s.zero == 3 else 'FSDP ' + s.fsdp}): "
                           + (f"bnb_4bit_quant_storage {storage} (a float storage, as FSDP/ZeRO-3 need to flatten "
                              "the base with the 16-bit parameters)" if storage != "uint8" else
                              "bnb_4bit_quant_storage uint8 cannot be flattened with the 16-bit parameters: "
                              "FSDP/ZeRO-3 QLoRA recipes set bf16 (--bnb-quant-storage bf16; the same bytes), "
                              "counted so")
                           + "; packed 4-bit base + 16-bit parameters "
                           f"{flat_all:,} B sharded, quant_state {qstate_all:,} B on every rank")
    if s.zero is not None:
        hidden = 0
        try:
            hidden = acts.train_shape(config).hidden
        except Exception:  # noqa: BLE001 - a config without a text shape: "auto" is then refused by name
            hidden = 0
        cfg = sharding.zero_config_for(s, hidden)
        sharded = sharding.zero_states(states, cfg, largest_layer_params=largest_layer_params,
                                       quantized_base=quantized_base if s.zero == 3 else None)
        assumptions.append(sharding.zero_size_assumption(s, cfg))
    elif s.fsdp:
        # the wrapped unit is the decoder layer (transformer_auto_wrap_policy via _no_split_modules), the root
        # unit everything outside the layers; largest_layer_params (the largest module: often the embedding)
        # only where the census has no repeated layer
        unit, root, _ = sharding.census_units(census)
        sharded = sharding.fsdp_states(states, s.data_parallel, largest_unit_params=unit or largest_layer_params or 0,
                                       root_unit_params=root, strategy=s.fsdp, gpus_per_node=s.gpus_per_node,
                                       cpu_offload=s.fsdp_offload, quantized_base=quantized_base)
    elif s.data_parallel > 1:
        sharded = sharding.ddp_states(states)
    else:
        sharded = sharding.single_device_states(states)
    gpu_comp = sharded.gpu_components()
    if base_bytes and quantized_base is None:
        # the 4-bit base whole on every rank (no sharding of it: single GPU, DDP, ZeRO 0-2, FSDP no_shard)
        if not s.offload_param:
            gpu_comp["weights_bytes"] = gpu_comp.get("weights_bytes", 0) + base_bytes

    # activations (one micro-batch) and the peaks by phase
    amp = {"amp-bf16": "bf16", "amp-fp16": "fp16"}.get(s.precision)
    if s.method != "full" and s.precision != "fp32":
        amp = None  # the base runs in its 16-bit dtype; the fp32 adapters are PEFT's, not autocast's
    dtype_bytes = 4 if s.precision == "fp32" else 2
    lora = {"r": s.lora_rank, "targets": lora_targets, "dora": s.dora} if s.method != "full" else False
    if lora:
        lora["dropout"] = float(s.lora_dropout)
        if s.adapter_width is not None:  # bf16/fp16 adapters on the 16-bit stream: no cast copy
            lora["adapter_bytes"] = DTYPE_BYTES[canonical_dtype(s.adapter_width)]
    kbit = None
    if s.method == "qlora":
        # bitsandbytes MatMul4Bit (autograd/_functions.py): F.linear(A, dequantize_4bit(B, quant_state)
        # .to(A.dtype).t()) -- the whole weight dequantized to the dtype it was loaded in (quant_state.dtype,
        # bf16 here, fp16 with fp16 compute), plus a copy at the compute dtype when that differs (fp32); the
        # backward dequantizes again for the input gradient. The largest 4-bit Linear sets the transient.
        largest_linear = max((int(t.get("in_features") or 0) * int(t.get("out_features") or 0)
                              for t in frozen if t.get("role") == "linear"), default=0)
        comp = DTYPE_BYTES[canonical_dtype(s.bnb_compute)]
        kbit = {"prepare": s.prepare_kbit_on, "compute_bytes": comp,
                "dequant_bytes": largest_linear * (2 + (comp if comp != 2 else 0))}
    act = acts.activation_bytes(config, batch=s.batch, seq=s.seq, attn=s.attn, dtype_bytes=dtype_bytes,
                                grad_ckpt=s.grad_ckpt, tp=s.tp, pp=s.pp, lora=lora, amp=amp, kbit=kbit,
                                reentrant=bool(s.reentrant), loss_path=s.loss_path)
    if s.grad_ckpt:
        assumptions.append("checkpointing " + ("use_reentrant=True (as asked)" if s.reentrant else
                           "use_reentrant=False" + (" (as asked)" if s.reentrant is False else
                           " (transformers 5.24 gradient_checkpointing_enable's default, which PEFT 0.22's "
                           "prepare_model_for_kbit_training and the Trainer also reach)")))
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
                            grads_kept=not s.grads_set_to_none,
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
    # the allocator's reserve: eager attention's s×s tensors strand whole segments (overheads.
    # eager_attention_stranded_bytes, from the caching allocator's rules); the rest of the churn keeps the
    # typical fraction. A fragmentation the user sets (not the default) is applied to all the churn, as stated.
    from . import overheads as ovh

    s2_request = s2_saved = 0
    if s.attn == "eager" and s.overheads.allocator_fragmentation == ovh.ALLOCATOR_FRAGMENTATION:
        heads_here = max(acts.train_shape(config).heads // s.tp, 1)
        # the largest s×s block: fp32 probabilities in fp32 training and under autocast (softmax is an fp32 op)
        s2_request = s.batch * heads_here * s.seq * s.seq * (4 if (s.precision == "fp32" or amp) else 2)
        sdpa = acts.activation_bytes(config, batch=s.batch, seq=s.seq, attn="sdpa", dtype_bytes=dtype_bytes,
                                     grad_ckpt=s.grad_ckpt, tp=s.tp, pp=s.pp, lora=lora, amp=amp)
        s2_saved = max(act.saved_bytes - sdpa.saved_bytes, 0)
    reserved = ovh.training_reserved_bytes(allocated, churn, s.overheads.allocator_fragmentation,
                                           s2_request_bytes=s2_request, s2_saved_bytes=s2_saved,
                                           layers=int(act.settings.get("layers_on_stage") or 0),
                                           checkpointed=s.grad_ckpt)
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
        *(["zero_grad(set_to_none=False) (torch < 2.0's default): the zeroed gradients stay allocated through "
           "every forward and backward, as with gradient accumulation"] if not s.grads_set_to_none else []),
        "peak_allocated = the largest of the phases (end of forward, backward, optimizer step): the peak is not "
        "the sum of every part",
        f"peak_reserved adds {s.overheads.allocator_fragmentation:.0%} of activations, gradients and step "
        "temporaries (measured reserved/allocated 1.07-1.49, the fitcheck project's "
        "published T4 runs, github.com/Anassbzdd/fitcheck)"
        + (f"; eager attention's s×s tensors instead strand one {ovh.segment_bytes(s2_request) / 2**20:.0f} MiB "
           f"segment {'in all' if s.grad_ckpt else 'per layer'} (the caching allocator's best-fit splits each "
           "freed s×s block for smaller requests; the next layer's s×s request needs a new segment)"
           if s2_request else ""),
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
