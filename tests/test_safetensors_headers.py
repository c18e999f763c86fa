"""Safetensors headers: the real MiniLM checkpoint, and damaged files that must fail clearly."""

from __future__ import annotations

import json
import os
import re
import struct
import sys
from types import SimpleNamespace

import pytest

from conftest import run_hfmem
from hfmem.errors import ConfigError, SafetensorsHeaderError
from hfmem.metadata.safetensors import (
    CheckpointHeaders,
    from_hub_metadata,
    parse_header_json,
    read_local_checkpoint,
    read_local_header,
)


def minilm_expected_params(cfg: dict) -> int:
    """BertModel parameters by hand from config.json (all-MiniLM-L6-v2: h=384, 6 layers, ff=1536)."""
    h, ff, L, v, p, t = (cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"],
                         cfg["max_position_embeddings"], cfg["type_vocab_size"])
    embeddings = (v + p + t) * h + 2 * h  # word, position, token type, LayerNorm
    layer = 4 * (h * h + h) + (h * ff + ff) + (ff * h + h) + 2 * (2 * h)  # q,k,v,o + MLP + 2 LayerNorms
    pooler = h * h + h
    return embeddings + L * layer + pooler


def test_real_checkpoint_header(minilm_dir):
    cfg = json.loads((minilm_dir / "config.json").read_text())
    headers = read_local_checkpoint(minilm_dir)
    assert headers is not None and len(headers.files) == 1
    # Published: the model card lists 22.7M parameters; exact by hand from the config:
    assert minilm_expected_params(cfg) == 22_713_216
    params = sum(t.numel for t in headers.tensors() if "position_ids" not in t.name)
    assert params == 22_713_216
    assert set(headers.elements_by_dtype()) <= {"F32", "I64"}


def _write(path, header: bytes, data: bytes = b"", declared: int | None = None):
    n = len(header) if declared is None else declared
    path.write_bytes(struct.pack("<Q", n) + header + data)
    return path


def test_truncated_header(tmp_path):
    p = _write(tmp_path / "t.safetensors", b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}'[:30],
               declared=100)
    with pytest.raises(SafetensorsHeaderError, match="truncated"):
        read_local_header(p)


def test_length_prefix(tmp_path):
    # shorter than the 8-byte prefix; a prefix of 0 (an empty header is not JSON); a prefix past the file's end
    p = tmp_path / "short.safetensors"
    p.write_bytes(b"\x01\x00\x00")
    with pytest.raises(SafetensorsHeaderError, match="the file has 3 bytes, expected at least the 8-byte"):
        read_local_header(p)
    with pytest.raises(SafetensorsHeaderError, match="not valid JSON"):
        read_local_header(_write(tmp_path / "zero.safetensors", b""))
    with pytest.raises(SafetensorsHeaderError, match="declares 18,446,744,073,709,551,615 bytes"):
        read_local_header(_write(tmp_path / "max.safetensors", b"{}", declared=2**64 - 1))


def test_header_over_100mb(tmp_path):
    p = _write(tmp_path / "big.safetensors", b"{}", declared=100_000_001)
    with pytest.raises(SafetensorsHeaderError, match="100 MB"):
        read_local_header(p)


