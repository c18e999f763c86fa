"""timm models on fake tensors: a fine-tuning step (``timm.create_model(architecture, num_classes=...)``,
cross-entropy on [batch] labels, AdamW/SGD, optional AMP) and a serving forward under no_grad, with timm's own
code (read from timm 1.0.31: timm/models/_factory.py create_model, resnet.py, vision_transformer.py).

timm imports torchvision; where it is missing the simulation says "pip install timm" in one line.
"""

from __future__ import annotations

import contextlib
import time

import torch

from . import optim
from .emulation import CUDA_MIN_BLOCK
from .engine import AMP_DTYPES, _fake_run, _gradient_tags, _OptimizerStep, _Phases, _result, _track_start
from .result import SimResult, SimulationError
from .tracker import MemoryTracker

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _timm():
    try:
        import timm
    except Exception:  # ImportError, or torchvision's own errors on an incompatible torch
        raise SimulationError("timm is not importable here: pip install timm") from None
    return timm


def timm_architecture(config: dict) -> str:
    """The hub config's ``architecture`` (timm's push_to_hub writes it), e.g. "resnet50"."""
    arch = config.get("architecture") or config.get("model_name")
    if not arch:
        raise SimulationError("timm config.json has no \"architecture\"")
    return str(arch)


def _create(config: dict, num_classes: int | None, fake_mode):
    import timm  # imported by the caller before FakeTensorMode (its import-time tensors must be real ones)
    arch = timm_architecture(config)
    kwargs = dict(config.get("model_args") or {})
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    elif config.get("num_classes") is not None:
        kwargs["num_classes"] = int(config["num_classes"])
    from .build import _ScalarStandIn  # weight init reads scalars (trunc_normal_): answered without data

    try:
        with _ScalarStandIn():
            return timm.create_model(arch, pretrained=False, **kwargs)
    except SimulationError:
        raise
    except Exception as exc:
        raise SimulationError(f"{arch}: timm could not create it ({exc.__class__.__name__}: {exc})") from None


def _image_size(model, config: dict, image_size: int | None) -> int:
    if image_size:
        return int(image_size)
    size = (config.get("pretrained_cfg") or {}).get("input_size") or getattr(model, "pretrained_cfg", {}).get("input_size")
    return int(size[-1]) if size else 224


def simulate_timm_train(config: dict, *, batch: int, image_size: int | None = None, num_classes: int | None = None,
                        optimizer: str = "adamw", optimizer_impl: str = "foreach", amp: str | None = "bf16",
                        grad_ckpt: bool = False, iterations: int = 2, gpu_emulation: bool = True) -> SimResult:
    if int(batch) < 1:
        raise SimulationError("batch must be at least 1")
    if amp not in (None, *AMP_DTYPES):
        raise SimulationError(f"unknown amp {amp!r} (use bf16, fp16 or none)")
    arch = timm_architecture(config)
    _timm()  # outside FakeTensorMode: "pip install timm" when missing
    started = time.perf_counter()
    tracker = MemoryTracker(CUDA_MIN_BLOCK if gpu_emulation else 1)
    with _fake_run(arch, tracker, gpu_emulation, "sdpa") as fake_mode:
        model = _create(config, num_classes, fake_mode)
        if grad_ckpt:
            model.set_grad_checkpointing(True)  # timm's per-stage checkpoint_seq
        model.train()
        size = _image_size(model, config, image_size)
        opt = optim.make_optimizer(optimizer, optimizer_impl, [p for p in model.parameters() if p.requires_grad])
        x = torch.randn(batch, int(getattr(model, "in_chans", 3) or 3), size, size)
        y = torch.randint(0, max(int(model.num_classes), 1), (batch,))
        _track_start(tracker, model, [x, y])
        phases = _Phases(tracker)
        step = _OptimizerStep(opt, tracker, gpu_emulation)
        with _gradient_tags(model, tracker), tracker:
            for it in range(1, iterations + 1):
                with phases.phase("forward", it):
                    ctx = torch.autocast("cpu", dtype=AMP_DTYPES[amp]) if amp else contextlib.nullcontext()
                    with ctx:
                        logits = model(x)
                        loss = torch.nn.functional.cross_entropy(logits, y)
                        del logits
                with phases.phase("backward", it):
                    loss.backward()
                    del loss
                with phases.phase("optimizer_step", it, finish=step.tag_states):
                    step.run()
    assumptions = [f"real timm {arch} code on fake tensors (timm.create_model, pretrained=False)",
                   f"images [{batch}, 3, {size}, {size}], cross-entropy on [{batch}] labels",
                   f"{optimizer} {optimizer_impl}, weights fp32" + (f", autocast {amp} (CPU op lists)" if amp else "")]
    if grad_ckpt:
        assumptions.append("gradient checkpointing: timm set_grad_checkpointing(True)")
    return _result("train", arch, phases.stats, tracker, started,
                   dict(mode="train", batch=batch, image_size=size, optimizer=optimizer, amp=amp, grad_ckpt=grad_ckpt),
                   assumptions, model=model)


def simulate_timm_infer(config: dict, *, batch: int, image_size: int | None = None, dtype: str = "bfloat16",
                        gpu_emulation: bool = True) -> SimResult:
    if int(batch) < 1:
        raise SimulationError("batch must be at least 1")
    if dtype not in DTYPES:
        raise SimulationError(f"unknown dtype {dtype!r} (use float32, bfloat16 or float16)")
    arch = timm_architecture(config)
    _timm()  # outside FakeTensorMode: "pip install timm" when missing
    started = time.perf_counter()
    tracker = MemoryTracker(CUDA_MIN_BLOCK if gpu_emulation else 1)
    with _fake_run(arch, tracker, gpu_emulation, "sdpa") as fake_mode, torch.no_grad():
        model = _create(config, None, fake_mode)
        if DTYPES[dtype] != torch.float32:
            from .build import _swappable_fake_parameters

            with _swappable_fake_parameters(fake_mode):
                model = model.to(DTYPES[dtype])
        model.eval()
        size = _image_size(model, config, image_size)
        x = torch.randn(batch, int(getattr(model, "in_chans", 3) or 3), size, size, dtype=DTYPES[dtype])
        _track_start(tracker, model, [x])
        phases = _Phases(tracker)
        with tracker, phases.phase("prefill", 1):
            out = model(x)
            del out
    return _result("infer", arch, phases.stats, tracker, started,
                   dict(mode="infer", batch=batch, image_size=size, dtype=dtype),
                   [f"real timm {arch} code on fake tensors", f"one forward of [{batch}, 3, {size}, {size}] under no_grad "
                    f"in {dtype}"], model=model)
