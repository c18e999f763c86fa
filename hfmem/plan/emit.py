"""Launch configurations consistent with a plan (``--emit``). Strings only; every value comes from the
estimate and the fit, nothing is recomputed here."""

from __future__ import annotations

import shlex

from ..vocab import VLLM_BLOCK_SIZE

# hfmem weight format -> vLLM's --quantization (only where loading a 16-bit checkpoint in that format is an
# on-the-fly quantization vLLM offers; a checkpoint already stored quantized is detected by vLLM itself).
_VLLM_QUANT = {"fp8": "fp8", "int8": "bitsandbytes", "nf4": "bitsandbytes", "nf4-dq": "bitsandbytes",
               "fp4": "bitsandbytes", "fp4-dq": "bitsandbytes"}
_VLLM_DTYPE = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


def _max_num_seqs(settings, fit) -> int:
    """The concurrency the plan allows: the sequences of full context the KV budget holds (capped at vLLM's
    --max-num-seqs setting), never below the batch asked for."""
    if fit is not None and fit.fits and fit.max_batch:
        return max(settings.batch, min(fit.max_batch, settings.max_num_seqs))
    return max(settings.batch, 1)


def vllm_serve(model: str, estimate, fit=None) -> tuple[str, list[str]]:
    """``vllm serve`` arguments for the plan, and the caveats that apply. With a fit that does not fit as
    asked, the command uses the fewest GPUs that fit, else the weight format that fits."""
    s = estimate.settings
    tp = s.tp
    fmt = estimate.weights_format
    caveats: list[str] = []
    if fit is not None and not fit.fits:
        if fit.min_gpus:
            caveats.append(f"the asked plan does not fit; using tensor parallel {fit.min_gpus}, the fewest GPUs "
                           "that fit")
            tp = fit.min_gpus
        elif fit.weight_format_that_fits:
            caveats.append(f"the asked plan does not fit on any GPU count; using weights {fit.weight_format_that_fits}")
            fmt = fit.weight_format_that_fits
        else:
            caveats.append("no plan fits this GPU: the command below will not start")
    args = ["vllm", "serve", model,
            "--max-model-len", str(s.context),
            "--gpu-memory-utilization", f"{s.gpu_memory_utilization:g}",
            "--tensor-parallel-size", str(tp),
            "--max-num-seqs", str(_max_num_seqs(s, fit)),
            "--dtype", _VLLM_DTYPE.get(estimate.compute_dtype, "auto")]
    if s.max_num_batched_tokens:
        args += ["--max-num-batched-tokens", str(s.max_num_batched_tokens)]
    if estimate.kv_dtype == "fp8":
        args += ["--kv-cache-dtype", "fp8"]
    if fmt != estimate.weights_format or s.weights_format:
        quant = _VLLM_QUANT.get(fmt)
        if quant:
            args += ["--quantization", quant]
        elif fmt not in ("bf16", "fp16", "fp32"):
            caveats.append(f"vLLM cannot quantize to {fmt} on load: use a checkpoint stored in that format")
    if s.block_size != VLLM_BLOCK_SIZE:  # vLLM's own default: no flag needed
        args += ["--block-size", str(s.block_size)]
    if s.engine != "vllm":
        caveats.append("the estimate is for the transformers engine; rerun with --engine vllm for vLLM's numbers")
    return " ".join(shlex.quote(a) for a in args), caveats
