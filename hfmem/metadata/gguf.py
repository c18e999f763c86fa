"""GGUF headers: the metadata key/values and tensor infos of a llama.cpp model file, read without its weights.

The layout (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md, and ggml's reader
``gguf_init_from_file_impl`` in ggml/src/gguf.cpp), all little-endian:

* magic ``GGUF`` (4 bytes), version (u32), tensor count (u64), metadata key/value count (u64);
* each key/value: key (string), value type (u32), value; a string is a u64 byte length then UTF-8 bytes; an
  array is an element type (u32), a u64 count, then the elements;
* each tensor info: name (string), n_dims (u32), n_dims u64 extents in ggml order (ne0 first, the contiguous
  row length), ggml type (u32), offset (u64) relative to the data section;
* padding to ``general.alignment`` (default 32); the data section starts there.

Every count and length is checked before anything is allocated for it, against the limits ggml itself
enforces (GGML_MAX_DIMS = 4, no nested arrays, duplicate keys and tensor names refused, offsets aligned, row
length a multiple of the type's block size) and against what the file's size can hold, so that a damaged or
hostile file gives a ``GGUFHeaderError`` naming the file, never a huge allocation or a traceback.

The ``gguf`` package (llama.cpp's own Python package) supplies the tables: value types, ggml types and their
(block size, bytes per block). It is imported inside functions so that importing hfmem stays cheap.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Callable

from ..errors import GGUFHeaderError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32  # gguf.cpp GGUF_DEFAULT_ALIGNMENT
GGML_MAX_DIMS = 4  # ggml.h
MAX_TENSORS = 1_000_000
MAX_KV = 1_000_000
MAX_STRING_BYTES = 100_000_000
# No published model has an array anywhere near this (vocabularies are ~10^5..3*10^5 entries); ggml only
# checks count * element size against SIZE_MAX, hfmem also against the file's size where known.
MAX_ARRAY_LEN = 100_000_000
KEEP_ARRAY_LEN = 4096  # numeric/bool arrays up to this many elements are kept as tuples
INT64_MAX = (1 << 63) - 1

SKIP_VIEW_BYTES = 64 * 1024  # no larger than a first window, so views never force a bigger fetch
FIRST_WINDOW = 2 * 1024 * 1024  # first read: the fixed header, the metadata of most files without a vocabulary

# GGUFValueType id -> (struct code, size) for the fixed-size scalars (gguf.md "gguf_metadata_value_type")
_SCALARS = {0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4), 6: ("<f", 4),
            7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8)}
_STRING, _ARRAY, _BOOL = 8, 9, 7


@dataclass(frozen=True)
class GGUFArray:
    """An array value not kept in memory (a string array, or over ``KEEP_ARRAY_LEN`` elements)."""

    value_type: str  # GGUFValueType name, e.g. "STRING"
    length: int


@dataclass(frozen=True)
class GGUFTensor:
    name: str  # e.g. "blk.0.attn_q.weight"
    shape: tuple[int, ...]  # ggml order as in the file: shape[0] = ne0, the row length (contiguous)
    ggml_type: str  # GGMLQuantizationType name: "F32", "F16", "BF16", "Q4_K", "Q8_0", "IQ4_XS", ...
    offset: int  # inside the data section, as stored
    nbytes: int  # (n_elements // block_size) * type_size

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class GGUFHeader:
    filename: str  # the file's name, no folder
    version: int  # 2 or 3
    alignment: int  # general.alignment or 32
    metadata: dict[str, object]
    tensors: tuple[GGUFTensor, ...]
    data_offset: int  # where the data section starts (the header's end padded to the alignment)
    header_bytes: int  # == data_offset
    file_size: int | None = None

    def get(self, key: str, default=None):
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    def arch_key(self, suffix: str, default=None):
        """``{general.architecture}.{suffix}``, e.g. ``arch_key("block_count")`` → ``llama.block_count``."""
        arch = self.architecture
        return default if arch is None else self.metadata.get(f"{arch}.{suffix}", default)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def split(self) -> tuple[int, int] | None:
        """(split.no, split.count) of a part written by llama.cpp's gguf-split, else None."""
        no, count = self.metadata.get("split.no"), self.metadata.get("split.count")
        if isinstance(no, int) and isinstance(count, int) and not isinstance(no, bool):
            return no, count
        return None

    # ---- a JSON form, for the parsed-header cache
    def to_dict(self) -> dict:
        meta = {}
        for k, v in self.metadata.items():
            if isinstance(v, GGUFArray):
                meta[k] = {"array": v.value_type, "length": v.length}
            elif isinstance(v, tuple):
                meta[k] = {"values": list(v)}
            else:
                meta[k] = {"value": v}
        return {"filename": self.filename, "version": self.version, "alignment": self.alignment,
                "metadata": meta, "data_offset": self.data_offset, "header_bytes": self.header_bytes,
                "file_size": self.file_size,
                "tensors": [[t.name, list(t.shape), t.ggml_type, t.offset, t.nbytes] for t in self.tensors]}

    @classmethod
    def from_dict(cls, data: dict) -> "GGUFHeader":
        """Inverse of ``to_dict``; raises KeyError/TypeError/ValueError on another shape (a cache miss)."""
        meta: dict[str, object] = {}
        for k, v in data["metadata"].items():
            if not isinstance(k, str) or not isinstance(v, dict):
                raise ValueError("bad metadata entry")
            if "array" in v:
                meta[k] = GGUFArray(str(v["array"]), int(v["length"]))
            elif "values" in v:
                meta[k] = tuple(v["values"])
            else:
                meta[k] = v["value"]
        tensors = tuple(GGUFTensor(str(n), tuple(int(d) for d in s), str(t), int(o), int(b))
                        for n, s, t, o, b in data["tensors"])
        size = data["file_size"]
        return cls(str(data["filename"]), int(data["version"]), int(data["alignment"]), meta, tensors,
                   int(data["data_offset"]), int(data["header_bytes"]), None if size is None else int(size))


