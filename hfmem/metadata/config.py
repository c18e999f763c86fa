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
    except RecursionError:
        raise ConfigError(f"config.json from {origin} nests arrays or objects too deeply to read",
                          hint="fix or re-download the file") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4,300 digits
        where = f" at {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ConfigError(
            f"config.json from {origin} is not valid JSON ({exc.__class__.__name__}{where})",
            hint="fix or re-download the file",
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config.json from {origin} is not a JSON object, found {_found(raw)}",
                          hint="fix or re-download the file")
    validate_config(raw, origin)
    return ModelConfig(raw=raw, origin=origin, text=text.encode() if isinstance(text, str) else text)


# -- validation ------------------------------------------------------------------------------------------------
# Every field hfmem (or the transformers build it starts) reads as a size is checked here, once, where the file
# enters: a value of the wrong type, zero, negative, or far beyond any released model is refused with one line
# naming the file, the field, what was found and what was expected. What transformers does with each, checked
# against transformers 5.24: its configuration classes are strict dataclasses that refuse a float (32.0
# included), a bool, a string or null for an ``int`` field (StrictDataclassFieldValidationError); they accept 0
# and -1 layers (a model with no layers); ``torch_dtype``/``dtype`` is turned into ``getattr(torch, name)`` (an
# unknown name raises AttributeError); ``architectures`` is annotated ``list[str]`` but a string is kept as it
# is, and transformers' readers then take it letter by letter (``for architecture in config.architectures`` in
# pipelines/base.py, ``config.architectures[0]`` in serving) — so hfmem refuses a string there.

# The language model's sizing fields, each with the other names configs spell it by (GPT-2's n_embd, T5's
# d_model, ChatGLM's num_layers, ...). A config whose language model declares none of them is refused: it is
# not a model's config, and counting it would count transformers' defaults.
CORE_SIZES: dict[str, tuple[str, ...]] = {
    "hidden_size": ("hidden_size", "n_embd", "n_embed", "d_model", "dim", "embed_dim", "hidden_dim"),
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "encoder_layers",
                          "decoder_layers"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads", "encoder_attention_heads",
                            "decoder_attention_heads"),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_hidden_size", "d_ff", "ffn_dim", "encoder_ffn_dim"),
    "vocab_size": ("vocab_size", "n_vocab", "padded_vocab_size"),
}

_LAYERS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers", "encoder_layers", "decoder_layers")
_HIDDEN = ("hidden_size", "n_embd", "d_model")
_HEADS = ("num_attention_heads", "n_head", "num_heads", "n_heads", "encoder_attention_heads",
          "decoder_attention_heads")
_KV_HEADS = ("num_key_value_heads", "n_head_kv", "multi_query_group_num")
_VOCAB = ("vocab_size", "n_vocab", "padded_vocab_size")
_DIMS = ("intermediate_size", "n_inner", "ffn_hidden_size", "d_ff", "head_dim", "kv_channels", "d_kv",
         "q_lora_rank", "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim",
         "moe_intermediate_size", "shared_expert_intermediate_size", "rotary_dim", "attention_hidden_size")
_POSITIONS = ("max_position_embeddings", "n_positions", "seq_length", "sliding_window")
_EXPERTS = ("num_experts", "num_local_experts", "n_routed_experts")
_NONNEG = ("num_experts", "num_local_experts", "n_routed_experts", "n_shared_experts", "num_experts_per_tok",
           "first_k_dense_replace")

# Limits far beyond every released model (the largest have 126 layers, hidden size 16,384 or so, vocabularies of
# about 256K, 384 routed experts, contexts of 10M tokens, about 2 × 10^12 parameters): past them a config is
# damaged or hostile, and building it would only exhaust memory (10^9 layers is 10^9 modules).
MAX_LAYERS = 10_000
MAX_DIM = 1_000_000
MAX_HEADS = 100_000
MAX_VOCAB = 100_000_000
MAX_EXPERTS = 100_000
MAX_POSITIONS = 100_000_000
MAX_PARAMS = 10**14

