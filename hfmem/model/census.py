"""Typed census entries: every parameter of a model once, grouped by role and shape.

``hfmem.inventory`` writes the census as plain dicts (JSON round-trippable in the result cache);
``census_of`` reads them into ``CensusEntry`` objects, which the weight formats, LoRA counts, sharding and
training states read by attribute.
"""

from __future__ import annotations

from dataclasses import dataclass

# Roles: nn.Linear / Conv1D layers, fused 3-D expert tensors, token embeddings, the output projection, MoE
# routers, and everything else (norms, biases).
ROLES = ("linear", "experts", "embedding", "lm_head", "router", "other")


@dataclass(frozen=True)
class CensusEntry:
    role: str
    name: str              # the leaf module name PEFT matches (q_proj, c_attn), or module.param
    count: int             # how many modules / tensors share this role, name and shape
    params: int            # their parameters together (0 for a tied LM head)
    in_features: int | None = None   # linear, lm_head, router
    out_features: int | None = None
    bias: int = 0
    tied: bool = False
    conv1d: bool = False
    shape: tuple[int, ...] | None = None  # experts, embedding, other
    # Fused experts stored [E, in, out] (gpt-oss: transformers' use_experts_implementation(is_transposed=True))
    # rather than [E, out, in]. The inventory does not set it; a census written by hand may.
    transposed: bool = False
    # Set on the entries of a tensor-parallel rank's census (sharding.tensor_parallel_census) that were split.
    tp_sharded: bool = False

    @property
    def is_module(self) -> bool:
        return self.in_features is not None

    @classmethod
    def from_dict(cls, d: dict) -> "CensusEntry":
        shape = d.get("shape")
        return cls(role=str(d["role"]), name=str(d.get("name", "")), count=int(d.get("count", 1)),
                   params=int(d.get("params", 0)), in_features=d.get("in_features"),
                   out_features=d.get("out_features"), bias=int(d.get("bias") or 0), tied=bool(d.get("tied")),
                   conv1d=bool(d.get("conv1d")), shape=tuple(int(x) for x in shape) if shape is not None else None,
                   transposed=bool(d.get("transposed")), tp_sharded=bool(d.get("tp_sharded")))

    def keys(self) -> tuple[str, ...]:
        """The keys of this entry's dict form, in the inventory's order: what ``to_dict`` writes."""
        keys = ["role", "name"]
        if self.is_module:
            keys += ["in_features", "out_features", "bias", "tied", "conv1d"]
        if self.shape is not None:
            keys.append("shape")
        if self.transposed:
            keys.append("transposed")
        if self.tp_sharded:
            keys.append("tp_sharded")
        return (*keys, "count", "params")

    def to_dict(self) -> dict:
        return {k: self[k] for k in self.keys()}

    # Read-only mapping view, the transition path from the census as dicts: code that still reads
    # ``entry["params"]`` / ``entry.get("tied")`` / ``dict(entry)`` sees exactly the dict ``to_dict`` gives.
    # New code reads attributes.
    def __getitem__(self, key: str):
        if key not in self.keys():
            raise KeyError(key)
        value = getattr(self, key)
        return list(value) if key == "shape" else value

    def get(self, key: str, default=None):
        return self[key] if key in self.keys() else default

    def __contains__(self, key) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())


def entry_of(entry) -> CensusEntry:
    """One typed entry from an inventory census dict, or the entry itself when already typed."""
    return entry if isinstance(entry, CensusEntry) else CensusEntry.from_dict(entry)


def census_of(entries) -> tuple[CensusEntry, ...]:
    """Typed entries from an inventory's census (dicts) or entries already typed."""
    return tuple(entry_of(e) for e in entries)