# ---------------------------------------------------------------- sizes


def type_sizes(ggml_type: str) -> tuple[int, int]:
    """(block size in elements, bytes per block) of a ggml type, from the gguf package's GGML_QUANT_SIZES."""
    import gguf

    try:
        qtype = gguf.GGMLQuantizationType[ggml_type]
        return gguf.GGML_QUANT_SIZES[qtype]
    except KeyError:
        raise ValueError(f"unknown ggml type {ggml_type!r}") from None


def tensor_nbytes(ggml_type: str, shape) -> int:
    """Exact bytes of a tensor: whole blocks of ``block_size`` elements along the row (ne0), ``type_size``
    bytes each (ggml.c ``ggml_row_size``: ``type_size * ne / block_size``). A row length that is not a
    multiple of the block size cannot be stored (gguf.cpp refuses it) and raises ValueError."""
    block, size = type_sizes(ggml_type)
    shape = tuple(int(d) for d in shape)
    ne0 = shape[0] if shape else 1
    if ne0 % block:
        raise ValueError(f"row length {ne0} is not a multiple of {ggml_type}'s block size {block}")
    n = 1
    for d in shape:
        n *= d
    return n // block * size


# ---------------------------------------------------------------- reading in windows


class WindowReader:
    """Serves ``read(offset, n)`` from windows fetched by ``fetch(offset, n)`` (fewer bytes only at EOF): the
    first ``FIRST_WINDOW`` bytes, then windows of twice the previous size, so a 10 MB header costs 3 fetches
    and nothing past the header's end but the rest of the last window is read. Reads are expected in
    increasing order (the parser is sequential); bytes before the current read are dropped as it goes."""

    def __init__(self, fetch: Callable[[int, int], bytes], first_window: int = FIRST_WINDOW):
        self._fetch = fetch
        self._window = first_window
        self._base = 0  # file offset of _buf[0]
        self._buf = b""
        self._eof = False
        self.fetches = 0
        self.bytes_fetched = 0

    def read(self, offset: int, n: int) -> bytes:
        end = offset + n
        if offset < self._base:  # not expected from the sequential parser: refetch from there
            self._base, self._buf, self._eof = offset, b"", False
        while self._base + len(self._buf) < end and not self._eof:
            start = self._base + len(self._buf)
            want = max(self._window, end - start)
            chunk = self._fetch(start, want)
            self.fetches += 1
            self.bytes_fetched += len(chunk)
            self._window *= 2
            if len(chunk) < want:
                self._eof = True
            # keep only from ``offset`` on: what was read before is not needed again
            keep_from = max(0, offset - self._base)
            self._buf = self._buf[keep_from:] + chunk
            self._base += keep_from
        lo = offset - self._base
        return self._buf[lo:lo + n]


