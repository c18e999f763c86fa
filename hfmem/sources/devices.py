"""This machine's GPUs, for ``--gpu auto``: NVML, then ``nvidia-smi``, then ``rocm-smi``, then Apple silicon.

Each probe answers a list of ``Device`` (the total and, where the tool says, the free memory of each GPU a
process here would see) or a one-phrase reason why it found none; ``detect`` returns the first non-empty list
and otherwise raises ``NoGPUFoundError`` whose one line gives every reason. Nothing here imports torch: a CUDA
context would itself take memory, and hfmem never needs one to *estimate*.

Sources of the formats read here (recorded outputs in ``tests/data/devices/``, cited in its SOURCES.md):

* NVML through nvidia-ml-py (``pip install nvidia-ml-py``, module ``pynvml``): ``nvmlDeviceGetMemoryInfo``
  gives ``total``/``free``/``used`` in bytes. NVIDIA's nvidia-smi man page: "both NVML and the Python bindings
  are backwards compatible, and should be the first choice when writing any tools that must be maintained
  across NVIDIA driver releases" -- hence NVML first, nvidia-smi only when the bindings are missing.
* ``nvidia-smi --query-gpu=index,name,memory.total,memory.free --format=csv,noheader,nounits``: one line per
  GPU, memory in MiB (``nvidia-smi --help-query-gpu``: "memory.total: Total installed GPU memory").
  The parser also takes the output with a header (``--format=csv``, "memory.total [MiB]") and the units.
* ``rocm-smi --showproductname --showmeminfo vram --json``: ``{"card0": {"VRAM Total Memory (B)": "...",
  "VRAM Total Used Memory (B)": "...", "Card Series": "...", ...}}``, bytes as strings; ``--csv`` has the
  same keys as columns. Free = total - used: rocm-smi reads both from the amdgpu kernel driver's VRAM manager
  (ROCm/legacy-rocm-build#1909, kentrussell: "SMI reports memory from the kernel's memory manager").
* Apple silicon: ``sysctl -n hw.memsize`` (bytes of RAM), ``machdep.cpu.brand_string`` ("Apple M2 Max") and
  ``iogpu.wired_limit_mb`` (0 unless raised); the GPU budget is Metal's recommendedMaxWorkingSetSize, see
  ``apple_unified``.

Visibility: NVML and nvidia-smi list every GPU of the machine; a process sees only those CUDA_VISIBLE_DEVICES
names, renumbered 0..n-1 in the order given (CUDA C Programming Guide, "CUDA Environment Variables"). AMD's
runtime does the same with ROCR_VISIBLE_DEVICES, then HIP_VISIBLE_DEVICES (ROCm docs, "GPU isolation
techniques"). Only comma lists of integers are applied; UUIDs (``GPU-...``) and MIG instances (``MIG-...``)
are not resolved, and the devices are then reported unfiltered with a note saying so.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from typing import Callable

from ..errors import NoGPUFoundError

__all__ = ["Device", "parse_nvidia_smi_csv", "parse_rocm_smi_json", "parse_rocm_smi_csv", "parse_rocm_smi",
           "from_nvml", "apple_unified", "detect", "NVIDIA_SMI_ARGV", "ROCM_SMI_ARGV", "TIMEOUT_S"]

MiB = 1 << 20
GiB = 1 << 30
TIMEOUT_S = 10  # a hung driver must not hang hfmem: nvidia-smi answers in well under a second when healthy

NVIDIA_SMI_ARGV = ("nvidia-smi", "--query-gpu=index,name,memory.total,memory.free",
                   "--format=csv,noheader,nounits")
ROCM_SMI_ARGV = ("rocm-smi", "--showproductname", "--showmeminfo", "vram", "--json")
_SYSCTL = ("sysctl", "-n")


@dataclass(frozen=True)
class Device:
    index: int            # the index a process would use (after CUDA_/HIP_/ROCR_VISIBLE_DEVICES: 0..n-1)
    name: str             # as the tool reports it: "NVIDIA GeForce RTX 4090", "Radeon RX 7900 XT", "Apple M2 Max"
    vendor: str           # "nvidia" | "amd" | "apple"
    total_bytes: int
    free_bytes: int | None  # None where the tool does not say
    source: str           # "nvml" | "nvidia-smi" | "rocm-smi" | "apple"
    unified: bool = False   # Apple silicon: GPU memory is system RAM (total = what Metal lets the GPU wire)
    note: str = ""


class _ToolMissing(Exception):
    """The program is not on PATH."""


# --------------------------------------------------------------------------------------------- nvidia-smi

_NVSMI_FIELDS = ("index", "name", "memory.total", "memory.free")
_NA = {"n/a", "[n/a]", "[not supported]", "not supported", "[unknown error]", ""}


def _mib(cell: str) -> int | None:
    """``"24564"`` or ``"24564 MiB"`` -> bytes; ``[N/A]`` (e.g. NVIDIA GB10's unified memory) -> None."""
    text = cell.strip()
    if text.lower() in _NA:
        return None
    if text.lower().endswith("mib"):
        text = text[:-3].strip()
    if not text.isdigit():
        raise ValueError(f"not a MiB count: {cell.strip()!r}")
    return int(text) * MiB


def parse_nvidia_smi_csv(text: str) -> list[Device]:
    """Devices from ``nvidia-smi --query-gpu=index,name,memory.total,memory.free --format=csv,...``.

    Without a header the columns are those four, in that order (``noheader``); with one (``--format=csv``) they
    are read by name, in any order, ``name``/``gpu_name`` and ``index`` optional (index then = line number).
    A GPU whose total reads ``[N/A]`` is left out: nothing can be budgeted on it. Raises ``ValueError`` on a
    line that is not such a row (nvidia-smi prints its errors, e.g. "No devices were found", on stdout)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    columns: tuple[str, ...] = _NVSMI_FIELDS
    first = [c.strip().lower() for c in lines[0].split(",")]
    if any(c.startswith("memory.") for c in first):  # a header line: "name, memory.total [MiB], ..."
        columns = tuple(c.split(" [")[0].replace("gpu_name", "name") for c in first)
        lines = lines[1:]
        if "memory.total" not in columns:
            raise ValueError("nvidia-smi output has no memory.total column")
    out = []
    for pos, line in enumerate(lines):
        cells = [c.strip() for c in line.split(",")]
        if len(cells) > len(columns) and "name" in columns:  # a comma inside a name: give it the extra cells
            i = columns.index("name")
            extra = len(cells) - len(columns)
            cells = cells[:i] + [", ".join(cells[i:i + extra + 1])] + cells[i + extra + 1:]
        if len(cells) != len(columns):
            raise ValueError(f"unexpected nvidia-smi line: {line[:120]!r}")
        row = dict(zip(columns, cells))
        total = _mib(row["memory.total"])
        if total is None:
            continue
        free = _mib(row["memory.free"]) if "memory.free" in row else None
        idx = row.get("index", str(pos))
        if not idx.isdigit():
            raise ValueError(f"unexpected nvidia-smi line: {line[:120]!r}")
        out.append(Device(index=int(idx), name=row.get("name") or f"NVIDIA GPU {idx}", vendor="nvidia",
                          total_bytes=total, free_bytes=free, source="nvidia-smi"))
    return out


# -------------------------------------------------------------------------------------------------- NVML

def from_nvml(nvml) -> list[Device]:
    """Devices from NVML. ``nvml`` is the ``pynvml`` module of nvidia-ml-py, or any object with its public
    functions (nvmlInit, nvmlDeviceGetCount, nvmlDeviceGetHandleByIndex, nvmlDeviceGetName,
    nvmlDeviceGetMemoryInfo, nvmlShutdown). Errors (pynvml.NVMLError: no driver library, no device) propagate.

    ``nvmlDeviceGetMemoryInfo`` (v1): ``free`` is total minus everything allocated, the driver's reservation
    included (NVML API reference, nvmlMemory_t), so it is what a new process can still get."""
    nvml.nvmlInit()
    try:
        out = []
        for i in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            name = nvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):  # nvidia-ml-py < 11.515 returned bytes
                name = name.decode("utf-8", "replace")
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            out.append(Device(index=i, name=str(name), vendor="nvidia", total_bytes=int(mem.total),
                              free_bytes=int(mem.free), source="nvml"))
        return out
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # shutting down a half-initialised library must not hide the answer
            pass


# -------------------------------------------------------------------------------------------------- ROCm

def _rocm_card(card: str, fields: dict) -> Device | None:
    """One rocm-smi card from its key/value pairs. Keys are matched case-insensitively, in case their
    capitalisation differs between rocm-smi versions; the name is the first of Card Series, Marketing Name,
    Card Model, Card SKU that is given."""
    low = {str(k).strip().lower(): v for k, v in fields.items()}
    total = low.get("vram total memory (b)")
    if total is None or not str(total).strip().isdigit():
        return None
    used = low.get("vram total used memory (b)")
    free = int(total) - int(used) if used is not None and str(used).strip().isdigit() else None
    name = ""
    for key in ("card series", "marketing name", "card model", "card sku"):
        value = str(low.get(key) or "").strip()
        if value and value.lower() not in _NA:
            name = value
            break
    digits = card.lower().removeprefix("card")
    index = int(digits) if digits.isdigit() else 0
    return Device(index=index, name=name or f"AMD GPU {card}", vendor="amd", total_bytes=int(total),
                  free_bytes=None if free is None else max(free, 0), source="rocm-smi")


def parse_rocm_smi_json(text: str) -> list[Device]:
    """Devices from ``rocm-smi --showproductname --showmeminfo vram --json`` (bytes). Entries that are not a
    ``cardN`` object (rocm-smi adds a "system" entry with e.g. the driver version) are skipped, and so are
    cards without a VRAM total. Raises ``ValueError`` when the text is not JSON."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("rocm-smi --json did not print an object")
    out = [d for key, value in data.items()
           if str(key).lower().startswith("card") and isinstance(value, dict)
           for d in [_rocm_card(str(key), value)] if d is not None]
    return sorted(out, key=lambda d: d.index)


def parse_rocm_smi_csv(text: str) -> list[Device]:
    """Devices from the same query with ``--csv`` instead of ``--json``: a header row of the same keys,
    ``device`` first (``card0``)."""
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(text.strip())))
    out = [d for row in rows for d in [_rocm_card(str(row.get("device") or ""), row)] if d is not None]
    return sorted(out, key=lambda d: d.index)


