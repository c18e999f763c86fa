"""LoRA / DoRA adapter parameters, exactly as PEFT would create them, without running PEFT.

Pure: the input is the parameter census of a model (``Inventory.tensors``, see
``hfmem.inventory.meta_model.census``), as dicts or typed ``hfmem.model.CensusEntry`` (read typed inside); no
torch, no peft import. The rules below are those of peft 0.22.0 with transformers 5.24, read in their source and
checked against ``get_peft_model`` + ``get_nb_trainable_parameters`` in tests/test_peft.py, and
``check_target_module_exists`` in tests/test_train_split.py. What 0.22 changed against 0.21.2 (and hfmem with it):
``modules_to_save`` copies only modules named exactly so (see below), and the v5 MoE conversion also covers
``qwen2_moe`` and keeps a v4 name as a module target where it names ``nn.Linear`` modules (see below).

Matching (peft/tuners/tuners_utils.py ``check_target_module_exists``, ``_maybe_include_all_linear_layers``) is
decided in one place, ``target_matches`` (on a module's name); ``known_path_matcher`` applies it to names known
only by their end (the census's leaf names here, the layer-relative Linear names of the training-activation
forms in ``hfmem.scenarios.lora_activations``), so adapter counts and activations adapt the same modules:

* a list of names matches a module whose full name equals an entry or ends with ``"." + entry``;
* a string is a regex that must *fully* match the full module name;
* ``"all-linear"`` (any case) is every ``nn.Linear`` / transformers ``Conv1D`` except the output layer
  (``get_output_embeddings()``, the census role ``lm_head``). A router that *is* an ``nn.Linear`` (Llama-4's
  ``Llama4Router``, role ``router`` with in/out features) is included; fused 3-D experts and routers that are
  custom modules holding a bare weight are not -- except through the v5 MoE conversion below;
* ``target_modules=None`` takes PEFT's default for the model type
  (``TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING``, copied below: llama -> q_proj, v_proj).
* ``modules_to_save`` entries are excluded from LoRA (``re.match(rf"(^|.*\\.){m}($|\\..*)", name)``) and get a
  full trainable copy (``ModulesToSaveWrapper``) of every module whose name equals ``m`` or ends with
  ``"." + m`` (peft 0.22 utils/other.py ``_set_trainable`` -> ``_is_valid_match``; 0.21 tested a bare
  ``endswith(m)``, so ``"norm"`` also copied ``input_layernorm``, it no longer does). A tied LM head's copy is a
  new, untied tensor: full size.

transformers v5 MoE conversion (peft 0.22.0 peft/utils/transformers_weight_conversion.py
``_convert_peft_config_moe``): for the model types of the ``mixtral`` and ``qwen2_moe`` conversion families
(Mixtral, Qwen1.5/2-MoE -- added to the family in 0.22 --, Qwen3-MoE, DeepSeek-V2/V3, GLM-4-MoE, OLMoE, ...),
PEFT rewrites v4 expert/router names into ``target_parameters``: ``gate`` -> ``gate.weight`` (the router),
``w1``/``w3`` or ``gate_proj``/``up_proj`` -> ``gate_up_proj`` (at rank 2r when both are named; naming only one
is an error), ``w2``/``down_proj`` -> ``down_proj`` (a dotted target keeps its path: ``mlp.gate`` ->
``mlp.gate.weight``). Since 0.22 (PEFT #3711 and #3945, cited in that function's comments), a v4 name that matches
only ``nn.Linear`` modules on the model (dense MLPs, shared experts) *stays* a module target, and is converted
to the parameter target as well only where a parameter of a non-Linear module has the new name (the fused
routed experts beside the shared ones); a name matching nothing, or any non-Linear module (the router), is
converted only. ``"all-linear"`` and regexes are first resolved to leaf names plus those v4 names, so on these
models all-linear adapts the router, the fused experts *and* (since 0.22) the dense MLPs and shared experts
(DeepSeek-V2/V3's first dense layers, Qwen-MoE's ``shared_expert``). ``target_modules=None`` is an error on these
models (the conversion turns it into an empty set before PEFT's default would apply).

Tensors (peft/tuners/lora/layer.py): Linear/Conv1D: ``lora_A`` [r, in], ``lora_B`` [out, r] (the census already
gives a Conv1D's in/out, whose weight is stored [in, out]); ``lora_bias=True`` adds ``lora_B.bias`` [out];
DoRA adds ``lora_magnitude_vector`` [out]. Embedding: ``lora_embedding_A`` [r, num_embeddings],
``lora_embedding_B`` [dim, r], DoRA magnitude [dim]. A targeted parameter (``ParamWrapper``): 2-D [o, i] ->
A [r, i], B [o, r]; 3-D experts [E, d1, d2] -> A [r·E, d2], B [d1, r·E] (PEFT's layout for experts without
``is_transposed``; for transposed experts such as gpt-oss's the two non-rank sizes swap, the count does not).
ParamWrapper refuses DoRA, ``lora_bias`` and ``lora_dropout != 0``.

Adapters are fp32 by default (``autocast_adapter_dtype=True`` upcasts fp16/bf16 adapters): ``adapter_dtype_bytes``.

Limits (the census groups modules by leaf name, it has no full paths):

* regex targets are matched on leaf names: a leading "any path" prefix (``.*\\.``, ``.*``, ``(.*\\.)?``) is
  dropped and the rest must fully match the leaf; a path inside the pattern (``.*language_model.*\\.q_proj``)
  cannot be checked, so the part after its last ``\\.`` is also tried (it may over-match: Gemma-4's vision
  tower); a pattern with no leading wildcard and no ``.``, which in PEFT can only match a top-level module,
  is tested against the LM head only (all reported in ``notes``);
* LoRA on Conv layers (PEFT supports Conv1d/2d/3d) is not modelled: targeting one raises;
* a dotted list entry (``attn.c_proj``) is matched on its last component only (GPT-2's attention and MLP
  ``c_proj`` cannot be told apart; noted);
* targets naming a parameterless container (``mlp``, ``self_attn``) are invisible; ``layers_to_transform``,
  ``rank_pattern``/``alpha_pattern`` (other than the conversion's 2r), ``ensure_weight_tying``, trainable tokens
  and task-type heads are not modelled;
* ``modules_to_save`` is counted for modules that hold parameters themselves (a leaf), not for containers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..errors import UsageError
from ..model import CensusEntry, census_of

ALL_LINEAR = "all-linear"

# peft 0.22.0 (unchanged since 0.21.2), peft/utils/constants.py TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
# (targets=None).
DEFAULT_TARGETS: dict[str, list[str] | str] = {
    "t5": ["q", "v"], "mt5": ["q", "v"], "bart": ["q_proj", "v_proj"], "gpt2": ["c_attn"],
    "bloom": ["query_key_value"], "blip-2": ["q", "v", "q_proj", "v_proj"], "opt": ["q_proj", "v_proj"],
    "gptj": ["q_proj", "v_proj"], "gpt_neox": ["query_key_value"], "gpt_neo": ["q_proj", "v_proj"],
    "bert": ["query", "value"], "roberta": ["query", "value"], "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"], "deberta-v2": ["query_proj", "value_proj"], "deberta": ["in_proj"],
    "layoutlm": ["query", "value"], "llama": ["q_proj", "v_proj"], "llama4": ["q_proj", "v_proj"],
    "chatglm": ["query_key_value"], "gpt_bigcode": ["c_attn"], "mpt": ["Wqkv"],
    "RefinedWebModel": ["query_key_value"], "RefinedWeb": ["query_key_value"], "falcon": ["query_key_value"],
    "btlm": ["c_proj", "c_attn"], "codegen": ["qkv_proj"], "mistral": ["q_proj", "v_proj"],
    "mixtral": ["q_proj", "v_proj"], "stablelm": ["q_proj", "v_proj"], "phi": ["q_proj", "v_proj", "fc1", "fc2"],
    "gemma": ["q_proj", "v_proj"], "gemma2": ["q_proj", "v_proj"], "gemma3_text": ["q_proj", "v_proj"],
    "gemma4": r".*language_model\..*\.(q_proj|v_proj)", "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"], "nemotron_h": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "rwkv": ["key", "value", "receptance", "output"],
    "rwkv7": ["r_proj", "k_proj", "v_proj", "o_proj", "key", "value"],
}

# peft 0.22.0 transformers_weight_conversion: v4 -> v5 names per conversion family, the fused pairs, and the
# model types (transformers 5.24 ``_MODEL_TO_CONVERSION_PATTERN`` as PEFT extends it, those with a checkpoint
# conversion mapping) the conversion applies to. PEFT 0.22 maps qwen2_moe itself to its family (0.21 did not).
_MOE_V4_TO_V5 = {
    "mixtral": {"gate": "gate.weight", "w1": "gate_up_proj", "w3": "gate_up_proj", "w2": "down_proj"},
    "qwen2_moe": {"gate": "gate.weight", "gate_proj": "gate_up_proj", "up_proj": "gate_up_proj",
                  "down_proj": "down_proj"},
}
_MOE_FUSED = {"mixtral": {"gate_up_proj": ("w1", "w3")}, "qwen2_moe": {"gate_up_proj": ("gate_proj", "up_proj")}}
MOE_CONVERSION_FAMILY: dict[str, str] = {
    **{t: "mixtral" for t in ("mixtral", "minimax", "minimax_m2")},
    **{t: "qwen2_moe" for t in (
        "afmoe", "beam", "cohere2_moe", "deepseek_v2", "deepseek_v3", "deepseek_v32", "dots1", "ernie4_5_moe",
        "exaone_moe", "flex_olmo", "glm4_moe", "glm4_moe_lite", "glm4v_moe", "glm_moe_dsa", "hunyuan_v1_moe",
        "longcat_flash", "mellum", "olmoe", "qwen2_moe", "qwen3_moe", "qwen3_next", "qwen3_omni_moe",
        "qwen3_omni_moe_text", "qwen3_omni_moe_thinker", "sarvam_mla", "solar_open")},
}

_LEADING_PATH = re.compile(r"^(\^?\(\.\*\\\.\)\?|\^?\.\*\\\.|\^?\.\*)")


@dataclass(frozen=True)
class AdapterPlan:
    """What ``get_peft_model`` would add. ``adapters`` and ``saved`` are census-format entries (``role``
    ``adapter`` / ``modules_to_save``, ``name``, ``shape``, ``count``, ``params``, ``of`` = the base name);
    ``matched_modules`` one entry per adapted base name (``name``, ``count``, ``kind``: linear, conv1d,
    embedding or parameter, ``rank``); ``frozen`` the base census as given."""

    adapters: tuple[dict, ...]
    matched_modules: tuple[dict, ...]
    frozen: tuple[dict, ...]
    saved: tuple[dict, ...] = ()
    rank: int = 8
    dora: bool = False
    adapter_dtype_bytes: int = 4
    trainable_base_params: int = 0  # base biases made trainable by bias="all" / "lora_only"
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def adapter_params(self) -> int:
        return sum(a["params"] for a in self.adapters)

    @property
    def saved_params(self) -> int:
        """Trainable copies made by ``modules_to_save`` (the originals stay, frozen)."""
        return sum(s["params"] for s in self.saved)

    @property
    def base_params(self) -> int:
        return sum(t["params"] for t in self.frozen)

    @property
    def trainable_params(self) -> int:
        """PEFT's ``get_nb_trainable_parameters()[0]``."""
        return self.adapter_params + self.saved_params + self.trainable_base_params

    @property
    def frozen_params(self) -> int:
        return self.base_params - self.trainable_base_params

    @property
    def total_params(self) -> int:
        """PEFT's ``get_nb_trainable_parameters()[1]``: base + adapters + modules_to_save copies."""
        return self.base_params + self.adapter_params + self.saved_params

    @property
    def adapter_bytes(self) -> int:
        return self.adapter_params * self.adapter_dtype_bytes


