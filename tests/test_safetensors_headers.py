"""Safetensors headers: the real MiniLM checkpoint, and damaged files that must fail clearly."""

from __future__ import annotations

import json
import struct

import pytest

from hfmem.errors import SafetensorsHeaderError
from hfmem.metadata.safetensors import read_local_checkpoint, read_local_header


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
    # data section shorter than the header says
    h = json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    with pytest.raises(SafetensorsHeaderError, match="data section has 8"):
        read_local_header(_write(tmp_path / "z.safetensors", h, b"\0" * 8))


def test_not_json(tmp_path):
    with pytest.raises(SafetensorsHeaderError, match="not valid JSON"):
        read_local_header(_write(tmp_path / "j.safetensors", b"\xff\xfe not json"))


def test_valid_file_written_by_safetensors(tmp_path):
    np = pytest.importorskip("numpy")
    from safetensors.numpy import save_file

    save_file({"w": np.zeros((3, 5), dtype=np.float16), "b": np.zeros(7, dtype=np.int8)}, str(tmp_path / "m.safetensors"))
    fh = read_local_header(tmp_path / "m.safetensors")
    assert {t.name: (t.dtype, t.numel, t.nbytes) for t in fh.tensors} == {"w": ("F16", 15, 30), "b": ("I8", 7, 7)}
