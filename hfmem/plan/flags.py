"""The advisor's settings in words and as ``hfmem train`` command lines: the flags that set what a plan or a
remedy changes, the command that estimates it, and the changes described for a plan's sentence.
"""

from __future__ import annotations

from dataclasses import replace

from ..scenarios.finetune import TrainSettings
from ..units import format_binary
from .changes import changed_fields
from .gpus import GPU


def cli_flags(base: TrainSettings, s: TrainSettings) -> str:
    """``hfmem train`` flags for the fields of ``s`` that differ from ``base``."""
    flags = []
    for name, value in changed_fields(base, s).items():
        opt = "--" + name.replace("_", "-")
        if name == "overheads":
            flags.append("(the same --cuda-context / --nccl / --fragmentation)")
            continue
        if name == "adamw_impl":
            opt = "--optimizer-impl"
        if isinstance(value, bool):
            flags.append(opt if value else {"grad_ckpt": "--no-grad-ckpt"}.get(name, f"(no {opt})"))
        elif value is None:
            flags.append(f"(no {opt})")
        elif name == "lora_targets" and not isinstance(value, str):
            flags.append(f"{opt} {','.join(value)}")
        else:
            flags.append(f"{opt} {value}")
    return " ".join(flags)


def train_command(config: dict, s: TrainSettings, gpu: GPU, *, extra_model: str | None = None) -> str:
    """The ``hfmem train`` command line for ``s`` (its non-default settings) on ``gpu``. The model is the
    ``_name_or_path`` ``advise`` puts on the config from its ``model_name``; a multimodal config's own
    ``text_config._name_or_path`` names the base LM it was built from (llava-1.5: meta-llama/Llama-2-7b-hf),
    not this model, so it is not read."""
    name = config.get("_name_or_path") or "MODEL"
    models = f"{name} {extra_model}" if extra_model else name
    flags = cli_flags(TrainSettings(), s)
    if "--precision" not in flags:  # hfmem train picks a precision from --zero / --rlhf when none is given
        flags = f"--precision {s.precision} {flags}".strip()
    gpu_name = gpu.memory_marketed if gpu.anonymous and gpu.memory_marketed else gpu.name
    return " ".join(p for p in ("hfmem train", models, config.get("_command_flags"), flags, f"--gpu {gpu_name}")
                    if p)


def fmt_bytes(n: int | None) -> str:
    """Bytes in binary units, "-" for none."""
    return "-" if n is None else format_binary(n)


def describe_changes(base: TrainSettings, s: TrainSettings) -> str:
    """The changes in words, for the plan's sentence."""
    d = changed_fields(base, s)
    words = []
    if "method" in d:
        words.append({"lora": f"LoRA (rank {s.lora_rank}, {s.lora_targets})",
                      "qlora": f"QLoRA ({s.qlora_format} base, rank {s.lora_rank})"}.get(s.method, s.method))
    if "zero" in d or "offload_optimizer" in d or "offload_param" in d:
        if s.zero is not None:
            off = " + optimizer and parameter offload" if s.offload_param else (
                " + optimizer offload" if s.offload_optimizer else "")
            words.append(f"DeepSpeed ZeRO-{s.zero}{off} ({s.precision})")
    elif "precision" in d and not ("fsdp" in d and s.fsdp):
        words.append(f"{'pure ' if s.precision in ('bf16', 'fp16') else ''}{s.precision} instead of {base.precision}")
    if "fsdp" in d:
        if s.fsdp:
            words.append(f"FSDP {s.fsdp} ({s.precision})")
        elif s.zero is None:
            words.append("no FSDP")
    if "attn" in d:
        words.append(f"{s.attn} attention")
    if "grad_ckpt" in d:
        words.append("activation checkpointing" if s.grad_ckpt else "no activation checkpointing")
    if "batch" in d:
        words.append(f"micro-batch {s.batch} x accumulation {s.grad_accum}")
    if "full_logits_metrics" in d:
        words.append("no full-logit evaluation metrics")
    if "seq" in d:
        words.append(f"seq {s.seq:,}")
    if "tp" in d:
        words.append(f"tensor parallel {s.tp}")
    if "pp" in d:
        words.append(f"pipeline parallel {s.pp}")
    named = {"method", "zero", "offload_optimizer", "offload_param", "precision", "fsdp", "attn", "grad_ckpt", "batch",
             "grad_accum", "full_logits_metrics", "seq", "tp", "pp", "lora_rank", "lora_targets", "dora",
             "qlora_format", "gpus"}
    rest = {k: v for k, v in d.items() if k not in named}
    if rest:  # anything else the plan changed, as the flags that set it
        words.append(cli_flags(replace(s, **{k: getattr(base, k) for k in rest}), s))
    if not words and d:
        words.append(cli_flags(base, s))
    return ", ".join(words)
