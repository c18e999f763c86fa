"""``hfmem search``'s rows: one listed model judged for one job on one GPU kind, the ranking, and the command
that reproduces each row.

A row is made from the very report ``hfmem infer`` / ``hfmem train`` (or ``hfmem infer --engine llama.cpp`` for a
GGUF repo) gives for the model at the same settings, so a row's memory, verdict and limits are those commands'
numbers, and its ``command`` prints them again. Pure: the scan itself (listing, fetching, the time budget) is
``hfmem.api.search``.

"Any format of the repo" (``--weights any``) means the formats the repo can actually be served in: its checkpoint's
own, and those the engine quantizes while loading it: transformers through bitsandbytes (``load_in_8bit`` /
``load_in_4bit``: int8, nf4, fp4, with or without double quantization), vLLM with dynamic FP8 (``--quantization
fp8``) and in-flight bitsandbytes 4-bit (``--quantization bitsandbytes``): vLLM's "Quantization" docs, "FP8 W8A8"
(dynamic quantization of an unquantized checkpoint) and "BitsAndBytes" (in-flight quantization). GPTQ and AWQ need
other, prequantized repos and are not offered. For a GGUF repo they are its quant variants.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .gpus import GPU

JOBS = ("serve", "train")
# Row orders: the Hub's counts, the model's size, or the memory left on the GPU.
SORTS = ("downloads", "likes", "params", "free")
ANY_FORMAT = "any"
# The formats an engine makes from an unquantized checkpoint while loading it (see the module docstring).
ON_LOAD_FORMATS: dict[str, tuple[str, ...]] = {
    "transformers": ("int8", "nf4", "fp4", "nf4-dq", "fp4-dq"),
    "vllm": ("fp8", "nf4"),
}


@dataclass
class SearchRow:
    model: str
    revision: str | None
    kind: str                       # the repo's kind as hfmem reads it: "transformers", "gguf", "diffusers-pipeline",
    #                                 "sentence-transformers", "timm"
    fits: bool
    needed_bytes: int               # per GPU: device total (nvidia-smi's view) at the row's settings
    capacity_bytes: int             # per GPU: what the engine may use of the GPU the fit is judged on
    margin_bytes: int               # capacity - needed (negative: short by that much), as infer's fit.margin_bytes
    parameters: int                 # the model's parameters as hfmem counts them (tied weights once)
    weights_format: str | None      # serving: the format (GGUF: the quant variant) the row is judged in; train: None
    format_changed: bool            # weights_format is not the checkpoint's own (picked by --weights any)
    method: str | None = None       # train: full, lora or qlora
    max_context: int | None = None  # serve: the largest context per sequence that fits at the batch
    max_batch: int | None = None    # train: the largest micro-batch at the sequence length; serve (vLLM): sequences
    max_seq: int | None = None      # train: the longest sequence at the batch
    downloads: int | None = None
    likes: int | None = None
    pipeline_tag: str | None = None
    license: str | None = None
    gated: bool | None = None
    command: str = ""               # the hfmem infer / hfmem train line that reproduces the row
    launch: str | None = None       # serving: the engine's own command for the row's plan (vllm serve, llama-server)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SearchRow":
        return cls(**d)


@dataclass
class Skipped:
    model: str
    reason: str                     # the one line ``hfmem infer`` / ``hfmem train`` would print for it
    exit_code: int

    def to_dict(self) -> dict:
        return asdict(self)


def gpu_flag(gpu: GPU) -> str:
    """``--gpu``'s value that names ``gpu`` again: a catalog name, the size given, or ``auto`` for a detected one."""
    if getattr(gpu, "memory_basis", None) == "detected":
        return "auto"
    if gpu.anonymous and gpu.memory_marketed:
        return gpu.memory_marketed
    return gpu.name


def infer_command(model: str, s, gpu: GPU, *, weights: str | None) -> str:
    """The ``hfmem infer`` line of a serving row (an ``InferenceSettings``), with every setting the row used."""
    parts = ["hfmem infer", model, f"--engine {s.engine}", f"--context {s.context}", f"--batch {s.batch}"]
    if weights:
        parts.append(f"--weights {weights}")
    if s.kv_dtype:
        parts.append(f"--kv-dtype {s.kv_dtype}")
    if s.tp > 1:
        parts.append(f"--gpus {s.tp}")
    parts.append(f"--gpu {gpu_flag(gpu)}")
    return " ".join(parts)


def llamacpp_command(model: str, s, gpu: GPU, quant: str) -> str:
    """The ``hfmem infer --engine llama.cpp`` line of a GGUF row (a ``LlamaCppSettings``)."""
    parts = ["hfmem infer", model, "--engine llama.cpp", f"--quant {quant}", f"--context {s.context}"]
    if s.parallel > 1:
        parts.append(f"--parallel {s.parallel}")
    if s.type_k != "f16" or s.type_v != "f16":
        parts.append(f"-ctk {s.type_k} -ctv {s.type_v}")
    if s.gpus > 1:
        parts.append(f"--gpus {s.gpus}")
    parts.append(f"--gpu {gpu_flag(gpu)}")
    return " ".join(parts)


def allowed_formats(engine: str, checkpoint_format: str) -> list[str]:
    """``--weights any``: the checkpoint's format, then what ``engine`` quantizes it to while loading. A checkpoint
    that is already quantized (GPTQ, AWQ, fp8, bitsandbytes) is served as it is stored."""
    from ..scenarios.weights import FORMAT_ORDER

    if checkpoint_format not in ("fp32", "bf16", "fp16"):
        return [checkpoint_format]
    extra = ON_LOAD_FORMATS.get(engine, ())
    return [f for f in FORMAT_ORDER if f == checkpoint_format or f in extra]


def first_fitting_format(weight_formats: list[dict], allowed: list[str]) -> str | None:
    """The least compressed of ``allowed`` that fits, from ``FitResult.weight_formats`` (widest first)."""
    for row in weight_formats:
        if row["format"] in allowed and row.get("fits"):
            return row["format"]
    return None


def sort_key(sort: str):
    """The ranking of rows: most first for downloads, likes, parameters and free memory; ties by model id."""
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}")

    def key(r: SearchRow):
        value = {"downloads": r.downloads, "likes": r.likes, "params": r.parameters, "free": r.margin_bytes}[sort]
        return (value is None, -(value or 0), r.model.lower())
    return key


def rank(rows: list[SearchRow], sort: str) -> list[SearchRow]:
    """The rows that fit, ranked most first; equal values by model id."""
    return sorted((r for r in rows if r.fits), key=sort_key(sort))


def train_row_command(config: dict, s, gpu: GPU) -> str:
    """The ``hfmem train`` line of a training row: ``flags.train_command`` with ``--gpu`` as ``gpu_flag`` names it."""
    from .flags import train_command

    line = train_command(config, s, gpu)
    head, sep, _ = line.rpartition(" --gpu ")
    return f"{head}{sep}{gpu_flag(gpu)}" if sep else line
