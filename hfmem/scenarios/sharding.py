"""Model states per GPU (and CPU RAM per node) under ZeRO, FSDP, DDP, tensor and pipeline parallelism.
Pure functions: no torch, no I/O.

Two kinds of function (the published formulas this accounting is compared with — the ZeRO paper's closed
forms, DeepSpeed's own estimators, the EleutherAI cookbook — live in ``hfmem.reference``; estimates never
call them):

* hfmem's own, more exact accounting (``zero_states``, ``fsdp_states``, ``ddp_states``): named
  components per rank, following what DeepSpeed / torch allocate (cited per component), with the phase in
  which each one exists;
* census transforms for model parallelism (``tensor_parallel_census``, ``pipeline_stage_census``), which
  give the per-rank census that ``training.model_states`` then prices, and the pipeline activation factor
  (``pipeline_activation_layers``) that the activation estimate multiplies by.

Peak: components are tagged ``persistent`` (alive all run), ``backward`` (forward/backward only: gathered
parameters, reduce buckets, full gradients before reduction) or ``step`` (inside ``optimizer.step()``: fp32
gradient copies, step temporaries). ``gpu_peak_bytes`` = persistent + max(backward, step). Activations
belong with the backward phase (callers add them there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..errors import SettingsError
from ..model.census import CensusEntry, census_of
from .training import (DTYPE_BYTES, ModelStates, ParamTensor, largest_module_params, largest_tensor_numel,
                       precision_of)

PHASES = ("persistent", "backward", "step")

# DeepSpeed ZeRO defaults: deepspeed/runtime/zero/config.py (DeepSpeedZeroConfig):
# reduce_bucket_size = allgather_bucket_size = pp_int(5e8); stage3_prefetch_bucket_size = pp_int(5e7);
# stage3_param_persistence_threshold = pp_int(1e5); stage3_max_live_parameters = stage3_max_reuse_distance =
# pp_int(1e9); sub_group_size = pp_int(1e9); overlap_comm defaults to True for stage 3 only
# (overlap_comm_valid: ``self.overlap_comm = self.stage == ZeroStageEnum.weights``); contiguous_gradients True.
# (The EleutherAI cookbook, calc_transformer_mem.py, uses the same 5e8 all-gather bucket and 1e9 live params.)
DS_REDUCE_BUCKET_SIZE = 500_000_000
DS_ALLGATHER_BUCKET_SIZE = 500_000_000
DS_PREFETCH_BUCKET_SIZE = 50_000_000
DS_PARAM_PERSISTENCE_THRESHOLD = 100_000
DS_MAX_LIVE_PARAMETERS = 1_000_000_000
DS_MAX_REUSE_DISTANCE = 1_000_000_000
DS_SUB_GROUP_SIZE = 1_000_000_000
# deepspeed/runtime/engine.py: MEMORY_OPT_ALLREDUCE_SIZE = 500000000 elements, the flat bucket of the
# ZeRO-0 gradient all-reduce (allreduce_gradients -> buffered_allreduce_fallback).
DS_ALLREDUCE_BUCKET_SIZE = 500_000_000

# HF Trainer's "auto" ZeRO sizes (transformers integrations/deepspeed.py, HfTrainerDeepSpeedConfig
# .trainer_config_finalize; accelerate's Accelerator._prepare_deepspeed fills the same keys alike):
# reduce_bucket_size = hidden_size², stage3_prefetch_bucket_size = int(0.9 · hidden_size²),
# stage3_param_persistence_threshold = 10 · hidden_size. allgather_bucket_size and stage3_max_live_parameters
# have no "auto" there.
HF_AUTO_ZERO_SIZES = {
    "reduce_bucket_size": lambda h: h * h,
    "prefetch_bucket_size": lambda h: int(0.9 * h * h),
    "param_persistence_threshold": lambda h: 10 * h,
}
ZERO_SIZE_DEFAULTS = {
    "reduce_bucket_size": DS_REDUCE_BUCKET_SIZE,
    "allgather_bucket_size": DS_ALLGATHER_BUCKET_SIZE,
    "prefetch_bucket_size": DS_PREFETCH_BUCKET_SIZE,
    "max_live_parameters": DS_MAX_LIVE_PARAMETERS,
    "param_persistence_threshold": DS_PARAM_PERSISTENCE_THRESHOLD,
}


def parse_zero_size(value, name: str, *, setting: str | None = None):
    """A ZeRO size as a user gives it: an int, a float-like string (``5e8``), or "auto" (only for the sizes HF
    Trainer fills, HF_AUTO_ZERO_SIZES); returns an int, "auto" or None (not given). Negative or fractional
    element counts raise SettingsError naming ``setting``."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == "auto":
        if name not in HF_AUTO_ZERO_SIZES:
            raise SettingsError(f"{setting or name}: DeepSpeed has no \"auto\" for {name} (HF "
                                "Trainer fills only reduce_bucket_size, stage3_prefetch_bucket_size and "
                                "stage3_param_persistence_threshold); give a number of elements", setting=setting)
        return "auto"
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = float("nan")
    if not (f == f and f >= 0 and f == int(f) and f < 1e15):
        raise SettingsError(f"{setting or name} must be a whole number of elements >= 0 (e.g. "
                            f"5e8) or \"auto\", not {value!r}", setting=setting)
    return int(f)


def resolve_zero_size(value, name: str, hidden_size: int) -> int:
    """The element count DeepSpeed uses: the value given, HF Trainer's rule for "auto", else DeepSpeed's default."""
    if value is None:
        return ZERO_SIZE_DEFAULTS[name]
    if value == "auto":
        return int(HF_AUTO_ZERO_SIZES[name](int(hidden_size)))
    return int(value)


