"""What hfmem asks the Hub for a new model, and what it asks at once — against tests/hubserver.py.

The rule being checked (hfmem/sources/hub.py): one model-info call; then config.json together with the single
file's header or the shard index; then every shard's header together; each header by one range read of the
first 100,000 bytes, a second one only for a longer header; nothing else of the repository. Several models are
fetched together, at most ``resolve.MODELS_AT_ONCE`` at a time. "Together" is read off the fake's timeline: a
request that arrived before another one's answer was written was in flight with it (a fault slows the answer
down, so the window is wide; nothing here asserts how long anything took).
"""

from __future__ import annotations

import json
import struct

import pytest

from hubserver import LazyFile, in_flight_at_most
from hfmem import api
from hfmem.sources import resolve

HEADER_PROBE = 100_000  # the first range read: bytes 0-99999


def llama_config(layers: int, hidden: int = 64, inter: int = 160, vocab: int = 512) -> dict:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
            "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": 4,
            "num_key_value_heads": 4, "vocab_size": vocab, "max_position_embeddings": 256,
            "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "torch_dtype": "float16"}


def llama_params(cfg: dict) -> int:
    """By hand: embeddings and lm_head V·H each; per layer q/k/v/o 4·H² (4 kv heads = 4 heads), gate/up/down
    3·H·I, two RMSNorm weights 2·H; the final norm H."""
    v, h, i, n = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    return 2 * v * h + n * (4 * h * h + 3 * h * i + 2 * h) + h


def llama_tensors(cfg: dict) -> list[tuple[str, list[int]]]:
    v, h, i = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]
    out = [("model.embed_tokens.weight", [v, h]), ("model.norm.weight", [h]), ("lm_head.weight", [v, h])]
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        out += [(p + f"self_attn.{x}_proj.weight", [h, h]) for x in "qkvo"]
        out += [(p + "mlp.gate_proj.weight", [i, h]), (p + "mlp.up_proj.weight", [i, h]),
                (p + "mlp.down_proj.weight", [h, i])]
        out += [(p + "input_layernorm.weight", [h]), (p + "post_attention_layernorm.weight", [h])]
    return out


def safetensors_file(tensors: list[tuple[str, list[int]]], metadata: dict | None = None,
                     dtype: str = "F16") -> tuple[LazyFile, int]:
    """A safetensors file of ``dtype`` tensors (header, then zeros) and its header length."""
    header, pos = {"__metadata__": metadata or {"format": "pt"}}, 0
    width = {"F16": 2, "BF16": 2, "F32": 4}[dtype]
    for name, shape in tensors:
        n = width
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + n]}
        pos += n
    blob = json.dumps(header).encode()
    return LazyFile(struct.pack("<Q", len(blob)) + blob, 8 + len(blob) + pos), len(blob)


def single_repo(cfg: dict, **extra) -> dict:
    blob, _ = safetensors_file(llama_tensors(cfg))
    return {"config.json": json.dumps(cfg).encode(), "model.safetensors": blob,
            "README.md": b"# a model card hfmem has no use for\n", "tokenizer.json": b"{}", **extra}


def sharded_repo(cfg: dict, shards: int) -> dict:
    tensors = llama_tensors(cfg)
    files, weight_map = {"config.json": json.dumps(cfg).encode()}, {}
    for k in range(shards):
        name = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = tensors[k::shards]
        files[name], _ = safetensors_file(part)
        weight_map.update({t: name for t, _ in part})
    files["model.safetensors.index.json"] = json.dumps({"metadata": {}, "weight_map": weight_map}).encode()
    return files


