#!/usr/bin/env python
"""Fit the inference activation coefficients by simulation -> hfmem/data/infer_calibration.json.

    .venv/bin/python benchmarks/calibrate_infer.py [--out hfmem/data/infer_calibration.json] [--only llama ...]

What is measured (issue 4, requirement 3): for a prefill of [b, s] tokens and the decode step that follows
it (cache of T = s tokens), the bytes above weights + KV cache at the peak,

    A = peak allocated bytes of the phase − parameters − buffers − KV cache held at the end of the phase,

split by *region*: the moment of the forward at which the live set peaks (embedding; for each layer kind
-- full attention, sliding window, leading dense layer of a MoE model -- the attention module's
projections, its attention kernel (scores and softmax, SDPA, K/V repeats), the MLP/MoE block and the
layer's own norms and adds; the final norm; the LM head; what follows it). Under no_grad nothing is
kept across layers, so each region's peak is linear in the widths (hidden size, q/k/v widths, MLP or
expert widths, vocabulary) times s, in s² (eager scores, masks) and in the vocabulary, and the phase's peak
is the largest region. hfmem/scenarios/infer_activations.py evaluates exactly that form.

Method (all runs: hfmem.simulate.simulate_infer, GPU emulation on, batch 2, new_tokens 1, no padding):

1. The model is a reference snapshot config (real widths) reduced to a few decoder layers: 2 (from the
   second layer on the model keeps the embedding output referenced beside the residual stream, so 2 is the
   steady state; checked against one more layer), 4 for DeepSeek-V3 (3 leading dense layers + 1 MoE layer),
   6 for Gemma 3 (5 sliding + 1 full layer).
2. The memory tracker is instrumented (module hooks on the layers, their attention and MLP, the final norm and
   the LM head; a wrapper on transformers' attention-function lookup for the attention kernel's own region) to
   record the peak of the live bytes inside each region, for the last layer of each kind. For a region of
   layer i in the prefill the KV cache of layers 0..i is subtracted (the cache grows layer by layer), for the
   embedding none; in the decode step the whole cache.
3. Width perturbations of the config, one at a time: hidden size, heads, KV heads (twice: MHA, GQA and, where
   the reference model has one KV head, MQA copy K/V differently), head dim, MLP width, vocabulary; for MoE
   models the expert width, experts per token, expert count and shared experts; for MLA the latent and query
   ranks, the value and rotary head dims. Where transformers honours an explicit ``head_dim`` it is pinned so
   that widths vary independently; where it does not (gpt2, gpt_neox, opt, falcon, stablelm, starcoder2), q =
   kv = h by construction and the fit folds those terms together. Models whose every layer has a sliding
   window (Mistral, Phi-3, Starcoder2) are run again without the window, for the full-layer regions.
4. The base config at 3 context lengths, each perturbation at 2 (the vocabulary at 1), every run giving a
   prefill and a decode row per region; with one KV head also batch 1 (eager attention clones the expanded
   K/V only for batch > 1). A least-squares fit per region (rows weighted by 1/A) over the terms that the
   design varies independently (the others are folded: absent from the table). Recorded per table: the
   worst relative residual per region, and the worst error of the closed form (the max over regions) on
   the calibration runs.
5. Checks recorded: the activation bytes with one more layer (must be equal) per table, and float16 against
   bfloat16 on Llama-3.1-8B (equal: fp16 uses the 2-byte tables).

Context lengths: (512, 1024, 2048), or a quarter, half and all of a learned position table's length rounded
down to 256 when it is shorter (gpt2: 192/384/768, OPT and GPT-NeoX: 448/896/1792). Long enough that every
region sits on its long-context piece: where two moments of a region trade places (fp32 eager Gemma 2: the
score tensors overtake the projections only above ~300 tokens) the fit follows the one that matters for memory
planning; shorter contexts were checked down to 32 tokens (within 1%). A sliding window shorter than 4x the
longest context is widened to that (Gemma 3's 512, gpt-oss's 128): for SDPA the closed form covers contexts
within the window, where sliding layers build no mask (with eager attention every mask is materialised either
way). Gemma 2 and gpt-oss run eager only (transformers has no SDPA path for them); the flash setting uses the
SDPA tables (SDPA takes the flash kernel for fp16/bf16 without a mask). fp32 MoE models cannot be simulated
(grouped_mm's meta function wants bf16): recorded under "skipped". OPT and Falcon have no snapshot here: their
transformers default configurations (OPT-125m-like, Falcon-7B-like) are used.

Runtime on 2 cores: about 3.5-4 minutes (about 1,000 simulations of 0.1-0.6 s).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import validate as V  # noqa: E402  (snapshot config helpers; also puts the repository root on sys.path)

from hfmem.scenarios import infer_activations as IA  # noqa: E402

OUT = V.ROOT / "hfmem" / "data" / "infer_calibration.json"
CONTEXTS = (512, 1024, 2048)  # large enough that each region is on its long-context piece (see fp32 eager Gemma 2)
BATCH = 2  # a single sequence hides a batch-only clone (eager attention, one KV head: see infer_activations.mqb)
DTYPES = {"bf16": "bfloat16", "fp32": "float32"}
HEAD_DIM_HONOURED = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "mixtral",
                     "qwen3_moe", "gpt_oss"}

# (model_type, source: snapshot repo id or "transformers:<model_type>" for the default config, layers, attns)
ARCHITECTURES: tuple[tuple[str, str, int, tuple[str, ...]], ...] = (
    ("llama", "meta-llama/Llama-3.1-8B", 2, ("sdpa", "eager")),
    ("mistral", "mistralai/Mistral-7B-v0.1", 2, ("sdpa", "eager")),
    ("qwen2", "Qwen/Qwen2.5-7B", 2, ("sdpa", "eager")),
    ("qwen3", "Qwen/Qwen3-8B", 2, ("sdpa", "eager")),
    ("gemma", "google/gemma-2b-it", 2, ("sdpa", "eager")),
    ("gemma2", "google/gemma-2-2b-it", 2, ("eager",)),
    ("gemma3_text", "google/gemma-3-1b-it", 6, ("sdpa", "eager")),
    ("phi3", "microsoft/Phi-3-mini-4k-instruct", 2, ("sdpa", "eager")),
    ("gpt_neox", "togethercomputer/RedPajama-INCITE-Chat-3B-v1", 2, ("sdpa", "eager")),
    ("gpt2", "openai-community/gpt2", 2, ("sdpa", "eager")),
    ("starcoder2", "bigcode/starcoder2-7b", 2, ("sdpa", "eager")),
    ("stablelm", "stabilityai/stablelm-2-zephyr-1_6b", 2, ("sdpa", "eager")),
    ("opt", "transformers:opt", 2, ("sdpa", "eager")),
    ("falcon", "transformers:falcon", 2, ("sdpa", "eager")),
    ("mixtral", "mistralai/Mixtral-8x7B-v0.1", 2, ("sdpa", "eager")),
    ("qwen3_moe", "Qwen/Qwen3-30B-A3B", 2, ("sdpa", "eager")),
    ("deepseek_v3", "deepseek-ai/DeepSeek-V3", 4, ("sdpa", "eager")),
    ("gpt_oss", "openai/gpt-oss-20b", 2, ("eager",)),
)


# -- region instrumentation ------------------------------------------------------------------------------------
ATTN_NAMES = ("self_attn", "attn", "attention", "self_attention")
MLP_NAMES = ("mlp", "block_sparse_moe", "feed_forward", "moe")
NORM_NAMES = ("norm", "ln_f", "final_layernorm", "final_layer_norm")
HEAD_NAMES = ("lm_head", "embed_out")
LAYER_LISTS = ("layers", "h", "layer", "blocks")


def _region_tracker_class():
    from hfmem.simulate.tracker import MemoryTracker

    class RegionTracker(MemoryTracker):
        """MemoryTracker that also keeps the peak of the live bytes per (phase, region)."""

        current = None

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.stack: list = []
            self.stage = "pre"
            self.peaks: dict = {}
            RegionTracker.current = self

        def region(self):
            return self.stack[-1] if self.stack else self.stage

        def _count(self, category, delta):
            super()._count(category, delta)
            key = (self.label, self.region())
            if self.live > self.peaks.get(key, -1):
                self.peaks[key] = self.live

    return RegionTracker


def _install_hooks(model, tracker_cls) -> None:
    """Push/pop region labels around the layers, their attention and MLP, the final norm and the LM head."""
    import torch

    n = model.config.get_text_config().num_hidden_layers
    labels: dict = {}
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n and name.rsplit(".", 1)[-1] in LAYER_LISTS:
            for i, layer in enumerate(mod):
                labels[layer] = (i, "layer")
                for cname, child in layer.named_children():
                    if cname in ATTN_NAMES:
                        labels[child] = (i, "attn")
                    elif cname in MLP_NAMES:
                        labels[child] = (i, "mlp")
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            for cname, child in parent.named_children():
                if cname in NORM_NAMES:
                    labels[child] = "final"
    for cname, child in model.named_children():
        if cname in HEAD_NAMES:
            labels[child] = "lm_head"
    if not any(isinstance(v, tuple) for v in labels.values()):
        raise RuntimeError(f"{type(model).__name__}: no decoder layer list found")

    def push(label):
        def hook(module, args):
            t = tracker_cls.current
            t.stack.append(label)
            if isinstance(label, tuple):
                t.stage = "final"  # model-level code after a layer and before the head: the final stage
            return None
        return hook

    def pop(label):
        def hook(module, args, output):
            t = tracker_cls.current
            t.stack.pop()
            if label == "lm_head":
                t.stage = "post"
            return None
        return hook

    def start(module, args, kwargs):
        tracker_cls.current.stage = "pre"
        return None

    model.register_forward_pre_hook(start, with_kwargs=True)
    for mod, label in labels.items():
        mod.register_forward_pre_hook(push(label))
        mod.register_forward_hook(pop(label))


def _core_interface(original, tracker_cls):
    """``AttentionInterface.get_interface`` returning the attention function wrapped in a "core" region of the
    calling layer: the kernel call (eager scores and softmax, SDPA, K/V repeats) apart from the projections,
    so that each region has one dominant moment."""

    def get_interface(attn_implementation, default):
        fn = original(attn_implementation, default)

        def core(*args, **kwargs):
            t = tracker_cls.current
            top = t.stack[-1] if t.stack else None
            label = (top[0], "core") if isinstance(top, tuple) else None
            if label:
                t.stack.append(label)
            try:
                return fn(*args, **kwargs)
            finally:
                if label:
                    t.stack.pop()
        return core

    return get_interface


@contextlib.contextmanager
def instrumented():
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from hfmem.simulate import build, engine

    tracker_cls = _region_tracker_class()
    original_build, original_tracker = build.build_model, engine.MemoryTracker

    def build_model(*args, **kwargs):
        model = original_build(*args, **kwargs)
        _install_hooks(model, tracker_cls)
        return model

    build.build_model, engine.MemoryTracker = build_model, tracker_cls
    ALL_ATTENTION_FUNCTIONS.get_interface = _core_interface(ALL_ATTENTION_FUNCTIONS.get_interface, tracker_cls)
    try:
        yield tracker_cls
    finally:
        build.build_model, engine.MemoryTracker = original_build, original_tracker
        del ALL_ATTENTION_FUNCTIONS.get_interface  # the instance attribute: back to the class's method


def measure(config: dict, *, context: int, attn: str, dtype: str, batch: int = BATCH) -> dict:
    """Region activation bytes of the prefill and of the decode step (A of every region, see above)."""
    from hfmem.simulate import simulate_infer

    with instrumented() as tracker_cls:
        result = simulate_infer(config, batch=batch, context=context, new_tokens=1, dtype=dtype, attn=attn)
        peaks = tracker_cls.current.peaks
    shape = IA.infer_shape(config)
    n, kinds = shape.layers, shape.layer_kinds
    # The last layer of each kind (full, sliding, leading dense) stands for its kind: "<kind>_<role>".
    last_of = {kind: max(i for i, k in enumerate(kinds) if k == kind) for kind in set(kinds)}
    out = {"total": {}, "regions": {}}
    for phase in ("prefill", "decode"):
        stat = result.phase(phase)
        weights = stat.by_category["parameters"] + stat.by_category["buffers"]
        kv = stat.kv_cache_bytes or 0
        out["total"][phase] = stat.peak_bytes - weights - kv
        regions: dict[str, int] = {}
        for (label, region), live in peaks.items():
            if label != f"{phase}@1":
                continue
            if isinstance(region, tuple):  # layer frame: the KV of layers 0..i is alive (a prefill fills it
                i, role = region           # layer by layer; every layer holds the same tokens)
                if i != last_of[kinds[i]]:
                    continue
                name, kv_here = f"{kinds[i]}_{role}", (kv * (i + 1) / n if phase == "prefill" else kv)
            elif region == "pre":          # before the first layer: no KV yet in a prefill
                name, kv_here = region, (0 if phase == "prefill" else kv)
            else:
                name, kv_here = region, kv
            regions[name] = int(live - weights - kv_here)
        out["regions"][phase] = regions
    out["elapsed_s"] = result.elapsed_s
    return out


# -- configs and perturbations -------------------------------------------------------------------------------
def base_config(source: str, layers: int) -> dict:
    if source.startswith("transformers:"):
        from transformers import AutoConfig

        cfg = AutoConfig.for_model(source.split(":", 1)[1]).to_dict()
        return V.reduce_layers(cfg, layers)
    return V.load_config(source, layers)


def _round(x: float, m: int = 64) -> int:
    return max(m, int(round(x / m)) * m)


def _key(cfg: dict, *names: str) -> str | None:
    return next((n for n in names if n in cfg and cfg[n] is not None), None)


def perturbations(cfg: dict) -> list[tuple[str, dict, int]]:
    """(name, config, number of contexts) for each one-at-a-time width change that this config allows."""
    shape = IA.infer_shape(cfg)
    mt = shape.model_type
    h, a, kv, d = shape.hidden, shape.heads, shape.kv_heads, shape.head_dim
    hkey = "n_embd" if "n_embd" in cfg else "hidden_size"
    akey = "n_head" if "n_head" in cfg else "num_attention_heads"
    kvkey = _key(cfg, "num_key_value_heads") if not shape.mla else None
    pinned = mt in HEAD_DIM_HONOURED
    out: list[tuple[str, dict, int]] = []

    def add(name: str, changes: dict, contexts: int = 2) -> None:
        out.append((name, dict(cfg, **changes), contexts))

    if shape.mla:
        add("hidden", {hkey: h + 512})
        add("heads", {akey: 2 * a, "num_key_value_heads": 2 * a})
        add("qk_nope", {"qk_nope_head_dim": int(cfg["qk_nope_head_dim"]) + 64})
        add("v_head", {"v_head_dim": int(cfg["v_head_dim"]) + 64})
        add("kv_lora", {"kv_lora_rank": int(cfg["kv_lora_rank"]) + 256})
        add("rope", {"qk_rope_head_dim": int(cfg["qk_rope_head_dim"]) + 32})
        if cfg.get("q_lora_rank"):
            add("q_lora", {"q_lora_rank": int(cfg["q_lora_rank"]) + 512})
    elif pinned:
        add("hidden", {hkey: h + 512, "head_dim": d})
        add("heads", {akey: 2 * a, "head_dim": d, **({kvkey: 2 * kv} if kvkey and kv == a else {})})
        add("head_dim", {"head_dim": d + 64 if d <= 128 else d - 64})
    else:
        add("hidden", {hkey: a * (d + 16)})
        if h % (2 * a) == 0 and (h // (2 * a)) % 8 == 0:
            add("heads", {akey: 2 * a})
        elif a % 2 == 0:
            add("heads", {akey: a // 2})
    if kvkey:
        if kv == a:
            add("kv_heads", {kvkey: a // 2})
            add("kv_heads_2", {kvkey: a // 4})
        else:
            add("kv_heads", {kvkey: kv // 2 if kv > 1 else 2})
            add("kv_heads_2", {kvkey: a})
    ikey = _key(cfg, "intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size")
    if ikey:
        add("intermediate", {ikey: _round(1.5 * cfg[ikey])})
    elif mt == "gpt2":
        add("intermediate", {"n_inner": 6 * h})
    if shape.moe:
        if "moe_intermediate_size" in cfg:
            add("expert_width", {"moe_intermediate_size": _round(1.5 * cfg["moe_intermediate_size"])})
        ekey = _key(cfg, "num_experts", "num_local_experts", "n_routed_experts")
        add("experts", {ekey: 2 * shape.experts})
        add("top_k", {"num_experts_per_tok": 2 * shape.top_k})
        if cfg.get("n_shared_experts"):
            add("shared", {"n_shared_experts": int(cfg["n_shared_experts"]) + 1})
    add("vocab", {"vocab_size": _round(1.5 * shape.vocab)}, 1)
    return out


def contexts_for(cfg: dict) -> tuple[int, int, int]:
    """(top/4, top/2, top): top = 1024, or the learned position table's length rounded down to 256 (so that
    every context is a multiple of 64 and the 8-byte token ids fill whole 512-byte blocks)."""
    positions = cfg.get("n_positions") or (cfg.get("max_position_embeddings") if cfg.get("model_type") in
                                           ("gpt2", "opt", "gpt_neox", "phi3") else None)
    top = CONTEXTS[-1]
    if positions and int(positions) - 1 < top:
        top = min(top, (int(positions) - 1) // 256 * 256)
    return (top // 4, top // 2, top)


def widen_window(cfg: dict, contexts: tuple[int, ...]) -> dict:
    """The formula covers contexts within the sliding window (beyond it SDPA needs a materialised sliding
    mask); calibrate there: a window shorter than 4x the longest context is widened to that."""
    window = cfg.get("sliding_window")
    if window and int(window) < 4 * max(contexts):
        return dict(cfg, sliding_window=4 * max(contexts))
    return cfg


# -- fitting -------------------------------------------------------------------------------------------------
# Terms in the order a fit keeps them: a term that the design does not vary independently of the ones before
# it is folded into them (absent from the table).
PREFILL_ORDER = ("tok", "tok*h", "tok*I", "tok*qw", "tok*kvw", "tok*gqa", "tok*mq", "tok*mqb", "tok*mlab", "tok*kh",
                 "tok*kI", "tok*E", "tok*a", "tok*d", "tok*latent", "tok*qlora", "tok*qr", "s2*a", "s2*ag", "s2",
                 "V", "1")
DECODE_ORDER = ("T", "T*kvw", "T*gqa", "T*mq", "T*mqb", "T*mlab", "T*qw", "T*a", "T*ag", "T*latent", "T*qr", "h", "I",
                "qw", "kvw", "kh", "kI", "E", "a", "latent", "qlora", "V", "1")


def fit_region(rows: list[dict], targets: list[float], order: tuple[str, ...]) -> tuple[dict, float]:
    """Least squares over the terms the rows vary independently (in ``order``'s priority), rows weighted by
    1/target. Returns ({term: coefficient}, worst relative residual)."""
    y = np.array(targets, dtype=float)
    cols = [t for t in order if any(abs(r.get(t, 0.0)) > 0 for r in rows)]
    x_all = np.array([[r.get(t, 0.0) for t in cols] for r in rows], dtype=float)
    scale = np.abs(x_all).max(axis=0)
    xs = x_all / scale
    kept: list[int] = []
    for j in range(len(cols)):
        trial = kept + [j]
        if np.linalg.matrix_rank(xs[:, trial], tol=1e-9) == len(trial):
            kept = trial
    w = 1.0 / np.maximum(np.abs(y), 1.0)
    coef, *_ = np.linalg.lstsq(xs[:, kept] * w[:, None], y * w, rcond=None)
    pred = xs[:, kept] @ coef
    worst = float(np.max(np.abs(pred - y) / np.maximum(np.abs(y), 1.0)))
    table = {cols[j]: round(float(c / scale[j]), 4) for j, c in zip(kept, coef)}
    return {k: v for k, v in table.items() if v != 0.0}, worst


def calibrate_one(model_type: str, source: str, layers: int, attn: str, dkey: str) -> dict:
    started = time.perf_counter()
    dtype = DTYPES[dkey]
    base = base_config(source, layers)
    s1, s2, s3 = contexts_for(base)
    base = widen_window(base, (s1, s2, s3))
    bases = [("", base)]
    if all(k == "sliding" for k in IA.infer_shape(base).layer_kinds):
        # Every layer has the window (Mistral, Phi-3): the same design without it gives the full-layer regions
        # (a full layer's decode copies one K/V at a time, a sliding one both), for configs without a window.
        bases.append(("nowindow:", dict(base, sliding_window=None)))
    runs: list[tuple[str, dict, int, int]] = []  # (variant, config, context, batch)
    for prefix, b in bases:
        runs += [(f"{prefix}base", b, c, BATCH) for c in (s1, s2, s3)]
        for name, cfg, n_ctx in perturbations(b):
            runs += [(f"{prefix}{name}", cfg, c, BATCH) for c in ((s2, s3) if n_ctx == 2 else (s2,))]
    if IA.infer_shape(base).kv_heads == 1 or IA.infer_shape(base).mla:
        # One KV head, or MLA: eager attention's matmul clones the expanded K/V (MQA) or the strided values
        # (MLA) only for more than one sequence (terms mqb, mlab); single-sequence runs separate them.
        runs += [("batch1:base", base, c, 1) for c in (s2, s3)]
    data = {"prefill": {}, "decode": {}}  # region -> (rows, targets)
    measured = []
    for name, cfg, context, batch in runs:
        m = measure(cfg, context=context, attn=attn, dtype=dtype, batch=batch)
        shape = IA.infer_shape(cfg)
        measured.append({"variant": name, "context": context, "batch": batch,
                         **{p: m["total"][p] for p in ("prefill", "decode")}})
        for phase in ("prefill", "decode"):
            for region, value in m["regions"][phase].items():
                row = {k: batch * v for k, v in IA.features(shape, phase, context, region, batch).items()}
                rows, targets = data[phase].setdefault(region, ([], []))
                rows.append(row)
                targets.append(value)
    tables: dict = {"prefill": {}, "decode": {}}
    residuals: dict = {"prefill": {}, "decode": {}}
    for phase, order in (("prefill", PREFILL_ORDER), ("decode", DECODE_ORDER)):
        for region in IA.REGIONS:
            if region not in data[phase]:
                continue
            rows, targets = data[phase][region]
            tables[phase][region], residuals[phase][region] = fit_region(rows, targets, order)
    # Closed form on every calibration run vs the simulated total (the max over regions).
    worst = {"prefill": 0.0, "decode": 0.0}
    nbytes = 4 if dkey == "fp32" else 2
    for (name, cfg, context, batch), meas in zip(runs, measured):
        for phase in ("prefill", "decode"):
            est = IA.estimate_with_table(cfg, tables[phase], phase=phase, batch=batch, tokens=context,
                                         dtype_bytes=nbytes, fp32_logits_copy=False).bytes
            worst[phase] = max(worst[phase], abs(est - meas[phase]) / max(meas[phase], 1))
    # One more layer must not change the activation bytes.
    deeper = widen_window(base_config(source, layers + 1), (s1, s2, s3))
    extra = measure(deeper, context=s2, attn=attn, dtype=dtype)
    at_base = next(m for m in measured if m["variant"] == "base" and m["context"] == s2 and m["batch"] == BATCH)
    layer_check = {p: {"layers": [layers, layers + 1], "bytes": [at_base[p], extra["total"][p]]}
                   for p in ("prefill", "decode")}
    return {
        "attn": attn, "dtype": dtype, "layer_kinds": list(IA.infer_shape(base).layer_kinds),
        "contexts": [s1, s2, s3], "variants": sorted({r[0] for r in runs}), "runs": len(runs),
        "prefill": tables["prefill"], "decode": tables["decode"],
        "fit_worst_relative_residual": {p: {r: round(v, 5) for r, v in residuals[p].items()} for p in residuals},
        "closed_form_worst_relative_error_on_calibration_runs": {p: round(v, 5) for p, v in worst.items()},
        "layer_check": layer_check,
        "elapsed_s": round(time.perf_counter() - started, 2),
    }


def fp16_check() -> dict:
    cfg = base_config("meta-llama/Llama-3.1-8B", 2)
    out = {}
    for attn in ("sdpa", "eager"):
        vals = {dt: measure(cfg, context=512, attn=attn, dtype=dt)["total"] for dt in ("bfloat16", "float16")}
        out[attn] = vals
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--only", nargs="*", help="model types to (re)calibrate; the others are kept from --out")
    args = ap.parse_args(argv)

    from hfmem.inventory.meta_model import versions
    from hfmem.simulate import SimulationError

    # FakeTensorMode logs a traceback for an op whose meta check fails before hfmem turns it into a one-line
    # SimulationError (recorded under "skipped"); keep the console readable.
    logging.getLogger("torch._subclasses.fake_tensor").disabled = True
    started = time.perf_counter()
    previous = json.loads(args.out.read_text()) if (args.only and args.out.exists()) else {}
    architectures: dict = previous.get("architectures", {})
    skipped: dict = previous.get("skipped", {})

    for model_type, source, layers, attns in ARCHITECTURES:
        if args.only and model_type not in args.only:
            continue
        entry = {"reference_model": source, "layers_simulated": layers,
                 "eager_only": attns == ("eager",)}
        for dkey in DTYPES:
            for attn in attns:
                try:
                    fit = calibrate_one(model_type, source, layers, attn, dkey)
                except SimulationError as exc:
                    skipped[f"{model_type} / {dkey} / {attn}"] = str(exc)
                    print(f"  skip {model_type:12s} {dkey} {attn:5s}: {exc}", flush=True)
                    continue
                skipped.pop(f"{model_type} / {dkey} / {attn}", None)
                entry.setdefault(dkey, {})[attn] = fit
                cf = fit["closed_form_worst_relative_error_on_calibration_runs"]
                lc = fit["layer_check"]["prefill"]["bytes"]
                print(f"  {model_type:12s} {dkey} {attn:5s} runs {fit['runs']:2d}  worst closed-form error "
                      f"prefill {cf['prefill']:.2%} decode {cf['decode']:.2%}  layers {lc}  "
                      f"({fit['elapsed_s']:.1f} s)", flush=True)
        architectures[model_type] = entry

    checks = previous.get("checks", {})
    if not args.only or "llama" in args.only:
        checks["fp16_vs_bf16_llama_3_1_8b_2_layers_s512"] = fp16_check()

    v = versions()
    doc = {
        "schema": "hfmem.infer_calibration/1",
        "what": ("Activation/temporary bytes above weights + KV cache at the peak of an inference prefill and of "
                 "a decode step, per region of the forward, as coefficients of structural terms, by architecture "
                 "(config model_type), dtype width (bf16 = 2-byte, fp32) and attention implementation, fitted on "
                 "hfmem's simulation of the real transformers code. Evaluated by hfmem/scenarios/"
                 "infer_activations.py."),
        "method": ("A = phase peak - parameters - buffers - KV cache at the end of the phase, per region (module "
                   "hooks; KV of layers 0..i subtracted for layer i), on a reference config with 2-6 layers, at 3 "
                   "contexts and one-at-a-time width perturbations; weighted least squares per region. See "
                   "benchmarks/calibrate_infer.py's docstring."),
        "units": {
            "prefill": "bytes per sequence = sum(coef * term); tok*X = s*X, s2*a = s^2*a, s2 = s^2, V vocabulary, "
                       "1 constant",
            "decode": "bytes per sequence = sum(coef * term); T*X = T*X with T the cached tokens before the step; "
                      "h, qw, kvw, I, ... the widths of the new token; V, 1",
            "terms": "h hidden, qw = heads*head_dim, kvw = kv_heads*head_dim (MLA: heads*v_head_dim), gqa = qw if "
                     "kv_heads < heads else 0, d head_dim, I dense MLP width (MoE layers: shared experts' width), "
                     "E experts, kh = top_k*h, kI = top_k*expert width, latent = kv_lora_rank + qk_rope_head_dim, "
                     "qlora = q_lora_rank",
        },
        "settings": {"batch": BATCH, "new_tokens": 1, "dtypes": DTYPES, "gpu_emulation": True,
                     "padding": "none (attention_mask=None)", "default_contexts": list(CONTEXTS),
                     "logits": "last position only (logits_to_keep=1); no fp32 copy (added by the closed form)",
                     "moe_experts_implementation": "transformers' default (grouped_mm)"},
        "generated": {"command": "python benchmarks/calibrate_infer.py" + (f" --only {' '.join(args.only)}"
                                                                             if args.only else ""),
                      "date": _dt.date.today().isoformat(), "torch": v["torch"], "transformers": v["transformers"],
                      "python": platform.python_version(), "machine": platform.machine(),
                      "elapsed_s": round(time.perf_counter() - started, 1)},
        "checks": checks,
        "architectures": dict(sorted(architectures.items())),
        "skipped": dict(sorted(skipped.items())),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out} ({len(architectures)} architectures, {len(skipped)} skipped) "
          f"in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
