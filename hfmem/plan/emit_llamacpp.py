"""Launch configurations for a GGUF model served by llama.cpp (``--emit llama.cpp`` / ``--emit ollama``),
consistent with the plan: every value comes from the estimate's resolved settings (``LlamaCppReport.estimate``),
nothing is recomputed here. Strings only.

Flag names are llama.cpp's (tools/server/README.md and common/arg.cpp): ``-hf REPO[:QUANT]`` / ``-hff FILE``,
``-m PATH``, ``-c`` (the context of the whole server: all slots share it), ``-np``, ``-ngl``, ``-ctk``/``-ctv``,
``-fa on|off|auto``, ``-b``/``-ub``, ``--kv-unified``, ``--swa-full``, ``-ts``, ``--cpu-moe``/``--n-cpu-moe``, ``-ot``,
``--no-kv-offload``, ``--no-mmap``, ``--mmproj``/``--no-mmproj``.

Ollama (docs.ollama.com/modelfile and /faq): a Modelfile sets ``num_ctx`` (per request) and ``num_gpu`` (layers
offloaded); the KV cache type, flash attention and the number of parallel requests are server-wide environment
variables of ``ollama serve`` (envconfig/config.go: ``OLLAMA_KV_CACHE_TYPE``, ``OLLAMA_FLASH_ATTENTION``,
``OLLAMA_NUM_PARALLEL``), and the FAQ states that parallel requests multiply the context ("a 2K context with 4
parallel requests will result in an 8K context"), so ``num_ctx`` is hfmem's per-sequence context.
"""

from __future__ import annotations

import shlex
from pathlib import PurePath

# llama.cpp's defaults for -b and -ub (common/common.h: n_batch 2048, n_ubatch 512)
DEFAULT_N_BATCH = 2048
DEFAULT_N_UBATCH = 512
# Ollama's OLLAMA_KV_CACHE_TYPE values (docs.ollama.com/faq, "How can I set the quantization type for the K/V
# cache?"): f16 (default), q8_0, q4_0.
OLLAMA_KV_TYPES = ("f16", "q8_0", "q4_0")


def _hub_id(r) -> str | None:
    repo = r.repo
    if repo.source not in ("hub", "hf-cache"):
        return None
    return repo.repo_id or repo.ref.split(":", 1)[0]


def _local_path(r) -> str:
    """The first part of the variant on disk: the repo's ``ref`` is the file itself or its folder."""
    ref = PurePath(r.repo.ref)
    root = ref.parent if ref.suffix.lower() == ".gguf" else ref
    return str(root / r.variant.files[0])


def _tag_in_name(r) -> bool:
    """Whether the Hub can resolve the variant from ``REPO:LABEL``: the Hub's manifest endpoint (the one
    ``llama-server -hf`` and ``ollama pull hf.co/...`` ask) matches the quant tag against file names, so the
    label must be the quant the file name carries (not a path or a general.file_type name)."""
    from ..sources.gguf import label_from_name

    label = r.variant.label
    return "/" not in label and label_from_name(r.variant.files[0]) == label.upper()


def _context_caveats(r) -> list[str]:
    e = r.estimate
    m, s = e.model, e.settings
    out = []
    if m.n_ctx_train and s.context > m.n_ctx_train:
        out.append(f"the context {s.context:,} per sequence exceeds the model's trained context "
                   f"{m.n_ctx_train:,} ({m.architecture}.context_length); quality past it is not assured")
    return out


def llama_server_command(r) -> tuple[str, list[str]]:
    """A ``llama-server`` command line for the plan of ``r`` (a ``LlamaCppReport``), and its caveats."""
    e = r.estimate
    s = e.settings
    caveats = _context_caveats(r)
    args: list[str] = ["llama-server"]
    hub = _hub_id(r)
    if hub is not None:
        if _tag_in_name(r):
            args += ["-hf", f"{hub}:{r.variant.label}"]
        else:  # -hff overrides the quant tag with a file of the repo (the first part of a split model)
            args += ["-hf", hub, "-hff", r.variant.files[0]]
        if r.repo.revision:
            caveats.append(f"llama-server -hf downloads the repo's main branch; hfmem read revision "
                           f"{r.repo.revision[:12]}")
    else:
        args += ["-m", _local_path(r)]  # llama.cpp loads the other parts of a split model itself
    # llama.cpp's -c is the cells of the whole cache, shared by the -np slots; hfmem's context is per sequence.
    args += ["-c", str(s.n_ctx), "-np", str(s.parallel), "-ngl", str(e.n_gpu_layers)]
    if s.type_k.lower() != "f16":
        args += ["-ctk", s.type_k.lower()]
    if s.type_v.lower() != "f16":
        args += ["-ctv", s.type_v.lower()]
    args += ["-fa", "on" if e.flash_attn else "off"]
    if s.n_batch != DEFAULT_N_BATCH:
        args += ["-b", str(s.n_batch)]
    if s.n_ubatch != DEFAULT_N_UBATCH:
        args += ["-ub", str(s.n_ubatch)]
    if s.kv_unified:
        args.append("--kv-unified")
    if s.swa_full:
        args.append("--swa-full")
    if s.gpus > 1:
        shares = list(s.tensor_split) if s.tensor_split else [1] * s.gpus
        args += ["-ts", ",".join(f"{v:g}" for v in shares)]
        if not s.tensor_split:
            caveats.append("-ts gives equal shares, as the plan assumes; without it llama.cpp splits by each "
                           "GPU's free memory")
    if s.cpu_moe:
        args.append("--cpu-moe")
    elif s.n_cpu_moe:
        args += ["--n-cpu-moe", str(s.n_cpu_moe)]
    for pattern, buffer in s.override_tensors:
        args += ["-ot", f"{pattern}={buffer}"]
    if not s.kv_offload:
        args.append("--no-kv-offload")
    if not s.mmap:
        args.append("--no-mmap")
    if s.embeddings:
        args.append("--embeddings")
    proj = r.projector
    if s.images and proj is not None:
        if hub is None:
            ref = PurePath(r.repo.ref)
            root = ref.parent if ref.suffix.lower() == ".gguf" else ref
            args += ["--mmproj", str(root / proj.files[0])]
        elif not _tag_in_name(r):
            from ..sources import redacted_endpoint

            # the projector at the commit hfmem read, from the endpoint it read it from (HF_ENDPOINT included)
            revision = r.repo.revision or "main"
            args += ["--mmproj-url", f"{redacted_endpoint()}/{hub}/resolve/{revision}/{proj.files[0]}"]
        # with -hf REPO:QUANT llama.cpp downloads the repo's mmproj itself
    elif proj is not None and hub is not None:
        # -hf also loads the repo's projector unless told not to; the plan counts none without images
        args.append("--no-mmproj")
    if s.images and proj is None:
        caveats.append("images asked, but the repo has no mmproj projector: llama-server serves text only")
    return shlex.join(args), caveats