def parse_rocm_smi(text: str) -> list[Device]:
    """``parse_rocm_smi_json`` or ``parse_rocm_smi_csv``, whichever the text is."""
    return parse_rocm_smi_json(text) if text.lstrip().startswith("{") else parse_rocm_smi_csv(text)


# ------------------------------------------------------------------------------------------ Apple silicon

# Metal's default GPU working set (MTLDevice.recommendedMaxWorkingSetSize) as llama.cpp logs it
# ("ggml_metal_init: recommendedMaxWorkingSetSize = ... MB", MB meaning MiB), with the machine's RAM:
#   M1 Pro 16 GB:  10922.67 MB = 16384 MiB * 2/3   abetlen/llama-cpp-python#687
#   M1 Max 32 GB:  21845.34 MB = 32768 MiB * 2/3   ggml-org/llama.cpp#2011 (EliasOenal); M2 Max 32 GB the same,
#                                                  ollama/ollama#434
#   M1 Max 64 GB:  49152.00 MiB = 65536 MiB * 3/4  ggml-org/llama.cpp#1870 (zestysoft)
#   M2 Max 96 GB:  73728,00 MB = 98304 MiB * 3/4   ggml-org/llama.cpp#3213
# i.e. two thirds of RAM up to 32 GiB and three quarters from 64 GiB (macOS 13/14, 2023). No published point
# between 32 and 64 GiB was found, so 36/48 GiB machines get the smaller fraction. Newer macOS gives more on
# some machines (M5 Max 128 GB on macOS 26: 107.52 GiB = 0.84 of RAM, antirez/ds4#893; M3 16 GB: 11.84 of
# 16 GB, AlexsJones/llmfit#754): the rule is a floor, not the exact value. Raising iogpu.wired_limit_mb
# raises recommendedMaxWorkingSetSize to that value (antirez/ds4#893: 112.00 GiB with
# iogpu.wired_limit_mb = 114688; llmfit#754 saw the same at 12000 and 14000 MiB).
_APPLE_LARGE_RAM = 64 * GiB


