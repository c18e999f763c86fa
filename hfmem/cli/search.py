"""``hfmem search [TEXT]``: which Hub models fit these GPUs for a job, ranked, each with the command that
reproduces its row. A thin layer over ``hfmem.api.search`` (and ``hfmem.plan.largest`` for ``--family``)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .options import (Engine, Format, FormatOpt, GpusOpt, KVDType, Method, OfflineOpt, Optimizer, QuietOpt,
                      TokenOpt, VerboseOpt, source_options)
from .output import hint


class Sort(str, Enum):
    downloads = "downloads"
    likes = "likes"
    params = "params"
    free = "free"


class ListOrder(str, Enum):
    downloads = "downloads"
    likes = "likes"
    trending = "trending"
    created = "created"
    modified = "modified"


def search(
    text: Annotated[Optional[str], typer.Argument(
        help="A fragment of the repo id (the Hub's search box), e.g. Qwen2.5 or coder.", show_default=False)] = None,
    task: Annotated[Optional[str], typer.Option("--task",
        help="The Hub's task (pipeline tag): text-generation, fill-mask, feature-extraction, ...")] = None,
    library: Annotated[Optional[str], typer.Option("--library",
        help="The library: transformers, gguf, diffusers, sentence-transformers, timm, ...")] = None,
    author: Annotated[Optional[str], typer.Option("--author", help="The organisation or user, e.g. Qwen.")] = None,
    license_: Annotated[Optional[str], typer.Option("--license", help="The license tag, e.g. apache-2.0, mit.")] = None,
    gated: Annotated[Optional[bool], typer.Option("--gated/--no-gated",
        help="Only gated repos, or only repos without an access grant (default: both).")] = None,
    min_params: Annotated[Optional[str], typer.Option("--min-params", help="At least this many parameters: 1B, 500M.")] = None,
    max_params: Annotated[Optional[str], typer.Option("--max-params", help="At most this many parameters: 14B.")] = None,
    tag: Annotated[Optional[list[str]], typer.Option("--tag", help="A Hub tag every result carries (repeatable).")] = None,
    train_job: Annotated[bool, typer.Option("--train", help="Judge fine-tuning (hfmem train) instead of serving.")] = False,
    serve_job: Annotated[bool, typer.Option("--serve", help="Judge serving (hfmem infer), the default.")] = False,
    context: Annotated[int, typer.Option("--context", "-c", help="Serving: tokens per sequence.")] = 4096,
    batch: Annotated[int, typer.Option("--batch", "-b",
        help="Serving: sequences at once; training: micro-batch per GPU.")] = 1,
    engine: Annotated[Optional[Engine], typer.Option("--engine", "-e",
        help="Serving engine (default vllm); llama.cpp judges GGUF repos only.")] = None,
    weights: Annotated[Optional[str], typer.Option("--weights", "-w",
        help="Serving format: a format (bf16, fp8, nf4, ...) or any: the least compressed format of each repo that "
             "fits (its checkpoint's, or one the engine quantizes to while loading). Default: the checkpoint's.")] = None,
    kv_dtype: Annotated[KVDType, typer.Option("--kv-dtype", help="Serving: KV cache dtype.")] = KVDType.auto,
    method: Annotated[Method, typer.Option("--method", help="Training: full, lora or qlora.")] = Method.full,
    seq: Annotated[int, typer.Option("--seq", "-s", help="Training: sequence length.")] = 2048,
    optimizer: Annotated[Optimizer, typer.Option("--optimizer", help="Training: optimizer.")] = Optimizer.adamw,
    precision: Annotated[Optional[str], typer.Option("--precision",
        help="Training: bf16 (default), amp-bf16, fp32, ... as hfmem train takes it.")] = None,
    grad_ckpt: Annotated[bool, typer.Option("--grad-ckpt", help="Training: gradient checkpointing.")] = False,
    lora_rank: Annotated[Optional[int], typer.Option("--lora-rank", help="Training: LoRA rank.")] = None,
    zero: Annotated[Optional[int], typer.Option("--zero", help="Training: DeepSpeed ZeRO stage 0-3.")] = None,
    gpu: Annotated[str, typer.Option("--gpu",
        help="The GPU: a catalog name (RTX-4090, H100-80GB; see `hfmem gpus`), a size (24GiB), or auto "
             "(this machine's, the default).")] = "auto",
    gpus: GpusOpt = 1,
    sort: Annotated[Sort, typer.Option("--sort",
        help="Rank the models that fit by downloads, likes, params or free (memory left).")] = Sort.downloads,
    order: Annotated[Optional[ListOrder], typer.Option("--order",
        help="The Hub's listing order the scan follows (default: as --sort, else downloads).")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Scan at most this many listed models.")] = 100,
    time_budget: Annotated[Optional[float], typer.Option("--time-budget",
        help="Stop scanning after this many seconds (the output says how far it got).")] = None,
    show: Annotated[int, typer.Option("--show", "-n", help="Rows to print (JSON: all).")] = 20,
    largest: Annotated[bool, typer.Option("--largest",
        help="Rank by parameters: the largest model that fits first.")] = False,
    family: Annotated[Optional[str], typer.Option("--family",
        help="With --largest: the largest model of this architecture (a template repo, e.g. "
             "meta-llama/Llama-3.2-1B), as a parameter count, instead of a scan of the Hub.")] = None,
    emit: Annotated[bool, typer.Option("--emit",
        help="List each row's launch command (vllm serve, llama-server) instead of the hfmem command.")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="List again instead of reading hfmem's listing cache.")] = False,
    quiet: QuietOpt = False,
    token: TokenOpt = None,
    offline: OfflineOpt = False,
    verbose: VerboseOpt = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Which models fit: list the Hub's models (filtered as the Hub filters), judge each for serving or
    fine-tuning on the GPUs given (or this machine's), and rank the ones that fit, with the memory, the format,
    the largest context (or batch and sequence) and the hfmem command that reproduces each row."""
    from .. import api
    from ..sources.listing import ListingQuery, parse_param_count

    if train_job and serve_job:
        raise UsageError("--train and --serve: choose one job", hint="--serve (the default) or --train")
    if family is not None:
        if not largest:
            raise UsageError("--family answers the largest model of an architecture: add --largest",
                             hint="e.g. hfmem search --largest --family meta-llama/Llama-3.2-1B --train --gpu RTX-3090")
        return _family(family, train_job, context, batch, method, seq, optimizer, precision, grad_ckpt, lora_rank,
                       gpu, gpus, fmt, token, offline, verbose)
    query = ListingQuery(
        search=text, task=task, library=library, author=author, license=license_, gated=gated,
        min_params=parse_param_count(min_params, "--min-params") if min_params else None,
        max_params=parse_param_count(max_params, "--max-params") if max_params else None,
        tags=tuple(tag or ()), order=order.value if order else None)
    opts = source_options(None, token, offline, False, False, verbose=verbose, quiet=quiet)
    # the shared indicator (on a terminal only, not with --quiet, after a second) is told each model judged,
    # not each model's own slow steps
    bar, opts.progress = opts.progress, None
    job = "train" if train_job else "serve"
    settings = _settings(job, context, batch, engine, weights, kv_dtype, method, seq, optimizer, precision,
                         grad_ckpt, lora_rank, zero)
    try:
        from ..scenarios.llamacpp import LlamaCppSettings

        report = api.search(query, job=job, settings=settings, weights=weights.lower() if weights else None,
                            llamacpp=LlamaCppSettings(context=context, parallel=batch) if job == "serve" else None,
                            engine=engine.value if engine else None, gpu=gpu, gpus=gpus, sort=sort.value,
                            limit=limit, time_budget_s=time_budget, largest=largest, options=opts, refresh=refresh,
                            progress=bar.count if bar is not None else None)
    finally:
        if bar is not None:
            bar.stop()
    for line in report.notes:
        hint(f"note: {line}")
    _emit(report, fmt, show, emit)


