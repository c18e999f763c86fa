"""llama.cpp load logs of *identified* published GGUF files, with everything needed to re-estimate them.

Unlike most of ``hfmem.reference.llamacpp.LOAD_LOGS`` (fragments whose model is unknown), each entry here names
(or pins down by arithmetic on its own printed numbers) the published file it loaded, so the test
(tests/test_llamacpp_published.py) can rebuild that file's tensor list from the model's real config.json
(tests/gguf_published.py, llama-quantize's rules), write it as a header-only GGUF, read it with hfmem's reader and
compare ``estimate_llamacpp`` with every buffer line printed.

How a log's settings become hfmem's: hfmem's ``context`` is per sequence and ``parallel`` is ``n_seq_max``
(llama.cpp's ``-c`` = context · parallel). We pass the *printed* ``n_ctx`` (already padded by that build) divided
by the printed ``n_seq_max`` (1 where not printed). Every n_ctx used here is a multiple of 256 per sequence, so
hfmem's late-2025 padding (GGML_PAD(n_ctx, 256)) leaves it unchanged and the era's own padding rule (32 or 256,
depending on flash attention, before late 2025) does not matter. ``n_gpu_layers`` is N of the printed
"offloaded N/M layers".

Era notes (what changed in llama.cpp and which comparisons are therefore skipped):

* Before PR #6122 (March 2024, https://github.com/ggml-org/llama.cpp/pull/6122) llama.cpp printed no
  ``output buffer`` (the logits lived in a CPU vector of n_vocab · n_batch floats) and kept the graph inputs
  (token embeddings, KQ mask) in a separate ``CUDA_Host input buffer``; there was no ``n_ubatch`` (the graph was
  sized for ``n_batch``, 512 by default in ``llama_context_default_params`` then).
* ``KV self size`` was the print until mid-2025 (``llama_kv_cache: size = ...`` after).

Nothing in hfmem's estimates imports this module.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..sources.snapshot import snapshot_dir
from .llamacpp import LoadLog

# The models' real config.json files, as hfmem's shipped snapshot holds them (<snapshot>/models/<repo>/config.json,
# copied unchanged from the Hub), found where hfmem itself finds its snapshot (a checkout's cache/ or the wheel's).
HUB_REFERENCE = snapshot_dir() / "models"


@dataclass(frozen=True)
class PublishedLoad:
    """One load log of an identified published file, and how to rebuild and re-estimate it."""

    name: str
    log: LoadLog
    config_repo: str            # the HF repo whose config.json the published GGUF was converted from
    arch: str                   # GGUF general.architecture
    ftype: str                  # llama-quantize / converter file type
    settings: dict              # LlamaCppSettings keyword arguments derived from the printed values
    era: str                    # which llama.cpp era the log is from, and what that changes
    identification: str         # how the file is known (printed name, or the arithmetic that pins it)
    skip: dict[str, str] = field(default_factory=dict)  # buffer kind -> why it is not compared


LLAMA2_7B_Q4_K_M = PublishedLoad(
    name="Llama-2-7B Q4_K_M (TheBloke), 1 GPU, n_ctx 2048",
    log=LoadLog(
        source_url="https://github.com/utilityai/llama-cpp-rs/blob/main/README.md",
        source_note="README 'CUDA Example Output' (llama-cpp-rs simple example, early 2024)",
        date="2024-01", build=None, engine="llama.cpp (llama-cpp-rs bindings)",
        model_repo="TheBloke/Llama-2-7B-GGUF", model_file="llama-2-7b.Q4_K_M.gguf", file_type="Q4_K - Medium",
        model_inferred=None, tensor_types=(), file_size="3.80 GiB (4.84 BPW)",
        hparams={"n_layer": 32}, n_ctx=2048, n_batch=None, n_ubatch=None, offloaded=(33, 33),
        gpus=("NVIDIA GeForce RTX 3090",), type_k="f16", type_v="f16",
        model_buffers_mib=(("CUDA0", 3820.94), ("CPU", 70.31)),
        kv_buffers_mib=(("CUDA0", 1024.00),), kv_total_mib=1024.00, k_mib=512.00, v_mib=512.00,
        output_buffer_mib=(),
        compute_buffers_mib=(("CUDA0", 164.01), ("CUDA_Host", 8.00)),
        missing=("n_batch (not printed; llama_context_default_params had 512)", "output buffer (pre-#6122)"),
        log_lines="""\