def _apple_fraction(memsize_bytes: int) -> tuple[int, int]:
    return (3, 4) if memsize_bytes >= _APPLE_LARGE_RAM else (2, 3)


def apple_unified(memsize_bytes: int, chip: str, wired_limit_mb: int | None = None) -> Device:
    """The GPU of an Apple-silicon Mac: unified memory, of which Metal lets the GPU wire
    ``iogpu.wired_limit_mb`` MiB when that sysctl is set (non-zero), else a fraction of RAM (see above)."""
    ram = int(memsize_bytes)
    if wired_limit_mb and int(wired_limit_mb) > 0:
        total = int(wired_limit_mb) * MiB
        note = (f"unified memory: the GPU may wire iogpu.wired_limit_mb = {int(wired_limit_mb)} MiB of "
                f"{ram / GiB:.0f} GiB RAM; free memory is shared with the CPU and not reported")
    else:
        num, den = _apple_fraction(ram)
        total = ram * num // den
        note = (f"unified memory: Metal's default GPU working set, {num}/{den} of {ram / GiB:.0f} GiB RAM "
                "(recommendedMaxWorkingSetSize as llama.cpp logs it on 16-96 GB Macs; newer macOS may allow "
                "more; `sudo sysctl iogpu.wired_limit_mb=N` raises it); free memory is shared with the CPU "
                "and not reported")
    return Device(index=0, name=chip.strip() or "Apple silicon GPU", vendor="apple", total_bytes=total,
                  free_bytes=None, source="apple", unified=True, note=note)