# ----------------------------------------------------------------------------------------------- matching


def is_all_linear(targets) -> bool:
    """PEFT's ``"all-linear"`` shorthand: a string equal to it in any case (peft/tuners/tuners_utils.py
    ``_maybe_include_all_linear_layers``: ``target_modules.lower() == INCLUDE_LINEAR_LAYERS_SHORTHAND``)."""
    return isinstance(targets, str) and targets.lower() == ALL_LINEAR


def target_matches(targets, module_name: str, *, output_layer: bool = False) -> bool:
    """Whether PEFT's ``target_modules=targets`` adapts the module called ``module_name`` (its full dotted name
    in ``model.named_modules()``), as peft 0.22.0's ``check_target_module_exists`` decides it (as 0.21.2 did):

    * a list (any iterable of names): ``module_name`` equals an entry or ends with ``"." + entry``;
    * a string: a regex that must match the *whole* name (``re.fullmatch``, peft/utils/other.py
      ``match_target_against_key``) -- ``"q_proj"`` alone matches only a top-level module so named;
    * ``"all-linear"`` (any case): every Linear / Conv1D except the output layer (``get_output_embeddings()``);
      the caller asks only about Linear / Conv1D modules and says which one is the output layer.

    ``layers_to_transform``/``layers_pattern`` and the exclusions (``exclude_modules``, ``modules_to_save``)
    are not part of this rule; ``lora_adapters`` applies them."""
    if isinstance(targets, str):
        if is_all_linear(targets):
            return not output_layer
        return re.fullmatch(targets, module_name) is not None
    return any(module_name == key or module_name.endswith("." + key) for key in targets)