llm_load_tensors: offloaded 33/33 layers to GPU
llm_load_tensors:      CUDA0 buffer size =  3820.94 MiB
llm_load_tensors:        CPU buffer size =    70.31 MiB
Loaded "/home/marcus/.cache/huggingface/hub/models--TheBloke--Llama-2-7B-GGUF/snapshots/b4e04e128f421c93a5f1e34ac4d7ca9b0af47b80/llama-2-7b.Q4_K_M.gguf"
llama_new_context_with_model: n_ctx      = 2048
llama_kv_cache_init:      CUDA0 KV buffer size =  1024.00 MiB
llama_new_context_with_model: KV self size  = 1024.00 MiB, K (f16):  512.00 MiB, V (f16):  512.00 MiB
llama_new_context_with_model:  CUDA_Host input buffer size   =    13.02 MiB
llama_new_context_with_model:      CUDA0 compute buffer size =   164.01 MiB
llama_new_context_with_model:  CUDA_Host compute buffer size =     8.00 MiB
llama_new_context_with_model: graph splits (measure): 3
""",
    ),
    config_repo="meta-llama/Llama-2-7b-hf", arch="llama", ftype="Q4_K_M",
    settings=dict(context=2048, parallel=1, n_batch=512, n_ubatch=512, n_gpu_layers=33, flash_attn="off"),
    era="early 2024 (before #6122 and n_ubatch): no output buffer line; graph inputs in a separate input buffer",
    identification="file name printed (TheBloke/Llama-2-7B-GGUF llama-2-7b.Q4_K_M.gguf)",
    skip={"output": "pre-#6122 build: no output buffer is printed (logits were a CPU vector of n_vocab * n_batch)"},
)

MISTRAL_7B_Q8_0 = PublishedLoad(
    name="Mistral-7B-v0.1 Q8_0, 1 GPU, n_ctx 8192",
    log=LoadLog(
        source_url="https://github.com/ggml-org/llama.cpp/issues/8096",
        source_note="issue 'Bug: Crashes at the end of startup during first prompt processing', comment (turn 15) "
                    "by takosalad",
        date="2024-06", build=None, engine="llama.cpp",
        model_repo=None, model_file=None, file_type=None,
        model_inferred=("Mistral-7B-v0.1 Q8_0: KV 1024 MiB = 32 layers x 8192 x 1024 (8 KV heads x 128) x 2 B x 2; "
                        "output 0.12 MiB = 32000 x 4 B (vocab 32000: Mistral v0.1, not v0.3's 32768); "
                        "freq_base 10000 (v0.1); CPU 132.81 MiB = token_embd 4096 x 32000 in Q8_0 "
                        "(34 B per 32 weights: 139,264,000 B); CUDA0 + CPU = 7.17 GiB, Mistral-7B Q8_0's size"),
        tensor_types=(), file_size=None, hparams={},
        n_ctx=8192, n_batch=2048, n_ubatch=512, flash_attn="0", type_k="f16", type_v="f16", offloaded=None,
        model_buffers_mib=(("CPU", 132.81), ("CUDA0", 7205.83)),
        kv_buffers_mib=(("CUDA0", 1024.00),), kv_total_mib=1024.00, k_mib=512.00, v_mib=512.00,
        output_buffer_mib=(("CUDA_Host", 0.12),),
        compute_buffers_mib=(("CUDA0", 560.00), ("CUDA_Host", 24.01)),
        graph_nodes=1030, graph_splits=2,
        missing=("model name (inferred)", "offloaded N/M line (not in the excerpt; only token_embd on the CPU "
                 "means every layer is offloaded: 33/33)"),
        log_lines="""\
