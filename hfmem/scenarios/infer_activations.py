"""Activation memory of inference: the bytes above weights + KV cache at the peak of a prefill and of a
decode step, in closed form.

Pure functions over a config dict: no torch, no transformers. The only I/O is the packaged calibration
(hfmem/data/infer_calibration.json, written by benchmarks/calibrate_infer.py), read once, lazily.

What is counted -- the quantity ``hfmem.simulate.simulate_infer`` measures, under ``torch.no_grad()``:

    activation bytes = peak allocated bytes of the phase − parameters − buffers − KV cache held at the end
                       of the phase

so ``weights + KV cache + activation bytes`` is the phase's peak. It includes the prompt's token ids, the
residual stream (the layer input, the embedding output that the model keeps referenced, the layer's
residual copy), the model-level full-sequence tensors (rotary cos/sin, materialised masks), one layer's
largest transient (attention: q/k/v, rotary and q/k-norm temporaries, the attention output and its
log-sum-exp; with eager attention the b·a·s² scores in the compute dtype, F.softmax's fp32 upcast of them,
the fp32 probabilities and their cast back, which the layer keeps referenced through its MLP; MLP: gate,
up, activation and product; MoE: router logits and their fp32 softmax, top-k, the routed tokens' expert
inputs and intermediates run through grouped_mm, shared experts), the final norm over the sequence and the
logits of the kept position (last token only, as ``generate`` does) -- each at the moment it is live: the
peak is one moment. A decode step adds the DynamicCache growth (``torch.cat`` makes a layer's new K of
T + 1 tokens while the old one is alive; a sliding-window layer makes both K and V before releasing
either), eager attention's ``repeat_kv`` copies for grouped-query models, and for MLA the latent expanded
to every head. The decode step is the first one after a prefill of T tokens: beyond a sliding window the
sliding layers not yet updated still hold the whole prompt (``sliding_prompt_bytes``); later steps are
lower. ``fp32_logits_copy`` adds generate's fp32 copy of the last logits (b·V·4 B) after the LM head.

The form. Under no_grad nothing is kept across layers, so the peak is the largest of a few moments
("regions"): the embedding; per kind of layer the model has (full attention, sliding window, leading dense
layers of a MoE model) its attention projections, its attention kernel call, its MLP/MoE block, its norms and
residual adds; the final norm; the LM head; what follows it. Each region's bytes are linear in structural
terms, per sequence:

    prefill (s = context):  s·(c₁ + c_h·h + c_a·a + c_q·q + c_kv·kv + c_g·g + c_m·m + c_mb·m_b + c_lb·l_b
                               + c_d·d + c_I·I + c_E·E + c_kh·k·h + c_kI·k·I_e + c_lat·latent + c_ql·q_lora
                               + c_qr·a·d_rope)
                            + s²·(e_a·a + e_ag·a_g + e_m) + v·V + c₀
    decode (T = cached tokens before the step):
                            T·(t₁ + t_a·a + t_ag·a_g + t_kv·kv + t_q·q + t_g·g + t_m·m + t_mb·m_b + t_lb·l_b
                               + t_lat·latent + t_qr·a·d_rope)
                            + (c₀ + c_h·h + c_a·a + c_q·q + c_kv·kv + c_I·I + c_E·E + c_kh·k·h + c_kI·k·I_e
                               + c_lat·latent + c_ql·q_lora) + v·V

h hidden size; a heads; d the rotary width of a head (the head dim; MLA: qk_rope_head_dim); q = a·d_qk; kv =
n_kv·d_qk (MLA: a·d_v, the expanded values); g = q for grouped-query attention with 1 < n_kv < a (eager
attention's repeat_kv copies K and V to every head), else 0; m = q with one KV head (MQA, where the repeat is
a view); m_b = q with one KV head and more than one sequence (eager attention's matmul against the expanded
K/V then clones it; likewise l_b = kv for MLA's strided values); a_g = a for any n_kv < a (fp32 SDPA takes the
math kernel: s² scores, K/V repeated); I the dense MLP width of the layer (MoE layers: the shared experts'
width); E experts; k experts per token; I_e the expert width; latent = kv_lora_rank + qk_rope_head_dim; q_lora
the MLA query rank; V the vocabulary. A layer region is measured with the KV of layers 0..j alive; for the
prefill's frame the KV of the later layers is subtracted (``later_kv_bytes``: a leading dense layer peaks
before the MoE layers' KV exists), and from the embedding region the whole KV cache. The result is ``batch ×``
the largest region. The coefficients are bytes per element, fitted by least squares on simulations of the real
model code per architecture, attention implementation and dtype width (2-byte: bf16 and fp16 simulate
identically; 4-byte: fp32); a term the calibration could not vary independently is folded into the others
(absent from the table). "flash" uses the SDPA tables (SDPA already takes the flash kernel for fp16/bf16).

Known simulator-vs-CUDA gap, inherited: for fp16 (not bf16) CUDA's ``softmax(x, dtype=float32)`` runs the
fused half-to-float kernel without the fp32 copy of the input that the CPU/fake path (and the calibration)
makes, so eager fp16 prefill overstates the score peak by 4·b·a·s² bytes.

Architectures without calibration use the coefficients of the nearest calibrated family (llama for dense
decoders, qwen3_moe for mixture-of-experts, deepseek_v3 for MLA), named in ``source`` and ``assumptions``.
Not covered (InferActivationError): encoder-only and encoder-decoder models, fp32 MoE (the simulation
cannot run grouped_mm in fp32), SDPA for gemma2/gpt-oss (transformers has none; attn=None takes
transformers' own default, eager, and flash or vLLM take the eager tables less the score terms,
``without_scores``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..model import ModelDescription, describe
from ..model.description import TEXT_ENCODER, Tower
from ..errors import UnsupportedArchitectureError
from .. import vocab as _vocab
from ..vocab import ATTNS
from .kv_cache import SLIDING, KVLayoutError, kv_layout

CALIBRATION_PATH = Path(__file__).resolve().parents[1] / "data" / "infer_calibration.json"
DTYPE_BYTES = tuple(sorted(set(_vocab.DTYPE_BYTES.values())))  # the widths calibrated: 2 (bf16/fp16), 4 (fp32)
FP32_BYTES = 4

# Regions. A layer region is "<kind>_<role>": the last layer of that kind in the calibration model.
LAYER_KINDS = ("full", "sliding", "dense")   # full attention, sliding window, leading dense layer of a MoE model
LAYER_ROLES = ("attn", "core", "layer", "mlp")  # attention module (projections, rotary), its attention kernel
                                               # call, the layer's own code (norms, adds), MLP/MoE block
MODEL_REGIONS = ("pre", "final", "lm_head", "post")
REGIONS = ("pre", *(f"{k}_{r}" for k in LAYER_KINDS for r in LAYER_ROLES), "final", "lm_head", "post")
REGION_NAMES = {
    "pre": "embedding (before the first layer)",
    "attn": "attention projections", "core": "attention kernel (scores, softmax or SDPA, K/V repeats)",
    "layer": "norms and residual adds", "mlp": "MLP / MoE block",
    "full": "full-attention layer", "sliding": "sliding-window layer", "dense": "leading dense layer",
    "final": "final norm over the sequence",
    "lm_head": "LM head (kept positions)",
    "post": "after the LM head (logits, soft-capping, next-token choice)",
}

# Fallback families for architectures without calibration.
FALLBACK_DENSE, FALLBACK_MOE, FALLBACK_MLA = "llama", "qwen3_moe", "deepseek_v3"


class InferActivationError(UnsupportedArchitectureError, ValueError):
    """A model or setting the closed form does not cover (unknown attention, dtype width, missing dimensions):
    hfmem cannot estimate it (exit 6; ``hfmem simulate`` runs the model code instead)."""


# -- shape ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InferShape:
    """The widths the closed form needs, read from a config dict (text config of a multimodal one)."""

    model_type: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int                 # query/key head dim (MLA: qk_nope + qk_rope)
    v_head_dim: int
    rope_dim: int                 # rotary width of a head (MLA: qk_rope_head_dim; else head_dim)
    intermediate: int             # dense MLP width (gpt2: n_inner or 4h)
    vocab: int
    experts: int = 0
    top_k: int = 0
    expert_intermediate: int = 0
    shared_intermediate: int = 0  # shared experts' total width in a MoE layer
    dense_layers: int = 0         # leading dense layers of a MoE model
    mla_latent: int = 0           # kv_lora_rank + qk_rope_head_dim
    q_lora_rank: int = 0
    layer_kinds: tuple[str, ...] = ()         # per layer: "full", "sliding" or "dense"
    kv_elems_per_layer: tuple[int, ...] = ()  # KV cache elements per token per layer (kv_cache.kv_layout)
    sliding_window: int | None = None

    @property
    def moe(self) -> bool:
        return self.experts > 0 and self.top_k > 0

    @property
    def mla(self) -> bool:
        return self.mla_latent > 0

    @property
    def all_sliding(self) -> bool:
        return bool(self.layer_kinds) and all(k == "sliding" for k in self.layer_kinds)

    @property
    def q_width(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.heads * self.v_head_dim if self.mla else self.kv_heads * self.head_dim

    @property
    def gqa_width(self) -> int:
        """q for grouped-query attention with 1 < n_kv < a: transformers' ``repeat_kv`` (eager attention,
        masked SDPA) copies K and V to every head. With one KV head (MQA) the copy is a view: 0."""
        return self.q_width if (not self.mla and 1 < self.kv_heads < self.heads) else 0

    @property
    def grouped(self) -> bool:
        """Fewer KV heads than query heads (GQA or MQA, not MLA): SDPA then runs with ``enable_gqa``, which the
        CUDA backend choice sends to the math kernel when flash attention cannot run (fp32): s×s scores and
        K/V repeated to every head even with one KV head."""
        return not self.mla and self.kv_heads < self.heads

    @property
    def rope_width(self) -> int:
        """MLA only: heads · qk_rope_head_dim (the decoupled rotary part of every head's q and k)."""
        return self.heads * self.rope_dim if self.mla else 0

    def kv_bytes_after(self, layer: int, *, batch: int, tokens: int, dtype_bytes: int) -> int:
        """KV cache bytes of the layers after ``layer`` once they hold ``tokens`` tokens (a prefill)."""
        return int(batch) * int(tokens) * int(dtype_bytes) * sum(self.kv_elems_per_layer[layer + 1:])


def infer_shape(config: dict | ModelDescription) -> InferShape:
    """The widths the prefill/decode forms need: a view of the model description's text decoder. Encoder-only
    and encoder-decoder models, and models without a text decoder, get one line saying so."""
    desc = describe(config)
    if desc.is_encoder_decoder:
        raise InferActivationError(f"encoder-decoder models ({desc.model_type}) are not covered")
    if desc.roles == (TEXT_ENCODER,):  # a text encoder alone; with other towers require_decoder names them all
        raise InferActivationError(f"{desc.text.model_type}: encoder-only model (no KV cache, every position's "
                                   "outputs): not covered by the decoder prefill/decode forms")
    if desc.text is None and not desc.roles:
        raise InferActivationError(f"config ({desc.model_type or 'unknown'}) lacks hidden size, heads, layers or "
                                   "vocabulary")
    t = desc.require_decoder("serving memory")
    if not (t.hidden and t.heads and t.num_layers and t.vocab):
        raise InferActivationError(f"config ({t.model_type or 'unknown'}) lacks hidden size, heads, layers or "
                                   "vocabulary")
    mla, moe = t.mla, t.moe
    if mla:
        head_dim, v_head_dim, rope_dim = mla.qk_head_dim, mla.v_head_dim, mla.qk_rope_head_dim
    else:
        head_dim = v_head_dim = rope_dim = t.head_dim
    try:
        layout = kv_layout(desc).layers
        kv_elems = tuple(layer.elems_per_token for layer in layout)
        sliding = [layer.kind == SLIDING for layer in layout]
        windows = [layer.window for layer in layout if layer.kind == SLIDING]
    except (KVLayoutError, NotImplementedError, UnsupportedArchitectureError):
        kv_elems, sliding, windows = (), [False] * t.num_layers, []
    mlps = [layer.mlp for layer in t.layers] or ["dense"] * t.num_layers
    kinds = tuple("dense" if (moe and i < len(mlps) and mlps[i] == "dense") else "sliding" if sliding[i] else "full"
                  for i in range(len(sliding)))
    return InferShape(
        model_type=t.model_type, layers=t.num_layers, hidden=t.hidden, heads=t.heads, kv_heads=t.kv_heads,
        head_dim=head_dim, v_head_dim=v_head_dim, rope_dim=rope_dim, intermediate=t.intermediate, vocab=t.vocab,
        experts=moe.experts if moe else 0, top_k=moe.top_k if moe else 0,
        expert_intermediate=moe.expert_intermediate if moe else 0,
        shared_intermediate=moe.shared_intermediate if moe else 0, dense_layers=t.dense_layers,
        mla_latent=mla.latent if mla else 0, q_lora_rank=mla.q_lora_rank if mla else 0, layer_kinds=kinds,
        kv_elems_per_layer=kv_elems, sliding_window=min(windows) if windows else None)


# -- features ---------------------------------------------------------------------------------------------

PREFILL_TOKEN_TERMS = ("h", "a", "qw", "kvw", "gqa", "mq", "mqb", "mlab", "d", "I", "E", "kh", "kI", "latent", "qlora",
                       "qr")
DECODE_T_TERMS = ("a", "ag", "kvw", "qw", "gqa", "mq", "mqb", "mlab", "latent", "qr")
DECODE_CONST_TERMS = ("h", "a", "qw", "kvw", "I", "E", "kh", "kI", "latent", "qlora")


def _widths(shape: InferShape, moe_layer: bool, batch: int) -> dict[str, float]:
    """Per-token widths of one layer: a MoE layer (``moe_layer``) or a dense one. ``mqb`` / ``mlab``: with
    more than one sequence, eager attention's ``torch.matmul`` cannot fold the batch and head dims of the
    expanded (stride-0) K and V of one KV head, or of MLA's strided values, into one view and clones them
    (a view for a single sequence)."""
    return {
        "mqb": shape.q_width if (not shape.mla and shape.kv_heads == 1 < shape.heads and batch > 1) else 0,
        "mlab": shape.kv_width if (shape.mla and batch > 1) else 0,
        "h": shape.hidden, "a": shape.heads, "qw": shape.q_width, "kvw": shape.kv_width, "gqa": shape.gqa_width,
        "mq": shape.q_width if (not shape.mla and shape.kv_heads == 1 < shape.heads) else 0,
        "ag": shape.heads if shape.grouped else 0,
        "d": shape.rope_dim, "qr": shape.rope_width,
        "I": shape.shared_intermediate if moe_layer else shape.intermediate,
        "E": shape.experts if moe_layer else 0,
        "kh": shape.top_k * shape.hidden if moe_layer else 0,
        "kI": shape.top_k * shape.expert_intermediate if moe_layer else 0,
        "latent": shape.mla_latent, "qlora": shape.q_lora_rank,
    }


def is_moe_region(shape: InferShape, region: str) -> bool:
    """Whether a region's terms take a MoE layer's widths: the layers of a MoE model, except its leading
    dense layers; model-level regions take the dense widths (their terms do not involve the MLP)."""
    return shape.moe and region not in MODEL_REGIONS and not region.startswith("dense_")


def features(shape: InferShape, phase: str, tokens: int, region: str, batch: int = 1) -> dict[str, float]:
    """The design row of one sequence for one region. Prefill (``tokens`` = s): ``tok`` = s, ``tok*X`` = s·X,
    ``s2*a`` = s²·a, ``s2`` = s², ``V``, ``1``. Decode (``tokens`` = T cached before the step): ``T``,
    ``T*X`` = T·X, the widths of the one new token, ``V``, ``1``. ``batch`` only switches ``mqb``."""
    w = _widths(shape, is_moe_region(shape, region), batch)
    x = float(tokens)
    if phase == "prefill":
        row = {"tok": x}
        row.update({f"tok*{k}": x * w[k] for k in PREFILL_TOKEN_TERMS})
        row.update({"s2*a": x * x * shape.heads, "s2*ag": x * x * w["ag"], "s2": x * x})
    else:
        row = {"T": x}
        row.update({f"T*{k}": x * w[k] for k in DECODE_T_TERMS})
        row.update({k: float(w[k]) for k in DECODE_CONST_TERMS})
    row.update({"V": float(shape.vocab), "1": 1.0})
    return row


def _part_of(term: str) -> str:
    if term.startswith("s2"):
        return "quadratic_bytes"
    if term == "V":
        return "vocab_bytes"
    if term == "1":
        return "fixed_bytes"
    return "token_linear_bytes"


# -- calibration ------------------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def load_calibration(path: str | None = None) -> dict:
    p = Path(path) if path else CALIBRATION_PATH
    if not p.exists():
        return {}
    return json.loads(p.read_text())


def _dtype_key(dtype_bytes: int) -> str:
    if dtype_bytes not in DTYPE_BYTES:
        raise InferActivationError(f"dtype_bytes must be 2 (bf16/fp16) or 4 (fp32), not {dtype_bytes!r}")
    return "fp32" if dtype_bytes == 4 else "bf16"


# The eager tables' terms that are the attention scores themselves: at prefill the b·a·s² scores, F.softmax's
# fp32 upcast, the fp32 probabilities and their bf16 cast (s2*a, s2*ag) and the materialised b·s² masks (s2);
# at a decode step the new token's b·a·T scores over the cache (T*a, T*ag). A flash kernel (transformers'
# flash_attention_2, vLLM's FlashAttention / FlashInfer backends, soft-capping and sinks included) makes
# none of them: eager minus these terms is eager's non-score part.
SCORE_TERMS = {"prefill": ("s2", "s2*a", "s2*ag"), "decode": ("T*a", "T*ag")}


def without_scores(tables: dict) -> dict:
    """``tables`` ({"prefill": {region: {term: coef}}, "decode": ...}) less the ``SCORE_TERMS``."""
    out = dict(tables)
    for phase, drop in SCORE_TERMS.items():
        if phase in tables:
            out[phase] = {region: {term: c for term, c in row.items() if term not in drop}
                          for region, row in tables[phase].items()}
    return out


def coefficient_table(shape: InferShape, attn: str, dtype_bytes: int,
                      engine: str = "transformers") -> tuple[dict, str, list[str]]:
    """(calibrated tables {"prefill": {region: {term: coef}}, "decode": ...}, source, assumptions).
    ``engine="vllm"``: vLLM's attention backends, not transformers' implementations (an eager-only family
    takes its eager tables less the score terms whatever ``attn`` names, fp32 included)."""
    if attn not in ATTNS:
        raise InferActivationError(f"unknown attention {attn!r} (use sdpa, eager or flash)")
    dkey = _dtype_key(dtype_bytes)
    if attn == "flash" and dtype_bytes == 4:
        raise InferActivationError("flash attention runs in float16/bfloat16 only")
    doc = load_calibration()
    calib = doc.get("architectures", {})
    notes: list[str] = []
    key = "sdpa" if attn == "flash" else attn
    if attn == "flash":
        notes.append("flash: the SDPA coefficients (SDPA takes the flash kernel for fp16/bf16 without a mask, "
                     "grouped-query attention natively)")
    entry = calib.get(shape.model_type)
    source = f"calibrated:{shape.model_type}"
    if entry is None:
        family = FALLBACK_MLA if shape.mla else FALLBACK_MOE if shape.moe else FALLBACK_DENSE
        entry = calib.get(family)
        source = f"structural:{family}"
        notes.append(f"{shape.model_type or 'this architecture'} is not calibrated: the structural formula with "
                     f"the coefficients fitted on {family} (same terms, its widths); measured against the "
                     f"simulation this is within about ±20% (cohere +0.1%, deepseek_v2 +0.1%, qwen2_moe −5%, "
                     f"gpt_bigcode +20%, gptj −20%)")
        if entry is None:
            raise InferActivationError(f"no calibration for {shape.model_type} nor for the fallback {family} "
                                       f"(run benchmarks/calibrate_infer.py)")
    tables = entry.get(dkey, {})
    if key not in tables:
        family = source.split(":", 1)[1]
        if key == "sdpa" and entry.get("eager_only") and "eager" in tables and (attn == "flash" or engine == "vllm"):
            # No SDPA calibration (transformers has none for it); flash attention -- transformers' or
            # vLLM's backends -- materialises no score matrix: eager's tables without the score terms.
            notes = [n for n in notes if not n.startswith("flash: the SDPA coefficients")]
            who = "vLLM's attention backends (FlashAttention / FlashInfer)" if engine == "vllm" else "flash attention"
            notes.append(f"{family} is calibrated with eager attention only (transformers has no SDPA for it): "
                         f"{who} use the eager coefficients less the score tensors, which a flash kernel never "
                         f"materialises (prefill: the b·a·s² scores, their fp32 softmax and probabilities, the "
                         f"b·s² masks; decode: the b·a·T scores); eager's repeat_kv copies of K/V stay counted "
                         f"(an upper bound of about 4·b·s·heads·head_dim bytes for grouped-query models)")
            return without_scores(tables["eager"]), source, notes
        if key == "sdpa" and entry.get("eager_only"):
            raise InferActivationError(f"{shape.model_type}: transformers has no SDPA attention for this "
                                       f"architecture; use attn='eager' (its default) or attn='flash'")
        why = doc.get("skipped", {}).get(f"{family} / {dkey} / {key}")
        raise InferActivationError(f"{family}: no {dkey}/{key} calibration" +
                                   (f" (the simulation cannot run it: {why})" if why else ""))
    return tables[key], source, notes


# -- the estimate -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ActivationEstimate:
    """``bytes``: activation/temporary bytes above weights + KV cache at the phase's peak (see the module
    docstring). ``by_part`` splits the peak region's bytes by term kind and sums to ``bytes``:
    ``token_linear_bytes`` (proportional to the phase's tokens: token ids, residual stream, rotary cos/sin,
    projections, MLP, MoE; at decode the cache copies proportional to T), ``quadratic_bytes`` (eager scores
    and materialised masks, b·a·s² and b·s²), ``vocab_bytes`` (logits of the kept position),
    ``fixed_bytes`` (small tensors at the allocator's 512 B granularity), ``fp32_logits_copy_bytes``
    (generate's fp32 copy of the last logits, when asked), ``later_kv_bytes`` (prefill, negative: the region
    peaks before the later layers' KV cache exists), ``sliding_prompt_bytes`` (decode beyond the window: the
    later sliding layers still hold the whole prompt). ``regions``: every candidate moment's bytes;
    ``peak_region``: the largest."""

    bytes: int
    by_part: dict[str, int]
    source: str
    assumptions: list[str]
    phase: str
    peak_region: str
    regions: dict[str, int] = field(default_factory=dict)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) < 1:
            raise InferActivationError(f"{name} must be at least 1")


