#!/usr/bin/env python
"""Validation report: published closed forms and measured GPU numbers next to hfmem's simulation.

    .venv/bin/python benchmarks/validate.py            # the whole matrix  -> docs/validation.md
    .venv/bin/python benchmarks/validate.py --quick    # the CI subset     -> benchmarks/results/validation-quick.md

Three parts, all regenerated from scratch by one run (nothing in the report is typed by hand except the
published measurements, quoted from ../shared/docs/ground-truth.md with their sources):

1. **Matrix**: architectures x settings (train / infer, seq, batch, attention, gradient checkpointing,
   LoRA, AMP) on real configs from the shipped snapshot (``cache/models``). Per case: the *analytic
   estimate* from the published formulas in ``hfmem/scenarios/formulas.py``, the same form with the
   simulation-calibrated coefficients of ``hfmem/data/calibration.json``, and the *simulated peak*
   (``hfmem.simulate``: the real transformers code on fake tensors, allocator-level peak with 512 B
   rounding). Error = estimate / simulated - 1.
2. **Measured cases** of ground-truth.md (PEFT MetaMathQA, fitcheck, stas00's activation coefficients),
   each with the quantity it measures (allocated / reserved / device), next to the simulation of the same
   setting where it can run.
3. **GPU measurements** from ``benchmarks/measured/*.json`` (written by benchmarks/measure_gpu.py), when
   such files exist: max_memory_allocated, max_memory_reserved and device used next to the simulation.

The matrix (``CASES``) is shared with measure_gpu.py, which runs the same cases on a real GPU.
The module imports no torch at import time; ``estimate`` and ``simulate_case`` import it when called.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as _dt
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without an install
    sys.path.insert(0, str(ROOT))

from hfmem.scenarios import formulas as F  # noqa: E402  (pure functions, no torch)
from hfmem.reference import measurements as M  # noqa: E402  (the published numbers, shared with the tests)
from hfmem.reference.measurements import PEFT_SOURCE  # noqa: E402,F401  (validate.PEFT_SOURCE, as before)

SNAPSHOT = ROOT / "cache" / "models"
CALIBRATION = ROOT / "hfmem" / "data" / "calibration.json"
MEASURED_DIR = ROOT / "benchmarks" / "measured"
PEFT_CSV = ROOT.parent / "shared" / "calibration" / "peft_metamathqa_memory.csv"
DOC = ROOT / "docs" / "validation.md"
QUICK_DOC = ROOT / "benchmarks" / "results" / "validation-quick.md"
GiB = 1 << 30
MiB = 1 << 20
from hfmem.vocab import DTYPE_BYTES  # noqa: E402  (the one dtype table)


# -- the matrix -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One setting of one model. ``seq`` is the training sequence length or the inference context."""

    key: str
    model: str  # repo id of a snapshot config (cache/models/<org>/<name>/config.json)
    mode: str  # "train" | "infer"
    batch: int = 1
    seq: int = 2048
    new_tokens: int = 0  # inference: decode steps after the prefill
    attn: str = "sdpa"
    dtype: str = "bfloat16"  # weights (with amp: the autocast dtype; weights are fp32)
    amp: str | None = None
    grad_ckpt: bool = False
    lora: tuple | None = None  # (r, alpha, (target module names...)); adapters in fp32 as PEFT does
    layers: int | None = None  # a reduced number of decoder layers (None: the whole model)
    quick: bool = False  # part of the --quick subset (CI)
    priority: int = 5  # measure_gpu.py runs lower numbers first
    note: str = ""

    def lora_dict(self) -> dict | None:
        if self.lora is None:
            return None
        r, alpha, targets = self.lora
        return {"r": r, "alpha": alpha, "targets": list(targets)}

    def setting(self) -> str:
        parts = [self.mode, f"b{self.batch}", f"{'s' if self.mode == 'train' else 'ctx'}{self.seq}"]
        if self.mode == "infer" and self.new_tokens:
            parts.append(f"+{self.new_tokens}")
        parts.append(self.attn)
        parts.append(f"amp-{self.amp}" if self.amp else self.dtype.replace("bfloat16", "bf16").replace("float", "fp"))
        if self.grad_ckpt:
            parts.append("GC")
        if self.lora:
            parts.append(f"LoRA r{self.lora[0]} {'+'.join(t.replace('_proj', '') for t in self.lora[2])}")
        return " ".join(parts)

    def label(self) -> str:
        name = self.model.split("/", 1)[1]
        return f"{name} ({self.layers} layers)" if self.layers else name