def _module_leaf(t: CensusEntry) -> str:
    """Leaf name of the module holding this entry's parameter(s)."""
    if t.is_module or t.role == "embedding":
        return t.name
    return t.name.rpartition(".")[0]


def _leaf_regex(pattern: str, notes: list[str]):
    """A full-path regex made into a test on leaf names, ``match(leaf, top_level)`` (see the module docstring).
    A pattern with no leading wildcard and no ``.`` at all can only fully match a dot-free name, i.e. a top-level
    module: on the census, the output layer (role ``lm_head``)."""
    stripped, n = _LEADING_PATH.subn("", pattern, count=1)
    if not n and "." not in stripped:
        notes.append(f"regex {pattern!r} has no leading '.*': like PEFT, hfmem matches it only against top-level "
                     "modules (the LM head)")
        re.compile(stripped)  # a bad pattern fails here, as before any module is tested
        return lambda leaf, top=False: top and target_matches(stripped, leaf)
    notes.append(f"regex {pattern!r} was matched on leaf names (PEFT matches the full module path)")
    re.compile(stripped)
    adapted = stripped
    if "\\." in stripped:
        notes.append(f"regex {pattern!r}: the path inside the pattern is not checked (the census has leaf names only)")
        tail = stripped.rpartition("\\.")[2]
        either = f"(?:{stripped})|(?:{tail})"
        try:
            re.compile(either)
            adapted = either
        except re.error:
            pass
    return lambda leaf, top=False: target_matches(adapted, leaf)


