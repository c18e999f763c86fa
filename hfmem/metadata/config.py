"""config.json: parse, validate, and read the few fields the pipeline needs (no torch, no transformers)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import ConfigError


@dataclass
class ModelConfig:
    """A parsed config.json plus the facts hfmem reads from it."""

    raw: dict
    origin: str  # where it was read from, for messages
    text: bytes | None = None  # the file as read, kept verbatim by the snapshot

    @property
    def model_type(self) -> str | None:
        return self.raw.get("model_type")

    @property
    def architectures(self) -> list[str]:
        archs = self.raw.get("architectures") or []
        return [a for a in archs if isinstance(a, str)]

    @property
    def architecture(self) -> str | None:
        return self.architectures[0] if self.architectures else None

    @property
    def auto_map(self) -> dict[str, str]:
        am = self.raw.get("auto_map")
        return am if isinstance(am, dict) else {}

    @property
    def has_remote_code(self) -> bool:
        return bool(self.auto_map)

    @property
    def declared_dtype(self) -> str | None:
        """The checkpoint dtype the config declares (``dtype`` in transformers 5, ``torch_dtype`` before);
        multimodal configs may only declare it in ``text_config``."""
        for holder in (self.raw, self.raw.get("text_config") or {}):
            for key in ("dtype", "torch_dtype"):
                value = holder.get(key)
                if isinstance(value, str) and value not in ("auto",):
                    return value.removeprefix("torch.")
        return None

    @property
    def quantization(self) -> dict | None:
        q = self.raw.get("quantization_config")
        return q if isinstance(q, dict) else None


def parse_config(text: bytes | str, origin: str) -> ModelConfig:
    """Parse config.json text; malformed → ConfigError naming the file."""
    try:
        raw = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"config.json from {origin} is not valid JSON ({exc.__class__.__name__} at {getattr(exc, 'pos', '?')})",
            hint="fix or re-download the file",
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config.json from {origin} is not a JSON object", hint="fix or re-download the file")
    return ModelConfig(raw=raw, origin=origin, text=text.encode() if isinstance(text, str) else text)


# Fields transformers fills in when a multimodal config's text_config omits them: the Hub writes a
# text_config without the fields equal to its configuration class's defaults (llava-1.5's text_config lists
# little more than its model_type; google/gemma-3-4b-it's has no heads, KV heads, head_dim nor vocabulary).
# The defaults of transformers' configuration classes ship as data (hfmem/data/transformers_facts.json, see
# hfmem/metadata/transformers_facts.py); TEXT_DEFAULTS is the fallback without that file.
TEXT_DEFAULTS: dict[str, dict] = {
    "llama": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "intermediate_size": 11008},
}
# The filled-in defaults an estimate names in its assumptions: the ones that size weights, KV cache or
# activations.
DIMENSION_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                    "intermediate_size", "vocab_size", "sliding_window", "num_experts", "num_local_experts",
                    "num_experts_per_tok", "moe_intermediate_size", "kv_lora_rank", "q_lora_rank",
                    "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim", "max_position_embeddings")


def _text_type(config: dict, text: dict) -> str:
    from .transformers_facts import composite_text_type

    return str(text.get("model_type") or composite_text_type(str(config.get("model_type", ""))) or "")


def _class_defaults(model_type: str) -> dict:
    from .transformers_facts import text_defaults

    return text_defaults(model_type) or dict(TEXT_DEFAULTS.get(model_type, {}))


def text_config(config: dict) -> dict:
    """The language model's fields: a multimodal config's ``text_config`` completed with transformers'
    defaults for its model type (its configuration class's, for every field the text_config omits; the
    composite's text model type when it names none), else the config itself."""
    text = config.get("text_config")
    if not isinstance(text, dict) or not text:
        return config
    model_type = _text_type(config, text)
    merged = _class_defaults(model_type)
    merged.update(text)
    if model_type:
        merged.setdefault("model_type", model_type)
    return merged


def filled_text_defaults(config: dict) -> dict:
    """The sizing fields (``DIMENSION_FIELDS``) that ``text_config`` took from transformers' defaults because
    the config's text_config omits them: {field: value}; {} for a config without a text_config."""
    text = config.get("text_config")
    if not isinstance(text, dict) or not text:
        return {}
    defaults = _class_defaults(_text_type(config, text))
    return {k: defaults[k] for k in DIMENSION_FIELDS if k in defaults and k not in text}


def defaults_assumption(config: dict) -> str | None:
    """One assumption line naming the filled-in defaults, or None when nothing was filled."""
    filled = filled_text_defaults(config)
    if not filled:
        return None
    model_type = text_config(config).get("model_type") or "its model type"
    values = ", ".join(f"{k} {v}" for k, v in filled.items())
    return (f"the config's text_config omits fields transformers fills in from its {model_type} configuration "
            f"defaults: {values}")


def first_of(cfg: dict, *names: str, default=None):
    """The first of ``names`` the config sets (not None): configs spell one field several ways
    (``num_hidden_layers`` / ``n_layer`` / ``num_layers``)."""
    for name in names:
        value = cfg.get(name)
        if value is not None:
            return value
    return default
