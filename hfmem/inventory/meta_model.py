"""Measure a transformers model built on the meta device. Imports torch and transformers lazily.

Why ``torch.device("meta")`` and not accelerate's ``init_empty_weights()``: with transformers 5 the latter
breaks tied weights (an LM head tied to the embedding is counted twice, T5's shared embedding three times)
and first allocates fused MoE expert tensors on the CPU (30 GB for DeepSeek-V3). Under the meta device
context every tensor, parameter or buffer, is created on meta directly, and ``tie_weights`` still shares
the Parameter objects. (Both are measured in tests/test_accelerate_compat.py and tests/test_inventory.py.)
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from typing import Any

from ..errors import ConfigError, RemoteCodeError, UnsupportedArchitectureError
from .model import AccelerateView, layer_candidates, measured



@contextlib.contextmanager
def _quiet():
    """transformers warns about config quirks of old checkpoints; those are not the user's concern here."""
    import transformers

    previous = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers.logging.set_verbosity(previous)


def versions() -> dict[str, str]:
    """Installed torch/transformers versions, read from package metadata (no import)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers"):
        try:
            out[pkg] = version(pkg).split("+")[0]
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def known_model_type(model_type: str | None) -> bool:
    from ..metadata.transformers_facts import known_model_types

    shipped = known_model_types()  # no transformers (and torch) import just to learn a type is unknown
    if shipped is not None:
        return model_type in shipped
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return model_type in CONFIG_MAPPING_NAMES


def make_config(config: dict):
    """A transformers config object from a config.json dict (model_type must be known to transformers)."""
    from transformers import AutoConfig

    rest = {k: v for k, v in config.items() if k != "model_type"}
    with _quiet():
        return AutoConfig.for_model(config["model_type"], **rest)


def _model_class(architecture: str | None, config_obj):
    import transformers

    cls = getattr(transformers, architecture, None) if architecture else None
    if cls is not None and hasattr(cls, "_from_config"):
        return cls
    from transformers import AutoModel, AutoModelForCausalLM

    if architecture and architecture.endswith(("ForCausalLM", "LMHeadModel")):
        return AutoModelForCausalLM
    return AutoModel


def _instantiate(cls, config_obj, **kwargs):
    import torch

    with _quiet(), torch.device("meta"):
        if hasattr(cls, "_from_config"):  # a concrete model class
            return cls._from_config(config_obj, dtype=torch.float32)
        return cls.from_config(config_obj, dtype=torch.float32, **kwargs)  # an Auto* class


def _config_refusal(exc: Exception) -> str:
    """transformers' reason for refusing a config, on one line: its strict dataclasses put the field on the
    first line and the type error on the next (``Validation error for field 'x':`` / ``TypeError: ...``)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (" ".join(lines[:2]) or exc.__class__.__name__)[:240]


def missing_package(exc: ImportError) -> str:
    """The package an ImportError asks for: its ``name``, else the first package transformers' requirement
    message names (``requires the timm library``), else "the library it names"."""
    if getattr(exc, "name", None):
        return str(exc.name).split(".")[0]
    import re

    found = re.search(r"requires the (\S+) library", str(exc))
    return found.group(1) if found else "a library transformers does not install (see its error)"


def build_model(config: dict, architecture: str | None, origin: str = "config.json"):
    """Build the class the repo names in ``architectures`` (so a causal LM includes its head) on meta."""
    try:
        config_obj = make_config(config)
    except Exception as exc:  # the values come from config.json: whatever transformers refuses is the input's
        where = origin if origin.endswith("config.json") else f"config.json from {origin}"
        raise ConfigError(
            f"{where}: transformers' {config.get('model_type')} configuration refuses it ({_config_refusal(exc)})",
            hint="fix the file or re-download it") from None
    cls = _model_class(architecture, config_obj)
    # A config whose class forces tying against config.json (T5) is built untied as its checkpoint holds it;
    # on a copy, so that the returned config object stays what AutoConfig gives (accelerate's view builds on it).
    built_config = copy.deepcopy(config_obj) if _config_unties(config, config_obj) else config_obj
    untied = built_config is not config_obj and checkpoint_untied(config, built_config)
    try:
        model = _instantiate(cls, built_config)
    except ImportError as exc:  # a backbone from another library (DETR: timm; LayoutLMv2: detectron2)
        raise UnsupportedArchitectureError(
            f"transformers needs {missing_package(exc)} to build {architecture or config.get('model_type')}",
            hint=f"pip install {missing_package(exc)}") from None
    except Exception as exc:  # transformers raises many kinds for configs it cannot build
        raise UnsupportedArchitectureError(
            f"transformers could not build {architecture or config.get('model_type')} from this config "
            f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:160]})",
            hint="check config.json, or upgrade transformers",
        ) from None
    if untied:
        retie_input_embeddings(model)
    return model, config_obj


