"""The settings changes the out-of-memory advisor tries, shared by the remedy catalogue (``remedies``) and the
plan search (``search``): which 16-bit dtype a GPU takes, DeepSpeed's precision, ZeRO and LoRA settings, the
fields two settings differ in, and the cached estimator every remedy and candidate is judged with.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from .. import vocab
from ..scenarios.finetune import TrainEstimate, TrainSettings
from .gpus import GPU

Estimator = Callable[[TrainSettings], TrainEstimate]

LORA_RANK = vocab.LORA_RANK
LORA_TARGETS = vocab.LORA_TARGETS


class Runner:
    """``estimate_fn`` with a cache (keyed by the settings' repr: lora_targets may be a list) and a count."""

    def __init__(self, fn: Estimator):
        self.fn = fn
        self.cache: dict[str, TrainEstimate | Exception] = {}
        self.calls = 0

    def __call__(self, s: TrainSettings) -> TrainEstimate:
        key = repr(s)
        hit = self.cache.get(key)
        if hit is None:
            self.calls += 1
            try:
                hit = self.fn(s)
            except Exception as exc:  # an invalid combination, or an estimator gap: reported, never fatal
                hit = exc
            self.cache[key] = hit
        if isinstance(hit, Exception):
            raise hit
        return hit

    def total(self, s: TrainSettings) -> int | None:
        try:
            return self(s).device_total_bytes
        except Exception:
            return None


def half_precision(settings: TrainSettings, gpu: GPU) -> str:
    """The 16-bit dtype a change to pure / mixed 16-bit takes: fp16 when the settings already use fp16 or the
    GPU has no bfloat16 (pre-Ampere), else bf16."""
    if settings.precision in ("fp16", "amp-fp16", "deepspeed-fp16", "deepspeed-mixed") or gpu.bf16 is False:
        return "fp16"
    return "bf16"


def deepspeed_precision(settings: TrainSettings, gpu: GPU) -> str:
    """The precision a change to DeepSpeed ZeRO trains in."""
    if settings.precision.startswith("deepspeed") or settings.precision == "fp32":
        return settings.precision  # DeepSpeed trains fp32 as it is (ZeRO partitions fp32 states)
    return "deepspeed-fp16" if half_precision(settings, gpu) == "fp16" else "deepspeed-bf16"


def changed_fields(base: TrainSettings, s: TrainSettings) -> dict:
    """The ``TrainSettings`` fields of ``s`` that differ from ``base``: {field: value in s}."""
    out = {}
    for name in TrainSettings.__dataclass_fields__:
        a, b = getattr(base, name), getattr(s, name)
        if a != b:
            out[name] = b
    return out


def zero_settings(s: TrainSettings, gpu: GPU, stage: int, off_opt: bool, off_param: bool) -> TrainSettings:
    """``s`` under DeepSpeed ZeRO-``stage`` (with the offloads), instead of FSDP."""
    return replace(s, zero=stage, offload_optimizer=off_opt, offload_param=off_param, fsdp=None,
                   precision=deepspeed_precision(s, gpu))


def lora_settings(s: TrainSettings, method: str, gpu: GPU) -> TrainSettings:
    """``s`` trained with ``method`` (lora / qlora): the default rank and targets when coming from full."""
    new = replace(s, method=method)
    if s.method == "full":
        new = replace(new, lora_rank=LORA_RANK, lora_targets=LORA_TARGETS, dora=False)
    if method == "qlora" and s.precision == "fp32":
        # bitsandbytes 4-bit computes in 16-bit
        new = replace(new, precision=half_precision(s, gpu) if s.zero is None else
                      ("deepspeed-fp16" if half_precision(s, gpu) == "fp16" else "deepspeed-bf16"))
    return new
