"""``hfmem train MODEL...``: fine-tuning memory per GPU (full, LoRA, QLoRA; precision, optimizer,
activations, ZeRO/FSDP/TP/PP, RLHF), whether it fits, and the out-of-memory advisor. A thin layer over
``hfmem.api.train``."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from .. import vocab
from ..errors import HfmemError, SettingsError, UsageError
from .options import (Attn, AudioSecondsOpt, CudaContextOpt, Format, FragmentationOpt, Fsdp, ImageSizeOpt, ImagesOpt,
                      Method, NcclOpt, Optimizer, FormatOpt, GpuOpt, GpusOpt, ModelsArg, NoCacheOpt, OfflineOpt,
                      OptimizerImpl, TargetSeqOpt,
                      QuietOpt, RevisionOpt, TokenOpt, TrustRemoteCodeOpt, overheads_options, source_options, VerboseOpt)
from .output import finish, hint
from .plotting import DEFAULT_SIZE, PlotGpuOpt, PlotOpt, PlotSizeOpt


class Precision(str, Enum):
    fp32 = "fp32"
    amp_bf16 = "amp-bf16"
    amp_fp16 = "amp-fp16"
    bf16 = "bf16"
    fp16 = "fp16"
    deepspeed_bf16 = "deepspeed-bf16"
    deepspeed_fp16 = "deepspeed-fp16"
    deepspeed_mixed = "deepspeed-mixed"


class Rlhf(str, Enum):
    ppo = "ppo"
    grpo = "grpo"
    dpo = "dpo"


class Emit(str, Enum):
    deepspeed = "deepspeed"
    accelerate = "accelerate"
    peft = "peft"


def _targets(value: str | None):
    if value is None or value.lower() == vocab.LORA_TARGETS:
        return vocab.LORA_TARGETS
    if value.lower() in ("default", "none"):
        return None
    return [t.strip() for t in value.split(",") if t.strip()]


def train(
    models: ModelsArg,
    method: Annotated[Method, typer.Option("--method",
        help="Full fine-tune, LoRA, or QLoRA (4-bit frozen base).")] = Method.full,
    precision: Annotated[Optional[Precision], typer.Option("--precision",
        help="fp32; amp-bf16/amp-fp16 (Trainer AMP: fp32 weights, half activations); bf16/fp16 (pure); deepspeed-* "
             "(half params, fp32 master; needs --zero). Default: bf16; deepspeed-bf16 with --zero; amp-bf16 "
             "(verl's FSDP MixedPrecision) with --rlhf under FSDP.")] = None,
    optimizer: Annotated[Optimizer, typer.Option("--optimizer",
        help="Optimizer (bitsandbytes 8-bit variants included).")] = Optimizer.adamw,
    optimizer_impl: Annotated[OptimizerImpl, typer.Option("--optimizer-impl",
        help="AdamW kernel: fused (HF Trainer's default), foreach (torch's CUDA default: one temporary per "
             "parameter at the step), forloop.")] = OptimizerImpl.fused,
    batch: Annotated[int, typer.Option("--batch", "-b", help="Micro-batch per GPU.")] = 1,
    seq: Annotated[Optional[int], typer.Option("--seq", "-s",
        help="Sequence length (default 2048, or a shorter learned position table: BERT, GPT-2).")] = None,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Gradient accumulation steps.")] = 1,
    grad_ckpt: Annotated[bool, typer.Option("--grad-ckpt",
        help="Activation (gradient) checkpointing, non-reentrant, per layer.")] = False,
    zero_grad_set_to_none: Annotated[bool, typer.Option("--zero-grad-set-to-none/--no-zero-grad-set-to-none",
        help="--no-zero-grad-set-to-none: zero_grad keeps the gradient tensors (torch < 2.0's default), so "
             "gradients stay allocated through forward and backward")] = True,
    attn: Annotated[Optional[Attn], typer.Option("--attn",
        help="Attention implementation (default: transformers' own, sdpa, or eager for models without "
             "SDPA such as Gemma 2 and gpt-oss).")] = None,
    lora_rank: Annotated[int, typer.Option("--lora-rank", help="LoRA rank r.")] = vocab.LORA_RANK,
    lora_targets: Annotated[Optional[str], typer.Option("--lora-targets",
        help="all-linear (default), default (PEFT's per model), or names: q_proj,v_proj.")] = None,
    dora: Annotated[bool, typer.Option("--dora",
        help="DoRA: LoRA + a magnitude vector per adapted layer.")] = False,
    qlora_format: Annotated[str, typer.Option("--qlora-format",
        help=f"QLoRA base format: {', '.join(vocab.QLORA_FORMATS)}.")] = vocab.QLORA_FORMATS[0],
    prepare_kbit: Annotated[Optional[bool], typer.Option("--prepare-kbit/--no-prepare-kbit",
        help="PEFT's prepare_model_for_kbit_training (fp32 embeddings/LM head/norms, fp32 residual stream, "
             "gradient checkpointing). Default: on for qlora, off for lora.")] = None,
    bnb_compute_dtype: Annotated[Optional[str], typer.Option("--bnb-compute-dtype",
        help="bnb_4bit_compute_dtype: fp32, bf16 or fp16 (default: the recipes' bf16, fp16 with "
             "--precision fp16; bitsandbytes' own default is fp32).")] = None,
    bnb_quant_storage: Annotated[str, typer.Option("--bnb-quant-storage",
        help="bnb_4bit_quant_storage: uint8 (default), bf16, fp16, fp32 (same bytes).")] = "uint8",
    adapter_dtype: Annotated[Optional[str], typer.Option("--adapter-dtype",
        help="LoRA adapter dtype: fp32 (default, PEFT's autocast_adapter_dtype=True), bf16, fp16.")] = None,
    lora_dropout: Annotated[float, typer.Option("--lora-dropout",
        help="LoraConfig lora_dropout (default 0.0; many recipes use 0.05).")] = 0.0,
    reentrant: Annotated[Optional[bool], typer.Option("--reentrant/--no-reentrant",
        help="Checkpointing use_reentrant (default: non-reentrant, transformers 5.24's default).")] = None,
    loss_path: Annotated[str, typer.Option("--loss-path",
        help="Causal-LM loss as transformers runs it: 5.x (ForCausalLMLoss, default), 4.46 (4.46's loss_utils: "
             "16-bit logits held + fp32 copy + contiguous shifted copy) or 4.x (<= 4.45: fp32 logits + a "
             "contiguous shifted copy).")] = "5.x",
    zero: Annotated[Optional[int], typer.Option("--zero",
        help="DeepSpeed ZeRO stage 0-3 (with fp32 or a deepspeed-* precision; deepspeed-bf16 unless --precision "
             "says otherwise).")] = None,
    offload_optimizer: Annotated[bool, typer.Option("--offload-optimizer",
        help="ZeRO: optimizer states and step on CPU.")] = False,
    offload_param: Annotated[bool, typer.Option("--offload-param", help="ZeRO-3: parameters on CPU.")] = False,
    fsdp: Annotated[Optional[Fsdp], typer.Option("--fsdp", help="torch FSDP sharding strategy.")] = None,
    fsdp_offload: Annotated[bool, typer.Option("--fsdp-offload",
        help="FSDP CPUOffload(offload_params=True): sharded parameters, gradients and optimizer on CPU.")] = False,
    zero_reduce_bucket: Annotated[Optional[str], typer.Option("--zero-reduce-bucket",
        help="DeepSpeed reduce_bucket_size, elements (5e8 default) or auto (hidden²).")] = None,
    zero_allgather_bucket: Annotated[Optional[str], typer.Option("--zero-allgather-bucket",
        help="DeepSpeed allgather_bucket_size, elements (5e8 default; ZeRO-1/2).")] = None,
    zero_prefetch_bucket: Annotated[Optional[str], typer.Option("--zero-prefetch-bucket",
        help="DeepSpeed stage3_prefetch_bucket_size, elements (5e7 default) or auto (0.9·hidden²).")] = None,
    zero_max_live_params: Annotated[Optional[str], typer.Option("--zero-max-live-params",
        help="DeepSpeed stage3_max_live_parameters, elements (1e9 default).")] = None,
    zero_persistence_threshold: Annotated[Optional[str], typer.Option("--zero-persistence-threshold",
        help="DeepSpeed stage3_param_persistence_threshold, elements (1e5 default) or auto (10·hidden).")] = None,
    gpus: GpusOpt = 1,
    tp: Annotated[int, typer.Option("--tp", help="Tensor-parallel degree (within --gpus).")] = 1,
    pp: Annotated[int, typer.Option("--pp", help="Pipeline-parallel degree (within --gpus).")] = 1,
    gpus_per_node: Annotated[int, typer.Option("--gpus-per-node",
        help="GPUs sharing one node's CPU RAM (offload).")] = 8,
    images: ImagesOpt = 0,
    target_seq: TargetSeqOpt = None,
    image_size: ImageSizeOpt = None,
    audio_seconds: AudioSecondsOpt = None,
    gpu: GpuOpt = None,
    advise: Annotated[bool, typer.Option("--advise",
        help="The out-of-memory remedies, each quantified, and the cheapest plan that fits (needs --gpu).")] = False,
    rlhf: Annotated[Optional[Rlhf], typer.Option("--rlhf",
        help="RLHF: PPO (actor, critic, reference [+ reward]), GRPO, DPO; models colocated.")] = None,
    group_size: Annotated[Optional[int], typer.Option("--group-size",
        help="RLHF: samples per prompt in the rollout (default: PPO 1, GRPO 8).")] = None,
    rollout: Annotated[str, typer.Option("--rollout",
        help="RLHF rollout engine: vllm (colocated, its own weights and KV), hf, or none.")] = "vllm",
    optimizer_in_backward: Annotated[bool, typer.Option("--optimizer-in-backward",
        help="Step each parameter as soon as its gradient is complete (torchtune optimizer_in_bwd): no full "
             "gradient set.")] = False,
    eval_generate: Annotated[Optional[str], typer.Option("--eval-generate",
        help="An evaluation that generates between steps: BATCHxTOKENS, e.g. 50x800.")] = None,
    full_logits_metrics: Annotated[bool, typer.Option("--full-logits-metrics",
        help="Evaluation keeps every logit for compute_metrics (b x s x vocab fp32).")] = False,
    resolution: Annotated[Optional[int], typer.Option("--resolution",
        help="Diffusers pipeline: training resolution in pixels (the scripts' --resolution; default: the denoiser's "
             "sample_size x the VAE scale factor). timm: use --image-size.")] = None,
    ema: Annotated[bool, typer.Option("--ema",
        help="Diffusers pipeline, full fine-tune: an fp32 EMA copy of the denoiser on the GPU (--use_ema).")] = False,
    cache_text_embeddings: Annotated[Optional[bool], typer.Option("--cache-text-embeddings/--no-cache-text-embeddings",
        help="Diffusers pipeline: text embeddings precomputed, text encoders off the GPU (default: on for FLUX, "
             "as train_dreambooth_lora_flux.py does; off otherwise). Training the text encoders is not modelled.")] = None,
    loss: Annotated[Optional[str], typer.Option("--loss",
        help="sentence-transformers: mnrl (MultipleNegativesRankingLoss, in-batch negatives). Without it the "
             "transformer trains as a transformers model.")] = None,
    hard_negatives: Annotated[int, typer.Option("--hard-negatives",
        help="sentence-transformers --loss mnrl: hard-negative columns per anchor.")] = 0,
    cuda_context: CudaContextOpt = None,
    nccl: NcclOpt = None,
    fragmentation: FragmentationOpt = None,
    emit: Annotated[Optional[Emit], typer.Option("--emit",
        help="Print a configuration consistent with the plan.")] = None,
    revision: RevisionOpt = None,
    token: TokenOpt = None,
    offline: OfflineOpt = False,
    verbose: VerboseOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
    fmt: FormatOpt = Format.table,
    quiet: QuietOpt = False,
    no_cache: NoCacheOpt = False,
    plot: PlotOpt = None,
    plot_gpu: PlotGpuOpt = None,
    plot_size: PlotSizeOpt = DEFAULT_SIZE,
) -> None:
    """Fine-tuning memory per GPU: weights, fp32 master weights, gradients, optimizer states, activations and
    overheads, peak by phase; with --gpu whether it fits and the largest micro-batch / sequence that do;
    --advise quantifies each out-of-memory remedy; --rlhf ppo|grpo|dpo places several models."""
    if not models:
        raise UsageError("no model given", hint="e.g. hfmem train meta-llama/Llama-2-13b-hf --precision amp-bf16")
    from ..api import train_many
    from ..scenarios.finetune import TrainSettings

    if group_size is not None and group_size < 1:
        raise UsageError(f"--group-size {group_size} is out of range: at least 1 sample per prompt",
                         hint="leave it out for the default (PPO 1, GRPO 8)")
    prec = precision.value if precision else None  # None: hfmem.api.train picks one and says so
    fsdp_value = fsdp.value if fsdp else None
    assumed: list[str] = []
    if rlhf and zero is None and fsdp_value is None:
        # verl's defaults: FSDP full shard (with MixedPrecision when no --precision is given)
        fsdp_value = "full_shard"
        assumed.append("--rlhf without --fsdp or --zero: FSDP full_shard, as verl trains by default")
        hint("note: --rlhf trains as verl does by default: --fsdp full_shard"
             + (" --precision amp-bf16" if prec is None else ""))
    overheads = overheads_options(cuda_context, nccl, fragmentation)
    eval_b = eval_t = 0
    if eval_generate:
        try:
            eval_b, eval_t = (int(x) for x in eval_generate.lower().split("x"))
        except ValueError:
            raise UsageError(f"--eval-generate {eval_generate!r} is not BATCHxTOKENS", hint="e.g. 50x800") from None
    def _zero_size(value):  # "5e8" -> 500000000, "auto" stays; a bad value is left for validate() to name
        from ..scenarios.sharding import parse_zero_size

        try:
            return parse_zero_size(value, "reduce_bucket_size")
        except SettingsError:
            return value

    zero_reduce_bucket, zero_allgather_bucket, zero_prefetch_bucket, zero_max_live_params, \
        zero_persistence_threshold = (_zero_size(v) for v in (zero_reduce_bucket, zero_allgather_bucket,
                                                              zero_prefetch_bucket, zero_max_live_params,
                                                              zero_persistence_threshold))
    settings = TrainSettings(
        method=method.value, precision=prec, optimizer=optimizer.value, adamw_impl=optimizer_impl.value,
        batch=batch, seq=seq, grad_accum=grad_accum, grad_ckpt=grad_ckpt, attn=attn.value if attn else None,
        grads_set_to_none=zero_grad_set_to_none,
        lora_rank=lora_rank, lora_targets=_targets(lora_targets), dora=dora, qlora_format=qlora_format,
        prepare_kbit=prepare_kbit, bnb_compute_dtype=bnb_compute_dtype, bnb_quant_storage=bnb_quant_storage,
        adapter_dtype=adapter_dtype, lora_dropout=lora_dropout, reentrant=reentrant, loss_path=loss_path,
        zero=zero, offload_optimizer=offload_optimizer, offload_param=offload_param,
        fsdp=fsdp_value, fsdp_offload=fsdp_offload, zero_reduce_bucket=zero_reduce_bucket,
        zero_allgather_bucket=zero_allgather_bucket, zero_prefetch_bucket=zero_prefetch_bucket,
        zero_max_live_params=zero_max_live_params, zero_persistence_threshold=zero_persistence_threshold,
        gpus=gpus, tp=tp, pp=pp, gpus_per_node=gpus_per_node,
        full_logits_metrics=full_logits_metrics, optimizer_in_backward=optimizer_in_backward,
        eval_generate_batch=eval_b, eval_generate_tokens=eval_t, target_seq=target_seq, image_size=image_size,
        audio_seconds=audio_seconds, images=images, overheads=overheads)
    from .options import parse_gpu_option

    gpu_obj = parse_gpu_option(gpu, gpus)
    opts = source_options(revision, token, offline, trust_remote_code, no_cache, verbose=verbose, quiet=quiet)
    from .plotting import plot_request

    plot_to = plot_request(plot, plot_size)  # a bad --plot is one line before anything is estimated
    failures: list[tuple[str, HfmemError]] = []
    if loss is not None and loss != "mnrl":
        raise SettingsError(f"--loss {loss!r}: use mnrl (cached-mnrl is not modelled)", setting="loss")
    composite = {"resolution": resolution, "ema": ema, "cache_text_embeddings": cache_text_embeddings, "loss": loss,
                 "hard_negatives": hard_negatives}
    reports = train_many(models, opts, settings=settings, gpu=gpu_obj, advise=advise, composite=composite,
                         rlhf=rlhf.value if rlhf else None, assumed=assumed,
                         rlhf_options={"group_size": group_size,
                                       "rollout": None if rollout == "none" else rollout} if rlhf else None,
                         on_error=(lambda m, e: failures.append((m, e))) if len(models) > 1 else None)
    emits: dict[str, str] = {}
    if emit is not None:
        from ..plan import emit_train

        fn = {"deepspeed": emit_train.deepspeed_config, "accelerate": emit_train.accelerate_config,
              "peft": emit_train.peft_config}[emit.value]
        for r in reports:
            try:
                emits[r.report.model] = fn(r.estimate.settings)
            except SettingsError as exc:  # a setting the emitted format cannot express
                raise UsageError(f"--emit {emit.value}: {exc}") from None
    import sys  # `hfmem measure train` called this command: measure these reports instead of rendering them

    measure = sys.modules.get("hfmem.cli.measure")
    if measure is not None and measure.active("train"):
        return measure.hand_over("train", reports, failures, fmt)
    from ..render import pipeline_train
    from ..render import train as render

    if pipeline_train.is_composite(reports):  # a diffusers pipeline, timm, or contrastive sentence-transformers
        render = pipeline_train
    json_doc = render.train_json
    if plot_to is not None and reports:
        from .plotting import plot_gpus, training_plot

        doc = training_plot(reports, opts, settings, plot_gpus(plot_gpu), plot_to)
        json_doc = lambda *a: {**render.train_json(*a), "plot": doc}  # noqa: E731
    finish(fmt, reports, failures, emits, json_doc=json_doc, markdown=render.markdown_train,
           rich=render.rich_train)