# The note an inventory carries when ``checkpoint_untied`` applied (``untied_note``).
UNTIED_NOTE = ("config.json unties lm_head (tie_word_embeddings: false); counted as the checkpoint holds it — "
               "transformers {version} ties it to the shared embedding when building the model from the config")


def _config_unties(config: dict, config_obj) -> bool:
    """config.json says ``tie_word_embeddings: false`` and the configuration class says True anyway.

    T5Config (and MT5, LongT5, Pop2Piano) in transformers 5.24 sets ``self.tie_word_embeddings = True`` whatever
    the file says (configuration_t5.py: "we tie weights always"), while google/flan-t5-xl's config.json says
    false and its checkpoint holds lm_head.weight apart from shared.weight. Not the case where the class only
    forwards an older file's ``text_config.tie_word_embeddings: true`` to the top level (Qwen2.5-VL, GLM-4V):
    there the file itself asks for tying."""
    text = config.get("text_config")
    forwarded = isinstance(text, dict) and text.get("tie_word_embeddings") is True
    return (config.get("tie_word_embeddings") is False and not forwarded
            and getattr(config_obj, "tie_word_embeddings", None) is True)


def checkpoint_untied(config: dict, config_obj) -> bool:
    """When config.json (``config``) says ``tie_word_embeddings: false`` and the built configuration object
    says True (``_config_unties``), set the object's flag to False, as the checkpoint holds it, and return True.
    A model built from it then has every entry of its class's ``_tied_weights_keys`` untied: call
    ``retie_input_embeddings`` on it."""
    if not _config_unties(config, config_obj):
        return False
    config_obj.tie_word_embeddings = False
    return True


def untied_note(config: dict, config_obj) -> str | None:
    """The inventory note for a model ``build_model`` built untied (``config_obj``: the object it returns,
    as AutoConfig made it); None when ``checkpoint_untied`` does not apply."""
    return UNTIED_NOTE.format(version=versions()["transformers"]) if _config_unties(config, config_obj) else None


def retie_input_embeddings(model) -> None:
    """Tie again what a model built with ``tie_word_embeddings=False`` left apart, except its output embeddings.

    With the flag False, transformers 5.24 (``get_expanded_tied_weights_keys``) unties every entry of the
    class's ``_tied_weights_keys``: for T5ForConditionalGeneration that is ``encoder.embed_tokens.weight``,
    ``decoder.embed_tokens.weight`` and ``lm_head.weight`` (2,981,353,472 parameters for flan-t5-xl). The
    checkpoint holds one shared embedding for the encoder and decoder inputs and a separate LM head
    (2,849,757,184): each target except the output embeddings' weight gets its source Parameter back."""
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    out_weight = getattr(out, "weight", None) if out is not None else None
    for target, source in (getattr(model, "_tied_weights_keys", None) or {}).items():
        try:  # plain names only; a class naming regex patterns there is not of the T5 kind
            source_param = model.get_parameter(source)
            target_param = model.get_parameter(target)
        except AttributeError:
            continue
        if out_weight is not None and target_param is out_weight:
            continue
        owner, _, attr = target.rpartition(".")
        setattr(model.get_submodule(owner), attr, source_param)


def accelerate_model(auto_map: dict, config_obj, built, *, trust_remote_code: bool = False):
    """The model ``accelerate estimate-memory`` would build: the first ``AutoModelFor*`` class named in
    ``auto_map``, else ``AutoModel`` (accelerate/commands/estimate.py, ``create_empty_model``).
    Returns ``built`` itself when that is the same class, None when the auto class cannot build it."""
    import transformers

    auto_name = next((k for k in (auto_map or {}) if k.startswith("AutoModelFor")), "AutoModel")
    auto_cls = getattr(transformers, auto_name, transformers.AutoModel)
    try:
        other = _instantiate(auto_cls, config_obj, **({"trust_remote_code": True} if trust_remote_code else {}))
    except Exception:  # e.g. a config the auto class has no mapping for: no accelerate view
        return None
    return built if type(other) is type(built) else other


def build_remote_code_model(location: str, architecture: str | None, *, revision: str | None, token: Any):
    """Run the repository's own modeling code (only with --trust-remote-code)."""
    import transformers
    from transformers import AutoConfig

    try:
        with _quiet():
            config_obj = AutoConfig.from_pretrained(location, trust_remote_code=True, revision=revision, token=token)
        auto_map = getattr(config_obj, "auto_map", None) or {}
        key = next((k for k, v in auto_map.items() if architecture and v.endswith("." + architecture)), None)
        key = key or next((k for k in auto_map if k.startswith("AutoModelFor")), "AutoModel")
        # The modeling module at the same commit as the config (transformers fetches it at main otherwise); a
        # reference into another repo ("org/repo--module.Class") is that repo's code, at its own default branch
        # (hfmem.api names it in a note).
        pinned = {"code_revision": revision} if revision and "--" not in str(auto_map.get(key, "")) else {}
        model = _instantiate(getattr(transformers, key), config_obj, trust_remote_code=True, **pinned)
        return model, config_obj
    except Exception as exc:
        raise RemoteCodeError(
            f"the repository's custom code failed to build the model ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else ''})",
            hint="run without --trust-remote-code to count from the safetensors headers",
        ) from None


