"""DeepSpeed's own model-state estimators, mirrored operation for operation
(``deepspeed.runtime.zero.stage_1_and_2.estimate_zero2_model_states_mem_needs`` and
``deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs``, and the ``*_all_cold`` tables),
so users can compare with what DeepSpeed prints (its GiB, its 1.5 ``additional_buffer_factor`` on CPU, its
``4·largest_layer``).

A published formula mirrored for comparison; hfmem's estimates never call it — they use
``hfmem.scenarios.sharding.zero_states``, component by component.
"""

from __future__ import annotations

from dataclasses import dataclass

# DeepSpeed's estimators (stage_1_and_2.py / stage3.py): additional_buffer_factor=1.5 on CPU.
DS_ADDITIONAL_BUFFER_FACTOR = 1.5


@dataclass(frozen=True)
class DeepSpeedEstimate:
    """One row of DeepSpeed's estimator output: bytes (DeepSpeed prints them /2**30 labelled "GB")."""

    cpu_bytes: int
    gpu_bytes: int
    offload_optimizer: bool
    offload_param: bool = False
    zero_init: bool = True
    largest_layer_bytes: int = 0


def deepspeed_estimate_zero2(total_params: int, num_gpus_per_node: int = 1, num_nodes: int = 1,
                             cpu_offload: bool = True,
                             additional_buffer_factor: float = DS_ADDITIONAL_BUFFER_FACTOR) -> tuple[int, int]:
    """``deepspeed.runtime.zero.stage_1_and_2.estimate_zero2_model_states_mem_needs``, operation for
    operation: returns (cpu_mem, gpu_mem). Offload: gpu 2·P, cpu P·max(4·N, 16)·1.5; else gpu
    4·P + int(16·P/N), cpu P·4·gpus_per_node·1.5 (N = all GPUs)."""
    total_gpus = num_nodes * num_gpus_per_node
    if cpu_offload:
        gpu_mem = 2 * total_params
        cpu_mem = total_params * max(4 * total_gpus, 16) * additional_buffer_factor
    else:
        gpu_mem = 4 * total_params + int(16 * total_params / total_gpus)
        cpu_mem = total_params * 4 * num_gpus_per_node * additional_buffer_factor
    return int(cpu_mem), int(gpu_mem)


def deepspeed_estimate_zero3(total_params: int, largest_layer_params: int, num_gpus_per_node: int = 1,
                             num_nodes: int = 1, cpu_offload: bool = True, cpu_offload_params: bool = True,
                             zero_init: bool = True,
                             additional_buffer_factor: float = DS_ADDITIONAL_BUFFER_FACTOR) -> tuple[int, int, int]:
    """``deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs``, operation for operation:
    returns (cpu_mem, gpu_mem, largest_layer_memory). largest_layer_memory = 4·LL; GPU: params+optimizer
    offloaded 4·LL, optimizer offloaded 4·LL + int(2·P/N), none 4·LL + int(18·P/N). CPU (zero_init): 18·P·1.5
    and 16·P·1.5 per node share (/num_nodes), LL·4·gpus_per_node·1.5 without offload; without zero_init the
    per-node max with 4·gpus_per_node·P."""
    total_gpus = num_nodes * num_gpus_per_node
    gpus_factor = 1 / num_nodes
    largest_layer_memory = 4 * largest_layer_params
    if cpu_offload:
        if cpu_offload_params:
            gpu_mem = largest_layer_memory
            if zero_init:
                cpu_mem = total_params * 18 * gpus_factor * additional_buffer_factor
            else:
                cpu_mem = total_params * max(4 * num_gpus_per_node, 18 * gpus_factor) * additional_buffer_factor
        else:
            gpu_mem = largest_layer_memory + int(2 * total_params / total_gpus)
            if zero_init:
                cpu_mem = total_params * 16 * gpus_factor * additional_buffer_factor
            else:
                cpu_mem = total_params * max(4 * num_gpus_per_node, 16 * gpus_factor) * additional_buffer_factor
    else:
        gpu_mem = largest_layer_memory + int(18 * total_params / total_gpus)
        if zero_init:
            cpu_mem = largest_layer_params * 4 * num_gpus_per_node * additional_buffer_factor
        else:
            cpu_mem = total_params * 4 * num_gpus_per_node * additional_buffer_factor
    return int(cpu_mem), int(gpu_mem), largest_layer_memory


def deepspeed_zero2_table(total_params: int, num_gpus_per_node: int = 1, num_nodes: int = 1,
                          additional_buffer_factor: float = DS_ADDITIONAL_BUFFER_FACTOR) -> tuple[DeepSpeedEstimate, ...]:
    """The rows ``estimate_zero2_model_states_mem_needs_all_cold`` prints, in its order (offload, none)."""
    rows = []
    for offload in (True, False):
        cpu, gpu = deepspeed_estimate_zero2(total_params, num_gpus_per_node, num_nodes, offload,
                                            additional_buffer_factor)
        rows.append(DeepSpeedEstimate(cpu, gpu, offload_optimizer=offload))
    return tuple(rows)


def deepspeed_zero3_table(total_params: int, largest_layer_params: int, num_gpus_per_node: int = 1,
                          num_nodes: int = 1,
                          additional_buffer_factor: float = DS_ADDITIONAL_BUFFER_FACTOR) -> tuple[DeepSpeedEstimate, ...]:
    """The six rows ``estimate_zero3_model_states_mem_needs_all_cold`` prints, in its order
    (offload_optimizer in (cpu, none) × offload_param in (cpu, none) × zero_init in (1, 0), skipping
    params offloaded without the optimizer)."""
    rows = []
    for cpu_offload in (True, False):
        for cpu_offload_params in (True, False):
            if not cpu_offload and cpu_offload_params:
                continue
            for zero_init in (True, False):
                cpu, gpu, ll = deepspeed_estimate_zero3(total_params, largest_layer_params, num_gpus_per_node,
                                                        num_nodes, cpu_offload, cpu_offload_params, zero_init,
                                                        additional_buffer_factor)
                rows.append(DeepSpeedEstimate(cpu, gpu, cpu_offload, cpu_offload_params, zero_init, ll))
    return tuple(rows)


__all__ = ["DS_ADDITIONAL_BUFFER_FACTOR", "DeepSpeedEstimate", "deepspeed_estimate_zero2", "deepspeed_estimate_zero3",
           "deepspeed_zero2_table", "deepspeed_zero3_table"]
