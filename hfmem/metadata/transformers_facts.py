"""Facts hfmem takes from transformers' own classes, shipped as data (hfmem/data/transformers_facts.json) so
that reading a config never imports transformers (whose configuration module imports torch):

* ``text_defaults``: per model type, the defaults of its configuration class (``CONFIG_MAPPING[model_type]()``)
  for the fields that do not depend on other fields. The Hub writes a multimodal config's ``text_config``
  the way ``PretrainedConfig.to_diff_dict`` does: fields equal to the sub-config class's defaults are
  omitted (google/gemma-3-4b-it's text_config names six fields; heads, KV heads, head_dim and vocabulary
  come from ``Gemma3TextConfig``'s defaults). Derived fields (``layer_types``, a ``head_dim`` computed as
  hidden/heads, ``num_key_value_heads`` defaulting to the heads) are left out: hfmem derives them itself.
* ``composite_text_types``: per composite model type, the model type of its ``text_config`` class, for a
  ``text_config`` that names no model_type.
* ``no_sdpa``: the model types whose causal-LM / image-text-to-text class has ``_supports_sdpa = False``:
  transformers gives them eager attention by default and refuses ``attn_implementation="sdpa"``
  (``PreTrainedModel.get_correct_attn_implementation``). Attention-free models (Mamba, RWKV, xLSTM) are
  left out: the attention implementation does not apply to them.

Regenerate with ``python -m hfmem.metadata.transformers_facts`` after a transformers upgrade;
tests/test_defaults.py checks the shipped data against the installed transformers.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

FACTS_PATH = Path(__file__).resolve().parents[1] / "data" / "transformers_facts.json"

# Attention-free model types: no attention implementation to choose.
ATTENTION_FREE = frozenset({"mamba", "mamba2", "falcon_mamba", "rwkv", "xlstm"})
# One field at a time is changed to find the fields computed from others (dropped from the defaults).
# Fields no estimate reads (token ids, dropout, initialisation) or that transformers rebuilds from legacy ones
# (rope_parameters from rope_scaling / rope_theta).
_SKIP = ("model_type", "transformers_version", "rope_parameters", "initializer_range", "use_cache")
_SKIP_SUFFIXES = ("_token_id", "_token_ids", "dropout", "_dropout_prob", "initializer_factor")
_PERTURB = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "sliding_window",
            "num_key_value_heads", "vocab_size", "max_position_embeddings")


@lru_cache(maxsize=1)
def load_facts() -> dict:
    if not FACTS_PATH.exists():
        return {}
    return json.loads(FACTS_PATH.read_text())


def text_defaults(model_type: str) -> dict:
    """transformers' configuration-class defaults for ``model_type`` (independent fields only); {} if unknown."""
    return dict(load_facts().get("text_defaults", {}).get(str(model_type), {}))


def composite_text_type(model_type: str) -> str | None:
    return load_facts().get("composite_text_types", {}).get(str(model_type))


def no_sdpa_types() -> frozenset[str]:
    return frozenset(load_facts().get("no_sdpa", ()))


# -- generation (imports transformers; never called on the estimate path) ------------------------------------

def _jsonable(value) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return len(value) <= 16 and all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return len(value) <= 16 and all(isinstance(k, str) and _jsonable(v) for k, v in value.items())
    return False


def _independent_defaults(cls) -> dict:
    """``cls()``'s fields minus PretrainedConfig's own, minus those that change when one of ``_PERTURB``
    changes (derived from it), minus values JSON cannot hold."""
    from transformers import PretrainedConfig

    base = set(PretrainedConfig().to_dict())
    ref = cls().to_dict()
    out = {k: v for k, v in ref.items() if k not in base and not k.startswith("_") and _jsonable(v)
           and k not in _SKIP and not k.endswith(_SKIP_SUFFIXES)}
    for name in _PERTURB:
        value = ref.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            continue
        for new in (value * 2, value + 6, max(value // 2, 1)):
            try:
                other = cls(**{name: new}).to_dict()
            except Exception:  # noqa: BLE001 - a value the class validates away: try the next
                continue
            for k in list(out):
                if k != name and json.dumps(other.get(k), sort_keys=True) != json.dumps(ref.get(k), sort_keys=True):
                    out.pop(k)
    return json.loads(json.dumps(out))


def _lm_classes() -> dict[str, list[str]]:
    from transformers.models.auto import modeling_auto as ma

    classes: dict[str, list[str]] = {}
    for mapping in (ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, ma.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES):
        for model_type, names in mapping.items():
            for name in (names if isinstance(names, (list, tuple)) else [names]):
                classes.setdefault(model_type, []).append(name)
    return classes


def sdpa_flags() -> dict[str, bool]:
    """Per model type with a causal-LM or image-text-to-text class: whether every such class supports SDPA."""
    import transformers

    flags: dict[str, bool] = {}
    for model_type, names in _lm_classes().items():
        flags[model_type] = all(bool(getattr(getattr(transformers, n), "_supports_sdpa", False)) for n in names)
    return flags


def generate() -> dict:
    import warnings

    import transformers
    from transformers import CONFIG_MAPPING
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    warnings.filterwarnings("ignore")
    text_types = set(_lm_classes())
    composite: dict[str, str] = {}
    for model_type in CONFIG_MAPPING_NAMES:
        try:
            cls = CONFIG_MAPPING[model_type]
        except Exception:  # noqa: BLE001 - a config class that needs an optional dependency
            continue
        sub = (getattr(cls, "sub_configs", None) or {}).get("text_config")
        if sub is None:
            continue
        sub_type = getattr(sub, "model_type", "")
        if not sub_type:  # an AutoConfig sub-config: the class's default text_config (llava: llama)
            try:
                sub_type = getattr(getattr(cls(), "text_config", None), "model_type", "")
            except Exception:  # noqa: BLE001
                sub_type = ""
        if sub_type and sub_type in CONFIG_MAPPING_NAMES:
            composite[model_type] = sub_type
            text_types.add(sub_type)
    defaults: dict[str, dict] = {}
    for model_type in sorted(text_types):
        if model_type not in CONFIG_MAPPING_NAMES:
            continue
        try:
            defaults[model_type] = _independent_defaults(CONFIG_MAPPING[model_type])
        except Exception:  # noqa: BLE001 - a class without a usable default: no defaults for it
            continue
    no_sdpa = sorted(t for t, ok in sdpa_flags().items() if not ok and t not in ATTENTION_FREE)
    return {"schema": 1, "transformers": transformers.__version__,
            "what": "transformers' configuration-class defaults (independent fields), composite -> text_config "
                    "model types, and the model types without SDPA attention; written by "
                    "python -m hfmem.metadata.transformers_facts",
            "text_defaults": defaults, "composite_text_types": dict(sorted(composite.items())),
            "no_sdpa": no_sdpa}


def main() -> int:
    FACTS_PATH.write_text(json.dumps(generate(), indent=1, sort_keys=False) + "\n")
    print(f"wrote {FACTS_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
