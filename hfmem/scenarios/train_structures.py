"""Per-family layer structures of training activations, and which calibrated family a model uses.

A calibrated coefficient (``hfmem.scenarios.activation_calibration``) is exact for its reference shape only:
``c`` depends on the MLP width, the number of KV heads, MoE routing, ... So it is *anchored* at the reference
and moved to another shape with a structural form whose derivatives were measured by simulation (varying one
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

Which family (``family_for``): a ``model_type`` calibrated in calibration.json uses its own entry; one listed
in ``NEAREST_FAMILY`` (a curated list: the calibrated family whose transformers code it shares) uses that
family's entry moved to its shape; any other model has no calibration and the caller falls back to the
published generic form (Korthikanti et al. 2022's 34·s·b·h per layer, + 5·a·s²·b with eager attention) --
nothing is guessed from the config's field names. Nearest-family approximations are looser than calibrated
families: Cohere −0.6%, Starcoder (gpt_bigcode via gpt2) +4.6%, StableLM (via llama) +5.8%, GPT-J (via
gpt_neox) +7.5% on the activations against ``simulate_train``; DeepSeek-V2-Lite via the V3 family 0.0%.
"""

from __future__ import annotations

from dataclasses import dataclass

from .activation_calibration import load_calibration
from .activation_shape import TrainShape

# Non-gated MLPs: bytes per intermediate unit by activation. A fused activation kernel saves its input only
# (fc1 output 2 + activation output 2, kept by fc2); GPT-2's "gelu_new" is Python arithmetic
# (0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))), whose intermediates autograd keeps: 10 (measured).
COMPOSITE_ACT_BYTES = {"gelu_new": 10.0, "gelu_fast": 10.0}


# -- structural forms (bytes per token per layer, 16-bit activations), measured by simulation ----------
@dataclass(frozen=True)
class Structure:
    """Derivatives of a layer's saved bytes per token with respect to the shape (see the module docstring).
    ``sdpa`` / ``eager``: (c_q, c_kv, c_a, c_0); ``mlp``: bytes per intermediate unit (dense MLP);
    ``expert``: bytes per routed row per expert-intermediate unit; ``norm``: "rms" or "ln";
    ``fp32_h``/``amp_h``: the per-layer change (×h) of fp32 training beyond 2× / of autocast;
    ``linears``: (name, input-dim kind, output-dim kind) of the layer's Linear modules, for LoRA: each name the
    module's path inside the decoder layer in transformers (``self_attn.q_proj``, GPT-2's ``attn.c_proj`` vs
    ``mlp.c_proj``), which PEFT's target rule (``peft.target_matches``) is applied to."""

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
        ("self_attn.q_proj", "h", "q"), ("self_attn.k_proj", "h", "kv"), ("self_attn.v_proj", "h", "kv"),
        ("self_attn.o_proj", "q", "h"), ("mlp.gate_proj", "h", "I"), ("mlp.up_proj", "h", "I"),
        ("mlp.down_proj", "I", "h"))


_LLAMA = Structure(sdpa=(4, 4, 4, 12), eager=(8, 0, 0, 8), fp32_h=-8.0)
_QWEN3 = Structure(sdpa=(10, 10, 9, 12), eager=(14, 6, 5, 8), fp32_h=-8.0, fp32_qk=-4.0)
_GEMMA = Structure(sdpa=(4, 4, 4, 12), eager=(8, 0, 0, 8), expands_kv_with_mask=False, fp32_h=-8.0)
_GEMMA2 = Structure(sdpa=(8, 0, 0, 16), eager=(8, 0, 0, 16), expands_kv_with_mask=False, fp32_h=-16.0)
_GEMMA3 = Structure(sdpa=(12, 12, 5, 28), eager=(12, 12, 0, 8), expands_kv_with_mask=False, fp32_h=-16.0,
                    fp32_qk=-4.0)
