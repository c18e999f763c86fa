"""The inventory of one model: plain dataclasses, JSON round-trippable, no torch.

Sizes are integers: ``num_params`` counts elements, ``*_bytes`` count bytes. The one exception is
``AccelerateView``, which mirrors accelerate's own arithmetic (bool buffers count 1/8 byte per element there).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass
class LayerGroup:
    """Layers of identical size, in accelerate's sense: a module with no children, a module whose class is in
    ``_no_split_modules`` (a residual group such as a decoder layer), or a parameter/buffer of the root."""

    names: list[str]
    num_params: int
    buffer_bytes: int

    def bytes_at(self, bits_per_param: int) -> int:
        return math.ceil(self.num_params * bits_per_param / 8) + self.buffer_bytes


@dataclass
class AccelerateView:
    """What ``accelerate estimate-memory`` measures, computed on our meta model: the class accelerate builds
    (AutoModel, or the auto_map's AutoModelFor* class), parameters plus all buffers at their built dtype
    (float32 for floating tensors), and ``calculate_maximum_sizes``'s largest layer."""

    model_class: str
    total_bytes: float
    largest_layer_bytes: float
    largest_layer_names: list[str]
    # Parameters shared between modules (tied LM head). We count them once; accelerate with
    # transformers >= 5 counts them twice, because init_empty_weights() breaks the tie (tests/test_accelerate_compat.py shows it).
    tied_params: int = 0


@dataclass
class Inventory:
    architecture: str
    model_type: str | None
    method: str  # "meta-model", "meta-model (mapped)", "remote-code", "safetensors-headers"
    num_params: int
    params_by_dtype: dict[str, int]
    params_dtype_source: str  # "safetensors headers", "config", "default"
    persistent_buffer_bytes: int
    non_persistent_buffer_bytes: int
    tied_weights: list[list[str]] = field(default_factory=list)
    tied_params: int = 0
    modules: dict[str, list[int]] = field(default_factory=dict)  # name -> [num_params, buffer_bytes], depth <= 3
    layers: list[LayerGroup] = field(default_factory=list)  # biggest first
    no_split_modules: list[str] = field(default_factory=list)
    accelerate: AccelerateView | None = None
    checkpoint: dict | None = None  # CheckpointHeaders.to_dict() when headers were read
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    # Parameters grouped by role and shape (meta_model.census): linear layers, experts, embeddings, LM head,
    # routers, others. Empty for header-only inventories. Weight formats and LoRA counts are computed on it.
    tensors: list[dict] = field(default_factory=list)

    @property
    def buffer_bytes(self) -> int:
        return self.persistent_buffer_bytes + self.non_persistent_buffer_bytes

    def total_bytes_at(self, bits_per_param: int) -> int:
        """All parameters at ``bits_per_param`` plus all buffers as built."""
        return math.ceil(self.num_params * bits_per_param / 8) + self.buffer_bytes

    def largest_layer_at(self, bits_per_param: int) -> tuple[int, list[str]]:
        best, names = 0, []
        for group in self.layers:
            size = group.bytes_at(bits_per_param)
            if size > best:
                best, names = size, list(group.names)
            elif size == best:
                names += group.names
        return best, names

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Inventory":
        d = dict(d)
        d["layers"] = [LayerGroup(**g) for g in d.get("layers", [])]
        if d.get("accelerate") is not None:
            d["accelerate"] = AccelerateView(**d["accelerate"])
        return cls(**d)


MODULE_DEPTH = 3  # per-module sizes are kept for names with at most this many dots + 1 parts


def layer_candidates(root: list[tuple[str, object]], children_of, is_group) -> list[str]:
    """The names accelerate's ``get_max_layer_size`` compares (``calculate_maximum_sizes``): walked from the
    root's direct parameters, children and direct buffers, in that order (``root``: (name, module or None)),
    a module's children taking its place until it is a leaf or a no-split group. ``children_of(name, module)``
    gives (name, module) pairs; ``is_group(module)`` says whether it is one of ``_no_split_modules``."""
    todo = list(root)
    out: list[str] = []
    while todo:
        name, mod = todo.pop(0)
        children = children_of(name, mod) if mod is not None else []
        if not children or is_group(mod):
            out.append(name)
        else:
            todo = list(children) + todo
    return out


def measured(*, architecture: str, params: dict[str, int], bufs: dict[str, int], paths, candidates: list[str],
             persistent: int, non_persistent: int, tied: list[list[str]], tied_params: int, no_split,
             tensors: list[dict]) -> dict:
    """What an inventory keeps about a model's structure, in the one shape both routes return
    (``meta_model.measure``, ``headers.exact_measure``): ``params`` and ``bufs`` are the parameter count and
    buffer bytes under every module path ("" the root), ``paths`` the module paths in ``named_modules`` order,
    ``candidates`` the names of ``layer_candidates``."""
    return {
        "architecture": architecture,
        "num_params": params.get("", 0),
        "persistent_buffer_bytes": persistent,
        "non_persistent_buffer_bytes": non_persistent,
        "tied_weights": tied,
        "tied_params": tied_params,
        "modules": {p: [params.get(p, 0), bufs.get(p, 0)] for p in paths if p and p.count(".") < MODULE_DEPTH},
        "layers": group_layers([(n, params.get(n, 0), bufs.get(n, 0)) for n in candidates]),
        "no_split_modules": sorted(no_split),
        "tensors": tensors,
    }


def group_layers(candidates: list[tuple[str, int, int]], keep: int = 64) -> list[LayerGroup]:
    """Group (name, num_params, buffer_bytes) candidates of equal size, biggest first, keeping ``keep`` groups."""
    groups: dict[tuple[int, int], list[str]] = {}
    for name, n, b in candidates:
        groups.setdefault((n, b), []).append(name)
    ordered = sorted(groups.items(), key=lambda kv: -(kv[0][0] * 4 + kv[0][1]))
    return [LayerGroup(names, n, b) for (n, b), names in ordered[:keep]]
