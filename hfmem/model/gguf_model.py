"""The model description of a GGUF file, read from its metadata the way llama.cpp reads it.

llama.cpp takes every hyperparameter it needs for memory from the GGUF key/values (``{arch}.block_count``,
``{arch}.attention.head_count_kv``, ...), not from a config.json, so hfmem does the same: a GGUF-only repo is
described from its first file's header alone. Per-layer values follow llama.cpp's ``get_key_or_arr``: a key is
either one number for every layer or an array with one entry per layer (OpenELM, Llama-3.1-Nemotron, Gemma 3n).

Which layers use a sliding window is not in the metadata of most files: llama.cpp sets it per architecture
in each model's ``load_arch_hparams`` (src/models/<arch>.cpp) with ``hparams.set_swa_pattern(period)``, which
marks layer ``il`` as sliding when ``period == 0 or il % period < period - 1``; the optional
``{arch}.attention.sliding_window_pattern`` key replaces the period (or, as an array, gives each layer). An
architecture whose attention or state hfmem has no model for (recurrent and hybrid models, MLA, cross-layer KV
sharing) is refused in one line instead of being described as a plain decoder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import UnsupportedArchitectureError

# Architectures whose KV cache llama.cpp lays out as one K and one V row of n_head_kv·head_dim per layer per
# cell (llama-kv-cache.cpp), with every layer full-attention unless listed in SWA_PATTERN below. Names are
# GGUF's ``general.architecture`` (llama.cpp's LLM_ARCH_NAMES); Mistral/Mixtral files use "llama".
STANDARD_ATTENTION = frozenset({
    "llama", "mistral3", "qwen2", "qwen2moe", "qwen2vl", "qwen3", "qwen3moe", "gemma", "gemma2", "gemma3",
    "phi2", "phi3", "phimoe", "starcoder2", "command-r", "cohere2", "granite", "granitemoe", "gpt-oss",
    "olmo", "olmo2", "olmoe", "internlm2", "deepseek", "glm4", "glm4moe", "ernie4_5", "ernie4_5-moe", "smollm3",
    "exaone", "exaone4", "stablelm", "gptneox", "gpt2", "starcoder", "falcon", "bloom", "mpt", "baichuan",
    "orion", "minicpm", "plamo", "codeshell", "arcee", "hunyuan-dense", "seed_oss", "apertus",
})

# Sliding-window layers by architecture: (period, kind), from each model's load_arch_hparams in llama.cpp
# (src/models/*.cpp, read 2026-12): gemma2 set_swa_pattern(2); gemma3 set_swa_pattern(6); cohere2
# set_swa_pattern(4); gpt-oss (LLM_ARCH_OPENAI_MOE) set_swa_pattern(2); exaone4 set_swa_pattern(4) when
# sliding_window is set. Phi-3's window is read but disabled ("Phi SWA is currently disabled", llama.cpp PR
# 13676), so phi3 runs with full attention in every layer and is not listed.
SWA_PATTERN: dict[str, int] = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2, "exaone4": 4}

REFUSED = {
    "mamba": "a recurrent state (Mamba)", "mamba2": "a recurrent state (Mamba-2)", "rwkv6": "a recurrent state",
    "rwkv7": "a recurrent state", "jamba": "hybrid attention and Mamba layers", "falcon-h1": "hybrid layers",
    "granitehybrid": "hybrid attention and Mamba layers", "qwen3next": "hybrid linear-attention layers",
    "lfm2": "hybrid convolution layers", "nemotron_h": "hybrid Mamba layers", "plamo2": "hybrid Mamba layers",
    "deepseek2": "multi-head latent attention (MLA), whose compressed KV layout is not modelled yet",
    "gemma3n": "KV shared across layers (n_layer_kv_from_start)", "llama4": "chunked attention",
    "t5": "an encoder-decoder", "t5encoder": "an encoder only", "bert": "an encoder only (no KV cache)",
    "nomic-bert": "an encoder only (no KV cache)", "jina-bert-v2": "an encoder only (no KV cache)",
}

_LAYER = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class GGUFModel:
    """What llama.cpp's memory depends on, per layer where it can differ."""

    architecture: str
    name: str | None
    n_layer: int
    n_embd: int
    n_head: tuple[int, ...]            # per layer
    n_head_kv: tuple[int, ...]         # per layer; 0 for a layer without attention
    n_embd_head_k: int                 # {arch}.attention.key_length, default n_embd / n_head
    n_embd_head_v: int
    n_ff: tuple[int, ...]
    n_vocab: int
    n_ctx_train: int
    n_swa: int                         # window in tokens; 0: no sliding window
    swa_layers: tuple[bool, ...]       # per layer
    n_expert: int = 0
    n_expert_used: int = 0
    file_type: str | None = None
    notes: tuple[str, ...] = field(default=())

    def n_embd_k_gqa(self, il: int) -> int:
        """Elements of one cell's K row in layer ``il`` (llama_hparams::n_embd_k_gqa)."""
        return self.n_embd_head_k * self.n_head_kv[il]

    def n_embd_v_gqa(self, il: int) -> int:
        return self.n_embd_head_v * self.n_head_kv[il]

    @property
    def kv_layers(self) -> tuple[int, ...]:
        return tuple(il for il in range(self.n_layer) if self.n_head_kv[il] > 0)

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 0

    @property
    def max_head(self) -> int:
        return max(self.n_head) if self.n_head else 0


def layer_of(tensor_name: str) -> int | None:
    """The repeating layer a tensor belongs to (``blk.N.*``), None for the input/output tensors."""
    m = _LAYER.match(tensor_name)
    return int(m.group(1)) if m else None