def _layer_region_plan(shape: InferShape, table: dict) -> tuple[dict[str, tuple[str, int]], list[str]]:
    """For each layer kind the model has: (the table's kind used, index of the model's last layer of that
    kind). A kind the calibration lacks borrows the other of full/sliding (noted)."""
    notes: list[str] = []
    have = {r.split("_", 1)[0] for r in table if r not in MODEL_REGIONS}
    kinds = shape.layer_kinds or ("full",) * shape.layers
    plan: dict[str, tuple[str, int]] = {}
    for kind in dict.fromkeys(kinds):
        last = max(i for i, k in enumerate(kinds) if k == kind)
        use = kind
        if kind not in have:
            use = next((k for k in ("full", "sliding") if k in have), None)
            if use is None:
                raise InferActivationError("the coefficient table has no layer regions")
            notes.append(f"{REGION_NAMES[kind]}s use the calibrated {REGION_NAMES[use]} coefficients "
                         f"(the calibration model has no {kind} layer)")
        plan[kind] = (use, last)
    return plan, notes


def estimate_with_table(config: dict, table: dict, *, phase: str, batch: int, tokens: int, dtype_bytes: int = 2,
                        fp32_logits_copy: bool = True, source: str = "table",
                        notes: tuple[str, ...] | list[str] = ()) -> ActivationEstimate:
    """Evaluate one phase's coefficient table ({region: {term: coef}}) for ``config``. ``tokens``: the
    context (prefill) or the cached tokens before the step (decode)."""
    if phase not in ("prefill", "decode"):
        raise InferActivationError("phase must be 'prefill' or 'decode'")
    _check_positive(batch=batch, tokens=tokens)
    shape = infer_shape(config)
    b, t = int(batch), int(tokens)
    notes = list(notes)
    plan, plan_notes = _layer_region_plan(shape, table)
    notes += plan_notes
    # region -> (table region, the layer it stands for: the last layer of its kind (prefill, whose later
    # layers' KV does not exist yet) or the first one (decode, whose later sliding layers still hold the whole
    # prompt); -1 for the embedding, None for the regions after the layers)
    wanted: dict[str, tuple[str, int | None]] = {r: (r, -1 if r == "pre" else None)
                                                 for r in MODEL_REGIONS if r in table}
    kinds = shape.layer_kinds or ("full",) * shape.layers
    for kind, (use, last) in plan.items():
        at = last if phase == "prefill" else kinds.index(kind)
        for role in LAYER_ROLES:
            if f"{use}_{role}" in table:
                wanted[f"{kind}_{role}"] = (f"{use}_{role}", at)
    regions: dict[str, dict[str, float]] = {}
    for region, (source_region, at) in wanted.items():
        row = features(shape, phase, t, region, b)
        w = shape.sliding_window
        if phase == "decode" and region.startswith("sliding_") and w and t > w:
            # Beyond the window a sliding layer's old K/V storages still hold the prompt (T tokens) but it
            # attends over the W tokens it keeps: the attention terms at W, the storage terms at T.
            at_w = features(shape, phase, int(w), region, b)
            row = {k: (v if k in ("T", "T*kvw") or not k.startswith("T") else at_w[k]) for k, v in row.items()}
        parts: dict[str, float] = {}
        for term, c in table[source_region].items():
            part = _part_of(term)
            parts[part] = parts.get(part, 0.0) + b * c * row.get(term, 0.0)
        if at is not None and shape.kv_elems_per_layer:
            if phase == "prefill":
                # The region's layer frame -> the phase's: the later layers' KV does not exist yet.
                later = shape.kv_bytes_after(at, batch=b, tokens=t, dtype_bytes=dtype_bytes)
                if later:
                    parts["later_kv_bytes"] = -float(later)
            else:
                extra = _sliding_excess(shape, at, batch=b, tokens=t, dtype_bytes=dtype_bytes)
                if extra:
                    parts["sliding_prompt_bytes"] = float(extra)
        regions[region] = parts
    if fp32_logits_copy and "post" in regions:
        regions["post"]["fp32_logits_copy_bytes"] = float(FP32_BYTES * b * shape.vocab)
    if not regions:
        raise InferActivationError("empty coefficient table")
    totals = {r: int(round(sum(p.values()))) for r, p in regions.items()}
    peak = max(totals, key=lambda r: totals[r])
    parts = {k: int(round(v)) for k, v in regions[peak].items() if int(round(v))}
    return ActivationEstimate(bytes=max(totals[peak], 0), by_part=parts, source=source,
                              assumptions=notes + _assumptions(shape, phase, fp32_logits_copy, t),
                              phase=phase, peak_region=peak, regions=totals)


