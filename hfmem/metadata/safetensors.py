"""Safetensors headers: tensor name, dtype, shape and byte offsets, read without touching the weights.

Format (https://huggingface.co/docs/safetensors/index#format): 8 bytes little-endian header length N,
then N bytes of UTF-8 JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``,
then the data. We check what the format promises so that a damaged or hostile file fails with a clear
message instead of a wrong count: the header fits in the file and in 100 MB (the format's own limit),
every field has the type the format gives it (the reference reader is typed: a shape of ``[2.7]``,
``[true]`` or ``"22"`` is refused there, so it is here), each tensor's byte span equals
numel × dtype width, and the spans tile the data section without gaps or overlaps.

Every defect is a ``SafetensorsHeaderError`` whose one line names the file, the field, what was found and
what was expected; no other exception may leave this module for any content of a file.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SafetensorsHeaderError

# The safetensors specification caps the header at 100 MB (safetensors' Rust crate: MAX_HEADER_SIZE).
MAX_HEADER_BYTES = 100_000_000
# A shard index lists one line per tensor: a few MB for the largest published models.
MAX_INDEX_BYTES = 100_000_000
# The largest published checkpoints hold about 2×10^12 elements; 10^15 leaves a factor of 500 of headroom and
# refuses the absurd counts a damaged header can claim before they become absurd memory estimates.
MAX_ELEMENTS = 10**15
# Sizes and offsets are u64 in the format; a JSON integer longer than 2^64's 20 digits cannot be one.
MAX_OFFSET = 2**64 - 1
_MAX_INT_DIGITS = 20

SAFETENSORS_SINGLE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"

# Bits per element for every dtype the safetensors format defines (safetensors 0.8 `Dtype`; exactly the names it
# accepts: "E8M0" without the F8_ prefix is refused by it, and by hfmem).
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}

# safetensors dtype → the torch name we use when talking to people.
DTYPE_NAMES: dict[str, str] = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu",
    "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F4": "float4_e2m1fn_x2", "F6_E2M3": "float6_e2m3", "F6_E3M2": "float6_e3m2",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool", "C64": "complex64",
}

_DAMAGED = "the file is damaged or not a safetensors file; re-download it or remove it from the folder"
_BAD_INDEX = f"the shard index is damaged; re-download {SAFETENSORS_INDEX} or remove it from the folder"


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


# ---------------------------------------------------------------- how found values are shown
def show(value, limit: int = 40) -> str:
    """A JSON value as one short line for an error message: never a newline, never an unprintable or
    unencodable character, never thousands of digits (``str`` of a huge int is itself an error)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value.bit_length() > 66:  # |value| >= 2^(bits-1) >= 10^k: a true bound without str()
            k = math.floor((value.bit_length() - 1) * math.log10(2))
            return f"a number below -10^{k}" if value < 0 else f"a number above 10^{k}"
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        cut = value if len(value) <= limit else value[:limit] + "…"
        try:
            cut.encode("utf-8")
            printable = cut.isprintable()
        except UnicodeEncodeError:  # a lone surrogate, which Python's json lets through
            printable = False
        text = json.dumps(cut, ensure_ascii=not printable)
        return text if len(value) <= limit else f"{text} ({len(value):,} characters)"
    if isinstance(value, (list, tuple)):
        if len(value) <= 8 and not any(isinstance(v, (list, tuple, dict)) for v in value):
            return "[" + ", ".join(show(v, 16) for v in value) + "]"
        return f"a list of {len(value):,} items"
    if isinstance(value, dict):
        return f"an object with {len(value):,} keys" if value else "an empty object"
    return f"a {type(value).__name__}"


def printable_name(name: str) -> str:
    """A file name or path as it can be printed on one line (file names may hold any byte but / and NUL)."""
    return name if name.isprintable() and "\\" not in name else show(name, 80)


def _join(subject: str, what: str) -> str:
    # "… of x.safetensors is not valid JSON" reads as a sentence; a field-level finding follows a colon.
    return f"{subject} {what}" if what.startswith(("is ", "has ", "nests ", "names ")) else f"{subject}: {what}"


def _fail(filename: str, what: str) -> SafetensorsHeaderError:
    return SafetensorsHeaderError(_join(f"safetensors header of {printable_name(filename)}", what), hint=_DAMAGED)


def _index_fail(filename: str, what: str) -> SafetensorsHeaderError:
    return SafetensorsHeaderError(_join(f"shard index {printable_name(filename)}", what), hint=_BAD_INDEX)