QV = ("q_proj", "v_proj")
QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")

CASES: tuple[Case, ...] = (
    # -- training ------------------------------------------------------------------------------------------
    Case("llama2-7b-train", "meta-llama/Llama-2-7b-hf", "train", 1, 2048, quick=True, priority=1,
         note="product.md reference case (62.76 GiB)"),
    Case("llama32-3b-full-b4", "meta-llama/Llama-3.2-3B", "train", 4, 768, quick=True, priority=1,
         note="PEFT MetaMathQA full fine-tuning setting"),
    Case("llama32-3b-lora32-b4", "meta-llama/Llama-3.2-3B", "train", 4, 768, lora=(32, 64, QV), quick=True,
         priority=1, note="PEFT MetaMathQA LoRA r32 setting"),
    Case("gpt2-medium-fp32-b4", "openai-community/gpt2-medium", "train", 4, 1024, dtype="float32", quick=True,
         priority=2, note="fp32 weights, dropout 0.1"),
    Case("llama2-7b-eager", "meta-llama/Llama-2-7b-hf", "train", 1, 2048, attn="eager", priority=2),
    Case("llama2-7b-gc", "meta-llama/Llama-2-7b-hf", "train", 1, 2048, grad_ckpt=True, priority=2),
    Case("llama2-7b-lora16", "meta-llama/Llama-2-7b-hf", "train", 1, 2048, lora=(16, 32, QV), priority=2),
    Case("llama2-7b-lora16-gc-b4", "meta-llama/Llama-2-7b-hf", "train", 4, 2048, grad_ckpt=True,
         lora=(16, 32, QV), priority=3),
    Case("qwen3-8b-lora16-b2-s4096", "Qwen/Qwen3-8B", "train", 2, 4096, lora=(16, 32, QKVO), priority=3,
         note="activations dominate"),
    Case("llama32-1b-amp-b2", "meta-llama/Llama-3.2-1B", "train", 2, 2048, amp="bf16", priority=3,
         note="torch.autocast on fp32 weights"),
    Case("mistral-7b-s4096", "mistralai/Mistral-7B-v0.1", "train", 1, 4096, priority=3),
    Case("qwen25-7b-s4096", "Qwen/Qwen2.5-7B", "train", 1, 4096, priority=3),
    Case("qwen3-8b-gc-b2", "Qwen/Qwen3-8B", "train", 2, 2048, grad_ckpt=True, priority=3),
    Case("gemma-2b-b2", "google/gemma-2b-it", "train", 2, 2048, priority=4, note="vocab 256k"),
    Case("gemma2-2b-eager", "google/gemma-2-2b-it", "train", 1, 2048, attn="eager", priority=4,
         note="transformers 5.24 has no SDPA for Gemma2"),
    Case("gemma3-1b-b4", "google/gemma-3-1b-it", "train", 4, 1024, priority=4,
         note="5 local (window 512) : 1 global"),
    Case("phi3-mini", "microsoft/Phi-3-mini-4k-instruct", "train", 1, 2048, priority=4,
         note="sliding window 2047 < seq: masked SDPA"),
    Case("redpajama-3b-sdpa", "togethercomputer/RedPajama-INCITE-Chat-3B-v1", "train", 1, 2048, priority=4),
    Case("redpajama-3b-eager", "togethercomputer/RedPajama-INCITE-Chat-3B-v1", "train", 1, 2048, attn="eager",
         priority=4),
    Case("mixtral-4l", "mistralai/Mixtral-8x7B-v0.1", "train", 1, 2048, layers=4, priority=5),
    Case("qwen3-30b-a3b-6l", "Qwen/Qwen3-30B-A3B", "train", 1, 2048, layers=6, priority=5),
    Case("deepseek-v3-5l", "deepseek-ai/DeepSeek-V3", "train", 1, 1024, layers=5, priority=6,
         note="3 dense + 2 MoE layers, MLA"),
    Case("gpt-oss-20b-4l", "openai/gpt-oss-20b", "train", 1, 2048, attn="eager", layers=4, priority=6,
         note="no SDPA in transformers 5.24; sliding 128 / full alternate"),
    # -- inference -----------------------------------------------------------------------------------------
    Case("llama31-8b-infer-8k", "meta-llama/Llama-3.1-8B", "infer", 1, 8192, new_tokens=16, quick=True,
         priority=1),
    Case("gpt2-infer-eager-b8", "openai-community/gpt2", "infer", 8, 1024, new_tokens=8, attn="eager",
         dtype="float32", quick=True, priority=2),
    Case("qwen3-8b-infer-b4", "Qwen/Qwen3-8B", "infer", 4, 8192, new_tokens=1, priority=1,
         note="the issue's example"),
    Case("llama2-7b-infer-eager-4k", "meta-llama/Llama-2-7b-hf", "infer", 1, 4096, new_tokens=8, attn="eager",
         priority=2),
    Case("mistral-7b-infer-8k", "mistralai/Mistral-7B-v0.1", "infer", 1, 8192, new_tokens=8, priority=3,
         note="sliding window 4096"),
    Case("gemma2-9b-infer-eager-b2", "google/gemma-2-9b-it", "infer", 2, 4096, new_tokens=8, attn="eager",
         priority=4),
    Case("qwen3-30b-a3b-infer-4k", "Qwen/Qwen3-30B-A3B", "infer", 1, 4096, new_tokens=4, priority=4),
    Case("llama31-70b-infer-4k", "meta-llama/Llama-3.1-70B", "infer", 1, 4096, new_tokens=4, priority=7,
         note="131 GiB of weights: fits an H200 only just"),
    Case("deepseek-v3-infer-2k", "deepseek-ai/DeepSeek-V3", "infer", 1, 2048, new_tokens=2, priority=9,
         note="671B: simulation only"),
)


