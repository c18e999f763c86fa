"""QLoRA as PEFT, bitsandbytes, transformers and TRL run it (issue 14): each mechanism against a hand count
from the libraries' source, written out here.

Sources read (the counts below restate them):
* peft 0.21 ``utils/other.py`` prepare_model_for_kbit_training: every fp16/bf16 parameter whose class is not
  Params4bit -> ``param.data.to(torch.float32)``; use_gradient_checkpointing=True by default.
* bitsandbytes ``nn/modules.py`` Linear4bit.forward: ``x.to(compute_dtype)`` ... ``.to(inp_dtype)``;
  ``autograd/_functions.py`` MatMul4Bit: ``F.linear(A, dequantize_4bit(B, quant_state).to(A.dtype).t())``,
  saves only B (``ctx.tensors = (None, B)``), dequantizes again in backward.
* peft ``tuners/lora/layer.py`` Linear.forward: ``x = self._cast_input_dtype(x, lora_A.weight.dtype)``,
  ``lora_B(lora_A(dropout(x)))`` (nn.Identity when lora_dropout == 0).
* transformers 4.x LlamaForCausalLM.forward: ``logits = logits.float()``, ``shift_logits = logits[..., :-1,
  :].contiguous()``; 5.x ``loss/loss_utils.py`` ForCausalLMLoss: ``logits.float()``, labels padded.
* torch ``utils/checkpoint.py``: reentrant CheckpointFunction.backward re-runs the function and holds its
  outputs during ``torch.autograd.backward``; non-reentrant early_stop=True.
"""

from __future__ import annotations

import pytest

import hfmem
from hfmem.scenarios import train_activations as acts
from hfmem.scenarios.finetune import TrainSettings, TrainSettingsError
from tests.conftest import json_out, run_hfmem

OFF = hfmem.Options(offline=True)

# TinyLlama-1.1B's config (the published one: hidden 2048, 22 layers, 32 heads, 4 KV heads, 5632, 32000)
TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 2048,
        "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
        "intermediate_size": 5632, "vocab_size": 32000, "max_position_embeddings": 2048,
        "tie_word_embeddings": False, "hidden_act": "silu", "rms_norm_eps": 1e-5}
H, L, V, I = 2048, 22, 32000, 5632
KV = 4 * 64
B, S = 2, 512
T = B * S
LORA = {"r": 16, "targets": "all-linear", "dora": False}


def _act(**kw):
    base = dict(batch=B, seq=S, attn="flash", grad_ckpt=True, lora=dict(LORA))
    base.update(kw)
    return acts.activation_bytes(TINY, **base)


def test_prepare_kbit_doubles_every_checkpoint():
    # the checkpointed layer input is the residual stream: 2 B (bf16) without, 4 B (fp32) with
    plain = _act(kbit={"prepare": False})
    prep = _act(kbit={"prepare": True})
    assert plain.by_part["layers_bytes"] == L * T * H * 2
    assert prep.by_part["layers_bytes"] == L * T * H * 4


def test_prepare_kbit_keeps_the_heads_autocast_copy():
    # the frozen fp32 LM head: autocast casts it to 16 bit at each call (no cache: requires_grad=False) and
    # autograd keeps the copy for the input gradient: V × h × 2 B
    prep = _act(kbit={"prepare": True})
    assert prep.by_part["autocast_weight_copies_bytes"] == V * H * 2
    assert "autocast_weight_copies_bytes" not in _act(kbit={"prepare": False}).by_part


def test_fp32_embeddings_lm_head_and_norms_in_the_weights():
    on = hfmem.train("TinyLlama/TinyLlama-1.1B-Chat-v1.0", OFF, method="qlora").estimate
    off = hfmem.train("TinyLlama/TinyLlama-1.1B-Chat-v1.0", OFF, method="qlora", prepare_kbit=False).estimate
    # embed_tokens + lm_head (untied) + 2 norms per layer + the final norm: 2 B more each
    upcast = 2 * (2 * V * H + (2 * L + 1) * H)
    assert on.components["weights_bytes"] - off.components["weights_bytes"] == upcast
    assert on.settings.grad_ckpt is True  # use_gradient_checkpointing=True
    assert any("prepare_model_for_kbit_training" in a for a in on.assumptions)


