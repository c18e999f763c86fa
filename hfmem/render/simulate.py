"""JSON, terminal table and Markdown for ``hfmem simulate``. Reads SimResult; computes nothing."""

from __future__ import annotations

from .. import __version__
from ..units import GiB as GIB
from .json import errors_json
from ..units import format_binary
from .text import Footnote, markdown_footnotes, print_footnotes

SCHEMA = "hfmem.simulate/2"
PREDICTS = ("peak allocated bytes: what torch.cuda.max_memory_allocated() would report for the same step on "
            "a GPU (allocator-level, 512-byte rounding); not max_memory_reserved, not the device total")
COLUMNS = ("parameters", "buffers", "gradients", "optimizer_state", "kv_cache", "activations", "temporary")


def _model_json(sim) -> dict:
    r, res = sim.report, sim.result
    d = res.to_dict()
    phases = [{**p, "peak_allocated_bytes": p["peak_bytes"]} for p in d["phases"]]
    return {
        "model": r.model,
        "source": r.source,
        "revision": r.revision,
        "architecture": res.architecture,
        "model_type": r.inventory.model_type,
        "mode": res.mode,
        "inputs": d["inputs"],
        "components": {f"{k}_bytes": v for k, v in res.peak_by_category.items()},
        "peak_allocated_bytes": res.peak_allocated_bytes,
        "peak_reserved_bytes": None,  # not simulated: no caching allocator (not_included)
        "device_total_bytes": None,   # not simulated: no CUDA context (not_included)
        "peak_phase": res.peak_phase,
        "peak_by_category": res.peak_by_category,
        "kv_cache_bytes": res.kv_cache_bytes,
        "phases": phases,
        "fit": None,
        "elapsed_s": d["elapsed_s"],
        "predicts": PREDICTS,
        "assumptions": res.assumptions,
        "not_included": res.not_included,
        "notes": sim.notes + r.inventory.notes,
        "versions": res.versions,
    }


def simulate_json(sims, errors=()) -> dict:
    return {"schema": SCHEMA, "hfmem_version": __version__, "units": "bytes",
            "models": [_model_json(s) for s in sims],
            "errors": errors_json(errors)}


def _sample(i: dict, length_key: str) -> str:
    """'seq 2048', '224×224 images', '30 s audio', '77 tokens + 224×224 images', '512 → 128 tokens'."""
    parts = []
    if "tokens" in i or i.get("main_input", "input_ids") == "input_ids":
        parts.append(f"{length_key} {i.get('tokens', i.get(length_key))}")
    if "image_size" in i and i.get("main_input") in ("pixel_values", "input_ids"):
        parts.append(f"{i['image_size']}×{i['image_size']} images")
    if "audio_seconds" in i and i.get("main_input") in ("input_values", "input_features"):
        parts.append(f"{i['audio_seconds']:g} s audio")
    if i.get("target_tokens"):
        parts.append(f"{i['target_tokens']} target tokens")
    return " + ".join(parts)


def _title(sim) -> str:
    i = sim.result.inputs
    if sim.result.mode == "train":
        what = (f"train: batch {i['batch']} x {_sample(i, 'seq')}, "
                f"{i.get('amp') and 'AMP ' + i['amp'] or i['dtype']}, "
                f"{i['attn']}, {i['optimizer']} ({i['optimizer_impl']})"
                + (", gradient checkpointing" if i.get("grad_ckpt") else "")
                + (f", LoRA r{i['lora'].get('r')}" if i.get("lora") else ""))
    else:
        what = (f"infer: batch {i['batch']} x {_sample(i, 'context')}"
                + (f" + {i['new_tokens']} new token(s)" if i.get("new_tokens") else "") + f", {i['dtype']}, {i['attn']}")
    return f"Simulated peak for '{sim.report.model}' ({sim.result.architecture}) — {what}"


def _gib(n: int) -> str:
    # One unit for the whole table keeps ten columns readable; exact bytes are in the JSON.
    return "-" if not n else f"{n / GIB:.2f}"


def _rows(sim) -> list[list[str]]:
    rows = []
    for p in sim.result.phases:
        cat = p.by_category
        rows.append([f"{p.name} #{p.iteration}", _gib(p.peak_bytes), _gib(p.live_bytes_end)]
                    + [_gib(cat.get(c, 0)) for c in COLUMNS])
    return rows


HEADERS = ["phase (GiB)", "peak", "live at end", "params", "buffers", "grads", "optimizer", "KV cache",
           "activations", "temporary"]


def _footnotes(sim) -> list:
    res = sim.result
    notes = [f"Peak allocated: {format_binary(res.peak_allocated_bytes)} ({res.peak_allocated_bytes:,} B) in "
             f"{res.peak_phase}; it predicts {PREDICTS}.",
             "All columns in GiB (2^30 bytes; '-' is zero, 0.00 is under 5 MiB); the columns after 'live at end' "
             "split the memory still allocated when the phase ends, 'temporary' is the phase's peak above it.",
             Footnote("Assumptions:", tuple(res.assumptions)),
             Footnote("Not included:", tuple(res.not_included)),
             f"Simulated in {res.elapsed_s:.1f} s with torch {res.versions.get('torch')}, transformers "
             f"{res.versions.get('transformers')}."]
    notes += [n[0].upper() + n[1:] + ("" if n.endswith(".") else ".") for n in sim.notes]
    return notes


def rich_simulation(console, sim) -> None:
    from rich.table import Table

    t = Table(title=_title(sim), title_justify="left")
    for i, h in enumerate(HEADERS):
        t.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    for row in _rows(sim):
        t.add_row(*row)
    console.print(t)
    print_footnotes(console, _footnotes(sim))


def markdown_simulation(sim) -> str:
    lines = [f"## {_title(sim)}", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(sim)]
    lines.append("")
    lines += markdown_footnotes(_footnotes(sim))
    return "\n".join(lines) + "\n"
