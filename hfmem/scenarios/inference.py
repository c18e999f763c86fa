"""Serving memory: weights + KV cache + activations + overheads, per GPU, for transformers or a vLLM-style
engine. Pure functions over (inventory census, config dict, settings): no I/O, no torch.

What is predicted (the three totals, always labelled):

* ``peak_allocated_bytes``: what ``torch.cuda.max_memory_allocated()`` would report on the busiest GPU
  (rank 0): weights, buffers, the KV cache and the activation peak of the worst phase.
* ``peak_reserved_bytes``: ``max_memory_reserved()``: allocated plus the caching allocator's reserve
  (``Overheads.allocator_fragmentation`` of the churning memory; for vLLM, plus its CUDA-graph pool).
* ``device_total_bytes``: what nvidia-smi shows for the process: reserved plus the CUDA context (plus
  NCCL when tensor parallel > 1).

Engines:

* ``transformers`` (``generate``): a prefill of ``batch × context`` tokens, then ``new_tokens`` decode
  steps; the KV cache follows transformers' ``DynamicCache`` retention (``kv_cache.py``); the peak is the
  larger of the prefill and the last decode step.
* ``vllm``: weights, the profiled activation peak (one forward of ``max_num_batched_tokens`` tokens, the
  sampler's fp32 logits for ``max_num_seqs`` sequences), paged KV blocks for ``batch`` concurrent sequences
  of ``context`` tokens, CUDA graphs; vLLM then takes ``gpu_memory_utilization`` of the GPU whatever the
  load (``vllm_device_bytes``) and turns the rest into KV blocks (``max_batch`` = concurrent sequences).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..metadata.config import defaults_assumption
from ..errors import SettingsError
from ..model import ModelDescription, Tower, describe
from ..model.description import DECODER
from ..vocab import ATTNS, DTYPE_ALIASES, ENGINES, FP8_ALIASES, KV_DTYPE_BYTES, VLLM_BLOCK_SIZE, canonical_dtype
from . import infer_activations, weights
from . import kv_cache as kvc
from ..model.census import census_of as census_of_tensors
from .overheads import Overheads, reserved_bytes

# Bytes per element and canonical name of every accepted dtype spelling (re-exported from hfmem.vocab).
_CANON = {**DTYPE_ALIASES, **FP8_ALIASES}
DTYPE_BYTES = {name: KV_DTYPE_BYTES[canon] for name, canon in _CANON.items()}
# vLLM defaults (vllm/config: SchedulerConfig; V1 on a >= 70 GiB datacenter GPU for the OpenAI server):
VLLM_MAX_NUM_BATCHED_TOKENS = 8192
VLLM_MAX_NUM_SEQS = 256


class InferenceSettingsError(SettingsError):
    """A setting out of range; the message names it (the CLI prints it as a usage error, exit 2)."""


@dataclass(frozen=True)
class InferenceSettings:
    engine: str = "transformers"
    context: int = 4096            # prompt tokens (transformers) / max-model-len (vLLM)
    batch: int = 1                 # sequences (transformers) / concurrent sequences at full context (vLLM)
    new_tokens: int = 0            # decode steps after the prefill (transformers)
    weights_format: str | None = None   # None: the checkpoint's own format
    compute_dtype: str | None = None    # None: the checkpoint's 16/32-bit dtype (bf16 for quantized ones)
    kv_dtype: str | None = None         # None: the compute dtype
    attn: str | None = None             # None: transformers' default (sdpa; eager where it has no SDPA) /
                                        # flash (vLLM)
    tp: int = 1                         # tensor-parallel degree = GPUs
    overheads: Overheads = field(default_factory=Overheads)
    block_size: int = VLLM_BLOCK_SIZE
    gpu_memory_utilization: float = 0.9
    max_num_batched_tokens: int = VLLM_MAX_NUM_BATCHED_TOKENS
    max_num_seqs: int = VLLM_MAX_NUM_SEQS
    gpu_memory_bytes: int | None = None  # the GPU's memory, when known (vLLM sizes its KV pool from it)
    logits: str = "last"  # "last": generate's logits_to_keep=1; "all": a plain forward (scoring, perplexity,
                          # or transformers < 4.45's generate, which computed every position's logits)
    image_size: int | None = None       # vision inputs: side in pixels (None: the config's image_size, else 224)
    audio_seconds: float | None = None  # audio inputs: seconds per sample (None: 10 s; Whisper: one 30 s window)
    images: int = 0                     # vision-language models: images per sequence (their tokens join the context)
    # bitsandbytes 4-bit: Linear4bit's compute dtype (BitsAndBytesConfig.bnb_4bit_compute_dtype). None: a
    # prequantized checkpoint's quantization_config, else transformers' default, float32 (BitsAndBytesConfig:
    # bnb_4bit_compute_dtype=None -> torch.float32)
    bnb_compute_dtype: str | None = None
    lora_rank: int = 0                  # unmerged LoRA adapters served on top of the model (0: none)
    lora_targets: object = "all-linear"  # as TrainSettings.lora_targets: "all-linear", names, a regex, None

    def validate(self) -> "InferenceSettings":
        if self.engine not in ENGINES:
            raise InferenceSettingsError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}",
                                         setting="engine")
        for name in ("context", "batch", "tp", "block_size", "max_num_batched_tokens", "max_num_seqs"):
            if int(getattr(self, name)) < 1:
                raise InferenceSettingsError(f"{name.replace('_', '-')} must be at least 1 "
                                             f"(got {getattr(self, name)})", setting=name)
        if self.image_size is not None and int(self.image_size) < 1:
            raise InferenceSettingsError(f"image-size must be at least 1 (got {self.image_size})",
                                         setting="image_size")
        if self.audio_seconds is not None and not float(self.audio_seconds) > 0:
            raise InferenceSettingsError(f"audio-seconds must be more than 0 (got {self.audio_seconds})",
                                         setting="audio_seconds")
        if int(self.images) < 0:
            raise InferenceSettingsError(f"images must be 0 or more (got {self.images})", setting="images")
        if int(self.new_tokens) < 0:
            raise InferenceSettingsError(f"new-tokens must be 0 or more (got {self.new_tokens})", setting="new_tokens")
        if self.attn is not None and self.attn not in ATTNS:
            raise InferenceSettingsError(f"attn must be one of {', '.join(ATTNS)}, not {self.attn!r}", setting="attn")
        for name in ("compute_dtype", "kv_dtype"):
            value = getattr(self, name)
            if value is not None and not (name == "compute_dtype" and str(value).lower() in FP8_ALIASES):
                try:  # fp8 compute: its own message below
                    canonical_dtype(value, setting=name, fp8=name == "kv_dtype")
                except SettingsError as exc:
                    raise InferenceSettingsError(str(exc), setting=name) from None
        if self.bnb_compute_dtype is not None:
            try:
                canonical_dtype(self.bnb_compute_dtype, setting="bnb_compute_dtype")
            except SettingsError as exc:
                raise InferenceSettingsError(str(exc), setting="bnb_compute_dtype") from None
        if int(self.lora_rank) < 0:
            raise InferenceSettingsError(f"lora-rank must be 0 (no adapters) or more (got {self.lora_rank})",
                                         setting="lora_rank")
        if self.logits not in ("last", "all"):
            raise InferenceSettingsError(f"logits must be 'last' or 'all', not {self.logits!r}", setting="logits")
        if self.compute_dtype is not None and canonical_dtype(self.compute_dtype, fp8=True) == "fp8":
            raise InferenceSettingsError("compute dtype fp8 is not supported; use weights_format='fp8' for fp8 "
                                         "weights", setting="compute_dtype")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise InferenceSettingsError("gpu-memory-utilization must be in (0, 1]", setting="gpu_memory_utilization")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["overheads"] = self.overheads.to_dict()
        return d


@dataclass
class PhaseEstimate:
    name: str                 # "prefill", "decode" or "vllm-profile"
    tokens: int               # tokens per sequence in the cache at this phase's peak
    kv_cache_bytes: int       # per GPU
    activations_bytes: int    # per GPU
    peak_allocated_bytes: int


@dataclass
class InferenceEstimate:
    settings: InferenceSettings
    weights_format: str
    compute_dtype: str
    kv_dtype: str
    attn: str
    logical_params: int
    stored_weights_bytes: int        # the whole model, all GPUs together
    components: dict[str, int]       # per GPU (rank 0), at the peak phase
    kv_bytes_per_token: float        # one sequence, full-context accounting, the whole model
    kv_bytes_per_token_per_gpu: float
    phases: list[PhaseEstimate]
    peak_phase: str
    peak_allocated_bytes: int
    peak_reserved_bytes: int
    device_total_bytes: int
    max_position_embeddings: int | None
    assumptions: list[str]
    notes: list[str]
    kv_layout_summary: dict[str, int]
    vllm: dict | None = None         # vLLM only: KV budget and the blocks/sequences it allows
    # "generate" (a decoder LM: prefill + decode), "forward" (a model that does not generate: one forward over
    # the batch) or "encoder-decoder" (encode, then decode with self and cross KV)
    kind: str = "generate"
    batch_inputs: dict = field(default_factory=dict)  # what one sample is: tokens, image side, audio seconds
    bnb_compute_dtype: str | None = None  # bitsandbytes 4-bit: Linear4bit's compute dtype used; None otherwise

    def to_dict(self) -> dict:
        d = asdict(self)
        d["settings"] = self.settings.to_dict()
        return d


# -- views of the model description -------------------------------------------------------------------


def language_tower(config: dict | ModelDescription) -> Tower | None:
    """The tower serving is sized by: the description's language tower (the text decoder of a (multimodal)
    LM, a text encoder, an encoder-decoder's encoder stack), else an encoder-decoder's decoder (Whisper,
    whose generic size fields name no encoder heads); None for a model without one (ViT, wav2vec2)."""
    desc = describe(config)
    return desc.text or desc.tower(DECODER)


def attention_heads(config: dict | ModelDescription) -> int | None:
    """Query heads of the language tower; None without attention heads (Mamba) or without such a tower."""
    tower = language_tower(config)
    return (tower.heads or None) if tower else None


def kv_heads(config: dict | ModelDescription) -> int | None:
    """KV heads of the language tower (Falcon/GPT-BigCode multi_query: 1, as the description reads them);
    None for an MLA latent (one latent per token, no heads to shard) or a tower without attention."""
    tower = language_tower(config)
    if tower is None or tower.mla is not None:
        return None
    return tower.kv_heads or None


def vocab_size(config: dict | ModelDescription) -> int:
    """The language tower's vocabulary (0 without one)."""
    tower = language_tower(config)
    return tower.vocab if tower else 0


