"""JSON, terminal tables and Markdown for ``hfmem infer --engine llama.cpp`` (``LlamaCppReport``). Computes
nothing: every number is the report's, formatted; units appear only here (binary, GiB = 2^30)."""

from __future__ import annotations

from dataclasses import fields

from ..units import format_binary
from .bar import print_bars
from .text import markdown_footnotes, print_footnotes
from .infer import SCHEMA
from .json import estimate_document, fit_json

SCOPE = ("per GPU (the busiest) unless a key says otherwise; llama.cpp entries list every device in "
         "`devices`")


# ---------------------------------------------------------------- JSON


def _row_of(r, variant):
    return next((row for row in r.rows if row.variant is variant or row.variant.label == variant.label), None)


def _device_json(d) -> dict:
    return {"device": d.device, "model_bytes": int(d.model_bytes), "k_bytes": int(d.k_bytes),
            "v_bytes": int(d.v_bytes), "kv_bytes": int(d.kv_bytes), "compute_bytes": int(d.compute_bytes),
            "output_bytes": int(d.output_bytes), "context_bytes": int(d.context_bytes),
            "projector_bytes": int(d.projector_bytes), "total_bytes": int(d.total_bytes),
            "layers": int(d.layers), "output_layer": bool(d.output_layer)}


def _inputs_json(r) -> dict:
    s = r.estimate.settings
    out = {"engine": "llama.cpp"}
    for f in fields(s):
        v = getattr(s, f.name)
        if f.name == "tensor_split":
            v = None if v is None else [float(x) for x in v]
        elif f.name == "override_tensors":
            v = [[p, b] for p, b in v]
        out[f.name] = v
    # llama.cpp's terms: -c (n_ctx), its cells padded per stream, one stream per sequence unless --kv-unified
    out["n_ctx"] = int(s.n_ctx)
    out["cells"] = int(s.cells)
    out["cells_per_stream"] = int(s.cells_per_stream)
    out["n_stream"] = int(s.n_stream)
    out["gpu"] = r.gpu.name if r.gpu is not None else None
    out["ram_bytes"] = r.fit.ram_bytes if r.fit is not None else None
    return out


def _description_json(m) -> dict:
    return {"name": m.name, "n_layer": m.n_layer, "n_embd": m.n_embd, "n_head": list(m.n_head),
            "n_head_kv": list(m.n_head_kv), "n_embd_head_k": m.n_embd_head_k, "n_embd_head_v": m.n_embd_head_v,
            "n_ff": list(m.n_ff), "n_swa": m.n_swa, "swa_layers": sum(1 for x in m.swa_layers if x),
            "n_expert": m.n_expert, "n_expert_used": m.n_expert_used, "n_vocab": m.n_vocab,
            "n_ctx_train": m.n_ctx_train}


def _busiest_gpu(e):
    """The GPU whose total is the estimate's gpu_peak_bytes (None when no GPU holds anything)."""
    if not e.gpu_peak_bytes:
        return None
    return next(d for d in e.gpus if d.total_bytes == e.gpu_peak_bytes)


