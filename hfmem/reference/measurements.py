"""Published GPU-memory measurements, one place for the tests and the benchmark reports.

Each entry quotes its source, with the numbers as printed there and the settings the source ran. ``tests/test_infer.py`` and ``tests/test_train.py`` assert tolerances
against these numbers; ``benchmarks/accuracy.py`` (docs/accuracy.md) and ``benchmarks/validate.py``
(docs/validation.md) record the errors. hfmem's estimates never read this module.

Units are the source's: "MB" in the transformers docs is 10^6 bytes; MiB / GiB are 2^20 / 2^30.
"""

from __future__ import annotations

# -- the configs the sources ran (not in the shipped snapshot) -------------------------------------------
# facebook/opt-350m, EleutherAI/pythia-410m and bert-large-uncased's config.json, the fields that shape them.
OPT_350M_CONFIG = {"architectures": ["OPTForCausalLM"], "model_type": "opt", "hidden_size": 1024,
                   "word_embed_proj_dim": 512, "ffn_dim": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                   "vocab_size": 50272, "max_position_embeddings": 2048, "do_layer_norm_before": False,
                   "torch_dtype": "float16"}
PYTHIA_410M_CONFIG = {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "hidden_size": 1024,
                      "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                      "vocab_size": 50304, "max_position_embeddings": 2048, "rotary_pct": 0.25,
                      "use_parallel_residual": True, "tie_word_embeddings": False, "torch_dtype": "float16"}
BERT_LARGE_CONFIG = {"architectures": ["BertForSequenceClassification"], "model_type": "bert", "hidden_size": 1024,
                     "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
                     "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2}

# -- inference: transformers docs' SDPA benchmarks (perf_infer_gpu_one) ------------------------------------
# model_doc/opt.md: SDPA inference (generate) peak, L40S, fp16; (batch, seq, MB = 10^6 B). A 2024 transformers
# whose generate computed the logits of every prompt position.
OPT_350M_GENERATE_MB = ((1, 128, 717.67), (1, 1024, 895.54), (8, 1024, 2443.35))
# model_doc/gpt_neox.md: SDPA generate peak, RTX 3080 Ti, fp16, PyTorch 2.2.1; (batch, seq, MB).
PYTHIA_410M_GENERATE_MB = ((1, 128, 974.83), (1, 2048, 1734.51), (4, 2048, 4165.26))

# -- training: transformers docs model_doc/gpt_neox.md ------------------------------------------------------
# fp16 training peak of pythia-410m, MB (10^6 B): (batch, seq) -> (eager, SDPA); no optimizer stated.
PYTHIA_410M_TRAIN_MB = {
    (1, 128): (1789.95, 1789.95), (1, 512): (2278.38, 1953.76), (1, 1024): (4772.36, 2408.35),
    (1, 2048): (13484.1, 3882.01), (2, 1024): (8707.55, 3878.86), (4, 512): (6290.58, 3877.29),
}

# -- training: PEFT MetaMathQA (huggingface/peft, method_comparison/MetaMathQA) ----------------------------
PEFT_SOURCE = ("PEFT MetaMathQA (huggingface/peft method_comparison), NVIDIA L40S, "
               "torch 2.13, transformers 5.13")
# Llama-3.2-3B, bf16, AdamW (torch), batch 4, max_seq_length 768, no checkpointing; accelerator_memory_max =
# max_memory_reserved, GiB (it includes an eval generation, batch 50, max_length 800). name -> (hfmem train
# settings of the run, GiB).
PEFT_METAMATHQA_RESERVED_GIB = {
    "full fine-tune": (dict(method="full", adamw_impl="foreach"), 36.20),
    "LoRA r32 q,v": (dict(method="lora", lora_rank=32, lora_targets=["q_proj", "v_proj"]), 20.76),
    "LoRA r64 q,v": (dict(method="lora", lora_rank=64, lora_targets=["q_proj", "v_proj"]), 21.00),
    "DoRA r32 q,v": (dict(method="lora", lora_rank=32, lora_targets=["q_proj", "v_proj"], dora=True), 22.85),
    "LoRA r10 mlp": (dict(method="lora", lora_rank=10, lora_targets=["gate_proj", "up_proj", "down_proj"]), 23.00),
}
# The same runs' rows in PEFT's results CSV (../shared/calibration/peft_metamathqa_memory.csv, column
# ``experiment``), which benchmarks/validate.py reads for max_reserved_bytes.
PEFT_EXPERIMENTS = {"full": "full-finetuning--llama-3.2-3B-lr_0.00001", "lora32": "lora--llama-3.2-3B-rank32",
                    "lora64": "lora--llama-3.2-3B-rank64"}

# -- training: HF "model training anatomy" / perf_train_gpu_one, 2022 ----------------------------------------
# bert-large-uncased classification, seq 512, V100, nvidia-smi MiB, Trainer defaults (fp32, transformers'
# for-loop AdamW), eager attention: (changes to those settings, MiB).
BERT_LARGE_ANATOMY_MIB = (
    (dict(batch=4), 14949),
    (dict(batch=1, grad_accum=4), 8681),
    (dict(batch=1, grad_accum=4, grad_ckpt=True), 6775),
    (dict(batch=4, precision="amp-fp16"), 13939),
    (dict(batch=1, grad_accum=4, grad_ckpt=True, precision="amp-fp16"), 7275),
    (dict(batch=4, optimizer="adafactor"), 12295),
    (dict(batch=1, grad_accum=4, grad_ckpt=True, precision="amp-fp16", optimizer="adafactor"), 4847),
    (dict(batch=4, optimizer="adamw-8bit"), 13085),
    (dict(batch=1, grad_accum=4, grad_ckpt=True, precision="amp-fp16", optimizer="adamw-8bit"), 5363),
)
BERT_LARGE_CUDA_CONTEXT_MIB = 1343  # the same page's measured CUDA context ("1343 MB"), read as MiB

# -- training: fitcheck README (third party), T4, fp16, SDPA, max_memory_allocated MiB ---
FITCHECK_ALLOCATED_MIB = {
    "SmolLM2-135M LoRA r32, bs 2, seq 512": 1846,
    "gemma-2-2b LoRA r32, bs 1, seq 512": 8993,
}

# -- activations: stas00/ml-engineering training/performance/README.md ----------------------------------
# Memory retained after one decoder layer's forward, bf16, bs 1, seq 32,384, default (SDPA) attention, in
# multiples of the hidden-state tensor (bs·seq·hidden·2 B): (model measured, snapshot config of the same
# shape, coefficient).
STAS00_LAYER_ACTIVATIONS = (
    ("SmolLM2-360M", "HuggingFaceTB/SmolLM2-360M-Instruct", 24.0),
    ("Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B", 28.0),
    ("Mistral-7B-Instruct-v0.3", "mistralai/Mistral-7B-Instruct-v0.3", 28.0),
    ("DeepSeek-R1-0528-Qwen3-8B", "Qwen/Qwen3-8B", 29.8),
    ("Qwen3-4B", "Qwen/Qwen3-4B", 38.0),
    ("gemma-1.1-2b-it", "google/gemma-2b-it", 48.0),
)