llm_load_tensors:        CPU buffer size =   132.81 MiB
llm_load_tensors:      CUDA0 buffer size =  7205.83 MiB
llama_new_context_with_model: n_ctx      = 8192
llama_new_context_with_model: n_batch    = 2048
llama_new_context_with_model: n_ubatch   = 512
llama_new_context_with_model: flash_attn = 0
llama_new_context_with_model: freq_base  = 10000.0
llama_new_context_with_model: freq_scale = 1
llama_kv_cache_init:      CUDA0 KV buffer size =  1024.00 MiB
llama_new_context_with_model: KV self size  = 1024.00 MiB, K (f16):  512.00 MiB, V (f16):  512.00 MiB
llama_new_context_with_model:  CUDA_Host  output buffer size =     0.12 MiB
llama_new_context_with_model:      CUDA0 compute buffer size =   560.00 MiB
llama_new_context_with_model:  CUDA_Host compute buffer size =    24.01 MiB
llama_new_context_with_model: graph nodes  = 1030
llama_new_context_with_model: graph splits = 2
""",
    ),
    config_repo="mistralai/Mistral-7B-v0.1", arch="llama", ftype="Q8_0",
    settings=dict(context=8192, parallel=1, n_batch=2048, n_ubatch=512, n_gpu_layers=33, flash_attn="off"),
    era="mid 2024 (after #6122, n_ubatch printed, flash_attn printed; KV self size print)",
    identification="inferred from the printed numbers (see model_inferred)",
)

QWEN25_14B_Q4_K_M = PublishedLoad(
    name="Qwen2.5-14B Q4_K_M, 1 GPU, n_ctx 4096, 2 sequences",
    log=LoadLog(
        source_url="https://github.com/ggml-org/llama.cpp/issues/12196",
        source_note="issue 'Eval bug: Crash on lazy grammar', description by leon-herbrik",
        date="2025-03", build=None, engine="llama.cpp",
        model_repo=None, model_file=None, file_type="Q4_K (token_embd)",
        model_inferred=("Qwen2.5-14B Q4_K_M: 48 layers, n_embd_k_gqa 1024 (8 KV heads x 128), freq_base 1e6, "
                        "n_ctx_train 131072; CPU_Mapped 417.66 MiB = token_embd 5120 x 152064 in Q4_K "
                        "(144 B per 256 weights: 437,944,320 B)"),
        tensor_types=(), file_size=None, hparams={"n_layer": 48},
        n_ctx=4096, n_batch=2048, n_ubatch=512, n_seq_max=2, flash_attn="0", type_k="f16", type_v="f16",
        offloaded=(49, 49),
        model_buffers_mib=(("CUDA0", 8148.38), ("CPU_Mapped", 417.66)),
        missing=("KV, output and compute buffer lines (not in the stored excerpt of the thread)",),
        log_lines="""\
load_tensors: tensor 'token_embd.weight' (q4_K) (and 0 others) cannot be used with preferred buffer type CPU_AARCH64, using CPU instead
load_tensors: offloading 48 repeating layers to GPU
load_tensors: offloading output layer to GPU
load_tensors: offloaded 49/49 layers to GPU
load_tensors:        CUDA0 model buffer size =  8148.38 MiB
load_tensors:   CPU_Mapped model buffer size =   417.66 MiB
llama_init_from_model: n_seq_max     = 2
llama_init_from_model: n_ctx         = 4096
llama_init_from_model: n_ctx_per_seq = 2048
llama_init_from_model: n_batch       = 2048
llama_init_from_model: n_ubatch      = 512
llama_init_from_model: flash_attn    = 0
llama_init_from_model: freq_base     = 1000000.0
llama_kv_cache_init: kv_size = 4096, offload = 1, type_k = 'f16', type_v = 'f16', n_layer = 48, can_shift = 1
""",
    ),
    config_repo="Qwen/Qwen2.5-14B", arch="qwen2", ftype="Q4_K_M",
    # 2 sequences sharing that build's one 4096-cell cache ("kv_size = 4096"): hfmem's --kv-unified, as for the
    # other logs of builds before the per-sequence streams
    settings=dict(context=2048, parallel=2, n_batch=2048, n_ubatch=512, n_gpu_layers=49, flash_attn="off",
                  kv_unified=True),
    era="early 2025 (llama_init_from_model, CPU_Mapped / CPU_AARCH64 buffer types; one unified KV of kv_size)",
    identification="inferred from the printed numbers (see model_inferred)",
    skip={"kv": "not in the stored excerpt", "output": "not in the stored excerpt",
          "compute": "not in the stored excerpt"},
)

QWEN25_3B = PublishedLoad(
    name="Qwen2.5-3B (LLamaSharp), 1 GPU, KV 4096 cells",
    log=LoadLog(
        source_url="https://github.com/SciSharp/LLamaSharp/issues/1099",
        source_note="issue 'StatelessExecutor and/or grammar perf?', comment (turn 5) by phil-scott-78 "
                    "(the LLamaSharp log, before the llama-cli log of build 4701)",
        date="2025-02", build=None, engine="llama.cpp (LLamaSharp bindings)",
        model_repo=None, model_file=None, file_type=None,
        model_inferred=("Qwen2.5-3B: 36 layers, n_embd_k_gqa 256 (2 KV heads x 128), Qwen2.5 FIM tokens, 434 "
                        "tensors (36 x 12 + token_embd + output_norm: tied embeddings); KV 144 MiB = 36 x 4096 "
                        "cells x 256 x 2 B x 2, so n_ctx 4096; output 0.58 MiB = 151936 x 4 B"),
        tensor_types=(), file_size=None, hparams={"n_layer": 36},
        n_ctx=None, type_k="f16", type_v="f16",
        kv_buffers_mib=(("CUDA0", 144.00),), kv_total_mib=144.00, k_mib=72.00, v_mib=72.00,
        output_buffer_mib=(("CUDA_Host", 0.58),),
        compute_buffers_mib=(("CUDA0", 300.75), ("CUDA_Host", 12.01)),
        graph_nodes=1266, graph_splits=2,
        missing=("model buffer lines and file type (not in the stored excerpt)",
                 "n_ctx / n_batch / n_ubatch / offloaded lines (not in the excerpt: n_ctx 4096 from the KV size, "
                 "n_ubatch 512 = LLamaSharp's and llama.cpp's default, all layers offloaded: graph splits = 2)"),
        log_lines="""\