def quick_cases() -> list[Case]:
    return [c for c in CASES if c.quick]


# -- configs ------------------------------------------------------------------------------------------------
def load_config(model: str, layers: int | None = None) -> dict:
    """The snapshot's config.json of ``model``, with ``layers`` decoder layers when given."""
    path = SNAPSHOT / model / "config.json"
    config = json.loads(path.read_text())
    return reduce_layers(config, layers) if layers else config


def reduce_layers(config: dict, layers: int) -> dict:
    """The same architecture with ``layers`` decoder layers: everything else (hidden size, heads, vocab,
    MoE and MLA fields, the per-layer pattern) unchanged; an explicit ``layer_types`` list is cut to
    length. Layer-dependent switches keep their meaning (DeepSeek's first_k_dense_replace: the first k
    layers stay dense)."""
    config = dict(config)
    key = "n_layer" if "n_layer" in config else "num_hidden_layers"
    config[key] = int(layers)
    if isinstance(config.get("layer_types"), list):
        config["layer_types"] = config["layer_types"][:layers]
    return config


@dataclass
class Shape:
    """What the closed forms need: the language tower of ``hfmem.model.describe`` (the one config reader, so
    GPT-2's n_embd, Falcon's multi_query and a multimodal model's text_config are resolved once, there) in
    the closed forms' symbols."""

    model_type: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # dense MLP width (gpt2: n_inner or 4h)
    vocab: int
    sliding_layers: int = 0
    window: int | None = None
    kv_lora_rank: int | None = None  # MLA
    rope_head_dim: int | None = None
    moe_intermediate: int | None = None
    experts_per_token: int | None = None
    tie_word_embeddings: bool = False
    max_positions: int | None = None
    first_dense_layers: int = 0  # DeepSeek's first_k_dense_replace: dense MLP before the MoE layers


def shape_of(config: dict) -> Shape:
    from hfmem.errors import UnsupportedArchitectureError
    from hfmem.model import describe
    from hfmem.model.description import DENSE
    from hfmem.scenarios.inference import language_tower

    desc = describe(config)
    t = language_tower(desc) or desc.require_text("the validation matrix")
    if not t.heads:  # Mamba: the closed forms are transformer forms (the heads' a·s/h attention term)
        raise UnsupportedArchitectureError(f"{t.model_type}: the validation closed forms need attention heads")
    mla, moe = t.mla, t.moe
    # MLA: transformers' DeepseekV2Config / DeepseekV3Config set head_dim = qk_rope_head_dim (the rotary part
    # of a head); the description's head_dim is hidden / heads there, which no MLA tensor has
    head_dim = mla.qk_rope_head_dim if mla else t.head_dim
    leading_dense = 0
    if moe:  # the dense layers before the first MoE layer (DeepSeek's first_k_dense_replace)
        for layer in t.layers:
            if layer.mlp != DENSE:
                break
            leading_dense += 1
    return Shape(model_type=t.model_type or desc.model_type, layers=t.num_layers, hidden=t.hidden, heads=t.heads,
                 kv_heads=t.kv_heads, head_dim=head_dim, intermediate=t.intermediate, vocab=t.vocab,
                 sliding_layers=t.sliding_layers, window=t.sliding_window if t.sliding_layers else None,
                 kv_lora_rank=mla.kv_lora_rank if mla else None, rope_head_dim=mla.qk_rope_head_dim if mla else None,
                 moe_intermediate=moe.expert_intermediate if moe else None,
                 experts_per_token=moe.top_k if moe else None, tie_word_embeddings=desc.tie_word_embeddings,
                 max_positions=t.max_positions, first_dense_layers=leading_dense)


