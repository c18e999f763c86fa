"""Custom-code architectures whose parameter shapes are provably those of a transformers architecture.

Repositories with ``auto_map`` ship their own modeling code, which hfmem never runs without
``--trust-remote-code``. For a few popular families the tensors are the same as an architecture that
transformers has — possibly fused differently (one ``W_pack`` instead of q/k/v), which changes names but
not one parameter. Each mapping below translates the config and states why the count is identical, from
the family's modeling file. Buffers are the exception: custom code often registers its own rotary caches,
which a mapped build cannot know; the inventory says so in a note.

When the checkpoint's safetensors headers are available the mapped count is checked against them and the
mapping is dropped if they disagree (see ``hfmem.inventory.build``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class MappedConfig:
    model_type: str  # transformers model_type to build
    architecture: str  # transformers class name
    config: dict  # the translated config
    why: str  # one line for the notes


def _keep(cfg: dict, *keys: str) -> dict:
    return {k: cfg[k] for k in keys if k in cfg}


_COMMON = ("hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "vocab_size",
           "max_position_embeddings", "tie_word_embeddings", "rms_norm_eps", "torch_dtype", "dtype")


def _causal(cfg: dict) -> bool:
    arch = (cfg.get("architectures") or [""])[0]
    # ChatGLM names its causal LM "ChatGLMModel" (it carries output_layer, the LM head).
    return arch.endswith(("ForCausalLM", "LMHeadModel")) or arch in ("ChatGLMModel", "ChatGLMForConditionalGeneration")


def _baichuan(cfg: dict) -> MappedConfig | None:
    # modeling_baichuan.py (Baichuan-7B, Baichuan2-7B/13B): W_pack = Linear(h, 3h, bias=False) is q, k, v
    # fused; o_proj, gate/up/down_proj without bias; RMSNorm; untied lm_head (Baichuan2's NormHead has the
    # same [vocab, h] weight). That is LlamaForCausalLM with num_key_value_heads = num_attention_heads.
    # Baichuan2-13B uses ALiBi instead of RoPE: no parameters either way.
    out = _keep(cfg, *_COMMON)
    out.update(num_key_value_heads=cfg["num_attention_heads"], attention_bias=False, mlp_bias=False)
    out.setdefault("tie_word_embeddings", False)
    return MappedConfig("llama", "LlamaForCausalLM", out,
                        "Baichuan's layout is Llama's with q/k/v fused in W_pack (same parameters)")


def _internlm(cfg: dict) -> MappedConfig | None:
    # modeling_internlm.py: q/k/v/o_proj = Linear(h, h, bias=config.bias); gate/up/down without bias;
    # RMSNorm; untied lm_head: LlamaForCausalLM with attention_bias = config.bias (biases on q, k, v and o).
    out = _keep(cfg, *_COMMON)
    out.update(num_key_value_heads=cfg["num_attention_heads"], attention_bias=bool(cfg.get("bias", True)),
               mlp_bias=False)
    out.setdefault("tie_word_embeddings", False)
    return MappedConfig("llama", "LlamaForCausalLM", out, "InternLM's layout is Llama's with attention biases")


def _internlm2(cfg: dict) -> MappedConfig | None:
    # modeling_internlm2.py: wqkv = Linear(h, (heads + 2 kv_heads) * head_dim, bias=config.bias), wo,
    # feed_forward w1/w3/w2 (SwiGLU), RMSNorm, untied `output`: Llama with GQA, q/k/v fused.
    out = _keep(cfg, *_COMMON)
    out.update(num_key_value_heads=cfg.get("num_key_value_heads", cfg["num_attention_heads"]),
               attention_bias=bool(cfg.get("bias", False)), mlp_bias=False)
    out.setdefault("tie_word_embeddings", False)
    return MappedConfig("llama", "LlamaForCausalLM", out,
                        "InternLM2's layout is Llama's (GQA) with q/k/v fused in wqkv (same parameters)")


def _qwen1(cfg: dict) -> MappedConfig | None:
    # modeling_qwen.py (Qwen-1.8B/7B/14B/72B): c_attn = Linear(h, 3h, bias=True); c_proj without bias
    # (no_bias=True); MLP w1, w2 = Linear(h, intermediate_size // 2) and c_proj back, SwiGLU; RMSNorm;
    # untied lm_head. That is Qwen2 (q/k/v bias, no o bias) with intermediate_size // 2 and no GQA.
    if not cfg.get("no_bias", True):
        return None
    out = _keep(cfg, "hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size",
                "max_position_embeddings", "torch_dtype", "dtype")
    out.update(intermediate_size=cfg["intermediate_size"] // 2, num_key_value_heads=cfg["num_attention_heads"],
               rms_norm_eps=cfg.get("layer_norm_epsilon", 1e-6),
               tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)))
    return MappedConfig("qwen2", "Qwen2ForCausalLM", out,
                        "Qwen (v1)'s layout is Qwen2's with q/k/v fused in c_attn and no GQA (same parameters)")


def _chatglm(cfg: dict) -> MappedConfig | None:
    # modeling_chatglm.py (ChatGLM2/3, GLM-4 9B): query_key_value = Linear(h, h + 2 * kv_channels *
    # multi_query_group_num, bias=add_qkv_bias); dense without bias (add_bias_linear=False); MLP
    # dense_h_to_4h = Linear(h, 2 * ffn_hidden_size) (SwiGLU) and dense_4h_to_h; RMSNorm; untied
    # output_layer over padded_vocab_size. That is Qwen2 with GQA (qkv bias, no o bias).
    if not (cfg.get("rmsnorm", True) and cfg.get("post_layer_norm", True)) or cfg.get("add_bias_linear", False) \
            or not cfg.get("add_qkv_bias", True):
        return None
    heads = cfg["num_attention_heads"]
    groups = cfg.get("multi_query_group_num", heads) if cfg.get("multi_query_attention") else heads
    out = {
        "hidden_size": cfg["hidden_size"], "intermediate_size": cfg["ffn_hidden_size"],
        "num_hidden_layers": cfg["num_layers"], "num_attention_heads": heads, "num_key_value_heads": groups,
        "head_dim": cfg.get("kv_channels", cfg["hidden_size"] // heads),
        "vocab_size": cfg.get("padded_vocab_size", cfg.get("vocab_size")),
        "rms_norm_eps": cfg.get("layernorm_epsilon", 1e-5), "tie_word_embeddings": False,
        "max_position_embeddings": cfg.get("seq_length", 8192),
    }
    out.update(_keep(cfg, "torch_dtype", "dtype"))
    return MappedConfig("qwen2", "Qwen2ForCausalLM", out,
                        "ChatGLM's layout is Qwen2's (GQA, q/k/v bias) with q/k/v fused (same parameters)")


def _orion(cfg: dict) -> MappedConfig | None:
    # modeling_orion.py: Llama attention (q/k/v/o bias = attention_bias) and SwiGLU MLP, but LayerNorm
    # (weight and bias) instead of RMSNorm: StableLM's layout (LayerNorm, SwiGLU, qkv bias optional,
    # o_proj without bias) with full rotary. Only without attention biases (StableLM has no o bias).
    if cfg.get("attention_bias", False):
        return None
    out = _keep(cfg, *_COMMON[:-2])
    out.update(num_key_value_heads=cfg.get("num_key_value_heads", cfg["num_attention_heads"]),
               layer_norm_eps=cfg.get("rms_norm_eps", 1e-5), use_qkv_bias=False, partial_rotary_factor=1.0,
               qk_layernorm=False, use_parallel_residual=False)
    out.pop("rms_norm_eps", None)
    out.update(_keep(cfg, "torch_dtype", "dtype"))
    out.setdefault("tie_word_embeddings", False)
    return MappedConfig("stablelm", "StableLmForCausalLM", out,
                        "Orion's layout is StableLM's (LayerNorm with bias, SwiGLU, no biases)")


def _minicpm(cfg: dict) -> MappedConfig | None:
    # modeling_minicpm.py: Llama's layout (the muP scalings scale_emb/scale_depth/dim_model_base have no
    # parameters); MiniCPM-MoE's MoE block is Mixtral's (gate = Linear(h, num_experts, bias=False),
    # experts w1/w2/w3). Embeddings tied by default.
    out = _keep(cfg, *_COMMON)
    out.update(num_key_value_heads=cfg.get("num_key_value_heads", cfg["num_attention_heads"]))
    out.setdefault("tie_word_embeddings", True)
    if cfg.get("num_experts"):
        out.update(num_local_experts=cfg["num_experts"], num_experts_per_tok=cfg.get("num_experts_per_tok", 2))
        return MappedConfig("mixtral", "MixtralForCausalLM", out,
                            "MiniCPM-MoE's layout is Mixtral's (same parameters)")
    out.update(attention_bias=False, mlp_bias=False)
    return MappedConfig("llama", "LlamaForCausalLM", out, "MiniCPM's layout is Llama's (same parameters)")


def _phi_msft(cfg: dict) -> MappedConfig | None:
    # Early phi-1/1.5/2 revisions ("phi-msft"): embd.wte; blocks of LayerNorm, mixer.Wqkv = Linear(h, 3h)
    # with bias, out_proj with bias, MLP fc1/fc2 with bias (n_inner or 4h); head = LayerNorm + Linear with
    # bias. transformers' PhiForCausalLM is the same model renamed (it was ported from this code).
    n_embd, n_head = cfg["n_embd"], cfg["n_head"]
    out = {
        "hidden_size": n_embd, "intermediate_size": cfg.get("n_inner") or 4 * n_embd,
        "num_hidden_layers": cfg["n_layer"], "num_attention_heads": n_head,
        "num_key_value_heads": cfg.get("n_head_kv") or n_head,
        "partial_rotary_factor": cfg.get("rotary_dim", n_embd // n_head) / (n_embd // n_head),
        "vocab_size": cfg["vocab_size"], "layer_norm_eps": cfg.get("layer_norm_epsilon", 1e-5),
        "max_position_embeddings": cfg.get("n_positions", 2048),
        "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
    }
    out.update(_keep(cfg, "torch_dtype", "dtype"))
    return MappedConfig("phi", "PhiForCausalLM", out, "phi-msft is transformers' Phi before the port (same parameters)")


MAPPERS: dict[str, Callable[[dict], MappedConfig | None]] = {
    "baichuan": _baichuan,
    "internlm": _internlm,
    "internlm2": _internlm2,
    "qwen": _qwen1,
    "chatglm": _chatglm,
    "orion": _orion,
    "minicpm": _minicpm,
    "phi-msft": _phi_msft,
}


def map_custom_config(cfg: dict) -> MappedConfig | None:
    """The transformers equivalent of a custom-code config, or None when none is provably identical."""
    model_type = cfg.get("model_type")
    mapper = MAPPERS.get(model_type) if isinstance(model_type, str) else None
    archs = cfg.get("architectures")
    names_ok = archs is None or (isinstance(archs, list) and all(isinstance(a, str) for a in archs))
    if mapper is None or not names_ok or not _causal(cfg):
        return None
    try:
        return mapper(cfg)
    # A config missing a field the mapping needs, or holding one of a type it cannot use (parse_config refuses
    # the sizing fields of the wrong type before this; flags such as ``no_bias`` are taken as given): no proof,
    # no mapping.
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
