"""GGUF as a source: the header parser against the gguf package's own reader, byte sizes by hand, the Hub
through tests/hubserver.py (range reads only, the cache, faults, offline), local files, folders and splits,
damaged files."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import gguf
import gguf_factory as fac
from conftest import ROOT
from hfmem.errors import GGUFHeaderError, ModelNotFoundError, OfflineMissError, UsageError
from hfmem.metadata.gguf import GGUFArray, parse_header, read_local_header, tensor_nbytes
from hfmem.report import Options
from hfmem.sources.gguf import group_files, is_gguf_only, label_from_name, load_gguf, split_ref


# ---------------------------------------------------------------- the parser vs gguf.GGUFReader


def _reader_value(field):
    """A scalar or string metadata value by the gguf package's reader (ReaderField.contents)."""
    return field.contents()


@pytest.mark.parametrize("make", [fac.llama, fac.qwen2, fac.gemma2, lambda: fac.qwen3moe(wt="Q4_0"), fac.mmproj])
def test_parser_matches_gguf_reader(tmp_path, make):
    spec = make()
    (path,) = fac.write_gguf(tmp_path / "m.gguf", spec)
    ours = read_local_header(path)
    ref = gguf.GGUFReader(path)
    assert ours.data_offset == ref.data_offset
    assert ours.file_size == path.stat().st_size
    assert len(ours.tensors) == len(ref.tensors)
    for t, r in zip(ours.tensors, ref.tensors):
        assert t.name == r.name
        assert t.shape == tuple(int(d) for d in r.shape)  # GGUFReader's .shape is ggml order too
        assert t.ggml_type == r.tensor_type.name
        assert ours.data_offset + t.offset == r.data_offset  # the reader's offset is absolute
        assert t.nbytes == r.n_bytes
    for key, field in ref.fields.items():
        if key.startswith("GGUF."):
            continue  # the reader's pseudo-fields (version, counts)
        value = ours.metadata[key]
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            if field.types[-1] == gguf.GGUFValueType.STRING:
                assert value == GGUFArray("STRING", len(field.data))
            else:
                assert value == tuple(field.contents())
        elif field.types[0] == gguf.GGUFValueType.FLOAT32:
            assert value == pytest.approx(_reader_value(field), rel=1e-7)
        else:
            assert value == _reader_value(field)
    assert set(ours.metadata) == {k for k in ref.fields if not k.startswith("GGUF.")}
    assert ours.version == 3 and ours.alignment == 32
    assert ours.architecture == spec.arch


def test_arch_keys_and_helpers(tmp_path):
    (path,) = fac.write_gguf(tmp_path / "g.gguf", fac.gemma2(window=128, n_layer=2))
    h = read_local_header(path)
    assert h.arch_key("attention.sliding_window") == 128
    assert h.arch_key("attn_logit_softcapping") == pytest.approx(50.0)
    assert h.get("gemma2.block_count") == 2
    assert h.split is None
    # tensor_bytes: every tensor, from the reader's own n_bytes
    assert h.tensor_bytes == sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)


def test_nbytes_by_hand():
    # Q4_K: super-blocks of 256 weights in 144 bytes (ggml-common.h block_q4_K: 2 fp16 + 12 scale bytes + 128)
    assert tensor_nbytes("Q4_K", (4096, 4096)) == 4096 * 4096 // 256 * 144 == 9_437_184
    # Q4_0: 32 weights in 18 bytes (one fp16 scale + 16 bytes of nibbles)
    assert tensor_nbytes("Q4_0", (4096, 14336)) == 4096 * 14336 // 32 * 18
    # Q8_0: 32 weights in 34 bytes; F16 2 bytes; F32 4 bytes; BF16 2 bytes
    assert tensor_nbytes("Q8_0", (64, 3)) == 64 * 3 // 32 * 34
    assert tensor_nbytes("F16", (5, 7)) == 70
    assert tensor_nbytes("F32", (5,)) == 20
    assert tensor_nbytes("BF16", (4096, 128256)) == 4096 * 128256 * 2
    # Q6_K: 256 weights in 210 bytes (128 + 64 + 16 + 2)
    assert tensor_nbytes("Q6_K", (4096, 128256)) == 4096 * 128256 // 256 * 210
    with pytest.raises(ValueError):
        tensor_nbytes("Q4_K", (100, 4))  # a row of 100 is not whole 256-blocks