# ------------------------------------------------------------------------------------------------ detect

def _run_default(argv) -> str:
    """Run a probe: stdout, or an exception whose text is one short phrase."""
    import subprocess

    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except FileNotFoundError:
        raise _ToolMissing("not installed") from None
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"no answer within {TIMEOUT_S} s") from None
    except OSError as exc:
        raise RuntimeError(exc.strerror or str(exc)) from None
    if proc.returncode != 0:
        said = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        raise RuntimeError(f"exit status {proc.returncode}" + (f" ({said[0].strip()[:100]})" if said else ""))
    return proc.stdout


def _visible(devices: list[Device], variables: tuple[str, ...]) -> tuple[list[Device], str]:
    """Apply the visibility variables in order (each indexes into what the previous one left), renumbering.
    Returns the devices a process sees and a note ("" when no variable is set)."""
    notes = []
    for var in variables:
        spec = os.environ.get(var)
        if spec is None:
            continue
        items = [s.strip() for s in spec.split(",")]
        if spec.strip() == "":
            notes.append(f"{var} is empty: no GPU is visible to a process")
            devices = []
            continue
        picked: list[Device] = []
        for item in items:
            # CUDA stops at the first entry that is not a valid index ("-1" hides everything after it)
            if not item.lstrip("-").isdigit():
                notes.append(f"{var}={spec} names devices by UUID or MIG instance, which hfmem does not resolve: "
                             "every GPU is listed")
                picked = None  # type: ignore[assignment]
                break
            i = int(item)
            if i < 0 or i >= len(devices):
                break
            picked.append(devices[i])
        if picked is None:
            continue
        if not picked:
            notes.append(f"{var}={spec} leaves none of the {len(devices)} GPU(s) found visible")
            devices = []
            continue
        devices = [replace(d, index=new, note="; ".join(x for x in (d.note, f"GPU {d.index} of the machine "
                                                                     f"({var}={spec})") if x))
                   for new, d in enumerate(picked)]
        notes.append(f"{var}={spec}: {len(devices)} GPU(s) visible")
    return devices, "; ".join(notes)


def _with_note(devices: list[Device], note: str) -> list[Device]:
    return devices if not note else [replace(d, note="; ".join(x for x in (d.note, note) if x)) for d in devices]


def _nvidia_note(devices: list[Device], vis_note: str) -> str:
    names = {d.name for d in devices}
    if len(names) > 1 and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        # CUDA C Programming Guide, CUDA_DEVICE_ORDER: FASTEST_FIRST (the default) or PCI_BUS_ID
        return "; ".join(x for x in (vis_note, "GPU numbers as nvidia-smi gives them (PCI bus order); CUDA "
                                     "numbers mixed GPUs fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID") if x)
    return vis_note


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


def _nvml_reason(exc: BaseException) -> str:
    name = type(exc).__name__
    if "LibraryNotFound" in name:
        return "driver library not found"
    if "DriverNotLoaded" in name:
        return "NVIDIA driver not loaded"
    return _why(exc)


