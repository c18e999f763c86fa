"""Machine-GPU detection (``--gpu auto``): the parsers on recorded tool outputs (tests/data/devices/, each cited
in its SOURCES.md), the order and fallback of ``detect``, visibility variables, and the CLI.

Expected bytes are hand arithmetic from the recorded text (MiB x 2**20, total - used), or a published number
cited where it is used."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import run_hfmem
from hfmem.errors import NoGPUFoundError, UsageError
from hfmem.plan import gpus as gpus_mod
from hfmem.plan.gpus import catalog_match, detected_gpu, parse_gpu, parse_gpus
from hfmem.sources.devices import (
    Device,
    apple_unified,
    detect,
    from_nvml,
    parse_nvidia_smi_csv,
    parse_rocm_smi,
    parse_rocm_smi_csv,
    parse_rocm_smi_json,
)

DATA = Path(__file__).parent / "data" / "devices"
MiB = 2**20
GiB = 2**30


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------- stand-ins

class FakeNVML:
    """The public functions of pynvml (nvidia-ml-py) that ``from_nvml`` calls, fed with recorded values."""

    def __init__(self, devices, fail: Exception | None = None):
        self.devices = list(devices)  # (name, total, free, used)
        self.fail = fail
        self.shut_down = False

    def nvmlInit(self):
        if self.fail is not None:
            raise self.fail

    def nvmlShutdown(self):
        self.shut_down = True

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, handle):
        return self.devices[handle][0]

    def nvmlDeviceGetMemoryInfo(self, handle):
        _, total, free, used = self.devices[handle]
        return SimpleNamespace(total=total, free=free, used=used)


class NVMLLibraryNotFound(Exception):
    """Named like pynvml's NVMLError_LibraryNotFound, which ``detect`` words as "driver library not found"."""


NVMLLibraryNotFound.__name__ = "NVMLError_LibraryNotFound"
NO_NVML = FakeNVML([], fail=NVMLLibraryNotFound("NVML Shared Library Not Found"))


def tools(outputs: dict, calls: list | None = None):
    """A ``run`` injection: program name -> the text it prints (or an exception it raises); others are absent."""

    def run(argv):
        if calls is not None:
            calls.append(tuple(argv))
        out = outputs.get(argv[0])
        if out is None:
            raise FileNotFoundError(argv[0])
        if isinstance(out, BaseException):
            raise out
        if callable(out):
            return out(argv)
        return out

    return run


def a10_devices():
    """The three complete device objects of mayooot/detect-gpu#3 (NVML values, bytes); the stored excerpt ends
    after the third object's comma, so the array is closed here."""
    items = json.loads(read("nvml-detect-gpu-a10x4.json.txt").rstrip().rstrip(",") + "]")
    return [(d["name"], d["memoryInfo"]["Total"], d["memoryInfo"]["Free"], d["memoryInfo"]["Used"]) for d in items]


def gtx1060_device():
    """nicolargo/glances#1523: the name and ``c_nvmlMemory_t(total: ... B, free: ... B, used: ... B)``."""
    text = read("nvml-glances-gtx1060.txt")
    name = text.splitlines()[1].strip()
    m = re.search(r"total: (\d+) B, free: (\d+) B, used: (\d+) B", text)
    return name, int(m.group(1)), int(m.group(2)), int(m.group(3))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(gpus_mod, "_DETECTED", [])  # hfmem's own once-per-process memory, fresh per test


def real_nvml_works() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:
        return False


# ------------------------------------------------------------------------------------------ parsers

def test_nvidia_smi_with_header_and_units():
    # NVIDIA/gpu-monitoring-tools#3: "7840 MiB, 20 MiB, 7820 MiB, Tesla P4" under a header, columns by name
    (d,) = parse_nvidia_smi_csv(read("nvidia-smi-tesla-p4.csv"))
    assert d == Device(index=0, name="Tesla P4", vendor="nvidia", total_bytes=7840 * 2**20,
                       free_bytes=7820 * 2**20, source="nvidia-smi")
    assert d.total_bytes == 8_220_835_840 and d.free_bytes == 8_199_864_320


def test_nvidia_smi_the_queried_form():
    # The P4 row above in the form hfmem asks for (index,name,memory.total,memory.free; noheader,nounits):
    # the same numbers, the layout `nvidia-smi --help-query-gpu` documents for that query.
    (d,) = parse_nvidia_smi_csv("0, Tesla P4, 7840, 7820\n")
    assert (d.index, d.name, d.total_bytes, d.free_bytes) == (0, "Tesla P4", 7840 * MiB, 7820 * MiB)


