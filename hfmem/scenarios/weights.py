"""Weights in real storage formats: the bytes a model's parameters take as a checkpoint stores them and as the
loader keeps them on the device. Pure functions over the inventory's tensor census
(``hfmem.inventory.meta_model.census``, read as typed ``hfmem.model.census.CensusEntry`` objects; the inventory's
dicts are accepted and converted once): no torch, no I/O.

Each format says which tensors it converts and what each converted matrix stores, down to its scales. The
layouts, as the libraries define them:

* ``fp8`` -- float8_e4m3 weight plus one float32 scale per matrix (transformers 5.24
  ``integrations/finegrained_fp8.py``: ``FP8Linear`` with ``block_size=None`` holds ``weight_scale_inv`` as a
  float32 scalar; ``FP8Experts`` a [E, 2, 1] scale for the fused gate_up and [E, 1, 1] for down; vLLM's
  per-tensor fp8 and compressed-tensors' tensor-wise FP8 schemes store the same).
* ``fp8-block`` -- float8_e4m3 weight plus a float32 ``weight_scale_inv`` per 128x128 block: [ceil(out/128),
  ceil(in/128)] (``FP8Linear``; ``_alloc_expert_proj`` for experts, whose fused gate_up keeps at least 2 scale
  rows); DeepSeek-V3's checkpoint (``quantization_config.weight_block_size`` [128, 128], README_WEIGHTS.md).
* ``int8`` -- bitsandbytes LLM.int8 (``Linear8bitLt``): int8 weight [out, in] plus float32 ``SCB`` [out], one
  absmax per output row (transformers ``integrations/bitsandbytes.py`` loads ``weight`` and ``SCB``).
* ``nf4`` / ``fp4`` -- bitsandbytes ``functional.quantize_4bit`` (blocksize 64): packed uint8 [(n+1)//2],
  float32 ``absmax`` [ceil(n/64)], and the 16-entry float32 ``quant_map`` serialized with every weight
  (``QuantState.as_dict``).
* ``nf4-dq`` / ``fp4-dq`` -- ``compress_statistics=True``: absmax - mean quantized by ``quantize_blockwise(...,
  blocksize=256)`` to uint8 [ceil(n/64)] plus float32 ``nested_absmax`` per 256 of those and the 256-entry float32
  ``nested_quant_map``: 4 + 8/64 + 32/(64*256) = 4.127 bits per parameter (QLoRA, arXiv 2305.14314, §3).
* ``gptq-int{2,3,4,8}`` -- AutoGPTQ ``QuantLinear`` (``nn_modules/qlinear/qlinear_cuda_old.py``): ``qweight``
  int32 [in // 32 * bits, out], ``qzeros`` int32 [ceil(in/g), out // 32 * bits], ``scales`` float16
  [ceil(in/g), out], ``g_idx`` int32 [in], ``bias`` float16 [out]; g = group_size (128; -1 = in).
* ``awq-int4`` -- AutoAWQ ``WQLinear_GEMM`` (``awq/modules/linear/gemm.py``): ``qweight`` int32 [in, out/8],
  ``qzeros`` int32 [in/g, out/8], ``scales`` float16 [in/g, out], ``bias`` float16; no g_idx.
* ``mxfp4`` -- gpt-oss: only the fused expert tensors, as uint8 ``*_blocks`` [E, out, in/32, 16] (two e2m1
  values per byte) plus uint8 e8m0 ``*_scales`` [E, out, in/32]: 4.25 bits (transformers ``integrations/mxfp4.py``,
  ``Mxfp4GptOssExperts`` and ``convert_moe_packed_tensors``); everything else stays bf16.

What stays at the 16-bit compute dtype in every quantized format: embeddings, the LM head (bitsandbytes, GPTQ,
AWQ and fp8 skip the output embedding by default: transformers ``quantizers/base.py:get_keys_to_not_convert``;
gpt-oss and DeepSeek-V3 checkpoints store it in bf16), MoE routers (not ``nn.Linear`` in transformers 5, and
listed in gpt-oss's ``modules_to_not_convert``), norms, biases and every other 1-D tensor, and any linear layer
whose shape the format's packing cannot hold (GPTQ needs in and out multiples of 32, AWQ out a multiple of 8 and
in a multiple of the group).

A fused expert tensor [E, a, b] (transformers 5's MoE layout) is E matrices, each quantized on its own with its
own scales; a fused gate_up stays one matrix per expert (one quantization state, as vLLM's w13). Sizes are what
the weights occupy; buffers (rotary caches, DeepSeek's e_score_correction_bias) are the inventory's.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from .. import vocab as _vocab
from ..errors import SettingsError
from ..model.census import ROLES, CensusEntry, census_of  # ROLES re-exported: the census roles

# --- constants, each from the layout it belongs to ---------------------------------------------------------
FP8_BLOCK = (128, 128)          # DeepSeek-V3 config: quantization_config.weight_block_size
BNB_4BIT_BLOCK = 64             # bitsandbytes functional.quantize_4bit(blocksize=64)
BNB_DQ_BLOCK = 256              # quantize_4bit(compress_statistics=True): quantize_blockwise(absmax, blocksize=256)
BNB_4BIT_MAP_BYTES = 16 * 4     # QuantState.code for nf4/fp4: 16 float32 values ("quant_map")
BNB_DQ_MAP_BYTES = 256 * 4      # state2.code: the 256-entry float32 dynamic map ("nested_quant_map")
MXFP4_BLOCK = 32                # OCP MX: 32 elements share one e8m0 scale (mxfp4.py: blocks [..., G, 16])
GPTQ_PACK_BITS = 32             # qweight/qzeros pack into int32
GPTQ_BITS = (2, 3, 4, 8)        # QuantLinear: "Only 2,3,4,8 bits are supported."
DEFAULT_GROUP_SIZE = 128        # GPTQ and AWQ's usual group size (TheBloke's main branches, AutoAWQ default)


_DTYPE_BYTES = _vocab.DTYPE_BYTES      # re-exported from hfmem.vocab
_DTYPE_ALIASES = _vocab.DTYPE_ALIASES


@dataclass(frozen=True)
class WeightFormat:
    name: str
    family: str          # "dense", "fp8", "bnb8", "bnb4", "gptq", "awq", "mxfp4"
    bits: int            # nominal bits of a converted weight element
    converts: tuple[str, ...]  # census roles the format converts; the rest stays at the compute dtype
    description: str
    source: str


_LOW = ("linear", "experts")
FORMATS: dict[str, WeightFormat] = {f.name: f for f in (
    WeightFormat("fp32", "dense", 32, ROLES, "every tensor in float32", "torch.float32"),
    WeightFormat("bf16", "dense", 16, ROLES, "every tensor in bfloat16", "torch.bfloat16"),
    WeightFormat("fp16", "dense", 16, ROLES, "every tensor in float16", "torch.float16"),
    WeightFormat("fp8", "fp8", 8, _LOW, "float8_e4m3 weights, one float32 scale per matrix",
                 "transformers integrations/finegrained_fp8.py FP8Linear(block_size=None); vLLM fp8"),
    WeightFormat("fp8-block", "fp8", 8, _LOW, "float8_e4m3 weights, float32 weight_scale_inv per 128x128 block",
                 "transformers integrations/finegrained_fp8.py; DeepSeek-V3 README_WEIGHTS.md"),
    WeightFormat("int8", "bnb8", 8, _LOW, "bitsandbytes LLM.int8: int8 weights, float32 SCB per output row",
                 "bitsandbytes Linear8bitLt; transformers integrations/bitsandbytes.py"),
    WeightFormat("nf4", "bnb4", 4, _LOW, "bitsandbytes NF4: packed 4-bit, float32 absmax per 64",
                 "bitsandbytes functional.quantize_4bit"),
    WeightFormat("fp4", "bnb4", 4, _LOW, "bitsandbytes FP4: packed 4-bit, float32 absmax per 64",
                 "bitsandbytes functional.quantize_4bit"),
    WeightFormat("nf4-dq", "bnb4", 4, _LOW, "bitsandbytes NF4 + double quantization (4.127 bits)",
                 "bitsandbytes quantize_4bit(compress_statistics=True); QLoRA arXiv 2305.14314"),
    WeightFormat("fp4-dq", "bnb4", 4, _LOW, "bitsandbytes FP4 + double quantization (4.127 bits)",
                 "bitsandbytes quantize_4bit(compress_statistics=True)"),
    *(WeightFormat(f"gptq-int{b}", "gptq", b, _LOW,
                   f"GPTQ {b}-bit: int32-packed qweight/qzeros, float16 scales per group, int32 g_idx",
                   "AutoGPTQ nn_modules/qlinear/qlinear_cuda_old.py QuantLinear") for b in (8, 4, 3, 2)),
    WeightFormat("awq-int4", "awq", 4, _LOW, "AWQ 4-bit (GEMM): int32-packed qweight/qzeros, float16 scales",
                 "AutoAWQ awq/modules/linear/gemm.py WQLinear_GEMM"),
    WeightFormat("mxfp4", "mxfp4", 4, ("experts",), "MXFP4 experts (4.25 bits), everything else bf16",
                 "transformers integrations/mxfp4.py Mxfp4GptOssExperts; gpt-oss model card §2.1"),
)}

# Largest to smallest footprint, by bytes per parameter of a large linear layer (4096x4096, group 128):
# fp32 4, bf16 = fp16 2, gptq-int8 1.0234 (+ g_idx), int8 1 + 4/in, fp8-block 1 + 4/16384, fp8 1 + 4/(in*out),
# nf4 = fp4 0.5625, gptq-int4 0.5195 (+ g_idx), awq-int4 0.5195, nf4-dq = fp4-dq 0.5159, gptq-int3 0.3936,
# gptq-int2 0.2676. The 16-bit parts (embeddings, LM head, norms) are the same in every quantized format.
# mxfp4 is left out: it converts only fused experts (transformers can apply it to gpt-oss alone), so on a dense
# model it is bf16. For layers of a few thousand elements the per-tensor constants of bitsandbytes (1,088 B
# with double quantization) can reorder neighbours, and AWQ keeps at 16 bit the layers whose in_features is not a
# multiple of its group (gpt-oss: 2880 = 22.5 x 128); callers that need exactness compare weights_bytes.
FORMAT_ORDER: tuple[str, ...] = (
    "fp32", "bf16", "fp16", "gptq-int8", "int8", "fp8-block", "fp8", "nf4", "fp4",
    "gptq-int4", "awq-int4", "nf4-dq", "fp4-dq", "gptq-int3", "gptq-int2",
)


class WeightFormatError(SettingsError):
    """An unknown weight format or an option it does not take (a settings error, exit 2; also a ValueError)."""


@dataclass(frozen=True)
class WeightsEstimate:
    format: str
    logical_params: int          # every parameter once (tied weights once): the census total
    stored_bytes: int            # all weights as stored, scales and quantization constants included
    quantized_params: int        # parameters converted to the format's low-bit storage
    bytes_by_role: dict[str, int]
    assumptions: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)  # bits, group_size, block_size actually used

    @property
    def bytes_per_param(self) -> float:
        return self.stored_bytes / self.logical_params if self.logical_params else 0.0


# --- the checkpoint's own format ---------------------------------------------------------------------------

_STORED_DTYPE_FORMAT = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32",
                        "float8_e4m3fn": "fp8", "F8_E4M3": "fp8", "BF16": "bf16", "F16": "fp16", "F32": "fp32"}


def _quantization_config(config: dict) -> dict | None:
    qc = config.get("quantization_config")
    if qc is None and isinstance(config.get("text_config"), dict):
        qc = config["text_config"].get("quantization_config")
    return qc if isinstance(qc, dict) else None


def _compressed_tensors_weights(qc: dict) -> dict | None:
    """The ``weights`` scheme of the first config group of a compressed-tensors config, if any."""
    for group in (qc.get("config_groups") or {}).values():
        weights = group.get("weights") if isinstance(group, dict) else None
        if isinstance(weights, dict):
            return weights
    return None


def _from_quantization_config(qc: dict) -> tuple[str, dict] | None:
    method = str(qc.get("quant_method", "")).lower().replace("_", "-")
    if method == "fp8":
        block = qc.get("weight_block_size")
        return ("fp8-block", {"block_size": tuple(block)}) if block else ("fp8", {})
    bnb_keys = ("load_in_4bit", "load_in_8bit", "_load_in_4bit", "_load_in_8bit")
    if method.startswith("bitsandbytes") or (not method and any(k in qc for k in bnb_keys)):
        if qc.get("load_in_4bit") or qc.get("_load_in_4bit") or method.endswith("4bit"):
            # transformers BitsAndBytesConfig: bnb_4bit_quant_type defaults to "fp4"
            kind = str(qc.get("bnb_4bit_quant_type") or "fp4").lower()
            return (f"{kind}-dq" if qc.get("bnb_4bit_use_double_quant") else kind), {}
        if qc.get("load_in_8bit") or qc.get("_load_in_8bit") or method.endswith("8bit"):
            return "int8", {}
        return None
    if method == "gptq":
        bits = int(qc.get("bits", 4))
        return f"gptq-int{bits}", {"group_size": int(qc.get("group_size", DEFAULT_GROUP_SIZE))}
    if method == "awq":
        return "awq-int4", {"group_size": int(qc.get("group_size", qc.get("q_group_size", DEFAULT_GROUP_SIZE)))}
    if method == "mxfp4":
        return "mxfp4", {}
    if method == "compressed-tensors":
        w = _compressed_tensors_weights(qc)
        if not w:
            return None
        bits, kind, strategy = w.get("num_bits"), w.get("type"), w.get("strategy")
        if bits == 8 and kind == "float":
            if strategy == "block" and w.get("block_structure"):
                return "fp8-block", {"block_size": tuple(w["block_structure"])}
            return "fp8", {}  # tensor-wise; channel-wise adds 4 B per output row (~0.1%), not modelled
        if kind == "int" and bits in GPTQ_BITS:
            # pack-quantized int weights with per-group scales: GPTQ's bytes within its zero points and g_idx
            group = w.get("group_size") or -1
            return f"gptq-int{bits}", {"group_size": int(group)}
    return None


def checkpoint_format(config: dict, params_by_dtype: dict | None = None) -> str:
    """The format a repository's checkpoint is stored in: from ``quantization_config`` when it names one this
    module knows, else the dominant stored floating dtype (``params_by_dtype``), else the config's
    ``torch_dtype``/``dtype``, else fp32 (what transformers builds without a dtype)."""
    qc = _quantization_config(config)
    if qc:
        found = _from_quantization_config(qc)
        if found:
            return found[0]
    floats = {_STORED_DTYPE_FORMAT[k]: v for k, v in (params_by_dtype or {}).items() if k in _STORED_DTYPE_FORMAT}
    if floats:
        return max(floats.items(), key=lambda kv: kv[1])[0]
    for key in ("torch_dtype", "dtype"):
        name = config.get(key) or (config.get("text_config") or {}).get(key)
        if isinstance(name, str) and name in _STORED_DTYPE_FORMAT:
            return _STORED_DTYPE_FORMAT[name]
    return "fp32"


def format_options(config: dict) -> dict:
    """The options of the checkpoint's quantization (``bits``, ``group_size``, ``block_size``), ready to pass to
    ``weights_bytes(..., **format_options(config))``; empty when the config names no quantization."""
    qc = _quantization_config(config)
    found = _from_quantization_config(qc) if qc else None
    if not found:
        return {}
    fmt, options = found
    spec = FORMATS.get(fmt)
    if spec and spec.family == "gptq":
        options = {"bits": spec.bits, **options}
    return options


# --- bytes of one matrix -----------------------------------------------------------------------------------

def _fp8_bytes(out: int, inn: int, block: tuple[int, int] | None, fused_gate_up: bool) -> int:
    if block is None:  # one float32 scale per matrix; FP8Experts keeps 2 for a fused gate_up (min_sf_out=2)
        return out * inn + 4 * (2 if fused_gate_up else 1)
    rows = math.ceil(out / block[0])
    if fused_gate_up:
        rows = max(rows, 2)
    return out * inn + 4 * rows * math.ceil(inn / block[1])


def _bnb4_bytes(n: int, double_quant: bool) -> int:
    blocks = math.ceil(n / BNB_4BIT_BLOCK)
    packed = (n + 1) // 2
    if not double_quant:
        return packed + 4 * blocks + BNB_4BIT_MAP_BYTES
    return packed + blocks + 4 * math.ceil(blocks / BNB_DQ_BLOCK) + BNB_4BIT_MAP_BYTES + BNB_DQ_MAP_BYTES


def _gptq_bytes(out: int, inn: int, bits: int, group: int) -> int:
    groups = math.ceil(inn / group)
    qweight = 4 * (inn // GPTQ_PACK_BITS * bits) * out
    qzeros = 4 * groups * (out // GPTQ_PACK_BITS * bits)
    scales = 2 * groups * out
    g_idx = 4 * inn
    return qweight + qzeros + scales + g_idx


def _awq_bytes(out: int, inn: int, group: int) -> int:
    groups = inn // group
    packed_cols = out // 8  # 32 // w_bit with w_bit = 4
    return 4 * inn * packed_cols + 4 * groups * packed_cols + 2 * groups * out


def _mxfp4_bytes(out: int, inn: int) -> int:
    groups = math.ceil(inn / MXFP4_BLOCK)
    return out * groups * (MXFP4_BLOCK // 2) + out * groups  # blocks + e8m0 scales


def _convertible(fmt: WeightFormat, out: int, inn: int, group: int) -> bool:
    if fmt.family == "gptq":
        return inn % GPTQ_PACK_BITS == 0 and out % GPTQ_PACK_BITS == 0
    if fmt.family == "awq":
        return out % 8 == 0 and inn % group == 0
    return True


def _matrix_bytes(fmt: WeightFormat, out: int, inn: int, *, bits: int, group: int,
                  block: tuple[int, int] | None, fused_gate_up: bool) -> int:
    if fmt.family == "fp8":
        return _fp8_bytes(out, inn, block, fused_gate_up)
    if fmt.family == "bnb8":
        return out * inn + 4 * out
    if fmt.family == "bnb4":
        return _bnb4_bytes(out * inn, fmt.name.endswith("-dq"))
    if fmt.family == "gptq":
        return _gptq_bytes(out, inn, bits, inn if group == -1 else group)
    if fmt.family == "awq":
        return _awq_bytes(out, inn, inn if group == -1 else group)
    if fmt.family == "mxfp4":
        return _mxfp4_bytes(out, inn)
    raise AssertionError(fmt.name)  # dense formats never reach here


# --- the model ---------------------------------------------------------------------------------------------

def _resolve(fmt: str, bits: int | None) -> tuple[WeightFormat, int]:
    name = fmt.strip().lower()
    if name == "gptq":
        name = f"gptq-int{bits or 4}"
    spec = FORMATS.get(name)
    if spec is None:
        raise WeightFormatError(f"unknown weight format {fmt!r}; known: {', '.join(FORMATS)}")
    if bits is not None and bits != spec.bits:
        if spec.family != "gptq" or bits not in GPTQ_BITS:
            raise WeightFormatError(f"weight format {spec.name} stores {spec.bits}-bit weights, not bits={bits}"
                                    + ("; GPTQ takes bits 2, 3, 4 or 8" if spec.family == "gptq" else ""))
        spec = FORMATS[f"gptq-int{bits}"]
    return spec, spec.bits


def _compute_bytes(compute_dtype: str) -> tuple[str, int]:
    if not _vocab.is_dtype(compute_dtype):
        raise WeightFormatError(f"unknown compute dtype {compute_dtype!r}; known: bfloat16, float16, float32 "
                                f"(any of {_vocab.accepted_dtype_names()})", setting="compute_dtype")
    name = _vocab.canonical_dtype(compute_dtype, setting="compute_dtype")
    return name, _DTYPE_BYTES[name]


def _matrices(entry: CensusEntry) -> tuple[int, int, int]:
    """(number of matrices, out, in) of a linear or fused-experts census entry. Fused experts are [E, out, in]
    in transformers 5's default layout (``integrations/moe.py``: is_transposed=False); an entry marked
    ``transposed`` (gpt-oss: ``use_experts_implementation(is_transposed=True)``, [E, in, out]) is read the
    other way round."""
    if entry.role == "experts":
        experts, a, b = entry.shape[-3:]
        out, inn = (b, a) if entry.transposed else (a, b)
        return entry.count * experts, out, inn
    return entry.count, entry.out_features, entry.in_features


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def weights_bytes(tensors: Iterable[CensusEntry | dict], fmt: str, *, compute_dtype: str = "bfloat16",
                  bits: int | None = None, group_size: int | None = None,
                  block_size: tuple[int, int] | list[int] | None = None,
                  quantize_experts: bool = True, skip_names: Collection[str] = ()) -> WeightsEstimate:
    """Bytes of every parameter in the census ``tensors`` stored in format ``fmt`` (a key of ``FORMATS``, or
    ``"gptq"`` with ``bits``).

    ``compute_dtype`` is the width of what a quantized format keeps unconverted (2 B for bf16/fp16);
    dense formats ignore it. ``bits``/``group_size`` apply to GPTQ (bits 2/3/4/8, group 128 by default, -1 =
    one group per input row) and ``group_size`` to AWQ; ``block_size`` to fp8-block (128x128 by default).
    ``quantize_experts=False`` keeps fused expert tensors at the compute dtype in the bitsandbytes formats, as
    transformers 5.24's bitsandbytes integration does (it replaces only nn.Linear/Conv1D). ``skip_names``:
    census names (``q_proj``, ``experts.gate_up_proj``) kept at the compute dtype, as a
    ``modules_to_not_convert`` would.
    """
    spec, bits = _resolve(fmt, bits)
    tensors = census_of(tensors)
    if group_size is not None and spec.family not in ("gptq", "awq"):
        raise WeightFormatError(f"group_size applies to the gptq and awq formats, not {spec.name}")
    if block_size is not None and spec.name != "fp8-block":
        raise WeightFormatError(f"block_size applies to fp8-block, not {spec.name}")
    group = DEFAULT_GROUP_SIZE if group_size is None else int(group_size)
    if group == 0 or group < -1:
        raise WeightFormatError(f"group_size must be positive or -1, not {group_size}")
    block = tuple(block_size) if block_size is not None else (FP8_BLOCK if spec.name == "fp8-block" else None)
    dtype_name, hp = _compute_bytes(compute_dtype)
    if spec.family == "dense":
        dtype_name = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[spec.name]
        hp = _DTYPE_BYTES[dtype_name]
    bias_bytes = 2 if spec.family in ("gptq", "awq") else hp  # GPTQ/AWQ keep bias in float16

    by_role = {role: 0 for role in ROLES}
    logical = quantized = kept_params = 0
    not_convertible: dict[str, int] = {}
    skipped_experts = 0
    for e in tensors:
        role, params = e.role, e.params
        logical += params
        by_role.setdefault(role, 0)
        converts = role in spec.converts and spec.family != "dense" and params > 0 and not e.tied
        if converts and role == "experts" and spec.family in ("bnb4", "bnb8") and not quantize_experts:
            converts = False
            skipped_experts += params
        if converts and e.name in skip_names:
            converts = False
        if converts:
            n_mat, out, inn = _matrices(e)
            if not _convertible(spec, out, inn, inn if group == -1 else group):
                not_convertible[e.name] = not_convertible.get(e.name, 0) + params
                converts = False
        if not converts:
            by_role[role] += params * hp
            if spec.family != "dense":
                kept_params += params
            continue
        bias = e.bias * e.count if role != "experts" else 0
        weight_params = params - bias
        fused = role == "experts" and "gate_up" in e.name
        per = _matrix_bytes(spec, out, inn, bits=bits, group=group, block=block, fused_gate_up=fused)
        by_role[role] += n_mat * per + bias * bias_bytes
        quantized += weight_params
        kept_params += bias

    assumptions = [f"{spec.name}: {spec.description} ({spec.source})"]
    options: dict = {}
    if spec.family == "gptq":
        options = {"bits": bits, "group_size": group}
        assumptions.append(f"group size {'one group per input row' if group == -1 else group}; g_idx stored "
                           "(int32 per input feature) as AutoGPTQ saves it; bias in float16")
    elif spec.family == "awq":
        options = {"bits": 4, "group_size": group}
    elif spec.name == "fp8-block":
        options = {"block_size": list(block)}
    if spec.family != "dense":
        assumptions.append(f"kept at {dtype_name}: {_plural(kept_params, 'parameter')} (embeddings, LM head, "
                           "routers, norms, biases and anything the format does not convert)")
    if spec.family == "bnb4":
        assumptions.append("not counted: the packed quant_state JSON bitsandbytes serializes with each 4-bit "
                           "weight (a few hundred bytes)")
    has_experts = any(e.role == "experts" and e.params for e in tensors)
    if spec.family in ("bnb4", "bnb8") and has_experts:
        if quantize_experts:
            assumptions.append("fused experts counted quantized, one quantized matrix per expert (vLLM, "
                               "transformers < 5); transformers 5.24's bitsandbytes integration replaces only "
                               "nn.Linear/Conv1D and leaves fused 3-D experts at the compute dtype "
                               "(quantize_experts=False)")
        else:
            assumptions.append(f"fused experts kept at {dtype_name} ({_plural(skipped_experts, 'parameter')}): "
                               "transformers 5.24's bitsandbytes integration replaces only nn.Linear/Conv1D")
    if spec.family == "mxfp4":
        if not has_experts:
            assumptions.append(f"no fused expert tensors: mxfp4 converts nothing here, every tensor is {dtype_name}")
        else:
            assumptions.append("expert biases at the compute dtype as the checkpoint stores them; transformers' "
                               "Mxfp4GptOssExperts holds them in float32 (2 B more per bias element)")
    if not_convertible:
        names = ", ".join(sorted(not_convertible))
        assumptions.append(f"kept at {dtype_name}, shape not packable in {spec.name}: {names} "
                           f"({_plural(sum(not_convertible.values()), 'parameter')})")
    if skip_names and spec.family != "dense":
        assumptions.append(f"kept at {dtype_name} as asked: {', '.join(sorted(skip_names))}")

    by_role = {role: b for role, b in by_role.items() if b or role in ROLES}
    return WeightsEstimate(format=spec.name, logical_params=logical, stored_bytes=sum(by_role.values()),
                           quantized_params=quantized, bytes_by_role=by_role, assumptions=assumptions,
                           options=options)


# --- bitsandbytes at run time: the transients of one quantized linear and of quantize-on-load ----------------
#
# Counted from bitsandbytes 0.45-0.49 (bitsandbytes/nn/modules.py, autograd/_functions.py) and transformers 5.24
# (integrations/bitsandbytes.py, core_model_loading.py); elements x bytes, no fudge factor.
#
# Linear4bit.forward: ``x = x.to(self.compute_dtype)`` (a copy when the compute dtype is not the input's), then
# ``bnb.matmul_4bit``: with one row (``A.numel() == A.shape[-1]``, a single-sequence decode step) the fused
# ``gemv_4bit`` kernel, no weight-sized temporary; otherwise ``MatMul4Bit.forward``:
# ``torch.nn.functional.linear(A, F.dequantize_4bit(B, quant_state).to(A.dtype).t(), bias)`` -- the weight
# dequantized to its storage dtype (``quant_state.dtype``, the dtype it was quantized from), then copied to the
# compute dtype while that copy is alive (``.to`` is a no-op when the two agree), then the matmul's output in the
# compute dtype; finally ``.to(inp_dtype)`` casts the output back while the compute-dtype one is alive.
# (bitsandbytes 0.50's ``gemm_4bit`` fallback dequantizes straight into the compute dtype: no storage-dtype copy.)
#
# Linear8bitLt (MatMul8bitLt.forward, inference): ``F.int8_vectorwise_quant(A.to(torch.float16))`` -- an fp16
# copy of the input unless it is fp16, its int8 rows CA and float32 row scales SCA --, ``int8_scaled_mm``: the
# int32 product [M, out] then the dequantized output in the input dtype. The outlier columns (threshold 6.0,
# ``int8_mixed_scaled_mm``: A[:, cols] and the dequantized B[:, cols]) depend on the data and are not counted.

def bnb_linear_extra_bytes(family: str, *, out: int, inn: int, rows: int, model_bytes: int,
                           compute_bytes: int = 4, storage_bytes: int | None = None,
                           compute_is_model: bool | None = None, storage_is_compute: bool | None = None) -> int:
    """Bytes one bitsandbytes linear holds above what a 16-bit ``nn.Linear`` of the same shape holds at its
    output (the output in the model dtype, ``rows·out·model_bytes``), at the worst moment of its forward on
    ``rows`` = batch x tokens rows. ``family``: "bnb4" or "bnb8". ``storage_bytes``: the dtype a 4-bit weight was
    quantized from (default: the model dtype); ``compute_is_model`` / ``storage_is_compute``: whether those dtypes
    are the same dtype (not just the same width: bf16 vs fp16); by default same width = same dtype."""
    m_rows, m = int(rows), int(model_bytes)
    out_model = m_rows * out * m
    if family == "bnb8":
        # ``compute_is_model`` here: the model dtype is float16 (A.to(torch.float16) is then no copy)
        a16 = 0 if compute_is_model else m_rows * inn * 2
        ca, sca, i32 = m_rows * inn, 4 * m_rows, 4 * m_rows * out
        # the int32 product alive while the dequantized output (the baseline's own output) is made
        return a16 + ca + sca + i32
    if family != "bnb4":
        return 0
    c = int(compute_bytes)
    s = m if storage_bytes is None else int(storage_bytes)
    same_cm = (c == m) if compute_is_model is None else compute_is_model
    same_sc = (s == c) if storage_is_compute is None else storage_is_compute
    x_copy = 0 if same_cm else m_rows * inn * c
    if m_rows == 1:  # gemv_4bit: no dequantized weight
        linear = m_rows * out * c
        cast_back = m_rows * out * c + (0 if same_cm else out_model)
        return max(x_copy + max(linear, cast_back) - out_model, 0)
    dequant = out * inn * s + (0 if same_sc else out * inn * c)
    linear = out * inn * c + m_rows * out * c
    cast_back = m_rows * out * c + (0 if same_cm else out_model)
    return max(x_copy + max(dequant, linear, cast_back) - out_model, 0)


def quantized_linears(tensors: Iterable[CensusEntry | dict], fmt: str, *, quantize_experts: bool = False,
                      skip_names: Collection[str] = ()) -> list[tuple[str, int, int]]:
    """(census name, out, in) of every matrix shape format ``fmt`` converts (the bitsandbytes linears), once per
    shape; fused experts only with ``quantize_experts``."""
    spec, _ = _resolve(fmt, None)
    seen: dict[tuple[int, int], str] = {}
    for e in census_of(tensors):
        if e.role not in spec.converts or spec.family == "dense" or not e.params or e.tied or e.name in skip_names:
            continue
        if e.role == "experts" and not quantize_experts:
            continue
        _, out, inn = _matrices(e)
        if out and inn:
            seen.setdefault((out, inn), e.name)
    return [(name, out, inn) for (out, inn), name in seen.items()]


def bnb_load_extra_bytes(family: str, *, out: int, inn: int, load_bytes: int) -> int:
    """Bytes above the loaded model while transformers 5.24 quantizes one ``out x in`` weight on load (on-the-fly
    quantization loads one tensor at a time: core_model_loading turns its thread pool off for it). 4-bit
    (``Bnb4bitQuantize.convert``): the checkpoint tensor is materialized on the GPU in the load dtype and
    ``Params4bit(value).to(device)`` quantizes it in place (``quantize_4bit``: packed + absmax, the final bytes);
    the 16-bit tensor lives until ``convert`` returns: ``n·load_bytes``. 8-bit (``Bnb8bitQuantize.convert``): the
    GPU tensor stays referenced while ``Int8Params(value.to("cpu")).to(device)`` makes a new fp16 copy on the GPU
    (``B.to(device, dtype=float16)``) and quantizes it (CB int8 = the final bytes): ``n·load_bytes + 2n``."""
    n = int(out) * int(inn)
    if family == "bnb4":
        return n * int(load_bytes)
    if family == "bnb8":
        return n * int(load_bytes) + 2 * n
    return 0
