"""Activation memory of a training step, and the step's peak by phase.

Pure closed forms over a config dict: no torch, no transformers, no I/O except the packaged
``hfmem/data/calibration.json`` (read once, lazily, through importlib.resources).

What the numbers are. ``activation_bytes`` returns what a training forward pass leaves alive for the
backward pass (``saved_bytes``: the ``activations`` category at the end of ``forward`` in
``hfmem.simulate.simulate_train``), the forward's transient at the loss, and the backward's transients.
``peak_by_phase`` adds the model states the caller passes in (weights, gradients, optimizer states, the
optimizer step's temporaries) the way the simulator's phases show them: the peak is *not* the sum of all
parts (gradients do not exist during the forward; activations are freed while gradients appear).

Per decoder layer (bytes per token, 16-bit activations), the calibrated per-architecture coefficient of
calibration.json (Korthikanti's ``c`` of ``sbh·c``, measured by simulation of the real transformers code
for one reference model per ``model_type``) is exact for the reference shape only: ``c`` depends on the
MLP width, the number of KV heads, MoE routing, ... So the coefficient is *anchored* at the reference and
moved to another shape with a structural form whose derivatives were measured by simulation (varying one
config field at a time, 2 and 4 layers, by difference; benchmarks/calibrate.py's method):

    bytes/token/layer = c_h·h + S(shape) [+ attention·a·s for eager attention]
    S = c_q·(heads·head_dim) + c_kv·(kv_heads·head_dim) + c_a·heads + c_0 + MLP
    MLP (dense)  = c_I·I                (gated SiLU/GeLU MLPs: 8 = gate, act, up, product in 16 bit)
    MLP (MoE)    = c_e·k·I_moe + (4h + 38)·k + 4·E + 8·I_shared
                   (top-k routed rows: the expert MLP per routed row, the gathered hidden state per row,
                    routing weights/indices; the router logits per expert; the shared expert(s))
    c_h          = (linear_ref·h_ref − S(ref)) / h_ref   (so the reference model is reproduced exactly)

For example Llama (SDPA): c_q = 4 (RoPE'd q, attention output), c_kv = 4 (RoPE'd k, v), c_I = 8,
c_a = 4 (the fp32 logsumexp of flash attention per head), c_0 = 12 (RMSNorm rsqrt), c_h = 16 (two RMSNorms:
fp32 upcast 4h + weighted bf16 2h + output 2h each). Eager attention saves repeated K/V (c_q 8, c_kv 0) and
the s×s scores: ``attention``·a·s per token (6 for Llama: fp32 softmax output 4 + bf16 copy 2).

Non-layer terms (per token): the loss's log-probabilities, ``bytes_per_token_per_vocab``·V (4 when the
loss upcasts the logits to fp32 — transformers' ForCausalLMLoss; 2 for BERT's bf16 cross entropy; 6 with
Gemma 2's final logit soft-capping), and ``bytes_per_token_per_hidden``·h (embedding output, final norm,
rotary tables, token ids). The forward transient at the loss is 6·b·s·V (bf16 logits + their fp32 copy while
the fp32 log-softmax is computed); the backward's first op adds 8·b·s·V (fp32 grad of the log-probs and
fp32 grad of the logits, next to the saved log-probs).

Gradient checkpointing (non-reentrant, per layer, as transformers does it): each layer keeps only its
input, 2·b·s·h (one 16-bit hidden state — measured: calibration ``grad_ckpt`` = 2.0 for every
architecture; note stas00's "non-reentrant checkpointing keeps 2 hidden states per layer" is not what the
simulation of transformers 5.24 shows); the backward recomputes one layer at a time: one layer's full
activations plus that layer's backward transient.

Precision. ``dtype_bytes`` 2 (bf16/fp16, the calibrated case) or 4 (fp32 training: 2× the 16-bit layer,
less what the 16-bit run keeps as fp32 upcasts, measured for Llama −8h, Qwen3 +0.9h, GPT-2 −2h; 2× assumed
for the others). ``amp`` (torch.autocast on fp32 weights): activations in the autocast dtype, plus
(measured) ~10h per layer for RMSNorm families and ~4h for LayerNorm families of fp32 tensors (the
residual stream and the norms stay fp32), plus the 16-bit copies of every Linear weight that autocast makes
and autograd keeps until the backward (2 bytes × the linear parameters, MoE experts included) — unless
gradient checkpointing drops them (then one layer's copies return during its recompute).

LoRA (PEFT, adapters in fp32 on a 16-bit base — PEFT's autocast_adapter_dtype): the frozen base no
longer saves what only weight gradients need (RMSNorm weighted outputs and the Linear inputs: 8h + 2I per
layer for RMSNorm families, 4h + 2I for LayerNorm ones), but each adapted Linear saves an fp32 copy of its
input (4·d_in, one per adapted module, q/k/v each their own) and the fp32 low-rank activation (4·r);
lora_dropout > 0 adds the 1-byte dropout mask (1·d_in). Measured on Llama: exact to the byte.
DoRA (``use_dora=True``, PEFT 0.21 ``DoraLinearLayer.forward``): the result is
base + (m/‖W+ΔW‖ − 1)·base_result + (m/‖W+ΔW‖)·lora_B(lora_A(x))·scaling with the norm detached, so each
adapted Linear also keeps, for the magnitude's gradient, the base output it multiplies (the 16-bit
base-layer output, 2·d_out; with lora_dropout > 0 PEFT recomputes it as F.linear(dropout(x), W) in fp32:
4·d_out) and the fp32 LoRA branch output (4·d_out) — 6·d_out per token (8·d_out with dropout); with
dropout that F.linear also keeps the fp32 copy of W it was given (4·d_in·d_out per adapted Linear, not per
token). The weight-norm path (x_eye = eye(d_in), lora_B(lora_A(x_eye)), ‖W + s·ΔW‖) is detached from the
output and freed within the forward of each layer: a transient, not saved. Simulated on Llama-3.2-1B /
Qwen3: the per-token terms exact; the per-layer constants (≈10·d_out) are left out.

Parallelism (Korthikanti et al. 2022, arXiv 2205.05198, Table 2 and Eq. 5): tensor parallel t without
sequence parallel splits 24 of the 34 (the rest — LayerNorm inputs, dropout masks, residuals — is
replicated); with sequence parallel everything is split by t; the s² attention term is split by t.
Pipeline 1F1B: the first stage holds L layers' worth whatever p (L/p layers × min(p, micro-batches) in
flight); the interleaved schedule multiplies by 1 + (p − 1)/(p·m), m model chunks per device.

Architectures absent from calibration.json use the nearest structural family (``NEAREST_FAMILY`` or, for
an unknown model_type, a guess from the config's fields), and Korthikanti's 34 + 5as/h (eager) / 34
(flash, SDPA) with 4·b·s·V fp32 logits otherwise. ``coefficients_source`` says which.

The step's peak (``peak_by_phase``) follows the simulator's phases: the backward's peak is the largest of a
few moments — at the loss (all activations + 8·b·s·V), after the lm_head, at the first and at the last layer
processed (activations shrink linearly while the layers' gradients grow; one layer's backward transient
≈ 2·(2I + h) bytes per token, plus its recompute under checkpointing, plus eager's (attention − 1.5)·a·s²·b),
and at the end (every gradient; tied embeddings add the pending lm_head gradient and the embedding gradient
before their sum, 2·V·h). With few activations the end wins; with many, the loss moment.

Accuracy against fresh ``simulate_train`` runs at batches/lengths calibration.json did not use
(tests/test_train_activations.py and a wider sweep, 2–5 layers of the real widths): saved activations and the
overall step peak within 0.1% for every calibrated family in bf16 (llama, mistral, qwen2, qwen3, phi3,
gemma, gemma2, gemma3, gpt_neox, gpt2, bert, starcoder2, mixtral, qwen2_moe, qwen3_moe, deepseek_v3,
gpt_oss), SDPA and eager, with and without checkpointing, except gemma3 eager (−0.6%); DeepSeek-V2-Lite via
the V3 family 0.0%; fp32 within 1% (gemma3 +5%); AMP within 1.1% (+ checkpointing: activations exact,
forward-phase peak −4%); LoRA within 1.4%. Nearest-family approximations are looser: Cohere −0.6%,
Starcoder (gpt_bigcode via gpt2) +4.6%, StableLM (via llama) +5.8%, GPT-J (via gpt_neox) +7.5% on the
activations. Phi-3 at s ≥ its 2047 window (masked SDPA) +2.8%.

Not modelled: padding / attention masks (the simulator runs unpadded), packed sequences, fused or chunked
cross-entropy (Liger, Cut-Cross-Entropy), activation offloading, selective recompute other than per-layer
checkpointing, FSDP/ZeRO gathers (the caller's model-state bytes carry those), the CUDA context, allocator
fragmentation and kernel workspaces.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, replace
from importlib import resources

from ..metadata.config import first_of as _first
from ..metadata.config import text_config
from .kv_cache import _PATTERN_DEFAULTS

CALIBRATION_PACKAGE = "hfmem.data"
CALIBRATION_FILE = "calibration.json"
ATTNS = ("sdpa", "eager", "flash")
KORTHIKANTI = "Korthikanti 2022 (fallback)"


class TrainActivationError(ValueError):
    """A setting this closed form cannot estimate (an unknown attention, a bad parallel layout, ...)."""


# -- calibration ----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def load_calibration() -> dict:
    """The packaged calibration.json (cached); an empty document if it is missing."""
    try:
        text = resources.files(CALIBRATION_PACKAGE).joinpath(CALIBRATION_FILE).read_text()
    except (FileNotFoundError, ModuleNotFoundError):
        return {"architectures": {}}
    return json.loads(text)


def calibration_entry(model_type: str, attn: str) -> dict | None:
    """calibration.json's entry for (model_type, attn); flash uses the SDPA entry (SDPA runs the flash op)."""
    arch = load_calibration().get("architectures", {}).get(model_type) or {}
    key = "sdpa" if attn == "flash" else attn
    return arch.get(key)


