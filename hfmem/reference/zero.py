"""The ZeRO paper's closed forms (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
Parameter Models", arXiv 1910.02054): model states per device in Figure 1 / Table 1, and the largest model
that fits in Table 2.

A published formula mirrored for comparison (tests check it against the paper's printed numbers); hfmem's
estimates never call it — they use ``hfmem.scenarios.sharding.zero_states``.
"""

from __future__ import annotations

from ..scenarios.sharding import Component, ShardedStates


def zero_paper_states(num_params: int, stage: int, data_parallel: int, k_bytes: int = 12) -> ShardedStates:
    """ZeRO §5 / Figure 1 per device: baseline (2 + 2 + K)Ψ; P_os 4Ψ + KΨ/N_d; P_os+g 2Ψ + (2 + K)Ψ/N_d;
    P_os+g+p (2 + 2 + K)Ψ/N_d (fp16 parameters 2Ψ, fp16 gradients 2Ψ, K = 12 of fp32 master, momentum and
    variance). Ψ = 7.5B, N_d = 64: 120 / 31.4 / 16.6 / 1.9 GB (decimal)."""
    if stage not in (0, 1, 2, 3):
        raise ValueError("ZeRO stage must be 0, 1, 2 or 3")
    p, n = int(num_params), int(data_parallel)
    params = 2 * p if stage < 3 else 2 * p / n
    grads = 2 * p if stage < 2 else 2 * p / n
    opt = k_bytes * p if stage < 1 else k_bytes * p / n
    names = {0: "baseline", 1: "P_os", 2: "P_os+g", 3: "P_os+g+p"}
    return ShardedStates(
        scheme=f"ZeRO paper {names[stage]}, N_d={n}",
        gpu=(Component("weights_bytes", round(params), note="fp16 parameters"),
             Component("gradients_bytes", round(grads), note="fp16 gradients"),
             Component("optimizer_bytes", round(opt), note=f"K={k_bytes}: fp32 master, momentum, variance")),
        assumptions=("mixed-precision Adam, K = 12; no buffers, no activations (ZeRO §3.1, §5)",))


def zero_paper_max_params(memory_bytes: float, stage: int, data_parallel: int, model_parallel: int = 1,
                          k_bytes: int = 12) -> float:
    """ZeRO Table 2's theoretical maximum model size: device memory / model-state bytes per parameter per
    device, times the model-parallel degree. 32 GB, 64 GPUs, MP 1: 2B / 7.6B / 14.4B / 128B."""
    n = float(data_parallel)
    per = {0: 4 + k_bytes, 1: 4 + k_bytes / n, 2: 2 + (2 + k_bytes) / n, 3: (4 + k_bytes) / n}[stage]
    return float(memory_bytes) * model_parallel / per


__all__ = ["zero_paper_states", "zero_paper_max_params"]
