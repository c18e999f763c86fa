"""Model states for fine-tuning (hfmem.scenarios.training) and their sharding (hfmem.scenarios.sharding).

Expected values are independent of the code under test: the ZeRO paper's printed numbers (Figure 1,
Tables 1 and 2), DeepSpeed's estimator formulas written out here by hand and an output DeepSpeed printed,
the seed note's worked examples, and hand arithmetic over tensor shapes (ground-truth.md §1, §5)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hfmem import reference as R  # published formulas mirrored for comparison
from hfmem.scenarios import sharding as S
from hfmem.scenarios import training as T

ROOT = Path(__file__).resolve().parents[1]
GB = 1e9
GIB = 2**30

# Llama-2 parameter counts by hand: per layer 4·h² (q, k, v, o) + 3·h·i (gate, up, down) + 2·h (norms);
# embeddings and LM head v·h each (untied), final norm h.
LLAMA2_7B = 32 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) + 2 * 32000 * 4096 + 4096
LLAMA2_13B = 40 * (4 * 5120**2 + 3 * 5120 * 13824 + 2 * 5120) + 2 * 32000 * 5120 + 5120


def _measure(name: str) -> dict:
    from hfmem.inventory.meta_model import build_model, measure

    cfg = json.loads((ROOT / "cache/models" / name / "config.json").read_text())
    return measure(build_model(cfg, cfg["architectures"][0])[0])


def _census(name: str) -> list[dict]:
    return _measure(name)["tensors"]


@pytest.fixture(scope="module")
def llama7b_measured():
    return _measure("meta-llama/Llama-2-7b-hf")


@pytest.fixture(scope="module")
def llama7b(llama7b_measured):
    return llama7b_measured["tensors"]


@pytest.fixture(scope="module")
def llama13b():
    return _census("meta-llama/Llama-2-13b-hf")


@pytest.fixture(scope="module")
def bert():
    return _census("google-bert/bert-base-uncased")


def truncates_to(value: float, printed: float, decimals: int) -> bool:
    """The ZeRO paper prints some cells truncated, others rounded."""
    f = 10**decimals
    truncated, rounded = math.floor(value * f + 1e-9) / f, math.floor(value * f + 0.5) / f  # half up
    return truncated == pytest.approx(printed) or rounded == pytest.approx(printed)


# -- the seed's worked examples -----------------------------------------------------------------------------

def test_seed_7b_mixed_precision_model_states(llama7b):
    """Seed: 7B, 16-bit mixed precision, AdamW: params 14 GB (2 B), grads 14 GB (2 B), optimizer 84 GB
    (fp32 copy + momentum + variance, 12 B): 112 GB."""
    rates = T.per_param_bytes("deepspeed-mixed", "adamw")
    assert (rates.weights, rates.master_weights, rates.gradients, rates.optimizer) == (2, 4, 2, 8)
    nominal = 7_000_000_000
    assert rates.weights * nominal == 14 * GB
    assert rates.gradients * nominal == 14 * GB
    assert (rates.master_weights + rates.optimizer) * nominal == 84 * GB
    assert rates.model_states * nominal == 112 * GB

    ms = T.model_states(llama7b, precision="deepspeed-mixed", optimizer="adamw")
    assert ms.trainable_params == LLAMA2_7B == 6_738_415_616
    assert ms.components()["weights_bytes"] == 2 * LLAMA2_7B
    assert ms.components()["master_weights_bytes"] == 4 * LLAMA2_7B
    assert ms.components()["gradients_bytes"] == 2 * LLAMA2_7B
    assert ms.components()["optimizer_bytes"] == 8 * LLAMA2_7B
    assert ms.model_states_bytes == 16 * LLAMA2_7B
    # the seed rounds 6.74B up to "7B": the exact count lands 3.7% under its 112 GB
    assert ms.model_states_bytes / (112 * GB) == pytest.approx(1, abs=0.04)
    assert ms.activation_dtype == "float16"


def test_seed_13b_at_16_bytes_per_param(llama13b):
    """Seed: 13B mixed-precision full fine-tune needs at least 16 bytes per parameter of model states
    (26 GB bf16 params + 26 GB grads + fp32 copy + Adam states)."""
    ms = T.model_states(llama13b, precision="deepspeed-bf16", optimizer="adamw")
    assert ms.trainable_params == LLAMA2_13B == 13_015_864_320
    assert ms.model_states_bytes == 16 * LLAMA2_13B
    assert ms.weights_bytes == ms.gradients_bytes == 2 * LLAMA2_13B  # "26 GB" each at 13B
    # DeepSpeed's fp32 gradient at the step (the seed's "extra fp32 gradient copy"): 4 B/param
    assert ms.fp32_gradients_bytes == 4 * LLAMA2_13B
    assert ms.activation_dtype == "bfloat16"


# -- precisions and optimizers: hand arithmetic -------------------------------------------------------------

def test_precision_modes_per_param():
    cases = {
        ("fp32", "adamw"): (4, 0, 4, 8),
        ("amp-bf16", "adamw"): (4, 0, 4, 8),
        ("amp-fp16", "adamw"): (4, 0, 4, 8),
        ("bf16", "adamw"): (2, 0, 2, 4),        # torch AdamW states in the param dtype: 8 B in all
        ("fp16", "adamw"): (2, 0, 2, 4),
        ("deepspeed-bf16", "adamw"): (2, 4, 2, 8),
        ("bf16", "sgd"): (2, 0, 2, 0),
        ("bf16", "sgd-momentum"): (2, 0, 2, 2),
        ("amp-bf16", "lion"): (4, 0, 4, 4),
        ("bf16", "adamw-8bit"): (2, 0, 2, 2.03125),
        ("bf16", "lion-8bit"): (2, 0, 2, 1.015625),
    }
    for (prec, opt), want in cases.items():
        r = T.per_param_bytes(prec, opt)
        assert (r.weights, r.master_weights, r.gradients, r.optimizer) == want, (prec, opt)
    assert T.activation_dtype_bytes("amp-bf16") == 2 and T.activation_dtype_bytes("fp32") == 4
    assert T.PRECISIONS["amp-fp16"].activation_dtype == "float16"
    with pytest.raises(ValueError):
        T.per_param_bytes("int8", "adamw")


def test_bnb_8bit_states_per_tensor_with_4096_exception():
    """2 uint8 states + an fp32 absmax per 256-element block; numel < 4096 keeps two fp32 states (8 B)."""
    sizes = [4095, 4096, 4097, 256, 1_000_000, 11008 * 4096]
    expected = [8 * 4095,
                2 * 4096 + 2 * 4 * 16,
                2 * 4097 + 2 * 4 * 17,
                8 * 256,
                2 * 1_000_000 + 2 * 4 * 3907,          # ceil(1e6 / 256) = 3907
                2 * 45_088_768 + 2 * 4 * 176_128]      # 45,088,768 / 256 = 176,128 exactly
    census = [{"role": "other", "name": f"t{i}.weight", "shape": [n], "count": 3, "params": 3 * n}
              for i, n in enumerate(sizes)]
    ms = T.model_states(census, precision="bf16", optimizer="adamw-8bit")
    assert ms.optimizer_bytes == 3 * sum(expected)
    assert ms.optimizer_step_temporary_bytes == 0
    assert T.model_states(census, precision="bf16", optimizer="paged-adamw-8bit").optimizer_bytes == 3 * sum(expected)
    # one state for Lion8bit: 1 + 4/256 per param, fp32 below 4096
    lion = T.model_states(census, precision="bf16", optimizer="lion-8bit").optimizer_bytes
    assert lion == 3 * sum(4 * n if n < 4096 else n + 4 * math.ceil(n / 256) for n in sizes)


def test_bnb_8bit_on_bert_census(bert):
    """bert-base-uncased (BertForMaskedLM, decoder tied to the word embeddings), tensor by tensor."""
    def eight_bit(n):
        return 8 * n if n < 4096 else 2 * n + 8 * math.ceil(n / 256)

    h, i, v = 768, 3072, 30522
    tensors = ([v * h, 512 * h, 2 * h, h, h]                       # embeddings + LayerNorm
               + 12 * ([h * h, h] * 4 + [h, h] + [i * h, i] + [h * i, h] + [h, h])
               + [h * h, h, h, h, v])                                # cls transform + LayerNorm + bias
    assert sum(tensors) == 109_514_298
    ms = T.model_states(bert, precision="amp-bf16", optimizer="adamw-8bit")
    assert ms.trainable_params == 109_514_298
    assert ms.optimizer_bytes == sum(eight_bit(n) for n in tensors)
    assert T.total_numel(bert) == 109_514_298


def test_adamw_states_and_foreach_temporary(llama7b):
    bf16 = T.model_states(llama7b, precision="bf16", optimizer="adamw", adamw_impl="foreach")
    assert bf16.model_states_bytes == 8 * LLAMA2_7B                 # 2 + 2 + 2·2
    assert bf16.optimizer_step_temporary_bytes == 2 * LLAMA2_7B     # one sqrt per param, bf16
    fused = T.model_states(llama7b, precision="bf16", optimizer="adamw", adamw_impl="fused")
    assert fused.optimizer_step_temporary_bytes == 0
    amp = T.model_states(llama7b, precision="amp-bf16", optimizer="adamw")
    assert amp.model_states_bytes == 16 * LLAMA2_7B
    assert amp.optimizer_step_temporary_bytes == 4 * LLAMA2_7B
    assert amp.step_peak_bytes == 20 * LLAMA2_7B
    # DeepSpeed steps the fp32 master with FusedAdam: no foreach temporaries
    assert T.model_states(llama7b, precision="deepspeed-bf16").optimizer_step_temporary_bytes == 0


def test_adafactor_factored_states(llama7b):
    """HF Adafactor: fp32 row + column factors for >= 2-D, a full fp32 exp_avg_sq for 1-D, no exp_avg
    with the default beta1=None."""
    h, i, v, L = 4096, 11008, 32000, 32
    per_layer = 4 * (h + h) * 4 + 3 * (h + i) * 4 + 2 * h * 4
    expected = L * per_layer + 2 * (v + h) * 4 + h * 4
    ms = T.model_states(llama7b, precision="bf16", optimizer="adafactor")
    assert ms.optimizer_bytes == expected
    # step temporaries, largest tensor (embedding / LM head, 131,072,000): fp32 copies of param and grad
    # (half model) + two fp32 working tensors
    assert ms.optimizer_step_temporary_bytes == 4 * 4 * v * h
    assert T.model_states(llama7b, precision="amp-bf16", optimizer="adafactor").optimizer_step_temporary_bytes \
        == 2 * 4 * v * h
    with_beta1 = T.model_states(llama7b, precision="bf16", optimizer="adafactor", adafactor_beta1=0.9)
    assert with_beta1.optimizer_bytes == expected + 4 * LLAMA2_7B
    # 3-D fused experts [E, a, b]: row factor E·a, column factor E·b
    assert T.adafactor_state_bytes((8, 1024, 512)) == 4 * (8 * 1024 + 8 * 512)


def test_lora_trainable_and_frozen():
    """Adapters (fp32, trained under autocast) on a frozen bf16 base: the base costs its weights only."""
    base = [{"role": "linear", "name": "q_proj", "in_features": 4096, "out_features": 4096, "bias": 0,
             "tied": False, "count": 32, "params": 32 * 4096 * 4096}]
    adapters = [{"role": "linear", "name": "lora_A", "in_features": 4096, "out_features": 16, "bias": 0,
                 "tied": False, "count": 32, "params": 32 * 4096 * 16},
                {"role": "linear", "name": "lora_B", "in_features": 16, "out_features": 4096, "bias": 0,
                 "tied": False, "count": 32, "params": 32 * 16 * 4096}]
    ms = T.model_states(adapters, base, precision="amp-bf16", optimizer="adamw", frozen_weight_bytes=2)
    n_a, n_b = 2 * 32 * 16 * 4096, 32 * 4096 * 4096
    assert (ms.trainable_params, ms.frozen_params) == (n_a, n_b)
    assert ms.weights_bytes == 4 * n_a + 2 * n_b
    assert ms.gradients_bytes == 4 * n_a
    assert ms.optimizer_bytes == 8 * n_a
    assert ms.master_weights_bytes == 0


# -- the ZeRO paper -----------------------------------------------------------------------------------------

def test_zero_paper_figure1():
    got = [R.zero_paper_states(7_500_000_000, st, 64).gpu_bytes / GB for st in range(4)]
    assert got[0] == 120
    assert round(got[1], 1) == 31.4
    assert round(got[2], 1) == 16.6
    assert round(got[3], 1) == 1.9 and round(got[3], 2) == 1.88


@pytest.mark.parametrize("psi,dp,stage,printed,decimals", [
    (7.5e9, 4, 1, 52.5, 1), (7.5e9, 4, 2, 41.3, 1), (7.5e9, 4, 3, 30, 0),
    (7.5e9, 16, 1, 35.6, 1), (7.5e9, 16, 2, 21.6, 1), (7.5e9, 16, 3, 7.5, 1),
    (7.5e9, 256, 3, 0.47, 2), (7.5e9, 1024, 1, 30.1, 1), (7.5e9, 1024, 3, 0.12, 2),
    (128e9, 1, 1, 2048, 0), (128e9, 16, 1, 608, 0), (128e9, 16, 2, 368, 0), (128e9, 64, 2, 284, 0),
    (128e9, 1024, 3, 2, 0),
    (1e12, 4, 1, 7000, 0), (1e12, 64, 1, 4187, 0), (1e12, 64, 2, 2218, 0), (1e12, 256, 3, 62.5, 1),
    (1e12, 1024, 2, 2013, 0),
])
def test_zero_paper_table1(psi, dp, stage, printed, decimals):
    value = R.zero_paper_states(int(psi), stage, dp).gpu_bytes / GB
    assert truncates_to(value, printed, decimals), (value, printed)


def test_zero_paper_table2_max_model_size():
    """32 GB V100s, MP 1, 64 GPUs: 2B / 7.6B / 14.4B / 128B."""
    got = [R.zero_paper_max_params(32 * GB, st, 64) / 1e9 for st in range(4)]
    assert [math.floor(x * 10) / 10 for x in got] == [2.0, 7.6, 14.4, 128.0]


# -- DeepSpeed's estimators ---------------------------------------------------------------------------------

def test_deepspeed_zero2_estimator_formulas():
    P = 2_851_598_336
    for gpus, nodes in [(1, 1), (8, 1), (8, 4)]:
        n = gpus * nodes
        assert R.deepspeed_estimate_zero2(P, gpus, nodes, cpu_offload=False) == \
            (int(P * 4 * gpus * 1.5), 4 * P + int(16 * P / n))
        assert R.deepspeed_estimate_zero2(P, gpus, nodes, cpu_offload=True) == \
            (int(P * max(4 * n, 16) * 1.5), 2 * P)
    rows = R.deepspeed_zero2_table(P, 8)
    assert [r.offload_optimizer for r in rows] == [True, False]


def test_deepspeed_zero3_estimator_formulas():
    P, LL = LLAMA2_7B, 32000 * 4096
    for gpus, nodes in [(1, 1), (8, 1), (8, 2)]:
        n = gpus * nodes
        rows = R.deepspeed_zero3_table(P, LL, gpus, nodes)
        want = [  # (cpu, gpu) in DeepSpeed's printing order
            (P * 18 / nodes * 1.5, 4 * LL),
            (P * max(4 * gpus, 18 / nodes) * 1.5, 4 * LL),
            (P * 16 / nodes * 1.5, 4 * LL + int(2 * P / n)),
            (P * max(4 * gpus, 16 / nodes) * 1.5, 4 * LL + int(2 * P / n)),
            (LL * 4 * gpus * 1.5, 4 * LL + int(18 * P / n)),
            (P * 4 * gpus * 1.5, 4 * LL + int(18 * P / n)),
        ]
        assert [(r.cpu_bytes, r.gpu_bytes) for r in rows] == [(int(c), int(g)) for c, g in want]
        assert all(r.largest_layer_bytes == 4 * LL for r in rows)


def test_deepspeed_zero3_published_output_t5_small():
    """estimate_zero3_model_states_mem_needs_all_live(t5-small, 1 GPU) as printed (blog.csdn.net/u012327567/
    article/details/132278598): "60M total params, 16M largest layer params", rows 1.52/0.06, 1.52/0.06,
    1.35/0.17, 1.35/0.17, 0.09/1.08, 0.34/1.08 (GiB). t5-small by hand: shared 32128·512; encoder layer
    4·512² + 512·2048·2 + 2·512, decoder layer 8·512² + 512·2048·2 + 3·512; relative bias 32·8 and a final
    norm in each stack."""
    shared = 32128 * 512
    enc = 6 * (4 * 512**2 + 2 * 512 * 2048 + 2 * 512) + 32 * 8 + 512
    dec = 6 * (8 * 512**2 + 2 * 512 * 2048 + 3 * 512) + 32 * 8 + 512
    P = shared + enc + dec
    assert P == 60_506_624
    printed = [(1.52, 0.06), (1.52, 0.06), (1.35, 0.17), (1.35, 0.17), (0.09, 1.08), (0.34, 1.08)]
    rows = R.deepspeed_zero3_table(P, shared, 1, 1)
    assert [(round(r.cpu_bytes / GIB, 2), round(r.gpu_bytes / GIB, 2)) for r in rows] == printed


def test_deepspeed_largest_layer_from_census(llama7b, bert):
    assert T.largest_module_params(llama7b) == 32000 * 4096
    assert T.largest_module_params(bert) == 30522 * 768
    experts = [{"role": "experts", "name": "experts.gate_up_proj", "shape": [8, 2048, 512], "count": 4,
                "params": 4 * 8 * 2048 * 512},
               {"role": "experts", "name": "experts.down_proj", "shape": [8, 256, 2048], "count": 4,
                "params": 4 * 8 * 256 * 2048}]
    assert T.largest_module_params(experts) == 8 * 2048 * 512 + 8 * 256 * 2048  # one module owns both


def test_eleuther_communication_buffers():
    assert R.eleuther_communication_bytes(0, 8) == 0
    assert R.eleuther_communication_bytes(1, 1) == 0
    assert R.eleuther_communication_bytes(2, 8) == 5e8 * 2
    assert R.eleuther_communication_bytes(3, 8) == 5e8 * 2 + 1e9 * 2


def test_deepspeed_defaults():
    cfg = S.ZeroConfig(stage=3)
    assert (cfg.reduce_bucket_size, cfg.allgather_bucket_size) == (500_000_000, 500_000_000)
    assert (cfg.prefetch_bucket_size, cfg.max_live_parameters, cfg.param_persistence_threshold) == \
        (50_000_000, 1_000_000_000, 100_000)
    assert cfg.overlap and not S.ZeroConfig(stage=2).overlap
    with pytest.raises(ValueError):
        S.ZeroConfig(stage=2, offload_param=True)


# -- hfmem's ZeRO accounting --------------------------------------------------------------------------------

def _big_census(n_layers=8, h=8192):
    """Tensors all above the ZeRO-3 persistence threshold; numel divisible by every DP degree used."""
    return [{"role": "linear", "name": "up_proj", "in_features": h, "out_features": h, "bias": 0,
             "tied": False, "count": n_layers, "params": n_layers * h * h}]


@pytest.mark.parametrize("dp", [1, 4, 64])
def test_zero_states_reduce_to_the_paper(dp):
    census = _big_census()
    psi = 8 * 8192 * 8192
    ms = T.model_states(census, precision="deepspeed-mixed", optimizer="adamw")
    paper = {st: R.zero_paper_states(psi, st, dp).gpu_bytes for st in range(4)}
    z1 = S.zero_states(ms, S.ZeroConfig(stage=1, data_parallel=dp)).gpu_components()
    assert z1["weights_bytes"] + z1["unsharded_gradients_bytes"] + z1["master_weights_bytes"] \
        + z1["optimizer_bytes"] == paper[1]                           # 4Ψ + 12Ψ/N
    z2 = S.zero_states(ms, S.ZeroConfig(stage=2, data_parallel=dp)).gpu_components()
    assert z2["weights_bytes"] + z2["gradients_bytes"] + z2["master_weights_bytes"] \
        + z2["optimizer_bytes"] == paper[2]                           # 2Ψ + 14Ψ/N
    z3 = S.zero_states(ms, S.ZeroConfig(stage=3, data_parallel=dp)).gpu_components()
    assert z3["weights_bytes"] + z3["gradients_bytes"] + z3["master_weights_bytes"] \
        + z3["optimizer_bytes"] == paper[3]                           # 16Ψ/N
    assert "persistent_params_bytes" not in z3


def test_zero2_components_and_peak_by_hand():
    census = _big_census()
    psi, dp, largest = 8 * 8192 * 8192, 4, 8192 * 8192
    ms = T.model_states(census, precision="deepspeed-bf16", optimizer="adamw")
    z = S.zero_states(ms, S.ZeroConfig(stage=2, data_parallel=dp))
    comps = z.gpu_components()
    assert comps == {
        "weights_bytes": 2 * psi, "master_weights_bytes": 4 * psi // dp, "optimizer_bytes": 8 * psi // dp,
        "gradients_bytes": 2 * psi // dp, "fp32_gradients_bytes": 4 * psi // dp,
        "unsharded_gradients_bytes": 2 * largest, "reduce_bucket_bytes": 2 * 500_000_000}
    persistent = 2 * psi + 14 * psi // dp
    assert z.gpu_peak_bytes == persistent + max(2 * largest + 10**9, 4 * psi // dp)
    # overlap_comm double-buffers the bucket
    z_ov = S.zero_states(ms, S.ZeroConfig(stage=2, data_parallel=dp, overlap_comm=True))
    assert z_ov.gpu_components()["reduce_bucket_bytes"] == 4 * 500_000_000


def test_zero_offload_cpu_per_node_by_hand():
    census = _big_census()
    psi, dp, per_node = 8 * 8192 * 8192, 16, 8
    ms = T.model_states(census, precision="deepspeed-bf16", optimizer="adamw")
    z2 = S.zero_states(ms, S.ZeroConfig(stage=2, data_parallel=dp, gpus_per_node=per_node, offload_optimizer=True))
    cpu = z2.cpu_components()
    assert cpu["master_weights_bytes"] == per_node * 4 * psi // dp
    assert cpu["optimizer_bytes"] == per_node * 8 * psi // dp
    assert cpu["fp32_gradients_bytes"] == per_node * 4 * psi // dp
    assert "master_weights_bytes" not in z2.gpu_components()
    z3 = S.zero_states(ms, S.ZeroConfig(stage=3, data_parallel=dp, gpus_per_node=per_node,
                                        offload_optimizer=True, offload_param=True))
    cpu3 = z3.cpu_components()
    assert cpu3["weights_bytes"] == per_node * 2 * psi // dp
    assert cpu3["gradients_bytes"] == per_node * 2 * psi // dp
    assert cpu3["master_weights_bytes"] + cpu3["optimizer_bytes"] == per_node * 12 * psi // dp
    assert "weights_bytes" not in z3.gpu_components()


def test_zero3_persistent_small_params(llama7b):
    ms = T.model_states(llama7b, precision="deepspeed-bf16", optimizer="adamw")
    z = S.zero_states(ms, S.ZeroConfig(stage=3, data_parallel=8))
    norms = 2 * 32 * 4096 + 4096          # every RMSNorm weight is under 1e5 elements
    assert z.gpu_components()["persistent_params_bytes"] == 2 * norms
    assert z.gpu_components()["unsharded_gradients_bytes"] == 2 * 32000 * 4096
    with pytest.raises(ValueError):
        S.zero_states(T.model_states(llama7b, precision="bf16"), S.ZeroConfig(stage=2, data_parallel=8))


def test_zero0_fp16_optimizer_keeps_fp32_copies():
    census = _big_census()
    psi = 8 * 8192 * 8192
    ms = T.model_states(census, precision="deepspeed-fp16", optimizer="adamw")
    c = S.zero_states(ms, S.ZeroConfig(stage=0, data_parallel=2)).gpu_components()
    assert c["master_weights_bytes"] == 4 * psi and c["optimizer_bytes"] == 8 * psi
    assert c["fp32_gradients_bytes"] == 4 * psi
    # bf16 with fp32 gradient accumulation at ZeRO-1: BF16_Optimizer's full fp32 gradient buffer
    bf = T.model_states(census, precision="deepspeed-bf16", optimizer="adamw")
    c1 = S.zero_states(bf, S.ZeroConfig(stage=1, data_parallel=4, grad_accum_dtype="float32")).gpu_components()
    assert c1["fp32_gradients_bytes"] == 4 * psi and c1["master_weights_bytes"] == 4 * psi // 4


# -- FSDP, DDP ----------------------------------------------------------------------------------------------

def test_fsdp_full_shard_and_shard_grad_op_by_hand():
    census = _big_census()
    psi, n, unit = 8 * 8192 * 8192, 8, 8192 * 8192
    ms = T.model_states(census, precision="bf16", optimizer="adamw", adamw_impl="fused")
    full = S.fsdp_states(ms, n, largest_unit_params=unit, root_unit_params=0)
    assert full.gpu_components() == {
        "weights_bytes": 2 * psi // n, "gradients_bytes": 2 * psi // n, "optimizer_bytes": 4 * psi // n,
        "gathered_params_bytes": 2 * 2 * unit, "unsharded_gradients_bytes": 2 * unit}
    sgo = S.fsdp_states(ms, n, largest_unit_params=unit, strategy="shard_grad_op")
    assert sgo.gpu_components()["gathered_params_bytes"] == 2 * psi
    none = S.fsdp_states(ms, n, largest_unit_params=unit, strategy="no_shard")
    assert none.gpu_peak_bytes == ms.model_states_bytes
    ddp = S.ddp_states(ms)
    assert ddp.gpu_components()["ddp_bucket_bytes"] == 2 * psi
    assert "ddp_bucket_bytes" not in S.ddp_states(ms, gradient_as_bucket_view=True).gpu_components()


def test_fsdp_units_from_inventory_layers(llama7b_measured):
    layer = 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096
    unit, root = S.fsdp_units(llama7b_measured["layers"], llama7b_measured["num_params"])
    assert (unit, root) == (layer, 2 * 32000 * 4096 + 4096)


# -- tensor and pipeline parallelism ------------------------------------------------------------------------

def test_tensor_parallel_census_llama(llama7b):
    h, i, v, L = 4096, 11008, 32000, 32
    linear = L * (4 * h * h + 3 * h * i)
    norms = 2 * L * h + h
    tp2 = S.tensor_parallel_census(llama7b, 2)
    assert sum(e["params"] for e in tp2) == linear // 2 + 2 * v * h + norms
    vp = S.tensor_parallel_census(llama7b, 2, vocab_parallel=True)
    assert sum(e["params"] for e in vp) == linear // 2 + v * h + norms
    down = next(e for e in tp2 if e["name"] == "down_proj")
    up = next(e for e in tp2 if e["name"] == "up_proj")
    assert (down["in_features"], down["out_features"]) == (i // 2, h)   # row-parallel
    assert (up["in_features"], up["out_features"]) == (h, i // 2)       # column-parallel
    ms = T.model_states(tp2, precision="bf16")
    assert ms.trainable_params == linear // 2 + 2 * v * h + norms


def test_pipeline_stage_census_llama(llama7b):
    layer = 4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096
    emb = 32000 * 4096
    stages = [sum(e["params"] for e in S.pipeline_stage_census(llama7b, 4, s)) for s in range(4)]
    assert stages == [8 * layer + emb, 8 * layer, 8 * layer, 8 * layer + emb + 4096]
    assert sum(stages) == LLAMA2_7B
    assert [S.pipeline_layers(30, 4, s) for s in range(4)] == [8, 8, 7, 7]


def test_pipeline_tied_head_copies_embedding():
    census = [{"role": "embedding", "name": "wte", "shape": [1000, 64], "count": 1, "params": 64000},
              {"role": "linear", "name": "c_fc", "in_features": 64, "out_features": 256, "bias": 256,
               "tied": False, "count": 4, "params": 4 * (64 * 256 + 256)},
              {"role": "lm_head", "name": "lm_head", "in_features": 64, "out_features": 1000, "bias": 0,
               "tied": True, "count": 1, "params": 0}]
    last = S.pipeline_stage_census(census, 2, 1)
    assert sum(e["params"] for e in last) == 2 * (64 * 256 + 256) + 64000
    assert sum(e["params"] for e in S.pipeline_stage_census(census, 1, 0)) == 64000 + 4 * (64 * 256 + 256)


def test_pipeline_activation_factor_korthikanti():
    """1F1B: the first stage holds p micro-batches of L/p layers = L layers whatever p (Eq. 5);
    interleaved: × (1 + (p − 1)/(p·m))."""
    assert S.pipeline_activation_layers(96, 8) == 96
    assert S.pipeline_activation_layers(96, 8, microbatches=64) == 96
    assert S.pipeline_activation_layers(96, 8, microbatches=2) == 24
    assert S.pipeline_activation_layers(96, 8, stage=7) == 12
    assert S.pipeline_activation_layers(96, 8, schedule="interleaved", virtual_stages=3) == \
        pytest.approx(96 * (1 + 7 / 24))
    assert S.pipeline_activation_layers(96, 8, schedule="gpipe", microbatches=16) == 192
