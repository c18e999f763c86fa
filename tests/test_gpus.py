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