# Required when present: null is refused (transformers' classes type them ``int``). The others may be null
# ("not set": transformers derives them, e.g. head_dim = hidden_size // num_attention_heads).
_NOT_NULL = set(_LAYERS + _HIDDEN + _HEADS + _VOCAB) | {"max_position_embeddings", "n_positions"}
_LIMITS: dict[str, tuple[int, str]] = {}
for _names, _limit, _what in ((_LAYERS, MAX_LAYERS, "layers"), (_HIDDEN + _DIMS, MAX_DIM, "a dimension"),
                              (_HEADS + _KV_HEADS, MAX_HEADS, "attention heads"), (_VOCAB, MAX_VOCAB, "a vocabulary"),
                              (_POSITIONS, MAX_POSITIONS, "positions"),
                              (_EXPERTS + ("n_shared_experts", "num_experts_per_tok", "first_k_dense_replace"),
                               MAX_EXPERTS, "experts")):
    for _n in _names:
        _LIMITS[_n] = (_limit, _what)

# torch's dtype names (torch 2.13), which transformers turns into ``getattr(torch, name)``.
TORCH_DTYPES = frozenset((
    "bfloat16", "bool", "cdouble", "cfloat", "chalf", "complex128", "complex32", "complex64", "double", "float",
    "float16", "float32", "float4_e2m1fn_x2", "float64", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
    "float8_e5m2fnuz", "float8_e8m0fnu", "half", "int", "int16", "int32", "int64", "int8", "long", "short",
    "uint16", "uint32", "uint64", "uint8", "int1", "int2", "int3", "int4", "int5", "int6", "int7", "uint1",
    "uint2", "uint3", "uint4", "uint5", "uint6", "uint7", "bits16", "bits8", "bits1x8", "bits2x4", "bits4x2",
    "bit", "qint32", "qint8", "quint2x4", "quint4x2", "quint8"))


