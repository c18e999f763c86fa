"""GPU catalog facts, each checked against a source other than gpus.json itself, and --gpu parsing."""

from __future__ import annotations

import pytest

from hfmem.errors import UsageError
from hfmem.plan import GPU, UnknownGPUError, catalog, parse_gpu

MiB = 2**20
GiB = 2**30

# Independent sources for the numbers below:
# [MODAL]  https://thundergolfer.com/blog/nvidia-gpu-memory-capacity — NVML/nvidia-smi totals on real cards:
#          H200 143,771 MiB; H100 81,559 MiB; A100 80GB 81,920 MiB; A100 40GB 40,960 MiB; L40S 46,068 MiB.
# [MICROWAY] nvidia-smi output of Tesla V100-PCIE (32 GB): "31194MiB / 32480MiB".
# [KLOCKWOOD] glennklockwood.com/garden/processors/{A100,h100,B200}: A100 40G 1.555 TB/s, 80G 2.039 TB/s,
#          H100 SXM5 3.35 TB/s with FP8, B200 8 TB/s.
# [H100PCIE] NVIDIA H100 PCIe Product Brief PB-11133-001: "greater than 2,000 gigabytes per second".
# [V100] Volta tensor cores do FP16 only (V100 spec tables list no BF16); bf16 arrived with Ampere.


@pytest.mark.parametrize(
    "name, mib",
    [("H200", 143_771), ("H100-80GB", 81_559), ("A100-80GB", 81_920), ("A100-40GB", 40_960),
     ("L40S", 46_068), ("V100-32GB", 32_480)],
)
def test_driver_reported_totals(name, mib):  # [MODAL], [MICROWAY]
    gpu = parse_gpu(name)
    assert gpu.memory_bytes == mib * MiB
    assert gpu.memory_basis == "nvidia-smi"


def test_a100_80gb_is_exactly_80_gib():  # [MODAL]: 81,920 MiB = 80 GiB
    assert parse_gpu("A100-80GB").memory_bytes == 80 * GiB == 85_899_345_920


def test_h100_reports_less_than_80_gib():  # [MODAL]: 79.65 GiB
    assert parse_gpu("H100").memory_bytes < 80 * GiB


@pytest.mark.parametrize(
    "name, gbps",
    [("H100-80GB", 3350), ("H100-PCIe", 2000), ("H200", 4800), ("A100-80GB", 2039), ("A100-40GB", 1555),
     ("L40S", 864), ("B200", 8000), ("V100-16GB", 900), ("RTX-3090", 936), ("RTX-4090", 1008),
     ("RTX-5090", 1792), ("MI300X", 5300)],
)
def test_bandwidth(name, gbps):  # [KLOCKWOOD], [H100PCIE], vendor spec tables cited in gpus.json
    assert parse_gpu(name).bandwidth == gbps


@pytest.mark.parametrize("name", ["V100-16GB", "V100-32GB"])
def test_volta_has_no_bf16_or_fp8(name):  # [V100]
    gpu = parse_gpu(name)
    assert gpu.bf16 is False and gpu.fp8 is False


@pytest.mark.parametrize("name", ["A30", "A100-40GB", "A100-80GB", "A800-80GB", "RTX-3090"])
def test_ampere_has_bf16_but_no_fp8(name):
    gpu = parse_gpu(name)
    assert gpu.bf16 is True and gpu.fp8 is False


@pytest.mark.parametrize("name", ["L40S", "H100-80GB", "H100-PCIe", "H200", "B200", "RTX-4090", "RTX-5090", "MI300X"])
def test_fp8_capable(name):  # Ada, Hopper, Blackwell, CDNA3
    gpu = parse_gpu(name)
    assert gpu.bf16 is True and gpu.fp8 is True


