"""Fuzz tests of config.json where it enters: ``parse_config`` (with its validation) and the local-folder analysis
a user runs (``hfmem.analyze(folder)``: the meta model built with torch).

The contract under test: for any JSON input, either a result or an ``HfmemError`` whose message is one line;
nothing else escapes (no TypeError, no StrictDataclassFieldValidationError, no endless build). Inputs: arbitrary
JSON values as the whole config, and real Hub configs from cache/ with fields replaced by values of the wrong
type, huge, negative, zero or NaN numbers, or deleted.

Example counts come from the hypothesis profile in tests/conftest.py ("ci" by default, "fuzz" for the dedicated
run), so no test here sets its own; the building test shrinks the real configs (2 layers, 4 experts) before
mutating them so that each example builds in a fraction of a second.
"""

from __future__ import annotations

import json

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

from conftest import ROOT  # noqa: E402
from hfmem.errors import HfmemError  # noqa: E402
from hfmem.metadata.config import parse_config, require_sizes  # noqa: E402

REAL = ["meta-llama/Llama-3.1-8B", "mistralai/Mixtral-8x7B-v0.1", "deepseek-ai/DeepSeek-V3", "google/gemma-2-2b-it",
        "llava-hf/llava-1.5-7b-hf", "openai-community/gpt2", "Qwen/Qwen3-30B-A3B", "baichuan-inc/Baichuan-7B",
        "THUDM/chatglm3-6b", "microsoft/phi-2"]
CONFIGS = {repo: json.loads((ROOT / "cache" / "models" / repo / "config.json").read_text()) for repo in REAL}

# The fields that size a model, under the names configs use: the ones a mutation most likely breaks something
# with.
SIZING = ["num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size",
          "vocab_size", "head_dim", "num_experts", "num_local_experts", "n_routed_experts", "num_experts_per_tok",
          "moe_intermediate_size", "max_position_embeddings", "n_layer", "n_embd", "n_head", "n_inner",
          "num_layers", "ffn_hidden_size", "kv_channels", "multi_query_group_num", "q_lora_rank", "kv_lora_rank",
          "sliding_window", "torch_dtype", "dtype", "architectures", "model_type", "text_config", "vision_config",
          "auto_map", "quantization_config", "rope_scaling", "tie_word_embeddings", "n_shared_experts",
          "first_k_dense_replace", "padded_vocab_size", "seq_length", "rotary_dim"]

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8) | st.sampled_from(SIZING), inner, max_size=5),
                           max_leaves=20)

bad_numbers = st.sampled_from([0, -1, -(2**31), 10**9, 10**12, 2**63, 10**40, 0.5, 32.0, 1e9, float("nan"),
                               float("inf"), -0.0, True, False, None, "32", "abc", "", [32], {"v": 32}])
replacement = bad_numbers | json_values | st.integers(min_value=-5, max_value=70_000)

_DELETE = object()


def _dumps(value) -> str:
    return json.dumps(value)  # Python's json writes NaN and Infinity, and json.loads reads them back


@st.composite
def mutated(draw, shrink: bool = False):
    repo = draw(st.sampled_from(REAL))
    cfg = json.loads(json.dumps(CONFIGS[repo]))
    if shrink:  # keep the structure, make the build cheap: 2 layers, at most 4 experts
        for holder in (cfg, cfg.get("text_config") or {}, cfg.get("vision_config") or {}):
            for key in ("num_hidden_layers", "n_layer", "num_layers"):
                if isinstance(holder.get(key), int):
                    holder[key] = 2
            for key in ("num_local_experts", "num_experts", "n_routed_experts"):
                if isinstance(holder.get(key), int):
                    holder[key] = min(holder[key], 4)
            if isinstance(holder.get("num_experts_per_tok"), int):
                holder["num_experts_per_tok"] = min(holder["num_experts_per_tok"], 2)
            for key in ("n_group", "topk_group"):
                if isinstance(holder.get(key), int):
                    holder[key] = 1
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        holder = cfg
        if isinstance(cfg.get("text_config"), dict) and draw(st.booleans()):
            holder = cfg["text_config"]
        key = draw(st.sampled_from(sorted(set(SIZING) | set(holder))))
        value = draw(st.just(_DELETE) | replacement)
        if value is _DELETE:
            holder.pop(key, None)
        else:
            holder[key] = value
    return repo, cfg


def _one_line(exc: HfmemError) -> None:
    assert "\n" not in str(exc) and str(exc).strip()


def _parse(text: str):
    try:
        config = parse_config(text, "fuzz/config.json")
        require_sizes(config.raw, config.origin)
        return config
    except HfmemError as exc:
        _one_line(exc)
        return None


@given(json_values)
def test_arbitrary_json_as_the_whole_config(value):
    _parse(_dumps(value))


@given(st.dictionaries(st.sampled_from(SIZING), replacement, max_size=8),
       st.sampled_from(["llama", "mixtral", "gpt2", "qwen", "chatglm", "llava", "deepseek_v3", "nope"]))
def test_arbitrary_sizes_for_a_model_type(fields, model_type):
    _parse(_dumps(dict(fields, model_type=model_type)))


@given(mutated())
def test_mutated_real_configs_parse_or_refuse(case):
    _, cfg = case
    config = _parse(_dumps(cfg))
    if config is not None:  # accepted: every sizing field it holds is a sane integer
        for holder in (config.raw, config.raw.get("text_config") or {}):
            for key in ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size"):
                value = holder.get(key)
                if value is not None:
                    assert type(value) is int and value > 0


@given(mutated(shrink=True))
def test_mutated_real_configs_build_or_refuse(tmp_path_factory, case):
    """The path a user hits: config.json in a folder, ``hfmem.analyze(folder)`` builds it with torch."""
    import hfmem

    _, cfg = case
    folder = tmp_path_factory.mktemp("m")
    (folder / "config.json").write_text(_dumps(cfg))
    try:
        report = hfmem.analyze(str(folder), use_cache=False)
    except HfmemError as exc:
        _one_line(exc)
        return
    assert report.inventory.num_params >= 0


def test_unmutated_real_config_gives_its_published_count(tmp_path):
    """meta-llama/Llama-3.1-8B: 8,030,261,248 parameters (the count its model card's safetensors lists)."""
    import hfmem

    folder = tmp_path / "llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(CONFIGS["meta-llama/Llama-3.1-8B"]))
    assert hfmem.analyze(str(folder)).inventory.num_params == 8_030_261_248