def test_real_size_header_only_file(tmp_path):
    """Llama-3-8B's shapes (config.json of meta-llama/Meta-Llama-3-8B: hidden 4096, 32 layers, 32 heads, 8 KV
    heads, intermediate 14336, vocab 128256) at Q4_K: every weight's bytes written out by hand."""
    spec = fac.llama(n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, n_ff=14336, vocab=128256, wt="Q4_K")
    (path,) = fac.write_header_only(tmp_path / "big.gguf", spec.metadata, spec.tensors)
    h = read_local_header(path)
    q4k = lambda n: n // 256 * 144  # noqa: E731
    per_layer = (4096 * 2 * 4  # two norms, F32
                 + q4k(4096 * 4096) * 2 + q4k(4096 * 1024) * 2  # q, output; k, v (8 heads * 128)
                 + q4k(4096 * 14336) * 3)  # gate, up, down
    expected = q4k(4096 * 128256) * 2 + 4096 * 4 + 32 * per_layer
    assert h.tensor_bytes == expected
    assert h.metadata["tokenizer.ggml.tokens"] == GGUFArray("STRING", 128256)
    assert h.file_size == path.stat().st_size == h.data_offset + expected  # padding: all sizes are 32-multiples


@pytest.mark.slow  # writes a 1.8 MB header of 128k token strings: 3 s, so it runs with the slow set
def test_window_reader_fetches_in_doubling_windows(tmp_path):
    """A 1.83 MB header read with a 64 KiB first window: windows of 64K, 128K, 256K, 512K, 1M hold
    64K * (2^5 - 1) = 2,031,616 bytes >= the header, so 5 fetches, and no more than one window past it."""
    from hfmem.metadata.gguf import WindowReader

    spec = fac.llama(n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, n_ff=14336, vocab=128256, wt="Q4_K")
    (path,) = fac.write_header_only(tmp_path / "big.gguf", spec.metadata, spec.tensors)
    data_offset = gguf.GGUFReader(path).data_offset
    assert 64 * 1024 * 15 < data_offset <= 64 * 1024 * 31
    with open(path, "rb") as fh:
        def fetch(o, n):
            fh.seek(o)
            return fh.read(n)

        reader = WindowReader(fetch, first_window=64 * 1024)
        h = parse_header(reader.read, path.name, path.stat().st_size)
    assert h.data_offset == data_offset
    assert reader.fetches == 5 and reader.bytes_fetched == 64 * 1024 * 31


# ---------------------------------------------------------------- damaged files


def _good_bytes(tmp_path) -> bytes:
    (path,) = fac.write_gguf(tmp_path / "ok.gguf", fac.llama(n_layer=1))
    return path.read_bytes()


def _parse(data: bytes, size: int | None = "len"):
    return parse_header(lambda o, n: data[o:o + n], "bad.gguf", len(data) if size == "len" else size)


