"""hfmem.plan.largest: the largest depth of a family's width that fits a GPU (issue 17, "the largest model that
fits"). The independent checks: the depth found is re-answered by the public API end to end (``api.train`` /
``api.infer`` on a folder holding the depth-scaled config.json: it fits, one more layer does not, with the same
device total), the parameter count is counted by hand from the config, and the answer is bounded by the seed
note's 16 bytes/parameter rule for Adam in mixed precision."""

from __future__ import annotations

import json

import pytest

from hfmem import api
from hfmem.errors import UnsupportedArchitectureError, UsageError
from hfmem.plan.gpus import parse_gpu
from hfmem.plan.largest import depth_scaled, largest_in_family
from hfmem.scenarios.finetune import TrainSettings
from hfmem.scenarios.inference import InferenceSettings

GiB = 2**30
H, I, HEADS, KV_HEADS, VOCAB = 2048, 5632, 16, 4, 32000
HEAD_DIM = H // HEADS  # 128
# A small llama width of our own (TinyLlama-1.1B's widths, untied, 2 layers): the template of these tests.
CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H, "intermediate_size": I,
    "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "num_hidden_layers": 2, "vocab_size": VOCAB,
    "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
    "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16",
}
# Full fine-tuning, AdamW, mixed precision (torch.autocast: fp32 weights, gradients, Adam moments): the seed
# note's setting, 2 + 2 + 12 = 16 B per parameter with fp16 weights/gradients and fp32 master + moments, the
# same 16 B as 4 + 4 + 8 with autocast.
FULL = TrainSettings(method="full", optimizer="adamw", precision="amp-bf16", seq=2048, batch=1)


def hand_params(layers: int) -> int:
    """LlamaForCausalLM's parameters, counted from the config by hand (transformers' modeling_llama: no
    biases with attention_bias / mlp_bias False; RMSNorm has one weight vector)."""
    embedding = VOCAB * H
    attention = H * H + 2 * H * (KV_HEADS * HEAD_DIM) + H * H    # q, k, v, o
    mlp = 3 * H * I                                              # gate, up, down
    norms = 2 * H                                                # input + post-attention RMSNorm
    final_norm = H
    lm_head = VOCAB * H                                          # untied
    return embedding + layers * (attention + mlp + norms) + final_norm + lm_head


def write_model(folder, layers: int, config: dict = CONFIG):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(dict(config, num_hidden_layers=layers)))
    return str(folder)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("template") / "tiny-llama", 2)


@pytest.mark.slow  # hfmem train on two folders (meta-model builds): the README's second test command runs it
def test_full_adamw_depth_fits_and_one_more_does_not_end_to_end(template, tmp_path):
    gpu = parse_gpu("24GiB")
    r = largest_in_family(template, job="train", gpu=gpu, settings=FULL, scope="template")
    w = r.best
    assert w is r.template_width and w.max_layers > 0 and w.layers_template == 2 and w.hidden_size == H
    # the public API on a folder holding the depth-scaled config.json: the answer fits, one more layer does not
    at = api.train(write_model(tmp_path / "at", w.max_layers), settings=FULL, gpu=gpu)
    above = api.train(write_model(tmp_path / "above", w.max_layers + 1), settings=FULL, gpu=gpu)
    assert at.fits is True and above.fits is False
    assert at.estimate.device_total_bytes == w.device_total_bytes <= 24 * GiB
    assert above.estimate.device_total_bytes == w.next_bytes > 24 * GiB
    assert w.params == hand_params(w.max_layers) == at.report.inventory.num_params
    assert r.capacity_bytes == 24 * GiB


def test_full_adamw_answer_between_the_seed_rules(template):
    # Seed note (shared/seed/000_75d601da37785dbe.txt, "3090 模型容量上限是 24/16=1.5B"): Adam in mixed precision
    # needs 16 B per parameter before activations, so no model above capacity / 16 trains; reserving half the
    # memory for activations (its "0.75B" for a 3090, written for batches above 1) gives capacity / 32, which a
    # single 2048-token sequence must beat: its activations are far below half of 24 GiB for a 2048-wide model.
    r = largest_in_family(template, job="train", gpu="24GiB", settings=FULL, scope="template")
    assert 24 * GiB // 32 < r.best.params < 24 * GiB // 16
    assert r.rule_of_thumb_bytes_per_param == 16 and r.rule_of_thumb_params == 24 * GiB // 16


