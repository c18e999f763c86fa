"""How LoRA / DoRA change the activations a training layer saves (per token), and DoRA's per-layer weight copies.

LoRA (PEFT, adapters in fp32 on a 16-bit base — PEFT's autocast_adapter_dtype): the frozen base no
longer saves what only weight gradients need (RMSNorm weighted outputs and the Linear inputs: 8h + 2I per
layer for RMSNorm families, 4h + 2I for LayerNorm ones), but each adapted Linear saves an fp32 copy of its
input (4·d_in, one per adapted module, q/k/v each their own) and the fp32 low-rank activation (4·r);
lora_dropout > 0 adds the 1-byte dropout mask (1·d_in). Measured on Llama: exact to the byte.

DoRA (``use_dora=True``, PEFT 0.21 ``DoraLinearLayer.forward``): the result is
base + (m/‖W+ΔW‖ − 1)·base_result + (m/‖W+ΔW‖)·lora_B(lora_A(x))·scaling with the norm detached, so each
adapted Linear also keeps, for the magnitude's gradient, the base output it multiplies (the 16-bit
base-layer output, 2·d_out; with lora_dropout > 0 PEFT recomputes it as F.linear(dropout(x), W) in fp32:
4·d_out) and the fp32 LoRA branch output (4·d_out) — 6·d_out per token (8·d_out with dropout); with
dropout that F.linear also keeps the fp32 copy of W it was given (4·d_in·d_out per adapted Linear, not per
token). The weight-norm path (x_eye = eye(d_in), lora_B(lora_A(x_eye)), ‖W + s·ΔW‖) is detached from the
output and freed within the forward of each layer: a transient, not saved. Simulated on Llama-3.2-1B /
Qwen3: the per-token terms exact; the per-layer constants (≈10·d_out) are left out.

Widths (``lora`` keys ``input_bytes``, ``adapter_bytes``, ``autocast``; PEFT 0.21 ``tuners/lora/layer.py``
``Linear.forward``: ``x = self._cast_input_dtype(x, lora_A.weight.dtype)`` then
``lora_B(lora_A(dropout(x)))``, the dropout an ``nn.Identity`` when lora_dropout is 0):

* input dtype ≠ adapter dtype (a 16-bit stream, fp32 adapters -- the default): each adapted Linear casts its
  input (a copy per module), and lora_A saves it: adapter_bytes·d_in per target; with dropout the dropped
  copy replaces the cast one (the cast is freed) and the bool mask is saved: + 1·d_in.
* input dtype = adapter dtype (bf16 adapters on a bf16 stream; fp32 adapters on prepare_model_for_kbit_training's
  fp32 stream, no autocast): no cast; with p = 0 lora_A saves x itself, the tensor the modules reading the same
  input share (q/k/v; gate/up): input_bytes·d_in once per distinct input; with p > 0 each module saves its
  own dropped copy and mask: (adapter_bytes + 1)·d_in per target.
* under torch.autocast (the Trainer's bf16/fp16=True in the QLoRA recipes): lora_A's F.linear casts its input
  to 16 bit and saves that cast (2·d_in per target; dropout, an fp32 op before it, leaves only its mask) and
  its output, lora_B's input, is 16-bit (2·r).

The frozen base's dropped tensors are at the stream's width (input_bytes/2 × the 16-bit count).

Which Linears are adapted is decided by ``hfmem.scenarios.peft`` (``known_path_matcher`` over
``target_matches``, PEFT's ``check_target_module_exists`` rule), the same matcher that counts the adapter
parameters, applied to the family structure's Linear names (each module's path inside the decoder layer:
``self_attn.q_proj``, ``mlp.c_proj``), so a list entry follows PEFT's suffix rule exactly within the layer.
"""

from __future__ import annotations

from .activation_shape import TrainActivationError, TrainShape
from .peft import is_all_linear, known_path_matcher
from .train_structures import Structure


def _lora_settings(lora) -> dict | None:
    """``activation_bytes``' ``lora`` argument as {r, targets, dropout, dora}, or None without LoRA."""
    if lora is None or lora is False:
        return None
    if lora is True:
        return {"r": 16, "targets": "all-linear", "dropout": 0.0, "dora": False}
    if isinstance(lora, dict):
        out = {"r": int(lora.get("r", 16)), "targets": lora.get("targets", "all-linear"),
               "dropout": float(lora.get("dropout", 0.0)), "dora": bool(lora.get("dora", False))}
        # widths: only when they differ from the default (16-bit stream, fp32 adapters, no autocast)
        for key, default in (("input_bytes", 2), ("adapter_bytes", 4), ("autocast", False)):
            if key in lora and lora[key] != default:
                out[key] = lora[key]
        return out
    raise TrainActivationError("lora must be False, True or a dict {r, targets, dropout, dora}")


