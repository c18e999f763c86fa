"""Planning logic (pure, no torch): GPU catalog and, later, fit/solve."""

from hfmem.plan.gpus import GPU, UnknownGPUError, catalog, parse_gpu

__all__ = ["GPU", "UnknownGPUError", "catalog", "parse_gpu"]
