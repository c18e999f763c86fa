"""Weights in real storage formats (hfmem/scenarios/weights.py). Expected values are hand arithmetic written out
here from the model's dimensions and the libraries' layouts, or published sizes (sources next to each test) --
never numbers copied from running weights.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hfmem.scenarios.weights import (FORMAT_ORDER, FORMATS, checkpoint_format, format_options, weights_bytes)

MODELS = Path(__file__).resolve().parents[1] / "cache" / "models"
GiB = 1024 ** 3

# Llama-2-7B (config.json): hidden 4096, intermediate 11008, 32 layers, vocab 32000, no biases, untied head.
H, I, LAYERS, VOCAB = 4096, 11008, 32, 32000
LLAMA_LINEAR = LAYERS * (4 * H * H + 3 * H * I)          # q, k, v, o + gate, up, down = 6,476,005,376
LLAMA_EMBED = VOCAB * H                                   # embed_tokens = lm_head = 131,072,000
LLAMA_NORMS = (2 * LAYERS + 1) * H                        # input/post-attention norms + final norm
LLAMA_PARAMS = 6_738_415_616                              # Llama 2 7B's parameter count


def _config(name: str) -> dict:
    path = MODELS / name / "config.json"
    if not path.exists():
        pytest.skip(f"{name} not in the snapshot")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def census():
    """Build each model once on the meta device; returns name -> (config, census list)."""
    from hfmem.inventory.meta_model import build_model, measure

    cache: dict[str, tuple[dict, list[dict]]] = {}

    def get(name: str):
        if name not in cache:
            cfg = _config(name)
            model, _ = build_model(cfg, cfg["architectures"][0])
            cache[name] = (cfg, measure(model)["tensors"])
        return cache[name]

    return get


def _linear(out: int, inn: int, count: int = 1, bias: int = 0, name: str = "proj") -> dict:
    return {"role": "linear", "name": name, "in_features": inn, "out_features": out, "bias": bias,
            "tied": False, "conv1d": False, "count": count, "params": count * (out * inn + bias)}


# -- dense formats ---------------------------------------------------------------------------------------

def test_llama2_dense(census):
    _, t = census("meta-llama/Llama-2-7b-hf")
    assert LLAMA_LINEAR + 2 * LLAMA_EMBED + LLAMA_NORMS == LLAMA_PARAMS  # the hand breakdown is complete
    bf16 = weights_bytes(t, "bf16")
    assert bf16.logical_params == LLAMA_PARAMS
    assert bf16.stored_bytes == LLAMA_PARAMS * 2
    assert bf16.quantized_params == 0
    assert weights_bytes(t, "fp16").stored_bytes == LLAMA_PARAMS * 2
    assert weights_bytes(t, "fp32").stored_bytes == LLAMA_PARAMS * 4
    # compute_dtype does not change a dense format
    assert weights_bytes(t, "bf16", compute_dtype="float32").stored_bytes == LLAMA_PARAMS * 2


# -- bitsandbytes ----------------------------------------------------------------------------------------

def test_llama2_nf4_double_quant_is_4_127_bits(census):
    """QLoRA (arXiv 2305.14314) §3 Double Quantization: 4 + 8/64 + 32/(64·256) = 4.127 bits per parameter on
    the quantized weights; embeddings, LM head and norms stay 16-bit."""
    _, t = census("meta-llama/Llama-2-7b-hf")
    est = weights_bytes(t, "nf4-dq")
    kept_bytes = (2 * LLAMA_EMBED + LLAMA_NORMS) * 2
    assert est.quantized_params == LLAMA_LINEAR
    assert est.bytes_by_role["embedding"] == LLAMA_EMBED * 2
    assert est.bytes_by_role["lm_head"] == LLAMA_EMBED * 2
    bits = (est.stored_bytes - kept_bytes) * 8 / LLAMA_LINEAR
    assert bits == pytest.approx(4 + 8 / 64 + 32 / (64 * 256), abs=1e-3)
    # without double quantization: one float32 absmax per 64 weights, 4 + 32/64 = 4.5 bits
    plain = weights_bytes(t, "nf4")
    assert (plain.stored_bytes - kept_bytes) * 8 / LLAMA_LINEAR == pytest.approx(4.5, abs=1e-3)
    assert weights_bytes(t, "fp4-dq").stored_bytes == est.stored_bytes  # same layout, other code book


def test_bnb_4bit_one_matrix_exact():
    """bitsandbytes quantize_4bit on one 4096x4096 weight: packed n/2 B, float32 absmax per 64, the 16-entry
    quant_map; with double quant uint8 absmax, float32 per 256 blocks, the 256-entry nested map."""
    n = 4096 * 4096
    t = [_linear(4096, 4096)]
    assert weights_bytes(t, "nf4").stored_bytes == n // 2 + 4 * (n // 64) + 16 * 4
    assert weights_bytes(t, "nf4-dq").stored_bytes == n // 2 + n // 64 + 4 * (n // 64 // 256) + 16 * 4 + 256 * 4


def test_llama2_int8_exact(census):
    """LLM.int8: int8 weight + float32 SCB per output row; the rest bf16."""
    _, t = census("meta-llama/Llama-2-7b-hf")
    rows_per_layer = 4 * H + 2 * I + H          # out_features of q,k,v,o + gate,up + down
    expected = LLAMA_LINEAR + 4 * rows_per_layer * LAYERS + (2 * LLAMA_EMBED + LLAMA_NORMS) * 2
    assert weights_bytes(t, "int8").stored_bytes == expected


def test_mixtral_bnb_experts_option(census):
    """Fused experts count as quantized by default; transformers 5.24's bitsandbytes integration replaces only
    nn.Linear/Conv1D, which quantize_experts=False models (experts at bf16)."""
    _, t = census("mistralai/Mixtral-8x7B-v0.1")
    experts = 32 * 8 * 3 * 4096 * 14336                   # layers x experts x (gate, up, down) x hidden x inter
    kept = weights_bytes(t, "nf4-dq", quantize_experts=False)
    assert kept.bytes_by_role["experts"] == experts * 2
    assert any("quantize_experts" in a or "Conv1D" in a for a in weights_bytes(t, "nf4-dq").assumptions)
    quant = weights_bytes(t, "nf4-dq")

    def dq(n):                                             # one quantized matrix
        return n // 2 + n // 64 + 4 * math.ceil(n // 64 / 256) + 16 * 4 + 256 * 4

    # per expert: the fused gate_up [2 x 14336, 4096] and down [4096, 14336], one quant state each
    assert quant.bytes_by_role["experts"] == 32 * 8 * (dq(2 * 14336 * 4096) + dq(4096 * 14336))


# -- GPTQ / AWQ ------------------------------------------------------------------------------------------

def test_gptq_one_matrix_layouts():
    """AutoGPTQ QuantLinear: qweight int32 [in//32*bits, out], qzeros int32 [ceil(in/g), out//32*bits], scales
    fp16 [ceil(in/g), out], g_idx int32 [in], bias fp16 [out]."""
    out, inn = 11008, 4096
    t = [_linear(out, inn, bias=out)]
    g4 = 4 * (inn // 32 * 4) * out + 4 * (inn // 128) * (out // 32 * 4) + 2 * (inn // 128) * out + 4 * inn
    assert weights_bytes(t, "gptq-int4").stored_bytes == g4 + 2 * out
    assert weights_bytes(t, "gptq", bits=4).stored_bytes == g4 + 2 * out
    g3 = 4 * (inn // 32 * 3) * out + 4 * 1 * (out // 32 * 3) + 2 * 1 * out + 4 * inn   # one group (g = -1)
    est = weights_bytes(t, "gptq-int4", bits=3, group_size=-1)
    assert est.format == "gptq-int3" and est.options == {"bits": 3, "group_size": -1}
    assert est.stored_bytes == g3 + 2 * out
    # AutoAWQ WQLinear_GEMM: qweight int32 [in, out/8], qzeros int32 [in/g, out/8], scales fp16 [in/g, out]
    awq = 4 * inn * (out // 8) + 4 * (inn // 128) * (out // 8) + 2 * (inn // 128) * out
    assert weights_bytes(t, "awq-int4").stored_bytes == awq + 2 * out


def test_llama2_gptq_matches_thebloke_checkpoint(census):
    """TheBloke/Llama-2-7B-GPTQ main branch (4 bit, group 128, act-order off): model.safetensors is "3.9 GB" on
    the Hub's file list (https://huggingface.co/TheBloke/Llama-2-7B-GPTQ/tree/main; decimal GB)."""
    _, t = census("meta-llama/Llama-2-7b-hf")
    est = weights_bytes(t, "gptq-int4")
    per_param = 1 / 2 + 1 / 256 + 2 / 128                    # qweight + qzeros + scales, per weight
    g_idx = 4 * LAYERS * (6 * H + I)                         # in_features of q,k,v,o,gate,up = H; down = I
    hand = int(LLAMA_LINEAR * per_param) + g_idx + (2 * LLAMA_EMBED + LLAMA_NORMS) * 2
    assert est.stored_bytes == hand
    assert 3.85e9 <= est.stored_bytes < 3.95e9


# -- fp8 -------------------------------------------------------------------------------------------------

def test_fp8_block_scale_count():
    """One 7168x18432 matrix (DeepSeek-V3's dense MLP): float32 weight_scale_inv per 128x128 block."""
    t = [_linear(18432, 7168, name="up_proj")]
    scales = math.ceil(7168 / 128) * math.ceil(18432 / 128) * 4
    assert scales == 32_256
    assert weights_bytes(t, "fp8-block").stored_bytes == 7168 * 18432 + scales
    assert weights_bytes(t, "fp8").stored_bytes == 7168 * 18432 + 4    # one float32 scale per tensor
    assert weights_bytes(t, "fp8-block", block_size=(64, 64)).stored_bytes == \
        7168 * 18432 + (7168 // 64) * (18432 // 64) * 4


def test_deepseek_v3_fp8_checkpoint(census):
    """deepseek-ai/DeepSeek-V3's safetensors weight files total 688,586,727,753 B (revision afb92e1f; the byte
    count a public model-facts table records for the creator's weight files). The checkpoint also holds the
    MTP module, layer 61 (README_WEIGHTS.md), which transformers does not build: added here by hand. Its fp8
    tensors and bf16 ones follow the main layers' pattern; eh_proj is a plain nn.Linear in vLLM/SGLang's MTP
    code, so bf16; each MoE layer's e_score_correction_bias (fp32, a buffer in transformers) is stored too."""
    cfg, t = census("deepseek-ai/DeepSeek-V3")
    assert checkpoint_format(cfg, {}) == "fp8-block"
    assert format_options(cfg) == {"block_size": (128, 128)}
    main = weights_bytes(t, "fp8-block", **format_options(cfg))
    hidden, q_rank, kv_rank, heads, vocab = 7168, 1536, 512, 128, 129280
    moe_inter, experts = 2048, 256

    def blocks(out, inn):
        return math.ceil(out / 128) * math.ceil(inn / 128)

    attn = [(q_rank, hidden), (heads * 192, q_rank), (kv_rank + 64, hidden), (heads * 256, kv_rank),
            (hidden, heads * 128)]                          # q_a, q_b, kv_a_with_mqa, kv_b, o (out, in)
    mlp = [(moe_inter, hidden), (moe_inter, hidden), (hidden, moe_inter)]   # gate, up, down
    fp8_mats = attn + mlp * (experts + 1)                    # routed experts + 1 shared expert
    mtp_fp8 = sum(o * i for o, i in fp8_mats) + 4 * sum(blocks(o, i) for o, i in fp8_mats)
    mtp_bf16 = 2 * (2 * hidden + q_rank + kv_rank            # layer norms
                    + experts * hidden                        # router gate
                    + 3 * hidden                              # enorm, hnorm, shared_head.norm
                    + hidden * 2 * hidden                     # eh_proj
                    + 2 * vocab * hidden)                     # embed_tokens and shared_head.head copies
    score_bias = 4 * experts * (58 + 1)                      # e_score_correction_bias, 58 MoE layers + MTP
    total = main.stored_bytes + mtp_fp8 + mtp_bf16 + score_bias
    # within 0.01%: the published figure is file bytes, which include 163 safetensors headers
    assert total == pytest.approx(688_586_727_753, rel=1e-4)
    # kept in bf16 as the checkpoint stores them: embeddings, lm_head, router gate, norms
    for role in ("embedding", "lm_head", "router", "other"):
        params = sum(e["params"] for e in t if e["role"] == role)
        assert main.bytes_by_role[role] == params * 2


# -- MXFP4 (gpt-oss) -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, gib", [("openai/gpt-oss-20b", 12.8), ("openai/gpt-oss-120b", 60.8)])
def test_gpt_oss_mxfp4_checkpoint_size(census, name, gib):
    """gpt-oss model card (OpenAI, arXiv 2508.10925) Table 1 "Checkpoint Size": 12.8GiB (20b), 60.8GiB (120b);
    MoE weights in MXFP4 at 4.25 bits, the rest bf16."""
    cfg, t = census(name)
    assert checkpoint_format(cfg, {}) == "mxfp4"
    est = weights_bytes(t, "mxfp4")
    assert round(est.stored_bytes / GiB, 1) == gib
    experts = sum(e["params"] for e in t if e["role"] == "experts")
    assert est.quantized_params == experts
    assert est.bytes_by_role["experts"] * 32 == experts * 17          # 4 bits + one e8m0 byte per 32: 4.25


def test_mxfp4_leaves_dense_models_alone(census):
    _, t = census("meta-llama/Llama-2-7b-hf")
    est = weights_bytes(t, "mxfp4")
    assert est.stored_bytes == LLAMA_PARAMS * 2 and est.quantized_params == 0
    assert any("converts nothing" in a for a in est.assumptions)


# -- tied heads, Conv1D ----------------------------------------------------------------------------------

def test_gpt2_tied_head_and_conv1d(census):
    """GPT-2: lm_head tied to wte (no bytes of its own); Conv1D layers are quantized (transformers' bnb
    integration converts Conv1D). Dims: 12 layers, 768 hidden, c_attn 768->2304, c_fc 768->3072, c_proj x2."""
    _, t = census("openai-community/gpt2")
    est = weights_bytes(t, "int8")
    assert est.bytes_by_role["lm_head"] == 0
    mats = [(2304, 768), (768, 768), (3072, 768), (768, 3072)]        # (out, in)
    weights = 12 * sum(o * i for o, i in mats)
    biases = 12 * sum(o for o, _ in mats)
    assert est.quantized_params == weights
    assert est.bytes_by_role["linear"] == weights + 4 * biases + 2 * biases   # int8 + SCB + bf16 bias


# -- ordering, detection, errors -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["meta-llama/Llama-2-7b-hf", "mistralai/Mixtral-8x7B-v0.1",
                                  "meta-llama/Llama-3.1-8B"])
