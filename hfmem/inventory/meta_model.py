"""Measure a transformers model built on the meta device. Imports torch and transformers lazily.

Why ``torch.device("meta")`` and not accelerate's ``init_empty_weights()``: with transformers 5 the latter
breaks tied weights (an LM head tied to the embedding is counted twice, T5's shared embedding three times)
and first allocates fused MoE expert tensors on the CPU (30 GB for DeepSeek-V3). Under the meta device
context every tensor, parameter or buffer, is created on meta directly, and ``tie_weights`` still shares
the Parameter objects. (Both are measured in tests/test_accelerate_compat.py and tests/test_inventory.py.)
"""

from __future__ import annotations

import contextlib
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
    try:
        return _instantiate(cls, config_obj), config_obj
    except Exception as exc:  # transformers raises many kinds for configs it cannot build
        raise UnsupportedArchitectureError(
            f"transformers could not build {architecture or config.get('model_type')} from this config "
            f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:160]})",
            hint="check config.json, or upgrade transformers",
        ) from None


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
