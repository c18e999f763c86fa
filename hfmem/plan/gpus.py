"""GPU catalog and ``--gpu`` parsing.

Facts live in ``gpus.json`` next to this module (read lazily, once); each entry cites its sources and says
whether ``memory_bytes`` is the driver-reported total (nvidia-smi MiB x 2**20) or the marketed size.
``cuda_total_bytes`` is the total CUDA reports to a process (``torch.cuda.get_device_properties(0).total_memory``,
the "total capacity" in a PyTorch out-of-memory message), a little less than nvidia-smi's total, where a cited
public source shows it. ``GPU.usable_bytes`` is what fit judgements compare against: the CUDA total when known,
else ``memory_bytes``.

``parse_gpu`` accepts a catalog name or alias (case-insensitive; ``-``, ``_``, spaces and dots ignored, so
``rtx4090`` == ``RTX-4090``) or a size with an explicit unit:

* ``KB``/``MB``/``GB``/``TB``: decimal SI (10**3 ... 10**12), as disk and GPU marketing use them;
* ``KiB``/``MiB``/``GiB``/``TiB``: binary IEC (2**10 ... 2**40), as nvidia-smi's "MiB" and hfmem's output use;
* a bare ``G``/``M``/``T`` or a bare number is ambiguous (is ``80G`` 80e9 or 80 * 2**30?) and is refused.

Unit letters are matched case-insensitively (``24gib`` == ``24GiB``).

``auto`` (any case) means this machine's GPUs (``hfmem.sources.devices.detect``: NVML, nvidia-smi, rocm-smi or
Apple silicon), detected once per process. ``parse_gpus(spec, count)`` returns a ``GPUChoice``: for ``auto`` the
``count`` devices with the most free memory, each a GPU named "NVIDIA GeForce RTX 4090 (GPU 0)" whose
``usable_bytes`` is its free memory (else the catalog's CUDA total for its model, else its total), and as the
even-split budget the smallest of them; ``parse_gpu("auto")`` is ``parse_gpus("auto", 1).gpu``.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import lru_cache
from importlib import resources

from hfmem.errors import UsageError
from hfmem.units import SIZE_UNITS, format_binary, parse_size

__all__ = ["GPU", "GPUChoice", "UnknownGPUError", "catalog", "catalog_match", "detected_devices", "detected_gpu",
           "parse_gpu", "parse_gpus", "SIZE_UNITS"]

_UNIT_LABEL = {"b": "B", "kb": "KB", "mb": "MB", "gb": "GB", "tb": "TB",
               "kib": "KiB", "mib": "MiB", "gib": "GiB", "tib": "TiB"}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


class UnknownGPUError(UsageError):
    """``--gpu`` named no catalog GPU and is not a size; the message suggests the closest names."""

    def __init__(self, message: str, *, suggestions: list[str] | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.suggestions = list(suggestions or [])


@dataclass(frozen=True)
class GPU:
    name: str
    memory_bytes: int
    bf16: bool | None = None
    fp8: bool | None = None
    bandwidth: float | None = None  # GB/s (decimal), vendor datasheet
    vendor: str | None = None
    aliases: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    notes: str = ""
    memory_marketed: str | None = None
    memory_basis: str | None = None  # "nvidia-smi", "marketed", "observed-rounded", "user", "detected"
    cuda_total_bytes: int | None = None  # what CUDA reports as total capacity, where a source shows it
    cuda_total_source: str | None = None
    cuda_total_note: str = ""
    # A GPU of this machine (``detected_gpu``, ``--gpu auto``): free memory as the tool reported it (None where
    # it does not say), its index, the tool, and the catalog entry its name matched (None: unknown model).
    free_bytes: int | None = None
    device_index: int | None = None
    device_name: str | None = None
    device_source: str | None = None
    catalog_name: str | None = None

    @property
    def detected(self) -> bool:
        return self.memory_basis == "detected"

    @property
    def anonymous(self) -> bool:
        return self.memory_basis == "user"

    @property
    def usable_bytes(self) -> int:
        """The per-GPU memory fit judgements use: the CUDA-reported total when known, else ``memory_bytes``.
        A detected GPU: its free memory when the tool reports it (what a new process can get now; hfmem's
        estimates add the CUDA context themselves), else the catalog's CUDA total for its model, else its total."""
        if self.detected and self.free_bytes is not None:
            return int(self.free_bytes)
        return int(self.cuda_total_bytes) if self.cuda_total_bytes else int(self.memory_bytes)

    @property
    def capacity_basis(self) -> str:
        """Which number ``usable_bytes`` is: "cuda-total", or ``memory_basis`` ("nvidia-smi", "marketed", ...);
        for a detected GPU "detected-free", "cuda-total" or "detected-total"."""
        if self.detected:
            if self.free_bytes is not None:
                return "detected-free"
            return "cuda-total" if self.cuda_total_bytes else "detected-total"
        return "cuda-total" if self.cuda_total_bytes else (self.memory_basis or "unknown")

    def capacity_note(self) -> str:
        """One sentence for assumptions/footnotes: which capacity the fit was judged on."""
        cap = format_binary(self.usable_bytes)
        if self.detected:
            where = f"GPU {self.device_index}, {self.device_name}, detected by {self.device_source}"
            if self.free_bytes is not None:
                return (f"fits judged on {cap} free of {format_binary(self.memory_bytes)} on {where} (what a new "
                        "process can get now; memory other processes hold is not counted)")
            if self.cuda_total_bytes:
                return (f"fits judged on {cap} on {where}: {self.device_source} gave no free memory, so the total "
                        f"CUDA reports on a {self.catalog_name} (catalog) is used; memory other processes hold is "
                        "not counted")
            return (f"fits judged on {cap} on {where}, its total: {self.device_source} gave no free memory"
                    + (f" ({self.notes})" if self.notes else ""))
        if self.anonymous:
            return (f"fits judged on {cap} per GPU, the size given with --gpu, taken as what a process can get "
                    "(CUDA reports a little less than nvidia-smi's total: torch.cuda.get_device_properties(0)"
                    ".total_memory shows it)")
        if self.cuda_total_bytes:
            return (f"fits judged on {cap} per GPU, the total CUDA reports on {self.name} (the total capacity in "
                    f"a PyTorch out-of-memory message), not the marketed {self.memory_marketed or format_binary(self.memory_bytes)}; "
                    "source: `hfmem gpus --format json`")
        what = {"nvidia-smi": "the total nvidia-smi reports", "marketed": "the marketed size",
                "observed-rounded": "a rounded observed total"}.get(self.memory_basis or "", "the catalog size")
        return (f"fits judged on {cap} per GPU, {what} for {self.name}: the total CUDA reports on it is not "
                "known, and a process usually gets a few hundred MiB less")


