"""KV cache, layer by layer, by engine.

Pure functions over a config dict: no I/O, no torch. ``kv_layout`` reads what each decoder layer caches per
token (and, for recurrent layers, per sequence); ``kv_cache_bytes`` applies an engine's retention rule to it;
``kv_bytes_per_token`` is the full-context figure (every token cached in every layer).

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
* Recurrent layers (kind ``"state"``: Mamba/Mamba-2 mixers, gated DeltaNet, Kimi delta attention, LFM2 short
  convolutions, MiniMax lightning attention): ``LinearAttentionLayer`` allocates, once per sequence, a
  ``conv_states`` tensor [b, channels, kernel] (``torch.zeros`` of the *full* kernel width, in the hidden
  states' dtype) and a ``recurrent_states`` tensor (``zeros_like`` the scan's final state). Neither grows
  with tokens: ``update_conv_state`` copies the last ``kernel`` columns in place, ``update_recurrent_state``
  copies the new state in place. The recurrent state is float32 for every model here (the scans compute in
  float32 -- ``mamba2_chunk_scan`` calls ``.float()``, gated DeltaNet and KDA cast with ``.to(float32)``)
  except MiniMax's ``MiniMaxCache.linear_cache`` [b, heads, d, d], which stays in the model dtype. Shapes
  per model family (``_state_tensors``):

  - Mamba (mamba, falcon_mamba, Jamba's Mamba layers): conv [d_inner, d_conv], ssm [d_inner, d_state] fp32,
    d_inner = intermediate_size (mamba, falcon_mamba; expand · hidden when absent) or mamba_expand · hidden.
  - Mamba-2 (mamba2, bamba, granitemoehybrid, nemotron_h, falcon_h1, zamba2): conv [d_inner + 2 · groups ·
    d_state, d_conv], ssm [heads, head_dim, d_state] fp32.
  - Gated DeltaNet (qwen3_next, qwen3_5, olmo_hybrid): conv [2 · k_heads · d_k + v_heads · d_v, kernel],
    recurrent [v_heads, d_k, d_v] fp32.
  - Kimi delta attention (kimi_linear): conv [3 · heads · d, kernel], recurrent [heads, d, d] fp32.
  - Short convolution (lfm2, lfm2_moe, lfm3): conv [hidden, conv_L_cache], no recurrent state.
  - Lightning attention (minimax): [heads, d, d] in the model dtype.

  Hybrid layers (Falcon-H1: every layer runs attention and a Mamba-2 mixer side by side; Zamba2's "hybrid"
  layers: the shared attention block before a Mamba-2 mixer) are attention layers that also carry states.
* Encoder-decoder (T5, BART, Whisper, ...): ``EncoderDecoderCache`` holds a self-attention ``DynamicCache``
  that grows with the *decoder* tokens and a cross-attention ``DynamicCache`` whose K/V are projected once
  from the encoder output: every decoder layer holds the whole encoder length per sequence (kind
  ``"cross"``). Whisper's encoder always sees 30 s of audio: 3,000 mel frames, halved by the stride-2 conv
  to ``max_source_positions`` = 1,500 encoder positions (``KVLayout.encoder_tokens``).

vLLM keeps one fixed state per sequence too, but (``vllm/model_executor/layers/mamba/mamba_utils.py``)
its conv states keep kernel − 1 columns, and its states are in the model dtype (``--mamba-cache-dtype auto``)
unless ``--mamba-ssm-cache-dtype`` or the model's config says otherwise (NemotronH: the config's
``mamba_ssm_cache_dtype``, float32 when absent; Qwen3.5: ``mamba_ssm_dtype``; KDA: always float32). Its
hybrid allocator (``HybridAttentionMambaModelConfig.verify_and_update_config``) raises the attention block
size to 16 · ceil(state page / (16 · attention bytes per token)) so that one attention page holds a whole
state, then pads every state page to that attention page size (``vllm_hybrid_pages``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import HfmemError
from ..metadata.config import first_of as _first
from ..metadata.config import text_config as _text_config
from .formulas import head_dim_of, sliding_window_tokens

FULL, SLIDING, MLA, STATE, CROSS, NONE = "full", "sliding", "mla", "state", "cross", "none"
CONV, RECURRENT = "conv", "recurrent"
ENGINES = ("transformers", "vllm")
SLIDING_TENSOR_BYTES = 8  # DynamicSlidingWindowLayer._sliding_window_tensor: torch.long scalar
FP32 = 4
VLLM_BLOCK_ALIGN = 16  # vLLM rounds the hybrid attention block size to a multiple of 16 tokens

# Default alternation when a config names no layer_types (transformers' configuration classes):
# layer i is sliding when (i + 1) % pattern != 0.
_PATTERN_DEFAULTS = {"gemma2": 2, "gemma3_text": 6, "gemma3": 6, "gpt_oss": 2, "cohere2": 4}
_NO_KV_TYPES = ("moe", "mlp", "dummy")
# transformers' configuration_utils._LEGACY_LAYER_TYPE_REMAP (granite-4.0-h, zamba2 and nemotron_h configs)
_LEGACY_TYPES = {"mamba": "linear_attention", "attention": "full_attention"}
_STATE_TYPES = ("linear_attention", "conv")
_HYBRID_TYPES = ("hybrid", "hybrid_sliding")
# Recurrent models whose state transformers keeps outside a Cache object or in a layout not modelled here.
_UNMODELLED_RECURRENT = ("rwkv", "rwkv5", "rwkv6", "rwkv7", "xlstm", "recurrent_gemma", "zamba", "zaya",
                         "bailing_hybrid")
# Models with recurrent layers modelled here (transformers 5.24); the first ones derive their layer types from
# other fields (their configuration classes expose layer_types as a read-only property).
_DERIVED_TYPES = ("mamba", "falcon_mamba", "mamba2", "jamba", "bamba", "falcon_h1")
_RECURRENT_MODELS = _DERIVED_TYPES + ("granitemoehybrid", "zamba2", "nemotron_h", "qwen3_next", "qwen3_5_text",
                                      "qwen3_5_moe_text", "olmo_hybrid", "lfm2", "lfm2_moe", "lfm3", "minimax",
                                      "kimi_linear")
_DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "half": 2,
                "float": 4}


class KVLayoutError(HfmemError, ValueError):
    """A config whose KV cache this module cannot lay out (one line for the CLI's error boundary)."""

    exit_code = 6


@dataclass(frozen=True)
class StateTensor:
    """A fixed-size tensor a recurrent layer keeps per sequence; it does not grow with tokens."""

    name: str                    # "conv" (the causal-conv window) or "recurrent" (SSM / linear-attention state)
    shape: tuple[int, ...]       # one sequence, as transformers 5.24 allocates it (conv: (channels, kernel))
    bytes_per_elem: float | None = None       # transformers: a fixed dtype (4 = the fp32 scans); None: model dtype
    vllm_bytes_per_elem: float | None = None  # vLLM: a fixed dtype (KDA, the config's ssm dtype); None: model dtype

    @property
    def elems(self) -> int:
        return math.prod(self.shape)

    @property
    def vllm_elems(self) -> int:
        """vLLM's conv states keep kernel − 1 columns (``MambaStateShapeCalculator``); the rest is as here."""
        if self.name == CONV:
            return math.prod(self.shape[:-1]) * (self.shape[-1] - 1)
        return self.elems

    def nbytes(self, engine: str, model_bytes: float, ssm_bytes: float | None = None) -> float:
        """Bytes for one sequence. ``model_bytes``: bytes per element of the model's dtype; ``ssm_bytes``
        overrides the recurrent state's dtype (vLLM's ``--mamba-ssm-cache-dtype``)."""
        if engine == "vllm":
            fixed, elems = self.vllm_bytes_per_elem, self.vllm_elems
        else:
            fixed, elems = self.bytes_per_elem, self.elems
        if self.name == RECURRENT and ssm_bytes is not None:
            fixed = ssm_bytes
        return elems * (fixed if fixed is not None else model_bytes)


@dataclass(frozen=True)
class KVLayer:
    kind: str                    # "full", "sliding", "mla", "state" (recurrent only), "cross" (encoder K/V)
    #                              or "none" (MoE/MLP-only layers of a hybrid pattern: nothing cached)
    elems_per_token: int         # elements cached per token for one sequence (K and V together); 0 for "state"
    window: int | None = None    # sliding layers: the attention window W (tokens)
    decompressed_elems_per_token: int | None = None  # MLA only: n_heads · (qk_nope + qk_rope + v), for reference
    states: tuple[StateTensor, ...] = ()  # fixed per-sequence tensors ("state" layers, hybrid attention layers)

    @property
    def state_elems(self) -> int:
        """Elements of fixed state per sequence, as transformers allocates them."""
        return sum(s.elems for s in self.states)

    def state_bytes(self, engine: str = "transformers", *, state_bytes_per_elem: float = 2,
                    ssm_state_bytes_per_elem: float | None = None) -> float:
        """Bytes of fixed state for one sequence (no vLLM page padding)."""
        return sum(s.nbytes(engine, state_bytes_per_elem, ssm_state_bytes_per_elem) for s in self.states)


@dataclass(frozen=True)
class KVLayout:
    model_type: str
    layers: tuple[KVLayer, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    encoder_tokens: int | None = None  # encoder-decoder models with a fixed encoder length (Whisper: 1,500)

    def count(self, kind: str) -> int:
        return sum(1 for layer in self.layers if layer.kind == kind)

    @property
    def is_encoder_decoder(self) -> bool:
        return any(layer.kind == CROSS for layer in self.layers)

    @property
    def has_state(self) -> bool:
        return any(layer.states for layer in self.layers)


# -- layout ----------------------------------------------------------------------------------------------


def _dtype_bytes(name) -> float | None:
    if name is None:
        return None
    name = str(name).removeprefix("torch.")
    if name not in _DTYPE_BYTES:
        raise KVLayoutError(f"unknown state dtype {name!r}")
    return _DTYPE_BYTES[name]


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


# -- recurrent (fixed-state) models ------------------------------------------------------------------------

def _hybrid_layer_types(cfg: dict, model_type: str, n_layers: int) -> list[str] | None:
    """Layer types of the models with recurrent layers, as their transformers 5.24 configuration classes
    derive them from a config.json (legacy names remapped); None for every other model."""
    given = _first(cfg, "layer_types", "layers_block_type")
    given = [_LEGACY_TYPES.get(t, t) for t in given] if given else None
    if model_type not in _RECURRENT_MODELS:  # an unknown model with recurrent layers: kv_layout refuses it
        return given if given and any(t in _STATE_TYPES + _HYBRID_TYPES for t in given) else None
    if given and model_type not in _DERIVED_TYPES:
        return given
    n = range(n_layers)
    if model_type in ("mamba", "falcon_mamba", "mamba2"):
        return ["linear_attention"] * n_layers
    if model_type == "jamba":
        period, offset = int(cfg.get("attn_layer_period", 8)), int(cfg.get("attn_layer_offset", 4))
        return ["full_attention" if i % period == offset else "linear_attention" for i in n]
    if model_type == "bamba":
        attn = cfg.get("attn_layer_indices") or ()
        return ["full_attention" if i in attn else "linear_attention" for i in n]
    if model_type == "granitemoehybrid":
        return ["linear_attention"] * n_layers
    if model_type == "falcon_h1":
        return ["hybrid"] * n_layers
    if model_type == "zamba2":
        return (["linear_attention"] + (["linear_attention"] * 5 + ["hybrid"]) * 7 + ["linear_attention"] * 4
                + ["hybrid"] + ["linear_attention"] * 3 + ["hybrid"] + ["linear_attention"] * 2)
    if model_type == "nemotron_h":
        pattern = cfg.get("hybrid_override_pattern")
        if pattern:
            symbols = {"M": "linear_attention", "E": "moe", "*": "full_attention", "-": "mlp"}
            return [symbols[c] for c in pattern]
        return ["linear_attention", "moe", "full_attention", "mlp"]
    if model_type in ("qwen3_next", "qwen3_5_text", "qwen3_5_moe_text"):
        interval = int(cfg.get("full_attention_interval", 4))
        return ["linear_attention" if (i + 1) % interval else "full_attention" for i in n]
    if model_type == "olmo_hybrid":
        types = ["full_attention" if i % 4 == 3 else "linear_attention" for i in n]
        if "full_attention" not in types:
            types[-1] = "full_attention"
        return types
    if model_type == "lfm2":
        full = cfg.get("full_attn_idxs")
        full = range(n_layers) if full is None else full
        return ["full_attention" if i in full else "conv" for i in n]
    if model_type == "lfm3":
        return ["full_attention" if i % 4 == 2 else "sliding_attention" if i % 4 == 0 and i > 0 else "conv"
                for i in n]
    if model_type == "minimax":
        return ["full_attention" if (i + 1) % 2 else "linear_attention" for i in n]
    if model_type == "kimi_linear":
        lin = cfg.get("linear_attn_config") or {}
        if "full_attn_layers" in lin and "kda_layers" in lin:  # 1-indexed in the checkpoint
            types: list[str | None] = [None] * n_layers
            for i in lin["full_attn_layers"]:
                types[int(i) - 1] = "full_attention"
            for i in lin["kda_layers"]:
                types[int(i) - 1] = "linear_attention"
            if None in types:
                raise KVLayoutError("kimi_linear: linear_attn_config leaves some layers without a type")
            return types  # type: ignore[return-value]
        return ["full_attention" if i and i % 4 == 0 else "linear_attention" for i in n]
    raise KVLayoutError(f"{model_type} config names no layer_types")


def _mamba2_states(channels: int, groups: int, d_state: int, heads: int, head_dim, d_conv: int,
                   ssm_vllm: float | None) -> tuple[StateTensor, ...]:
    if head_dim in (None, "auto"):
        head_dim = channels // heads
    return (StateTensor(CONV, (channels + 2 * groups * d_state, d_conv)),
            StateTensor(RECURRENT, (heads, int(head_dim), d_state), FP32, ssm_vllm))


def _state_tensors(cfg: dict, model_type: str) -> tuple[StateTensor, ...]:
    """What one recurrent layer keeps per sequence (transformers 5.24's mixers; see the module docstring)."""
    hidden = int(cfg.get("hidden_size") or 0)
    g = cfg.get
    # vLLM: the recurrent state follows the model dtype unless the config names one
    ssm_vllm = _dtype_bytes(_first(cfg, "mamba_ssm_cache_dtype", "mamba_ssm_dtype"))
    if model_type in ("mamba", "falcon_mamba"):  # config.json's intermediate_size wins over expand · hidden
        inner = int(g("intermediate_size") or g("expand", 2) * hidden)
        return (StateTensor(CONV, (inner, int(g("conv_kernel", 4)))),
                StateTensor(RECURRENT, (inner, int(g("state_size", 16))), FP32, ssm_vllm))
    if model_type == "jamba":
        inner = int(g("mamba_expand", 2) * hidden)
        return (StateTensor(CONV, (inner, int(g("mamba_d_conv", 4)))),
                StateTensor(RECURRENT, (inner, int(g("mamba_d_state", 16))), FP32, ssm_vllm))
    if model_type == "mamba2":
        return _mamba2_states(int(g("expand", 2) * hidden), int(g("n_groups", 8)), int(g("state_size", 128)),
                              int(g("num_heads", 128)), g("head_dim", 64), int(g("conv_kernel", 4)), ssm_vllm)
    if model_type in ("bamba", "granitemoehybrid"):
        return _mamba2_states(int(g("mamba_expand", 2) * hidden), int(g("mamba_n_groups", 1)),
                              int(g("mamba_d_state", 256)), int(g("mamba_n_heads", 128)), g("mamba_d_head", "auto"),
                              int(g("mamba_d_conv", 4)), ssm_vllm)
    if model_type == "falcon_h1":
        inner = int(g("mamba_d_ssm") or g("mamba_expand", 2) * hidden)
        return _mamba2_states(inner, int(g("mamba_n_groups", 1)), int(g("mamba_d_state", 256)),
                              int(g("mamba_n_heads", 128)), g("mamba_d_head", "auto"), int(g("mamba_d_conv", 4)),
                              ssm_vllm)
    if model_type == "zamba2":
        inner = int(g("mamba_expand", 2) * hidden)
        heads = int(g("n_mamba_heads", 8))
        return _mamba2_states(inner, int(g("mamba_ngroups", 1)), int(g("mamba_d_state", 64)), heads,
                              g("mamba_headdim") or inner // heads, int(g("mamba_d_conv", 4)), ssm_vllm)
    if model_type == "nemotron_h":  # vLLM's NemotronH hook: the config's dtype, float32 when it names none
        heads, head_dim = int(g("mamba_num_heads", 128)), int(g("mamba_head_dim", 64))
        return _mamba2_states(heads * head_dim, int(g("n_groups", 8)), int(g("ssm_state_size", 128)), heads,
                              head_dim, int(g("conv_kernel", 4)), ssm_vllm or FP32)
    if model_type in ("qwen3_next", "qwen3_5_text", "qwen3_5_moe_text", "olmo_hybrid"):
        if model_type == "olmo_hybrid":
            k_heads = int(g("linear_num_key_heads") or g("num_attention_heads"))
            v_heads = int(g("linear_num_value_heads") or g("num_attention_heads"))
            d_k = int(g("linear_key_head_dim") or int(0.75 * hidden / k_heads))
            d_v = int(g("linear_value_head_dim") or 2 * d_k)
        else:
            k_heads, v_heads = int(g("linear_num_key_heads", 16)), int(g("linear_num_value_heads", 32))
            d_k, d_v = int(g("linear_key_head_dim", 128)), int(g("linear_value_head_dim", 128))
        return (StateTensor(CONV, (2 * k_heads * d_k + v_heads * d_v, int(g("linear_conv_kernel_dim", 4)))),
                StateTensor(RECURRENT, (v_heads, d_k, d_v), FP32, ssm_vllm))
    if model_type == "kimi_linear":
        lin = g("linear_attn_config") or {}
        heads = int(lin.get("num_heads", g("linear_num_heads", 32)))
        d = int(lin.get("head_dim", g("linear_head_dim", 128)))
        kernel = int(lin.get("short_conv_kernel_size", g("linear_conv_kernel_dim", 4)))
        return (StateTensor(CONV, (3 * heads * d, kernel)),
                StateTensor(RECURRENT, (heads, d, d), FP32, FP32))  # vLLM kda_state_dtype: fp32 recurrent
    if model_type in ("lfm2", "lfm2_moe", "lfm3"):
        return (StateTensor(CONV, (hidden, int(g("conv_L_cache", 3)))),)
    if model_type == "minimax":
        heads = int(g("num_attention_heads"))
        d = head_dim_of(hidden, heads, g("head_dim"))
        return (StateTensor(RECURRENT, (heads, d, d)),)  # MiniMaxCache.linear_cache: the value dtype
    raise NotImplementedError(f"recurrent layers of {model_type or 'this model'} are not modelled yet")


_STATE_NOTES = {
    "minimax": "MiniMax lightning-attention layers keep one [heads, d, d] state per sequence in the model dtype",
    "kimi_linear": "Kimi delta attention keeps a float32 recurrent state per sequence; attention layers cache "
                   "the MLA latent",
}


def _attention_elems(cfg: dict, model_type: str, heads: int) -> int:
    if model_type == "zamba2":  # the shared block attends over concat(hidden, embeddings): 2 · hidden wide
        kv = int(cfg.get("num_key_value_heads") or heads)
        return 2 * kv * int(cfg.get("attention_head_dim") or 2 * int(cfg["hidden_size"]) // heads)
    if cfg.get("multi_query"):
        kv_heads = 1
    else:
        kv_heads = int(_first(cfg, "num_key_value_heads", "num_kv_heads", "n_head_kv") or heads)
    hidden = _first(cfg, "hidden_size", "n_embd", "d_model")
    if cfg.get("head_dim") is None and hidden is None:
        raise KVLayoutError(f"config ({model_type}) has neither head_dim nor hidden_size")
    return 2 * kv_heads * head_dim_of(int(hidden or 0), heads, cfg.get("head_dim"))


def kv_layout(config: dict) -> KVLayout:
    """Per decoder layer: what it caches per token (elements, one sequence), its window, and the fixed
    per-sequence state of recurrent layers. Encoder-decoder models: the decoder's self-attention layers,
    then one ``"cross"`` layer per decoder layer caching the encoder length."""
    if config.get("is_encoder_decoder") or (isinstance(config.get("text_config"), dict)
                                            and config["text_config"].get("is_encoder_decoder")):
        return _encoder_decoder_layout(config)
    cfg = _text_config(config)
    model_type = str(cfg.get("model_type", ""))
    if model_type in _UNMODELLED_RECURRENT:
        raise NotImplementedError(f"the recurrent state of {model_type} is not modelled yet")
    n_layers = _first(cfg, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(cfg, "num_attention_heads", "n_head", "num_heads")
    hybrid_types = _hybrid_layer_types(cfg, model_type, int(n_layers or 0))
    if model_type == "nemotron_h" and hybrid_types is not None:
        n_layers = len(hybrid_types)  # transformers ignores num_hidden_layers when the pattern is given
    if n_layers is None or (heads is None and model_type not in ("mamba", "falcon_mamba", "mamba2")):
        raise KVLayoutError(f"config ({model_type or 'unknown'}) names no layer count or attention heads")
    n_layers = int(n_layers)
    notes: list[str] = []

    mla = bool(cfg.get("kv_lora_rank"))
    if mla:  # MLA: DeepSeek-V2/V3, Kimi-Linear's attention layers
        latent = int(cfg["kv_lora_rank"]) + int(cfg["qk_rope_head_dim"])
        decompressed = int(heads) * (int(cfg["qk_nope_head_dim"]) + int(cfg["qk_rope_head_dim"])
                                     + int(cfg["v_head_dim"]))
        notes.append("MLA: the compressed latent (kv_lora_rank + qk_rope_head_dim) is cached by transformers 5.24 "
                     "and by vLLM alike")
        if cfg.get("num_nextn_predict_layers"):
            notes.append("multi-token-prediction layers are not counted (transformers does not build them)")
        if hybrid_types is None:
            layers = tuple(KVLayer(MLA, latent, None, decompressed) for _ in range(n_layers))
            return KVLayout(model_type, layers, tuple(notes))
        attention = KVLayer(MLA, latent, None, decompressed)
    else:
        attention = KVLayer(FULL, _attention_elems(cfg, model_type, int(heads))) if heads is not None else None

    if hybrid_types is not None:
        if len(hybrid_types) != n_layers:
            raise KVLayoutError(f"{model_type}: {len(hybrid_types)} layer types for {n_layers} layers")
        types = hybrid_types
        states = _state_tensors(cfg, model_type)
        notes.append(_STATE_NOTES.get(model_type, f"{model_type}: recurrent layers keep a fixed state per "
                                                  "sequence (conv window + float32 recurrent state in "
                                                  "transformers), independent of the tokens"))
        notes.append("vLLM: conv states keep kernel - 1 columns and states use the model dtype unless the config "
                     "or --mamba-ssm-cache-dtype names one; with attention layers, the hybrid allocator grows the "
                     "attention block and pads each state to one attention page")
    else:
        types = _layer_types(cfg, n_layers)
        states = ()

    window = cfg.get("sliding_window")
    chunk = cfg.get("attention_chunk_size")
    layers = []
    for i, kind in enumerate(types):
        if kind in _STATE_TYPES and hybrid_types is not None:
            layers.append(KVLayer(STATE, 0, states=states))
        elif kind == "hybrid" and hybrid_types is not None:
            layers.append(KVLayer(attention.kind, attention.elems_per_token, None,
                                  attention.decompressed_elems_per_token, states))
        elif kind == "full_attention" and attention is not None:
            layers.append(attention)
        elif kind == "sliding_attention" and attention is not None:
            if not window:
                raise KVLayoutError(f"layer {i} is sliding_attention but the config has no sliding_window")
            layers.append(KVLayer(SLIDING, attention.elems_per_token, int(window)))
        elif kind == "chunked_attention" and chunk and attention is not None:  # cached as a sliding layer
            layers.append(KVLayer(SLIDING, attention.elems_per_token, int(chunk)))
        elif kind in _NO_KV_TYPES:
            layers.append(KVLayer(NONE, 0))
        else:
            raise NotImplementedError(f"layer type {kind!r} (layer {i}) of {model_type} is not modelled yet")
    if any(layer.kind == SLIDING for layer in layers) and cfg.get("use_bidirectional_attention"):
        raise NotImplementedError("bidirectional sliding attention (transformers halves the window) is not modelled")
    return KVLayout(model_type, tuple(layers), tuple(notes))


# -- encoder-decoder -----------------------------------------------------------------------------------------

# Fixed encoder lengths: Whisper pads every input to 30 s = 3,000 mel frames, which its stride-2 conv halves
# to max_source_positions (WhisperEncoder.forward refuses any other length).
_FIXED_ENCODER = {"whisper": "max_source_positions"}
_NESTED_ENCODER_DECODER = ("encoder-decoder", "vision-encoder-decoder", "speech-encoder-decoder")


def _encoder_decoder_layout(config: dict) -> KVLayout:
    cfg = config if config.get("is_encoder_decoder") else _text_config(config)
    model_type = str(cfg.get("model_type", ""))
    decoder = cfg.get("decoder")
    if isinstance(decoder, dict):
        if model_type not in _NESTED_ENCODER_DECODER:
            raise NotImplementedError(f"encoder-decoder {model_type} (separate decoder config) is not modelled yet")
        inner = kv_layout({k: v for k, v in decoder.items() if k != "is_encoder_decoder"})
        if inner.has_state or any(layer.kind != FULL for layer in inner.layers):
            raise NotImplementedError(f"{model_type}: a decoder with {inner.model_type} layers is not modelled")
        self_layers = inner.layers
        cross = tuple(KVLayer(CROSS, layer.elems_per_token) for layer in inner.layers)
        note = f"{model_type}: {inner.model_type} decoder; its cross-attention caches the encoder length"
        return KVLayout(model_type, self_layers + cross, (note,))
    n_layers = _first(cfg, "num_decoder_layers", "decoder_layers", "num_layers", "num_hidden_layers")
    heads = _first(cfg, "decoder_attention_heads", "num_decoder_attention_heads", "num_heads", "num_attention_heads")
    if n_layers is None or heads is None:
        raise KVLayoutError(f"encoder-decoder config ({model_type or 'unknown'}) names no decoder layers or heads")
    heads = int(heads)
    kv_heads = int(_first(cfg, "decoder_num_key_value_heads", "num_key_value_heads") or heads)
    hidden = _first(cfg, "d_model", "hidden_size")
    d_kv = cfg.get("d_kv")
    if d_kv is None and hidden is None:
        raise KVLayoutError(f"encoder-decoder config ({model_type}) has neither d_kv nor d_model")
    d_head = int(d_kv) if d_kv else int(hidden) // heads
    elems = 2 * kv_heads * d_head
    n = int(n_layers)
    fixed = cfg.get(_FIXED_ENCODER[model_type]) if model_type in _FIXED_ENCODER else None
    notes = [f"encoder-decoder: {n} decoder layers cache their own tokens (self-attention) and the whole encoder "
             "output once (cross-attention, EncoderDecoderCache)"]
    if fixed:
        notes.append(f"{model_type}: the encoder output is always {int(fixed):,} positions (30 s of audio)")
    layers = tuple(KVLayer(FULL, elems) for _ in range(n)) + tuple(KVLayer(CROSS, elems) for _ in range(n))
    return KVLayout(model_type, layers, tuple(notes), int(fixed) if fixed else None)


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


def vllm_hybrid_pages(layout: KVLayout, *, kv_bytes_per_elem: float = 2, block_size: int = 16,
                      state_bytes_per_elem: float = 2,
                      ssm_state_bytes_per_elem: float | None = None) -> tuple[int, float | None]:
    """(attention block size in tokens, bytes of one state page) as vLLM's hybrid allocator sets them.

    With attention and recurrent layers both present, vLLM makes every page the same size: the attention
    block grows to 16 · ceil(state / (16 · attention bytes per token)) tokens (or stays at ``block_size``
    when that is larger) and each layer's per-sequence state is padded to that attention page. Without
    attention layers (pure Mamba) the state page is the state itself. No recurrent layers: (block_size, None).
    The attention bytes per token are those of the first attention layer (vLLM uses the model-wide
    n_kv · d_head)."""
    per_layer = [layer.state_bytes("vllm", state_bytes_per_elem=state_bytes_per_elem,
                                   ssm_state_bytes_per_elem=ssm_state_bytes_per_elem)
                 for layer in layout.layers if layer.states]
    if not per_layer:
        return int(block_size), None
    state = max(per_layer)
    attention = [layer for layer in layout.layers if layer.kind in (FULL, SLIDING, MLA) and layer.elems_per_token]
    if not attention:
        return int(block_size), state
    per_token = attention[0].elems_per_token * kv_bytes_per_elem
    needed = VLLM_BLOCK_ALIGN * math.ceil(state / (VLLM_BLOCK_ALIGN * per_token))
    block = max(int(block_size), needed)
    return block, block * per_token


def state_bytes_per_sequence(layout: KVLayout, *, engine: str = "transformers", state_bytes_per_elem: float = 2,
                             ssm_state_bytes_per_elem: float | None = None, kv_bytes_per_elem: float = 2,
                             block_size: int = 16) -> int:
    """Bytes of fixed (token-independent) state one sequence holds across all layers; vLLM: padded pages."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "vllm":
        _, page = vllm_hybrid_pages(layout, kv_bytes_per_elem=kv_bytes_per_elem, block_size=block_size,
                                    state_bytes_per_elem=state_bytes_per_elem,
                                    ssm_state_bytes_per_elem=ssm_state_bytes_per_elem)
        return int(math.ceil(sum(page for layer in layout.layers if layer.states))) if page else 0
    return int(math.ceil(sum(layer.state_bytes(engine, state_bytes_per_elem=state_bytes_per_elem,
                                               ssm_state_bytes_per_elem=ssm_state_bytes_per_elem)
                             for layer in layout.layers)))


def kv_cache_bytes(layout: KVLayout, *, batch: int, tokens: int, kv_bytes_per_elem: float = 2,
                   engine: str = "transformers", block_size: int = 16, phase: str = "prefill",
                   new_tokens: int = 1, encoder_tokens: int | None = None, state_bytes_per_elem: float = 2,
                   ssm_state_bytes_per_elem: float | None = None) -> int:
    """KV cache bytes for ``batch`` sequences of ``tokens`` tokens each (encoder-decoder: ``tokens`` is the
    decoder's, ``encoder_tokens`` the encoder output length, default ``layout.encoder_tokens``).

    transformers (DynamicCache): full and MLA layers hold every token; sliding layers follow
    ``transformers_tokens_held`` (the whole prompt after prefill, about W after decode steps) plus their
    8-byte window scalar; cross-attention layers hold ``encoder_tokens``; recurrent layers hold their fixed
    state (``state_bytes_per_elem``: the model dtype's bytes, for conv states; the recurrent states' own
    dtype, float32, unless ``ssm_state_bytes_per_elem`` overrides it). vLLM: paged blocks of
    ``block_size`` tokens per sequence, sliding layers capped at the window (``vllm_blocks``), MLA as the
    latent, cross-attention as ceil(encoder_tokens / B) blocks; recurrent layers one state page each, and
    in hybrid models the attention block size and state pages of ``vllm_hybrid_pages``. A sequence of 0
    tokens holds nothing."""
    _check(batch, tokens, kv_bytes_per_elem, engine, block_size)
    if layout.is_encoder_decoder:
        encoder_tokens = layout.encoder_tokens if encoder_tokens is None else encoder_tokens
        if encoder_tokens is None:
            raise ValueError(f"{layout.model_type} is an encoder-decoder model: pass encoder_tokens")
        if int(encoder_tokens) < 0:
            raise ValueError("encoder_tokens must be 0 or more")
    if state_bytes_per_elem <= 0 or (ssm_state_bytes_per_elem is not None and ssm_state_bytes_per_elem <= 0):
        raise ValueError("state bytes per element must be positive")
    page = None
    if engine == "vllm":
        block_size, page = vllm_hybrid_pages(layout, kv_bytes_per_elem=kv_bytes_per_elem, block_size=block_size,
                                             state_bytes_per_elem=state_bytes_per_elem,
                                             ssm_state_bytes_per_elem=ssm_state_bytes_per_elem)
    hybrid = any(layer.kind != STATE and layer.elems_per_token for layer in layout.layers)
    total = 0.0
    for layer in layout.layers:
        count = int(encoder_tokens) if layer.kind == CROSS else int(tokens)
        if engine == "transformers":
            held = transformers_tokens_held(layer, count, phase=phase, new_tokens=new_tokens)
            extra = SLIDING_TENSOR_BYTES if layer.kind == SLIDING else 0
        else:
            held = vllm_blocks(layer, count, block_size) * block_size
            extra = 0
        total += batch * held * layer.elems_per_token * kv_bytes_per_elem + extra
        if layer.states and int(tokens) > 0:
            if engine == "vllm" and hybrid:
                state = page
            else:
                state = layer.state_bytes(engine, state_bytes_per_elem=state_bytes_per_elem,
                                          ssm_state_bytes_per_elem=ssm_state_bytes_per_elem)
            total += batch * state
    return int(math.ceil(total))


def kv_bytes_per_token(layout: KVLayout, *, kv_bytes_per_elem: float = 2, tokens: int | None = None,
                       engine: str = "transformers") -> float:
    """Bytes per token of one sequence. Without ``tokens``: full-context accounting, every layer caching
    every token (the standard identity 2 · L · n_kv · d_head · bytes, or the MLA latent). With
    ``tokens``: the steady-state average at that length, sliding layers capped at their window
    (``sliding_window_tokens``), no block rounding. Only what grows with the (decoder) tokens counts:
    recurrent states (``state_bytes_per_sequence``) and cross-attention K/V (per encoder token) do not."""
    grows = [layer for layer in layout.layers if layer.kind != CROSS]
    if tokens is None:
        return sum(layer.elems_per_token for layer in grows) * kv_bytes_per_elem
    if int(tokens) < 1:
        raise ValueError("tokens must be at least 1")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    kept = sum(layer.elems_per_token * sliding_window_tokens(tokens, layer.window if layer.kind == SLIDING else None)
               for layer in grows)
    return kept * kv_bytes_per_elem / int(tokens)