def test_catalog_covers_requirement_6_and_every_entry_is_sourced():
    names = {g.name for g in catalog()}
    assert {"V100-16GB", "V100-32GB", "A30", "A100-40GB", "A100-80GB", "A800-80GB", "L40S", "H100-80GB",
            "H200", "B200", "RTX-3090", "RTX-4090", "RTX-5090", "MI300X"} <= names
    for g in catalog():
        assert g.sources, g.name
        assert isinstance(g.memory_bytes, int) and g.memory_bytes > 0, g.name
        assert g.memory_basis in {"nvidia-smi", "marketed", "observed-rounded"}, g.name
        if g.bandwidth is None or g.memory_basis != "nvidia-smi":
            assert g.notes, f"{g.name}: an unsourced or non-driver figure must be explained in notes"


def test_aliases_are_unique_across_gpus():
    seen: dict[str, str] = {}
    for g in catalog():
        for a in (g.name, *g.aliases):
            k = a.lower().replace("-", "").replace("_", "").replace(" ", "")
            assert seen.setdefault(k, g.name) == g.name, a


@pytest.mark.parametrize(
    "spec, name",
    [("H100-80GB", "H100-80GB"), ("h100", "H100-80GB"), ("H100-SXM", "H100-80GB"), ("h100-pcie", "H100-PCIe"),
     ("RTX-4090", "RTX-4090"), ("rtx4090", "RTX-4090"), ("4090", "RTX-4090"), ("rtx_3090", "RTX-3090"),
     ("a100", "A100-80GB"), ("A100-40GB", "A100-40GB"), ("mi300x", "MI300X"), ("  h200 ", "H200")],
)
def test_names_and_aliases(spec, name):
    assert parse_gpu(spec).name == name


@pytest.mark.parametrize(
    "spec, nbytes, name",
    [("24GiB", 24 * 2**30, "24 GiB GPU"), ("24GB", 24 * 10**9, "24 GB GPU"), ("80GB", 80 * 10**9, "80 GB GPU"),
     ("24576MiB", 24576 * 2**20, "24576 MiB GPU"), ("24 gib", 24 * 2**30, "24 GiB GPU"),
     ("1.5GiB", 1_610_612_736, "1.5 GiB GPU")],
)
def test_sizes(spec, nbytes, name):
    gpu = parse_gpu(spec)
    assert isinstance(gpu, GPU)
    assert gpu.memory_bytes == nbytes and gpu.name == name
    assert gpu.bf16 is None and gpu.fp8 is None and gpu.anonymous
    assert parse_gpu("24GiB").memory_bytes == 25_769_803_776  # hand arithmetic: 24 * 1,073,741,824
    assert parse_gpu("80GB").memory_bytes == 80_000_000_000


@pytest.mark.parametrize("spec", ["80G", "24g", "80", "24Gb-ish", "0GiB"])
def test_ambiguous_or_bad_sizes_are_refused(spec):
    with pytest.raises(UsageError) as exc:
        parse_gpu(spec)
    assert exc.value.exit_code == 2


def test_ambiguous_unit_message_says_what_to_write():
    with pytest.raises(UsageError, match="ambiguous") as exc:
        parse_gpu("80G")
    assert "GiB" in str(exc.value) and "GB" in str(exc.value)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UnknownGPUError) as exc:
        parse_gpu("H100-80G")
    assert exc.value.suggestions[0] == "H100-80GB"
    assert "H100-80GB" in str(exc.value) and "hfmem gpus" in str(exc.value)
    assert isinstance(exc.value, UsageError) and exc.value.exit_code == 2


def test_gibberish_is_a_clear_error():
    with pytest.raises(UnknownGPUError) as exc:
        parse_gpu("lots")
    msg = str(exc.value)
    assert "unknown GPU 'lots'" in msg and "hfmem gpus" in msg and "24GiB" in msg


def test_empty_spec():
    with pytest.raises(UsageError):
        parse_gpu("  ")


def test_catalog_returns_a_fresh_list():
    a = catalog()
    a.clear()
    assert len(catalog()) >= 14


