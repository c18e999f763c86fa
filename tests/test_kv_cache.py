"""KV cache layout and bytes (issue 4, requirement 2). Expected values come from published numbers
(ground-truth.md §3), hand arithmetic written out here, or the simulation engine -- never from kv_cache.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfmem.scenarios.kv_cache import (KVLayoutError, kv_bytes_per_token, kv_cache_bytes, kv_layout,
                                      state_bytes_per_sequence, vllm_hybrid_pages)

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
    with pytest.raises(KVLayoutError):  # an encoder-decoder config without d_kv or d_model
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


# -- recurrent layers (Mamba, gated DeltaNet, short conv, ...) and encoder-decoder ------------------------
# Tiny configs from each model's config-class defaults with small overrides; the simulation runs
# transformers 5.24's own mixers and cache classes on fake tensors.

SSM = dict(mamba_d_state=8, mamba_d_conv=4, mamba_expand=2)
MAMBA2 = dict(**SSM, mamba_n_heads=8, mamba_d_head=16, mamba_n_groups=2, mamba_chunk_size=16)
GDN = dict(linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8, linear_value_head_dim=16,
           linear_conv_kernel_dim=4)
MLA_SMALL = dict(kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=16, q_lora_rank=None)
L4 = {**DEC, "num_hidden_layers": 4}
RECURRENT = {
    "qwen3_next": ({"model_type": "qwen3_next", "architectures": ["Qwen3NextForCausalLM"], **L4, "head_dim": 16, **GDN,
                    "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
                    "shared_expert_intermediate_size": 32, "full_attention_interval": 2}, "sdpa"),
    "qwen3_5": ({"model_type": "qwen3_5", "architectures": ["Qwen3_5ForConditionalGeneration"],
                 "text_config": {"model_type": "qwen3_5_text", **L4, "head_dim": 16, **GDN},
                 "vision_config": {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                                   "out_hidden_size": 64}}, "sdpa"),
    "olmo_hybrid": ({"model_type": "olmo_hybrid", "architectures": ["OlmoHybridForCausalLM"], **L4}, "sdpa"),
    "jamba": ({"model_type": "jamba", "architectures": ["JambaForCausalLM"], **{**DEC, "num_hidden_layers": 5}, **SSM,
               "attn_layer_period": 3, "attn_layer_offset": 2, "expert_layer_period": 2, "expert_layer_offset": 1,
               "num_experts": 2, "mamba_dt_rank": 8, "use_mamba_kernels": False}, "sdpa"),
    "mamba": ({"model_type": "mamba", "architectures": ["MambaForCausalLM"], **DEC, "state_size": 8, "expand": 2,
               "conv_kernel": 4, "time_step_rank": 8}, "eager"),
    "mamba2": ({"model_type": "mamba2", "architectures": ["Mamba2ForCausalLM"], **DEC, "num_heads": 8, "head_dim": 16,
                "state_size": 8, "n_groups": 2, "expand": 2, "conv_kernel": 4, "chunk_size": 16}, "eager"),
    "bamba": ({"model_type": "bamba", "architectures": ["BambaForCausalLM"], **L4, "attn_layer_indices": [1, 3],
               **MAMBA2}, "sdpa"),
    "granitemoehybrid": ({"model_type": "granitemoehybrid", "architectures": ["GraniteMoeHybridForCausalLM"], **L4,
                          "layer_types": ["mamba", "attention", "mamba", "attention"], **MAMBA2,
                          "num_local_experts": 2, "num_experts_per_tok": 1, "shared_intermediate_size": 32}, "sdpa"),
    "nemotron_h": ({"model_type": "nemotron_h", "architectures": ["NemotronHForCausalLM"], **L4, "head_dim": 16,
                    "hybrid_override_pattern": "M*M-", "mamba_num_heads": 8, "mamba_head_dim": 16,
                    "ssm_state_size": 8, "n_groups": 2, "conv_kernel": 4, "chunk_size": 16}, "sdpa"),
    "falcon_h1": ({"model_type": "falcon_h1", "architectures": ["FalconH1ForCausalLM"], **DEC, "head_dim": 16,
                   **{**MAMBA2, "mamba_n_heads": 6}, "mamba_d_ssm": 96}, "sdpa"),
    "zamba2": ({"model_type": "zamba2", "architectures": ["Zamba2ForCausalLM"], **L4,
                "layers_block_type": ["hybrid", "mamba", "mamba", "hybrid"], **{**SSM, "mamba_expand": 1},
                "mamba_ngroups": 2, "n_mamba_heads": 4, "chunk_size": 16, "use_mem_rope": True}, "sdpa"),
    "lfm2": ({"model_type": "lfm2", "architectures": ["Lfm2ForCausalLM"], **L4, "full_attn_idxs": [1, 3],
              "conv_L_cache": 3}, "sdpa"),
    "lfm3": ({"model_type": "lfm3", "architectures": ["Lfm3ForCausalLM"], **L4, "head_dim": 16, "sliding_window": 8,
              "layer_types": ["conv", "full_attention", "conv", "sliding_attention"], "conv_L_cache": 7}, "sdpa"),
    "minimax": ({"model_type": "minimax", "architectures": ["MiniMaxForCausalLM"], **L4, "head_dim": 16,
                 "num_local_experts": 2, "num_experts_per_tok": 1}, "sdpa"),
    "kimi_linear": ({"model_type": "kimi_linear", "architectures": ["KimiLinearForCausalLM"], **L4,
                     "num_key_value_heads": 4, **MLA_SMALL, "num_experts": 4, "num_experts_per_token": 2,
                     "moe_intermediate_size": 32, "linear_attn_config": {
                         "head_dim": 8, "num_heads": 2, "short_conv_kernel_size": 3,
                         "full_attn_layers": [2, 4], "kda_layers": [1, 3]}}, "sdpa"),
    "t5": ({"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "d_model": 64, "d_kv": 8, "d_ff": 128,
            "num_layers": 2, "num_decoder_layers": 3, "num_heads": 4, "vocab_size": 256, "is_encoder_decoder": True,
            "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0}, "sdpa"),
    "bart": ({"model_type": "bart", "architectures": ["BartForConditionalGeneration"], "d_model": 64,
              "encoder_layers": 2, "decoder_layers": 3, "encoder_attention_heads": 4, "decoder_attention_heads": 4,
              "encoder_ffn_dim": 128, "decoder_ffn_dim": 128, "vocab_size": 256, "max_position_embeddings": 64,
              "is_encoder_decoder": True, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
              "decoder_start_token_id": 2}, "sdpa"),
    "bert2gpt2": ({"model_type": "encoder-decoder", "architectures": ["EncoderDecoderModel"], "is_encoder_decoder": True,
                   "decoder_start_token_id": 0, "pad_token_id": 0,
                   "encoder": {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                               "intermediate_size": 128, "vocab_size": 256},
                   "decoder": {"model_type": "gpt2", "n_embd": 64, "n_layer": 3, "n_head": 4, "vocab_size": 256,
                               "is_decoder": True, "add_cross_attention": True}}, "sdpa"),
}


# the slowest three (kimi_linear, zamba2, jamba: 1-1.7 s each) run in the slow set; the other hybrids stay
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("kimi_linear", "zamba2", "jamba")
                                  else n for n in sorted(RECURRENT)])
def test_recurrent_and_encoder_decoder_match_simulation(simulate, name):
    cfg, attn = RECURRENT[name]
    sim = simulate(cfg, batch=BATCH, context=CONTEXT, new_tokens=2, attn=attn, gpu_emulation=False)
    layout = kv_layout(cfg)
    if layout.is_encoder_decoder:  # the prompt goes to the encoder; the decoder starts from one token
        prefill = kv_cache_bytes(layout, batch=BATCH, tokens=1, encoder_tokens=CONTEXT)
        decoded = kv_cache_bytes(layout, batch=BATCH, tokens=3, encoder_tokens=CONTEXT, phase="decode")
    else:
        prefill = kv_cache_bytes(layout, batch=BATCH, tokens=CONTEXT)
        decoded = kv_cache_bytes(layout, batch=BATCH, tokens=CONTEXT + 2, phase="decode")
    assert prefill == sim.phase("prefill").kv_cache_bytes
    assert decoded == sim.kv_cache_bytes


def test_recurrent_states_by_hand():
    """Per-sequence state shapes, from each mixer's source (conv [channels, kernel], recurrent state fp32)."""
    def states(name):
        layer = next(layer for layer in kv_layout(RECURRENT[name][0]).layers if layer.states)
        return [(s.name, s.shape, s.bytes_per_elem) for s in layer.states]

    # gated DeltaNet: conv 2·k_heads·d_k + v_heads·d_v = 2·2·8 + 4·16 = 96 channels; state [v_heads, d_k, d_v]
    assert states("qwen3_next") == [("conv", (96, 4), None), ("recurrent", (4, 8, 16), 4)]
    # Mamba: d_inner = 2·64 = 128; conv [128, 4]; ssm [128, d_state 8]
    assert states("jamba") == [("conv", (128, 4), None), ("recurrent", (128, 8), 4)]
    # Mamba-2: conv d_inner + 2·groups·d_state = 128 + 2·2·8 = 160; ssm [heads 8, head_dim 16, d_state 8]
    assert states("bamba") == [("conv", (160, 4), None), ("recurrent", (8, 16, 8), 4)]
    # Falcon-H1: d_inner is mamba_d_ssm (96): conv 96 + 32 = 128
    assert states("falcon_h1") == [("conv", (128, 4), None), ("recurrent", (6, 16, 8), 4)]
    # OLMo-hybrid defaults: k/v heads = 4 attention heads, d_k = int(0.75·64/4) = 12, d_v = 24
    assert states("olmo_hybrid") == [("conv", (2 * 4 * 12 + 4 * 24, 4), None), ("recurrent", (4, 12, 24), 4)]
    # KDA: conv over q, k, v (3·2·8 = 48 channels); state [heads, d, d]
    assert states("kimi_linear") == [("conv", (48, 3), None), ("recurrent", (2, 8, 8), 4)]
    assert states("lfm2") == [("conv", (64, 3), None)]                        # short conv: [hidden, L_cache]
    assert states("minimax") == [("recurrent", (4, 16, 16), None)]            # K^T V, model dtype

    qwen = kv_layout(RECURRENT["qwen3_next"][0])   # full_attention_interval 2: layers 1 and 3 attend
    assert [layer.kind for layer in qwen.layers] == ["state", "full", "state", "full"]
    # batch 2, 20 tokens: 2 × (96·4·2 + 4·8·16·4) = 5,632 per state layer; 2·2·16·20·2·2 = 5,120 per attention one
    assert kv_cache_bytes(qwen, batch=2, tokens=20) == 2 * 5_632 + 2 * 5_120
    assert kv_bytes_per_token(qwen) == 2 * 2 * 2 * 16 * 2              # recurrent layers add nothing per token
    assert state_bytes_per_sequence(qwen) == 2 * (96 * 4 * 2 + 4 * 8 * 16 * 4)
    assert [layer.kind for layer in kv_layout(RECURRENT["nemotron_h"][0]).layers] == ["state", "full", "state", "none"]
    mamba = kv_layout(RECURRENT["mamba"][0])
    assert mamba.count("state") == 2 and kv_bytes_per_token(mamba) == 0
    # a decode step changes nothing: 2 layers × 2 seqs × (128·4·2 + 128·8·4)
    assert kv_cache_bytes(mamba, batch=2, tokens=5000, phase="decode") == 2 * 2 * (1024 + 4096)


