"""Checks that tests/hubserver.py speaks enough of the Hub protocol for the real huggingface_hub client.

Every test drives the genuine client (HfApi / hf_hub_download) against the fake, so a client upgrade that changes
the protocol shows up here first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import numpy as np
import pytest
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors.numpy import save, save_file

sys.path.insert(0, str(Path(__file__).parent))
from hubserver import FakeHub  # noqa: E402

TOKEN = "hf_fake_token_for_tests"
CONFIG = {"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1, "architectures": ["LlamaForCausalLM"]}


def _tiny_weights() -> dict[str, np.ndarray]:
    return {
        "embed.weight": np.zeros((4, 8), dtype=np.float32),  # 32 params
        "layer.0.weight": np.ones((8, 8), dtype=np.float16),  # 64 params
        "layer.0.bias": np.arange(8, dtype=np.float16),  # 8 params
        "step": np.array(3, dtype=np.int64),  # scalar: shape [] counts as 1
    }


@pytest.fixture()
def hub():
    with FakeHub() as h:
        yield h
        assert h.errors == []  # the fake itself must never have crashed


@pytest.fixture()
def api(hub):
    # token=False: never send a token found on the developer's machine, so auth tests are deterministic.
    return HfApi(endpoint=hub.endpoint, token=False)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    # Some client paths (get_safetensors_metadata on sharded repos) download without a cache_dir argument.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def _add_tiny(hub: FakeHub, repo_id: str = "org/tiny", **kwargs) -> str:
    files = {
        "config.json": json.dumps(CONFIG).encode(),
        "model.safetensors": save(_tiny_weights(), metadata={"format": "pt"}),
        "sub/dir/notes.txt": b"nested file\n",
    }
    return hub.add_repo(repo_id, files, **kwargs)


def test_model_info(hub, api):
    sha = _add_tiny(hub, branches=("main", "dev"))
    info = api.model_info("org/tiny")
    assert info.id == "org/tiny" and info.sha == sha and len(sha) == 40
    assert sorted(s.rfilename for s in info.siblings) == ["config.json", "model.safetensors", "sub/dir/notes.txt"]
    assert info.gated is False and info.private is False
    assert info.library_name == "transformers"
    assert info.config == CONFIG
    assert info.safetensors.parameters == {"F32": 32, "F16": 72, "I64": 1}
    assert info.safetensors.total == 105
    assert info.last_modified is not None
    assert all(s.size is None for s in info.siblings)  # sizes only on request, like the Hub

    # Branch name and full sha both resolve; files_metadata=True (?blobs=true) adds sizes.
    by_sha = api.model_info("org/tiny", revision=sha, files_metadata=True)
    assert by_sha.sha == sha
    assert {s.rfilename: s.size for s in by_sha.siblings}["sub/dir/notes.txt"] == len(b"nested file\n")
    assert api.model_info("org/tiny", revision="dev").sha == sha

    # expand= returns only what was asked for.
    expanded = api.model_info("org/tiny", expand=["safetensors", "gated"])
    assert expanded.safetensors.total == 105 and expanded.gated is False and expanded.siblings is None

    assert sorted(api.list_repo_files("org/tiny")) == ["config.json", "model.safetensors", "sub/dir/notes.txt"]
    top = {e.path: type(e).__name__ for e in api.list_repo_tree("org/tiny")}
    assert top == {"config.json": "RepoFile", "model.safetensors": "RepoFile", "sub": "RepoFolder"}


def test_hf_hub_download_exact_bytes(hub, tmp_path):
    big = tmp_path / "blob.bin"
    payload = os.urandom(3 * 1024 * 1024 + 17)  # spans several server chunks
    big.write_bytes(payload)
    sha = hub.add_repo("org/files", {"a.txt": b"hello", "deep/b.bin": big})

    for filename, expected in (("a.txt", b"hello"), ("deep/b.bin", payload)):
        local = hf_hub_download(
            "org/files", filename, endpoint=hub.endpoint, cache_dir=tmp_path / "c", token=False
        )
        assert Path(local).read_bytes() == expected
        assert f"/snapshots/{sha}/" in Path(local).as_posix()

    heads = [p for m, p, _ in hub.requests if m == "HEAD"]
    assert heads == ["/org/files/resolve/main/a.txt", "/org/files/resolve/main/deep/b.bin"]
    assert hub.bytes_served["org/files/deep/b.bin"] == len(payload)


def test_get_safetensors_metadata_reads_only_the_header(hub, api, tmp_path):
    # Served from disk, with a tensor large enough that a full download would be obvious in bytes_served.
    weights = {**_tiny_weights(), "big": np.zeros((512, 1024), dtype=np.float32)}
    path = tmp_path / "model.safetensors"
    save_file(weights, str(path))
    hub.add_repo("org/st", {"model.safetensors": path})

    meta = api.get_safetensors_metadata("org/st")
    assert not meta.sharded
    tensors = meta.files_metadata["model.safetensors"].tensors
    assert tensors["embed.weight"].dtype == "F32" and tensors["embed.weight"].shape == [4, 8]
    assert tensors["layer.0.bias"].dtype == "F16" and tensors["layer.0.bias"].shape == [8]
    assert tensors["step"].shape == []
    assert meta.parameter_count == {"F32": 32 + 512 * 1024, "F16": 72, "I64": 1}

    ranged = [h["range"] for m, p, h in hub.requests if m == "GET" and p.endswith("model.safetensors")]
    assert ranged == ["bytes=0-100000"]
    assert hub.bytes_served["org/st/model.safetensors"] == 100001 < path.stat().st_size


def test_large_safetensors_header_needs_second_range(hub, api, tmp_path):
    # ~2000 tensors with long names push the JSON header past the client's first 100 kB read.
    weights = {f"model.layers.{i}.self_attn.some_rather_long_projection_name.weight": np.zeros((2,), np.float32)
               for i in range(2000)}
    path = tmp_path / "model.safetensors"
    save_file(weights, str(path))
    hub.add_repo("org/wide", {"model.safetensors": path})

    meta = api.get_safetensors_metadata("org/wide")
    assert meta.parameter_count == {"F32": 4000}
    ranges = [h["range"] for m, p, h in hub.requests if m == "GET" and "model.safetensors" in p]
    assert ranges[0] == "bytes=0-100000" and ranges[1].startswith("bytes=8-") and len(ranges) == 2


def test_sharded_safetensors(hub, api):
    shard1 = save({"a": np.zeros((2, 3), np.float32)})
    shard2 = save({"b": np.zeros((5,), np.float16)})
    index = {"metadata": {"total_size": 34},
             "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    hub.add_repo("org/sharded", {
        "model.safetensors.index.json": json.dumps(index).encode(),
        "model-00001-of-00002.safetensors": shard1,
        "model-00002-of-00002.safetensors": shard2,
    })
    assert api.model_info("org/sharded").safetensors.parameters == {"F32": 6, "F16": 5}
    for meta in (api.get_safetensors_metadata("org/sharded"), api.get_sharded_safetensors_metadata("org/sharded")):
        assert meta.sharded and meta.weight_map == index["weight_map"]
        assert meta.parameter_count == {"F32": 6, "F16": 5}


def test_typed_errors(hub, api, tmp_path):
    _add_tiny(hub)
    with pytest.raises(RepositoryNotFoundError) as exc:
        api.model_info("org/missing")
    assert not isinstance(exc.value, GatedRepoError) and exc.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/missing", "config.json", endpoint=hub.endpoint, cache_dir=tmp_path, token=False)

    with pytest.raises(RevisionNotFoundError):
        api.model_info("org/tiny", revision="nope")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/tiny", "config.json", revision="nope", endpoint=hub.endpoint, cache_dir=tmp_path,
                        token=False)

    with pytest.raises(EntryNotFoundError):
        hf_hub_download("org/tiny", "nope.json", endpoint=hub.endpoint, cache_dir=tmp_path, token=False)
    assert api.file_exists("org/tiny", "config.json") and not api.file_exists("org/tiny", "nope.json")
    assert not api.file_exists("org/missing", "config.json")


def test_gated_repo(hub, api, tmp_path):
    _add_tiny(hub, "org/gated", gated=True, token=TOKEN)
    info = api.model_info("org/gated")  # metadata stays public, as on the Hub
    assert info.gated == "auto" and info.safetensors.total == 105

    for token in (False, "hf_wrong"):
        with pytest.raises(GatedRepoError):
            hf_hub_download("org/gated", "config.json", endpoint=hub.endpoint, cache_dir=tmp_path, token=token)
    with pytest.raises(GatedRepoError):
        api.file_exists("org/gated", "config.json")  # file_exists re-raises gating on purpose

    local = hf_hub_download("org/gated", "config.json", endpoint=hub.endpoint, cache_dir=tmp_path, token=TOKEN)
    assert json.loads(Path(local).read_text()) == CONFIG
    assert api.get_safetensors_metadata("org/gated", token=TOKEN).parameter_count["F32"] == 32


def test_private_repo_looks_missing(hub, api):
    _add_tiny(hub, "org/secret", private=True, token=TOKEN)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/secret")
    with pytest.raises(RepositoryNotFoundError) as exc:
        api.model_info("org/secret", token="hf_wrong")
    assert exc.value.response.status_code == 404  # authenticated callers get 404, anonymous ones 401
    assert api.model_info("org/secret", token=TOKEN).private is True


def test_status_fault_without_retries(hub, api):
    _add_tiny(hub)
    hub.set_fault("status", path_contains="/api/models/", status=500)
    # model_info goes through a plain session.get: no retry, a single request.
    with pytest.raises(HfHubHTTPError) as exc:
        api.model_info("org/tiny")
    assert exc.value.response.status_code == 500
    assert len(hub.requests) == 1

    # get_hf_file_metadata (used by file_exists) defaults to retry_on_errors=False.
    hub.set_fault("status", path_contains="/resolve/", status=503)
    with pytest.raises(HfHubHTTPError) as exc:
        api.file_exists("org/tiny", "config.json")
    assert exc.value.response.status_code == 503 and len(hub.requests) == 2

    hub.set_fault(None)
    assert api.model_info("org/tiny").id == "org/tiny"


def test_hf_hub_download_retries_5xx_with_backoff(hub, tmp_path, monkeypatch):
    # hf_hub_download retries a failed HEAD through http_backoff (5 retries, sleeps 1, 2, 4, 8, 8 s).
    # Record the sleeps instead of waiting for them (the standard library's time.sleep, which the client's
    # backoff calls; no delay fault is set, so the server thread never sleeps here).
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    _add_tiny(hub)
    hub.set_fault("status", path_contains="config.json", status=500)
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download("org/tiny", "config.json", endpoint=hub.endpoint, cache_dir=tmp_path, token=False)
    assert sleeps == [1, 2, 4, 8, 8]
    assert [m for m, _, _ in hub.requests] == ["HEAD"] * 7  # first no-retry HEAD, then 1 + 5 retries


def test_delay_fault_triggers_client_timeout(hub, api):
    _add_tiny(hub)
    hub.set_fault("delay", path_contains="/api/models/org/tiny", delay_s=1.0)
    start = time.monotonic()
    with pytest.raises(httpx2.TimeoutException):
        api.model_info("org/tiny", timeout=0.1)
    assert time.monotonic() - start < 0.9  # gave up on the client timeout, not after the server's delay
    hub.set_fault(None)
    assert api.model_info("org/tiny").id == "org/tiny"


def test_range_edge_cases(hub):
    hub.add_repo("org/r", {"f.bin": bytes(range(10))})
    url = f"{hub.endpoint}/org/r/resolve/main/f.bin"
    with httpx2.Client() as client:
        head = client.head(url)
        assert head.status_code == 200 and head.headers["content-length"] == "10"
        assert head.headers["accept-ranges"] == "bytes" and head.headers["x-linked-size"] == "10"
        r = client.get(url, headers={"Range": "bytes=4-100"})  # end past EOF is clipped
        assert r.status_code == 206 and r.content == bytes(range(4, 10))
        assert r.headers["content-range"] == "bytes 4-9/10"
        r = client.get(url, headers={"Range": "bytes=-3"})
        assert r.status_code == 206 and r.content == bytes([7, 8, 9])
        r = client.get(url, headers={"Range": "bytes=10-20"})
        assert r.status_code == 416 and r.headers["content-range"] == "bytes */10"


def test_hf_endpoint_env_in_subprocess(hub):
    sha = _add_tiny(hub)
    code = "from huggingface_hub import model_info; print(model_info('org/tiny', token=False).sha)"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "HF_ENDPOINT": hub.endpoint},
        capture_output=True, text=True, timeout=30, check=True,
    )
    assert out.stdout.strip() == sha