@dataclass
class Counts:
    """Exact parameter counts from the model definition built on the meta device (tied weights once)."""

    params: int
    param_bytes: int  # as built, in the weights' dtype
    buffer_bytes: int
    lora_params: int = 0  # adapter parameters (r·(in + out) per targeted Linear)


def count(config: dict, case: Case) -> Counts:
    import torch

    from hfmem.simulate import build

    dtype = torch.float32 if case.amp else build.resolve_dtype(case.dtype)
    with torch.device("meta"):
        model = build.build_model(config, dtype=dtype, attn=case.attn)
    params = list(model.parameters())
    lora = 0
    if case.lora:
        r, _, targets = case.lora
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets:
                lora += r * (module.in_features + module.out_features)
    return Counts(params=sum(p.numel() for p in params),
                  param_bytes=sum(p.numel() * p.element_size() for p in params),
                  buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
                  lora_params=lora)


# -- calibration data ---------------------------------------------------------------------------------------
def load_calibration(path: Path = CALIBRATION) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def calibration_entry(calibration: dict | None, model_type: str, attn: str) -> dict | None:
    if not calibration:
        return None
    arch = calibration.get("architectures", {}).get(model_type)
    attn = "sdpa" if attn == "flash" else attn
    return (arch or {}).get(attn)


# -- the analytic estimate -----------------------------------------------------------------------------------
@dataclass
class Estimate:
    total: int
    phase: str  # where the closed forms put the peak: forward | backward | optimizer_step | prefill+decode
    components: dict[str, int]
    includes: str


def _state_regime(case: Case) -> str:
    if case.amp or case.dtype == "float32":
        return "fp32_adamw"  # torch AMP: fp32 weights, gradients, moments
    return "bf16_adamw"


