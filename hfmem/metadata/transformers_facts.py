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
* ``tasks``: per model type, the tasks transformers has a class for (its ``MODEL_FOR_*_MAPPING_NAMES``:
  ``causal_lm``, ``masked_lm``, ``ctc``, ``image_classification``, ...); ``class_tasks``: per model class name
  (a config.json's ``architectures``), its task. ``hfmem.model`` reads a model's towers and head from them
  instead of guessing from field names.

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


def model_tasks(model_type: str) -> frozenset[str]:
    """The tasks transformers has a class for, for ``model_type`` ({} when it does not know the type)."""
    return frozenset(load_facts().get("tasks", {}).get(str(model_type), ()))


def class_task(class_name: str) -> str | None:
    """The task of a transformers model class (``"LlamaForCausalLM"`` -> ``"causal_lm"``); None if unknown."""
    return load_facts().get("class_tasks", {}).get(str(class_name))


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


# The auto-class mappings whose tasks decide a model's towers and head (hfmem.model.describe). Base models
# (MODEL_MAPPING_NAMES) get the task "base"; later mappings do not overwrite a class's first task.
TASK_MAPPINGS = {
    "causal_lm": "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
    "image_text_to_text": "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES",
    "multimodal_lm": "MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES",
    "seq2seq_lm": "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
    "speech_seq2seq": "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES",
    "masked_lm": "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
    "sequence_classification": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "token_classification": "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
    "question_answering": "MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",
    "multiple_choice": "MODEL_FOR_MULTIPLE_CHOICE_MAPPING_NAMES",
    "text_encoding": "MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES",
    "pretraining": "MODEL_FOR_PRETRAINING_MAPPING_NAMES",
    "ctc": "MODEL_FOR_CTC_MAPPING_NAMES",
    "audio_classification": "MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES",
    "image_classification": "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
    "zero_shot_image_classification": "MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES",
    "object_detection": "MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES",
    "semantic_segmentation": "MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES",
    "backbone": "MODEL_FOR_BACKBONE_MAPPING_NAMES",
    "base": "MODEL_MAPPING_NAMES",
}


def task_tables() -> tuple[dict[str, list[str]], dict[str, str]]:
    """(tasks per model type, task per class name) from transformers' auto-class mappings."""
    from transformers.models.auto import modeling_auto as ma

    tasks: dict[str, list[str]] = {}
    classes: dict[str, str] = {}
    for task, attr in TASK_MAPPINGS.items():
        for model_type, names in getattr(ma, attr, {}).items():
            tasks.setdefault(model_type, []).append(task)
            for name in (names if isinstance(names, (list, tuple)) else [names]):
                classes.setdefault(name, task)
    return dict(sorted(tasks.items())), dict(sorted(classes.items()))


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
    tasks, class_tasks = task_tables()
    return {"schema": 2, "transformers": transformers.__version__,
            "what": "transformers' configuration-class defaults (independent fields), composite -> text_config "
                    "model types, the model types without SDPA attention, and the tasks of model types and classes; "
                    "written by "
                    "python -m hfmem.metadata.transformers_facts",
            "text_defaults": defaults, "composite_text_types": dict(sorted(composite.items())),
            "no_sdpa": no_sdpa, "tasks": tasks, "class_tasks": class_tasks}


def main() -> int:
    FACTS_PATH.write_text(json.dumps(generate(), indent=1, sort_keys=False) + "\n")
    print(f"wrote {FACTS_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
