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
            "infer": "hfmem infer MODEL...", "train": "hfmem train MODEL...",
            "search": "hfmem search [TEXT]", "devices": "hfmem gpus --detect",
            "plot": "hfmem infer / train MODEL... --plot FILE"}
# each schema's closed per-entry object (a model of a report, a search row, a detected device)
ENTRY_DEF = {"search": "row", "devices": "device"}
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
    if name in ("infer", "train", "simulate"):  # the shared report shape
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
    entry = s["$defs"][ENTRY_DEF.get(name, "model")]
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


# -- hfmem search (hfmem.search/1) and hfmem gpus --detect (hfmem.devices/1) ----------------------------------

GiB, MiB = 2**30, 2**20


def _rows_obey_their_contract(doc: dict) -> None:
    """What docs/json.md says every row is: free = capacity - needed, fits = needed <= capacity, the fitting rows
    ranked by ``sort``, the others in ``not_fitting``."""
    for row in doc["rows"] + doc["not_fitting"]:
        assert row["margin_bytes"] == row["capacity_bytes"] - row["needed_bytes"]
        assert row["fits"] is (row["needed_bytes"] <= row["capacity_bytes"])
        assert row["command"].startswith(("hfmem infer " if doc["job"] == "serve" else "hfmem train ") + row["model"])
    assert all(r["fits"] for r in doc["rows"]) and not any(r["fits"] for r in doc["not_fitting"])
    assert doc["scan"]["scanned"] == len(doc["rows"]) + len(doc["not_fitting"]) + len(doc["skipped"])
    if doc["rank_by"] == "params":  # most first, ties by model id
        keys = [(-r["parameters"], r["model"].lower()) for r in doc["rows"]]
        assert keys == sorted(keys)


def test_search_offline_output_matches_its_schema(offline):
    doc = run("search", "--task", "text-generation", "--max-params", "3B", "--gpu", "RTX-4090", "-q",
              "--format", "json")
    assert doc["schema"] == "hfmem.search/1"
    assert_valid("search", doc)
    assert doc["job"] == "serve" and doc["engine"] == "vllm" and doc["weights"] is None
    assert doc["query"]["task"] == "text-generation" and doc["query"]["max_params"] == 3 * 10**9  # "3B"
    assert doc["scan"]["source"] == "offline" and doc["scan"]["stopped_by"] == "end"
    assert doc["scan"]["listed"] == doc["scan"]["scanned"] and doc["rows"]
    assert doc["rank_by"] == "params"  # offline there are no download counts to rank by
    assert doc["gpu"]["name"] == "RTX-4090" and doc["gpu"]["count"] == 1
    assert doc["gpu"]["memory_bytes"] == 24 * GiB  # the RTX 4090's 24 GB of GDDR6X are 24 GiB
    _rows_obey_their_contract(doc)
    util = doc["settings"]["gpu_memory_utilization"]
    for row in doc["rows"] + doc["not_fitting"]:
        assert row["parameters"] <= 3 * 10**9 and row["downloads"] is None and row["max_seq"] is None
        assert row["kind"] == "transformers" and row["format_changed"] is False
        # vLLM may use gpu_memory_utilization of the usable memory (as infer's fit.capacity_bytes)
        assert abs(row["capacity_bytes"] - util * doc["gpu"]["usable_bytes"]) <= 1


def test_search_scan_cut_by_limit_and_time(offline):
    doc = run("search", "--task", "text-generation", "--gpu", "24GiB", "--limit", "1", "--time-budget", "0.000001",
              "-q", "--format", "json")
    assert_valid("search", doc)
    scan = doc["scan"]
    # the listing holds more than one text-generation model; the budget ends the scan before the first is judged
    assert scan["listed"] == 1 and (scan["stopped_by"], scan["scanned"]) == ("time", 0)
    assert doc["rows"] == doc["not_fitting"] == doc["skipped"] == [] and doc["largest"] is None
    assert doc["gpu"]["usable_bytes"] == doc["gpu"]["memory_bytes"] == 24 * GiB
    assert doc["gpu"]["capacity_basis"] == "user"


