"""The census as typed CensusEntry objects (hfmem.model.census): weights, training states and tensor/pipeline
parallelism read entries by attribute, accept the inventory's dicts as well, and give the same numbers for
both.

Expected values are hand arithmetic over Llama-2-7B's published shapes (meta-llama/Llama-2-7b-hf config.json:
32 layers, hidden 4096, intermediate 11008, vocabulary 32000, untied LM head; 6,738,415,616 parameters, the
count the model card's "7B" rounds) and the storage layouts cited in hfmem/scenarios/weights.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfmem.model.census import CensusEntry, census_of
from hfmem.scenarios import sharding as S
from hfmem.scenarios import training as T
from hfmem.scenarios.weights import weights_bytes

ROOT = Path(__file__).resolve().parents[1]
L, H, I, V = 32, 4096, 11008, 32000
LLAMA2_7B_PARAMS = 6_738_415_616


def _linear(name: str, fin: int, fout: int, count: int = L) -> dict:
    return {"role": "linear", "name": name, "in_features": fin, "out_features": fout, "bias": 0, "tied": False,
            "conv1d": False, "count": count, "params": count * fin * fout}


def _llama2_7b() -> list[dict]:
    """The census of LlamaForCausalLM at Llama-2-7B's sizes, in the inventory's dict form, written by hand."""
    return [
        _linear("q_proj", H, H), _linear("k_proj", H, H), _linear("v_proj", H, H), _linear("o_proj", H, H),
        _linear("gate_proj", H, I), _linear("up_proj", H, I), _linear("down_proj", I, H),
        {"role": "embedding", "name": "embed_tokens", "shape": [V, H], "count": 1, "params": V * H},
        {"role": "lm_head", "name": "lm_head", "in_features": H, "out_features": V, "bias": 0, "tied": False,
         "conv1d": False, "count": 1, "params": V * H},
        {"role": "other", "name": "input_layernorm.weight", "shape": [H], "count": L, "params": L * H},
        {"role": "other", "name": "post_attention_layernorm.weight", "shape": [H], "count": L, "params": L * H},
        {"role": "other", "name": "norm.weight", "shape": [H], "count": 1, "params": H},
    ]


@pytest.fixture(scope="module")
def dicts() -> list[dict]:
    return _llama2_7b()


@pytest.fixture(scope="module")
def typed(dicts) -> tuple[CensusEntry, ...]:
    return census_of(dicts)


def test_hand_census_is_the_inventory_census(dicts):
    """The hand-written census is what the inventory writes for the published config (same entries)."""
    from hfmem.inventory.meta_model import build_model, measure

    cfg = json.loads((ROOT / "cache/models/meta-llama/Llama-2-7b-hf/config.json").read_text())
    measured = measure(build_model(cfg, cfg["architectures"][0])[0])["tensors"]
    key = lambda d: json.dumps(d, sort_keys=True)  # noqa: E731
    assert sorted(map(key, measured)) == sorted(map(key, dicts))
    assert sum(d["params"] for d in dicts) == LLAMA2_7B_PARAMS


def test_dict_form_round_trips(dicts, typed):
    """to_dict, dict(entry) and the read-only mapping view give back the inventory's dicts, key order included
    (the result cache stores the census as these dicts)."""
    for d, e in zip(dicts, typed):
        assert e.to_dict() == d and list(e.to_dict()) == list(d)
        assert dict(e) == d
        assert json.dumps(e.to_dict()) == json.dumps(d)
        assert CensusEntry.from_dict(e.to_dict()) == e
        for k, v in d.items():
            assert e[k] == v and e.get(k) == v and k in e
    q = typed[0]
    assert (q.role, q.name, q.in_features, q.out_features, q.count, q.is_module) == ("linear", "q_proj", H, H, L, True)
    assert "shape" not in q and q.get("shape") is None and q.get("shape", 7) == 7
    with pytest.raises(KeyError):
        q["shape"]
    assert census_of(typed) == typed  # typed entries pass through


def test_weights_bf16_and_int8_by_hand(dicts, typed):
    # bf16: every parameter at 2 bytes
    bf16 = 2 * LLAMA2_7B_PARAMS
    assert bf16 == 13_476_831_232
    # int8 (bitsandbytes LLM.int8, Linear8bitLt): each linear weight [out, in] in int8 plus a float32 SCB per
    # output row; embeddings, LM head and norms stay at the bf16 compute dtype.
    per_layer = (4 * (H * H + 4 * H)            # q, k, v, o: out = 4096
                 + 2 * (I * H + 4 * I)          # gate, up: out = 11008
                 + (H * I + 4 * H))             # down: out = 4096
    kept = 2 * (V * H + V * H + 2 * L * H + H)  # embed_tokens, lm_head, norms in bf16
    int8 = L * per_layer + kept
    assert int8 == 7_006_265_344
    for census in (dicts, typed):
        assert weights_bytes(census, "bf16").stored_bytes == bf16
        est = weights_bytes(census, "int8")
        assert est.stored_bytes == int8
        assert est.quantized_params == L * (4 * H * H + 3 * H * I)
        assert est.bytes_by_role["lm_head"] == 2 * V * H


def test_tensor_parallel_2_by_hand(dicts, typed):
    """Megatron layout over 2 ranks: q/k/v/gate/up split out_features, o/down split in_features; embeddings,
    LM head and norms replicated (vocab-parallel: embedding rows and LM head outputs split)."""
    linear_half = L * (4 * H * H + 3 * H * I) // 2
    norms = 2 * L * H + H
    for census in (dicts, typed):
        tp2 = S.tensor_parallel_census(census, 2)
        assert all(isinstance(e, CensusEntry) for e in tp2)
        by = {e.name: e for e in tp2}
        assert (by["q_proj"].in_features, by["q_proj"].out_features) == (H, H // 2)       # column-parallel
        assert (by["o_proj"].in_features, by["o_proj"].out_features) == (H // 2, H)       # row-parallel
        assert (by["up_proj"].in_features, by["up_proj"].out_features) == (H, I // 2)
        assert (by["down_proj"].in_features, by["down_proj"].out_features) == (I // 2, H)
        assert by["q_proj"].tp_sharded and not by["norm.weight"].tp_sharded
        assert sum(e.params for e in tp2) == linear_half + 2 * V * H + norms == 3_500_412_928
        assert weights_bytes(tp2, "bf16").stored_bytes == 2 * 3_500_412_928
        vp = S.tensor_parallel_census(census, 2, vocab_parallel=True)
        vby = {e.name: e for e in vp}
        assert vby["embed_tokens"].shape == (V // 2, H) and vby["lm_head"].out_features == V // 2
        assert sum(e.params for e in vp) == linear_half + V * H + norms == 3_369_340_928


def test_dict_and_typed_inputs_agree(dicts, typed):
    for fmt in ("fp32", "bf16", "int8", "nf4", "nf4-dq", "gptq-int4", "awq-int4", "fp8", "fp8-block", "mxfp4"):
        assert weights_bytes(dicts, fmt) == weights_bytes(typed, fmt), fmt
    assert weights_bytes(dicts, "fp8", skip_names={"o_proj"}) == weights_bytes(typed, "fp8", skip_names={"o_proj"})
    for prec, opt in (("bf16", "adamw"), ("amp-bf16", "adamw-8bit"), ("deepspeed-bf16", "adamw"),
                      ("bf16", "adafactor")):
        assert T.model_states(dicts, precision=prec, optimizer=opt) == T.model_states(typed, precision=prec,
                                                                                     optimizer=opt)
    assert T.param_tensors(dicts) == T.param_tensors(typed)
    assert T.largest_module_params(dicts) == T.largest_module_params(typed) == V * H
    assert T.total_numel(typed) == LLAMA2_7B_PARAMS
    assert S.tensor_parallel_census(dicts, 4) == S.tensor_parallel_census(typed, 4)
    for stage in range(4):
        assert S.pipeline_stage_census(dicts, 4, stage) == S.pipeline_stage_census(typed, 4, stage)
    # a rank's census feeds the next transform and the pricing unchanged
    rank = S.pipeline_stage_census(S.tensor_parallel_census(typed, 2), 2, 0)
    assert T.total_numel(rank) == (L // 2) * (4 * H * H + 3 * H * I) // 2 + V * H + (L // 2) * 2 * H


def test_pipeline_stages_by_hand(typed):
    layer = 4 * H * H + 3 * H * I + 2 * H
    stages = [sum(e.params for e in S.pipeline_stage_census(typed, 4, s)) for s in range(4)]
    assert stages == [8 * layer + V * H, 8 * layer, 8 * layer, 8 * layer + V * H + H]
    assert sum(stages) == LLAMA2_7B_PARAMS


def test_transposed_experts_read_the_other_way():
    """An experts entry marked transposed ([E, in, out], gpt-oss's layout) is E matrices of out x in; with a
    square-free shape the int8 SCB (one float32 per output row) shows which dimension is the output."""
    e, a, b = 4, 64, 256
    plain = {"role": "experts", "name": "experts.down_proj", "shape": [e, a, b], "count": 2, "params": 2 * e * a * b}
    flipped = dict(plain, transposed=True)
    assert weights_bytes([plain], "int8").stored_bytes == 2 * e * (a * b + 4 * a)   # out = a
    assert weights_bytes([flipped], "int8").stored_bytes == 2 * e * (a * b + 4 * b)  # out = b
    assert CensusEntry.from_dict(flipped).to_dict() == flipped
    assert "transposed" not in CensusEntry.from_dict(plain)
