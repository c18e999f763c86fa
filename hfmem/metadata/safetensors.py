"""Safetensors headers: tensor name, dtype, shape and byte offsets, read without touching the weights.

Format (https://huggingface.co/docs/safetensors/index#format): 8 bytes little-endian header length N,
then N bytes of JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``,
then the data. We check what the format promises so that a damaged or hostile file fails with a clear
message instead of a wrong count: the header fits in the file and in 100 MB (the format's own limit),
each tensor's byte span equals numel × dtype size, and the spans tile the data section without gaps or
overlaps.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SafetensorsHeaderError

# The safetensors specification caps the header at 100 MB (safetensors' Rust crate: MAX_HEADER_SIZE).
MAX_HEADER_BYTES = 100_000_000

# Bits per element for every dtype the safetensors format defines (safetensors 0.8 `Dtype`).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}

# safetensors dtype → the torch name we use when talking to people.
DTYPE_NAMES: dict[str, str] = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu", "E8M0": "float8_e8m0fnu",
    "F4": "float4_e2m1fn_x2", "F6_E2M3": "float6_e2m3", "F6_E3M2": "float6_e3m2",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool", "C64": "complex64",
}


@dataclass(frozen=True)
class TensorHeader:
    name: str
    dtype: str  # safetensors spelling, e.g. "BF16"
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass
class FileHeader:
    filename: str
    tensors: list[TensorHeader]
    metadata: dict[str, str] = field(default_factory=dict)


def _fail(filename: str, what: str) -> SafetensorsHeaderError:
    return SafetensorsHeaderError(
        f"safetensors header of {filename} {what}",
        hint="the file is damaged or not a safetensors file; re-download it or remove it from the folder",
    )


def parse_header_json(filename: str, header: bytes | dict, data_len: int | None = None) -> FileHeader:
    """Validate one file's header. ``data_len`` is the size of the data section when known (local files)."""
    if isinstance(header, (bytes, bytearray)):
        try:
            raw = json.loads(header)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _fail(filename, f"is not valid JSON ({exc.__class__.__name__}: truncated or corrupt)") from None
    else:
        raw = header
    if not isinstance(raw, dict):
        raise _fail(filename, "is not a JSON object")
    meta = raw.pop("__metadata__", None) or {}
    tensors: list[TensorHeader] = []
    for name, info in raw.items():
        try:
            dtype = info["dtype"]
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise _fail(filename, f"has a malformed entry for tensor {name!r}") from None
        if dtype not in DTYPE_BITS:
            raise _fail(filename, f"uses an unknown dtype {dtype!r} for tensor {name!r}")
        if any(d < 0 for d in shape) or begin < 0 or end < begin:
            raise _fail(filename, f"has negative sizes or offsets for tensor {name!r}")
        t = TensorHeader(name, dtype, shape, begin, end)
        expected = math.ceil(t.numel * DTYPE_BITS[dtype] / 8)
        if t.nbytes != expected:
            raise _fail(filename, f"offsets don't add up: {name!r} spans {t.nbytes} bytes, "
                                  f"{dtype}{list(shape)} needs {expected}")
        tensors.append(t)
    # The spans must tile [0, data_len) exactly: sorted, each starting where the previous ended.
    pos = 0
    for t in sorted(tensors, key=lambda t: (t.begin, t.end)):
        if t.begin != pos:
            raise _fail(filename, f"offsets don't add up: {t.name!r} starts at byte {t.begin}, expected {pos}")
        pos = t.end
    if data_len is not None and pos != data_len:
        raise _fail(filename, f"offsets don't add up: tensors cover {pos} bytes, the data section has {data_len}")
    return FileHeader(filename, tensors, {str(k): str(v) for k, v in meta.items()})


def read_local_header(path: str | os.PathLike) -> FileHeader:
    """Read and validate the header of a local .safetensors file (reads only the header bytes)."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise _fail(path.name, "is truncated (file shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", prefix)
        if n > MAX_HEADER_BYTES:
            raise _fail(path.name, f"declares {n:,} bytes, over the format's 100 MB limit")
        if 8 + n > size:
            raise _fail(path.name, f"is truncated: it declares {n:,} bytes but the file has {size - 8:,} after the prefix")
        header = fh.read(n)
    return parse_header_json(path.name, header, data_len=size - 8 - n)


def from_hub_metadata(filename: str, file_meta) -> FileHeader:
    """Convert huggingface_hub's ``SafetensorsFileMetadata`` and validate it like a local header."""
    raw = {
        name: {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": list(t.data_offsets)}
        for name, t in file_meta.tensors.items()
    }
    return parse_header_json(filename, raw)


@dataclass
class CheckpointHeaders:
    """All safetensors headers of one checkpoint (one file or the shards named by the index)."""

    files: list[FileHeader]

    def tensors(self) -> list[TensorHeader]:
        return [t for f in self.files for t in f.tensors]

    def elements_by_dtype(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors():
            out[t.dtype] = out.get(t.dtype, 0) + t.numel
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def bytes_by_dtype(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors():
            out[t.dtype] = out.get(t.dtype, 0) + t.nbytes
        return out

    @property
    def num_elements(self) -> int:
        return sum(t.numel for t in self.tensors())

    @property
    def num_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors())

    def to_dict(self) -> dict:
        return {
            "files": len(self.files),
            "tensors": sum(len(f.tensors) for f in self.files),
            "elements": self.num_elements,
            "bytes": self.num_bytes,
            "elements_by_dtype": {DTYPE_NAMES[k]: v for k, v in self.elements_by_dtype().items()},
            "bytes_by_dtype": {DTYPE_NAMES[k]: v for k, v in self.bytes_by_dtype().items()},
        }


def read_local_checkpoint(folder: str | os.PathLike) -> CheckpointHeaders | None:
    """Headers of the checkpoint in a local folder: model.safetensors, or the shards the index names,
    or else every *.safetensors file. None when the folder holds no safetensors."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if (folder / "model.safetensors").is_file():
        names = ["model.safetensors"]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise _fail(index.name, "(the shard index) is not valid JSON with a weight_map") from None
        names = sorted(set(weight_map.values()))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            return None  # a partial download: the index alone does not give shapes
    else:
        names = sorted(p.name for p in folder.glob("*.safetensors"))
    if not names:
        return None
    return CheckpointHeaders([read_local_header(folder / n) for n in names])
