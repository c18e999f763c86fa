"""hfmem.scenarios.peft against real PEFT (issue 5, requirement 5).

Each case builds the model on the meta device from a real config.json (cache/models, shrunk to 2 layers
where the width is what matters), counts the census with hfmem, applies ``peft.get_peft_model`` with the same
LoraConfig and compares with PEFT's own ``get_nb_trainable_parameters()`` -- trainable and total, exactly --
and, where the layout is unambiguous, the shapes of every trainable tensor. PEFT works on meta (DoRA too).
Versions: peft 0.22.0, transformers 5.24.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections import Counter

import pytest

from conftest import ROOT
from hfmem.errors import UsageError
from hfmem.scenarios.peft import AdapterPlan, lora_adapters

pytest.importorskip("peft")

LLAMA32_3B = "meta-llama/Llama-3.2-3B"

# Llama-4 text with a Linear router (Llama4Router subclasses nn.Linear); no Llama-4 config is cached, so
# small made-up widths.
LLAMA4_TINY = {"model_type": "llama4_text", "architectures": ["Llama4ForCausalLM"], "hidden_size": 256,
               "intermediate_size": 512, "intermediate_size_mlp": 1024, "num_local_experts": 4,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
               "vocab_size": 1000, "interleave_moe_layer_step": 1}


def _config(model: str | dict, layers: int | None = 2) -> dict:
    cfg = dict(model) if isinstance(model, dict) else json.loads(
        (ROOT / "cache/models" / model / "config.json").read_text())
    if layers is not None:
        for key in ("num_hidden_layers", "n_layer"):
            if key in cfg:
                cfg[key] = layers
        if isinstance(cfg.get("layer_types"), list):
            cfg["layer_types"] = cfg["layer_types"][:layers]
    return cfg


def _build(cfg: dict):
    from hfmem.inventory.meta_model import build_model

    return build_model(cfg, cfg["architectures"][0])[0]


def _census(cfg: dict) -> list[dict]:
    from hfmem.inventory.meta_model import measure

    return measure(_build(cfg))["tensors"]


def _peft(cfg: dict, **lora):
    """(trainable, total, Counter of trainable shapes) from real PEFT."""
    from peft import LoraConfig, get_peft_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(_build(cfg), LoraConfig(**lora))
    shapes = Counter(tuple(p.shape) for _, p in pm.named_parameters() if p.requires_grad)
    trainable, total = pm.get_nb_trainable_parameters()
    return trainable, total, shapes


def _hfmem(cfg: dict, tensors: list[dict], **lora) -> AdapterPlan:
    kw = {"rank": lora.pop("r", 8), "targets": lora.pop("target_modules", None), "dora": lora.pop("use_dora", False),
          "model_type": cfg.get("model_type")}
    return lora_adapters(tensors, **kw, **lora)


def _shapes(plan: AdapterPlan) -> Counter:
    out: Counter = Counter()
    for e in plan.adapters + plan.saved:
        out[tuple(e["shape"])] += e["count"]
    return out


CASES = [
    # (model, LoraConfig kwargs, compare shapes)
    ("meta-llama/Llama-3.2-1B", {"r": 8, "target_modules": ["q_proj", "v_proj"]}, True),
    ("meta-llama/Llama-3.2-1B", {"r": 16, "target_modules": ["q_proj", "v_proj"]}, True),
    ("meta-llama/Llama-3.2-1B", {"r": 64, "target_modules": ["q_proj", "v_proj"]}, True),
    ("meta-llama/Llama-3.2-1B", {"r": 16, "target_modules": "all-linear"}, True),
    ("meta-llama/Llama-3.2-1B", {"r": 8}, True),  # PEFT's default for llama: q_proj, v_proj
    ("meta-llama/Llama-3.2-1B", {"r": 8, "target_modules": "all-linear", "use_dora": True}, True),
    ("meta-llama/Llama-3.2-1B", {"r": 8, "target_modules": r".*\.(q_proj|v_proj)"}, True),
    ("meta-llama/Llama-3.2-1B", {"r": 8, "target_modules": ["q_proj", "lm_head"], "use_dora": True}, True),
    ("meta-llama/Llama-3.2-1B", {"r": 8, "target_modules": "lm_head"}, True),  # a top-level regex
    ("meta-llama/Llama-3.2-1B", {"r": 8, "target_modules": ["self_attn.q_proj", "mlp.up_proj"]}, True),
    # tied LM head and embedding: each modules_to_save copy is full size
    ("meta-llama/Llama-3.2-1B", {"r": 8, "target_modules": "all-linear",
                                 "modules_to_save": ["lm_head", "embed_tokens"]}, True),
    # peft 0.22: "norm" copies only the final norm (0.21's bare endswith also copied input_layernorm and
    # post_attention_layernorm: 75,776 trainable on these 2 layers, 67,584 under 0.22)
    ("meta-llama/Llama-3.2-1B", {"r": 8, "target_modules": ["q_proj"], "modules_to_save": ["norm"]}, True),
    ("meta-llama/Llama-3.2-1B", {"r": 8, "target_modules": "all-linear", "exclude_modules": ["o_proj"]}, True),
    ("Qwen/Qwen2-0.5B-Instruct", {"r": 8, "target_modules": ["q_proj", "k_proj"], "bias": "all"}, True),
    ("Qwen/Qwen2-0.5B-Instruct", {"r": 8, "target_modules": ["q_proj", "o_proj"], "bias": "lora_only"}, True),
    ("Qwen/Qwen2-0.5B-Instruct", {"r": 8, "target_modules": "all-linear", "lora_bias": True}, True),
    # GPT-2: Conv1D, fused c_attn, two differently shaped c_proj, tied head
    ("openai-community/gpt2", {"r": 8, "target_modules": ["c_attn"]}, True),
    ("openai-community/gpt2", {"r": 8}, True),
    ("openai-community/gpt2", {"r": 16, "target_modules": "all-linear", "use_dora": True}, True),
    ("openai-community/gpt2", {"r": 8, "target_modules": ["c_attn", "wte"], "use_dora": True}, True),
    ("openai-community/gpt2", {"r": 8, "target_modules": ["lm_head"]}, True),
    ("openai-community/gpt2", {"r": 8, "target_modules": ["c_attn"], "bias": "all"}, True),
    ("openai-community/gpt2", {"r": 8, "target_modules": ["c_attn"], "modules_to_save": ["lm_head", "wte"]}, True),
    # the originals' biases stay frozen under modules_to_save, the copies train
    ("openai-community/gpt2", {"r": 8, "target_modules": ["c_attn"], "bias": "all", "modules_to_save": ["c_proj"]},
     True),
    # MoE under transformers 5: fused experts, custom routers, PEFT's v4 -> v5 conversion
    ("mistralai/Mixtral-8x7B-v0.1", {"r": 8, "target_modules": "all-linear"}, True),
    ("mistralai/Mixtral-8x7B-v0.1", {"r": 16, "target_modules": ["q_proj", "v_proj"]}, True),
    ("mistralai/Mixtral-8x7B-v0.1", {"r": 16, "target_modules": ["q_proj", "v_proj"], "use_dora": True}, True),
    ("mistralai/Mixtral-8x7B-v0.1", {"r": 8, "target_modules": ["gate"]}, True),
    ("mistralai/Mixtral-8x7B-v0.1", {"r": 8, "target_modules": r".*\.(q_proj|w1|w3)"}, True),
    ("mistralai/Mixtral-8x7B-v0.1", {"r": 4, "target_modules": [],
                                     "target_parameters": ["experts.gate_up_proj", "down_proj"]}, True),
    ("Qwen/Qwen3-30B-A3B", {"r": 8, "target_modules": "all-linear"}, True),
    ("Qwen/Qwen3-30B-A3B", {"r": 8, "target_modules": ["gate_proj", "up_proj", "down_proj"]}, True),
    # peft 0.22: v4 names that match only nn.Linear modules stay module targets (the first dense MLP and the
    # shared experts), and the fused routed experts are targeted as parameters as well (0.21 skipped the Linears)
    ("deepseek-ai/DeepSeek-V2-Lite-Chat", {"r": 8, "target_modules": "all-linear"}, True),
    ("deepseek-ai/DeepSeek-V2-Lite-Chat", {"r": 8, "target_modules": ["gate_proj", "up_proj", "down_proj"]}, True),
    # the Linears excluded, "down_proj" matches no module: converted to the experts' parameter only
    ("deepseek-ai/DeepSeek-V2-Lite-Chat", {"r": 8, "target_modules": ["down_proj"], "exclude_modules": ["down_proj"]},
     True),
    # peft 0.22 converts qwen2_moe itself too (0.21 left it alone): router and fused experts as parameters, the
    # shared expert's Linears as modules
    ("Qwen/Qwen1.5-MoE-A2.7B-Chat", {"r": 8, "target_modules": "all-linear"}, True),
    ("Qwen/Qwen1.5-MoE-A2.7B-Chat", {"r": 8, "target_modules": ["gate"]}, True),  # the router: gate.weight
    ("Qwen/Qwen1.5-MoE-A2.7B-Chat", {"r": 16, "target_modules": ["gate_proj", "up_proj", "down_proj"]}, True),
    ("openai/gpt-oss-20b", {"r": 8, "target_modules": "all-linear"}, True),
    # gpt-oss experts are stored transposed: same count, A/B non-rank sizes swapped
    ("openai/gpt-oss-20b", {"r": 8, "target_modules": ["q_proj"],
                            "target_parameters": ["experts.gate_up_proj", "experts.down_proj"]}, False),
    (LLAMA4_TINY, {"r": 8, "target_modules": "all-linear"}, True),  # the Linear router is adapted
]


@pytest.mark.parametrize("model,lora,shapes", CASES,
                         ids=[f"{m if isinstance(m, str) else m['model_type']}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_matches_real_peft(model, lora, shapes):
    cfg = _config(model)
    plan = _hfmem(cfg, _census(cfg), **dict(lora))
    trainable, total, peft_shapes = _peft(cfg, **lora)
    assert (plan.trainable_params, plan.total_params) == (trainable, total)
    if shapes and lora.get("bias", "none") == "none":
        assert _shapes(plan) == peft_shapes
    elif shapes:  # the base biases made trainable are counted, not listed
        assert not _shapes(plan) - peft_shapes


def test_llama32_3b_published_peft_numbers():
    """PEFT's MetaMathQA method comparison (ground-truth.md §4), full 28-layer Llama-3.2-3B."""
    cfg = _config(LLAMA32_3B, layers=None)
    tensors = _census(cfg)
    qv = ["q_proj", "v_proj"]
    assert lora_adapters(tensors, rank=32, targets=qv).trainable_params == 9_175_040
    assert lora_adapters(tensors, rank=64, targets=qv).trainable_params == 18_350_080
    assert lora_adapters(tensors, rank=32, targets=qv, dora=True).trainable_params == 9_289_728
    # "lora r10 target-mlp": the MLP's three projections
    mlp = lora_adapters(tensors, rank=10, targets=["gate_proj", "up_proj", "down_proj"])
    assert mlp.trainable_params == 9_461_760
    assert {m["name"]: m["count"] for m in mlp.matched_modules} == {"gate_proj": 28, "up_proj": 28, "down_proj": 28}
    # and real PEFT on the full model agrees
    assert _peft(cfg, r=32, target_modules=qv, use_dora=True)[:1] == (9_289_728,)
    assert _peft(cfg, r=10, target_modules=["gate_proj", "up_proj", "down_proj"])[:1] == (9_461_760,)


