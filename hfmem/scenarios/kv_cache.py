"""KV cache, layer by layer, by engine (issue 4, requirement 2).

Pure functions over a config dict: no I/O, no torch. ``kv_layout`` reads what each decoder layer caches per
token; ``kv_cache_bytes`` applies an engine's retention rule to it; ``kv_bytes_per_token`` is the
full-context figure (every token cached in every layer).

What transformers 5.24 really caches (checked in its source and measured with ``hfmem.simulate``,
``gpu_emulation=False``; see tests/test_kv_cache.py):

* Full attention (MHA/GQA/MQA): ``DynamicLayer`` keeps K and V, 2 · n_kv · d_head elements per token.
* MLA (DeepSeek-V2/V3): ``DeepseekV3Attention.forward`` calls ``cache.update(kv_nope, k_rot)`` with the
  *compressed* latent [b, 1, s, kv_lora_rank] and the shared RoPE key [b, 1, s, qk_rope_head_dim], and
  expands them through ``kv_b_proj`` after the cache read. So transformers caches the latent, the same
  (kv_lora_rank + qk_rope_head_dim) elements per layer per token as vLLM/SGLang: 70,272 B/token for V3 in
  bf16, not the decompressed 4,997,120 B/token (61 × 128 × (192 + 128) × 2) that older notes state.
  A tiny deepseek_v3 (2 layers, kv_lora_rank 16, rope 8, batch 2, bf16) holds 192 B per prompt position:
  2 × 2 × (16 + 8) × 2, against 2 × 2 × 4 × (24 + 16) × 2 = 1,280 decompressed.
* Sliding-window layers: ``DynamicSlidingWindowLayer.update`` concatenates past and new K/V and keeps
  ``full[:, :, -W + 1:, :]`` -- a *view* of the concatenated tensor. The storage held is therefore the whole
  concatenation: after a prefill of s tokens, all s tokens (not W − 1) stay allocated until the next
  update; after a decode step of q tokens, min(previous, W − 1) + q tokens (= min(total, W) for q = 1).
  Each sliding layer also holds an int64 scalar (``_sliding_window_tensor``, 8 B) on the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import HfmemError
from .formulas import head_dim_of, sliding_window_tokens

FULL, SLIDING, MLA = "full", "sliding", "mla"
ENGINES = ("transformers", "vllm")
SLIDING_TENSOR_BYTES = 8  # DynamicSlidingWindowLayer._sliding_window_tensor: torch.long scalar

# Defaults transformers fills in when a multimodal config's text_config omits them (llava-1.5 lists only
# model_type and a few fields): LlamaConfig's defaults.
_TEXT_DEFAULTS = {
    "llama": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32},
}
# Default alternation when a config names no layer_types (transformers' configuration classes):
# layer i is sliding when (i + 1) % pattern != 0.
_PATTERN_DEFAULTS = {"gemma2": 2, "gemma3_text": 6, "gemma3": 6, "gpt_oss": 2, "cohere2": 4}
_NO_KV_TYPES = ("moe", "mlp", "dummy")


class KVLayoutError(HfmemError, ValueError):
    """A config whose KV cache this module cannot lay out (one line for the CLI's error boundary)."""

    exit_code = 6


@dataclass(frozen=True)
class KVLayer:
    kind: str                    # "full", "sliding" or "mla"
    elems_per_token: int         # elements cached per token for one sequence (K and V together)
    window: int | None = None    # sliding layers: the attention window W (tokens)
    decompressed_elems_per_token: int | None = None  # MLA only: n_heads · (qk_nope + qk_rope + v), for reference


@dataclass(frozen=True)
class KVLayout:
    model_type: str
    layers: tuple[KVLayer, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def count(self, kind: str) -> int:
        return sum(1 for layer in self.layers if layer.kind == kind)


# -- layout ----------------------------------------------------------------------------------------------

def _text_config(config: dict) -> dict:
    if config.get("is_encoder_decoder"):
        raise NotImplementedError(
            f"encoder-decoder KV cache (self + cross attention) is not modelled yet ({config.get('model_type')})")
    text = config.get("text_config")
    if not isinstance(text, dict):
        return config
    merged = dict(_TEXT_DEFAULTS.get(text.get("model_type", ""), {}))
    merged.update(text)
    return merged


def _first(cfg: dict, *names):
    for name in names:
        if cfg.get(name) is not None:
            return cfg[name]
    return None


def _layer_types(cfg: dict, n_layers: int) -> list[str]:
    """Per layer attention type, as transformers' configuration classes derive it."""
    model_type = cfg.get("model_type", "")
    types = cfg.get("layer_types")
    if types:
        if len(types) != n_layers:
            raise KVLayoutError(f"layer_types has {len(types)} entries for {n_layers} layers")
        return list(types)
    window = cfg.get("sliding_window")
    if cfg.get("use_sliding_window") is False or window is None:  # Qwen2 drops the window unless enabled
        return ["full_attention"] * n_layers
    if "use_sliding_window" in cfg and "max_window_layers" in cfg:  # Qwen2 with the window enabled
        start = int(cfg["max_window_layers"])
        return ["sliding_attention" if i >= start else "full_attention" for i in range(n_layers)]
    pattern = cfg.get("sliding_window_pattern") or _PATTERN_DEFAULTS.get(model_type)
    if pattern:
        pattern = int(pattern)
        return ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n_layers)]
    return ["sliding_attention"] * n_layers  # Mistral, Phi-3, Starcoder2: every layer has the window


