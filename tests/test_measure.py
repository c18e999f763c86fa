"""``hfmem measure`` (issue 14, item 3) on a machine without a GPU: the one-line refusal, the runner's code path
on the CPU, and the hfmem.measured/1 record read back by the accuracy report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import hfmem
from hfmem.errors import NoCudaDeviceError
from hfmem.measure import device

SNAPSHOT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"  # in the shipped snapshot
TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
        "max_position_embeddings": 2048, "torch_dtype": "bfloat16"}
no_gpu = pytest.mark.skipif(device.cuda_problem() is None, reason="a CUDA GPU is present")


@pytest.mark.slow  # a fresh process that imports torch (~2.3 s)
@no_gpu
def test_cli_without_gpu_is_one_line_and_exit_69(tmp_path):
    out = tmp_path / "record.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", "from hfmem.cli import main; main()", "measure", "train", SNAPSHOT_MODEL, "--offline",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 69, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hfmem: error: no CUDA GPU found") and "CUDA build of torch" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists()


@no_gpu
def test_api_without_gpu_raises_the_typed_error(tmp_path):
    with pytest.raises(NoCudaDeviceError) as info:
        hfmem.measure(SNAPSHOT_MODEL, "train", hfmem.Options(offline=True), out=tmp_path / "r.json")
    assert info.value.exit_code == 69
    assert not (tmp_path / "r.json").exists()


def test_unsupported_setting_is_refused_before_anything_runs(tmp_path):
    from hfmem.errors import SettingsError
    from hfmem.measure.plan import plan_train
    from hfmem.scenarios.finetune import TrainSettings

    with pytest.raises(SettingsError) as info:
        plan_train(TrainSettings(gpus=2, fsdp="full_shard"))
    assert info.value.setting == "gpus"


@pytest.mark.slow
def test_cpu_smoke_of_the_runner_counts_peft_trainable_parameters(tmp_path):
    from hfmem.measure import measure_report

    (tmp_path / "config.json").write_text(json.dumps(TINY))
    rep = hfmem.train(str(tmp_path), method="lora", lora_rank=8, batch=2, seq=64, grad_ckpt=True, grad_accum=2)
    m = measure_report("train", rep, device="cpu")
    assert m.measured["status"] == "ok", m.measured.get("reason")
    # PEFT's own count (get_nb_trainable_parameters) of the adapters on every linear layer but the LM head:
    # per layer q 64→64, k 64→32, v 64→32, o 64→64, gate/up 64→128, down 128→64, each r·(in + out), r = 8
    per_layer = 8 * ((64 + 64) + (64 + 32) * 2 + (64 + 64) + (64 + 128) * 2 + (128 + 64))
    assert m.measured["trainable_parameters"] == 2 * per_layer == rep.estimate.trainable_params
    assert list(m.measured["phases"]) == ["setup"] + [f"{p}@{i}.{k}" if p != "optimizer_step" else f"{p}@{i}"
                                                      for i in (1, 2) for p, k in
                                                      (("forward", 1), ("backward", 1), ("forward", 2),
                                                       ("backward", 2), ("optimizer_step", 0))]
    assert m.record["settings"] == rep.estimate.settings.to_dict() and m.record["mode"] == "train"


def test_record_round_trip_and_accuracy_rows(tmp_path):
    from hfmem.measure.record import SCHEMA, accuracy_rows, document, settings_from_dict, write
    from hfmem.scenarios.finetune import TrainSettings
    from hfmem.units import GiB, MiB

    settings = TrainSettings(method="lora", batch=2, seq=512, precision="bf16", lora_targets=["q_proj", "v_proj"],
                             attn="sdpa")
    assert settings_from_dict("train", json.loads(json.dumps(settings.to_dict()))) == settings
    # the measured numbers of a made-up run, typed in: 1.5 GiB allocated, 1.75 GiB reserved, 2.25 GiB device
    ok = {"key": "k", "model": SNAPSHOT_MODEL, "mode": "train", "status": "ok", "setting": "s",
          "settings": settings.to_dict(), "max_memory_allocated": 3 * GiB // 2,
          "max_memory_reserved": 7 * GiB // 4, "device_used_bytes": 9 * GiB // 4}
    cases = [ok, {**ok, "status": "oom"},                                   # an out-of-memory run: no rows
             {"key": "llama2-7b-train", "status": "ok", "max_memory_allocated": 512 * MiB}]  # measure_gpu.py's
    path = tmp_path / "gpu.json"
    write(path, document(cases, command="test"))
    assert json.loads(path.read_text())["schema"] == SCHEMA
    (tmp_path / "other.json").write_text(json.dumps({"schema": "something/2", "cases": [ok]}))
    assert accuracy_rows(tmp_path / "other.json") == []

    rows = accuracy_rows(path, hfmem.Options(offline=True))
    est = hfmem.train(SNAPSHOT_MODEL, hfmem.Options(offline=True), settings=settings).estimate
    assert [r[1] for r in rows] == ["max_memory_allocated", "max_memory_reserved", "nvidia-smi"]
    assert [(r[2], r[3]) for r in rows] == [(1610612736, est.peak_allocated_bytes),
                                           (1879048192, est.peak_reserved_bytes),
                                           (2415919104, est.device_total_bytes)]
    # the error benchmarks/accuracy.py reports: (estimate - measured) / measured, e.g. against 1.5 GiB
    errors = [(e - m) / m for _, _, m, e, _ in rows]
    assert errors[0] == pytest.approx(est.peak_allocated_bytes / (1.5 * GiB) - 1)
    assert errors[2] == pytest.approx(est.device_total_bytes / (2.25 * GiB) - 1)