def read_local_header(path) -> GGUFHeader:
    """The header of a GGUF file on disk, read in windows (never its tensor data beyond one window)."""
    path = os.fspath(path)
    name = os.path.basename(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise GGUFHeaderError(f"GGUF file {name} cannot be read ({exc.strerror or exc.__class__.__name__})",
                              hint="check the path and its permissions") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size

        def fetch(offset: int, n: int) -> bytes:
            fh.seek(offset)
            return fh.read(n)

        return parse_header(WindowReader(fetch).read, name, size)


# ---------------------------------------------------------------- the parser


class _Cursor:
    def __init__(self, read: Callable[[int, int], bytes], filename: str, file_size: int | None):
        self.read, self.filename, self.file_size = read, filename, file_size
        self.pos = 0

    def bad(self, what: str) -> GGUFHeaderError:
        return GGUFHeaderError(f"GGUF header of {self.filename} is damaged: {what}",
                               hint="the file is truncated, damaged or not GGUF; download it again")

    def take(self, n: int, what: str) -> bytes:
        if self.file_size is not None and self.pos + n > self.file_size:
            raise self.bad(f"{what} at byte {self.pos:,} needs {n:,} bytes but the file has {self.file_size:,}")
        data = self.read(self.pos, n)
        if len(data) < n:
            raise self.bad(f"the file ends at byte {self.pos + len(data):,}, inside {what}")
        self.pos += n
        return data

    def unpack(self, fmt: str, size: int, what: str):
        return struct.unpack(fmt, self.take(size, what))[0]

    def u32(self, what: str) -> int:
        return self.unpack("<I", 4, what)

    def u64(self, what: str) -> int:
        return self.unpack("<Q", 8, what)

    def string_length(self, what: str) -> int:
        n = self.u64(f"the length of {what}")
        if n > MAX_STRING_BYTES:
            raise self.bad(f"{what} declares {n:,} bytes, over hfmem's {MAX_STRING_BYTES // 1_000_000} MB limit")
        return n

    def string(self, what: str) -> str:
        raw = self.take(self.string_length(what), what)
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int, key: str) -> None:
        """Step over ``count`` strings, walking 64 KiB views with ``unpack_from`` rather than one read per
        string (a merges array has ~3*10^5 of them); a string that straddles the view is taken alone."""
        i = 0
        while i < count:
            view = self.read(self.pos, SKIP_VIEW_BYTES)
            p, end = 0, len(view)
            if self.file_size is not None:
                end = min(end, self.file_size - self.pos)
            while i < count and p + 8 <= end:
                (n,) = struct.unpack_from("<Q", view, p)
                if n > MAX_STRING_BYTES or p + 8 + n > end:
                    break
                p += 8 + n
                i += 1
            if p:
                self.pos += p
            else:  # too long for the view, oversized or cut off: the checked path says which
                n = self.string_length(f"string {i} of array {key!r}")
                self.take(n, f"string {i} of array {key!r}")
                i += 1

    def room(self) -> int | None:
        return None if self.file_size is None else self.file_size - self.pos


def _type_name(value_type: int) -> str:
    import gguf

    return gguf.GGUFValueType(value_type).name


def _read_value(cur: _Cursor, vtype: int, key: str):
    if vtype in _SCALARS:
        fmt, size = _SCALARS[vtype]
        value = cur.unpack(fmt, size, f"the value of {key!r}")
        return bool(value) if vtype == _BOOL else value
    if vtype == _STRING:
        return cur.string(f"the string value of {key!r}")
    if vtype == _ARRAY:
        etype = cur.u32(f"the element type of array {key!r}")
        count = cur.u64(f"the length of array {key!r}")
        if etype == _ARRAY:  # gguf.cpp refuses nested arrays too
            raise cur.bad(f"array {key!r} holds arrays, which GGUF readers (ggml's gguf.cpp) do not accept")
        if etype != _STRING and etype not in _SCALARS:
            raise cur.bad(f"array {key!r} has an unknown element type {etype}")
        if count > MAX_ARRAY_LEN:
            raise cur.bad(f"array {key!r} declares {count:,} elements, over hfmem's limit of {MAX_ARRAY_LEN:,}")
        min_size = 8 if etype == _STRING else _SCALARS[etype][1]
        room = cur.room()
        if room is not None and count * min_size > room:
            raise cur.bad(f"array {key!r} declares {count:,} elements, more than the {room:,} bytes left in "
                          "the file can hold")
        if etype == _STRING:  # skipped without keeping the strings (a vocabulary has 10^5 of them)
            cur.skip_strings(count, key)
            return GGUFArray("STRING", count)
        fmt, size = _SCALARS[etype]
        raw = cur.take(count * size, f"array {key!r}")
        if count > KEEP_ARRAY_LEN:
            return GGUFArray(_type_name(etype), count)
        values = struct.unpack(f"<{count}{fmt[1]}", raw)
        return tuple(bool(v) for v in values) if etype == _BOOL else values
    raise cur.bad(f"key {key!r} has an unknown value type {vtype}")