def _accel_size(t) -> float:
    # accelerate.utils.modeling.dtype_byte_size: bool is 1/8 byte, everything else its element size.
    import torch

    return t.numel() / 8 if t.dtype == torch.bool else t.numel() * t.element_size()


def _module_sums(model):
    """Per module prefix: parameters (tied ones once), buffer bytes, and accelerate's byte count."""
    params: dict[str, int] = {}
    bufs: dict[str, int] = {}
    accel: dict[str, float] = {}

    def add(name: str, n: int, b: int, a: float) -> None:
        parts = name.split(".")
        for i in range(len(parts) + 1):
            key = ".".join(parts[:i])
            params[key] = params.get(key, 0) + n
            bufs[key] = bufs.get(key, 0) + b
            accel[key] = accel.get(key, 0) + a

    for name, p in model.named_parameters():  # remove_duplicate=True: a tied weight appears once
        add(name, p.numel(), 0, _accel_size(p))
    for name, b in model.named_buffers():
        add(name, 0, b.numel() * b.element_size(), _accel_size(b))
    return params, bufs, accel


def _layer_candidates(model, no_split: set[str]) -> list[str]:
    """``model.layer_candidates`` over the built modules."""
    import torch

    def children_of(name: str, mod) -> list[tuple[str, Any]]:
        if not isinstance(mod, torch.nn.Module):
            return []  # a parameter or buffer of the root
        return [(f"{name}.{n}", c) for n, c in mod.named_children()]

    root = (list(model.named_parameters(recurse=False)) + list(model.named_children())
            + list(model.named_buffers(recurse=False)))
    return layer_candidates(root, children_of, lambda mod: mod.__class__.__name__ in no_split)


def _no_split(model) -> set[str]:
    ns = getattr(model, "_no_split_modules", None) or []
    return set(ns)


def _tied(model) -> tuple[list[list[str]], int]:
    """Tied weights: one Parameter reachable under several names. Returns the name groups and the
    parameters a per-name count would add twice."""
    by_id: dict[int, list[str]] = {}
    sizes: dict[int, int] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(name)
        sizes[id(p)] = p.numel()
    groups = [names for names in by_id.values() if len(names) > 1]
    return groups, sum(sizes[i] * (len(n) - 1) for i, n in by_id.items() if len(n) > 1)


def accelerate_view(model) -> AccelerateView:
    """accelerate's figures for the class it builds (its tied weights, not necessarily ours)."""
    _, _, accel = _module_sums(model)
    best, names = 0.0, []
    for name in _layer_candidates(model, _no_split(model)):
        size = accel.get(name, 0)
        if size > best:
            best, names = size, [name]
        elif size == best:
            names.append(name)
    total = accel.get("", 0)
    return AccelerateView(type(model).__name__, int(total) if total == int(total) else total,
                          int(best) if best == int(best) else best, names, _tied(model)[1])


def census(model) -> list[dict]:
    """Every parameter once, grouped by role and shape (``census_groups``), from the built model."""
    import torch

    from .census_groups import ModuleParams, group_census

    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers always has it
        Conv1D = ()
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None

    def kind(mod) -> str:
        if isinstance(mod, torch.nn.Linear):
            return "linear"
        if Conv1D and isinstance(mod, Conv1D):
            return "conv1d"
        return "embedding" if isinstance(mod, torch.nn.Embedding) else "other"

    return group_census(
        ModuleParams(name, type(mod).__name__, kind(mod),
                     tuple((p_name, id(p), tuple(p.shape)) for p_name, p in mod.named_parameters(recurse=False)),
                     output_embedding=mod is out_emb)
        for name, mod in model.named_modules())


def measure(model) -> dict:
    """Everything the inventory keeps about a built model."""
    params, bufs, _ = _module_sums(model)
    persistent = non_persistent = 0
    for mod_name, mod in model.named_modules():
        np_names = getattr(mod, "_non_persistent_buffers_set", set())
        for b_name, b in mod.named_buffers(recurse=False):
            nbytes = b.numel() * b.element_size()
            if b_name in np_names:
                non_persistent += nbytes
            else:
                persistent += nbytes
    tied, tied_params = _tied(model)
    no_split = _no_split(model)
    return measured(architecture=type(model).__name__, params=params, bufs=bufs,
                    paths=[n for n, _ in model.named_modules()], candidates=_layer_candidates(model, no_split),
                    persistent=persistent, non_persistent=non_persistent, tied=tied, tied_params=tied_params,
                    no_split=no_split, tensors=census(model))
