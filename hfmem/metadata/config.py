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


# Fields transformers fills in when a multimodal config's text_config omits them: llava-1.5's text_config
# lists little more than its model_type, and LlamaConfig's defaults complete it.
TEXT_DEFAULTS: dict[str, dict] = {
    "llama": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "intermediate_size": 11008},
}


def text_config(config: dict) -> dict:
    """The language model's fields: a multimodal config's ``text_config`` completed with transformers'
    defaults for its model type (``TEXT_DEFAULTS``), else the config itself."""
    text = config.get("text_config")
    if not isinstance(text, dict) or not text:
        return config
    merged = dict(TEXT_DEFAULTS.get(str(text.get("model_type", "")), {}))
    merged.update(text)
    return merged


def first_of(cfg: dict, *names: str, default=None):
    """The first of ``names`` the config sets (not None): configs spell one field several ways
    (``num_hidden_layers`` / ``n_layer`` / ``num_layers``)."""
    for name in names:
        value = cfg.get(name)
        if value is not None:
            return value
    return default
