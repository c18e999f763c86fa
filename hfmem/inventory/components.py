"""The inventory of each component of a composite repo (``hfmem.sources.composite``) and of the whole.

Per component, by what builds it:

* a transformers class (CLIPTextModel, T5EncoderModel, a sentence-transformers Transformer module):
  ``build.build_inventory`` on its config.json and headers, as for any transformers model;
* a diffusers class (UNet, DiT transformer, VAE, ControlNet, prior) or the Stable Diffusion safety checker:
  built with diffusers on the meta device (``diffusers_model``), checked against its headers;
* a timm network: built with timm on the meta device (``timm_model``);
* without the library (diffusers or timm not installed) or with ``--headers-only``: counted from the
  safetensors headers alone, which is exact for the parameters; without headers either, one clear error;
* a sentence-transformers Dense module without a header: ``in_features · out_features (+ out_features)``
  from its config.json, which is the whole of ``torch.nn.Linear``'s parameters.

The whole repo's inventory (``aggregate``) sums every component's, names prefixed with the component's name.
No torch at import.
"""

from __future__ import annotations

from ..errors import UnsupportedArchitectureError
from ..metadata.config import ModelConfig
from ..model import pipeline as P
from .model import Inventory, LayerGroup, MODULE_DEPTH, group_layers

PIPELINE_METHOD = "pipeline"
_WEIGHTLESS_SUFFIXES = ("Tokenizer", "TokenizerFast", "FeatureExtractor", "ImageProcessor", "ImageProcessorFast",
                        "Processor", "Scheduler", "VideoProcessor")


def role_of(key: str, library: str, class_name: str) -> str:
    """The part a model_index.json entry plays (``hfmem.model.pipeline`` roles), by its key and class."""
    if "Scheduler" in class_name or class_name.endswith(_WEIGHTLESS_SUFFIXES) or key in ("tokenizer", "scheduler") \
            or key.startswith(("tokenizer", "feature_extractor", "image_processor", "processor")):
        return P.WEIGHTLESS
    if class_name == "StableDiffusionSafetyChecker" or key == "safety_checker":
        return P.SAFETY_CHECKER
    if class_name.startswith("ControlNet") or "ControlNet" in class_name:
        return P.CONTROLNET
    if class_name.startswith("Autoencoder") or class_name == "VQModel":
        return P.VAE
    if key.startswith("text_encoder") and library == "transformers":
        return P.TEXT_ENCODER
    if key.startswith("image_encoder"):
        return P.IMAGE_ENCODER
    if library == "diffusers" and (class_name.startswith("UNet") or "Transformer" in class_name
                                   or "Prior" in class_name):
        return P.DENOISER
    return P.OTHER


# torch.nn.BatchNorm*'s buffers (torch/nn/modules/batchnorm.py registers running_mean, running_var and
# num_batches_tracked): timm's CNNs and diffusers' VQ/ResNet blocks store them in their checkpoints, and they are
# not parameters.
_NORM_BUFFERS = (".running_mean", ".running_var", ".num_batches_tracked")


def _from_headers(comp, notes: list[str]) -> Inventory:
    from ..metadata.safetensors import CheckpointHeaders, FileHeader
    from .headers import inventory_from_headers

    stats = [t for f in comp.headers.files for t in f.tensors if t.name.endswith(_NORM_BUFFERS)]
    counted = comp.headers
    if stats:
        counted = CheckpointHeaders([FileHeader(f.filename, [t for t in f.tensors if not t.name.endswith(_NORM_BUFFERS)],
                                                f.metadata) for f in comp.headers.files])
    inv = inventory_from_headers(counted, comp.config or {}, notes)
    inv.architecture = comp.class_name
    inv.model_type = None
    if stats:
        inv.persistent_buffer_bytes += sum(t.nbytes for t in stats)
        inv.checkpoint = comp.headers.to_dict()
        inv.notes.append(f"{len(stats)} BatchNorm running statistics in the headers counted as buffers, not "
                         "parameters")
    return inv


def _missing(comp, what: str, hint: str) -> UnsupportedArchitectureError:
    where = f"{comp.folder}/" if comp.folder else "the repo's root"
    return UnsupportedArchitectureError(f"{comp.name} ({comp.class_name}): {what}, and {where} has no "
                                        "safetensors weights to count from", hint=hint)


def _measured_inventory(comp, m: dict, lib_version: dict) -> Inventory:
    """A built model's measure, checked against the component's headers (``build._assemble``)."""
    from .build import _assemble

    origin = f"{comp.folder}/config.json" if comp.folder else "config.json"
    loader = "diffusers" if comp.library == "stable_diffusion" else comp.library or "transformers"
    inv = _assemble(ModelConfig(raw=comp.config or {}, origin=origin), comp.headers, m, "meta-model", [], None,
                    None, arch=comp.class_name, loader=loader)
    inv.model_type = (comp.config or {}).get("model_type") if isinstance((comp.config or {}).get("model_type"), str) \
        else None
    inv.versions = {**inv.versions, **lib_version}
    return inv