@dataclass(frozen=True)
class QuantizedBase:
    """The frozen 4-bit base of QLoRA under FSDP / ZeRO-3 (``bnb_4bit_quant_storage`` a float dtype, so the
    packed 4-bit data is a float-typed parameter that flattens and shards with the 16-bit ones; PEFT docs
    accelerate/fsdp.md, "Use PEFT QLoRA and FSDP"). Bytes, all ranks' view:

    * ``flat_bytes``: every parameter of the base as FSDP / ZeRO-3 shard it -- packed 4-bit data (numel/2
      bytes whatever the storage dtype labels them) plus the non-quantized 16-bit parameters;
    * ``replicated_bytes``: the quantization state (absmax, nested absmax, code). bitsandbytes keeps it on the
      module (``Linear4bit.quant_state``, restored onto the weight by ``fix_4bit_weight_quant_state_from_module``
      because FSDP's flat-parameter views drop the Params4bit attributes): a plain attribute, not a parameter,
      so it is neither sharded nor gathered -- every rank holds all of it;
    * ``unit_bytes``: the largest wrapped unit's (decoder layer's) share of ``flat_bytes``;
    * ``root_bytes``: the root unit's share (embeddings, final norm, LM head: 16-bit, not quantized);
    * ``unit_trainable_params``: the adapters inside one unit (PEFT's fsdp_auto_wrap_policy wraps each
      trainable LoRA Linear as its own FSDP unit, nested in the layer's, so they are gathered with it)."""

    flat_bytes: int
    replicated_bytes: int
    unit_bytes: int
    root_bytes: int
    unit_trainable_params: int = 0


def _cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


@dataclass(frozen=True)
class Component:
    name: str
    bytes: int
    phase: str = "persistent"
    note: str = ""