# -- the config --------------------------------------------------------------------------------------------
# Defaults transformers fills in when a multimodal config's text_config omits them (llava-1.5 lists only
# model_type, rms_norm_eps and vocab_size): LlamaConfig's defaults.


def _text(config: dict) -> dict:
    """The language model's config: ``text_config`` of a multimodal config (completed with transformers'
    defaults), else the config itself; vocabulary and tying may sit at the top level."""
    merged = text_config(config)
    if merged is not config:
        merged.setdefault("vocab_size", config.get("vocab_size"))
        merged.setdefault("tie_word_embeddings", config.get("tie_word_embeddings"))
    return merged


@dataclass(frozen=True)
class TrainShape:
    """What the activation forms need, read from a config dict (Hugging Face field names and aliases)."""

    model_type: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    experts: int = 0  # routed experts (0: dense)
    top_k: int = 0
    moe_intermediate: int = 0
    shared_intermediate: int = 0  # shared expert(s) width in all (qwen2_moe, DeepSeek n_shared × moe width)
    dense_layers: int = 0  # layers with a dense MLP in a MoE model (DeepSeek first_k_dense_replace, ...)
    q_lora_rank: int = 0  # MLA (DeepSeek-V2/V3)
    kv_lora_rank: int = 0
    mla_head_dims: int = 0  # qk_nope + qk_rope + v head dims
    mla_rope_dim: int = 0
    mla_v_dim: int = 0
    window: int | None = None
    sliding_layers: int = 0
    rotary: bool = True
    hidden_act: str = ""

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers if self.experts else 0


# transformers' configuration classes: tie_word_embeddings when a config.json does not say (checked with
# AutoConfig.for_model in transformers 5.24), and the activation when it names none.
TIED_BY_DEFAULT = frozenset({
    "gemma", "gemma2", "gemma3_text", "gpt2", "gpt_bigcode", "bert", "roberta", "xlm-roberta", "camembert",
    "electra", "distilbert", "modernbert", "starcoder2", "cohere", "cohere2", "smollm3", "opt", "falcon", "bloom"})
DEFAULT_ACT = {"gpt2": "gelu_new", "phi": "gelu_new", "gptj": "gelu_new", "gpt_bigcode": "gelu_pytorch_tanh",
               "gemma": "gelu_pytorch_tanh", "gemma2": "gelu_pytorch_tanh", "gemma3_text": "gelu_pytorch_tanh",
               "starcoder2": "gelu_pytorch_tanh", "bert": "gelu", "gpt_neox": "gelu", "opt": "relu"}
# Non-gated MLPs: bytes per intermediate unit by activation. A fused activation kernel saves its input only
# (fc1 output 2 + activation output 2, kept by fc2); GPT-2's "gelu_new" is Python arithmetic
# (0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))), whose intermediates autograd keeps: 10 (measured).
COMPOSITE_ACT_BYTES = {"gelu_new": 10.0, "gelu_fast": 10.0}


def _sliding_layers(cfg: dict, layers: int, model_type: str) -> tuple[int | None, int]:
    window = cfg.get("sliding_window")
    types = cfg.get("layer_types")
    if isinstance(types, list) and types:
        n = sum(t == "sliding_attention" for t in types[:layers])
    elif not window:
        n = 0
    elif cfg.get("use_sliding_window") is False:
        n = 0
    elif model_type == "gemma2":
        n = (layers + 1) // 2  # transformers' default: even layers slide
    elif cfg.get("sliding_window_pattern") or _PATTERN_DEFAULTS.get(model_type):
        # the config's pattern, else its configuration class's (Gemma 3: 5 sliding layers in every 6)
        p = int(cfg.get("sliding_window_pattern") or _PATTERN_DEFAULTS[model_type])
        n = sum(bool((i + 1) % p) for i in range(layers))
    else:
        n = layers  # Mistral-7B-v0.1, Phi-3, Starcoder2: every layer
    return (int(window) if window and n else None), n


def train_shape(config: dict) -> TrainShape:
    cfg = _text(config)
    model_type = str(cfg.get("model_type") or config.get("model_type") or "unknown")
    hidden = int(_first(cfg, "hidden_size", "n_embd", "d_model", "dim", default=0))
    heads = int(_first(cfg, "num_attention_heads", "n_head", "num_heads", "n_heads", default=0))
    layers = int(_first(cfg, "num_hidden_layers", "n_layer", "num_layers", "n_layers", default=0))
    vocab = int(_first(cfg, "vocab_size", "padded_vocab_size", default=0))
    if not (hidden and heads and layers and vocab):
        raise TrainActivationError(f"{model_type}: config lacks hidden size, heads, layers or vocabulary")
    kv = int(_first(cfg, "num_key_value_heads", "n_head_kv", "num_kv_heads", default=heads))
    if cfg.get("multi_query") is True:  # gpt_bigcode
        kv = 1
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    inter = int(_first(cfg, "intermediate_size", "n_inner", "ffn_dim", default=0) or 4 * hidden)
    experts = int(_first(cfg, "n_routed_experts", "num_local_experts", "num_experts", "moe_num_experts", default=0) or 0)
    top_k = int(_first(cfg, "num_experts_per_tok", "moe_top_k", "top_k", default=0) or 0) if experts else 0
    moe_inter = shared = dense = 0
    if experts and top_k:
        moe_inter = int(cfg.get("moe_intermediate_size") or inter)
        if cfg.get("shared_expert_intermediate_size"):
            shared = int(cfg["shared_expert_intermediate_size"])
        elif cfg.get("n_shared_experts"):
            shared = int(cfg["n_shared_experts"]) * moe_inter
        dense = min(layers, int(cfg.get("first_k_dense_replace") or 0))
        only = cfg.get("mlp_only_layers") or []
        step = int(cfg.get("decoder_sparse_step") or 1)
        if not dense:
            dense = sum(1 for i in range(layers) if i in only or (step > 1 and (i + 1) % step))
    else:
        experts = top_k = 0
    mla = int(cfg.get("kv_lora_rank") or 0)
    mla_dims = mla_rope = mla_v = 0
    if mla:
        mla_rope, mla_v = int(cfg.get("qk_rope_head_dim") or 64), int(cfg.get("v_head_dim") or 128)
        mla_dims = int(cfg.get("qk_nope_head_dim") or 128) + mla_rope + mla_v
    window, sliding = _sliding_layers(cfg, layers, model_type)
    tied = cfg.get("tie_word_embeddings")
    if tied is None:
        tied = model_type in TIED_BY_DEFAULT
    act = str(_first(cfg, "hidden_act", "hidden_activation", "activation_function",
                     default=DEFAULT_ACT.get(model_type, "silu")))
    rotary = model_type not in ("gpt2", "gpt_bigcode", "bert", "roberta", "xlm-roberta", "opt", "bloom")
    return TrainShape(model_type=model_type, layers=layers, hidden=hidden, heads=heads, kv_heads=kv,
                      head_dim=head_dim, intermediate=inter, vocab=vocab, tied=bool(tied),
                      experts=experts, top_k=top_k, moe_intermediate=moe_inter, shared_intermediate=shared,
                      dense_layers=dense, q_lora_rank=int(cfg.get("q_lora_rank") or 0), kv_lora_rank=mla,
                      mla_head_dims=mla_dims, mla_rope_dim=mla_rope, mla_v_dim=mla_v, window=window, sliding_layers=sliding, rotary=rotary,
                      hidden_act=act)


