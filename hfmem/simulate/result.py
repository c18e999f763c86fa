"""What a simulation returns. Plain dataclasses, no torch: the CLI and renderers import these freely."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import HfmemError

# Category names used in ``PhaseStat.by_category`` and ``SimResult.peak_by_category``.
PARAMETERS = "parameters"
BUFFERS = "buffers"
GRADIENTS = "gradients"
OPTIMIZER_STATE = "optimizer_state"
KV_CACHE = "kv_cache"
ACTIVATIONS = "activations"  # everything else live: saved activations, inputs, outputs, the loss
TEMPORARY = "temporary"  # the phase's peak above what is still live at its end
# Allocations made inside optimizer.step() until the step ends (then: optimizer_state or activations);
# appears only in SimResult.peak_by_category, when the peak falls inside a step.
OPTIMIZER_TEMPORARY = "optimizer_temporary"
CATEGORIES = (PARAMETERS, BUFFERS, GRADIENTS, OPTIMIZER_STATE, KV_CACHE, ACTIVATIONS)

NOT_INCLUDED = [
    "CUDA context",
    "allocator fragmentation / reserved-but-free memory",
    "kernels' internal workspaces (cuBLAS, flash-attention)",
]


class SimulationError(HfmemError):
    """The model code cannot run on fake tensors (data-dependent shapes, a missing kernel), or a setting
    is not supported. The message is one line naming the architecture and the failing op or option."""

    exit_code = 9


class NoSdpaError(SimulationError):
    """transformers has no SDPA attention for the architecture (``attn_implementation="sdpa"`` raises): a caller
    that picked SDPA itself, not the user, runs eager instead, as transformers would with no implementation named."""


@dataclass
class PhaseStat:
    """One phase of one iteration: ``peak_bytes`` is the allocator-level peak inside the phase,
    ``live_bytes_end`` what is still allocated when it ends, ``by_category`` that live set split by
    category plus ``temporary`` (= peak_bytes - live_bytes_end)."""

    name: str  # forward | backward | optimizer_step | prefill | decode
    iteration: int
    peak_bytes: int
    live_bytes_start: int
    live_bytes_end: int
    by_category: dict[str, int]
    kv_cache_bytes: int | None = None  # inference only: bytes of the storages the KV cache holds

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.kv_cache_bytes is None:
            del out["kv_cache_bytes"]
        return out


@dataclass
class SimResult:
    mode: str  # train | infer
    architecture: str
    phases: list[PhaseStat]
    peak_allocated_bytes: int
    peak_phase: str  # "<name>@<iteration>" of the phase that holds the overall peak
    peak_by_category: dict[str, int]  # the live set at the moment of the overall peak, by category
    elapsed_s: float
    inputs: dict[str, Any]
    assumptions: list[str]
    not_included: list[str] = field(default_factory=lambda: list(NOT_INCLUDED))
    versions: dict[str, str] = field(default_factory=dict)
    kv_cache_bytes: int | None = None  # inference: after the last phase
    num_params: int | None = None        # parameters of the model built (tied ones once)
    trainable_params: int | None = None  # of those, with requires_grad (training: all, or LoRA's adapters)

    @classmethod
    def from_dict(cls, d: dict) -> "SimResult":
        """The inverse of ``to_dict`` (a stored simulation read back)."""
        fields = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "phases"}
        return cls(phases=[PhaseStat(**p) for p in d["phases"]], **fields)

    def phase(self, name: str, iteration: int = 1) -> PhaseStat:
        for p in self.phases:
            if p.name == name and p.iteration == iteration:
                return p
        raise KeyError(f"no phase {name!r} in iteration {iteration}")

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "phases"}
        out["phases"] = [p.to_dict() for p in self.phases]
        out["elapsed_s"] = round(self.elapsed_s, 3)
        return out
