"""KV cache layout and bytes (issue 4, requirement 2). Expected values come from published numbers
(ground-truth.md §3), hand arithmetic written out here, or the simulation engine -- never from kv_cache.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfmem.scenarios.kv_cache import (KVLayoutError, kv_bytes_per_token, kv_cache_bytes, kv_layout)

MODELS = Path(__file__).resolve().parents[1] / "cache" / "models"
GiB = 1024 ** 3


def _real(name: str) -> dict:
    path = MODELS / name / "config.json"
    if not path.exists():
        pytest.skip(f"{name} not in the snapshot")
    return json.loads(path.read_text())


# -- ground-truth identities (full-context bytes per token, bf16) ----------------------------------------

OPT_13B = {"model_type": "opt", "num_hidden_layers": 40, "num_attention_heads": 40, "hidden_size": 5120}


@pytest.mark.parametrize("config, expected", [
    (OPT_13B, 819_200),                                     # vLLM paper §3: 2 × 5120 × 40 × 2
    ("meta-llama/Meta-Llama-3-8B", 131_072),                # ground-truth.md §3
    ("meta-llama/Llama-2-70b-hf", 327_680),
    ("meta-llama/Llama-2-7b-hf", 524_288),
    ("llava-hf/llava-1.5-7b-hf", 524_288),                  # its text model is Llama-2-7B
])
def test_published_bytes_per_token(config, expected):
    cfg = _real(config) if isinstance(config, str) else config
    assert kv_bytes_per_token(kv_layout(cfg)) == expected


def test_deepseek_v3_latent_both_engines():
    layout = kv_layout(_real("deepseek-ai/DeepSeek-V3"))
    assert kv_bytes_per_token(layout) == 70_272            # (512 + 64) × 61 × 2, DeepSeek-V2 paper Table 1
    # vLLM: 1,000 tokens = 63 blocks of 16 (hand: ceil(1000/16) = 63) per layer
    assert kv_cache_bytes(layout, batch=1, tokens=1000, engine="vllm") == 63 * 16 * 70_272
    # fp8 KV halves it
    assert kv_cache_bytes(layout, batch=2, tokens=1024, engine="vllm", kv_bytes_per_elem=1) == 2 * 1024 * 35_136
    # decompressed reference figure from ground-truth.md: 61 × 128 × (192 + 128) × 2 = 4,997,120
    assert sum(layer.decompressed_elems_per_token for layer in layout.layers) * 2 == 4_997_120


def test_mistral_7b_sliding_window_8x_at_32k():
    layout = kv_layout(_real("mistralai/Mistral-7B-v0.1"))
    assert layout.count("sliding") == 32 and {layer.window for layer in layout.layers} == {4096}
    full = kv_bytes_per_token(layout) * 32768
    capped = kv_cache_bytes(layout, batch=1, tokens=32768, engine="vllm")
    assert full == 4.0 * GiB                               # ground truth: 4.0 GiB full
    assert capped == 0.5 * GiB                             # 0.5 GiB capped: the paper's 8×
    assert kv_bytes_per_token(layout, tokens=32768) * 32768 == 0.5 * GiB
    # transformers right after prefill still holds the whole prompt (view into the concatenation)
    assert kv_cache_bytes(layout, batch=1, tokens=32768) == 4 * GiB + 32 * 8
    # and about W tokens per layer once decoding: min(32767, 4095) + 1 = 4096
    assert kv_cache_bytes(layout, batch=1, tokens=32768, phase="decode") == GiB // 2 + 32 * 8


def test_gemma3_1b_hybrid_vs_global_only():
    layout = kv_layout(_real("google/gemma-3-1b-it"))
    # sliding_window_pattern 6 over 26 layers: global at 6, 12, 18, 24 (1-based) -> 4 global, 22 local
    assert layout.count("full") == 4 and layout.count("sliding") == 22
    assert [i for i, layer in enumerate(layout.layers) if layer.kind == "full"] == [5, 11, 17, 23]
    t = 32768
    ratio = kv_bytes_per_token(layout, tokens=t) / kv_bytes_per_token(layout)
    assert ratio == pytest.approx((4 * t + 22 * 512) / (26 * t))   # ≈ 0.167
    # vLLM: 1 KV head × 256 × 2 (K, V) × 2 B = 1,024 B per layer-token; 512-window = 32 blocks exactly
    assert kv_cache_bytes(layout, batch=1, tokens=t, engine="vllm") == (4 * t + 22 * 512) * 1024


def test_gpt_oss_layer_types_and_qwen2_disabled_window():
    layout = kv_layout(_real("openai/gpt-oss-20b"))
    assert layout.count("sliding") == 12 and layout.count("full") == 12
    assert layout.layers[0].kind == "sliding" and layout.layers[0].window == 128
    assert kv_bytes_per_token(layout) == 24 * 2 * 8 * 64 * 2      # 24 L, 8 KV heads, head_dim 64
    qwen = kv_layout(_real("Qwen/Qwen2.5-7B"))                    # use_sliding_window: false
    assert qwen.count("sliding") == 0
    assert kv_bytes_per_token(qwen) == 28 * 2 * 4 * 128 * 2       # 28 L, 4 KV heads, 3584 / 28


def test_vllm_block_rounding_and_errors():
    layout = kv_layout(OPT_13B)
    assert kv_cache_bytes(layout, batch=3, tokens=17, engine="vllm") == 3 * 32 * 819_200   # 2 blocks of 16
    assert kv_cache_bytes(layout, batch=1, tokens=17) == 17 * 819_200                      # no rounding
    with pytest.raises(ValueError):
        kv_cache_bytes(layout, batch=0, tokens=10)
    with pytest.raises(ValueError):
        kv_cache_bytes(layout, batch=1, tokens=10, engine="sglang-ish")
    with pytest.raises(NotImplementedError):
        kv_layout({"model_type": "t5", "is_encoder_decoder": True, "num_layers": 2, "num_heads": 4})
    with pytest.raises(KVLayoutError):
        kv_layout({"model_type": "x"})


# -- agreement with the simulation engine (what transformers really holds) -------------------------------

DEC = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, vocab_size=256, pad_token_id=0, bos_token_id=1, eos_token_id=2)
TINY = {
    "llama": ({"model_type": "llama", "architectures": ["LlamaForCausalLM"], **DEC}, "sdpa"),
    "mistral": ({"model_type": "mistral", "architectures": ["MistralForCausalLM"], **DEC, "sliding_window": 8},
                "sdpa"),
    "deepseek_v3": ({"model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"], **DEC,
                     "num_key_value_heads": 4, "moe_intermediate_size": 32, "n_routed_experts": 4,
                     "n_shared_experts": 1, "num_experts_per_tok": 2, "first_k_dense_replace": 1,
                     "q_lora_rank": 32, "kv_lora_rank": 16, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8,
                     "v_head_dim": 16, "n_group": 1, "topk_group": 1}, "sdpa"),
    "gemma3_text": ({"model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"],
                     **{**DEC, "num_hidden_layers": 6}, "head_dim": 16, "sliding_window": 8}, "sdpa"),
    "gpt_oss": ({"model_type": "gpt_oss", "architectures": ["GptOssForCausalLM"], **DEC, "head_dim": 16,
                 "num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": 8}, "eager"),
}
BATCH, CONTEXT = 2, 20  # context > window (8) for the sliding models


@pytest.fixture(scope="module")
def simulate():
    pytest.importorskip("torch")
    from hfmem.simulate import simulate_infer
    return simulate_infer


@pytest.mark.parametrize("name", sorted(TINY))
def test_matches_simulation_after_prefill_and_decode(simulate, name):
    cfg, attn = TINY[name]
    sim = simulate(cfg, batch=BATCH, context=CONTEXT, new_tokens=2, attn=attn, gpu_emulation=False)
    layout = kv_layout(cfg)
    prefill = kv_cache_bytes(layout, batch=BATCH, tokens=CONTEXT)
    assert prefill == sim.phase("prefill").kv_cache_bytes
    decoded = kv_cache_bytes(layout, batch=BATCH, tokens=CONTEXT + 2, phase="decode")
    assert decoded == sim.kv_cache_bytes


def test_deepseek_v3_transformers_caches_the_latent(simulate):
    cfg, attn = TINY["deepseek_v3"]
    sim = simulate(cfg, batch=BATCH, context=CONTEXT, new_tokens=0, attn=attn, gpu_emulation=False)
    # hand: 2 layers × batch 2 × 20 tokens × (kv_lora_rank 16 + rope 8) × 2 B -- not heads × (24 + 16)
    assert sim.phase("prefill").kv_cache_bytes == 2 * 2 * 20 * (16 + 8) * 2 == 3840
