"""llama.cpp: published load logs and the llama-quantize table, as data (for checking ``--engine llama.cpp``).

The load logs are for checking; ``QUANT_TABLE`` is also read by hfmem/plan/llamacpp.py, whose quality order
(the best variant that fits) is derived from its figures.

``LoadLog`` — one published llama.cpp (or direct fork) load log. Fields:

* ``source_url``: the GitHub issue / pull request thread the log was pasted in; ``source_note``: which comment.
* ``date``: date of the comment or log (ISO, as far as known); ``build``: the llama.cpp build printed, if any.
* ``engine``: ``"llama.cpp"`` or the fork that printed it (``"llamafile"`` is llama.cpp code of that time).
* ``model_repo`` / ``model_file`` / ``file_type``: only when printed in the excerpt; ``model_inferred`` says, in
  words, what the numbers imply when the excerpt does not name the model (the inference is arithmetic on the
  printed numbers, written out — treat it as a hypothesis, not a fact).
* ``tensor_types``: ``llama_model_loader: - type X: N tensors`` lines as ``(type, count)``; ``file_size`` the
  ``file size = ...`` text; ``hparams``: the ``print_info`` / ``llm_load_print_meta`` values that were printed.
* run settings as printed: ``n_ctx``, ``n_batch``, ``n_ubatch``, ``n_seq_max``, ``flash_attn``, ``type_k``,
  ``type_v``, ``offloaded`` (the ``offloaded a/b layers`` pair), ``gpus`` (device names as printed).
* buffers, in MiB exactly as printed (llama.cpp prints bytes / 2**20 with two decimals): ``model_buffers_mib``,
  ``kv_buffers_mib`` (per buffer type), ``kv_total_mib`` / ``k_mib`` / ``v_mib`` (the ``KV self size`` / ``size =``
  line), ``output_buffer_mib`` (per buffer type), ``compute_buffers_mib`` (per buffer type), ``graph_nodes``,
  ``graph_splits``; each is a tuple of ``(buffer type name, MiB)`` pairs in print order.
* ``missing``: what the excerpt does not show (the stored excerpts of these threads are partial: only the lines in
  ``log_lines`` were seen, the rest of each thread was not retrievable here).
* ``log_lines``: the relevant lines verbatim, so everything above can be re-checked.

``QUANT_TABLE`` — ``QUANT_OPTIONS`` of llama.cpp's ``tools/quantize/quantize.cpp`` in source order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MiB_pair = tuple[str, float]


@dataclass(frozen=True)
class LoadLog:
    source_url: str
    source_note: str
    date: str | None
    build: str | None
    engine: str
    model_repo: str | None
    model_file: str | None
    file_type: str | None
    model_inferred: str | None
    tensor_types: tuple[tuple[str, int], ...]
    file_size: str | None
    hparams: dict[str, int | str] = field(default_factory=dict)
    n_ctx: int | None = None
    n_batch: int | None = None
    n_ubatch: int | None = None
    n_seq_max: int | None = None
    flash_attn: str | None = None
    type_k: str | None = None
    type_v: str | None = None
    offloaded: tuple[int, int] | None = None
    gpus: tuple[str, ...] = ()
    model_buffers_mib: tuple[MiB_pair, ...] = ()
    kv_buffers_mib: tuple[MiB_pair, ...] = ()
    kv_total_mib: float | None = None
    k_mib: float | None = None
    v_mib: float | None = None
    output_buffer_mib: tuple[MiB_pair, ...] = ()
    compute_buffers_mib: tuple[MiB_pair, ...] = ()
    graph_nodes: int | None = None
    graph_splits: int | None = None
    missing: tuple[str, ...] = ()
    log_lines: str = ""


LOAD_LOGS: tuple[LoadLog, ...] = (
    LoadLog(
        source_url="https://github.com/ggml-org/llama.cpp/pull/6122",
        source_note="PR 'llama : greatly reduce output buffer memory usage', comment (turn 20) by Wuzzooy",
        date="2024-03", build=None, engine="llama.cpp",
        model_repo=None, model_file=None, file_type=None,
        model_inferred=("Command-R 35B class: 40 layers, freq_base 8e6; KV 5120 MiB = 40 x 4096 x 8192 x 2 B x 2 "
                        "(no GQA, n_embd 8192); output 1.95 MiB = 2 x 256000 x 4 B (vocab 256000, 2 outputs)"),
        tensor_types=(), file_size=None, hparams={},
        n_ctx=4096, n_batch=2048, n_ubatch=512, type_k="f16", type_v="f16", offloaded=(41, 41),
        gpus=("NVIDIA GeForce RTX 4070 Ti", "NVIDIA GeForce RTX 3090 Ti"),
        model_buffers_mib=(("CPU", 1640.62), ("CUDA0", 5434.38), ("CUDA1", 13989.53)),
        kv_buffers_mib=(("CUDA0", 1536.00), ("CUDA1", 3584.00)),
        kv_total_mib=5120.00, k_mib=2560.00, v_mib=2560.00,
        output_buffer_mib=(("CUDA_Host", 1.95),),
        compute_buffers_mib=(("CUDA0", 672.01),),
        missing=("model name/file", "tensor types", "hparams", "CUDA1 and CUDA_Host compute buffers (cut off)",
                 "graph nodes/splits", "flash_attn (not printed in that build)"),
        log_lines="""\
  Device 0: NVIDIA GeForce RTX 4070 Ti, compute capability 8.9, VMM: yes
  Device 1: NVIDIA GeForce RTX 3090 Ti, compute capability 8.6, VMM: yes
