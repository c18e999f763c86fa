"""``--gpu auto`` through the commands that take ``--gpu``: the GPUs a fake ``nvidia-smi`` on PATH reports, chosen
by free memory, mixed devices budgeted per device (an even split on the smallest; llama.cpp splits by free memory
and judges each GPU on its own).

The fake tool prints the query form hfmem asks for (``--query-gpu=index,name,memory.total,memory.free
--format=csv,noheader,nounits``: MiB). Its two rows are written here by hand — no public recording of two different
NVIDIA GPUs in that form was found (tests/data/devices/SOURCES.md) — with the totals nvidia-smi reports for an
RTX 4090 (24564 MiB) and an RTX 3060 (12288 MiB), and free memory as an idle desktop might show it."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from conftest import json_out, run_hfmem

MIB = 2**20
FREE_4090, FREE_3060 = 23000, 11900  # MiB, the fake's memory.free column
TINY_GGUF = os.path.join(os.path.dirname(__file__), "data", "gguf", "tiny-llama-GGUF")


def _real_nvml_answers() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return False
    return True


pytestmark = pytest.mark.skipif(_real_nvml_answers(), reason="a real NVIDIA driver answers --gpu auto before nvidia-smi")


@pytest.fixture
def two_gpus(tmp_path):
    tool = tmp_path / "bin" / "nvidia-smi"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n"
                    f"printf '0, NVIDIA GeForce RTX 4090, 24564, {FREE_4090}\\n"
                    f"1, NVIDIA GeForce RTX 3060, 12288, {FREE_3060}\\n'\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{tool.parent}{os.pathsep}{os.path.dirname(sys.executable)}", "HF_HUB_OFFLINE": "1"}


def test_one_gpu_auto_takes_the_one_with_the_most_free_memory(two_gpus):
    proc = run_hfmem("infer", "Qwen/Qwen2.5-7B-Instruct", "--engine", "vllm", "--gpu", "auto", "--format", "json",
                     env=two_gpus)
    fit = json_out(proc)["models"][0]["fit"]
    assert fit["gpu_usable_bytes"] == FREE_4090 * MIB
    assert fit["capacity_bytes"] == int(0.9 * FREE_4090 * MIB)  # vLLM takes gpu_memory_utilization of it
    assert "GPU 0" in proc.stderr and "most free memory" in proc.stderr


def test_two_mixed_gpus_split_evenly_are_judged_on_the_smaller(two_gpus):
    proc = run_hfmem("infer", "Qwen/Qwen2.5-7B-Instruct", "--engine", "vllm", "--gpu", "auto", "--gpus", "2",
                     "--format", "json", env=two_gpus)
    model = json_out(proc)["models"][0]
    assert model["inputs"]["tp"] == 2 and model["fit"]["gpu_usable_bytes"] == FREE_3060 * MIB
    assert "mixed devices" in proc.stderr
    train = json_out(run_hfmem("train", "Qwen/Qwen2-0.5B-Instruct", "--gpu", "auto", "--gpus", "2", "--format",
                               "json", env=two_gpus))
    assert train["models"][0]["fit"]["gpu_usable_bytes"] == FREE_3060 * MIB


def test_llamacpp_splits_layers_by_free_memory_and_judges_each_gpu(two_gpus):
    proc = run_hfmem("infer", TINY_GGUF, "--quant", "Q8_0", "--gpu", "auto", "--gpus", "2", "--format", "json",
                     env=two_gpus)
    model = json_out(proc)["models"][0]
    # llama.cpp with no --tensor-split: "default split, by free memory" (llama-model.cpp load_tensors)
    assert model["inputs"]["tensor_split"] == [FREE_4090 * MIB, FREE_3060 * MIB]
    fit = model["fit"]
    assert fit["device_usable_bytes"] == [FREE_4090 * MIB, FREE_3060 * MIB]
    totals = [d["total_bytes"] for d in model["devices"] if d["device"].startswith("CUDA")]
    assert fit["margin_bytes"] == min(FREE_4090 * MIB - totals[0], FREE_3060 * MIB - totals[1])


def test_more_gpus_than_found_is_one_line(two_gpus):
    proc = run_hfmem("infer", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "auto", "--gpus", "4", env=two_gpus)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "2 GPUs found" in proc.stderr and "Traceback" not in proc.stderr
