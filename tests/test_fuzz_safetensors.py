"""Fuzz tests of the safetensors readers: header JSON, raw header bytes, shard indexes, local folders.

The contract under test: for any input, either a result that agrees with the safetensors format as this
file computes it (its own dtype-width table, transcribed from the spec; element counts as products of the
shapes; byte spans tiling the data section), or a ``SafetensorsHeaderError`` whose message is one
printable line naming the file. Nothing else may escape. Files that hfmem accepts are also opened with
the real ``safetensors`` library, which must accept them and report the same dtypes and shapes.

Example counts come from the hypothesis profile in tests/conftest.py ("ci" by default, "fuzz" for the
dedicated run), so no test here sets its own.
"""

from __future__ import annotations

import json
import math
import struct
from types import SimpleNamespace

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import event, given, strategies as st  # noqa: E402

from hfmem.errors import SafetensorsHeaderError  # noqa: E402
from hfmem.inventory.headers import census_from_headers, inventory_from_headers  # noqa: E402
from hfmem.metadata.safetensors import (  # noqa: E402
    CheckpointHeaders,
    from_hub_metadata,
    parse_header_json,
    read_local_checkpoint,
    read_local_header,
)

# Bits per element of each dtype the safetensors format defines (the safetensors crate's `Dtype`, 0.8):
# transcribed here, not imported, so that the test is a second opinion on hfmem's table.
SPEC_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}
# The bound the brief sets: no real checkpoint holds more elements than this, in one tensor or in all.
BOUND = 10**15


def assert_clean_error(exc: SafetensorsHeaderError, *names: str) -> None:
    event("refused")  # --hypothesis-show-statistics: how many examples took each branch
    msg = str(exc)
    assert exc.exit_code == 7
    assert len(msg.splitlines()) == 1 and "\n" not in msg and "\r" not in msg, msg
    assert msg.isprintable(), msg
    msg.encode("utf-8")  # no lone surrogate that stderr could not print
    assert any(n in msg for n in names), (names, msg)


def spec_ok(raw, data_len: int | None = None) -> bool:
    """Whether ``raw`` (a decoded header) is one the format allows and the brief's bound keeps, judged by
    the spec's rules written out here independently of hfmem; ``data_len``: the data section's size."""
    if not isinstance(raw, dict):
        return False
    meta = raw.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        return False
    spans, total = [], 0
    for name, info in raw.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            return False
        dtype, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in SPEC_BITS:
            return False
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            return False
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(x) is int for x in offs)):
            return False
        n = math.prod(shape)
        if n > BOUND or any(d > BOUND for d in shape):
            return False
        total += n
        bits = n * SPEC_BITS[dtype]
        if bits % 8 or offs[0] < 0 or offs[1] - offs[0] != bits // 8:
            return False
        spans.append((offs[0], offs[1]))
    pos = 0
    for b, e in sorted(spans):
        if b != pos:
            return False
        pos = e
    return total <= BOUND and (data_len is None or pos == data_len)


def check_against_input(fh, raw: dict) -> None:
    """A header hfmem accepted: every number agrees with the input, computed here."""
    event("accepted")
    expect = {k: v for k, v in raw.items() if k != "__metadata__"}
    assert {t.name for t in fh.tensors} == set(expect)
    for t in fh.tensors:
        info = expect[t.name]
        assert t.dtype == info["dtype"] and list(t.shape) == list(info["shape"])
        assert t.numel == math.prod(info["shape"])
        assert t.nbytes * 8 == t.numel * SPEC_BITS[t.dtype]
        assert (t.begin, t.end) == tuple(info["data_offsets"])


# ---------------------------------------------------------------- strategies
names = st.text(min_size=1, max_size=24).filter(lambda s: s != "__metadata__")
json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=5)
                           | st.dictionaries(st.text(max_size=8), kids, max_size=5), max_leaves=25)


@st.composite
def valid_headers(draw, big: bool = False):
    """A header the format allows: random names, spec dtypes, shapes (sub-byte dtypes padded to whole
    bytes) and offsets that tile the data section. With ``big``, dimensions up to 10^8, so that counts
    cross the 10^15 bound."""
    keys = draw(st.lists(names, max_size=6, unique=True))
    header, offset = {}, 0
    for name in keys:
        dtype = draw(st.sampled_from(sorted(SPEC_BITS)))
        dims = st.integers(0, 10**8) if big else st.integers(0, 9)
        shape = draw(st.lists(dims, max_size=3 if big else 4))
        if math.prod(shape) * SPEC_BITS[dtype] % 8:
            shape.append(8)  # 8 elements of any width are whole bytes
        size = math.prod(shape) * SPEC_BITS[dtype] // 8
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))
    return header, offset


