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

# -- training: single-GPU QLoRA runs ------------------------------------------------------------------------
# Unsloth README (unslothai/unsloth README.md, "Llama 3.1 (8B) max. context length"; the same table in
# unsloth.ai/blog/llama3-3, 10 Dec 2024): "We tested Llama 3.1 (8B) Instruct and did 4bit QLoRA on all linear
# layers (Q, K, V, O, gate, up and down) with rank = 32 with a batch size of 1. We padded all sequences to a
# certain maximum sequence length to mimic long context finetuning workloads." Column "Hugging Face + FA2":
# GPU VRAM (GB) -> the longest sequence that fits (8 GB: "OOM"). Not stated: gradient checkpointing (on: no
# 8B run reaches 28K tokens without it), the optimizer (Unsloth's benchmarks use adamw_8bit: unsloth.ai/blog/
# long-context "We used a lora rank of 32 with adamw_8bit"), which GB (Unsloth's notebooks print
# torch.cuda.max_memory_reserved() / 1024 / 1024 / 1024 as "GB": GiB), the versions (Dec 2024: transformers
# 4.46/4.47, peft 0.13/0.14, whose prepare_model_for_kbit_training and the Trainer's gradient_checkpointing
# reach use_reentrant=True; 4.46/4.47's loss/loss_utils.py ForCausalLMLoss: loss_path "4.46"). The column is
# exactly linear in the VRAM -- 404.75 tokens per GB between every
# pair of rows (932 + 404.75 * (GB - 12)) -- so it is a line fitted to measured runs and solved at each size
# ("Numbers are extrapolated based on experiments", unsloth.ai/blog/long-context), not one run per card.
UNSLOTH_LLAMA31_8B_HF_FA2_MAX_SEQ = {12: 932, 16: 2551, 24: 5789, 40: 12264, 48: 15502, 80: 28454}
UNSLOTH_LLAMA31_8B_SETTINGS = dict(method="qlora", precision="bf16", lora_rank=32, lora_targets="all-linear",
                                   attn="flash", grad_ckpt=True, batch=1, loss_path="4.46", reentrant=True,
                                   optimizer="adamw-8bit")

# fitcheck (github.com/Anassbzdd/fitcheck data/measurements/t4-qlora-2026-09-01.json; its README's table):
# Tesla T4, torch 2.10.0+cu128, transformers 5.0.0, peft 0.19.1; "QLoRA r=32
# [q,k,v,o], ..., fp16, adamw, ckpt"; max_memory_allocated MiB of a measured step after one warm-up step.
# The run (scripts/measure.py at the same commit): from_pretrained(dtype=float16, BitsAndBytesConfig(nf4,
# bnb_4bit_compute_dtype=float16, bnb_4bit_use_double_quant=False: "double_quant": false)),
# prepare_model_for_kbit_training(use_gradient_checkpointing=True), LoraConfig(r=32, lora_alpha=64,
# lora_dropout=0.0), gradient_checkpointing_enable(use_reentrant=False), torch.optim.AdamW on the fp32
# adapters, labels = input_ids, no Trainer and no autocast; "sdpa" rows pin SDPBackend.EFFICIENT_ATTENTION
# (the T4 has no flash kernel). Models as run: TinyLlama/TinyLlama-1.1B-Chat-v1.0, HuggingFaceTB/SmolLM2-1.7B
# (the snapshot's SmolLM2-1.7B-Instruct has the same config shape), Qwen/Qwen2.5-1.5B-Instruct (config below).
# (model, batch, seq, attention) -> MiB
FITCHECK_QLORA_ALLOCATED_MIB = {
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 2, 512, "eager"): 1849,
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 2, 1024, "sdpa"): 2528,
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 2, 2048, "eager"): 6655,
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 2, 2048, "sdpa"): 3897,
    ("HuggingFaceTB/SmolLM2-1.7B", 4, 1024, "sdpa"): 5281,
    ("Qwen/Qwen2.5-1.5B-Instruct", 2, 1024, "sdpa"): 6823,
}
FITCHECK_QLORA_SETTINGS = dict(method="qlora", precision="fp16", qlora_format="nf4", optimizer="adamw",
                               lora_rank=32, lora_targets=["q_proj", "k_proj", "v_proj", "o_proj"],
                               lora_dropout=0.0, grad_ckpt=True, reentrant=False, loss_path="5.x",
                               prepare_kbit=True, bnb_compute_dtype="fp16")