llm_load_tensors: ggml ctx size =    0.37 MiB
llm_load_tensors: offloading 40 repeating layers to GPU
llm_load_tensors: offloading non-repeating layers to GPU
llm_load_tensors: offloaded 41/41 layers to GPU
llm_load_tensors:        CPU buffer size =  1640.62 MiB
llm_load_tensors:      CUDA0 buffer size =  5434.38 MiB
llm_load_tensors:      CUDA1 buffer size = 13989.53 MiB
llama_new_context_with_model: n_ctx      = 4096
llama_new_context_with_model: n_batch    = 2048
llama_new_context_with_model: n_ubatch   = 512
llama_new_context_with_model: freq_base  = 8000000.0
llama_new_context_with_model: freq_scale = 1
llama_kv_cache_init:      CUDA0 KV buffer size =  1536.00 MiB
llama_kv_cache_init:      CUDA1 KV buffer size =  3584.00 MiB
llama_new_context_with_model: KV self size  = 5120.00 MiB, K (f16): 2560.00 MiB, V (f16): 2560.00 MiB
llama_new_context_with_model:  CUDA_Host  output buffer size =     1.95 MiB
llama_new_context_with_model: pipeline parallelism enabled (n_copies=4)
llama_new_context_with_model:      CUDA0 compute buffer size =   672.01 MiB
""",
    ),
    LoadLog(
        source_url="https://github.com/mozilla-ai/llamafile/pull/552",
        source_note="PR 'Quantize TriLM models using Q2_K_S', description by ikawrakow",
        date="2024-08", build=None, engine="llamafile",
        model_repo=None, model_file=None, file_type=None,
        model_inferred=("TriLM ~3.9B (per the PR title): 30 layers; KV 180 MiB = 30 x 512 x 3072 x 2 B x 2 "
                        "(n_embd_k_gqa 3072); output 0.19 MiB = 50688 x 4 B (vocab 50688); CPU+CUDA0 = 7614.71 MiB "
                        "~ 2 B/param, i.e. an f16 file"),
        tensor_types=(), file_size=None, hparams={},
        n_ctx=512, n_batch=512, n_ubatch=512, flash_attn="0", type_k="f16", type_v="f16", offloaded=(31, 31),
        gpus=("NVIDIA GeForce RTX 4080",),
        model_buffers_mib=(("CPU", 297.00), ("CUDA0", 7317.71)),
        kv_buffers_mib=(("CUDA0", 180.00),), kv_total_mib=180.00, k_mib=90.00, v_mib=90.00,
        output_buffer_mib=(("CUDA_Host", 0.19),),
        compute_buffers_mib=(("CUDA0", 105.00),),
        missing=("model file", "tensor types", "hparams", "CUDA_Host compute buffer (cut off)", "graph nodes/splits"),
        log_lines="""\
  Device 0: NVIDIA GeForce RTX 4080, compute capability 8.9, VMM: yes
