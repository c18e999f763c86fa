"""config.json is checked where it enters (``parse_config``): every malformed value is one ConfigError line (exit
5) naming the file, the field, what was found and what was expected, before anything is built.

Expected values come from the test's own arithmetic, from transformers' configuration classes (what they refuse)
and from the real Hub configs shipped in cache/ (which must all stay valid)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from hfmem.errors import ConfigError, HfmemError
from hfmem.metadata.config import defaults_assumption, parse_config

LLAMA = ROOT / "cache" / "models" / "meta-llama" / "Llama-3.1-8B" / "config.json"
REAL_CONFIGS = sorted((ROOT / "cache" / "models").glob("*/*/config.json"))


def _llama(**changes) -> dict:
    cfg = json.loads(LLAMA.read_text())
    for k, v in changes.items():
        if v is _DELETE:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    return cfg


_DELETE = object()


def _hfmem(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter, offline, with a timeout so a hang (a config that makes hfmem build 10^9
    layers) fails the test instead of stalling it."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    code = "import sys; from hfmem.cli import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _folder(tmp_path: Path, cfg, name: str = "m") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    text = cfg if isinstance(cfg, str) else json.dumps(cfg)
    (folder / "config.json").write_text(text)
    return folder


CASES = {
    # field, value written into Llama-3.1-8B's config, words the message must hold
    "layers-string": ({"num_hidden_layers": "abc"}, ["num_hidden_layers", "positive integer", "'abc'"]),
    # transformers: LlamaConfig(num_hidden_layers=32.0) raises StrictDataclassFieldValidationError (int only)
    "layers-float": ({"num_hidden_layers": 32.0}, ["num_hidden_layers", "positive integer", "32.0"]),
    "layers-bool": ({"num_hidden_layers": True}, ["num_hidden_layers", "positive integer", "true"]),
    "layers-null": ({"num_hidden_layers": None}, ["num_hidden_layers", "positive integer", "null"]),
    "layers-negative": ({"num_hidden_layers": -1}, ["num_hidden_layers", "positive integer", "-1"]),
    "layers-huge": ({"num_hidden_layers": 10**9}, ["num_hidden_layers", "1000000000", "10,000", "no released model"]),
    "heads-zero": ({"num_attention_heads": 0}, ["num_attention_heads", "positive integer", "found 0"]),
    # 4096 / 3 = 1365.33: no whole head width
    "heads-indivisible": ({"num_attention_heads": 3}, ["hidden_size 4096", "num_attention_heads 3", "1365.33"]),
    # 32 query heads cannot be shared by 5 key/value heads
    "kv-indivisible": ({"num_key_value_heads": 5}, ["num_attention_heads 32", "num_key_value_heads 5"]),
    "kv-string": ({"num_key_value_heads": "8"}, ["num_key_value_heads", "'8'"]),
    "vocab-huge": ({"vocab_size": 10**9}, ["vocab_size", "100,000,000"]),
    "hidden-float": ({"hidden_size": 4096.5}, ["hidden_size", "4096.5"]),
    "intermediate-list": ({"intermediate_size": [1]}, ["intermediate_size", "a list"]),
    "dtype-unknown": ({"torch_dtype": "foo"}, ["torch_dtype", "'foo'", "bfloat16"]),
    "dtype-number": ({"torch_dtype": 16}, ["torch_dtype", "16"]),
    "architectures-string": ({"architectures": "LlamaForCausalLM"},
                             ["architectures must be a list of class names, found a string", "LlamaForCausalLM"]),
    "architectures-number": ({"architectures": [1]}, ["architectures", "list", "1"]),
    "text_config-string": ({"text_config": "x"}, ["text_config", "JSON object", "'x'"]),
    "model_type-list": ({"model_type": ["llama"]}, ["model_type", "a list"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_field_is_a_config_error(case):
    changes, words = CASES[case]
    with pytest.raises(ConfigError) as err:
        parse_config(json.dumps(_llama(**changes)), "org/model@abc")
    line = str(err.value)
    assert "\n" not in line and line.startswith("config.json from org/model@abc: ")
    for w in words:
        assert w in line, (w, line)


def test_nan_layers_is_a_config_error():
    # Python's json writes and reads NaN (JSON itself has no NaN, but json.loads accepts it)
    text = json.dumps(_llama(num_hidden_layers=float("nan")))
    assert "NaN" in text
    with pytest.raises(ConfigError, match="num_hidden_layers must be a positive integer, found NaN"):
        parse_config(text, "x")


CLI_CASES = ["layers-string", "layers-float", "layers-bool", "layers-null", "layers-negative", "layers-huge",
             "heads-zero", "heads-indivisible", "dtype-unknown", "architectures-string"]


@pytest.mark.slow  # a dozen fresh CLI processes per command
@pytest.mark.parametrize("command", ["calc", "infer", "train"])
def test_cli_exit_5_and_one_line(tmp_path, command):
    """Each defect through the CLI a user runs: exit 5 (ConfigError), one stderr line naming the file."""
    for case in CLI_CASES + ["layers-nan", "model_type-only"]:
        if case == "layers-nan":
            cfg = json.dumps(_llama(num_hidden_layers=float("nan")))
        elif case == "model_type-only":
            cfg = {"model_type": "llama"}
        else:
            cfg = _llama(**CASES[case][0])
        folder = _folder(tmp_path, cfg, f"{command}-{case}")
        proc = _hfmem(command, str(folder), timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 5, (case, proc.stderr)
        assert len(lines) == 1 and str(folder / "config.json") in lines[0], (case, proc.stderr)


def test_huge_layer_count_is_refused_before_building(tmp_path):
    # 10^9 layers used to be built on the meta device (memory grew without bound); now refused at parse. The
    # subprocess timeout turns a hang into a failure; nothing here measures time.
    folder = _folder(tmp_path, _llama(num_hidden_layers=10**9))
    proc = _hfmem(str(folder), timeout=60)
    assert proc.returncode == 5 and "num_hidden_layers is 1000000000" in proc.stderr


def test_implausible_parameter_total_is_refused():
    # each size within its own limit, together: 10,000 layers × (4 × 10^6 × 10^6 + ...) ≫ 10^14
    cfg = _llama(num_hidden_layers=10_000, hidden_size=1_000_000, num_attention_heads=1000, num_key_value_heads=1000,
                 intermediate_size=1_000_000)
    with pytest.raises(ConfigError, match="above hfmem's limit of 1e14"):
        parse_config(json.dumps(cfg), "x")


def test_model_type_only_is_refused():
    """Refused where the model would be built from it (LlamaConfig's defaults); --headers-only reads no size
    from the config and still answers that it needs safetensors files (tests/test_cli.py)."""
    from hfmem.inventory.build import build_inventory

    config = parse_config('{"model_type": "llama"}', "org/m@1")
    with pytest.raises(ConfigError) as err:
        build_inventory(config, None)
    assert "model_type llama" in str(err.value) and "none of its sizes" in str(err.value)
    assert "defaults" in str(err.value)


def test_composite_without_any_size_is_refused():
    from hfmem.metadata.config import require_sizes

    with pytest.raises(ConfigError, match="neither it nor its text_config"):
        require_sizes({"model_type": "llava", "text_config": {"model_type": "llama"}}, "x")
    require_sizes(json.loads((ROOT / "cache/models/llava-hf/llava-1.5-7b-hf/config.json").read_text()), "x")


def test_partial_config_names_the_defaults_it_takes():
    """A config declaring some sizes: transformers fills the rest from LlamaConfig's defaults, and hfmem says
    which (values from transformers.LlamaConfig itself)."""
    import transformers

    cfg = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 512}
    parse_config(json.dumps(cfg), "x")  # accepted
    line = defaults_assumption(cfg)
    theirs = transformers.LlamaConfig(hidden_size=512)
    for field in ("num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
        assert f"{field} {getattr(theirs, field)}" in line
    assert "hidden_size" not in line


def test_calculator_table_notes_the_filled_defaults(tmp_path):
    import hfmem
    from hfmem.scenarios.calculator import calculator_table

    cfg = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
           "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 128, "vocab_size": 100}
    report = hfmem.analyze(str(_folder(tmp_path, cfg)))
    table = calculator_table(report.inventory, config=report.config)
    assert any("num_hidden_layers 32" in n for n in table.notes)  # LlamaConfig().num_hidden_layers == 32
    # 32 layers × (4 × 64² attention + 3 × 64 × 128 MLP + 2 × 64 norms) + 2 × 100 × 64 (embedding, head) + 64
    assert report.inventory.num_params == 32 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 2 * 100 * 64 + 64


def test_architectures_string_matches_what_transformers_does():
    """transformers keeps a string as given and its readers iterate it letter by letter — hfmem refuses it."""
    import transformers

    cfg = transformers.LlamaConfig(architectures="LlamaForCausalLM")
    assert list(cfg.architectures)[0] == "L"
    with pytest.raises(ConfigError, match="found a string"):
        parse_config(json.dumps(_llama(architectures="LlamaForCausalLM")), "x")


@pytest.mark.parametrize("value", [32.0, "32", True, None])
def test_hfmem_refuses_what_transformers_refuses(value):
    import transformers

    with pytest.raises(Exception):
        transformers.LlamaConfig(num_hidden_layers=value)
    with pytest.raises(ConfigError):
        parse_config(json.dumps(_llama(num_hidden_layers=value)), "x")


def test_transformers_refusals_past_validation_are_config_errors(tmp_path):
    """A value only transformers' class checks (rope_scaling of the wrong type) is still exit 5, not 70."""
    import hfmem

    with pytest.raises(ConfigError, match="transformers' llama configuration refuses it"):
        hfmem.analyze(str(_folder(tmp_path, _llama(rope_scaling="x"))))


def test_malformed_custom_config_maps_to_nothing():
    from hfmem.metadata.custom_maps import map_custom_config

    base = {"model_type": "qwen", "architectures": ["QWenLMHeadModel"], "hidden_size": 64, "num_attention_heads": 4,
            "num_hidden_layers": 2, "vocab_size": 100}
    assert map_custom_config(dict(base, intermediate_size="x")) is None
    assert map_custom_config(dict(base, model_type=["qwen"])) is None
    assert map_custom_config(dict(base, architectures="QWenLMHeadModel")) is None
    assert map_custom_config(dict(base, architectures=[3])) is None
    assert map_custom_config({"model_type": "phi-msft", "architectures": ["PhiForCausalLM"], "n_embd": 4,
                              "n_head": 8, "n_layer": 1, "vocab_size": 10}) is None  # 4 // 8 = 0 wide heads
    with pytest.raises(HfmemError):
        parse_config(json.dumps(dict(base, intermediate_size="x")), "x")


@pytest.mark.parametrize("text", ["[" * 100_000, "1" * 5000, b"\xff\xfe{", "[]", "null"])
def test_unreadable_json_is_a_config_error(text):
    with pytest.raises(ConfigError):
        parse_config(text, "x")


@pytest.mark.parametrize("path", REAL_CONFIGS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_every_real_config_in_the_snapshot_is_valid(path):
    """cache/ holds real Hub configs: validation must accept every one of them."""
    from hfmem.metadata.config import require_sizes

    require_sizes(parse_config(path.read_bytes(), str(path)).raw, str(path))


def test_real_configs_cover_the_snapshot():
    assert len(REAL_CONFIGS) >= 85
