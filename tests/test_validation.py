"""The closed forms of hfmem/scenarios/formulas.py against the sources' own worked values, and the
validation tooling (benchmarks/validate.py, benchmarks/calibrate.py, hfmem/data/calibration.json)
against properties that must hold whatever the numbers are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hfmem.scenarios import formulas as F

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
CALIBRATION = ROOT / "hfmem" / "data" / "calibration.json"
GB = 10**9  # the ZeRO paper's GB are decimal


# -- 1. formulas: the published worked values ------------------------------------------------------------
def test_model_state_bytes_per_param():
    assert F.model_state_bytes_per_param("mixed_adam") == 16  # ZeRO §3.1: 2 + 2 + K, K = 12
    assert F.model_state_bytes_per_param("bf16_adamw") == 8  # pure bf16 torch AdamW
    assert F.model_state_bytes_per_param("fp32_adamw") == 16
    # ZeRO §3.1: "GPT-2 with 1.5B parameters ... requires at least 24 GB"; Figure 1: 7.5B -> 120 GB
    assert F.model_state_bytes(1.5e9, "mixed_adam") == 24 * GB
    assert F.model_state_bytes(7.5e9, "mixed_adam") == 120 * GB
    with pytest.raises(ValueError):
        F.model_state_bytes_per_param("lamb")


@pytest.mark.parametrize("stage,dp,expected_gb,tolerance_gb", [
    (0, 64, 120, 0.05), (1, 64, 31.4, 0.05), (2, 64, 16.6, 0.05), (3, 64, 1.9, 0.05),  # Figure 1, Ψ = 7.5B
    (1, 4, 52.5, 0.05), (2, 16, 21.6, 0.05), (3, 1024, 0.12, 0.01),  # Table 1
])
def test_zero_stages_reproduce_the_paper(stage, dp, expected_gb, tolerance_gb):
    assert abs(F.zero_model_state_bytes_per_device(7.5e9, stage, dp) / GB - expected_gb) <= tolerance_gb


def test_adamw_step_temporary():
    assert F.adamw_step_temporary_bytes(1000, "foreach") == 1000  # one sqrt temporary per parameter
    assert F.adamw_step_temporary_bytes(1000, "fused") == 0


def test_korthikanti_worked_values():
    # §4: 5as/h = 80 for GPT-3 (a 96, s 2048, h 12288) and 64 for MT-NLG (a 128, h 20480)
    assert F.korthikanti_attention_ratio(96, 2048, 12288) == 80
    assert F.korthikanti_attention_ratio(128, 2048, 20480) == 64
    s, b, h, a = 2048, 1, 12288, 96
    eager = F.korthikanti_activation_bytes_per_layer(s, b, h, a)
    selective = F.selective_recompute_activation_bytes_per_layer(s, b, h)
    assert eager == s * b * h * (34 + 80)
    # "selective activation recomputation ... reduces the activation memory by 70% for GPT-3" (65% MT-NLG)
    assert round(1 - selective / eager, 2) == 0.70
    assert round(1 - 34 / (34 + 64), 2) == 0.65
    assert F.full_recompute_activation_bytes_per_layer(s, b, h) == 2 * s * b * h
    # the calibrated form with the paper's coefficients is the paper's form
    assert F.calibrated_activation_bytes_per_layer(s, b, h, a, 34, 5) == eager


def test_logits_and_kv_worked_values():
    # stas00: Llama-3.1-8B at 32k tokens, "16 GiB of fp32 logits (4·s·V)"
    assert round(F.fp32_logits_bytes(1, 32768, 128256) / 2**30) == 16
    kv = F.kv_cache_bytes_per_token
    assert kv(40, 40, 128, 2) == 819_200  # OPT-13B, vLLM paper §3: "800 KB"
    assert kv(80, 8, 128) == 327_680  # Llama-2-70B / Llama-3-70B
    assert kv(32, 8, 128) == 131_072  # Llama-3/3.1-8B
    assert kv(32, 32, 128) == 524_288  # Llama-2-7B
    assert kv(126, 8, 128) == 516_096  # Llama-3.1-405B
    # vLLM: a 2048-token OPT-13B request "can be as much as 1.6 GB"
    assert round(kv(40, 40, 128) * 2048 / GB, 1) == 1.7 or round(kv(40, 40, 128) * 2048 / 2**30, 1) == 1.6
    assert F.mla_latent_kv_bytes_per_token(61, 512, 64) == 70_272  # DeepSeek-V3
    assert F.mla_latent_kv_bytes_per_token(60, 512, 64) == 69_120  # DeepSeek-V2
    assert F.head_dim_of(5120, 40) == 128 and F.head_dim_of(2048, 8, 256) == 256
    # Mistral 7B: a 4096 rolling buffer cuts a 32k cache 8x
    assert 32768 / F.sliding_window_tokens(32768, 4096) == 8
    assert F.sliding_window_tokens(1000, None) == 1000


# -- 2. validate.py on tiny cases ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def validate():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    sys.path.insert(0, str(BENCH))
    import validate as module

    return module


@pytest.fixture(scope="module")
def tiny_rows(validate):
    """Real snapshot configs (Llama-3.2-1B's shape: GQA, tied embeddings, 128k vocabulary) cut to 2 layers."""
    V = validate
    cases = [
        V.Case("t-full", "meta-llama/Llama-3.2-1B", "train", 2, 128, layers=2),
        V.Case("t-lora", "meta-llama/Llama-3.2-1B", "train", 2, 128, layers=2, lora=(8, 16, V.QV)),
        V.Case("t-infer", "meta-llama/Llama-3.2-1B", "infer", 2, 96, new_tokens=3, layers=2),
    ]
    calibration = V.load_calibration()
    return {c.key: V.run_case(c, calibration) for c in cases}


def test_simulated_training_peak_is_at_least_the_closed_form_model_states(validate, tiny_rows):
    row = tiny_rows["t-full"]
    assert row.error is None and row.simulated
    comps = row.published.components
    states = comps["weights"] + comps["gradients"] + comps["optimizer_state"]
    assert comps["weights"] * 4 == states  # bf16 AdamW: 2 + 2 + 4 B per parameter
    # The simulated allocator peak holds the model states (rounded up per tensor) and, with foreach
    # AdamW, the step temporary on top.
    assert row.simulated >= states + comps["step_temporary"]
    # The closed-form step (W+G+O+foreach temporary) is exact but for the 512 B rounding of each tensor
    # (5 per parameter tensor) and the input ids still alive.
    result = validate.simulate_case(row.case)
    step = result.phase("optimizer_step", 2)
    closed = states + comps["step_temporary"] + comps["buffers"]
    n_tensors = 2 * 9 + 2  # 2 layers of 9 parameter tensors, the embedding (tied head) and the final norm
    assert 0 <= step.peak_bytes - closed < 512 * (5 * n_tensors + 8)


def test_lora_adapter_count_matches_peft(validate, tiny_rows):
    """The analytic adapter count r·(in + out) per targeted Linear against the gradients PEFT's real
    adapters produce in the simulation (fp32: 4 B each, each tensor rounded up to 512 B)."""
    full, lora = tiny_rows["t-full"], tiny_rows["t-lora"]
    assert lora.error is None
    counts = lora.published.components
    adapters = counts["gradients"] // 4
    assert adapters > 0
    result = validate.simulate_case(lora.case)
    grads = result.phase("backward", 2).by_category["gradients"]
    n_tensors = 2 * 2 * 2  # A and B, q and v, 2 layers
    assert 4 * adapters <= grads < 4 * adapters + 512 * n_tensors
    assert lora.simulated < full.simulated


def test_inference_kv_matches_formula(validate, tiny_rows):
    row = tiny_rows["t-infer"]
    assert row.error is None
    case, kv = row.case, row.published.components["kv_cache"]
    assert kv == F.kv_cache_bytes_per_token(2, 8, 64) * case.batch * (case.seq + case.new_tokens)
    layers_tensors = 2 * 2  # K and V of 2 layers, each rounded up to 512 B in the simulation
    assert 0 <= row.kv_cache_bytes - kv < 512 * layers_tensors
    assert row.simulated > row.published.components["weights"] + kv


def test_report_generation(validate, tiny_rows, tmp_path):
    V = validate
    rows = list(tiny_rows.values())
    measured = [V.Measured("a source", "a run", "reserved", 10 * 2**30, rows[0].case, simulated=rows[0].simulated,
                           sim_phase=rows[0].sim_phase),
                V.Measured("another", "a QLoRA run", "allocated", None, None, why_not="4-bit weights")]
    text = V.render(rows, measured, [], V.load_calibration(),
                    {"command": "test", "date": "today", "host": "h", "torch": "t", "transformers": "x", "peft": "p",
                     "elapsed_s": 1.0, "quick": True})
    for heading in ("## 1. Matrix", "## 2. Measured cases", "## 3. GPU measurements", "allocated ≠ reserved"):
        assert heading in text
    assert "Llama-3.2-1B (2 layers)" in text and "4-bit weights" in text
    # a measured row shows the gap measured - simulated
    assert f"{(10 * 2**30 - rows[0].simulated) / 2**30:.2f}" in text
    # the GPU section lists measure_gpu.py files when there are some
    gpu = [{"file": "x.json", "gpu": "NVIDIA H200", "key": "t-full", "setting": "s", "status": "ok",
            "max_memory_allocated": rows[0].simulated, "max_memory_reserved": rows[0].simulated * 2,
            "device_used_after": None}]
    with_gpu = V.render(rows, [], gpu, None, {"command": "c", "date": "d", "host": "h", "torch": "t",
                                              "transformers": "x", "peft": "p", "elapsed_s": 0.0})
    assert "| x.json | NVIDIA H200 | t-full |" in with_gpu and "| 1.000 | 2.000 |" in with_gpu


def test_run_writes_report_and_json(validate, tmp_path):
    V = validate
    case = V.Case("t-gpt2", "openai-community/gpt2", "train", 1, 64, dtype="float32", layers=1)
    out, js = tmp_path / "v.md", tmp_path / "v.json"
    rows, text = V.run([case], [], out, js, "test", quick=True, log=lambda *_: None)
    assert out.read_text() == text and "gpt2 (1 layers)" in text
    data = json.loads(js.read_text())
    assert data["rows"][0]["simulated_peak_allocated_bytes"] == rows[0].simulated > 0


def test_load_measured_reads_measure_gpu_files(validate, tmp_path):
    doc = {"schema": "hfmem.measured/1", "environment": {"gpu_name": "G", "torch": "2", "transformers": "5"},
           "context_bytes": 5, "cases": [{"key": "k", "status": "ok", "max_memory_allocated": 1}]}
    (tmp_path / "g-2026.json").write_text(json.dumps(doc))
    (tmp_path / "broken.json").write_text("{")
    rows = validate.load_measured(tmp_path)
    assert rows == [{"key": "k", "status": "ok", "max_memory_allocated": 1, "file": "g-2026.json", "gpu": "G",
                     "torch": "2", "transformers": "5", "context_bytes": 5}]


def test_case_keys_unique_and_configs_exist(validate):
    keys = [c.key for c in validate.CASES]
    assert len(keys) == len(set(keys))
    for c in validate.CASES:
        assert (validate.SNAPSHOT / c.model / "config.json").is_file(), c.model
    assert any(c.model == "meta-llama/Llama-2-7b-hf" and c.mode == "train" and c.seq == 2048 and c.layers is None
               and not c.lora and not c.grad_ckpt for c in validate.CASES)
    assert all(c.quick for c in validate.quick_cases()) and validate.quick_cases()


# -- 3. calibration data ------------------------------------------------------------------------------------
REQUIRED = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "gpt_neox", "gpt2",
            "mixtral", "qwen3_moe", "deepseek_v3")