def test_damaged_headers(tmp_path):
    good = _good_bytes(tmp_path)
    h = _parse(good)
    for cut in (0, 3, 10, 23, 100, h.data_offset - 5):  # truncated inside the header
        with pytest.raises(GGUFHeaderError, match="bad.gguf"):
            _parse(good[:cut])
    with pytest.raises(GGUFHeaderError, match="not a GGUF file"):
        _parse(b"GGML" + good[4:])
    with pytest.raises(GGUFHeaderError, match="version 1"):
        _parse(good[:4] + struct.pack("<I", 1) + good[8:])
    with pytest.raises(GGUFHeaderError, match="big-endian"):
        _parse(good[:4] + struct.pack(">I", 3) + good[8:])
    with pytest.raises(GGUFHeaderError, match="tensors"):  # 2^40 tensors
        _parse(good[:8] + struct.pack("<Q", 1 << 40) + good[16:])
    with pytest.raises(GGUFHeaderError, match="metadata"):  # 999,999 entries cannot fit the file
        _parse(good[:16] + struct.pack("<Q", 999_999) + good[24:])
    # the first key's length: 2^62 bytes
    with pytest.raises(GGUFHeaderError, match="100 MB"):
        _parse(good[:24] + struct.pack("<Q", 1 << 62) + good[32:])
    # tensor data past the end (the file cut after its header)
    with pytest.raises(GGUFHeaderError, match="past the file's end"):
        _parse(good[:h.data_offset + 10])


def test_bad_dims_and_types(tmp_path):
    spec = fac.llama(n_layer=1)
    (path,) = fac.write_gguf(tmp_path / "ok.gguf", spec)
    data = bytearray(path.read_bytes())
    h = _parse(bytes(data))
    # locate the first tensor info: its name string "token_embd.weight"
    name = b"token_embd.weight"
    at = data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)
    bad_dims = bytes(data[:at]) + struct.pack("<I", 5) + bytes(data[at + 4:])
    with pytest.raises(GGUFHeaderError, match="at most 4"):
        _parse(bad_dims)
    type_at = at + 4 + 8 * 2  # n_dims (u32) then two u64 extents
    bad_type = bytes(data[:type_at]) + struct.pack("<I", 4) + bytes(data[type_at + 4:])  # 4 = removed Q4_2
    with pytest.raises(GGUFHeaderError, match="ggml type 4"):
        _parse(bad_type)
    off_at = type_at + 4
    bad_off = bytes(data[:off_at]) + struct.pack("<Q", 7) + bytes(data[off_at + 8:])
    with pytest.raises(GGUFHeaderError, match="alignment"):
        _parse(bad_off)
    assert h.tensors[0].name == "token_embd.weight"


def test_fuzz_damaged_bytes(tmp_path):
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import given, settings, strategies as st

    good = _good_bytes(tmp_path)

    @settings(max_examples=50, deadline=None, database=None, derandomize=True)
    @given(st.integers(0, 4000), st.binary(min_size=1, max_size=8))
    def run(pos, junk):
        data = good[:pos] + junk + good[pos + len(junk):]
        try:
            _parse(data)
        except GGUFHeaderError:
            pass

    assert hypothesis
    run()


# ---------------------------------------------------------------- names and groups


def test_labels_from_names():
    assert label_from_name("Meta-Llama-3-8B-Instruct-Q4_K_M.gguf") == "Q4_K_M"
    assert label_from_name("gemma-2-9b-it-IQ4_XS.gguf") == "IQ4_XS"
    assert label_from_name("qwen2.5-7b-instruct-q8_0.gguf") == "Q8_0"
    assert label_from_name("Qwen3-30B-A3B-UD-Q4_K_XL.gguf") == "UD-Q4_K_XL"
    assert label_from_name("ggml-model-f16.gguf") == "F16"
    assert label_from_name("BF16/Qwen3-235B-A22B-BF16-00001-of-00010.gguf") == "BF16"
    assert label_from_name("Q4_K_M/model-00001-of-00002.gguf") == "Q4_K_M"
    assert label_from_name("model.gguf") is None
    assert split_ref("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M") == ("bartowski/Llama-3.2-1B-Instruct-GGUF",
                                                                             "Q4_K_M")
    assert split_ref("org/repo") == ("org/repo", None)
    assert is_gguf_only(["a-Q4_0.gguf", "README.md"]) and not is_gguf_only(["config.json", "a.gguf"])