def llamacpp_model_json(r, emit: str | None = None) -> dict:
    """One ``models[]`` entry (``kind`` ``"gguf"``) of ``hfmem infer --engine llama.cpp --format json``."""
    e, v = r.estimate, r.variant
    row = _row_of(r, v)
    peak = _busiest_gpu(e)
    # The shared report shape (render.json.SHARED_ENTRY_KEYS), for the busiest GPU: llama.cpp allocates every
    # buffer at load (model, KV, the compute reserve) and runs without growing them, so there is one phase and
    # allocated = reserved = the buffers; the device total adds the CUDA context.
    buffers = peak.total_bytes - peak.context_bytes if peak is not None else 0
    components = {"device": peak.device if peak is not None else None,
                  "model_bytes": peak.model_bytes if peak else 0, "kv_bytes": peak.kv_bytes if peak else 0,
                  "compute_bytes": peak.compute_bytes if peak else 0,
                  "output_bytes": peak.output_bytes if peak else 0,
                  "context_bytes": peak.context_bytes if peak else 0,
                  "projector_bytes": peak.projector_bytes if peak else 0}
    out = {
        "model": r.model, "source": r.repo.source, "revision": r.repo.revision,
        "architecture": r.description.architecture, "kind": "gguf", "engine": "llama.cpp",
        "variant": {"label": v.label, "files": list(v.files), "size_bytes": int(v.size_bytes),
                    "bits_per_weight": row.bits_per_weight if row is not None else None},
        "description": _description_json(r.description),
        "inputs": _inputs_json(r),
        "devices": [_device_json(d) for d in e.devices],
        "components": components,
        "phases": [{"name": "serve", "peak_allocated_bytes": int(buffers)}],
        "peak_phase": "serve", "peak_allocated_bytes": int(buffers), "peak_reserved_bytes": int(buffers),
        "device_total_bytes": int(e.gpu_peak_bytes),
        "gpu_peak_bytes": int(e.gpu_peak_bytes), "cpu_bytes": int(e.cpu.total_bytes),
        "kv_bytes": int(e.kv_bytes), "kv_cells": int(e.kv_cells), "kv_cells_swa": e.kv_cells_swa,
        "flash_attn": bool(e.flash_attn), "n_gpu_layers": int(e.n_gpu_layers),
        "predicts": e.predicts, "assumptions": list(e.assumptions), "notes": list(r.notes),
        "fit": None,
        "best_variant": r.best,
        "variants": [{"label": x.variant.label, "files": list(x.variant.files),
                      "size_bytes": int(x.variant.size_bytes), "bits_per_weight": x.bits_per_weight,
                      "quality_rank": x.quality_rank, "listed": bool(x.listed),
                      "gpu_peak_bytes": int(x.estimate.gpu_peak_bytes), "cpu_bytes": int(x.estimate.cpu.total_bytes),
                      "kv_bytes": int(x.estimate.kv_bytes), "n_gpu_layers": int(x.estimate.n_gpu_layers),
                      "fits": x.fits} for x in r.rows],
        "projector": ({"label": r.projector.label, "files": list(r.projector.files),
                       "bytes": int(r.projector.tensor_bytes)} if r.projector is not None else None),
    }
    if r.fit is not None and r.gpu is not None:
        f, g = r.fit, r.gpu
        out["fit"] = fit_json(gpu=g.name, fits=f.fits, gpu_memory_bytes=g.memory_bytes,
                              gpu_usable_bytes=f.gpu_bytes, gpu_capacity_basis=g.capacity_basis,
                              capacity_bytes=f.gpu_bytes, needed_bytes=e.gpu_peak_bytes,
                              max_context=f.max_context, max_gpu_layers=f.max_gpu_layers,
                              ram_bytes=f.ram_bytes, ram_fits=f.ram_fits)
        if f.device_bytes:  # mixed GPUs: each one's own memory, and the least left on any of them
            out["fit"]["device_usable_bytes"] = [int(b) for b in f.device_bytes]
            out["fit"]["margin_bytes"] = int(f.margin_bytes(e))
    if emit:
        out["emit"] = emit
    return out


def llamacpp_document(reports, errors=(), emits: dict | None = None) -> dict:
    """The ``hfmem.infer/2`` document of llama.cpp reports (``emits``: model → launch text)."""
    emits = emits or {}
    return estimate_document(SCHEMA, SCOPE, [llamacpp_model_json(r, emits.get(r.model)) for r in reports],
                             errors)


# ---------------------------------------------------------------- tables


def _size(n) -> str:
    return "-" if n is None else format_binary(n)