def train_estimate(case: Case, shape: Shape, counts: Counts, calib: dict | None = None) -> Estimate:
    """Published model states + activations + logits (calib=None), or the same with the calibrated
    per-layer and non-layer terms of calibration.json (calib = its entry for this model_type/attn).

    forward  = weights + optimizer states + L x activations per layer + logits
    backward = weights + optimizer states + gradients (the activations are gone by the end)
    step     = weights + gradients + optimizer states + AdamW foreach temporary
    peak     = the largest of the three. Buffers (rotary tables) are added to all three.
    """
    b, s, h, a, layers = case.batch, case.seq, shape.hidden, shape.heads, shape.layers
    if case.lora:
        # Frozen base in its dtype; adapters trained in fp32 with fp32 AdamW (PEFT's autocast_adapter_dtype).
        w_b, g_b, o_b = F.MODEL_STATE_BYTES_PER_PARAM["fp32_adamw"]
        weights = counts.param_bytes + w_b * counts.lora_params
        grads, opt = g_b * counts.lora_params, o_b * counts.lora_params
        trainable_bytes = 4 * counts.lora_params
        states = "frozen weights + fp32 adapters W+G+O (16 B/p)"
    else:
        regime = _state_regime(case)
        w_b, g_b, o_b = F.MODEL_STATE_BYTES_PER_PARAM[regime]
        weights, grads, opt = w_b * counts.params, g_b * counts.params, o_b * counts.params
        trainable_bytes = weights
        states = f"W+G+O {F.model_state_bytes_per_param(regime)} B/p"
    temp = F.adamw_step_temporary_bytes(trainable_bytes, "foreach")
    act_scale = (4 if case.dtype == "float32" and not case.amp else 2) / 2  # the forms assume 16-bit
    eager = case.attn == "eager"
    if calib is None:
        per_layer = (F.korthikanti_activation_bytes_per_layer(s, b, h, a) if eager
                     else F.selective_recompute_activation_bytes_per_layer(s, b, h))
        if case.grad_ckpt:
            acts = layers * F.full_recompute_activation_bytes_per_layer(s, b, h) + per_layer
            act_label = "GC 2sbh·L + 1 layer"
        else:
            acts = layers * per_layer
            act_label = "sbh(34+5as/h)·L" if eager else "34sbh·L"
        non_layer = F.fp32_logits_bytes(b, s, shape.vocab)
        nl_label = "logits 4bsV"
    else:
        fit = calib["fit"]
        per_layer = F.calibrated_activation_bytes_per_layer(s, b, h, a, fit["linear"], fit["attention"])
        dense_fit = (calib.get("first_dense_layers") or {}).get("fit")
        n_dense = shape.first_dense_layers if dense_fit else 0
        dense_layer = (F.calibrated_activation_bytes_per_layer(s, b, h, a, dense_fit["linear"], dense_fit["attention"])
                       if dense_fit else 0.0)
        if case.grad_ckpt and calib.get("grad_ckpt"):
            gc = calib["grad_ckpt"]["activation_bytes_per_token_per_hidden_per_layer"]
            acts = layers * gc * b * s * h + per_layer
            act_label = "calibrated GC·L + 1 layer"
        else:
            acts = (layers - n_dense) * per_layer + n_dense * dense_layer
            act_label = "calibrated sbh(c0+c1·as/h)·L"
        nl = calib["non_layer"]
        # live after forward (logits kept for the loss, embedding output, ...) + the forward's transient
        # at the loss (bf16 logits, fp32 copy, log-softmax), each per b·s·V plus per b·s·h
        non_layer = b * s * (shape.vocab * (nl["bytes_per_token_per_vocab"] + nl["forward_transient_bytes_per_token_per_vocab"])
                             + h * (nl["bytes_per_token_per_hidden"] + nl["forward_transient_bytes_per_token_per_hidden"]))
        nl_label = "calibrated logits + loss transient"
    acts = int(acts * act_scale)
    forward = weights + opt + acts + int(non_layer) + counts.buffer_bytes
    backward = weights + opt + grads + counts.buffer_bytes
    step = weights + grads + opt + temp + counts.buffer_bytes
    phase, total = max((("forward", forward), ("backward", backward), ("optimizer_step", step)),
                       key=lambda kv: kv[1])
    comps = {"weights": weights, "gradients": grads, "optimizer_state": opt, "step_temporary": temp,
             "activations": acts, "non_layer": int(non_layer), "buffers": counts.buffer_bytes}
    return Estimate(total, phase, comps, f"{states}; foreach tmp; {act_label}; {nl_label}")


def _kv_bytes(shape: Shape, tokens: int, batch: int, bytes_per_element: int) -> tuple[int, str]:
    if shape.kv_lora_rank:  # MLA: transformers >= 5.x caches the latent (modeling_deepseek_v3.py, cache.update)
        per_token = F.mla_latent_kv_bytes_per_token(shape.layers, shape.kv_lora_rank, shape.rope_head_dim,
                                                    bytes_per_element)
        return per_token * tokens * batch, "MLA latent KV"
    per_layer_token = F.kv_cache_bytes_per_token(1, shape.kv_heads, shape.head_dim, bytes_per_element)
    full = shape.layers - shape.sliding_layers
    kept = F.sliding_window_tokens(tokens, shape.window)
    label = "KV 2·L·n_kv·d" + (f" (window {shape.window} on {shape.sliding_layers} layers)" if shape.sliding_layers else "")
    return per_layer_token * batch * (full * tokens + shape.sliding_layers * kept), label


def infer_estimate(case: Case, shape: Shape, counts: Counts) -> Estimate:
    """weights + KV cache for context + new tokens + a simple prefill working set.

    The working set is this report's own rough term (no published form covers it): one layer's
    residual stream and its two MLP up-projections alive together under no_grad, b·s·(2h + 2f)·bytes,
    with f the dense width or top_k x the expert width; for eager attention the b·a·s² scores in the
    model dtype plus their fp32 softmax; and the last position's logits b·V·4.
    """
    nbytes = DTYPE_BYTES[case.dtype]
    b, s = case.batch, case.seq
    weights = counts.param_bytes + counts.buffer_bytes
    kv, kv_label = _kv_bytes(shape, s + case.new_tokens, b, nbytes)
    width = shape.intermediate
    if shape.moe_intermediate and shape.experts_per_token:
        width = max(width if shape.model_type == "deepseek_v3" else 0, shape.moe_intermediate * shape.experts_per_token)
    work = b * s * (2 * shape.hidden + 2 * width) * nbytes
    if case.attn == "eager":
        work += b * shape.heads * s * s * (nbytes + 4)
    work += 4 * b * shape.vocab
    comps = {"weights": weights, "kv_cache": kv, "prefill_working_set": work}
    return Estimate(weights + kv + work, "prefill+decode", comps,
                    f"weights; {kv_label}; prefill b·s·(2h+2f){' + eager b·a·s²·(dtype+4)' if case.attn == 'eager' else ''}")


