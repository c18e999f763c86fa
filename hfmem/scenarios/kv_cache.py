"""KV cache, layer by layer, by engine.

Pure functions, no I/O, no torch. ``kv_layout`` is a view of the model description (``hfmem.model.describe``):
what each decoder layer caches per token (and, for recurrent layers, per sequence); ``kv_cache_bytes``
applies an engine's retention rule to it;
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
  except MiniMax's ``MiniMaxCache.linear_cache`` [b, heads, d, d], which stays in the model dtype. The shapes
  per model family are the description's (``Tower.states``, read by ``hfmem.model.states``).

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

from ..errors import SettingsError, UnsupportedArchitectureError
from ..vocab import ENGINES
from ..model import ModelDescription, Tower, describe
from ..model import description as D
from ..model.describe import NESTED_ENCODER_DECODER
from ..model.description import UNKNOWN_HINT
from ..model.states import CONV, RECURRENT, StateTensor
from .formulas import sliding_window_tokens

FULL, SLIDING, MLA, STATE, CROSS, NONE = "full", "sliding", "mla", "state", "cross", "none"
SLIDING_TENSOR_BYTES = 8  # DynamicSlidingWindowLayer._sliding_window_tensor: torch.long scalar
VLLM_BLOCK_ALIGN = 16  # vLLM rounds the hybrid attention block size to a multiple of 16 tokens


class KVLayoutError(UnsupportedArchitectureError, ValueError):
    """A config whose KV cache this module cannot lay out: a model hfmem cannot estimate (exit 6)."""


def vllm_state_elems(state: StateTensor) -> int:
    """vLLM's conv states keep kernel − 1 columns (``MambaStateShapeCalculator``); the rest is as transformers'."""
    if state.name == CONV:
        return math.prod(state.shape[:-1]) * (state.shape[-1] - 1)
    return state.elems


def state_nbytes(state: StateTensor, engine: str, model_bytes: float, ssm_bytes: float | None = None) -> float:
    """Bytes ``engine`` holds for one sequence of ``state``. ``model_bytes``: bytes per element of the model's
    dtype; ``ssm_bytes`` overrides the recurrent state's dtype (vLLM's ``--mamba-ssm-cache-dtype``)."""
    if engine == "vllm":
        fixed, elems = state.vllm_bytes_per_elem, vllm_state_elems(state)
    else:
        fixed, elems = state.bytes_per_elem, state.elems
    if state.name == RECURRENT and ssm_bytes is not None:
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
        return sum(state_nbytes(s, engine, state_bytes_per_elem, ssm_state_bytes_per_elem) for s in self.states)


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


# -- layout: a view of hfmem.model.describe --------------------------------------------------------------

_STATE_NOTES = {
    "minimax": "MiniMax lightning-attention layers keep one [heads, d, d] state per sequence in the model dtype",
    "kimi_linear": "Kimi delta attention keeps a float32 recurrent state per sequence; attention layers cache "
                   "the MLA latent",
}
_RECURRENT_MIXERS = (D.LINEAR, D.CONV)


def _tower_layers(t: Tower) -> tuple[tuple[KVLayer, ...], list[str]]:
    """What each layer of a decoder tower caches, and the notes that go with it."""
    model_type = t.model_type
    if t.unmodelled:
        raise (KVLayoutError if t.inconsistent else NotImplementedError)(t.unmodelled)
    notes: list[str] = []
    if t.mla:  # MLA: DeepSeek-V2/V3, Kimi-Linear's attention layers
        notes.append("MLA: the compressed latent (kv_lora_rank + qk_rope_head_dim) is cached by transformers 5.24 "
                     "and by vLLM alike")
        if t.mtp_layers:
            notes.append("multi-token-prediction layers are not counted (transformers does not build them)")
        attention = KVLayer(MLA, t.cached_elems_per_token, None, t.decompressed_elems_per_token)
    else:
        attention = KVLayer(FULL, t.cached_elems_per_token)
    recurrent = bool(t.states) or any(layer.mixer in _RECURRENT_MIXERS + (D.HYBRID, D.HYBRID_SLIDING)
                                      for layer in t.layers)
    if recurrent:
        if not t.states:
            raise NotImplementedError(f"recurrent layers of {model_type or 'this model'} are not modelled yet")
        unknown = next((s.unknown_dtype for s in t.states if s.unknown_dtype), None)
        if unknown:
            raise KVLayoutError(f"unknown state dtype {unknown!r}")
        notes.append(_STATE_NOTES.get(model_type, f"{model_type}: recurrent layers keep a fixed state per "
                                                  "sequence (conv window + float32 recurrent state in "
                                                  "transformers), independent of the tokens"))
        notes.append("vLLM: conv states keep kernel - 1 columns and states use the model dtype unless the config "
                     "or --mamba-ssm-cache-dtype names one; with attention layers, the hybrid allocator grows the "
                     "attention block and pads each state to one attention page")
    layers = []
    for i, layer in enumerate(t.layers):
        kind = layer.mixer
        if kind in _RECURRENT_MIXERS:
            layers.append(KVLayer(STATE, 0, states=t.states))
        elif kind == D.HYBRID:  # attention and a recurrent mixer in one layer (Falcon-H1, Zamba2)
            layers.append(KVLayer(attention.kind, attention.elems_per_token, None,
                                  attention.decompressed_elems_per_token, t.states))
        elif kind == D.FULL:
            layers.append(attention)
        elif kind in (D.SLIDING, D.CHUNKED):  # a chunked layer is cached as a sliding one
            layers.append(KVLayer(SLIDING, attention.elems_per_token, layer.window))
        elif kind == D.NO_MIXER:
            layers.append(KVLayer(NONE, 0))
        else:
            raise NotImplementedError(f"layer type {kind!r} (layer {i}) of {model_type} is not modelled yet")
    return tuple(layers), notes


def kv_layout(config: dict | ModelDescription) -> KVLayout:
    """Per decoder layer: what it caches per token (elements, one sequence), its window, and the fixed
    per-sequence state of recurrent layers -- a view of the decoder tower of ``hfmem.model.describe``.
    Encoder-decoder models: the decoder's self-attention layers, then one ``"cross"`` layer per decoder layer
    caching the encoder length. A model without a decoder (CLIP, wav2vec2, BERT) has no KV cache: one line
    says what it has instead."""
    desc = describe(config)
    if desc.unknown:
        raise KVLayoutError(desc.unknown, hint=UNKNOWN_HINT)
    if desc.is_encoder_decoder:
        return _encoder_decoder_layout(desc)
    if desc.unmodelled:
        raise NotImplementedError(desc.unmodelled)
    t = desc.decoder
    if t is None:
        if desc.unsized:
            raise KVLayoutError(desc.unsized)
        desc.require_decoder("a KV cache")
    layers, notes = _tower_layers(t)
    return KVLayout(t.model_type, layers, tuple(notes))


# -- encoder-decoder -----------------------------------------------------------------------------------------


def _encoder_decoder_layout(desc: ModelDescription) -> KVLayout:
    model_type = desc.model_type
    if desc.unmodelled:
        raise NotImplementedError(desc.unmodelled)
    t = desc.tower(D.DECODER)
    if t is None:
        raise KVLayoutError(desc.unsized or f"encoder-decoder config ({model_type or 'unknown'}) names no decoder "
                                            "layers or heads")
    if model_type in NESTED_ENCODER_DECODER:  # EncoderDecoderModel & co: a decoder LM with cross-attention
        inner, _ = _tower_layers(t)
        if any(layer.states or layer.kind != FULL for layer in inner):
            raise NotImplementedError(f"{model_type}: a decoder with {t.model_type} layers is not modelled")
        cross = tuple(KVLayer(CROSS, layer.elems_per_token) for layer in inner)
        note = f"{model_type}: {t.model_type} decoder; its cross-attention caches the encoder length"
        return KVLayout(model_type, inner + cross, (note,))
    n, elems = t.num_layers, t.cached_elems_per_token
    notes = [f"encoder-decoder: {n} decoder layers cache their own tokens (self-attention) and the whole encoder "
             "output once (cross-attention, EncoderDecoderCache)"]
    fixed = desc.encoder_length
    if fixed:
        notes.append(f"{t.model_type}: the encoder output is always {fixed:,} positions (30 s of audio)")
    layers = tuple(KVLayer(FULL, elems) for _ in range(n)) + tuple(KVLayer(CROSS, elems) for _ in range(n))
    return KVLayout(t.model_type, layers, tuple(notes), fixed)


# -- bytes -----------------------------------------------------------------------------------------------

def _check(batch: int, tokens: int, kv_bytes_per_elem: float, engine: str, block_size: int) -> None:
    if int(batch) < 1:
        raise SettingsError("batch must be at least 1")
    if int(tokens) < 0:
        raise SettingsError("tokens must be 0 or more")
    if kv_bytes_per_elem <= 0:
        raise SettingsError("kv_bytes_per_elem must be positive")
    if engine not in ENGINES:
        raise SettingsError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if int(block_size) < 1:
        raise SettingsError("block_size must be at least 1")


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
        raise SettingsError("phase must be 'prefill' or 'decode'")
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
        raise SettingsError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
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
            raise SettingsError(f"{layout.model_type} is an encoder-decoder model: pass encoder_tokens")
        if int(encoder_tokens) < 0:
            raise SettingsError("encoder_tokens must be 0 or more")
    if state_bytes_per_elem <= 0 or (ssm_state_bytes_per_elem is not None and ssm_state_bytes_per_elem <= 0):
        raise SettingsError("state bytes per element must be positive")
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
        raise SettingsError("tokens must be at least 1")
    if engine not in ENGINES:
        raise SettingsError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    kept = sum(layer.elems_per_token * sliding_window_tokens(tokens, layer.window if layer.kind == SLIDING else None)
               for layer in grows)
    return kept * kv_bytes_per_elem / int(tokens)
