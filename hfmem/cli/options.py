"""Option aliases shared by every command, defined once; their choices come from ``hfmem.vocab``.

The choice types built from ``hfmem.vocab`` (``Attn``, ``DType``, ...) are made on first use (PEP 562
``__getattr__``): ``hfmem [calc]`` uses none of them and does not import the vocabulary.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer


def _choices(name: str, values, doc: str = "") -> type[Enum]:
    """A str Enum whose values are ``values`` (member names: the value with - as _), for typer choices."""
    cls = Enum(name, [(str(v).replace("-", "_"), str(v)) for v in values], type=str)
    cls.__doc__ = doc
    return cls


class Format(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


def _vocab_choices(name: str) -> type[Enum]:
    from .. import vocab

    short = sorted(vocab.SHORT_DTYPES.values())
    values, doc = {
        "Attn": (vocab.ATTNS, "Attention implementation (transformers' attn_implementation; flash = "
                              "flash_attention_2)."),
        "DType": (short, "A 16/32-bit dtype by its short name."),
        "KVDType": (["auto", *short, vocab.FP8], "KV cache dtype (auto: the compute dtype)."),
        "Engine": ((*vocab.ENGINES, *vocab.GGUF_ENGINES), "Inference engine."),
        "Method": (vocab.METHODS, "Fine-tuning method."),
        "Optimizer": (vocab.OPTIMIZERS, "Optimizer."),
        "Fsdp": (vocab.TRAIN_FSDP_STRATEGIES, "torch FSDP sharding strategy."),
        "OptimizerImpl": (vocab.ADAMW_IMPLS, "torch AdamW's kernel: foreach (torch's CUDA default), fused (HF "
                                             "Trainer's default), forloop."),
    }[name]
    return _choices(name, values, doc)


_VOCAB_CHOICES = ("Attn", "DType", "KVDType", "Engine", "Method", "Optimizer", "Fsdp", "OptimizerImpl")


def __getattr__(name: str):
    if name in _VOCAB_CHOICES:
        cls = _vocab_choices(name)
        cls.__module__ = __name__
        globals()[name] = cls  # made once: every command sees the same class
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The Python API's setting names (TrainSettings / InferenceSettings fields, ``SettingsError.setting``) and the
# flag each one is on the command line: the CLI boundary (``errors.cli_message``) shows the flag.
SETTING_FLAGS: dict[str, str] = {
    # llama.cpp (LlamaCppSettings)
    "type_k": "--cache-type-k", "type_v": "--cache-type-v", "flash_attn": "--flash-attn",
    "n_gpu_layers": "--n-gpu-layers", "tensor_split": "--tensor-split", "override_tensors": "--override-tensor",
    "parallel": "--parallel", "n_ubatch": "--ubatch-size", "n_batch": "--batch-size",
    "cuda_context_bytes": "--cuda-context",
    "engine": "--engine", "context": "--context", "batch": "--batch", "new_tokens": "--new-tokens",
    "weights_format": "--weights", "compute_dtype": "--dtype", "kv_dtype": "--kv-dtype", "attn": "--attn",
    "block_size": "--block-size", "gpu_memory_utilization": "--gpu-memory-utilization",
    "max_num_batched_tokens": "--max-num-batched-tokens", "max_num_seqs": "--max-num-seqs", "logits": "--logits",
    "method": "--method", "precision": "--precision", "optimizer": "--optimizer", "adamw_impl": "--optimizer-impl",
    "seq": "--seq", "grad_accum": "--grad-accum", "grad_ckpt": "--grad-ckpt",
    "grads_set_to_none": "--no-zero-grad-set-to-none", "lora_rank": "--lora-rank",
    "lora_targets": "--lora-targets", "dora": "--dora", "qlora_format": "--qlora-format", "zero": "--zero",
    "offload_optimizer": "--offload-optimizer", "offload_param": "--offload-param", "fsdp": "--fsdp",
    "fsdp_offload": "--fsdp-offload", "zero_reduce_bucket": "--zero-reduce-bucket",
    "zero_allgather_bucket": "--zero-allgather-bucket", "zero_prefetch_bucket": "--zero-prefetch-bucket",
    "zero_max_live_params": "--zero-max-live-params", "zero_persistence_threshold": "--zero-persistence-threshold",
    "gpus": "--gpus", "pp": "--pp", "gpus_per_node": "--gpus-per-node",
    "full_logits_metrics": "--full-logits-metrics", "optimizer_in_backward": "--optimizer-in-backward",
    "group_size": "--group-size", "rollout": "--rollout", "cuda_context_bytes": "--cuda-context",
    "nccl_bytes": "--nccl", "cuda_graphs_bytes": "--cuda-graphs", "allocator_fragmentation": "--fragmentation",
    "prepare_kbit": "--prepare-kbit", "bnb_compute_dtype": "--bnb-compute-dtype",
    "bnb_quant_storage": "--bnb-quant-storage", "adapter_dtype": "--adapter-dtype", "lora_dropout": "--lora-dropout",
    "reentrant": "--reentrant", "loss_path": "--loss-path",
}


def overheads_options(cuda_context: str | None, nccl: str | None, fragmentation: float | None,
                      cuda_graphs: str | None = None):
    """``scenarios.overheads.Overheads`` from the shared --cuda-context / --nccl / --fragmentation
    (/ --cuda-graphs) flags; each one not given keeps its sourced default."""
    from ..scenarios.overheads import Overheads

    import math

    from ..errors import UsageError

    if fragmentation is not None and not (math.isfinite(fragmentation) and 0 <= fragmentation < 10):
        raise UsageError(f"--fragmentation {fragmentation} is out of range: a fraction from 0 to 10 (e.g. 0.10, the "
                         "default)", hint="it is the allocator reserve as a fraction of the memory that churns")
    d = Overheads()
    return Overheads(
        cuda_context_bytes=parse_size_option("--cuda-context", cuda_context, d.cuda_context_bytes),
        nccl_bytes=parse_size_option("--nccl", nccl, d.nccl_bytes),
        cuda_graphs_bytes=parse_size_option("--cuda-graphs", cuda_graphs, d.cuda_graphs_bytes),
        allocator_fragmentation=d.allocator_fragmentation if fragmentation is None else fragmentation)


CudaContextOpt = Annotated[Optional[str], typer.Option(
    "--cuda-context", help="CUDA context per process, e.g. 600MiB (default 512MiB).")]
NcclOpt = Annotated[Optional[str], typer.Option(
    "--nccl", help="NCCL memory per process when --gpus > 1 (default 768MiB).")]
CudaGraphsOpt = Annotated[Optional[str], typer.Option(
    "--cuda-graphs", help="vLLM CUDA-graph pool (default 512MiB).")]
FragmentationOpt = Annotated[Optional[float], typer.Option(
    "--fragmentation", help="Allocator reserve as a fraction of the memory that churns: activations and KV cache "
                            "(infer), activations, gradients and step temporaries (train) (default 0.10).")]


class Compat(str, Enum):
    exact = "exact"
    accelerate = "accelerate"


class AdamRule(str, Enum):
    states = "states"
    current = "current"
    legacy = "legacy"


def _complete_models(incomplete: str) -> list[str]:
    from .complete import model_ids

    return model_ids(incomplete)


def _complete_gpus(incomplete: str) -> list[str]:
    from .complete import gpu_names

    return gpu_names(incomplete)


ModelsArg = Annotated[list[str], typer.Argument(
    help="Hub repo ids (ORG/NAME) or local model folders; several are shown side by side.",
    show_default=False, metavar="MODEL", autocompletion=_complete_models)]
RevisionOpt = Annotated[Optional[str], typer.Option(
    "--revision", "-r", help="Branch, tag or commit sha on the Hub (default: main).")]
TokenOpt = Annotated[Optional[str], typer.Option(
    "--token", help="Hugging Face token (default: HF_TOKEN or the stored login).", envvar=None)]
OfflineOpt = Annotated[bool, typer.Option(
    "--offline", help="Do not contact the Hub: use hfmem's result cache, the Hugging Face cache or the "
                      "shipped snapshot (also HF_HUB_OFFLINE=1).")]
VerboseOpt = Annotated[bool, typer.Option(
    "--verbose", help="Show huggingface_hub's and hfmem's retry messages while talking to the Hub.")]
TrustRemoteCodeOpt = Annotated[bool, typer.Option(
    "--trust-remote-code", help="Run the repository's own modeling code (only for repositories you trust).")]
HeadersOnlyOpt = Annotated[bool, typer.Option(
    "--headers-only", help="Count from the safetensors headers alone: no torch, no model code (buffers the code "
                           "creates are then unknown).")]
MetaModelOpt = Annotated[bool, typer.Option(
    "--meta-model", help="Build the model on the meta device (imports torch) even where the safetensors headers "
                         "and transformers' module tree answer exactly.")]
_QUIET_HELP = "No progress indicator on stderr (it is shown only on a terminal, for waits over a second)."
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help=_QUIET_HELP)]
# infer's -q is already --quant (the GGUF variant): there, --quiet alone
QuietLongOpt = Annotated[bool, typer.Option("--quiet", help=_QUIET_HELP)]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
NoCacheOpt = Annotated[bool, typer.Option(
    "--no-cache", help="Ignore hfmem's result cache and analyse again (the new result is stored).")]
CompatOpt = Annotated[Compat, typer.Option(
    "--compat", help="exact: hfmem's exact inventory. accelerate: reproduce `accelerate estimate-memory`.")]
AdamRuleOpt = Annotated[Optional[AdamRule], typer.Option(
    "--adam-rule", help="Training column: states (weights+grads+2 moments, default in exact mode), current "
                        "(accelerate >= 0.29, default with --compat accelerate) or legacy (4x the row, "
                        "accelerate < 0.29, the calculator's old table).")]


ImageSizeOpt = Annotated[Optional[int], typer.Option(
    "--image-size", help="Vision inputs: image side in pixels (default: the model's image_size, else 224).")]
AudioSecondsOpt = Annotated[Optional[float], typer.Option(
    "--audio-seconds", help="Audio inputs: seconds per sample (default 10; Whisper: 30 s windows).")]
ImagesOpt = Annotated[int, typer.Option(
    "--images", help="Vision-language models: images per sequence; their tokens join the context (infer) or "
                     "lengthen each sequence (train), and the vision tower's forward is simulated (frozen in "
                     "train).")]
TargetSeqOpt = Annotated[Optional[int], typer.Option(
    "--target-seq", help="Encoder-decoders: label tokens per sample (default: --seq, within the decoder's "
                         "positions).")]
GpuOpt = Annotated[Optional[str], typer.Option(
    "--gpu", autocompletion=_complete_gpus,
    help="A catalog GPU (H100-80GB, RTX-4090, ...; see `hfmem gpus`), a size (24GiB, 80GB), or auto "
                  "(this machine's, by free memory; see `hfmem gpus --detect`): adds fits, max context, max "
                  "batch, fewest GPUs.")]
GpusOpt = Annotated[int, typer.Option("--gpus", help="Number of GPUs (tensor-parallel degree).")]


def parse_gpu_option(spec: str | None, count: int, devices: list | None = None):
    """``--gpu SPEC --gpus COUNT`` as one GPU to judge each device on (``plan.gpus.parse_gpus``: with ``auto``,
    this machine's COUNT GPUs with the most free memory, judged on the smallest); what it chose goes to stderr.
    ``devices``, when given, receives each chosen GPU (llama.cpp judges mixed devices one by one)."""
    if not spec:
        return None
    from ..plan.gpus import parse_gpus
    from .output import hint

    choice = parse_gpus(spec, max(1, int(count)))
    for line in choice.notes:
        hint(f"note: {line}")
    if devices is not None:
        devices.extend(choice.devices)
    return choice.gpu


def parse_size_option(flag: str, value: str | None, default: int) -> int:
    """A byte-size option (``--cuda-context 600MiB``), or ``default`` when not given."""
    from ..errors import UsageError
    from ..units import parse_size

    if value is None:
        return default
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise UsageError(f"{flag} {value!r}: {exc}") from None
    if size is None:
        raise UsageError(f"{flag} {value!r} is not a size", hint="e.g. 600MiB or 1GiB")
    return size


def source_options(revision, token, offline, trust_remote_code, no_cache, headers_only=False, verbose=False,
                   meta_model=False, quiet=False):
    """The api.Options every command builds from the shared source flags; its ``progress`` is the shared
    indicator (``hfmem.cli.progress``: on a terminal, not with ``--quiet``)."""
    import sys

    from ..api import Options
    from .progress import indicator

    if verbose:  # hfmem's own retry messages on stderr (huggingface_hub's are let through by Options.verbose)
        import logging

        log = logging.getLogger("hfmem.hub")
        for h in [h for h in log.handlers if getattr(h, "hfmem_cli", False)]:
            log.removeHandler(h)
        handler = logging.StreamHandler(sys.stderr)
        handler.hfmem_cli = True
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    return Options(revision=revision, token=token, offline=offline, trust_remote_code=trust_remote_code,
                   use_cache=not no_cache, headers_only=headers_only, meta_model=meta_model, verbose=verbose,
                   progress=indicator(quiet))