def test_offsets_that_do_not_add_up(tmp_path):
    # 2 float32 need 8 bytes, the header claims 12
    h = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 12]}}).encode()
    with pytest.raises(SafetensorsHeaderError, match="offsets don't add up"):
        read_local_header(_write(tmp_path / "x.safetensors", h, b"\0" * 12))
    # a gap between tensors
    h = json.dumps({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                    "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}).encode()
    with pytest.raises(SafetensorsHeaderError, match="starts at byte 8, expected 4"):
        read_local_header(_write(tmp_path / "y.safetensors", h, b"\0" * 12))
    # data section shorter than the header says: the tensor reaches past its end
    h = json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    with pytest.raises(SafetensorsHeaderError, match=r"past the end of the data section \(8 bytes\)"):
        read_local_header(_write(tmp_path / "z.safetensors", h, b"\0" * 8))
    # data section longer than the tensors cover
    with pytest.raises(SafetensorsHeaderError, match="tensors cover 16 bytes, the data section has 20"):
        read_local_header(_write(tmp_path / "w.safetensors", h, b"\0" * 20))


def test_not_json(tmp_path):
    # the format's header is UTF-8 JSON: bytes that are not UTF-8, and UTF-8 that is not JSON
    with pytest.raises(SafetensorsHeaderError, match="not UTF-8 text"):
        read_local_header(_write(tmp_path / "j.safetensors", b"\xff\xfe not json"))
    with pytest.raises(SafetensorsHeaderError, match="not valid JSON"):
        read_local_header(_write(tmp_path / "k.safetensors", b"{not json"))


def test_valid_file_written_by_safetensors(tmp_path):
    np = pytest.importorskip("numpy")
    from safetensors.numpy import save_file

    save_file({"w": np.zeros((3, 5), dtype=np.float16), "b": np.zeros(7, dtype=np.int8)}, str(tmp_path / "m.safetensors"))
    fh = read_local_header(tmp_path / "m.safetensors")
    assert {t.name: (t.dtype, t.numel, t.nbytes) for t in fh.tensors} == {"w": ("F16", 15, 30), "b": ("I8", 7, 7)}


# ---------------------------------------------------------------- regressions (issue 12, hardened inputs)
# Each case was found by fuzzing: it raised a Python exception (exit 70), was accepted with a wrong count,
# or hung. Each must now be one SafetensorsHeaderError line naming the file and the field.

def _entry(**over) -> dict:
    e = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    e.update(over)
    return e


def _refused(header, *needles, filename="r.safetensors", data_len=None):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    with pytest.raises(SafetensorsHeaderError) as info:
        parse_header_json(filename, raw, data_len=data_len)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and msg.isprintable(), msg
    assert info.value.exit_code == 7 and filename in msg
    for n in needles:
        assert n in msg, msg
    return msg


@pytest.mark.parametrize("header,needles", [
    ({"a": _entry(dtype=["F32"])}, ("'dtype'", '["F32"]')),  # unhashable: a TypeError before
    ({"a": _entry(dtype="F33")}, ("'dtype'", '"F33"')),
    ({"a": _entry(shape=[2.7])}, ("'shape'", "[2.7]")),  # int(2.7) == 2 was accepted
    ({"a": _entry(shape=[True, True])}, ("'shape'", "[true, true]")),  # bool is an int in Python
    ({"a": _entry(shape="22", data_offsets=[0, 16])}, ("'shape'", '"22"')),  # read as [2, 2]
    ({"a": _entry(shape=[-1])}, ("'shape'", "[-1]")),
    ({"a": _entry(data_offsets=[0, 4, 8])}, ("'data_offsets'",)),
    ({"a": _entry(data_offsets=[4, 0])}, ("'data_offsets'", "begin <= end")),
    ({"a": _entry(data_offsets=[0.0, 4])}, ("'data_offsets'",)),
    ({"a": {"dtype": "F32", "shape": [1]}}, ("'data_offsets'",)),
    ({"a": [1, 2]}, ('"a"', "expected an object")),
    ({"a": _entry(), "__metadata__": [1]}, ("'__metadata__'", "[1]")),
    ({"a": _entry(), "__metadata__": "x"}, ("'__metadata__'",)),
    # safetensors' own reader refuses non-string metadata values ("expected a string")
    ({"a": _entry(), "__metadata__": {"k": 1}}, ("'__metadata__'",)),
    ([1, 2], ("expected a JSON object",)),
], ids=["list-dtype", "unknown-dtype", "float-dim", "bool-dims", "string-shape", "negative-dim", "three-offsets",
        "end-before-begin", "float-offset", "no-offsets", "entry-not-object", "metadata-list", "metadata-string",
        "metadata-int-value", "top-level-list"])
def test_malformed_fields_are_refused(header, needles):
    _refused(header, *needles)


def test_non_json_tokens_huge_numbers_and_nesting():
    # Python's json reads Infinity and NaN; the format (JSON) and safetensors do not.
    _refused(b'{"a": {"dtype": "F32", "shape": [Infinity], "data_offsets": [0, 4]}}', "Infinity")
    _refused(b'{"a": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 4]}}', "NaN")
    # 5,000 digits: int() of it raises ValueError (Python's 4,300-digit limit) — now a clear refusal
    _refused(b'{"a": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}', "5,000-digit")
    # 2^64 has 20 digits: a 21-digit size or offset is beyond the format's u64
    _refused(b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, ' + b"1" * 21 + b']}}', "21-digit")
    # 100,000 nested arrays: RecursionError before
    _refused(b"[" * 100_000, "too deeply")
    _refused(b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", "too deeply")
    _refused(b'{"a": ' + json.dumps(_entry()).encode() + b', "a": ' + json.dumps(_entry()).encode() + b"}",
             'names "a" twice')
    _refused(b"\xff\xfe{}", "not UTF-8", "0xff")
    # a lone surrogate escape: Python's json accepts it, UTF-8 (and stderr) cannot carry it
    _refused(b'{"a\\ud800": ' + json.dumps(_entry()).encode() + b"}", "lone surrogate")


def test_sub_byte_dtypes_must_end_on_a_byte(tmp_path):
    # 3 F4 elements are 12 bits: safetensors itself refuses the file (MisalignedSlice), so hfmem must
    h = {"a": _entry(dtype="F4", shape=[3], data_offsets=[0, 2])}
    p = _write(tmp_path / "f4.safetensors", json.dumps(h).encode(), b"\0\0")
    from safetensors import safe_open

    with pytest.raises(Exception, match="byte boundary"):
        safe_open(str(p), framework="np")
    with pytest.raises(SafetensorsHeaderError, match="12 bits, expected a whole number of bytes"):
        read_local_header(p)
    # 4 F4 elements are 2 bytes and 4 F6 elements 3 bytes (4 × 6 = 24 bits), exactly, as safetensors reads them
    h = {"a": _entry(dtype="F4", shape=[4], data_offsets=[0, 2]),
         "b": _entry(dtype="F6_E2M3", shape=[4], data_offsets=[2, 5])}
    p = _write(tmp_path / "f6.safetensors", json.dumps(h).encode(), b"\0" * 5)
    with safe_open(str(p), framework="np") as f:
        assert {k: f.get_slice(k).get_shape() for k in f.keys()} == {"a": [4], "b": [4]}
    assert [(t.name, t.numel, t.nbytes) for t in read_local_header(p).tensors] == [("a", 4, 2), ("b", 4, 3)]


def test_large_tensors_exact_bytes_and_the_plausibility_bound():
    # [2^40, 2^10] BF16: 2^50 = 1,125,899,906,842,624 elements (2^51 bytes), above the 10^15 bound: refused
    assert 2**40 * 2**10 == 1_125_899_906_842_624 > 10**15
    _refused({"a": _entry(dtype="BF16", shape=[2**40, 2**10], data_offsets=[0, 2**51])}, "more than 10^15")
    # exactly 10^15 = 5^15 × 2^15 elements of BF16: accepted, 2 × 10^15 bytes, counted in integers
    fh = parse_header_json("ok.safetensors", {"a": _entry(dtype="BF16", shape=[5**15, 2**15],
                                                          data_offsets=[0, 2 * 10**15])})
    assert (fh.tensors[0].numel, fh.tensors[0].nbytes) == (10**15, 2_000_000_000_000_000)
    # one more row is over: 10^15 + 5^15 elements
    _refused({"a": _entry(dtype="BF16", shape=[5**15, 2**15 + 1], data_offsets=[0, 2 * (10**15 + 5**15)])},
             "more than 10^15")
    # F6 just below the bound: 999,999,999,999,996 × 6 bits = 5,999,999,999,999,976 bits = 749,999,999,999,997 bytes
    n = 999_999_999_999_996
    fh = parse_header_json("f6.safetensors", {"b": _entry(dtype="U8", shape=[3], data_offsets=[0, 3]),
                                              "a": _entry(dtype="F6_E3M2", shape=[n],
                                                          data_offsets=[3, 3 + 749_999_999_999_997])})
    assert {t.name: t.nbytes for t in fh.tensors} == {"a": 749_999_999_999_997, "b": 3}
    assert sum(t.numel for t in fh.tensors) == 999_999_999_999_999  # the bound minus one
    # one byte off is refused, not rounded: ceil() of a float division used to absorb it
    _refused({"a": _entry(dtype="F6_E3M2", shape=[n], data_offsets=[0, 749_999_999_999_998])},
             "offsets don't add up", "749,999,999,999,998", "749,999,999,999,997")
    # within a file, all tensors together: 6 × 10^14 + 6 × 10^14 elements
    six = 6 * 10**14
    _refused({"a": _entry(dtype="U8", shape=[six], data_offsets=[0, six]),
              "b": _entry(dtype="U8", shape=[six], data_offsets=[six, 2 * six])}, "1,200,000,000,000,000 elements")


def test_checkpoint_total_is_bounded():
    six = 6 * 10**14
    files = [parse_header_json(f"s{i}.safetensors", {"a": _entry(dtype="U8", shape=[six], data_offsets=[0, six])})
             for i in range(2)]
    with pytest.raises(SafetensorsHeaderError, match="s0.safetensors and 1 more files") as info:
        CheckpointHeaders(files)
    assert "1,200,000,000,000,000 elements" in str(info.value)
    assert CheckpointHeaders(files[:1]).num_elements == six


def test_hub_metadata_values_are_not_coerced():
    # huggingface_hub hands back the header's values as they are; a string shape must not become [2, 2]
    meta = SimpleNamespace(tensors={"a": SimpleNamespace(dtype="F32", shape="22", data_offsets=(0, 16))})
    with pytest.raises(SafetensorsHeaderError, match="'shape' is \"22\""):
        from_hub_metadata("model.safetensors", meta)
    meta = SimpleNamespace(tensors={"a": SimpleNamespace(dtype="F32", shape=[2, 2], data_offsets=(0, 16))})
    assert from_hub_metadata("model.safetensors", meta).tensors[0].numel == 4


# ---------------------------------------------------------------- files and folders
TINY_CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 8,
               "intermediate_size": 16, "num_attention_heads": 2, "num_key_value_heads": 2,
               "num_hidden_layers": 1, "vocab_size": 10, "max_position_embeddings": 32}


