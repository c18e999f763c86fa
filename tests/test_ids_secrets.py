"""Bad ids and out-of-range flags are usage errors (exit 2, one line); credentials in HF_ENDPOINT never reach
any output or file; --trust-remote-code fetches every module at the pinned commit and names other repos.
Expected rules: huggingface_hub.utils.validate_repo_id (1-96 ASCII characters per part, no -- or .., no
trailing . or -, no .git)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tinycustom
from conftest import json_out, run_hfmem
from hfmem import api
from hfmem.cli import app, route_argv
from hfmem.errors import UsageError

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
QWEN = "Qwen/Qwen3-0.6B"  # in the shipped snapshot
runner = CliRunner()


def one_usage_line(*args) -> str:
    result = runner.invoke(app, route_argv(list(args)))
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hfmem: error:") and "Traceback" not in result.stderr, result.stderr
    return err[0]


BAD_IDS = ["a" * 5000, "org/" + "b" * 5000, "org/name\n", "org/ok.", "org/a模型", "org/x.git", "org/-x", "a" * 97,
           "org/x--y", "org/x..y", "a/b/c"]


@pytest.mark.parametrize("repo_id", BAD_IDS, ids=lambda r: repr(r[:12]) + f"({len(r)})")
def test_bad_ids_are_usage_errors(repo_id):
    line = one_usage_line(repo_id, "--offline")
    assert "is neither a folder nor a Hub repo id" in line and len(line) < 600
    with pytest.raises(UsageError):
        api.analyze(repo_id, offline=True)


def test_ids_the_hub_accepts_still_pass():
    assert api.analyze(QWEN, offline=True).inventory.num_params == 596_049_920  # the snapshot's count
    api.check_repo_id("o/" + "a" * 96)  # 96 characters per part: validate_repo_id's limit


FLAGS = [
    ("infer", "--fragmentation", "-1"), ("infer", "--fragmentation", "nan"), ("train", "--fragmentation", "inf"),
    ("infer", "--cuda-context", "-1GiB"), ("infer", "--nccl", "-5"), ("infer", "--cuda-graphs", "-1MiB"),
    ("infer", "--gpu-memory-utilization", "0"), ("infer", "--gpu-memory-utilization", "1.5"),
    ("infer", "--batch", "0"), ("infer", "--context", "-1"), ("infer", "--new-tokens", "-1"), ("infer", "--gpus", "0"),
    ("infer", "--block-size", "0"), ("infer", "--max-num-seqs", "0"), ("infer", "--max-num-batched-tokens", "-1"),
    ("train", "--batch", "0"), ("train", "--seq", "0"), ("train", "--lora-rank", "0"), ("train", "--gpus", "0"),
    ("train", "--tp", "0"), ("train", "--pp", "-1"), ("train", "--grad-accum", "0"), ("train", "--zero", "5"),
    ("train", "--gpus-per-node", "0"), ("simulate", "--lora-rank", "0"), ("simulate", "--lora-rank", "-1"),
    ("simulate", "--iterations", "1"), ("simulate", "--batch", "0"),
]


@pytest.mark.parametrize("command,flag,value", FLAGS, ids=lambda v: str(v))
def test_out_of_range_flags_are_usage_errors(command, flag, value):
    extra = ["--method", "lora"] if flag == "--lora-rank" and command == "train" else []
    one_usage_line(command, QWEN, "--offline", flag, value, *extra)


def test_group_size_out_of_range():
    one_usage_line("train", QWEN, "--offline", "--rlhf", "grpo", "--group-size", "0")


# ---------------------------------------------------------------- credentials in HF_ENDPOINT


def _files_with(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.slow  # 5-9 s of fresh processes; in the slow set to keep the default set under its 300 s budget
def test_endpoint_credentials_never_shown_or_stored(fake_hub, minilm_dir, tmp_path):
    fake_hub.add_repo(MINILM, {p.name: p for p in minilm_dir.iterdir() if p.is_file()})
    host = fake_hub.endpoint.split("://", 1)[1]
    env = {"HF_ENDPOINT": f"http://user:SECRET@{host}", "HF_HOME": str(tmp_path / "hf"),
           "HFMEM_HOME": str(tmp_path / "hm")}
    runs = [run_hfmem(MINILM, "--format", "json", env=env),
            run_hfmem(MINILM, "--format", "json", env=env),  # from the result cache
            run_hfmem("infer", MINILM, "--format", "json", env=env),
            run_hfmem("cache", "list", "--format", "json", env=env),
            run_hfmem("cache", "list", env=env),
            run_hfmem("no-such/repo", env=env),  # the not-found error names the endpoint
            run_hfmem("no-such/repo", "--format", "json", env={**env, "HF_ENDPOINT": "http://user:SECRET@127.0.0.1:9"})]
    m = json_out(runs[0])["models"][0]
    assert m["parameters"] == 22_713_216 and m["provenance"]["endpoint"] == f"http://{host}"
    assert runs[5].returncode == 3 and f"not found on http://{host}" in runs[5].stderr
    assert runs[6].returncode == 8 and "http://127.0.0.1:9 cannot be reached" in runs[6].stderr, runs[6].stderr
    for proc in runs:
        assert "SECRET" not in proc.stdout and "SECRET" not in proc.stderr, (proc.args, proc.stdout, proc.stderr)
    keys = [e["key"] for e in json.loads(runs[3].stdout)["entries"]]
    assert keys and all(k.startswith(f"hub|http://{host}#") for k in keys), keys
    assert _files_with(tmp_path / "hm", b"SECRET") == []
    assert _files_with(tmp_path / "hf", b"SECRET") == []


# ---------------------------------------------------------------- remote code


@pytest.mark.slow  # builds a custom-code model from the test Hub
def test_remote_code_is_fetched_at_the_pinned_commit(fake_hub, tmp_path):
    sha = fake_hub.add_repo("me/tiny-custom", tinycustom.files())
    env = {"HF_ENDPOINT": fake_hub.endpoint, "HF_HOME": str(tmp_path / "hf"), "HFMEM_HOME": str(tmp_path / "hm")}
    m = json_out(run_hfmem("me/tiny-custom", "--trust-remote-code", "--format", "json", env=env))["models"][0]
    assert m["method"] == "remote-code" and m["parameters"] == tinycustom.PARAMS
    code = [p for _, p, _ in fake_hub.requests if p.endswith(".py")]
    assert any("modeling_tiny.py" in p for p in code) and any("configuration_tiny.py" in p for p in code), code
    assert all(f"/resolve/{sha}/" in p for p in code), code  # never main


@pytest.mark.slow  # builds a custom-code model from the test Hub
def test_code_from_another_repo_is_named(fake_hub, tmp_path):
    fake_hub.add_repo("me/tiny-custom", tinycustom.files())
    files = tinycustom.files()
    config = dict(tinycustom.CONFIG, auto_map={
        "AutoConfig": "me/tiny-custom--configuration_tiny.TinyCustomConfig",
        "AutoModelForCausalLM": "me/tiny-custom--modeling_tiny.TinyCustomForCausalLM"})
    fake_hub.add_repo("other/uses-tiny", {"config.json": json.dumps(config).encode(),
                                          "model.safetensors": files["model.safetensors"]})
    env = {"HF_ENDPOINT": fake_hub.endpoint, "HF_HOME": str(tmp_path / "hf"), "HFMEM_HOME": str(tmp_path / "hm")}
    m = json_out(run_hfmem("other/uses-tiny", "--trust-remote-code", "--format", "json", env=env))["models"][0]
    assert m["method"] == "remote-code" and m["parameters"] == tinycustom.PARAMS
    assert any("another repository's code, me/tiny-custom" in n for n in m["notes"]), m["notes"]