llm_load_tensors: ggml ctx size =    0.26 MiB
llm_load_tensors: offloading 30 repeating layers to GPU
llm_load_tensors: offloading non-repeating layers to GPU
llm_load_tensors: offloaded 31/31 layers to GPU
llm_load_tensors:        CPU buffer size =   297.00 MiB
llm_load_tensors:      CUDA0 buffer size =  7317.71 MiB
llama_new_context_with_model: n_ctx      = 512
llama_new_context_with_model: n_batch    = 512
llama_new_context_with_model: n_ubatch   = 512
llama_new_context_with_model: flash_attn = 0
llama_new_context_with_model: freq_base  = 10000.0
llama_new_context_with_model: freq_scale = 1
llama_kv_cache_init:      CUDA0 KV buffer size =   180.00 MiB
llama_new_context_with_model: KV self size  =  180.00 MiB, K (f16):   90.00 MiB, V (f16):   90.00 MiB
llama_new_context_with_model:  CUDA_Host  output buffer size =     0.19 MiB
llama_new_context_with_model:      CUDA0 compute buffer size =   105.00 MiB
""",
    ),
    LoadLog(
        source_url="https://github.com/ggml-org/llama.cpp/pull/12449",
        source_note="PR 'graph : normalize Q, K, V shapes and add comments', comment (turn 2) by steampunque",
        date="2025-03", build=None, engine="llama.cpp",
        model_repo=None, model_file=None, file_type=None,
        model_inferred=("48 layers; K 96 MiB = 48 x 512 x n_embd_k_gqa x 2 B -> n_embd_k_gqa 2048; output 0.98 MiB "
                        "= 256000 x 4 B (vocab 256000); graph splits 98 -> partial offload or CPU-side ops"),
        tensor_types=(), file_size=None, hparams={"n_layer": 48},
        n_ctx=512, n_batch=512, n_ubatch=512, n_seq_max=1, flash_attn="0", type_k="f16", type_v="f16",
        model_buffers_mib=(),
        kv_buffers_mib=(("CUDA0", 192.00),), kv_total_mib=192.00, k_mib=96.00, v_mib=96.00,
        output_buffer_mib=(("CUDA_Host", 0.98),),
        compute_buffers_mib=(("CUDA0", 508.03), ("CUDA_Host", 23.00)),
        graph_nodes=2790, graph_splits=98,
        missing=("model name/file", "tensor types", "model buffers", "offloaded layers", "GPU name"),
        log_lines="""\
llama_context: constructing llama_context
llama_context: n_seq_max     = 1
llama_context: n_ctx         = 512
llama_context: n_ctx_per_seq = 512
llama_context: n_batch       = 512
llama_context: n_ubatch      = 512
llama_context: causal_attn   = 1
llama_context: flash_attn    = 0
llama_context: freq_base     = 10000.0
llama_context: freq_scale    = 1
llama_context:  CUDA_Host  output buffer size =     0.98 MiB
init: kv_size = 512, offload = 1, type_k = 'f16', type_v = 'f16', n_layer = 48, can_shift = 1
init:      CUDA0 KV buffer size =   192.00 MiB
llama_context: KV self size  =  192.00 MiB, K (f16):   96.00 MiB, V (f16):   96.00 MiB
llama_context:      CUDA0 compute buffer size =   508.03 MiB
llama_context:  CUDA_Host compute buffer size =    23.00 MiB
llama_context: graph nodes  = 2790
llama_context: graph splits = 98
""",
    ),
    LoadLog(
        source_url="https://github.com/ggml-org/llama.cpp/issues/4381",
        source_note="issue 'llama : add Mixtral support', comment by ChandanVerma, 2023-12-13",
        date="2023-12-13", build=None, engine="llama.cpp",
        model_repo=None, model_file=None, file_type=None,
        model_inferred=("Mixtral-8x7B (thread topic): KV 64 MiB = 32 x 512 x 1024 x 2 B x 2 (n_embd_k_gqa 1024); "
                        "GPU KV 44 MiB = 22/32 of it (KV of offloaded layers only); 32353 MiB for 22 layers ~ 1470 "
                        "MiB/layer ~ Q8_0 experts"),
        tensor_types=(), file_size=None, hparams={"n_layer": 32},
        n_ctx=512, type_k="f16", type_v="f16", offloaded=(22, 33),
        model_buffers_mib=(("VRAM used", 32353.06),),
        kv_buffers_mib=(("VRAM kv self", 44.00),), kv_total_mib=64.00, k_mib=32.00, v_mib=32.00,
        compute_buffers_mib=(("compute buffer total", 117.85), ("VRAM scratch", 114.54)),
        missing=("model file/quant", "tensor types", "CPU model buffer", "GPU name", "old (pre-2024) print format"),
        log_lines="""\