def test_nvidia_smi_refuses_text_that_is_not_the_table():
    # what nvidia-smi prints (on stdout, exit 6) on a machine without a GPU
    with pytest.raises(ValueError):
        parse_nvidia_smi_csv("No devices were found\n")


def test_nvml_values_from_glances():
    name, total, free, used = gtx1060_device()
    assert (name, total, free, used) == ("GeForce GTX 1060 3GB", 3156738048, 2471297024, 685441024)
    assert free + used == total  # NVML v1: free + used = total, the recorded numbers agree
    fake = FakeNVML([(name.encode(), total, free, used)])  # nvidia-ml-py < 11.515 returned the name as bytes
    (d,) = from_nvml(fake)
    assert d == Device(index=0, name="GeForce GTX 1060 3GB", vendor="nvidia", total_bytes=3156738048,
                       free_bytes=2471297024, source="nvml")
    assert fake.shut_down


def test_nvml_values_from_detect_gpu():
    devices = from_nvml(FakeNVML(a10_devices()))
    assert [d.index for d in devices] == [0, 1, 2]
    # 23028 MiB, the A10's nvidia-smi total (modal-labs/modal-client#2797: "A10: 23028MiB")
    assert all(d.total_bytes == 23028 * MiB == 24146608128 for d in devices)
    assert [d.free_bytes for d in devices] == [24146608128 - 1257242624, 24146608128 - 541917184,
                                               24146608128 - 541917184]


def test_rocm_smi_json_and_csv_agree():
    # marimo-team/marimo#9237: VRAM Total 21458059264 B, Total Used 27856896 B
    expected = Device(index=0, name="Radeon RX 7900 XT", vendor="amd", total_bytes=21458059264,
                      free_bytes=21458059264 - 27856896, source="rocm-smi")
    assert parse_rocm_smi_json(read("rocm-smi-rx7900xt.json")) == [expected]
    assert parse_rocm_smi_csv(read("rocm-smi-rx7900xt.csv")) == [expected]
    assert parse_rocm_smi(read("rocm-smi-rx7900xt.json")) == parse_rocm_smi(read("rocm-smi-rx7900xt.csv"))
    assert expected.free_bytes == 21430202368


def test_rocm_smi_mixed_devices():
    # mudler/LocalAI#7761: a Navi 21 card and the Raphael iGPU (64 MiB of VRAM carve-out)
    big, igpu = parse_rocm_smi_csv(read("rocm-smi-rx6800-raphael.csv"))
    assert (big.index, big.name) == (0, "Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]")
    assert (big.total_bytes, big.free_bytes) == (17163091968, 17163091968 - 692142080)
    assert (igpu.index, igpu.name) == (1, "Raphael")
    assert igpu.total_bytes == 64 * MiB and igpu.free_bytes == 67108864 - 26079232


def test_apple_working_set_matches_published_logs():
    # each line: RAM in GB (the machines' marketed size, GiB in fact) and llama.cpp's logged value in MiB
    rows = [ln for ln in read("metal-recommended-working-set.txt").splitlines() if ln and not ln.startswith("#")]
    assert len(rows) == 5
    for row in rows:
        ram_gb = int(re.search(r"\((\d+) GB\)", row).group(1))
        logged = float(re.search(r"= +([\d.,]+) (?:MiB|MB)", row).group(1).replace(",", "."))
        d = apple_unified(ram_gb * GiB, "Apple M-series")
        assert abs(d.total_bytes / MiB - logged) < 0.01, row  # llama.cpp prints two decimals
        assert d.unified and d.free_bytes is None and d.source == "apple"
        assert "unified memory" in d.note and "iogpu.wired_limit_mb" in d.note


def test_apple_wired_limit_overrides_the_default():
    # antirez/ds4#893: M5 Max 128 GB, "recommendedMaxWorkingSetSize: 112.00 GiB with iogpu.wired_limit_mb = 114688"
    d = apple_unified(128 * GiB, "Apple M5 Max", 114688)
    assert d.total_bytes == 112 * GiB and d.name == "Apple M5 Max"


# ------------------------------------------------------------------------------------------- detect

def test_nvml_first_and_nothing_else_runs():
    calls: list = []
    devices = detect(nvml=FakeNVML([gtx1060_device()]), run=tools({}, calls), platform="linux-x86_64")
    assert [(d.name, d.source) for d in devices] == [("GeForce GTX 1060 3GB", "nvml")]
    assert calls == []