def detect(*, nvml=None, run: Callable | None = None, platform: str | None = None) -> list[Device]:
    """This machine's GPUs as a process here would see them; ``NoGPUFoundError`` (one line) when none is found.

    Tries NVML, ``nvidia-smi``, ``rocm-smi``, then Apple silicon; the first that finds a device wins.
    Injection points for tests: ``nvml`` (the pynvml module or a stand-in; ``False`` skips NVML; default: import
    pynvml if nvidia-ml-py is installed), ``run`` (argv -> stdout text, raising on failure; a
    ``FileNotFoundError`` means "not installed"; default: subprocess with a 10 s timeout) and ``platform``
    (``"<sys.platform>-<machine>"``, e.g. ``"darwin-arm64"``; default: this machine's)."""
    reasons: list[str] = []
    runner = run or _run_default

    def call(argv) -> str:
        try:
            return runner(tuple(argv))
        except (_ToolMissing, FileNotFoundError):
            raise _ToolMissing("not installed") from None

    # 1. NVML
    module = nvml
    if module is None:
        try:
            import pynvml as module  # nvidia-ml-py, an optional dependency
        except ImportError:
            module = None
            reasons.append("NVML: nvidia-ml-py not installed")
    if module is False:
        reasons.append("NVML: not tried")
    elif module is not None:
        try:
            found = from_nvml(module)
        except Exception as exc:  # pynvml.NVMLError and its subclasses; a stand-in may raise anything
            reasons.append(f"NVML: {_nvml_reason(exc)}")
        else:
            seen, note = _visible(found, ("CUDA_VISIBLE_DEVICES",))
            if seen:
                return _with_note(seen, _nvidia_note(seen, note))
            reasons.append(f"NVML: {note or 'no GPU'}")

    # 2. nvidia-smi, 3. rocm-smi (amd-smi, its successor, is not read yet: no recorded output of it was at hand):
    # (tool, argv, parser, the variables that hide devices from a process, what "none" means, a note on numbering)
    tools = (("nvidia-smi", NVIDIA_SMI_ARGV, parse_nvidia_smi_csv, ("CUDA_VISIBLE_DEVICES",),
              "no GPU with a memory total listed", None),
             ("rocm-smi", ROCM_SMI_ARGV, parse_rocm_smi, ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"),
              "no GPU with a VRAM total listed", "GPU numbers are rocm-smi's card numbers"))
    for tool, argv, parse, visible_vars, none_found, numbering in tools:
        try:
            found = parse(call(argv))
        except _ToolMissing:
            reasons.append(f"{tool}: not installed")
            continue
        except Exception as exc:
            reasons.append(f"{tool}: {_why(exc)}")
            continue
        seen, note = _visible(found, visible_vars)
        if seen:
            if numbering is None:
                return _with_note(seen, _nvidia_note(seen, note))
            return _with_note(seen, "; ".join(x for x in (note, numbering) if x))
        reasons.append(f"{tool}: {note or none_found}")

    # 4. Apple silicon
    if platform is None:
        import platform as _platform

        platform = f"{sys.platform}-{_platform.machine().lower()}"
    if not (platform.startswith("darwin") and platform.endswith(("arm64", "aarch64"))):
        reasons.append("not Apple silicon")
    else:
        try:
            memsize = int(call((*_SYSCTL, "hw.memsize")).strip())
            try:
                chip = call((*_SYSCTL, "machdep.cpu.brand_string")).strip()
            except Exception:
                chip = "Apple silicon GPU"
            try:
                limit = int(call((*_SYSCTL, "iogpu.wired_limit_mb")).strip() or 0)
            except Exception:  # the sysctl exists from macOS 14 (Sonoma) on
                limit = 0
            return [apple_unified(memsize, chip, limit or None)]
        except _ToolMissing:
            reasons.append("Apple silicon: sysctl not found")
        except Exception as exc:
            reasons.append(f"Apple silicon: {_why(exc)}")

    raise NoGPUFoundError("no GPU found: " + "; ".join(reasons),
                          hint="name a GPU instead, e.g. `--gpu RTX-4090` or `--gpu 24GiB` (`hfmem gpus` lists them)")