[llama Debug]: llama_kv_cache_init: layer 35: n_embd_k_gqa = 256, n_embd_v_gqa = 256
[llama Info]: llama_kv_cache_init:      CUDA0 KV buffer size =   144.00 MiB
[llama Info]: llama_init_from_model: KV self size  =  144.00 MiB, K (f16):   72.00 MiB, V (f16):   72.00 MiB
[llama Info]: llama_init_from_model:  CUDA_Host  output buffer size =     0.58 MiB
[llama Info]: llama_init_from_model:      CUDA0 compute buffer size =   300.75 MiB
[llama Info]: llama_init_from_model:  CUDA_Host compute buffer size =    12.01 MiB
[llama Info]: llama_init_from_model: graph nodes  = 1266
[llama Info]: llama_init_from_model: graph splits = 2
""",
    ),
    # the quantization is not printed; Q4_K_M is assumed, which only the (uncompared) model buffers depend on
    config_repo="Qwen/Qwen2.5-3B", arch="qwen2", ftype="Q4_K_M",
    settings=dict(context=4096, parallel=1, n_batch=512, n_ubatch=512, n_gpu_layers=37, flash_attn="off"),
    era="early 2025 (llama_init_from_model, KV self size print), flash attention off (LLamaSharp default)",
    identification="inferred from the printed numbers (see model_inferred)",
    skip={"model": "model buffer lines not in the stored excerpt (and the quantization is unknown)"},
)

LLAMA31_8B_INSTRUCT_Q4_K_M_OLLAMA = PublishedLoad(
    name="Llama-3.1-8B-Instruct Q4_K_M (Ollama 0.5.4), 1 GPU, n_ctx 8192, 4 sequences",
    log=LoadLog(
        source_url="https://github.com/MagicWand18/Securetag-AI-Agent/blob/bbee6a4e62d42012a1fb3fe2d4fc8686811c1b6f/"
                   "runpod-deploy/logcompleto.md",
        source_note="a RunPod serverless worker's full server log ('Log del servidor por ambos requests'), Ollama "
                    "0.5.4 on an RTX 4090, with a LoRA adapter loaded after the context",
        date="2025-12", build="Ollama 0.5.4 (its vendored llama.cpp, llama_new_context_with_model era)",
        engine="Ollama (llama.cpp runner)",
        model_repo=None, model_file=None, file_type="Q4_K - Medium",
        model_inferred=None,
        tensor_types=(("f32", 66), ("q4_K", 193), ("q6_K", 33)), file_size="4.58 GiB (4.89 BPW)",
        hparams={"n_layer": 32, "n_embd": 4096, "n_head": 32, "n_head_kv": 8, "n_ff": 14336, "n_vocab": 128256},
        n_ctx=8192, n_batch=2048, n_ubatch=512, n_seq_max=4, flash_attn="0", type_k="f16", type_v="f16",
        offloaded=(33, 33), gpus=("NVIDIA GeForce RTX 4090",),
        model_buffers_mib=(("CPU", 281.81), ("CUDA0", 4403.49)),
        kv_buffers_mib=(("CUDA0", 1024.00),), kv_total_mib=1024.00, k_mib=512.00, v_mib=512.00,
        output_buffer_mib=(("CUDA_Host", 2.02),),
        compute_buffers_mib=(("CUDA0", 560.00), ("CUDA_Host", 24.01)),
        graph_nodes=1030, graph_splits=2,
        missing=(),
        log_lines="""\
