"""hfmem.scenarios.train_activations: the closed-form training activations and step peak, checked against a
fresh hfmem.simulate.simulate_train at settings calibration.json was not measured at (other batch and sequence
lengths, other models of the family, other shapes), and against published worked values (Korthikanti et al.
2022; stas00/ml-engineering).

Model states for ``peak_by_phase`` are counted by hand from the bytes-per-parameter rules (bf16 weights 2 B,
gradients 2 B, AdamW's two states 4 B, the foreach step's temporary 2 B; fp32 under AMP: 4/4/8/4), with the
parameter count read off the simulated model (its ``parameters`` category).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from hfmem.scenarios import train_activations as T

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "cache" / "models"
GiB = 1024 ** 3
TOL = 0.05


def config(repo: str, layers: int | None = None, **overrides) -> dict:
    path = MODELS / repo / "config.json"
    if not path.is_file():
        pytest.skip(f"{repo} is not in cache/models")
    cfg = json.loads(path.read_text())
    if layers:
        cfg["n_layer" if "n_layer" in cfg else "num_hidden_layers"] = layers
        if isinstance(cfg.get("layer_types"), list):
            cfg["layer_types"] = cfg["layer_types"][:layers]
    cfg.update(overrides)
    return cfg


def simulate(cfg: dict, **kw):
    pytest.importorskip("torch")
    from hfmem.simulate import simulate_train

    logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.CRITICAL)
    return simulate_train(cfg, **kw)


def states(result, *, amp: bool = False, lora_trainable_bytes: int | None = None) -> dict:
    """Model states by the bytes-per-parameter rules; weights as the simulated model allocates them."""
    fwd = result.phase("forward", 2)
    weights, buffers = fwd.by_category["parameters"], fwd.by_category["buffers"]
    if lora_trainable_bytes is not None:  # frozen base; fp32 adapters: grads 4 B, AdamW 8 B, foreach 4 B
        t = lora_trainable_bytes
        return dict(weights_bytes=weights, grads_bytes=t, optimizer_state_bytes=2 * t, optimizer_temp_bytes=t,
                    buffers_bytes=buffers)
    # bf16 (2 B/param): grads 2 B, AdamW exp_avg + exp_avg_sq 4 B, foreach sqrt temporary 2 B;
    # AMP (fp32 weights, 4 B/param): 4 / 8 / 4 — the same multiples of the weights' bytes
    return dict(weights_bytes=weights, grads_bytes=weights, optimizer_state_bytes=2 * weights,
                optimizer_temp_bytes=weights, buffers_bytes=buffers)


def check(cfg, *, batch, seq, attn="sdpa", gc=False, dtype="bfloat16", amp=None, lora=None, lora_bytes=None,
          tol=TOL):
    r = simulate(cfg, batch=batch, seq=seq, attn=attn, grad_ckpt=gc, dtype=dtype, amp=amp, lora=lora)
    est = T.activation_bytes(cfg, batch=batch, seq=seq, attn=attn, dtype_bytes=4 if dtype == "float32" else 2,
                             grad_ckpt=gc, amp=amp, lora=lora or False)
    sim_act = r.phase("forward", 2).by_category["activations"]
    peaks = T.peak_by_phase(est, **states(r, amp=bool(amp), lora_trainable_bytes=lora_bytes))
    act_err = est.saved_bytes / sim_act - 1
    peak_err = peaks.peak_bytes / r.peak_allocated_bytes - 1
    msg = (f"activations {est.saved_bytes:,} vs simulated {sim_act:,} ({act_err:+.2%}); peak {peaks.peak_bytes:,} "
           f"({peaks.peak_phase}/{peaks.backward_moment}) vs {r.peak_allocated_bytes:,} ({r.peak_phase}, "
           f"{peak_err:+.2%}); {est.coefficients_source}")
    assert abs(act_err) <= tol, msg
    assert abs(peak_err) <= tol, msg
    return r, est, peaks


# -- fresh simulations: activations at the end of forward and the step's peak, within 5% ------------------
# (repo, layers, overrides, batch, seq, attn, grad_ckpt). None of these (model, batch, seq) were calibrated:
# calibration.json ran batch 1 at 512/1024 (BERT 256/512) on one reference model per architecture.
CASES = [
    # llama family: TinyLlama (GQA 32/4, not the Llama-2 reference shape); activation-dominated backward
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 4, {}, 4, 1024, "sdpa", False),
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 4, {}, 2, 1024, "eager", True),
    # small vocabulary: the backward peak sits inside the layers (recompute + MLP gradients)
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 4, {"vocab_size": 1024}, 4, 1024, "sdpa", True),
    ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 4, {"vocab_size": 1024}, 2, 1024, "eager", False),
    # tied embeddings (the embedding-gradient sum at the end of the backward)
    ("meta-llama/Llama-3.2-1B", 4, {}, 1, 512, "sdpa", False),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", 4, {}, 2, 384, "eager", False),
    # qwen2
    ("Qwen/Qwen2-0.5B-Instruct", 2, {}, 2, 384, "sdpa", False),
    ("Qwen/Qwen2-0.5B-Instruct", 2, {}, 2, 384, "sdpa", True),
    ("Qwen/Qwen2.5-3B", 3, {}, 2, 384, "eager", False),
    # qwen3 (q/k norms)
    ("Qwen/Qwen3-1.7B", 3, {}, 2, 384, "eager", True),
    # gpt2 (gelu_new, dropout, per-position eager term) and gpt_neox
    ("openai-community/gpt2-medium", 3, {}, 2, 768, "eager", False),
    ("openai-community/gpt2-medium", 3, {}, 4, 256, "sdpa", True),
    ("togethercomputer/RedPajama-INCITE-Chat-3B-v1", 2, {}, 2, 384, "eager", False),
    # MoE: qwen2_moe (shared expert), qwen3_moe, mixtral; DeepSeek-V2-Lite via the deepseek_v3 family (MLA)
    ("Qwen/Qwen1.5-MoE-A2.7B-Chat", 2, {}, 4, 512, "sdpa", True),
    ("Qwen/Qwen3-30B-A3B", 2, {}, 1, 640, "eager", False),
    ("mistralai/Mixtral-8x7B-v0.1", 2, {}, 2, 384, "sdpa", False),
    ("deepseek-ai/DeepSeek-V2-Lite-Chat", 3, {}, 2, 384, "sdpa", False),
    # bert (encoder, MLM head, bf16 loss)
    ("google-bert/bert-base-uncased", 3, {}, 4, 384, "sdpa", False),
    ("google-bert/bert-base-uncased", 3, {}, 4, 384, "eager", True),
]


# The default set keeps one or two cases per family; the others run in the slow set (the default set's 5-minute
# budget): TinyLlama's eager/gc and small-vocabulary variants, Qwen2.5-3B, Qwen3-1.7B (Qwen3-30B-A3B keeps the q/k
# norms in the default set), the Qwen1.5 MoE and BERT's eager/gc case.
SLOW_CASES = {1, 2, 3, 8, 9, 13, 18}


@pytest.mark.parametrize("repo,layers,over,batch,seq,attn,gc", [
    pytest.param(*c, marks=[pytest.mark.slow] if i in SLOW_CASES else []) for i, c in enumerate(CASES)],
                         ids=[f"{c[0].split('/')[1]}-L{c[1]}{'-V' + str(c[2]['vocab_size']) if c[2] else ''}"
                              f"-b{c[3]}s{c[4]}-{c[5]}{'-gc' if c[6] else ''}" for c in CASES])
def test_matches_fresh_simulation(repo, layers, over, batch, seq, attn, gc):
    check(config(repo, layers, **over), batch=batch, seq=seq, attn=attn, gc=gc)


def test_backward_peak_moments_follow_the_simulator():
    """Where the backward peaks: at the loss (activation-heavy), inside the last recomputed layer (small
    vocabulary, checkpointing), or at the end when every gradient exists (tied embeddings, short input)."""
    _, _, p = check(config("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 4), batch=4, seq=1024)
    assert (p.peak_phase, p.backward_moment) == ("backward", "loss")
    _, _, p = check(config("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 4, vocab_size=1024), batch=4, seq=1024, gc=True)
    assert (p.peak_phase, p.backward_moment) == ("backward", "last_layer")
    r, _, p = check(config("meta-llama/Llama-3.2-1B", 4), batch=1, seq=512)
    assert (p.peak_phase, p.backward_moment) == ("backward", "end") and r.peak_phase == "backward@2"
    # the peak is not the sum of the parts
    total = sum(states(r).values()) + T.activation_bytes(config("meta-llama/Llama-3.2-1B", 4), batch=1, seq=512).saved_bytes
    assert p.peak_bytes < total


def test_precision_amp_and_lora():
    llama = config("meta-llama/Llama-3.2-1B", 2)
    check(llama, batch=2, seq=384, dtype="float32")  # fp32 + GQA: SDPA's math path
    check(config("openai-community/gpt2-medium", 2), batch=2, seq=384, attn="eager", dtype="float32")
    _, est, _ = check(llama, batch=2, seq=384, amp="bf16")
    assert est.by_part["autocast_weight_copies_bytes"] > 0
    check(llama, batch=2, seq=384, amp="bf16", gc=True)
    # LoRA: adapters in fp32 (PEFT autocast_adapter_dtype), r·(d_in + d_out) per targeted Linear
    lora_llama = config("meta-llama/Llama-3.2-1B", 3)
    h, kv = lora_llama["hidden_size"], lora_llama["num_key_value_heads"] * lora_llama["head_dim"]
    r = 8
    trainable = 3 * r * ((h + h) + (h + kv)) * 4  # q_proj + v_proj on 3 layers, fp32
    check(lora_llama, batch=2, seq=384, lora={"r": r, "targets": ["q_proj", "v_proj"], "dropout": 0.05},
          lora_bytes=trainable)


# -- published values -----------------------------------------------------------------------------------
def _unknown(hidden, heads, layers=4, vocab=51200) -> dict:
    """A config no family claims: Korthikanti's fallback."""
    return {"model_type": "mystery-transformer", "architectures": ["MysteryForCausalLM"], "hidden_size": hidden,
            "num_attention_heads": heads, "num_hidden_layers": layers, "vocab_size": vocab}


