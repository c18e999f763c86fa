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
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from importlib import resources

from hfmem.errors import UsageError
from hfmem.units import SIZE_UNITS, format_binary, parse_size

__all__ = ["GPU", "UnknownGPUError", "catalog", "parse_gpu", "SIZE_UNITS"]

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
    memory_basis: str | None = None  # "nvidia-smi", "marketed", "observed-rounded", "user"
    cuda_total_bytes: int | None = None  # what CUDA reports as total capacity, where a source shows it
    cuda_total_source: str | None = None
    cuda_total_note: str = ""

    @property
    def anonymous(self) -> bool:
        return self.memory_basis == "user"

    @property
    def usable_bytes(self) -> int:
        """The per-GPU memory fit judgements use: the CUDA-reported total when known, else ``memory_bytes``."""
        return int(self.cuda_total_bytes) if self.cuda_total_bytes else int(self.memory_bytes)

    @property
    def capacity_basis(self) -> str:
        """Which number ``usable_bytes`` is: "cuda-total", or ``memory_basis`` ("nvidia-smi", "marketed", ...)."""
        return "cuda-total" if self.cuda_total_bytes else (self.memory_basis or "unknown")

    def capacity_note(self) -> str:
        """One sentence for assumptions/footnotes: which capacity the fit was judged on."""
        cap = format_binary(self.usable_bytes)
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
    """A catalog GPU by name/alias, or an anonymous GPU of the given size (see module docstring)."""
    if not spec or not spec.strip():
        raise UsageError("--gpu needs a value", hint="a catalog name such as H100-80GB (see `hfmem gpus`) or a size such as 24GiB")
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