def test_group_files_splits_and_folders():
    names = ["m-Q8_0.gguf", "Q4_K_M/m-Q4_K_M-00002-of-00002.gguf", "Q4_K_M/m-Q4_K_M-00001-of-00002.gguf",
             "mmproj-F16.gguf", "README.md"]
    groups = {g[0]: g for g in group_files(names)}
    assert groups["Q4_K_M"][1] == ["Q4_K_M/m-Q4_K_M-00001-of-00002.gguf", "Q4_K_M/m-Q4_K_M-00002-of-00002.gguf"]
    assert groups["Q8_0"][2] == "model" and groups["F16"][2] == "mmproj"
    with pytest.raises(GGUFHeaderError, match="m-Q4_K_M-00002-of-00003.gguf"):
        group_files(["m-Q4_K_M-00001-of-00003.gguf", "m-Q4_K_M-00003-of-00003.gguf"])


# ---------------------------------------------------------------- local files, folders, splits


def test_local_file_folder_and_split(tmp_path):
    folder = tmp_path / "repo"
    folder.mkdir()
    (one,) = fac.write_gguf(folder / "tiny-Q8_0.gguf", fac.llama(wt="Q8_0"))
    parts = fac.write_gguf(folder / "tiny-Q4_0.gguf", fac.llama(wt="Q4_0"), split_count=2)
    (proj,) = fac.write_gguf(folder / "mmproj-tiny-F16.gguf", fac.mmproj())
    repo = load_gguf(str(folder), Options())
    assert repo.source == "local"
    labels = {v.label: v for v in repo.variants}
    assert set(labels) == {"Q8_0", "Q4_0"}
    assert labels["Q4_0"].files == tuple(p.name for p in parts)
    assert labels["Q4_0"].size_bytes == sum(p.stat().st_size for p in parts)
    ref_tensors = [t.name for p in parts for t in gguf.GGUFReader(p).tensors]
    assert [t.name for t in labels["Q4_0"].tensors] == ref_tensors
    assert [h.split for h in labels["Q4_0"].headers] == [(0, 2), (1, 2)]
    assert [v.size_bytes for v in repo.variants] == sorted((v.size_bytes for v in repo.variants), reverse=True)
    assert [p.role for p in repo.projectors] == ["mmproj"] and repo.projectors[0].files == (proj.name,)
    # one part given: the whole split
    by_part = load_gguf(str(parts[1]), Options())
    assert by_part.variants[0].files == tuple(p.name for p in parts)
    # a single file
    single = load_gguf(str(one), Options())
    assert [v.label for v in single.variants] == ["Q8_0"] and single.variants[0].size_bytes == one.stat().st_size
    # select
    assert [v.label for v in load_gguf(str(folder), Options(), select="q4_0").variants] == ["Q4_0"]
    with pytest.raises(UsageError, match="Q9"):
        load_gguf(str(folder), Options(), select="Q9")
    # a missing part is named
    parts[1].unlink()
    with pytest.raises(GGUFHeaderError, match=parts[1].name):
        load_gguf(str(folder), Options())


def test_label_from_file_type_and_header_role(tmp_path):
    (path,) = fac.write_gguf(tmp_path / "model.gguf", fac.llama(wt="Q8_0"))
    (proj,) = fac.write_gguf(tmp_path / "vision.gguf", fac.mmproj())
    repo = load_gguf(str(tmp_path), Options())
    # general.file_type 7 is LLAMA_FTYPE_MOSTLY_Q8_0 (llama.cpp include/llama.h)
    assert [v.label for v in repo.variants] == ["Q8_0"]
    assert [v.files for v in repo.projectors] == [("vision.gguf",)]  # by general.type "mmproj"