def test_format_order_is_non_increasing(census, name):
    _, t = census(name)
    sizes = [weights_bytes(t, f).stored_bytes for f in FORMAT_ORDER]
    assert sizes == sorted(sizes, reverse=True)
    assert set(FORMAT_ORDER) <= set(FORMATS) and "mxfp4" not in FORMAT_ORDER


@pytest.mark.parametrize("qc, expected, options", [
    ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
      "bnb_4bit_use_double_quant": True}, "nf4-dq", {}),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "fp4", {}),   # BitsAndBytesConfig default: fp4
    ({"load_in_8bit": True}, "int8", {}),                                   # pre-quant_method configs
    ({"quant_method": "gptq", "bits": 3, "group_size": 64}, "gptq-int3", {"bits": 3, "group_size": 64}),
    ({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False}, "gptq-int4",
     {"bits": 4, "group_size": 128}),
    ({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm"}, "awq-int4",
     {"group_size": 128}),
    ({"quant_method": "fp8", "activation_scheme": "dynamic"}, "fp8", {}),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "block",
                                           "block_structure": [128, 128]}}}}, "fp8-block",
     {"block_size": (128, 128)}),
    ({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
        "targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "tensor"}}}}, "fp8", {}),
])
def test_checkpoint_format_from_quantization_config(qc, expected, options):
    cfg = {"model_type": "llama", "torch_dtype": "bfloat16", "quantization_config": qc}
    assert checkpoint_format(cfg, {"bfloat16": 10}) == expected
    assert format_options(cfg) == options