@pytest.mark.parametrize("heads,hidden,ratio", [(96, 12288, 80), (128, 20480, 64)])
def test_korthikanti_fallback_eq1(heads, hidden, ratio):
    """Eq. 1, sbh(34 + 5as/h), with the paper's worked 5as/h = 80 (GPT-3) and 64 (MT-NLG) at s = 2048."""
    s, b = 2048, 1
    est = T.activation_bytes(_unknown(hidden, heads), batch=b, seq=s, attn="eager")
    assert est.coefficients_source == T.KORTHIKANTI
    assert est.per_layer_bytes == pytest.approx(s * b * hidden * (34 + ratio), rel=1e-9)
    assert 5 * heads * s / hidden == ratio
    flash = T.activation_bytes(_unknown(hidden, heads), batch=b, seq=s, attn="flash")
    assert flash.per_layer_bytes == pytest.approx(34 * s * b * hidden)  # selective recompute / flash: 34 sbh
    gc = T.activation_bytes(_unknown(hidden, heads), batch=b, seq=s, attn="eager", grad_ckpt=True)
    assert gc.per_layer_bytes == pytest.approx(2 * s * b * hidden)  # full recompute: 2 sbh
    assert est.by_part["logits_bytes"] == 4 * s * b * 51200  # 4sbv fp32 logits