wrong_values = (json_values | st.floats() | st.booleans() | st.lists(st.booleans(), max_size=3)
                | st.lists(st.floats(), min_size=1, max_size=3) | st.text(alphabet="0123456789", max_size=4)
                | st.integers(-10**20, 10**20) | st.lists(st.integers(-3, 2**66), max_size=3)
                | st.sampled_from([[2.7], [True, True], "22", [float("inf")], [[1]], {}, [], [-1], [10**16],
                                   [2**40, 2**10], ["F32"], None]))


@st.composite
def mutated_headers(draw):
    """A valid header with one field replaced, removed or nudged."""
    header, data_len = draw(valid_headers())
    tensors = [k for k in header if k != "__metadata__"]
    kind = draw(st.sampled_from(["value", "drop", "nudge", "metadata", "entry", "top"]))
    if kind == "top":
        return draw(json_values), data_len
    if kind == "metadata" or not tensors:
        header["__metadata__"] = draw(wrong_values)
        return header, data_len
    name = draw(st.sampled_from(tensors))
    field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
    if kind == "value":
        header[name][field] = draw(wrong_values | st.sampled_from(sorted(SPEC_BITS) + ["E8M0", "f32", "F8"]))
    elif kind == "drop":
        del header[name][field]
    elif kind == "nudge":
        i = draw(st.integers(0, 1))
        header[name]["data_offsets"][i] += draw(st.integers(-9, 9))
    else:
        header[name] = draw(wrong_values)
    return header, data_len


def to_bytes(header) -> bytes:
    return json.dumps(header).encode()  # NaN/Infinity floats become the non-JSON tokens a fuzzer would write


# ---------------------------------------------------------------- parse_header_json
@given(json_values)
def test_arbitrary_json_values(value):
    for header in (value, to_bytes(value)):
        try:
            fh = parse_header_json("f.safetensors", header)
        except SafetensorsHeaderError as exc:
            assert_clean_error(exc, "f.safetensors")
            continue
        assert spec_ok(value), value
        check_against_input(fh, value)


@given(valid_headers())
def test_valid_headers_are_counted_exactly(case):
    header, data_len = case
    expected_elements = sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    fh = parse_header_json("f.safetensors", to_bytes(header), data_len=data_len)
    check_against_input(fh, header)
    assert sum(t.numel for t in fh.tensors) == expected_elements
    assert sum(t.nbytes for t in fh.tensors) == data_len
    assert fh.metadata == (header.get("__metadata__") or {})