def test_nvidia_smi_when_nvml_fails():
    calls: list = []
    devices = detect(nvml=NO_NVML, run=tools({"nvidia-smi": read("nvidia-smi-tesla-p4.csv")}, calls),
                     platform="linux-x86_64")
    assert [(d.name, d.free_bytes, d.source) for d in devices] == [("Tesla P4", 7820 * MiB, "nvidia-smi")]
    assert calls == [("nvidia-smi", "--query-gpu=index,name,memory.total,memory.free",
                      "--format=csv,noheader,nounits")]


def test_rocm_smi_when_no_nvidia_tool():
    calls: list = []
    devices = detect(nvml=NO_NVML, run=tools({"rocm-smi": read("rocm-smi-rx7900xt.json")}, calls),
                     platform="linux-x86_64")
    assert [(d.name, d.total_bytes, d.source) for d in devices] == [("Radeon RX 7900 XT", 21458059264, "rocm-smi")]
    assert [c[0] for c in calls] == ["nvidia-smi", "rocm-smi"]
    assert calls[1] == ("rocm-smi", "--showproductname", "--showmeminfo", "vram", "--json")


def test_a_failing_tool_falls_through():
    out = tools({"nvidia-smi": RuntimeError("exit status 9 (NVIDIA-SMI has failed because it couldn't "
                                            "communicate with the NVIDIA driver.)"),
                 "rocm-smi": read("rocm-smi-rx7900xt.json")})
    (d,) = detect(nvml=NO_NVML, run=out, platform="linux-x86_64")
    assert d.source == "rocm-smi"


def test_apple_silicon_last():
    # an M1 Max with 64 GB: hw.memsize = 64 * 2**30 = 68719476736 bytes; iogpu.wired_limit_mb 0 (not raised)
    sysctl = {"hw.memsize": "68719476736\n", "machdep.cpu.brand_string": "Apple M1 Max\n",
              "iogpu.wired_limit_mb": "0\n"}
    (d,) = detect(nvml=NO_NVML, run=tools({"sysctl": lambda argv: sysctl[argv[-1]]}), platform="darwin-arm64")
    assert (d.name, d.unified, d.total_bytes) == ("Apple M1 Max", True, 49152 * MiB)  # llama.cpp#1870: 49152.00 MiB


def test_no_gpu_one_line():
    with pytest.raises(NoGPUFoundError) as err:
        detect(nvml=NO_NVML, run=tools({}), platform="linux-x86_64")
    assert err.value.message == ("no GPU found: NVML: driver library not found; nvidia-smi: not installed; "
                                 "rocm-smi: not installed; not Apple silicon")
    assert "--gpu RTX-4090" in err.value.hint and "--gpu 24GiB" in err.value.hint
    assert "\n" not in str(err.value) and err.value.exit_code == 69


def test_the_real_pynvml_falls_through_cleanly():
    if real_nvml_works():
        pytest.skip("this machine has a working NVIDIA driver")
    pytest.importorskip("pynvml")
    with pytest.raises(NoGPUFoundError) as err:
        detect(run=tools({}), platform="linux-x86_64")
    assert err.value.message.startswith("no GPU found: NVML: driver library not found; nvidia-smi: not installed")