def _dense_from_config(comp) -> Inventory:
    cfg = comp.config or {}
    n_in, n_out, bias = cfg.get("in_features"), cfg.get("out_features"), cfg.get("bias", True)
    if not (isinstance(n_in, int) and isinstance(n_out, int) and n_in > 0 and n_out > 0):
        raise _missing(comp, "its config.json lacks in_features/out_features",
                       hint="re-download the module's config.json and model.safetensors")
    n = n_in * n_out + (n_out if bias else 0)
    name = "linear"
    return Inventory(architecture="Dense", model_type=None, method="sentence-transformers-config", num_params=n,
                     params_by_dtype={"float32": n}, params_dtype_source="default",
                     persistent_buffer_bytes=0, non_persistent_buffer_bytes=0,
                     modules={name: [n, 0]}, layers=[LayerGroup([name], n, 0)],
                     notes=[f"Dense {n_in}→{n_out}{' + bias' if bias else ''} counted from its config.json "
                            f"(torch.nn.Linear's parameters; activation {cfg.get('activation_function')}); "
                            "no safetensors header, float32 assumed"],
                     tensors=[{"role": "linear", "name": name, "in_features": n_in, "out_features": n_out,
                               "bias": n_out if bias else 0, "tied": False, "conv1d": False, "count": 1,
                               "params": n}])


def component_inventory(comp, opts) -> Inventory | None:
    """The inventory of one component (None for weightless ones)."""
    from . import diffusers_model, timm_model
    from .build import build_inventory

    if comp.role in (P.WEIGHTLESS, P.POOLING, P.NORMALIZE):
        return None
    if opts.headers_only:
        if comp.headers is None:
            raise _missing(comp, "--headers-only counts from safetensors headers",
                           hint="drop --headers-only to count from the model definition")
        return _from_headers(comp, ["--headers-only: model code not built"])
    if comp.library == "timm":
        if timm_model.available():
            from importlib.metadata import version

            return _measured_inventory(comp, timm_model.measure(comp.config, comp.folder or "config.json"),
                                       {"timm": version("timm")})
        if comp.headers is None:
            raise _missing(comp, "timm is not installed (it builds the network)", hint=timm_model.INSTALL_HINT)
        return _from_headers(comp, [f"{timm_model.INSTALL_HINT} for the module tree; parameters counted exactly "
                                    "from the safetensors headers"])
    if comp.role == P.DENSE:
        if comp.headers is None:
            return _dense_from_config(comp)
        inv = _from_headers(comp, [])
        inv.architecture = "Dense"
        return inv
    if comp.library == "transformers" and comp.model_config is not None:
        inv = build_inventory(comp.model_config, comp.headers, headers_only=opts.headers_only,
                              meta_model=opts.meta_model)
        return inv
    # diffusers models, the safety checker, and anything else a model_index.json names
    if diffusers_model.available() and (comp.library == "diffusers" or comp.class_name == diffusers_model.SAFETY_CHECKER):
        if diffusers_model.model_class(comp.class_name) is not None:
            origin = f"{comp.folder}/config.json"
            return _measured_inventory(comp, diffusers_model.measure(comp.class_name, comp.config or {}, origin),
                                       {"diffusers": diffusers_model.version()})
        if comp.headers is None:
            raise _missing(comp, f"diffusers {diffusers_model.version()} has no class {comp.class_name}",
                           hint="upgrade diffusers, or download the component's safetensors weights")
        return _from_headers(comp, [f"diffusers {diffusers_model.version()} has no class {comp.class_name}: "
                                    "counted from the safetensors headers"])
    if comp.headers is None:
        if comp.library == "diffusers" or comp.class_name == diffusers_model.SAFETY_CHECKER:
            raise _missing(comp, "diffusers is not installed (it builds the model)", hint=diffusers_model.INSTALL_HINT)
        raise _missing(comp, f"hfmem cannot build {comp.library}'s {comp.class_name}",
                       hint="download the component's safetensors weights")
    if comp.library == "diffusers" or comp.class_name == diffusers_model.SAFETY_CHECKER:
        why = f"diffusers is not installed ({diffusers_model.INSTALL_HINT} for the module tree)"
    else:
        why = f"{comp.library}'s {comp.class_name} is not built by hfmem"
    return _from_headers(comp, [f"{why}; parameters counted exactly from the safetensors headers"])


def build_layout(composite, opts, progress=None) -> P.Layout:
    comps = []
    for c in composite.components:
        if progress and c.role not in (P.WEIGHTLESS, P.POOLING, P.NORMALIZE):
            progress(f"counting {c.name} ({c.class_name})")
        inv = component_inventory(c, opts)
        comps.append(P.Component(name=c.name, library=c.library, class_name=c.class_name, role=c.role,
                                 folder=c.folder, config=c.config, inventory=inv, notes=list(c.notes)))
    return P.Layout(kind=composite.kind, class_name=composite.class_name, components=comps,
                    library_version=composite.library_version)