def test_local_errors(tmp_path):
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(ModelNotFoundError, match="no .gguf"):
        load_gguf(str(tmp_path), Options())
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + struct.pack("<I", 3) + b"\xff" * 7)
    with pytest.raises(GGUFHeaderError, match="bad.gguf"):
        load_gguf(str(bad), Options())


def test_no_torch_on_local_path(tmp_path):
    (path,) = fac.write_gguf(tmp_path / "tiny-Q8_0.gguf", fac.llama())
    code = ("import sys; from hfmem.sources.gguf import load_gguf; from hfmem.report import Options; "
            f"r = load_gguf({str(path)!r}, Options()); print(r.variants[0].label, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "HFMEM_HOME": str(tmp_path / "hm")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Q8_0", "False"]


# ---------------------------------------------------------------- the Hub


REPO = "org/tiny-GGUF"


@pytest.fixture
def gguf_hub(fake_hub, monkeypatch, tmp_path):
    """A repo with three single-file variants at real sizes (LazyFile: header then zeros), one split
    variant in its own folder, an mmproj and a README."""
    from hubserver import LazyFile

    # vocab_size instead of 128k token strings: GGUFWriter and GGUFReader take seconds over those
    big = dict(n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, n_ff=14336, vocab=128256, with_tokens=False)
    files, sizes = {"README.md": b"# tiny"}, {}
    for wt in ("Q4_K", "Q8_0", "F16"):
        label = {"Q4_K": "Q4_K_M"}.get(wt, wt)
        head, size = fac.header_and_size(fac.llama(wt=wt, **big), tmp_path)
        files[f"Tiny-{label}.gguf"] = LazyFile(head, size)
        sizes[label] = size
    split_paths = fac.write_header_only(tmp_path / "Tiny-Q4_0.gguf", *_md_tensors(fac.llama(wt="Q4_0", **big)),
                                        split_count=2)
    for p in split_paths:
        files[f"Q4_0/{p.name}"] = LazyFile(_head(p), p.stat().st_size)
    sizes["Q4_0"] = sum(p.stat().st_size for p in split_paths)
    head, size = fac.header_and_size(fac.mmproj(), tmp_path)
    files["mmproj-F16.gguf"] = LazyFile(head, size)
    sizes["mmproj"] = size
    sha = fake_hub.add_repo(REPO, files, library_name="gguf")
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    return fake_hub, sha, sizes


def _md_tensors(spec):
    return spec.metadata, spec.tensors


def _head(p) -> bytes:
    with open(p, "rb") as fh:
        return fh.read(gguf.GGUFReader(p).data_offset)


def _gguf_requests(hub):
    return [(path, h.get("range")) for _, path, h in hub.requests if ".gguf" in path]


def test_hub_variants_by_range_reads(gguf_hub):
    hub, sha, sizes = gguf_hub
    repo = load_gguf(REPO, Options())
    assert repo.source == "hub" and repo.revision == sha
    assert {v.label: v.size_bytes for v in repo.variants} == {k: v for k, v in sizes.items() if k != "mmproj"}
    # by size: Q4_0 (18 bytes / 32) and Q4_K (144 / 256) weigh the same; the split's second header tips it
    assert [v.label for v in repo.variants] == ["F16", "Q8_0", "Q4_0", "Q4_K_M"]
    assert sizes["Q4_0"] > sizes["Q4_K_M"]
    assert [v.label for v in repo.projectors] == ["F16"] and repo.projectors[0].size_bytes == sizes["mmproj"]
    q4 = {v.label: v for v in repo.variants}["Q4_0"]
    assert len(q4.files) == 2 and all(f.startswith("Q4_0/") for f in q4.files)
    # tensor bytes by hand: Llama-3-8B shapes at Q4_K (see test_real_size_header_only_file)
    q4k = lambda n: n // 256 * 144  # noqa: E731
    per_layer = 4096 * 8 + q4k(4096 * 4096) * 2 + q4k(4096 * 1024) * 2 + q4k(4096 * 14336) * 3
    assert {v.label: v for v in repo.variants}["Q4_K_M"].tensor_bytes == q4k(4096 * 128256) * 2 + 4096 * 4 + 32 * per_layer
    reqs = _gguf_requests(hub)
    assert reqs and all(r and r.startswith("bytes=") for _, r in reqs)  # only Range requests on .gguf files
    for key, served in hub.bytes_served.items():
        if key.endswith(".gguf") and "mmproj" not in key and "Q4_0/" not in key:
            assert served <= 2 * 1024 * 1024 < sizes["Q4_K_M"] / 1000  # one 2 MiB window at most
    assert repo.requests == 1 + len(reqs)