def test_korthikanti_table2_tensor_sequence_pipeline():
    s, b, h, a, L, t = 2048, 1, 12288, 96, 8, 8
    cfg = _unknown(h, a, layers=L)
    base = T.activation_bytes(cfg, batch=b, seq=s, attn="eager")
    tp = T.activation_bytes(cfg, batch=b, seq=s, attn="eager", tp=t)
    sp = T.activation_bytes(cfg, batch=b, seq=s, attn="eager", tp=t, sp=True)
    assert tp.per_layer_bytes == pytest.approx(s * b * h * (10 + 24 / t + 5 * a * s / (h * t)))  # Eq. 2
    assert sp.per_layer_bytes == pytest.approx(s * b * h / t * (34 + 5 * a * s / h))  # Eq. 4
    assert base.by_part["layers_bytes"] == pytest.approx(L * base.per_layer_bytes)
    # Eq. 5: the first 1F1B stage holds L layers' worth whatever p (p micro-batches of L/p layers)
    for p in (2, 4, 8):
        pp = T.activation_bytes(cfg, batch=b, seq=s, attn="eager", tp=t, sp=True, pp=p)
        assert pp.by_part["layers_bytes"] == pytest.approx(sp.by_part["layers_bytes"])
        assert pp.by_part["logits_bytes"] == 0 and pp.by_part["last_stage_bytes"] > 0
    # fewer micro-batches than stages: fewer in flight
    few = T.activation_bytes(cfg, batch=b, seq=s, attn="eager", tp=t, sp=True, pp=4, microbatches=2)
    assert few.by_part["layers_bytes"] == pytest.approx(sp.by_part["layers_bytes"] / 2)
    # interleaved schedule, m model chunks: × (1 + (p − 1)/(p·m)); the 175B run: p = 8, m = 3
    assert T.pipeline_in_flight_factor(8, interleave=3) == pytest.approx(1 + 7 / 24)
    inter = T.activation_bytes(cfg, batch=b, seq=s, attn="eager", tp=t, sp=True, pp=8, interleave=3)
    assert inter.by_part["layers_bytes"] == pytest.approx(sp.by_part["layers_bytes"] * (1 + 7 / 24))
    assert T.tensor_parallel_layer_factor(8) == pytest.approx((10 + 3) / 34)
    assert T.parallel_activation_factor(8, True, 8, interleave=3) == pytest.approx((1 + 7 / 24) / 8)