def test_lora_allows_a_larger_model_than_full(template):
    full = largest_in_family(template, job="train", gpu="24GiB", settings=FULL, scope="template")
    lora = largest_in_family(template, job="train", gpu="24GiB", scope="template",
                             settings=TrainSettings(method="lora", precision="bf16", seq=2048, batch=1))
    assert lora.best.max_layers > full.best.max_layers and lora.best.params > full.best.params


def test_a_bigger_gpu_never_gives_a_smaller_answer(template):
    answers = [largest_in_family(template, job="train", gpu=g, settings=FULL, scope="template").best.params
               for g in ("16GiB", "24GiB", "40GiB")]
    assert answers == sorted(answers) and answers[0] < answers[2]


@pytest.mark.slow  # hfmem infer on two folders (meta-model builds)
def test_serving_depth_fits_and_one_more_does_not_end_to_end(template, tmp_path):
    gpu = parse_gpu("8GiB")
    s = InferenceSettings(context=4096, batch=1)
    r = largest_in_family(template, job="serve", gpu=gpu, settings=s, scope="template")
    w = r.best
    at = api.infer(write_model(tmp_path / "at", w.max_layers), settings=s, gpu=gpu)
    above = api.infer(write_model(tmp_path / "above", w.max_layers + 1), settings=s, gpu=gpu)
    assert at.fit.fits is True and above.fit.fits is False
    assert (at.fit.needed_bytes, above.fit.needed_bytes) == (w.device_total_bytes, w.next_bytes)
    assert w.params == hand_params(w.max_layers)
    # bf16 weights alone are 2 B per parameter: no served model holds more than capacity / 2
    assert w.params < 8 * GiB // 2 and r.rule_of_thumb_params == 8 * GiB // 2


def test_nothing_fits_a_tiny_gpu(template):
    r = largest_in_family(template, job="train", gpu="1GiB", settings=FULL, scope="template")
    # one layer is at least 16 B x hand_params(1) = 3.5 GB of model states: more than 1 GiB
    assert 16 * hand_params(1) > GiB
    assert r.best is None and r.widths[0].max_layers == 0 and r.widths[0].params == 0
    assert r.widths[0].next_bytes > GiB


def test_per_layer_lists_follow_their_pattern():
    # Gemma-3-style layer types: two sliding layers then a full one, repeated (transformers' default
    # sliding_window_pattern); at 7 layers the pattern goes on and is cut.
    s, f = "sliding_attention", "full_attention"
    cfg = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 256,
           "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
           "num_hidden_layers": 6, "vocab_size": 1000, "sliding_window": 128, "layer_types": [s, s, f] * 2}
    out = depth_scaled(cfg, 7)
    assert out["num_hidden_layers"] == 7 and out["layer_types"] == [s, s, f, s, s, f, s]
    assert depth_scaled(cfg, 2)["layer_types"] == [s, s]
    odd = dict(cfg, layer_types=[f, s, s, s, s, s])  # no pattern that repeats: no rule for another depth
    with pytest.raises(UnsupportedArchitectureError, match="no repeating pattern"):
        depth_scaled(odd, 8)


def test_templates_it_cannot_depth_scale_are_refused_in_one_line():
    with pytest.raises(UnsupportedArchitectureError) as exc:  # an encoder-decoder: two depths
        largest_in_family("google-t5/t5-small", job="train", gpu="24GiB", scope="template")
    assert "cannot depth-scale" in str(exc.value) and "\n" not in str(exc.value) and exc.value.hint
    with pytest.raises(UsageError, match="job must be"):
        largest_in_family("meta-llama/Llama-3.2-1B", job="pretrain", gpu="24GiB")


@pytest.mark.slow  # builds every llama width of the shipped snapshot
def test_llama_family_widths_from_the_snapshot():
    r = largest_in_family("meta-llama/Llama-3.2-1B", job="train", gpu="RTX-3090", settings=FULL)
    names = {w.template for w in r.widths} | {n for w in r.widths for n in w.same_width}
    assert {"meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-3B", "meta-llama/Llama-3.1-8B",
            "meta-llama/Llama-3.1-70B"} <= names
    assert r.family == "llama" and r.best is r.widths[0] and r.best.verified
    assert all(a.params >= b.params for a, b in zip(r.widths, r.widths[1:]))
    # Llama-3.2-1B's own width: 2048 wide, 16 layers (its config.json)
    assert (r.template_width.hidden_size, r.template_width.layers_template) == (2048, 16)
    assert r.best.params < r.capacity_bytes // 16