def _sliding_excess(shape: InferShape, layer: int, *, batch: int, tokens: int, dtype_bytes: int) -> int:
    """First decode step after a prompt longer than the window: the sliding layers after ``layer`` still hold
    the whole prompt (a view into the prefill's concatenation, kv_cache.py) while the KV at the end of the
    step counts W tokens for them: (T − W) tokens more each."""
    w = shape.sliding_window
    if not w or tokens <= w:
        return 0
    elems = sum(e for i, (k, e) in enumerate(zip(shape.layer_kinds, shape.kv_elems_per_layer))
                if i > layer and k == "sliding")
    return int(batch) * (int(tokens) - int(w)) * int(dtype_bytes) * elems


def _assumptions(shape: InferShape, phase: str, fp32_logits_copy: bool, tokens: int) -> list[str]:
    out = ["transformers 5.x model code under torch.no_grad() with a DynamicCache, no padding "
           "(attention_mask=None), greedy decoding",
           "bytes above parameters, buffers and the KV cache held at the end of the phase: token ids, residual "
           "stream, rotary cos/sin and masks, one layer's largest transient, final norm and the kept logits, at "
           "the CUDA caching allocator's 512 B granularity",
           "the largest of the per-region peaks (embedding; per layer kind: attention, MLP/MoE, norms; final norm; "
           "LM head; after it); batch multiplies every term",
           "not included: CUDA context, cuBLAS/flash-attention workspaces, allocator fragmentation"]
    w = shape.sliding_window
    if shape.layers == 1:
        out.append("fitted on models of 2+ layers (their embedding output stays referenced beside the residual "
                   "stream): a 1-layer model is overstated by b·s·h elements")
    if phase == "prefill":
        out.append("prefill keeps the logits of the last position only (generate's logits_to_keep=1)")
        if w and tokens > w:
            out.append(f"context beyond the sliding window ({w}): with SDPA/flash transformers materialises a "
                       f"sliding mask (b·s² terms) that this form does not model (eager: covered, its masks "
                       f"exist either way)")
    else:
        out.append("decode: one new token per sequence; the DynamicCache's torch.cat copies of K/V included")
        if w and tokens > w:
            out.append(f"the first decode step after a prefill of the cached tokens: beyond the window ({w}) the "
                       f"sliding layers not yet updated still hold the whole prompt (later steps: lower)")
    if fp32_logits_copy:
        out.append("generate's fp32 copy of the last logits (outputs.logits[:, -1].to(float32)) included; "
                   "sampling processors (top-k/top-p sorts) are not")
    if shape.moe:
        out.append("MoE experts through transformers' grouped_mm path (static shapes: top-k routed rows per token); "
                   "coefficients fitted around the reference model's expert-width/hidden ratio")
    return out