def _flags(r) -> str:
    """The settings in llama.cpp's own terms (its -c is the whole cache: context · parallel)."""
    e = r.estimate
    s = e.settings
    kv = f"-ctk {s.type_k} -ctv {s.type_v}"
    return (f"-c {s.n_ctx} -np {s.parallel} -ngl {e.n_gpu_layers} {kv} "
            f"-fa {'on' if e.flash_attn else 'off'} -ub {s.n_ubatch}" + (" --kv-unified" if s.kv_unified else ""))


def title(r) -> str:
    return f"llama.cpp memory for '{r.model}' {r.variant.label} — {_flags(r)}"


def _device_label(d, n_layer: int) -> str:
    what = f"{d.layers}/{n_layer} layers" + (" + output" if d.output_layer else "")
    return f"{d.device} ({what})"


def device_table(r) -> tuple[list[str], list[list[str]]]:
    e = r.estimate
    proj = any(d.projector_bytes for d in e.devices)
    head = ["device", "model", "KV", "compute", "output", "CUDA context"] + (["projector"] if proj else []) + ["total"]
    rows = []
    for d in e.devices:  # GPUs in order, then the CPU
        row = [_device_label(d, e.model.n_layer), _size(d.model_bytes), _size(d.kv_bytes), _size(d.compute_bytes),
               _size(d.output_bytes), _size(d.context_bytes) if d.device != "CPU" else "-"]
        if proj:
            row.append(_size(d.projector_bytes))
        rows.append(row + [_size(d.total_bytes)])
    return head, rows


def variants_table(r) -> tuple[list[str], list[list[str]]] | None:
    if len(r.rows) < 2:
        return None
    gpu = r.gpu.name if r.gpu is not None else None
    head = ["variant", "file size", "bits/weight", "GPU peak", "CPU", "KV"] + ([f"fits {gpu}"] if gpu else [])
    rows = []
    for x in r.rows:
        label = x.variant.label
        marks = [m for m, on in (("best", label == r.best), ("served", x.variant is r.variant)) if on]
        row = [label + (f" ({', '.join(marks)})" if marks else "") + ("" if x.listed else " †"),
               _size(x.variant.size_bytes), f"{x.bits_per_weight:.2f}", _size(x.estimate.gpu_peak_bytes),
               _size(x.estimate.cpu.total_bytes), _size(x.estimate.kv_bytes)]
        if gpu:
            row.append("-" if x.fits is None else "yes" if x.fits else "no")
        rows.append(row)
    return head, rows


def fit_lines(r) -> list[tuple[str, str]]:
    if r.fit is None or r.gpu is None:
        return []
    e, f = r.estimate, r.fit
    s = e.settings
    margin = f.margin_bytes(e)
    gpus = f"{s.gpus} x {r.gpu.name}"
    where = "on the fullest GPU" if f.device_bytes else "on the busiest GPU"
    out = [(f"Fits {gpus}", ("yes" if f.fits else "NO") + f" ({_size(abs(margin))} "
                                                        f"{'free' if margin >= 0 else 'short'} {where})"),
           (f"Largest context per sequence at -ngl {e.n_gpu_layers}, -np {s.parallel}",
            "none" if f.max_context is None else f"{f.max_context:,}"
            + (" (the model's trained context; hfmem looks no further)"
               if f.max_context == e.model.n_ctx_train else "")),
           (f"Most layers on the GPU at context {s.context:,}",
            f"-ngl {f.max_gpu_layers} of {e.model.n_layer + 1}")]
    if f.ram_bytes is not None:
        out.append(("Fits RAM", ("yes" if f.ram_fits else "NO") + f" ({_size(e.cpu.total_bytes)} of "
                                                                  f"{_size(f.ram_bytes)})"))
    if len(r.rows) > 1:
        out.append(("Best variant that fits", r.best or "none"))
    return out


def _sentence(n: str) -> str:
    n = n.strip()
    return (n[:1].upper() + n[1:]) + ("" if n.endswith(".") else ".")