def _path_fail(path: Path, what: str) -> SafetensorsHeaderError:
    """A checkpoint file that cannot be opened as one: named by its full path, which is what the user has."""
    return SafetensorsHeaderError(f"{printable_name(str(path))} {what}",
                                  hint="hfmem reads only regular files; replace it with the downloaded file")


# ---------------------------------------------------------------- strict JSON
class _Refused(Exception):
    """Raised inside the JSON decoder's hooks; turned into a SafetensorsHeaderError by the caller."""


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > _MAX_INT_DIGITS:
        raise _Refused(f"has a {digits:,}-digit number, expected sizes and offsets below 2^64 (20 digits)")
    return int(text)


def _parse_constant(text: str):
    raise _Refused(f"has {text}, which is not JSON (expected a number)")


def _pairs(pairs: list[tuple[str, object]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"names {show(key)} twice in one object, expected each name once")
            seen.add(key)
    return out


def strict_json(data: bytes) -> tuple[object | None, str | None]:
    """(value, None) or (None, what is wrong): UTF-8 JSON as the format's reference reader takes it — no
    NaN/Infinity, no duplicate names, no integers beyond u64 — and never a Python exception for any bytes."""
    data = bytes(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start:,}), expected UTF-8 JSON"
    try:
        return json.loads(text, parse_int=_parse_int, parse_constant=_parse_constant, object_pairs_hook=_pairs), None
    except _Refused as exc:
        return None, str(exc)
    except RecursionError:
        return None, "nests arrays or objects too deeply to be a header, expected a flat JSON object"
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON ({exc.msg} at offset {exc.pos:,}: truncated or corrupt)"
    except ValueError as exc:  # any other refusal of the decoder
        return None, f"is not valid JSON ({str(exc).splitlines()[0][:80] if str(exc) else 'corrupt'})"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a dimension