# -- pure state-space decoders (Mamba, Mamba-2) ----------------------------------------------------------------
#
# No attention, no KV: the cache holds fixed conv/SSM states (kv_cache.py). Under no_grad the peak is inside one
# mixer of transformers' torch (slow) path -- the one the simulation runs, since neither mamba-ssm nor
# causal-conv1d kernels exist on fake tensors -- or at the LM head. Coefficients fitted by least squares on
# hfmem.simulate.simulate_infer (bf16, attn="eager" -- transformers has no SDPA for these --, gpu_emulation,
# 2 layers, transformers 5.24):
#   mamba:  MambaConfig defaults (h 768, state 16) at s = 128/256/384, batch 1 and 2; h 512 state 32 at s =
#           128/256; expand 3 at s = 128. Exact on those runs (residual < 0.01%).
#   mamba2: Mamba2Config defaults (h 4096, 128 heads × 64, state 128, 8 groups, chunk 256) at s = 256/300/512/768;
#           h 2048 64 heads 1 group at s = 256/512; the same with chunk 128, state 64 at s = 256. Worst residual
#           0.6%.
# Prefill, per sequence, with d = intermediate width, N = state size, h = hidden, H = heads, L = chunk size,
# s_L = s rounded up to a multiple of L (the chunked scan pads):
#   mamba:  s·(12·d·N + 22.47·d + 7.10·h + 8) + (4·d·N + 8·d, once: A = −exp(A_log) in fp32, D, dt bias)
#           -- the sequential scan's discrete_A, discrete_B and deltaB_u, [b, d, s, N] fp32 each, dominate
#   mamba2: s_L·(18.18·H·L + 1905·H) + s·(21.75·h + 8) + 0.428·H·L² (once)
#           -- segment_sum's [b, H, c, L, L] fp32 tensors, G and M of the intra-chunk "attention"
# Decode (T cached tokens): mamba b·(19.875·d·N + 16·d + 8·T) + 4·d·N + 7168;
#                           mamba2 b·(16·H·P·N + 13.5·d + 2.125·H·N + 8·T) − 4608
#   -- selective_state_update's fp32 copies of the [H, P, N] (mamba: [d, N]) state.
# The LM head region (last position's logits, generate's fp32 copy) competes: b·(8·s + 4·h + 2·V).
SSM_TYPES = {"mamba": "mamba", "falcon_mamba": "mamba", "mamba2": "mamba2"}
_SSM_COEF = {
    "mamba": {"prefill": {"dN": 12.0052, "d": 22.4688, "h": 7.1042, "tok": 8.0, "once_dN": 4.0, "once_d": 8.0},
              "decode": {"dN": 19.875, "d": 16.0, "tok": 8.0, "once_dN": 4.0, "once": 7168.0}},
    "mamba2": {"prefill": {"HL": 18.1837, "H": 1905.33, "h": 21.7486, "tok": 8.0, "once_HLL": 0.42795},
               "decode": {"HPN": 16.0, "d": 13.5, "HN": 2.125, "tok": 8.0, "once": -4608.0}},
}