llama_model_loader: - kv   2:                               general.name str              = Meta Llama 3.1 8B Instruct
llama_model_loader: - kv  17:                          general.file_type u32              = 15
llama_model_loader: - type  f32:   66 tensors
llama_model_loader: - type q4_K:  193 tensors
llama_model_loader: - type q6_K:   33 tensors
llm_load_print_meta: model ftype      = Q4_K - Medium
llm_load_print_meta: model params     = 8.03 B
llm_load_print_meta: model size       = 4.58 GiB (4.89 BPW)
llm_load_print_meta: general.name     = Meta Llama 3.1 8B Instruct
llm_load_tensors: offloading 32 repeating layers to GPU
llm_load_tensors: offloading output layer to GPU
llm_load_tensors: offloaded 33/33 layers to GPU
llm_load_tensors:          CPU model buffer size =   281.81 MiB
llm_load_tensors:        CUDA0 model buffer size =  4403.49 MiB
llama_new_context_with_model: n_seq_max     = 4
llama_new_context_with_model: n_ctx         = 8192
llama_new_context_with_model: n_ctx_per_seq = 2048
llama_new_context_with_model: n_batch       = 2048
llama_new_context_with_model: n_ubatch      = 512
llama_new_context_with_model: flash_attn    = 0
llama_new_context_with_model: freq_base     = 500000.0
llama_new_context_with_model: freq_scale    = 1
llama_kv_cache_init:      CUDA0 KV buffer size =  1024.00 MiB
llama_new_context_with_model: KV self size  = 1024.00 MiB, K (f16):  512.00 MiB, V (f16):  512.00 MiB
llama_new_context_with_model:  CUDA_Host  output buffer size =     2.02 MiB
llama_new_context_with_model:      CUDA0 compute buffer size =   560.00 MiB
llama_new_context_with_model:  CUDA_Host compute buffer size =    24.01 MiB
llama_new_context_with_model: graph nodes  = 1030
llama_new_context_with_model: graph splits = 2
""",
    ),
    config_repo="meta-llama/Llama-3.1-8B-Instruct", arch="llama", ftype="Q4_K_M",
    # This build kept ONE KV cache of n_ctx = 8192 cells that all 4 sequences shared (kv_size = n_ctx; the
    # per-sequence streams came in late 2025), and its attention ran over all 8192 cells: that is hfmem's
    # kv_unified=True with 4 x 2048. (Without it hfmem's KV bytes are the same but its compute buffer is sized
    # for 2048-cell streams: 270.50 MiB against the printed 560.00.)
    settings=dict(context=2048, parallel=4, n_batch=2048, n_ubatch=512, n_gpu_layers=33, flash_attn="off",
                  kv_unified=True, embeddings=True),
    era="Ollama 0.5.4 (llama_new_context_with_model, one unified KV cache of kv_size = n_ctx, no CPU_Mapped "
        "name); Ollama's runner creates its context with embeddings = true (llama/llama.go NewContextParams), "
        "so the output buffer also holds n_embd floats per output",
    identification="general.name 'Meta Llama 3.1 8B Instruct', file_type 15 (Q4_K_M) and the type counts are "
                   "printed; the reconstruction reproduces f32 66 / q4_K 193 / q6_K 33 (rope_freqs included)",
)

LLAMA32_3B_INSTRUCT_Q4_K_M_OLLAMA_CPU = PublishedLoad(
    name="Llama-3.2-3B-Instruct Q4_K_M (Ollama llama3.2), CPU only, n_ctx 8192, 4 sequences",
    log=LoadLog(
        source_url="https://github.com/ollama/ollama/issues/8164",
        source_note="issue 'llama3.2 3B \"will fit in available VRAM\" of a Nvidia 4060 TI but then runs on CPU. "
                    "llm server error', description (turn 0) by felixniemeyer: the runner fell back to the CPU",
        date="2024-12", build="Ollama (December 2024; llama_new_context_with_model era)",
        engine="Ollama (llama.cpp runner)",
        model_repo=None, model_file="Ollama blob sha256-dde5aa3fc5ffc17176b5e8bdc82f587b24b2678c6c66101bf7da77af9f7ccdff",
        file_type=None,
        model_inferred=("Q4_K_M: the blob is Ollama's library llama3.2:latest (3B), and its 'CPU buffer size "
                        "1918.35 MiB' (every tensor on the CPU) equals the Q4_K_M reconstruction's data, "
                        "2,011,539,712 B; KV 896 MiB = 28 layers x 8192 cells x 1024 x 2 B x 2"),
        tensor_types=(), file_size=None,
        hparams={"n_layer": 28, "n_embd": 3072, "n_ff": 8192},
        n_ctx=8192, n_batch=2048, n_ubatch=512, n_seq_max=4, flash_attn="0", type_k="f16", type_v="f16",
        offloaded=None,
        model_buffers_mib=(("CPU", 1918.35),),
        kv_buffers_mib=(("CPU", 896.00),), kv_total_mib=896.00, k_mib=448.00, v_mib=448.00,
        output_buffer_mib=(("CPU", 2.00),),
        compute_buffers_mib=(("CPU", 424.01),),
        graph_nodes=902, graph_splits=1,
        missing=("file type line (not in the stored excerpt; Q4_K_M from the buffer size, see model_inferred)",
                 "n_seq_max (not printed by this build; parallel=4 from Ollama's scheduler line)"),
        log_lines="""\
