#!/usr/bin/env python
"""Measure per-architecture activation coefficients by simulation -> hfmem/data/calibration.json.

    .venv/bin/python benchmarks/calibrate.py [--out hfmem/data/calibration.json] [--only llama qwen3 ...]

What is measured (issue 3, requirement 6): for each architecture (config ``model_type``) and attention
implementation (sdpa, eager), the bytes of activations that a training forward pass leaves alive for the
backward pass, **per token, per hidden unit, per layer** — the ``c`` of Korthikanti et al.'s
``sbh·c`` — and, separately, the terms that do not scale with the layer count (logits, embedding output,
loss). Nothing here is tuned by hand: every coefficient is a difference of two simulated byte counts.

Method (all runs: hfmem.simulate.simulate_train, GPU emulation on, batch 1, bf16 weights, AdamW foreach,
2 iterations, no padding; the measured quantity is the ``activations`` category of the live set at the
end of ``forward@2``, i.e. everything alive after the forward except parameters, buffers, gradients and
optimizer states):

1. The model is the real snapshot config (real hidden size, heads, MLP width, vocabulary) with only the
   number of decoder layers reduced to L1 and L2 (default 2 and 4): fast, and exact for the layers.
2. Per layer = (A(L2) − A(L1)) / (L2 − L1). Everything outside the layers (embedding output, final norm,
   logits, loss, input ids) is the same in both runs and cancels.
3. This at two sequence lengths s1 < s2 gives the coefficient c(s) = per_layer / (b·s·h) and the fit
   ``c(s) = linear + attention · a·s/h`` (Korthikanti's form: ``linear`` ~ 34, ``attention`` ~ 5 for eager
   attention; ``attention`` ~ 0 when flash attention keeps no s×s tensor).
4. Non-layer terms at (L1, s1): N = A(L1) − L1·per_layer. A third run with the vocabulary enlarged by half
   separates the part proportional to b·s·V (logits kept for the loss's backward) from the rest (per b·s·h).
   The forward's transient above what it leaves alive (``temporary`` of forward@2: the loss computation's
   bf16 logits, their fp32 copy and the fp32 log-softmax) is split the same way.
5. With gradient checkpointing (non-reentrant), the per-layer coefficient again by difference of L1/L2.

The sequence lengths stay within every sliding window of the model (so sliding and full layers behave
alike and SDPA needs no mask); for a model with a window below 1024 they are (window/2, window).
Layer pairs cover the model's majority layer kind: DeepSeek-V3 uses (4, 6) so that both extra layers are
MoE layers; its first 3 layers are dense (first_k_dense_replace), measured by a second pair (1, 3) and
stored under ``first_dense_layers``, and its non-layer terms come from the 1-layer run. Gemma 2 / gpt-oss
alternate sliding and full layers, so their pair averages one of each. Models with a learned position
table shorter than 1024 (BERT: 512) use (limit/2, limit).

Runtime on 2 cores: about 2 minutes (each simulation 0.3–1 s after the imports).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import validate as V  # noqa: E402  (shared config helpers; also puts the repository root on sys.path)

OUT = V.ROOT / "hfmem" / "data" / "calibration.json"
BATCH = 1
DTYPE = "bfloat16"
SEQS = (512, 1024)
LAYERS = (2, 4)

# (snapshot repo id, layer pair) — one reference model per architecture.
ARCHITECTURES: tuple[tuple[str, tuple[int, int]], ...] = (
    ("meta-llama/Llama-2-7b-hf", LAYERS),
    ("mistralai/Mistral-7B-v0.1", LAYERS),
    ("Qwen/Qwen2.5-7B", LAYERS),
    ("Qwen/Qwen3-8B", LAYERS),
    ("google/gemma-2b-it", LAYERS),
    ("google/gemma-2-2b-it", LAYERS),
    ("google/gemma-3-1b-it", LAYERS),
    ("microsoft/Phi-3-mini-4k-instruct", LAYERS),
    ("togethercomputer/RedPajama-INCITE-Chat-3B-v1", LAYERS),
    ("openai-community/gpt2", LAYERS),
    ("google-bert/bert-base-uncased", LAYERS),
    ("bigcode/starcoder2-7b", LAYERS),
    ("mistralai/Mixtral-8x7B-v0.1", LAYERS),
    ("Qwen/Qwen1.5-MoE-A2.7B-Chat", LAYERS),
    ("Qwen/Qwen3-30B-A3B", LAYERS),
    ("deepseek-ai/DeepSeek-V3", (4, 6)),
    ("openai/gpt-oss-20b", LAYERS),
)
# Further models of an architecture already covered, for the comparison with stas00's measured
# coefficients in docs/validation.md (SDPA only).
EXTRA_MODELS: tuple[str, ...] = (
    "HuggingFaceTB/SmolLM2-360M-Instruct",
    "meta-llama/Llama-3.1-8B",
    "mistralai/Mistral-7B-Instruct-v0.3",
    "Qwen/Qwen3-4B",
)
ATTNS = ("sdpa", "eager")  # the entries calibration.json holds (of hfmem.vocab.ATTNS: flash reads sdpa's)


def _forward(config: dict, *, seq: int, attn: str, grad_ckpt: bool = False) -> tuple[int, int]:
    """(activations alive at the end of forward@2, forward@2's transient above that)."""
    from hfmem.simulate import simulate_train

    result = simulate_train(config, batch=BATCH, seq=seq, dtype=DTYPE, attn=attn, grad_ckpt=grad_ckpt)
    fwd = result.phase("forward", 2)
    return fwd.by_category["activations"], fwd.by_category["temporary"]


def _seqs(shape: V.Shape) -> tuple[int, int]:
    """SEQS, or (limit/2, limit) below a sliding window or a learned position table shorter than SEQS[1]."""
    limits = [x for x in (shape.window, shape.max_positions) if x and x < SEQS[1]]
    if limits:
        top = min(limits) // 64 * 64
        return top // 2, top
    return SEQS


def _per_layer_fit(base: dict, layers: tuple[int, int], seqs: tuple[int, int], attn: str, shape: V.Shape):
    """Activations after forward for both layer counts and both lengths, the per-layer bytes and the fit."""
    (l1, l2), (s1, s2) = layers, seqs
    act, trans = {}, {}
    for L in layers:
        for s in seqs:
            act[L, s], trans[L, s] = _forward(V.reduce_layers(base, L), seq=s, attn=attn)
    per_layer = {s: (act[l2, s] - act[l1, s]) / (l2 - l1) for s in seqs}
    coef = {s: per_layer[s] / (BATCH * s * shape.hidden) for s in seqs}
    # c(s) = linear + attention * a*s/h through the two points
    x1, x2 = shape.heads * s1 / shape.hidden, shape.heads * s2 / shape.hidden
    attention = (coef[s2] - coef[s1]) / (x2 - x1)
    fit = {"linear": round(coef[s1] - attention * x1, 4), "attention": round(attention, 4),
           "form": "bytes per layer = b*s*h*(linear + attention*a*s/h)"}
    return act, trans, per_layer, coef, fit


def calibrate_one(repo: str, layers: tuple[int, int], attn: str, *, grad_ckpt: bool) -> dict:
    """Every coefficient of one (model, attention) pair. Raises SimulationError if it cannot run."""
    started = time.perf_counter()
    l1, l2 = layers
    base = V.load_config(repo)
    full = V.shape_of(base)
    shape = V.shape_of(V.reduce_layers(base, l1))
    s1, s2 = _seqs(shape)
    b, h, vocab = BATCH, shape.hidden, shape.vocab
    act, trans, per_layer, coef, fit = _per_layer_fit(base, layers, (s1, s2), attn, shape)

    # Models whose first k layers are dense (DeepSeek's first_k_dense_replace) get the dense layers'
    # coefficients from a pair of layer counts <= k, and the non-layer terms from its smaller count, so
    # that no dense/MoE difference is booked as non-layer.
    dense = None
    n_layers_ref, per_layer_ref, act_ref, trans_ref = l1, per_layer[s1], act[l1, s1], trans[l1, s1]
    if full.first_dense_layers >= 2:
        d_pair = (1, min(3, full.first_dense_layers))
        d_act, d_trans, d_per_layer, d_coef, d_fit = _per_layer_fit(base, d_pair, (s1, s2), attn, shape)
        dense = {"count": full.first_dense_layers, "layers_compared": list(d_pair),
                 "activation_bytes_per_token_per_hidden_per_layer": {str(s): round(d_coef[s], 4) for s in (s1, s2)},
                 "fit": d_fit}
        n_layers_ref, per_layer_ref = d_pair[0], d_per_layer[s1]
        act_ref, trans_ref = d_act[d_pair[0], s1], d_trans[d_pair[0], s1]

    # Non-layer terms at (n_layers_ref, s1); a vocabulary 1.5x as large separates the b*s*V part.
    big_vocab = vocab + (vocab // 2 + 63) // 64 * 64
    act_big, trans_big = _forward(V.reduce_layers(dict(base, vocab_size=big_vocab), n_layers_ref), seq=s1, attn=attn)
    non_layer = act_ref - n_layers_ref * per_layer_ref
    d_vocab = b * s1 * (big_vocab - vocab)
    per_vocab = (act_big - act_ref) / d_vocab
    per_hidden = (non_layer - per_vocab * b * s1 * vocab) / (b * s1 * h)
    t_per_vocab = (trans_big - trans_ref) / d_vocab
    t_per_hidden = (trans_ref - t_per_vocab * b * s1 * vocab) / (b * s1 * h)

    entry = {
        "model": repo,
        "model_type": shape.model_type,
        "attn": attn,
        "shape": {"hidden": h, "heads": shape.heads, "kv_heads": shape.kv_heads, "head_dim": shape.head_dim,
                  "intermediate": shape.intermediate, "moe_intermediate": shape.moe_intermediate,
                  "experts_per_token": shape.experts_per_token, "vocab": vocab,
                  "layers_in_model": full.layers, "sliding_window": shape.window},
        "layers_compared": [l1, l2],
        "seqs": [s1, s2],
        "per_layer_activation_bytes": {str(s): int(per_layer[s]) for s in (s1, s2)},
        "activation_bytes_per_token_per_hidden_per_layer": {str(s): round(coef[s], 4) for s in (s1, s2)},
        "fit": fit,
        "non_layer": {
            "activation_bytes_at": {"layers": n_layers_ref, "seq": s1, "bytes": int(non_layer)},
            "bytes_per_token_per_vocab": round(per_vocab, 4),
            "bytes_per_token_per_hidden": round(per_hidden, 4),
            "forward_transient_bytes_at": {"layers": n_layers_ref, "seq": s1, "bytes": int(trans_ref)},
            "forward_transient_bytes_per_token_per_vocab": round(t_per_vocab, 4),
            "forward_transient_bytes_per_token_per_hidden": round(t_per_hidden, 4),
        },
    }
    if dense:
        entry["first_dense_layers"] = dense
    if grad_ckpt:
        gc = {L: _forward(V.reduce_layers(base, L), seq=s1, attn=attn, grad_ckpt=True)[0] for L in layers}
        gc_layer = (gc[l2] - gc[l1]) / (l2 - l1)
        entry["grad_ckpt"] = {"seq": s1, "per_layer_activation_bytes": int(gc_layer),
                              "activation_bytes_per_token_per_hidden_per_layer": round(gc_layer / (b * s1 * h), 4)}
    entry["elapsed_s"] = round(time.perf_counter() - started, 2)
    return entry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--only", nargs="*", help="model types or repo ids to (re)calibrate; others are kept from --out")
    args = ap.parse_args(argv)

    from hfmem.inventory.meta_model import versions
    from hfmem.simulate import SimulationError

    # FakeTensorMode logs a traceback for an op whose shape check fails before hfmem turns it into a
    # one-line SimulationError (recorded under "skipped"); keep the console readable.
    logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.CRITICAL)

    started = time.perf_counter()
    previous = json.loads(args.out.read_text()) if (args.only and args.out.exists()) else {}
    architectures: dict = previous.get("architectures", {})
    models: dict = previous.get("models", {})
    skipped: dict = previous.get("skipped", {})

    def wanted(repo: str) -> bool:
        if not args.only:
            return True
        return repo in args.only or V.load_config(repo).get("model_type") in args.only

    jobs = [(repo, pair, True) for repo, pair in ARCHITECTURES] + [(repo, LAYERS, False) for repo in EXTRA_MODELS]
    for repo, pair, reference in jobs:
        if not wanted(repo):
            continue
        per_attn = {}
        attns = ATTNS if reference else ("sdpa",)
        for attn in attns:
            # Gradient checkpointing once per model: with SDPA, or eager where SDPA cannot run.
            gc = attn == "sdpa" or "sdpa" not in per_attn
            try:
                entry = calibrate_one(repo, pair, attn, grad_ckpt=gc)
            except SimulationError as exc:
                skipped[f"{repo} / {attn}"] = str(exc)
                print(f"  skip {repo:45s} {attn:5s}: {exc}", flush=True)
                continue
            skipped.pop(f"{repo} / {attn}", None)
            per_attn[attn] = entry
            print(f"  {repo:45s} {attn:5s} c(s)={list(entry['activation_bytes_per_token_per_hidden_per_layer'].values())} "
                  f"fit linear {entry['fit']['linear']:.2f} attention {entry['fit']['attention']:.3f} "
                  f"logits {entry['non_layer']['bytes_per_token_per_vocab']:.2f} B/token/vocab "
                  f"({entry['elapsed_s']:.1f} s)", flush=True)
        if not per_attn:
            continue
        models[repo] = per_attn
        if reference:
            model_type = next(iter(per_attn.values()))["model_type"]
            architectures[model_type] = {"reference_model": repo, **per_attn}

    v = versions()
    try:
        from importlib.metadata import version

        peft = version("peft")
    except Exception:  # noqa: BLE001
        peft = "absent"
    doc = {
        "schema": "hfmem.calibration/1",
        "what": ("Activation bytes a training forward pass leaves alive for backward, per token per hidden unit per "
                 "layer, by architecture (config model_type) and attention implementation, measured by hfmem's "
                 "simulation of the real transformers code; plus the non-layer terms (logits, loss, embedding "
                 "output) per token per vocabulary entry / per hidden unit."),
        "method": ("Per layer = difference of two simulated runs with L1 and L2 decoder layers (real hidden size, "
                   "heads, MLP, vocabulary), divided by (L2-L1)*b*s*h; at two sequence lengths, fitted as "
                   "linear + attention*a*s/h. Non-layer = A(L1) - L1*per_layer, split into b*s*V and b*s*h parts "
                   "by a run with a 1.5x vocabulary. Quantity: the 'activations' category of the live set at the "
                   "end of forward@2 (hfmem.simulate). See benchmarks/calibrate.py's docstring."),
        "units": {"activation_bytes_per_token_per_hidden_per_layer": "bytes / (batch*seq*hidden) per layer",
                  "fit": "bytes per layer = b*s*h*(linear + attention*a*s/h)",
                  "bytes_per_token_per_vocab": "bytes / (batch*seq*vocab)",
                  "bytes_per_token_per_hidden": "bytes / (batch*seq*hidden)"},
        "settings": {"batch": BATCH, "dtype": DTYPE, "default_seqs": list(SEQS), "default_layers": list(LAYERS),
                     "optimizer": "adamw foreach (does not affect activations)", "iterations": 2,
                     "gpu_emulation": True, "padding": "none (attention_mask=None)",
                     "grad_ckpt": "non-reentrant, once per model (sdpa, or eager when sdpa cannot run)",
                     "moe_experts_implementation": "transformers' default (grouped_mm): static shapes, top-k rows"},
        "generated": {"command": "python benchmarks/calibrate.py" + (f" --only {' '.join(args.only)}" if args.only else ""),
                      "date": _dt.date.today().isoformat(), "torch": v["torch"], "transformers": v["transformers"],
                      "peft": peft, "python": platform.python_version(), "machine": platform.machine(),
                      "elapsed_s": round(time.perf_counter() - started, 1)},
        "architectures": dict(sorted(architectures.items())),
        "models": dict(sorted(models.items())),
        "skipped": dict(sorted(skipped.items())),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out} ({len(architectures)} architectures, {len(models)} models, {len(skipped)} skipped) "
          f"in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