@given(valid_headers(big=True))
def test_large_counts_are_exact_or_refused(case):
    header, data_len = case
    counts = [math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__"]
    try:
        fh = parse_header_json("big.safetensors", header, data_len=data_len)
    except SafetensorsHeaderError as exc:
        assert_clean_error(exc, "big.safetensors")
        assert sum(counts) > BOUND or any(d > BOUND for v in header.values() if "shape" in v
                                          for d in v["shape"]), header
        return
    assert sum(counts) <= BOUND
    check_against_input(fh, header)
    # exact integer bytes: sum of numel × bits / 8 computed here in integers
    assert sum(t.nbytes for t in fh.tensors) == sum(
        math.prod(v["shape"]) * SPEC_BITS[v["dtype"]] // 8 for k, v in header.items() if k != "__metadata__")


@given(mutated_headers(), st.booleans())
def test_mutated_headers(case, as_bytes):
    header, data_len = case
    try:
        fh = parse_header_json("m.safetensors", to_bytes(header) if as_bytes else header, data_len=data_len)
    except SafetensorsHeaderError as exc:
        assert_clean_error(exc, "m.safetensors")
        return
    assert spec_ok(header, data_len), header
    check_against_input(fh, header)


@given(st.sampled_from(["shape", "data_offsets", "dtype", "__metadata__", "top"]), st.integers(21, 6000),
       st.integers(1, 3000))
def test_huge_numbers_and_deep_nesting(where, digits, depth):
    number = "9" * digits
    nested = "[" * depth + "1" + "]" * depth
    for filler in (number, nested):
        if where == "top":
            text = filler
        elif where == "__metadata__":
            text = '{"__metadata__": {"k": %s}}' % filler
        else:
            entry = {"dtype": '"F32"', "shape": "[1]", "data_offsets": "[0, 4]"}
            entry[where] = f"[{filler}]" if where != "dtype" else filler
            text = '{"a": {%s}}' % ", ".join(f'"{k}": {v}' for k, v in entry.items())
        with pytest.raises(SafetensorsHeaderError) as info:
            parse_header_json("n.safetensors", text.encode())
        assert_clean_error(info.value, "n.safetensors")


@given(mutated_headers())
def test_hub_metadata_objects(case):
    header, _ = case
    if not isinstance(header, dict):
        return
    tensors = {k: SimpleNamespace(**v) if isinstance(v, dict) else SimpleNamespace()
               for k, v in header.items() if k != "__metadata__"}
    try:
        fh = from_hub_metadata("h.safetensors", SimpleNamespace(tensors=tensors, metadata={}))
    except SafetensorsHeaderError as exc:
        assert_clean_error(exc, "h.safetensors")
        return
    header = {k: v for k, v in header.items() if k != "__metadata__"}
    assert spec_ok(header), header
    check_against_input(fh, header)


# ---------------------------------------------------------------- raw bytes on disk
@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


prefixes = st.sampled_from(["exact", "random", "short", "long", "huge"])


@st.composite
def raw_files(draw):
    """(file bytes) built from a valid or mutated header, or from random bytes, behind a length prefix that
    is right, random, too short, too long or huge, possibly cut or extended."""
    source = draw(st.sampled_from(["valid", "mutated", "random"]))
    if source == "random":
        body, data = draw(st.binary(max_size=200)), draw(st.binary(max_size=64))
    else:
        header, data_len = draw(valid_headers() if source == "valid" else mutated_headers())
        body = to_bytes(header) + b" " * draw(st.integers(0, 7))  # the format pads headers with spaces
        data = b"\0" * min(data_len, 1 << 16)
    kind = draw(prefixes)
    n = {"exact": len(body), "short": max(0, len(body) - draw(st.integers(1, 9))),
         "long": len(body) + draw(st.integers(1, 10**6)), "huge": draw(st.integers(10**8, 2**64 - 1)),
         "random": draw(st.integers(0, 2**64 - 1))}[kind]
    blob = struct.pack("<Q", n) + body + data
    cut = draw(st.sampled_from([None, None, "truncate", "flip"]))
    if cut == "truncate" and blob:
        blob = blob[:draw(st.integers(0, len(blob) - 1))]
    elif cut == "flip" and blob:
        i = draw(st.integers(0, len(blob) - 1))
        blob = blob[:i] + bytes([blob[i] ^ draw(st.integers(1, 255))]) + blob[i + 1:]
    return blob


def safetensors_view(path):
    """What the safetensors library itself reports for a file: {name: (dtype, shape)}, or None if it refuses."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return {k: (f.get_slice(k).get_dtype(), list(f.get_slice(k).get_shape())) for k in f.keys()}
    except Exception:  # noqa: BLE001 - any refusal by the reference reader
        return None


@given(raw_files())
def test_raw_header_bytes(scratch, blob):
    path = scratch / "model.safetensors"
    path.write_bytes(blob)
    try:
        fh = read_local_header(path)
    except SafetensorsHeaderError as exc:
        assert_clean_error(exc, "model.safetensors")
        return
    # Accepted: the file is what the spec says, computed here from the bytes.
    (n,) = struct.unpack("<Q", blob[:8])
    raw = json.loads(blob[8:8 + n])
    assert spec_ok(raw, len(blob) - 8 - n)
    check_against_input(fh, raw)
    assert 8 + n + sum(t.nbytes for t in fh.tensors) == len(blob)
    # and the reference reader agrees
    assert safetensors_view(path) == {t.name: (t.dtype, list(t.shape)) for t in fh.tensors}


# ---------------------------------------------------------------- shard indexes and folders
shard_names = st.sampled_from(["a.safetensors", "../outside/x.safetensors", "/etc/passwd", "sub/a.safetensors",
                               "..", ".", "", "a.safetensors\0", "missing.safetensors", "..\\x.safetensors",
                               "C:x.safetensors"]) | st.text(max_size=12) | json_values


@st.composite
def index_files(draw):
    kind = draw(st.sampled_from(["good", "weight_map", "json", "bytes"]))
    if kind == "good":  # the one shard that is there, perhaps with one hostile name beside it
        weight_map = {f"t{i}": "a.safetensors" for i in range(draw(st.integers(1, 3)))}
        if draw(st.booleans()):
            weight_map["evil"] = draw(shard_names)
        return to_bytes({"weight_map": weight_map})
    if kind == "bytes":
        return draw(st.binary(max_size=120))
    if kind == "json":
        return to_bytes(draw(json_values))
    weight_map = draw(st.dictionaries(st.text(max_size=6), shard_names, max_size=4)
                      | json_values)
    return to_bytes({"metadata": {}, "weight_map": weight_map})


def _valid_file(path, n: int = 2):
    h = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"\0" * (4 * n))


@pytest.fixture(scope="module")
def index_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("idx")
    (root / "model").mkdir()
    (root / "outside").mkdir()
    _valid_file(root / "model" / "a.safetensors", 2)
    _valid_file(root / "outside" / "x.safetensors", 3)  # a valid file the index must never reach
    return root / "model"


@given(index_files())
def test_index_files(index_folder, blob):
    (index_folder / "model.safetensors.index.json").write_bytes(blob)
    try:
        headers = read_local_checkpoint(index_folder)
    except SafetensorsHeaderError as exc:
        assert_clean_error(exc, "model.safetensors.index.json")
        return
    if headers is None:
        event("partial download")
        return  # a shard the index names is not there (a partial download)
    # Accepted: the index named only a.safetensors, inside the folder (2 elements, by construction).
    names = set(json.loads(blob)["weight_map"].values())
    event("accepted")
    assert names == {"a.safetensors"}
    assert [f.filename for f in headers.files] == ["a.safetensors"] and headers.num_elements == 2


# ---------------------------------------------------------------- against the safetensors library
NUMPY_DTYPES = {"float16": "F16", "float32": "F32", "float64": "F64", "int8": "I8", "int16": "I16",
                "int32": "I32", "int64": "I64", "uint8": "U8", "uint16": "U16", "uint32": "U32",
                "uint64": "U64", "bool": "BOOL"}


@given(st.dictionaries(names, st.tuples(st.sampled_from(sorted(NUMPY_DTYPES)),
                                        st.lists(st.integers(0, 5), max_size=4)), max_size=6),
       st.none() | st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3))
def test_agrees_with_safetensors_library(scratch, spec, metadata):
    np = pytest.importorskip("numpy")
    from safetensors import safe_open
    from safetensors.numpy import save_file

    arrays = {k: np.zeros(shape, dtype=dt) for k, (dt, shape) in spec.items()}
    path = scratch / "lib.safetensors"
    save_file(arrays, str(path), metadata=metadata)
    try:
        with safe_open(str(path), framework="np") as f:
            theirs = {k: (f.get_slice(k).get_dtype(), list(f.get_slice(k).get_shape())) for k in f.keys()}
            their_meta = f.metadata() or {}
    except Exception:  # noqa: BLE001
        # safetensors 0.8 writes `{},"__metadata__":{}}` for no tensors and empty metadata, and refuses
        # to read it back; hfmem must refuse it too, cleanly.
        with pytest.raises(SafetensorsHeaderError) as info:
            read_local_header(path)
        assert_clean_error(info.value, "lib.safetensors")
        return
    fh = read_local_header(path)
    assert {t.name: (t.dtype, list(t.shape)) for t in fh.tensors} == theirs
    assert {t.name: t.numel for t in fh.tensors} == {k: math.prod(s) for k, (_, s) in theirs.items()}
    assert {t.name: t.nbytes for t in fh.tensors} == {k: a.nbytes for k, a in arrays.items()}
    assert fh.metadata == their_meta
    assert {k: NUMPY_DTYPES[dt] for k, (dt, _) in spec.items()} == {k: d for k, (d, _) in theirs.items()}


# ---------------------------------------------------------------- inventory from any accepted header
@given(valid_headers(), json_values)
def test_inventory_from_any_valid_header(case, config):
    header, data_len = case
    fh = parse_header_json("i.safetensors", header, data_len=data_len)
    headers = CheckpointHeaders([fh])
    census = census_from_headers(headers)
    inv = inventory_from_headers(headers, config if isinstance(config, dict) else {}, [])
    # every stored element is counted once: parameters + buffers (by name) = the header's elements
    total = sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    assert inv.num_params == sum(g["params"] for g in census) or inv.tensors == []
    assert inv.num_params <= total
    assert isinstance(inv.architecture, str)
    assert headers.to_dict()["elements"] == total and headers.to_dict()["bytes"] == data_len