def test_lora_dropout_per_adapted_module():
    # fp32 adapters on a bf16 stream: a cast copy per module either way; dropout adds its bool mask (1 B per
    # input element) per adapted Linear: q, k, v, gate, up read h; o reads q_dim = h; down reads I
    p0 = _act(grad_ckpt=False, lora=dict(LORA, dropout=0.0))
    p5 = _act(grad_ckpt=False, lora=dict(LORA, dropout=0.05))
    assert p5.by_part["layers_bytes"] - p0.by_part["layers_bytes"] == L * T * (6 * H + I)
    # bf16 adapters (no cast): p = 0 saves x itself once per distinct input (q/k/v share one, gate/up one);
    # p > 0 saves a dropped 2-byte copy and a mask per module
    q0 = _act(grad_ckpt=False, lora=dict(LORA, dropout=0.0, adapter_bytes=2))
    q5 = _act(grad_ckpt=False, lora=dict(LORA, dropout=0.05, adapter_bytes=2))
    shared = 2 * (H + H + H + I)      # attn input, o_proj input, mlp input, down_proj input
    per_module = 3 * (6 * H + I)      # 2 B copy + 1 B mask per adapted module
    assert q5.by_part["layers_bytes"] - q0.by_part["layers_bytes"] == L * T * (per_module - shared)


def test_loss_path_4x_contiguous_shifted_copy():
    # 5.x at the loss: bf16 logits (2) + fp32 copy (4) beside the saved fp32 log-probs; 4.x: the fp32 logits
    # (4, the bf16 ones freed by the rebinding) + the contiguous shifted copy (4)
    five = _act(loss_path="5.x")
    four = _act(loss_path="4.x")
    assert five.forward_transient_bytes == 6 * T * V
    assert four.forward_transient_bytes == 8 * T * V
    assert four.saved_bytes == five.saved_bytes
    # 4.46's loss_utils ForCausalLMLoss: the model's bf16 logits (2) are still referenced while the loss makes
    # logits.float() (4) and logits[..., :-1, :].contiguous() (4)
    assert _act(loss_path="4.46").forward_transient_bytes == 10 * T * V


def test_dequantize_transient_of_the_largest_4bit_linear():
    # bf16 compute: dequantize_4bit -> bf16 (2 B/elem), .to(bf16) is a no-op; fp32 compute: + an fp32 copy
    base = _act(kbit={"prepare": False})
    bf16 = _act(kbit={"prepare": False, "dequant_bytes": H * I * 2})
    assert bf16.layer_forward_transient_bytes - base.layer_forward_transient_bytes == H * I * 2
    assert bf16.layer_backward_transient_bytes - base.layer_backward_transient_bytes == H * I * 2
    e32 = hfmem.train("TinyLlama/TinyLlama-1.1B-Chat-v1.0", OFF, method="qlora", bnb_compute_dtype="fp32",
                      batch=B, seq=S, attn="flash").estimate
    e16 = hfmem.train("TinyLlama/TinyLlama-1.1B-Chat-v1.0", OFF, method="qlora",
                      batch=B, seq=S, attn="flash").estimate
    assert e32.phases["forward"] >= e16.phases["forward"]


def test_reentrant_holds_the_recomputed_output():
    non = _act(kbit={"prepare": True}, reentrant=False)
    re_ = _act(kbit={"prepare": True}, reentrant=True)
    assert re_.by_part == non.by_part  # the same checkpoints (the layer inputs)
    assert re_.full_layer_bytes - non.full_layer_bytes == T * H * 4  # one fp32 hidden state


def test_adapter_dtype_bf16_halves_the_adapter_states():
    f32 = hfmem.train("TinyLlama/TinyLlama-1.1B-Chat-v1.0", OFF, method="lora").estimate
    b16 = hfmem.train("TinyLlama/TinyLlama-1.1B-Chat-v1.0", OFF, method="lora", adapter_dtype="bf16").estimate
    n = f32.trainable_params
    assert f32.components["gradients_bytes"] == 4 * n and b16.components["gradients_bytes"] == 2 * n
    assert f32.components["optimizer_bytes"] == 8 * n and b16.components["optimizer_bytes"] == 4 * n