llm_load_tensors: offloading 22 repeating layers to GPU
llm_load_tensors: offloaded 22/33 layers to GPU
llm_load_tensors: VRAM used: 32353.06 MiB
llama_new_context_with_model: n_ctx      = 512
llama_new_context_with_model: freq_base  = 1000000.0
llama_new_context_with_model: freq_scale = 1
llama_kv_cache_init: VRAM kv self = 44.00 MB
llama_new_context_with_model: KV self size  =   64.00 MiB, K (f16):   32.00 MiB, V (f16):   32.00 MiB
llama_build_graph: non-view tensors processed: 1124/1124
llama_new_context_with_model: compute buffer total size = 117.85 MiB
llama_new_context_with_model: VRAM scratch buffer: 114.54 MiB
llama_new_context_with_model: total VRAM used: 32511.60 MiB (model: 32353.06 MiB, context: 158.54 MiB)
""",
    ),
    LoadLog(
        source_url="https://github.com/ollama/ollama/issues/8361",
        source_note="issue 'llama3.1-8B doesn't utilize my gpu', comment (turn 2) by sunday-hao (ollama's llama.cpp)",
        date="2025-01", build=None, engine="llama.cpp (vendored by ollama)",
        model_repo=None, model_file=None, file_type=None,
        model_inferred=("Llama-3.1-8B in f16/bf16: CPU_Mapped 15317.02 MiB = 16.06e9 B ~ 8.03e9 params x 2 B. "
                        "'offloaded 33/33' but weights stayed in CPU_Mapped (the GPU backend could not take them): "
                        "an example where the offload line and the buffers disagree"),
        tensor_types=(), file_size=None, hparams={"n_ctx_train": 131072},
        n_ctx=8192, n_batch=2048, n_ubatch=512, n_seq_max=4, flash_attn="0", offloaded=(33, 33),
        model_buffers_mib=(("CUDA0", 1.02), ("CPU_Mapped", 15317.02)),
        missing=("KV/output/compute buffers (cut off)", "tensor types", "GPU name"),
        log_lines="""\
llm_load_tensors: offloading 32 repeating layers to GPU
llm_load_tensors: offloading output layer to GPU
llm_load_tensors: offloaded 33/33 layers to GPU
llm_load_tensors:        CUDA0 model buffer size =     1.02 MiB
llm_load_tensors:   CPU_Mapped model buffer size = 15317.02 MiB
llama_new_context_with_model: n_seq_max     = 4
llama_new_context_with_model: n_ctx         = 8192
llama_new_context_with_model: n_ctx_per_seq = 2048
llama_new_context_with_model: n_batch       = 2048
llama_new_context_with_model: n_ubatch      = 512
llama_new_context_with_model: flash_attn    = 0
llama_new_context_with_model: freq_base     = 500000.0
llama_new_context_with_model: freq_scale    = 1
""",
    ),
    LoadLog(
        source_url="https://github.com/ggml-org/llama.cpp/issues/13661",
        source_note="issue 'Eval bug: Not splitting model across rows correctly', description by KevinM322",
        date="2025-05", build=None, engine="llama.cpp",
        model_repo=None, model_file=None, file_type=None,
        model_inferred="Qwen2-family chat template in the log; 4 GPUs, n_ctx 30016 (not a multiple of 256: older build)",
        tensor_types=(), file_size=None, hparams={},
        n_ctx=30016,
        kv_buffers_mib=(("CUDA2", 703.50), ("CUDA3", 644.88)),
        kv_total_mib=2814.00, k_mib=1407.00, v_mib=1407.00,
        compute_buffers_mib=(("CUDA0", 1958.63), ("CUDA1", 1958.63), ("CUDA2", 1958.63), ("CUDA3", 1958.63),
                             ("CUDA_Host", 62.63)),
        graph_nodes=3126, graph_splits=5,
        missing=("model", "model buffers", "CUDA0/CUDA1 KV lines (cut off)", "settings other than n_ctx"),
        log_lines="""\
