"""The tensor census: every parameter once, grouped by role and shape — what the weight formats of ``hfmem infer``
and the LoRA counts of ``hfmem train`` need (which tensors a quantizer converts, which names PEFT targets).

Both inventory routes feed this one grouping: ``meta_model.census`` walks a model built by transformers,
``headers.exact_measure`` walks the module tree recorded from the same class with the shapes from the
safetensors headers. Each hands over its modules in ``named_modules`` order as ``ModuleParams``; the identity of
a parameter (the Parameter object, or the canonical tensor name behind tied aliases) is what makes a tied weight
count once.

Roles: ``linear`` (nn.Linear / transformers' Conv1D: ``in_features``/``out_features``, ``bias``), ``lm_head`` (the
output projection; ``tied`` when it shares the embedding's weight, then it adds no parameters), ``router`` (an MoE
gate: a Linear or a router module's weight), ``experts`` (fused 3-D expert tensors, transformers 5's MoE layout,
[E, ...]), ``embedding``, ``other`` (norms, biases and anything else). ``name`` is the leaf module name PEFT
matches (``q_proj``, ``c_attn``); for a parameter held directly by a module that is not a Linear it is
``module.param``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Hashable, Iterable

# A module whose class name ends so is an MoE router (its 2-D weight is the gate).
ROUTER_CLASS = re.compile(r"(Router|TopK|Gate)$")
# A Linear named "gate" or "router" with at most this many outputs is a router (one output per expert), not an
# MLP gate projection (thousands of outputs).
ROUTER_MAX_EXPERTS = 512


@dataclass(frozen=True)
class ModuleParams:
    """One module as the census sees it."""

    path: str  # its dotted name in the model ("" for the root)
    cls: str  # its class name
    kind: str  # "linear" (weight [out, in]), "conv1d" (weight [in, out]), "embedding" or "other"
    params: tuple[tuple[str, Hashable, tuple[int, ...]], ...]  # its own parameters: (name, identity, shape)
    output_embedding: bool = False  # the model's output projection (get_output_embeddings)

    @property
    def leaf(self) -> str:
        return self.path.rsplit(".", 1)[-1] if self.path else ""


def group_census(modules: Iterable[ModuleParams]) -> list[dict]:
    """The census groups, largest first: each parameter counted once, at the first module that holds it."""
    seen: set = set()
    groups: dict[tuple, dict] = {}

    def add(key: tuple, entry: dict, params: int) -> None:
        g = groups.get(key)
        if g is None:
            groups[key] = dict(entry, count=1, params=params)
        else:
            g["count"] += 1
            g["params"] += params

    for mod in modules:
        leaf = mod.leaf
        own = {name: (ident, shape) for name, ident, shape in mod.params}
        if mod.kind in ("linear", "conv1d") and "weight" in own:
            w_id, ws = own["weight"]
            fan_in, fan_out = (ws[1], ws[0]) if mod.kind == "linear" else (ws[0], ws[1])
            b_id, bs = own.get("bias", (None, None))
            bias = math.prod(bs) if bs is not None else 0
            tied = w_id in seen
            n = (0 if tied else math.prod(ws)) + (bias if bs is not None and b_id not in seen else 0)
            if mod.output_embedding:
                role = "lm_head"
            elif ROUTER_CLASS.search(mod.cls) or (leaf in ("gate", "router") and fan_out <= ROUTER_MAX_EXPERTS):
                role = "router"
            else:
                role = "linear"
            add((role, leaf, fan_in, fan_out, bias, tied),
                {"role": role, "name": leaf, "in_features": fan_in, "out_features": fan_out, "bias": bias,
                 "tied": tied, "conv1d": mod.kind == "conv1d"}, n)
            seen.update(ident for _, ident, _ in mod.params)
            continue
        for p_name, ident, shape in mod.params:
            if ident in seen:
                continue
            seen.add(ident)
            if mod.kind == "embedding" and p_name == "weight":
                role = "embedding"
            elif ROUTER_CLASS.search(mod.cls) and len(shape) == 2:
                role = "router"
            elif len(shape) == 3:
                role = "experts"
            else:
                role = "other"
            name = leaf if role == "embedding" else f"{leaf}.{p_name}" if leaf else p_name
            add((role, name, tuple(shape)), {"role": role, "name": name, "shape": list(shape)}, math.prod(shape))
    return sorted(groups.values(), key=lambda g: (-g["params"], g["role"], g["name"]))
