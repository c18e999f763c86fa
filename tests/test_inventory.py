"""Exact inventories on the meta device, checked against published counts and hand arithmetic.

Configs come from the shipped snapshot (cache/models/*/config.json, copies of real Hub configs)."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest

from hfmem.errors import UnsupportedArchitectureError
from hfmem.inventory.build import build_inventory
from hfmem.metadata.config import ModelConfig

ROOT = Path(__file__).resolve().parents[1]


def cfg(repo: str) -> dict:
    return json.loads((ROOT / "cache" / "models" / repo / "config.json").read_text())


def inv_of(config: dict, headers=None, **kw):
    return build_inventory(ModelConfig(config, "test"), headers, **kw)


def llama_like(h, ff, layers, vocab, heads, kv_heads, *, tied=False, qkv_bias=False, o_bias=False, head_dim=None):
    """Parameters of a Llama-layout decoder (RMSNorm, SwiGLU), by hand."""
    d = head_dim or h // heads
    attn = h * heads * d + 2 * h * kv_heads * d + heads * d * h
    attn += (heads * d + 2 * kv_heads * d) * qkv_bias + h * o_bias
    layer = attn + 3 * h * ff + 2 * h
    return vocab * h * (1 if tied else 2) + layers * layer + h


@pytest.mark.parametrize("repo,published", [
    ("meta-llama/Llama-2-7b-hf", 6_738_415_616),  # Llama 2 paper / model card
    ("mistralai/Mixtral-8x7B-v0.1", 46_702_792_704),  # Mixtral model card (46.7B)
    ("baichuan-inc/Baichuan-7B", 7_000_559_616),  # product.md: BaiChuanForCausalLM, untied head
])
def test_published_counts(repo, published):
    inv = inv_of(cfg(repo))
    assert inv.num_params == published


def test_baichuan_by_hand_and_mapping_note():
    c = cfg("baichuan-inc/Baichuan-7B")
    inv = inv_of(c)
    assert inv.num_params == llama_like(4096, 11008, 32, 64000, 32, 32)
    assert inv.method == "meta-model (mapped)" and inv.architecture == "LlamaForCausalLM"
    assert any("custom code not run" in n for n in inv.notes)
    # Largest layer: the 64000 x 4096 embedding and the untied head, 1000.0 MiB each at float32 (seed table)
    size, names = inv.largest_layer_at(32)
    assert size == 64000 * 4096 * 4 == 1_048_576_000
    assert sorted(names) == ["lm_head", "model.embed_tokens"]


@pytest.mark.parametrize("repo,expected", [
    # ChatGLM3-6B: 6,243,584,000 (THUDM's published count), = Qwen2 layout with 2 KV groups, padded vocab
    ("THUDM/chatglm3-6b", llama_like(4096, 13696, 28, 65024, 32, 2, qkv_bias=True)),
    ("internlm/internlm-chat-7b", llama_like(4096, 11008, 32, 103168, 32, 32, qkv_bias=True, o_bias=True)),
    ("internlm/internlm2_5-7b-chat", llama_like(4096, 14336, 32, 92544, 32, 8)),
    ("Qwen/Qwen-1_8B-Chat", llama_like(2048, 11008 // 2, 24, 151936, 16, 16, qkv_bias=True)),
    ("openbmb/MiniCPM-2B-sft-bf16", llama_like(2304, 5760, 40, 122753, 36, 36, tied=True)),
])
def test_custom_code_families_by_hand(repo, expected):
    assert inv_of(cfg(repo)).num_params == expected


def test_chatglm3_published():
    assert inv_of(cfg("THUDM/chatglm3-6b")).num_params == 6_243_584_000


def test_phi2_old_remote_code_revision_by_hand():
    h, ff, L, v = 2560, 4 * 2560, 32, 51200
    layer = 2 * h + 4 * (h * h + h) + (h * ff + ff) + (ff * h + h)  # LayerNorm, q/k/v/dense, fc1, fc2 (biases)
    expected = v * h + L * layer + 2 * h + (h * v + v)  # embedding, final LayerNorm, head with bias
    assert inv_of(cfg("microsoft/phi-2")).num_params == expected == 2_779_683_840  # model card: 2.7B


def test_orion_layernorm_with_bias():
    h, ff, L, v = 5120, 15360, 40, 84608
    layer = 4 * h * h + 3 * h * ff + 2 * (2 * h)  # LayerNorms carry weight and bias
    assert inv_of(cfg("OrionStarAI/Orion-14B-Chat")).num_params == 2 * v * h + L * layer + 2 * h


def test_tied_weights_counted_once():
    inv = inv_of(cfg("google-bert/bert-base-uncased"))
    assert inv.architecture == "BertForMaskedLM"
    v, h = 30522, 768
    # the MLM decoder weight is the word embedding, and its bias is cls.predictions.bias
    assert inv.tied_params == v * h + v
    assert any("decoder.weight" in n for group in inv.tied_weights for n in group)
    gemma = inv_of(cfg("google/gemma-2-2b-it"))
    assert gemma.tied_params == 256000 * 2304
    assert gemma.num_params == 2_614_341_888  # Gemma 2 report: 2.6B; embedding counted once


def test_buffers_persistent_and_not():
    inv = inv_of(cfg("google-bert/bert-base-uncased"))
    # position_ids and token_type_ids: 512 int64 each, registered non-persistent in transformers 5
    assert inv.buffer_bytes == 2 * 512 * 8
    llama = inv_of(cfg("meta-llama/Llama-2-7b-hf"))
    # rotary inv_freq and original_inv_freq, head_dim/2 = 64 float32 each, non-persistent
    assert llama.non_persistent_buffer_bytes == 2 * 64 * 4 and llama.persistent_buffer_bytes == 0


def test_deepseek_v3_by_hand_without_memory_blowup():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    c = cfg("deepseek-ai/DeepSeek-V3")
    inv = inv_of(c)
    grew_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grew_mib < 1024, f"building DeepSeek-V3 on meta grew the process by {grew_mib:.0f} MiB"
    h, v, L, dense = 7168, 129280, 61, 3
    nh, ql, kvl, nope, rope, vd = 128, 1536, 512, 128, 64, 128
    attn = h * ql + ql + ql * nh * (nope + rope) + h * (kvl + rope) + kvl + kvl * nh * (nope + vd) + nh * vd * h
    mlp_dense = 3 * h * 18432
    moe = 256 * 3 * h * 2048 + 3 * h * 2048 + 256 * h  # routed experts, 1 shared expert, router weight
    expected = 2 * v * h + L * (attn + 2 * h) + dense * mlp_dense + (L - dense) * moe + h
    assert inv.num_params == expected
    assert 670e9 < expected < 672e9  # DeepSeek-V3 report: 671B total parameters (MTP module excluded)


def test_gpt_oss_120b_and_qwen3_235b_build():
    assert abs(inv_of(cfg("openai/gpt-oss-120b")).num_params - 116.83e9) < 0.01e9  # model card: 116.83B
    qwen3_235b = {  # Qwen/Qwen3-235B-A22B config.json (values from the Qwen3 technical report, Table 2)
        "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 4096,
        "intermediate_size": 12288, "moe_intermediate_size": 1536, "num_hidden_layers": 94,
        "num_attention_heads": 64, "num_key_value_heads": 4, "head_dim": 128, "num_experts": 128,
        "num_experts_per_tok": 8, "vocab_size": 151936, "tie_word_embeddings": False, "decoder_sparse_step": 1,
        "mlp_only_layers": [], "torch_dtype": "bfloat16"}
    n = inv_of(qwen3_235b).num_params
    assert 234.5e9 < n < 235.5e9  # "235B total parameters"


def test_unknown_architecture_without_headers():
    with pytest.raises(UnsupportedArchitectureError, match="rwkv5"):
        inv_of(cfg("RWKV/rwkv-5-world-3b"))


def test_mapping_dropped_when_headers_disagree(tmp_path):
    np = pytest.importorskip("numpy")
    from safetensors.numpy import save_file

    from hfmem.metadata.safetensors import read_local_checkpoint

    # A tiny "baichuan" whose checkpoint has an extra tensor the Llama layout does not have
    c = {"architectures": ["BaiChuanForCausalLM"], "model_type": "baichuan", "auto_map": {"AutoModelForCausalLM": "x.Y"},
         "hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 2, "num_hidden_layers": 1,
         "vocab_size": 10, "tie_word_embeddings": False}
    z = lambda *s: np.zeros(s, dtype=np.float32)  # noqa: E731
    tensors = {"model.embed_tokens.weight": z(10, 8), "lm_head.weight": z(10, 8), "model.norm.weight": z(8),
               "model.layers.0.self_attn.W_pack.weight": z(24, 8), "model.layers.0.self_attn.o_proj.weight": z(8, 8),
               "model.layers.0.mlp.gate_proj.weight": z(16, 8), "model.layers.0.mlp.up_proj.weight": z(16, 8),
               "model.layers.0.mlp.down_proj.weight": z(8, 16), "model.layers.0.input_layernorm.weight": z(8),
               "model.layers.0.post_attention_layernorm.weight": z(8)}
    save_file(tensors, str(tmp_path / "model.safetensors"))
    inv = inv_of(c, read_local_checkpoint(tmp_path))
    assert inv.method == "meta-model (mapped)"  # same shapes: mapping confirmed
    assert inv.num_params == sum(t.size for t in tensors.values())
    tensors["model.layers.0.self_attn.extra.weight"] = z(8, 8)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    inv = inv_of(c, read_local_checkpoint(tmp_path))
    assert inv.method == "safetensors-headers"
    assert inv.num_params == sum(t.size for t in tensors.values())
    assert any("counted from the headers instead" in n for n in inv.notes)
    # header layers group by numbered block: model.layers.0 is one residual group
    size, names = inv.largest_layer_at(32)
    assert names == ["model.layers.0"] and size == 4 * (24 * 8 + 2 * 64 + 3 * 128 + 2 * 8)  # W_pack, o+extra, MLP, norms


def test_minilm_meta_model_agrees_with_header(minilm_dir):
    from hfmem.metadata.config import parse_config
    from hfmem.metadata.safetensors import read_local_checkpoint

    config = parse_config((minilm_dir / "config.json").read_bytes(), "minilm")
    inv = build_inventory(config, read_local_checkpoint(minilm_dir))
    assert inv.num_params == 22_713_216
    assert inv.params_dtype_source == "safetensors headers"
    assert inv.params_by_dtype == {"float32": 22_713_216}
    assert any("matches the safetensors headers" in n for n in inv.notes)


def test_census_accounts_for_every_parameter_once():
    """The tensor census (weight formats, LoRA counts) covers each parameter exactly once, for every
    counted snapshot model: its sum equals the inventory's own count, made by a different walk
    (named_parameters, tied weights once)."""
    from hfmem.sources import snapshot

    root = Path(__file__).resolve().parents[1] / "cache"
    checked = 0
    for repo in snapshot.load_index(root)["models"]:
        entry = snapshot.lookup(repo, root)
        if entry.inventory is None or not entry.inventory.get("tensors"):
            continue
        assert sum(g["params"] for g in entry.inventory["tensors"]) == entry.inventory["num_params"], repo
        checked += 1
    assert checked >= 80


def test_census_roles_on_known_models():
    from hfmem.sources import snapshot

    root = Path(__file__).resolve().parents[1] / "cache"
    gemma = {(g["role"], g["name"]): g for g in snapshot.lookup("google/gemma-2-2b-it", root).inventory["tensors"]}
    assert gemma[("lm_head", "lm_head")]["tied"] and gemma[("lm_head", "lm_head")]["params"] == 0
    llama = {(g["role"], g["name"]): g for g in snapshot.lookup("meta-llama/Llama-2-7b-hf", root).inventory["tensors"]}
    # Llama-2-7B by hand: 32 layers of q/k/v/o 4096×4096 and gate/up 4096→11008, down 11008→4096
    assert llama[("linear", "q_proj")]["count"] == 32 and llama[("linear", "q_proj")]["params"] == 32 * 4096 * 4096
    assert llama[("linear", "down_proj")]["in_features"] == 11008
    assert llama[("lm_head", "lm_head")]["params"] == 32000 * 4096
    mixtral = {(g["role"], g["name"]): g for g in snapshot.lookup("mistralai/Mixtral-8x7B-v0.1", root).inventory["tensors"]}
    assert mixtral[("experts", "experts.gate_up_proj")]["shape"] == [8, 2 * 14336, 4096]
    assert mixtral[("router", "gate.weight")]["params"] == 32 * 8 * 4096