def _per_layer(value, n_layer: int, what: str, filename: str) -> tuple[int, ...]:
    if isinstance(value, tuple):
        if len(value) != n_layer:
            raise UnsupportedArchitectureError(
                f"{filename}: {what} has {len(value)} entries for {n_layer} layers",
                hint="the file's metadata is inconsistent; re-convert it with llama.cpp's convert_hf_to_gguf.py")
        return tuple(int(v) for v in value)
    return (int(value),) * n_layer


def describe_gguf(metadata: dict, tensors, filename: str) -> GGUFModel:
    """The description from one model file's metadata (the first part of a split model) and its tensors.

    ``tensors``: the GGUFTensor list of all parts (the vocabulary size falls back to token_embd's rows)."""
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise UnsupportedArchitectureError(f"{filename}: no general.architecture in its metadata",
                                           hint="a GGUF model file names its architecture; is this a GGUF model?")
    if arch in REFUSED:
        raise UnsupportedArchitectureError(
            f"{filename}: llama.cpp architecture {arch!r} has {REFUSED[arch]}; hfmem has no memory model for it yet",
            hint="`hfmem infer` answers the same model from its safetensors repo (--engine transformers or vllm)")
    if arch not in STANDARD_ATTENTION:
        raise UnsupportedArchitectureError(
            f"{filename}: llama.cpp architecture {arch!r} is not one hfmem has checked the KV layout of",
            hint="known: " + ", ".join(sorted(STANDARD_ATTENTION)))

    def key(suffix: str, default=None, *, required: bool = False):
        value = metadata.get(f"{arch}.{suffix}", default)
        if value is None and required:
            raise UnsupportedArchitectureError(f"{filename}: metadata key {arch}.{suffix} is missing",
                                               hint="llama.cpp cannot load it either; re-convert the model")
        return value

    n_layer = int(key("block_count", required=True))
    n_embd = int(key("embedding_length", required=True))
    n_head = _per_layer(key("attention.head_count", required=True), n_layer, "attention.head_count", filename)
    n_head_kv = _per_layer(key("attention.head_count_kv", n_head if len(set(n_head)) > 1 else n_head[0]),
                           n_layer, "attention.head_count_kv", filename)
    head0 = max(n_head) if n_head else 0
    head_k = int(key("attention.key_length", n_embd // head0 if head0 else 0))
    head_v = int(key("attention.value_length", head_k if key("attention.key_length") is not None
                     else (n_embd // head0 if head0 else 0)))
    n_ff = _per_layer(key("feed_forward_length", 0), n_layer, "feed_forward_length", filename)
    vocab = key("vocab_size")
    if vocab is None:
        tokens = metadata.get("tokenizer.ggml.tokens")
        vocab = getattr(tokens, "length", None)
    if vocab is None:
        emb = next((t for t in tensors if t.name == "token_embd.weight"), None)
        vocab = emb.shape[1] if emb is not None and len(emb.shape) > 1 else 0
    n_swa = int(key("attention.sliding_window", 0) or 0)
    notes: list[str] = []
    pattern = key("attention.sliding_window_pattern")
    if n_swa and isinstance(pattern, tuple):
        swa = tuple(bool(v) for v in _per_layer(pattern, n_layer, "attention.sliding_window_pattern", filename))
    elif n_swa and (arch in SWA_PATTERN or isinstance(pattern, int)):
        period = int(pattern) if isinstance(pattern, int) else SWA_PATTERN[arch]
        swa = tuple(period == 0 or il % period < period - 1 for il in range(n_layer))
    else:
        if n_swa and arch not in SWA_PATTERN:
            notes.append(f"{arch}: the file names a {n_swa}-token sliding window, but llama.cpp runs this "
                         "architecture with full attention in every layer")
        n_swa, swa = 0, (False,) * n_layer
    # Multi-token-prediction (NextN) layers: counted in block_count and loaded with the model, but llama.cpp keeps
    # them out of the main context's KV cache (llama_model::create_memory's layer filter), so they get no cells.
    nextn = int(key("nextn_predict_layers", 0) or 0)
    if nextn:
        if not 0 < nextn < n_layer:
            raise UnsupportedArchitectureError(
                f"{filename}: {arch}.nextn_predict_layers {nextn} is outside 1..{n_layer - 1}",
                hint="the file's metadata is inconsistent; re-convert it with llama.cpp's convert_hf_to_gguf.py")
        n_head_kv = n_head_kv[:n_layer - nextn] + (0,) * nextn
        notes.append(f"the last {nextn} layer(s) are multi-token-prediction layers: their weights are counted, "
                     "and llama.cpp gives them no KV cache")
    return GGUFModel(
        architecture=arch, name=metadata.get("general.name") if isinstance(metadata.get("general.name"), str) else None,
        n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_head_kv=n_head_kv, n_embd_head_k=head_k,
        n_embd_head_v=head_v, n_ff=n_ff, n_vocab=int(vocab), n_ctx_train=int(key("context_length", 0) or 0),
        n_swa=n_swa, swa_layers=swa, n_expert=int(key("expert_count", 0) or 0),
        n_expert_used=int(key("expert_used_count", 0) or 0),
        file_type=None, notes=tuple(notes))


def describe_variant(variant) -> GGUFModel:
    """``describe_gguf`` of a GGUF variant (``sources.gguf.GGUFVariant``): its first part's metadata, the
    tensors of all its parts."""
    return describe_gguf(variant.metadata, variant.tensors, variant.files[0])
