"""Defaults that work for the most-used models: the attention transformers itself picks (eager where it has no
SDPA: Gemma 2, gpt-oss), vLLM's attention without transformers' score matrices, and Hub configs whose
text_config omits the fields equal to transformers' defaults (google/gemma-3-4b-it). Expected values come
from transformers itself (its classes, its parse of the real config, the attention it picks), hand
arithmetic written out here, or the model cards -- never from hfmem's own output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import hfmem
from hfmem.api import infer, train
from hfmem.metadata import transformers_facts as facts
from hfmem.metadata.config import DIMENSION_FIELDS, text_config
from hfmem.scenarios import infer_activations as IA
from conftest import json_out, run_hfmem

OFF = hfmem.Options(offline=True)
# google/gemma-3-4b-it's config.json as the Hub serves it (see tests/data/README.md)
GEMMA3_4B = Path(__file__).parent / "data" / "gemma-3-4b-it"


def _raw(path: Path = GEMMA3_4B) -> dict:
    return json.loads((path / "config.json").read_text())


def _snapshot_config(repo: str) -> dict:
    root = Path(hfmem.__file__).resolve().parents[1] / "cache" / "models"
    return json.loads((root / repo / "config.json").read_text())


# -- 1. the attention transformers picks -----------------------------------------------------------------------

def _tiny(cls_name: str, **extra):
    transformers = pytest.importorskip("transformers")
    return getattr(transformers, cls_name)(hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                                           vocab_size=128, **extra)


@pytest.mark.parametrize("config_cls, expected", [("Gemma2Config", "eager"), ("Gemma3TextConfig", "sdpa"),
                                                  ("LlamaConfig", "sdpa")])
def test_transformers_default_attention_is_what_hfmem_assumes(config_cls, expected):
    """transformers' own choice with no attn_implementation (a tiny model on the meta device)."""
    import torch
    from transformers import AutoModelForCausalLM

    from hfmem.scenarios.attention import transformers_default

    cfg = _tiny(config_cls)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    assert model.config._attn_implementation == expected
    assert transformers_default(cfg.to_dict()) == expected


