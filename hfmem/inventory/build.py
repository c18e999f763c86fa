"""Choose how to count a model and produce its Inventory.

Order: the repository's own code (only with --trust-remote-code) → for a family whose module tree ships as
data (hfmem/data/module_structures.json), the safetensors headers with that tree, no torch imported
(``headers.exact_measure``: the same figures as the meta model, tests/test_headers_exact.py) →
transformers' implementation of the config's model_type on the meta device → a provably identical
transformers architecture for known custom-code families (``metadata.custom_maps``) → the safetensors headers
alone. Whenever headers are available, the count is checked against them.
"""

from __future__ import annotations

from ..errors import ConfigError, HfmemError, UnsupportedArchitectureError
from ..metadata.config import ModelConfig, require_sizes
from ..metadata.custom_maps import map_custom_config
from ..metadata.safetensors import DTYPE_NAMES, CheckpointHeaders
from .headers import exact_measure, inventory_from_headers, is_buffer_name, parameter_elements
from .model import AccelerateView, Inventory

# The method (and note) of an inventory counted from the headers with the recorded module tree: its figures are
# the meta model's (tests/test_headers_exact.py), its ``accelerate`` view is built on demand (``accelerate_view_for``).
HEADERS_EXACT = "headers-exact"
HEADERS_EXACT_NOTE = ("counted from the safetensors headers with transformers' module tree for this class "
                      "(shipped data); no model was built")


def _dtypes_from_headers(headers: CheckpointHeaders) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in headers.tensors():
        if not is_buffer_name(t.name):
            name = DTYPE_NAMES[t.dtype]
            out[name] = out.get(name, 0) + t.numel
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _with_versions(inv: Inventory) -> Inventory:
    from .meta_model import versions

    inv.versions = versions()
    return inv


def counted_without_model(inv: Inventory) -> bool:
    return inv.method == HEADERS_EXACT


def accelerate_view_for(config: dict) -> AccelerateView | None:
    """The accelerate view of a model counted from its headers: built on the meta device now (``--compat
    accelerate`` asks for the class accelerate builds, which the headers do not describe)."""
    from . import meta_model

    archs = config.get("architectures")
    arch = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else None
    model, config_obj = meta_model.build_model(config, arch)
    auto_map = config.get("auto_map") if isinstance(config.get("auto_map"), dict) else {}
    accel_model = meta_model.accelerate_model(auto_map, config_obj, model)
    return meta_model.accelerate_view(accel_model) if accel_model is not None else None


def build_inventory(
    config: ModelConfig,
    headers: CheckpointHeaders | None,
    *,
    trust_remote_code: bool = False,
    code_location: str | None = None,
    revision: str | None = None,
    token=None,
    headers_only: bool = False,
    meta_model: bool = False,
) -> Inventory:
    """``meta_model=True`` builds the model even where the headers would answer (``Options.meta_model``)."""
    force_meta = meta_model
    from . import meta_model  # torch/transformers are imported inside its functions, only when used

    if headers_only:
        if headers is None:
            raise UnsupportedArchitectureError(
                f"--headers-only needs safetensors files, and {config.origin} has none",
                hint="drop --headers-only to count from the model definition")
        inv = inventory_from_headers(headers, config.raw, ["--headers-only: model code not built"])
        inv.versions = meta_model.versions()
        return inv

    raw = config.raw
    if not (config.has_remote_code and trust_remote_code):  # the repository's own code may name sizes anyhow
        require_sizes(raw, config.origin)
    notes: list[str] = []
    mapped_from: str | None = None
    arch: str | None = None
    if (headers is not None and not force_meta and not (config.has_remote_code and trust_remote_code)
            and not config.quantization):
        m, _why = exact_measure(headers, raw)  # _why: the meta model answers instead (never a guess)
        if m is not None:
            if config.has_remote_code:
                notes.append(f"the repository ships custom code (auto_map); counted with transformers' own "
                             f"'{raw.get('model_type')}' implementation (pass --trust-remote-code to run the "
                             "repository's)")
            from ..metadata.transformers_facts import load_structures

            # No torch and no transformers ran: the figures follow the module trees recorded from this
            # transformers release (reading the installed version would cost ~10 ms of imports for nothing).
            recorded = {"torch": None, "transformers": load_structures()["transformers"]}
            inv = _assemble(config, headers, m, HEADERS_EXACT, notes, None, None, versions=recorded)
            inv.notes.append(HEADERS_EXACT_NOTE)
            return inv
    if config.has_remote_code and trust_remote_code:
        if code_location is None:
            raise HfmemError("--trust-remote-code needs the repository's code, which this source does not have",
                             hint="pass a Hub repo id with the network on, or a folder containing the .py files")
        model, config_obj = meta_model.build_remote_code_model(code_location, config.architecture,
                                                               revision=revision, token=token)
        method = "remote-code"
        notes.append("built with the repository's own modeling code (--trust-remote-code)")
    else:
        model_type = raw.get("model_type")
        if not model_type:
            if headers is not None:
                return _with_versions(inventory_from_headers(headers, raw, ["config.json has no model_type"]))
            raise ConfigError(f"config.json from {config.origin} has no model_type",
                              hint="it is not a transformers config; point hfmem at a transformers model")
        cfg, arch, method = raw, config.architecture, "meta-model"
        if meta_model.known_model_type(model_type):
            if config.has_remote_code:
                notes.append(f"the repository ships custom code (auto_map); counted with transformers' own "
                             f"'{model_type}' implementation (pass --trust-remote-code to run the repository's)")
        else:
            mapped = map_custom_config(raw)
            if mapped is None:
                if headers is not None:
                    return _with_versions(inventory_from_headers(headers, raw, [
                        f"model_type '{model_type}' is not in transformers {meta_model.versions()['transformers']} "
                        "and its custom code was not run"]))
                raise UnsupportedArchitectureError(
                    f"model_type '{model_type}' is not in transformers {meta_model.versions()['transformers']}, "
                    "maps to no transformers architecture, and no safetensors headers are available",
                    hint="pass --trust-remote-code (runs the repository's code) or a folder with *.safetensors")
            cfg = dict(mapped.config, model_type=mapped.model_type)
            arch, method, mapped_from = mapped.architecture, "meta-model (mapped)", model_type
            notes.append(f"custom code not run: {mapped.why}, built as {arch}; buffers the custom code creates "
                         "(e.g. rotary caches) are not counted (pass --trust-remote-code to include them)")
        model, config_obj = meta_model.build_model(cfg, arch, config.origin)
        untied = meta_model.untied_note(cfg, config_obj)  # T5: built as the checkpoint holds lm_head
        if untied:
            notes.append(untied)

    m = meta_model.measure(model)
    accel_model = meta_model.accelerate_model(config.auto_map, config_obj, model,
                                              trust_remote_code=(method == "remote-code"))
    accel = meta_model.accelerate_view(accel_model) if accel_model is not None else None
    return _assemble(config, headers, m, method, notes, mapped_from, accel, arch=arch)