def test_vllm_hybrid_pages_match_engine_logs():
    # vLLM serving LFM2.5-1.2B (hidden 2048, 32 heads, 8 KV heads, fp16) logs "Setting attention block size to
    # 16 tokens" and "Padding mamba page size by 300.00%": attention 2·8·64·2 = 2,048 B/token, 16 tokens =
    # 32,768 B; short-conv state (L_cache − 1 = 2 columns) 2 × 2048 × 2 = 8,192 B -> +300 %.
    lfm2 = kv_layout({"model_type": "lfm2", "hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
                      "num_key_value_heads": 8, "conv_L_cache": 3, "full_attn_idxs": [2, 5, 8, 10, 12, 14]})
    assert lfm2.count("state") == 10 and lfm2.count("full") == 6
    assert vllm_hybrid_pages(lfm2) == (16, 32_768)
    # one 100-token sequence: 6 layers × 7 blocks × 32,768 + 10 padded state pages × 32,768
    assert kv_cache_bytes(lfm2, batch=1, tokens=100, engine="vllm") == (6 * 7 + 10) * 32_768
    # transformers keeps all 3 conv columns, unpadded: 10 × 2048 × 3 × 2
    assert kv_cache_bytes(lfm2, batch=1, tokens=100) == 6 * 100 * 2_048 + 10 * 2048 * 3 * 2

    # Nemotron-3-Nano-30B-A3B with fp8 KV: vLLM logs "Setting attention block size to 4176 tokens" and
    # "Padding mamba page size by 0.19%". Attention 2·2·128·1 = 512 B/token. State: conv (64·64 + 2·8·128) ×
    # 3 × 2 B = 36,864 plus the float32 SSM state NemotronH asks for, 64·64·128·4 = 2,097,152: 2,134,016 B.
    # 16 · ceil(2,134,016 / (16 · 512)) = 4,176 tokens; page 4,176 · 512 = 2,138,112 B (+0.19 %).
    nemotron = kv_layout({
        "model_type": "nemotron_h", "hidden_size": 2688, "num_hidden_layers": 52, "num_attention_heads": 32,
        "num_key_value_heads": 2, "head_dim": 128, "mamba_num_heads": 64, "mamba_head_dim": 64,
        "ssm_state_size": 128, "n_groups": 8, "conv_kernel": 4, "expand": 2,
        "hybrid_override_pattern": "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"})
    assert (nemotron.count("state"), nemotron.count("full"), nemotron.count("none")) == (23, 6, 23)
    block, page = vllm_hybrid_pages(nemotron, kv_bytes_per_elem=1)
    assert (block, page) == (4_176, 2_138_112)
    assert round(100 * (page - 2_134_016) / 2_134_016, 2) == 0.19
    # one sequence of 10,000 tokens: 6 × ceil(10000 / 4176) = 18 blocks, plus 23 state pages
    assert kv_cache_bytes(nemotron, batch=1, tokens=10_000, engine="vllm", kv_bytes_per_elem=1) == (18 + 23) * page
    # transformers: conv keeps all 4 columns: 6144 · 4 · 2 + 2,097,152 per Mamba layer, no padding
    assert state_bytes_per_sequence(nemotron) == 23 * (6144 * 4 * 2 + 2_097_152)

    # Qwen3.5-0.8B in vLLM logs "Setting attention block size to 544 tokens" and "Padding mamba page size by
    # 2.64%". Gated DeltaNet 16 heads, d_k = d_v = 128, kernel 4; attention 2 KV heads × 256; the config's
    # mamba_ssm_dtype float32 (vLLM's Qwen3.5 hook applies it). State: conv (2·16·128 + 16·128) × 3 × 2 B =
    # 36,864 + recurrent 16·128·128·4 = 1,048,576 -> 1,085,440 B; attention 2·2·256·2 = 2,048 B/token;
    # 16 · ceil(1,085,440 / 32,768) = 544 tokens; page 544 · 2,048 = 1,114,112 B (+2.64 %).
    qwen35 = kv_layout({"model_type": "qwen3_5_text", "hidden_size": 1024, "num_hidden_layers": 24,
                        "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 256,
                        "linear_num_key_heads": 16, "linear_num_value_heads": 16, "linear_key_head_dim": 128,
                        "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4, "mamba_ssm_dtype": "float32"})
    assert (qwen35.count("state"), qwen35.count("full")) == (18, 6)   # full_attention_interval 4
    block, page = vllm_hybrid_pages(qwen35)
    assert (block, page) == (544, 1_114_112)
    assert round(100 * (page - 1_085_440) / 1_085_440, 2) == 2.64

    # pure Mamba in vLLM: no attention, so no padding; conv keeps kernel − 1 columns; states in the model dtype
    mamba = kv_layout(RECURRENT["mamba"][0])
    assert kv_cache_bytes(mamba, batch=3, tokens=10, engine="vllm") == 3 * 2 * (128 * 3 * 2 + 128 * 8 * 2)
    assert kv_cache_bytes(mamba, batch=3, tokens=10, engine="vllm", ssm_state_bytes_per_elem=4) == \
        3 * 2 * (128 * 3 * 2 + 128 * 8 * 4)


def test_encoder_decoder_cross_attention():
    # Whisper cannot run from token ids (its encoder takes mel features), so by hand from WhisperEncoder and
    # EncoderDecoderCache: the cross cache holds max_source_positions (16 here) per decoder layer.
    whisper = kv_layout({"model_type": "whisper", "is_encoder_decoder": True, "d_model": 64, "encoder_layers": 2,
                         "decoder_layers": 3, "encoder_attention_heads": 4, "decoder_attention_heads": 4,
                         "max_source_positions": 16})
    assert whisper.count("full") == 3 and whisper.count("cross") == 3 and whisper.encoder_tokens == 16
    # 3 layers × 2 (K, V) × batch 2 × 4 heads × 16 × 2 B × (1 decoder token + 16 encoder positions)
    assert kv_cache_bytes(whisper, batch=2, tokens=1) == 3 * 2 * 2 * 4 * 16 * 2 * 17 == 26_112
    # whisper-large-v3: 32 decoder layers, d_model 1280, 20 heads, 1,500 encoder positions:
    # 32 × 2 × 1280 × 1500 × 2 B = 245,760,000 B of cross-attention K/V per sequence
    large = kv_layout({"model_type": "whisper", "is_encoder_decoder": True, "d_model": 1280, "decoder_layers": 32,
                       "decoder_attention_heads": 20, "max_source_positions": 1500})
    assert kv_cache_bytes(large, batch=1, tokens=0) == 245_760_000
    assert kv_bytes_per_token(large) == 32 * 2 * 1280 * 2                 # self-attention only
    assert kv_cache_bytes(large, batch=1, tokens=0, encoder_tokens=750) == 245_760_000 // 2

    t5 = kv_layout(RECURRENT["t5"][0])                                   # 3 decoder layers, 4 heads × d_kv 8
    with pytest.raises(ValueError):
        kv_cache_bytes(t5, batch=1, tokens=4)                            # no fixed encoder length: say it
    # vLLM: cross-attention in blocks too: ceil(100 / 16) = 7 blocks, self ceil(5 / 16) = 1 block
    assert kv_cache_bytes(t5, batch=1, tokens=5, encoder_tokens=100, engine="vllm") == 3 * (7 + 1) * 16 * 64 * 2


def test_unmodelled_recurrent_models_are_refused():
    with pytest.raises(NotImplementedError):
        kv_layout({"model_type": "recurrent_gemma", "num_hidden_layers": 2, "num_attention_heads": 4,
                   "hidden_size": 64})
    with pytest.raises(NotImplementedError):      # an unknown model with linear-attention layers
        kv_layout({"model_type": "somehybrid", "architectures": ["SomehybridForCausalLM"], "num_hidden_layers": 2,
                   "num_attention_heads": 4, "hidden_size": 64, "layer_types": ["linear_attention", "full_attention"]})
