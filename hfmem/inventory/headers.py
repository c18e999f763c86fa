"""Inventory from safetensors headers alone: no torch, no model code.

Used for custom-code models that hfmem may not run and that map to no transformers architecture, and as
the cross-check of every meta-model inventory. What headers cannot tell: buffers that the modeling code
creates at init (rotary caches, masks), and whether an LM head is tied when the checkpoint omits it.
"""

from __future__ import annotations

import math
import re

from ..metadata.safetensors import DTYPE_NAMES, CheckpointHeaders, printable_name as printable
from .model import Inventory, group_layers, layer_candidates, measured

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


# -- the exact inventory from headers (no torch) ---------------------------------------------------------------
# For the families whose module tree transformers_facts recorded (hfmem/data/module_structures.json), the
# headers give every parameter's shape; the tree gives the modules without parameters (rotary embeddings,
# activations, dropouts), their classes (Linear / Conv1D / Embedding, the _no_split_modules residual groups),
# the tied weights and the buffers' rules. ``exact_measure`` returns what ``meta_model.measure`` returns for
# the model transformers would build, or the reason it cannot (then the meta model is built).
# tests/test_headers_exact.py asserts equality with the meta model on every snapshot config it answers.

_DTYPE_BYTES = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "int16": 2,
                "int8": 1, "uint8": 1, "bool": 1}


def _join(a: str, b: str) -> str:
    return f"{a}.{b}" if a else b


def _block_count(config: dict) -> int | None:
    from ..model import describe

    try:
        description = describe(config)
        tower = description.decoder or description.text
    except Exception:  # noqa: BLE001 - a config describe refuses: the meta model answers (and reports it)
        return None
    return tower.num_layers if tower is not None else None


