"""The Hub path end to end against a local server that speaks the Hub's protocol (tests/hubserver.py),
serving the real all-MiniLM-L6-v2 checkpoint, reference configs and a tiny custom-code model."""

from __future__ import annotations

import json
import struct

import pytest
from typer.testing import CliRunner

import tinycustom
from conftest import ROOT, json_out, run_hfmem
from hfmem.cli import app, route_argv
from hfmem.sources import resultcache

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TOKEN = "hf_test_token"
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, route_argv(list(args)))


def assert_fails(args: tuple, code: int, *needles: str):
    """Run the CLI and check the error contract: exit code, one line on stderr, no traceback, and no cache
    entry written by the failed run."""
    before = len(resultcache.entries())
    result = cli(*args)
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hfmem: error:"), result.stderr
    assert "Traceback" not in result.stderr
    for n in needles:
        assert n in err[0], err[0]
    assert len(resultcache.entries()) == before  # nothing half-written by a failed analysis


@pytest.fixture
def hub(fake_hub, monkeypatch, minilm_dir):
    fake_hub.add_repo(MINILM, {p.name: p for p in minilm_dir.iterdir() if p.is_file()})
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    return fake_hub


def test_real_checkpoint_from_hub(hub, minilm_dir):
    result = cli(MINILM, "--format", "json")
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["models"][0]
    assert m["source"] == "hub" and len(m["revision"]) == 40
    assert m["parameters"] == 22_713_216  # by hand: tests/test_safetensors_headers.py
    assert m["checkpoint"]["elements_by_dtype"]["float32"] == 22_713_216
    assert m["parameters_by_dtype"] == {"float32": 22_713_216}
    assert any("matches the safetensors headers" in n for n in m["notes"])
    # Only the header was read, by range requests: never the 90 MB of weights
    ranges = [h.get("range") for method, path, h in hub.requests if path.endswith("model.safetensors")]
    assert ranges and all(r and r.startswith("bytes=") for r in ranges if r is not None)
    assert hub.bytes_served.get(f"{MINILM}/model.safetensors", 0) <= 100_001
    assert (minilm_dir / "model.safetensors").stat().st_size > 80_000_000


def test_repeat_uses_result_cache_without_torch(hub, tmp_path):
    env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"), "HFMEM_HOME": str(tmp_path / "hm")}
    first = json_out(run_hfmem(MINILM, "--format", "json", env=env))
    n_requests = len(hub.requests)
    proc = run_hfmem(MINILM, "--format", "json", env=env, check_torch=True)
    second = json_out(proc)
    assert "TORCH_IMPORTED=False" in proc.stderr
    assert second["models"][0]["from_result_cache"] is True
    assert second["models"][0]["parameters"] == first["models"][0]["parameters"]
    assert len(hub.requests) == n_requests  # a fresh branch entry: no network at all
    # Past the TTL: one model-info request confirms the sha did not move; still no torch
    proc = run_hfmem(MINILM, "--format", "json", env={**env, "HFMEM_CACHE_TTL": "0"}, check_torch=True)
    assert json_out(proc)["models"][0]["from_result_cache"] is True
    assert "TORCH_IMPORTED=False" in proc.stderr
    new = [p for _, p, _ in hub.requests[n_requests:]]
    assert len(new) == 1 and new[0].startswith(f"/api/models/{MINILM}")