def _folder(tmp_path, name="m"):
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(TINY_CONFIG))
    return d


def _valid_file(path, n=2):
    h = json.dumps({"w": _entry(shape=[n], data_offsets=[0, 4 * n])}).encode()
    return _write(path, h, b"\0" * (4 * n))


def assert_cli_fails(folder, code, *needles):
    """The CLI in a subprocess: run_hfmem's timeout turns a hang into a failure instead of a stuck suite."""
    proc = run_hfmem(str(folder), "--headers-only")
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert len(err) == 1 and err[0].startswith("hfmem: error:") and "Traceback" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_fifo_named_model_safetensors(tmp_path):
    d = _folder(tmp_path)
    os.mkfifo(d / "model.safetensors")  # open() on it blocks until a writer comes: it hung forever
    assert_cli_fails(d, 7, "model.safetensors", "named pipe (FIFO)", "expected a regular file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_fifo_index_shard_and_config(tmp_path):
    d = _folder(tmp_path, "index")
    os.mkfifo(d / "model.safetensors.index.json")
    assert_cli_fails(d, 7, "model.safetensors.index.json", "named pipe (FIFO)")
    d = _folder(tmp_path, "shard")
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "a.safetensors"}}))
    os.mkfifo(d / "a.safetensors")
    assert_cli_fails(d, 7, "a.safetensors", "named pipe (FIFO)")
    d = tmp_path / "config"
    d.mkdir()
    os.mkfifo(d / "config.json")
    assert_cli_fails(d, ConfigError.exit_code, "config.json", "named pipe (FIFO)")