def _lora_dims(shape: TrainShape, moe: bool) -> dict:
    """The widths the Structure's input/output-dimension kinds stand for."""
    h = shape.hidden
    inter = shape.top_k * shape.moe_intermediate + shape.shared_intermediate if moe else shape.intermediate
    return {"h": h, "q": shape.q_dim, "kv": shape.kv_dim, "I": inter, "qkv": shape.q_dim + 2 * shape.kv_dim}


def _dora_weight_copy_bytes(shape: TrainShape, st: Structure, lora: dict, moe: bool) -> float:
    """DoRA with lora_dropout > 0: per layer, the fp32 copies of the adapted Linears' weights that PEFT's
    F.linear(dropout(x), W.to(fp32)) keeps for the backward (not per token)."""
    if not lora.get("dora") or lora["dropout"] <= 0:
        return 0.0
    dims = _lora_dims(shape, moe)
    return float(sum(4 * dims[d_in] * dims[d_out] for _, d_in, d_out in _lora_layer_delta(shape, st, lora, moe)[2]))


def _lora_layer_delta(shape: TrainShape, st: Structure, lora: dict, moe: bool) -> tuple[float, list[str], list]:
    """Change of one layer's saved bytes per token under LoRA (16-bit base, fp32 adapters); the notes; the
    adapted Linears (name, d_in kind, d_out kind)."""
    h = shape.hidden
    dims = _lora_dims(shape, moe)
    inter = dims["I"]
    in_b = int(lora.get("input_bytes", 2))
    ad_b = int(lora.get("adapter_bytes", 4))
    autocast = bool(lora.get("autocast", False))
    frozen = ((8 * h if st.norm == "rms" else 4 * h) + 2 * inter) * in_b / 2
    targets = lora["targets"]
    all_linear = is_all_linear(targets)
    names = [n for n, _, _ in st.linears]
    # the approximation notes of the matcher are the adapter count's to report (peft.lora_adapters)
    hits = known_path_matcher(targets, [])
    chosen = [lin for lin in st.linears if hits(lin[0])]
    notes = []
    if moe and all_linear:
        notes.append("LoRA all-linear on a MoE model: experts are fused parameters in transformers 5, not "
                     "nn.Linear, so only attention (and shared/dense) Linears get adapters")
        chosen = [lin for lin in chosen if lin[1] != "I" and lin[2] != "I"]
    p = lora["dropout"]
    mask = 1 if p > 0 else 0  # torch's native_dropout saves a bool mask
    if autocast:  # lora_A saves autocast's 16-bit cast of its input; its output is 16-bit
        per_target = sum((2 + mask) * dims[d_in] + 2 * lora["r"] for _, d_in, _ in chosen)
    elif in_b != ad_b or p > 0:  # a cast (or dropped) copy per module
        per_target = sum((ad_b + mask) * dims[d_in] + ad_b * lora["r"] for _, d_in, _ in chosen)
    else:  # x itself, shared by the modules reading the same input (same block, same input width)
        shared = {(name.split(".")[0], d_in) for name, d_in, _ in chosen}
        per_target = (sum(in_b * dims[d_in] for _, d_in in shared)
                      + sum(ad_b * lora["r"] for _ in chosen))
    if lora.get("dora"):  # the base output (16-bit, or fp32 recomputed under dropout) + the fp32 LoRA output
        per_target += sum((8 if lora["dropout"] > 0 else 6) * dims[d_out] for _, _, d_out in chosen)
    if all_linear:
        unknown = []
    elif isinstance(targets, str):  # one regex: unknown when it adapts none of the layer's Linears
        unknown = [] if chosen else [targets]
    else:
        unknown = [w for w in targets if not any(known_path_matcher([w], [])(n) for n in names)]
    if unknown:
        notes.append(f"LoRA targets {unknown} not among {shape.model_type}'s Linear names {names}: not counted")
    return per_target - frozen, notes, chosen