def test_revision_and_unknown_revision(hub):
    sha = hub.add_repo("org/rev-model", {"config.json": (ROOT / "cache/models/Qwen/Qwen3-0.6B/config.json").read_bytes()},
                       branches=("main", "v1"))
    ok = cli("org/rev-model", "--revision", "v1", "--format", "json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["models"][0]["revision"] == sha
    assert_fails(("org/rev-model", "--revision", "nope", "--format", "json",), 3, "no revision 'nope'")


def test_unknown_repo(hub):
    assert_fails(("nobody/nothing",), 3, "nobody/nothing was not found")


def test_gated_repo_needs_token(hub):
    cfg = (ROOT / "cache/models/meta-llama/Llama-3.2-1B/config.json").read_bytes()
    hub.add_repo("meta-llama/Llama-3.2-1B", {"config.json": cfg}, gated="manual", token=TOKEN)
    assert_fails(("meta-llama/Llama-3.2-1B", "--no-cache",), 4, "gated", "request access",
                          "--token")
    ok = cli("meta-llama/Llama-3.2-1B", "--token", TOKEN, "--format", "json")
    assert ok.exit_code == 0, ok.stderr
    m = json.loads(ok.stdout)["models"][0]
    assert m["source"] == "hub" and m["parameters"] == 1_235_814_400  # Llama 3.2 1B model card: 1.24B


def test_private_repo_is_not_found_without_token(hub):
    hub.add_repo("me/private", {"config.json": b"{}"}, private=True, token=TOKEN)
    assert_fails(("me/private",), 3, "not found", "--token")


def test_missing_and_malformed_config(hub):
    hub.add_repo("org/no-config", {"README.md": b"hi"})
    assert_fails(("org/no-config",), 5, "has no config.json")
    hub.add_repo("org/bad-config", {"config.json": b"{not json"})
    assert_fails(("org/bad-config",), 5, "not valid JSON")


def test_unknown_architecture(hub):
    hub.add_repo("org/mystery", {"config.json": json.dumps({"model_type": "mystery", "architectures": ["Mystery"]}).encode()})
    assert_fails(("org/mystery",), 6, "'mystery' is not in transformers")


def test_unknown_architecture_counted_from_headers(hub):
    files = tinycustom.files()
    files["config.json"] = json.dumps({"model_type": "mystery", "architectures": ["MysteryForCausalLM"]}).encode()
    del files["modeling_tiny.py"], files["configuration_tiny.py"]
    hub.add_repo("org/mystery-weights", files)
    result = cli("org/mystery-weights", "--format", "json")
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["models"][0]
    assert m["method"] == "safetensors-headers" and m["parameters"] == tinycustom.PARAMS


def _header_file(header: bytes, declared: int | None = None, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header) if declared is None else declared) + header + data


@pytest.mark.parametrize("blob,needle", [
    (_header_file(b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}', declared=60), "could not be read"),
    (_header_file(b"{}", declared=100_000_001), "could not be read"),
    (_header_file(json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 12]}}).encode(), data=b"\0" * 12),
     "offsets don't add up"),
])
def test_damaged_safetensors_on_the_hub(hub, blob, needle):
    cfg = (ROOT / "cache/models/Qwen/Qwen3-0.6B/config.json").read_bytes()
    hub.add_repo("org/damaged", {"config.json": cfg, "model.safetensors": blob})
    assert_fails(("org/damaged",), 7, needle)


def test_5xx_falls_back_to_snapshot_and_says_so(hub):
    hub.set_fault("status", status=503)
    result = cli("Qwen/Qwen3-0.6B", "--format", "json")
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["models"][0]
    assert m["source"] == "snapshot" and m["parameters"] == 596_049_920
    assert any("HTTP 503" in n and "snapshot" in n for n in m["notes"])
    assert resultcache.entries() == []  # a fallback answer is not cached as the Hub's
    assert_fails(("org/never-seen",), 8, "not available offline", "HTTP 503")


def test_timeout_falls_back_quickly(hub, monkeypatch):
    monkeypatch.setenv("HFMEM_HUB_TIMEOUT", "0.5")
    hub.set_fault("delay", delay_s=3.0)
    result = cli("Qwen/Qwen3-0.6B", "--format", "json")
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["models"][0]
    assert m["source"] == "snapshot"
    # one probe, not retried: the answer waited for one 0.5 s timeout, not for the 3 s server nor a retry loop
    assert len(hub.requests) == 1
    assert any("timed out" in n.lower() or "timeout" in n.lower() for n in m["notes"]), m["notes"]