def test_gpus_command_lists_the_catalog():
    import json as _json

    from typer.testing import CliRunner

    from hfmem.cli import app, route_argv

    runner = CliRunner()
    doc = _json.loads(runner.invoke(app, route_argv(["gpus", "--format", "json"])).stdout)
    by_name = {g["name"]: g for g in doc["gpus"]}
    assert by_name["A100-80GB"]["memory_bytes"] == 81920 * 2**20  # nvidia-smi: 81920MiB
    assert by_name["V100-32GB"]["bf16"] is False  # Volta has no bfloat16 (V100 datasheet)
    table = runner.invoke(app, route_argv(["gpus"]))
    assert table.exit_code == 0 and "H200" in table.stdout and "RTX-4090" in table.stdout


# -- the memory a process can get (CUDA's total) ----------------------------------------------------------
# [NVBENCH-A30] https://github.com/JakeFlasher/benchmark_flash_attention/blob/main/results_kvcache/window-4096.md:
#          nvbench on an NVIDIA A30 prints "Global Memory: 23805 MiB Free / 24060 MiB Total" (cudaMemGetInfo).
# [RBMOD]  https://github.com/google/RB-Modulation/issues/5: an A30's PyTorch OOM message, "total capacty of
#          23.53 GiB" -- within 0.05 GiB of 24060 MiB (23.496 GiB), so the two reports agree.
# PyTorch OOM messages print "GPU 0 has a total capacity of X GiB" with two decimals (X within 0.005 GiB):
# [VLLM27508] https://github.com/vllm-project/vllm/issues/27508: H100, 79.11 GiB.
# [OOTD235] https://github.com/levihsu/OOTDiffusion/issues/235: A100 80GB, 79.25 GiB.
# [COSER10] https://github.com/TianheWu/CoSeR/issues/10: A100 40GB, 39.50 GiB.
# [DSP10]   https://github.com/GaoLii/DSP/issues/10: RTX 3090, 23.70 GiB.
# [DSV3-205] https://github.com/deepseek-ai/DeepSeek-V3/issues/205: RTX 4090 24GB, 23.64 GiB.

def test_a30_cuda_total_is_the_nvbench_total():  # [NVBENCH-A30], [RBMOD]
    gpu = parse_gpu("A30")
    assert gpu.cuda_total_bytes == 24060 * MiB == 25_228_738_560
    assert abs(gpu.cuda_total_bytes / GiB - 23.53) < 0.05  # [RBMOD]
    assert "JakeFlasher/benchmark_flash_attention" in gpu.cuda_total_source
    assert gpu.usable_bytes == gpu.cuda_total_bytes < gpu.memory_bytes == 24 * GiB
    assert gpu.capacity_basis == "cuda-total"


@pytest.mark.parametrize("name, gib, where", [
    ("H100-80GB", 79.11, "vllm-project/vllm/issues/27508"), ("A100-80GB", 79.25, "levihsu/OOTDiffusion/issues/235"),
    ("A100-40GB", 39.50, "TianheWu/CoSeR/issues/10"), ("RTX-3090", 23.70, "GaoLii/DSP/issues/10"),
    ("RTX-4090", 23.64, "deepseek-ai/DeepSeek-V3/issues/205")])
def test_cuda_totals_from_oom_messages(name, gib, where):  # [VLLM27508], [OOTD235], [COSER10], [DSP10], [DSV3-205]
    gpu = parse_gpu(name)
    assert abs(gpu.cuda_total_bytes / GiB - gib) <= 0.005
    assert where in gpu.cuda_total_source
    assert gpu.usable_bytes == gpu.cuda_total_bytes


def test_every_entry_says_what_fits_are_judged_on():
    for g in catalog():
        assert g.cuda_total_note, g.name
        if g.cuda_total_bytes is None:
            assert g.cuda_total_source is None and "not known" in g.cuda_total_note, g.name
            assert g.usable_bytes == g.memory_bytes, g.name
        else:
            assert g.cuda_total_source and "https://" in g.cuda_total_source, g.name
            # CUDA never offers a process more than the driver's total (nvidia-smi) or the marketed size
            assert g.cuda_total_bytes < g.memory_bytes, g.name