# -- structural forms (bytes per token per layer, 16-bit activations), measured by simulation ----------
@dataclass(frozen=True)
class Structure:
    """Derivatives of a layer's saved bytes per token with respect to the shape (see the module docstring).
    ``sdpa`` / ``eager``: (c_q, c_kv, c_a, c_0); ``mlp``: bytes per intermediate unit (dense MLP);
    ``expert``: bytes per routed row per expert-intermediate unit; ``norm``: "rms" or "ln";
    ``fp32_h``/``amp_h``: the per-layer change (×h) of fp32 training beyond 2× / of autocast;
    ``linears``: (name, input-dim kind, output-dim kind) of the layer's Linear modules, for LoRA and AMP."""

    sdpa: tuple[float, float, float, float]
    eager: tuple[float, float, float, float]
    mlp: float = 8.0
    expert: float = 8.0
    norm: str = "rms"
    fp32_h: float = 0.0
    amp_h: float = 10.0
    gated: bool = True
    expands_kv_with_mask: bool = True  # SDPA with a mask: repeat_kv'd K/V saved (Mistral); not Gemma 3
    eager_position_h: float = 0.0  # eager: per-layer bytes per position per h that do not scale with the
    # batch (GPT-2: 8 — calibrated at batch 1, so inside ``linear``; measured with batch 1 vs 2)
    softmax_fp32: bool = True  # eager: fp32 softmax + 16-bit copy (Llama: 6 → 4 in fp32 training); else a
    # 16-bit softmax + dropout (GPT-2/BERT: 5 = 2 + mask 1 + 2 → 9 in fp32)
    fp32_qk: float = 0.0  # fp32 training: per (q_dim + kv_dim) change (Qwen3's q/k RMSNorm upcasts vanish)
    amp_nl_h: float = 2.0  # AMP: extra fp32 bytes per h outside the layers (embedding output; BERT's head)
    amp_attention: float = 0.0  # AMP, eager: extra bytes per a·s² (GPT-2: fp32 softmax output kept, 5 → 7)
    linears: tuple[tuple[str, str, str], ...] = (
        ("q_proj", "h", "q"), ("k_proj", "h", "kv"), ("v_proj", "h", "kv"), ("o_proj", "q", "h"),
        ("gate_proj", "h", "I"), ("up_proj", "h", "I"), ("down_proj", "I", "h"))


_LLAMA = Structure(sdpa=(4, 4, 4, 12), eager=(8, 0, 0, 8), fp32_h=-8.0)
_QWEN3 = Structure(sdpa=(10, 10, 9, 12), eager=(14, 6, 5, 8), fp32_h=-8.0, fp32_qk=-4.0)
_GEMMA = Structure(sdpa=(4, 4, 4, 12), eager=(8, 0, 0, 8), expands_kv_with_mask=False, fp32_h=-8.0)
_GEMMA2 = Structure(sdpa=(8, 0, 0, 16), eager=(8, 0, 0, 16), expands_kv_with_mask=False, fp32_h=-16.0)
_GEMMA3 = Structure(sdpa=(12, 12, 5, 28), eager=(12, 12, 0, 8), expands_kv_with_mask=False, fp32_h=-16.0,
                    fp32_qk=-4.0)
_NEOX = Structure(sdpa=(4, 4, 4, 12), eager=(8, 0, 0, 8), mlp=4, norm="ln", amp_h=4.0, gated=False, fp32_h=-2.0,
                  linears=(("query_key_value", "h", "qkv"), ("dense", "q", "h"),
                           ("dense_h_to_4h", "h", "I"), ("dense_4h_to_h", "I", "h")))
_GPT2 = Structure(sdpa=(4, 4, 4, 12), eager=(4, 4, 0, 8), mlp=10, norm="ln", fp32_h=-2.0, amp_h=4.0,
                  gated=False, eager_position_h=8.0, softmax_fp32=False, amp_attention=2.0, linears=(("c_attn", "h", "qkv"), ("c_proj", "q", "h"), ("c_fc", "h", "I"),
                                        ("mlp.c_proj", "I", "h")))
_BERT = Structure(sdpa=(4, 4, 4, 12), eager=(4, 4, 0, 8), mlp=4, norm="ln", amp_h=8.0, gated=False,
                  fp32_h=-2.0, softmax_fp32=False, amp_nl_h=8.0,
                  linears=(("query", "h", "q"), ("key", "h", "kv"), ("value", "h", "kv"),
                           ("attention.output.dense", "q", "h"), ("intermediate.dense", "h", "I"),
                           ("output.dense", "I", "h")))
_STARCODER2 = Structure(sdpa=(4, 4, 4, 12), eager=(8, 0, 0, 8), mlp=4, norm="ln", amp_h=4.0, gated=False,
                        fp32_h=-2.0,
                        linears=(("q_proj", "h", "q"), ("k_proj", "h", "kv"), ("v_proj", "h", "kv"),
                                 ("o_proj", "q", "h"), ("c_fc", "h", "I"), ("c_proj", "I", "h")))
_GPT_OSS = Structure(sdpa=(8, 0, 0, 8), eager=(8, 0, 0, 8), expert=14)
# MLA: attention terms come from _mla_terms, not (c_q, c_kv)
_MLA = Structure(sdpa=(0, 0, 0, 12), eager=(0, 0, 0, 8))

STRUCTURES: dict[str, Structure] = {
    "llama": _LLAMA, "mistral": _LLAMA, "qwen2": _LLAMA, "phi3": _LLAMA, "mixtral": _LLAMA,
    "qwen2_moe": _LLAMA, "qwen3": _QWEN3, "qwen3_moe": _QWEN3, "gemma": _GEMMA, "gemma2": _GEMMA2,
    "gemma3_text": _GEMMA3, "gpt_neox": _NEOX, "gpt2": _GPT2, "bert": _BERT, "starcoder2": _STARCODER2,
    "deepseek_v3": _MLA, "gpt_oss": _GPT_OSS,
}

# model types without a calibration entry -> the calibrated family whose code they share most.
NEAREST_FAMILY: dict[str, str] = {
    "mistral3": "mistral", "ministral": "mistral", "qwen2_vl": "qwen2", "qwen2_5_vl": "qwen2",
    "qwen2_audio": "qwen2", "olmo": "llama", "olmo2": "qwen3", "olmo3": "qwen3", "granite": "llama",
    "internlm2": "llama", "internlm": "llama", "baichuan": "llama", "yi": "llama", "minicpm": "llama",
    "aquila": "llama", "deepseek": "qwen2_moe", "cohere": "llama", "cohere2": "llama", "helium": "llama",
    "smollm3": "llama", "llava": "llama", "llava_next": "llama", "mllama": "llama", "exaone": "llama",
    "phi": "gpt_neox", "gptj": "gpt_neox", "stablelm": "llama", "gpt_bigcode": "gpt2", "opt": "gpt2",
    "roberta": "bert", "xlm-roberta": "bert", "camembert": "bert", "electra": "bert", "distilbert": "bert",
    "modernbert": "bert", "deepseek_v2": "deepseek_v3", "kimi_k2": "deepseek_v3", "glm4_moe": "qwen3_moe",
    "granitemoe": "mixtral", "phimoe": "mixtral", "olmoe": "qwen3_moe", "qwen3_next": "qwen3_moe",
    "gemma3": "gemma3_text", "recurrent_gemma": "gemma", "qwen3_vl": "qwen3", "qwen3_vl_moe": "qwen3_moe",
    "phi4_multimodal": "phi3", "nemotron": "gpt_neox", "falcon": "gpt_neox", "bloom": "gpt2",
}


