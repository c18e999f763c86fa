"""``hfmem simulate MODEL...``: run the real transformers model code on fake tensors and report the
allocator-level peak per phase and category. Needs torch and transformers (and peft for --lora-rank)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from ..errors import HfmemError, UsageError
from .errors import error_line
from .options import (Attn, AudioSecondsOpt, DType, Format, FormatOpt, ImageSizeOpt, ModelsArg, NoCacheOpt,
                      OfflineOpt, OptimizerImpl, QuietOpt, RevisionOpt, TargetSeqOpt, TokenOpt, TrustRemoteCodeOpt,
                      source_options, VerboseOpt)
from .output import print_json, print_text, stdout_console


class Mode(str, Enum):
    train = "train"
    infer = "infer"


class Optim(str, Enum):
    adamw = "adamw"
    sgd = "sgd"
    sgd_momentum = "sgd-momentum"
    adafactor = "adafactor"


class Amp(str, Enum):
    bf16 = "bf16"
    fp16 = "fp16"


DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def simulate(
    models: ModelsArg,
    mode: Annotated[Mode, typer.Option("--mode", "-m", help="A training step or a prefill + decode.")] = Mode.train,
    batch: Annotated[int, typer.Option("--batch", "-b", help="Sequences per step.")] = 1,
    seq: Annotated[int, typer.Option("--seq", help="Training sequence length (tokens).")] = 2048,
    context: Annotated[int, typer.Option("--context", help="Inference prompt length (tokens).")] = 2048,
    new_tokens: Annotated[int, typer.Option("--new-tokens", help="Inference: decode steps after the prefill.")] = 1,
    dtype: Annotated[DType, typer.Option("--dtype", help="Weights and compute dtype.")] = DType.bf16,
    attn: Annotated[Optional[Attn], typer.Option("--attn", help="Attention implementation (flash: SDPA routed to "
        "the flash-attention op; default: transformers' own, sdpa, or eager for models without SDPA such as "
        "Gemma 2 and gpt-oss).")] = None,
    grad_ckpt: Annotated[bool, typer.Option("--grad-ckpt", help="Gradient checkpointing (non-reentrant).")] = False,
    optimizer: Annotated[Optim, typer.Option("--optimizer", help="Optimizer for training.")] = Optim.adamw,
    optimizer_impl: Annotated[OptimizerImpl, typer.Option("--optimizer-impl", help="AdamW implementation "
                                                      "(foreach is torch's CUDA default).")] = OptimizerImpl.foreach,
    amp: Annotated[Optional[Amp], typer.Option("--amp", help="Autocast mixed precision: fp32 weights, "
                                               "half-precision compute.")] = None,
    iterations: Annotated[int, typer.Option("--iterations", help="Training iterations (>= 2: optimizer states "
                                            "exist from step 2).")] = 2,
    lora_rank: Annotated[Optional[int], typer.Option("--lora-rank", help="Train LoRA adapters of this rank "
                                                     "(PEFT) instead of all weights.")] = None,
    lora_alpha: Annotated[Optional[int], typer.Option("--lora-alpha", help="LoRA alpha (default 2 x rank).")] = None,
    lora_targets: Annotated[str, typer.Option("--lora-targets", help="Comma-separated module names, or "
                                              "all-linear.")] = "q_proj,v_proj",
    target_seq: TargetSeqOpt = None,
    image_size: ImageSizeOpt = None,
    audio_seconds: AudioSecondsOpt = None,
    no_gpu_emulation: Annotated[bool, typer.Option("--no-gpu-emulation", help="Measure the plain CPU allocator "
                                                   "instead (no 512-B rounding, CPU attention kernels).")] = False,
    revision: RevisionOpt = None,
    token: TokenOpt = None,
    offline: OfflineOpt = False,
    verbose: VerboseOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
    fmt: FormatOpt = Format.table,
    quiet: QuietOpt = False,
    no_cache: NoCacheOpt = False,
) -> None:
    """Measure the peak memory of the real model code on fake tensors: per phase (forward, backward,
    optimizer step; or prefill, decode) and per category, with no GPU and no weights."""
    if batch < 1 or seq < 1 or context < 1 or new_tokens < 0:
        raise UsageError("--batch, --seq and --context must be at least 1 and --new-tokens at least 0")
    if lora_rank is not None and lora_rank < 1:
        raise UsageError(f"--lora-rank {lora_rank} is out of range: a LoRA rank is at least 1",
                         hint="leave --lora-rank out to train all weights")
    if iterations < 2:
        raise UsageError(f"--iterations {iterations} is out of range: at least 2 (optimizer states exist only "
                         "from step 2 on)")
    from ..api import simulate_model

    opts = source_options(revision, token, offline, trust_remote_code, no_cache, verbose=verbose, quiet=quiet)
    common = dict(batch=batch, dtype=DTYPE_NAMES[dtype.value], attn=attn.value if attn else None,
                  gpu_emulation=not no_gpu_emulation)
    for name, value in (("image_size", image_size), ("audio_seconds", audio_seconds)):
        if value is not None:
            common[name] = value
    if mode is Mode.train:
        lora = None
        if lora_rank:
            targets = "all-linear" if lora_targets == "all-linear" else [t for t in lora_targets.split(",") if t]
            lora = {"r": lora_rank, "alpha": lora_alpha or 2 * lora_rank, "targets": targets}
        settings = dict(common, seq=seq, grad_ckpt=grad_ckpt, optimizer=optimizer.value,
                        optimizer_impl=optimizer_impl.value, amp=amp.value if amp else None,
                        iterations=iterations, lora=lora, **({"target_seq": target_seq} if target_seq else {}))
    else:
        settings = dict(common, context=context, new_tokens=new_tokens)
    sims, failures = [], []
    for m in models:
        try:
            sims.append(simulate_model(m, mode.value, opts, **settings))
        except HfmemError as exc:
            if len(models) == 1:
                raise
            failures.append((m, exc))
    from ..render import simulate as render

    if fmt is Format.json:
        print_json(render.simulate_json(sims, failures))
    elif fmt is Format.markdown:
        print_text("\n".join(render.markdown_simulation(s) for s in sims))
    else:
        console = stdout_console()
        for s in sims:
            render.rich_simulation(console, s)
    for _, exc in failures:
        typer.echo(error_line(exc), err=True)
    if failures:
        raise typer.Exit(failures[0][1].exit_code)
