"""The out-of-memory advisor (hfmem.plan.advisor): remedies in the seed note's order, each quantified; the
cheapest plan that fits; max micro-batch / seq. Facts checked by hand are derived in the comments."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from hfmem.api import analyze
from hfmem.plan import advisor
from hfmem.plan.advisor import advise
from hfmem.plan.gpus import parse_gpu
from hfmem.scenarios.finetune import TrainSettings, estimate_training

GiB = 1 << 30

# The seed note's "显存不足怎么办" list, in its order.
SEED_ORDER = ["drop_full_logits_metrics", "half_precision", "flash_attention", "smaller_micro_batch",
              "shorter_context", "zero1", "zero2", "zero2_offload", "zero3", "zero3_offload", "smaller_model",
              "lora", "qlora", "tensor_pipeline_parallel", "activation_checkpointing"]


def _model(name):
    r = analyze(name, offline=True)
    tensors, config, largest = r.inventory.tensors, r.config, r.inventory.layers[0].num_params

    def est(s):
        return estimate_training(tensors, config, s, largest_layer_params=largest)

    return est, config, r.inventory.num_params


@pytest.fixture(scope="module")
def llama7b():
    return _model("meta-llama/Llama-2-7b-hf")


@pytest.fixture(scope="module")
def llama70b():
    return _model("meta-llama/Llama-2-70b-hf")


A100 = parse_gpu("A100-80GB")
RTX4090 = parse_gpu("RTX-4090")
V100 = parse_gpu("V100-32GB")


def _by_id(adv):
    return {r.id: r for r in adv.remedies}


def test_fp32_full_finetune_7b_does_not_fit_a100_80gb(llama7b):
    est, config, params = llama7b
    assert 6.7e9 < params < 6.8e9
    # hand: fp32 AdamW = 4 (weights) + 4 (grads) + 8 (m, v) = 16 B/param; 16 x 6.74e9 = 108 GB > 80 GiB
    assert 16 * params > A100.memory_bytes
    adv = advise(est, TrainSettings(precision="fp32"), A100, model_config=config)
    assert adv.fits is False
    assert adv.device_total_bytes >= 16 * params
    assert adv.max_batch == 0 and adv.max_seq == 0   # not even one token fits as asked


def test_remedies_come_in_the_seed_order(llama7b):
    est, config, _ = llama7b
    adv = advise(est, TrainSettings(precision="fp32", batch=4), A100, model_config=config)
    assert [r.id for r in adv.remedies] == SEED_ORDER
    for r in adv.remedies:
        assert r.name and isinstance(r.cost, str) and r.cost
        if r.applicable is False:
            assert r.reason


def test_bf16_remedy_saves_at_least_the_model_state_difference(llama7b):
    est, config, params = llama7b
    adv = advise(est, TrainSettings(precision="fp32"), A100, model_config=config)
    half = _by_id(adv)["half_precision"]
    assert half.changes == {"precision": "bf16"}
    # hand: fp32 AdamW 16 B/param -> pure bf16 (torch AdamW keeps bf16 states) 8 B/param; activations shrink too
    assert half.saves_bytes >= 8 * params
    assert half.fits is True   # 8 B/param = 54 GB plus bf16 activations < 80 GiB


@pytest.mark.parametrize("kw,gpu", [
    (dict(precision="fp32"), A100),
    (dict(precision="bf16", batch=4, gpus=4, full_logits_metrics=True), A100),
    (dict(precision="amp-bf16", batch=6, grad_accum=2), RTX4090),
    (dict(method="lora", precision="bf16", seq=4096), RTX4090),
])
def test_each_remedy_is_the_estimate_of_its_changes(llama7b, kw, gpu):
    est, config, _ = llama7b
    s = TrainSettings(**kw)
    before = est(s).device_total_bytes
    adv = advise(est, s, gpu, model_config=config)
    assert adv.device_total_bytes == before
    for r in adv.remedies:
        if r.device_total_bytes is None:
            continue
        after = est(replace(s, **r.changes))
        assert r.device_total_bytes == after.device_total_bytes, r.id
        assert r.saves_bytes == before - after.device_total_bytes, r.id
        assert r.fits == (after.device_total_bytes <= gpu.usable_bytes), r.id
        assert r.gpus == replace(s, **r.changes).gpus
        if not r.changes:
            assert r.saves_bytes == 0
        if r.saves_bytes < 0:
            assert any("more per GPU" in n for n in r.notes), r.id


def test_checkpointing_saves_activations(llama7b):
    est, config, _ = llama7b
    b, seq, h, layers = 8, 2048, 4096, 32
    s = TrainSettings(precision="bf16", batch=b, seq=seq)
    adv = advise(est, s, A100, model_config=config)
    ck = _by_id(adv)["activation_checkpointing"]
    assert ck.changes == {"grad_ckpt": True}
    # hand: without recomputation a layer keeps >= 12·b·s·h bytes of activations (ZeRO paper's footnote; Korthikanti
    # sbh(34 + 5as/h)); with full recomputation one bf16 hidden state, 2·b·s·h bytes, per layer
    assert ck.saves_bytes >= (12 - 2) * b * seq * h * layers
    assert est(replace(s, grad_ckpt=True)).components["activations_bytes"] < est(s).components["activations_bytes"] / 5
    assert 1.3 <= ck.slowdown <= 1.4 and "Korthikanti" in ck.slowdown_source


def test_qlora_fits_a_24gb_gpu_for_7b(llama7b):
    est, config, params = llama7b
    s = TrainSettings(precision="bf16", grad_ckpt=True)
    adv = advise(est, s, RTX4090, model_config=config)
    q = _by_id(adv)["qlora"]
    assert q.changes["method"] == "qlora" and q.fits is True
    assert q.device_total_bytes <= 24 * GiB
    # hand: NF4 + double quantization 4.127 bits = 0.516 B/param on the linear layers, 16-bit embedding and head
    # (2 x 32000 x 4096 x 2 B = 0.52 GB); the QLoRA paper measured 5,048 MB for LLaMA-7B's 4-bit base
    w = est(replace(s, **q.changes)).components["weights_bytes"]
    assert 0.5 * params < w < 5_048 * 2**20
    lora = _by_id(adv)["lora"]
    assert lora.device_total_bytes > q.device_total_bytes   # a 16-bit base weighs ~2 B/param more


def test_zero_on_one_gpu_costs_memory_and_says_so(llama7b):
    est, config, params = llama7b
    adv = advise(est, TrainSettings(precision="bf16"), A100, model_config=config)
    r = _by_id(adv)
    z1 = r["zero1"]
    assert z1.changes["zero"] == 1 and z1.changes["precision"] == "deepspeed-bf16"
    assert z1.applicable is False and "data-parallel" in z1.reason
    # hand: pure bf16 8 B/param -> DeepSpeed bf16 2 + 2 + 4 (fp32 master) + 8 (fp32 Adam) = 16 B/param
    assert z1.saves_bytes < -4 * params
    assert any("fp32 master" in n for n in z1.notes)
    assert z1.with_more_gpus["gpus"] == 2
    # offload works on one GPU and reports CPU RAM: fp32 master + Adam m, v = 12 B/param on the CPU at least
    off = r["zero2_offload"]
    assert off.applicable is True and off.cpu_bytes >= 12 * params
    assert off.changes["offload_optimizer"] is True


def test_zero_stages_shard_more_on_eight_gpus(llama7b):
    est, config, _ = llama7b
    adv = advise(est, TrainSettings(precision="bf16", gpus=8), A100, model_config=config)
    r = _by_id(adv)
    for rid in ("zero1", "zero2", "zero2_offload", "zero3", "zero3_offload"):
        assert r[rid].applicable is True and r[rid].gpus == 8
    # ZeRO paper Figure 1: P_os > P_os+g > P_os+g+p per device
    assert r["zero1"].device_total_bytes >= r["zero2"].device_total_bytes >= r["zero3"].device_total_bytes
    assert r["zero2"].device_total_bytes > r["zero2_offload"].device_total_bytes
    assert r["zero3"].device_total_bytes >= r["zero3_offload"].device_total_bytes
    assert r["zero1"].slowdown == r["zero2"].slowdown == 1.0 and "ZeRO paper" in r["zero3"].slowdown_source
    assert r["zero3"].slowdown > 1.0 and r["zero2_offload"].slowdown > 1.0


def test_other_remedies(llama7b):
    est, config, _ = llama7b
    s = TrainSettings(precision="bf16", batch=6, grad_accum=2, seq=4096, full_logits_metrics=True)
    adv = advise(est, s, RTX4090, model_config=config)
    r = _by_id(adv)
    m = r["drop_full_logits_metrics"]
    # here training activations outweigh the evaluation's logits: the peak is not the evaluation, so it can save 0
    assert m.changes == {"full_logits_metrics": False} and m.applicable and m.saves_bytes >= 0
    small = TrainSettings(precision="bf16", full_logits_metrics=True)
    assert est(small).peak_phase == "evaluation"
    m1 = _by_id(advise(est, small, RTX4090, model_config=config))["drop_full_logits_metrics"]
    # hand: the evaluation holds at least b x s x vocab fp32 logits = 4 x 2048 x 32000 B
    assert m1.saves_bytes >= 4 * 2048 * 32000
    mb = r["smaller_micro_batch"].changes
    assert mb["batch"] < 6 and 6 % mb["batch"] == 0 and mb["batch"] * mb["grad_accum"] == 12   # same global batch
    assert r["shorter_context"].changes == {"seq": 2048} and r["shorter_context"].saves_bytes > 0
    assert r["lora"].changes == {"method": "lora"} and r["lora"].slowdown == pytest.approx(0.8)
    assert "LoRA paper" in r["lora"].slowdown_source
    sm = r["smaller_model"]
    assert sm.saves_bytes is None and sm.applicable is None and "hfmem train" in sm.reason
    par = r["tensor_pipeline_parallel"]
    assert par.changes["gpus"] == 2 and ("tp" in par.changes or "pp" in par.changes)
    assert {o["kind"] for o in par.options} == {"tensor parallel", "pipeline parallel"}
    assert par.saves_bytes > 0
    # not in use / already in use
    adv2 = advise(est, TrainSettings(precision="bf16", grad_ckpt=True), RTX4090, model_config=config)
    r2 = _by_id(adv2)
    assert r2["drop_full_logits_metrics"].applicable is False and r2["drop_full_logits_metrics"].saves_bytes == 0
    assert "not in use" in r2["drop_full_logits_metrics"].reason
    assert r2["activation_checkpointing"].applicable is False and r2["half_precision"].applicable is False
    assert r2["smaller_micro_batch"].applicable is False


def test_v100_gets_fp16(llama7b):
    est, config, _ = llama7b
    assert V100.bf16 is False
    adv = advise(est, TrainSettings(precision="fp32", batch=2), V100, model_config=config)
    r = _by_id(adv)
    assert r["half_precision"].changes == {"precision": "fp16"}
    assert r["flash_attention"].applicable is False and "Ampere" in r["flash_attention"].reason
    for rid in ("zero1", "zero2", "zero2_offload", "zero3", "zero3_offload"):
        # DeepSpeed trains fp32 as it is: a ZeRO remedy changes the sharding only, not the precision
        assert "precision" not in r[rid].changes and r[rid].changes["zero"] in (1, 2, 3)
    assert r["qlora"].changes.get("precision") == "fp16"
    assert adv.plan is not None
    assert "bf16" not in adv.plan.settings["precision"] and adv.plan.settings["attn"] != "flash"


def _brute_force_check(est, s, gpu, plan):
    """Every candidate the search considers, estimated: the plan has the fewest GPUs of any that fits, and at
    that count no candidate keeping a better-ranked method or running faster fits."""
    order = ["full", "lora", "qlora"]
    fitting = []
    for g in advisor.gpu_counts(s):
        if plan is not None and g > plan.gpus:
            break
        for c in advisor.candidates(s, gpu, g):
            try:
                t = est(c).device_total_bytes
            except Exception:
                continue
            if t <= gpu.usable_bytes:
                fitting.append((c.gpus, order.index(c.method), advisor.slowdown(s, c)[0]))
    if plan is None:
        assert fitting == []
        return
    assert fitting, "the plan fits, so the brute force finds it"
    assert min(fitting)[0] == plan.gpus
    best = min(fitting)
    assert (plan.gpus, order.index(plan.method), plan.slowdown) == best


@pytest.mark.parametrize("model,kw,gpu", [
    ("llama7b", dict(precision="fp32"), A100),
    ("llama7b", dict(precision="bf16", batch=4), RTX4090),
    ("llama7b", dict(precision="amp-fp16", batch=2), V100),
    ("llama70b", dict(method="qlora", precision="bf16"), RTX4090),
    ("llama70b", dict(precision="bf16", batch=2, seq=4096), A100),
])
def test_plan_fits_and_no_fewer_gpus_do(request, model, kw, gpu):
    est, config, _ = request.getfixturevalue(model)
    s = TrainSettings(**kw)
    adv = advise(est, s, gpu, model_config=config)
    plan = adv.plan
    assert plan is not None and adv.plan_reason is None
    after = est(replace(s, **plan.changes))
    assert plan.device_total_bytes == after.device_total_bytes <= gpu.usable_bytes
    assert plan.gpus == replace(s, **plan.changes).gpus and plan.gpus in advisor.gpu_counts(s)
    assert plan.sentence.startswith("Fits")
    _brute_force_check(est, s, gpu, plan)
    for alt in adv.alternatives:  # each keeps a better-ranked method, so it needs more GPUs
        assert alt.gpus > plan.gpus and alt.device_total_bytes <= gpu.usable_bytes


def test_plan_keeps_the_method_and_prefers_fewest_gpus(llama7b, llama70b):
    est, config, _ = llama7b
    # 7B fp32 on an A100-80GB: pure bf16 fits one GPU, so no LoRA and no second GPU
    adv = advise(est, TrainSettings(precision="fp32"), A100, model_config=config)
    assert adv.plan.gpus == 1 and adv.plan.method == "full"
    # 70B full fine-tune on one A100: only ZeRO-3 with optimizer *and* parameter offload keeps the method
    # (ZeRO-Infinity style): the GPU then holds no model states, the node's CPU RAM holds them all -- hand:
    # at least 16 B/param (fp32 master + 2 moments + 16-bit params and grads) of a 69B model, > 1 TB
    est70, config70, params70 = llama70b
    adv = advise(est70, TrainSettings(precision="bf16"), A100, model_config=config70)
    assert adv.plan.gpus == 1 and adv.plan.method == "full"
    assert adv.plan.changes.get("offload_param") and adv.plan.changes.get("offload_optimizer")
    assert adv.plan.cpu_bytes >= 16 * params70


def test_fits_as_asked_plan_changes_nothing(llama7b):
    est, config, _ = llama7b
    s = TrainSettings(method="qlora", grad_ckpt=True)
    adv = advise(est, s, A100, model_config=config)
    assert adv.fits is True and adv.plan.changes == {} and adv.plan.slowdown == 1.0
    assert adv.plan.sentence.startswith("Fits as asked")


def test_no_plan_when_nothing_fits(llama70b):
    est, config, _ = llama70b
    tiny = parse_gpu("1GiB")
    adv = advise(est, TrainSettings(precision="bf16"), tiny, model_config=config)
    assert adv.plan is None and "64 GPUs" in adv.plan_reason
    assert adv.search["gpu_counts"] == [1, 2, 4, 8, 16, 32, 64]
    _brute_force_check(est, TrainSettings(precision="bf16"), tiny, None)


def test_max_batch_and_max_seq_are_the_largest_that_fit(llama7b):
    est, config, _ = llama7b
    s = TrainSettings(precision="bf16", method="lora", grad_ckpt=True)
    adv = advise(est, s, A100, model_config=config)
    cap = A100.usable_bytes  # the CUDA-reported total fits are judged on
    mb, ms = adv.max_batch, adv.max_seq
    assert mb >= 1 and ms >= s.seq
    assert est(replace(s, batch=mb)).device_total_bytes <= cap < est(replace(s, batch=mb + 1)).device_total_bytes
    assert est(replace(s, seq=ms)).device_total_bytes <= cap < est(replace(s, seq=ms + 1)).device_total_bytes
    assert any("max_position_embeddings" in n for n in adv.notes) == (ms > config["max_position_embeddings"])


def test_70b_advice_is_serializable(llama70b):  # its speed is measured in benchmarks/bench_estimates.py
    est, config, _ = llama70b
    for s, gpu in ((TrainSettings(precision="bf16", batch=2, seq=4096), A100),
                   (TrainSettings(precision="bf16"), parse_gpu("1GiB"))):   # nothing fits: the whole search
        adv = advise(est, s, gpu, model_config=config)
        d = json.loads(json.dumps(adv.to_dict()))
        assert [r["id"] for r in d["remedies"]] == SEED_ORDER
        assert set(d) >= {"remedies", "plan", "plan_reason", "max_batch", "max_seq"}