def estimate(case: Case, config: dict | None = None, calibration: dict | None = None) -> dict[str, Any]:
    """Published and calibrated estimates for ``case`` (imports torch to count the parameters)."""
    config = config or load_config(case.model, case.layers)
    shape = shape_of(config)
    counts = count(config, case)
    out: dict[str, Any] = {"shape": dataclasses.asdict(shape), "counts": dataclasses.asdict(counts)}
    if case.mode == "train":
        out["published"] = train_estimate(case, shape, counts)
        entry = calibration_entry(calibration, shape.model_type, case.attn)
        out["calibrated"] = train_estimate(case, shape, counts, entry) if entry else None
    else:
        out["published"] = infer_estimate(case, shape, counts)
        out["calibrated"] = None
    return out


# -- the simulation ------------------------------------------------------------------------------------------
def simulate_case(case: Case, config: dict | None = None):
    from hfmem.simulate import simulate_infer, simulate_train

    config = config or load_config(case.model, case.layers)
    if case.mode == "train":
        return simulate_train(config, batch=case.batch, seq=case.seq, dtype=case.dtype, attn=case.attn,
                              grad_ckpt=case.grad_ckpt, amp=case.amp, lora=case.lora_dict())
    return simulate_infer(config, batch=case.batch, context=case.seq, new_tokens=case.new_tokens,
                          dtype=case.dtype, attn=case.attn)


@dataclass
class Row:
    case: Case
    simulated: int | None = None
    sim_phase: str = ""
    sim_by_category: dict = field(default_factory=dict)
    sim_s: float = 0.0
    kv_cache_bytes: int | None = None
    published: Estimate | None = None
    calibrated: Estimate | None = None
    error: str | None = None
    shape: dict = field(default_factory=dict)

    def rel(self, est: Estimate | None) -> float | None:
        if est is None or not self.simulated:
            return None
        return est.total / self.simulated - 1.0

    def to_dict(self) -> dict:
        return {"case": dataclasses.asdict(self.case), "setting": self.case.setting(),
                "simulated_peak_allocated_bytes": self.simulated, "simulated_peak_phase": self.sim_phase,
                "simulated_peak_by_category": self.sim_by_category, "simulation_s": round(self.sim_s, 2),
                "kv_cache_bytes": self.kv_cache_bytes,
                "published_estimate": dataclasses.asdict(self.published) if self.published else None,
                "calibrated_estimate": dataclasses.asdict(self.calibrated) if self.calibrated else None,
                "published_error": self.rel(self.published), "calibrated_error": self.rel(self.calibrated),
                "error": self.error}


def run_case(case: Case, calibration: dict | None = None) -> Row:
    from hfmem.simulate import SimulationError

    row = Row(case)
    config = load_config(case.model, case.layers)
    try:
        est = estimate(case, config, calibration)
        row.published, row.calibrated, row.shape = est["published"], est["calibrated"], est["shape"]
        started = time.perf_counter()
        result = simulate_case(case, config)
        row.sim_s = time.perf_counter() - started
        row.simulated, row.sim_phase = result.peak_allocated_bytes, result.peak_phase
        row.sim_by_category = result.peak_by_category
        row.kv_cache_bytes = result.kv_cache_bytes
    except SimulationError as exc:
        row.error = str(exc)
    return row


# -- measured cases (ground-truth.md) -------------------------------------------------------------------
@dataclass
class Measured:
    """A published GPU measurement and the simulation of the same setting."""

    source: str
    what: str  # the run, as the source describes it
    quantity: str  # allocated | reserved | device
    measured_bytes: int | None
    case: Case | None  # the simulated setting (None: cannot be simulated)
    why_not: str = ""  # when case is None
    assumptions: str = ""
    simulated: int | None = None
    sim_phase: str = ""
    extra: dict = field(default_factory=dict)


def _peft_rows() -> dict[str, int]:
    """max_memory_reserved (bytes) of the PEFT MetaMathQA runs, from the CSV."""
    out = {}
    if PEFT_CSV.exists():
        with PEFT_CSV.open() as fh:
            for rec in csv.DictReader(fh):
                out[rec["experiment"]] = int(rec["max_reserved_bytes"])
    return out




