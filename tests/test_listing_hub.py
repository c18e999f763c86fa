"""The listing fixtures (tests/listing_hub.py) against independent sources: parameter totals against counts the
real Hub and other tools published, the served safetensors files read by huggingface_hub's own client and by the
safetensors package's reader, and what populate() says it registered against what the local Hub lists."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import urllib.request

import pytest
from huggingface_hub import HfApi, hf_hub_url

import listing_hub as L

# Published exact parameter counts, each for this very repo id:
PUBLISHED = {
    # floschne/gimmick, src/gimmick/models/__init__.py get_model_sizes(): values taken from the real Hub with
    # HfApi().get_safetensors_metadata(repo_id).parameter_count (the code comment there shows the loop).
    "Qwen/Qwen2.5-3B-Instruct": 3_085_938_688,
    "Qwen/Qwen2.5-7B-Instruct": 7_615_616_512,
    "Qwen/Qwen2-VL-2B-Instruct": 2_208_985_600,
    # The Hub's API for Qwen/Qwen3-0.6B: "safetensors": {"parameters": {"BF16": 751632384}} (asserted as
    # info.SafeTensors.Total by a public Go Hub client's test of that repo); its checkpoint stores the tied head.
    "Qwen/Qwen3-0.6B": 751_632_384,
    # KerasHub's t5_1.1_xl preset metadata "params": 2849757184 (T5 v1.1 XL, the architecture and shapes of
    # google/flan-t5-xl), the Hub's safetensors count for google/flan-t5-xl; the untied head included.
    "google/flan-t5-xl": 2_849_757_184,
    # karpathy/llm.c README, the GPT-2 (124M) run's printout: "num_parameters: 124439808" (wte tied to the head).
    "openai-community/gpt2": 124_439_808,
}


@pytest.fixture
def api(fake_hub):
    return HfApi(endpoint=fake_hub.endpoint, token=False)


def test_header_totals_match_published_counts(fake_hub, api):
    listed = {r.repo_id: r for r in L.populate(fake_hub, only=list(PUBLISHED))}
    for repo_id, published in PUBLISHED.items():
        assert listed[repo_id].params == published, repo_id
        # the same total as huggingface_hub's client reads it from the served headers (index + every shard)
        meta = api.get_safetensors_metadata(repo_id)
        assert sum(meta.parameter_count.values()) == published, repo_id


def test_sharded_checkpoint_as_the_hub_serves_it(fake_hub, api):
    # Qwen2.5-7B-Instruct in BF16: 7,615,616,512 x 2 bytes = 15.2 GB, so 5 GB shards make at least 4 files
    (repo,) = L.populate(fake_hub, only=["Qwen/Qwen2.5-7B-Instruct"])
    meta = api.get_safetensors_metadata(repo.repo_id)
    assert meta.sharded and len(meta.files_metadata) >= 4
    assert set(meta.parameter_count) == {"BF16"}
    info = api.model_info(repo.repo_id, files_metadata=True)
    sizes = {s.rfilename: s.size for s in info.siblings}
    index = json.loads(_get(hf_hub_url(repo.repo_id, "model.safetensors.index.json", endpoint=fake_hub.endpoint)))
    shards = sorted(set(index["weight_map"].values()))
    assert shards == sorted(meta.files_metadata) == [f"model-{k:05d}-of-{len(shards):05d}.safetensors"
                                                     for k in range(1, len(shards) + 1)]
    assert all(sizes[s] <= L.SHARD_MAX_BYTES + 2**20 for s in shards)  # data ≤ 5 GB, plus the header
    assert index["metadata"]["total_size"] == 2 * 7_615_616_512
    # the files are their real size: header + 2 bytes per BF16 element, nothing missing
    assert sum(sizes[s] for s in shards) == 2 * 7_615_616_512 + sum(
        8 + struct.unpack("<Q", _range(fake_hub, repo.repo_id, s, 0, 7))[0] for s in shards)


def _get(url: str, headers: dict | None = None, method: str = "GET") -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}, method=method)) as r:
        return r.read() if method == "GET" else r.headers


def _range(hub, repo_id: str, filename: str, start: int, end: int) -> bytes:
    data = _get(hf_hub_url(repo_id, filename, endpoint=hub.endpoint), {"Range": f"bytes={start}-{end}"})
    assert len(data) == end - start + 1
    return data


def test_served_header_parses_with_the_safetensors_package(fake_hub, tmp_path):
    from safetensors import safe_open

    (repo,) = L.populate(fake_hub, only=["HuggingFaceTB/SmolLM2-135M-Instruct"])
    url = hf_hub_url(repo.repo_id, "model.safetensors", endpoint=fake_hub.endpoint)
    size = int(_get(url, method="HEAD")["content-length"])
    (n,) = struct.unpack("<Q", _range(fake_hub, repo.repo_id, "model.safetensors", 0, 7))
    head = _range(fake_hub, repo.repo_id, "model.safetensors", 0, 8 + n - 1)
    path = tmp_path / "model.safetensors"
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)  # sparse: the zeros the server would send cost no disk
    total = 0
    with safe_open(path, "np") as f:  # the safetensors library validates offsets against the file size
        for name in f.keys():
            shape = f.get_slice(name).get_shape()
            count = 1
            for d in shape:
                count *= d
            total += count
        # SmolLM2-135M ties lm_head to embed_tokens (config tie_word_embeddings): the file has no lm_head
        assert "lm_head.weight" not in f.keys() and "model.embed_tokens.weight" in f.keys()
        assert f.get_slice("model.embed_tokens.weight").get_shape() == [49152, 576]  # config: vocab, hidden
    assert total == repo.params


def test_populate_registers_what_it_returns(fake_hub, api):
    listed = L.populate(fake_hub)
    assert len(listed) == len(L.MODELS) + 3 and len({r.repo_id for r in listed}) == len(listed)
    assert {r.kind for r in listed} == {"safetensors", "gguf", "unsupported"}
    assert len({r.downloads for r in listed}) == len(listed) and len({r.likes for r in listed}) == len(listed)
    by_id = {m.id: m for m in api.list_models(full=True)}  # the listing endpoint, every page
    assert set(by_id) == {r.repo_id for r in listed}
    for r in listed:
        m = by_id[r.repo_id]
        assert (m.downloads, m.likes, m.pipeline_tag, bool(m.gated)) == (r.downloads, r.likes, r.pipeline_tag,
                                                                         r.gated), r.repo_id
        if r.license:
            assert f"license:{r.license}" in m.tags
    gated = {r.repo_id for r in listed if r.gated}
    assert gated and all(g.startswith(("meta-llama/", "google/gemma")) for g in gated)
    # the unsupported repo: custom code and no weights in a format hfmem reads
    info = api.model_info(L.UNSUPPORTED_REPO.repo_id)
    names = {s.rfilename for s in info.siblings}
    assert not any(n.endswith((".safetensors", ".gguf")) for n in names)
    assert "auto_map" in info.config


def test_populate_many_cycles_with_distinct_downloads(fake_hub, api):
    n = 2 * len(L.MODELS) + 5
    many = L.populate_many(fake_hub, n)
    assert [r.repo_id for r in many[:2]] == ["bench/SmolLM2-135M-Instruct-0", "bench/SmolLM2-360M-Instruct-1"]
    assert len({r.downloads for r in many}) == n
    # copy i serves the files of model i mod 37: the same totals, read back through the client
    k = len(L.MODELS) + 1
    assert api.get_safetensors_metadata(many[k].repo_id).parameter_count == \
        api.get_safetensors_metadata(many[1].repo_id).parameter_count
    top = [m.id for m in api.list_models(author="bench", sort="downloads", limit=3)]
    assert top == [r.repo_id for r in sorted(many, key=lambda r: -r.downloads)[:3]]


def test_serving_the_fixtures_needs_no_torch():
    # the benchmark imports listing_hub next to hfmem: building the served files must not pull torch in
    code = ("import sys; sys.path.insert(0, 'tests'); import listing_hub as L; "
            "L.safetensors_files('mistralai/Mixtral-8x7B-v0.1'); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=L.ROOT, check=True, timeout=60)