def test_plan_fields():
    cfg = _config("openai-community/gpt2")
    plan = lora_adapters(_census(cfg), rank=8, targets=["c_attn"], dora=True)
    assert plan.adapter_dtype_bytes == 4 and plan.adapter_bytes == 4 * plan.adapter_params
    by_name = {a["name"]: a for a in plan.adapters}
    assert by_name["c_attn.lora_A"]["shape"] == [8, 768] and by_name["c_attn.lora_A"]["count"] == 2
    assert by_name["c_attn.lora_B"]["shape"] == [2304, 8]
    assert by_name["c_attn.lora_magnitude_vector"]["shape"] == [2304]
    assert all(a["role"] == "adapter" and a["of"] == "c_attn" for a in plan.adapters)
    assert plan.matched_modules == ({"name": "c_attn", "count": 2, "kind": "conv1d", "rank": 8},)
    assert plan.frozen_params == plan.base_params == sum(t["params"] for t in plan.frozen)
    # all-linear on a converted MoE: the fused gate_up_proj gets rank 2r
    moe = _config("mistralai/Mixtral-8x7B-v0.1")
    ranks = {m["name"]: (m["kind"], m["rank"]) for m in lora_adapters(_census(moe), rank=8, model_type="mixtral").matched_modules}
    assert ranks["experts.gate_up_proj"] == ("parameter", 16) and ranks["experts.down_proj"] == ("parameter", 8)
    assert ranks["gate.weight"] == ("parameter", 8) and ranks["q_proj"] == ("linear", 8)
    # approximations are reported
    llama = _config("meta-llama/Llama-3.2-1B")
    notes = lora_adapters(_census(llama), rank=8, targets=r".*\.q_proj").notes
    assert any("leaf names" in n for n in notes)
    notes = lora_adapters(_census(llama), rank=8, targets=["self_attn.q_proj"]).notes
    assert any("last component" in n for n in notes)