def test_cuda_visible_devices_renumbers(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    devices = detect(nvml=FakeNVML(a10_devices()), run=tools({}), platform="linux-x86_64")
    assert [d.index for d in devices] == [0, 1]
    # process GPU 0 is the machine's GPU 2, GPU 1 the machine's GPU 0 (their recorded free memory)
    assert [d.free_bytes for d in devices] == [23604690944, 22889365504]
    assert "GPU 2 of the machine" in devices[0].note and "CUDA_VISIBLE_DEVICES=2,0" in devices[0].note


def test_cuda_visible_devices_empty_hides_all(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(NoGPUFoundError) as err:
        detect(nvml=FakeNVML(a10_devices()), run=tools({}), platform="linux-x86_64")
    assert "NVML: CUDA_VISIBLE_DEVICES is empty" in err.value.message


def test_cuda_visible_devices_uuid_is_not_resolved(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-749a4951-86af-0c5a-2a58-67aa5ebf9d4e")
    devices = detect(nvml=FakeNVML(a10_devices()), run=tools({}), platform="linux-x86_64")
    assert len(devices) == 3 and "UUID or MIG" in devices[0].note


def test_hip_visible_devices(monkeypatch):
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "1")
    (d,) = detect(nvml=NO_NVML, run=tools({"rocm-smi": read("rocm-smi-rx6800-raphael.csv")}), platform="linux")
    assert (d.index, d.name, d.total_bytes) == (0, "Raphael", 64 * MiB)


# ------------------------------------------------------------------------------- GPUs and the choice

def test_catalog_match_of_reported_names():
    # names as the tools print them; totals nvidia-smi reports (modal-labs/modal-client#2797: H100 81559MiB,
    # A100 40GB 40960MiB, A100 80GB 81920MiB, L40S 46068MiB; RTX 4090 24564MiB in RLinf/RLinf#255's table)
    cases = {("NVIDIA GeForce RTX 4090", 24564): "RTX-4090", ("NVIDIA H100 80GB HBM3", 81559): "H100-80GB",
             ("NVIDIA A100-SXM4-40GB", 40960): "A100-40GB", ("NVIDIA A100-SXM4-80GB", 81920): "A100-80GB",
             ("NVIDIA L40S", 46068): "L40S", ("NVIDIA A10", 23028): None, ("Tesla P4", 7840): None,
             ("Radeon RX 7900 XT", 20464): None}
    for (name, mib), want in cases.items():
        got = catalog_match(name, mib * MiB)
        assert (got.name if got else None) == want, name
    # a 16 GiB laptop part is not the 24 GiB desktop card, and a Ti is another product
    assert catalog_match("NVIDIA GeForce RTX 4090 Laptop GPU", 16 * GiB) is None
    assert catalog_match("NVIDIA GeForce RTX 3090 Ti", 24 * GiB) is None


def test_detected_gpu_budgets_free_memory():
    d = Device(index=0, name="NVIDIA GeForce RTX 4090", vendor="nvidia", total_bytes=24564 * MiB,
               free_bytes=24564 * MiB - 507 * MiB, source="nvidia-smi")  # RLinf/RLinf#255: 507MiB / 24564MiB
    g = detected_gpu(d)
    cat = parse_gpu("RTX-4090")
    assert g.name == "NVIDIA GeForce RTX 4090 (GPU 0)" and g.catalog_name == "RTX-4090"
    assert (g.bf16, g.fp8, g.bandwidth, g.aliases) == (cat.bf16, cat.fp8, cat.bandwidth, cat.aliases)
    assert g.usable_bytes == 24057 * MiB and g.capacity_basis == "detected-free"
    # 24057 / 1024 = 23.49 GiB free of 24564 / 1024 = 23.99 GiB
    assert g.capacity_note().startswith("fits judged on 23.49 GiB free of 23.99 GiB on GPU 0, "
                                        "NVIDIA GeForce RTX 4090, detected by nvidia-smi")
    no_free = detected_gpu(Device(0, "NVIDIA GeForce RTX 4090", "nvidia", 24564 * MiB, None, "nvidia-smi"))
    assert no_free.usable_bytes == cat.cuda_total_bytes and no_free.capacity_basis == "cuda-total"
    unknown = detected_gpu(Device(0, "Tesla P4", "nvidia", 7840 * MiB, None, "nvidia-smi"))
    assert unknown.usable_bytes == 7840 * MiB and unknown.bf16 is None and unknown.capacity_basis == "detected-total"


def a10_detect():
    return detect(nvml=FakeNVML(a10_devices()), run=tools({}), platform="linux-x86_64")


def test_parse_gpus_auto_picks_the_most_free():
    choice = parse_gpus("auto", 2, detect=a10_detect)
    assert [g.device_index for g in choice.devices] == [1, 2]  # 23604690944 free each, GPU 0 has 22889365504
    assert choice.count == 2 and choice.gpu.usable_bytes == 23604690944
    assert any("2 of the 3 GPUs found" in n for n in choice.notes)
    assert not any(n.startswith("mixed devices") for n in choice.notes)


def test_parse_gpus_auto_even_split_bounded_by_the_smallest():
    choice = parse_gpus("AUTO", 3, detect=a10_detect)
    assert choice.gpu.usable_bytes == 22889365504 and choice.gpu.device_index == 0
    assert [g.usable_bytes for g in choice.devices] == [22889365504, 23604690944, 23604690944]
    assert any(n.startswith("mixed devices: an even split") and "GPU 0" in n for n in choice.notes)


def test_parse_gpus_auto_mixed_amd():
    def run():
        return detect(nvml=NO_NVML, run=tools({"rocm-smi": read("rocm-smi-rx6800-raphael.csv")}), platform="linux")

    both = parse_gpus("auto", 2, detect=run)
    assert both.gpu.device_name == "Raphael" and both.gpu.usable_bytes == 67108864 - 26079232
    assert [g.device_name for g in both.devices] == ["Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]", "Raphael"]
    assert any(n.startswith("mixed devices") for n in both.notes)
    one = parse_gpus("auto", 1, detect=run)
    assert one.gpu.device_index == 0 and one.gpu.usable_bytes == 17163091968 - 692142080


def test_parse_gpus_more_than_found():
    with pytest.raises(UsageError) as err:
        parse_gpus("auto", 4, detect=a10_detect)
    assert "3 GPUs found on this machine" in str(err.value)


def test_parse_gpus_catalog_copies():
    choice = parse_gpus("H100-80GB", 4)
    assert choice.count == 4 and choice.devices == (parse_gpu("H100-80GB"),) * 4 and choice.notes == ()


# ------------------------------------------------------------------- a fake nvidia-smi on PATH, and the CLI

@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    if os.name != "posix":
        pytest.skip("an executable script on PATH needs a POSIX shell here")
    if real_nvml_works():
        pytest.skip("a working NVIDIA driver here: NVML would answer before the fake nvidia-smi")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    fixture = str(DATA / "nvidia-smi-tesla-p4.csv")
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write(open({fixture!r}).read())\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))  # nothing else: no rocm-smi, no sysctl
    return bin_dir