# Qwen/Qwen2.5-1.5B-Instruct's config.json, the fields that shape it (the shape of the snapshot's
# Qwen/Qwen2-1.5B-Instruct: hidden 1536, 28 layers, 12 heads, 2 KV heads, 8960, 151936, tied embeddings).
QWEN25_1_5B_CONFIG = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 1536,
                      "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
                      "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
                      "tie_word_embeddings": True, "hidden_act": "silu", "rms_norm_eps": 1e-6,
                      "rope_theta": 1000000.0, "torch_dtype": "bfloat16"}
# stand-ins in the snapshot with the same config shape as the model the source ran
FITCHECK_SNAPSHOT_MODEL = {"HuggingFaceTB/SmolLM2-1.7B": "HuggingFaceTB/SmolLM2-1.7B-Instruct"}

# QLoRA paper (Dettmers et al. 2023, arXiv 2305.14314, appendix "Memory footprint"):
# LLaMA-7B, "the 4-bit base model consumes 5,048 MB" (MB as printed; read as 10^6 B). The paper's qlora.py:
# NF4 + double quantization, bf16, prepare_model_for_kbit_training, then lm_head / embed_tokens back to bf16
# and norms in fp32. meta-llama/Llama-2-7b-hf has LLaMA-7B's shape (4096, 32 layers, 11008, vocab 32000).
QLORA_PAPER_LLAMA7B_BASE_MB = 5048


# -- training: FSDP-QLoRA and DeepSpeed ZeRO runs -----------------------------------------------------------
# PEFT docs docs/source/accelerate/fsdp.md, "Use PEFT QLoRA and FSDP for finetuning large models on multiple
# GPUs" (huggingface/peft): "In the above example, the memory consumed per GPU is **19.6 GB** while CPU RAM usage
# is around **107 GB**. When disabling CPU offloading, the GPU memory usage is **35.6 GB/ GPU**." A per-GPU
# total (no API named: a device-level figure, compared with device_total_bytes; "GB" read as 10^9 B).
# The run (examples/sft/run_peft_qlora_fsdp.sh + configs/fsdp_config_qlora.yaml): meta-llama/Llama-2-70b-hf,
# 2 processes, FSDP1 FULL_SHARD, TRANSFORMER_BASED_WRAP + PEFT's fsdp_auto_wrap_policy, BACKWARD_PRE,
# forward_prefetch false, use_orig_params false, cpu_ram_efficient_loading true, fsdp_offload_params true
# (false for 35.6 GB); max_seq_len 2048 with packing, per_device_train_batch_size 2, gradient_accumulation_steps
# 2, gradient_checkpointing use_reentrant True, flash_attention_2, bf16, LoRA r 8 / alpha 16 / dropout 0.1 on
# all-linear, nf4 + double quant, bnb_4bit_compute_dtype bf16, bnb_4bit_quant_storage bf16 (model dtype bf16).
# TRL's SFTTrainer skips prepare_model_for_kbit_training for sharded QLoRA and calls get_peft_model(...,
# autocast_adapter_dtype=False): bf16 adapters (trl sft_trainer._prepare_peft_model, is_sharded_qlora).
# name -> (hfmem train settings of the run, GB per GPU).
PEFT_FSDP_QLORA_70B_GB = {
    "CPU offload": (dict(fsdp_offload=True), 19.6),
    "no offload": (dict(fsdp_offload=False), 35.6),
}
PEFT_FSDP_QLORA_70B_SETTINGS = dict(method="qlora", fsdp="full_shard", gpus=2, precision="bf16", batch=2, seq=2048,
                                    grad_accum=2, grad_ckpt=True, reentrant=True, attn="flash", lora_rank=8,
                                    lora_targets="all-linear", lora_dropout=0.1, bnb_quant_storage="bf16",
                                    prepare_kbit=False, adapter_dtype="bf16")
PEFT_FSDP_QLORA_70B_CPU_GB = 107  # "CPU RAM usage is around 107 GB" (with offload; the whole node, 2 ranks)