def test_offline_env_uses_snapshot_without_requests(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = cli("Qwen/Qwen3-0.6B", "--format", "json")
    m = json.loads(result.stdout)["models"][0]
    assert m["source"] == "snapshot" and any(n.startswith("offline mode") for n in m["notes"])
    assert hub.requests == []
    assert_fails(("org/never-seen", "--offline",), 8, "not available offline")


@pytest.mark.slow  # 5-9 s of fresh processes; in the slow set to keep the default set under its 300 s budget
def test_offline_from_hugging_face_cache(hub, tmp_path):
    env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"), "HFMEM_HOME": str(tmp_path / "hm")}
    json_out(run_hfmem(MINILM, "--format", "json", env=env))  # online: config.json lands in the HF cache
    offline = {**env, "HFMEM_HOME": str(tmp_path / "hm2"), "HF_HUB_OFFLINE": "1"}  # empty hfmem cache
    m = json_out(run_hfmem(MINILM, "--format", "json", env=offline))["models"][0]
    assert m["source"] == "hf-cache" and m["parameters"] == 22_713_216
    assert any("Hugging Face cache" in n for n in m["notes"])
    # the second offline run answers from hfmem's cache; how the first run got its answer was not cached
    again = json_out(run_hfmem(MINILM, "--format", "json", env=offline))["models"][0]
    assert again["from_result_cache"] and sum("Hugging Face cache" in n for n in again["notes"]) == 1


def test_network_down_answers_from_snapshot_in_normal_time(tmp_path):
    # HF_ENDPOINT points at a closed port (conftest): connection refused, no retry loop
    proc = run_hfmem("baichuan-inc/Baichuan-7B", "--format", "json", env={"HFMEM_HOME": str(tmp_path / "hm")},
                     check_torch=True)
    m = json_out(proc)["models"][0]
    assert m["source"] == "snapshot" and m["parameters"] == 7_000_559_616
    assert "TORCH_IMPORTED=False" in proc.stderr
    # the connection error is named: the probe failed at once rather than through huggingface_hub's retries
    assert any("cannot be reached" in n and "ConnectError" in n for n in m["notes"]), m["notes"]


@pytest.mark.slow  # 5-9 s of fresh processes; in the slow set to keep the default set under its 300 s budget
def test_trust_remote_code(hub, tmp_path):
    hub.add_repo("me/tiny-custom", tinycustom.files())
    marker = tmp_path / "ran"
    env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"), "HFMEM_HOME": str(tmp_path / "hm"),
           "HFMEM_TEST_MARKER": str(marker)}
    m = json_out(run_hfmem("me/tiny-custom", "--format", "json", env=env))["models"][0]
    assert not marker.exists()  # never ran without the flag
    assert m["method"] == "safetensors-headers" and m["parameters"] == tinycustom.PARAMS
    assert m["buffers_bytes"] == 0
    m = json_out(run_hfmem("me/tiny-custom", "--trust-remote-code", "--format", "json", env=env))["models"][0]
    assert marker.exists()
    assert m["method"] == "remote-code" and m["architecture"] == "TinyCustomForCausalLM"
    assert m["parameters"] == tinycustom.PARAMS
    assert m["buffers"]["non_persistent_bytes"] == tinycustom.CUSTOM_BUFFER_BYTES
    assert m["largest_layer"]["names"] == ["embed", "head"]  # 32x16 each; a TinyBlock is 16x16+16+cache


def test_hf_cache_dir_agrees_with_huggingface_hub(tmp_path):
    """Our pre-check of the Hugging Face cache folder follows huggingface_hub's own precedence."""
    import subprocess
    import sys

    code = ("import sys; from huggingface_hub import constants; from hfmem.sources.hub import hf_hub_cache_dir; "
            "sys.exit(0 if constants.HF_HUB_CACHE == hf_hub_cache_dir() else print(constants.HF_HUB_CACHE, hf_hub_cache_dir()) or 1)")
    for env in ({"HF_HOME": str(tmp_path / "a")}, {"HF_HUB_CACHE": str(tmp_path / "b"), "HF_HOME": str(tmp_path / "c")},
                {"XDG_CACHE_HOME": str(tmp_path / "x")}):
        base = {k: v for k, v in __import__("os").environ.items()
                if k not in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME")}
        proc = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True)
        assert proc.returncode == 0, (env, proc.stdout, proc.stderr)
