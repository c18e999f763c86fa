"""The JSON contracts (docs/json.md) against the JSON Schemas shipped in hfmem/data/schema/: every command's
real output validates (an undocumented key fails: ``additionalProperties: false``), and every key the doc's
tables name is in that command's schema and the other way round."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

jsonschema = pytest.importorskip("jsonschema")

from hfmem.cli import app, route_argv  # noqa: E402
from hfmem.render.json import SHARED_ENTRY_KEYS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = ROOT / "hfmem" / "data" / "schema"
DOC = ROOT / "docs" / "json.md"
# docs/json.md's section heading for each schema file
SECTIONS = {"calculator": "hfmem [calc] MODEL...", "simulate": "hfmem simulate MODEL...",
            "infer": "hfmem infer MODEL...", "train": "hfmem train MODEL..."}
TINY = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
        "torch_dtype": "bfloat16"}

runner = CliRunner()


def schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{name}.json").read_text())


def run(*args: str) -> dict:
    result = runner.invoke(app, route_argv(list(args)))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_valid(name: str, doc: dict) -> None:
    validator = jsonschema.Draft202012Validator(schema(name))
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:10])
    if name != "calculator":  # the shared report shape
        for m in doc["models"]:
            assert set(SHARED_ENTRY_KEYS) <= set(m), set(SHARED_ENTRY_KEYS) - set(m)
            assert all("name" in p and "peak_allocated_bytes" in p for p in m["phases"])


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_schemas_are_valid_draft_2020_12(name):
    s = schema(name)
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(s)
    entry = s["$defs"]["model"]
    assert entry["additionalProperties"] is False and s["additionalProperties"] is False


def test_calc_output_matches_its_schema(offline):
    doc = run("Qwen/Qwen3-0.6B", "meta-llama/Llama-3.1-8B", "--offline", "--format", "json")
    assert doc["schema"] == "hfmem.calculator/1"
    assert_valid("calculator", doc)


@pytest.mark.parametrize("args", [
    # without --gpu, two models, one of them a MoE
    ("meta-llama/Llama-3.1-8B", "Qwen/Qwen3-30B-A3B", "--logits", "all"),
    # with --gpu and tensor parallel
    ("meta-llama/Llama-3.1-8B", "--gpu", "H100-80GB", "--gpus", "2", "--context", "8192"),
    # vLLM, a MoE, --emit
    ("mistralai/Mixtral-8x7B-v0.1", "--engine", "vllm", "--gpu", "H200", "--emit", "vllm"),
], ids=["no-gpu", "gpu-tp2", "vllm-moe"])
def test_infer_output_matches_its_schema(offline, args):
    doc = run("infer", *args, "--offline", "--format", "json")
    assert doc["schema"] == "hfmem.infer/2"
    assert_valid("infer", doc)
    for m in doc["models"]:
        gpu = "--gpu" in args
        assert (m["fit"] is None) is not gpu
        assert m["inputs"]["tensor_parallel"] == m["inputs"]["gpus"] == m["inputs"]["tp"]
        assert m["inputs"]["logits"] == ("all" if "all" in args else "last")
        assert m["peak_allocated_bytes"] == max(p["peak_allocated_bytes"] for p in m["phases"])
        if gpu:  # the deprecated top-level copies say what fit says
            f = m["fit"]
            assert f["margin_bytes"] == f["capacity_bytes"] - f["needed_bytes"] == m["headroom_bytes"]
            assert (f["fits"], f["max_context"], f["max_batch"]) == (m["fits"], m["max_context"], m["max_batch"])


@pytest.mark.parametrize("args", [
    ("Qwen/Qwen3-0.6B",),
    ("meta-llama/Llama-3.1-8B", "--method", "lora", "--gpu", "H100-80GB", "--advise"),
    ("meta-llama/Llama-3.1-8B", "--zero", "3", "--gpus", "8", "--gpu", "A100-80GB"),
], ids=["full", "lora-gpu-advise", "zero3-gpu"])
def test_train_output_matches_its_schema(offline, args):
    doc = run("train", *args, "--offline", "--format", "json")
    assert doc["schema"] == "hfmem.train/2"
    assert_valid("train", doc)
    m = doc["models"][0]
    assert m["totals_describe"] == "training" and "roles" not in m
    assert m["inputs"]["world_size"] == m["inputs"]["gpus"] and m["inputs"]["tensor_parallel"] == m["inputs"]["tp"]
    assert m["peak_allocated_bytes"] == max(p["peak_allocated_bytes"] for p in m["phases"])
    assert [p["name"] for p in m["phases"]][:3] == ["forward", "backward", "optimizer_step"]
    if "--gpu" in args:
        f = m["fit"]
        assert f["needed_bytes"] == m["device_total_bytes"]
        assert f["margin_bytes"] == f["capacity_bytes"] - f["needed_bytes"]
        assert (f["fits"], f["max_batch"], f["max_seq"]) == (m["fits"], m["max_batch"], m["max_seq"])
    else:
        assert m["fit"] is None


def test_train_rlhf_output_is_the_whole_step(offline):
    doc = run("train", "Qwen/Qwen3-0.6B", "--rlhf", "ppo", "--gpus", "2", "--gpu", "H100-80GB", "--advise",
              "--offline", "--format", "json")
    assert_valid("train", doc)
    m = doc["models"][0]
    assert m["totals_describe"] == "rlhf"
    assert m["inputs"]["rlhf"] == "ppo" and m["inputs"]["rollout"] == "vllm"
    # components, phases and the three totals describe one thing: the RLHF step on one GPU
    assert sum(m["components"].values()) == m["device_total_bytes"] == m["rlhf"]["device_total_bytes"]
    assert m["peak_allocated_bytes"] == max(p["peak_allocated_bytes"] for p in m["phases"])
    assert m["peak_reserved_bytes"] == max(p["peak_reserved_bytes"] for p in m["phases"])
    assert [r["role"] for r in m["roles"]] == [x["role"] for x in m["rlhf"]["models"]]
    assert m["fit"]["needed_bytes"] == m["device_total_bytes"]
    alone = m["training_alone"]  # the model's own training estimate, as without --rlhf
    assert alone["device_total_bytes"] < m["device_total_bytes"]


def _tiny(tmp_path) -> str:
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY))
    return str(folder)


def test_simulate_output_matches_its_schema(tmp_path):
    pytest.importorskip("torch")
    folder = _tiny(tmp_path)
    for args in (("--seq", "32"), ("--mode", "infer", "--context", "16")):
        doc = run("simulate", folder, *args, "--format", "json")
        assert doc["schema"] == "hfmem.simulate/2"
        assert_valid("simulate", doc)
        m = doc["models"][0]
        assert m["fit"] is None and m["peak_reserved_bytes"] is None
        assert m["peak_allocated_bytes"] == max(p["peak_allocated_bytes"] for p in m["phases"])


# -- docs/json.md's tables and the schemas name the same keys -------------------------------------------------

def _section(text: str, heading: str) -> str:
    start = text.index(f"# JSON contract: `{heading}")
    nxt = re.search(r"^# ", text[start + 1:], re.M)
    return text[start: start + 1 + nxt.start()] if nxt else text[start:]


def documented_keys(name: str) -> set[str]:
    """The keys in the first column of every table of the command's section (``a.b`` counts as ``b``)."""
    keys = set()
    for line in _section(DOC.read_text(), SECTIONS[name]).splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        keys |= {k.rsplit(".", 1)[-1].removesuffix("[]") for k in re.findall(r"`([^`]+)`", first)}
    return keys


def schema_keys(node) -> set[str]:
    keys = set()
    if isinstance(node, dict):
        for k, v in (node.get("properties") or {}).items():
            keys.add(k)
            keys |= schema_keys(v)
        for k, v in node.items():
            if k != "properties":
                keys |= schema_keys(v)
    elif isinstance(node, list):
        for v in node:
            keys |= schema_keys(v)
    return keys


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_docs_and_schema_name_the_same_keys(name):
    doc, sch = documented_keys(name), schema_keys(schema(name))
    assert not sch - doc, f"in hfmem/data/schema/{name}.json, not in docs/json.md's tables: {sorted(sch - doc)}"
    assert not doc - sch, f"in docs/json.md's tables, not in hfmem/data/schema/{name}.json: {sorted(doc - sch)}"