@dataclass(frozen=True)
class ShardedStates:
    """Named components per GPU (one rank) and of CPU RAM per node (all of the node's ranks)."""

    scheme: str
    gpu: tuple[Component, ...]
    cpu: tuple[Component, ...] = ()
    ranks_per_node: int = 1
    cpu_init_bytes: int = 0  # CPU RAM per node while the model is loaded (before training), not with ``cpu``
    assumptions: tuple[str, ...] = ()

    @staticmethod
    def _peak(components) -> int:
        by = {p: sum(c.bytes for c in components if c.phase == p) for p in PHASES}
        return by["persistent"] + max(by["backward"], by["step"])

    @property
    def gpu_bytes(self) -> int:
        """Sum of every GPU component (an upper bound: backward- and step-phase buffers never coexist)."""
        return sum(c.bytes for c in self.gpu)

    @property
    def gpu_peak_bytes(self) -> int:
        return self._peak(self.gpu)

    @property
    def cpu_bytes(self) -> int:
        return sum(c.bytes for c in self.cpu)

    @property
    def cpu_peak_bytes(self) -> int:
        return max(self._peak(self.cpu), self.cpu_init_bytes)

    def gpu_components(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.gpu:
            out[c.name] = out.get(c.name, 0) + c.bytes
        return out

    def cpu_components(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.cpu:
            out[c.name] = out.get(c.name, 0) + c.bytes
        return out


# -- hfmem: DeepSpeed ZeRO, component by component ----------------------------------------------------------

@dataclass(frozen=True)
class ZeroConfig:
    """The ``zero_optimization`` settings that change memory, with DeepSpeed's defaults (see DS_* above).
    ``data_parallel``: ranks the states are partitioned over; ``gpus_per_node``: ranks sharing a node's CPU
    RAM (None: all on one node). ``grad_accum_dtype``: DeepSpeed ``data_types.grad_accum_dtype`` (None: the
    model dtype, engine.get_data_types in current DeepSpeed)."""

    stage: int
    data_parallel: int = 1
    gpus_per_node: int | None = None
    offload_optimizer: bool = False
    offload_param: bool = False
    reduce_bucket_size: int = DS_REDUCE_BUCKET_SIZE
    allgather_bucket_size: int = DS_ALLGATHER_BUCKET_SIZE
    overlap_comm: bool | None = None
    contiguous_gradients: bool = True
    prefetch_bucket_size: int = DS_PREFETCH_BUCKET_SIZE
    max_live_parameters: int = DS_MAX_LIVE_PARAMETERS
    max_reuse_distance: int = DS_MAX_REUSE_DISTANCE  # with 0, ZeRO-3 keeps only the current layer gathered
    param_persistence_threshold: int = DS_PARAM_PERSISTENCE_THRESHOLD
    sub_group_size: int = DS_SUB_GROUP_SIZE
    grad_accum_dtype: str | None = None
    zero_init: bool = True

    def __post_init__(self):
        if self.stage not in (0, 1, 2, 3):
            raise SettingsError("ZeRO stage must be 0, 1, 2 or 3", setting="zero")
        if self.data_parallel < 1:
            raise SettingsError("data_parallel must be >= 1", setting="data_parallel")
        if self.offload_param and self.stage != 3:
            raise SettingsError("offload_param needs ZeRO stage 3 (DeepSpeedZeroConfig.offload_param)",
                                setting="offload_param")
        if self.offload_optimizer and self.stage == 0:
            raise SettingsError("offload_optimizer needs ZeRO stage 1, 2 or 3", setting="offload_optimizer")

    @property
    def overlap(self) -> bool:
        return self.stage == 3 if self.overlap_comm is None else bool(self.overlap_comm)

    @property
    def ranks_per_node(self) -> int:
        return min(self.data_parallel, self.gpus_per_node or self.data_parallel)


def zero_config_for(settings, hidden_size: int = 0) -> ZeroConfig:
    """The ZeroConfig of a TrainSettings (``zero`` set): stage, data parallel, offload, and the sizes it gives
    (``zero_*`` fields: elements, "auto" = HF Trainer's rule for ``hidden_size``, None = DeepSpeed's default)."""
    fields = {"zero_reduce_bucket": "reduce_bucket_size", "zero_allgather_bucket": "allgather_bucket_size",
              "zero_prefetch_bucket": "prefetch_bucket_size", "zero_max_live_params": "max_live_parameters",
              "zero_persistence_threshold": "param_persistence_threshold"}
    sizes = {}
    for field_name, key in fields.items():
        value = parse_zero_size(getattr(settings, field_name, None), key, setting=field_name)
        if value == "auto" and not hidden_size:
            raise SettingsError(f"{field_name} auto needs the model's hidden size",
                                setting=field_name)
        sizes[key] = resolve_zero_size(value, key, hidden_size)
    return ZeroConfig(stage=settings.zero, data_parallel=settings.data_parallel, gpus_per_node=settings.gpus_per_node,
                      offload_optimizer=settings.offload_optimizer, offload_param=settings.offload_param, **sizes)


def zero_size_assumption(settings, config: ZeroConfig) -> str:
    """Every ZeRO size the estimate used, and where it came from (given, HF "auto", DeepSpeed's default)."""
    fields = (("zero_reduce_bucket", "reduce_bucket_size", config.reduce_bucket_size),
              ("zero_allgather_bucket", "allgather_bucket_size", config.allgather_bucket_size),
              ("zero_prefetch_bucket", "stage3_prefetch_bucket_size", config.prefetch_bucket_size),
              ("zero_max_live_params", "stage3_max_live_parameters", config.max_live_parameters),
              ("zero_persistence_threshold", "stage3_param_persistence_threshold", config.param_persistence_threshold))
    parts = []
    for field_name, key, value in fields:
        given = getattr(settings, field_name, None)
        how = ("DeepSpeed's default" if given is None else
               "auto: HF Trainer's hidden-size rule" if str(given).lower() == "auto" else "given")
        parts.append(f"{key}={value:.3g} ({how})")
    return ("DeepSpeed ZeRO sizes (elements; buffers at the model dtype's bytes): " + ", ".join(parts)
            + f", stage3_max_reuse_distance={config.max_reuse_distance:.3g}, sub_group_size={config.sub_group_size:.3g}"
            " (DeepSpeed's defaults)")


def _shard_numel(tensors: tuple[ParamTensor, ...], n: int) -> int:
    """ZeRO-3 partitions every parameter on its own: ds_tensor holds ceil(numel / world) elements."""
    return sum(_cdiv(t.numel, n) * t.count for t in tensors)


def zero_states(states: ModelStates, config: ZeroConfig, *, largest_layer_params: int | None = None,
                quantized_base: QuantizedBase | None = None) -> ShardedStates:
    """Per-rank GPU and per-node CPU bytes of DeepSpeed ZeRO ``config.stage`` for ``states`` (from
    training.model_states with a ``deepspeed-*`` precision, or ``fp32``).

    What each stage allocates (DeepSpeed, deepspeed/runtime/):

    * stage 0, fp16/bf16: FP16_Optimizer (fp16/fused_optimizer.py): full fp32 master ``fp32_groups_flat``,
      full fp32 states; ``step`` flattens ``p.grad.to(fp32)`` (a list of fp32 copies, then the flat fp32
      gradient) while the 16-bit gradients are still set. The gradient all-reduce flattens buckets of
      MEMORY_OPT_ALLREDUCE_SIZE = 5e8 elements (engine.py).
    * bf16 with ``grad_accum_dtype`` fp32 at stage 0/1 (engine._do_optimizer_sanity_check returns BFLOAT16):
      BF16_Optimizer (bf16_optimizer.py): fp32 master and states partitioned over DP, a full fp32 gradient
      buffer ``fp32_groups_gradients_flat`` for the whole run.
    * stage 1/2 (stage_1_and_2.py): full 16-bit flat weights; fp32 partition
      ``single_partition_of_fp32_groups``; ``averaged_gradients`` partition in grad_accum dtype; at the step
      ``single_grad_partition = flatten(averaged_gradients).to(fp32)``; backward() allocates ``ipg_buffer`` of
      reduce_bucket_size elements (two with overlap_comm) when contiguous_gradients. Stage 1 keeps every
      full ``.grad`` until the end of backward; stage 2 only one parameter's before it enters the bucket. The
      parameter all-gather after the step is ``all_gather_into_tensor`` into the flat weights (in place:
      allgather_bucket_size costs nothing there). Optimizer offload: fp32 partition and its ``.grad`` stay
      pinned on CPU, GPU keeps ``temp_grad_buffer_for_gpu_offload`` (largest parameter, model dtype).
    * stage 3 (stage3.py, parameter_offload.py): every parameter partitioned (ceil(numel/N) each);
      parameters of numel <= stage3_param_persistence_threshold stay gathered (mark_persistent_parameters);
      gathered working set up to stage3_max_live_parameters (max_reuse_distance 1e9 keeps parameters that
      come back soon, i.e. most of a small model) but at least the largest layer; ``__ipg_bucket_flat_buffer``
      of reduce_bucket_size and ``grad_partitions_flat_buffer`` (Ψ/N, grad_accum dtype, on the optimizer's
      device) for the whole run; fp32 gradient per sub-group (sub_group_size) at the step.

    Every stage keeps a separate fp32 partition even in fp32 training: stage_1_and_2.py
    ``single_partition_of_fp32_groups.append(...clone().float().detach())`` and stage3.py
    ``_create_fp32_partitions`` (``fp16_partitioned_groups_flat[i]...clone().float().detach()``) clone the
    model-dtype partition whatever its dtype, so fp32 runs hold fp32 params *and* an fp32 master partition;
    their buckets and gathered parameters are 4 B per element (the model dtype).

    ``quantized_base`` (QLoRA under ZeRO-3 with a float ``bnb_4bit_quant_storage``): the packed 4-bit base
    is partitioned like any parameter (ds_numel of the float-typed packed tensor) and gathered into the
    working set layer by layer; its quantization state stays whole on every rank (QuantizedBase).
    """
    prec = precision_of(states.precision)
    if prec.library != "DeepSpeed" and prec.name != "fp32":
        raise SettingsError(f"DeepSpeed trains in its own fp16/bf16 modes: use deepspeed-bf16/deepspeed-fp16 or fp32, "
                            f"not {prec.name!r}", setting="precision")
    n, st = config.data_parallel, config.stage
    T, F = states.trainable_params, states.frozen_params
    w_t, w_f = states.trainable_weight_bytes_per_param, states.frozen_weight_bytes_per_param
    g = prec.gradient_bytes
    ga = DTYPE_BYTES[config.grad_accum_dtype] if config.grad_accum_dtype else g
    opt_state, opt_temp = states.optimizer_bytes, states.optimizer_step_temporary_bytes
    tensors = states.trainable_tensors + states.frozen_tensors
    ll = largest_layer_params if largest_layer_params is not None else largest_module_params(tensors)
    largest_param = largest_tensor_numel(states.trainable_tensors)
    half = prec.library == "DeepSpeed"
    bf16_optimizer = half and prec.activation_dtype == "bfloat16" and ga == 4 and st in (0, 1) \
        and not config.offload_optimizer
    gpu: list[Component] = []
    cpu_rank: list[Component] = []  # per rank; multiplied by ranks_per_node below
    assumptions = [f"DeepSpeed ZeRO-{st}, data parallel {n}, {prec.name}, optimizer {states.optimizer}"]
    opt_dev = cpu_rank if config.offload_optimizer else gpu

    def add(where, name, nbytes, phase="persistent", note=""):
        if nbytes:
            where.append(Component(name, int(nbytes), phase, note))

    if st < 3:
        add(gpu, "weights_bytes", T * w_t + F * w_f, note="16-bit flat weights, full on every rank")
    if bf16_optimizer:
        add(gpu, "master_weights_bytes", _cdiv(T, n) * 4, note="BF16_Optimizer fp32_groups_flat_partition")
        add(gpu, "optimizer_bytes", _cdiv(opt_state, n), note="states of the rank's fp32 partition")
        add(gpu, "gradients_bytes", T * g, "backward", "bf16 .grad before update_hp_grads")
        add(gpu, "fp32_gradients_bytes", T * 4, note="BF16_Optimizer fp32_groups_gradients_flat (full, whole run)")
        add(gpu, "optimizer_step_temporary_bytes", _cdiv(opt_temp, n), "step")
        assumptions.append("bf16 + grad_accum_dtype fp32 at stage 0/1 runs BF16_Optimizer (engine.py)")
    elif st == 0:
        if half:
            add(gpu, "master_weights_bytes", T * 4, note="FP16_Optimizer fp32_groups_flat (full)")
        add(gpu, "optimizer_bytes", opt_state)
        add(gpu, "gradients_bytes", T * g, note="16-bit .grad, full, until the step")
        if half:
            add(gpu, "fp32_gradients_bytes", T * 4, "step", "FP16_Optimizer.step: flat fp32 gradient")
            add(gpu, "fp32_gradient_flatten_copies_bytes", T * 4, "step",
                "p.grad.to(fp32) per parameter, alive while they are flattened")
        add(gpu, "allreduce_bucket_bytes", min(DS_ALLREDUCE_BUCKET_SIZE, T) * g if n > 1 else 0, "backward",
            "engine.allreduce_gradients: flat bucket of MEMORY_OPT_ALLREDUCE_SIZE elements")
        add(gpu, "optimizer_step_temporary_bytes", opt_temp, "step")
    elif st in (1, 2):
        add(opt_dev, "master_weights_bytes", _cdiv(T, n) * 4, note="single_partition_of_fp32_groups")
        add(opt_dev, "optimizer_bytes", _cdiv(opt_state, n))
        if config.offload_optimizer:
            add(cpu_rank, "fp32_gradients_bytes", _cdiv(T, n) * 4, note="pinned fp32 .grad of the CPU partition")
            add(cpu_rank, "offload_grad_buffer_bytes", largest_param * g, note="temp_grad_buffer_for_cpu_offload")
            add(gpu, "offload_grad_buffer_bytes", largest_param * g, note="temp_grad_buffer_for_gpu_offload")
        else:
            add(gpu, "gradients_bytes", _cdiv(T, n) * ga, note="averaged_gradients of the rank's partition")
            add(gpu, "fp32_gradients_bytes", _cdiv(T, n) * 4, "step", "single_grad_partition .to(fp32)")
        if st == 1:
            add(gpu, "unsharded_gradients_bytes", T * g, "backward", "ZeRO-1: every full .grad until reduced")
        else:
            add(gpu, "unsharded_gradients_bytes", largest_param * g, "backward",
                "one parameter's full .grad before it is copied into the bucket")
        if T and (config.contiguous_gradients or config.offload_optimizer):
            add(gpu, "reduce_bucket_bytes", config.reduce_bucket_size * g * (2 if config.overlap else 1),
                "backward", "ipg_buffer: reduce_bucket_size elements" + (", double-buffered" if config.overlap else ""))
        add(opt_dev, "optimizer_step_temporary_bytes", _cdiv(opt_temp, n), "step")
        assumptions.append("parameter all-gather in place (all_gather_into_tensor): allgather_bucket_size adds "
                           "no buffer")
    else:  # stage 3
        trainable_shard = _shard_numel(states.trainable_tensors, n)
        frozen_shard = _shard_numel(states.frozen_tensors, n)
        param_dev = cpu_rank if config.offload_param else gpu
        qb = quantized_base
        add(param_dev, "weights_bytes", trainable_shard * w_t + frozen_shard * w_f
            + (_cdiv(qb.flat_bytes, n) if qb else 0), note="the rank's partition of every parameter")
        if qb:
            add(gpu, "quant_state_bytes", qb.replicated_bytes,
                note="bitsandbytes quant_state (absmax, nested absmax) on every rank: a module attribute, "
                     "not partitioned")
        thr = config.param_persistence_threshold
        small_t = sum(t.total_numel for t in states.trainable_tensors if t.numel <= thr)
        small_f = sum(t.total_numel for t in states.frozen_tensors if t.numel <= thr)
        persistent = small_t + small_f
        add(gpu, "persistent_params_bytes", small_t * w_t + small_f * w_f,
            note=f"parameters of <= {thr} elements stay gathered")
        # the working set: the current layer's parameters always; beyond them, parameters come back soon are
        # kept (max_reuse_distance) up to stage3_max_live_parameters, and without reuse only the prefetch
        # (stage3_prefetch_bucket_size elements ahead, itself within max_live_parameters)
        cap = config.max_live_parameters if config.max_reuse_distance else min(config.max_live_parameters,
                                                                                config.prefetch_bucket_size)
        elem = max(w_t, w_f if F else w_t)
        if qb:
            # the packed base counted at 2 B per (bf16-typed) element, the adapters at theirs: the live element
            # cap applies to both (ds_numel)
            unit_bytes = qb.unit_bytes + min(qb.unit_trainable_params, T) * w_t
            total_bytes = qb.flat_bytes + (T - persistent) * w_t
            gathered = min(total_bytes, max(unit_bytes, cap * 2) if config.max_reuse_distance else unit_bytes + cap * 2)
            add(gpu, "gathered_params_bytes", gathered, "backward",
                "gathered working set of the 4-bit base (bf16-typed packed elements) and the adapters: up to "
                "stage3_max_live_parameters elements, at least the largest layer")
        else:
            live = min(T + F - persistent, max(ll, cap) if config.max_reuse_distance else ll + cap)
            add(gpu, "gathered_params_bytes", live * elem, "backward",
                "gathered working set: up to stage3_max_live_parameters, at least the largest layer")
        add(gpu, "unsharded_gradients_bytes", min(ll, T) * g, "backward", "the largest layer's full gradients")
        add(gpu, "reduce_bucket_bytes", config.reduce_bucket_size * g if config.contiguous_gradients and T else 0,
            note="__ipg_bucket_flat_buffer (allocated once)")
        add(opt_dev, "gradients_bytes", _cdiv(T, n) * ga, note="grad_partitions_flat_buffer")
        add(opt_dev, "master_weights_bytes", _cdiv(T, n) * 4, note="fp32_partitioned_groups_flat")
        add(opt_dev, "optimizer_bytes", _cdiv(opt_state, n))
        add(opt_dev, "fp32_gradients_bytes", min(_cdiv(T, n), config.sub_group_size) * 4, "step",
            "fp32 gradient of one sub-group at a time")
        add(opt_dev, "optimizer_step_temporary_bytes", _cdiv(opt_temp, n), "step")
    rpn = config.ranks_per_node
    cpu = tuple(Component(c.name, c.bytes * rpn, c.phase, c.note + f" (× {rpn} ranks)") for c in cpu_rank)
    load = (T * w_t + F * w_f)
    cpu_init = rpn * (_cdiv(load, n) if (st == 3 and config.zero_init) else load)
    if config.offload_optimizer or config.offload_param:
        assumptions.append(f"CPU RAM per node: {rpn} ranks' pinned partitions")
    return ShardedStates(scheme=f"deepspeed-zero{st}", gpu=tuple(gpu), cpu=cpu, ranks_per_node=rpn,
                         cpu_init_bytes=cpu_init, assumptions=tuple(assumptions))


# -- FSDP and DDP -------------------------------------------------------------------------------------------

from ..vocab import FSDP_STRATEGIES  # noqa: E402  (re-exported: the strategies fsdp_states takes)


def fsdp_states(states: ModelStates, world_size: int, *, largest_unit_params: int, root_unit_params: int = 0,
                strategy: str = "full_shard", prefetch_units: int = 2, gpus_per_node: int | None = None,
                cpu_offload: bool = False, param_dtype_bytes: int | None = None,
                quantized_base: QuantizedBase | None = None) -> ShardedStates:
    """Per-rank bytes of torch FSDP (FSDP1 ShardingStrategy / FSDP2 fully_shard), for ``states`` of a torch
    precision (fp32, amp-*, bf16, fp16).

    * full_shard (≈ ZeRO-3): parameters, gradients and optimizer states sharded 1/N; during forward and
      backward the root unit (parameters outside every wrapped unit: embeddings, final norm, LM head) stays
      gathered — FSDP2 sets the root's reshard_after_forward to False (_fully_shard.py) — and
      ``prefetch_units`` units are gathered at once: BackwardPrefetch.BACKWARD_PRE "holds the current set of
      parameters, next set of parameters, and current set of gradients in memory" (fsdp/api.py). Use the
      largest wrapped unit (the decoder layer, Inventory.layers) for ``largest_unit_params``.
    * shard_grad_op (≈ ZeRO-2): parameters are not resharded after forward, so the whole model is gathered
      through backward; gradients and states sharded.
    * hybrid_shard: full_shard within a node (``gpus_per_node`` ranks), replicated across nodes.
    * no_shard (≈ DDP): everything full on every rank.
    ``param_dtype_bytes``: the all-gather dtype (MixedPrecision.param_dtype); defaults to the stored weights'.
    ``cpu_offload`` (CPUOffload(offload_params=True); accelerate ``fsdp_offload_params``): the sharded flat
    parameters live pinned on CPU, the sharded gradients are copied to CPU after the reduce-scatter and the
    optimizer steps there (FSDP1 _runtime_utils._post_backward_hook: ``_cpu_grad``), so weights, gradients
    and optimizer states (and their step temporaries) are CPU RAM, per rank, × ranks per node. The GPU keeps
    what is unsharded for compute: the root unit, ``prefetch_units`` gathered units and the current unit's
    full gradients (and the activations, counted by the caller).

    LoRA (``states`` with a frozen part): a unit's frozen parameters are gathered at their own width and the
    adapters at theirs -- PEFT's fsdp_auto_wrap_policy (peft utils/other.py) wraps every trainable leaf module
    (the LoRA Linears) as its own FSDP unit inside the layer's, because use_orig_params=False needs one dtype
    and one requires_grad per flat parameter; the adapters of one unit are its share of them
    (T × unit / frozen).

    ``quantized_base`` (FSDP-QLoRA, QuantizedBase): the packed 4-bit base is sharded 1/N with the rest; in
    forward and again in backward (and in the recomputation of a checkpointed layer) FSDP all-gathers each
    layer's base flat parameter with its adapters, the next one prefetched (BACKWARD_PRE; in forward the
    rate limiter, limit_all_gathers, allows two in flight), and the root unit (embeddings, final norm, LM head
    in 16-bit) stays gathered from forward through backward (FSDP1 ``_post_forward_reshard`` does not free
    the root's parameters for FULL_SHARD). The quantization state is on every rank.
    """
    if strategy not in FSDP_STRATEGIES:
        raise SettingsError(f"unknown FSDP strategy {strategy!r} ({', '.join(FSDP_STRATEGIES)})")
    prec = precision_of(states.precision)
    if prec.library == "DeepSpeed":
        raise SettingsError("FSDP trains with torch precisions (fp32, amp-*, bf16, fp16), not DeepSpeed's",
                            setting="precision")
    rpn = min(world_size, gpus_per_node or world_size)
    n = {"full_shard": world_size, "shard_grad_op": world_size, "no_shard": 1, "hybrid_shard": rpn}[strategy]
    T, F = states.trainable_params, states.frozen_params
    w_t, w_f = states.trainable_weight_bytes_per_param, states.frozen_weight_bytes_per_param
    g = prec.gradient_bytes
    pd = param_dtype_bytes or max(w_t, w_f if F else w_t)
    gpu: list[Component] = []
    cpu_rank: list[Component] = []
    shard_dev = cpu_rank if cpu_offload else gpu

    def add(where, name, nbytes, phase="persistent", note=""):
        if nbytes:
            where.append(Component(name, int(nbytes), phase, note))

    qb = quantized_base
    add(shard_dev, "weights_bytes", _cdiv(T, n) * w_t + _cdiv(F, n) * w_f + (_cdiv(qb.flat_bytes, n) if qb else 0),
        note=f"sharded 1/{n}")
    add(shard_dev, "master_weights_bytes", _cdiv(T, n) * prec.master_weight_bytes)
    add(shard_dev, "gradients_bytes", _cdiv(T, n) * g, note="sharded gradients")
    add(shard_dev, "optimizer_bytes", _cdiv(states.optimizer_bytes, n))
    add(shard_dev, "optimizer_step_temporary_bytes", _cdiv(states.optimizer_step_temporary_bytes, n), "step")
    if qb:
        add(gpu, "quant_state_bytes", qb.replicated_bytes,
            note="bitsandbytes quant_state on every rank (Linear4bit.quant_state: not a parameter, not sharded)")
    if strategy in ("full_shard", "hybrid_shard") and n > 1:
        pd_t = param_dtype_bytes or w_t
        if qb:
            unit_t = min(T, qb.unit_trainable_params)
            gathered_bytes = qb.root_bytes + prefetch_units * (qb.unit_bytes + unit_t * pd_t)
            gathered_bytes = min(gathered_bytes, qb.flat_bytes + T * pd_t)
            note = (f"root unit (16-bit) + {prefetch_units} × (largest layer's packed 4-bit flat param + its "
                    "adapters), unsharded")
        elif F:
            pd_f = param_dtype_bytes or w_f
            frozen_units = min(F, root_unit_params + prefetch_units * largest_unit_params)
            unit_t = min(T, _cdiv(T * largest_unit_params, F)) if F else 0
            gathered_bytes = frozen_units * pd_f + min(T, prefetch_units * unit_t) * pd_t
            note = (f"root unit + {prefetch_units} × largest unit, unsharded: the frozen base at {pd_f} B, the "
                    f"adapters (their own units, PEFT's fsdp_auto_wrap_policy) at {pd_t} B")
        else:
            gathered_bytes = min(T + F, root_unit_params + prefetch_units * largest_unit_params) * pd
            note = f"root unit + {prefetch_units} × largest unit, unsharded"
        add(gpu, "gathered_params_bytes", gathered_bytes, "backward", note)
        add(gpu, "unsharded_gradients_bytes", min(T, largest_unit_params) * g, "backward",
            "the current unit's full gradients before reduce-scatter")
    elif strategy == "shard_grad_op" and n > 1:
        add(gpu, "gathered_params_bytes", (T + F) * pd + (qb.flat_bytes if qb else 0), "backward",
            "not resharded after forward")
        add(gpu, "unsharded_gradients_bytes", min(T, largest_unit_params) * g, "backward",
            "the current unit's full gradients before reduce-scatter")
    cpu = tuple(Component(c.name, c.bytes * rpn, c.phase, c.note + f" (× {rpn} ranks)") for c in cpu_rank)
    assumptions = [f"FSDP {strategy}, world size {world_size}, {prec.name}, optimizer {states.optimizer}"]
    if strategy in ("full_shard", "hybrid_shard") and n > 1:
        assumptions.append(f"FSDP gathers the root unit (embeddings, final norm, LM head) for forward and backward "
                           f"and {prefetch_units} wrapped units at once (backward_prefetch BACKWARD_PRE, "
                           "limit_all_gathers)")
    if qb:
        assumptions.append("FSDP-QLoRA: the packed 4-bit base is a bf16-typed flat parameter "
                           "(bnb_4bit_quant_storage), sharded and gathered layer by layer; quant_state whole on "
                           "every rank")
    if cpu_offload:
        assumptions.append(f"FSDP CPU offload (offload_params=True): sharded parameters, gradients and the optimizer "
                           f"step in CPU RAM ({rpn} ranks per node); the GPU keeps the gathered units")
    return ShardedStates(scheme=f"fsdp-{strategy}", gpu=tuple(gpu), cpu=cpu, ranks_per_node=rpn,
                         cpu_init_bytes=rpn * (T * w_t + F * w_f + (qb.flat_bytes + qb.replicated_bytes if qb else 0)),
                         assumptions=tuple(assumptions))


def fsdp_units(layers, num_params: int) -> tuple[int, int]:
    """(largest_unit_params, root_unit_params) for ``fsdp_states`` from ``Inventory.layers`` (LayerGroup
    objects or dicts with ``names`` and ``num_params``): the wrapped units are the repeated blocks (groups
    whose module names all end in a layer index: ``model.layers.0``; what transformer_auto_wrap_policy
    wraps via ``_no_split_modules``), the root unit is every parameter outside them (embeddings, final
    norm, LM head)."""
    def get(g, k):
        return g[k] if isinstance(g, dict) else getattr(g, k)

    units = [g for g in layers if get(g, "names") and all(str(n).rsplit(".", 1)[-1].isdigit()
                                                         for n in get(g, "names"))]
    largest = max((int(get(g, "num_params")) for g in units), default=0)
    wrapped = sum(int(get(g, "num_params")) * len(get(g, "names")) for g in units)
    return largest, max(0, int(num_params) - wrapped)


def census_units(census) -> tuple[int, int, int]:
    """(largest_unit_params, root_unit_params, layers) of a census (typed entries or the inventory's dicts):
    the wrapped units are the repeated layers -- entries whose count is a multiple of the layer count
    (``_layer_count``), what transformer_auto_wrap_policy wraps through ``_no_split_modules`` -- and the root
    unit is everything else (embeddings, final norm, LM head)."""
    entries = census_of(census)
    if not entries:
        return 0, 0, 0
    L = _layer_count(entries)
    layer = sum(e.params for e in entries if e.count and e.count >= L and e.count % L == 0 and e.role != "embedding")
    total = sum(e.params for e in entries)
    return (layer // L if L else 0), max(0, total - layer), L


def ddp_states(states: ModelStates, *, gradient_as_bucket_view: bool = False) -> ShardedStates:
    """torch DistributedDataParallel: full model states on every rank, plus the all-reduce buckets, which
    cover every gradient unless ``gradient_as_bucket_view`` ("the saved memory size will be equal to the total
    gradients size", torch/nn/parallel/distributed.py)."""
    comps = [Component(k, v, "step" if k == "optimizer_step_temporary_bytes" else "persistent")
             for k, v in states.components().items() if v and k != "fp32_gradients_bytes"]
    if not gradient_as_bucket_view:
        comps.append(Component("ddp_bucket_bytes", states.gradients_bytes, "persistent",
                               "Reducer buckets, a second copy of the gradients"))
    return ShardedStates(scheme="ddp", gpu=tuple(comps),
                         assumptions=(f"DDP, gradient_as_bucket_view={gradient_as_bucket_view}",))


def single_device_states(states: ModelStates) -> ShardedStates:
    """One GPU, no parallelism: the model states with their phases."""
    phase = {"fp32_gradients_bytes": "step", "optimizer_step_temporary_bytes": "step"}
    comps = [Component(k, v, phase.get(k, "persistent")) for k, v in states.components().items() if v]
    return ShardedStates(scheme="single-device", gpu=tuple(comps))


# -- tensor parallelism -------------------------------------------------------------------------------------

# Megatron-style row-parallel projections (input dimension split, bias replicated); other Linear layers
# are column-parallel (output dimension and bias split). Names as transformers' models call them.
ROW_PARALLEL_NAMES = frozenset({"o_proj", "down_proj", "out_proj", "c_proj", "wo", "fc2", "w2", "dense_4h_to_h",
                                "proj", "w_out"})


def tensor_parallel_census(census, tp: int, *, vocab_parallel: bool = False) -> list[CensusEntry]:
    """The census one tensor-parallel rank holds (typed entries, ``params`` recomputed; the input may be the
    inventory's dicts or CensusEntry objects). Entries that were split have ``tp_sharded`` set.

    Assumptions (Megatron-LM layout): ``linear`` and ``experts`` tensors are split t ways — column-parallel
    layers split out_features and their bias, row-parallel ones (ROW_PARALLEL_NAMES) split in_features and
    keep their bias whole; fused expert tensors split their largest non-expert dimension. Routers, norms
    and other small tensors are replicated. Embeddings and the LM head are replicated unless
    ``vocab_parallel`` (VocabParallelEmbedding / a column-parallel head: vocabulary split t ways)."""
    if tp < 1:
        raise SettingsError("tensor parallel degree must be >= 1", setting="tp")
    out: list[CensusEntry] = []
    for e in census_of(census):
        count = e.count or 1
        role = e.role
        split = role in ("linear", "experts") or (vocab_parallel and role in ("embedding", "lm_head"))
        if tp > 1 and split and e.is_module:
            fin, fout, bias = int(e.in_features), int(e.out_features), e.bias
            per = e.params // count
            w = 0 if e.tied else fin * fout
            counted_bias = per - w
            if role == "linear" and e.name in ROW_PARALLEL_NAMES:
                fin = _cdiv(fin, tp)
            else:
                fout = _cdiv(fout, tp)
                if counted_bias:
                    counted_bias = _cdiv(counted_bias, tp)
                    bias = _cdiv(bias, tp)
            w = 0 if e.tied else fin * fout
            e = replace(e, in_features=fin, out_features=fout, bias=bias, params=(w + counted_bias) * count)
        elif tp > 1 and split and e.shape:
            shape = list(e.shape)
            dims = range(1, len(shape)) if role == "experts" and len(shape) > 1 else range(len(shape))
            if role == "embedding":
                dims = range(1)  # vocabulary rows
            k = max(dims, key=lambda i: shape[i])
            shape[k] = _cdiv(shape[k], tp)
            e = replace(e, shape=tuple(shape), params=math.prod(shape) * count)
        out.append(replace(e, tp_sharded=bool(split and tp > 1)))
    return out


# -- pipeline parallelism -----------------------------------------------------------------------------------

def _layer_count(census: tuple[CensusEntry, ...]) -> int:
    counts = [e.count for e in census if e.role in ("linear", "experts") and e.count]
    if not counts:
        return 1
    return max(set(counts), key=lambda c: (sum(1 for x in counts if x == c), c))


def pipeline_layers(num_layers: int, pp: int, stage: int) -> int:
    """Layers of ``stage`` when L layers are split evenly over p stages (the first L mod p stages take one
    more), as Megatron (which requires L divisible by p) and DeepSpeed's PipelineModule 'uniform' do."""
    if not 0 <= stage < pp:
        raise SettingsError("stage must be in [0, pp)")
    return num_layers // pp + (1 if stage < num_layers % pp else 0)


def pipeline_stage_census(census, pp: int, stage: int, *, num_layers: int | None = None) -> list[CensusEntry]:
    """The census of pipeline stage ``stage`` of ``pp`` (typed entries; the input may be the inventory's dicts
    or CensusEntry objects): the repeated-layer tensors (census entries whose count is a multiple of the layer
    count) scaled to the stage's layers; embeddings on the first stage; the LM head and the remaining
    non-layer tensors (final norm, pooler) on the last. A tied LM head gets the embedding's weight on the last
    stage when pp > 1 (Megatron keeps a copy of the word embeddings there to compute the logits and
    all-reduces their gradients between the two stages)."""
    census = census_of(census)
    L = num_layers or _layer_count(census)
    layers = pipeline_layers(L, pp, stage)
    first, last = stage == 0, stage == pp - 1
    out: list[CensusEntry] = []
    for e in census:
        count = e.count or 1
        role = e.role
        if count >= L and count % L == 0 and role != "embedding":
            new = count // L * layers
            if new:
                out.append(replace(e, count=new, params=e.params // count * new))
        elif role == "embedding":
            if first:
                out.append(e)
        elif role == "lm_head":
            if last:
                if e.tied and pp > 1:
                    w = int(e.in_features) * int(e.out_features)
                    out.append(replace(e, tied=False, params=e.params + w * count))
                else:
                    out.append(e)
        elif last:
            out.append(e)
    return out


PIPELINE_SCHEDULES = ("1f1b", "gpipe", "interleaved")


def pipeline_activation_layers(num_layers: int, pp: int, *, microbatches: int | None = None,
                               schedule: str = "1f1b", virtual_stages: int = 1, stage: int = 0) -> float:
    """How many layers' worth of one micro-batch's activations ``stage`` holds at its peak; multiply by the
    per-layer activation bytes. Korthikanti et al. 2022 §4.2.3: with 1F1B the first stage keeps p
    micro-batches in flight, each of L/p layers, so L layers' worth whatever p (Eq. 5); the interleaved
    schedule (v model chunks per stage) multiplies that by (1 + (p − 1)/(p·v)). Stage s of 1F1B has
    p − s micro-batches in flight; fewer micro-batches than that cap it. GPipe keeps all micro-batches."""
    if schedule not in PIPELINE_SCHEDULES:
        raise SettingsError(f"unknown pipeline schedule {schedule!r} ({', '.join(PIPELINE_SCHEDULES)})")
    per_stage = num_layers / pp
    if schedule == "gpipe":
        return per_stage * (microbatches or pp)
    inflight = pp - stage if microbatches is None else min(pp - stage, microbatches)
    layers = per_stage * inflight
    if schedule == "interleaved" and pp > 1:
        layers *= 1 + (pp - 1) / (pp * virtual_stages)
    return layers


__all__ = [
    "Component", "ShardedStates", "ZeroConfig", "QuantizedBase", "parse_zero_size", "resolve_zero_size",
    "HF_AUTO_ZERO_SIZES", "ZERO_SIZE_DEFAULTS", "zero_config_for", "zero_size_assumption", "zero_states", "fsdp_states", "fsdp_units", "census_units",
    "ddp_states",
    "single_device_states",
    "tensor_parallel_census", "pipeline_stage_census", "pipeline_layers", "pipeline_activation_layers",
]