def _list_match(targets, leaf: str, notes: list[str]) -> bool:
    """PEFT's list rule (``target_matches``) on a name known only by its end; a dotted entry whose path the
    name does not reach (``attn.c_proj`` against the census leaf ``c_proj``) is matched on its last component."""
    for key in targets:
        if target_matches([key], leaf):
            return True
        if "." in key and key.rpartition(".")[2] == leaf:
            note = f"target {key!r} matched on its last component {leaf!r} (the census has no module paths)"
            if note not in notes:
                notes.append(note)
            return True
    return False


def known_path_matcher(targets, notes: list[str]):
    """``match(name, output_layer=False) -> bool``: ``target_matches`` for modules known only by the end of
    their path -- a census leaf name (``q_proj``), or a layer-relative name (``mlp.c_proj``,
    ``attention.output.dense``). Lists follow PEFT's rule on what is known, a dotted entry reaching beyond it
    is matched on its last component; a regex is matched with its leading "any path" dropped, on the name and on
    its last component (see the module docstring's limits); ``"all-linear"`` as in PEFT. What was approximated
    goes to ``notes``."""
    if is_all_linear(targets):
        return lambda name, output_layer=False: target_matches(targets, name, output_layer=output_layer)
    if isinstance(targets, str):
        rx = _leaf_regex(targets, notes)
        return lambda name, output_layer=False: (rx(name, output_layer)
                                                 or ("." in name and rx(name.rpartition(".")[2], output_layer)))
    targets = list(targets)
    return lambda name, output_layer=False: _list_match(targets, name, notes)