init:      CUDA2 KV buffer size =   703.50 MiB
init:      CUDA3 KV buffer size =   644.88 MiB
llama_context: KV self size  = 2814.00 MiB, K (f16): 1407.00 MiB, V (f16): 1407.00 MiB
llama_context:      CUDA0 compute buffer size =  1958.63 MiB
llama_context:      CUDA1 compute buffer size =  1958.63 MiB
llama_context:      CUDA2 compute buffer size =  1958.63 MiB
llama_context:      CUDA3 compute buffer size =  1958.63 MiB
llama_context:  CUDA_Host compute buffer size =    62.63 MiB
llama_context: graph nodes  = 3126
llama_context: graph splits = 5
slot         init: id  0 | task -1 | new slot n_ctx_slot = 30016
""",
    ),
    LoadLog(
        source_url="https://github.com/ggml-org/llama.cpp/issues/27680",
        source_note="issue 'Eval bug: Possible regression: DSV4 CUDA compute buffer size', description",
        date="2026", build=None, engine="llama.cpp",
        model_repo=None, model_file=None, file_type=None,
        model_inferred=("DeepSeek-V4 (issue title): output 0.49 MiB = 129280 x 4 B (vocab 129280, 1 seq); SWA cache "
                        "4352 cells = GGML_PAD(n_swa + n_ubatch, 256) for some n_swa/n_ubatch (not printed here)"),
        tensor_types=(), file_size=None, hparams={"n_ctx_train": 1048576},
        n_ctx=64000, n_seq_max=1, type_k="bf16", type_v="bf16",
        kv_buffers_mib=(("CUDA0", 182.75),), kv_total_mib=182.75,
        output_buffer_mib=(("CUDA_Host", 0.49),),
        missing=("model buffers", "compute buffers (cut off)", "K/V split of the SWA cache (cut off)"),
        log_lines="""\
llama_context: n_outputs_max         = 1
llama_context: n_ctx_seq (64000) < n_ctx_train (1048576) -- the full capacity of the model will not be utilized
llama_context:  CUDA_Host  output buffer size =     0.49 MiB
llama_kv_cache_dsv4: creating DSV4 raw KV cache
llama_kv_cache_iswa: creating non-SWA KV cache, size = 64000 cells
llama_kv_cache: size =    0.00 MiB ( 64000 cells,   0 layers,  1/1 seqs), K (bf16):    0.00 MiB, V (bf16):    0.00 MiB
llama_kv_cache_iswa: creating     SWA KV cache, size = 4352 cells
llama_kv_cache:      CUDA0 KV buffer size =   182.75 MiB
""",
    ),
    LoadLog(
        source_url="https://github.com/ggml-org/llama.cpp/pull/14939",
        source_note="PR 'model: Add support for GLM 4.5 family of models', comment (turn 55) by sammcj",
        date="2025-07", build=None, engine="llama.cpp",
        model_repo=None, model_file=None, file_type=None,
        model_inferred="GLM-4.5 family (PR topic), partial offload across 2 GPUs (171 splits at bs=512)",
        tensor_types=(), file_size=None, hparams={},
        compute_buffers_mib=(("CUDA0", 789.62), ("CUDA1", 460.00), ("CUDA_Host", 12.01)),
        graph_nodes=3376, graph_splits=171,
        missing=("everything but the compute buffers",),
        log_lines="""\