def test_calibration_file_is_complete():
    data = json.loads(CALIBRATION.read_text())
    gen = data["generated"]
    assert gen["torch"] and gen["transformers"] and gen["command"].startswith("python benchmarks/calibrate.py")
    assert data["settings"]["dtype"] == "bfloat16"
    for model_type in REQUIRED:
        arch = data["architectures"][model_type]
        attns = [a for a in ("sdpa", "eager") if a in arch]
        assert attns, model_type
        for attn in attns:
            entry = arch[attn]
            coef = entry["activation_bytes_per_token_per_hidden_per_layer"]
            assert all(v > 0 for v in coef.values())
            if attn == "sdpa":  # flash attention keeps nothing s x s: the coefficient does not grow with s
                assert abs(entry["fit"]["attention"]) < 1.5
            else:  # eager attention materialises the scores: it does
                assert entry["fit"]["attention"] > 1.5
            assert entry["non_layer"]["bytes_per_token_per_vocab"] >= 4  # fp32 logits kept for the loss
        for attn in ("sdpa", "eager"):  # whatever is missing is recorded with a reason
            assert attn in arch or any(k.startswith(arch["reference_model"]) for k in data["skipped"])


@pytest.mark.slow  # simulates a GPT layer (~2 s)
def test_simulation_reproduces_korthikanti_for_a_gpt_style_layer(validate):
    """Korthikanti's 34 + 5as/h counts a 4h GeLU MLP, two LayerNorms, 1-byte dropout masks and the eager
    attention's softmax, its dropout mask and output: BERT's layer is exactly that, and its simulated
    per-layer activations, measured by calibrate.py's by-difference method, are exactly the paper's."""
    import calibrate

    entry = calibrate.calibrate_one("google-bert/bert-base-uncased", (2, 4), "eager", grad_ckpt=False)
    assert abs(entry["fit"]["linear"] - 34) < 0.1
    assert abs(entry["fit"]["attention"] - 5) < 0.01


