"""``hfmem infer --engine llama.cpp`` (and any GGUF-only repo given to ``hfmem infer``): llama.cpp's options
turned into ``LlamaCppSettings``, ``api.infer_llamacpp`` per model, the output sink. Also the calculator for a
GGUF repo (``hfmem REPO``): every quant variant as a row."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import HfmemError, UsageError


@dataclass
class LlamaCppArgs:
    """The infer command's flags that llama.cpp reads, as given."""

    context: int = 4096
    batch: int = 1
    quant: str | None = None
    n_gpu_layers: int | None = None
    tensor_split: str | None = None
    n_cpu_moe: int = 0
    cpu_moe: bool = False
    override_tensor: list[str] = field(default_factory=list)
    cache_type_k: str = "f16"
    cache_type_v: str = "f16"
    flash_attn: str = "auto"
    swa_full: bool = False
    parallel: int | None = None
    n_batch: int = 2048
    n_ubatch: int = 512
    no_kv_offload: bool = False
    no_mmap: bool = False
    embeddings: bool = False
    ram: str | None = None
    gpu: str | None = None
    gpus: int = 1
    images: int = 0
    cuda_context: str | None = None
    emit: str | None = None


def vllm_gguf_error(model: str) -> HfmemError:
    """``hfmem infer --engine vllm`` on a repo of GGUF files only (the web app says the same)."""
    from ..errors import UnsupportedArchitectureError

    return UnsupportedArchitectureError(f"{model}: holds GGUF files only, and vLLM's GGUF loading is not modelled",
                                        hint="--engine llama.cpp answers it as llama.cpp, Ollama and LM Studio run it")


def gguf_answered_note(model: str) -> str:
    """The note when a repo asked for with another engine holds GGUF files only and llama.cpp answers it."""
    return f"note: {model} holds GGUF files and no config.json: answered for llama.cpp (--engine llama.cpp)"


def is_gguf_ref(model: str) -> bool:
    """A reference that can only mean GGUF: a .gguf file, ``REPO:QUANT`` / ``hf.co/REPO``, or a folder with
    .gguf files and no config.json. (A Hub repo of GGUF files alone is recognised from its file list.)"""
    if model.lower().endswith(".gguf") or model.startswith("hf.co/"):
        return True
    if ":" in model and not os.path.exists(model) and "/" in model.split(":", 1)[0]:
        return True
    if os.path.isdir(model):
        names = os.listdir(model)
        return "config.json" not in names and any(n.lower().endswith(".gguf") for n in names)
    return False


def _tensor_split(value: str | None) -> tuple[float, ...] | None:
    if not value:
        return None
    try:
        return tuple(float(v) for v in value.replace("/", ",").split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--tensor-split {value!r} is not a list of numbers", hint="e.g. --tensor-split 3,1") from None


def _overrides(values: list[str]) -> tuple[tuple[str, str], ...]:
    """-ot as llama.cpp reads it (common/arg.cpp): comma-separated ``REGEX=BUFFER`` pairs, repeatable."""
    out = []
    for value in values:
        for item in value.split(","):
            if not item.strip():
                continue
            pattern, sep, buft = item.rpartition("=")
            if not sep or not pattern:
                raise UsageError(f"--override-tensor {item!r} is not REGEX=BUFFER",
                                 hint=r"e.g. -ot 'blk\.(1[0-9])\.ffn_.*_exps=CPU'")
            out.append((pattern, buft.strip()))
    return tuple(out)


def settings_from(a: LlamaCppArgs):
    from ..scenarios.llamacpp import LLAMACPP_CUDA_CONTEXT_BYTES, LlamaCppSettings
    from .options import parse_size_option

    return LlamaCppSettings(
        context=a.context, parallel=a.parallel if a.parallel is not None else a.batch, n_batch=a.n_batch,
        n_ubatch=a.n_ubatch, n_gpu_layers=a.n_gpu_layers, gpus=a.gpus, tensor_split=_tensor_split(a.tensor_split),
        n_cpu_moe=a.n_cpu_moe, cpu_moe=a.cpu_moe, override_tensors=_overrides(a.override_tensor),
        type_k=a.cache_type_k.lower(), type_v=a.cache_type_v.lower(), flash_attn=a.flash_attn, swa_full=a.swa_full,
        kv_offload=not a.no_kv_offload, mmap=not a.no_mmap, images=a.images, embeddings=a.embeddings,
        cuda_context_bytes=parse_size_option("--cuda-context", a.cuda_context, LLAMACPP_CUDA_CONTEXT_BYTES))


def gguf_reports(models: list[str], opts, a: LlamaCppArgs, failures: list) -> list:
    """``api.infer_llamacpp`` for each model; failures appended to ``failures`` when there are several."""
    from ..api import infer_llamacpp
    from .options import parse_gpu_option, parse_size_option

    s = settings_from(a).validate()
    devices: list = []
    gpu = parse_gpu_option(a.gpu, a.gpus, devices) if a.gpu else None
    ram = parse_size_option("--ram", a.ram, 0) if a.ram else None
    out = []
    for m in models:
        try:
            out.append(infer_llamacpp(m, opts, settings=s, gpu=gpu, select=a.quant, ram=ram,
                                      devices=tuple(devices) or None))
        except HfmemError as exc:
            if len(models) == 1:
                raise
            failures.append((m, exc))
    return out


def run_llamacpp(models: list[str], opts, a: LlamaCppArgs, fmt) -> None:
    from ..render import llamacpp as render
    from .output import finish, hint

    failures: list = []
    reports = gguf_reports(models, opts, a, failures)
    emits: dict[str, str] = {}
    if a.emit in ("llama.cpp", "ollama"):
        from ..plan.emit_llamacpp import llama_server_command, ollama_modelfile

        for r in reports:
            text, caveats = (llama_server_command if a.emit == "llama.cpp" else ollama_modelfile)(r)
            emits[r.model] = text
            for c in caveats:
                hint(f"note: {r.model}: {c}")
    elif a.emit is not None:
        raise UsageError(f"--emit {a.emit} is not for GGUF models", hint="use --emit llama.cpp or --emit ollama")
    finish(fmt, reports, failures, emits, json_doc=render.llamacpp_document, markdown=render.markdown_llamacpp,
           rich=render.rich_llamacpp)