def parse_header(read: Callable[[int, int], bytes], filename: str, file_size: int | None = None) -> GGUFHeader:
    """Parse a GGUF header from ``read(offset, n)`` (up to n bytes at offset, fewer only at EOF), sequentially.
    ``file_size``, when known, bounds every count and is checked against the tensors' data."""
    import gguf

    cur = _Cursor(read, filename, file_size)
    magic = cur.read(0, 4)
    if magic != GGUF_MAGIC:
        if len(magic) < 4:
            raise cur.bad(f"the file has {len(magic)} bytes, fewer than the 4-byte magic")
        raise GGUFHeaderError(f"{filename} is not a GGUF file (it starts with {magic!r}, not b'GGUF')",
                              hint="give a .gguf file written by llama.cpp's converter or gguf-py")
    cur.pos = 4
    version = cur.u32("the version")
    if version == 1:
        raise GGUFHeaderError(f"{filename} is GGUF version 1, which llama.cpp no longer reads (its counts were "
                              "32-bit)", hint="convert the model again with a current llama.cpp")
    if version not in (2, 3):
        swapped = struct.unpack(">I", struct.pack("<I", version))[0]
        if swapped in (1, 2, 3):
            raise GGUFHeaderError(f"{filename} is a big-endian GGUF file (version {swapped})",
                                  hint="hfmem reads little-endian GGUF files, as llama.cpp writes them by default")
        raise GGUFHeaderError(f"{filename} has GGUF version {version}; hfmem reads versions 2 and 3",
                              hint="the file is damaged, or newer than this hfmem")
    n_tensors = cur.u64("the tensor count")
    n_kv = cur.u64("the metadata count")
    if n_tensors > MAX_TENSORS:
        raise cur.bad(f"it declares {n_tensors:,} tensors (hfmem's limit: {MAX_TENSORS:,})")
    if n_kv > MAX_KV:
        raise cur.bad(f"it declares {n_kv:,} metadata entries (hfmem's limit: {MAX_KV:,})")
    room = cur.room()
    # smallest key/value: 8-byte key length + type + 1-byte value; smallest tensor info: 8 (name length) + 4
    # (n_dims) + 4 (type) + 8 (offset)
    if room is not None and n_kv * 13 + n_tensors * 24 > room:
        raise cur.bad(f"it declares {n_kv:,} metadata entries and {n_tensors:,} tensors, more than its "
                      f"{file_size:,} bytes can hold")

    metadata: dict[str, object] = {}
    for i in range(n_kv):
        key = cur.string(f"metadata key {i}")
        if key in metadata:
            raise cur.bad(f"metadata key {key!r} appears twice")
        vtype = cur.u32(f"the value type of {key!r}")
        metadata[key] = _read_value(cur, vtype, key)

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if (not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0
            or alignment & (alignment - 1)):
        raise cur.bad(f"general.alignment is {alignment!r}, not a power of two")

    tensors: list[GGUFTensor] = []
    names: set[str] = set()
    for i in range(n_tensors):
        name = cur.string(f"the name of tensor {i}")
        if name in names:
            raise cur.bad(f"tensor {name!r} appears twice")
        names.add(name)
        n_dims = cur.u32(f"the dimension count of {name!r}")
        if n_dims > GGML_MAX_DIMS:
            raise cur.bad(f"tensor {name!r} has {n_dims} dimensions; ggml allows at most {GGML_MAX_DIMS}")
        shape = tuple(cur.u64(f"dimension {d} of {name!r}") for d in range(n_dims))
        n = 1
        for d in shape:
            n *= d
            if d > INT64_MAX or n > INT64_MAX:
                raise cur.bad(f"tensor {name!r} has shape {list(shape)}, over ggml's 2^63 element limit")
        type_id = cur.u32(f"the type of {name!r}")
        try:
            qtype = gguf.GGMLQuantizationType(type_id)
            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise cur.bad(f"tensor {name!r} has ggml type {type_id}, which ggml does not define "
                          "(or no longer supports)") from None
        ne0 = shape[0] if shape else 1
        if ne0 % block:
            raise cur.bad(f"tensor {name!r} ({qtype.name}) has rows of {ne0} elements, not a multiple of its "
                          f"block size {block}")
        offset = cur.u64(f"the offset of {name!r}")
        if offset % alignment:
            raise cur.bad(f"tensor {name!r} starts at data offset {offset:,}, not a multiple of the "
                          f"alignment {alignment}")
        tensors.append(GGUFTensor(name, shape, qtype.name, offset, n // block * type_size))

    data_offset = -(-cur.pos // alignment) * alignment
    if file_size is not None:
        if data_offset > file_size and tensors:
            raise cur.bad(f"its header ends at byte {data_offset:,}, past the file's end ({file_size:,})")
        for t in tensors:
            end = data_offset + t.offset + t.nbytes
            if end > file_size:
                raise cur.bad(f"tensor {t.name!r} ({t.nbytes:,} bytes at data offset {t.offset:,}) ends at "
                              f"byte {end:,}, past the file's end ({file_size:,}); the file is truncated")
    return GGUFHeader(filename, version, alignment, metadata, tuple(tensors), data_offset, data_offset, file_size)