def _key(text: str) -> str:
    return re.sub(r"[\s_.\-]+", "", text.strip().lower())


def catalog() -> list[GPU]:
    """The packaged catalog, in file order (a fresh list; the GPUs are frozen)."""
    return list(_load())


@lru_cache(maxsize=1)
def _load() -> tuple[GPU, ...]:
    raw = json.loads(resources.files("hfmem.plan").joinpath("gpus.json").read_text(encoding="utf-8"))
    out = []
    for e in raw["gpus"]:
        out.append(GPU(
            name=e["name"], memory_bytes=int(e["memory_bytes"]), bf16=e.get("bf16"), fp8=e.get("fp8"),
            bandwidth=e.get("memory_bandwidth_gbps"), vendor=e.get("vendor"),
            aliases=tuple(e.get("aliases", ())), sources=tuple(e.get("sources", ())), notes=e.get("notes", ""),
            memory_marketed=e.get("memory_marketed"), memory_basis=e.get("memory_basis"),
            cuda_total_bytes=None if e.get("cuda_total_bytes") is None else int(e["cuda_total_bytes"]),
            cuda_total_source=e.get("cuda_total_source"), cuda_total_note=e.get("cuda_total_note", ""),
        ))
    return tuple(out)


@lru_cache(maxsize=1)
def _index() -> dict[str, GPU]:
    idx: dict[str, GPU] = {}
    for gpu in _load():
        for label in (gpu.name, *gpu.aliases):
            k = _key(label)
            if k in idx and idx[k] is not gpu:
                raise RuntimeError(f"gpus.json: alias {label!r} names both {idx[k].name} and {gpu.name}")
            idx[k] = gpu
    return idx


def _suggest(spec: str, n: int = 3) -> list[str]:
    idx = _index()
    names: list[str] = []
    for k in difflib.get_close_matches(_key(spec), list(idx), n=n * 3, cutoff=0.6):
        if idx[k].name not in names:
            names.append(idx[k].name)
    return names[:n]


def _parse_size(spec: str) -> GPU | None:
    try:
        value = parse_size(spec)
    except ValueError as exc:
        raise UsageError(f"--gpu {spec!r}: {exc}") from None
    if value is None:
        return None
    if value <= 0:
        raise UsageError(f"--gpu {spec!r}: a GPU needs more than 0 bytes of memory")
    m = _SIZE_RE.match(spec)
    label = f"{Decimal(m.group(1)).normalize():f} {_UNIT_LABEL[m.group(2).lower()]} GPU"
    return GPU(name=label, memory_bytes=int(value), memory_marketed=spec.strip(), memory_basis="user",
               notes="size given on the command line; bf16/fp16/fp8 support unknown")