@pytest.fixture
def hub(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    return fake_hub


def ours(hub) -> list:
    """hfmem's own reads: everything but the Hugging Face cache fill (huggingface_hub's hf_hub_download of
    config.json by branch name, a HEAD and a GET under /resolve/main/)."""
    return [s for s in hub.timeline if "/resolve/main/" not in s.path]


def one(spans: list, needle: str):
    found = [s for s in spans if needle in s.path]
    assert len(found) == 1, [(s.method, s.path, s.range) for s in found]
    return found[0]


def test_single_file_model_config_and_header_together(hub):
    cfg = llama_config(layers=3)
    sha = hub.add_repo("org/single", single_repo(cfg))
    hub.set_fault("delay", path_contains="config.json", delay_s=0.4)
    report = api.analyze("org/single")
    assert report.inventory.num_params == llama_params(cfg) == 207_296  # 65,536 + 3 × 47,232 + 64
    assert report.inventory.method == "headers-exact"
    spans = ours(hub)
    info, config = one(spans, "/api/models/org/single"), one(spans, f"/resolve/{sha}/config.json")
    header = one(spans, "model.safetensors")
    assert info.method == "GET" and header.range == f"bytes=0-{HEADER_PROBE - 1}"
    assert header.arrived < config.done  # asked while config.json was still on its way
    assert info.done <= min(config.arrived, header.arrived)  # the commit sha comes first
    assert len(spans) == 3  # nothing else: no README, no tokenizer, no tree listing
    # the cache fill reads config.json and nothing else
    assert {s.path.rsplit("/", 1)[-1] for s in hub.timeline if "/resolve/main/" in s.path} == {"config.json"}


@pytest.mark.parametrize("slow", ["config.json", "-of-00003.safetensors"])
def test_sharded_model_index_with_config_then_shards_together(hub, slow):
    cfg = llama_config(layers=4)
    sha = hub.add_repo("org/sharded", sharded_repo(cfg, 3))
    hub.set_fault("delay", path_contains=slow, delay_s=0.4)
    report = api.analyze("org/sharded")
    assert report.inventory.num_params == llama_params(cfg)
    spans = ours(hub)
    config, index = one(spans, f"/resolve/{sha}/config.json"), one(spans, "model.safetensors.index.json")
    shards = [s for s in spans if "-of-00003.safetensors" in s.path]
    assert sorted(s.path.rsplit("/", 1)[-1] for s in shards) == [f"model-{k:05d}-of-00003.safetensors"
                                                                  for k in (1, 2, 3)]
    assert all(s.range == f"bytes=0-{HEADER_PROBE - 1}" for s in shards)  # each header in one read
    assert len(spans) == 1 + 1 + 1 + 3  # model info, config.json, index, three headers
    if slow == "config.json":
        assert index.arrived < config.done
    else:
        assert max(s.arrived for s in shards) < min(s.done for s in shards)  # all three in flight at once
    assert index.done <= min(s.arrived for s in shards)  # the shard names come from the index


def test_long_header_takes_exactly_one_more_read(hub):
    cfg = llama_config(layers=2)
    blob, n = safetensors_file(llama_tensors(cfg), metadata={"format": "pt", "notes": "x" * 150_000})
    assert n > HEADER_PROBE
    hub.add_repo("org/long", {"config.json": json.dumps(cfg).encode(), "model.safetensors": blob})
    report = api.analyze("org/long")
    assert report.inventory.num_params == llama_params(cfg)
    reads = [s.range for s in ours(hub) if s.path.endswith("model.safetensors")]
    # the prefix says the header is n bytes: bytes 8 .. 8+n-1 of the file, the first 100,000 already in
    assert reads == [f"bytes=0-{HEADER_PROBE - 1}", f"bytes={HEADER_PROBE}-{8 + n - 1}"]
    assert hub.bytes_served["org/long/model.safetensors"] == 8 + n  # not one byte of the weights


def test_models_side_by_side_are_fetched_together_in_order(hub):
    cfgs = {f"org/m{k}": llama_config(layers=k) for k in (1, 2, 3)}
    for repo, cfg in cfgs.items():
        hub.add_repo(repo, single_repo(cfg))
    hub.set_fault("delay", path_contains="/api/models/", delay_s=0.4)
    reports = api.analyze_many(list(cfgs))
    assert [r.model for r in reports] == list(cfgs)  # the order asked, whatever answered first
    assert [r.inventory.num_params for r in reports] == [llama_params(c) for c in cfgs.values()]
    infos = [s for s in hub.timeline if "/api/models/" in s.path]
    assert len(infos) == 3
    assert max(s.arrived for s in infos) < min(s.done for s in infos)  # the three in flight at once
    # seen again: every answer from hfmem's result cache, no request at all
    hub.clear_log()
    again = api.analyze_many(list(cfgs))
    assert all(r.from_result_cache for r in again) and hub.timeline == []


def test_many_models_are_fetched_with_a_bound(hub):
    repos = [f"org/b{k}" for k in range(12)]
    cfg = llama_config(layers=1)
    for repo in repos:
        hub.add_repo(repo, single_repo(cfg))
    hub.set_fault("delay", path_contains="/api/models/", delay_s=0.3)
    reports = api.analyze_many(repos)
    assert [r.model for r in reports] == repos
    infos = [s for s in hub.timeline if "/api/models/" in s.path]
    assert len(infos) == 12
    assert 2 <= in_flight_at_most(infos) <= resolve.MODELS_AT_ONCE == 8


def test_a_missing_model_among_others(hub):
    cfg = llama_config(layers=2)
    hub.add_repo("org/here", single_repo(cfg))
    hub.add_repo("org/also", single_repo(llama_config(layers=1)))
    failed = []
    reports = api.analyze_many(["org/here", "org/missing", "org/also"], on_error=lambda m, e: failed.append((m, e)))
    assert [r.model for r in reports] == ["org/here", "org/also"]
    assert [m for m, _ in failed] == ["org/missing"]
    assert failed[0][1].exit_code == 3 and "was not found" in failed[0][1].message
    # without on_error the first failure in the order given is raised, as when fetched one by one
    from hfmem.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="org/missing"):
        api.analyze_many(["org/here", "org/missing", "org/also"], use_cache=False)