def kv_layout(config: dict) -> KVLayout:
    """Per decoder layer: what it caches per token (elements, one sequence) and its window."""
    cfg = _text_config(config)
    model_type = str(cfg.get("model_type", ""))
    n_layers = _first(cfg, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(cfg, "num_attention_heads", "n_head", "num_heads")
    if n_layers is None or heads is None:
        raise KVLayoutError(f"config ({model_type or 'unknown'}) names no layer count or attention heads")
    n_layers, heads = int(n_layers), int(heads)
    notes: list[str] = []

    if cfg.get("kv_lora_rank"):  # MLA: DeepSeek-V2/V3
        latent = int(cfg["kv_lora_rank"]) + int(cfg["qk_rope_head_dim"])
        decompressed = heads * (int(cfg["qk_nope_head_dim"]) + int(cfg["qk_rope_head_dim"]) + int(cfg["v_head_dim"]))
        notes.append("MLA: the compressed latent (kv_lora_rank + qk_rope_head_dim) is cached by transformers 5.24 "
                     "and by vLLM alike")
        if cfg.get("num_nextn_predict_layers"):
            notes.append("multi-token-prediction layers are not counted (transformers does not build them)")
        layers = tuple(KVLayer(MLA, latent, None, decompressed) for _ in range(n_layers))
        return KVLayout(model_type, layers, tuple(notes))

    if cfg.get("multi_query"):
        kv_heads = 1
    else:
        kv_heads = int(_first(cfg, "num_key_value_heads", "num_kv_heads", "n_head_kv") or heads)
    hidden = _first(cfg, "hidden_size", "n_embd", "d_model")
    if cfg.get("head_dim") is None and hidden is None:
        raise KVLayoutError(f"config ({model_type}) has neither head_dim nor hidden_size")
    d_head = head_dim_of(int(hidden or 0), heads, cfg.get("head_dim"))
    elems = 2 * kv_heads * d_head

    window = cfg.get("sliding_window")
    chunk = cfg.get("attention_chunk_size")
    layers = []
    for i, kind in enumerate(_layer_types(cfg, n_layers)):
        if kind == "full_attention":
            layers.append(KVLayer(FULL, elems))
        elif kind == "sliding_attention":
            if not window:
                raise KVLayoutError(f"layer {i} is sliding_attention but the config has no sliding_window")
            layers.append(KVLayer(SLIDING, elems, int(window)))
        elif kind == "chunked_attention" and chunk:  # transformers caches it as a sliding layer
            layers.append(KVLayer(SLIDING, elems, int(chunk)))
        elif kind in _NO_KV_TYPES:
            layers.append(KVLayer(FULL, 0))
        else:
            raise NotImplementedError(f"layer type {kind!r} (layer {i}) is not modelled yet")
    if any(layer.kind == SLIDING for layer in layers) and cfg.get("use_bidirectional_attention"):
        raise NotImplementedError("bidirectional sliding attention (transformers halves the window) is not modelled")
    return KVLayout(model_type, tuple(layers), tuple(notes))


# -- bytes -----------------------------------------------------------------------------------------------

def _check(batch: int, tokens: int, kv_bytes_per_elem: float, engine: str, block_size: int) -> None:
    if int(batch) < 1:
        raise ValueError("batch must be at least 1")
    if int(tokens) < 0:
        raise ValueError("tokens must be 0 or more")
    if kv_bytes_per_elem <= 0:
        raise ValueError("kv_bytes_per_elem must be positive")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if int(block_size) < 1:
        raise ValueError("block_size must be at least 1")


def transformers_tokens_held(layer: KVLayer, tokens: int, *, phase: str = "prefill",
                             new_tokens: int = 1) -> int:
    """Tokens whose K/V storage a transformers DynamicCache layer holds.

    ``phase="prefill"``: after (and at the peak of) a prefill of ``tokens`` -- every layer, sliding or not,
    holds all of them (the sliding layer keeps a view into the concatenation). ``phase="decode"``: after a
    decode step of ``new_tokens`` that brought the total to ``tokens``: a sliding layer holds
    min(tokens − new_tokens, W − 1) + new_tokens."""
    if layer.kind != SLIDING or phase == "prefill":
        return int(tokens)
    if phase != "decode":
        raise ValueError("phase must be 'prefill' or 'decode'")
    previous = max(int(tokens) - int(new_tokens), 0)
    return min(previous, layer.window - 1) + min(int(new_tokens), int(tokens))


def vllm_blocks(layer: KVLayer, tokens: int, block_size: int = 16) -> int:
    """Paged blocks one sequence of ``tokens`` occupies in one layer. Full and MLA layers: ceil(t / B).
    Sliding layers keep only the blocks that still hold one of the last W tokens (blocks wholly outside
    the window are freed): at most ceil(W / B) + 1 when the window is not block-aligned."""
    tokens = int(tokens)
    if tokens == 0:
        return 0
    if layer.kind == SLIDING and tokens > layer.window:
        first = (tokens - layer.window) // block_size
        last = (tokens - 1) // block_size
        return last - first + 1
    return math.ceil(tokens / block_size)


def kv_cache_bytes(layout: KVLayout, *, batch: int, tokens: int, kv_bytes_per_elem: float = 2,
                   engine: str = "transformers", block_size: int = 16, phase: str = "prefill",
                   new_tokens: int = 1) -> int:
    """KV cache bytes for ``batch`` sequences of ``tokens`` tokens each.

    transformers (DynamicCache): full and MLA layers hold every token; sliding layers follow
    ``transformers_tokens_held`` (the whole prompt after prefill, about W after decode steps) plus their
    8-byte window scalar. vLLM: paged blocks of ``block_size`` tokens per sequence, sliding layers capped at
    the window (``vllm_blocks``), MLA as the latent."""
    _check(batch, tokens, kv_bytes_per_elem, engine, block_size)
    total = 0.0
    for layer in layout.layers:
        if engine == "transformers":
            held = transformers_tokens_held(layer, tokens, phase=phase, new_tokens=new_tokens)
            extra = SLIDING_TENSOR_BYTES if layer.kind == SLIDING else 0
        else:
            held = vllm_blocks(layer, tokens, block_size) * block_size
            extra = 0
        total += batch * held * layer.elems_per_token * kv_bytes_per_elem + extra
    return int(math.ceil(total))


def kv_bytes_per_token(layout: KVLayout, *, kv_bytes_per_elem: float = 2, tokens: int | None = None,
                       engine: str = "transformers") -> float:
    """Bytes per token of one sequence. Without ``tokens``: full-context accounting, every layer caching
    every token (the ground-truth identity 2 · L · n_kv · d_head · bytes, or the MLA latent). With
    ``tokens``: the steady-state average at that length, sliding layers capped at their window
    (``sliding_window_tokens``), no block rounding."""
    if tokens is None:
        return sum(layer.elems_per_token for layer in layout.layers) * kv_bytes_per_elem
    if int(tokens) < 1:
        raise ValueError("tokens must be at least 1")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    kept = sum(layer.elems_per_token * sliding_window_tokens(tokens, layer.window if layer.kind == SLIDING else None)
               for layer in layout.layers)
    return kept * kv_bytes_per_elem / int(tokens)
