"""Reconstructed tensor lists of published GGUF files (tests/gguf_published.py) against published numbers.

Every expected value below is either a number llama.cpp printed when loading a published file (source cited
next to it) or block arithmetic written out by hand. None is copied from hfmem's output.

Configs are the real Hub config.json files under /work/shared/hub-reference (see its SOURCES.md).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import gguf
import pytest

from gguf_published import (
    FTYPE_NUMBER,
    data_bytes_padded,
    tensor_bytes,
    tensor_elements,
    tensor_list,
    type_counts,
    write_published,
)

# The models' real config.json files, as the shipped snapshot holds them (copied unchanged from the Hub)
HUB = Path(__file__).resolve().parents[1] / "cache" / "models"
MiB = 1024**2
GiB = 1024**3


def _config(repo: str) -> dict:
    path = HUB / repo / "config.json"
    if not path.exists():
        pytest.skip(f"reference config {repo} not available")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------------------
# tensor type counts: llama.cpp prints "llama_model_loader: - type q4_K:  193 tensors" at load
# ---------------------------------------------------------------------------------------------------------

PUBLISHED_TYPE_COUNTS = [
    # TheBloke/Llama-2-7B-GGUF llama-2-7b.Q4_K_M.gguf, loaded by llamafile; log kept in a public notes file
    # (find_string "3.80 GiB (4.84 BPW)"; same counts in the llama.cpp issue logs of that file):
    #   type f32: 65, q4_K: 193, q6_K: 33
    ("meta-llama/Llama-2-7b-hf", "llama", "Q4_K_M", {"f32": 65, "q4_K": 193, "q6_K": 33}),
    # https://github.com/abetlen/llama-cpp-python/issues/1693 (LongWriter-llama3.1-8b Q4_K_M, Llama-3.1-8B
    # shapes, 128256 vocab): type f32: 66 (65 + rope_freqs), q4_K: 193, q6_K: 33
    ("meta-llama/Llama-3.1-8B-Instruct", "llama", "Q4_K_M", {"f32": 66, "q4_K": 193, "q6_K": 33}),
    # https://github.com/ollama/ollama/issues/10553 (Llama 3.1 70B Instruct 2024 12, Q3_K - Medium):
    #   f32: 162, q3_K: 321, q4_K: 155, q5_K: 85, q6_K: 1
    # exercises the LLM_TYPE_70B attn_v bump (Q4_K -> Q5_K) and ffn_down i < n/16 -> Q5_K.
    ("meta-llama/Llama-3.1-70B-Instruct", "llama", "Q3_K_M",
     {"f32": 162, "q3_K": 321, "q4_K": 155, "q5_K": 85, "q6_K": 1}),
    # https://github.com/ollama/ollama/issues/9031 (qwen2, n_embd 896, n_layer 24, n_head 14, n_head_kv 2,
    # n_vocab 151936: the Qwen2/2.5-0.5B shape), Q4_K_M:
    #   f32: 121, q5_0: 132, q8_0: 13, q4_K: 12, q6_K: 12
    # exercises tensor_type_fallback (896 % 256 != 0: Q4_K -> Q5_0, Q6_K -> Q8_0) and tied token_embd.
    ("Qwen/Qwen2-0.5B-Instruct", "qwen2", "Q4_K_M",
     {"f32": 121, "q5_0": 132, "q8_0": 13, "q4_K": 12, "q6_K": 12}),
    # https://github.com/rjmalagon/ollama-linux-amd-apu/issues/19 (Llama 3.2 3B Instruct Q4_K_M, tied):
    #   f32: 58, q4_K: 168, q6_K: 29
    ("meta-llama/Llama-3.2-3B-Instruct", "llama", "Q4_K_M", {"f32": 58, "q4_K": 168, "q6_K": 29}),
]


@pytest.mark.parametrize("repo,arch,ftype,expected", PUBLISHED_TYPE_COUNTS,
                         ids=[f"{r.split('/')[1]}-{f}" for r, _, f, _ in PUBLISHED_TYPE_COUNTS])
def test_type_counts_match_llama_cpp_load_log(repo, arch, ftype, expected):
    assert type_counts(tensor_list(_config(repo), arch, ftype)) == expected


@pytest.mark.parametrize("repo,arch,ftype,n_tensors", [
    # "loaded meta data with 22 key-value pairs and 291 tensors from ./models/Meta-Llama-3-8B-Instruct-q8_0.gguf"
    # https://github.com/abetlen/llama-cpp-python/pull/1497
    ("meta-llama/Meta-Llama-3-8B", "llama", "Q8_0", 291),
    # "... and 292 tensors from models/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf"
    # https://github.com/ggml-org/llama.cpp/issues/9517
    ("meta-llama/Llama-3.1-8B-Instruct", "llama", "Q4_K_M", 292),
    # "... and 339 tensors from /models/qwen2-7b-instruct-q6_k.gguf"
    # https://github.com/abetlen/llama-cpp-python/issues/1521 (Qwen2-7B has Qwen2.5-7B's shapes: 28 layers)
    ("Qwen/Qwen2-7B-Instruct", "qwen2", "Q6_K", 339),
])
def test_tensor_count_matches_published_file(repo, arch, ftype, n_tensors):
    assert len(tensor_list(_config(repo), arch, ftype)) == n_tensors


# ---------------------------------------------------------------------------------------------------------
# llama.cpp's "model params" (ml.n_elements) and "model size = X GiB (Y BPW)" (ml.n_bytes, exact tensor bytes)
# ---------------------------------------------------------------------------------------------------------

PUBLISHED_SIZES = [
    # utilityai/llama-cpp-rs README.md, example run loading TheBloke/Llama-2-7B-GGUF llama-2-7b.Q4_K_M.gguf:
    #   model params = 6.74 B ; model size = 3.80 GiB (4.84 BPW)
    ("meta-llama/Llama-2-7b-hf", "llama", "Q4_K_M", 6.74, 3.80, 4.84),
    # https://github.com/ollama/ollama/issues/10553: model params = 70.55 B ; file size = 31.91 GiB (3.88 BPW)
    ("meta-llama/Llama-3.1-70B-Instruct", "llama", "Q3_K_M", 70.55, 31.91, 3.88),
]


@pytest.mark.parametrize("repo,arch,ftype,params_b,size_gib,bpw", PUBLISHED_SIZES,
                         ids=[f"{r.split('/')[1]}-{f}" for r, _, f, *_ in PUBLISHED_SIZES])
def test_model_params_size_and_bpw_match_llama_cpp(repo, arch, ftype, params_b, size_gib, bpw):
    tensors = tensor_list(_config(repo), arch, ftype)
    n_elements = tensor_elements(tensors)
    n_bytes = tensor_bytes(tensors)
    # llama.cpp prints params as n_elements*1e-9 with %.2f, size as n_bytes/1024^3 with %.2f and
    # BPW = n_bytes*8/n_elements with %.2f (llama-model.cpp print_info)
    assert f"{n_elements * 1e-9:.2f}" == f"{params_b:.2f}"
    assert f"{n_bytes / GiB:.2f}" == f"{size_gib:.2f}"
    assert f"{n_bytes * 8 / n_elements:.2f}" == f"{bpw:.2f}"


def test_llama2_7b_q4_k_m_buffer_split_matches_published_log():
    # utilityai/llama-cpp-rs README.md (TheBloke/Llama-2-7B-GGUF llama-2-7b.Q4_K_M.gguf, all layers offloaded):
    #   CUDA0 buffer size = 3820.94 MiB ; CPU buffer size = 70.31 MiB
    # and the CPU-only run of the same file (llamafile notes): CPU buffer size = 3891.24 MiB.
    # With full offload only token_embd stays on the host (llama.cpp keeps the input embedding on the CPU).
    tensors = tensor_list(_config("meta-llama/Llama-2-7b-hf"), "llama", "Q4_K_M")
    by_name = {n: (s, t) for n, s, t in tensors}
    assert by_name["token_embd.weight"] == ((4096, 32000), "Q4_K")
    # hand calculation: Q4_K packs 256 weights in 144 bytes -> 4096*32000/256*144 = 73,728,000 B = 70.3125 MiB
    embd_bytes = 4096 * 32000 // 256 * 144
    assert embd_bytes == 73_728_000
    assert f"{embd_bytes / MiB:.2f}" == "70.31"
    total = tensor_bytes(tensors)
    assert f"{total / MiB:.2f}" == "3891.24"
    # The CUDA0 figure is not the plain tensor sum (3820.93 MiB): ggml-cuda.cu
    # ggml_backend_cuda_buffer_type_get_alloc_size adds ggml_row_size(type, MATRIX_ROW_PADDING - ne0 % 512)
    # once per quantized tensor whose rows are not a multiple of MATRIX_ROW_PADDING = 512. Here only ffn_down
    # (ne0 = 11008, 11008 % 512 = 256) qualifies: 16 Q6_K tensors get 210 B (one 256-block), 16 Q4_K get 144 B.
    assert f"{(total - embd_bytes) / MiB:.2f}" == "3820.93"
    cuda_row_padding = 16 * 210 + 16 * 144
    assert f"{(total - embd_bytes + cuda_row_padding) / MiB:.2f}" == "3820.94"


# ---------------------------------------------------------------------------------------------------------
# per-tensor rules, checked by hand against src/llama-quant.cpp (commit 007dbbf3fd17eefe9b47fee45f48f7ba5e62b714)
# ---------------------------------------------------------------------------------------------------------

def _types(repo: str, arch: str, ftype: str) -> dict[str, str]:
    return {n: t for n, _, t in tensor_list(_config(repo), arch, ftype)}


def test_use_more_bits_layers_for_q4_k_m():
    # use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2; for n = 32:
    # 0..3, 28..31 and 6, 9, 12, 15, 18, 21, 24, 27 -> 16 layers get Q6_K attn_v and ffn_down
    expected_q6 = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31}
    types = _types("meta-llama/Llama-2-7b-hf", "llama", "Q4_K_M")
    for i in range(32):
        want = "Q6_K" if i in expected_q6 else "Q4_K"
        assert types[f"blk.{i}.attn_v.weight"] == want
        assert types[f"blk.{i}.ffn_down.weight"] == want
        assert types[f"blk.{i}.attn_q.weight"] == "Q4_K"
        assert types[f"blk.{i}.attn_norm.weight"] == "F32"
    assert types["output.weight"] == "Q6_K"
    assert types["token_embd.weight"] == "Q4_K"  # untied: token_embd keeps the default type


def test_q4_0_output_is_q6_k():
    # https://github.com/ggml-org/llama.cpp/pull/2685 (stories110M_Q4_0.gguf load log):
    #   token_embd.weight q4_0, output.weight q6_K, blk.0.attn_q.weight q4_0
    types = _types("meta-llama/Llama-2-7b-hf", "llama", "Q4_0")
    assert types["token_embd.weight"] == "Q4_0"
    assert types["output.weight"] == "Q6_K"
    assert types["blk.0.attn_q.weight"] == "Q4_0"


def test_row_fallback_and_tied_embedding_for_qwen2_0_5b():
    # n_embd 896 = 3.5 * 256: every tensor with rows of 896 cannot be Q4_K/Q6_K (tensor_type_fallback):
    # Q4_K -> Q5_0, Q6_K -> Q8_0. ffn_down rows are n_ff = 4864 = 19 * 256, so it keeps k-quants.
    # Tied embeddings (tie_word_embeddings): token_embd takes the output rule, and 896 % 256 != 0 -> Q8_0.
    types = _types("Qwen/Qwen2-0.5B-Instruct", "qwen2", "Q4_K_M")
    assert "output.weight" not in types
    assert types["token_embd.weight"] == "Q8_0"
    assert types["blk.0.attn_q.weight"] == "Q5_0"
    assert types["blk.0.attn_v.weight"] == "Q8_0"  # use_more_bits(0) -> Q6_K -> fallback Q8_0
    assert types["blk.4.attn_v.weight"] == "Q5_0"  # Q4_K -> Q5_0
    assert types["blk.0.ffn_down.weight"] == "Q6_K"
    assert types["blk.4.ffn_down.weight"] == "Q4_K"
    assert types["blk.0.attn_q.bias"] == "F32"


def test_converter_ftypes_keep_1d_f32():
    # convert_hf_to_gguf.py prepare_tensors: n_dims <= 1 or *_norm.weight -> F32; biases -> F32
    for ftype in ("F16", "BF16", "Q8_0"):
        tensors = tensor_list(_config("Qwen/Qwen2.5-7B-Instruct"), "qwen2", ftype)
        counts = type_counts(tensors)
        # 28 layers * (2 norms + 3 biases) + output_norm = 141 one-dimensional tensors
        assert counts["f32"] == 28 * 5 + 1
        # 28 * 7 matrices + token_embd + output = 198
        assert counts[ftype.lower()] == 28 * 7 + 2
    # F16: 2 bytes per weight exactly; hand calculation for token_embd 3584 x 152064
    f16 = {n: (s, t) for n, s, t in tensor_list(_config("Qwen/Qwen2.5-7B-Instruct"), "qwen2", "F16")}
    assert f16["token_embd.weight"] == ((3584, 152064), "F16")
    assert f16["blk.0.attn_k.weight"] == ((3584, 512), "F16")  # 4 kv heads * 128
    assert f16["blk.0.attn_output.weight"] == ((3584, 3584), "F16")
    assert f16["blk.0.ffn_down.weight"] == ((18944, 3584), "F16")


def test_gemma2_tensors_are_tied_and_have_post_norms():
    types = _types("google/gemma-2-9b-it", "gemma2", "Q4_K_M")
    assert "output.weight" not in types
    # tied: token_embd takes the output rule -> Q6_K (3584 % 256 == 0)
    assert types["token_embd.weight"] == "Q6_K"
    assert types["blk.0.post_attention_norm.weight"] == "F32"
    assert types["blk.0.post_ffw_norm.weight"] == "F32"
    shapes = {n: s for n, s, _ in tensor_list(_config("google/gemma-2-9b-it"), "gemma2", "Q4_K_M")}
    # head_dim 256 (config), 16 q heads, 8 kv heads: q is 3584 -> 4096, not 3584 -> 3584
    assert shapes["blk.0.attn_q.weight"] == (3584, 4096)
    assert shapes["blk.0.attn_k.weight"] == (3584, 2048)
    assert shapes["blk.0.attn_output.weight"] == (4096, 3584)


def test_mixtral_merged_experts_layout():
    types = _types("mistralai/Mixtral-8x7B-v0.1", "llama", "Q4_K_M")
    shapes = {n: s for n, s, _ in tensor_list(_config("mistralai/Mixtral-8x7B-v0.1"), "llama", "Q4_K_M")}
    assert shapes["blk.0.ffn_gate_exps.weight"] == (4096, 14336, 8)
    assert shapes["blk.0.ffn_down_exps.weight"] == (14336, 4096, 8)
    assert shapes["blk.0.ffn_gate_inp.weight"] == (4096, 8)
    assert types["blk.0.ffn_gate_inp.weight"] == "F32"  # router never quantized
    # n_expert == 8: attn_v and attn_k -> Q8_0, attn_output -> Q5_K for Q4_K_M
    assert types["blk.5.attn_v.weight"] == "Q8_0"
    assert types["blk.5.attn_k.weight"] == "Q8_0"
    assert types["blk.5.attn_output.weight"] == "Q5_K"
    assert types["blk.0.ffn_down_exps.weight"] == "Q6_K"  # use_more_bits(0, 32)
    assert types["blk.4.ffn_down_exps.weight"] == "Q4_K"


def test_params_are_config_arithmetic():
    # Llama-2-7B by hand: embd + output 2*4096*32000, per layer 4*4096^2 + 3*4096*11008 + 2*4096, final norm
    per_layer = 4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096
    expected = 2 * 4096 * 32000 + 32 * per_layer + 4096
    assert expected == 6_738_415_616
    assert tensor_elements(tensor_list(_config("meta-llama/Llama-2-7b-hf"), "llama", "Q4_K_M")) == expected


# ---------------------------------------------------------------------------------------------------------
# the header-only file: parsed here with a minimal GGUF v3 reader (gguf.GGUFReader needs the data section)
# ---------------------------------------------------------------------------------------------------------

def _read_header(path: Path) -> tuple[dict, list[tuple[str, tuple[int, ...], int, int]]]:
    """GGUF v3 layout per ggml docs/gguf.md: magic, version, n_tensors, n_kv, KVs, tensor infos."""
    buf = path.read_bytes()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals[0] if len(vals) == 1 else vals

    def string() -> str:
        nonlocal pos
        n = take("Q")
        s = buf[pos:pos + n].decode()
        pos += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(vtype: int):
        if vtype == 8:
            return string()
        if vtype == 9:
            sub, n = take("I"), take("Q")
            return [value(sub) for _ in range(n)]
        return take(scalar[vtype])

    assert take("I") == gguf.GGUF_MAGIC
    assert take("I") == 3
    n_tensors, n_kv = take("Q"), take("Q")
    kv = {}
    for _ in range(n_kv):
        key = string()
        kv[key] = value(take("I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        n_dims = take("I")
        dims = tuple(take("Q") for _ in range(n_dims))
        infos.append((name, dims, take("I"), take("Q")))
    assert pos == len(buf)  # header only: nothing after the tensor infos
    return kv, infos


def test_written_header_round_trips(tmp_path):
    cfg = _config("Qwen/Qwen2-0.5B-Instruct")
    path = tmp_path / "qwen2-0.5b-q4_k_m.gguf"
    written = write_published(path, cfg, "qwen2", "Q4_K_M", metadata_extra={"general.name": "reconstruction"})
    kv, infos = _read_header(path)
    assert kv["general.architecture"] == "qwen2"
    assert kv["general.file_type"] == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M in llama.h
    assert kv["general.name"] == "reconstruction"
    assert kv["qwen2.block_count"] == 24
    assert kv["qwen2.embedding_length"] == 896
    assert kv["qwen2.feed_forward_length"] == 4864
    assert kv["qwen2.attention.head_count"] == 14
    assert kv["qwen2.attention.head_count_kv"] == 2
    assert kv["qwen2.context_length"] == 32768
    assert kv["qwen2.rope.freq_base"] == pytest.approx(1e6)
    assert kv["qwen2.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6)
    assert [(n, d, gguf.GGMLQuantizationType(t).name) for n, d, t, _ in infos] == written
    # offsets: each tensor starts at the previous end rounded up to 32 bytes (GGUF alignment)
    offsets = [o for *_, o in infos]
    assert offsets[0] == 0
    assert all(o % 32 == 0 for o in offsets)
    # the last offset plus the last tensor's padded size equals the whole padded data section
    last_name, last_dims, last_type, last_off = infos[-1]
    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(last_type)]
    n = 1
    for d in last_dims:
        n *= d
    assert last_off + -(-(n // block * size) // 32) * 32 == data_bytes_padded(written)


def test_gemma2_header_has_sliding_window(tmp_path):
    cfg = _config("google/gemma-2-2b-it")
    path = tmp_path / "gemma2.gguf"
    write_published(path, cfg, "gemma2", "F16")
    kv, infos = _read_header(path)
    assert kv["gemma2.attention.sliding_window"] == 4096
    assert kv["general.file_type"] == int(FTYPE_NUMBER["F16"]) == 1
    assert kv["gemma2.attention.key_length"] == 256
    assert all(t in (0, 1) for _, _, t, _ in infos)  # F32 = 0, F16 = 1 only


def test_unknown_ftype_and_arch_are_rejected():
    cfg = _config("meta-llama/Llama-2-7b-hf")
    with pytest.raises(ValueError):
        tensor_list(cfg, "llama", "IQ2_XS")
    with pytest.raises(ValueError):
        tensor_list(cfg, "falcon", "Q4_K_M")


# TheBloke/Luna-AI-Llama2-Uncensored-GGUF's model card, "Provided files" (a Llama-2-7B fine-tune: Llama-2-7B's
# shapes and 32000-token vocabulary), sizes in GB of 10^9 bytes at two decimals.
LUNA_CARD_GB = {"Q3_K_M": 3.30, "Q3_K_L": 3.60, "Q4_0": 3.83, "Q4_K_S": 3.86, "Q4_K_M": 4.08, "Q5_0": 4.65,
                "Q5_K_S": 4.65, "Q5_K_M": 4.78, "Q6_K": 5.53, "Q8_0": 7.16}


@pytest.mark.parametrize("ftype, card_gb", sorted(LUNA_CARD_GB.items()))
def test_published_file_sizes_reproduced_from_headers(ftype, card_gb, tmp_path):
    """The card's file sizes, from a header hfmem reads back: the data section (the tensors' bytes, each padded
    to the 32-byte alignment) plus the header. The rebuilt header lacks the tokenizer's ~0.5 MB of strings,
    which cannot move a size at the card's rounding of 10 MB."""
    from hfmem.metadata.gguf import read_local_header

    path = tmp_path / f"luna-{ftype}.gguf"
    tensors = write_published(path, _config("meta-llama/Llama-2-7b-hf"), "llama", ftype)
    data = data_bytes_padded(tensors)
    header_end = -(-path.stat().st_size // 32) * 32  # the data section starts at the next 32-byte boundary
    with open(path, "r+b") as fh:  # extend, sparse, to the size the tensors declare
        fh.truncate(header_end + data)
    header = read_local_header(path)
    size = header.data_offset + data
    assert header.tensor_bytes == tensor_bytes(tensors)
    assert round(size / 1e9, 2) == card_gb, (ftype, size)