# PEFT README (huggingface/peft README.md, "High performance on consumer hardware"): "A100 80GB GPU with more
# than 64GB of CPU RAM", ought/raft twitter_complaints; "PEFT-LoRA DeepSpeed with CPU Offloading" column:
# T0_3B "9.8GB GPU / 17.8GB CPU", mt0-xxl "22GB GPU / 52GB CPU", bloomz-7b1 "18.1GB GPU / 35GB CPU". The
# scripts (examples/conditional_generation/peft_lora_seq2seq_accelerate_ds_zero3_offload.py,
# examples/causal_language_modeling/peft_lora_clm_accelerate_ds_zero3_offload.py): LoRA r 8 / alpha 32 /
# dropout 0.1 (PEFT's default targets), torch.optim.AdamW, batch_size 8, accelerate with DeepSpeed ZeRO-3,
# mixed_precision 'no' (fp32); the figure is TorchTracemalloc's "Total Peak Memory consumed during the train
# (max)" = torch.cuda.max_memory_allocated in MiB (b2mb = x / 2**20), labelled GB. Causal LM: max_length 64
# (left-padded); seq2seq: padding="longest" over tweets (data-dependent source length). The config committed
# (accelerate_ds_zero3_cpu_offload_config.yaml) has offload devices "none"; the CPU figures (fp32 weights on
# CPU) say the README's runs offloaded parameters and optimizer. name -> (model, GB GPU, GB CPU).
PEFT_README_DS_ZERO3_OFFLOAD_GB = {
    "T0_3B": ("bigscience/T0_3B", 9.8, 17.8),
    "mt0-xxl": ("bigscience/mt0-xxl", 22.0, 52.0),
    "bloomz-7b1": ("bigscience/bloomz-7b1", 18.1, 35.0),
}
# bigscience/bloomz-7b1's config.json (BLOOM-7b1 shape), not in the shipped snapshot.
BLOOMZ_7B1_CONFIG = {"architectures": ["BloomForCausalLM"], "model_type": "bloom", "hidden_size": 4096, "n_layer": 30,
                     "n_head": 32, "vocab_size": 250880, "layer_norm_epsilon": 1e-5, "torch_dtype": "float16"}

# -- inference: quantized (bitsandbytes) serving runs -------------------------------------------------------
# HF docs "Optimizing LLMs for Speed and Memory" (huggingface/blog getting_the_most_out_of_LLMs.md, also
# transformers docs llm_tutorial_optimization.md), 2023: bigcode/octocoder through pipeline("text-generation"),
# prompt "Question: Please write a function in Python that transforms bytes to Giga bytes.\n\nAnswer:" (about 20
# tokens; the page does not print the count), max_new_tokens=60, batch 1, each run after flush()
# (torch.cuda.reset_peak_memory_stats), so the peak covers loading too; bytes_to_giga_bytes(
# torch.cuda.max_memory_allocated()) = bytes / 1024**3 (GiB). Loads: torch_dtype=torch.bfloat16;
# load_in_8bit=True; load_in_4bit=True (BitsAndBytesConfig defaults: fp4, no double quant, compute dtype float32;
# the transformers of 2023 loaded the other modules in float16). name -> (hfmem infer settings, GiB).
OCTOCODER_CONFIG = {"architectures": ["GPTBigCodeForCausalLM"], "model_type": "gpt_bigcode", "n_embd": 6144,
                    "n_head": 48, "n_layer": 40, "n_positions": 8192, "n_inner": 24576, "vocab_size": 49152,
                    "multi_query": True, "activation_function": "gelu_pytorch_tanh", "layer_norm_epsilon": 1e-5,
                    "torch_dtype": "bfloat16"}
OCTOCODER_PROMPT_TOKENS, OCTOCODER_NEW_TOKENS = 20, 60
OCTOCODER_GENERATE_ALLOCATED_GIB = {
    "bf16": (dict(compute_dtype="bf16"), 29.0260648727417),
    "load_in_8bit": (dict(weights_format="int8", compute_dtype="fp16"), 15.219234466552734),
    "load_in_4bit": (dict(weights_format="fp4", compute_dtype="fp16"), 9.543574333190918),
}
# transformers tests/quantization/bnb (test_4bit.py, test_mixed_int8.py): bigscience/bloom-1b7,
# model_fp16.get_memory_footprint() / model_4bit.get_memory_footprint() (BitsAndBytesConfig(load_in_4bit=True):
# fp4, no double quant) = EXPECTED_RELATIVE_DIFFERENCE. get_memory_footprint counts
# parameters and buffers only: a Params4bit's packed uint8 bytes, not its quant_state (absmax, quant_map), and
# an Int8Params' int8 bytes, not its SCB. The 4-bit ratio was "obtained on a RTX Titan", the 8-bit one
# (test_mixed_int8.py, BaseMixedInt8Test) "on a Quadro RTX 8000".
BLOOM_1B7_CONFIG = {"architectures": ["BloomForCausalLM"], "model_type": "bloom", "hidden_size": 2048,
                    "n_layer": 24, "n_head": 16, "vocab_size": 250880, "torch_dtype": "float16"}
BLOOM_1B7_FOOTPRINT_RATIO = {"fp4": 2.109659552692574, "int8": 1.540025}