def test_stas00_llama31_8b_at_32k():
    """stas00/ml-engineering: Llama-3.1-8B at 32k tokens: "16 GiB of fp32 logits (4·s·V)" and 8 GiB of
    gradient-checkpointing store (32 × 0.25 GiB: one bf16 hidden state per layer)."""
    cfg = config("meta-llama/Llama-3.1-8B")
    est = T.activation_bytes(cfg, batch=1, seq=32768, grad_ckpt=True)
    assert est.by_part["logits_bytes"] == 4 * 32768 * 128256
    assert est.by_part["logits_bytes"] / GiB == pytest.approx(16, rel=0.03)  # 15.66 GiB
    assert est.by_part["layers_bytes"] / GiB == pytest.approx(8.0)
    assert est.coefficients_source == "calibration.json: llama/sdpa"


# -- the calibration anchor and the fallbacks ------------------------------------------------------------
@pytest.mark.parametrize("model_type,attn", [("llama", "sdpa"), ("qwen3_moe", "eager"), ("deepseek_v3", "sdpa"),
                                             ("gpt2", "eager"), ("bert", "sdpa"), ("gemma2", "eager")])
def test_reference_models_reproduce_calibration(model_type, attn):
    cal = T.load_calibration()["architectures"][model_type]
    entry = cal[attn]
    L1, L2 = entry["layers_compared"]
    s = entry["seqs"][0]
    cfg = config(cal["reference_model"])
    a1 = T.activation_bytes(config(cal["reference_model"], L1), batch=1, seq=s, attn=attn)
    a2 = T.activation_bytes(config(cal["reference_model"], L2), batch=1, seq=s, attn=attn)
    per_layer = (a2.saved_bytes - a1.saved_bytes) / (L2 - L1)
    assert per_layer == pytest.approx(entry["per_layer_activation_bytes"][str(s)], rel=2e-3)
    assert T.activation_bytes(cfg, batch=1, seq=s, attn=attn).coefficients_source == f"calibration.json: {model_type}/{attn}"


def test_nearest_family_and_sources():
    v2 = T.activation_bytes(config("deepseek-ai/DeepSeek-V2-Lite-Chat"), batch=1, seq=512)
    assert v2.coefficients_source == "calibration.json: deepseek_v3/sdpa"
    assert any("nearest family of deepseek_v2" in a for a in v2.assumptions)
    # an unknown model_type with RMSNorm fields: no calibration and no family known to share its code, so the
    # published generic form (Korthikanti et al. 2022: 34·s·b·h per layer), not a family guessed from field names
    unknown = dict(_unknown(1024, 16), rms_norm_eps=1e-6, intermediate_size=2816)
    g = T.activation_bytes(unknown, batch=1, seq=512)
    assert g.coefficients_source == T.KORTHIKANTI
    assert g.per_layer_bytes == 34 * 512 * 1 * 1024  # 34·s·b·h, s = 512, b = 1, h = 1024
    assert any("no calibration for mystery-transformer: Korthikanti et al. 2022's generic 34·s·b·h per layer" in a
               for a in g.assumptions)
    # gemma2 has no SDPA entry (transformers has no SDPA for it): eager's linear part, no s² term
    g2 = T.activation_bytes(config("google/gemma-2-2b-it"), batch=1, seq=512, attn="sdpa")
    assert g2.coefficients_source == "calibration.json: gemma2/eager"


