"""The optimizers a simulation can run, built exactly as a training script would build them."""

from __future__ import annotations

import torch

from .result import SimulationError

OPTIMIZERS = ("adamw", "sgd", "sgd-momentum", "adafactor")
IMPLS = ("foreach", "fused", "forloop")
_IMPL_KWARGS = {"foreach": {"foreach": True}, "fused": {"fused": True}, "forloop": {"foreach": False}}


def make_optimizer(name: str, impl: str, params: list):
    if name not in OPTIMIZERS:
        raise SimulationError(f"optimizer {name!r} cannot be simulated (supported: {', '.join(OPTIMIZERS)})")
    if impl not in IMPLS:
        raise SimulationError(f"optimizer implementation {impl!r} unknown (use {', '.join(IMPLS)})")
    if not params:
        raise SimulationError("no trainable parameters")
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-5, **_IMPL_KWARGS[impl])
    if name in ("sgd", "sgd-momentum"):
        momentum = 0.9 if name == "sgd-momentum" else 0.0
        return torch.optim.SGD(params, lr=1e-3, momentum=momentum, **_IMPL_KWARGS[impl])
    from transformers.optimization import Adafactor  # its own per-parameter loop; impl does not apply

    # transformers' defaults (relative step, parameter scaling): factored second moments for matrices.
    return Adafactor(params, lr=None, scale_parameter=True, relative_step=True, warmup_init=False)


def host_state_keys(optimizer) -> frozenset[str]:
    """State entries a CUDA run keeps in host memory. torch's Adam/AdamW keep the step counter as a CPU
    scalar tensor unless fused or capturable (``_init_group`` in torch/optim/adam.py:
    ``torch.tensor(0.0, dtype=_get_scalar_dtype())`` without a device)."""
    if isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
        group = optimizer.param_groups[0]
        if not (group.get("fused") or group.get("capturable")):
            return frozenset({"step"})
    return frozenset()


def host_ops(optimizer) -> frozenset:
    """Ops whose outputs land in host memory during a CUDA run's ``step()``: torch's Adam/AdamW, unless
    fused or capturable, make their step counters and the increment with ``torch.tensor(...)`` and no
    device (``_init_group`` and ``_multi_tensor_adam`` in torch/optim/adam.py); under fake tensors
    those calls show up as ``aten.lift_fresh``."""
    return frozenset({torch.ops.aten.lift_fresh.default}) if host_state_keys(optimizer) else frozenset()


def state_tensors(optimizer):
    """(key, tensor) for every tensor in the optimizer's state."""
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                yield key, value