def test_search_train_output_matches_its_schema(offline):
    doc = run("search", "Qwen3", "--train", "--method", "lora", "--max-params", "2B", "--gpu", "RTX-4090", "-q",
              "--format", "json")
    assert_valid("search", doc)
    assert doc["job"] == "train" and doc["engine"] is None and doc["settings"]["method"] == "lora"
    assert doc["rows"]
    _rows_obey_their_contract(doc)
    for row in doc["rows"]:
        assert row["method"] == "lora" and row["weights_format"] is None and row["max_context"] is None and row["max_batch"] >= 1
        assert row["capacity_bytes"] == doc["gpu"]["usable_bytes"]
    # the row is hfmem train's own answer at the same settings: its command prints the same needed bytes
    row = doc["rows"][-1]
    again = run(*row["command"].split()[1:], "--offline", "--format", "json")["models"][0]
    assert again["fit"]["needed_bytes"] == row["needed_bytes"] and again["fit"]["fits"] is row["fits"]


def test_search_largest_with_any_format(offline):
    doc = run("search", "Qwen3", "--max-params", "2B", "--gpu", "3GiB", "--engine", "transformers",
              "--weights", "any", "--largest", "-q", "--format", "json")
    assert_valid("search", doc)
    assert doc["weights"] == "any" and doc["rank_by"] == "params" and doc["settings"]["engine"] == "transformers"
    assert [r["model"] for r in doc["rows"]] == ["Qwen/Qwen3-1.7B", "Qwen/Qwen3-0.6B"]  # largest first
    assert doc["largest"] == doc["rows"][0]
    _rows_obey_their_contract(doc)
    big, small = doc["rows"]
    # Qwen3-1.7B in its bf16 checkpoint: 1,720,574,976 parameters x 2 bytes = 3.44e9 B of weights alone, more
    # than 3 GiB = 3.22e9 B, so --weights any must list it in a format transformers makes while loading it
    # (bitsandbytes); Qwen3-0.6B (596,049,920 x 2 = 1.19e9 B) fits as stored.
    assert big["format_changed"] is True and big["weights_format"] in {"int8", "nf4", "fp4", "nf4-dq", "fp4-dq"}
    assert f"--weights {big['weights_format']}" in big["command"]
    assert (small["format_changed"], small["weights_format"]) == (False, "bf16")
    for r in doc["rows"]:
        assert r["capacity_bytes"] == doc["gpu"]["usable_bytes"] == 3 * GiB  # transformers may use all of it


@pytest.fixture
def fake_p4(tmp_path, monkeypatch):
    """A fake ``nvidia-smi`` on PATH printing the recorded Tesla P4 table (tests/data/devices/SOURCES.md)."""
    import os
    import stat
    import sys

    from hfmem.plan import gpus as gpus_mod

    if os.name != "posix":
        pytest.skip("an executable script on PATH needs a POSIX shell here")
    try:
        from test_devices import real_nvml_works
    except ImportError:
        real_nvml_works = None
    if real_nvml_works is not None and real_nvml_works():
        pytest.skip("a working NVIDIA driver here: NVML would answer before the fake nvidia-smi")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    fixture = str(ROOT / "tests" / "data" / "devices" / "nvidia-smi-tesla-p4.csv")
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write(open({fixture!r}).read())\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    for var in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(gpus_mod, "_DETECTED", [])  # hfmem's own once-per-process detection, fresh here


def test_gpus_detect_output_matches_its_schema(fake_p4):
    doc = run("gpus", "--detect", "--format", "json")
    assert_valid("devices", doc)
    (dev,) = doc["devices"]
    # the fixture's row: "7840 MiB, 20 MiB, 7820 MiB, Tesla P4" (total, used, free, name)
    assert (dev["index"], dev["name"], dev["vendor"], dev["source"]) == (0, "Tesla P4", "nvidia", "nvidia-smi")
    assert (dev["total_bytes"], dev["free_bytes"]) == (7840 * MiB, 7820 * MiB)
    assert dev["catalog"] is None and dev["unified"] is False
    assert (dev["usable_bytes"], dev["capacity_basis"]) == (7820 * MiB, "detected-free")  # free memory, reported


def test_search_gpu_auto_names_the_detected_device(fake_p4, offline):
    doc = run("search", "--task", "text-generation", "--gpu", "auto", "--limit", "1", "--time-budget", "0.000001",
              "-q", "--format", "json")
    assert_valid("search", doc)
    assert doc["gpu"] == {"name": "Tesla P4 (GPU 0)", "count": 1, "usable_bytes": 7820 * MiB,
                          "memory_bytes": 7840 * MiB, "capacity_basis": "detected-free"}