def _prefixed(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if name else prefix


def _sum_dicts(dicts) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _checkpoint(parts: list[dict]) -> dict | None:
    if not parts:
        return None
    out = {k: sum(p.get(k, 0) for p in parts) for k in ("files", "tensors", "elements", "bytes")}
    out["elements_by_dtype"] = _sum_dicts(p.get("elements_by_dtype", {}) for p in parts)
    out["bytes_by_dtype"] = _sum_dicts(p.get("bytes_by_dtype", {}) for p in parts)
    return out


def aggregate(layout: P.Layout, components=None) -> Inventory:
    """The whole repo as one inventory (method "pipeline"): every component's parameters and buffers summed,
    its modules, layers, tied weights and census groups named under the component's name."""
    parts = [(c.name, c.inventory) for c in (components or layout.components) if c.inventory is not None]
    modules: dict[str, list[int]] = {}
    candidates: list[tuple[str, int, int]] = []
    tensors: list[dict] = []
    tied: list[list[str]] = []
    notes: list[str] = []
    sources = set()
    for name, inv in parts:
        modules[name] = [inv.num_params, inv.buffer_bytes]
        for k, v in inv.modules.items():
            if _prefixed(name, k).count(".") < MODULE_DEPTH:
                modules[_prefixed(name, k)] = list(v)
        candidates += [(_prefixed(name, n), g.num_params, g.buffer_bytes) for g in inv.layers for n in g.names]
        tensors += [dict(t, name=_prefixed(name, t["name"])) for t in inv.tensors]
        tied += [[_prefixed(name, n) for n in group] for group in inv.tied_weights]
        sources.add(inv.params_dtype_source)
        notes.append(f"{name}: {inv.architecture}, {inv.num_params:,} parameters ({inv.method})")
    return Inventory(
        architecture=layout.class_name,
        model_type=None,
        method=PIPELINE_METHOD,
        num_params=sum(inv.num_params for _, inv in parts),
        params_by_dtype=_sum_dicts(inv.params_by_dtype for _, inv in parts),
        params_dtype_source=sources.pop() if len(sources) == 1 else "per component",
        persistent_buffer_bytes=sum(inv.persistent_buffer_bytes for _, inv in parts),
        non_persistent_buffer_bytes=sum(inv.non_persistent_buffer_bytes for _, inv in parts),
        tied_weights=tied,
        tied_params=sum(inv.tied_params for _, inv in parts),
        modules=modules,
        layers=group_layers(candidates),
        no_split_modules=sorted({m for _, inv in parts for m in inv.no_split_modules}),
        checkpoint=_checkpoint([inv.checkpoint for _, inv in parts if inv.checkpoint]),
        notes=notes,
        versions=_sum_versions([inv.versions for _, inv in parts]),
        tensors=tensors,
    )


def _sum_versions(all_versions: list[dict]) -> dict:
    out: dict = {}
    for v in all_versions:
        for k, x in v.items():
            if out.get(k) is None:
                out[k] = x
    return out


def with_dense(transformer: Inventory, layout: P.Layout) -> Inventory:
    """A sentence-transformers model's inventory: the Transformer module's, plus its Dense modules' parameters
    (so that serving and training keep reading the transformer's own figures). Without Dense modules it is the
    transformer's inventory unchanged."""
    dense = [c for c in layout.components if c.role == P.DENSE and c.inventory is not None]
    if not dense:
        return transformer
    inv = Inventory.from_dict(transformer.to_dict())
    for c in dense:
        d = c.inventory
        inv.num_params += d.num_params
        inv.params_by_dtype = _sum_dicts([inv.params_by_dtype, d.params_by_dtype])
        inv.persistent_buffer_bytes += d.persistent_buffer_bytes
        inv.modules[c.name] = [d.num_params, d.buffer_bytes]
        for k, v in d.modules.items():
            if _prefixed(c.name, k).count(".") < MODULE_DEPTH:
                inv.modules[_prefixed(c.name, k)] = list(v)
        candidates = [(n, g.num_params, g.buffer_bytes) for g in inv.layers for n in g.names]
        candidates += [(_prefixed(c.name, n), g.num_params, g.buffer_bytes) for g in d.layers for n in g.names]
        inv.layers = group_layers(candidates)
        inv.tensors = list(inv.tensors) + [dict(t, name=_prefixed(c.name, t["name"])) for t in d.tensors]
        if inv.checkpoint and d.checkpoint:
            inv.checkpoint = _checkpoint([inv.checkpoint, d.checkpoint])
        inv.notes.append(f"sentence-transformers Dense module {c.name}: {d.num_params:,} parameters added")
    return inv
