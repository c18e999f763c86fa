"""``hfmem infer MODEL...``: serving memory (weights, KV cache, activations, overheads) per GPU, whether it
fits, and the limits that fit. A thin layer over ``hfmem.api.infer``."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from .. import vocab
from ..errors import HfmemError, UsageError
from .options import (Attn, CudaContextOpt, CudaGraphsOpt, DType, Engine, Format, FragmentationOpt, KVDType,
                      NcclOpt, FormatOpt, GpuOpt, GpusOpt, ImageSizeOpt, ImagesOpt, AudioSecondsOpt, ModelsArg,
                      NoCacheOpt, OfflineOpt,
                      QuietLongOpt, RevisionOpt, TokenOpt, TrustRemoteCodeOpt, overheads_options, source_options, VerboseOpt)
from .output import finish, hint
from .plotting import DEFAULT_SIZE, PlotAxis, PlotAxisOpt, PlotGpuOpt, PlotOpt, PlotSizeOpt


class Logits(str, Enum):
    last = "last"
    all = "all"


class Emit(str, Enum):
    vllm = "vllm"
    llama_cpp = "llama.cpp"
    ollama = "ollama"


class FlashAttn(str, Enum):
    on = "on"
    off = "off"
    auto = "auto"


def _lora_targets(value: str | None):
    """--lora-targets as train reads it: all-linear, default (PEFT's per model type: None), or names."""
    if value is None or value.lower() == vocab.LORA_TARGETS:
        return vocab.LORA_TARGETS
    if value.lower() in ("default", "none"):
        return None
    return [t.strip() for t in value.split(",") if t.strip()]


def infer(
    models: ModelsArg,
    context: Annotated[int, typer.Option("--context", "-c",
        help="Prompt tokens per sequence (vLLM: max-model-len).")] = 4096,
    batch: Annotated[int, typer.Option("--batch", "-b",
        help="Sequences at once (vLLM: concurrent sequences at full context).")] = 1,
    new_tokens: Annotated[int, typer.Option("--new-tokens", "-n",
        help="Decode steps after the prefill (transformers).")] = 0,
    engine: Annotated[Engine, typer.Option("--engine", "-e",
        help="transformers generate(), or vLLM's paged KV cache.")] = Engine.transformers,
    weights: Annotated[Optional[str], typer.Option("--weights", "-w",
        help="Weight format: fp32, bf16, fp16, fp8, fp8-block, int8, nf4, nf4-dq, fp4, fp4-dq, gptq-int4, awq-"
             "int4, mxfp4 (default: the checkpoint's).")] = None,
    dtype: Annotated[Optional[DType], typer.Option("--dtype",
        help="Compute dtype (default: the checkpoint's; bf16 for quantized weights).")] = None,
    kv_dtype: Annotated[KVDType, typer.Option("--kv-dtype",
        help="KV cache dtype (auto: the compute dtype).")] = KVDType.auto,
    attn: Annotated[Optional[Attn], typer.Option("--attn",
        help="Attention implementation (default: transformers' own, sdpa, or eager for models without SDPA "
             "such as Gemma 2 and gpt-oss; vLLM: flash).")] = None,
    bnb_compute_dtype: Annotated[Optional[DType], typer.Option("--bnb-compute-dtype",
        help="bitsandbytes 4-bit (nf4/fp4) compute dtype, BitsAndBytesConfig's bnb_4bit_compute_dtype (default: a "
             "prequantized checkpoint's, else fp32, transformers' default).")] = None,
    lora_rank: Annotated[int, typer.Option("--lora-rank",
        help="Serve unmerged LoRA adapters of rank r (PEFT; 0: none).")] = 0,
    lora_targets: Annotated[Optional[str], typer.Option("--lora-targets",
        help="Modules the served adapters adapt: all-linear (default), default (PEFT's per model), or names: "
             "q_proj,v_proj.")] = None,
    images: ImagesOpt = 0,
    image_size: ImageSizeOpt = None,
    audio_seconds: AudioSecondsOpt = None,
    gpu: GpuOpt = None,
    gpus: GpusOpt = 1,
    gpu_memory_utilization: Annotated[float, typer.Option("--gpu-memory-utilization",
        help="vLLM: fraction of the GPU vLLM takes.")] = 0.9,
    max_num_batched_tokens: Annotated[int, typer.Option("--max-num-batched-tokens",
        help="vLLM: tokens in one forward (its profile run).")] = 8192,
    max_num_seqs: Annotated[int, typer.Option("--max-num-seqs",
        help="vLLM: sequences the sampler runs at once (profile run).")] = 256,
    block_size: Annotated[int, typer.Option("--block-size", help="vLLM: tokens per KV block.")] = vocab.VLLM_BLOCK_SIZE,
    cuda_context: CudaContextOpt = None,
    nccl: NcclOpt = None,
    cuda_graphs: CudaGraphsOpt = None,
    fragmentation: FragmentationOpt = None,
    logits: Annotated[Logits, typer.Option("--logits",
        help="Logits kept by the prefill: last (generate) or all (a plain forward: scoring, perplexity).")] = Logits.last,
    emit: Annotated[Optional[Emit], typer.Option("--emit",
        help="Print a launch command consistent with the plan (vllm serve ...).")] = None,
    height: Annotated[Optional[int], typer.Option("--height",
        help="Diffusers pipelines: image height in pixels (default: the pipeline's, e.g. 512 SD1.5, 1024 SDXL/FLUX).")] = None,
    width: Annotated[Optional[int], typer.Option("--width", help="Diffusers pipelines: image width.")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps",
        help="Diffusers pipelines: num_inference_steps (the peak is per step).")] = None,
    guidance_scale: Annotated[Optional[float], typer.Option("--guidance-scale",
        help="Diffusers pipelines: guidance_scale (> 1 doubles the SD/SDXL/SD3 denoiser batch).")] = None,
    cfg: Annotated[Optional[bool], typer.Option("--cfg/--no-cfg",
        help="Diffusers pipelines: force classifier-free guidance on/off.")] = None,
    frames: Annotated[int, typer.Option("--frames", help="Diffusers video pipelines: frames.")] = 1,
    offload: Annotated[str, typer.Option("--offload",
        help="Diffusers pipelines: none, model (enable_model_cpu_offload), sequential, group.")] = "none",
    group_blocks: Annotated[int, typer.Option("--group-blocks",
        help="Diffusers group offload: num_blocks_per_group (block_level).")] = 1,
    group_leaf: Annotated[bool, typer.Option("--group-leaf", help="Diffusers group offload: leaf_level.")] = False,
    group_stream: Annotated[bool, typer.Option("--group-stream",
        help="Diffusers group offload: use_stream (prefetch the next group).")] = False,
    vae_tiling: Annotated[bool, typer.Option("--vae-tiling", help="Diffusers pipelines: vae.enable_tiling().")] = False,
    vae_slicing: Annotated[bool, typer.Option("--vae-slicing", help="Diffusers pipelines: vae.enable_slicing().")] = False,
    attention_slicing: Annotated[Optional[str], typer.Option("--attention-slicing",
        help="Diffusers pipelines: enable_attention_slicing(auto|max|N).")] = None,
    denoiser_weights: Annotated[Optional[str], typer.Option("--denoiser-weights",
        help="Diffusers pipelines: bf16, fp16, fp32, nf4, int8, fp8-layerwise (default: --dtype).")] = None,
    text_encoder_weights: Annotated[Optional[str], typer.Option("--text-encoder-weights",
        help="Diffusers pipelines: bf16, fp16, fp32, nf4, int8 (default: --dtype).")] = None,
    quant: Annotated[Optional[str], typer.Option("--quant", "-q",
        help="llama.cpp: the GGUF variant to serve, e.g. Q4_K_M (also REPO:Q4_K_M; default: the best that fits "
             "--gpu, else Q4_K_M).")] = None,
    n_gpu_layers: Annotated[Optional[int], typer.Option("--n-gpu-layers", "-ngl",
        help="llama.cpp: layers offloaded to the GPUs (default: all; n_layer + 1 includes the output layer).")] = None,
    tensor_split: Annotated[Optional[str], typer.Option("--tensor-split", "-ts",
        help="llama.cpp: shares of the GPU layers per GPU, e.g. 3,1 (default: equal).")] = None,
    n_cpu_moe: Annotated[int, typer.Option("--n-cpu-moe", "-ncmoe",
        help="llama.cpp: keep the MoE experts of the first N layers on the CPU.")] = 0,
    cpu_moe: Annotated[bool, typer.Option("--cpu-moe", help="llama.cpp: keep every layer's MoE experts on the CPU.")] = False,
    override_tensor: Annotated[Optional[str], typer.Option("--override-tensor", "-ot",
        help="llama.cpp: REGEX=BUFFER (CPU, CUDA0, ...) for the tensors whose names match; several "
             "comma-separated, the first match wins.")] = None,
    cache_type_k: Annotated[str, typer.Option("--cache-type-k", "-ctk",
        help="llama.cpp: K cache type: f16, bf16, f32, q8_0, q4_0, q4_1, iq4_nl, q5_0, q5_1.")] = "f16",
    cache_type_v: Annotated[str, typer.Option("--cache-type-v", "-ctv",
        help="llama.cpp: V cache type (quantized types need flash attention).")] = "f16",
    flash_attn: Annotated[FlashAttn, typer.Option("--flash-attn", "-fa",
        help="llama.cpp: flash attention on, off or auto (llama.cpp's default).")] = FlashAttn.auto,
    swa_full: Annotated[bool, typer.Option("--swa-full",
        help="llama.cpp: a full-size cache for sliding-window layers too.")] = False,
    parallel: Annotated[Optional[int], typer.Option("--parallel", "-np",
        help="llama.cpp: parallel sequences (slots), each with --context tokens (default: --batch).")] = None,
    n_batch: Annotated[int, typer.Option("--batch-size",
        help="llama.cpp: logical batch (llama.cpp's -b).")] = 2048,
    n_ubatch: Annotated[int, typer.Option("--ubatch-size", "-ub",
        help="llama.cpp: physical batch, what the compute buffers are sized for.")] = 512,
    no_kv_offload: Annotated[bool, typer.Option("--no-kv-offload", "-nkvo",
        help="llama.cpp: keep the KV cache on the CPU.")] = False,
    no_mmap: Annotated[bool, typer.Option("--no-mmap", help="llama.cpp: copy CPU weights instead of mapping the file.")] = False,
    embeddings: Annotated[bool, typer.Option("--embeddings",
        help="llama.cpp: also keep each output's embedding (llama-server --embeddings; Ollama always does).")] = False,
    ram: Annotated[Optional[str], typer.Option("--ram",
        help="llama.cpp: CPU memory to check the CPU side against, e.g. 64GiB.")] = None,
    revision: RevisionOpt = None,
    token: TokenOpt = None,
    offline: OfflineOpt = False,
    verbose: VerboseOpt = False,
    trust_remote_code: TrustRemoteCodeOpt = False,
    fmt: FormatOpt = Format.table,
    quiet: QuietLongOpt = False,
    no_cache: NoCacheOpt = False,
    plot: PlotOpt = None,
    plot_axis: PlotAxisOpt = PlotAxis.context,
    plot_gpu: PlotGpuOpt = None,
    plot_size: PlotSizeOpt = DEFAULT_SIZE,
) -> None:
    """Serving memory per GPU: weights in their real format, KV cache for the real attention layout,
    activations, CUDA context and other overheads; with --gpu, whether it fits, the max context, max batch,
    fewest GPUs and the weight format that fit. GGUF repos are answered for llama.cpp (also Ollama and LM
    Studio): its buffers per device, the largest context and most layers that fit, the best quant variant."""
    if not models:
        raise UsageError("no model given", hint="e.g. hfmem infer meta-llama/Llama-3.1-8B --context 32768")
    from .llamacpp import LlamaCppArgs, gguf_answered_note, is_gguf_ref, run_llamacpp, vllm_gguf_error

    llama_args = LlamaCppArgs(
        context=context, batch=batch, quant=quant, n_gpu_layers=n_gpu_layers, tensor_split=tensor_split,
        n_cpu_moe=n_cpu_moe, cpu_moe=cpu_moe, override_tensor=[override_tensor] if override_tensor else [], cache_type_k=cache_type_k,
        cache_type_v=cache_type_v, flash_attn=flash_attn.value, swa_full=swa_full, parallel=parallel,
        n_batch=n_batch, n_ubatch=n_ubatch, no_kv_offload=no_kv_offload, no_mmap=no_mmap, embeddings=embeddings,
        ram=ram, gpu=gpu,
        gpus=gpus, images=images, cuda_context=cuda_context, emit=emit.value if emit else None)
    opts = source_options(revision, token, offline, trust_remote_code, no_cache, verbose=verbose, quiet=quiet)
    from .plotting import plot_request

    plot_to = plot_request(plot, plot_size)  # a bad --plot is one line before anything is estimated
    if engine.value == vocab.LLAMACPP or all(is_gguf_ref(m) for m in models):
        if plot_to is not None:
            from .plotting import llamacpp_not_plotted

            raise llamacpp_not_plotted()
        return run_llamacpp(models, opts, llama_args, fmt)
    if emit is not None and emit is not Emit.vllm:
        raise UsageError(f"--emit {emit.value} is for GGUF models served by llama.cpp",
                         hint="add --engine llama.cpp, or use --emit vllm")
    from ..api import infer_many
    from ..scenarios.inference import InferenceSettings

    overheads = overheads_options(cuda_context, nccl, fragmentation, cuda_graphs)
    settings = InferenceSettings(
        engine=engine.value, context=context, batch=batch, new_tokens=new_tokens,
        weights_format=weights.lower() if weights else None, compute_dtype=dtype.value if dtype else None,
        kv_dtype=None if kv_dtype is KVDType.auto else kv_dtype.value, attn=attn.value if attn else None,
        tp=gpus, overheads=overheads, block_size=block_size, gpu_memory_utilization=gpu_memory_utilization,
        max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs, logits=logits.value,
        image_size=image_size, audio_seconds=audio_seconds, images=images,
        bnb_compute_dtype=bnb_compute_dtype.value if bnb_compute_dtype else None, lora_rank=lora_rank,
        lora_targets=_lora_targets(lora_targets))
    from ..scenarios.pipeline import PipelineSettings

    slicing = attention_slicing
    if slicing is not None and slicing.isdigit():
        slicing = int(slicing)
    pipeline_settings = PipelineSettings(  # read only for a diffusers pipeline repo
        height=height, width=width, batch=batch, frames=frames, steps=steps, guidance_scale=guidance_scale, cfg=cfg,
        dtype=dtype.value if dtype else "bf16", offload=offload, group_type="leaf_level" if group_leaf else "block_level",
        group_blocks=group_blocks, group_stream=group_stream, vae_tiling=vae_tiling, vae_slicing=vae_slicing,
        attention_slicing=slicing, denoiser_weights=denoiser_weights, text_encoder_weights=text_encoder_weights,
        overheads=overheads)
    from .options import parse_gpu_option

    gpu_obj = parse_gpu_option(gpu, gpus)
    failures: list[tuple[str, HfmemError]] = []
    from ..errors import GGUFRepoError

    gguf_models: list[str] = []

    def failed(m: str, e: HfmemError) -> None:
        if isinstance(e, GGUFRepoError) and engine.value == "vllm":
            e = vllm_gguf_error(m)
        if isinstance(e, GGUFRepoError):  # a GGUF-only repo: llama.cpp runs it (answered below)
            gguf_models.append(m)
        elif len(models) > 1:
            failures.append((m, e))
        else:
            raise e

    reports = infer_many(models, opts, settings=settings, gpu=gpu_obj, pipeline_settings=pipeline_settings,
                         on_error=failed)
    if gguf_models:
        for m in gguf_models:
            hint(gguf_answered_note(m))
        if not reports and not failures:
            return run_llamacpp(gguf_models, opts, llama_args, fmt)
        from .llamacpp import gguf_reports

        reports = reports + gguf_reports(gguf_models, opts, llama_args, failures)
    emits: dict[str, str] = {}
    if emit is Emit.vllm:
        from ..plan.emit import vllm_serve

        for r in reports:
            if not hasattr(r, "checkpoint_format") or not hasattr(r, "report"):  # a pipeline or GGUF: no vLLM command
                continue
            cmd, caveats = vllm_serve(r.report.model, r.estimate, r.fit)
            emits[r.report.model] = cmd
            for c in caveats:
                hint(f"note: {r.report.model}: {c}")
    import sys  # `hfmem measure infer` called this command: measure these reports instead of rendering them

    measure = sys.modules.get("hfmem.cli.measure")
    if measure is not None and measure.active("infer"):
        return measure.hand_over("infer", reports, failures, fmt)
    from ..render import pipeline as render  # plain reports go on to render.infer

    json_doc = render.infer_json
    if plot_to is not None and reports:
        from .plotting import plot_gpus, serving_plot

        plotted = [r.report.model for r in reports if hasattr(r, "report")]
        doc = serving_plot(plotted or list(models), opts, settings, gpu_obj, plot_gpus(plot_gpu), plot_axis,
                           plot_to)
        json_doc = lambda *a: {**render.infer_json(*a), "plot": doc}  # noqa: E731
    finish(fmt, reports, failures, emits, json_doc=json_doc, markdown=render.markdown_infer,
           rich=render.rich_infer)
