"""The EleutherAI cookbook's communication memory (github.com/EleutherAI/cookbook, calc/calc_transformer_mem.py).

A published formula mirrored for comparison; hfmem's estimates never call it (``zero_states`` prices
DeepSpeed's buckets itself).
"""

from __future__ import annotations

# The cookbook uses DeepSpeed's defaults: 5e8 all-gather bucket, 1e9 ZeRO-3 live parameters
# (deepspeed/runtime/zero/config.py; the same constants hfmem's own accounting uses).
from ..scenarios.sharding import DS_ALLGATHER_BUCKET_SIZE, DS_MAX_LIVE_PARAMETERS


def eleuther_communication_bytes(zero_stage: int, num_gpus: int, bytes_per_param: int = 2,
                                 allgather_bucket_size: float = DS_ALLGATHER_BUCKET_SIZE,
                                 zero3_max_live_params: float = DS_MAX_LIVE_PARAMETERS) -> float:
    """The EleutherAI cookbook's communication memory (calc/calc_transformer_mem.py): ZeRO ≥ 1 on more than
    one GPU adds allgather_bucket_size × bytes; ZeRO-3 adds zero3_max_live_params × bytes."""
    mem = 0.0
    if zero_stage >= 1 and num_gpus > 1:
        mem += allgather_bucket_size * bytes_per_param
    if zero_stage == 3 and num_gpus > 1:
        mem += zero3_max_live_params * bytes_per_param
    return mem


__all__ = ["eleuther_communication_bytes"]
