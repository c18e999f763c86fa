"""What a recurrent layer keeps per sequence: its Mamba mixer's widths (``SSM``) and its fixed-size state
tensors (``StateTensor``), as transformers 5.24 allocates them.

Data only: shapes in elements, dtypes as canonical names (``hfmem.vocab``). The bytes an engine holds for
them (vLLM's kernel − 1 conv columns, its page padding) are ``hfmem.scenarios.kv_cache``'s. The config's
names for each width and transformers' configuration-class defaults are ``hfmem.model.fields.STATE_FIELDS``.

``LinearAttentionLayer`` (transformers 5.24's cache for these layers) allocates, once per sequence, a
``conv_states`` tensor [channels, kernel] (the *full* kernel width, in the hidden states' dtype) and a
``recurrent_states`` tensor (``zeros_like`` the scan's final state, float32: ``mamba2_chunk_scan`` calls
``.float()``, gated DeltaNet and KDA cast with ``.to(float32)``), except MiniMax's
``MiniMaxCache.linear_cache`` [heads, d, d], which stays in the model dtype. Per family:

- Mamba (mamba, falcon_mamba, Jamba's Mamba layers): conv [d_inner, d_conv], ssm [d_inner, d_state] fp32.
- Mamba-2 (mamba2, bamba, granitemoehybrid, nemotron_h, falcon_h1, zamba2): conv [d_inner + 2 · groups ·
  d_state, d_conv], ssm [heads, head_dim, d_state] fp32.
- Gated DeltaNet (qwen3_next, qwen3_5, olmo_hybrid): conv [2 · k_heads · d_k + v_heads · d_v, kernel],
  recurrent [v_heads, d_k, d_v] fp32.
- Kimi delta attention (kimi_linear): conv [3 · heads · d, kernel], recurrent [heads, d, d] fp32.
- Short convolution (lfm2, lfm2_moe, lfm3): conv [hidden, conv_L_cache], no recurrent state.
- Lightning attention (minimax): [heads, d, d] in the model dtype.

vLLM (``vllm/model_executor/layers/mamba/mamba_utils.py``) keeps its states in the model dtype
(``--mamba-cache-dtype auto``) unless the config names one (``mamba_ssm_cache_dtype``; Qwen3.5's
``mamba_ssm_dtype``); NemotronH's hook takes float32 when the config names none; KDA's recurrent state is
always float32 (``kda_state_dtype``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import vocab as _vocab
from . import fields as F

CONV, RECURRENT = "conv", "recurrent"
FP32 = "float32"

# The Mamba mixer each model's recurrent layers run (its configuration class's field names differ).
MAMBA1 = ("mamba", "falcon_mamba", "jamba")
MAMBA2 = ("mamba2", "bamba", "granitemoehybrid", "falcon_h1", "zamba2", "nemotron_h")
GATED_DELTANET = ("qwen3_next", "qwen3_5_text", "qwen3_5_moe_text", "olmo_hybrid")
SHORT_CONV = ("lfm2", "lfm2_moe", "lfm3")


@dataclass(frozen=True)
class StateTensor:
    """A fixed-size tensor a recurrent layer keeps per sequence; it does not grow with tokens."""

    name: str                      # "conv" (the causal-conv window) or "recurrent" (SSM / linear-attention state)
    shape: tuple[int, ...]         # one sequence, as transformers 5.24 allocates it (conv: (channels, kernel))
    dtype: str | None = None       # transformers: a fixed dtype (float32 for the scans); None: the model dtype
    vllm_dtype: str | None = None  # vLLM: a fixed dtype (KDA, the config's ssm dtype); None: the model dtype

    @property
    def elems(self) -> int:
        return math.prod(self.shape)

    @property
    def bytes_per_elem(self) -> int | None:
        """Width of ``dtype`` (None: the model's)."""
        return _vocab.DTYPE_BYTES[self.dtype] if self.dtype else None

    @property
    def vllm_bytes_per_elem(self) -> int | None:
        return _vocab.DTYPE_BYTES[self.vllm_dtype] if self.vllm_dtype else None

    @property
    def unknown_dtype(self) -> str | None:
        """A dtype name the config gave that is not a torch float dtype hfmem knows (None when both are)."""
        return next((d for d in (self.dtype, self.vllm_dtype) if d and d not in _vocab.DTYPE_BYTES), None)


@dataclass(frozen=True)
class SSM:
    """The widths of a Mamba / Mamba-2 mixer (transformers' MambaMixer / Mamba2Mixer and their kin)."""

    kind: str                      # "mamba" (selective scan, [d_inner, d_state] state) or "mamba2" (per-head)
    inner: int                     # d_inner: the mixer's expanded width
    state_size: int                # d_state (N)
    conv_kernel: int               # the causal conv's kernel width
    heads: int = 0                 # Mamba-2: heads (H)
    head_dim: int = 0              # Mamba-2: head width (P)
    groups: int = 0                # Mamba-2: B/C groups
    chunk_size: int = 0            # Mamba-2: the chunked scan's chunk length (L)


def _canonical(name) -> str | None:
    """The canonical name of a dtype a config names (its own spelling, ``torch.`` dropped, if unknown)."""
    if name is None:
        return None
    if _vocab.is_dtype(name):
        return _vocab.canonical_dtype(name)
    return str(name).removeprefix("torch.")


def _get(cfg: dict, family: str, quantity: str):
    names, default = F.STATE_FIELDS[family][quantity]
    return F.first(cfg, names, default)


def ssm_of(cfg: dict, model_type: str, hidden: int) -> SSM | None:
    """The Mamba mixer of ``model_type``'s recurrent layers; None for a model without one."""
    if model_type in MAMBA1:
        family = "jamba" if model_type == "jamba" else "mamba"
        g = lambda q: _get(cfg, family, q)  # noqa: E731
        # mamba, falcon_mamba: config.json's intermediate_size wins over expand · hidden; Jamba's
        # intermediate_size is its MLP's, so only mamba_expand · hidden
        inner = int((g("inner") if family == "mamba" else None) or g("expand") * hidden)
        return SSM("mamba", inner, int(g("state_size")), int(g("conv_kernel")))
    if model_type not in MAMBA2:
        return None
    g = lambda q: _get(cfg, model_type, q)  # noqa: E731
    if model_type == "nemotron_h":  # d_inner = heads · head_dim
        heads, head_dim = int(g("heads")), int(g("head_dim"))
        inner = heads * head_dim
    else:
        inner = int((g("inner") if model_type == "falcon_h1" else None) or g("expand") * hidden)
        heads = int(g("heads") or 0)
        head_dim = g("head_dim")
        if model_type == "mamba2" and not heads:  # Mamba2Config requires heads · head_dim = expand · hidden
            heads = inner // int(head_dim) if int(head_dim) else 0
        if head_dim in (None, "auto"):  # bamba, granitemoehybrid, falcon_h1, zamba2: d_inner / heads
            head_dim = inner // heads if heads else 0
    return SSM("mamba2", inner, int(g("state_size")), int(g("conv_kernel")), heads, int(head_dim),
               int(g("groups")), int(g("chunk_size") or 0))


def state_tensors(cfg: dict, model_type: str, *, hidden: int, heads: int, head_dim: int,
                  ssm: SSM | None) -> tuple[StateTensor, ...]:
    """What one recurrent layer of ``model_type`` keeps per sequence; () for a model hfmem does not model
    (its recurrent layers are then refused by the scenarios that need them)."""
    ssm_vllm = _canonical(F.first(cfg, F.SSM_CACHE_DTYPE))  # vLLM: the model dtype unless the config names one
    if ssm is not None and ssm.kind == "mamba":
        return (StateTensor(CONV, (ssm.inner, ssm.conv_kernel)),
                StateTensor(RECURRENT, (ssm.inner, ssm.state_size), FP32, ssm_vllm))
    if ssm is not None:
        if model_type == "nemotron_h":  # vLLM's NemotronH hook: the config's dtype, float32 when it names none
            ssm_vllm = ssm_vllm or FP32
        return (StateTensor(CONV, (ssm.inner + 2 * ssm.groups * ssm.state_size, ssm.conv_kernel)),
                StateTensor(RECURRENT, (ssm.heads, ssm.head_dim, ssm.state_size), FP32, ssm_vllm))
    if model_type in GATED_DELTANET:
        family = "olmo_hybrid" if model_type == "olmo_hybrid" else "qwen3_next"
        g = lambda q: _get(cfg, family, q)  # noqa: E731
        if family == "olmo_hybrid":  # OlmoHybridConfig derives what it omits from the attention sizes
            k_heads, v_heads = int(g("k_heads") or heads), int(g("v_heads") or heads)
            d_k = int(g("d_k") or (int(0.75 * hidden / k_heads) if k_heads else 0))
            d_v = int(g("d_v") or 2 * d_k)
        else:
            k_heads, v_heads, d_k, d_v = int(g("k_heads")), int(g("v_heads")), int(g("d_k")), int(g("d_v"))
        return (StateTensor(CONV, (2 * k_heads * d_k + v_heads * d_v, int(g("conv_kernel")))),
                StateTensor(RECURRENT, (v_heads, d_k, d_v), FP32, ssm_vllm))
    if model_type == "kimi_linear":  # linear_attn_config's keys win over the top-level linear_* fields
        lin = cfg.get("linear_attn_config") or {}
        g = lambda q: F.first(lin, F.STATE_FIELDS["kimi_linear_nested"][q][0]) or _get(cfg, model_type, q)  # noqa
        k_heads, d, kernel = int(g("heads")), int(g("head_dim")), int(g("conv_kernel"))
        return (StateTensor(CONV, (3 * k_heads * d, kernel)),
                StateTensor(RECURRENT, (k_heads, d, d), FP32, FP32))  # vLLM kda_state_dtype: fp32 recurrent
    if model_type in SHORT_CONV:
        return (StateTensor(CONV, (hidden, int(_get(cfg, "lfm2", "conv_kernel")))),)
    if model_type == "minimax":  # MiniMaxCache.linear_cache: K^T V per head, the value dtype
        return (StateTensor(RECURRENT, (heads, head_dim, head_dim)),)
    return ()