def ollama_modelfile(r) -> tuple[str, list[str]]:
    """An Ollama Modelfile for the plan of ``r``, and the caveats: what a Modelfile cannot say (the server-wide
    environment variables, given as ``NAME=value`` lines to set on ``ollama serve``) and what Ollama cannot
    do at all."""
    e = r.estimate
    s = e.settings
    caveats = _context_caveats(r)
    hub = _hub_id(r)
    split = len(r.variant.files) > 1
    if split:
        stem = PurePath(r.variant.files[0]).name.split("-00001-of-")[0]
        src = f"./{stem}.gguf"
        first = _local_path(r) if hub is None else r.variant.files[0]
        caveats.append(f"Ollama cannot pull a split GGUF (ollama/ollama#5245); merge the parts first: "
                       f"llama-gguf-split --merge {shlex.quote(first)} {shlex.quote(src)}")
    elif hub is not None and _tag_in_name(r):
        src = f"hf.co/{hub}:{r.variant.label}"
    elif hub is not None:
        src = "./" + PurePath(r.variant.files[0]).name
        caveats.append(f"the file name carries no quant tag Ollama can pull by; download {r.variant.files[0]} "
                       f"from {hub} and keep it next to the Modelfile")
    else:
        src = _local_path(r)
    lines = [f"FROM {src}",
             # Ollama multiplies num_ctx by OLLAMA_NUM_PARALLEL (FAQ), so this is the per-sequence context
             f"PARAMETER num_ctx {s.context}",
             f"PARAMETER num_gpu {e.n_gpu_layers}"]
    if s.n_ubatch != DEFAULT_N_UBATCH:
        # Ollama's runner uses num_batch as llama.cpp's n_batch and n_ubatch both
        lines.append(f"PARAMETER num_batch {s.n_ubatch}")
    # server-wide settings: environment variables of `ollama serve`
    caveats.append(f"start `ollama serve` with OLLAMA_NUM_PARALLEL={s.parallel} (a server setting, not the Modelfile's)")
    if e.flash_attn:
        caveats.append("start `ollama serve` with OLLAMA_FLASH_ATTENTION=1 (the plan assumes flash attention)")
    if s.type_k.lower() != "f16" or s.type_v.lower() != "f16":
        if s.type_k.lower() != s.type_v.lower():
            caveats.append(f"Ollama has one KV cache type for K and V; the plan's K {s.type_k} / V {s.type_v} "
                           "cannot be set")
        elif s.type_k.lower() not in OLLAMA_KV_TYPES:
            caveats.append(f"Ollama's KV cache types are {', '.join(OLLAMA_KV_TYPES)}; {s.type_k} cannot be set")
        else:
            caveats.append(f"start `ollama serve` with OLLAMA_KV_CACHE_TYPE={s.type_k.lower()} (the KV cache type is "
                           "server-wide)")
    if s.n_batch != DEFAULT_N_BATCH and s.n_batch != s.n_ubatch:
        caveats.append(f"Ollama has no separate logical batch (-b {s.n_batch})")
    unsaid = []
    if s.gpus > 1 and s.tensor_split:
        unsaid.append("a tensor split (-ts)")
    if s.cpu_moe or s.n_cpu_moe:
        unsaid.append("experts on the CPU (--cpu-moe / --n-cpu-moe)")
    if s.override_tensors:
        unsaid.append("tensor overrides (-ot)")
    if s.swa_full:
        unsaid.append("--swa-full")
    if s.kv_unified:
        unsaid.append("--kv-unified")
    if not s.kv_offload:
        unsaid.append("--no-kv-offload")
    if unsaid:
        caveats.append("Ollama cannot set " + ", ".join(unsaid) + "; its memory differs from this plan")
    if s.gpus > 1:
        caveats.append(f"Ollama places a model that fits one GPU on one GPU; OLLAMA_SCHED_SPREAD=1 spreads it "
                       f"over all {s.gpus}")
    if not s.mmap:
        caveats.append("set use_mmap false in the request options for --no-mmap")
    if s.images and r.projector is not None and src.startswith("."):
        caveats.append(f"add the projector as a second FROM line: FROM ./{PurePath(r.projector.files[0]).name}")
    return "\n".join(lines) + "\n", caveats
