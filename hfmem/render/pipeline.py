"""JSON, terminal table and Markdown for ``hfmem infer`` on a diffusers pipeline (``PipelineInferenceReport``);
the ``infer_json`` / ``rich_infer`` / ``markdown_infer`` here take a mix of pipeline and plain reports and hand the
plain ones to ``render.infer``. Computes nothing."""

from __future__ import annotations

from . import infer as plain
from .json import estimate_document, fit_json
from ..units import format_binary
from .text import Footnote, markdown_footnotes, print_footnotes


def is_pipeline(r) -> bool:
    return type(r).__name__ == "PipelineInferenceReport"


def pipeline_model_json(r) -> dict:
    e, rep = r.estimate, r.report
    s = e.settings
    inputs = {"height": e.height, "width": e.width, "batch": s.batch, "frames": s.frames, "steps": e.steps,
              "guidance_scale": e.guidance_scale, "cfg": e.cfg, "denoiser_batch": e.denoiser_batch,
              "dtype": s.compute_dtype, "offload": s.offload, "group_type": s.group_type,
              "group_blocks": s.group_blocks, "group_stream": s.group_stream, "vae_tiling": s.vae_tiling,
              "vae_slicing": s.vae_slicing, "attention_slicing": s.attention_slicing,
              "denoiser_weights": s.denoiser_weights or s.dtype,
              "text_encoder_weights": s.text_encoder_weights or s.dtype,
              "max_sequence_length": s.max_sequence_length, "gpu": r.gpu.name if r.gpu is not None else None}
    out = {
        "model": rep.model, "source": rep.source, "revision": rep.revision, "architecture": e.pipeline,
        "model_type": None, "kind": "diffusers-pipeline", "inputs": inputs,
        "components": [{"name": n, "weights_bytes": b} for n, b in e.weights_bytes_by_component.items()],
        "phases": [{"name": p.name, "component": p.component, "weights_bytes": p.weights_bytes,
                    "activations_bytes": p.activations_bytes, "peak_allocated_bytes": p.peak_allocated_bytes,
                    "simulated": p.simulated,
                    "resident": [{"name": c.name, "role": c.role, "weights_bytes": c.weights_bytes,
                                  "running": c.running} for c in p.resident]} for p in e.phases],
        "peak_phase": e.peak_phase, "peak_allocated_bytes": e.peak_allocated_bytes,
        "peak_reserved_bytes": e.peak_reserved_bytes, "device_total_bytes": e.device_total_bytes,
        "fit": None, "remedies": [],
        "predicts": e.predicts, "overheads": s.overheads.to_dict(), "assumptions": e.assumptions,
        "notes": r.notes + e.notes,
    }
    if r.gpu is not None:
        g = r.gpu
        out["fit"] = fit_json(gpu=g.name, fits=bool(r.fits), gpu_memory_bytes=g.memory_bytes,
                              gpu_usable_bytes=g.usable_bytes, gpu_capacity_basis=g.capacity_basis,
                              capacity_bytes=g.usable_bytes, needed_bytes=e.device_total_bytes)
        out["remedies"] = [{"name": m.name, "changes": m.changes, "peak_allocated_bytes": m.peak_allocated_bytes,
                            "device_total_bytes": m.device_total_bytes} for m in r.remedies]
    return out


def infer_json(reports, errors=(), emits: dict | None = None) -> dict:
    emits = emits or {}
    models = [pipeline_model_json(r) if is_pipeline(r) else plain._model_json(r, emits.get(r.report.model))
              for r in reports]
    return estimate_document(plain.SCHEMA, "per GPU (rank 0) unless a key says otherwise", models, errors)


def _size(n) -> str:
    return "-" if n is None else format_binary(n)


def _title(r) -> str:
    e = r.estimate
    return (f"Serving memory for '{r.report.model}' ({e.pipeline}) — {e.height}x{e.width}, batch {e.batch}"
            f"{' (CFG: denoiser batch ' + str(e.denoiser_batch) + ')' if e.denoiser_batch != e.batch else ''}, "
            f"{e.settings.compute_dtype}, offload {e.settings.offload}")


def _table(r) -> tuple[list[str], list[list[str]]]:
    e = r.estimate
    head = ["phase", "resident (weights)", "weights", "activations", "peak allocated"]
    rows = []
    for p in e.phases:
        resident = ", ".join(f"{c.name}{'*' if c.running else ''} {_size(c.weights_bytes)}" for c in p.resident)
        rows.append([p.name + ("" if p.simulated else " (weights only)"), resident, _size(p.weights_bytes),
                     _size(p.activations_bytes), _size(p.peak_allocated_bytes)])
    return head, rows


def _totals(r) -> list[tuple[str, str]]:
    e = r.estimate
    out = [(f"= Peak allocated ({e.peak_phase})", _size(e.peak_allocated_bytes)),
           ("= Peak reserved", _size(e.peak_reserved_bytes)),
           ("= Device total (nvidia-smi)", _size(e.device_total_bytes))]
    if r.gpu is not None:
        free = r.gpu.usable_bytes - e.device_total_bytes
        out.append((f"Fits {r.gpu.name}", ("yes" if r.fits else "NO") + f" ({_size(abs(free))} "
                                                                       f"{'free' if r.fits else 'short'})"))
    return out


def _footnotes(r) -> list:
    e = r.estimate
    notes = ["* the component running in the phase; the others are resident by the memory mode.",
             plain.predicts_footnote(e.predicts),
             Footnote("Assumptions:", tuple(e.assumptions))]
    notes += [n[0].upper() + n[1:] for n in r.notes + e.notes]
    if r.gpu is not None and not r.fits:
        if r.remedies:
            notes.append(Footnote("What would fit, cheapest slowdown first:", tuple(
                f"{m.name} ({_size(m.device_total_bytes)})" for m in r.remedies)))
        else:
            notes.append("No single memory mode, slicing, tiling or quantized denoiser makes it fit.")
    return notes


def rich_pipeline(console, r) -> None:
    from rich.markup import escape
    from rich.table import Table

    head, rows = _table(r)
    t = Table(title=_title(r), title_justify="left")
    for i, h in enumerate(head):
        t.add_column(h, justify="left" if i < 2 else "right")
    for row in rows:
        t.add_row(*(escape(c) for c in row))
    console.print(t)
    for label, value in _totals(r):
        console.print(f"{label}: {value}", highlight=False)
    print_footnotes(console, _footnotes(r))


def markdown_pipeline(r) -> str:
    head, rows = _table(r)
    lines = [f"## {_title(r)}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", *[f"- {label}: {value}" for label, value in _totals(r)], ""]
    lines += markdown_footnotes(_footnotes(r))
    return "\n".join(lines) + "\n"


def rich_infer(console, reports) -> None:
    rest = [r for r in reports if not is_pipeline(r)]
    for r in reports:
        if is_pipeline(r):
            rich_pipeline(console, r)
    if rest:
        plain.rich_infer(console, rest)


def markdown_infer(reports) -> str:
    rest = [r for r in reports if not is_pipeline(r)]
    out = "".join(markdown_pipeline(r) for r in reports if is_pipeline(r))
    return out + (plain.markdown_infer(rest) if rest else "")