def _saved_match(m: str, leaf: str, notes: list[str]) -> bool:
    """modules_to_save: peft 0.22 copies a module whose full name equals ``m`` or ends with ``"." + m``
    (utils/other.py ``_set_trainable``, ``_is_valid_match``) -- the list rule of ``target_matches``; 0.21's bare
    ``endswith(m)`` also copied ``input_layernorm`` for ``"norm"``. A dotted m whose path the census leaf does not
    reach is checked on its last component."""
    if target_matches([m], leaf):
        return True
    if "." in m:
        last = m.rpartition(".")[2]
        if leaf == last:
            note = f"modules_to_save {m!r} matched on its last component {last!r}"
            if note not in notes:
                notes.append(note)
            return True
    return False


def _excluded(leaf: str, top: bool, exclude, modules_to_save, notes: list[str]) -> bool:
    if exclude:
        if isinstance(exclude, str):
            if _leaf_regex(exclude, [])(leaf, top):
                return True
        elif _list_match(exclude, leaf, notes):
            return True
    return any(re.match(rf"(^|.*\.){m}($|\..*)", leaf) for m in modules_to_save or ())


def _param_keys(t: CensusEntry) -> list[tuple[str, list[int]]]:
    """(census-level parameter key, shape) for the parameters an entry stands for."""
    if t.is_module:
        shape = [t.out_features, t.in_features]
        if t.conv1d:
            shape = shape[::-1]
        keys = [(f"{t.name}.weight", shape)]
        if t.bias:
            keys.append((f"{t.name}.bias", [t.bias]))
        return keys
    if t.role == "embedding":
        return [(f"{t.name}.weight", list(t.shape))]
    return [(t.name, list(t.shape))]


def _param_match(targets, key: str, notes: list[str]) -> bool:
    """``target_parameters``: PEFT applies the list rule of ``target_matches`` to parameter names."""
    for tp in targets:
        if target_matches([tp], key):
            return True
        if tp.endswith("." + key):
            note = f"target parameter {tp!r} matched as {key!r} (the census has no module paths)"
            if note not in notes:
                notes.append(note)
            return True
    return False


def _is_linear(t: CensusEntry) -> bool:
    """An ``nn.Linear`` module (transformers' ``Conv1D`` is not one; a Linear router such as Llama-4's is)."""
    return t.is_module and not t.conv1d


