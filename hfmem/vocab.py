"""hfmem's vocabulary, defined once: dtype names and widths, attention implementations, engines, sharding
strategies, ZeRO stages, optimizers, fine-tuning methods and the LoRA defaults.

Every module (scenarios, plan, CLI, benchmarks) imports these names from here instead of restating them;
the CLI derives its choices and help text from them.
"""

from __future__ import annotations

from .errors import SettingsError

# -- dtypes ------------------------------------------------------------------------------------------------
# torch element sizes: torch.float32 4 bytes, torch.bfloat16 2, torch.float16 2.
DTYPE_BYTES: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2}
DTYPES: tuple[str, ...] = tuple(DTYPE_BYTES)                # canonical names
SHORT_DTYPES: dict[str, str] = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}  # the CLI's names
# Every spelling any entry point accepts (case-insensitive; a "torch." prefix is dropped first).
DTYPE_ALIASES: dict[str, str] = {
    "fp32": "float32", "float": "float32", "float32": "float32",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "fp16": "float16", "float16": "float16", "half": "float16",
}
# The KV cache also takes an 8-bit float (vLLM's kv_cache_dtype fp8 / fp8_e4m3 / fp8_e5m2).
FP8 = "fp8"
FP8_ALIASES: dict[str, str] = {"fp8": FP8, "fp8_e4m3": FP8, "fp8_e5m2": FP8, "float8_e4m3fn": FP8}
KV_DTYPE_BYTES: dict[str, int] = {**DTYPE_BYTES, FP8: 1}


def _key(name) -> str:
    return str(name).strip().lower().removeprefix("torch.")


def accepted_dtype_names(*, fp8: bool = False) -> str:
    """The accepted spellings, for messages: "fp32, bf16, fp16 (also float32, bfloat16, ...)"."""
    names = [n for n in DTYPE_ALIASES if n not in SHORT_DTYPES.values()]
    short = ", ".join(SHORT_DTYPES.values()) + (", fp8" if fp8 else "")
    return f"{short} (also {', '.join(names)}, torch.<name>)"


def canonical_dtype(name, *, setting: str = "dtype", fp8: bool = False) -> str:
    """The canonical dtype name (float32, bfloat16, float16; "fp8" with ``fp8=True``) of any accepted
    spelling; ``SettingsError`` naming the accepted ones otherwise."""
    key = _key(name)
    canon = DTYPE_ALIASES.get(key) or (FP8_ALIASES.get(key) if fp8 else None)
    if canon is None:
        raise SettingsError(f"{setting} {name!r} is not one of {accepted_dtype_names(fp8=fp8)}", setting=setting)
    return canon


def dtype_bytes(name, *, setting: str = "dtype", fp8: bool = False) -> int:
    """Bytes per element of a dtype given by any accepted spelling (``SettingsError`` for an unknown one)."""
    return KV_DTYPE_BYTES[canonical_dtype(name, setting=setting, fp8=fp8)]


def is_dtype(name, *, fp8: bool = False) -> bool:
    key = _key(name)
    return key in DTYPE_ALIASES or (fp8 and key in FP8_ALIASES)


# -- settings ------------------------------------------------------------------------------------------------
ATTNS: tuple[str, ...] = ("sdpa", "flash", "eager")    # transformers' attn_implementation (flash = flash_attention_2)
DEFAULT_ATTN = "sdpa"
ENGINES: tuple[str, ...] = ("transformers", "vllm")  # the engines that serve a safetensors checkpoint
LLAMACPP = "llama.cpp"  # serves GGUF files (Ollama and LM Studio run it underneath)
GGUF_ENGINES: tuple[str, ...] = (LLAMACPP,)
FSDP_STRATEGIES: tuple[str, ...] = ("full_shard", "shard_grad_op", "no_shard", "hybrid_shard")  # sharding.fsdp_states
TRAIN_FSDP_STRATEGIES: tuple[str, ...] = ("full_shard", "shard_grad_op", "hybrid_shard")  # TrainSettings.fsdp
FSDP_SHARDS_PARAMS: tuple[str, ...] = ("full_shard", "hybrid_shard")  # strategies that shard the parameters
ZERO_STAGES: tuple[int, ...] = (0, 1, 2, 3)
OPTIMIZERS: tuple[str, ...] = ("adamw", "adamw-8bit", "paged-adamw-8bit", "sgd", "sgd-momentum", "adafactor",
                               "lion", "lion-8bit")
ADAMW_IMPLS: tuple[str, ...] = ("foreach", "fused", "forloop")
METHODS: tuple[str, ...] = ("full", "lora", "qlora")
QLORA_FORMATS: tuple[str, ...] = ("nf4-dq", "nf4", "fp4-dq", "fp4")
LORA_RANK = 16
LORA_TARGETS = "all-linear"
VLLM_BLOCK_SIZE = 16

# -- memory components ----------------------------------------------------------------------------------------
# The estimates' component keys (InferenceEstimate / TrainEstimate ``components``) and what every view calls
# them: the terminal's component bar, the plots' legends, the web app's tables.
COMPONENT_LABELS: dict[str, str] = {
    "weights_bytes": "weights",
    "master_weights_bytes": "fp32 master weights",
    "adapter_weights_bytes": "LoRA adapters",
    "buffers_bytes": "buffers",
    "gradients_bytes": "gradients",
    "optimizer_bytes": "optimizer states",
    "kv_cache_bytes": "KV cache",
    "activations_bytes": "activations",
    "allocator_reserve_bytes": "allocator reserve",
    "cuda_graphs_bytes": "CUDA graphs",
    "cuda_context_bytes": "CUDA context",
    "nccl_bytes": "NCCL buffers",
    # llama.cpp's buffers per device (scenarios.llamacpp.DeviceMemory; its KV and CUDA context use the keys above)
    "model_bytes": "model weights",
    "compute_bytes": "compute buffers",
    "output_bytes": "output buffer",
    "projector_bytes": "projector",
}


def component_label(key: str) -> str:
    """A component's name in words: ``kv_cache_bytes`` → "KV cache"; a key not listed loses ``_bytes``."""
    return COMPONENT_LABELS.get(key) or key.removesuffix("_bytes").replace("_", " ")


__all__ = ["ADAMW_IMPLS", "ATTNS", "COMPONENT_LABELS", "DEFAULT_ATTN", "DTYPES", "DTYPE_ALIASES", "DTYPE_BYTES", "ENGINES", "FP8",
           "GGUF_ENGINES", "LLAMACPP", "FP8_ALIASES", "FSDP_SHARDS_PARAMS", "FSDP_STRATEGIES", "KV_DTYPE_BYTES",
           "LORA_RANK", "LORA_TARGETS",
           "METHODS", "OPTIMIZERS", "QLORA_FORMATS", "SHORT_DTYPES", "TRAIN_FSDP_STRATEGIES", "VLLM_BLOCK_SIZE",
           "ZERO_STAGES", "accepted_dtype_names", "canonical_dtype", "component_label", "dtype_bytes", "is_dtype"]
