"""benchmarks/coverage.py's per-model rows (docs/coverage.md), checked against values published or worked by hand.

Three model types, one of each kind the report covers: a decoder LM (closed-form estimates), a vision model
and an encoder-decoder (estimated from their own code). The full report is not run here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def coverage_module():
    # loaded by path under its own name: "coverage" is also coverage.py's package name
    spec = importlib.util.spec_from_file_location("bench_coverage", ROOT / "benchmarks" / "coverage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # builds ResNet-50 and simulates it (~3 s)
def test_resnet50_row(coverage_module, tmp_path):
    row = coverage_module.cover("resnet", tmp_path)
    assert row["config_source"] == "snapshot: microsoft/resnet-50"
    # torchvision's published count for resnet50 (IMAGENET1K_V1 weights: num_params 25,557,032); the HF port
    # has the same tensors (BatchNorm running statistics are buffers, not parameters)
    assert row["calc"] == {"ok": True, "params": 25_557_032, "method": row["calc"]["method"]}
    # the per-stage depths [3, 4, 6, 3] are cut to 2 blocks each for the comparison
    assert row["reduced"] == ["depths: [3, 4, 6, 3] -> [2, 2, 2, 2]"]
    assert row["simulate"]["ok"]
    for mode in ("infer", "train"):  # no text decoder: estimated from a simulation of its own code
        assert row[mode]["method"] == "from the model's code"
        assert row[mode]["error"] == 0.0
    assert coverage_module.meets_target(row)


def test_qwen2_decoder_row(coverage_module, tmp_path):
    row = coverage_module.cover("qwen2", tmp_path)
    # Qwen2-0.5B by hand from its config (hidden 896, 24 layers, 14 heads of 64, 2 KV heads, MLP 4864,
    # vocab 151,936, tied embeddings; q/k/v have biases):
    hidden, kv, mlp, vocab, layers = 896, 2 * 64, 4864, 151_936, 24
    attention = (hidden * hidden + hidden) + 2 * (hidden * kv + kv) + hidden * hidden
    per_layer = attention + 3 * hidden * mlp + 2 * hidden
    assert row["calc"]["params"] == vocab * hidden + layers * per_layer + hidden == 494_032_768
    # the decoder's estimates are closed forms, compared with the simulation at settings not calibrated on
    for mode in ("infer", "train"):
        assert row[mode]["method"] == "closed form (calibrated)"
        assert abs(row[mode]["error"]) <= 0.05
    assert row["simulate"]["ok"] and coverage_module.meets_target(row)


@pytest.mark.slow  # simulates T5 (~2.5 s)
def test_t5_encoder_decoder_row(coverage_module, tmp_path):
    row = coverage_module.cover("t5", tmp_path)
    # t5-small by hand (d_model 512, d_ff 2048, 8 heads of 64, 6 + 6 layers, vocab 32,128, tied lm_head):
    d, ff = 512, 2048
    attn, dense = 4 * d * d, 2 * d * ff
    encoder = 6 * (attn + dense + 2 * d) + 32 * 8 + d        # + relative position bias (32 buckets x 8) + norm
    decoder = 6 * (2 * attn + dense + 3 * d) + 32 * 8 + d    # self + cross attention, 3 norms per layer
    assert row["calc"]["params"] == 32_128 * d + encoder + decoder == 60_506_624
    # t5-small's config.json has no num_decoder_layers: T5Config gives the decoder num_layers, now 2 as well
    assert row["reduced"] == ["num_layers: 6 -> 2"]
    for mode in ("infer", "train"):
        assert row[mode]["method"] == "from the model's code"
    assert row["simulate"]["ok"] and coverage_module.meets_target(row)


def test_reduce_depth_keeps_a_moe_layer(coverage_module):
    # DeepSeek-V3: 61 layers, the first 3 dense; cut to 2 layers, one dense layer and one MoE layer remain
    cfg = {"num_hidden_layers": 61, "first_k_dense_replace": 3, "text_config": {"num_hidden_layers": 4}}
    small, changes = coverage_module.reduce_depth(cfg)
    assert small["num_hidden_layers"] == 2 and small["first_k_dense_replace"] == 1
    assert small["text_config"]["num_hidden_layers"] == 2 and cfg["num_hidden_layers"] == 61  # a copy
    assert changes == ["num_hidden_layers: 61 -> 2", "first_k_dense_replace: 3 -> 1",
                       "text_config.num_hidden_layers: 4 -> 2"]
