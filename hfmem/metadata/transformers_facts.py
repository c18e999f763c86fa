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
* ``model_types``: every model type transformers has a configuration class for, so that a config of another
  (custom code without --trust-remote-code) is refused without importing transformers and torch.
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


def known_model_types() -> frozenset[str] | None:
    """Every model_type transformers has a configuration class for (``CONFIG_MAPPING_NAMES``), as shipped; None
    when the shipped facts were written for another transformers release than the installed one (then only
    transformers itself can say)."""
    from importlib.metadata import PackageNotFoundError, version

    facts = load_facts()
    try:
        installed = version("transformers")
    except PackageNotFoundError:
        return None
    if "model_types" not in facts or facts.get("transformers") != installed:
        return None
    return frozenset(facts["model_types"])


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
            "no_sdpa": no_sdpa, "tasks": tasks, "class_tasks": class_tasks,
            "model_types": sorted(CONFIG_MAPPING_NAMES)}


# -- module structures (hfmem/data/module_structures.json) ---------------------------------------------------
# What hfmem.inventory.headers needs to count a model from its safetensors headers exactly as the meta model
# counts it (tests/test_headers_exact.py asserts equality): per architecture class, its module tree as
# transformers builds it from the class's default config, with each module path's numbered parts written "#".
# Only the families listed here are recorded, and a family is recorded only when every rule below was checked
# against transformers on perturbed configs; any other family is counted on the meta model.

STRUCTURES_PATH = FACTS_PATH.parent / "module_structures.json"
STRUCTURE_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi", "phi3", "stablelm", "gpt_neox",
                   "cohere", "starcoder2", "gpt2", "bert", "mixtral", "qwen2_moe", "qwen3_moe", "gpt_oss")
_ROTARY_BUFFERS = ("inv_freq", "original_inv_freq")


@lru_cache(maxsize=1)
def load_structures() -> dict:
    if not STRUCTURES_PATH.exists():
        return {}
    return json.loads(STRUCTURES_PATH.read_text())


def class_structure(class_name: str) -> dict | None:
    """The recorded module tree of a transformers model class (None: not a proven family)."""
    return load_structures().get("classes", {}).get(str(class_name))


def family_rules(model_type: str) -> dict | None:
    """The config fields a proven family's buffer shapes follow (None: not a proven family)."""
    return load_structures().get("families", {}).get(str(model_type))


def pattern_of(path: str) -> str:
    return ".".join("#" if part.isdigit() else part for part in path.split(".")) if path else ""


def _module_kind(mod) -> str:
    import torch
    from transformers.pytorch_utils import Conv1D

    if isinstance(mod, torch.nn.Linear):
        return "linear"
    if isinstance(mod, Conv1D):
        return "conv1d"
    if isinstance(mod, torch.nn.Embedding):
        return "embedding"
    return "module"


def _tree(model) -> tuple[dict, str | None]:
    """Pattern -> node for every module; a reason when modules of one pattern differ (then no template)."""
    nodes: dict[str, dict] = {}
    for name, mod in model.named_modules():
        np_names = getattr(mod, "_non_persistent_buffers_set", set())
        node = {
            "cls": type(mod).__name__, "kind": _module_kind(mod),
            "children": list(dict.fromkeys("#" if c.isdigit() else c for c, _ in mod.named_children())),
            "params": [[p, p_t.dim()] for p, p_t in mod.named_parameters(recurse=False)],
            "buffers": [[b, str(b_t.dtype).removeprefix("torch."), b not in np_names, _buffer_rule(b, list(b_t.shape))]
                        for b, b_t in mod.named_buffers(recurse=False)],
        }
        pat = pattern_of(name)
        if any(b[3] is None for b in node["buffers"]):
            return {}, f"a buffer of {name or 'the root'} follows no recorded rule"
        if pat in nodes and nodes[pat] != node:
            return {}, f"modules at {pat or 'the root'} differ ({nodes[pat]['cls']} / {node['cls']})"
        nodes[pat] = node
    return nodes, None


