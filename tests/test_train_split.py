"""One LoRA target rule for the adapter count and the activation forms, checked against PEFT itself; and no
guessed family for a model type nobody calibrated (Korthikanti et al. 2022's generic form instead).

Expected values: PEFT 0.21's own ``check_target_module_exists`` / ``get_peft_model(...).targeted_module_names``
on tiny real transformers models (random weights, no Hub), PEFT's documented rules written out by hand, and
Korthikanti et al. 2022 (arXiv 2205.05198) Eq. 1's 34·s·b·h per layer computed by hand.
"""

from __future__ import annotations

import pytest

from hfmem.scenarios import peft as P
from hfmem.scenarios import train_activations as T
from hfmem.scenarios.lora_activations import _lora_layer_delta
from hfmem.scenarios.train_structures import STRUCTURES

LLAMA_LEAVES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _full(leaf: str, layer: int = 0) -> str:
    """The module's full name in transformers' LlamaForCausalLM."""
    part = "self_attn" if leaf in LLAMA_LEAVES[:4] else "mlp"
    return f"model.layers.{layer}.{part}.{leaf}"


# -- PEFT's documented rules, by hand ----------------------------------------------------------------------
def test_list_entries_match_a_name_or_its_dotted_suffix():
    # "a list of names matches a module whose name equals an entry or ends with '.' + entry"
    for leaf in LLAMA_LEAVES:
        assert P.target_matches([leaf], _full(leaf))
        assert P.target_matches([leaf], leaf)
        assert P.target_matches(["x", leaf], _full(leaf, 7))
    assert P.target_matches(["self_attn.q_proj"], _full("q_proj"))
    assert P.target_matches(["layers.3.self_attn.q_proj"], _full("q_proj", 3))
    assert not P.target_matches(["layers.3.self_attn.q_proj"], _full("q_proj", 13))
    assert not P.target_matches(["mlp.q_proj"], _full("q_proj"))
    assert not P.target_matches(["proj"], _full("q_proj"))  # a suffix only after a dot
    assert not P.target_matches(["q"], _full("q_proj"))
    assert not P.target_matches([], _full("q_proj"))


def test_a_string_is_a_regex_on_the_whole_name():
    assert P.target_matches(r".*\.(q|v)_proj", _full("q_proj"))
    assert P.target_matches(r".*\.(q|v)_proj", _full("v_proj"))
    assert not P.target_matches(r".*\.(q|v)_proj", _full("k_proj"))
    assert not P.target_matches("q_proj", _full("q_proj"))  # fullmatch: the leaf alone is not the name
    assert P.target_matches("lm_head", "lm_head")
    assert P.target_matches(r"model\.layers\.1\..*", _full("down_proj", 1))
    assert not P.target_matches(r"model\.layers\.1\..*", _full("down_proj", 11))


def test_all_linear_is_every_linear_but_the_output_layer():
    for spelling in ("all-linear", "ALL-LINEAR", "All-Linear"):
        assert P.is_all_linear(spelling)
        assert all(P.target_matches(spelling, _full(leaf)) for leaf in LLAMA_LEAVES)
        assert not P.target_matches(spelling, "lm_head", output_layer=True)
    assert not P.is_all_linear(["all-linear"])


# -- against PEFT itself --------------------------------------------------------------------------------------
def _tiny(kind: str):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    if kind == "llama":
        cfg = transformers.LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                       num_attention_heads=2, num_key_value_heads=1, vocab_size=64)
        return transformers.LlamaForCausalLM(cfg), "model.layers.0."
    cfg = transformers.GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=64, n_positions=32)
    return transformers.GPT2LMHeadModel(cfg), "transformer.h.0."


def _linears(model) -> dict[str, bool]:
    """{full name: is the output layer} of the model's Linear / Conv1D modules."""
    import torch
    from transformers.pytorch_utils import Conv1D

    out = model.get_output_embeddings()
    return {name: m is out for name, m in model.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D))}


