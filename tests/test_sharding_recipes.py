"""FSDP-QLoRA, FSDP CPU offload and DeepSpeed ZeRO sizes (issue 14), against hand counts from the libraries'
source. Shapes from the snapshot's configs: Llama-2-7b (32 layers, hidden 4096, intermediate 11008, vocab 32000,
32 heads = 32 KV heads, untied) and Llama-3.2-1B (16 layers, hidden 2048, 8 KV heads of 64)."""

from __future__ import annotations

import pytest

import hfmem
from hfmem.errors import SettingsError
from tests.conftest import json_out, run_hfmem

OFF = hfmem.Options(offline=True)
L2 = "meta-llama/Llama-2-7b-hf"
L32 = "meta-llama/Llama-3.2-1B"

# Llama-2-7b, by hand: one decoder layer's 4-bit Linears q,k,v,o (4096x4096) + gate,up,down (4096x11008)
LAYER_LINEAR = 4 * 4096 * 4096 + 3 * 4096 * 11008            # 202,375,168 weights
UNIT_BYTES = LAYER_LINEAR // 2 + 2 * 4096 * 2                 # packed 4-bit (2 per byte) + 2 RMSNorms in bf16
ROOT_BYTES = (2 * 32000 * 4096 + 4096) * 2                    # embed_tokens + lm_head + final norm, bf16
# LoRA r=8 on all linears: r·(in + out) per Linear
ADAPTERS_PER_LAYER = 4 * 8 * (4096 + 4096) + 3 * 8 * (4096 + 11008)   # 624,640
FSDP_QLORA = dict(method="qlora", fsdp="full_shard", gpus=2, lora_rank=8, lora_targets="all-linear",
                  bnb_quant_storage="bf16", prepare_kbit=False, adapter_dtype="fp32", batch=1, seq=512, grad_ckpt=True)


def test_sharded_qlora_defaults_follow_trl():
    """TRL's SFTTrainer (is_sharded_qlora) skips prepare_model_for_kbit_training and creates the adapters with
    get_peft_model(..., autocast_adapter_dtype=False): bf16 adapters on a bf16 run. So, left unsaid, the
    gathered layers carry 2-byte adapters and the root unit stays bf16 (no fp32 upcast)."""
    kw = {k: v for k, v in FSDP_QLORA.items() if k not in ("prepare_kbit", "adapter_dtype")}
    e = hfmem.train(L2, OFF, **kw).estimate
    assert e.components["gathered_params_bytes"] == ROOT_BYTES + 2 * (UNIT_BYTES + ADAPTERS_PER_LAYER * 2)
    assert any("TRL" in a and "sharded QLoRA" in a for a in e.assumptions)