def measured_cases(quick: bool = False) -> list[Measured]:
    peft = _peft_rows()
    peft_assume = ("batch 4 x seq 768 bucketed padding simulated as unpadded 768 (no attention mask); "
                   "measured includes eval generation (batch 50, max_length 800)")
    rows = [
        Measured(PEFT_SOURCE, "full fine-tuning, Llama-3.2-3B, bf16, AdamW", "reserved",
                 peft.get(M.PEFT_EXPERIMENTS["full"]),
                 Case("peft-full", "meta-llama/Llama-3.2-3B", "train", 4, 768), assumptions=peft_assume),
        Measured(PEFT_SOURCE, "LoRA r32 on q,v (alpha 64)", "reserved", peft.get(M.PEFT_EXPERIMENTS["lora32"]),
                 Case("peft-lora32", "meta-llama/Llama-3.2-3B", "train", 4, 768, lora=(32, 64, QV)),
                 assumptions=peft_assume),
        Measured(PEFT_SOURCE, "LoRA r64 on q,v", "reserved", peft.get(M.PEFT_EXPERIMENTS["lora64"]),
                 Case("peft-lora64", "meta-llama/Llama-3.2-3B", "train", 4, 768, lora=(64, 128, QV)),
                 assumptions=peft_assume),
        Measured(PEFT_SOURCE, "eval generation of the same runs (batch 50, max_length 800)", "reserved", None,
                 Case("peft-eval-gen", "meta-llama/Llama-3.2-3B", "infer", 50, 768, new_tokens=32),
                 assumptions="prompt 768 + 32 new tokens; not measured separately: shows the eval phase is "
                             "below the training peak (plus, in full FT, 2P of AdamW states kept through eval)"),
        Measured("fitcheck README (third party; ground-truth.md §7g), T4, fp16", "SmolLM2-135M LoRA r32, bs 2, seq 512, SDPA",
                 "allocated", M.FITCHECK_ALLOCATED_MIB["SmolLM2-135M LoRA r32, bs 2, seq 512"] * MiB,
                 Case("fitcheck-smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "train", 2, 512, dtype="float16",
                      lora=(32, 64, QKVO)),
                 assumptions="targets q,k,v,o (as its QLoRA runs); alpha 64; AdamW; pure fp16 weights; "
                             "Instruct config (same shape as the base)"),
        Measured("fitcheck README (third party; ground-truth.md §7g), T4, fp16", "gemma-2-2b LoRA r32, bs 1, seq 512, SDPA",
                 "allocated", M.FITCHECK_ALLOCATED_MIB["gemma-2-2b LoRA r32, bs 1, seq 512"] * MiB,
                 Case("fitcheck-gemma2-2b", "google/gemma-2-2b-it", "train", 1, 512, dtype="float16", attn="eager",
                      lora=(32, 64, QKVO)),
                 assumptions="simulated with eager attention (transformers 5.24 has no SDPA for Gemma2; at seq 512 "
                             "the s² scores add little); targets q,k,v,o; -it config"),
        Measured("fitcheck README, T4", "QLoRA r32 runs (TinyLlama, SmolLM2-1.7B, Qwen2.5-1.5B)", "allocated", None,
                 None, why_not="4-bit (bitsandbytes NF4) weights cannot be simulated: no fake-tensor kernels"),
        Measured("fitcheck README, T4", "full FT llama-160m; LoRA Qwen2.5-0.5B", "allocated", None, None,
                 why_not="no config of these models in the snapshot"),
        Measured("transformers docs gpt_neox.md / opt.md (ground-truth.md §7e)", "pythia-410m, opt-350m SDPA vs eager",
                 "allocated (peak, method not stated)", None, None,
                 why_not="no config of these models in the snapshot; optimizer not stated"),
        Measured("transformers docs, model training anatomy (§7a), V100", "bert-large-uncased, bs 4, fp32 AdamW",
                 "device (nvidia-smi)", M.BERT_LARGE_ANATOMY_MIB[0][1] * MiB, None,
                 why_not="no bert-large config in the snapshot (bert-base only)"),
    ]
    if quick:
        keep = {"peft-full", "peft-lora32", "fitcheck-smollm2-135m"}
        rows = [r for r in rows if r.case is None or r.case.key in keep]
    return rows