time=2024-12-18T22:54:22.436+01:00 level=INFO source=sched.go:714 msg="new model will fit in available VRAM in single GPU, loading" model=/home/felix/davdev/ai/ollama/blobs/sha256-dde5aa3fc5ffc17176b5e8bdc82f587b24b2678c6c66101bf7da77af9f7ccdff gpu=GPU-2cdd1749-8b62-3f3e-4af8-08b5e1741b0d parallel=4 available=16658268160 required="3.7 GiB"
llama_model_loader: - kv   2:                               general.name str              = Llama 3.2 3B Instruct
llama_model_loader: - kv   8:                          llama.block_count u32              = 28
llama_model_loader: - kv  10:                     llama.embedding_length u32              = 3072
llama_model_loader: - kv  11:                  llama.feed_forward_length u32              = 8192
llm_load_tensors: ggml ctx size =    0.12 MiB
llm_load_tensors:        CPU buffer size =  1918.35 MiB
llama_new_context_with_model: n_ctx      = 8192
llama_new_context_with_model: n_batch    = 2048
llama_new_context_with_model: n_ubatch   = 512
llama_new_context_with_model: flash_attn = 0
llama_new_context_with_model: freq_base  = 500000.0
llama_new_context_with_model: freq_scale = 1
llama_kv_cache_init:        CPU KV buffer size =   896.00 MiB
llama_new_context_with_model: KV self size  =  896.00 MiB, K (f16):  448.00 MiB, V (f16):  448.00 MiB
llama_new_context_with_model:        CPU  output buffer size =     2.00 MiB
llama_new_context_with_model:        CPU compute buffer size =   424.01 MiB
llama_new_context_with_model: graph nodes  = 902
llama_new_context_with_model: graph splits = 1
""",
    ),
    config_repo="meta-llama/Llama-3.2-3B-Instruct", arch="llama", ftype="Q4_K_M",
    # one unified 8192-cell cache shared by the 4 sequences (see LLAMA31_8B_INSTRUCT_Q4_K_M_OLLAMA); no layer on
    # a GPU (-ngl 0 is what the fallback amounts to)
    settings=dict(context=2048, parallel=4, n_batch=2048, n_ubatch=512, n_gpu_layers=0, flash_attn="off",
                  kv_unified=True, embeddings=True),
    era="Ollama, December 2024 (llama_new_context_with_model, one unified KV cache of kv_size = n_ctx); Ollama's "
        "runner sets embeddings = true, so the output buffer also holds n_embd floats per output",
    identification="general.name 'Llama 3.2 3B Instruct' printed; Q4_K_M pinned by the CPU buffer size "
                   "(see model_inferred)",
)

PUBLISHED_LOADS: tuple[PublishedLoad, ...] = (LLAMA2_7B_Q4_K_M, MISTRAL_7B_Q8_0, QWEN25_14B_Q4_K_M, QWEN25_3B,
                                              LLAMA31_8B_INSTRUCT_Q4_K_M_OLLAMA,
                                              LLAMA32_3B_INSTRUCT_Q4_K_M_OLLAMA_CPU)


def host_device(name: str) -> str:
    """hfmem's device for a printed buffer type: CUDA_Host / CPU / CPU_Mapped are the host ("CPU")."""
    return "CPU" if name in ("CPU", "CPU_Mapped", "CUDA_Host") else name