def _found(value) -> str:
    """A JSON value as the user wrote it, for a message."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if value is None:
        return "null"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return f"{value!r} (a number with a decimal point or exponent)"
    if isinstance(value, int):
        text = str(value) if abs(value) < 10**30 else f"an integer of {len(str(abs(value)))} digits"
        return text
    if isinstance(value, str):
        return f"the string {value[:60]!r}" + ("..." if len(value) > 60 else "")
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _file(origin: str) -> str:
    return origin if origin.endswith("config.json") else f"config.json from {origin}"


def _refuse(origin: str, message: str, hint: str = "fix the file or re-download it") -> ConfigError:
    return ConfigError(f"{_file(origin)}: {message}", hint=hint)


def _sub_configs(raw: dict) -> list[tuple[str, dict]]:
    """The config and its nested model configs (``text_config``, and ``vision_config`` and the like when they
    name a model_type; not ``quantization_config`` nor ``transformers.js_config``) with their prefixes."""
    out = [("", raw)]
    for key, value in raw.items():
        if isinstance(value, dict) and (key == "text_config" or (key.endswith("_config") and "model_type" in value)):
            out.append((f"{key}.", value))
    return out


# Hierarchical vision models whose configuration classes take one value per stage for heads and widths
# (SwinConfig num_heads [3, 6, 12, 24]; SegformerConfig num_attention_heads [1, 2, 5, 8], hidden_sizes).
PER_STAGE_TYPES = frozenset({"swin", "swinv2", "donut-swin", "maskformer-swin", "segformer", "pvt", "pvt_v2",
                             "mobilevit", "mobilevitv2", "focalnet", "nat", "dinat", "glpn", "efficientformer",
                             "poolformer", "hiera", "swin2sr"})


def _check_ints(origin: str, prefix: str, holder: dict) -> None:
    for name, (limit, what) in _LIMITS.items():
        if name not in holder:
            continue
        value = holder[name]
        if value is None and name not in _NOT_NULL:
            continue
        nonneg = name in _NONNEG
        expected = "a non-negative integer" if nonneg else "a positive integer"
        if holder.get("model_type") in PER_STAGE_TYPES and isinstance(value, list) and value and \
                all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            # per-stage values of hierarchical vision models (Swin's num_heads [3, 6, 12, 24], SegFormer's
            # num_attention_heads [1, 2, 5, 8]): each stage's value is checked
            for i, v in enumerate(value):
                _check_one(origin, f"{prefix}{name}[{i}]", v, limit, what, nonneg, expected)
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            extra = ("; transformers' configuration classes refuse it too" if isinstance(value, float)
                     and value == value and value not in (float("inf"), float("-inf")) else "")
            raise _refuse(origin, f"{prefix}{name} must be {expected}, found {_found(value)}{extra}")
        _check_one(origin, f"{prefix}{name}", value, limit, what, nonneg, expected)


def _check_one(origin: str, label: str, value: int, limit: int, what: str, nonneg: bool, expected: str) -> None:
    if value < 0 or (value == 0 and not nonneg):
        raise _refuse(origin, f"{label} must be {expected}, found {_found(value)}")
    if value > limit:
        raise _refuse(origin, f"{label} is {_found(value)}, above hfmem's limit of {limit:,} for {what}: no "
                      "released model is near it, so hfmem will not build it",
                      hint="check the file: it is damaged or not a real model's config")


def _check_dtype(origin: str, prefix: str, holder: dict) -> None:
    for key in ("torch_dtype", "dtype"):
        value = holder.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or value not in TORCH_DTYPES:
            raise _refuse(origin, f"{prefix}{key} must be a torch dtype name such as bfloat16, float16 or float32 "
                          f"(transformers reads it as torch.<name>), found {_found(value)}")


def _first_int(holder: dict, names: tuple[str, ...]):
    for name in names:
        value = holder.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return name, value
    return None, None


def _check_shapes(origin: str, prefix: str, holder: dict) -> None:
    """Heads that must divide what they split, experts per token within the experts, and a quick closed-form
    upper bound on the parameter count (before anything is built)."""
    h_name, hidden = _first_int(holder, _HIDDEN)
    a_name, heads = _first_int(holder, _HEADS)
    explicit_head_dim = any(isinstance(holder.get(k), int) for k in ("head_dim", "kv_channels", "d_kv"))
    if hidden and heads and not explicit_head_dim and hidden % heads:
        raise _refuse(origin, f"{prefix}{h_name} {hidden} is not a multiple of {prefix}{a_name} {heads}, and no "
                      f"head_dim is given: each head would be {hidden / heads:g} wide (expected a whole number)")
    k_name, kv = _first_int(holder, _KV_HEADS)
    if heads and kv and heads % kv:
        raise _refuse(origin, f"{prefix}{a_name} {heads} is not a multiple of {prefix}{k_name} {kv} (expected "
                      "each key/value head to serve a whole number of query heads)")
    e_name, experts = _first_int(holder, _EXPERTS)
    per_tok = holder.get("num_experts_per_tok")
    if experts and isinstance(per_tok, int) and per_tok > experts:
        raise _refuse(origin, f"{prefix}num_experts_per_tok {per_tok} is more than {prefix}{e_name} {experts} "
                      "(expected at most the number of experts)")
    _, layers = _first_int(holder, _LAYERS)
    if not (layers and hidden):
        return
    _, vocab = _first_int(holder, _VOCAB)
    head_dim = next((holder[k] for k in ("head_dim", "kv_channels", "d_kv") if isinstance(holder.get(k), int)
                     and not isinstance(holder.get(k), bool)), None)
    q = (heads or 1) * head_dim if head_dim else hidden
    _, inter = _first_int(holder, _DIMS[:4])
    inter = inter or 4 * hidden
    moe = holder.get("moe_intermediate_size")
    moe = moe if isinstance(moe, int) and not isinstance(moe, bool) else inter
    shared = holder.get("n_shared_experts")
    shared = shared if isinstance(shared, int) and not isinstance(shared, bool) else 0
    # attention ≤ q, k, v, o each hidden × q; MLP ≤ 3 matrices hidden × width per expert; embedding and head
    per_layer = 4 * hidden * q + 3 * hidden * (inter + moe * ((experts or 0) + shared))
    bound = layers * per_layer + 2 * (vocab or 0) * hidden
    if bound > MAX_PARAMS:
        raise _refuse(origin, f"{prefix}{'these sizes' if not prefix else 'its sizes'} give about {bound:.1e} "
                      f"parameters ({prefix}{_first_int(holder, _LAYERS)[0]} {layers:,}, {prefix}{h_name} "
                      f"{hidden:,}), above hfmem's limit of 1e14: no released model is near it (the largest "
                      "have about 2e12), so hfmem will not build it",
                      hint="check the file: it is damaged or not a real model's config")


def _declares_sizes(holder: dict) -> bool:
    return any(holder.get(name) is not None for names in CORE_SIZES.values() for name in names)


def validate_config(raw: dict, origin: str) -> None:
    """Refuse (ConfigError) a config.json hfmem cannot read as a model's: see the comment above."""
    model_type = raw.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise _refuse(origin, f"model_type must be a string such as 'llama', found {_found(model_type)}")
    archs = raw.get("architectures")
    if archs is not None:
        if isinstance(archs, str):
            raise _refuse(origin, f"architectures must be a list of class names, found a string ({archs[:60]!r}); "
                          "transformers would read it letter by letter",
                          hint=f'write "architectures": ["{archs[:60]}"]')
        if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
            found = _found(archs) if not isinstance(archs, list) else \
                f"a list holding {_found(next(a for a in archs if not isinstance(a, str)))}"
            raise _refuse(origin, f"architectures must be a list of class names (strings), found {found}")
    text = raw.get("text_config")
    if text is not None and not isinstance(text, dict):
        raise _refuse(origin, f"text_config must be a JSON object (the language model's config), found {_found(text)}")
    if isinstance(text, dict):
        inner = text.get("model_type")
        if inner is not None and not isinstance(inner, str):
            raise _refuse(origin, f"text_config.model_type must be a string such as 'llama', found {_found(inner)}")
    for prefix, holder in _sub_configs(raw):
        _check_ints(origin, prefix, holder)
        _check_dtype(origin, prefix, holder)
    for prefix, holder in _sub_configs(raw):
        _check_shapes(origin, prefix, holder if prefix != "text_config." else text_config(raw))


