"""Model-state memory for fine-tuning: weights, fp32 master weights, gradients and optimizer states, computed
from the parameter census of a model. Pure functions: no torch, no I/O.

Input is the parameter census (hfmem.inventory.meta_model.census), read as typed
``hfmem.model.census.CensusEntry`` objects (``Inventory.tensors``' dicts are accepted and converted on entry):
``role`` (linear / experts / embedding / lm_head / router / other), ``count``, ``params`` and shapes
(``in_features``/``out_features``/``bias``/``tied`` for Linear-like modules, ``shape`` otherwise). A full
fine-tune passes the whole census as ``trainable``; LoRA passes the adapter tensors (same format) as
``trainable`` and the base model as ``frozen``.

Every figure is an integer number of bytes, for one copy of the model (no parallelism); per-rank figures
under ZeRO / FSDP / tensor and pipeline parallelism are in hfmem.scenarios.sharding.

Sources are cited where each constant is defined; tests/test_training_states.py checks their published
numbers (ZeRO paper, bitsandbytes, HF Adafactor, torch AdamW).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from .. import vocab
from ..errors import SettingsError
from ..model.census import CensusEntry, entry_of
from .formulas import adamw_step_temporary_bytes

# Element sizes (bytes) of the dtypes training uses.
DTYPE_BYTES: dict[str, int] = vocab.DTYPE_BYTES  # re-exported from hfmem.vocab


# -- precision modes ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Precision:
    """How a training library holds one trainable parameter, in bytes per element.

    ``weight_bytes``: the parameter as the model holds it. ``master_weight_bytes``: a separate fp32 copy the
    optimizer updates (0 when the optimizer updates the parameter itself). ``gradient_bytes``: ``.grad``.
    ``optimizer_param_bytes``: the element size of the tensor the optimizer steps (torch optimizers create
    their states with ``zeros_like`` of it, so it is also their state dtype). ``fp32_gradient_bytes``: an fp32
    gradient copy made for the optimizer step (DeepSpeed; its ZeRO-0 size here, sharding.py shards it).
    ``flat_optimizer_groups``: the optimizer sees flattened parameter groups (DeepSpeed), so per-tensor
    optimizer rules (bitsandbytes' 4096 threshold, Adafactor's factoring) apply to one flat 1-D tensor.
    """

    name: str
    weight_bytes: int
    master_weight_bytes: int
    gradient_bytes: int
    optimizer_param_bytes: int
    fp32_gradient_bytes: int
    activation_dtype: str
    flat_optimizer_groups: bool
    library: str
    source: str


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision(
        "fp32", 4, 0, 4, 4, 0, "float32", False, "torch",
        "plain fp32 training: fp32 parameters, gradients and optimizer states"),
    # HF Trainer bf16=True / fp16=True on an fp32 model: accelerate wraps forward in torch.autocast, the
    # parameters, their .grad and the optimizer stay fp32; only activations are half precision.
    # (transformers Trainer -> Accelerator(mixed_precision=...) -> torch.autocast; fp16 adds a GradScaler,
    # whose unscale_ works in place.)
    "amp-bf16": Precision(
        "amp-bf16", 4, 0, 4, 4, 0, "bfloat16", False, "transformers Trainer / accelerate (torch.autocast)",
        "torch.autocast: fp32 weights, fp32 gradients, fp32 optimizer states, bf16 activations"),
    "amp-fp16": Precision(
        "amp-fp16", 4, 0, 4, 4, 0, "float16", False, "transformers Trainer / accelerate (torch.autocast)",
        "torch.autocast + GradScaler: fp32 weights, fp32 gradients, fp32 optimizer states, fp16 activations"),
    # Pure half precision: the model is loaded in bf16/fp16 and trained as is. torch.optim.AdamW creates
    # exp_avg/exp_avg_sq with torch.zeros_like(p) (torch/optim/adam.py, _init_group), i.e. in the parameter
    # dtype: 2 + 2 + 2·2 = 8 B/param (torchtune; the PEFT MetaMathQA full fine-tune).
    "bf16": Precision(
        "bf16", 2, 0, 2, 2, 0, "bfloat16", False, "torch",
        "pure bf16: bf16 weights and gradients, torch optimizer states in the parameter dtype"),
    "fp16": Precision(
        "fp16", 2, 0, 2, 2, 0, "float16", False, "torch",
        "pure fp16: fp16 weights and gradients, torch optimizer states in the parameter dtype (HF Trainer "
        "refuses fp16=True on fp16 weights: GradScaler cannot unscale fp16 gradients)"),
    # DeepSpeed bf16/fp16: 16-bit parameters and gradients in the model, an fp32 master partition
    # (stage_1_and_2.py: single_partition_of_fp32_groups = ...clone().float(); fp16/fused_optimizer.py:
    # fp32_groups_flat; bf16_optimizer.py: fp32_groups_flat_partition) stepped by FusedAdam/CPUAdam with fp32
    # states: the ZeRO paper's 2Ψ + 2Ψ + KΨ, K = 12 (Rajbhandari et al., arXiv 1910.02054, §3). The step builds an fp32 gradient:
    # FP16_Optimizer.step flattens p.grad.to(fp32) into fp32_groups_flat[i].grad; ZeRO-1/2
    # single_grad_partition = flatten(averaged_gradients).to(fp32) for the rank's partition; ZeRO-3 does the
    # same per sub-group (_prepare_fp32_grad_for_sub_group); BF16_Optimizer (ZeRO-0/1 bf16 with fp32
    # gradient accumulation) keeps a full fp32 gradient buffer all the time (fp32_groups_gradients_flat).
    "deepspeed-bf16": Precision(
        "deepspeed-bf16", 2, 4, 2, 4, 4, "bfloat16", True, "DeepSpeed",
        "DeepSpeed bf16: bf16 params/grads, fp32 master + fp32 Adam states, fp32 gradient at the step"),
    "deepspeed-fp16": Precision(
        "deepspeed-fp16", 2, 4, 2, 4, 4, "float16", True, "DeepSpeed",
        "DeepSpeed fp16 (loss scaling): fp16 params/grads, fp32 master + fp32 Adam states, fp32 gradient at "
        "the step"),
}
# The ZeRO paper's "mixed precision" (fp16 parameters and gradients, fp32 master and Adam moments).
PRECISIONS["deepspeed-mixed"] = replace(
    PRECISIONS["deepspeed-fp16"], name="deepspeed-mixed",
    source="ZeRO paper §3.1 mixed-precision Adam: fp16 params 2Ψ + fp16 grads 2Ψ + K = 12 (fp32 master, "
           "momentum, variance); DeepSpeed fp16 adds an fp32 gradient at the step")


def precision_of(name: str | Precision) -> Precision:
    if isinstance(name, Precision):
        return name
    try:
        return PRECISIONS[name]
    except KeyError:
        raise SettingsError(f"unknown precision {name!r} (use one of {', '.join(PRECISIONS)})") from None


# -- the census as parameter tensors ------------------------------------------------------------------------

@dataclass(frozen=True)
class ParamTensor:
    """``count`` parameter tensors of one shape. Linear-like census entries become a weight ([out, in], or
    [in, out] for transformers' Conv1D) and a bias tensor; a tied LM head adds no weight."""

    role: str
    name: str
    shape: tuple[int, ...]
    count: int
    module: str = ""  # the module that owns the tensor (weight and bias of one Linear share it)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def total_numel(self) -> int:
        return self.numel * self.count


def param_tensors(census) -> tuple[ParamTensor, ...]:
    """Expand census entries (CensusEntry, or the inventory's dicts) into parameter tensors. Accepts ParamTensor
    items as they are."""
    out: list[ParamTensor] = []
    for i, item in enumerate(census):
        if isinstance(item, ParamTensor):
            out.append(item)
            continue
        e: CensusEntry = entry_of(item)
        count = e.count or 1
        params = e.params
        role, name = e.role, e.name
        if e.is_module:
            fin, fout = int(e.in_features), int(e.out_features)
            wshape = (fin, fout) if e.conv1d else (fout, fin)
            w = 0 if e.tied else fin * fout
            module = f"{name}#{i}"
            if w:
                out.append(ParamTensor(role, f"{name}.weight", wshape, count, module))
            b = params // count - w
            if b > 0:
                out.append(ParamTensor(role, f"{name}.bias", (b,), count, module))
            continue
        # a parameter held directly by a module: ``module.param`` (census names it so); tensors of one module
        # with the same multiplicity are taken to belong to the same module instances
        module = (name.rsplit(".", 1)[0] if "." in name else name) + f"@{count}"
        if e.shape is not None and math.prod(e.shape) * count == params:
            out.append(ParamTensor(role, name, e.shape, count, module))
        elif params:  # no usable shape: one 1-D tensor per instance
            out.append(ParamTensor(role, name, (params // count,), count, module))
    return tuple(out)


def total_numel(tensors) -> int:
    return sum(t.total_numel for t in param_tensors(tensors))


def largest_tensor_numel(tensors) -> int:
    return max((t.numel for t in param_tensors(tensors)), default=0)


def largest_module_params(tensors) -> int:
    """DeepSpeed's ``largest_layer_params`` (stage3.py ``model_to_params``): the largest sum of parameters a
    single module owns directly (``m.parameters(recurse=False)``): weight + bias of a Linear, both fused
    expert tensors of an MoE experts module. A tied LM head owns the shared weight, which is as large as the
    embedding that the census keeps it under, so the result is the same."""
    per_module: dict[str, int] = {}
    for t in param_tensors(tensors):
        key = t.module or t.name
        per_module[key] = per_module.get(key, 0) + t.numel
    return max(per_module.values(), default=0)


# -- optimizers ---------------------------------------------------------------------------------------------

# bitsandbytes Optimizer2State / Optimizer1State.init_state (bitsandbytes/optim/optimizer.py): 8-bit states
# are uint8 with one fp32 absmax per block of 256 elements (block_wise=True); tensors with
# numel < min_8bit_size (default 4096) get fp32 states instead. The quantization maps (qmap1/qmap2) are
# shared by all tensors (self.name2qmap), so they add nothing per tensor.
BNB_BLOCK_SIZE = 256
BNB_MIN_8BIT_SIZE = 4096

OPTIMIZERS = vocab.OPTIMIZERS
ADAMW_IMPLS = vocab.ADAMW_IMPLS


@dataclass(frozen=True)
class OptimizerBytes:
    """Optimizer memory for a set of trainable tensors. ``state_bytes`` live for the whole run;
    ``step_temporary_bytes`` exist only inside ``optimizer.step()`` (on top of the states and gradients)."""

    optimizer: str
    state_bytes: int
    step_temporary_bytes: int
    states_per_param: int  # number of state tensors per parameter (0, 1 or 2); Adafactor's factored pair counts 1
    source: str


def bnb_8bit_state_bytes(numel: int, states: int = 2) -> int:
    """bitsandbytes 8-bit optimizer states for one tensor: ``states`` uint8 tensors plus an fp32 absmax per
    block of 256; fp32 (4 B per state) below ``min_8bit_size`` = 4096 elements. 2 states → 2·(1 + 4/256) =
    2.03125 B/param for large tensors (bitsandbytes' blockwise 8-bit optimizers)."""
    n = int(numel)
    if n < BNB_MIN_8BIT_SIZE:
        return states * 4 * n
    return states * (n + 4 * math.ceil(n / BNB_BLOCK_SIZE))


def adafactor_state_bytes(shape: tuple[int, ...], beta1: float | None = None) -> int:
    """transformers' Adafactor (optimization.py, Adafactor.step): states are created from ``grad.float()``,
    so fp32. ``_get_options``: factored when ``len(shape) >= 2``: ``exp_avg_sq_row`` of shape[:-1] and
    ``exp_avg_sq_col`` of shape[:-2] + shape[-1:]; otherwise a full ``exp_avg_sq``. ``exp_avg`` (full, fp32)
    only when ``beta1`` is set; the default is ``beta1=None``."""
    n = math.prod(shape)
    if len(shape) >= 2:
        second = math.prod(shape[:-1]) + math.prod(shape[:-2]) * shape[-1]
    else:
        second = n
    return 4 * (second + (n if beta1 is not None else 0))


def adafactor_step_temporary_bytes(numel: int, half_params: bool) -> int:
    """Adafactor.step works one parameter at a time, so its temporaries are bounded by the largest tensor:
    ``grad.float()`` and ``p.float()`` (new fp32 copies only for fp16/bf16 parameters), ``update =
    grad**2 + eps`` and the rebuilt second moment (``_approx_sq_grad``'s row×col product, or
    ``exp_avg_sq.rsqrt()``), both fp32 and alive together before ``update`` is reassigned."""
    copies = 2 if half_params else 0
    return 4 * (copies + 2) * int(numel)


def optimizer_bytes(optimizer: str, trainable, precision: str | Precision = "bf16", *,
                    adamw_impl: str = "foreach", adafactor_beta1: float | None = None) -> OptimizerBytes:
    """Optimizer state and step-temporary bytes for the trainable tensors (census entries or ParamTensor).

    * ``adamw`` (torch.optim.AdamW): exp_avg + exp_avg_sq, ``zeros_like(p)``, so in the dtype of the tensor
      the optimizer steps (``optimizer_param_bytes``). Step temporaries: ``foreach`` (torch's default on CUDA,
      ``_multi_tensor_adam``: ``exp_avg_sq_sqrt = torch._foreach_sqrt(exp_avg_sqs)``, one per parameter, all
      alive together) = 1× the stepped bytes; ``fused`` (transformers' Trainer default ``adamw_torch_fused``
      for torch >= 2.8, training_args.py) and ``forloop``: 0. Under DeepSpeed the optimizer is FusedAdam on
      the fp32 master (one multi_tensor_apply kernel): 0.
    * ``adamw-8bit`` / ``paged-adamw-8bit`` (bitsandbytes AdamW8bit / PagedAdamW8bit): per tensor
      ``bnb_8bit_state_bytes(numel, 2)``. Paging changes where the bytes may be evicted to, not their size.
      In-place kernels: no step temporaries.
    * ``sgd``: no state. ``sgd-momentum``: one momentum buffer (``grad.clone()``, the gradient dtype). With the
      defaults (weight_decay=0, nesterov=False) torch's foreach SGD updates in place: no temporaries.
    * ``adafactor`` (transformers): ``adafactor_state_bytes`` per tensor, step temporaries of the largest
      tensor (``adafactor_step_temporary_bytes``).
    * ``lion`` (lucidrains/lion-pytorch): one ``exp_avg = zeros_like(p)``; ``update_fn`` runs per parameter
      and holds ``exp_avg.clone()`` and the ``.add(grad)`` result at once: 2× the largest tensor (DeepSpeed
      runs FusedLion instead: no temporaries).
      ``lion-8bit`` (bitsandbytes Lion8bit, Optimizer1State): ``bnb_8bit_state_bytes(numel, 1)``.
    """
    prec = precision_of(precision)
    tensors = param_tensors(trainable)
    if prec.flat_optimizer_groups and tensors:  # DeepSpeed steps one flat fp32 tensor per param group
        tensors = (ParamTensor("flat", "flat_fp32_group", (sum(t.total_numel for t in tensors),), 1),)
    n = sum(t.total_numel for t in tensors)
    sb = prec.optimizer_param_bytes
    largest = max((t.numel for t in tensors), default=0)
    if optimizer == "adamw":
        if adamw_impl not in ADAMW_IMPLS:
            raise SettingsError(f"unknown AdamW implementation {adamw_impl!r} ({', '.join(ADAMW_IMPLS)})")
        impl = "fused" if prec.library == "DeepSpeed" else adamw_impl
        return OptimizerBytes("adamw", 2 * sb * n, adamw_step_temporary_bytes(sb * n, impl), 2,
                              f"torch AdamW ({impl}): exp_avg, exp_avg_sq in the stepped dtype ({sb} B)")
    if optimizer in ("adamw-8bit", "paged-adamw-8bit"):
        state = sum(bnb_8bit_state_bytes(t.numel, 2) * t.count for t in tensors)
        return OptimizerBytes(optimizer, state, 0, 2,
                              "bitsandbytes Optimizer2State: uint8 + fp32 absmax/256, fp32 below 4096 elements")
    if optimizer == "sgd":
        return OptimizerBytes("sgd", 0, 0, 0, "torch SGD without momentum: no state")
    if optimizer == "sgd-momentum":
        return OptimizerBytes("sgd-momentum", sb * n, 0, 1,
                              "torch SGD momentum_buffer = grad.clone() (the gradient of the stepped tensor)")
    if optimizer == "adafactor":
        state = sum(adafactor_state_bytes(t.shape, adafactor_beta1) * t.count for t in tensors)
        temp = adafactor_step_temporary_bytes(largest, half_params=sb == 2)
        return OptimizerBytes("adafactor", state, temp, 1 if adafactor_beta1 is None else 2,
                              "transformers Adafactor: fp32 factored second moment (rows + cols) for >=2-D, full "
                              "for 1-D; exp_avg only with beta1")
    if optimizer == "lion":
        if prec.library == "DeepSpeed":  # engine._configure_basic_optimizer: LION_OPTIMIZER -> FusedLion
            return OptimizerBytes("lion", sb * n, 0, 1, "DeepSpeed FusedLion: exp_avg on the fp32 master")
        return OptimizerBytes("lion", sb * n, 2 * sb * largest, 1, "lion-pytorch: exp_avg = zeros_like(p)")
    if optimizer == "lion-8bit":
        state = sum(bnb_8bit_state_bytes(t.numel, 1) * t.count for t in tensors)
        return OptimizerBytes("lion-8bit", state, 0, 1, "bitsandbytes Optimizer1State (Lion8bit)")
    raise SettingsError(f"unknown optimizer {optimizer!r} (use one of {', '.join(OPTIMIZERS)})")


# -- per-parameter rates ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PerParamBytes:
    """Bytes per trainable parameter by component, for large tensors (the per-tensor exceptions —
    bitsandbytes' 4096 threshold, Adafactor's factoring — need the census: use ``model_states``)."""

    weights: float
    master_weights: float
    gradients: float
    optimizer: float
    fp32_gradients: float = 0.0  # DeepSpeed's fp32 gradient at the step (not part of the ZeRO paper's 16Ψ)

    @property
    def model_states(self) -> float:
        """weights + master + gradients + optimizer: the ZeRO paper's (2 + 2 + K)."""
        return self.weights + self.master_weights + self.gradients + self.optimizer

    def as_components(self) -> dict[str, float]:
        return {"weights_bytes": self.weights, "master_weights_bytes": self.master_weights,
                "gradients_bytes": self.gradients, "optimizer_bytes": self.optimizer,
                "fp32_gradients_bytes": self.fp32_gradients}


# Optimizer state bytes per parameter of a large tensor, as a function of the stepped dtype's size.
_STATE_RATE = {
    "adamw": lambda sb: 2 * sb,
    "adamw-8bit": lambda sb: 2 * (1 + 4 / BNB_BLOCK_SIZE),
    "paged-adamw-8bit": lambda sb: 2 * (1 + 4 / BNB_BLOCK_SIZE),
    "sgd": lambda sb: 0,
    "sgd-momentum": lambda sb: sb,
    "adafactor": lambda sb: 0,  # (rows + cols) / (rows · cols) → 0 for large matrices
    "lion": lambda sb: sb,
    "lion-8bit": lambda sb: 1 + 4 / BNB_BLOCK_SIZE,
}


def per_param_bytes(precision: str | Precision, optimizer: str = "adamw") -> PerParamBytes:
    """Per-parameter bytes (weights, master_weights, gradients, optimizer) of a large trainable tensor.
    deepspeed-mixed + adamw = (2, 4, 2, 8): 16 B, the ZeRO paper's 2 + 2 + K with K = 12 (master 4 + two
    moments 8); bf16 + adamw = (2, 0, 2, 4): 8 B; amp-bf16 / fp32 + adamw = (4, 0, 4, 8): 16 B."""
    prec = precision_of(precision)
    if optimizer not in _STATE_RATE:
        raise SettingsError(f"unknown optimizer {optimizer!r} (use one of {', '.join(OPTIMIZERS)})")
    return PerParamBytes(prec.weight_bytes, prec.master_weight_bytes, prec.gradient_bytes,
                         _STATE_RATE[optimizer](prec.optimizer_param_bytes), prec.fp32_gradient_bytes)


# -- model states of a whole model --------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelStates:
    """Model-state bytes of one unsharded copy of the model being fine-tuned.

    ``weights_bytes`` covers trainable and frozen parameters; master weights, gradients and optimizer states
    exist for trainable ones only. ``fp32_gradients_bytes`` is DeepSpeed's fp32 gradient copy at its ZeRO-0
    size, ``optimizer_step_temporary_bytes`` what ``optimizer.step()`` allocates on top; neither is part of
    ``model_states_bytes`` (the ZeRO paper's (2 + 2 + K)Ψ); ``step_peak_bytes`` adds them.
    """

    precision: str
    optimizer: str
    trainable_params: int
    frozen_params: int
    weights_bytes: int
    master_weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    fp32_gradients_bytes: int
    optimizer_step_temporary_bytes: int
    trainable_weight_bytes_per_param: int
    frozen_weight_bytes_per_param: int
    activation_dtype: str
    trainable_tensors: tuple[ParamTensor, ...] = field(repr=False, default=())
    frozen_tensors: tuple[ParamTensor, ...] = field(repr=False, default=())
    notes: tuple[str, ...] = ()

    @property
    def model_states_bytes(self) -> int:
        return self.weights_bytes + self.master_weights_bytes + self.gradients_bytes + self.optimizer_bytes

    @property
    def step_peak_bytes(self) -> int:
        return self.model_states_bytes + self.fp32_gradients_bytes + self.optimizer_step_temporary_bytes

    @property
    def num_params(self) -> int:
        return self.trainable_params + self.frozen_params

    def components(self) -> dict[str, int]:
        return {"weights_bytes": self.weights_bytes, "master_weights_bytes": self.master_weights_bytes,
                "gradients_bytes": self.gradients_bytes, "optimizer_bytes": self.optimizer_bytes,
                "fp32_gradients_bytes": self.fp32_gradients_bytes,
                "optimizer_step_temporary_bytes": self.optimizer_step_temporary_bytes}


def model_states(trainable, frozen=(), precision: str | Precision = "bf16", optimizer: str = "adamw", *,
                 adamw_impl: str = "foreach", adafactor_beta1: float | None = None,
                 frozen_weight_bytes: int | None = None, trainable_weight_bytes: int | None = None) -> ModelStates:
    """Model states for fine-tuning ``trainable`` (census entries) with ``frozen`` ones alongside.

    ``frozen_weight_bytes`` defaults to the precision's weight bytes (a bf16 base under LoRA: 2). Pass
    the frozen base's own width when it differs (an fp32-upcast adapter on a bf16 base: train the adapters
    with ``amp-bf16`` and ``frozen_weight_bytes=2``; a 4-bit base: its bytes per parameter are the
    quantizer's, so pass ``frozen=()`` and count it separately). ``trainable_weight_bytes`` overrides the
    trainable parameters' width the same way.
    """
    prec = precision_of(precision)
    t_tensors, f_tensors = param_tensors(trainable), param_tensors(frozen)
    n_t = sum(t.total_numel for t in t_tensors)
    n_f = sum(t.total_numel for t in f_tensors)
    w_t = prec.weight_bytes if trainable_weight_bytes is None else int(trainable_weight_bytes)
    w_f = prec.weight_bytes if frozen_weight_bytes is None else int(frozen_weight_bytes)
    opt = optimizer_bytes(optimizer, t_tensors, prec, adamw_impl=adamw_impl, adafactor_beta1=adafactor_beta1)
    notes = [prec.source, opt.source]
    if prec.flat_optimizer_groups and optimizer in ("adamw-8bit", "paged-adamw-8bit", "adafactor", "lion-8bit"):
        notes.append("DeepSpeed hands the optimizer flat 1-D partitions: per-tensor rules see one flat tensor "
                     "(Adafactor cannot factor it)")
    return ModelStates(
        precision=prec.name, optimizer=optimizer, trainable_params=n_t, frozen_params=n_f,
        weights_bytes=n_t * w_t + n_f * w_f,
        master_weights_bytes=n_t * prec.master_weight_bytes,
        gradients_bytes=n_t * prec.gradient_bytes,
        optimizer_bytes=opt.state_bytes,
        fp32_gradients_bytes=n_t * prec.fp32_gradient_bytes,
        optimizer_step_temporary_bytes=opt.step_temporary_bytes,
        trainable_weight_bytes_per_param=w_t, frozen_weight_bytes_per_param=w_f,
        activation_dtype=prec.activation_dtype,
        trainable_tensors=t_tensors, frozen_tensors=f_tensors, notes=tuple(notes))


def activation_dtype_bytes(precision: str | Precision) -> int:
    """Element size of the activations the precision mode produces (autocast and half modes: 2; fp32: 4)."""
    return DTYPE_BYTES[precision_of(precision).activation_dtype]