def parse_gpu(spec: str) -> GPU:
    """A catalog GPU by name/alias, an anonymous GPU of the given size (see module docstring), or with
    ``auto`` the GPU of this machine with the most free memory (``parse_gpus("auto", 1).gpu``)."""
    if not spec or not spec.strip():
        raise UsageError("--gpu needs a value", hint="a catalog name such as H100-80GB (see `hfmem gpus`) or a size such as 24GiB")
    if _is_auto(spec):
        return parse_gpus(spec, 1).gpu
    gpu = _index().get(_key(spec))
    if gpu is not None:
        return gpu
    sized = _parse_size(spec)
    if sized is not None:
        return sized
    close = _suggest(spec)
    did_you_mean = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownGPUError(
        f"unknown GPU {spec.strip()!r}{did_you_mean}",
        suggestions=close,
        hint="`hfmem gpus` lists the catalog; or give a size such as 24GiB or 80GB",
    )


# ------------------------------------------------------------------------------------ detected GPUs (--gpu auto)

_VENDOR = {"nvidia": "NVIDIA", "amd": "AMD", "apple": "Apple"}
# A model token: RTX 4090, A100, H100, L40S, V100, B200, MI300X. Variant words that make a different product
# with the same digits (RTX 3090 Ti, RTX 4090 Laptop GPU, RTX 4080 SUPER, RTX 4090 D) must match too.
_MODEL_RE = re.compile(r"(?<![a-z0-9])(rtx\s?-?\d{4}|mi\d{3}[a-z]?|[abhlv]\d{2,3}[a-z]?)(?![a-z0-9])")
_VARIANTS = {"ti", "super", "laptop", "mobile", "maxq", "d", "nvl"}
_MEMORY_TOLERANCE = 0.10  # a detected total within 10% of the catalog's size (reserved/ECC memory differs)


def _model_token(text: str) -> str | None:
    m = _MODEL_RE.search(text.lower().replace("_", " "))
    return re.sub(r"[\s-]", "", m.group(1)) if m else None