def max_context(config: dict) -> int | None:
    """The longest context the language model's config declares (``hfmem.model.describe.max_context``)."""
    tower = describe(config).text
    return tower.max_positions if tower else None


# -- components --------------------------------------------------------------------------------------------

SHARDED_ROLES = ("linear", "experts", "embedding", "lm_head")  # vLLM: column/row-parallel, vocab-parallel


def weights_per_gpu(bytes_by_role: dict[str, int], tp: int) -> int:
    """Tensor parallel: linear layers (column/row parallel), experts, the vocab-parallel embedding and LM head
    are split across ``tp`` GPUs (vLLM's parallel layers); norms, routers and other small tensors are
    replicated. Rank 0 holds the ceiling of each split."""
    total = 0
    for role, nbytes in bytes_by_role.items():
        total += math.ceil(nbytes / tp) if role in SHARDED_ROLES else nbytes
    return total


def kv_share_per_gpu(config: dict, tp: int) -> float:
    """Fraction of the KV cache one GPU holds under tensor parallel: KV heads are split, but never below
    one head per GPU (with tp > n_kv each head is replicated tp / n_kv times); an MLA latent has no heads
    and is replicated on every GPU (vLLM)."""
    n_kv = kv_heads(config)
    if n_kv is None:
        return 1.0
    return max(n_kv // tp, 1) / n_kv if tp > 1 else 1.0


def _kv_bytes(layout, settings: InferenceSettings, *, batch: int, tokens: int, kv_bpe: float,
              phase: str = "prefill", state_bpe: float = 2, prompt_tokens: int | None = None) -> int:
    """KV cache (and fixed recurrent states) for ``batch`` sequences holding ``tokens`` tokens. For an
    encoder-decoder model the prompt is the encoder's input: the cross-attention cache holds
    ``layout.encoder_tokens`` (a fixed encoder length, e.g. Whisper's 1,500) or the prompt, and the decoder's
    self-attention holds the generated tokens (``tokens`` − prompt, at least the start token)."""
    kwargs = {}
    if layout.is_encoder_decoder:
        prompt = prompt_tokens if prompt_tokens is not None else tokens
        kwargs["encoder_tokens"] = layout.encoder_tokens or prompt
        tokens = max(tokens - prompt, 0) + 1
    return kvc.kv_cache_bytes(layout, batch=batch, tokens=tokens, kv_bytes_per_elem=kv_bpe,
                              engine=settings.engine, block_size=settings.block_size, phase=phase,
                              new_tokens=1, state_bytes_per_elem=state_bpe, **kwargs)


@dataclass(frozen=True)
class _BnbRuntime:
    """What bitsandbytes' linears add at run time (weights.bnb_linear_extra_bytes) and on load."""
    family: str                          # "bnb4" or "bnb8"
    linears: tuple[tuple[str, int, int], ...]   # (census name, out, in) of the quantized shapes
    model_bytes: int                     # the dtype the rest of the model runs in (input of every linear)
    compute_bytes: int                   # Linear4bit.compute_dtype (bnb8: 2, MatMul8bitLt's fp16)
    compute_is_model: bool               # bnb4: compute dtype == model dtype; bnb8: the model dtype is fp16
    load_extra_bytes: int                # quantize-on-load transient above the loaded model (0: prequantized)
    compute_dtype: str | None = None     # bnb4: Linear4bit's compute dtype

    def extra_bytes(self, rows: int) -> int:
        return max((weights.bnb_linear_extra_bytes(self.family, out=o, inn=i, rows=rows,
                                                   model_bytes=self.model_bytes, compute_bytes=self.compute_bytes,
                                                   compute_is_model=self.compute_is_model,
                                                   storage_is_compute=self.compute_is_model)
                    for _, o, i in self.linears), default=0)


@dataclass(frozen=True)
class _ServingAdapters:
    """Unmerged LoRA adapters served on the model (PeftModel.from_pretrained)."""
    weights_bytes: int
    modules: tuple[tuple[int, int, int], ...]   # (out, in, rank) of each adapted shape
    adapter_bytes: int = 4

    def extra_bytes(self, rows: int, model_bytes: int) -> int:
        return max((infer_activations.lora_serving_extra_bytes(out=o, inn=i, rank=r, rows=rows,
                                                              model_bytes=model_bytes,
                                                              adapter_bytes=self.adapter_bytes)
                    for o, i, r in self.modules), default=0)


def _bnb_runtime(tensors, config: dict, s: InferenceSettings, *, fmt: str, family: str | None,
                 checkpoint_format: str, compute: str, assumptions: list[str]) -> _BnbRuntime | None:
    """bitsandbytes' run-time and load-time transients for a transformers run of a bnb format; refuses
    ``bnb_compute_dtype`` where it means nothing."""
    if s.bnb_compute_dtype is not None and (family != "bnb4" or s.engine != "transformers"):
        raise InferenceSettingsError(
            f"bnb-compute-dtype applies to bitsandbytes 4-bit weights (nf4, fp4, nf4-dq, fp4-dq) served by "
            f"transformers, not to {fmt} weights" + (f" on {s.engine}" if s.engine != "transformers" else ""),
            setting="bnb_compute_dtype")
    if family not in ("bnb4", "bnb8") or s.engine != "transformers":
        return None
    model_bytes = KV_DTYPE_BYTES[compute]
    linears = tuple(weights.quantized_linears(tensors, fmt))
    on_the_fly = checkpoint_format in ("fp32", "bf16", "fp16")
    largest = max(linears, key=lambda t: t[1] * t[2], default=None)
    load = weights.bnb_load_extra_bytes(family, out=largest[1], inn=largest[2], load_bytes=model_bytes) \
        if (on_the_fly and largest) else 0
    if on_the_fly and largest:
        what = ("the 16-bit tensor (quantize_4bit writes the packed weight and absmax beside it)" if family == "bnb4"
                else "the 16-bit tensor and Int8Params' fp16 copy (B.to(device, float16); CB is the final int8)")
        assumptions.append(f"load phase: transformers 5.24 quantizes on load one tensor at a time (no thread "
                           f"pool for on-the-fly quantization); the peak is the loaded model plus, for the largest "
                           f"quantized weight ({largest[0]}, {largest[1]}x{largest[2]}), {what}: {load:,} B")
    if family == "bnb8":
        assumptions.append("bitsandbytes LLM.int8 (Linear8bitLt, bitsandbytes 0.45-0.49): per linear the input's "
                           "fp16 copy (unless fp16), its int8 rows and fp32 scales and the int32 product "
                           "[tokens, out]; outlier columns (threshold 6.0) are data-dependent and not counted")
        return _BnbRuntime("bnb8", linears, model_bytes, 2, compute == "float16", load)
    qc = weights._quantization_config(config) if fmt == checkpoint_format else None
    stated = s.bnb_compute_dtype or (qc or {}).get("bnb_4bit_compute_dtype")
    bnb_compute = canonical_dtype(str(stated), setting="bnb_compute_dtype") if stated else "float32"
    source = ("as given" if s.bnb_compute_dtype else "the checkpoint's quantization_config" if stated else
              "transformers' BitsAndBytesConfig default (bnb_4bit_compute_dtype=None -> torch.float32); pass "
              "--bnb-compute-dtype bf16 if you load with bnb_4bit_compute_dtype=torch.bfloat16")
    assumptions.append(
        f"bitsandbytes 4-bit compute dtype {bnb_compute} ({source}): Linear4bit casts each input to it "
        f"(x.to(compute_dtype)); with more than one row MatMul4Bit dequantizes the weight to its storage dtype "
        f"({compute}) and copies it to {bnb_compute} (dequantize_4bit(...).to(A.dtype), bitsandbytes 0.45-0.49; "
        f"0.50's gemm_4bit dequantizes straight to the compute dtype), one linear at a time; a single-row decode "
        f"step takes gemv_4bit (no dequantized weight); the output is cast back to {compute}. Counted for the "
        f"quantized linear whose transient is largest, added to the phase's activation peak (an upper bound: "
        f"it assumes the layer's other transients are alive with it)")
    return _BnbRuntime("bnb4", linears, model_bytes, KV_DTYPE_BYTES[bnb_compute], bnb_compute == compute, load,
                       bnb_compute)


def _serving_adapters(tensors, config: dict, s: InferenceSettings, *, compute: str,
                      assumptions: list[str]) -> _ServingAdapters | None:
    """LoRA adapters at serving time: PEFT's matching (scenarios/peft.py), weights in float32
    (PeftModel.from_pretrained(autocast_adapter_dtype=True) casts 16-bit adapter weights to float32)."""
    if not s.lora_rank:
        return None
    if s.engine != "transformers":
        raise InferenceSettingsError("lora-rank: unmerged LoRA adapters are modelled for transformers (PEFT), "
                                     "not for vLLM's LoRA serving", setting="lora_rank")
    from ..errors import UsageError
    from . import peft as peftmod

    try:
        plan = peftmod.lora_adapters(tensors, rank=int(s.lora_rank), targets=s.lora_targets,
                                     model_type=describe(config).model_type or None)
    except UsageError as exc:
        raise InferenceSettingsError(str(exc.message if hasattr(exc, "message") else exc),
                                     setting="lora_targets") from None
    by_name = {}
    for t in census_of_tensors(tensors):
        if t.role in ("linear", "lm_head", "embedding") and t.out_features and t.in_features:
            by_name.setdefault(t.name, (t.out_features, t.in_features))
    modules = tuple(sorted({(*by_name[m["name"]], int(m["rank"])) for m in plan.matched_modules
                            if m["name"] in by_name}))
    nbytes = plan.adapter_params * 4
    names = ", ".join(sorted({m["name"] for m in plan.matched_modules}))
    assumptions.append(f"LoRA adapters r={s.lora_rank} on {names}, unmerged (PeftModel.from_pretrained): "
                       f"{plan.adapter_params:,} parameters in float32 (autocast_adapter_dtype=True) = {nbytes:,} B; "
                       "per adapted module the input cast to float32, x@A, B's output and its scaled copy at the "
                       "largest module's moment, added to each phase's activation peak")
    return _ServingAdapters(nbytes, modules)


def _linear_extras(bnb: _BnbRuntime | None, adapters: _ServingAdapters | None, *, rows: int,
                   dtype_bytes: int) -> int:
    """The largest per-linear transient of a phase over ``rows`` rows: bitsandbytes' and an adapter's on the same
    module add up (the adapter runs after the base layer returns, so the larger of the two)."""
    return max(bnb.extra_bytes(rows) if bnb else 0, adapters.extra_bytes(rows, dtype_bytes) if adapters else 0)


def estimate_inference(tensors: list[dict], config: dict, settings: InferenceSettings, *,
                       checkpoint_format: str, buffer_bytes: int = 0,
                       checkpoint_stored_bytes: int | None = None) -> InferenceEstimate:
    """Per-GPU memory of serving one model. ``tensors``: the inventory's census; ``checkpoint_format``: what
    the checkpoint stores (``weights.checkpoint_format``); ``checkpoint_stored_bytes``: the safetensors
    headers' byte count, used as the stored size when serving the checkpoint's own format."""
    from . import infer_activations, weights

    s = settings.validate()
    notes: list[str] = []
    assumptions: list[str] = []
    fmt = s.weights_format or checkpoint_format
    quantized_ckpt = checkpoint_format not in ("fp32", "bf16", "fp16")
    declared = describe(config).declared_dtype
    # quantized weights compute in the config's 16-bit dtype (GPTQ/AWQ checkpoints declare float16), else bf16
    low_bit_compute = declared if declared in ("float16", "bfloat16") else "bfloat16"
    default_compute = low_bit_compute if quantized_ckpt or fmt not in ("fp32", "bf16", "fp16") else _CANON[fmt]
    if fmt in ("fp32", "bf16", "fp16") and s.compute_dtype is None:
        default_compute = _CANON[fmt]
    if s.engine == "vllm" and s.compute_dtype is None and s.weights_format is None and fmt == "fp32":
        # vLLM's dtype="auto": "FP16 precision for FP32 and FP16 models, BF16 precision for BF16 models"
        # (vLLM engine arguments, --dtype): an fp32 checkpoint is served in fp16
        default_compute = "float16"
        notes.append("vLLM serves an fp32 checkpoint in float16 (its --dtype auto); pass --dtype fp32 to keep fp32")
    compute = canonical_dtype(s.compute_dtype, setting="compute_dtype") if s.compute_dtype else default_compute
    if fmt in ("fp32", "bf16", "fp16") and s.weights_format is None and (s.compute_dtype or compute != _CANON[fmt]):
        fmt = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[compute]  # load in the asked dtype
    kv_dtype = canonical_dtype(s.kv_dtype, setting="kv_dtype", fp8=True) if s.kv_dtype else compute
    kv_bpe = KV_DTYPE_BYTES[kv_dtype]
    dtype_bytes = KV_DTYPE_BYTES[compute]
    # vLLM's default backend is flash attention, which has no fp32 kernel: vLLM falls back to another
    # backend for fp32 models (no s×s scores either), estimated as sdpa. transformers: its own default,
    # sdpa, or eager for the architectures it has no SDPA for (an explicit sdpa for those is refused, as
    # transformers refuses it).
    from .attention import choose

    if s.engine == "vllm":
        attn = s.attn or ("flash" if compute != "float32" else "sdpa")
    else:
        attn, note, refusal = choose(config, s.attn)
        if refusal:
            raise InferenceSettingsError(refusal)
        if note:
            assumptions.append(note)
    defaults = defaults_assumption(config)
    if defaults:
        assumptions.append(defaults)

    fmt_opts = weights.format_options(config) if fmt == checkpoint_format else {}
    family = weights.FORMATS[fmt].family if fmt in weights.FORMATS else None
    if family in ("bnb8", "bnb4") and s.engine == "transformers":
        # transformers 5.24's bitsandbytes integration replaces nn.Linear/Conv1D only: fused 3-D MoE expert
        # tensors stay 16-bit (replace_with_bnb_linear); vLLM's bitsandbytes MoE path quantizes them.
        fmt_opts["quantize_experts"] = False
    w = weights.weights_bytes(tensors, fmt, compute_dtype=compute, **fmt_opts)
    stored = w.stored_bytes
    if fmt == checkpoint_format and checkpoint_stored_bytes:
        if quantized_ckpt and abs(checkpoint_stored_bytes - stored) > 0.02 * checkpoint_stored_bytes:
            notes.append(f"the checkpoint's safetensors hold {checkpoint_stored_bytes:,} B against "
                         f"{stored:,} B computed for {fmt}; using the checkpoint's bytes")
        if quantized_ckpt:
            stored = checkpoint_stored_bytes
    by_role = dict(w.bytes_by_role)
    if stored != w.stored_bytes and w.stored_bytes:
        scale = stored / w.stored_bytes
        by_role = {k: int(v * scale) for k, v in by_role.items()}
    assumptions += list(w.assumptions)
    weights_gpu = weights_per_gpu(by_role, s.tp)
    buffers_gpu = int(buffer_bytes)
    bnb = _bnb_runtime(tensors, config, s, fmt=fmt, family=family, checkpoint_format=checkpoint_format,
                       compute=compute, assumptions=assumptions)
    adapters = _serving_adapters(tensors, config, s, compute=compute, assumptions=assumptions)
    if s.tp > 1:
        assumptions.append(f"tensor parallel {s.tp}: linear layers, experts, embedding and LM head split "
                           "across GPUs; norms, routers and buffers replicated; numbers are for rank 0")
        heads = attention_heads(config)
        if heads and heads % s.tp:
            notes.append(f"{heads} attention heads are not divisible by tensor parallel {s.tp}: vLLM refuses "
                         "this degree")

    layout = kvc.kv_layout(config)
    share = kv_share_per_gpu(config, s.tp)
    if s.tp > 1 and share > 1 / s.tp:
        n_kv = kv_heads(config)
        notes.append("MLA latent cache replicated on every GPU" if n_kv is None else
                     f"{n_kv} KV heads on {s.tp} GPUs: each GPU keeps {max(n_kv // s.tp, 1)} head(s); "
                     "KV heads are replicated")
    per_token = kvc.kv_bytes_per_token(layout, kv_bytes_per_elem=kv_bpe)
    model_max = max_context(config)
    total_tokens = s.context + (s.new_tokens if s.engine == "transformers" else 0)
    if model_max and total_tokens > model_max:
        notes.append(f"context {total_tokens:,} exceeds the model's max_position_embeddings {model_max:,}: "
                     "quality degrades beyond it unless rope scaling is configured (vLLM refuses a longer "
                     "max-model-len)")

    vocab = vocab_size(config)
    phases: list[PhaseEstimate] = []
    frag = s.overheads.allocator_fragmentation
    vllm_info = None
    static = weights_gpu + buffers_gpu + (adapters.weights_bytes if adapters else 0)

    def act_gpu(est) -> int:
        parts = est.by_part
        residual = int(parts.get("residual_bytes", 0))
        logits = int(parts.get("logits_bytes", 0))
        rest = est.bytes - residual - logits
        return residual + logits + math.ceil(rest / s.tp)

    if s.engine == "transformers":
        pre = infer_activations.prefill_activation_bytes(config, batch=s.batch, context=s.context, attn=attn,
                                                         dtype_bytes=dtype_bytes)
        kv_pre = math.ceil(_kv_bytes(layout, s, batch=s.batch, tokens=s.context, kv_bpe=kv_bpe,
                                     state_bpe=dtype_bytes, prompt_tokens=s.context) * share)
        a_pre = act_gpu(pre)
        if s.logits == "all":
            # Every position's logits, [b, s, V] in the compute dtype, exist from the LM head on: the regions
            # after the layers grow by b·(s−1)·V; the layers' own transients were freed before.
            extra = s.batch * (s.context - 1) * vocab * dtype_bytes
            late = max((v for k, v in pre.regions.items() if k in ("lm_head", "post")), default=pre.bytes)
            a_pre = max(a_pre, act_gpu(pre) - pre.bytes + late + extra)
            assumptions.append("logits of every prompt position kept (--logits all): b·(s−1)·V more in the "
                               "compute dtype after the LM head")
        a_pre += _linear_extras(bnb, adapters, rows=s.batch * s.context, dtype_bytes=dtype_bytes)
        if bnb is not None and bnb.load_extra_bytes:
            phases.append(PhaseEstimate("load", 0, 0, bnb.load_extra_bytes, weights_gpu + buffers_gpu
                                        + bnb.load_extra_bytes))
        phases.append(PhaseEstimate("prefill", s.context, kv_pre, a_pre, static + kv_pre + a_pre))
        assumptions += [f"prefill activations: {a}" for a in pre.assumptions]
        if s.new_tokens:
            end = s.context + s.new_tokens
            dec = infer_activations.decode_activation_bytes(config, batch=s.batch, cache_tokens=end, attn=attn,
                                                            dtype_bytes=dtype_bytes)
            kv_dec = math.ceil(_kv_bytes(layout, s, batch=s.batch, tokens=end, kv_bpe=kv_bpe, phase="decode",
                                         state_bpe=dtype_bytes, prompt_tokens=s.context) * share)
            a_dec = act_gpu(dec) + _linear_extras(bnb, adapters, rows=s.batch, dtype_bytes=dtype_bytes)
            phases.append(PhaseEstimate("decode", end, kv_dec, a_dec, static + kv_dec + a_dec))
        peak = max(phases, key=lambda p: p.peak_allocated_bytes)
        allocated = peak.peak_allocated_bytes
        reserved = reserved_bytes(allocated, peak.kv_cache_bytes + peak.activations_bytes, frag)
        graphs = 0
    else:
        prof = infer_activations.prefill_activation_bytes(
            config, batch=1, context=min(s.max_num_batched_tokens, max(s.context, 1) * s.max_num_seqs),
            attn=attn, dtype_bytes=dtype_bytes, engine="vllm")
        sampler = s.max_num_seqs * vocab * 4  # fp32 logits of every running sequence in the dummy sampler run
        a_prof = act_gpu(prof) + sampler
        assumptions += [f"vLLM profile run: {a}" for a in prof.assumptions]
        assumptions.append(f"vLLM profile run: one forward of {s.max_num_batched_tokens} tokens "
                           f"(max-num-batched-tokens) and fp32 sampler logits for {s.max_num_seqs} sequences "
                           "(max-num-seqs)")
        kv_seq = math.ceil(_kv_bytes(layout, s, batch=1, tokens=s.context, kv_bpe=kv_bpe,
                                     state_bpe=dtype_bytes) * share)
        kv_need = kv_seq * s.batch
        phases.append(PhaseEstimate("vllm-profile", 0, 0, a_prof, static + a_prof))
        phases.append(PhaseEstimate("serving", s.context, kv_need, a_prof, static + kv_need + a_prof))
        peak = phases[-1]
        allocated = peak.peak_allocated_bytes
        graphs = s.overheads.cuda_graphs_bytes
        reserved = reserved_bytes(allocated, a_prof, frag) + graphs
        vllm_info = {"kv_bytes_per_sequence": kv_seq, "blocks_per_sequence": None,
                     "block_bytes": None, "gpu_memory_utilization": s.gpu_memory_utilization}
        block_tokens = s.block_size
        block_bytes = math.ceil(kvc.kv_bytes_per_token(layout, kv_bytes_per_elem=kv_bpe) * block_tokens * share)
        vllm_info["block_bytes"] = block_bytes
        vllm_info["blocks_per_sequence"] = math.ceil(s.context / block_tokens)
    context_bytes = s.overheads.cuda_context_bytes + (s.overheads.nccl_bytes if s.tp > 1 else 0)
    device_total = reserved + context_bytes

    if s.engine == "vllm" and s.gpu_memory_bytes:
        pool = int(s.gpu_memory_utilization * s.gpu_memory_bytes)
        budget = pool - (static + peak.activations_bytes + graphs + context_bytes
                         + round(frag * peak.activations_bytes))
        vllm_info.update({
            "pool_bytes": pool,
            "kv_budget_bytes": max(budget, 0),
            "num_blocks": max(budget, 0) // vllm_info["block_bytes"] if vllm_info["block_bytes"] else 0,
            "max_concurrent_sequences": max(budget, 0) // kv_seq if kv_seq else None,
        })
        notes.append(f"vLLM takes gpu_memory_utilization × GPU = {pool:,} B at start-up whatever the load and "
                     "fills what is left after weights, activations and overheads with KV blocks")

    comps = {
        "weights_bytes": weights_gpu,
        "buffers_bytes": buffers_gpu,
        **({"adapter_weights_bytes": adapters.weights_bytes} if adapters and peak.name != "load" else {}),
        "kv_cache_bytes": peak.kv_cache_bytes,
        "activations_bytes": peak.activations_bytes,
        "allocator_reserve_bytes": reserved - allocated - graphs,
        "cuda_context_bytes": s.overheads.cuda_context_bytes,
    }
    if s.tp > 1:
        comps["nccl_bytes"] = s.overheads.nccl_bytes
    if s.engine == "vllm":
        comps["cuda_graphs_bytes"] = graphs
    assumptions += [
        f"engine {s.engine}; weights {fmt}; compute dtype {compute}; KV cache {kv_dtype}; attention {attn}",
        "peak_allocated = weights + buffers + KV cache + activations of the worst phase (rank 0)",
        f"peak_reserved adds the caching allocator's reserve: {frag:.0%} of the activations and KV cache "
        "(measured reserved/allocated 1.07-1.49 in training, the fitcheck project's "
        "published T4 runs, github.com/Anassbzdd/fitcheck)",
        "device_total adds the CUDA context" + (" and NCCL" if s.tp > 1 else "") + " (defaults in overheads; "
        "override with --cuda-context / --nccl)",
    ]
    counts = {kind: layout.count(kind) for kind in sorted({layer.kind for layer in layout.layers})}
    return InferenceEstimate(
        settings=s, weights_format=fmt, compute_dtype=compute, kv_dtype=kv_dtype, attn=attn,
        logical_params=w.logical_params, stored_weights_bytes=stored, components=comps,
        kv_bytes_per_token=per_token, kv_bytes_per_token_per_gpu=per_token * share, phases=phases,
        peak_phase=peak.name, peak_allocated_bytes=allocated, peak_reserved_bytes=reserved,
        device_total_bytes=device_total, max_position_embeddings=model_max,
        assumptions=list(dict.fromkeys(assumptions)), notes=notes, kv_layout_summary=counts, vllm=vllm_info,
        bnb_compute_dtype=bnb.compute_dtype if bnb else None)