def _guess_family(cfg: dict, shape: TrainShape) -> str | None:
    """A calibrated family for an unknown model_type from what its config says, or None."""
    if shape.kv_lora_rank:
        return "deepseek_v3"
    if shape.experts:
        return "qwen2_moe" if shape.shared_intermediate else "mixtral"
    if "rms_norm_eps" in cfg:
        return "llama"
    if "n_embd" in cfg and "n_head" in cfg:
        return "gpt2"
    if "layer_norm_eps" in cfg and cfg.get("hidden_act") in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        return "gpt_neox"
    return None


def _family(config: dict, shape: TrainShape) -> tuple[str | None, str]:
    """(calibrated family or None, how it was chosen)."""
    cal = load_calibration().get("architectures", {})
    mt = shape.model_type
    if mt in cal and mt in STRUCTURES:
        return mt, "calibrated"
    near = NEAREST_FAMILY.get(mt)
    if near in cal:
        return near, f"nearest family of {mt}"
    guess = _guess_family(_text(config), shape)
    if guess in cal:
        return guess, f"family guessed from {mt}'s config fields"
    return None, f"{mt} has no calibrated family"


def _mlp_coefficient(shape: TrainShape, st: Structure) -> float:
    if st.gated:
        return st.mlp
    return COMPOSITE_ACT_BYTES.get(shape.hidden_act, 4.0)


def _mlp_terms(shape: TrainShape, st: Structure, moe: bool) -> float:
    if moe:
        return (st.expert * shape.top_k * shape.moe_intermediate + (4 * shape.hidden + 38) * shape.top_k
                + 4 * shape.experts + 8 * shape.shared_intermediate)
    return _mlp_coefficient(shape, st) * shape.intermediate


def _mla_terms(shape: TrainShape) -> float:
    # measured on DeepSeek-V3 (128 heads, nope 128 + rope 64 + v 128): 1540 B per head per token,
    # 8 per q_lora_rank and kv_lora_rank unit (their RMSNorm upcast, weighted output and output)
    # without q compression (DeepSeek-V2-Lite: q_lora_rank null) measured +6h instead of the q_lora terms
    q_path = 8 * shape.q_lora_rank if shape.q_lora_rank else 6 * shape.hidden
    return 1540.0 * shape.heads * shape.mla_head_dims / 320 + 8 * shape.kv_lora_rank + q_path


def _structural(shape: TrainShape, st: Structure, attn: str, moe: bool, batch: int = 1) -> float:
    cq, ckv, ca, c0 = st.eager if attn == "eager" else st.sdpa
    if attn == "eager" and ckv == 0 and shape.kv_heads == 1 and batch == 1 and shape.heads > 1:
        # repeat_kv of a single KV head with batch 1 is a view (expand + reshape of size-1 dims): the
        # unexpanded K and V are what is saved (measured: Gemma MQA, batch 1 vs 2)
        cq, ckv = cq - 4, ckv + 4
    if shape.kv_lora_rank:
        att = _mla_terms(shape)
    else:
        att = cq * shape.q_dim + ckv * shape.kv_dim + ca * shape.heads
    return att + c0 + _mlp_terms(shape, st, moe)


def _fit(entry: dict, attn: str) -> tuple[float, float]:
    """(linear, attention) of a calibration entry. For SDPA the attention term is 0 by construction (no s×s
    tensor); a non-zero fitted value means the longer calibration length reached a sliding window (mask
    path), so the shorter length's coefficient is the unmasked one."""
    fit = entry["fit"]
    if attn == "eager":
        return float(fit["linear"]), float(fit["attention"])
    per_seq = entry.get("activation_bytes_per_token_per_hidden_per_layer") or {}
    if abs(fit.get("attention", 0.0)) > 0.05 and per_seq:
        first = min(per_seq, key=int)
        return float(per_seq[first]), 0.0
    return float(fit["linear"]), 0.0


def _ref_shape(entry: dict) -> TrainShape:
    s = entry["shape"]
    experts_per_token = s.get("experts_per_token") or 0
    return TrainShape(model_type=entry["model_type"], layers=s["layers_in_model"], hidden=s["hidden"],
                      heads=s["heads"], kv_heads=s["kv_heads"], head_dim=s["head_dim"],
                      intermediate=s["intermediate"], vocab=s["vocab"], tied=False,
                      experts=1 if experts_per_token else 0, top_k=experts_per_token,
                      moe_intermediate=s.get("moe_intermediate") or 0,
                      hidden_act=DEFAULT_ACT.get(entry["model_type"], "silu"))


# Reference-model fields calibration.json does not record (experts, shared experts, MLA dims): from the
# reference configs (benchmarks/calibrate.py's ARCHITECTURES).
_REF_EXTRA: dict[str, dict] = {
    "mixtral": {"experts": 8},
    "qwen2_moe": {"experts": 60, "shared_intermediate": 5632},
    "qwen3_moe": {"experts": 128},
    "deepseek_v3": {"experts": 256, "shared_intermediate": 2048, "q_lora_rank": 1536, "kv_lora_rank": 512,
                    "mla_head_dims": 320},
    "gpt_oss": {"experts": 32},
}


def _reference(family: str, attn: str) -> tuple[dict, TrainShape]:
    entry = calibration_entry(family, attn)
    if entry is None:  # e.g. Gemma 2 / gpt-oss have no SDPA entry: eager's linear part, no s² term
        entry = calibration_entry(family, "eager" if attn != "eager" else "sdpa")
    ref = _ref_shape(entry)
    extra = _REF_EXTRA.get(family, {})
    if extra:
        ref = replace(ref, **{k: v for k, v in extra.items() if k != "experts"},
                      experts=extra.get("experts", ref.experts))
    return entry, ref


@dataclass(frozen=True)
class LayerCoefficients:
    """Bytes per token of one layer at 16 bit: ``linear`` + ``attention``·a·s (eager's s² term)."""

    moe_layer: float  # a MoE layer (or the only kind for a dense model)
    dense_layer: float  # a dense-MLP layer of a MoE model
    attention: float  # per head per token per position (eager), else 0
    gc_per_h: float  # gradient checkpointing: bytes per token per hidden unit kept per layer
    logits_per_vocab: float  # saved per token per vocabulary entry (16-bit run)
    non_layer_per_h: float  # saved per token per hidden unit outside the layers
    fwd_transient_per_vocab: float
    fwd_transient_per_h: float
    source: str
    note: str


def layer_coefficients(config: dict, attn: str = "sdpa", batch: int = 1) -> LayerCoefficients:
    """The per-token coefficients for ``config`` (16-bit activations): calibrated and moved to this shape,
    or Korthikanti's."""
    if attn not in ATTNS:
        raise TrainActivationError(f"unknown attention {attn!r} (use sdpa, eager or flash)")
    shape = train_shape(config)
    family, how = _family(config, shape)
    if family is None:
        h = shape.hidden
        return LayerCoefficients(moe_layer=34.0 * h, dense_layer=34.0 * h, attention=5.0 if attn == "eager" else 0.0,
                                 gc_per_h=2.0, logits_per_vocab=4.0, non_layer_per_h=2.0,
                                 fwd_transient_per_vocab=6.0, fwd_transient_per_h=0.0,
                                 source=KORTHIKANTI, note=how)
    entry, ref = _reference(family, attn)
    used_attn = entry["attn"]
    st = STRUCTURES[family]
    moe = bool(shape.experts)
    ref_moe = bool(ref.experts)
    kind = used_attn  # the structure the calibrated entry was measured with ("sdpa" or "eager")
    linear, attention = _fit(entry, kind)
    if attn != "eager":
        attention = 0.0
    c_h = (linear * ref.hidden - _structural(ref, st, kind, ref_moe)) / ref.hidden
    if kind == "eager" and st.eager_position_h:
        # calibrated at batch 1: a batch-independent per-position term is inside ``linear``
        c_h -= st.eager_position_h * (1.0 - 1.0 / batch)
    per_moe = c_h * shape.hidden + _structural(shape, st, kind, moe, batch)
    # dense layers of a MoE model: DeepSeek's calibrated first_dense_layers; others: the same anchor
    dense_fit = (entry.get("first_dense_layers") or {}).get("fit")
    if dense_fit and family == "deepseek_v3":
        ref_d = replace(ref, experts=0, top_k=0)
        c_hd = (float(dense_fit["linear"]) * ref.hidden - _structural(ref_d, st, kind, False)) / ref.hidden
        per_dense = c_hd * shape.hidden + _structural(shape, st, kind, False, batch)
    else:
        per_dense = c_h * shape.hidden + _structural(shape, st, kind, False, batch)
    gc = (entry.get("grad_ckpt") or {}).get("activation_bytes_per_token_per_hidden_per_layer")
    if gc is None:
        other = calibration_entry(family, "sdpa" if used_attn == "eager" else "eager") or {}
        gc = (other.get("grad_ckpt") or {}).get("activation_bytes_per_token_per_hidden_per_layer", 2.0)
    nl = entry["non_layer"]
    src_attn = used_attn if attn != "flash" else "sdpa"
    source = f"calibration.json: {family}/{src_attn}"
    note = how if how == "calibrated" else f"{how} ({family}, structure moved to this shape)"
    if used_attn != ("sdpa" if attn == "flash" else attn):
        note += f"; no {attn} entry, {used_attn}'s linear part used"
    return LayerCoefficients(moe_layer=per_moe, dense_layer=per_dense, attention=attention, gc_per_h=float(gc),
                             logits_per_vocab=float(nl["bytes_per_token_per_vocab"]),
                             non_layer_per_h=float(nl["bytes_per_token_per_hidden"]),
                             fwd_transient_per_vocab=float(nl["forward_transient_bytes_per_token_per_vocab"]),
                             fwd_transient_per_h=float(nl["forward_transient_bytes_per_token_per_hidden"]),
                             source=source, note=note)