def printed_buffers(p: PublishedLoad) -> list[tuple[str, str, float]]:
    """(kind, printed buffer type, MiB) for every buffer line of the log that is compared."""
    log = p.log
    out = [("model", d, v) for d, v in log.model_buffers_mib]
    out += [("kv", d, v) for d, v in log.kv_buffers_mib]
    if log.k_mib is not None:
        out += [("k", "total", log.k_mib), ("v", "total", log.v_mib)]
    out += [("output", d, v) for d, v in log.output_buffer_mib]
    out += [("compute", d, v) for d, v in log.compute_buffers_mib]
    return [b for b in out if b[0] not in p.skip]


def write_reconstruction(p: PublishedLoad, path: Path, hub: Path = HUB_REFERENCE) -> Path:
    """Write the published file's header-only reconstruction as a sparse file of the real file's size.

    hfmem's reader checks that every tensor's data lies inside the file, so the file is extended (sparsely,
    nothing is written) to data_offset + the padded data section, as the real file is laid out."""
    import os

    from gguf_published import data_bytes_padded, write_published  # tests/ on sys.path (see rows())

    config = json.loads((hub / p.config_repo / "config.json").read_text())
    tensors = write_published(path, config, p.arch, p.ftype)
    header_bytes = path.stat().st_size
    data_offset = header_bytes + (-header_bytes) % 32  # GGUF data section starts at the 32-byte alignment
    os.truncate(path, data_offset + data_bytes_padded(tensors))
    return path


def estimate(p: PublishedLoad, path: Path):
    from ..metadata.gguf import read_local_header
    from ..model.gguf_model import describe_gguf
    from ..scenarios.llamacpp import LlamaCppSettings, estimate_llamacpp

    header = read_local_header(path)
    model = describe_gguf(header.metadata, header.tensors, path.name)
    return estimate_llamacpp([header], model, LlamaCppSettings(**p.settings))


def estimated_mib(est, kind: str, device: str) -> float:
    """hfmem's number for one printed line, in MiB rounded as llama.cpp prints (bytes / 2**20, 2 decimals)."""
    devices = {d.device: d for d in est.devices}
    if kind in ("k", "v"):
        b = sum(d.k_bytes if kind == "k" else d.v_bytes for d in est.devices)
    else:
        d = devices[host_device(device)]
        b = {"model": d.model_bytes, "kv": d.kv_bytes, "output": d.output_bytes, "compute": d.compute_bytes}[kind]
    return round(b / 2**20, 2)


def rows(tmp_dir: str | Path | None = None) -> list[dict]:
    """Per log: {model, file, settings, source_url, buffers: [(kind, device, printed_mib, hfmem_mib)]}, for
    docs/accuracy.md. Call from the repo root (it imports tests/gguf_published.py)."""
    import tempfile

    tests_dir = str(Path(__file__).resolve().parents[2] / "tests")
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    out = []
    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        for i, p in enumerate(PUBLISHED_LOADS):
            path = write_reconstruction(p, Path(tmp) / f"published-{i}.gguf")
            est = estimate(p, path)
            out.append({
                "model": p.name,
                "file": p.log.model_file or f"{p.config_repo} {p.ftype} (reconstructed; {p.identification})",
                "settings": dict(p.settings),
                "source_url": p.log.source_url,
                "era": p.era,
                "skipped": dict(p.skip),
                "buffers": [(k, d, v, estimated_mib(est, k, d)) for k, d, v in printed_buffers(p)],
            })
    return out