_NEOX = Structure(sdpa=(4, 4, 4, 12), eager=(8, 0, 0, 8), mlp=4, norm="ln", amp_h=4.0, gated=False, fp32_h=-2.0,
                  linears=(("attention.query_key_value", "h", "qkv"), ("attention.dense", "q", "h"),
                           ("mlp.dense_h_to_4h", "h", "I"), ("mlp.dense_4h_to_h", "I", "h")))
_GPT2 = Structure(sdpa=(4, 4, 4, 12), eager=(4, 4, 0, 8), mlp=10, norm="ln", fp32_h=-2.0, amp_h=4.0,
                  gated=False, eager_position_h=8.0, softmax_fp32=False, amp_attention=2.0,
                  linears=(("attn.c_attn", "h", "qkv"), ("attn.c_proj", "q", "h"), ("mlp.c_fc", "h", "I"),
                           ("mlp.c_proj", "I", "h")))
_BERT = Structure(sdpa=(4, 4, 4, 12), eager=(4, 4, 0, 8), mlp=4, norm="ln", amp_h=8.0, gated=False,
                  fp32_h=-2.0, softmax_fp32=False, amp_nl_h=8.0,
                  linears=(("attention.self.query", "h", "q"), ("attention.self.key", "h", "kv"),
                           ("attention.self.value", "h", "kv"), ("attention.output.dense", "q", "h"),
                           ("intermediate.dense", "h", "I"), ("output.dense", "I", "h")))
_STARCODER2 = Structure(sdpa=(4, 4, 4, 12), eager=(8, 0, 0, 8), mlp=4, norm="ln", amp_h=4.0, gated=False,
                        fp32_h=-2.0,
                        linears=(("self_attn.q_proj", "h", "q"), ("self_attn.k_proj", "h", "kv"),
                                 ("self_attn.v_proj", "h", "kv"), ("self_attn.o_proj", "q", "h"),
                                 ("mlp.c_fc", "h", "I"), ("mlp.c_proj", "I", "h")))
_GPT_OSS = Structure(sdpa=(8, 0, 0, 8), eager=(8, 0, 0, 8), expert=14)
# MLA: attention terms come from _mla_terms, not (c_q, c_kv)
_MLA = Structure(sdpa=(0, 0, 0, 12), eager=(0, 0, 0, 8))

STRUCTURES: dict[str, Structure] = {
    "llama": _LLAMA, "mistral": _LLAMA, "qwen2": _LLAMA, "phi3": _LLAMA, "mixtral": _LLAMA,
    "qwen2_moe": _LLAMA, "qwen3": _QWEN3, "qwen3_moe": _QWEN3, "gemma": _GEMMA, "gemma2": _GEMMA2,
    "gemma3_text": _GEMMA3, "gpt_neox": _NEOX, "gpt2": _GPT2, "bert": _BERT, "starcoder2": _STARCODER2,
    "deepseek_v3": _MLA, "gpt_oss": _GPT_OSS,
}