def _shared(model) -> list[list[str]]:
    by_id: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(name)
    return [names for names in by_id.values() if len(names) > 1]


def rotary_elements(config: dict, rules: dict) -> int:
    """Elements of a rotary ``inv_freq`` buffer: half the rotary width (transformers'
    ``_compute_default_rope_parameters``: ``arange(0, dim, 2)`` with ``dim = int(head_dim ·
    partial_rotary_factor)``; every rope type keeps that length). ``rules`` says which config.json fields
    the family reads (recorded and checked by ``_family_rules``)."""
    def get(key):
        value = config.get(key)
        return rules["defaults"].get(key) if value is None else value

    hidden, heads = get("hidden_size"), get("num_attention_heads")
    head_dim = None
    if rules["head_dim_key"]:
        head_dim = config.get("head_dim")
        if head_dim is None:
            head_dim = rules["defaults"].get("head_dim")
    if head_dim is None:
        head_dim = hidden // heads
    partial = None
    for key in rules["partial_keys"]:
        if config.get(key) is not None:
            partial = config[key]
            break
    if partial is None and rules["partial_in_rope"]:
        for key in ("rope_parameters", "rope_scaling"):
            rope = config.get(key)
            if isinstance(rope, dict) and rope.get("partial_rotary_factor") is not None:
                partial = rope["partial_rotary_factor"]
                break
    if partial is None:
        partial = rules["defaults"].get("partial_rotary_factor", 1.0)
    dim = int(head_dim * partial)
    return (dim + 1) // 2


def buffer_shape(rule: str, config: dict, rules: dict) -> list[int] | None:
    if rule == "rotary":
        return [rotary_elements(config, rules)]
    if rule == "scalar":
        return []
    if rule == "positions_row":
        value = config.get("max_position_embeddings")
        return [1, rules["defaults"]["max_position_embeddings"] if value is None else value]
    return None


def _buffer_rule(name: str, shape: list[int]) -> str | None:
    if name in _ROTARY_BUFFERS and len(shape) == 1:
        return "rotary"
    if not shape:
        return "scalar"
    if name in ("position_ids", "token_type_ids") and len(shape) == 2 and shape[0] == 1:
        return "positions_row"
    return None


def _family_rules(model_type: str, class_name: str) -> tuple[dict | None, str | None]:
    """The config.json fields this family's buffer shapes follow, found by building transformers models from
    configs that name one field each (what a config.json naming only that field gets), then checked on all
    of them: each buffer must have the shape its rule gives."""
    from transformers import CONFIG_MAPPING

    from ..inventory.meta_model import build_model

    cls = CONFIG_MAPPING[model_type]
    base = cls().to_dict()
    rope = base.get("rope_parameters") or {}
    defaults = {k: base.get(k) for k in ("hidden_size", "num_attention_heads", "max_position_embeddings")}
    indep = _independent_defaults(cls)
    if "head_dim" in indep:
        defaults["head_dim"] = indep["head_dim"]
    if rope.get("partial_rotary_factor") is not None:
        defaults["partial_rotary_factor"] = rope["partial_rotary_factor"]

    def shapes(change: dict) -> dict[str, list[int]]:
        model, _ = build_model(dict(change, model_type=model_type), class_name)
        return {f"{m}.{b}": list(t.shape) for m, mod in model.named_modules() for b, t in mod.named_buffers(recurse=False)}

    ref = shapes({})
    rotary = [n for n in ref if n.rsplit(".", 1)[-1] in _ROTARY_BUFFERS]
    half = ref[rotary[0]][0] if rotary else None

    def honoured(change: dict) -> bool:  # does a rotary buffer change when config.json names ``change``?
        return bool(rotary) and shapes(change).get(rotary[0]) != [half]

    # 0.375: a factor no family defaults to, so that naming it changes the width wherever it is read
    rope_half = dict(rope, partial_rotary_factor=0.375)
    rules = {"defaults": defaults, "head_dim_key": honoured({"head_dim": 48}),
             "partial_keys": [k for k in ("partial_rotary_factor", "rotary_pct") if honoured({k: 0.375})],
             "partial_in_rope": honoured({"rope_parameters": rope_half})}
    heads, hidden, positions = (defaults[k] for k in ("num_attention_heads", "hidden_size", "max_position_embeddings"))
    trials = [{}] + ([{"hidden_size": hidden * 2}] if hidden else []) \
        + ([{"num_attention_heads": heads * 2, "num_key_value_heads": heads * 2}] if heads else []) \
        + ([{"max_position_embeddings": positions + 64}] if positions else []) \
        + [{"head_dim": 48}, {"partial_rotary_factor": 0.375}, {"rotary_pct": 0.375}, {"rope_parameters": rope_half},
           {"head_dim": 48, "partial_rotary_factor": 0.375, "hidden_size": (hidden or 64) * 2}]
    for change in trials:
        try:
            found = shapes(change)
        except Exception:  # noqa: BLE001 - a field combination the class refuses: nothing to check
            continue
        for name, shape in found.items():
            rule = _buffer_rule(name.rsplit(".", 1)[-1], shape)
            if rule is None or buffer_shape(rule, change, rules) != shape:
                return None, f"buffer {name} {shape} follows no recorded rule (config.json naming {change})"
    return rules, None