# -- parallelism (Korthikanti et al. 2022) ----------------------------------------------------------------
def tensor_parallel_layer_factor(tp: int = 1, sp: bool = False) -> float:
    """Share of one layer's (linear) activations a tensor-parallel rank holds: Table 2, Eq. 2
    sbh(10 + 24/t)/34 without sequence parallel (the LayerNorm/dropout/residual 10 sbh are replicated),
    Eq. 4 1/t with it."""
    tp = int(tp)
    if tp < 1:
        raise TrainActivationError("tp must be at least 1")
    return 1.0 / tp if sp else (10.0 + 24.0 / tp) / 34.0


def pipeline_in_flight_factor(pp: int = 1, microbatches: int | None = None, interleave: int = 1) -> float:
    """How many micro-batches' worth of its L/p layers the first pipeline stage holds, divided by p — i.e.
    the first stage holds ``factor × L`` layers of one micro-batch. 1F1B (Eq. 5): p micro-batches in flight,
    so L layers' worth whatever p (factor 1), fewer when there are fewer micro-batches than stages;
    interleaved with m model chunks per device: × (1 + (p − 1)/(p·m))."""
    pp, interleave = int(pp), int(interleave)
    if pp < 1 or interleave < 1:
        raise TrainActivationError("pp and interleave must be at least 1")
    in_flight = pp if microbatches is None else max(1, min(pp, int(microbatches)))
    factor = in_flight / pp
    if interleave > 1 and pp > 1:
        factor *= 1.0 + (pp - 1) / (pp * interleave)
    return factor


def parallel_activation_factor(tp: int = 1, sp: bool = False, pp: int = 1, microbatches: int | None = None,
                               interleave: int = 1, attention_share: float = 0.0) -> float:
    """Per-GPU share of the full model's layer activations (first pipeline stage), relative to one GPU
    holding all L layers of one micro-batch: tensor/sequence split × pipeline in-flight factor.
    ``attention_share``: the fraction of the layer bytes that is the s² attention term, always split by t."""
    t = tensor_parallel_layer_factor(tp, sp)
    layer = (1.0 - attention_share) * t + attention_share / int(tp)
    return layer * pipeline_in_flight_factor(pp, microbatches, interleave)


# -- results -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainActivations:
    """Activation memory of one training micro-batch, in bytes (per GPU under tp/sp/pp).

    ``saved_bytes``: alive at the end of the forward, what the backward needs (layers + non-layer terms).
    ``by_part``: layers_bytes, logits_bytes (the loss's log-probabilities kept for its backward),
    embeddings_bytes (embedding output, final norm, rotary tables, ids), and when they apply
    autocast_weight_copies_bytes (AMP), lora_adapter_bytes (already inside layers_bytes).
    ``forward_transient_bytes``: the forward's peak above ``saved_bytes`` (the loss: bf16 logits + fp32 copy).
    ``backward_transient_bytes``: the backward's largest transient above the saved set as it shrinks
    (the larger of the loss backward's fp32 logit gradients and one layer's backward — with gradient
    checkpointing including that layer's recomputed activations); weight gradients not included.
    """

    saved_bytes: int
    by_part: dict[str, int]
    forward_transient_bytes: int
    backward_transient_bytes: int
    per_layer_bytes: int  # one layer's saved bytes (checkpointed: its input only)
    full_layer_bytes: int  # one layer's full activations (what a recompute rebuilds)
    loss_backward_transient_bytes: int
    layer_backward_transient_bytes: int  # one layer's backward transient (w/o the recompute)
    layer_forward_transient_bytes: int  # one layer's forward transient beyond what it saves
    final_norm_bytes: int  # the final norm's saved tensors (part of embeddings_bytes)
    coefficients_source: str
    assumptions: tuple[str, ...]
    settings: dict = field(default_factory=dict)

    @property
    def forward_peak_bytes(self) -> int:
        return self.saved_bytes + self.forward_transient_bytes

    def to_dict(self) -> dict:
        return {"saved_bytes": self.saved_bytes, "by_part": dict(self.by_part),
                "forward_transient_bytes": self.forward_transient_bytes,
                "backward_transient_bytes": self.backward_transient_bytes,
                "per_layer_bytes": self.per_layer_bytes, "full_layer_bytes": self.full_layer_bytes,
                "loss_backward_transient_bytes": self.loss_backward_transient_bytes,
                "layer_backward_transient_bytes": self.layer_backward_transient_bytes,
                "layer_forward_transient_bytes": self.layer_forward_transient_bytes,
                "final_norm_bytes": self.final_norm_bytes,
                "coefficients_source": self.coefficients_source, "assumptions": list(self.assumptions),
                "settings": dict(self.settings)}


def _linear_params(shape: TrainShape, st: Structure) -> tuple[int, int]:
    """(Linear weight elements of one MoE-or-only layer, of one dense layer), for AMP's weight copies."""
    h, q, kv = shape.hidden, shape.q_dim, shape.kv_dim
    if shape.kv_lora_rank:  # q_a/q_b (or q_proj), kv_a (latent + rope key), kv_b (nope keys + values), o_proj
        qk = shape.mla_head_dims - shape.mla_v_dim
        nope = qk - shape.mla_rope_dim
        att = (h * shape.q_lora_rank + (shape.q_lora_rank or h) * shape.heads * qk
               + h * (shape.kv_lora_rank + shape.mla_rope_dim)
               + shape.kv_lora_rank * shape.heads * (nope + shape.mla_v_dim) + shape.heads * shape.mla_v_dim * h)
    else:
        att = h * q + 2 * h * kv + q * h
    n_mats = 3 if st.gated else 2
    dense = att + n_mats * h * shape.intermediate
    if not shape.experts:
        return dense, dense
    moe = att + n_mats * h * shape.moe_intermediate * shape.experts + n_mats * h * shape.shared_intermediate \
        + h * shape.experts
    return moe, dense


def _lora_settings(lora) -> dict | None:
    if lora is None or lora is False:
        return None
    if lora is True:
        return {"r": 16, "targets": "all-linear", "dropout": 0.0, "dora": False}
    if isinstance(lora, dict):
        return {"r": int(lora.get("r", 16)), "targets": lora.get("targets", "all-linear"),
                "dropout": float(lora.get("dropout", 0.0)), "dora": bool(lora.get("dora", False))}
    raise TrainActivationError("lora must be False, True or a dict {r, targets, dropout, dora}")


def _lora_dims(shape: TrainShape, moe: bool) -> dict:
    h = shape.hidden
    inter = shape.top_k * shape.moe_intermediate + shape.shared_intermediate if moe else shape.intermediate
    return {"h": h, "q": shape.q_dim, "kv": shape.kv_dim, "I": inter, "qkv": shape.q_dim + 2 * shape.kv_dim}


def _dora_weight_copy_bytes(shape: TrainShape, st: Structure, lora: dict, moe: bool) -> float:
    """DoRA with lora_dropout > 0: per layer, the fp32 copies of the adapted Linears' weights that PEFT's
    F.linear(dropout(x), W.to(fp32)) keeps for the backward (not per token)."""
    if not lora.get("dora") or lora["dropout"] <= 0:
        return 0.0
    dims = _lora_dims(shape, moe)
    return float(sum(4 * dims[d_in] * dims[d_out] for _, d_in, d_out in _lora_layer_delta(shape, st, lora, moe)[2]))


