"""``hfmem simulate`` end to end: sources resolved like ``calc``, the engine run, the CLI rendering only
what the API returns."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

import hfmem  # noqa: E402
from hfmem.cli import app, route_argv  # noqa: E402

runner = CliRunner()
TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
        "torch_dtype": "bfloat16"}


def cli(*args):
    return runner.invoke(app, route_argv(list(args)))


@pytest.fixture
def tiny(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY))
    return folder


def llama_params(c) -> int:
    h, ff, L, v, nh, kv = (c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"],
                           c["num_attention_heads"], c["num_key_value_heads"])
    d = h // nh
    return 2 * v * h + L * (2 * h * h + 2 * h * kv * d + 3 * h * ff + 2 * h) + h


def test_train_json_and_api_agree(tiny):
    result = cli("simulate", str(tiny), "--mode", "train", "--seq", "64", "--batch", "2", "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == "hfmem.simulate/2" and doc["errors"] == []
    m = doc["models"][0]
    for key in ("peak_allocated_bytes", "phases", "predicts", "assumptions", "not_included", "inputs"):
        assert key in m
    assert [(p["name"], p["iteration"]) for p in m["phases"]] == [
        ("forward", 1), ("backward", 1), ("optimizer_step", 1), ("forward", 2), ("backward", 2),
        ("optimizer_step", 2)]
    # bf16 weights, grads and two AdamW states: at least 8 B per parameter (hand count of the tiny llama)
    assert m["peak_allocated_bytes"] >= 8 * llama_params(TINY)
    assert m["phases"][5]["by_category"]["optimizer_state"] >= 4 * llama_params(TINY)
    api = hfmem.simulate_json([hfmem.simulate_model(str(tiny), "train", seq=64, batch=2)])["models"][0]
    assert api["peak_allocated_bytes"] == m["peak_allocated_bytes"]
    assert [p["peak_bytes"] for p in api["phases"]] == [p["peak_bytes"] for p in m["phases"]]


def test_infer_kv_cache_by_hand(tiny):
    result = cli("simulate", str(tiny), "--mode", "infer", "--context", "100", "--batch", "3", "--new-tokens", "2",
                 "--format", "json")
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["models"][0]
    d = TINY["hidden_size"] // TINY["num_attention_heads"]
    kv_per_token = 2 * TINY["num_hidden_layers"] * TINY["num_key_value_heads"] * d * 2  # K and V, bf16
    prefill = next(p for p in m["phases"] if p["name"] == "prefill")
    # each layer's K and V are one allocation of batch x 100 tokens, rounded up to 512 B (GPU emulation)
    per_tensor = 3 * 100 * TINY["num_key_value_heads"] * d * 2
    assert prefill["kv_cache_bytes"] == 2 * TINY["num_hidden_layers"] * -(-per_tensor // 512) * 512
    assert per_tensor * 2 * TINY["num_hidden_layers"] == 3 * 100 * kv_per_token


def test_table_and_markdown(tiny):
    table = cli("simulate", str(tiny), "--seq", "32")
    assert table.exit_code == 0 and "optimizer_step #2" in table.stdout and "Peak allocated" in table.stdout
    md = cli("simulate", str(tiny), "--mode", "infer", "--context", "16", "--format", "markdown")
    assert md.exit_code == 0 and md.stdout.startswith("## Simulated peak") and "| prefill #1 |" in md.stdout


def test_mapped_custom_code_family_is_simulated_as_its_transformers_twin(tmp_path):
    folder = tmp_path / "baichuan"
    folder.mkdir()
    cfg = {"architectures": ["BaiChuanForCausalLM"], "model_type": "baichuan",
           "auto_map": {"AutoModelForCausalLM": "modeling_baichuan.BaiChuanForCausalLM"}, "hidden_size": 64,
           "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 256}
    (folder / "config.json").write_text(json.dumps(cfg))
    result = cli("simulate", str(folder), "--seq", "16", "--format", "json")
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["models"][0]
    assert m["architecture"] == "LlamaForCausalLM"
    assert any("simulated as LlamaForCausalLM" in n for n in m["notes"])


@pytest.mark.parametrize("args,code,needle", [
    (("--batch", "0"), 2, "at least 1"),
    (("--optimizer", "lion"), 2, "lion"),
])
def test_bad_settings(tiny, args, code, needle):
    result = cli("simulate", str(tiny), *args)
    assert result.exit_code == code and needle in result.stderr and "Traceback" not in result.stderr


def test_models_without_transformers_code_fail_clearly(tmp_path):
    result = cli("simulate", "RWKV/rwkv-5-world-3b", "--offline")
    assert result.exit_code == 6 and "rwkv5" in result.stderr
    np = pytest.importorskip("numpy")
    from safetensors.numpy import save_file

    folder = tmp_path / "mystery"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "mystery", "architectures": ["MysteryLM"]}))
    save_file({"w": np.zeros((4, 4), np.float32)}, str(folder / "model.safetensors"))
    result = cli("simulate", str(folder))
    assert result.exit_code == 9 and "no transformers implementation" in result.stderr