def structures() -> dict:
    """Module trees of the proven families' classes (causal LM, masked LM, base model)."""
    import warnings

    from transformers import CONFIG_MAPPING
    from transformers.models.auto import modeling_auto as ma

    from ..inventory.meta_model import build_model

    warnings.filterwarnings("ignore")
    classes: dict[str, dict] = {}
    families: dict[str, dict] = {}
    refused: dict[str, str] = {}
    for model_type in STRUCTURE_TYPES:
        names = []
        for attr in ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", "MODEL_FOR_MASKED_LM_MAPPING_NAMES", "MODEL_MAPPING_NAMES"):
            found = getattr(ma, attr).get(model_type)
            names += [n for n in ([found] if isinstance(found, str) else found or []) if n not in names]
        rules, why = _family_rules(model_type, names[0])
        if rules is None:
            refused[model_type] = why
            continue
        families[model_type] = rules
        for class_name in names:
            base = CONFIG_MAPPING[model_type]().to_dict()
            entry = {"model_type": model_type}
            for tie in (True, False):
                model, config_obj = build_model(dict(base, tie_word_embeddings=tie, model_type=model_type), class_name)
                nodes, why = _tree(model)
                if why:
                    break
                if any(any(c.isdigit() for c in n) for g in _shared(model) for n in g):
                    why = "tied weights inside numbered blocks"
                    break
                out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
                out_name = next((n for n, m in model.named_modules() if m is out_emb), None) if out_emb is not None else None
                entry.update({"nodes": nodes, "no_split_modules": sorted(set(model._no_split_modules or [])),
                              "output_embeddings": out_name})
                entry["shared_tied" if tie else "shared_untied"] = _shared(model)
            if why:
                refused[class_name] = why
                continue
            entry["tie_default"] = bool(CONFIG_MAPPING[model_type]().tie_word_embeddings)
            classes[class_name] = entry
    import transformers

    return {"schema": 1, "transformers": transformers.__version__,
            "what": "module trees of transformers classes (numbered parts as #) and the config fields their "
                    "buffers follow, for hfmem.inventory.headers; written by python -m hfmem.metadata.transformers_facts",
            "families": families, "classes": classes, "refused": refused}


def main() -> int:
    FACTS_PATH.write_text(json.dumps(generate(), indent=1, sort_keys=False) + "\n")
    print(f"wrote {FACTS_PATH}")
    STRUCTURES_PATH.write_text(json.dumps(structures(), indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {STRUCTURES_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