def test_fsdp_qlora_gathers_two_4bit_layers_with_their_adapters_and_the_bf16_root():
    e = hfmem.train(L2, OFF, **FSDP_QLORA).estimate
    # FSDP1 _post_forward_reshard keeps the root's parameters for FULL_SHARD; BACKWARD_PRE holds the current
    # and the next unit; PEFT's wrap policy puts each LoRA Linear (fp32 adapters, 4 B) in its own nested unit
    assert e.components["gathered_params_bytes"] == ROOT_BYTES + 2 * (UNIT_BYTES + ADAPTERS_PER_LAYER * 4)
    # the rank's shard: half of every flat parameter of the base, and half of the fp32 adapters
    flat = 32 * UNIT_BYTES + ROOT_BYTES
    assert e.components["weights_bytes"] == -(-flat // 2) + 32 * ADAPTERS_PER_LAYER * 4 // 2
    # before issue 14 the frozen base was never gathered: the gathered bytes were the adapters' alone
    assert e.components["gathered_params_bytes"] > 10 * 32 * ADAPTERS_PER_LAYER * 4 // 2


def test_fsdp_qlora_quant_state_is_whole_on_every_rank():
    # nf4 with double quantization (bitsandbytes quantize_4bit, compress_statistics=True): a uint8 absmax per
    # 64 weights, re-quantized with an fp32 absmax per 256 of them; none of it is a parameter, so no shard
    one = hfmem.train(L2, OFF, **{**FSDP_QLORA, "gpus": 2}).estimate.components["quant_state_bytes"]
    four = hfmem.train(L2, OFF, **{**FSDP_QLORA, "gpus": 4}).estimate.components["quant_state_bytes"]
    assert one == four
    per_layer_uint8_absmax = LAYER_LINEAR // 64
    assert 32 * per_layer_uint8_absmax < one < 32 * per_layer_uint8_absmax * 1.1


def test_fsdp_offload_moves_shards_grads_and_optimizer_to_cpu_and_keeps_the_gathered_units():
    on = hfmem.train(L2, OFF, **FSDP_QLORA, fsdp_offload=True).estimate
    off = hfmem.train(L2, OFF, **FSDP_QLORA).estimate
    for name in ("weights_bytes", "gradients_bytes", "optimizer_bytes"):
        assert on.components[name] == 0
        # CPU RAM per node: both ranks' shards (gpus_per_node 8 > 2 ranks)
        assert on.cpu_components[name] == 2 * off.components[name]
    assert on.components["gathered_params_bytes"] == off.components["gathered_params_bytes"]
    assert on.components["quant_state_bytes"] == off.components["quant_state_bytes"]
    assert any("CPU offload" in a for a in on.assumptions)


def test_zero3_fp32_buffers_are_four_bytes_per_element():
    e = hfmem.train(L32, OFF, zero=3, precision="fp32").estimate
    # __ipg_bucket_flat_buffer: reduce_bucket_size (5e8) elements of the model dtype, fp32
    assert e.components["reduce_bucket_bytes"] == 500_000_000 * 4
    # gathered working set: stage3_max_live_parameters (1e9) elements, fp32 (1.2e9 parameters > 1e9)
    assert e.components["gathered_params_bytes"] == 1_000_000_000 * 4
    # stage3.py _create_fp32_partitions clones the partition even in fp32: a separate fp32 master partition
    assert e.components["master_weights_bytes"] == e.components["weights_bytes"]
    # persistent: the 33 RMSNorm weights (2048 <= 1e5 elements) stay gathered, fp32
    assert e.components["persistent_params_bytes"] == 33 * 2048 * 4


def test_zero_size_flags_change_their_buffers_by_the_hand_computed_bytes():
    base = hfmem.train(L32, OFF, zero=3, precision="fp32").estimate.components
    small = hfmem.train(L32, OFF, zero=3, precision="fp32", zero_reduce_bucket=100_000_000,
                        zero_max_live_params=500_000_000, zero_persistence_threshold=1000).estimate.components
    assert base["reduce_bucket_bytes"] - small["reduce_bucket_bytes"] == (500_000_000 - 100_000_000) * 4
    assert base["gathered_params_bytes"] - small["gathered_params_bytes"] == (1_000_000_000 - 500_000_000) * 4
    assert "persistent_params_bytes" not in small or small["persistent_params_bytes"] == 0  # 2048 > 1000
    # "auto": HF Trainer's trainer_config_finalize, reduce_bucket_size = hidden_size² (2048²)
    auto = hfmem.train(L32, OFF, zero=3, precision="fp32", zero_reduce_bucket="auto").estimate
    assert auto.components["reduce_bucket_bytes"] == 2048 * 2048 * 4
    assert any("reduce_bucket_size=4.19e+06 (auto" in a for a in auto.assumptions)
    # bf16 DeepSpeed: the same bucket at 2 B
    bf16 = hfmem.train(L32, OFF, zero=3, precision="deepspeed-bf16", zero_reduce_bucket="1e8").estimate
    assert bf16.components["reduce_bucket_bytes"] == 100_000_000 * 2


def test_lora_under_zero3_fp32_with_offload_keeps_only_the_working_set_on_gpu():
    e = hfmem.train(L32, OFF, method="lora", zero=3, precision="fp32", offload_optimizer=True,
                    offload_param=True).estimate
    assert e.components.get("weights_bytes", 0) == 0 and e.components.get("optimizer_bytes", 0) == 0
    assert e.components["gathered_params_bytes"] == 1_000_000_000 * 4
    assert e.cpu_components["weights_bytes"] > 4 * 1_000_000_000  # the 1.2e9 fp32 base, partitioned on CPU


def test_cli_and_api_agree_for_fsdp_qlora_with_offload():
    api = hfmem.train(L2, OFF, **FSDP_QLORA, fsdp_offload=True).estimate
    proc = run_hfmem("train", L2, "--offline", "--format", "json", "--method", "qlora", "--fsdp", "full_shard",
                     "--gpus", "2", "--lora-rank", "8", "--lora-targets", "all-linear", "--bnb-quant-storage", "bf16",
                     "--no-prepare-kbit", "--adapter-dtype", "fp32", "--batch", "1", "--seq", "512", "--grad-ckpt", "--fsdp-offload")
    m = json_out(proc)["models"][0]
    assert m["inputs"]["fsdp_offload"] is True
    assert m["components"]["gathered_params_bytes"] == api.components["gathered_params_bytes"]
    assert m["device_total_bytes"] == api.device_total_bytes
    assert m["cpu_bytes"] == api.cpu_bytes


@pytest.mark.slow  # 5-7 s of CLI runs; in the slow set to keep the default set well inside its 300 s
def test_cli_zero_size_is_read_as_elements():
    proc = run_hfmem("train", L32, "--offline", "--format", "json", "--zero", "3", "--precision", "fp32",
                     "--zero-reduce-bucket", "1e8")
    m = json_out(proc)["models"][0]
    assert m["inputs"]["zero_reduce_bucket"] == 100_000_000
    assert m["components"]["reduce_bucket_bytes"] == 100_000_000 * 4


@pytest.mark.parametrize("args, flag", [
    (("--zero", "3", "--zero-reduce-bucket", "-5"), "--zero-reduce-bucket"),
    (("--fsdp-offload",), "--fsdp-offload"),
    (("--zero", "2", "--zero-max-live-params", "auto"), "--zero-max-live-params"),
    (("--zero-prefetch-bucket", "5e7"), "--zero-prefetch-bucket"),
])
def test_bad_sharding_values_exit_2_naming_the_flag(args, flag):
    proc = run_hfmem("train", L32, "--offline", *args)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and flag in lines[0]


def test_api_refuses_a_bad_size_by_setting_name():
    with pytest.raises(SettingsError) as info:
        hfmem.train(L32, OFF, zero=3, zero_persistence_threshold=1.5)
    assert info.value.setting == "zero_persistence_threshold"


def test_emit_deepspeed_writes_the_sizes_the_plan_used():
    import json

    from hfmem.plan import emit_train
    from hfmem.scenarios.finetune import TrainSettings

    s = TrainSettings(zero=3, precision="fp32", zero_reduce_bucket=100_000_000, zero_prefetch_bucket="auto")
    z = json.loads(emit_train.deepspeed_config(s))["zero_optimization"]
    assert z["reduce_bucket_size"] == 100_000_000 and z["stage3_prefetch_bucket_size"] == "auto"
    assert json.loads(emit_train.deepspeed_config(s))["bf16"] == {"enabled": False}
    with pytest.raises(SettingsError):
        emit_train.deepspeed_config(s, for_trainer=False)
    acc = emit_train.accelerate_dict(TrainSettings(method="qlora", fsdp="full_shard", gpus=2, fsdp_offload=True,
                                                   bnb_quant_storage="bf16"))
    assert acc["fsdp_config"]["fsdp_offload_params"] is True
    assert emit_train.bnb_kwargs(TrainSettings(method="qlora", fsdp="full_shard", gpus=2,
                                               bnb_quant_storage="bf16"))["bnb_4bit_quant_storage"] == "bfloat16"
