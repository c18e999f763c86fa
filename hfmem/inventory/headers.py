"""Inventory from safetensors headers alone: no torch, no model code.

Used for custom-code models that hfmem may not run and that map to no transformers architecture, and as
the cross-check of every meta-model inventory. What headers cannot tell: buffers that the modeling code
creates at init (rotary caches, masks), and whether an LM head is tied when the checkpoint omits it.
"""

from __future__ import annotations

import re

from ..metadata.safetensors import DTYPE_NAMES, CheckpointHeaders
from .model import Inventory, group_layers

# Tensors that checkpoints sometimes carry but that are buffers, not parameters, in the model code.
_BUFFER_NAME = re.compile(r"(inv_freq|rotary_emb|cos_cached|sin_cached|position_ids|masked_bias|\.attn\.bias$)")


def is_buffer_name(name: str) -> bool:
    return bool(_BUFFER_NAME.search(name))


def _layer_key(tensor_name: str) -> str:
    """The accelerate-style layer a tensor belongs to, guessed from its name: a numbered block
    (``model.layers.3``, ``transformer.h.3``) is a residual group; anything else its leaf module."""
    parts = tensor_name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1]) or tensor_name


def parameter_elements(headers: CheckpointHeaders) -> int:
    return sum(t.numel for t in headers.tensors() if not is_buffer_name(t.name))


def census_from_headers(headers: CheckpointHeaders) -> list[dict]:
    """``meta_model.census`` guessed from tensor names and shapes (no model code): a 2-D ``*.weight`` is a
    linear layer [out, in] unless its name says embedding / lm_head / router; 3-D tensors are fused experts;
    the rest (norms, biases) is ``other``. Biases are kept apart (role ``other``), not folded into their
    linear layer. Used only for unquantized checkpoints; a packed checkpoint's shapes are not logical."""
    groups: dict[tuple, dict] = {}
    for t in headers.tensors():
        if is_buffer_name(t.name):
            continue
        parts = t.name.split(".")
        leaf = parts[-2] if len(parts) > 1 else parts[-1]
        shape = list(t.shape)
        if len(shape) == 2 and parts[-1] == "weight":
            if "embed" in leaf or leaf in ("wte", "wpe", "word_embeddings", "position_embeddings"):
                role = "embedding"
            elif leaf in ("lm_head", "output", "embed_out"):
                role = "lm_head"
            elif leaf in ("gate", "router") and shape[0] <= 512:
                role = "router"
            else:
                role = "linear"
        elif len(shape) == 3:
            role = "experts"
        else:
            role = "other"
        if role in ("linear", "lm_head", "router"):
            key = (role, leaf, shape[1], shape[0])
            entry = {"role": role, "name": leaf, "in_features": shape[1], "out_features": shape[0], "bias": 0,
                     "tied": False, "conv1d": False}
        else:
            name = leaf if role == "embedding" else f"{leaf}.{parts[-1]}"
            key = (role, name, tuple(shape))
            entry = {"role": role, "name": name, "shape": shape}
        g = groups.setdefault(key, dict(entry, count=0, params=0))
        g["count"] += 1
        g["params"] += t.numel
    return sorted(groups.values(), key=lambda g: (-g["params"], g["role"], g["name"]))


def inventory_from_headers(headers: CheckpointHeaders, config: dict, notes: list[str]) -> Inventory:
    sizes: dict[str, int] = {}
    modules: dict[str, list[int]] = {}
    by_dtype: dict[str, int] = {}
    buffer_bytes = 0
    for t in headers.tensors():
        if is_buffer_name(t.name):
            buffer_bytes += t.nbytes
            continue
        key = _layer_key(t.name)
        sizes[key] = sizes.get(key, 0) + t.numel
        name = DTYPE_NAMES[t.dtype]
        by_dtype[name] = by_dtype.get(name, 0) + t.numel
        parts = t.name.split(".")
        for i in range(1, min(len(parts), 4)):
            mod = ".".join(parts[:i])
            modules.setdefault(mod, [0, 0])[0] += t.numel
    # config.json is the user's file: only a list whose first item is a name names the architecture.
    config = config if isinstance(config, dict) else {}
    archs, model_type = config.get("architectures"), config.get("model_type")
    architecture = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else "unknown"
    notes = list(notes) + [
        "counted from safetensors headers (stored tensors); buffers the modeling code creates at load time "
        "are not included",
    ]
    quantized = bool(config.get("quantization_config")) or any(
        k.startswith(("int", "uint", "float8", "float4")) for k in by_dtype)
    if quantized:
        notes.append("quantized checkpoint: counts are stored elements (packed weights, scales), "
                     "not logical parameters")
    return Inventory(
        architecture=architecture,
        model_type=model_type if isinstance(model_type, str) else None,
        method="safetensors-headers",
        num_params=sum(by_dtype.values()),
        params_by_dtype=dict(sorted(by_dtype.items(), key=lambda kv: -kv[1])),
        params_dtype_source="safetensors headers",
        persistent_buffer_bytes=buffer_bytes,
        non_persistent_buffer_bytes=0,
        modules=modules,
        layers=group_layers([(k, n, 0) for k, n in sizes.items()]),
        checkpoint=headers.to_dict(),
        notes=notes,
        tensors=[] if quantized else census_from_headers(headers),
    )
