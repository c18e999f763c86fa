"""Serving with bitsandbytes as transformers runs it (compute dtype, dequantize transients, quantize-on-load) and
unmerged LoRA adapters at serving time (issue 14). Expected values are hand counts from the libraries' source,
written out here, or published numbers (hfmem/reference/measurements.py)."""

from __future__ import annotations

import json
import math
import pytest

import hfmem
from hfmem.reference.measurements import (BLOOM_1B7_CONFIG, BLOOM_1B7_FOOTPRINT_RATIO, OCTOCODER_CONFIG,
                                          OCTOCODER_GENERATE_ALLOCATED_GIB, OCTOCODER_NEW_TOKENS,
                                          OCTOCODER_PROMPT_TOKENS)
from hfmem.scenarios import weights as W
from hfmem.scenarios.infer_activations import lora_serving_extra_bytes

OFF = hfmem.Options(offline=True)
LLAMA2 = "meta-llama/Llama-2-7b-hf"  # float16 config; largest linear 11008 x 4096 (gate/up/down)
GiB = 2**30


def _folder(tmp_path, cfg: dict) -> str:
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    return str(tmp_path)


def _phase(e, name):
    return next(p for p in e.phases if p.name == name)


# -- hand counts of the per-linear transients (bitsandbytes 0.45-0.49 source) ---------------------------------

def test_4bit_fp32_compute_transient_hand_count():
    # MatMul4Bit.forward: dequantize_4bit -> fp16 [out, in] (2 B), .to(float32) (4 B) while it is alive; the
    # input cast x.to(float32) [rows, in] 4 B lives through the call; minus the fp16 output a plain nn.Linear has.
    out, inn, rows = 4096, 11008, 512
    expected = rows * inn * 4 + out * inn * (2 + 4) - rows * out * 2
    assert W.bnb_linear_extra_bytes("bnb4", out=out, inn=inn, rows=rows, model_bytes=2, compute_bytes=4) == expected


def test_4bit_matching_compute_dtype_dequantizes_once():
    # compute dtype = storage dtype = model dtype: .to(A.dtype) is a no-op, no input copy: out*in*2 only
    out, inn, rows = 11008, 4096, 512
    assert W.bnb_linear_extra_bytes("bnb4", out=out, inn=inn, rows=rows, model_bytes=2, compute_bytes=2) \
        == out * inn * 2


def test_4bit_single_row_takes_gemv():
    # one row (a batch-1 decode step): gemv_4bit, no dequantized weight; fp32 compute: x copy + fp32 output
    out, inn = 11008, 4096
    assert W.bnb_linear_extra_bytes("bnb4", out=out, inn=inn, rows=1, model_bytes=2, compute_bytes=4) \
        == inn * 4 + out * 4


def test_8bit_transient_hand_count():
    # MatMul8bitLt: A.to(float16) (no copy for an fp16 model), CA int8 [rows, in], SCA fp32 [rows],
    # int32 product [rows, out]
    out, inn, rows = 11008, 4096, 512
    assert W.bnb_linear_extra_bytes("bnb8", out=out, inn=inn, rows=rows, model_bytes=2, compute_is_model=True) \
        == rows * inn + 4 * rows + 4 * rows * out
    assert W.bnb_linear_extra_bytes("bnb8", out=out, inn=inn, rows=rows, model_bytes=2, compute_is_model=False) \
        == rows * inn * 2 + rows * inn + 4 * rows + 4 * rows * out


def test_load_transient_hand_count():
    n = 11008 * 4096
    assert W.bnb_load_extra_bytes("bnb4", out=11008, inn=4096, load_bytes=2) == 2 * n   # the 16-bit tensor
    assert W.bnb_load_extra_bytes("bnb8", out=11008, inn=4096, load_bytes=2) == 4 * n   # + Int8Params' fp16 copy


def test_lora_serving_transient_hand_count():
    # fp16 model, fp32 adapter: x cast to fp32 [rows, in], then the largest of x@A + B(xA) / B(xA) and its scaled
    # copy / the scaled copy and its fp16 cast / the cast and the sum
    out, inn, r, rows = 4096, 4096, 16, 512
    expected = rows * inn * 4 + max(rows * r * 4 + rows * out * 4, 2 * rows * out * 4, rows * out * 4 + rows * out * 2,
                                    2 * rows * out * 2)
    assert lora_serving_extra_bytes(out=out, inn=inn, rank=r, rows=rows, model_bytes=2) == expected


# -- the estimate ---------------------------------------------------------------------------------------------

def test_nf4_default_fp32_compute_adds_the_largest_linears_transient():
    base = hfmem.infer(LLAMA2, OFF, context=512, weights_format="nf4", bnb_compute_dtype="fp16").estimate
    e = hfmem.infer(LLAMA2, OFF, context=512, weights_format="nf4").estimate
    assert e.bnb_compute_dtype == "float32" and base.bnb_compute_dtype == "float16"
    rows = 512
    # down_proj (4096 x 11008) is the worst: its fp32 input copy is the widest
    fp32 = rows * 11008 * 4 + 4096 * 11008 * 6 - rows * 4096 * 2
    fp16 = 4096 * 11008 * 2
    pre, pre16 = _phase(e, "prefill"), _phase(base, "prefill")
    assert pre.activations_bytes - pre16.activations_bytes == fp32 - fp16
    assert any("float32" in a and "transformers' BitsAndBytesConfig default" in a for a in e.assumptions)