def test_parse_gpu_auto_reads_the_fake_tool(fake_nvidia_smi):
    g = parse_gpu("auto")
    assert g.name == "Tesla P4 (GPU 0)" and g.usable_bytes == 7820 * MiB and g.memory_bytes == 7840 * MiB
    # 7820 / 1024 = 7.64 GiB, 7840 / 1024 = 7.66 GiB
    assert g.capacity_note().startswith("fits judged on 7.64 GiB free of 7.66 GiB on GPU 0, Tesla P4, "
                                        "detected by nvidia-smi")
    with pytest.raises(UsageError) as err:
        parse_gpus("auto", 2)
    assert "1 GPU found on this machine" in str(err.value)


def test_cli_detect_json(fake_nvidia_smi):
    proc = run_hfmem("gpus", "--detect", "--format", "json", env={"PATH": str(fake_nvidia_smi)}, check_torch=True)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == "hfmem.devices/1" and doc["units"] == "bytes"
    (dev,) = doc["devices"]
    assert (dev["index"], dev["name"], dev["total_bytes"], dev["free_bytes"], dev["source"], dev["catalog"]) == \
        (0, "Tesla P4", 7840 * MiB, 7820 * MiB, "nvidia-smi", None)
    assert "TORCH_IMPORTED=False" in proc.stderr


def test_cli_no_gpu_exit_69(tmp_path):
    if real_nvml_works():
        pytest.skip("a working NVIDIA driver here")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_hfmem("gpus", "--detect", env={"PATH": str(empty)})
    assert proc.returncode == 69
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    nvml = "NVML: driver library not found" if _has_pynvml() else "NVML: nvidia-ml-py not installed"
    assert (f"no GPU found: {nvml}; nvidia-smi: not installed; rocm-smi: not installed"
            + ("; not Apple silicon" if sys.platform != "darwin" else "")) in lines[0]
    assert "--gpu RTX-4090" in lines[0]


def _has_pynvml() -> bool:
    import importlib.util

    return importlib.util.find_spec("pynvml") is not None


def test_a_failing_real_tool_gives_its_first_line(tmp_path, monkeypatch):
    # the real subprocess runner on a fake nvidia-smi that fails as on a machine without a GPU: nvidia-smi's man
    # page, RETURN VALUE: "6 - A query to find an object was unsuccessful"; it prints "No devices were found"
    if os.name != "posix":
        pytest.skip("an executable script on PATH needs a POSIX shell here")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(f"#!{sys.executable}\nimport sys\nprint('No devices were found')\nsys.exit(6)\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(NoGPUFoundError) as err:
        detect(nvml=NO_NVML, platform="linux-x86_64")
    assert err.value.message == ("no GPU found: NVML: driver library not found; nvidia-smi: exit status 6 "
                                 "(No devices were found); rocm-smi: not installed; not Apple silicon")