def _lora_layer_delta(shape: TrainShape, st: Structure, lora: dict, moe: bool) -> tuple[float, list[str], list]:
    """Change of one layer's saved bytes per token under LoRA (16-bit base, fp32 adapters); the notes; the
    adapted Linears (name, d_in kind, d_out kind)."""
    h = shape.hidden
    dims = _lora_dims(shape, moe)
    inter = dims["I"]
    frozen = (8 * h if st.norm == "rms" else 4 * h) + 2 * inter
    targets = lora["targets"]
    names = [n for n, _, _ in st.linears]
    if targets == "all-linear":
        chosen = list(st.linears)
    else:
        wanted = [targets] if isinstance(targets, str) else list(targets)
        chosen = [lin for lin in st.linears if any(lin[0] == w or lin[0].endswith("." + w) or w == lin[0].split(".")[-1]
                                                   for w in wanted)]
    notes = []
    if moe and targets == "all-linear":
        notes.append("LoRA all-linear on a MoE model: experts are fused parameters in transformers 5, not "
                     "nn.Linear, so only attention (and shared/dense) Linears get adapters")
        chosen = [lin for lin in chosen if lin[1] != "I" and lin[2] != "I"]
    per_target = sum(4 * dims[d_in] + 4 * lora["r"] + (dims[d_in] if lora["dropout"] > 0 else 0)
                     for _, d_in, _ in chosen)
    if lora.get("dora"):  # the base output (16-bit, or fp32 recomputed under dropout) + the fp32 LoRA output
        per_target += sum((8 if lora["dropout"] > 0 else 6) * dims[d_out] for _, _, d_out in chosen)
    unknown = [] if targets == "all-linear" else [w for w in ([targets] if isinstance(targets, str) else targets)
                                                  if not any(w == n.split(".")[-1] or w == n for n in names)]
    if unknown:
        notes.append(f"LoRA targets {unknown} not among {shape.model_type}'s Linear names {names}: not counted")
    return per_target - frozen, notes, chosen


def _check(**values) -> None:
    for k, v in values.items():
        if int(v) < 1:
            raise TrainActivationError(f"{k} must be at least 1")