def _emit(report, fmt, show: int, launch: bool = False) -> None:
    from ..render import search as render
    from .output import print_json, print_text, stdout_console

    if fmt is Format.json:
        print_json(render.search_json(report))
    elif fmt is Format.markdown:
        print_text(render.markdown_search(report, show, launch))
    else:
        render.rich_search(stdout_console(), report, show, launch)


def _settings(job, context, batch, engine, weights, kv_dtype, method, seq, optimizer, precision, grad_ckpt,
              lora_rank, zero):
    from .. import vocab

    if job == "train":
        from ..scenarios.finetune import TrainSettings

        kwargs = dict(method=method.value, seq=seq, batch=batch, optimizer=optimizer.value, grad_ckpt=grad_ckpt)
        if precision:
            kwargs["precision"] = precision
        elif zero is not None:
            kwargs["precision"] = "deepspeed-bf16"  # what hfmem train picks with --zero
        if lora_rank is not None:
            kwargs["lora_rank"] = lora_rank
        if zero is not None:
            kwargs["zero"] = zero
        return TrainSettings(**kwargs)
    from ..scenarios.inference import InferenceSettings

    if engine is not None and engine.value == vocab.LLAMACPP:
        return None  # GGUF repos only: api.search builds the llama.cpp settings from context and batch
    fmt = None if weights is None or weights.lower() == "any" else weights.lower()
    return InferenceSettings(engine=engine.value if engine else "vllm", context=context, batch=batch,
                             weights_format=fmt, kv_dtype=None if kv_dtype is KVDType.auto else kv_dtype.value)


def _family(family, train_job, context, batch, method, seq, optimizer, precision, grad_ckpt, lora_rank, gpu, gpus,
            fmt, token, offline, verbose):
    from ..plan.largest import largest_in_family
    from ..render import search as render

    job = "train" if train_job else "serve"
    settings = _settings(job, context, batch, None, None, KVDType.auto, method, seq, optimizer, precision,
                         grad_ckpt, lora_rank, None)
    opts = source_options(None, token, offline, False, False, verbose=verbose)
    from .options import parse_gpu_option
    from .output import print_json, print_text, stdout_console

    result = largest_in_family(family, job=job, gpu=parse_gpu_option(gpu, gpus), settings=settings, gpus=gpus,
                               options=opts)
    if fmt is Format.json:
        print_json(render.family_json(result))
    elif fmt is Format.markdown:
        print_text(render.markdown_family(result))
    else:
        render.rich_family(stdout_console(), result)
