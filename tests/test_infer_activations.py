"""Inference activation memory in closed form (issue 4, requirement 3), checked against fresh simulations.

Every expected value here comes from ``hfmem.simulate.simulate_infer`` run now, or from hand arithmetic of the
score tensors -- never from infer_activations.py itself. The settings are ones the calibration
(benchmarks/calibrate_infer.py: reference models at 2-6 layers, batch 2 (also 1 for one-KV-head and MLA
models), contexts 512/1024/2048 or 192/384/768 for gpt2) did not use: other models of the architecture with
other widths, a scaled-down DeepSeek-V3, full layer counts, batch 3-4, other contexts.

Tolerances. Activations (peak − weights − KV at the end of the phase) within 5%: the per-region fits are
exact on their calibration runs (their worst residual is recorded in infer_calibration.json), so what is
left off-calibration is the 512-byte rounding of small tensors (which does not scale with batch) and the
extrapolation of the fitted terms to other widths; measured here: at most 1.2% (gpt2-medium, fp32, batch 4),
for calibrated architectures elsewhere (contexts 32-32768, batch 1-4, about 40 configurations) at most 1.3%.
Total prefill peak (weights + KV cache from kv_cache.py + activations) within 1% of the simulated
``peak_bytes`` (the issue asks for 5%).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from hfmem.scenarios import infer_activations as IA
from hfmem.scenarios.kv_cache import kv_cache_bytes, kv_layout

MODELS = Path(__file__).resolve().parents[1] / "cache" / "models"
ACT_TOL = 0.05
TOTAL_TOL = 0.01

# A scaled-down DeepSeek-V3 (MLA, 64 routed + 2 shared experts, one leading dense layer): every width
# differs from the calibration model's.
DEEPSEEK_SMALL = {
    "model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"], "hidden_size": 1024,
    "num_attention_heads": 16, "num_key_value_heads": 16, "q_lora_rank": 384, "kv_lora_rank": 128,
    "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64, "intermediate_size": 2816,
    "moe_intermediate_size": 256, "n_routed_experts": 64, "num_experts_per_tok": 6, "n_shared_experts": 2,
    "first_k_dense_replace": 1, "num_hidden_layers": 3, "n_group": 8, "topk_group": 4, "vocab_size": 32000,
    "max_position_embeddings": 4096,
}


@pytest.fixture(autouse=True, scope="module")
def _quiet_fake_tensor():
    logging.getLogger("torch._subclasses.fake_tensor").disabled = True
    yield


def _config(name: str | dict, layers: int | None = None) -> dict:
    if isinstance(name, dict):
        return dict(name)
    path = MODELS / name / "config.json"
    if not path.exists():
        pytest.skip(f"{name} not in the snapshot")
    cfg = json.loads(path.read_text())
    if layers:
        key = "n_layer" if "n_layer" in cfg else "num_hidden_layers"
        cfg[key] = layers
        if isinstance(cfg.get("layer_types"), list):
            cfg["layer_types"] = cfg["layer_types"][:layers]
    return cfg


def _simulate(cfg: dict, *, batch: int, context: int, attn: str, dtype: str):
    from hfmem.simulate import simulate_infer

    result = simulate_infer(cfg, batch=batch, context=context, new_tokens=1, dtype=dtype, attn=attn)
    pre, dec = result.phase("prefill"), result.phase("decode")
    weights = pre.by_category["parameters"] + pre.by_category["buffers"]
    return {"weights": weights, "peak": pre.peak_bytes,
            "prefill": pre.peak_bytes - weights - pre.kv_cache_bytes,
            "decode": dec.peak_bytes - weights - dec.kv_cache_bytes}


DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}

CASES = [
    # (id, model, layers, attn, dtype, batch, context, architecture)
    ("llama-smollm2-135m-full", "HuggingFaceTB/SmolLM2-135M-Instruct", None, "sdpa", "bfloat16", 3, 384, "llama"),
    ("qwen3-0.6b-full-eager", "Qwen/Qwen3-0.6B", None, "eager", "bfloat16", 3, 640, "qwen3"),
    ("qwen3-moe-30b-a3b", "Qwen/Qwen3-30B-A3B", 3, "sdpa", "bfloat16", 3, 768, "qwen3_moe"),
    ("gemma2-2b-eager-sliding", "google/gemma-2-2b-it", 4, "eager", "bfloat16", 4, 384, "gemma2"),
    ("gpt2-medium-full-fp32", "openai-community/gpt2-medium", None, "sdpa", "float32", 4, 320, "gpt2"),
    ("deepseek-v3-scaled-down", DEEPSEEK_SMALL, None, "sdpa", "bfloat16", 3, 640, "deepseek_v3"),
    ("mixtral-eager", "mistralai/Mixtral-8x7B-v0.1", 2, "eager", "bfloat16", 3, 384, "mixtral"),
    ("llama-3.2-1b-flash", "meta-llama/Llama-3.2-1B", 2, "flash", "bfloat16", 4, 1536, "llama"),
]


# Qwen3-0.6B's full eager case (2 s) runs in the slow set; Qwen3's MoE case keeps the family in the default set
@pytest.mark.parametrize("model, layers, attn, dtype, batch, context, arch",
                         [pytest.param(*c[1:], marks=[pytest.mark.slow] if c[0] == "qwen3-0.6b-full-eager" else [])
                          for c in CASES], ids=[c[0] for c in CASES])
def test_prefill_and_decode_match_simulation(model, layers, attn, dtype, batch, context, arch):
    cfg = _config(model, layers)
    sim = _simulate(cfg, batch=batch, context=context, attn=attn, dtype=dtype)
    nb = DTYPE_BYTES[dtype]
    # hfmem.simulate drives the model by hand (argmax on the bf16 logits): no fp32 copy of the logits.
    pre = IA.prefill_activation_bytes(cfg, batch=batch, context=context, attn=attn, dtype_bytes=nb,
                                      fp32_logits_copy=False)
    dec = IA.decode_activation_bytes(cfg, batch=batch, cache_tokens=context, attn=attn, dtype_bytes=nb,
                                     fp32_logits_copy=False)
    assert pre.source == dec.source == f"calibrated:{arch}"
    assert sum(pre.by_part.values()) == pytest.approx(pre.bytes, abs=8)
    assert pre.bytes == pytest.approx(sim["prefill"], rel=ACT_TOL)
    assert dec.bytes == pytest.approx(sim["decode"], rel=ACT_TOL)
    kv = kv_cache_bytes(kv_layout(cfg), batch=batch, tokens=context, kv_bytes_per_elem=nb)
    total = IA.peak_bytes(sim["weights"], kv, pre)
    assert total == pytest.approx(sim["peak"], rel=TOTAL_TOL)


def test_decode_first_step_beyond_the_sliding_window():
    """Mistral-7B-v0.1 (window 4096), a 4608-token prompt: after the prefill every layer still holds the
    whole prompt; the first decode step copies the window (eager, 32 heads on 8 KV heads)."""
    cfg = _config("mistralai/Mistral-7B-v0.1", 2)
    sim = _simulate(cfg, batch=1, context=4608, attn="eager", dtype="bfloat16")
    dec = IA.decode_activation_bytes(cfg, batch=1, cache_tokens=4608, attn="eager", fp32_logits_copy=False)
    assert dec.bytes == pytest.approx(sim["decode"], rel=ACT_TOL)
    assert dec.by_part.get("sliding_prompt_bytes") == 1 * (4608 - 4096) * 2 * (2 * 8 * 128)  # layer 1's K+V


# -- the eager scores by hand ---------------------------------------------------------------------------------

TINY_MHA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 256,
            "num_attention_heads": 8, "num_key_value_heads": 8, "intermediate_size": 64, "num_hidden_layers": 2,
            "vocab_size": 1000, "max_position_embeddings": 4096}


def test_eager_minus_sdpa_is_the_score_tensors():
    """With a tiny MLP both attention implementations peak inside attention, so D(s) = A_eager − A_sdpa
    is a quadratic in s whose s² part is the score tensors alone. By hand, per batch element, at the
    softmax (transformers' eager_attention_forward, no_grad): the masked bf16 scores a·s²·2 B, F.softmax's
    fp32 upcast of them a·s²·4 B (``softmax(x, dtype=float32)`` converts a bf16 input first) and the fp32
    probabilities a·s²·4 B, plus the materialised bf16 causal mask [b, 1, s, s]: s²·2 B. SDPA (flash)
    keeps no s×s tensor. Second difference over s0, 2s0, 3s0: 2·b·(10·a + 2)·s0²."""
    b, a, s0 = 2, TINY_MHA["num_attention_heads"], 128
    d = [_simulate(TINY_MHA, batch=b, context=k * s0, attn="eager", dtype="bfloat16")["prefill"]
         - _simulate(TINY_MHA, batch=b, context=k * s0, attn="sdpa", dtype="bfloat16")["prefill"] for k in (1, 2, 3)]
    hand = 2 * b * (2 * a + 4 * a + 4 * a + 2) * s0 ** 2
    assert d[2] - 2 * d[1] + d[0] == hand
    # The closed form carries the same s² terms: prefill, attention-kernel region of the llama tables.
    for s in (2048, 8192):
        eager = IA.prefill_activation_bytes(TINY_MHA, batch=b, context=s, attn="eager", fp32_logits_copy=False)
        sdpa = IA.prefill_activation_bytes(TINY_MHA, batch=b, context=s, attn="sdpa", fp32_logits_copy=False)
        assert eager.peak_region == "full_core" and "quadratic_bytes" not in sdpa.by_part
        assert eager.by_part["quadratic_bytes"] == pytest.approx(b * (10 * a + 2) * s * s, rel=1e-3)


# -- settings and bookkeeping -----------------------------------------------------------------------------------

def test_fp32_logits_copy_is_generates_copy():
    cfg = _config("HuggingFaceTB/SmolLM2-135M-Instruct")
    with_copy = IA.decode_activation_bytes(cfg, batch=3, cache_tokens=100, fp32_logits_copy=True)
    without = IA.decode_activation_bytes(cfg, batch=3, cache_tokens=100, fp32_logits_copy=False)
    assert with_copy.regions["post"] - without.regions["post"] == 4 * 3 * cfg["vocab_size"]
    assert with_copy.bytes >= without.bytes


def test_uncalibrated_architecture_falls_back_and_says_so():
    cfg = _config("CohereForAI/aya-23-8B")
    est = IA.prefill_activation_bytes(cfg, batch=1, context=512)
    assert est.source == "structural:llama"
    assert any("not calibrated" in note for note in est.assumptions)


@pytest.mark.parametrize("cfg, kwargs, message", [
    ("meta-llama/Llama-3.2-1B", {"attn": "flash", "dtype_bytes": 4}, "float16/bfloat16"),
    ("meta-llama/Llama-3.2-1B", {"attn": "paged"}, "unknown attention"),
    ("meta-llama/Llama-3.2-1B", {"dtype_bytes": 1}, "dtype_bytes"),
    ("google/gemma-2-2b-it", {"attn": "sdpa"}, "use attn='eager'"),
    ("mistralai/Mixtral-8x7B-v0.1", {"dtype_bytes": 4}, "cannot run"),
])
def test_unsupported_settings_raise(cfg, kwargs, message):
    with pytest.raises(IA.InferActivationError, match=message):
        IA.prefill_activation_bytes(_config(cfg), batch=1, context=128, **kwargs)


# -- pure state-space decoders (structural:mamba / structural:mamba2) ------------------------------------------
# Fitted on MambaConfig() (h 768) / h 512 state 32 / expand 3 and Mamba2Config() (h 4096) / h 2048 (chunk 256 and
# 128); checked here on other widths, batch and contexts (Mamba-370m-like h 1024; Mamba2-780m-like h 1536, 48
# heads, one group, a context that is not a multiple of the chunk).

def _ssm_config(kind: str, **kw) -> dict:
    transformers = pytest.importorskip("transformers")
    cls = {"mamba": transformers.MambaConfig, "mamba2": transformers.Mamba2Config}[kind]
    cfg = cls(num_hidden_layers=2, **kw).to_dict()
    cfg["architectures"] = [{"mamba": "MambaForCausalLM", "mamba2": "Mamba2ForCausalLM"}[kind]]
    return cfg


@pytest.mark.parametrize("kind, kw, batch, context", [
    pytest.param("mamba", {"hidden_size": 1024}, 2, 320, marks=pytest.mark.slow),  # 4 s: the slow set
    ("mamba2", {"hidden_size": 1536, "num_heads": 48, "n_groups": 1}, 2, 640),
], ids=["mamba-h1024", "mamba2-h1536"])
def test_state_space_models_match_simulation(kind, kw, batch, context):
    cfg = _ssm_config(kind, **kw)
    sim = _simulate(cfg, batch=batch, context=context, attn="eager", dtype="bfloat16")
    pre = IA.prefill_activation_bytes(cfg, batch=batch, context=context, fp32_logits_copy=False)
    dec = IA.decode_activation_bytes(cfg, batch=batch, cache_tokens=context, fp32_logits_copy=False)
    assert pre.source == dec.source == f"structural:{kind}"
    assert any("mamba-ssm" in a for a in pre.assumptions)
    assert pre.bytes == pytest.approx(sim["prefill"], rel=ACT_TOL)
    assert dec.bytes == pytest.approx(sim["decode"], rel=ACT_TOL)