# Model types without a calibration entry -> the calibrated family whose code they share (transformers 5.24:
# a modular_<model>.py that imports the family's classes, "Copied from" it, or a wrapper whose language model is
# the family's decoder). Each group says what is shared and what the family's structure does not see.
NEAREST_FAMILY: dict[str, str] = {
    # multimodal wrappers: the language model is the family's decoder (text_config's model_type, or text
    # classes built in modular_*.py from that family); the vision/audio tower's activations are not modelled
    "mistral3": "mistral", "llava": "llama", "llava_next": "llama", "qwen2_vl": "qwen2", "qwen2_5_vl": "qwen2",
    "qwen2_audio": "qwen2", "gemma3": "gemma3_text", "qwen3_vl": "qwen3", "qwen3_vl_moe": "qwen3_moe",
    "phi4_multimodal": "phi3",
    "phi3_v": "phi3",  # Phi-3.5-vision's remote code: Phi-3's decoder layers ("Copied from" phi3) + an image tower
    "mllama": "llama",  # Llama decoder ("Copied from" llama) with interleaved cross-attention layers
    # modular_<model>.py built from the family's classes, same layer layout (attention, gated MLP, two norms)
    "olmo": "llama", "granite": "llama", "helium": "llama", "smollm3": "llama", "granitemoe": "mixtral",
    "phimoe": "mixtral",
    "ministral": "mistral",  # modular from qwen2: Mistral's Llama-code layer (both use the llama structure)
    "deepseek_v2": "deepseek_v3",  # MLA: modular_deepseek_v3.py is built from deepseek_v2's classes
    # Llama code with LayerNorm in place of RMSNorm (cohere/cohere2: modular from llama, parallel attention +
    # MLP; stablelm: "Copied from" llama, partial rotary)
    "cohere": "llama", "cohere2": "llama", "stablelm": "llama",
    "orion": "llama",  # OrionStar's remote code (modeling_orion.py): a Llama decoder layer with nn.LayerNorm
    # q/k-normed decoders, as Qwen3: OLMo 2/3 (modular from olmo/olmo2, norm over the q/k projections), OLMoE
    # (modular from qwen2_moe), GLM-4-MoE (use_qk_norm), Qwen3-Next (modular from qwen3_moe; its linear-
    # attention layers are not modelled)
    "olmo2": "qwen3", "olmo3": "qwen3", "olmoe": "qwen3_moe", "glm4_moe": "qwen3_moe", "qwen3_next": "qwen3_moe",
    # remote code (trust_remote_code, no transformers class) whose modeling file is a Llama decoder (RMSNorm,
    # SwiGLU, RoPE; fused or renamed projections); DeepSeek-MoE v1: Llama attention + shared experts, as
    # qwen2_moe; Kimi K2: ships DeepSeek-V3's modeling code
    "internlm2": "llama", "internlm": "llama", "baichuan": "llama", "yi": "llama", "minicpm": "llama",
    "aquila": "llama", "exaone": "llama", "deepseek": "qwen2_moe", "kimi_k2": "deepseek_v3",
    # LayerNorm decoders with a non-gated 4h MLP: phi/gptj (modular from llama), falcon ("Copied from"
    # llama/bloom), all three with parallel attention + MLP, and nemotron (LayerNorm1P, relu² MLP) as
    # GPT-NeoX; OPT (ReLU fc1/fc2) and BLOOM (ALiBi, fused qkv) as GPT-2
    "phi-msft": "gpt_neox",  # phi-1.5 / phi-2's original remote code (MixFormer): the block transformers' phi ports
    "phi": "gpt_neox", "gptj": "gpt_neox", "falcon": "gpt_neox", "nemotron": "gpt_neox", "opt": "gpt2",
    "bloom": "gpt2",
    "gpt_bigcode": "gpt2",  # GPT-2's code ("Copied from" gpt2) with multi-query attention
    # BERT-code encoders (roberta modular from bert; xlm-roberta/camembert from roberta; electra/distilbert
    # "Copied from" bert); ModernBERT (GeGLU, RoPE, local/global attention) is only structurally near
    "roberta": "bert", "xlm-roberta": "bert", "camembert": "bert", "electra": "bert", "distilbert": "bert",
    "modernbert": "bert",
    "recurrent_gemma": "gemma",  # Griffin: Gemma's MLP and norms around recurrent blocks (approximate)
}


def family_for(model_type: str) -> tuple[str | None, str]:
    """(calibrated family or None, how it was chosen) for a model type: its own calibration, else
    ``NEAREST_FAMILY``'s entry, else none -- the caller then uses the generic published form."""
    cal = load_calibration().get("architectures", {})
    if model_type in cal and model_type in STRUCTURES:
        return model_type, "calibrated"
    near = NEAREST_FAMILY.get(model_type)
    if near in cal:
        return near, f"nearest family of {model_type}"
    return None, f"no calibration for {model_type}"


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
    """S(shape): the shape-dependent part of one layer's bytes per token (see the module docstring)."""
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