ERRORS = [
    # (model, LoraConfig kwargs): PEFT raises, so does hfmem
    ("mistralai/Mixtral-8x7B-v0.1", {"r": 8, "target_modules": "all-linear", "use_dora": True}),
    ("mistralai/Mixtral-8x7B-v0.1", {"r": 8}),  # the conversion empties the default targets
    ("mistralai/Mixtral-8x7B-v0.1", {"r": 8, "target_modules": ["experts"]}),
    ("Qwen/Qwen3-30B-A3B", {"r": 8, "target_modules": ["up_proj", "down_proj"]}),
    ("openai-community/gpt2", {"r": 8, "target_modules": ["ln_f"]}),
    ("openai-community/gpt2", {"r": 8, "target_modules": ["wte"], "lora_bias": True}),
    ("openai-community/gpt2", {"r": 8, "target_modules": ["c_attn"], "lora_bias": True, "use_dora": True}),
    ("openai-community/gpt2", {"r": 8, "target_modules": ["nothing_here"]}),
    ("meta-llama/Llama-3.2-1B", {"r": 8, "target_modules": "q_proj|v_proj"}),  # full-path regex: no match
    ("meta-llama/Llama-3.2-1B", {"r": 8, "target_modules": ["q_proj"], "target_parameters": ["q_proj.weight"]}),
]


@pytest.mark.parametrize("model,lora", ERRORS, ids=[f"{m}-{i}" for i, (m, _) in enumerate(ERRORS)])
def test_raises_where_peft_raises(model, lora):
    cfg = _config(model)
    with pytest.raises(Exception):
        _peft(cfg, **lora)
    with pytest.raises(UsageError):
        _hfmem(cfg, _census(cfg), **dict(lora))


def test_pure_module():
    code = ("import sys, hfmem.scenarios.peft; "
            "print(sorted(m for m in ('torch', 'peft', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