def run_measured(rows: list[Measured], done: dict[tuple, Row]) -> None:
    """Simulate each measured setting (re-using a matrix row with the same setting)."""
    from hfmem.simulate import SimulationError

    for m in rows:
        if m.case is None:
            continue
        key = _setting_key(m.case)
        if key in done and done[key].simulated:
            m.simulated, m.sim_phase = done[key].simulated, done[key].sim_phase
            continue
        try:
            result = simulate_case(m.case)
            m.simulated, m.sim_phase = result.peak_allocated_bytes, result.peak_phase
            if m.case.mode == "infer":
                m.extra["kv_cache_bytes"] = result.kv_cache_bytes
        except SimulationError as exc:
            m.why_not = str(exc)


def _setting_key(c: Case) -> tuple:
    return (c.model, c.mode, c.batch, c.seq, c.new_tokens, c.attn, c.dtype, c.amp, c.grad_ckpt, c.lora, c.layers)


# stas00's per-layer activation coefficients (model measured, snapshot config of the same shape, coefficient)
STAS00 = M.STAS00_LAYER_ACTIVATIONS


# -- GPU measurements (benchmarks/measured/*.json) ---------------------------------------------------------
def load_measured(directory: Path = MEASURED_DIR) -> list[dict]:
    """Every case of every measure_gpu.py result file, with the file's GPU and versions attached."""
    out = []
    for path in sorted(directory.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        env = doc.get("environment", {})
        for rec in doc.get("cases", []):
            out.append({**rec, "file": path.name, "gpu": env.get("gpu_name", "?"),
                        "torch": env.get("torch"), "transformers": env.get("transformers"),
                        "context_bytes": doc.get("context_bytes")})
    return out


# -- rendering: benchmarks/validate_report.py (the Markdown writer, apart from the data) ----------------
from validate_report import gib, pct, render  # noqa: E402,F401  (validate.render, as before)


# -- main ----------------------------------------------------------------------------------------------------
def environment(command: str, started: float, quick: bool) -> dict:
    from hfmem.inventory.meta_model import versions

    v = versions()
    try:
        from importlib.metadata import version

        peft = version("peft")
    except Exception:  # noqa: BLE001
        peft = "absent"
    return {"command": command, "date": _dt.date.today().isoformat(), "host": f"{platform.machine()}, "
            f"{platform.python_implementation()} {platform.python_version()}", "torch": v["torch"],
            "transformers": v["transformers"], "peft": peft, "elapsed_s": time.perf_counter() - started,
            "quick": quick}


def run(cases: list[Case], measured: list[Measured], out: Path, json_out: Path | None, command: str,
        quick: bool, log=print) -> tuple[list[Row], str]:
    """Run ``cases`` and ``measured`` and write the report to ``out`` (and the raw rows to ``json_out``)."""
    started = time.perf_counter()
    calibration = load_calibration()
    rows = []
    for case in cases:
        row = run_case(case, calibration)
        log(f"  {case.key:28s} sim {gib(row.simulated):>8s} GiB  published {pct(row.rel(row.published)):>8s}  "
            f"calibrated {pct(row.rel(row.calibrated)):>8s}  ({row.sim_s:.1f} s){'  ' + row.error if row.error else ''}")
        rows.append(row)
    run_measured(measured, {_setting_key(r.case): r for r in rows})
    gpu = load_measured()
    meta = environment(command, started, quick)
    text = render(rows, measured, gpu, calibration, meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({
            "environment": meta, "rows": [r.to_dict() for r in rows],
            "measured": [{**dataclasses.asdict(m), "case": dataclasses.asdict(m.case) if m.case else None}
                         for m in measured],
            "gpu_measured": gpu}, indent=1, default=str) + "\n")
    return rows, text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the CI subset (<= 60 s on 2 cores)")
    ap.add_argument("--out", type=Path, help="Markdown report (default: docs/validation.md, "
                                             "or benchmarks/results/validation-quick.md with --quick)")
    ap.add_argument("--json", type=Path, help="raw rows (default: beside --out's default in benchmarks/results/)")
    ap.add_argument("--only", nargs="*", help="case keys to run (default: all, or the quick subset)")
    args = ap.parse_args(argv)
    cases = quick_cases() if args.quick else list(CASES)
    if args.only:
        cases = [c for c in CASES if c.key in set(args.only)]
    out = args.out or (QUICK_DOC if args.quick else DOC)
    json_out = args.json or (ROOT / "benchmarks" / "results" / ("validation-quick.json" if args.quick else "validation.json"))
    command = "python benchmarks/validate.py" + (" --quick" if args.quick else "")
    print(f"validate: {len(cases)} cases -> {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    run(cases, measured_cases(quick=args.quick), out, json_out, command, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