def test_fits_marketed_but_not_cuda_total():
    """Hand computed: a process needing 23.75 GiB fits 24 GiB (the A30's marketed size) but not the
    24060 MiB = 23.496 GiB CUDA reports on an A30 [NVBENCH-A30]: judged not to fit, 0.254 GiB short."""
    from dataclasses import replace
    from types import SimpleNamespace

    from hfmem.plan import fit
    from hfmem.scenarios.inference import InferenceSettings

    need = int(23.75 * GiB)
    estimator = lambda s: SimpleNamespace(device_total_bytes=need, stored_weights_bytes=need)  # noqa: E731
    settings = InferenceSettings(engine="transformers", context=128, batch=1)
    a30 = parse_gpu("A30")
    r = fit.solve(estimator, settings, a30, {"num_attention_heads": 1})
    assert r.fits is False
    assert r.capacity_bytes == r.gpu_usable_bytes == 24060 * MiB
    assert r.headroom_bytes == 24060 * MiB - need == -272_629_760  # 23.496 - 23.75 GiB = -0.254 GiB
    assert r.gpu_memory_bytes == 24 * GiB and r.gpu_capacity_basis == "cuda-total"
    assert any("23.50 GiB" in n and "CUDA reports" in n for n in r.notes)
    marketed_only = replace(a30, cuda_total_bytes=None)  # the same card judged on its marketed 24 GiB
    assert fit.solve(estimator, settings, marketed_only, {"num_attention_heads": 1}).fits is True


def test_vllm_budget_is_utilization_of_the_cuda_total():
    """vLLM sizes its budget as gpu_memory_utilization x the total torch.cuda.mem_get_info() reports: 0.9 x
    24060 MiB on an A30 [NVBENCH-A30] (hand arithmetic: 21654 MiB)."""
    from types import SimpleNamespace

    from hfmem.plan import fit
    from hfmem.scenarios.inference import InferenceSettings

    s = InferenceSettings(engine="vllm", context=128, batch=1, gpu_memory_utilization=0.9)
    assert fit.capacity_bytes(parse_gpu("A30"), s) == int(0.9 * 24060 * MiB) == 21654 * MiB
    est = lambda _s: SimpleNamespace(device_total_bytes=1, stored_weights_bytes=1)  # noqa: E731
    assert fit.solve(est, s, parse_gpu("A30"), {"num_attention_heads": 1}).capacity_bytes == 21654 * MiB


def test_gpus_command_shows_marketed_and_cuda_total():
    import json as _json

    from typer.testing import CliRunner

    from hfmem.cli import app, route_argv

    runner = CliRunner()
    doc = _json.loads(runner.invoke(app, route_argv(["gpus", "--format", "json"])).stdout)
    a30 = {g["name"]: g for g in doc["gpus"]}["A30"]
    assert a30["memory_marketed"] == "24 GB" and a30["memory_bytes"] == 24 * GiB
    assert a30["cuda_total_bytes"] == a30["usable_bytes"] == 24060 * MiB and a30["capacity_basis"] == "cuda-total"
    md = runner.invoke(app, route_argv(["gpus", "--format", "markdown"])).stdout
    row = next(line for line in md.splitlines() if line.startswith("| A30 "))
    assert "24 GB" in row and "23.50 GiB" in row and "24.00 GiB" in row
    h200 = next(line for line in md.splitlines() if line.startswith("| H200 "))
    assert "| ? |" in h200  # no public source found for the H200's CUDA total


def test_train_fits_are_judged_on_the_cuda_total(monkeypatch):
    """hfmem train --gpu A30: a run whose device total lies between the CUDA total (24060 MiB, [NVBENCH-A30])
    and the marketed 24 GiB does not fit, and max_seq stops below it."""
    import hfmem

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    usable, marketed = 24060 * 2**20, 24 * 2**30
    r = hfmem.train("Qwen/Qwen2.5-3B", method="lora", batch=1, seq=1984, gpu="A30")
    total = r.estimate.device_total_bytes
    assert usable < total <= marketed  # the window this test is about (found by a search over --seq)
    assert r.fits is False
    shorter = hfmem.train("Qwen/Qwen2.5-3B", method="lora", batch=1, seq=r.max_seq, gpu="A30")
    assert shorter.estimate.device_total_bytes <= usable < total