def test_load_phase_on_the_fly_quantization():
    e = hfmem.infer(LLAMA2, OFF, context=512, weights_format="nf4").estimate
    load = _phase(e, "load")
    assert load.activations_bytes == 2 * 11008 * 4096
    assert load.peak_allocated_bytes == e.components["weights_bytes"] + e.components["buffers_bytes"] \
        + 2 * 11008 * 4096
    assert any(a.startswith("load phase:") for a in e.assumptions)


def test_unquantized_run_has_no_load_phase_and_is_unchanged():
    e = hfmem.infer(LLAMA2, OFF, context=512).estimate
    assert [p.name for p in e.phases] == ["prefill"] and e.bnb_compute_dtype is None


def test_lora_adapter_weights_r_in_plus_out_fp32():
    e0 = hfmem.infer(LLAMA2, OFF, context=512).estimate
    e = hfmem.infer(LLAMA2, OFF, context=512, lora_rank=8, lora_targets=["q_proj", "v_proj"]).estimate
    # 32 layers x (q_proj, v_proj), each 4096 x 4096: r*(in+out) float32 parameters
    assert e.components["adapter_weights_bytes"] == 32 * 2 * 8 * (4096 + 4096) * 4
    rows = 512
    extra = lora_serving_extra_bytes(out=4096, inn=4096, rank=8, rows=rows, model_bytes=2)
    assert _phase(e, "prefill").activations_bytes == _phase(e0, "prefill").activations_bytes + extra
    assert e.peak_allocated_bytes == e0.peak_allocated_bytes + 32 * 2 * 8 * 8192 * 4 + extra


# -- published numbers --------------------------------------------------------------------------------------

def _footprint(tensors, fmt: str) -> int:
    """get_memory_footprint(): parameters only -- no absmax/quant_map (4-bit quant_state), no SCB (8-bit)."""
    est = W.weights_bytes(tensors, fmt, compute_dtype="float16")
    constants = 0
    for t in tensors:
        if t["role"] != "linear" or t.get("tied"):
            continue
        n = t["out_features"] * t["in_features"]
        constants += t["count"] * ((4 * math.ceil(n / 64) + 16 * 4) if fmt == "fp4" else 4 * t["out_features"])
    return est.stored_bytes - constants


@pytest.mark.parametrize("fmt", ["fp4", "int8"])
def test_bloom_1b7_memory_footprint_ratio(tmp_path, fmt):
    r = hfmem.infer(_folder(tmp_path, BLOOM_1B7_CONFIG), context=16)
    tensors = r.report.inventory.tensors
    fp16 = W.weights_bytes(tensors, "fp16").stored_bytes
    assert fp16 / _footprint(tensors, fmt) == pytest.approx(BLOOM_1B7_FOOTPRINT_RATIO[fmt], abs=1e-5)


@pytest.mark.slow  # builds octocoder's 15.5B meta model from a config-only folder (seconds on 2 cores)
@pytest.mark.parametrize("name", list(OCTOCODER_GENERATE_ALLOCATED_GIB))
def test_octocoder_generate_within_3_percent(tmp_path, name):
    args, gib = OCTOCODER_GENERATE_ALLOCATED_GIB[name]
    e = hfmem.infer(_folder(tmp_path, OCTOCODER_CONFIG), context=OCTOCODER_PROMPT_TOKENS,
                    new_tokens=OCTOCODER_NEW_TOKENS, **args).estimate
    assert e.peak_allocated_bytes / GiB == pytest.approx(gib, rel=0.03)


# -- CLI and API side by side; bad input -------------------------------------------------------------------------

def _cli(*args):
    from conftest import run_hfmem

    return run_hfmem(*args)


def test_cli_matches_api():
    proc = _cli("infer", LLAMA2, "--offline", "-c", "512", "-w", "nf4", "--bnb-compute-dtype", "bf16",
                "--lora-rank", "8", "--lora-targets", "q_proj,v_proj", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)["models"][0]
    e = hfmem.infer(LLAMA2, OFF, context=512, weights_format="nf4", bnb_compute_dtype="bf16", lora_rank=8,
                    lora_targets=["q_proj", "v_proj"]).estimate
    assert m["peak_allocated_bytes"] == e.peak_allocated_bytes
    assert [p["name"] for p in m["phases"]] == ["load", "prefill"]
    assert m["inputs"]["bnb_compute_dtype"] == "bfloat16" and m["inputs"]["lora_rank"] == 8


@pytest.mark.parametrize("args", [
    ("--bnb-compute-dtype", "fp9", "-w", "nf4"),       # unknown dtype
    ("--bnb-compute-dtype", "fp16"),                   # an fp16 checkpoint: no bitsandbytes compute dtype
    ("--bnb-compute-dtype", "fp16", "-w", "int8"),     # LLM.int8 has none either
    ("--lora-rank", "-1"),
])
def test_bad_input_exits_2_with_one_line(args):
    proc = _cli("infer", LLAMA2, "--offline", *args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
