"""``hfmem simulate``: run the real transformers model code on fake tensors and measure the allocator-level
peak of a training step or a prefill + decode, with no GPU and no weights.

    from hfmem.simulate import simulate_train, simulate_infer
    result = simulate_train(config_dict, batch=1, seq=2048, dtype="bfloat16")
    result.peak_allocated_bytes, result.to_dict()

The result types import without torch; ``simulate_train`` / ``simulate_infer`` import torch and
transformers on first use (they need both installed).
"""

from __future__ import annotations

from .result import PhaseStat, SimResult, SimulationError

__all__ = ["PhaseStat", "SimResult", "SimulationError", "simulate", "simulate_infer", "simulate_train"]


def __getattr__(name: str):
    # PEP 562: the engine (torch, transformers) loads only when a simulation is asked for.
    if name in ("simulate", "simulate_train", "simulate_infer", "EAGER_FALLBACK"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