def _convert_v5_moe(family: str, targets, tensors: tuple[CensusEntry, ...], notes: list[str], *,
                    exclude=None, modules_to_save=None) -> tuple[set, set, dict]:
    """peft 0.22's ``_convert_peft_config_moe``: (module targets, parameter targets, rank multipliers).

    A target naming a v4 expert/router name (``gate_proj``, ``layers.0.mlp.gate``) becomes the parameter target
    with that name replaced from the right (``str_rreplace``: ``gate_up_proj``, ``layers.0.mlp.gate.weight``),
    unless every module it matches -- by ``check_target_module_exists``, so after ``exclude_modules`` and
    ``modules_to_save`` -- is an ``nn.Linear``: then it stays a module target (PEFT #3711: the shared experts of
    DeepSeek-V3 and the like), and also becomes the parameter target only if a parameter held by a non-Linear
    module has that name (PEFT #3945: the routed experts beside them). Only a converted name counts towards the
    fused pair (``gate_proj`` + ``up_proj`` -> ``gate_up_proj`` at rank 2r)."""
    mapping = _MOE_V4_TO_V5[family]
    if isinstance(targets, str):
        if is_all_linear(targets):
            resolved = {t.name for t in tensors if t.is_module and t.role != "lm_head"} | set(mapping)
        else:
            rx = _leaf_regex(targets, notes)
            leaves = {_module_leaf(t) for t in tensors} | {k.rpartition(".")[2] for t in tensors
                                                           for k, _ in _param_keys(t)}
            tops = {t.name for t in tensors if t.role == "lm_head"}
            resolved = {leaf for leaf in leaves if leaf and rx(leaf, leaf in tops)}
            # a v4 name the pattern spells out is recovered through a parameter now bearing its new name
            # (PEFT probes ``<container>.<old>`` for each parameter ``<container>.<new>``, ``weight`` skipped)
            renamed = {k.rpartition(".")[2] for t in tensors for k, _ in _param_keys(t)} - {"weight"}
            resolved |= {old for old, new in mapping.items() if new in renamed and rx(old)}
            if not resolved:
                return set(), set(), {}
        targets = resolved
    # parameters PEFT can reach only through target_parameters: those held by a non-Linear module
    non_linear_keys = [k for t in tensors if not _is_linear(t) for k, _ in _param_keys(t)]
    modules, params, present = set(), set(), {}
    for target in sorted(targets):
        hit = next(((old, new) for old, new in mapping.items() if target == old or target.endswith("." + old)), None)
        if hit is None:
            modules.add(target)
            continue
        old, new = hit
        new_target = new.join(target.rsplit(old, 1))
        matching = [t for t in tensors if _module_leaf(t)
                    and not _excluded(_module_leaf(t), t.role == "lm_head", exclude, modules_to_save, notes)
                    and _list_match([target], _module_leaf(t), notes)]
        if matching and all(_is_linear(t) for t in matching):
            modules.add(target)
            if not any(_param_match([new_target], k, notes) for k in non_linear_keys):
                continue
        params.add(new_target)
        present.setdefault(new, set()).add(old)
    ranks = {}
    for new, required in _MOE_FUSED[family].items():
        got = present.get(new, set())
        if 0 < len(got) < len(required):
            raise UsageError(f"PEFT cannot target {', '.join(sorted(got))} without "
                             f"{', '.join(sorted(set(required) - got))}: they are fused into {new} in transformers 5")
        if len(got) == len(required) > 1:
            ranks[new] = len(required)
    if params:
        kept = sorted(m for m in modules if any(m == old or m.endswith("." + old) for old in mapping))
        notes.append(f"PEFT's transformers-v5 MoE conversion ({family}) targets parameters "
                     f"{sorted(params)} in place of the v4 names"
                     + (f" (and keeps {kept} as module targets: they name nn.Linear modules)" if kept else ""))
    return modules, params, ranks


# ----------------------------------------------------------------------------------------------- tensors


def _entry(of: str, suffix: str, shape: list[int], count: int) -> dict:
    return {"role": "adapter", "name": f"{of}.{suffix}", "of": of, "shape": shape, "count": count,
            "params": count * math.prod(shape)}