def test_checkpoint_format_from_dtypes():
    assert checkpoint_format({"torch_dtype": "float16"}, {"bfloat16": 100, "float32": 1}) == "bf16"
    assert checkpoint_format({"torch_dtype": "float16"}, {}) == "fp16"
    assert checkpoint_format({"dtype": "bfloat16"}, None) == "bf16"
    assert checkpoint_format({}, {"int64": 5}) == "fp32"
    assert format_options({"torch_dtype": "float16"}) == {}


def test_errors_are_one_line_value_errors():
    t = [_linear(64, 64)]
    with pytest.raises(ValueError) as err:
        weights_bytes(t, "int3")
    msg = str(err.value)
    assert "\n" not in msg and "int3" in msg and all(name in msg for name in FORMATS)
    for kwargs in ({"bits": 5}, {"group_size": 64, "fmt": "nf4"}, {"block_size": (64, 64), "fmt": "fp8"},
                   {"compute_dtype": "int8"}):
        fmt = kwargs.pop("fmt", "gptq-int4")
        with pytest.raises(ValueError):
            weights_bytes(t, fmt, **kwargs)


def test_unpackable_layers_stay_16bit():
    """AWQ needs in_features divisible by the group and out by 8 (WQLinear_GEMM asserts); GPTQ multiples of 32."""
    t = [_linear(100, 4096, name="odd_out"), _linear(4096, 2880, name="odd_in")]
    est = weights_bytes(t, "awq-int4")
    assert est.quantized_params == 0 and est.stored_bytes == 2 * (100 * 4096 + 4096 * 2880)
    assert any("odd_in" in a and "odd_out" in a for a in est.assumptions)
    gptq = weights_bytes(t, "gptq-int4")
    assert gptq.quantized_params == 4096 * 2880          # 2880 = 90 x 32 packs; out 100 does not


def test_skip_names_keep_layers_16bit():
    t = [_linear(4096, 4096, name="q_proj"), _linear(4096, 4096, name="o_proj")]
    est = weights_bytes(t, "fp8", skip_names={"o_proj"})
    assert est.stored_bytes == (4096 * 4096 + 4) + 4096 * 4096 * 2
    assert est.quantized_params == 4096 * 4096