def _words(text: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", text.lower().replace("max-q", "maxq"))) - {""}


def _memory_agrees(gpu: GPU, total_bytes: int | None) -> bool:
    if not total_bytes:
        return True
    sizes = [s for s in (gpu.memory_bytes, gpu.cuda_total_bytes) if s]
    return any(abs(total_bytes - s) <= _MEMORY_TOLERANCE * s for s in sizes)


def catalog_match(name: str, total_bytes: int | None = None) -> GPU | None:
    """The catalog entry a tool-reported GPU name is ("NVIDIA GeForce RTX 4090" -> RTX-4090, "NVIDIA H100 80GB
    HBM3" -> H100-80GB, "NVIDIA A100-SXM4-40GB" -> A100-40GB), or None. With ``total_bytes`` the entry's size
    must agree within 10%, which tells A100-40GB from A100-80GB and keeps a 16 GB "RTX 4090 Laptop GPU" off
    the 24 GB RTX-4090."""
    idx = _index()
    words = _words(name)
    stripped = re.sub(r"^(nvidia|amd|tesla|geforce|instinct|radeon|\s)+", "", name.strip(), flags=re.IGNORECASE)
    for label in (name, stripped):
        gpu = idx.get(_key(label))
        if gpu is not None and _memory_agrees(gpu, total_bytes):
            return gpu
    token = _model_token(name)
    if token is None:
        return None
    candidates = []
    for gpu in _load():
        labels = (gpu.name, *gpu.aliases)
        if token not in {_model_token(lb) for lb in labels}:
            continue
        entry_words = set().union(*(_words(lb) for lb in labels))
        if (words & _VARIANTS) - entry_words:
            continue  # "RTX 3090 Ti" is not the RTX-3090
        if _memory_agrees(gpu, total_bytes):
            candidates.append(gpu)
    if len(candidates) > 1:  # H100-80GB (SXM) or H100-PCIe: the name says PCIe or it is not
        pcie = "pcie" in words
        same = [g for g in candidates if any("pcie" in _words(lb) for lb in (g.name, *g.aliases)) == pcie]
        candidates = same or candidates
    if len(candidates) > 1 and total_bytes:
        candidates.sort(key=lambda g: abs(g.memory_bytes - total_bytes))
    return candidates[0] if candidates else None


def detected_gpu(device) -> GPU:
    """A ``hfmem.sources.devices.Device`` as a GPU: named "NVIDIA GeForce RTX 4090 (GPU 0)", memory the detected
    total, bf16/fp8/bandwidth/aliases (and the CUDA total, used only when no free memory was reported) from the
    catalog entry its name matches, unknown otherwise."""
    entry = None if device.unified else catalog_match(device.name, device.total_bytes)
    return GPU(
        name=f"{device.name} (GPU {device.index})", memory_bytes=int(device.total_bytes),
        bf16=entry.bf16 if entry else None, fp8=entry.fp8 if entry else None,
        bandwidth=entry.bandwidth if entry else None, vendor=_VENDOR.get(device.vendor, device.vendor),
        aliases=entry.aliases if entry else (), sources=(f"detected by {device.source}",),
        notes=device.note, memory_marketed=entry.memory_marketed if entry else None, memory_basis="detected",
        cuda_total_bytes=entry.cuda_total_bytes if entry else None,
        cuda_total_source=entry.cuda_total_source if entry else None,
        free_bytes=None if device.free_bytes is None else int(device.free_bytes), device_index=int(device.index),
        device_name=device.name, device_source=device.source, catalog_name=entry.name if entry else None,
    )


@dataclass(frozen=True)
class GPUChoice:
    gpu: GPU                 # the per-device budget an even split (tensor/data parallel, FSDP) works within:
    #                          the smallest usable of the chosen devices
    count: int
    devices: tuple[GPU, ...]  # each chosen device, for engines that split unevenly (llama.cpp splits by free memory)
    notes: tuple[str, ...] = ()  # e.g. "mixed devices: an even split is bounded by the smallest, GPU 1 ..."


def _is_auto(spec: str) -> bool:
    return spec.strip().lower() == "auto"


_DETECTED: list = []  # [devices] or [exception]: detection runs once per process


def detected_devices(detect=None) -> list:
    """This machine's devices (``hfmem.sources.devices.detect``), detected once per process and remembered,
    a failure (``NoGPUFoundError``) included. ``detect`` (a callable returning devices) bypasses the memory."""
    if detect is not None:
        return list(detect())
    if not _DETECTED:
        from hfmem.sources.devices import detect as _detect

        try:
            _DETECTED.append(list(_detect()))
        except Exception as exc:  # NoGPUFoundError; remembered so that a second --gpu auto does not probe again
            _DETECTED.append(exc)
    got = _DETECTED[0]
    if isinstance(got, Exception):
        raise got
    return list(got)


def _all_true(flags) -> bool | None:
    flags = list(flags)
    if any(f is False for f in flags):
        return False
    return None if any(f is None for f in flags) else True


def parse_gpus(spec: str, count: int = 1, *, detect=None) -> GPUChoice:
    """``count`` GPUs as ``--gpu SPEC --gpus COUNT`` names them: ``count`` copies of a catalog GPU or size, or
    with ``auto`` the ``count`` detected devices with the most usable (free) memory. ``detect``: a callable
    returning ``Device``s, for tests; default the once-per-process detection."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UsageError(f"--gpus {count!r}: the number of GPUs must be a whole number of at least 1")
    if not spec or not _is_auto(spec):
        gpu = parse_gpu(spec)
        return GPUChoice(gpu=gpu, count=count, devices=(gpu,) * count)
    gpus = [detected_gpu(d) for d in detected_devices(detect)]
    listing = ", ".join(f"GPU {g.device_index} {g.device_name} ({format_binary(g.usable_bytes)})" for g in gpus)
    if count > len(gpus):
        raise UsageError(f"--gpu auto --gpus {count}: {len(gpus)} GPU{'s' if len(gpus) != 1 else ''} found on this "
                         f"machine: {listing}",
                         hint=f"ask for at most {len(gpus)}, or name the GPUs: `--gpu RTX-4090 --gpus {count}`")
    ranked = sorted(gpus, key=lambda g: (-g.usable_bytes, g.device_index))[:count]
    chosen = tuple(sorted(ranked, key=lambda g: g.device_index))
    smallest = min(chosen, key=lambda g: (g.usable_bytes, g.device_index))
    budget = replace(smallest, bf16=_all_true(g.bf16 for g in chosen), fp8=_all_true(g.fp8 for g in chosen))
    notes: list[str] = []
    if len(gpus) > count:
        notes.append(f"{count} of the {len(gpus)} GPUs found, those with the most free memory: "
                     + ", ".join(f"GPU {g.device_index}" for g in chosen) + f" (found: {listing})")
    if len({g.device_name for g in chosen}) > 1 or len({g.usable_bytes for g in chosen}) > 1:
        each = ", ".join(f"GPU {g.device_index} {g.device_name} {format_binary(g.usable_bytes)}" for g in chosen)
        notes.append(f"mixed devices: an even split (tensor/data parallel, FSDP) is bounded by the smallest, "
                     f"GPU {smallest.device_index} with {format_binary(smallest.usable_bytes)}; an engine that "
                     f"splits by free memory (llama.cpp) can use each: {each}")
    for g in chosen:
        if g.notes and g.notes not in notes:
            notes.append(g.notes)
    return GPUChoice(gpu=budget, count=count, devices=chosen, notes=tuple(notes))