def _module_adapters(t: CensusEntry, r: int, dora: bool, lora_bias: bool) -> list[dict]:
    n, leaf = t.count, t.name
    if t.is_module:
        fan_in, fan_out = t.in_features, t.out_features
        out = [_entry(leaf, "lora_A", [r, fan_in], n), _entry(leaf, "lora_B", [fan_out, r], n)]
        if lora_bias:
            out.append(_entry(leaf, "lora_B.bias", [fan_out], n))
        if dora:
            out.append(_entry(leaf, "lora_magnitude_vector", [fan_out], n))
        return out
    num, dim = t.shape
    if lora_bias:
        raise UsageError("PEFT does not support lora_bias=True for Embedding layers")
    out = [_entry(leaf, "lora_embedding_A", [r, num], n), _entry(leaf, "lora_embedding_B", [dim, r], n)]
    if dora:
        out.append(_entry(leaf, "lora_magnitude_vector", [dim], n))
    return out


def _param_adapters(key: str, shape: list[int], count: int, r: int) -> list[dict]:
    if len(shape) == 3:
        experts, d1, d2 = shape
        return [_entry(key, "lora_A", [r * experts, d2], count), _entry(key, "lora_B", [d1, r * experts], count)]
    if len(shape) == 2:
        return [_entry(key, "lora_A", [r, shape[1]], count), _entry(key, "lora_B", [shape[0], r], count)]
    raise UsageError(f"PEFT can target only 2-D and 3-D parameters; {key} is {len(shape)}-D")


def _merge(entries: list[dict]) -> tuple[dict, ...]:
    out: dict[tuple, dict] = {}
    for e in entries:
        key = (e["name"], tuple(e["shape"]))
        if key in out:
            out[key]["count"] += e["count"]
            out[key]["params"] += e["params"]
        else:
            out[key] = dict(e)
    return tuple(sorted(out.values(), key=lambda e: (-e["params"], e["name"])))


# ----------------------------------------------------------------------------------------------- entry point


