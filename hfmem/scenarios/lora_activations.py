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
        return {"r": int(lora.get("r", 16)), "targets": lora.get("targets", "all-linear"),
                "dropout": float(lora.get("dropout", 0.0)), "dora": bool(lora.get("dora", False))}
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
    frozen = (8 * h if st.norm == "rms" else 4 * h) + 2 * inter
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
    per_target = sum(4 * dims[d_in] + 4 * lora["r"] + (dims[d_in] if lora["dropout"] > 0 else 0)
                     for _, d_in, _ in chosen)
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
