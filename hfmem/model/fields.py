"""The names configs give each size, defined once: every reader of a config goes through ``first``.

Configs spell one field several ways (GPT-2's ``n_embd``, T5's ``d_model``, Falcon's ``num_kv_heads``); the
order is the precedence when a config sets more than one.
"""

from __future__ import annotations

HIDDEN = ("hidden_size", "n_embd", "d_model", "dim")
LAYERS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
HEADS = ("num_attention_heads", "n_head", "num_heads", "n_heads")
KV_HEADS = ("num_key_value_heads", "num_kv_heads", "n_head_kv")
VOCAB = ("vocab_size", "n_vocab", "padded_vocab_size")
INTERMEDIATE = ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", "d_ff")
# routed experts: DeepSeek's n_routed_experts, Mixtral's num_local_experts, Qwen-MoE's num_experts
EXPERTS = ("n_routed_experts", "num_local_experts", "num_experts", "moe_num_experts")
# experts per token; "top_k" last: older config.json files also carry generation's top_k, read only with experts
TOP_K = ("num_experts_per_tok", "num_experts_per_token", "moe_topk", "moe_top_k", "top_k")
POSITIONS = ("max_position_embeddings", "n_positions", "seq_length", "max_sequence_length")
ACTIVATION = ("hidden_act", "hidden_activation", "activation_function")
# the weights' declared dtype: transformers 5 writes "dtype", earlier versions "torch_dtype"
DTYPE = ("torch_dtype", "dtype")
# encoder-decoder models: the decoder's own sizes
DECODER_LAYERS = ("num_decoder_layers", "decoder_layers", "num_layers", "num_hidden_layers")
DECODER_HEADS = ("decoder_attention_heads", "num_decoder_attention_heads", "num_heads", "num_attention_heads")
DECODER_KV_HEADS = ("decoder_num_key_value_heads", "num_key_value_heads")
DECODER_INTERMEDIATE = ("decoder_ffn_dim", "d_ff", "intermediate_size", "ffn_dim")
ENCODER_LAYERS = ("encoder_layers", "num_layers", "num_hidden_layers")
ENCODER_HEADS = ("encoder_attention_heads", "num_heads", "num_attention_heads")
ENCODER_INTERMEDIATE = ("encoder_ffn_dim", "d_ff", "intermediate_size", "ffn_dim")


def first(cfg: dict, names: tuple[str, ...], default=None):
    """The first of ``names`` the config sets (not None)."""
    for name in names:
        value = cfg.get(name)
        if value is not None:
            return value
    return default


def first_int(cfg: dict, names: tuple[str, ...], default: int = 0) -> int:
    """The first of ``names`` as an int; ``default`` when none is set or the value is per stage (a list, as
    hierarchical vision models give heads and widths: no single uniform stack to size)."""
    value = first(cfg, names)
    if isinstance(value, (list, tuple)):
        return default
    return int(value) if value not in (None, False) else default


# -- recurrent layers (hfmem.model.states) -------------------------------------------------------------------
# Per family: each width's config.json names and transformers 5.24's configuration-class default when
# config.json omits it (None: derived, see hfmem.model.states). One family's names can mean another thing
# in another family (Jamba's and Bamba's intermediate_size is their MLP's), hence one table per family.
_MAMBA2_PREFIXED = {"expand": (("mamba_expand",), 2), "state_size": (("mamba_d_state",), 256),
                    "conv_kernel": (("mamba_d_conv",), 4), "heads": (("mamba_n_heads",), 128),
                    "head_dim": (("mamba_d_head",), "auto"), "groups": (("mamba_n_groups",), 1),
                    "chunk_size": (("mamba_chunk_size",), None)}
STATE_FIELDS: dict[str, dict[str, tuple[tuple[str, ...], object]]] = {
    "mamba": {"inner": (("intermediate_size",), None), "expand": (("expand",), 2),
              "state_size": (("state_size",), 16), "conv_kernel": (("conv_kernel",), 4)},
    "jamba": {"expand": (("mamba_expand",), 2), "state_size": (("mamba_d_state",), 16),
              "conv_kernel": (("mamba_d_conv",), 4)},
    "mamba2": {"expand": (("expand",), 2), "state_size": (("state_size",), 128), "conv_kernel": (("conv_kernel",), 4),
               "heads": (("num_heads",), None), "head_dim": (("head_dim",), 64), "groups": (("n_groups",), 8),
               "chunk_size": (("chunk_size",), 256)},
    "bamba": _MAMBA2_PREFIXED,
    "granitemoehybrid": _MAMBA2_PREFIXED,
    "falcon_h1": {**_MAMBA2_PREFIXED, "inner": (("mamba_d_ssm",), None)},
    "zamba2": {"expand": (("mamba_expand",), 2), "state_size": (("mamba_d_state",), 64),
               "conv_kernel": (("mamba_d_conv",), 4), "heads": (("n_mamba_heads",), 8),
               "head_dim": (("mamba_headdim",), None), "groups": (("mamba_ngroups",), 1),
               "chunk_size": (("chunk_size",), None)},
    "nemotron_h": {"state_size": (("ssm_state_size",), 128), "conv_kernel": (("conv_kernel",), 4),
                   "heads": (("mamba_num_heads",), 128), "head_dim": (("mamba_head_dim",), 64),
                   "groups": (("n_groups",), 8), "chunk_size": (("chunk_size",), None)},
    # gated DeltaNet: Qwen3-Next / Qwen3.5 defaults; OLMo-hybrid derives what it omits
    "qwen3_next": {"k_heads": (("linear_num_key_heads",), 16), "v_heads": (("linear_num_value_heads",), 32),
                   "d_k": (("linear_key_head_dim",), 128), "d_v": (("linear_value_head_dim",), 128),
                   "conv_kernel": (("linear_conv_kernel_dim",), 4)},
    "olmo_hybrid": {"k_heads": (("linear_num_key_heads",), None), "v_heads": (("linear_num_value_heads",), None),
                    "d_k": (("linear_key_head_dim",), None), "d_v": (("linear_value_head_dim",), None),
                    "conv_kernel": (("linear_conv_kernel_dim",), 4)},
    # Kimi delta attention: top-level names; linear_attn_config's own keys come first (kimi_linear_nested)
    "kimi_linear": {"heads": (("linear_num_heads",), 32), "head_dim": (("linear_head_dim",), 128),
                    "conv_kernel": (("linear_conv_kernel_dim",), 4)},
    "kimi_linear_nested": {"heads": (("num_heads",), None), "head_dim": (("head_dim",), None),
                           "conv_kernel": (("short_conv_kernel_size",), None)},
    "lfm2": {"conv_kernel": (("conv_L_cache",), 3)},
}
# vLLM's recurrent-state dtype when the config names one (NemotronH; Qwen3.5's spelling second)
SSM_CACHE_DTYPE = ("mamba_ssm_cache_dtype", "mamba_ssm_dtype")
# zamba2's shared attention block: its own head width (2 · hidden / heads when absent)
SHARED_ATTENTION_HEAD_DIM = ("attention_head_dim",)
# DeepSeek-V3's multi-token-prediction layers (transformers does not build them)
MTP_LAYERS = ("num_nextn_predict_layers",)
# Encoder-decoder models whose encoder output always has one length: Whisper pads every input to 30 s =
# 3,000 mel frames, which its stride-2 conv halves to max_source_positions (WhisperEncoder.forward refuses
# any other length).
FIXED_ENCODER_LENGTH = {"whisper": ("max_source_positions",)}