def lora_adapters(tensors: list[dict], *, rank: int, targets: str | list[str] | None = ALL_LINEAR,
                  dora: bool = False, model_type: str | None = None, modules_to_save: list[str] | None = None,
                  target_parameters: list[str] | None = None, exclude_modules: str | list[str] | None = None,
                  lora_bias: bool = False, bias: str = "none", use_rslora: bool = False,
                  adapter_dtype_bytes: int = 4) -> AdapterPlan:
    """The adapters ``get_peft_model(model, LoraConfig(r=rank, target_modules=targets, use_dora=dora, ...))``
    creates on the model whose census is ``tensors``. ``model_type`` (config.json) selects PEFT's default
    targets when ``targets`` is None and the transformers-v5 MoE conversion. ``use_rslora`` changes only the
    scaling, not the tensors. ``tensors``: census dicts (or ``CensusEntry``). Raises UsageError where PEFT would
    raise."""
    given = list(tensors)
    tensors = census_of(given)
    if rank <= 0:
        raise UsageError(f"LoRA rank must be a positive integer, got {rank}")
    if bias not in ("none", "all", "lora_only"):
        raise UsageError(f"bias must be 'none', 'all' or 'lora_only', got {bias!r}")
    if dora and lora_bias:
        raise UsageError("PEFT does not support lora_bias=True with DoRA")
    notes: list[str] = []
    family = MOE_CONVERSION_FAMILY.get(model_type or "")
    param_targets = set(target_parameters or ())
    ranks: dict[str, int] = {}

    if family is not None:
        if targets is None:
            raise UsageError(f"PEFT has no default LoRA targets for {model_type} under transformers 5 "
                             "(its MoE conversion empties them)", hint="name the target modules")
        module_targets, converted, ranks = _convert_v5_moe(family, targets, tensors, notes, exclude=exclude_modules,
                                                           modules_to_save=modules_to_save)
        param_targets |= converted
        targets = sorted(module_targets)
    elif targets is None:
        if model_type not in DEFAULT_TARGETS:
            raise UsageError(f"PEFT has no default LoRA target modules for model type {model_type!r}",
                             hint="name the target modules")
        targets = DEFAULT_TARGETS[model_type]

    all_linear = is_all_linear(targets)
    match = known_path_matcher(targets, notes)

    adapters: list[dict] = []
    matched: dict[tuple, dict] = {}
    trainable_bias = 0
    module_hit: set[int] = set()
    for i, t in enumerate(tensors):
        leaf = _module_leaf(t)
        top = t.role == "lm_head"
        if not leaf or _excluded(leaf, top, exclude_modules, modules_to_save, notes):
            continue
        if all_linear and not t.is_module:  # all-linear asks about Linear / Conv1D modules only
            continue
        if not match(leaf, top):
            continue
        if not (t.is_module or t.role == "embedding"):
            shape = list(t.shape) if t.shape is not None else None
            raise UsageError(f"PEFT cannot put LoRA on module {leaf!r} (it holds {t.name}, shape {shape}): "
                             "hfmem models LoRA on Linear, Conv1D and Embedding modules only (PEFT also on Conv)",
                             hint="target its parameters with target_parameters, or drop it")
        r = rank * ranks.get(leaf, 1)
        module_hit.add(i)
        adapters += _module_adapters(t, r, dora, lora_bias)
        kind = "embedding" if t.role == "embedding" else "conv1d" if t.conv1d else "linear"
        m = matched.setdefault((leaf, kind, r), {"name": leaf, "count": 0, "kind": kind, "rank": r})
        m["count"] += t.count
        if bias == "lora_only" and t.is_module:
            trainable_bias += t.count * t.bias

    if param_targets:
        if dora:
            raise UsageError("PEFT's LoRA on parameters (target_parameters, or the MoE conversion) does not "
                             "support DoRA")
        if lora_bias:
            raise UsageError("PEFT's LoRA on parameters does not support lora_bias=True")
        notes.append("LoRA on parameters requires lora_dropout=0 in PEFT")
        for i, t in enumerate(tensors):
            for key, shape in _param_keys(t):
                if not _param_match(param_targets, key, notes):
                    continue
                if i in module_hit:
                    raise UsageError(f"PEFT cannot target parameter {key} of a module that target_modules "
                                     "already adapts")
                r = rank * ranks.get(key.rpartition(".")[2], 1)
                adapters += _param_adapters(key, shape, t.count, r)
                m = matched.setdefault((key, "parameter", r), {"name": key, "count": 0, "kind": "parameter",
                                                               "rank": r})
                m["count"] += t.count

    if not matched:
        raise UsageError(f"no module of this model matches the LoRA targets {targets!r}"
                         + (f" / parameters {sorted(param_targets)}" if param_targets else ""),
                         hint="PEFT raises here too; check the names (regexes are matched on leaf names)")

    saved: list[dict] = []
    saved_ids: set[int] = set()
    for m in modules_to_save or ():
        found = False
        for i, t in enumerate(tensors):
            leaf = _module_leaf(t)
            if not leaf or i in saved_ids or not _saved_match(m, leaf, notes):
                continue
            found = True
            saved_ids.add(i)
            for key, shape in _param_keys(t):  # a tied weight's copy is a new tensor: full size
                saved.append({"role": "modules_to_save", "name": key, "of": leaf, "shape": shape,
                              "count": t.count, "params": t.count * math.prod(shape)})
        if not found:
            notes.append(f"modules_to_save {m!r}: no module holding parameters matches (containers are not "
                         "counted)")

    if bias == "all":  # every ``*.bias``; those of modules_to_save originals stay frozen (the copies train)
        for i, t in enumerate(tensors):
            if i in saved_ids:
                continue
            if t.is_module:
                trainable_bias += t.count * t.bias if t.params else 0
            elif t.name == "bias" or t.name.endswith(".bias"):
                trainable_bias += t.params

    return AdapterPlan(
        adapters=_merge(adapters),
        matched_modules=tuple(sorted(matched.values(), key=lambda m: (m["kind"], m["name"], m["rank"]))),
        frozen=tuple(dict(t) for t in given),
        saved=_merge(saved),
        rank=rank,
        dora=dora,
        adapter_dtype_bytes=adapter_dtype_bytes,
        trainable_base_params=trainable_bias,
        notes=tuple(notes),
    )