def exact_measure(headers: CheckpointHeaders, config: dict) -> tuple[dict | None, str]:
    """``meta_model.measure`` of the model transformers builds from ``config``, computed from the headers;
    (None, why) when the family's structure is not recorded or the checkpoint does not match it."""
    from ..metadata.transformers_facts import buffer_shape, class_structure, family_rules, pattern_of

    archs = config.get("architectures")
    arch = archs[0] if isinstance(archs, list) and len(archs) == 1 and isinstance(archs[0], str) else None
    st = class_structure(arch) if arch else None
    if st is None or st["model_type"] != config.get("model_type"):
        return None, f"no recorded module structure for {arch or 'this config'}"
    rules = family_rules(st["model_type"])
    nodes = st["nodes"]
    tie = config.get("tie_word_embeddings")
    tie = st["tie_default"] if tie is None else bool(tie)
    shared = st["shared_tied" if tie else "shared_untied"]
    alias = {name: group[0] for group in shared for name in group[1:]}

    tensors: dict[str, object] = {}
    for t in headers.tensors():
        mod, _, p = t.name.rpartition(".")
        node = nodes.get(pattern_of(mod))
        if node is not None and any(b[0] == p for b in node["buffers"]):
            continue  # a persistent buffer saved with the weights
        dims = dict((name, nd) for name, nd in node["params"]) if node is not None else {}
        if p not in dims:
            if is_buffer_name(t.name):
                continue  # an old checkpoint's buffer (GPT-2's attn.bias): not a parameter
            return None, f"tensor {printable(t.name)} is not a parameter of {arch}"
        if dims[p] != len(t.shape) or t.name in tensors:
            return None, f"tensor {printable(t.name)} does not have {arch}'s shape"
        tensors[t.name] = t
    for target, source in alias.items():
        if source not in tensors:
            return None, f"{source} is missing from the checkpoint"
        if target in tensors and tensors[target].shape != tensors[source].shape:
            return None, f"{target} and {source} are tied but differ in shape"
    present = set()  # module paths holding a parameter (tied copies included)
    for name in list(tensors) + list(alias):
        parts = name.split(".")[:-1]
        for i in range(len(parts) + 1):
            present.add(".".join(parts[:i]))
    subtree_params: dict[str, bool] = {}

    def has_params(pat: str) -> bool:
        if pat not in subtree_params:
            node = nodes[pat]
            subtree_params[pat] = bool(node["params"]) or any(has_params(_join(pat, c)) for c in node["children"])
        return subtree_params[pat]

    order: list[tuple[str, str, list[str]]] = []  # (path, pattern, realised children), named_modules order
    problem: list[str] = []

    def walk(path: str, pat: str) -> None:
        node = nodes[pat]
        kids: list[tuple[str, str]] = []
        for child in node["children"]:
            cpat = _join(pat, child)
            if child == "#":
                prefix = _join(path, "")
                idx = sorted({int(p[len(prefix):].split(".")[0]) for p in present
                              if p.startswith(prefix) and p[len(prefix):].split(".")[0].isdigit()})
                if not idx or idx != list(range(len(idx))):
                    problem.append(f"the numbered modules under {path or 'the root'} are not 0..n-1")
                    return
                kids += [(_join(path, str(i)), cpat) for i in idx]
            elif _join(path, child) in present or not has_params(cpat):
                kids.append((_join(path, child), cpat))
            else:
                problem.append(f"{_join(path, child)} is missing from the checkpoint")
                return
        for p, _ in node["params"]:
            full = _join(path, p)
            if full not in tensors and full not in alias:
                problem.append(f"{full} is missing from the checkpoint")
                return
        order.append((path, pat, [k for k, _ in kids]))
        for kpath, kpat in kids:
            walk(kpath, kpat)

    walk("", "")
    if problem:
        return None, problem[0]
    blocks = {p for p, pat, _ in order if pat.endswith("#") and nodes[pat]["cls"] in st["no_split_modules"]}
    expected = _block_count(config)
    if expected is None or len(blocks) != expected:
        return None, f"the checkpoint has {len(blocks)} blocks, config.json {expected}"

    def numel(name: str) -> int:
        return tensors[alias.get(name, name)].numel

    params: dict[str, int] = {}
    bufs: dict[str, int] = {}

    def add(name: str, n: int, b: int) -> None:
        parts = name.split(".")
        for i in range(len(parts) + 1):
            key = ".".join(parts[:i])
            params[key] = params.get(key, 0) + n
            bufs[key] = bufs.get(key, 0) + b

    persistent = non_persistent = 0
    seen_params: set[str] = set()
    for path, pat, _ in order:  # named_parameters(): each Parameter once, under its first name
        for p, _ in nodes[pat]["params"]:
            full = _join(path, p)
            canon = alias.get(full, full)
            if canon not in seen_params:
                seen_params.add(canon)
                add(full, numel(full), 0)
    for path, pat, _ in order:
        for b, dtype, is_persistent, rule in nodes[pat]["buffers"]:
            shape = buffer_shape(rule, config, rules)
            if shape is None or dtype not in _DTYPE_BYTES:
                return None, f"no rule for the buffer {_join(path, b)}"
            nbytes = math.prod(shape) * _DTYPE_BYTES[dtype]
            add(_join(path, b), 0, nbytes)
            if is_persistent:
                persistent += nbytes
            else:
                non_persistent += nbytes
    realised = [[n for n in group if n in alias or n in tensors] for group in shared]
    tied = [g for g in realised if len(g) > 1]
    tied_params = sum(numel(g[0]) * (len(g) - 1) for g in tied)

    by_path = {path: (pat, kids) for path, pat, kids in order}
    no_split = set(st["no_split_modules"])
    root = [(p, None) for p, _ in nodes[""]["params"]] + [(k, k) for k in by_path[""][1]] \
        + [(b[0], None) for b in nodes[""]["buffers"]]
    candidates = layer_candidates(root, lambda name, path: [(k, k) for k in by_path[path][1]],
                                  lambda path: nodes[by_path[path][0]]["cls"] in no_split)
    return measured(architecture=arch, params=params, bufs=bufs, paths=[path for path, _, _ in order],
                    candidates=candidates, persistent=persistent, non_persistent=non_persistent, tied=tied,
                    tied_params=tied_params, no_split=no_split,
                    tensors=_census(order, nodes, tensors, alias, st.get("output_embeddings"))), ""


def _census(order, nodes, tensors, alias, out_emb: str | None) -> list[dict]:
    """``meta_model.census`` on the recorded tree: the same grouping (``census_groups``), a tensor's identity
    being its canonical name behind tied aliases."""
    from .census_groups import ModuleParams, group_census

    def own(path: str, node: dict) -> tuple:
        out = []
        for p, _ in node["params"]:
            canon = alias.get(_join(path, p), _join(path, p))
            out.append((p, canon, tuple(tensors[canon].shape)))
        return tuple(out)

    kinds = {"linear": "linear", "conv1d": "conv1d", "embedding": "embedding"}
    return group_census(
        ModuleParams(path, nodes[pat]["cls"], kinds.get(nodes[pat]["kind"], "other"), own(path, nodes[pat]),
                     output_embedding=out_emb is not None and path == out_emb)
        for path, pat, _ in order)