def require_sizes(raw: dict, origin: str) -> None:
    """Refuse (ConfigError) to count a model from its definition when its config declares none of its sizes:
    transformers would build its configuration class's defaults. Called where the model is built from the
    config (``inventory.build``), not at parse: a --headers-only count reads no size from the config.

    A multimodal config's text_config may omit the fields equal to its class's defaults (the Hub writes it
    so); one that declares no size at all, in neither it nor the config around it, is not a model's config."""
    from .transformers_facts import text_defaults

    model_type = raw.get("model_type")
    text = raw.get("text_config")
    composite = isinstance(text, dict) and bool(text)
    if not (isinstance(model_type, str) and text_defaults(model_type)):
        return  # no transformers defaults to mistake for the model's: the build says what it cannot count
    if model_type and not _declares_sizes(raw) and not (composite and _declares_sizes(text)):
        where = "neither it nor its text_config declares" if composite else "it declares"
        raise _refuse(origin, f"it names model_type {model_type} but {where} none of its sizes "
                      f"({', '.join(CORE_SIZES)}): hfmem will not count transformers' defaults as this model",
                      hint="use the model's own config.json")


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


def filled_top_defaults(config: dict) -> dict:
    """For a config without a text_config: the core sizes (``CORE_SIZES``) it declares under none of their
    names (a null counts as declared: "derive it", as GPT-2's n_inner), which transformers' configuration class
    fills in from its defaults: {field: value}. Only classes whose defaults hfmem ships (a model type
    transformers lacks has none to fill). A config that declares none of them is refused by
    ``validate_config``; real ones declare all."""
    text = config.get("text_config")
    model_type = config.get("model_type")
    if (isinstance(text, dict) and text) or not isinstance(model_type, str) or not model_type:
        return {}
    defaults = _class_defaults(model_type)
    out = {}
    for names in CORE_SIZES.values():
        if any(n in config for n in names):
            continue
        own = next((n for n in names if defaults.get(n) is not None), None)
        if own is not None:
            out[own] = defaults[own]
    return out


def defaults_assumption(config: dict) -> str | None:
    """One assumption line naming the filled-in defaults, or None when nothing was filled."""
    top = filled_top_defaults(config)
    if top:
        values = ", ".join(f"{k} {v}" for k, v in top.items())
        return (f"config.json omits sizes transformers fills in from its {config['model_type']} configuration "
                f"defaults: {values}")
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
