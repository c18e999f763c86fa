"""Runtime overheads outside the model's tensors, as named, overridable items with sourced defaults.

Each default is a *typical* figure for a recent PyTorch on a datacenter GPU; the real value varies with the
driver, CUDA version, lazy module loading and the GPU, in both directions (each item's source below). Users can
override every item (``hfmem infer --cuda-context 1GiB``); the JSON lists each one with its source.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import SettingsError
from ..units import MiB

# CUDA context: stas00/ml-engineering training/performance/README.md measured total − free after a 4-byte
# tensor on an A100-80GB: 0.47 GiB with torch 2.1.1 + cu121 and lazy module loading (the default since CUDA
# 11.7), 0.92 GiB with CUDA_MODULE_LOADING=EAGER; HF model_memory_anatomy measured 1343 MB on a 2022 V100;
# fitcheck measured 133–147 MiB on a T4 (torch 2.10). 512 MiB rounds the lazy-loading datacenter figure up.
CUDA_CONTEXT_BYTES = 512 * MiB
# NCCL communicators when tensor parallel > 1: stas00 (same page) shows 0.55 → 2.00 GiB after the first
# dist.barrier(), settling at 1.28 GiB: ≈ 0.73 GiB added per process.
NCCL_BYTES = 768 * MiB
# Reserved-but-unallocated memory of PyTorch's caching allocator, as a fraction of the memory that churns
# (activations and a growing KV cache; weights are allocated once, in exact-size blocks). Measured
# reserved/allocated ratios: 1.07–1.49 in training (the fitcheck project's published T4 runs); inference churns less.
ALLOCATOR_FRAGMENTATION = 0.10
# vLLM CUDA-graph capture pool: vLLM logs "Graph capturing finished in N secs, took X GiB"; typically a few
# hundred MiB for one GPU with the default capture sizes. Counted inside gpu_memory_utilization.
VLLM_CUDA_GRAPHS_BYTES = 512 * MiB
VLLM_GPU_MEMORY_UTILIZATION = 0.9  # vLLM's default (EngineArgs.gpu_memory_utilization)

SOURCES = {
    "cuda_context_bytes": "stas00/ml-engineering: 0.47 GiB (A100, torch 2.1, lazy loading) to 0.92 GiB (eager); "
                          "1.3 GB on a 2022 V100 (HF model_memory_anatomy)",
    "nccl_bytes": "stas00/ml-engineering: +0.73 GiB per process after dist.barrier() (NCCL), tp > 1 only",
    "allocator_fragmentation": "fraction of activations + KV cache reserved but not allocated; measured "
                               "reserved/allocated 1.07–1.49 in training (the fitcheck project's published T4 runs, github.com/Anassbzdd/fitcheck)",
    "cuda_graphs_bytes": "vLLM CUDA-graph pool (logged at start-up, typically a few hundred MiB); vLLM only",
}


@dataclass(frozen=True)
class Overheads:
    cuda_context_bytes: int = CUDA_CONTEXT_BYTES
    nccl_bytes: int = NCCL_BYTES
    allocator_fragmentation: float = ALLOCATOR_FRAGMENTATION
    cuda_graphs_bytes: int = VLLM_CUDA_GRAPHS_BYTES

    def __post_init__(self):
        for name in ("cuda_context_bytes", "nccl_bytes", "cuda_graphs_bytes"):
            if int(getattr(self, name)) < 0:
                raise SettingsError(f"{name} must be 0 or more")
        if not 0 <= self.allocator_fragmentation < 10:
            raise SettingsError("allocator_fragmentation must be a fraction between 0 and 10")

    def to_dict(self) -> dict:
        return {k: {"value": v, "source": SOURCES[k]} for k, v in asdict(self).items()}


def reserved_bytes(allocated_bytes: int, churn_bytes: int, fragmentation: float) -> int:
    """``max_memory_reserved`` from ``max_memory_allocated``: the allocator's cache keeps a fraction of the
    memory that is freed and re-allocated (activations, the growing KV cache) reserved but unused."""
    return int(allocated_bytes + round(fragmentation * max(int(churn_bytes), 0)))




# -- the caching allocator's rules (PyTorch c10/cuda/CUDACachingAllocator.cpp, AllocatorConfig.h) -------------
K_MIN_BLOCK = 512              # kMinBlockSize: every request rounded up to 512 B
K_SMALL_SIZE = 1 * MiB         # kSmallSize: requests up to 1 MiB come from the small pool ...
K_SMALL_BUFFER = 2 * MiB       # kSmallBuffer: ... in 2 MiB segments
K_LARGE_BUFFER = 20 * MiB      # kLargeBuffer: 1-10 MiB requests get a 20 MiB segment
K_MIN_LARGE_ALLOC = 10 * MiB   # kMinLargeAlloc: above it a request gets its own segment ...
K_ROUND_LARGE = 2 * MiB        # kRoundLarge: ... rounded up to 2 MiB


def block_bytes(request_bytes: int) -> int:
    """The block the allocator hands out for a request: rounded up to 512 B (round_size)."""
    n = max(int(request_bytes), 1)
    return -(-n // K_MIN_BLOCK) * K_MIN_BLOCK


def segment_bytes(request_bytes: int) -> int:
    """The segment cudaMalloc'd for a request no cached block can serve (get_allocation_size)."""
    n = block_bytes(request_bytes)
    if n <= K_SMALL_SIZE:
        return K_SMALL_BUFFER
    if n < K_MIN_LARGE_ALLOC:
        return K_LARGE_BUFFER
    return -(-n // K_ROUND_LARGE) * K_ROUND_LARGE


def eager_attention_stranded_bytes(s2_request_bytes: int, layers: int, *, checkpointed: bool) -> int:
    """Reserved-but-unusable memory left by eager attention's s×s tensors (scores, scaled/masked scores,
    probabilities, dropout output: b·heads·s²·bytes each).

    Each layer's forward frees s×s transients (the raw and the scaled scores) while it keeps the
    probabilities (and the dropout output) for the backward. The allocator serves a request from the
    smallest cached block that is large enough (best fit) and splits it when more than 1 MiB would remain
    (large pool). The freed s×s block is the smallest free block large enough for the requests that follow
    — the dropout mask (b·heads·s² bytes), the next layer's hidden-size outputs — so they split it; the next
    layer's s×s requests no longer fit in what remains and get a new segment (over 10 MiB: its own,
    rounded up to 2 MiB). Until the backward frees the layers' saved tensors (and the segment's pieces merge
    again), every layer of the forward strands up to one such segment: ``layers`` × segment_bytes(s×s)
    (the upper bound, taken). With checkpointing nothing of a layer is kept: all its transients are freed
    before the next layer starts, the split blocks merge back, one segment at most is stranded."""
    if s2_request_bytes <= 0 or layers <= 0:
        return 0
    return segment_bytes(s2_request_bytes) * (1 if checkpointed else int(layers))


def training_reserved_bytes(allocated_bytes: int, churn_bytes: int, fragmentation: float, *,
                            s2_request_bytes: int = 0, s2_saved_bytes: int = 0, layers: int = 0,
                            checkpointed: bool = False) -> int:
    """``max_memory_reserved`` of a training step: ``fragmentation`` of the churn outside eager attention's
    s×s tensors (the measured typical reserve), plus the s×s segments the forward strands
    (``eager_attention_stranded_bytes``) in place of a flat fraction of the s×s bytes."""
    other = max(int(churn_bytes) - max(int(s2_saved_bytes), 0), 0)
    stranded = eager_attention_stranded_bytes(s2_request_bytes, layers, checkpointed=checkpointed)
    return int(allocated_bytes + round(fragmentation * other) + stranded)


__all__ = ["Overheads", "reserved_bytes", "training_reserved_bytes", "eager_attention_stranded_bytes",
           "segment_bytes", "block_bytes", "CUDA_CONTEXT_BYTES", "NCCL_BYTES"]
