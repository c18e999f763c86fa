"""Activation memory of a training step, and the step's peak by phase: the public entry.

Pure closed forms over a config dict: no torch, no transformers, no I/O except the packaged
``hfmem/data/calibration.json``. The parts live in their own modules, re-exported here:

* ``activation_shape``: the widths these forms read (``train_shape``, a view of ``hfmem.model.describe``);
* ``activation_calibration``: calibration.json (what it holds, the reference models it was measured on);
* ``train_structures``: per-family layer structures that move a calibrated coefficient to another shape,
  and which family a model uses (its own calibration, ``NEAREST_FAMILY``, or the generic published form);
* ``lora_activations``: what LoRA / DoRA adapters change in a layer's saved activations;
* here: the per-token coefficients of a model, the non-layer terms, precision, checkpointing, parallelism,
  and the step's peak by phase.

What the numbers are. ``activation_bytes`` returns what a training forward pass leaves alive for the
backward pass (``saved_bytes``: the ``activations`` category at the end of ``forward`` in
``hfmem.simulate.simulate_train``), the forward's transient at the loss, and the backward's transients.
``peak_by_phase`` adds the model states the caller passes in (weights, gradients, optimizer states, the
optimizer step's temporaries) the way the simulator's phases show them: the peak is *not* the sum of all
parts (gradients do not exist during the forward; activations are freed while gradients appear).

Per decoder layer (bytes per token, 16-bit activations): the calibrated coefficient of the model's family
moved to its shape (``train_structures``), or -- for a model with no calibration and no entry in
``NEAREST_FAMILY`` -- Korthikanti et al. 2022's generic 34·s·b·h per layer (+ 5·a·s²·b with eager attention)
with 4·b·s·V fp32 logits. ``coefficients_source`` and the first assumption say which.

Non-layer terms (per token): the loss's log-probabilities, ``bytes_per_token_per_vocab``·V (4 when the
loss upcasts the logits to fp32 — transformers' ForCausalLMLoss; 2 for BERT's bf16 cross entropy; 6 with
Gemma 2's final logit soft-capping), and ``bytes_per_token_per_hidden``·h (embedding output, final norm,
rotary tables, token ids). The forward transient at the loss is 6·b·s·V (bf16 logits + their fp32 copy while
the fp32 log-softmax is computed); the backward's first op adds 8·b·s·V (fp32 grad of the log-probs and
fp32 grad of the logits, next to the saved log-probs).

Gradient checkpointing (non-reentrant, per layer, as transformers does it): each layer keeps only its
input, 2·b·s·h (one 16-bit hidden state — measured: calibration ``grad_ckpt`` = 2.0 for every
architecture; note stas00's "non-reentrant checkpointing keeps 2 hidden states per layer" is not what the
simulation of transformers 5.24 shows); the backward recomputes one layer at a time: one layer's full
activations plus that layer's backward transient.

Precision. ``dtype_bytes`` 2 (bf16/fp16, the calibrated case) or 4 (fp32 training: 2× the 16-bit layer,
less what the 16-bit run keeps as fp32 upcasts, measured for Llama −8h, Qwen3 +0.9h, GPT-2 −2h; 2× assumed
for the others). ``amp`` (torch.autocast on fp32 weights): activations in the autocast dtype, plus
(measured) ~10h per layer for RMSNorm families and ~4h for LayerNorm families of fp32 tensors (the
residual stream and the norms stay fp32), plus the 16-bit copies of every Linear weight that autocast makes
and autograd keeps until the backward (2 bytes × the linear parameters, MoE experts included) — unless
gradient checkpointing drops them (then one layer's copies return during its recompute).

LoRA / DoRA: ``lora_activations``.

Parallelism (Korthikanti et al. 2022, arXiv 2205.05198, Table 2 and Eq. 5): tensor parallel t without
sequence parallel splits 24 of the 34 (the rest — LayerNorm inputs, dropout masks, residuals — is
replicated); with sequence parallel everything is split by t; the s² attention term is split by t.
Pipeline 1F1B: the first stage holds L layers' worth whatever p (L/p layers × min(p, micro-batches) in
flight); the interleaved schedule multiplies by 1 + (p − 1)/(p·m), m model chunks per device.

The step's peak (``peak_by_phase``) follows the simulator's phases: the backward's peak is the largest of a
few moments — at the loss (all activations + 8·b·s·V), after the lm_head, at the first and at the last layer
processed (activations shrink linearly while the layers' gradients grow; one layer's backward transient
≈ 2·(2I + h) bytes per token, plus its recompute under checkpointing, plus eager's (attention − 1.5)·a·s²·b),
and at the end (every gradient; tied embeddings add the pending lm_head gradient and the embedding gradient
before their sum, 2·V·h). With few activations the end wins; with many, the loss moment.

Accuracy against fresh ``simulate_train`` runs at batches/lengths calibration.json did not use
(tests/test_train_activations.py and a wider sweep, 2–5 layers of the real widths): saved activations and the
overall step peak within 0.1% for every calibrated family in bf16 (llama, mistral, qwen2, qwen3, phi3,
gemma, gemma2, gemma3, gpt_neox, gpt2, bert, starcoder2, mixtral, qwen2_moe, qwen3_moe, deepseek_v3,
gpt_oss), SDPA and eager, with and without checkpointing, except gemma3 eager (−0.6%); fp32 within 1%
(gemma3 +5%); AMP within 1.1% (+ checkpointing: activations exact, forward-phase peak −4%); LoRA within
1.4%. Nearest families: ``train_structures``. Phi-3 at s ≥ its 2047 window (masked SDPA) +2.8%.

Not modelled: padding / attention masks (the simulator runs unpadded), packed sequences, fused or chunked
cross-entropy (Liger, Cut-Cross-Entropy), activation offloading, selective recompute other than per-layer
checkpointing, FSDP/ZeRO gathers (the caller's model-state bytes carry those), the CUDA context, allocator
fragmentation and kernel workspaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..model.describe import DEFAULT_ACT, TIED_BY_DEFAULT  # noqa: F401 - kept importable here
from ..vocab import ATTNS
# the parts: what the forms below use, re-exported so that ``train_activations.<name>`` keeps working
from .activation_calibration import (CALIBRATION_FILE, CALIBRATION_PACKAGE, _fit, _ref_shape,  # noqa: F401
                                     _REF_EXTRA, _reference, calibration_entry, load_calibration)
from .activation_shape import TrainActivationError, TrainShape, train_shape  # noqa: F401
from . import heads as headsmod
from .lora_activations import (_dora_weight_copy_bytes, _lora_dims, _lora_layer_delta,  # noqa: F401
                               _lora_settings)
from .train_structures import (COMPOSITE_ACT_BYTES, NEAREST_FAMILY, STRUCTURES, Structure,  # noqa: F401
                               _LLAMA, _mla_terms, _mlp_coefficient, _mlp_terms, _structural, family_for)

KORTHIKANTI = "Korthikanti 2022 (fallback)"


# -- the per-token coefficients of one layer ----------------------------------------------------------------
@dataclass(frozen=True)
class LayerCoefficients:
    """Bytes per token of one layer at 16 bit: ``linear`` + ``attention``·a·s (eager's s² term)."""

    moe_layer: float  # a MoE layer (or the only kind for a dense model)
    dense_layer: float  # a dense-MLP layer of a MoE model
    attention: float  # per head per token per position (eager), else 0
    gc_per_h: float  # gradient checkpointing: bytes per token per hidden unit kept per layer
    logits_per_vocab: float  # saved per token per vocabulary entry (16-bit run)
    non_layer_per_h: float  # saved per token per hidden unit outside the layers
    fwd_transient_per_vocab: float
    fwd_transient_per_h: float
    source: str
    note: str


def layer_coefficients(config: dict, attn: str = "sdpa", batch: int = 1) -> LayerCoefficients:
    """The per-token coefficients for ``config`` (16-bit activations): calibrated and moved to this shape,
    or Korthikanti's."""
    if attn not in ATTNS:
        raise TrainActivationError(f"unknown attention {attn!r} (use sdpa, eager or flash)")
    shape = train_shape(config)
    family, how = family_for(shape.model_type)
    if family is None:  # no calibration, no family sharing its code: the published generic form, not a guess
        h = shape.hidden
        note = (f"{how}: Korthikanti et al. 2022's generic 34·s·b·h per layer"
                + (" + 5·a·s²·b (eager attention)" if attn == "eager" else ""))
        return LayerCoefficients(moe_layer=34.0 * h, dense_layer=34.0 * h, attention=5.0 if attn == "eager" else 0.0,
                                 gc_per_h=2.0, logits_per_vocab=4.0, non_layer_per_h=2.0,
                                 fwd_transient_per_vocab=6.0, fwd_transient_per_h=0.0,
                                 source=KORTHIKANTI, note=note)
    entry, ref = _reference(family, attn)
    used_attn = entry["attn"]
    st = STRUCTURES[family]
    moe = bool(shape.experts)
    ref_moe = bool(ref.experts)
    kind = used_attn  # the structure the calibrated entry was measured with ("sdpa" or "eager")
    linear, attention = _fit(entry, kind)
    if attn != "eager":
        attention = 0.0
    c_h = (linear * ref.hidden - _structural(ref, st, kind, ref_moe)) / ref.hidden
    if kind == "eager" and st.eager_position_h:
        # calibrated at batch 1: a batch-independent per-position term is inside ``linear``
        c_h -= st.eager_position_h * (1.0 - 1.0 / batch)
    per_moe = c_h * shape.hidden + _structural(shape, st, kind, moe, batch)
    # dense layers of a MoE model: DeepSeek's calibrated first_dense_layers; others: the same anchor
    dense_fit = (entry.get("first_dense_layers") or {}).get("fit")
    if dense_fit and family == "deepseek_v3":
        ref_d = replace(ref, experts=0, top_k=0)
        c_hd = (float(dense_fit["linear"]) * ref.hidden - _structural(ref_d, st, kind, False)) / ref.hidden
        per_dense = c_hd * shape.hidden + _structural(shape, st, kind, False, batch)
    else:
        per_dense = c_h * shape.hidden + _structural(shape, st, kind, False, batch)
    gc = (entry.get("grad_ckpt") or {}).get("activation_bytes_per_token_per_hidden_per_layer")
    if gc is None:
        other = calibration_entry(family, "sdpa" if used_attn == "eager" else "eager") or {}
        gc = (other.get("grad_ckpt") or {}).get("activation_bytes_per_token_per_hidden_per_layer", 2.0)
    nl = entry["non_layer"]
    src_attn = used_attn if attn != "flash" else "sdpa"
    source = f"calibration.json: {family}/{src_attn}"
    note = how if how == "calibrated" else f"{how} ({family}, structure moved to this shape)"
    if used_attn != ("sdpa" if attn == "flash" else attn):
        note += f"; no {attn} entry, {used_attn}'s linear part used"
    return LayerCoefficients(moe_layer=per_moe, dense_layer=per_dense, attention=attention, gc_per_h=float(gc),
                             logits_per_vocab=float(nl["bytes_per_token_per_vocab"]),
                             non_layer_per_h=float(nl["bytes_per_token_per_hidden"]),
                             fwd_transient_per_vocab=float(nl["forward_transient_bytes_per_token_per_vocab"]),
                             fwd_transient_per_h=float(nl["forward_transient_bytes_per_token_per_hidden"]),
                             source=source, note=note)


# -- parallelism (Korthikanti et al. 2022) ----------------------------------------------------------------
def tensor_parallel_layer_factor(tp: int = 1, sp: bool = False) -> float:
    """Share of one layer's (linear) activations a tensor-parallel rank holds: Table 2, Eq. 2
    sbh(10 + 24/t)/34 without sequence parallel (the LayerNorm/dropout/residual 10 sbh are replicated),
    Eq. 4 1/t with it."""
    tp = int(tp)
    if tp < 1:
        raise TrainActivationError("tp must be at least 1")
    return 1.0 / tp if sp else (10.0 + 24.0 / tp) / 34.0


def pipeline_in_flight_factor(pp: int = 1, microbatches: int | None = None, interleave: int = 1) -> float:
    """How many micro-batches' worth of its L/p layers the first pipeline stage holds, divided by p — i.e.
    the first stage holds ``factor × L`` layers of one micro-batch. 1F1B (Eq. 5): p micro-batches in flight,
    so L layers' worth whatever p (factor 1), fewer when there are fewer micro-batches than stages;
    interleaved with m model chunks per device: × (1 + (p − 1)/(p·m))."""
    pp, interleave = int(pp), int(interleave)
    if pp < 1 or interleave < 1:
        raise TrainActivationError("pp and interleave must be at least 1")
    in_flight = pp if microbatches is None else max(1, min(pp, int(microbatches)))
    factor = in_flight / pp
    if interleave > 1 and pp > 1:
        factor *= 1.0 + (pp - 1) / (pp * interleave)
    return factor


def parallel_activation_factor(tp: int = 1, sp: bool = False, pp: int = 1, microbatches: int | None = None,
                               interleave: int = 1, attention_share: float = 0.0) -> float:
    """Per-GPU share of the full model's layer activations (first pipeline stage), relative to one GPU
    holding all L layers of one micro-batch: tensor/sequence split × pipeline in-flight factor.
    ``attention_share``: the fraction of the layer bytes that is the s² attention term, always split by t."""
    t = tensor_parallel_layer_factor(tp, sp)
    layer = (1.0 - attention_share) * t + attention_share / int(tp)
    return layer * pipeline_in_flight_factor(pp, microbatches, interleave)


# -- results -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainActivations:
    """Activation memory of one training micro-batch, in bytes (per GPU under tp/sp/pp).

    ``saved_bytes``: alive at the end of the forward, what the backward needs (layers + non-layer terms).
    ``by_part``: layers_bytes, logits_bytes (the loss's log-probabilities kept for its backward),
    embeddings_bytes (embedding output, final norm, rotary tables, ids), and when they apply
    autocast_weight_copies_bytes (AMP), lora_adapter_bytes (already inside layers_bytes).
    ``forward_transient_bytes``: the forward's peak above ``saved_bytes`` (the loss: bf16 logits + fp32 copy).
    ``backward_transient_bytes``: the backward's largest transient above the saved set as it shrinks
    (the larger of the loss backward's fp32 logit gradients and one layer's backward — with gradient
    checkpointing including that layer's recomputed activations); weight gradients not included.
    """

    saved_bytes: int
    by_part: dict[str, int]
    forward_transient_bytes: int
    backward_transient_bytes: int
    per_layer_bytes: int  # one layer's saved bytes (checkpointed: its input only)
    full_layer_bytes: int  # one layer's full activations (what a recompute rebuilds)
    loss_backward_transient_bytes: int
    layer_backward_transient_bytes: int  # one layer's backward transient (w/o the recompute)
    layer_forward_transient_bytes: int  # one layer's forward transient beyond what it saves
    final_norm_bytes: int  # the final norm's saved tensors (part of embeddings_bytes)
    coefficients_source: str
    assumptions: tuple[str, ...]
    settings: dict = field(default_factory=dict)

    @property
    def forward_peak_bytes(self) -> int:
        return self.saved_bytes + self.forward_transient_bytes

    def to_dict(self) -> dict:
        return {"saved_bytes": self.saved_bytes, "by_part": dict(self.by_part),
                "forward_transient_bytes": self.forward_transient_bytes,
                "backward_transient_bytes": self.backward_transient_bytes,
                "per_layer_bytes": self.per_layer_bytes, "full_layer_bytes": self.full_layer_bytes,
                "loss_backward_transient_bytes": self.loss_backward_transient_bytes,
                "layer_backward_transient_bytes": self.layer_backward_transient_bytes,
                "layer_forward_transient_bytes": self.layer_forward_transient_bytes,
                "final_norm_bytes": self.final_norm_bytes,
                "coefficients_source": self.coefficients_source, "assumptions": list(self.assumptions),
                "settings": dict(self.settings)}


def _linear_params(shape: TrainShape, st: Structure) -> tuple[int, int]:
    """(Linear weight elements of one MoE-or-only layer, of one dense layer), for AMP's weight copies."""
    h, q, kv = shape.hidden, shape.q_dim, shape.kv_dim
    if shape.kv_lora_rank:  # q_a/q_b (or q_proj), kv_a (latent + rope key), kv_b (nope keys + values), o_proj
        qk = shape.mla_head_dims - shape.mla_v_dim
        nope = qk - shape.mla_rope_dim
        att = (h * shape.q_lora_rank + (shape.q_lora_rank or h) * shape.heads * qk
               + h * (shape.kv_lora_rank + shape.mla_rope_dim)
               + shape.kv_lora_rank * shape.heads * (nope + shape.mla_v_dim) + shape.heads * shape.mla_v_dim * h)
    else:
        att = h * q + 2 * h * kv + q * h
    n_mats = 3 if st.gated else 2
    dense = att + n_mats * h * shape.intermediate
    if not shape.experts:
        return dense, dense
    moe = att + n_mats * h * shape.moe_intermediate * shape.experts + n_mats * h * shape.shared_intermediate \
        + h * shape.experts
    return moe, dense


def _check(**values) -> None:
    for k, v in values.items():
        if int(v) < 1:
            raise TrainActivationError(f"{k} must be at least 1")


def activation_bytes(config: dict, *, batch: int, seq: int, attn: str = "sdpa", dtype_bytes: int = 2,
                     grad_ckpt: bool = False, tp: int = 1, sp: bool = False, pp: int = 1,
                     microbatches: int | None = None, interleave: int = 1, lora=False,
                     amp: str | None = None, kbit: dict | None = None,
                     reentrant: bool = False, loss_path: str = "5.x") -> TrainActivations:
    """Activations of one training micro-batch [batch, seq] (see the module docstring for the forms).

    ``dtype_bytes``: 2 (bf16/fp16) or 4 (fp32) — the weights' and activations' dtype; with ``amp`` ("bf16" or
    "fp16": fp32 weights under torch.autocast) the activations are 16-bit whatever ``dtype_bytes`` says.
    ``lora``: False, True (r 16, all-linear, no dropout) or {"r", "targets", "dropout"}.
    ``tp``/``sp``/``pp``/``microbatches``/``interleave``: Megatron-style parallelism (per-GPU bytes of the
    first pipeline stage; with pp > 1 the logits live on the last stage, reported as by_part
    ``last_stage_bytes``).
    ``kbit``: a bitsandbytes 4-bit base (QLoRA), {"prepare": prepare_model_for_kbit_training applied,
    "compute_bytes": bnb_4bit_compute_dtype's width, "dequant_bytes": the largest 4-bit Linear's dequantized
    weight(s) during its matmul}; see ``_kbit_terms``. ``reentrant``: torch.utils.checkpoint(use_reentrant=True).
    ``loss_path``: "5.x" (ForCausalLMLoss), "4.46" (4.46's loss_utils: the 16-bit logits held beside the fp32
    copy and its shifted copy) or "4.x" (transformers ≤ 4.45's model forward: the logits rebound to fp32, then
    shift_logits .contiguous())."""
    if loss_path not in ("5.x", "4.46", "4.x"):
        raise TrainActivationError(f"unknown loss_path {loss_path!r} (5.x, 4.46 or 4.x)")
    kbit = dict(kbit or {})
    # prepare_model_for_kbit_training: the embedding (and norms, LM head) are fp32, so the embedding output --
    # the residual stream -- is fp32; each Linear4bit casts its input to the compute dtype and its output back
    # to the input's dtype (bitsandbytes nn/modules.py Linear4bit.forward: ``.to(inp_dtype)``), so the stream
    # and every elementwise tensor of a layer stay fp32. The Trainer's bf16/fp16=True runs the forward under
    # torch.autocast (accelerate), which casts matmul inputs (not elementwise ops) to 16 bit.
    residual_fp32 = bool(kbit.get("prepare"))
    _check(batch=batch, seq=seq, tp=tp, pp=pp, interleave=interleave)
    if dtype_bytes not in (2, 4):
        raise TrainActivationError("dtype_bytes must be 2 (bf16/fp16) or 4 (fp32)")
    if amp not in (None, "bf16", "fp16"):
        raise TrainActivationError(f"unknown amp {amp!r} (bf16, fp16 or None)")
    if amp:
        dtype_bytes = 2
    if attn == "flash" and dtype_bytes == 4:
        raise TrainActivationError("flash attention runs in fp16/bf16 only")
    shape = train_shape(config)
    coef = layer_coefficients(config, attn, batch)
    family, _ = family_for(shape.model_type)
    st = STRUCTURES.get(family or "", _LLAMA)
    lora_cfg = _lora_settings(lora)
    if lora_cfg and residual_fp32:
        lora_cfg = {**lora_cfg, "input_bytes": 4, "autocast": True}
    b, s, h, V, L = int(batch), int(seq), shape.hidden, shape.vocab, shape.layers
    tokens = b * s
    # V below is the logits' elements per token (the logits/loss terms): the vocabulary for an LM head; a
    # classification head's num_labels per sequence (b × num_labels logits, not b·s·V), per token for token
    # classification / QA (hfmem.scenarios.heads). The head's weight is head_rows × h; the embedding keeps
    # shape.vocab (settings "vocab").
    head = headsmod.head_outputs(config)
    head_rows = V if head is None or head.vocab_wide else head.weight_rows
    if head is not None and not head.vocab_wide:
        V = head.logits_elements(b, s) / tokens
    assumptions: list[str] = [f"coefficients: {coef.source} ({coef.note})"]

    # one layer per token at 16 bit: calibrated linear part + eager's s² term
    att_tok = coef.attention * shape.heads * s  # eager: per token
    moe_tok = coef.moe_layer + att_tok
    dense_tok = coef.dense_layer + att_tok
    # SDPA with a sliding window reached: transformers passes a mask -> memory-efficient attention with a
    # 16-bit bias per layer (2·s per token) and, for repeat_kv families, K/V expanded to all heads
    masked_layers = 0
    if attn == "sdpa" and shape.window and s >= shape.window and shape.sliding_layers:
        masked_layers = shape.sliding_layers
        extra = 2.0 * s + (4.0 * (shape.q_dim - shape.kv_dim) if st.expands_kv_with_mask and not shape.kv_lora_rank else 0.0)
        assumptions.append(f"SDPA on {masked_layers} sliding-window layers with s ≥ window ({shape.window}): "
                           "masked memory-efficient attention (16-bit bias per layer, expanded K/V)")
    else:
        extra = 0.0
    # fp32 SDPA with grouped KV heads and no mask: no flash kernel for fp32 and the memory-efficient one has
    # no GQA, so CUDA takes the math path: repeated K/V and the fp32 s×s probabilities are kept (measured
    # on Llama-3.2-1B: 8·(q − kv) + 4·a·s per token per layer)
    math_path = (attn == "sdpa" and dtype_bytes == 4 and not amp and shape.kv_heads < shape.heads
                 and not shape.kv_lora_rank and not masked_layers)
    if math_path:
        assumptions.append("fp32 SDPA with GQA: math path (s×s fp32 probabilities and repeated K/V kept)")
    n_moe = shape.moe_layers if shape.experts else L
    n_dense = L - n_moe
    if lora_cfg:
        d_moe, notes_m, _ = _lora_layer_delta(shape, st, lora_cfg, bool(shape.experts))
        d_dense, _, _ = _lora_layer_delta(shape, st, lora_cfg, False)
        if not residual_fp32:  # in an fp32 stream the deltas are in that stream's widths: added after scaling
            moe_tok += d_moe
            dense_tok += d_dense
        assumptions += notes_m
        assumptions.append(f"LoRA r={lora_cfg['r']} targets={lora_cfg['targets']} dropout={lora_cfg['dropout']}: "
                           "frozen base drops the tensors kept only for weight gradients; each adapted Linear "
                           "keeps an fp32 copy of its input + its fp32 rank-r activation (+ 1-byte dropout mask)")
        if lora_cfg["dora"]:
            assumptions.append("DoRA: each adapted Linear also keeps the base output (16-bit; fp32 recomputed "
                               "under dropout) and the fp32 LoRA output for the magnitude's gradient"
                               + ("; with dropout, an fp32 copy of its weight" if lora_cfg["dropout"] > 0 else "")
                               + "; the weight-norm temporaries are freed within the layer's forward")
    # precision
    if dtype_bytes == 4:
        fp32_delta = st.fp32_h * h + st.fp32_qk * (shape.q_dim + shape.kv_dim)
        scale_tok = lambda x: 2.0 * x + fp32_delta  # noqa: E731
        if att_tok:  # the s×s part: fp32 probabilities kept once (Llama: 6 → 4) / 16-bit ones doubled (5 → 9)
            att_fp32 = (coef.attention - 2.0) if st.softmax_fp32 else (2.0 * coef.attention - 1.0)
            fp32_delta += (att_fp32 - 2.0 * coef.attention) * shape.heads * s
        assumptions.append("fp32 training: 2× the 16-bit layer, less the 16-bit run's own fp32 upcasts "
                           f"({fp32_delta / h:+.1f}·h per layer)")
    elif amp:
        amp_delta = st.amp_h * h
        if att_tok:
            amp_delta += st.amp_attention * shape.heads * s
        scale_tok = lambda x: x + amp_delta  # noqa: E731
        assumptions.append(f"AMP {amp}: activations in {amp}; the residual stream and norms stay fp32 "
                           f"(+{st.amp_h:g}·h per layer)")
    elif residual_fp32:
        # every tensor of the layer at fp32 as in fp32 training (2× the 16-bit layer less its own upcasts); the
        # matmul inputs autocast casts and flash attention's 16-bit q/k/v are counted at 32 bit too (the one
        # layer recomputed under checkpointing: an upper bound there)
        fp32_delta = st.fp32_h * h + st.fp32_qk * (shape.q_dim + shape.kv_dim)
        scale_tok = lambda x: 2.0 * x + fp32_delta  # noqa: E731
        assumptions.append("prepare_model_for_kbit_training: fp32 residual stream (fp32 embedding output; "
                           "Linear4bit returns its input's dtype): a layer's tensors at fp32 widths")
    else:
        scale_tok = lambda x: x  # noqa: E731
    moe_tok_p = scale_tok(moe_tok)
    dense_tok_p = scale_tok(dense_tok)
    if residual_fp32 and lora_cfg:
        moe_tok_p += d_moe
        dense_tok_p += d_dense
    if math_path:
        extra_math = 8.0 * (shape.q_dim - shape.kv_dim) + 4.0 * shape.heads * s
        moe_tok_p += extra_math
        dense_tok_p += extra_math
    full_layer_tok = max(moe_tok_p, dense_tok_p)

    # parallel shares
    att_share_moe = (att_tok / moe_tok) if moe_tok else 0.0
    t_layer = tensor_parallel_layer_factor(tp, sp)
    layer_share = (1 - att_share_moe) * t_layer + att_share_moe / tp
    pp_factor = pipeline_in_flight_factor(pp, microbatches, interleave)
    layers_here = L / pp  # layers on one stage
    stage_mult = pp_factor * pp  # micro-batches' worth held by the first stage
    if tp > 1 or pp > 1:
        assumptions.append(f"parallel: tp={tp} sp={sp} pp={pp} (Korthikanti Table 2 / Eq. 5): layer share "
                           f"{layer_share:.3f}, first stage holds {stage_mult:.2f} micro-batches of L/p layers")

    # layers
    masked_bytes_tok = scale_tok(extra) - scale_tok(0.0) if extra else 0.0
    if grad_ckpt:  # the checkpoint is the residual stream: fp32 under AMP
        per_layer_tok = coef.gc_per_h * h * (2 if (amp or residual_fp32) else dtype_bytes / 2)
        layer_tokens = per_layer_tok * L
        assumptions.append(f"gradient checkpointing ({'reentrant' if reentrant else 'non-reentrant'}, per layer): "
                           f"{coef.gc_per_h * (2 if (amp or residual_fp32) else dtype_bytes / 2) / 2:g}·b·s·h "
                           f"{'fp32 ' if (amp or residual_fp32 or dtype_bytes == 4) else ''}elements per layer "
                           "(the layer input) kept; the backward recomputes one layer at a time")
    else:
        per_layer_tok = (n_moe * moe_tok_p + n_dense * dense_tok_p) / L
        layer_tokens = n_moe * moe_tok_p + n_dense * dense_tok_p + masked_layers * masked_bytes_tok
    layers_bytes = layer_tokens * tokens * layer_share * (layers_here / L) * stage_mult
    per_layer_bytes = per_layer_tok * tokens * layer_share
    full_layer_bytes = (full_layer_tok + (masked_bytes_tok if masked_layers else 0.0)) * tokens * layer_share
    if grad_ckpt and reentrant:
        # torch.utils.checkpoint, use_reentrant=True (CheckpointFunction.backward): the layer is re-run in full
        # under enable_grad and torch.autograd.backward(outputs, ...) runs while ``outputs`` -- the layer's
        # output hidden state -- is held; the non-reentrant variant stops its recompute at the last saved
        # tensor (early_stop=True) and never rebuilds that output. The saved inputs are the same (the layer
        # input, ctx.save_for_backward).
        full_layer_bytes += h * (4 if (amp or residual_fp32 or dtype_bytes == 4) else 2) * tokens * layer_share
        assumptions.append("reentrant checkpointing: the recompute also rebuilds the layer's output, held "
                           "during that layer's backward (one hidden state more at the recompute peak)")

    # AMP weight copies: kept by autograd until the backward (not under checkpointing)
    amp_copies = 0
    layer_fwd_extra = 0.0
    amp_forward_cache = 0.0  # autocast's cached casts held to the end of the forward (checkpointing)
    if amp:
        lin_moe, lin_dense = _linear_params(shape, st)
        per_layer_copies = (n_moe * lin_moe + n_dense * lin_dense) / L * 2 / tp
        head_copy = head_rows * h * 2 / tp
        if grad_ckpt:
            amp_copies = head_copy
            full_layer_bytes += per_layer_copies
            layer_fwd_extra = per_layer_copies
            assumptions.append("AMP + checkpointing: the layers' 16-bit weight copies are dropped with the layer's "
                               "activations and rebuilt during its recompute; the lm_head copy stays")
            if not lora_cfg:
                # torch.autocast's weight cache (cache_enabled=True, the default): cached_cast in
                # aten/src/ATen/autocast_mode.cpp keeps the 16-bit cast of every argument with
                # ``arg.is_leaf() && arg.requires_grad()`` -- a trainable weight -- until the outermost autocast
                # context exits (clear_cache on exit), i.e. through the whole forward + loss (the Trainer's
                # compute_loss runs inside it), checkpointed or not: every layer's copies pile up to the end of
                # the forward (the layer running holds its own already, layer_fwd_extra). The backward runs
                # outside autocast and the recompute's own autocast caches per layer, as counted above. Frozen
                # weights (a LoRA/QLoRA base) are not leaves that require grad: cast per call, never cached.
                amp_forward_cache = per_layer_copies * layers_here
                layer_fwd_extra = amp_forward_cache
                assumptions.append("AMP + checkpointing: autocast's cache keeps the 16-bit copy of every trainable "
                                   "Linear weight until the forward's autocast exits (to the end of the forward "
                                   "and loss)")
        else:
            amp_copies = per_layer_copies * L / pp + head_copy
            assumptions.append("AMP: autocast's 16-bit copies of every Linear weight (incl. lm_head) are kept "
                               "for the backward")
        if pp > 1:
            amp_copies -= head_copy  # lm_head on the last stage
    kbit_head_copy = 0.0
    if residual_fp32:
        # the fp32 LM head under autocast: F.linear casts its weight to 16 bit each call (autocast caches a
        # cast only for a leaf that requires grad -- prepare_model_for_kbit_training froze it), and autograd
        # keeps that copy (mm's other operand) for the input gradient until the head's backward
        kbit_head_copy = head_rows * h * 2 / tp if pp == 1 else 0.0
        amp_copies += kbit_head_copy
        assumptions.append("prepare_model_for_kbit_training: the fp32 LM head's 16-bit autocast copy "
                           "(head rows × h × 2 B) kept for the backward")
    if lora_cfg and lora_cfg["dora"] and lora_cfg["dropout"] > 0:  # DoRA's fp32 weight copies (as AMP's)
        dora_copies = (n_moe * _dora_weight_copy_bytes(shape, st, lora_cfg, bool(shape.experts))
                       + n_dense * _dora_weight_copy_bytes(shape, st, lora_cfg, False)) / L / tp
        if grad_ckpt:
            full_layer_bytes += dora_copies
            layer_fwd_extra += dora_copies
        else:
            amp_copies += dora_copies * L / pp

    # non-layer terms: logits (the loss's log-probs) and the hidden-size part
    if coef.logits_per_vocab <= 2.0 and not amp:  # loss on 16-bit logits (BERT): log-probs in that dtype
        # (under autocast, log_softmax is an fp32 op: the upcast branch below)
        logits_per_v, loss_bw_per_v = 2.0 * dtype_bytes / 2, 2.0 * dtype_bytes
        fwd_per_v = dtype_bytes
    else:  # fp32 upcast: log-probs fp32 whatever the dtype; soft-capping keeps its tanh output (16/32 bit)
        logits_per_v = 4.0 + max(0.0, coef.logits_per_vocab - 4.0) * dtype_bytes / 2
        loss_bw_per_v = 8.0
        fwd_per_v = max(coef.fwd_transient_per_vocab, 6.0) if dtype_bytes == 2 else 4.0
        if loss_path == "4.x":
            # transformers 4.x LlamaForCausalLM.forward: ``logits = logits.float()`` rebinds (the 16-bit logits
            # are freed; 4 B) and ``shift_logits = logits[..., :-1, :].contiguous()`` copies them (4 B) next
            # to the saved fp32 log-probs; 5.x ForCausalLMLoss pads the labels instead and keeps the 16-bit
            # logits (2 B) beside its fp32 copy (4 B)
            fwd_per_v = max(fwd_per_v, 8.0)
            assumptions.append("loss path 4.x: fp32 logits + a contiguous shifted copy at the loss (8·b·s·V "
                               "beside the saved log-probs)")
        elif loss_path == "4.46":
            # transformers 4.46's loss/loss_utils.py ForCausalLMLoss: the model still holds its 16-bit logits
            # (2 B) while the loss makes ``logits.float()`` (4 B) and ``logits[..., :-1, :].contiguous()``
            # (4 B); later releases pad the labels instead of shifting the logits (the 5.x path)
            fwd_per_v = max(fwd_per_v, 10.0)
            assumptions.append("loss path 4.46: 16-bit logits held + their fp32 copy + a contiguous shifted copy "
                               "at the loss (10·b·s·V beside the saved log-probs)")
    nl_h = coef.non_layer_per_h * (dtype_bytes / 2)
    # eager + checkpointing: the additive causal mask [b, 1, s, s] is an input of every checkpointed layer
    mask_bytes = dtype_bytes * b * s * s if (attn == "eager" and grad_ckpt) else 0
    if amp:
        nl_h += st.amp_nl_h  # fp32 embedding output (and LayerNorm'd heads)
    if lora_cfg:
        nl_h = max(nl_h - 8.0, 0.5)  # layer 0's first norm and the frozen embeddings keep less
    if residual_fp32:
        nl_h *= 2  # the final norm and the embedding-side tensors in fp32
    vocab_share = 1.0 / tp  # Megatron's vocab-parallel cross entropy
    logits_bytes = logits_per_v * tokens * V * vocab_share
    embeddings_bytes = nl_h * tokens * h * (1.0 / tp if sp else 1.0) + mask_bytes
    fwd_transient = (fwd_per_v * V * vocab_share + coef.fwd_transient_per_h * h) * tokens
    loss_bw = loss_bw_per_v * tokens * V * vocab_share
    last_stage = 0
    if pp > 1:
        last_stage = int(layer_tokens * tokens * layer_share / pp + logits_bytes + embeddings_bytes)
        assumptions.append("pp > 1: the first stage (reported) holds the embeddings but not the logits; "
                           "by_part last_stage_bytes is the last stage (L/p layers of one micro-batch + logits)")
        logits_in_first = 0.0
        fwd_transient_first = 0.0
        loss_bw_first = 0.0
        embeddings_bytes *= stage_mult
    else:
        logits_in_first, fwd_transient_first, loss_bw_first = logits_bytes, fwd_transient, loss_bw
    fwd_transient_first += amp_forward_cache  # the forward's end (the loss) with the cache still held

    # one layer's backward transient: the MLP's input gradients (2 × intermediate + h, activation dtype)
    inter_eff = (shape.top_k * shape.moe_intermediate + shape.shared_intermediate) if shape.experts else shape.intermediate
    layer_bw = dtype_bytes * (2 * inter_eff + h) * tokens * layer_share
    # eager attention: a·s²·b elements per layer; its backward holds the probabilities' gradient and the
    # softmax's fp32 input gradient next to the saved scores (measured on Llama: ~(attention − 1.5) bytes each)
    s2 = shape.heads * s * tokens * (dtype_bytes / 2) / tp if attn == "eager" else 0.0
    if s2:
        layer_bw = max(layer_bw, (coef.attention - 1.5) * s2)
    # a 4-bit Linear's matmul: bitsandbytes MatMul4Bit dequantizes the whole weight (forward, and again for
    # the input gradient in backward), a transient next to the layer's own
    dequant = float(kbit.get("dequant_bytes") or 0) / tp
    layer_bw += dequant
    layer_bw_total = layer_bw + (full_layer_bytes if grad_ckpt else 0.0)
    backward_transient = max(loss_bw_first, layer_bw_total)
    # one layer's forward transient beyond what it saves (measured on Llama: the MLP's temporaries; under
    # checkpointing nothing is saved, so most of the MLP's intermediates are alive at once); eager's s×s
    # scores while the softmax runs
    if grad_ckpt:
        layer_fwd = dtype_bytes * (3.5 * inter_eff + h) * tokens * layer_share
    else:
        layer_fwd = dtype_bytes * (2 * inter_eff + 1.5 * h) * tokens * layer_share
    if s2:  # the masked scores next to the saved probabilities; all of them at once when nothing is saved
        layer_fwd = max(layer_fwd, ((coef.attention + 4.0) if grad_ckpt else 2.0) * s2)
    layer_fwd += layer_fwd_extra + dequant
    # the final norm's saved tensors (freed before the layers' backward): ~6h (RMSNorm) / 4h (LayerNorm)
    final_norm = min(embeddings_bytes, (6 if st.norm == "rms" else 4) * h * tokens * dtype_bytes / 2)

    by_part = {"layers_bytes": int(layers_bytes), "logits_bytes": int(logits_in_first),
               "embeddings_bytes": int(embeddings_bytes)}
    if amp or kbit_head_copy:
        by_part["autocast_weight_copies_bytes"] = int(amp_copies)
    if lora_cfg:
        by_part["lora_adapter_bytes"] = int(max(0.0, _lora_layer_delta(shape, st, lora_cfg, bool(shape.experts))[0]
                                                + (8 * h if st.norm == "rms" else 4 * h) + 2 * inter_eff)
                                            * tokens * L)
    if pp > 1:
        by_part["last_stage_bytes"] = last_stage
    saved = int(layers_bytes + logits_in_first + embeddings_bytes + amp_copies)
    if attn == "eager":
        assumptions.append(f"eager attention: s×s scores kept, {coef.attention:g}·a·s²·b bytes per layer")
    elif attn == "flash":
        assumptions.append("flash attention: no s×s tensor (as SDPA's flash op)")
    if shape.experts:
        assumptions.append(f"MoE: {shape.experts} experts, top-{shape.top_k}: the expert MLP on k routed rows "
                           "per token (grouped_mm, static shapes), router logits per expert"
                           + (f"; {n_dense} dense-MLP layers" if n_dense else ""))
    settings = {"model_type": shape.model_type, "family": family or "korthikanti", "batch": b, "seq": s,
                "attn": attn, "dtype_bytes": dtype_bytes, "amp": amp, "grad_ckpt": bool(grad_ckpt),
                "lora": lora_cfg, "tp": tp, "sp": bool(sp), "pp": pp, "microbatches": microbatches,
                "interleave": interleave, "layers": L, "hidden": h, "vocab": shape.vocab, "tied": shape.tied and (head is None or head.vocab_wide),
                "head_rows": head_rows, "logits_per_token": V,
                "layers_on_stage": layers_here,
                "mlp_out_params": h * (shape.moe_intermediate * shape.experts if shape.experts else shape.intermediate)}
    return TrainActivations(saved_bytes=saved, by_part=by_part, forward_transient_bytes=int(fwd_transient_first),
                            backward_transient_bytes=int(backward_transient), per_layer_bytes=int(per_layer_bytes),
                            full_layer_bytes=int(full_layer_bytes), loss_backward_transient_bytes=int(loss_bw_first),
                            layer_backward_transient_bytes=int(layer_bw),
                            layer_forward_transient_bytes=int(layer_fwd), final_norm_bytes=int(final_norm),
                            coefficients_source=coef.source,
                            assumptions=tuple(assumptions), settings=settings)


# -- the step's peak by phase -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PhasePeaks:
    """Peak allocated bytes of one training step's phases (steady state: optimizer states exist)."""

    forward_bytes: int
    backward_bytes: int
    optimizer_step_bytes: int
    peak_bytes: int
    peak_phase: str  # forward | backward | optimizer_step
    backward_moment: str  # which moment of the backward holds its peak
    backward_moments: dict[str, int]
    assumptions: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"forward_bytes": self.forward_bytes, "backward_bytes": self.backward_bytes,
                "optimizer_step_bytes": self.optimizer_step_bytes, "peak_bytes": self.peak_bytes,
                "peak_phase": self.peak_phase, "backward_moment": self.backward_moment,
                "backward_moments": dict(self.backward_moments), "assumptions": list(self.assumptions)}