def footnotes(r) -> list[str]:
    """What the table predicts, every assumption and note of ``r``, one sentence each, and the units."""
    e = r.estimate
    notes = [_sentence("Predicts: " + e.predicts)]
    notes += [_sentence(a) for a in e.assumptions]
    notes += [_sentence(n) for n in r.notes]
    if any(not x.listed for x in r.rows) and len(r.rows) > 1:
        notes.append("† not in llama.cpp's quant table: ranked by bits per weight.")
    notes.append("Units: KiB/MiB/GiB are binary (2^10/2^20/2^30 bytes); exact bytes are in --format json.")
    return notes


def bar_components(d) -> dict[str, int]:
    """One device's buffers (a ``DeviceMemory``) as the component bar's segments, in the table's order; the
    names are ``vocab.COMPONENT_LABELS``'s (KV and the CUDA context share the serving estimate's keys)."""
    return {"model_bytes": int(d.model_bytes), "kv_cache_bytes": int(d.kv_bytes),
            "compute_bytes": int(d.compute_bytes), "output_bytes": int(d.output_bytes),
            "cuda_context_bytes": int(d.context_bytes), "projector_bytes": int(d.projector_bytes)}


def bar_rows(r) -> list[tuple]:
    """``print_bars``' rows for ``r``: one per GPU that holds anything, labelled "GPU 0", "GPU 1", ... when
    there are several; the capacity is the GPU's usable memory the fit judged it on (mixed devices: its own)."""
    used = [(i, d) for i, d in enumerate(r.estimate.gpus) if d.total_bytes > 0]
    f = r.fit if r.gpu is not None else None
    rows = []
    for i, d in used:
        capacity = None if f is None else int(f.device_bytes[i] if f.device_bytes else f.gpu_bytes)
        label = f"GPU {i}" if len(used) > 1 else r.model
        rows.append((label, bar_components(d), int(d.total_bytes), capacity, r.gpu.name if f is not None else None))
    return rows


def _compare_table(reports) -> tuple[list[str], list[list[str]]]:
    head = ["model", "variant", "GPU peak", "CPU", "KV", "fits"]
    rows = []
    for r in reports:
        e = r.estimate
        fits = "-" if r.fit is None else ("yes" if r.fit.fits else "no")
        rows.append([r.model, r.variant.label, _size(e.gpu_peak_bytes), _size(e.cpu.total_bytes),
                     _size(e.kv_bytes), fits])
    return head, rows


def _md_table(head, rows) -> list[str]:
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    return (["| " + " | ".join(esc(h) for h in head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows])


def markdown_llamacpp(reports) -> str:
    out: list[str] = []
    for r in reports:
        out += [f"## {title(r)}", ""]
        out += _md_table(*device_table(r)) + [""]
        vt = variants_table(r)
        if vt is not None:
            out += ["### Variants", ""] + _md_table(*vt) + [""]
        fl = fit_lines(r)
        if fl:
            out += [f"- {label}: {value}" for label, value in fl] + [""]
        out += markdown_footnotes(footnotes(r)) + [""]
    if len(reports) > 1:
        out += ["## Compared", ""] + _md_table(*_compare_table(reports)) + [""]
    return "\n".join(out)


def _rich_table(title, head, rows, first_left: int = 1):
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(title) if title else None, title_justify="left")
    for i, h in enumerate(head):
        t.add_column(escape(h), justify="left" if i < first_left else "right", no_wrap=i < first_left)
    for row in rows:
        t.add_row(*(escape(str(c)) for c in row))
    return t


def rich_llamacpp(console, reports) -> None:
    from rich.markup import escape

    for r in reports:
        console.print(_rich_table(title(r), *device_table(r)))
        print_bars(console, bar_rows(r))
        vt = variants_table(r)
        if vt is not None:
            console.print(_rich_table("Variants at these settings", *vt))
        for label, value in fit_lines(r):
            console.print(f"{escape(label)}: {escape(value)}", highlight=False)
        print_footnotes(console, footnotes(r))
    if len(reports) > 1:
        console.print(_rich_table("Compared", *_compare_table(reports), first_left=2))
