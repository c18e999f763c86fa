"""`hfmem infer` / `hfmem train` for the models without a text decoder — vision, audio, contrastive dual encoders,
encoder-decoders and (served) text encoders — estimated from a simulation of their own code at the user's
settings (hfmem/scenarios/by_simulation.py). Expected values are hand calculations from the published
configs written here (weights, the KV cache, optimizer states, trainable counts) and the simulator."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("torch")

import hfmem
from hfmem import api
from conftest import ROOT, json_out, run_hfmem

CONFIGS = ROOT / "tests" / "data" / "hub-configs"
OFF = hfmem.Options(offline=True)
BLOCK = 512  # the CUDA caching allocator's kMinBlockSize: every tensor is rounded up to it


def rounded(nbytes: int) -> int:
    return -(-nbytes // BLOCK) * BLOCK


def folder(repo: str) -> str:
    return str(CONFIGS / repo)


# -- vision: ResNet-50 -----------------------------------------------------------------------------------
def resnet50_layers() -> list[tuple[str, int]]:
    """ResNet-50's layers enumerated from its architecture: ("conv", Cin·Cout·K·K) without bias, ("bn", N)
    (weight and bias of N each; running mean and var buffers), ("fc", 2048·1000) and ("fc_bias", 1000)."""
    out = [("conv", 3 * 64 * 7 * 7), ("bn", 64)]  # stem
    cin = 64
    for width, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        for i in range(blocks):
            if i == 0:  # projection shortcut
                out += [("conv", cin * 4 * width), ("bn", 4 * width)]
            out += [("conv", cin * width), ("bn", width), ("conv", width * width * 9), ("bn", width),
                    ("conv", width * 4 * width), ("bn", 4 * width)]
            cin = 4 * width
    return out + [("fc", 2048 * 1000), ("fc_bias", 1000)]


def resnet50_tensors() -> list[int]:
    """Every parameter tensor (elements): a BatchNorm layer has two (weight, bias)."""
    return [n for kind, n in resnet50_layers() for _ in range(2 if kind == "bn" else 1)]


def test_resnet50_serving_weights_are_its_tensors_rounded_by_the_allocator():
    tensors = resnet50_tensors()
    assert sum(tensors) == 25_557_032  # torchvision ResNet50_Weights.IMAGENET1K_V1: num_params 25,557,032
    r = api.infer(folder("microsoft/resnet-50"), OFF)
    e = r.estimate
    assert e.kind == "forward" and e.weights_format == "fp32"  # config.json: torch_dtype float32
    assert e.components["weights_bytes"] == sum(rounded(4 * n) for n in tensors)
    assert e.components["kv_cache_bytes"] == 0
    # 53 BatchNorm layers, each with running mean and var (N floats) and an int64 counter
    bns = [n for kind, n in resnet50_layers() if kind == "bn"]
    assert len(bns) == 53
    assert e.components["buffers_bytes"] == sum(2 * rounded(4 * n) + rounded(8) for n in bns)
    assert e.batch_inputs == {"batch": 1, "image_size": 224}


@pytest.mark.slow  # 5-7 s of CLI runs; in the slow set to keep the default set well inside its 300 s
def test_resnet50_cli_and_api_agree_and_the_batch_grows_the_activations():
    doc = json_out(run_hfmem("infer", folder("microsoft/resnet-50"), "--batch", "8", "--offline", "--format",
                             "json"))
    m = doc["models"][0]
    api8 = api.infer(folder("microsoft/resnet-50"), OFF, batch=8).estimate
    assert m["device_total_bytes"] == api8.device_total_bytes and m["kind"] == "forward"
    one = api.infer(folder("microsoft/resnet-50"), OFF, batch=1).estimate
    # under no_grad only a block's feature maps are alive at once: they scale with the batch (8 samples = 8×,
    # within the 512-byte rounding of per-sample-sized tensors)
    assert api8.components["activations_bytes"] == pytest.approx(8 * one.components["activations_bytes"], rel=0.02)


def test_the_largest_batch_that_fits_is_the_edge():
    cap = 2 * 2**30
    gpu = "2GiB"
    r = api.infer(folder("microsoft/resnet-50"), OFF, gpu=gpu)
    best = r.fit.max_batch
    assert best and best > 8
    assert api.infer(folder("microsoft/resnet-50"), OFF, batch=best).estimate.device_total_bytes <= cap
    assert api.infer(folder("microsoft/resnet-50"), OFF, batch=best + 1).estimate.device_total_bytes > cap


# -- audio: Whisper large-v3 -----------------------------------------------------------------------------
@pytest.mark.slow  # full-size model: seconds of simulation
def test_whisper_large_v3_kv_cache_is_self_plus_cross_attention_by_hand():
    """openai/whisper-large-v3: 32 decoder layers, d_model 1280, 1500 encoder positions (30 s), fp16. Cross
    attention caches K and V of all 1500 encoder positions per layer; self attention the start token and
    each generated token."""
    new = 3
    e = api.infer(folder("openai/whisper-large-v3"), OFF, new_tokens=new).estimate
    layers, d, fp16 = 32, 1280, 2
    cross = layers * 2 * rounded(1500 * d * fp16)
    self_kv = layers * 2 * rounded((1 + new) * d * fp16)
    assert e.kind == "encoder-decoder"
    decode = next(p for p in e.phases if p.name == "decode")  # the cache after the last decode step
    assert decode.kv_cache_bytes == cross + self_kv
    # weights: 1,543,490,560 parameters (model card: 1550 M) in fp16, each tensor rounded to 512 B
    assert 2 * 1_543_490_560 <= e.components["weights_bytes"] <= 2 * 1_543_490_560 + 1500 * BLOCK
    assert e.batch_inputs["audio_seconds"] == 30


@pytest.mark.slow
def test_whisper_long_audio_is_cut_into_30_second_windows():
    one = api.infer(folder("openai/whisper-large-v3"), OFF, new_tokens=1).estimate
    two = api.infer(folder("openai/whisper-large-v3"), OFF, new_tokens=1, audio_seconds=45).estimate
    assert two.batch_inputs["windows_per_sample"] == math.ceil(45 / 30)
    layers, d = 32, 1280
    kv = {n: next(p.kv_cache_bytes for p in e.phases if p.name == "decode") for n, e in ((1, one), (2, two))}
    assert kv[2] == 2 * kv[1]
    assert kv[1] == layers * 2 * (rounded(1500 * d * 2) + rounded(2 * d * 2))


# -- encoder-decoders ------------------------------------------------------------------------------------
@pytest.mark.slow  # full-size model: seconds of simulation
def test_flan_t5_xl_serves_with_its_own_untied_lm_head():
    """flan-t5-xl's checkpoint holds lm_head apart from the shared embedding (config: tie_word_embeddings
    false): 2,849,757,184 parameters by hand (tests/test_towers.py), fp32 as its config declares."""
    e = api.infer(folder("google/flan-t5-xl"), OFF, context=512, new_tokens=4).estimate
    assert 4 * 2_849_757_184 <= e.components["weights_bytes"] <= 4 * 2_849_757_184 + 600 * BLOCK
    # decoder: 24 layers × (self K,V of 5 tokens + cross K,V of 512 tokens), 32 heads × 64 = 2048 wide, fp32
    decode = next(p for p in e.phases if p.name == "decode")
    assert decode.kv_cache_bytes == 24 * 2 * (rounded(5 * 2048 * 4) + rounded(512 * 2048 * 4))
    # the peak is the encoder pass over 512 tokens: the cache then holds the start token's self K,V only
    assert e.peak_phase == "prefill"
    assert e.components["kv_cache_bytes"] == 24 * 2 * (rounded(1 * 2048 * 4) + rounded(512 * 2048 * 4))


def test_bart_large_names_no_head_and_is_served_as_its_generation_class():
    e = api.infer(folder("facebook/bart-large"), OFF, context=256, new_tokens=1).estimate
    assert any("BartForConditionalGeneration" in a for a in e.assumptions)
    # 406,291,456 parameters (406 M), the LM head tied: float32 (no dtype declared)
    assert 4 * 406_291_456 <= e.components["weights_bytes"] <= 4 * 406_291_456 + 600 * BLOCK


# -- training --------------------------------------------------------------------------------------------
@pytest.mark.slow  # full-size model: seconds of simulation
def test_clip_contrastive_training_holds_adamw_states_for_every_parameter():
    """CLIP ViT-L/14, bf16 weights, AdamW (torch keeps exp_avg and exp_avg_sq in the parameter's dtype):
    427,616,513 trainable parameters (the model card's 428 M), states 2 × 2 bytes each."""
    r = api.train(folder("openai/clip-vit-large-patch14"), OFF, batch=4, seq=77, precision="bf16")
    e = r.estimate
    assert e.trainable_params == 427_616_513 and e.frozen_params == 0
    states = e.components["optimizer_bytes"]
    assert 4 * 427_616_513 <= states <= 4 * 427_616_513 + 2 * 400 * BLOCK
    assert any("contrastive" in a for a in e.assumptions)
    assert e.activations["source"].startswith("calibrated on this machine from the model's code")


@pytest.mark.slow
def test_whisper_training_freezes_the_encoder_positions():
    """WhisperEncoder's embed_positions is a frozen table (requires_grad False): 1500 × 1280 parameters
    without gradients or optimizer states."""
    e = api.train(folder("openai/whisper-large-v3"), OFF, batch=1, seq=64, precision="bf16").estimate
    assert e.frozen_params == 1500 * 1280
    assert e.trainable_params == 1_543_490_560 - 1500 * 1280


def test_wav2vec2_ctc_training_runs_with_its_loss():
    e = api.train(folder("facebook/wav2vec2-base-960h"), OFF, batch=2, precision="fp32", optimizer="sgd",
                  audio_seconds=5).estimate
    assert e.trainable_params == 94_396_320  # facebook/wav2vec2-base-960h: 95 M
    assert any("CTC" in a for a in e.assumptions) and any("SpecAugment off" in a for a in e.assumptions)
    # plain SGD keeps no state
    assert e.components["optimizer_bytes"] == 0


@pytest.mark.slow  # 5-9 s of fresh processes; in the slow set to keep the default set under its 300 s budget
def test_settings_the_code_route_does_not_model_are_one_line_each():
    proc = run_hfmem("infer", folder("microsoft/resnet-50"), "--engine", "vllm", "--offline")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 6 and len(lines) == 1 and "serving with vllm" in lines[0], proc.stderr
    from hfmem.errors import UnsupportedArchitectureError

    cases = [
        (lambda: api.infer(folder("microsoft/resnet-50"), OFF, weights_format="int8"), "int8 weights"),
        (lambda: api.train(folder("google/vit-base-patch16-224"), OFF, zero=2, gpus=2,
                           precision="deepspeed-bf16"), "multi-GPU training"),
        (lambda: api.train(folder("google/vit-base-patch16-224"), OFF, method="qlora"), "QLoRA"),
    ]
    for call, words in cases:
        with pytest.raises(UnsupportedArchitectureError, match=words):
            call()


@pytest.mark.slow  # 5-9 s of fresh processes; in the slow set to keep the default set under its 300 s budget
def test_a_second_answer_reads_the_stored_simulation_without_torch(tmp_path):
    env = {"HFMEM_HOME": str(tmp_path / "home")}
    first = json_out(run_hfmem("infer", folder("google/vit-base-patch16-224"), "--offline", "--format", "json",
                               env=env))
    proc = run_hfmem("infer", folder("google/vit-base-patch16-224"), "--offline", "--format", "json", env=env,
                     check_torch=True)
    assert proc.returncode == 0 and "TORCH_IMPORTED=False" in proc.stderr
    second = json.loads(proc.stdout)
    assert second["models"][0]["device_total_bytes"] == first["models"][0]["device_total_bytes"]
    assert any("read from the cache of earlier runs" in a for a in second["models"][0]["assumptions"])


# -- vision-language models: image tokens and the vision tower ------------------------------------------
def test_llava_images_join_the_context_and_the_vision_tower_runs_first():
    """llava-1.5-7b: CLIP ViT-L/14 at 336 px gives (336/14)² = 576 tokens per image; the Llama-2-7B decoder
    caches 32 layers × 2 × 32 heads × 128 × 2 B = 524,288 B per token in fp16."""
    text = 1024
    r = api.infer("llava-hf/llava-1.5-7b-hf", OFF, context=text, images=4)
    e = r.estimate
    assert e.components["kv_cache_bytes"] == (text + 4 * 576) * 524_288
    vision = next(p for p in e.phases if p.name == "vision")
    # the vision phase is the CLIP tower's own forward over the 4 images, as the simulator measures it
    sim = hfmem.simulate.simulate_infer(
        {**json.loads((ROOT / "cache/models/llava-hf/llava-1.5-7b-hf/config.json").read_text())["vision_config"],
         "architectures": ["CLIPVisionModel"]}, batch=4, context=1, new_tokens=0, dtype="float16")
    cat = sim.peak_by_category
    assert vision.activations_bytes == sim.peak_allocated_bytes - cat["parameters"] - cat.get("buffers", 0)
    assert any("576 tokens per image" in a for a in e.assumptions)


def test_qwen2_vl_image_tokens_follow_the_image_size():
    """Qwen2-VL: a side resized to a multiple of 28 px, one token per 28×28 cell: 448 px → 16² = 256 tokens,
    672 px → 24² = 576; the 2B decoder caches 28 layers × 2 × 2 KV heads × 128 × 2 B = 28,672 B per token."""
    base = api.infer(folder("Qwen/Qwen2-VL-2B-Instruct"), OFF, context=512).estimate
    for side, tokens in ((None, 256), (672, 576)):
        e = api.infer(folder("Qwen/Qwen2-VL-2B-Instruct"), OFF, context=512, images=2, image_size=side).estimate
        assert e.components["kv_cache_bytes"] - base.components["kv_cache_bytes"] == 2 * tokens * 28_672
        assert any("vision tower's activations are not modelled" in n for n in e.notes)


def test_images_on_a_text_model_is_a_usage_error():
    proc = run_hfmem("infer", "Qwen/Qwen2.5-7B", "--images", "1", "--offline")
    assert proc.returncode == 2 and "has no vision tower" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # two simulations of a decode (1.7 s)
def test_a_long_generation_is_extended_from_two_short_ones_exactly(tmp_path):
    """40 decode steps are not simulated one by one: 8 and 16 are, and each step appends the same K,V. The cache
    after 40 steps is then what the hand count says, for a 2-layer Whisper of width 64 (4 heads × 16):
    2 layers × K,V × (41 self tokens + 1500 cross positions) × 64 × 2 B."""
    cfg = {"architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper", "d_model": 64,
           "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4, "decoder_attention_heads": 4,
           "encoder_ffn_dim": 128, "decoder_ffn_dim": 128, "num_mel_bins": 80, "max_source_positions": 1500,
           "max_target_positions": 448, "vocab_size": 512, "torch_dtype": "float16",
           "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 1}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    e = api.infer(str(tmp_path), OFF, new_tokens=40).estimate
    decode = next(p for p in e.phases if p.name == "decode")
    assert decode.kv_cache_bytes == 2 * 2 * (rounded(41 * 64 * 2) + rounded(1500 * 64 * 2))
    assert any("40 decode steps: simulated 8 and 16" in a for a in e.assumptions)


# -- decoder LMs of families without stored coefficients ---------------------------------------------------
def _mpt(tmp_path) -> str:
    """A 2-layer MPT (ALiBi, fused Wqkv; no coefficients shipped for it): d_model 256, 4 heads, vocab 1024."""
    cfg = {"architectures": ["MptForCausalLM"], "model_type": "mpt", "d_model": 256, "n_heads": 4, "n_layers": 2,
           "expansion_ratio": 4, "max_seq_len": 2048, "vocab_size": 1024, "torch_dtype": "bfloat16"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    return str(tmp_path)


def test_an_uncalibrated_decoder_is_calibrated_from_its_own_code(tmp_path):
    path = _mpt(tmp_path)
    e = api.infer(path, OFF, context=300, new_tokens=2).estimate
    assert e.kind == "generate"
    assert any(a.startswith("calibrated on this machine from the model's code") for a in e.assumptions)
    # K and V of 2 layers, 256 wide, bf16: 2·2·256·2 = 2,048 B per token; DynamicCache after 2 decode steps holds
    # 302 tokens per layer tensor
    assert e.kv_bytes_per_token == 2 * 2 * 256 * 2
    decode = next(p for p in e.phases if p.name == "decode")
    assert decode.kv_cache_bytes == 2 * 2 * rounded(302 * 256 * 2)
    t = api.train(path, OFF, seq=128, batch=2).estimate
    # Wqkv 256·768, out_proj 256², up/down 2·256·1024 per layer (no biases), 2 LayerNorms (weight only), the
    # final norm, the embedding 1024·256 tied to the head
    per_layer = 256 * 768 + 256 * 256 + 2 * 256 * 1024 + 2 * 256
    assert t.trainable_params == 2 * per_layer + 256 + 1024 * 256
    assert t.activations["source"].startswith("calibrated on this machine")


def test_settings_the_simulator_does_not_run_keep_the_closed_form(tmp_path):
    e = api.infer(_mpt(tmp_path), OFF, context=300, engine="vllm").estimate
    assert not any(a.startswith("calibrated on this machine") for a in e.assumptions)
    assert any("is not calibrated: the structural formula" in a for a in e.assumptions + e.notes)


def test_llava_training_images_lengthen_each_sequence_and_the_frozen_tower_runs_first():
    """One image = 576 tokens: training on 512 text tokens + 1 image is the decoder's step at 1,088 tokens,
    plus the frozen CLIP tower's forward as a phase before it."""
    with_image = api.train("llava-hf/llava-1.5-7b-hf", OFF, method="lora", seq=512, batch=2, images=1).estimate
    text_only = api.train("llava-hf/llava-1.5-7b-hf", OFF, method="lora", seq=512 + 576, batch=2).estimate
    assert with_image.components["activations_bytes"] == text_only.components["activations_bytes"]
    assert with_image.phases["forward"] == text_only.phases["forward"]
    assert "vision" in with_image.phases and with_image.settings.seq == 512


# -- from the local test Hub, by metadata only ---------------------------------------------------------------
def test_a_vision_model_from_the_hub_is_served_from_its_headers_and_its_code(fake_hub, monkeypatch):
    """A 2-layer ViT (hidden 64, patch 16 at 32 px: 4 patches + CLS) served by the local Hub with a float16
    safetensors header and no weights: parameters by hand, the serving estimate from its code; the CLI and the
    API agree."""
    from test_hub_fetch import safetensors_file

    h, inter, layers, labels = 64, 128, 2, 10
    cfg = {"architectures": ["ViTForImageClassification"], "model_type": "vit", "hidden_size": h,
           "num_hidden_layers": layers, "num_attention_heads": 4, "intermediate_size": inter, "image_size": 32,
           "patch_size": 16, "num_channels": 3, "num_labels": labels, "torch_dtype": "float16"}
    tensors = [("vit.embeddings.cls_token", [1, 1, h]), ("vit.embeddings.position_embeddings", [1, 5, h]),
               ("vit.embeddings.patch_embeddings.projection.weight", [h, 3, 16, 16]),
               ("vit.embeddings.patch_embeddings.projection.bias", [h]),
               ("vit.layernorm.weight", [h]), ("vit.layernorm.bias", [h]),
               ("classifier.weight", [labels, h]), ("classifier.bias", [labels])]
    for n in range(layers):
        p = f"vit.encoder.layer.{n}."
        for x in ("query", "key", "value"):
            tensors += [(p + f"attention.attention.{x}.weight", [h, h]), (p + f"attention.attention.{x}.bias", [h])]
        tensors += [(p + "attention.output.dense.weight", [h, h]), (p + "attention.output.dense.bias", [h]),
                    (p + "intermediate.dense.weight", [inter, h]), (p + "intermediate.dense.bias", [inter]),
                    (p + "output.dense.weight", [h, inter]), (p + "output.dense.bias", [h]),
                    (p + "layernorm_before.weight", [h]), (p + "layernorm_before.bias", [h]),
                    (p + "layernorm_after.weight", [h]), (p + "layernorm_after.bias", [h])]
    blob, _ = safetensors_file(tensors)
    fake_hub.add_repo("org/tiny-vit", {"config.json": json.dumps(cfg).encode(), "model.safetensors": blob})
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    per_layer = 4 * (h * h + h) + 2 * h * inter + inter + h + 4 * h
    by_hand = h + 5 * h + h * 3 * 16 * 16 + h + 2 * h + labels * h + labels + layers * per_layer
    e = api.infer("org/tiny-vit", hfmem.Options(), batch=3).estimate
    assert api.analyze("org/tiny-vit").inventory.num_params == by_hand
    assert e.kind == "forward" and e.batch_inputs == {"batch": 3, "image_size": 32}
    assert e.weights_format == "fp16"
    assert e.components["weights_bytes"] == sum(rounded(2 * math.prod(shape)) for _, shape in tensors)
    doc = json_out(run_hfmem("infer", "org/tiny-vit", "--batch", "3", "--format", "json",
                             env={"HF_ENDPOINT": fake_hub.endpoint}))
    assert doc["models"][0]["device_total_bytes"] == e.device_total_bytes


def test_an_uncalibrated_text_encoder_keeps_the_closed_form_where_the_simulator_cannot_run(tmp_path):
    """MPNet (no BERT-calibrated closed form) trains from its own code with AdamW; with 8-bit Adam, which the
    simulator does not run, it keeps the closed form (a stated fallback) instead of refusing."""
    cfg = {"architectures": ["MPNetForMaskedLM"], "model_type": "mpnet", "hidden_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 512, "max_position_embeddings": 130}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    own = api.train(str(tmp_path), OFF, seq=64, batch=2, optimizer="adamw").estimate
    assert own.activations["source"].startswith("calibrated on this machine")
    eight = api.train(str(tmp_path), OFF, seq=64, batch=2, optimizer="adamw-8bit").estimate
    assert not eight.activations["source"].startswith("calibrated on this machine")
    # both count the same trainable parameters: the built model's (simulation) and the inventory's (closed form)
    assert own.trainable_params == eight.trainable_params


def test_a_quantized_checkpoint_is_refused_even_with_a_compute_dtype(tmp_path):
    """The simulator builds 16/32-bit weights: a GPTQ checkpoint served with --dtype bf16 would be counted as
    bf16 weights it does not hold, so it is refused in one line rather than estimated."""
    from hfmem.errors import UnsupportedArchitectureError

    cfg = json.loads((CONFIGS / "google/vit-base-patch16-224/config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": 128}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedArchitectureError, match="checkpoint is not modelled"):
        api.infer(str(tmp_path), OFF, compute_dtype="bf16")


@pytest.mark.slow  # 5-9 s of fresh processes; in the slow set to keep the default set under its 300 s budget
def test_images_per_sequence_on_a_vision_model_is_a_usage_error():
    """A ResNet's images are its batch: --images (tokens per sequence of a VLM) was silently ignored by infer and
    refused for the wrong reason by train."""
    for command in ("infer", "train"):
        proc = run_hfmem(command, folder("microsoft/resnet-50"), "--images", "2", "--offline")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "not a vision-language model" in lines[0], proc.stderr