def peak_by_phase(acts: TrainActivations, *, weights_bytes: int, grads_bytes: int, optimizer_state_bytes: int,
                  optimizer_temp_bytes: int = 0, buffers_bytes: int = 0, grad_accum: int = 1,
                  grads_kept: bool = False, grad_bytes_per_element: int | None = None, embeddings_trainable: bool | None = None) -> PhasePeaks:
    """Forward, backward and optimizer-step peaks of a training step from the model states (per GPU, as
    the caller counts them) and ``acts`` (one micro-batch).

    * forward: weights + optimizer states (+ gradients from the second micro-batch on, with accumulation)
      + saved activations + the forward's transient at the loss.
    * backward, the largest of its moments (as the simulator's backward shows them):
      ``loss``: all saved activations + the loss backward's fp32 logit gradients (8·b·s·V);
      ``head``: the log-probs freed, the 16-bit logit gradient and the lm_head weight gradient appear;
      ``first_layer`` / ``last_layer``: saved activations shrink layer by layer while the layers' weight
      gradients accumulate (linear in between, so the ends suffice), plus one layer's backward transient
      (with checkpointing: its recomputed activations too);
      ``end``: every gradient allocated (+ for tied embeddings the pending lm_head gradient and the
      embedding gradient before they are summed: 2 × V·h).
    * optimizer_step: weights + gradients + states + the step's temporaries (AdamW foreach: one per
      parameter), no activations.
    With ``grad_accum`` > 1 the gradients stay allocated between micro-batches: every moment of the forward
    and backward includes all of them (the micro-batch size drives the activations). ``grads_kept``:
    zero_grad(set_to_none=False) (torch < 2.0's default) zeroes the gradients in place instead of freeing them,
    so they are held through every forward and backward just as with accumulation (each new gradient is then
    a temporary added into the held one, AccumulateGrad's in-place path).
    """
    _check(grad_accum=grad_accum)
    st = acts.settings
    L = int(st.get("layers_on_stage") or st.get("layers") or 1)
    V, h, tied = int(st.get("vocab", 0)), int(st.get("hidden", 0)), bool(st.get("tied", False))
    tp = int(st.get("tp", 1))
    lora = st.get("lora")
    if embeddings_trainable is None:
        embeddings_trainable = not lora
    gbpe = grad_bytes_per_element or (4 if (st.get("amp") or st.get("dtype_bytes") == 4) else 2)
    base = int(weights_bytes) + int(optimizer_state_bytes) + int(buffers_bytes)
    G = int(grads_bytes)
    emb_grad = V * h * gbpe // tp if embeddings_trainable else 0
    # untied: the head's own gradient (head_rows × h: V for an LM head, num_labels for a classifier); tied:
    # the lm_head's, pending until summed at the end
    head_rows = int(st.get("head_rows", V))
    head_grad = emb_grad if tied or head_rows == V else (head_rows * h * gbpe // tp if embeddings_trainable else 0)
    layer_grads = max(0, G - emb_grad - (0 if tied else head_grad)) if embeddings_trainable else G
    g = layer_grads / max(L, 1)
    ga = int(grad_accum) > 1 or bool(grads_kept)
    held = G if ga else 0  # gradients already allocated when the micro-batch starts
    saved, logits = acts.saved_bytes, acts.by_part.get("logits_bytes", 0)
    per_layer = acts.per_layer_bytes
    grad_ckpt = bool(st.get("grad_ckpt"))
    # what is left outside the layers when the first layer's backward runs: the embedding output (with
    # checkpointing it is layer 0's checkpoint, already in per_layer), rotary tables, ids
    non_layer_rest = acts.by_part.get("embeddings_bytes", 0) - acts.final_norm_bytes
    if grad_ckpt:
        non_layer_rest -= per_layer
    non_layer_rest = max(0, non_layer_rest)
    recompute = acts.full_layer_bytes if grad_ckpt else 0
    t_layer = acts.layer_backward_transient_bytes + recompute
    # the first weight gradient inside a layer's backward (the MLP's output projection; all experts at once)
    g_first = min(g, float(st.get("mlp_out_params", 0)) * gbpe / tp) if not lora else 0.0
    tokens = int(st.get("batch", 1)) * int(st.get("seq", 1))
    logits_grad = int(tokens * float(st.get("logits_per_token", V)) * int(st.get("dtype_bytes", 2))) // tp  # the 16-bit (fp32) logit gradient
    # with accumulation the new head gradient is a temporary until added into the held one
    head_moment = saved - logits + logits_grad + head_grad

    def grads_now(done_layers: float, head: bool = True) -> float:
        if ga:
            return held
        return (head_grad if head else 0) + done_layers * g

    moments = {
        "loss": saved + acts.loss_backward_transient_bytes + held,
        "head": head_moment + held,
        "first_layer": saved - logits + grads_now(0) + g_first + t_layer,
        "last_layer": non_layer_rest + per_layer + grads_now(L - 1) + g_first + t_layer,
        "end": (G if not ga else held) + (2 * emb_grad if tied and embeddings_trainable else 0),
    }
    moments = {k: int(base + v) for k, v in moments.items()}
    moment = max(moments, key=moments.get)
    backward = moments[moment]
    fwd_moments = {"loss": saved + acts.forward_transient_bytes,
                   "layers": saved - logits - acts.final_norm_bytes + acts.layer_forward_transient_bytes}
    forward = base + held + max(fwd_moments.values())
    step = int(weights_bytes) + int(buffers_bytes) + G + int(optimizer_state_bytes) + int(optimizer_temp_bytes)
    phases = {"forward": forward, "backward": backward, "optimizer_step": step}
    peak_phase = max(phases, key=phases.get)
    notes = ["steady state (step ≥ 2): optimizer states allocated; zero_grad(set_to_none="
             f"{not grads_kept}) before the forward"]
    if int(grad_accum) > 1:
        notes.append(f"gradient accumulation over {grad_accum} micro-batches: gradients allocated during every "
                     "forward/backward after the first micro-batch")
    return PhasePeaks(forward_bytes=int(forward), backward_bytes=int(backward), optimizer_step_bytes=int(step),
                      peak_bytes=int(phases[peak_phase]), peak_phase=peak_phase, backward_moment=moment,
                      backward_moments=moments, assumptions=tuple(notes))