def _ssm_family(config: dict | ModelDescription) -> str | None:
    """"mamba" or "mamba2" for a pure state-space decoder (its Mamba mixer's kind), else None."""
    desc = describe(config)
    return SSM_TYPES.get(desc.decoder.model_type if desc.decoder is not None else desc.model_type)


def _ssm_dims(t: Tower | None, model_type: str, family: str) -> dict[str, int]:
    """The widths of the structural form: the decoder tower's sizes and its Mamba mixer (``Tower.ssm``)."""
    if t is None or not (t.hidden and t.vocab) or t.ssm is None:
        raise InferActivationError(f"config ({model_type}) lacks hidden size or vocabulary")
    x, h, V = t.ssm, t.hidden, t.vocab
    if family == "mamba":
        return {"h": h, "V": V, "d": x.inner, "N": x.state_size}
    return {"h": h, "V": V, "d": x.heads * x.head_dim, "N": x.state_size, "H": x.heads, "P": x.head_dim,
            "L": x.chunk_size, "G": x.groups}


def ssm_activation_bytes(config: dict, *, phase: str, batch: int, tokens: int, dtype_bytes: int = 2,
                         fp32_logits_copy: bool = True) -> ActivationEstimate:
    """Structural estimate for a pure Mamba / Mamba-2 decoder (see the block comment above)."""
    family = _ssm_family(config)
    t = describe(config).decoder
    model_type = t.model_type if t is not None else describe(config).model_type
    if family is None:
        raise InferActivationError(f"{model_type} is not a pure state-space model")
    if dtype_bytes != 2:
        raise InferActivationError(f"{family}: only bf16/fp16 is fitted for state-space models (dtype_bytes=2)")
    _check_positive(batch=batch, tokens=tokens)
    x = _ssm_dims(t, model_type, family)
    b, t = int(batch), int(tokens)
    c = _SSM_COEF[family][phase]
    h, V, d, N = x["h"], x["V"], x["d"], x["N"]
    if family == "mamba":
        if phase == "prefill":
            per_tok = c["dN"] * d * N + c["d"] * d + c["h"] * h + c["tok"]
            linear, fixed = b * t * per_tok, c["once_dN"] * d * N + c["once_d"] * d
        else:
            linear = b * (c["dN"] * d * N + c["d"] * d + c["tok"] * t)
            fixed = c["once_dN"] * d * N + c["once"]
    else:
        H, P, L = x["H"], x["P"], x["L"]
        if phase == "prefill":
            s_l = -(-t // L) * L
            linear = b * (s_l * (c["HL"] * H * L + c["H"] * H) + t * (c["h"] * h + c["tok"]))
            fixed = c["once_HLL"] * H * L * L
        else:
            linear = b * (c["HPN"] * H * P * N + c["d"] * d + c["HN"] * H * N + c["tok"] * t)
            fixed = c["once"]
    mixer = {"token_linear_bytes": linear, "fixed_bytes": fixed}
    steps = t if phase == "prefill" else 1
    post = {"token_linear_bytes": float(b * (8 * t + 2 * 2 * h * steps)), "vocab_bytes": float(2 * b * V)}
    if fp32_logits_copy:
        post["fp32_logits_copy_bytes"] = float(FP32_BYTES * b * V)
    regions = {"mixer": mixer, "post": post}
    totals = {r: int(round(sum(p.values()))) for r, p in regions.items()}
    peak = max(totals, key=lambda r: totals[r])
    parts = {k: int(round(v)) for k, v in regions[peak].items() if int(round(v))}
    notes = [
        "transformers 5.x torch (slow) path of the Mamba mixer under torch.no_grad(), no padding, greedy decoding: "
        "the path the simulation runs (no mamba-ssm / causal-conv1d kernels on fake tensors). On a GPU with "
        "those kernels installed the fused selective scan does not materialise the b·d·s·N fp32 "
        "(Mamba) or chunked b·H·s·L (Mamba-2) intermediates: real prefill activations there are far "
        "lower (roughly the in_proj output and the residual stream), so this is an upper bound",
        "bytes above parameters, buffers and the fixed conv/SSM states: one mixer's largest transient or the "
        "LM head (last position's logits), whichever is larger",
        f"coefficients fitted on {family} simulations (bf16, 2 layers, batch 1-2); attention implementation "
        "irrelevant (no attention)",
        "not included: CUDA context, cuBLAS workspaces, allocator fragmentation",
    ]
    if family == "mamba2":
        notes.append("Mamba-2 prefill: the chunked scan pads the sequence to a multiple of chunk_size; fitted at "
                     "head_dim 64, state 128 (and one chunk-128/state-64 variant)")
    if family != model_type:
        notes.append(f"{model_type}: the {family} coefficients (same mixer structure)")
    if fp32_logits_copy:
        notes.append("generate's fp32 copy of the last logits included")
    return ActivationEstimate(bytes=max(totals[peak], 0), by_part=parts, source=f"structural:{model_type}",
                              assumptions=notes, phase=phase, peak_region=peak, regions=totals)


def _attn_or_default(config: dict, attn: str | None) -> str:
    """``attn``, or transformers' own default for the model: sdpa, eager where it has no SDPA."""
    if attn is not None:
        return attn
    from .attention import transformers_default

    return transformers_default(config)


def prefill_activation_bytes(config: dict, *, batch: int, context: int, attn: str | None = None,
                             dtype_bytes: int = 2, fp32_logits_copy: bool = True,
                             engine: str = "transformers") -> ActivationEstimate:
    """Activation/temporary bytes above weights + KV cache at the peak of a prefill of ``batch`` sequences
    of ``context`` tokens (``generate``'s first forward). ``attn``: None for transformers' default (sdpa;
    eager for the architectures without SDPA). ``dtype_bytes``: 2 for bf16/fp16, 4 for fp32.
    ``fp32_logits_copy``: count generate's fp32 copy of the last logits (hfmem.simulate drives the model by
    hand and does not make it: pass False to compare). ``engine``: "vllm" for vLLM's forward (its attention
    backends, see ``coefficient_table``)."""
    _check_positive(batch=batch, context=context)
    if _ssm_family(config):
        return ssm_activation_bytes(config, phase="prefill", batch=batch, tokens=context, dtype_bytes=dtype_bytes,
                                    fp32_logits_copy=fp32_logits_copy)
    attn = _attn_or_default(config, attn)
    tables, source, notes = coefficient_table(infer_shape(config), attn, dtype_bytes, engine)
    return estimate_with_table(config, tables["prefill"], phase="prefill", batch=batch, tokens=context,
                               dtype_bytes=dtype_bytes, fp32_logits_copy=fp32_logits_copy, source=source, notes=notes)


def decode_activation_bytes(config: dict, *, batch: int, cache_tokens: int, attn: str | None = None,
                            dtype_bytes: int = 2, fp32_logits_copy: bool = True,
                            engine: str = "transformers") -> ActivationEstimate:
    """Activation/temporary bytes above weights + KV cache (after the step: ``cache_tokens + 1`` tokens)
    at the peak of one decode step of ``batch`` sequences whose cache holds ``cache_tokens`` tokens."""
    _check_positive(batch=batch, cache_tokens=cache_tokens)
    if _ssm_family(config):
        return ssm_activation_bytes(config, phase="decode", batch=batch, tokens=cache_tokens,
                                    dtype_bytes=dtype_bytes, fp32_logits_copy=fp32_logits_copy)
    attn = _attn_or_default(config, attn)
    tables, source, notes = coefficient_table(infer_shape(config), attn, dtype_bytes, engine)
    return estimate_with_table(config, tables["decode"], phase="decode", batch=batch, tokens=cache_tokens,
                               dtype_bytes=dtype_bytes, fp32_logits_copy=fp32_logits_copy, source=source, notes=notes)


def lora_serving_extra_bytes(*, out: int, inn: int, rank: int, rows: int, model_bytes: int,
                             adapter_bytes: int = 4) -> int:
    """Bytes one unmerged LoRA adapter adds at the worst moment of its module's forward over ``rows`` = batch x
    tokens rows, above the base layer's own output (PEFT 0.21 ``lora.Linear.forward`` / ``lora/bnb.py``, no
    dropout at inference): ``x = self._cast_input_dtype(x, lora_A.weight.dtype)`` (a copy in the adapter dtype
    unless it is the model's), ``lora_B(lora_A(x))`` (x@A [rows, r] alive while B's output [rows, out] is made),
    ``* scaling`` (a second [rows, out] while the first is alive), ``.to(expected_dtype)`` and ``result + output``
    (the sum made while the cast output and the base result are alive)."""
    m_rows, a, m = int(rows), int(adapter_bytes), int(model_bytes)
    x_copy = 0 if a == m else m_rows * inn * a
    at_b = m_rows * rank * a + m_rows * out * a
    at_scale = 2 * m_rows * out * a
    at_cast = m_rows * out * a + (0 if a == m else m_rows * out * m)
    at_add = 2 * m_rows * out * m
    return x_copy + max(at_b, at_scale, at_cast, at_add)


def peak_bytes(weights_bytes: int, kv_cache_bytes: int, activation: ActivationEstimate) -> int:
    """The phase's peak allocated bytes: weights (parameters + buffers) + KV cache + activations."""
    return int(weights_bytes) + int(kv_cache_bytes) + int(activation.bytes)


__all__ = ["ActivationEstimate", "InferActivationError", "InferShape", "SCORE_TERMS", "coefficient_table",
           "decode_activation_bytes", "without_scores",
           "estimate_with_table", "features", "infer_shape", "load_calibration", "peak_bytes",
           "lora_serving_extra_bytes", "prefill_activation_bytes", "ssm_activation_bytes"]