LIST_AND_REGEX_TARGETS = [["q_proj", "v_proj"], ["o_proj", "down_proj"], list(LLAMA_LEAVES), ["self_attn.k_proj"],
                          ["layers.1.mlp.up_proj"], ["mlp.q_proj"], r".*\.(q|v)_proj", r".*layers\.0\..*_proj",
                          "q_proj", ["c_attn", "attn.c_proj"], ["mlp.c_proj"], ["c_proj", "c_fc"]]


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("targets", LIST_AND_REGEX_TARGETS, ids=str)
def test_target_matches_is_peft_check_target_module_exists(kind, targets):
    peft = pytest.importorskip("peft")
    from peft.tuners.tuners_utils import check_target_module_exists

    model, _ = _tiny(kind)
    config = peft.LoraConfig(target_modules=targets)
    for name, is_out in _linears(model).items():
        peft_says = bool(check_target_module_exists(config, name))
        assert P.target_matches(targets, name, output_layer=is_out) == peft_says, name


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_all_linear_is_what_get_peft_model_targets(kind):
    peft = pytest.importorskip("peft")
    model, _ = _tiny(kind)
    expected = {name for name, is_out in _linears(model).items()
                if P.target_matches("all-linear", name, output_layer=is_out)}
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules="all-linear"))
    assert set(wrapped.base_model.targeted_module_names) == expected


# -- the activation forms adapt the Linears PEFT adapts ---------------------------------------------------
ACTIVATION_TARGETS = [["q_proj", "v_proj"], list(LLAMA_LEAVES), ["self_attn.o_proj", "down_proj"], ["mlp.q_proj"],
                      r".*\.(q|v)_proj", "q_proj", ["c_attn", "attn.c_proj"], ["mlp.c_proj"], ["c_proj"],
                      "all-linear"]


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("targets", ACTIVATION_TARGETS, ids=str)
def test_activation_delta_adapts_the_linears_peft_adapts_in_a_layer(kind, targets):
    """The Linears of one decoder layer that ``_lora_layer_delta`` counts are those PEFT wraps in layer 0."""
    peft = pytest.importorskip("peft")
    from peft.tuners.tuners_utils import check_target_module_exists

    model, layer0 = _tiny(kind)
    config = peft.LoraConfig(target_modules=targets)
    linears = _linears(model)
    if P.is_all_linear(targets):
        expected = {n for n, out in linears.items() if not out}
    else:
        expected = {n for n in linears if check_target_module_exists(config, n)}
    expected = {n[len(layer0):] for n in expected if n.startswith(layer0)}
    shape = T.train_shape(model.config.to_dict())
    _, _, chosen = _lora_layer_delta(shape, STRUCTURES[kind], {"r": 2, "targets": targets, "dropout": 0.0}, False)
    assert {name for name, _, _ in chosen} == expected


# -- no guessed family -----------------------------------------------------------------------------------
H = 1024


@pytest.mark.parametrize("config", [
    # RMSNorm field names: used to be read as a Llama
    {"model_type": "mystery-rms", "architectures": ["MysteryForCausalLM"], "hidden_size": H,
     "num_attention_heads": 16, "num_hidden_layers": 4,
     "vocab_size": 32000, "rms_norm_eps": 1e-6, "intermediate_size": 2816},
    # GPT-2 field names: used to be read as a GPT-2
    {"model_type": "mystery-gpt", "architectures": ["MysteryLMHeadModel"], "n_embd": H, "n_head": 16, "n_layer": 4,
     "vocab_size": 50257,
     "layer_norm_epsilon": 1e-5},
], ids=["rms-fields", "gpt2-fields"])
def test_unknown_model_type_uses_korthikanti_generic_form(config):
    coef = T.layer_coefficients(config)
    assert coef.source == T.KORTHIKANTI
    assert coef.moe_layer == coef.dense_layer == 34 * 1024 == 34816  # 34·h bytes per token per layer
    s, b = 512, 2
    est = T.activation_bytes(config, batch=b, seq=s)
    assert est.per_layer_bytes == 34 * s * b * 1024 == 35651584  # Korthikanti Eq. 1 without the s² term
    assert est.coefficients_source == T.KORTHIKANTI
    assert est.settings["family"] == "korthikanti"
    mt = config["model_type"]
    assert est.assumptions[0] == (f"coefficients: {T.KORTHIKANTI} (no calibration for {mt}: Korthikanti et al. "
                                  "2022's generic 34·s·b·h per layer)")


def test_every_nearest_family_entry_points_at_a_calibrated_family():
    cal = T.load_calibration()["architectures"]
    for model_type, family in T.NEAREST_FAMILY.items():
        assert family in cal and family in STRUCTURES, model_type
        assert model_type not in cal, model_type  # a calibrated type uses its own entry