llama_context:      CUDA0 compute buffer size =   789.62 MiB
llama_context:      CUDA1 compute buffer size =   460.00 MiB
llama_context:  CUDA_Host compute buffer size =    12.01 MiB
llama_context: graph nodes  = 3376
llama_context: graph splits = 171 (with bs=512), 4 (with bs=1)
""",
    ),
)


@dataclass(frozen=True)
class QuantOption:
    name: str
    ftype: int         # llama_ftype value (include/llama.h) as written in QUANT_OPTIONS
    description: str   # verbatim from QUANT_OPTIONS


# tools/quantize/quantize.cpp, QUANT_OPTIONS, in source order: ggml-org/llama.cpp commit 03161a4e (stored copy) and
# 82bb48500 (2026-08, via unslothai/llama.cpp d32676d77) are identical. ftype ids: include/llama.h enum llama_ftype.
# The order is llama-quantize's listing order, NOT a quality order: rank by the size / ppl figures instead.
QUANT_TABLE_SOURCE = "https://github.com/ggml-org/llama.cpp/blob/master/tools/quantize/quantize.cpp (QUANT_OPTIONS)"
QUANT_TABLE: tuple[QuantOption, ...] = (
    QuantOption("Q1_0", 40, " 1.125 bpw quantization"),
    QuantOption("Q2_0", 41, " 2.25 bpw quantization (group 64)"),
    QuantOption("Q4_0", 2, " 4.34G, +0.4685 ppl @ Llama-3-8B"),
    QuantOption("Q4_1", 3, " 4.78G, +0.4511 ppl @ Llama-3-8B"),
    QuantOption("MXFP4_MOE", 38, " MXFP4 MoE"),
    QuantOption("Q5_0", 8, " 5.21G, +0.1316 ppl @ Llama-3-8B"),
    QuantOption("Q5_1", 9, " 5.65G, +0.1062 ppl @ Llama-3-8B"),
    QuantOption("IQ2_XXS", 19, " 2.06 bpw quantization"),
    QuantOption("IQ2_XS", 20, " 2.31 bpw quantization"),
    QuantOption("IQ2_S", 28, " 2.5  bpw quantization"),
    QuantOption("IQ2_M", 29, " 2.7  bpw quantization"),
    QuantOption("IQ1_S", 24, " 1.56 bpw quantization"),
    QuantOption("IQ1_M", 31, " 1.75 bpw quantization"),
    QuantOption("TQ1_0", 36, " 1.69 bpw ternarization"),
    QuantOption("TQ2_0", 37, " 2.06 bpw ternarization"),
    QuantOption("Q2_K", 10, " 2.96G, +3.5199 ppl @ Llama-3-8B"),
    QuantOption("Q2_K_S", 21, " 2.96G, +3.1836 ppl @ Llama-3-8B"),
    QuantOption("IQ3_XXS", 23, " 3.06 bpw quantization"),
    QuantOption("IQ3_S", 26, " 3.44 bpw quantization"),
    QuantOption("IQ3_M", 27, " 3.66 bpw quantization mix"),
    QuantOption("Q3_K", 12, "alias for Q3_K_M"),
    QuantOption("IQ3_XS", 22, " 3.3 bpw quantization"),
    QuantOption("Q3_K_S", 11, " 3.41G, +1.6321 ppl @ Llama-3-8B"),
    QuantOption("Q3_K_M", 12, " 3.74G, +0.6569 ppl @ Llama-3-8B"),
    QuantOption("Q3_K_L", 13, " 4.03G, +0.5562 ppl @ Llama-3-8B"),
    QuantOption("IQ4_NL", 25, " 4.50 bpw non-linear quantization"),
    QuantOption("IQ4_XS", 30, " 4.25 bpw non-linear quantization"),
    QuantOption("Q4_K", 15, "alias for Q4_K_M"),
    QuantOption("Q4_K_S", 14, " 4.37G, +0.2689 ppl @ Llama-3-8B"),
    QuantOption("Q4_K_M", 15, " 4.58G, +0.1754 ppl @ Llama-3-8B"),
    QuantOption("Q5_K", 17, "alias for Q5_K_M"),
    QuantOption("Q5_K_S", 16, " 5.21G, +0.1049 ppl @ Llama-3-8B"),
    QuantOption("Q5_K_M", 17, " 5.33G, +0.0569 ppl @ Llama-3-8B"),
    QuantOption("Q6_K", 18, " 6.14G, +0.0217 ppl @ Llama-3-8B"),
    QuantOption("Q8_0", 7, " 7.96G, +0.0026 ppl @ Llama-3-8B"),
    QuantOption("F16", 1, "14.00G, +0.0020 ppl @ Mistral-7B"),
    QuantOption("BF16", 32, "14.00G, -0.0050 ppl @ Mistral-7B"),
    QuantOption("F32", 0, "26.00G              @ 7B"),
    QuantOption("COPY", 0, "only copy tensors, no quantizing"),  # LLAMA_FTYPE_ALL_F32 in the source
)

__all__ = ["LOAD_LOGS", "LoadLog", "QUANT_TABLE", "QUANT_TABLE_SOURCE", "QuantOption"]
