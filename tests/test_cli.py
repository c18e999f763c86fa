"""The CLI against the Python API, side by side (simonw/llm style): the CLI only renders what the API returns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hfmem

from hfmem.cli import app, route_argv
from hfmem.sources import resultcache

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, route_argv(list(args)))


def test_route_argv():
    assert route_argv(["org/m"]) == ["calc", "org/m"]
    assert route_argv(["--offline", "org/m"]) == ["calc", "--offline", "org/m"]
    assert route_argv(["cache", "list"]) == ["cache", "list"]
    assert route_argv(["--help"]) == ["--help"]


def test_json_matches_api_and_seed_row():
    result = cli("baichuan-inc/Baichuan-7B", "--offline", "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    api = hfmem.calculator_json([hfmem.analyze("baichuan-inc/Baichuan-7B", offline=True)])
    assert doc["models"][0]["table"] == api["models"][0]["table"]
    assert doc["schema"] == "hfmem.calculator/1" and doc["mode"] == "exact"
    m = doc["models"][0]
    for key in ("model", "source", "revision", "architecture", "parameters", "parameters_by_dtype", "buffers_bytes",
                "largest_layer", "table", "notes", "predicts", "assumptions"):
        assert key in m
    rows = {r["dtype"]: r for r in m["table"]}
    assert list(rows) == ["float32", "float16/bfloat16", "int8", "int4"]
    n = 7_000_559_616  # product.md
    assert rows["float32"]["total_bytes"] == 4 * n + 512  # + rotary inv_freq/original_inv_freq (2 x 64 fp32)
    assert rows["int4"]["total_bytes"] == n // 2 + 512
    assert rows["float32"]["largest_layer_bytes"] == 1_048_576_000  # seed: "1000.0 MB"
    assert rows["float32"]["training_adam_bytes"] == 16 * n + 512
    assert rows["float16/bfloat16"]["training_adam_bytes"] == 8 * n + 512
    assert rows["int8"]["training_adam_bytes"] is None
    assert m["largest_layer"] == {"names": ["model.embed_tokens", "lm_head"], "float32_bytes": 1_048_576_000,
                                  "counted_class": "LlamaForCausalLM"}


def test_table_output_has_header_table_and_footnotes():
    result = cli("baichuan-inc/Baichuan-7B", "--offline")
    out = result.stdout
    assert result.exit_code == 0
    for needle in ("LlamaForCausalLM", "7,000,559,616", "Largest Layer or Residual Group", "Training using Adam",
                   "1000.0 MB", "26.08 GB", "1 GB = 2^30 bytes", "Predicts:", "Offline mode"):
        assert needle in out, needle


def test_compat_accelerate_legacy_reproduces_seed_shape():
    # Without the custom code's rotary caches hfmem cannot know, the seed's 26.2 GB is 26.08 GB (product.md);
    # the legacy rule is 4 x the row (seed: 104.82 GB = 4 x 26.2 GB).
    result = cli("baichuan-inc/Baichuan-7B", "--offline", "--compat", "accelerate", "--adam-rule", "legacy",
                 "--format", "markdown")
    assert result.exit_code == 0, result.stderr
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("| ")]
    assert lines[1] == "| float32 | 1000.0 MB | 26.08 GB | 104.32 GB |"
    assert lines[2] == "| float16/bfloat16 | 500.0 MB | 13.04 GB | 52.16 GB |"
    assert lines[4] == "| int4 | 125.0 MB | 3.26 GB | 13.04 GB |"


def test_side_by_side():
    models = ["meta-llama/Llama-2-7b-hf", "mistralai/Mixtral-8x7B-v0.1", "Qwen/Qwen3-0.6B"]
    result = cli(*models, "--offline")
    assert result.exit_code == 0, result.stderr
    assert "6,738,415,616" in result.stdout and "46,702,792,704" in result.stdout
    doc = json.loads(cli(*models, "--offline", "--format", "json").stdout)
    assert [m["model"] for m in doc["models"]] == models
    md = cli(*models, "--offline", "--format", "markdown").stdout
    assert md.count("|") > 50 and "`mistralai/Mixtral-8x7B-v0.1`" in md


def test_local_folder(minilm_dir, tmp_path):
    result = cli(str(minilm_dir), "--format", "json")
    assert result.exit_code == 0, result.stderr
    m = json.loads(result.stdout)["models"][0]
    assert m["source"] == "local" and m["parameters"] == 22_713_216 and m["revision"] is None
    # cached: the second run says so
    again = json.loads(cli(str(minilm_dir), "--format", "json").stdout)["models"][0]
    assert again["from_result_cache"] is True
    # a copy with a changed config is a different model
    copy = tmp_path / "copy"
    shutil.copytree(minilm_dir, copy, ignore=shutil.ignore_patterns("*.safetensors"))
    cfg = json.loads((copy / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (copy / "config.json").write_text(json.dumps(cfg))
    m3 = json.loads(cli(str(copy), "--format", "json").stdout)["models"][0]
    per_layer = 4 * (384 * 384 + 384) + 2 * 384 * 1536 + 1536 + 384 + 4 * 384  # by hand
    assert m3["parameters"] == 22_713_216 - 3 * per_layer and not m3["from_result_cache"]


@pytest.mark.parametrize("args,code,needle", [
    (("not a repo!",), 2, "neither a folder nor a Hub repo id"),
    (("./does-not-exist",), 2, "is not a folder"),
    (("org/never-seen", "--offline"), 8, "not available offline"),
    (("RWKV/rwkv-5-world-3b", "--offline"), 6, "rwkv5"),
])
def test_errors_are_one_line(args, code, needle):
    result = cli(*args)
    assert result.exit_code == code
    assert result.stderr.count("\n") == 1 and needle in result.stderr and "Traceback" not in result.stderr


def test_folder_without_config(tmp_path):
    (tmp_path / "m").mkdir()
    result = cli(str(tmp_path / "m"))
    assert result.exit_code == 5 and "has no config.json" in result.stderr


def test_cache_list_and_clear(minilm_dir):
    cli(str(minilm_dir), "--format", "json")
    listed = json.loads(cli("cache", "list", "--format", "json").stdout)
    assert len(listed["entries"]) == 1 and listed["entries"][0]["parameters"] == 22_713_216
    assert Path(listed["cache_dir"]) == resultcache.results_dir()
    cleared = cli("cache", "clear")
    assert cleared.exit_code == 0 and "removed 1" in cleared.stdout
    assert json.loads(cli("cache", "list", "--format", "json").stdout)["entries"] == []


def test_result_cache_write_is_atomic(monkeypatch, minilm_dir):
    """A writer killed mid-write leaves no entry and no temp file behind that a reader would trust."""
    import os

    calls = []

    def boom(src, dst):
        calls.append(src)
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    result = cli(str(minilm_dir), "--format", "json")
    assert result.exit_code == 0  # failing to cache is not the user's problem
    assert calls and not any(resultcache.results_dir().glob("*"))


def test_snapshot_list():
    doc = json.loads(cli("snapshot", "list", "--format", "json").stdout)
    names = {m["model"] for m in doc["models"]}
    assert {"baichuan-inc/Baichuan-7B", "deepseek-ai/DeepSeek-V3", "openai/gpt-oss-120b"} <= names
    assert doc["versions"]["transformers"]


def test_version_and_help():
    assert cli("--version").stdout.startswith("hfmem ")
    helped = cli("--help").stdout
    assert "calc" in helped and "cache" in helped and "snapshot" in helped


def test_headers_only_counts_without_torch(minilm_dir):
    from conftest import json_out, run_hfmem

    proc = run_hfmem(str(minilm_dir), "--headers-only", "--format", "json", check_torch=True)
    m = json_out(proc)["models"][0]
    assert "TORCH_IMPORTED=False" in proc.stderr
    assert m["method"] == "safetensors-headers" and m["parameters"] == 22_713_216
    assert m["buffers"]["persistent_bytes"] == 512 * 8  # the checkpoint's stored position_ids (int64)
    # the same model from its definition agrees on the parameters
    assert json_out(run_hfmem(str(minilm_dir), "--format", "json"))["models"][0]["parameters"] == 22_713_216


def test_headers_only_needs_safetensors(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"model_type": "llama"}')
    result = cli(str(tmp_path / "m"), "--headers-only")
    assert result.exit_code == 6 and "needs safetensors" in result.stderr


def test_side_by_side_answers_the_others_when_one_fails():
    result = cli("Qwen/Qwen3-0.6B", "RWKV/rwkv-5-world-3b", "meta-llama/Llama-2-7b-hf", "--offline", "--format", "json")
    assert result.exit_code == 6  # the failure's code
    doc = json.loads(result.stdout)
    assert [m["model"] for m in doc["models"]] == ["Qwen/Qwen3-0.6B", "meta-llama/Llama-2-7b-hf"]
    assert doc["errors"][0]["model"] == "RWKV/rwkv-5-world-3b" and doc["errors"][0]["exit_code"] == 6
    assert result.stderr.count("\n") == 1 and "rwkv5" in result.stderr
    table = cli("Qwen/Qwen3-0.6B", "RWKV/rwkv-5-world-3b", "meta-llama/Llama-2-7b-hf", "--offline")
    assert table.exit_code == 6 and "6,738,415,616" in table.stdout


def _main(capsys, *args):
    """The installed entry point (hfmem.cli.main), as the shell runs it: exit status, stdout, stderr."""
    from hfmem.cli import main

    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.mark.parametrize("args, suggestion", [
    (("infr", "meta-llama/Llama-3.1-8B"), "did you mean `hfmem infer`"),
    (("trian", "meta-llama/Llama-3.1-8B"), "did you mean `hfmem train`"),
    (("--verison",), "did you mean --version"),
    (("infer", "meta-llama/Llama-3.1-8B", "--contxt", "4096"), "--context"),
    (("cache", "lst"), "'list'"),
    (("infer", "meta-llama/Llama-3.1-8B", "--engine", "vlm"), "'vllm'"),
])
def test_typos_get_one_line_and_a_suggestion(capsys, monkeypatch, args, suggestion):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = _main(capsys, *args)
    assert code == 2  # a usage error, not a model the Hub could not find (8) nor a bug (70)
    assert out == ""  # no table for a mistyped command
    assert len(err.strip().splitlines()) == 1 and err.startswith("hfmem: error: ") and suggestion in err, err


def test_a_bare_model_id_is_not_taken_for_a_typo(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = _main(capsys, "gpt2")  # the Hub's legacy ids have no org
    assert code == 8 and "not available offline" in err


def test_version_short_and_long(capsys):
    import tomllib

    version = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["version"]
    for flag in ("-V", "--version"):
        assert _main(capsys, flag) == (0, f"hfmem {version}\n", "")