def test_hub_select_and_cache(gguf_hub):
    hub, sha, _ = gguf_hub
    repo = load_gguf(f"hf.co/{REPO}:q8_0", Options())
    assert [v.label for v in repo.variants] == ["Q8_0"]
    read = {p.split("/resolve/")[1].split("/", 1)[1] for p, _ in _gguf_requests(hub)}
    assert read == {"Tiny-Q8_0.gguf", "mmproj-F16.gguf"}
    hub.clear_log()
    again = load_gguf(REPO, Options(), select="Q8_0")
    assert again.variants[0].tensors == repo.variants[0].tensors
    assert _gguf_requests(hub) == [] and len(hub.requests) == 1  # the model info only
    assert sum(hub.bytes_served.values()) == 0 or all(".gguf" not in k for k in hub.bytes_served)


def test_hub_ignore_range_does_not_download(gguf_hub):
    hub, _, sizes = gguf_hub
    hub.set_fault("ignore_range", path_contains="Tiny-F16.gguf")
    repo = load_gguf(REPO, Options(), select="F16")
    assert repo.variants[0].label == "F16"
    served = hub.bytes_served[f"{REPO}/Tiny-F16.gguf"]
    # one 2 MiB window (the header is ~30 kB) plus what the socket buffers before the close, not 16 GB
    assert served < 64 * 1024 * 1024 and sizes["F16"] > 10 * 1_000_000_000


def test_hub_offline_and_unreachable(gguf_hub, monkeypatch):
    hub, sha, _ = gguf_hub
    with pytest.raises(OfflineMissError, match=REPO):
        load_gguf(REPO, Options(offline=True))
    load_gguf(REPO, Options(), select="Q8_0")  # reads and caches one variant
    hub.set_fault("status", status=503, path_contains="/api/models")  # the Hub down (retried, then given up)
    repo = load_gguf(REPO, Options())
    assert [v.label for v in repo.variants] == ["Q8_0"] and repo.revision == sha
    assert any("hfmem's cache" in n for n in repo.notes)


def test_hub_no_gguf(fake_hub, monkeypatch):
    fake_hub.add_repo("org/plain", {"README.md": b"x"})
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    with pytest.raises(ModelNotFoundError, match="no .gguf"):
        load_gguf("org/plain", Options())


def test_hf_cache_download_is_read_offline(fake_hub, monkeypatch, tmp_path):
    (path,) = fac.write_gguf(tmp_path / "Tiny-Q8_0.gguf", fac.llama())
    sha = fake_hub.add_repo("org/cached-GGUF", {"Tiny-Q8_0.gguf": path.read_bytes()})
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    from huggingface_hub import hf_hub_download

    hf_hub_download("org/cached-GGUF", "Tiny-Q8_0.gguf", endpoint=fake_hub.endpoint)
    fake_hub.clear_log()
    repo = load_gguf("org/cached-GGUF", Options(offline=True))
    assert repo.source == "hf-cache" and repo.revision == sha
    assert [t.name for t in repo.variants[0].tensors] == [t.name for t in gguf.GGUFReader(path).tensors]
    assert fake_hub.requests == []
    np.testing.assert_equal(repo.variants[0].size_bytes, path.stat().st_size)
