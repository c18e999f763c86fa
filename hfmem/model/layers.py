"""Per-layer token mixers, as transformers' configuration classes derive them from a config.json.

The one place that reads ``layer_types`` / ``layers_block_type`` / sliding-window patterns / hybrid patterns;
``hfmem.model.describe`` turns the names into ``Layer`` entries and the KV cache lays them out.
"""

from __future__ import annotations

from .fields import first as _first_of

# Default alternation when a config names no layer_types (transformers' configuration classes):
# layer i is sliding when (i + 1) % pattern != 0.
PATTERN_DEFAULTS = {"gemma2": 2, "gemma3_text": 6, "gemma3": 6, "gpt_oss": 2, "cohere2": 4}
NO_KV_TYPES = ("moe", "mlp", "dummy")
# transformers' configuration_utils._LEGACY_LAYER_TYPE_REMAP (granite-4.0-h, zamba2 and nemotron_h configs)
LEGACY_TYPES = {"mamba": "linear_attention", "attention": "full_attention"}
STATE_TYPES = ("linear_attention", "conv")
HYBRID_TYPES = ("hybrid", "hybrid_sliding")
# Recurrent models whose state transformers keeps outside a Cache object or in a layout not modelled here.
UNMODELLED_RECURRENT = ("rwkv", "rwkv5", "rwkv6", "rwkv7", "xlstm", "recurrent_gemma", "zamba", "zaya",
                        "bailing_hybrid")
# Models with recurrent layers modelled here (transformers 5.24); the first ones derive their layer types from
# other fields (their configuration classes expose layer_types as a read-only property).
DERIVED_TYPES = ("mamba", "falcon_mamba", "mamba2", "jamba", "bamba", "falcon_h1")
RECURRENT_MODELS = DERIVED_TYPES + ("granitemoehybrid", "zamba2", "nemotron_h", "qwen3_next", "qwen3_5_text",
                                    "qwen3_5_moe_text", "olmo_hybrid", "lfm2", "lfm2_moe", "lfm3", "minimax",
                                    "kimi_linear")


class LayoutError(Exception):
    """A layer pattern that contradicts the config (its message says how)."""


def _first(cfg: dict, *names: str):
    return _first_of(cfg, names)


def attention_types(cfg: dict, n_layers: int) -> list[str]:
    """Per layer attention type, as transformers' configuration classes derive it."""
    model_type = cfg.get("model_type", "")
    types = cfg.get("layer_types")
    if types:
        if len(types) != n_layers:
            raise LayoutError(f"layer_types has {len(types)} entries for {n_layers} layers")
        return list(types)
    window = cfg.get("sliding_window")
    if cfg.get("use_sliding_window") is False or window is None:  # Qwen2 drops the window unless enabled
        return ["full_attention"] * n_layers
    if "use_sliding_window" in cfg and "max_window_layers" in cfg:  # Qwen2 with the window enabled
        start = int(cfg["max_window_layers"])
        return ["sliding_attention" if i >= start else "full_attention" for i in range(n_layers)]
    pattern = cfg.get("sliding_window_pattern") or PATTERN_DEFAULTS.get(model_type)
    if pattern:
        pattern = int(pattern)
        return ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n_layers)]
    return ["sliding_attention"] * n_layers  # Mistral, Phi-3, Starcoder2: every layer has the window


def hybrid_types(cfg: dict, model_type: str, n_layers: int) -> list[str] | None:
    """Layer types of the models with recurrent layers, as their transformers 5.24 configuration classes
    derive them from a config.json (legacy names remapped); None for every other model."""
    given = _first(cfg, "layer_types", "layers_block_type")
    given = [LEGACY_TYPES.get(t, t) for t in given] if given else None
    if model_type not in RECURRENT_MODELS:  # an unknown model with recurrent layers: kv_layout refuses it
        return given if given and any(t in STATE_TYPES + HYBRID_TYPES for t in given) else None
    if given and model_type not in DERIVED_TYPES:
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
                raise LayoutError("kimi_linear: linear_attn_config leaves some layers without a type")
            return types  # type: ignore[return-value]
        return ["full_attention" if i and i % 4 == 0 else "linear_attention" for i in n]
    raise LayoutError(f"{model_type} config names no layer_types")