@pytest.mark.slow  # re-runs the calibration (~2 s)
def test_stored_coefficients_are_reproducible(validate):
    """Re-measure one entry: the file is what calibrate.py produces (same torch/transformers versions)."""
    import calibrate

    from hfmem.inventory.meta_model import versions

    data = json.loads(CALIBRATION.read_text())
    now = versions()
    if (now["torch"], now["transformers"]) != (data["generated"]["torch"], data["generated"]["transformers"]):
        pytest.skip(f"calibration.json was made with other versions ({data['generated']})")
    stored = data["architectures"]["gpt2"]["sdpa"]
    fresh = calibrate.calibrate_one(stored["model"], tuple(stored["layers_compared"]), "sdpa", grad_ckpt=True)
    for key in ("per_layer_activation_bytes", "fit", "non_layer", "grad_ckpt"):
        assert fresh[key] == stored[key], key


# -- 4. the CI subset, as CI runs it --------------------------------------------------------------------------
@pytest.mark.slow
def test_quick_subset_runs_as_ci_runs_it(tmp_path):  # its run time is a benchmark, not a test
    pytest.importorskip("torch")
    subprocess.run([sys.executable, str(BENCH / "validate.py"), "--quick", "--out", str(tmp_path / "q.md"),
                    "--json", str(tmp_path / "q.json")], check=True, cwd=ROOT, capture_output=True)
    data = json.loads((tmp_path / "q.json").read_text())
    rows = data["rows"]
    assert rows and all(r["simulated_peak_allocated_bytes"] for r in rows)
    full_ft = next(r for r in rows if r["case"]["key"] == "llama2-7b-train")
    comps = full_ft["published_estimate"]["components"]
    assert full_ft["simulated_peak_allocated_bytes"] >= comps["weights"] + comps["gradients"] + comps["optimizer_state"]