def test_directory_named_model_safetensors(tmp_path):
    d = _folder(tmp_path)
    (d / "model.safetensors").mkdir()  # IsADirectoryError, exit 70, before
    assert_cli_fails(d, 7, "model.safetensors", "is a directory, expected a regular file")
    with pytest.raises(SafetensorsHeaderError, match="is a directory"):
        read_local_checkpoint(d)


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_symlink_loop_named_model_safetensors(tmp_path):
    d = _folder(tmp_path)
    os.symlink("loop-b", d / "loop-a")
    os.symlink("loop-a", d / "loop-b")
    os.symlink("loop-a", d / "model.safetensors")
    assert_cli_fails(d, 7, "model.safetensors", "cannot be opened")
    # a loop found by the *.safetensors glob (no model.safetensors, no index) as well
    e = _folder(tmp_path, "glob")
    os.symlink("x.safetensors", e / "x.safetensors")
    assert_cli_fails(e, 7, "x.safetensors", "cannot be opened")


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_model_folder_that_is_not_a_folder(tmp_path):
    os.symlink("loop2", tmp_path / "loop1")
    os.symlink("loop1", tmp_path / "loop2")
    assert_cli_fails(tmp_path / "loop1", 2, "loop1", "not a folder")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe")
        assert_cli_fails(tmp_path / "pipe", 2, "pipe", "not a folder")