def test_shipped_no_sdpa_list_matches_transformers_classes():
    """Every model type hfmem ships as "no SDPA" has _supports_sdpa = False on its transformers classes; the
    calibrated families that are not eager-only have SDPA."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.auto import modeling_auto as ma

    classes: dict[str, list[str]] = {}
    for mapping in (ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, ma.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES):
        for t, names in mapping.items():
            classes.setdefault(t, []).extend(names if isinstance(names, (list, tuple)) else [names])
    shipped = facts.no_sdpa_types()
    assert {"gemma2", "gpt_oss"} <= shipped
    for t in sorted(shipped):
        assert not any(getattr(transformers, n)._supports_sdpa for n in classes[t]), t
    calibrated = IA.load_calibration()["architectures"]
    checked = 0
    for t, entry in calibrated.items():
        if t in classes:
            has = all(getattr(transformers, n)._supports_sdpa for n in classes[t])
            assert has is (not entry["eager_only"]), t
            checked += 1
    assert checked >= 15


@pytest.mark.parametrize("repo, family", [("openai/gpt-oss-20b", "gpt_oss"), ("google/gemma-2-9b-it", "gemma2")])
def test_eager_only_models_infer_and_train_by_default(repo, family):
    hf = infer(repo, OFF)
    assert hf.estimate.attn == "eager"
    assert f"attention: eager (transformers has no SDPA path for {family}; its default, as with no " \
           "attn_implementation given)" in hf.estimate.assumptions
    tr = train(repo, OFF)
    assert tr.estimate.settings.attn == "eager"
    assert any(a.startswith(f"attention: eager (transformers has no SDPA path for {family}")
               for a in tr.estimate.assumptions)
    # eager keeps the s×s scores: activations grow with s² (transformers' eager_attention_forward)
    assert any(a.startswith("eager attention: s×s scores kept") for a in tr.estimate.assumptions)


@pytest.mark.slow  # two fresh CLI processes per model (~2 s each): the default set keeps its time budget
@pytest.mark.parametrize("repo", ["openai/gpt-oss-20b", "google/gemma-2-9b-it"])
def test_cli_eager_only_models_default_and_explicit_sdpa(repo):
    for command in ("infer", "train"):
        doc = json_out(run_hfmem(command, repo, "--offline", "--format", "json"))
        model = doc["models"][0]
        assert any(a.startswith("attention: eager (transformers has no SDPA path") for a in model["assumptions"])
        # explicit sdpa: refused as transformers refuses it (ValueError in from_pretrained): one line, usage error
        proc = run_hfmem(command, repo, "--offline", "--attn", "sdpa")
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "no SDPA attention" in lines[0] and "--attn eager" in lines[0]
    # the table's footnotes name the default too
    proc = run_hfmem("infer", repo, "--offline")
    assert proc.returncode == 0, proc.stderr
    assert "attention: eager (transformers has no SDPA path" in " ".join(proc.stdout.split())


def test_explicit_flash_and_eager_stay_available():
    for attn in ("flash", "eager"):
        assert infer("google/gemma-2-9b-it", OFF, attn=attn).estimate.attn == attn
        assert train("google/gemma-2-9b-it", OFF, attn=attn).estimate.settings.attn == attn


# -- 2. vLLM: no transformers attention -------------------------------------------------------------------------

def test_vllm_gemma2_is_eager_less_the_score_tensors():
    """vLLM's FlashAttention / FlashInfer backends (logit soft-capping included) make no s×s tensor. By hand,
    per sequence, in transformers' eager_attention_forward at the softmax (the attention-kernel region): the
    bf16 scores a·s²·2 B, F.softmax's fp32 upcast a·s²·4 B, the fp32 probabilities a·s²·4 B, and Gemma 2's
    two materialised bf16 masks (causal and sliding) [b, 1, s, s]: 2·s²·2 B. Through the MLP the bf16
    probabilities (a·s²·2 B) and the masks stay referenced. vLLM = eager minus exactly these bytes."""
    cfg = _snapshot_config("google/gemma-2-9b-it")
    a, b, s = cfg["num_attention_heads"], 2, 2048
    eager = IA.prefill_activation_bytes(cfg, batch=b, context=s, attn="eager")
    vllm = IA.prefill_activation_bytes(cfg, batch=b, context=s, attn="flash", engine="vllm")
    core = b * (2 * a + 4 * a + 4 * a + 2 * 2) * s * s
    mlp = b * (2 * a + 2 * 2) * s * s
    for kind in ("full", "sliding"):
        assert eager.regions[f"{kind}_core"] - vllm.regions[f"{kind}_core"] == pytest.approx(core, rel=1e-6)
        assert eager.regions[f"{kind}_mlp"] - vllm.regions[f"{kind}_mlp"] == pytest.approx(mlp, rel=1e-6)
    assert "quadratic_bytes" not in vllm.by_part
    assert any("eager coefficients less the score tensors" in n for n in vllm.assumptions)
    # fp32 under vLLM (no flash kernel there, still no transformers attention) takes the same path
    fp32 = IA.prefill_activation_bytes(cfg, batch=1, context=512, attn="sdpa", dtype_bytes=4, engine="vllm")
    assert "quadratic_bytes" not in fp32.by_part
    # transformers with an explicit sdpa: refused, as transformers refuses it
    with pytest.raises(IA.InferActivationError, match="no SDPA"):
        IA.prefill_activation_bytes(cfg, batch=1, context=512, attn="sdpa")


@pytest.mark.parametrize("repo", ["openai/gpt-oss-20b", "google/gemma-2-9b-it"])
def test_vllm_engine_serves_eager_only_models(repo):
    vl = infer(repo, OFF, engine="vllm")
    assert vl.estimate.attn == "flash"
    hf_eager = infer(repo, OFF, engine="transformers", context=8192, attn="eager")
    # the profile run (8,192 tokens) without the s² scores eager transformers keeps at the same length
    assert vl.estimate.components["activations_bytes"] < hf_eager.estimate.components["activations_bytes"]
    proc = run_hfmem("infer", repo, "--engine", "vllm", "--offline", "--format", "json")
    assert json_out(proc)["models"][0]["inputs"]["attn"] == "flash"


# -- 3. Hub configs with omitted defaults (google/gemma-3-4b-it) ---------------------------------------------

def test_text_config_takes_transformers_defaults_for_omitted_fields():
    """transformers' own parse of the real config (Gemma3Config(**config.json).text_config) against hfmem's."""
    transformers = pytest.importorskip("transformers")
    raw = _raw()
    assert "num_attention_heads" not in raw["text_config"]  # as the Hub writes it: defaults omitted
    theirs = transformers.Gemma3Config(**raw).text_config
    ours = text_config(raw)
    for name in DIMENSION_FIELDS:
        if hasattr(theirs, name) and getattr(theirs, name) is not None:
            assert ours.get(name) == getattr(theirs, name), name


@pytest.mark.parametrize("model_type", ["gemma3_text", "gemma2", "llama", "mistral", "qwen2", "gpt_oss"])
def test_shipped_defaults_match_transformers_config_classes(model_type):
    transformers = pytest.importorskip("transformers")
    cls = transformers.CONFIG_MAPPING[model_type]
    shipped = facts.text_defaults(model_type)
    assert shipped
    theirs = cls().to_dict()
    for name, value in shipped.items():
        assert json.dumps(theirs[name], sort_keys=True) == json.dumps(value, sort_keys=True), name
    assert facts.composite_text_type("gemma3") == transformers.Gemma3Config.sub_configs["text_config"].model_type


def _gemma3_4b_hand():
    """34 layers (config.json), 4 KV heads and head_dim 256 (Gemma3TextConfig's defaults, which the Hub's
    text_config omits), bf16: K and V per layer per token = 2 × 4 × 256 × 2 B. Layer types: transformers'
    sliding_window_pattern 6 (every 6th layer full) = 5 full, 29 sliding of window 1024."""
    layers, kv_heads, head_dim = 34, 4, 256
    full = sum(1 for i in range(layers) if (i + 1) % 6 == 0)
    return layers * 2 * kv_heads * head_dim * 2, full, layers - full


def test_gemma3_4b_it_infer_and_train_api():
    transformers = pytest.importorskip("transformers")
    per_token, full, sliding = _gemma3_4b_hand()
    theirs = transformers.Gemma3Config(**_raw()).text_config
    assert theirs.layer_types.count("full_attention") == full  # transformers' own layer types agree
    for engine in ("transformers", "vllm"):
        r = infer(str(GEMMA3_4B), engine=engine, context=512)
        assert r.estimate.kv_bytes_per_token == per_token == 139_264
        assert r.estimate.kv_layout_summary == {"full": full, "sliding": sliding}
        assert any("omits fields transformers fills in" in a and "num_key_value_heads 4" in a
                   for a in r.estimate.assumptions)
    # transformers right after a 512-token prefill (< window): every layer holds the whole prompt
    hf = infer(str(GEMMA3_4B), context=512)
    assert hf.estimate.phases[0].kv_cache_bytes - 512 * per_token < 1024  # + the sliding layers' scalars
    # the model card: "4B" -- 4.30e9 with the vision tower
    assert hf.estimate.logical_params == pytest.approx(4.30e9, rel=0.005)
    tr = train(str(GEMMA3_4B), seq=2048)
    assert tr.estimate.settings.attn == "sdpa"
    assert any(f"SDPA on {sliding} sliding-window layers" in a for a in tr.estimate.assumptions)
    assert any("omits fields transformers fills in" in a for a in tr.estimate.assumptions)


@pytest.mark.slow  # 5-7 s of CLI runs; in the slow set to keep the default set well inside its 300 s
def test_gemma3_4b_it_cli():
    per_token, full, sliding = _gemma3_4b_hand()
    for command in ("infer", "train"):
        proc = run_hfmem(command, str(GEMMA3_4B), "--format", "json")
        model = json_out(proc)["models"][0]
        assert any("num_attention_heads 8" in a for a in model["assumptions"])
        if command == "infer":
            assert model["kv_bytes_per_token"] == per_token
            assert model["kv_layers"] == {"full": full, "sliding": sliding}


def test_reading_defaults_imports_no_torch():
    code = ("import json, sys; from hfmem.metadata.config import text_config; "
            "from hfmem.scenarios.attention import transformers_default; "
            f"c = json.load(open({str(GEMMA3_4B / 'config.json')!r})); "
            "assert text_config(c)['num_key_value_heads'] == 4; "
            "assert transformers_default({'model_type': 'gemma2'}) == 'eager'; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.slow  # 4 s of simulation
def test_simulate_defaults_to_the_attention_transformers_picks(monkeypatch):
    """hfmem simulate with no --attn runs Gemma 2 with eager, as transformers does without attn_implementation
    (it refuses sdpa for Gemma2ForCausalLM): the same simulation as asking for eager, and it says so."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    kw = dict(mode="infer", batch=1, context=64, new_tokens=1)
    default = hfmem.simulate_model("google/gemma-2-2b-it", **kw)
    eager = hfmem.simulate_model("google/gemma-2-2b-it", attn="eager", **kw)
    assert [p.peak_bytes for p in default.result.phases] == [p.peak_bytes for p in eager.result.phases]
    assert any(n.startswith("attention: eager") and "gemma2" in n for n in default.notes)


def test_shipped_model_types_are_the_installed_transformers_config_mapping():
    """A config of a model_type transformers lacks is refused without importing transformers: the list shipped
    must be transformers' own CONFIG_MAPPING_NAMES (regenerate with python -m hfmem.metadata.transformers_facts)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    assert facts.load_facts()["model_types"] == sorted(CONFIG_MAPPING_NAMES)
    assert facts.known_model_types() == frozenset(CONFIG_MAPPING_NAMES)
