"""The Model Memory Calculator table: rows float32, float16/bfloat16, int8, int4; columns largest layer,
total size, training with Adam. Pure functions over an Inventory.

Two modes:

* ``exact`` (default): the exact inventory (the class named in ``architectures``, LM head included, tied
  weights once). Total = every parameter at the row's width + every buffer as built. "Training using Adam"
  = model states only: weights, gradients and Adam's two moments, all in the row's dtype (what torch's
  AdamW keeps for fp32 parameters, and for bf16/fp16 parameters in pure half-precision training): 16 B per
  parameter at float32, 8 B at 16 bit; not applicable to int8/int4 (quantized weights are not trained
  with Adam; see QLoRA in ``hfmem train``).
* ``accelerate``: ``accelerate estimate-memory``'s numbers (accelerate/commands/estimate.py): the float32
  size of AutoModel (or auto_map's AutoModelFor* class) with all buffers, divided by 2/4/8; Adam per
  ``adam_rule``: ``current`` (accelerate >= 0.29: the largest of its stages — 4x the float32 size for
  float32, 2x for float16, N/A for int8/int4) or ``legacy`` (accelerate < 0.29, and the Model Memory Calculator's published table: 4x the
  row's size).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..inventory.model import Inventory

# (row label, bits per parameter, accelerate's divisor of the float32 size)
DTYPE_ROWS: tuple[tuple[str, int, int], ...] = (
    ("float32", 32, 1),
    ("float16/bfloat16", 16, 2),
    ("int8", 8, 4),
    ("int4", 4, 8),
)
MODES = ("exact", "accelerate")
ADAM_RULES = ("states", "current", "legacy")

# Bytes per parameter of model states with Adam at the row's width: weight + gradient + 2 moments.
ADAM_STATE_TENSORS = 4

PREDICTS = ("bytes of the model's tensors — a lower bound of torch.cuda.max_memory_allocated, "
            "not the device total")


@dataclass
class CalculatorRow:
    dtype: str
    largest_layer_bytes: int | float
    total_bytes: int | float
    training_adam_bytes: int | float | None


@dataclass
class CalculatorTable:
    mode: str
    adam_rule: str
    rows: list[CalculatorRow]
    largest_layer_names: list[str]
    largest_layer_float32_bytes: int | float
    counted_class: str
    predicts: str = PREDICTS
    assumptions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _num(x: float) -> int | float:
    """accelerate divides with ``/``; keep integers integral in JSON."""
    return int(x) if float(x).is_integer() else x


def _adam(rule: str, row_total: float, fp32_total: float, bits: int) -> float | None:
    if rule == "legacy":  # accelerate < 0.29: 4 x the row
        return 4 * row_total
    if rule == "current":  # accelerate >= 0.29, estimate_training_usage: max of its stages
        return {32: 4 * fp32_total, 16: 2 * fp32_total}.get(bits)
    return None


def exact_table(inv: Inventory, adam_rule: str = "states") -> CalculatorTable:
    rows = []
    fp32_total = inv.total_bytes_at(32)
    for label, bits, _ in DTYPE_ROWS:
        ll, _names = inv.largest_layer_at(bits)
        total = inv.total_bytes_at(bits)
        if adam_rule == "states":
            adam = (ADAM_STATE_TENSORS * -(-inv.num_params * bits // 8) + inv.buffer_bytes) if bits >= 16 else None
        else:
            adam = _adam(adam_rule, total, fp32_total, bits)
        rows.append(CalculatorRow(label, ll, total, None if adam is None else _num(adam)))
    ll32, names = inv.largest_layer_at(32)
    assumptions = [
        f"counted: {inv.architecture} ({inv.method}), every parameter once (tied weights once), "
        "plus all buffers as built",
        "each row stores every parameter at that width (int8/int4 rows: no quantization scales, nothing kept "
        "in 16 bit); buffers keep their built dtype",
        "largest layer: a module without children or a residual group (_no_split_modules), as accelerate "
        "defines it",
    ]
    if adam_rule == "states":
        assumptions.append("Training using Adam: weights + gradients + Adam's 2 moments in the row's dtype "
                           "(16 B/param at float32, 8 B/param pure 16-bit); no activations, no CUDA context")
    else:
        assumptions.append(f"Training using Adam: accelerate's {adam_rule} rule applied to the exact totals")
    return CalculatorTable("exact", adam_rule, rows, names, ll32, inv.architecture, assumptions=assumptions)


def accelerate_table(inv: Inventory, adam_rule: str = "current") -> CalculatorTable:
    view = inv.accelerate
    if view is None:  # no model code (header-only inventory): accelerate could not build it either
        total32, ll32, names, cls = float(inv.total_bytes_at(32)), float(inv.largest_layer_at(32)[0]), \
            inv.largest_layer_at(32)[1], f"{inv.architecture} (from safetensors headers)"
        notes = ["accelerate needs the model code to build this model; figures from the safetensors headers"]
    else:
        total32, ll32, names, cls = view.total_bytes, view.largest_layer_bytes, view.largest_layer_names, \
            view.model_class
        notes = []
        if view.tied_params:
            notes.append(
                f"accelerate with transformers >= 5 prints {4 * view.tied_params:,} B more at float32: "
                "init_empty_weights() unties the tied weights and counts them twice; hfmem counts them once")
    rows = []
    for label, bits, div in DTYPE_ROWS:
        total, ll = total32 / div, ll32 / div
        adam = _adam(adam_rule, total, total32, bits)
        rows.append(CalculatorRow(label, _num(ll), _num(total), None if adam is None else _num(adam)))
    assumptions = [
        f"counted like accelerate estimate-memory: {cls} in float32 with all buffers (integer buffers at "
        "their own width), divided by 2/4/8 for the other rows",
        f"Training using Adam: accelerate's {adam_rule} rule "
        + ("(largest of its stages: 4x float32 size, 2x for float16, N/A for int8/int4)" if adam_rule == "current"
           else "(4x the row's size, accelerate < 0.29)" if adam_rule == "legacy"
           else "(model states in the row's dtype)"),
    ]
    return CalculatorTable("accelerate", adam_rule, rows, list(names), _num(ll32), cls,
                           assumptions=assumptions, notes=notes)


def calculator_table(inv: Inventory, mode: str = "exact", adam_rule: str | None = None, *,
                     config: dict | None = None) -> CalculatorTable:
    """The table for ``inv``; with the model's ``config``, its notes also name the sizes transformers filled
    in from its defaults because config.json (or its text_config) omits them."""
    table = accelerate_table(inv, adam_rule or "current") if mode == "accelerate" \
        else exact_table(inv, adam_rule or "states")
    if config:
        from ..metadata.config import defaults_assumption

        filled = defaults_assumption(config)
        if filled:
            table.notes.append(filled)
    return table


def component_tables(report, mode: str = "exact", adam_rule: str | None = None) -> list[tuple[object, CalculatorTable]]:
    """A composite repo's components with weights, each with its own table (``calculator_table`` on the
    component's inventory, the same rows as any model's); empty for a plain model."""
    layout = report.pipeline() if report.layout else None
    if layout is None:
        return []
    return [(c, calculator_table(c.inventory, mode, adam_rule)) for c in layout.with_weights()]


def shows_components(report) -> bool:
    """Whether the text table shows each component apart: a diffusers pipeline, or any composite repo with
    more than one component holding weights (a sentence-transformers model with Dense modules). A repo whose
    only weights are one network (all-MiniLM-L6-v2, a timm model) prints as before."""
    layout = report.pipeline() if report.layout else None
    if layout is None:
        return False
    from ..model.pipeline import DIFFUSERS_PIPELINE

    return layout.kind == DIFFUSERS_PIPELINE or len(layout.with_weights()) > 1