@pytest.mark.parametrize("shard", ["../outside/x.safetensors", "/etc/passwd", "ABSOLUTE", "sub/a.safetensors",
                                   "..", "..\\x.safetensors"])
def test_shard_names_cannot_leave_the_folder(tmp_path, shard):
    outside = tmp_path / "outside"
    outside.mkdir()
    _valid_file(outside / "x.safetensors", 3)  # a valid file: following the index would count it
    if shard == "ABSOLUTE":
        shard = str(outside / "x.safetensors")
    d = _folder(tmp_path)
    (d / "sub").mkdir()
    _valid_file(d / "sub" / "a.safetensors")
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": shard}}))
    with pytest.raises(SafetensorsHeaderError) as info:
        read_local_checkpoint(d)
    msg = str(info.value)
    assert "model.safetensors.index.json" in msg and json.dumps(shard)[:40].strip('"') in msg, msg
    assert_cli_fails(d, 7, "model.safetensors.index.json", "expected a file name in the model folder")


def test_index_not_utf8_or_without_weight_map(tmp_path):
    d = _folder(tmp_path)
    index = d / "model.safetensors.index.json"
    index.write_bytes(b'{"weight_map": {"w": "a\xff.safetensors"}}')  # UnicodeDecodeError, exit 70, before
    with pytest.raises(SafetensorsHeaderError, match=r"model.safetensors.index.json is not UTF-8 text \(byte 0xff"):
        read_local_checkpoint(d)
    assert_cli_fails(d, 7, "model.safetensors.index.json", "not UTF-8")
    for body, needle in ((b"[]", "expected a JSON object"), (b"{}", "no 'weight_map'"),
                         (b'{"weight_map": []}', "'weight_map' is []"), (b'{"weight_map": {"w": 5}}', "names shard 5")):
        index.write_bytes(body)
        with pytest.raises(SafetensorsHeaderError, match=re.escape(needle)):
            read_local_checkpoint(d)


def test_index_shards_in_the_folder_are_read(tmp_path):
    d = _folder(tmp_path)
    _valid_file(d / "a.safetensors", 2)
    _valid_file(d / "b.safetensors", 5)
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "a.safetensors",
                                                                               "y": "b.safetensors"}}))
    headers = read_local_checkpoint(d)
    assert [f.filename for f in headers.files] == ["a.safetensors", "b.safetensors"]
    assert headers.num_elements == 2 + 5 and headers.num_bytes == 4 * 7  # F32, by hand
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "a.safetensors",
                                                                               "y": "gone.safetensors"}}))
    assert read_local_checkpoint(d) is None  # a partial download: not every shard is there
