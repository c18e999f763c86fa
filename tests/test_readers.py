"""The config readers left outside hfmem.model are views of ``hfmem.model.describe``: serving's heads / KV heads /
vocabulary (hfmem.scenarios.inference), RLHF's value head and rollout KV share (hfmem.scenarios.rlhf), the
advisor's tensor-parallel check (hfmem.plan.remedies) and the validation shape (benchmarks/validate.py).

Expected values are the models' published config.json numbers, written here: the repo's snapshot of the Hub's
config.json files (cache/models) for Llama-3.1-8B, Qwen2.5-7B, GPT-2, DeepSeek-V2-Lite and LLaVA-1.5-7B;
tiiuae/falcon-7b and tiiuae/falcon-40b's sizes inline; and, for what a multimodal text_config leaves out,
transformers' own configuration-class defaults (LlamaConfig, Gemma3TextConfig).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hfmem.scenarios import inference as I
from hfmem.scenarios import rlhf

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "cache" / "models"


def snapshot(model: str) -> dict:
    return json.loads((SNAPSHOT / model / "config.json").read_text())


# tiiuae/falcon-7b's config.json (sizes): multi_query without new_decoder_architecture -> one KV head
# (transformers' FalconAttention: num_kv_heads only with new_decoder_architecture or without multi_query)
FALCON_7B = {"model_type": "falcon", "architectures": ["FalconForCausalLM"], "hidden_size": 4544,
             "num_hidden_layers": 32, "num_attention_heads": 71, "multi_query": True,
             "new_decoder_architecture": False, "parallel_attn": True, "vocab_size": 65024}
# tiiuae/falcon-40b: multi_query with new_decoder_architecture -> num_kv_heads = 8
FALCON_40B = {"model_type": "falcon", "architectures": ["FalconForCausalLM"], "hidden_size": 8192,
              "num_hidden_layers": 60, "num_attention_heads": 128, "num_kv_heads": 8, "multi_query": True,
              "new_decoder_architecture": True, "vocab_size": 65024}
# A Gemma 3 image-text model whose text_config names only its widths (as google/gemma-3-4b-it's does): heads,
# KV heads and vocabulary come from transformers' Gemma3TextConfig defaults.
GEMMA3_MM = {"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"],
             "text_config": {"model_type": "gemma3_text", "hidden_size": 2560, "intermediate_size": 10240,
                             "num_hidden_layers": 34, "sliding_window": 1024},
             "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304,
                               "num_attention_heads": 16, "num_hidden_layers": 27, "image_size": 896,
                               "patch_size": 14}}


# -- serving: heads, KV heads, vocabulary ------------------------------------------------------------------

@pytest.mark.parametrize("model, heads, kv, vocab", [
    ("meta-llama/Llama-3.1-8B", 32, 8, 128_256),      # GQA
    ("Qwen/Qwen2.5-7B", 28, 4, 152_064),              # GQA
    ("openai-community/gpt2", 12, 12, 50_257),        # GPT-2's n_head, no KV field: MHA
    ("deepseek-ai/DeepSeek-V2-Lite-Chat", 16, None, 102_400),  # MLA: a latent, no KV heads to shard
])
def test_published_heads_kv_heads_and_vocabulary(model, heads, kv, vocab):
    config = snapshot(model)
    assert (I.attention_heads(config), I.kv_heads(config), I.vocab_size(config)) == (heads, kv, vocab)


def test_falcon_multi_query_has_one_kv_head_unless_new_decoder_architecture():
    assert (I.attention_heads(FALCON_7B), I.kv_heads(FALCON_7B), I.vocab_size(FALCON_7B)) == (71, 1, 65_024)
    assert (I.attention_heads(FALCON_40B), I.kv_heads(FALCON_40B)) == (128, 8)


def test_multimodal_text_config_is_read_with_its_class_defaults():
    from transformers import Gemma3TextConfig, LlamaConfig

    gemma = Gemma3TextConfig()
    assert (gemma.num_attention_heads, gemma.num_key_value_heads, gemma.vocab_size) == (8, 4, 262_208)
    assert (I.attention_heads(GEMMA3_MM), I.kv_heads(GEMMA3_MM), I.vocab_size(GEMMA3_MM)) == (8, 4, 262_208)
    # llava-1.5-7b-hf's text_config names the vocabulary (32,064: the image and pad tokens added) but no sizes:
    # LlamaConfig's 32 heads, and no num_key_value_heads (MHA)
    llava = snapshot("llava-hf/llava-1.5-7b-hf")
    assert llava["text_config"]["vocab_size"] == 32_064 and "num_attention_heads" not in llava["text_config"]
    llama = LlamaConfig()
    assert (llama.num_attention_heads, llama.num_key_value_heads) == (32, 32)
    assert (I.attention_heads(llava), I.kv_heads(llava), I.vocab_size(llava)) == (32, 32, 32_064)


def test_kv_share_follows_the_kv_heads():
    # tensor parallel 2: 8 KV heads -> 4 per GPU; falcon-7b's single KV head and an MLA latent are replicated
    assert I.kv_share_per_gpu(snapshot("meta-llama/Llama-3.1-8B"), 2) == 4 / 8
    assert I.kv_share_per_gpu(FALCON_7B, 2) == 1.0
    assert I.kv_share_per_gpu(FALCON_40B, 2) == 4 / 8
    assert I.kv_share_per_gpu(snapshot("deepseek-ai/DeepSeek-V2-Lite-Chat"), 2) == 1.0


# -- RLHF: the value head and the rollout's KV share --------------------------------------------------------

def test_value_head_is_hidden_plus_one_parameters():
    # LLaVA-1.5-7B's language model is Llama-2-7B: hidden 4096 (LlamaConfig's default; its text_config names
    # none), so the score Linear(4096, 1) with bias holds 4096 + 1 = 4097 parameters; the LM head is dropped.
    llava = snapshot("llava-hf/llava-1.5-7b-hf")
    census = [{"role": "embedding", "name": "model.embed_tokens.weight", "shape": [32_064, 4096], "count": 1,
               "params": 32_064 * 4096},
              {"role": "lm_head", "name": "lm_head.weight", "shape": [32_064, 4096], "count": 1,
               "params": 32_064 * 4096}]
    out = rlhf.value_model_census(census, llava)
    assert [t["role"] for t in out].count("lm_head") == 0
    assert sum(t["params"] for t in out) - 32_064 * 4096 == 4097
    # Qwen2.5-7B: hidden 3584 -> 3585
    qwen = rlhf.value_model_census(census, snapshot("Qwen/Qwen2.5-7B"))
    assert sum(t["params"] for t in qwen) - 32_064 * 4096 == 3585


def test_rollout_kv_share_is_the_serving_rule():
    from hfmem.api import analyze

    # vLLM rollout at tensor parallel 2, 1 prompt x group 2, 256 tokens, bf16 K/V
    kw = dict(rollout_tp=2, group_size=2, rollout_batch=1, rollout_tokens=256)
    # GPT-2: 12 layers x 2 (K, V) x 768 x 2 B = 36,864 B per token; 12 heads split 6 per GPU -> half
    r = analyze("openai-community/gpt2", offline=True)
    e = rlhf.estimate_rlhf(r.inventory.tensors, r.config, "grpo", rlhf.verl_settings(2, batch=1, seq=256),
                           largest_layer_params=r.inventory.layers[0].num_params, **kw)
    assert e.rollout_info["kv_cache_bytes_engine"] == 2 * 256 * 36_864
    assert e.rollout_info["kv_cache_bytes"] == 2 * 256 * 36_864 // 2
    # DeepSeek-V2-Lite: 27 layers x (kv_lora_rank 512 + rope 64) x 2 B = 31,104 B per token; the latent is
    # replicated on both GPUs
    r = analyze("deepseek-ai/DeepSeek-V2-Lite-Chat", offline=True)
    e = rlhf.estimate_rlhf(r.inventory.tensors, r.config, "grpo", rlhf.verl_settings(2, batch=1, seq=256),
                           largest_layer_params=r.inventory.layers[0].num_params, **kw)
    assert e.rollout_info["kv_bytes_per_token_engine"] == 27 * (512 + 64) * 2
    assert e.rollout_info["kv_cache_bytes"] == e.rollout_info["kv_cache_bytes_engine"] == 2 * 256 * 31_104


# -- the advisor's tensor-parallel check --------------------------------------------------------------------

def test_advisor_splits_the_described_heads():
    from hfmem.plan.advisor import remedies
    from hfmem.plan.gpus import parse_gpu
    from hfmem.scenarios.finetune import TrainSettings

    class Est:  # the remedy only compares totals: every setting "costs" 1 GiB
        device_total_bytes, cpu_bytes = 1 << 30, 0

    out = remedies(lambda s: Est(), TrainSettings(gpus=1), parse_gpu("A100-80GB"), model_config=FALCON_7B)
    r = next(x for x in out if x.id == "tensor_pipeline_parallel")
    tp = next(o for o in r.options if o["kind"] == "tensor parallel")
    # falcon-7b's 71 heads (a prime) and its one KV head: no 2-way tensor split; its 32 layers split in 2 stages
    assert tp["applicable"] is False and tp["reason"] == "71 attention heads / 1 KV heads do not split 2 ways"
    assert r.changes == {"pp": 2, "gpus": 2}


# -- benchmarks/validate.py's shape ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def validate():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import validate as module

    return module


def test_validation_shape_is_the_description(validate):
    s = validate.shape_of(snapshot("openai-community/gpt2"))
    # n_embd 768, n_head 12, n_layer 12, n_inner null -> 4 x 768, tied (GPT2Config's default)
    assert (s.hidden, s.heads, s.kv_heads, s.layers, s.intermediate, s.vocab, s.tie_word_embeddings) == (
        768, 12, 12, 12, 3072, 50_257, True)
    assert validate.shape_of(FALCON_7B).kv_heads == 1
    ds = validate.shape_of(snapshot("deepseek-ai/DeepSeek-V2-Lite-Chat"))
    # MLA: kv_lora_rank 512, qk_rope_head_dim 64 (transformers' DeepseekV2Config: head_dim = qk_rope_head_dim)
    assert (ds.kv_lora_rank, ds.rope_head_dim, ds.head_dim) == (512, 64, 64)
    # reduce_layers keeps everything but the layer count (calibrate.py's use)
    cut = validate.shape_of(validate.reduce_layers(snapshot("meta-llama/Llama-3.1-8B"), 2))
    assert (cut.layers, cut.hidden, cut.kv_heads, cut.vocab) == (2, 4096, 8, 128_256)