def test_gradient_accumulation_keeps_gradients_allocated():
    cfg = config("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 4)
    est = T.activation_bytes(cfg, batch=2, seq=512)
    w = 2 * 1_100_000_000 // 8  # any state sizes
    kw = dict(weights_bytes=w, grads_bytes=w, optimizer_state_bytes=2 * w, optimizer_temp_bytes=w)
    one = T.peak_by_phase(est, **kw)
    ga = T.peak_by_phase(est, grad_accum=4, **kw)
    assert ga.forward_bytes == one.forward_bytes + w
    assert ga.backward_moments["loss"] == one.backward_moments["loss"] + w
    assert ga.optimizer_step_bytes == one.optimizer_step_bytes
    assert ga.peak_bytes >= one.peak_bytes


def test_errors():
    cfg = config("TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    with pytest.raises(T.TrainActivationError):
        T.activation_bytes(cfg, batch=1, seq=512, attn="xformers")
    with pytest.raises(T.TrainActivationError):
        T.activation_bytes(cfg, batch=1, seq=512, dtype_bytes=3)
    with pytest.raises(T.TrainActivationError):
        T.activation_bytes(cfg, batch=0, seq=512)
    with pytest.raises(T.TrainActivationError):
        T.activation_bytes(cfg, batch=1, seq=512, attn="flash", dtype_bytes=4)
    with pytest.raises(T.TrainActivationError):
        T.activation_bytes({"model_type": "x"}, batch=1, seq=8)


# -- DoRA (PEFT use_dora=True): the base output and the fp32 LoRA output kept per adapted Linear ------------

@pytest.mark.parametrize("repo, targets, tol", [  # the two Llama cases (1 s each) run in the slow set
    pytest.param("meta-llama/Llama-3.2-1B", ["q_proj", "v_proj"], 0.02, marks=pytest.mark.slow),
    pytest.param("meta-llama/Llama-3.2-1B", "all-linear", 0.02, marks=pytest.mark.slow),
    ("openai-community/gpt2-medium", "all-linear", 0.02),
    # plain LoRA on 2-layer Qwen3-0.6B is already +2.3% (not DoRA's doing): the DoRA term is still within 2%
    ("Qwen/Qwen3-0.6B", ["q_proj", "v_proj"], TOL),
])
def test_dora_activations_match_simulation(repo, targets, tol):
    """No dropout: DoRA adds 6·d_out per token per adapted Linear (16-bit base output + fp32 LoRA output);
    the weight-norm temporaries are freed within the forward. Checked against the simulated activations."""
    cfg = config(repo, 2)
    lora = {"r": 16, "targets": targets, "dropout": 0.0, "dora": True}
    r = simulate(cfg, batch=2, seq=256, dtype="bfloat16", lora=lora)
    plain = simulate(cfg, batch=2, seq=256, dtype="bfloat16", lora=dict(lora, dora=False))
    est = T.activation_bytes(cfg, batch=2, seq=256, lora=lora)
    est_plain = T.activation_bytes(cfg, batch=2, seq=256, lora=dict(lora, dora=False))
    sim, sim_plain = (x.phase("forward", 2).by_category["activations"] for x in (r, plain))
    assert sim > sim_plain and est.saved_bytes > est_plain.saved_bytes
    assert est.saved_bytes == pytest.approx(sim, rel=tol)
    # the DoRA term itself (per-layer constants of ~10·d_out left out)
    assert est.saved_bytes - est_plain.saved_bytes == pytest.approx(sim - sim_plain, rel=0.02)


def test_dora_dropout_terms():
    """With lora_dropout > 0 PEFT recomputes the base output in fp32 (F.linear(dropout(x), W.to(fp32))):
    8·d_out per token per adapted Linear, and that F.linear keeps the fp32 weight copy (4·d_in·d_out per
    adapted Linear, checked with saved_tensors_hooks on real tensors). The simulator keeps the per-token term
    exactly but, at the end of forward, shows the weight copies of L − 1 layers only, so this is checked
    against the closed form."""
    cfg = config("meta-llama/Llama-3.2-1B", 2)
    h, kv = cfg["hidden_size"], cfg["num_key_value_heads"] * cfg["head_dim"]
    b, s, L = 2, 256, 2
    base = {"r": 16, "targets": ["q_proj", "v_proj"], "dropout": 0.05}
    est_plain = T.activation_bytes(cfg, batch=b, seq=s, lora=base)
    est = T.activation_bytes(cfg, batch=b, seq=s, lora=dict(base, dora=True))
    per_token = 8 * (h + kv) * b * s * L
    copies = 4 * (h * h + h * kv) * L
    assert est.saved_bytes - est_plain.saved_bytes == pytest.approx(per_token + copies, abs=L * 16)
    no_drop = T.activation_bytes(cfg, batch=b, seq=s, lora=dict(base, dropout=0.0, dora=True))
    no_drop_plain = T.activation_bytes(cfg, batch=b, seq=s, lora=dict(base, dropout=0.0))
    assert no_drop.saved_bytes - no_drop_plain.saved_bytes == pytest.approx(6 * (h + kv) * b * s * L, abs=L * 16)