def activation_bytes(config: dict, *, batch: int, seq: int, attn: str = "sdpa", dtype_bytes: int = 2,
                     grad_ckpt: bool = False, tp: int = 1, sp: bool = False, pp: int = 1,
                     microbatches: int | None = None, interleave: int = 1, lora=False,
                     amp: str | None = None) -> TrainActivations:
    """Activations of one training micro-batch [batch, seq] (see the module docstring for the forms).

    ``dtype_bytes``: 2 (bf16/fp16) or 4 (fp32) — the weights' and activations' dtype; with ``amp`` ("bf16" or
    "fp16": fp32 weights under torch.autocast) the activations are 16-bit whatever ``dtype_bytes`` says.
    ``lora``: False, True (r 16, all-linear, no dropout) or {"r", "targets", "dropout"}.
    ``tp``/``sp``/``pp``/``microbatches``/``interleave``: Megatron-style parallelism (per-GPU bytes of the
    first pipeline stage; with pp > 1 the logits live on the last stage, reported as by_part
    ``last_stage_bytes``)."""
    _check(batch=batch, seq=seq, tp=tp, pp=pp, interleave=interleave)
    if dtype_bytes not in (2, 4):
        raise TrainActivationError("dtype_bytes must be 2 (bf16/fp16) or 4 (fp32)")
    if amp not in (None, "bf16", "fp16"):
        raise TrainActivationError(f"unknown amp {amp!r} (bf16, fp16 or None)")
    if amp:
        dtype_bytes = 2
    if attn == "flash" and dtype_bytes == 4:
        raise TrainActivationError("flash attention runs in fp16/bf16 only")
    shape = train_shape(config)
    coef = layer_coefficients(config, attn, batch)
    family, _ = _family(config, shape)
    st = STRUCTURES.get(family or "", _LLAMA)
    lora_cfg = _lora_settings(lora)
    b, s, h, V, L = int(batch), int(seq), shape.hidden, shape.vocab, shape.layers
    tokens = b * s
    assumptions: list[str] = [f"coefficients: {coef.source} ({coef.note})"]

    # one layer per token at 16 bit: calibrated linear part + eager's s² term
    att_tok = coef.attention * shape.heads * s  # eager: per token
    moe_tok = coef.moe_layer + att_tok
    dense_tok = coef.dense_layer + att_tok
    # SDPA with a sliding window reached: transformers passes a mask -> memory-efficient attention with a
    # 16-bit bias per layer (2·s per token) and, for repeat_kv families, K/V expanded to all heads
    masked_layers = 0
    if attn == "sdpa" and shape.window and s >= shape.window and shape.sliding_layers:
        masked_layers = shape.sliding_layers
        extra = 2.0 * s + (4.0 * (shape.q_dim - shape.kv_dim) if st.expands_kv_with_mask and not shape.kv_lora_rank else 0.0)
        assumptions.append(f"SDPA on {masked_layers} sliding-window layers with s ≥ window ({shape.window}): "
                           "masked memory-efficient attention (16-bit bias per layer, expanded K/V)")
    else:
        extra = 0.0
    # fp32 SDPA with grouped KV heads and no mask: no flash kernel for fp32 and the memory-efficient one has
    # no GQA, so CUDA takes the math path: repeated K/V and the fp32 s×s probabilities are kept (measured
    # on Llama-3.2-1B: 8·(q − kv) + 4·a·s per token per layer)
    math_path = (attn == "sdpa" and dtype_bytes == 4 and not amp and shape.kv_heads < shape.heads
                 and not shape.kv_lora_rank and not masked_layers)
    if math_path:
        assumptions.append("fp32 SDPA with GQA: math path (s×s fp32 probabilities and repeated K/V kept)")
    n_moe = shape.moe_layers if shape.experts else L
    n_dense = L - n_moe
    if lora_cfg:
        d_moe, notes_m, _ = _lora_layer_delta(shape, st, lora_cfg, bool(shape.experts))
        d_dense, _, _ = _lora_layer_delta(shape, st, lora_cfg, False)
        moe_tok += d_moe
        dense_tok += d_dense
        assumptions += notes_m
        assumptions.append(f"LoRA r={lora_cfg['r']} targets={lora_cfg['targets']} dropout={lora_cfg['dropout']}: "
                           "frozen base drops the tensors kept only for weight gradients; each adapted Linear "
                           "keeps an fp32 copy of its input + its fp32 rank-r activation (+ 1-byte dropout mask)")
        if lora_cfg["dora"]:
            assumptions.append("DoRA: each adapted Linear also keeps the base output (16-bit; fp32 recomputed "
                               "under dropout) and the fp32 LoRA output for the magnitude's gradient"
                               + ("; with dropout, an fp32 copy of its weight" if lora_cfg["dropout"] > 0 else "")
                               + "; the weight-norm temporaries are freed within the layer's forward")
    # precision
    if dtype_bytes == 4:
        fp32_delta = st.fp32_h * h + st.fp32_qk * (shape.q_dim + shape.kv_dim)
        scale_tok = lambda x: 2.0 * x + fp32_delta  # noqa: E731
        if att_tok:  # the s×s part: fp32 probabilities kept once (Llama: 6 → 4) / 16-bit ones doubled (5 → 9)
            att_fp32 = (coef.attention - 2.0) if st.softmax_fp32 else (2.0 * coef.attention - 1.0)
            fp32_delta += (att_fp32 - 2.0 * coef.attention) * shape.heads * s
        assumptions.append("fp32 training: 2× the 16-bit layer, less the 16-bit run's own fp32 upcasts "
                           f"({fp32_delta / h:+.1f}·h per layer)")
    elif amp:
        amp_delta = st.amp_h * h
        if att_tok:
            amp_delta += st.amp_attention * shape.heads * s
        scale_tok = lambda x: x + amp_delta  # noqa: E731
        assumptions.append(f"AMP {amp}: activations in {amp}; the residual stream and norms stay fp32 "
                           f"(+{st.amp_h:g}·h per layer)")
    else:
        scale_tok = lambda x: x  # noqa: E731
    moe_tok_p = scale_tok(moe_tok)
    dense_tok_p = scale_tok(dense_tok)
    if math_path:
        extra_math = 8.0 * (shape.q_dim - shape.kv_dim) + 4.0 * shape.heads * s
        moe_tok_p += extra_math
        dense_tok_p += extra_math
    full_layer_tok = max(moe_tok_p, dense_tok_p)

    # parallel shares
    att_share_moe = (att_tok / moe_tok) if moe_tok else 0.0
    t_layer = tensor_parallel_layer_factor(tp, sp)
    layer_share = (1 - att_share_moe) * t_layer + att_share_moe / tp
    pp_factor = pipeline_in_flight_factor(pp, microbatches, interleave)
    layers_here = L / pp  # layers on one stage
    stage_mult = pp_factor * pp  # micro-batches' worth held by the first stage
    if tp > 1 or pp > 1:
        assumptions.append(f"parallel: tp={tp} sp={sp} pp={pp} (Korthikanti Table 2 / Eq. 5): layer share "
                           f"{layer_share:.3f}, first stage holds {stage_mult:.2f} micro-batches of L/p layers")

    # layers
    masked_bytes_tok = scale_tok(extra) - scale_tok(0.0) if extra else 0.0
    if grad_ckpt:  # the checkpoint is the residual stream: fp32 under AMP
        per_layer_tok = coef.gc_per_h * h * (2 if amp else dtype_bytes / 2)
        layer_tokens = per_layer_tok * L
        assumptions.append(f"gradient checkpointing (non-reentrant, per layer): {coef.gc_per_h:g}·b·s·h per "
                           "layer (the layer input) kept; the backward recomputes one layer at a time")
    else:
        per_layer_tok = (n_moe * moe_tok_p + n_dense * dense_tok_p) / L
        layer_tokens = n_moe * moe_tok_p + n_dense * dense_tok_p + masked_layers * masked_bytes_tok
    layers_bytes = layer_tokens * tokens * layer_share * (layers_here / L) * stage_mult
    per_layer_bytes = per_layer_tok * tokens * layer_share
    full_layer_bytes = (full_layer_tok + (masked_bytes_tok if masked_layers else 0.0)) * tokens * layer_share

    # AMP weight copies: kept by autograd until the backward (not under checkpointing)
    amp_copies = 0
    layer_fwd_extra = 0.0
    if amp:
        lin_moe, lin_dense = _linear_params(shape, st)
        per_layer_copies = (n_moe * lin_moe + n_dense * lin_dense) / L * 2 / tp
        head_copy = V * h * 2 / tp
        if grad_ckpt:
            amp_copies = head_copy
            full_layer_bytes += per_layer_copies
            layer_fwd_extra = per_layer_copies
            assumptions.append("AMP + checkpointing: the layers' 16-bit weight copies are dropped with the layer's "
                               "activations and rebuilt during its recompute; the lm_head copy stays")
        else:
            amp_copies = per_layer_copies * L / pp + head_copy
            assumptions.append("AMP: autocast's 16-bit copies of every Linear weight (incl. lm_head) are kept "
                               "for the backward")
        if pp > 1:
            amp_copies -= head_copy  # lm_head on the last stage
    if lora_cfg and lora_cfg["dora"] and lora_cfg["dropout"] > 0:  # DoRA's fp32 weight copies (as AMP's)
        dora_copies = (n_moe * _dora_weight_copy_bytes(shape, st, lora_cfg, bool(shape.experts))
                       + n_dense * _dora_weight_copy_bytes(shape, st, lora_cfg, False)) / L / tp
        if grad_ckpt:
            full_layer_bytes += dora_copies
            layer_fwd_extra += dora_copies
        else:
            amp_copies += dora_copies * L / pp

    # non-layer terms: logits (the loss's log-probs) and the hidden-size part
    if coef.logits_per_vocab <= 2.0 and not amp:  # loss on 16-bit logits (BERT): log-probs in that dtype
        # (under autocast, log_softmax is an fp32 op: the upcast branch below)
        logits_per_v, loss_bw_per_v = 2.0 * dtype_bytes / 2, 2.0 * dtype_bytes
        fwd_per_v = dtype_bytes
    else:  # fp32 upcast: log-probs fp32 whatever the dtype; soft-capping keeps its tanh output (16/32 bit)
        logits_per_v = 4.0 + max(0.0, coef.logits_per_vocab - 4.0) * dtype_bytes / 2
        loss_bw_per_v = 8.0
        fwd_per_v = max(coef.fwd_transient_per_vocab, 6.0) if dtype_bytes == 2 else 4.0
    nl_h = coef.non_layer_per_h * (dtype_bytes / 2)
    # eager + checkpointing: the additive causal mask [b, 1, s, s] is an input of every checkpointed layer
    mask_bytes = dtype_bytes * b * s * s if (attn == "eager" and grad_ckpt) else 0
    if amp:
        nl_h += st.amp_nl_h  # fp32 embedding output (and LayerNorm'd heads)
    if lora_cfg:
        nl_h = max(nl_h - 8.0, 0.5)  # layer 0's first norm and the frozen embeddings keep less
    vocab_share = 1.0 / tp  # Megatron's vocab-parallel cross entropy
    logits_bytes = logits_per_v * tokens * V * vocab_share
    embeddings_bytes = nl_h * tokens * h * (1.0 / tp if sp else 1.0) + mask_bytes
    fwd_transient = (fwd_per_v * V * vocab_share + coef.fwd_transient_per_h * h) * tokens
    loss_bw = loss_bw_per_v * tokens * V * vocab_share
    last_stage = 0
    if pp > 1:
        last_stage = int(layer_tokens * tokens * layer_share / pp + logits_bytes + embeddings_bytes)
        assumptions.append("pp > 1: the first stage (reported) holds the embeddings but not the logits; "
                           "by_part last_stage_bytes is the last stage (L/p layers of one micro-batch + logits)")
        logits_in_first = 0.0
        fwd_transient_first = 0.0
        loss_bw_first = 0.0
        embeddings_bytes *= stage_mult
    else:
        logits_in_first, fwd_transient_first, loss_bw_first = logits_bytes, fwd_transient, loss_bw

    # one layer's backward transient: the MLP's input gradients (2 × intermediate + h, activation dtype)
    inter_eff = (shape.top_k * shape.moe_intermediate + shape.shared_intermediate) if shape.experts else shape.intermediate
    layer_bw = dtype_bytes * (2 * inter_eff + h) * tokens * layer_share
    # eager attention: a·s²·b elements per layer; its backward holds the probabilities' gradient and the
    # softmax's fp32 input gradient next to the saved scores (measured on Llama: ~(attention − 1.5) bytes each)
    s2 = shape.heads * s * tokens * (dtype_bytes / 2) / tp if attn == "eager" else 0.0
    if s2:
        layer_bw = max(layer_bw, (coef.attention - 1.5) * s2)
    layer_bw_total = layer_bw + (full_layer_bytes if grad_ckpt else 0.0)
    backward_transient = max(loss_bw_first, layer_bw_total)
    # one layer's forward transient beyond what it saves (measured on Llama: the MLP's temporaries; under
    # checkpointing nothing is saved, so most of the MLP's intermediates are alive at once); eager's s×s
    # scores while the softmax runs
    if grad_ckpt:
        layer_fwd = dtype_bytes * (3.5 * inter_eff + h) * tokens * layer_share
    else:
        layer_fwd = dtype_bytes * (2 * inter_eff + 1.5 * h) * tokens * layer_share
    if s2:  # the masked scores next to the saved probabilities; all of them at once when nothing is saved
        layer_fwd = max(layer_fwd, ((coef.attention + 4.0) if grad_ckpt else 2.0) * s2)
    layer_fwd += layer_fwd_extra
    # the final norm's saved tensors (freed before the layers' backward): ~6h (RMSNorm) / 4h (LayerNorm)
    final_norm = min(embeddings_bytes, (6 if st.norm == "rms" else 4) * h * tokens * dtype_bytes / 2)

    by_part = {"layers_bytes": int(layers_bytes), "logits_bytes": int(logits_in_first),
               "embeddings_bytes": int(embeddings_bytes)}
    if amp:
        by_part["autocast_weight_copies_bytes"] = int(amp_copies)
    if lora_cfg:
        by_part["lora_adapter_bytes"] = int(max(0.0, _lora_layer_delta(shape, st, lora_cfg, bool(shape.experts))[0]
                                                + (8 * h if st.norm == "rms" else 4 * h) + 2 * inter_eff)
                                            * tokens * L)
    if pp > 1:
        by_part["last_stage_bytes"] = last_stage
    saved = int(layers_bytes + logits_in_first + embeddings_bytes + amp_copies)
    if attn == "eager":
        assumptions.append(f"eager attention: s×s scores kept, {coef.attention:g}·a·s²·b bytes per layer")
    elif attn == "flash":
        assumptions.append("flash attention: no s×s tensor (as SDPA's flash op)")
    if shape.experts:
        assumptions.append(f"MoE: {shape.experts} experts, top-{shape.top_k}: the expert MLP on k routed rows "
                           "per token (grouped_mm, static shapes), router logits per expert"
                           + (f"; {n_dense} dense-MLP layers" if n_dense else ""))
    settings = {"model_type": shape.model_type, "family": family or "korthikanti", "batch": b, "seq": s,
                "attn": attn, "dtype_bytes": dtype_bytes, "amp": amp, "grad_ckpt": bool(grad_ckpt),
                "lora": lora_cfg, "tp": tp, "sp": bool(sp), "pp": pp, "microbatches": microbatches,
                "interleave": interleave, "layers": L, "hidden": h, "vocab": V, "tied": shape.tied,
                "layers_on_stage": layers_here,
                "mlp_out_params": h * (shape.moe_intermediate * shape.experts if shape.experts else shape.intermediate)}
    return TrainActivations(saved_bytes=saved, by_part=by_part, forward_transient_bytes=int(fwd_transient_first),
                            backward_transient_bytes=int(backward_transient), per_layer_bytes=int(per_layer_bytes),
                            full_layer_bytes=int(full_layer_bytes), loss_backward_transient_bytes=int(loss_bw_first),
                            layer_backward_transient_bytes=int(layer_bw),
                            layer_forward_transient_bytes=int(layer_fwd), final_norm_bytes=int(final_norm),
                            coefficients_source=coef.source,
                            assumptions=tuple(assumptions), settings=settings)


