"""Every architecture the simulator promises (issue 3): a tiny config of each runs a training step and a
prefill + decode on fake tensors, and the peaks respect lower bounds counted independently (the meta-model
inventory of the same config)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from hfmem.inventory.build import build_inventory  # noqa: E402
from hfmem.metadata.config import ModelConfig  # noqa: E402
from hfmem.simulate import simulate_infer, simulate_train  # noqa: E402

DEC = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, vocab_size=256, pad_token_id=0, bos_token_id=1, eos_token_id=2)

ARCHS = {  # model_type -> (config, attention that transformers supports for it)
    "llama": ({"architectures": ["LlamaForCausalLM"], **DEC}, "sdpa"),
    "mistral": ({"architectures": ["MistralForCausalLM"], **DEC, "sliding_window": 8}, "sdpa"),
    "qwen2": ({"architectures": ["Qwen2ForCausalLM"], **DEC}, "sdpa"),
    "qwen3": ({"architectures": ["Qwen3ForCausalLM"], **DEC, "head_dim": 16}, "sdpa"),
    "gemma": ({"architectures": ["GemmaForCausalLM"], **DEC, "head_dim": 16}, "sdpa"),
    "gemma2": ({"architectures": ["Gemma2ForCausalLM"], **DEC, "head_dim": 16, "sliding_window": 8}, "eager"),
    "gemma3_text": ({"architectures": ["Gemma3ForCausalLM"], **DEC, "head_dim": 16, "sliding_window": 8}, "sdpa"),
    "phi3": ({"architectures": ["Phi3ForCausalLM"], **DEC}, "sdpa"),
    "gpt_neox": ({"architectures": ["GPTNeoXForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
                  "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 256}, "sdpa"),
    "falcon": ({"architectures": ["FalconForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 4, "vocab_size": 256}, "sdpa"),
    "gpt2": ({"architectures": ["GPT2LMHeadModel"], "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 256,
              "n_positions": 128}, "sdpa"),
    "bert": ({"architectures": ["BertForMaskedLM"], "hidden_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 256}, "sdpa"),
    "t5": ({"architectures": ["T5ForConditionalGeneration"], "d_model": 64, "d_ff": 128, "num_layers": 2,
            "num_decoder_layers": 2, "num_heads": 4, "d_kv": 16, "vocab_size": 256, "decoder_start_token_id": 0},
           "eager"),
    "mixtral": ({"architectures": ["MixtralForCausalLM"], **DEC, "num_local_experts": 4,
                 "num_experts_per_tok": 2}, "sdpa"),
    "qwen2_moe": ({"architectures": ["Qwen2MoeForCausalLM"], **DEC, "num_experts": 4, "num_experts_per_tok": 2,
                   "moe_intermediate_size": 32, "shared_expert_intermediate_size": 64}, "sdpa"),
    "qwen3_moe": ({"architectures": ["Qwen3MoeForCausalLM"], **DEC, "head_dim": 16, "num_experts": 4,
                   "num_experts_per_tok": 2, "moe_intermediate_size": 32}, "sdpa"),
    # MLA: one latent for all heads, num_key_value_heads = num_attention_heads as in the real config
    "deepseek_v3": ({"architectures": ["DeepseekV3ForCausalLM"], **DEC, "num_key_value_heads": 4,
                     "moe_intermediate_size": 32,
                     "n_routed_experts": 4, "n_shared_experts": 1, "num_experts_per_tok": 2,
                     "first_k_dense_replace": 1, "q_lora_rank": 32, "kv_lora_rank": 16, "qk_nope_head_dim": 16,
                     "qk_rope_head_dim": 8, "v_head_dim": 16, "n_group": 1, "topk_group": 1}, "sdpa"),
    "gpt_oss": ({"architectures": ["GptOssForCausalLM"], **DEC, "head_dim": 16, "num_local_experts": 4,
                 "num_experts_per_tok": 2, "sliding_window": 8}, "eager"),
}


def _config(model_type: str) -> tuple[dict, str]:
    cfg, attn = ARCHS[model_type]
    return {"model_type": model_type, **cfg}, attn


@pytest.mark.slow  # builds and simulates 18 architectures
@pytest.mark.parametrize("model_type", sorted(ARCHS))
def test_architecture_trains_and_infers(model_type):
    config, attn = _config(model_type)
    params = build_inventory(ModelConfig(config, "test"), None).num_params
    train = simulate_train(config, batch=2, seq=16, dtype="bfloat16", attn=attn)
    # bf16 weights + gradients + AdamW's 2 moments: >= 8 B per parameter at the second optimizer step
    assert train.phase("optimizer_step", 2).peak_bytes >= 8 * params
    assert train.phase("forward", 2).by_category["activations"] > 0
    infer = simulate_infer(config, batch=2, context=16, new_tokens=1, dtype="bfloat16", attn=attn)
    assert infer.peak_allocated_bytes >= 2 * params
    if model_type != "bert":  # an encoder has no cache
        assert infer.kv_cache_bytes and infer.kv_cache_bytes > 0