def _valid_text(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ---------------------------------------------------------------- one header
def _tensor(filename: str, name, info, data_len: int | None) -> TensorHeader:
    if not _valid_text(name):
        why = "is not valid Unicode (it holds a lone surrogate)" if isinstance(name, str) else "is not a string"
        raise _fail(filename, f"tensor name {show(name)} {why}, expected UTF-8 text")
    label = f"tensor {show(name, 60)}"
    if not isinstance(info, dict):
        raise _fail(filename, f"{label} is {show(info)}, expected an object with dtype, shape and data_offsets")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in info:
            raise _fail(filename, f"{label} has no {key!r} field, expected dtype, shape and data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise _fail(filename, f"{label} field 'dtype' is {show(dtype)}, expected a safetensors dtype "
                              f"({', '.join(sorted(DTYPE_BITS))})")
    if not isinstance(shape, (list, tuple)) or not all(_is_int(d) and 0 <= d <= MAX_ELEMENTS for d in shape):
        raise _fail(filename, f"{label} field 'shape' is {show(shape)}, expected a list of integers "
                              f"from 0 to 10^15")
    numel = 1
    if 0 not in shape:
        for d in shape:
            numel *= d
            if numel > MAX_ELEMENTS:
                raise _fail(filename, f"{label} field 'shape' is {show(shape)}: more than 10^15 elements, "
                                      "expected at most 10^15 (no real model is that large)")
    else:
        numel = 0
    if (not isinstance(offsets, (list, tuple)) or len(offsets) != 2
            or not all(_is_int(x) and 0 <= x <= MAX_OFFSET for x in offsets)):
        raise _fail(filename, f"{label} field 'data_offsets' is {show(offsets)}, expected [begin, end]: "
                              "two integers from 0 to 2^64-1")
    begin, end = offsets
    if end < begin:
        raise _fail(filename, f"{label} field 'data_offsets' is [{begin}, {end}], expected begin <= end")
    if data_len is not None and end > data_len:
        raise _fail(filename, f"{label} field 'data_offsets' is [{begin}, {end}], past the end of the data "
                              f"section ({data_len:,} bytes), expected end <= {data_len}")
    bits = numel * DTYPE_BITS[dtype]  # integers throughout: exact at any size
    if bits % 8:
        raise _fail(filename, f"{label} is {numel:,} elements of {dtype} = {bits:,} bits, expected a whole "
                              "number of bytes (sub-byte tensors must end on a byte boundary)")
    expected = bits // 8
    if end - begin != expected:
        raise _fail(filename, f"offsets don't add up: {label} spans {end - begin:,} bytes ({begin}..{end}), "
                              f"expected {expected:,} for {dtype}{list(shape)}")
    return TensorHeader(name, dtype, tuple(shape), begin, end)


def parse_header_json(filename: str, header: bytes | bytearray | dict, data_len: int | None = None) -> FileHeader:
    """Validate one file's header (its JSON bytes, or the object already decoded). ``data_len`` is the size
    of the data section when known (local files)."""
    if isinstance(header, (bytes, bytearray, memoryview)):
        raw, problem = strict_json(header)
        if problem:
            raise _fail(filename, problem)
    else:
        raw = header
    if not isinstance(raw, dict):
        raise _fail(filename, f"is {show(raw)}, expected a JSON object of tensors")
    meta = raw.get("__metadata__")
    if meta is None:
        meta = {}
    elif not isinstance(meta, dict) or not all(_valid_text(k) and _valid_text(v) for k, v in meta.items()):
        bad = next(((k, v) for k, v in meta.items() if not (_valid_text(k) and _valid_text(v))), None) \
            if isinstance(meta, dict) else None
        found = show(meta) if bad is None else f"{show(bad[1])} at {show(bad[0])}"
        raise _fail(filename, f"field '__metadata__' is {found}, expected an object of strings")
    tensors = [_tensor(filename, name, info, data_len) for name, info in raw.items() if name != "__metadata__"]
    total = sum(t.numel for t in tensors)
    if total > MAX_ELEMENTS:
        raise _fail(filename, f"its tensors hold {total:,} elements, expected at most 10^15 "
                              "(no real model is that large)")
    # The spans must tile [0, data_len) exactly: sorted, each starting where the previous ended.
    pos = 0
    for t in sorted(tensors, key=lambda t: (t.begin, t.end)):
        if t.begin != pos:
            raise _fail(filename, f"offsets don't add up: tensor {show(t.name, 60)} starts at byte {t.begin}, "
                                  f"expected {pos}")
        pos = t.end
    if data_len is not None and pos != data_len:
        raise _fail(filename, f"offsets don't add up: tensors cover {pos:,} bytes, the data section has {data_len:,}")
    return FileHeader(filename, tensors, dict(meta))


# ---------------------------------------------------------------- files
def path_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, words in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                        (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device")):
        if test(mode):
            return words
    return "not a regular file"


def open_regular(path: str | os.PathLike, fail):
    """(binary file, size) for a regular file, following symlinks; ``fail(what)`` builds the error otherwise.

    Only regular files are opened: open() on a FIFO blocks until a writer comes, forever. The stat comes
    first and the open is non-blocking, so a FIFO swapped in between is still caught (by fstat) without
    waiting."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise fail(f"cannot be opened ({exc.strerror or exc.__class__.__name__}), expected a readable file") from None
    except ValueError:  # a NUL byte in the name
        raise fail("has a NUL byte in its name, expected a file name") from None
    if not stat.S_ISREG(st.st_mode):
        raise fail(f"is {path_kind(st.st_mode)}, expected a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise fail(f"cannot be opened ({exc.strerror or exc.__class__.__name__}), expected a readable file") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise fail(f"is {path_kind(st.st_mode)}, expected a regular file")
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return fh, st.st_size


def _read(fh, n: int, fail) -> bytes:
    try:
        data = fh.read(n)
    except OSError as exc:
        raise fail(f"cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    return data


def read_local_header(path: str | os.PathLike) -> FileHeader:
    """Read and validate the header of a local .safetensors file (reads only the header bytes)."""
    path = Path(path)
    name = path.name

    def fail(what: str) -> SafetensorsHeaderError:
        return _fail(name, what)

    fh, size = open_regular(path, lambda what: _path_fail(path, what))
    with fh:
        prefix = _read(fh, 8, fail)
        if len(prefix) < 8:
            raise fail(f"is truncated: the file has {len(prefix)} bytes, expected at least the 8-byte length prefix")
        (n,) = struct.unpack("<Q", prefix)
        if n > MAX_HEADER_BYTES:
            raise fail(f"length prefix declares {n:,} bytes, over the format's 100 MB limit")
        if 8 + n > size:
            raise fail(f"is truncated: the length prefix declares {n:,} bytes but the file has {size - 8:,} "
                       "after the prefix")
        header = _read(fh, n, fail)
    if len(header) != n:
        raise fail(f"is truncated: the length prefix declares {n:,} bytes, {len(header):,} could be read")
    return parse_header_json(name, header, data_len=size - 8 - n)


def from_hub_metadata(filename: str, file_meta) -> FileHeader:
    """Convert huggingface_hub's ``SafetensorsFileMetadata`` and validate it like a local header. Values
    are passed on as they are (a string shape stays a string, to be refused, not split into digits)."""
    raw = {}
    for name, t in file_meta.tensors.items():
        shape, offsets = getattr(t, "shape", None), getattr(t, "data_offsets", None)
        raw[name] = {"dtype": getattr(t, "dtype", None),
                     "shape": list(shape) if isinstance(shape, (list, tuple)) else shape,
                     "data_offsets": list(offsets) if isinstance(offsets, (list, tuple)) else offsets}
    return parse_header_json(filename, raw)


def shard_names(filename: str, data: bytes) -> list[str]:
    """The shard files a ``model.safetensors.index.json`` names, validated: each a plain file name in the
    model folder (never a path: a name with a separator or ``..`` would be followed out of it)."""
    raw, problem = strict_json(data)
    if problem:
        raise _index_fail(filename, problem)
    if not isinstance(raw, dict):
        raise _index_fail(filename, f"is {show(raw)}, expected a JSON object with a weight_map")
    if "weight_map" not in raw:
        raise _index_fail(filename, "has no 'weight_map' field, expected an object of tensor name → shard file")
    weight_map = raw["weight_map"]
    if not isinstance(weight_map, dict) or not weight_map:
        raise _index_fail(filename, f"field 'weight_map' is {show(weight_map)}, expected an object of "
                                    "tensor name → shard file")
    names: set[str] = set()
    for tensor, shard in weight_map.items():
        if not (_valid_text(shard) and shard and shard not in (".", "..")
                and not any(c in shard for c in ("/", "\\", "\0", ":"))):
            raise _index_fail(filename, f"weight_map entry {show(tensor, 60)} names shard {show(shard, 80)}, "
                                        "expected a file name in the model folder (no '/', '\\', ':' or '..')")
        names.add(shard)
    return sorted(names)


def read_local_index(path: str | os.PathLike) -> list[str]:
    path = Path(path)

    def fail(what: str) -> SafetensorsHeaderError:
        return _index_fail(path.name, what)

    fh, size = open_regular(path, lambda what: _path_fail(path, what))
    with fh:
        if size > MAX_INDEX_BYTES:
            raise fail(f"is {size:,} bytes, expected at most 100 MB")
        data = _read(fh, MAX_INDEX_BYTES + 1, fail)
    if len(data) > MAX_INDEX_BYTES:
        raise fail(f"is over {MAX_INDEX_BYTES:,} bytes, expected at most 100 MB")
    return shard_names(path.name, data)


@dataclass
class CheckpointHeaders:
    """All safetensors headers of one checkpoint (one file or the shards named by the index)."""

    files: list[FileHeader]

    def __post_init__(self):
        total = self.num_elements
        if total > MAX_ELEMENTS:
            names = [f.filename for f in self.files]
            where = printable_name(names[0]) + (f" and {len(names) - 1} more files" if len(names) > 1 else "")
            raise SafetensorsHeaderError(
                f"safetensors headers of {where}: the checkpoint holds {total:,} elements, expected at most "
                "10^15 (no real model is that large)", hint=_DAMAGED)

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


def _exists(path: Path) -> bool:
    """Present at all, as anything: a broken link or a FIFO counts (and is refused when read)."""
    try:
        os.lstat(path)
    except (OSError, ValueError):
        return False
    return True


def read_local_checkpoint(folder: str | os.PathLike) -> CheckpointHeaders | None:
    """Headers of the checkpoint in a local folder: model.safetensors, or the shards the index names,
    or else every *.safetensors file. None when the folder holds no safetensors."""
    folder = Path(folder)
    if _exists(folder / SAFETENSORS_SINGLE):
        names = [SAFETENSORS_SINGLE]
    elif _exists(folder / SAFETENSORS_INDEX):
        names = read_local_index(folder / SAFETENSORS_INDEX)
        if not all(_exists(folder / n) for n in names):
            return None  # a partial download: the index alone does not give shapes
    else:
        try:
            names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".safetensors"))
        except OSError as exc:
            raise SafetensorsHeaderError(
                f"the folder {printable_name(str(folder))} cannot be listed "
                f"({exc.strerror or exc.__class__.__name__}), expected a readable model folder",
                hint="check the folder's permissions") from None
    if not names:
        return None
    return CheckpointHeaders([read_local_header(folder / n) for n in names])