# -- the step's peak by phase -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PhasePeaks:
    """Peak allocated bytes of one training step's phases (steady state: optimizer states exist)."""

    forward_bytes: int
    backward_bytes: int
    optimizer_step_bytes: int
    peak_bytes: int
    peak_phase: str  # forward | backward | optimizer_step
    backward_moment: str  # which moment of the backward holds its peak
    backward_moments: dict[str, int]
    assumptions: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"forward_bytes": self.forward_bytes, "backward_bytes": self.backward_bytes,
                "optimizer_step_bytes": self.optimizer_step_bytes, "peak_bytes": self.peak_bytes,
                "peak_phase": self.peak_phase, "backward_moment": self.backward_moment,
                "backward_moments": dict(self.backward_moments), "assumptions": list(self.assumptions)}


def peak_by_phase(acts: TrainActivations, *, weights_bytes: int, grads_bytes: int, optimizer_state_bytes: int,
                  optimizer_temp_bytes: int = 0, buffers_bytes: int = 0, grad_accum: int = 1,
                  grad_bytes_per_element: int | None = None, embeddings_trainable: bool | None = None) -> PhasePeaks:
    """Forward, backward and optimizer-step peaks of a training step from the model states (per GPU, as
    the caller counts them) and ``acts`` (one micro-batch).

    * forward: weights + optimizer states (+ gradients from the second micro-batch on, with accumulation)
      + saved activations + the forward's transient at the loss.
    * backward, the largest of its moments (as the simulator's backward shows them):
      ``loss``: all saved activations + the loss backward's fp32 logit gradients (8·b·s·V);
      ``head``: the log-probs freed, the 16-bit logit gradient and the lm_head weight gradient appear;
      ``first_layer`` / ``last_layer``: saved activations shrink layer by layer while the layers' weight
      gradients accumulate (linear in between, so the ends suffice), plus one layer's backward transient
      (with checkpointing: its recomputed activations too);
      ``end``: every gradient allocated (+ for tied embeddings the pending lm_head gradient and the
      embedding gradient before they are summed: 2 × V·h).
    * optimizer_step: weights + gradients + states + the step's temporaries (AdamW foreach: one per
      parameter), no activations.
    With ``grad_accum`` > 1 the gradients stay allocated between micro-batches: every moment of the forward
    and backward includes all of them (the micro-batch size drives the activations).
    """
    _check(grad_accum=grad_accum)
    st = acts.settings
    L = int(st.get("layers_on_stage") or st.get("layers") or 1)
    V, h, tied = int(st.get("vocab", 0)), int(st.get("hidden", 0)), bool(st.get("tied", False))
    tp = int(st.get("tp", 1))
    lora = st.get("lora")
    if embeddings_trainable is None:
        embeddings_trainable = not lora
    gbpe = grad_bytes_per_element or (4 if (st.get("amp") or st.get("dtype_bytes") == 4) else 2)
    base = int(weights_bytes) + int(optimizer_state_bytes) + int(buffers_bytes)
    G = int(grads_bytes)
    emb_grad = V * h * gbpe // tp if embeddings_trainable else 0
    head_grad = emb_grad  # untied: the lm_head's own gradient; tied: pending until summed at the end
    layer_grads = max(0, G - emb_grad - (0 if tied else head_grad)) if embeddings_trainable else G
    g = layer_grads / max(L, 1)
    ga = int(grad_accum) > 1
    held = G if ga else 0  # gradients already allocated when the micro-batch starts
    saved, logits = acts.saved_bytes, acts.by_part.get("logits_bytes", 0)
    per_layer = acts.per_layer_bytes
    grad_ckpt = bool(st.get("grad_ckpt"))
    # what is left outside the layers when the first layer's backward runs: the embedding output (with
    # checkpointing it is layer 0's checkpoint, already in per_layer), rotary tables, ids
    non_layer_rest = acts.by_part.get("embeddings_bytes", 0) - acts.final_norm_bytes
    if grad_ckpt:
        non_layer_rest -= per_layer
    non_layer_rest = max(0, non_layer_rest)
    recompute = acts.full_layer_bytes if grad_ckpt else 0
    t_layer = acts.layer_backward_transient_bytes + recompute
    # the first weight gradient inside a layer's backward (the MLP's output projection; all experts at once)
    g_first = min(g, float(st.get("mlp_out_params", 0)) * gbpe / tp) if not lora else 0.0
    tokens = int(st.get("batch", 1)) * int(st.get("seq", 1))
    logits_grad = tokens * V * int(st.get("dtype_bytes", 2)) // tp  # the 16-bit (fp32) logit gradient
    # with accumulation the new head gradient is a temporary until added into the held one
    head_moment = saved - logits + logits_grad + head_grad

    def grads_now(done_layers: float, head: bool = True) -> float:
        if ga:
            return held
        return (head_grad if head else 0) + done_layers * g

    moments = {
        "loss": saved + acts.loss_backward_transient_bytes + held,
        "head": head_moment + held,
        "first_layer": saved - logits + grads_now(0) + g_first + t_layer,
        "last_layer": non_layer_rest + per_layer + grads_now(L - 1) + g_first + t_layer,
        "end": (G if not ga else held) + (2 * emb_grad if tied and embeddings_trainable else 0),
    }
    moments = {k: int(base + v) for k, v in moments.items()}
    moment = max(moments, key=moments.get)
    backward = moments[moment]
    fwd_moments = {"loss": saved + acts.forward_transient_bytes,
                   "layers": saved - logits - acts.final_norm_bytes + acts.layer_forward_transient_bytes}
    forward = base + held + max(fwd_moments.values())
    step = int(weights_bytes) + int(buffers_bytes) + G + int(optimizer_state_bytes) + int(optimizer_temp_bytes)
    phases = {"forward": forward, "backward": backward, "optimizer_step": step}
    peak_phase = max(phases, key=phases.get)
    notes = ["steady state (step ≥ 2): optimizer states allocated; zero_grad(set_to_none=True) before the forward"]
    if ga:
        notes.append(f"gradient accumulation over {grad_accum} micro-batches: gradients allocated during every "
                     "forward/backward after the first micro-batch")
    return PhasePeaks(forward_bytes=int(forward), backward_bytes=int(backward), optimizer_step_bytes=int(step),
                      peak_bytes=int(phases[peak_phase]), peak_phase=peak_phase, backward_moment=moment,
                      backward_moments=moments, assumptions=tuple(notes))