def test_cli_and_api_agree():
    args = ["--method", "qlora", "--lora-dropout", "0.05", "--loss-path", "4.x", "--bnb-compute-dtype", "fp32",
            "--batch", "2", "--seq", "512"]
    proc = run_hfmem("train", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", *args, "--offline", "--format", "json")
    m = json_out(proc)["models"][0]
    api = hfmem.train("TinyLlama/TinyLlama-1.1B-Chat-v1.0", OFF, method="qlora", lora_dropout=0.05,
                      loss_path="4.x", bnb_compute_dtype="fp32", batch=2, seq=512).estimate
    assert m["peak_allocated_bytes"] == api.peak_allocated_bytes
    assert m["inputs"]["lora_dropout"] == 0.05 and m["inputs"]["loss_path"] == "4.x"


@pytest.mark.parametrize("args, flag", [
    (["--method", "qlora", "--bnb-compute-dtype", "int3"], "--bnb-compute-dtype"),
    (["--method", "lora", "--lora-dropout", "1.5"], "--lora-dropout"),
    (["--method", "qlora", "--loss-path", "3.x"], "--loss-path"),
    (["--method", "lora", "--prepare-kbit"], "--prepare-kbit"),
])
def test_bad_input_exit_2_naming_the_flag(args, flag):
    proc = run_hfmem("train", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", *args, "--offline")
    assert proc.returncode == 2
    err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert flag in err[0]


def test_settings_refuse_out_of_range():
    with pytest.raises(TrainSettingsError):
        TrainSettings(method="lora", lora_dropout=-0.1).validate()
    with pytest.raises(TrainSettingsError):
        TrainSettings(method="lora", bnb_quant_storage="bf16").validate()
    TrainSettings(method="qlora", bnb_quant_storage="bf16").validate()


# -- published QLoRA runs (hfmem/reference/measurements.py; rows in docs/accuracy.md) ---------

def _fitcheck_estimate(model, b, s, attn, tmp_path):
    import json

    from hfmem.reference.measurements import (FITCHECK_QLORA_SETTINGS, FITCHECK_SNAPSHOT_MODEL,
                                              QWEN25_1_5B_CONFIG)

    where = FITCHECK_SNAPSHOT_MODEL.get(model, model)
    if model == "Qwen/Qwen2.5-1.5B-Instruct":
        (tmp_path / "config.json").write_text(json.dumps(QWEN25_1_5B_CONFIG))
        where = str(tmp_path)
    return hfmem.train(where, OFF, batch=b, seq=s, attn=attn, **FITCHECK_QLORA_SETTINGS).estimate


@pytest.mark.parametrize("key", [k for k in __import__("hfmem.reference.measurements", fromlist=["x"])
                                 .FITCHECK_QLORA_ALLOCATED_MIB if k[3] == "eager"])
def test_fitcheck_qlora_eager_runs_within_3_percent(key, tmp_path):
    # fitcheck's T4 runs (max_memory_allocated MiB, Anassbzdd/fitcheck data/measurements/t4-qlora-2026-09-01.json)
    from hfmem.reference.measurements import FITCHECK_QLORA_ALLOCATED_MIB

    measured = FITCHECK_QLORA_ALLOCATED_MIB[key] * 2**20
    e = _fitcheck_estimate(*key, tmp_path)
    assert abs(e.peak_allocated_bytes - measured) / measured <= 0.03


@pytest.mark.parametrize("key", [k for k in __import__("hfmem.reference.measurements", fromlist=["x"])
                                 .FITCHECK_QLORA_ALLOCATED_MIB if k[3] == "sdpa"])
def test_fitcheck_qlora_sdpa_runs_low_by_at_most_13_percent(key, tmp_path):
    # the SDPA (EFFICIENT_ATTENTION, fp32 q/k/v under prepare_model_for_kbit_training without autocast) runs:
    # hfmem is 7-12% low, a gap not traced yet (docs/accuracy.md); this pins it from getting worse
    from hfmem.reference.measurements import FITCHECK_QLORA_ALLOCATED_MIB

    measured = FITCHECK_QLORA_ALLOCATED_MIB[key] * 2**20
    e = _fitcheck_estimate(*key, tmp_path)
    assert -0.13 <= (e.peak_allocated_bytes - measured) / measured <= 0.03


def test_unsloth_llama31_8b_max_seq_overshoots_at_most_15_percent_from_24gb():
    # Unsloth README "Llama 3.1 (8B) max. context length", Hugging Face + FA2 column (GB read as GiB). With
    # transformers 4.46's loss path hfmem's longest sequence is 10-12% too long from 24 GB up (more on the
    # small cards, where the fixed memory leaves little for tokens; read as 10^9 B the same rows are within
    # -0.7%..+1.3%): never shorter than measured, and not worse than that
    from hfmem.reference.measurements import UNSLOTH_LLAMA31_8B_HF_FA2_MAX_SEQ, UNSLOTH_LLAMA31_8B_SETTINGS

    for gb, tokens in UNSLOTH_LLAMA31_8B_HF_FA2_MAX_SEQ.items():
        r = hfmem.train("meta-llama/Llama-3.1-8B", OFF, gpu=f"{gb}GiB", seq=1024, **UNSLOTH_LLAMA31_8B_SETTINGS)
        assert r.max_seq >= tokens
        if gb >= 24:
            assert (r.max_seq - tokens) / tokens <= 0.15