def _assemble(config: ModelConfig, headers: CheckpointHeaders | None, m: dict, method: str, notes: list[str],
              mapped_from: str | None, accel: AccelerateView | None, *, arch: str | None = None,
              versions: dict | None = None, loader: str = "transformers") -> Inventory:
    """The inventory of a measured model (``meta_model.measure`` or ``headers.exact_measure``), checked
    against the headers. ``versions``: of what produced ``m``; default the installed torch/transformers.
    ``loader``: the library that loads it (named in the default-dtype note)."""
    from . import meta_model

    raw = config.raw
    params_by_dtype, dtype_source = None, None
    if headers is not None:
        stored = parameter_elements(headers)
        if stored in (m["num_params"], m["num_params"] + m["tied_params"]):
            notes.append(f"parameter count matches the safetensors headers ({stored:,} stored elements in "
                         f"{len(headers.files)} file(s))")
            params_by_dtype, dtype_source = _dtypes_from_headers(headers), "safetensors headers"
            if stored != m["num_params"]:
                notes.append("the checkpoint stores tied weights twice; they are loaded once")
                params_by_dtype = None  # per-dtype counts include the duplicate; fall back to config
        elif mapped_from is not None:
            return _with_versions(inventory_from_headers(headers, raw, [
                f"mapping '{mapped_from}' to {arch} gave {m['num_params']:,} parameters but the safetensors "
                f"headers hold {stored:,}; counted from the headers instead"]))
        else:
            notes.append(f"the safetensors headers hold {stored:,} elements against {m['num_params']:,} "
                         "parameters in the model (quantized or packed weights, extra tensors such as "
                         "multi-token-prediction layers, or a config that does not match the checkpoint)")
    if params_by_dtype is None:
        declared = config.declared_dtype
        if declared:
            params_by_dtype, dtype_source = {declared: m["num_params"]}, "config"
        else:
            params_by_dtype, dtype_source = {"float32": m["num_params"]}, "default"
            notes.append(f"config.json declares no dtype: {loader} loads float32 by default")
    q = config.quantization
    if q:
        notes.append(f"quantization_config ({q.get('quant_method', 'unknown')}): the table counts logical "
                     "parameters; stored bytes differ (see the checkpoint line, and `hfmem infer` for formats)")
    return Inventory(
        architecture=m["architecture"],
        model_type=raw.get("model_type"),
        method=method,
        num_params=m["num_params"],
        params_by_dtype=params_by_dtype,
        params_dtype_source=dtype_source,
        persistent_buffer_bytes=m["persistent_buffer_bytes"],
        non_persistent_buffer_bytes=m["non_persistent_buffer_bytes"],
        tied_weights=m["tied_weights"],
        tied_params=m["tied_params"],
        modules=m["modules"],
        layers=m["layers"],
        no_split_modules=m["no_split_modules"],
        accelerate=accel,
        checkpoint=headers.to_dict() if headers is not None else None,
        notes=notes,
        versions=versions if versions is not None else meta_model.versions(),
        tensors=m["tensors"],
    )
