"""JSON, terminal table and Markdown for ``hfmem infer``. Reads InferenceReport objects; computes nothing."""

from __future__ import annotations

from ..units import format_binary
from .bar import print_bars
from .text import Footnote, markdown_footnotes, print_footnotes
from .json import confidence_json, estimate_document, fit_json

SCHEMA = "hfmem.infer/2"
PREDICTS = {
    "peak_allocated_bytes": "torch.cuda.max_memory_allocated() on the busiest GPU (rank 0)",
    "peak_reserved_bytes": "torch.cuda.max_memory_reserved() on that GPU (allocated + the caching allocator's "
                           "reserve; vLLM: + its CUDA-graph pool)",
    "device_total_bytes": "the process's memory as nvidia-smi shows it on that GPU (reserved + CUDA context "
                          "[+ NCCL])",
}


def _model_json(r, emit: str | None = None) -> dict:
    e, rep = r.estimate, r.report
    s = e.settings
    inputs = {"engine": s.engine, "context": s.context, "batch": s.batch, "new_tokens": s.new_tokens,
              "weights_format": e.weights_format, "weights_format_requested": s.weights_format,
              "checkpoint_format": r.checkpoint_format, "compute_dtype": e.compute_dtype, "kv_dtype": e.kv_dtype,
              "attn": e.attn, "tp": s.tp, "tensor_parallel": s.tp, "world_size": s.tp,
              "gpus": s.tp,  # deprecated (docs/json.md): the tensor-parallel degree; read tensor_parallel
              "gpu": r.fit.gpu if r.fit else None, "logits": s.logits, "block_size": s.block_size,
              "image_size": s.image_size, "audio_seconds": s.audio_seconds, "images": s.images,
              "bnb_compute_dtype": getattr(e, "bnb_compute_dtype", None), "lora_rank": s.lora_rank,
              "lora_targets": s.lora_targets if s.lora_rank else None}
    if s.engine == "vllm":
        inputs.update(gpu_memory_utilization=s.gpu_memory_utilization,
                      max_num_batched_tokens=s.max_num_batched_tokens, max_num_seqs=s.max_num_seqs)
    out = {
        "model": rep.model,
        "source": rep.source,
        "revision": rep.revision,
        "architecture": rep.inventory.architecture,
        "model_type": rep.inventory.model_type,
        "inputs": inputs,
        "parameters": e.logical_params,
        "weights": {"format": e.weights_format, "stored_bytes": e.stored_weights_bytes,
                    "logical_parameters": e.logical_params},
        "kind": e.kind,
        "batch_inputs": e.batch_inputs,
        "components": e.components,
        "kv_bytes_per_token": e.kv_bytes_per_token,
        "kv_bytes_per_token_per_gpu": e.kv_bytes_per_token_per_gpu,
        "kv_layers": e.kv_layout_summary,
        "phases": [dict(p.__dict__) for p in e.phases],
        "peak_phase": e.peak_phase,
        "peak_allocated_bytes": e.peak_allocated_bytes,
        "peak_reserved_bytes": e.peak_reserved_bytes,
        "device_total_bytes": e.device_total_bytes,
        "fit": None,
        "per_gpu": {"gpus": s.tp, "tensor_parallel": s.tp, "peak_allocated_bytes": e.peak_allocated_bytes,
                    "peak_reserved_bytes": e.peak_reserved_bytes, "device_total_bytes": e.device_total_bytes,
                    "all_gpus_device_total_bytes": e.device_total_bytes * s.tp},
        "max_position_embeddings": e.max_position_embeddings,
        "predicts": PREDICTS,
        "overheads": s.overheads.to_dict(),
        "assumptions": e.assumptions,
        "notes": r.notes + e.notes + rep.inventory.notes,
    }
    if e.vllm is not None:
        out["vllm"] = e.vllm
    # stated confidence: the bands of the measured cases (plan/confidence.py), and the fit as a verdict
    out["confidence"] = confidence_json(out, "infer", engine=s.engine, by_code=by_code(e))
    if r.fit is not None:
        f = r.fit
        out["fit"] = fit_json(gpu=f.gpu, fits=f.fits, gpu_memory_bytes=f.gpu_memory_bytes,
                              gpu_usable_bytes=f.gpu_usable_bytes, gpu_capacity_basis=f.gpu_capacity_basis,
                              capacity_bytes=f.capacity_bytes, needed_bytes=f.needed_bytes,
                              confidence=out["confidence"],
                              max_context=f.max_context, max_context_limited_by=f.max_context_limited_by,
                              max_batch=f.max_batch, min_gpus=f.min_gpus,
                              weight_format_that_fits=f.weight_format_that_fits, weight_formats=f.weight_formats)
        # deprecated top-level copies (docs/json.md, "Changes of meaning"): read fit.*
        out.update(fits=f.fits, gpu_memory_bytes=f.gpu_memory_bytes, gpu_usable_bytes=f.gpu_usable_bytes,
                   gpu_capacity_basis=f.gpu_capacity_basis, capacity_bytes=f.capacity_bytes,
                   headroom_bytes=f.headroom_bytes, max_context=f.max_context,
                   max_context_limited_by=f.max_context_limited_by, max_batch=f.max_batch, min_gpus=f.min_gpus,
                   weight_format_that_fits=f.weight_format_that_fits, weight_formats=f.weight_formats)
        if f.notes:
            out["notes"] = out["notes"] + f.notes
    if emit:
        out["emit"] = emit
    return out


def by_code(e) -> bool:
    """Whether an estimate was calibrated from the model's own code (the simulation) rather than a closed form:
    one of its assumptions names that source (scenarios/by_simulation.py)."""
    from ..scenarios.by_simulation import SOURCE

    return any(str(a).startswith(SOURCE) for a in e.assumptions)


def infer_json(reports, errors=(), emits: dict | None = None) -> dict:
    """The document ``hfmem infer ... --format json`` prints."""
    emits = emits or {}
    return estimate_document(SCHEMA, "per GPU (rank 0) unless a key says otherwise",
                             [_model_json(r, emits.get(r.report.model)) for r in reports], errors)


# -- table ------------------------------------------------------------------------------------------------

def size_or_dash(n) -> str:
    """Binary units for a table cell; '-' for an absent value."""
    return "-" if n is None else format_binary(n)


def _has_attention(e) -> bool:
    return any(e.kv_layout_summary.get(k) for k in ("full", "sliding", "mla", "cross"))


def _rows(r) -> list[tuple[str, str]]:
    e = r.estimate
    c = e.components
    s = e.settings
    peak = next(p for p in e.phases if p.name == e.peak_phase)
    rows = [
        (f"Weights ({e.weights_format})", size_or_dash(c["weights_bytes"])),
        ("Buffers", size_or_dash(c["buffers_bytes"])),
    ]
    if e.kind == "encoder-decoder":
        rows.append((f"KV cache (self + cross, {e.kv_dtype})", size_or_dash(c["kv_cache_bytes"])))
    elif e.kind == "generate":
        rows.append((f"KV cache ({peak.tokens:,} tok x {s.batch}, {e.kv_dtype})", size_or_dash(c["kv_cache_bytes"])))
    rows += [
        (f"Activations ({e.peak_phase}" + (f", {e.attn})" if _has_attention(e) else ")"), size_or_dash(c["activations_bytes"])),
        ("= Peak allocated", size_or_dash(e.peak_allocated_bytes)),
        ("Allocator reserve", size_or_dash(c["allocator_reserve_bytes"])),
    ]
    if "cuda_graphs_bytes" in c:
        rows.append(("CUDA graphs", size_or_dash(c["cuda_graphs_bytes"])))
    rows.append(("= Peak reserved", size_or_dash(e.peak_reserved_bytes)))
    rows.append(("CUDA context", size_or_dash(c["cuda_context_bytes"])))
    if "nccl_bytes" in c:
        rows.append(("NCCL", size_or_dash(c["nccl_bytes"])))
    rows.append(("= Device total (nvidia-smi)", size_or_dash(e.device_total_bytes)))
    if e.kind == "generate":
        rows.append(("KV per token (whole model)", f"{e.kv_bytes_per_token:,.0f} B"))
    if r.fit is not None and e.kind != "generate":
        f = r.fit
        rows += [
            (f"Fits 1 x {f.gpu}", ("yes" if f.fits else "NO") + f" ({size_or_dash(abs(f.headroom_bytes))} "
                                                               f"{'free' if f.fits else 'short'})"),
            ("Max batch", "-" if f.max_batch is None else f"{f.max_batch:,}"),
        ]
    elif r.fit is not None:
        f = r.fit
        rows += [
            (f"Fits {s.tp} x {f.gpu}", ("yes" if f.fits else "NO") + f" ({size_or_dash(abs(f.headroom_bytes))} "
                                                                       f"{'free' if f.fits else 'short'})"),
            (f"Max context at batch {s.batch}", "-" if f.max_context is None else
             f"{f.max_context:,}" + (" (model limit)" if f.max_context_limited_by == "model" else "")),
            (f"Max {'sequences' if s.engine == 'vllm' else 'batch'} at {s.context:,}", f"{f.max_batch:,}"),
            ("Fewest GPUs", "none" if f.min_gpus is None else str(f.min_gpus)),
            ("Weight format that fits", f.weight_format_that_fits or "none"),
        ]
    return rows


def _title(reports) -> str:
    s = reports[0].estimate.settings
    if reports[0].estimate.kind != "generate":
        from ..scenarios.by_simulation import describe_batch

        names = ", ".join(f"'{r.report.model}'" for r in reports)
        return f"Serving memory per GPU for {names} — {s.engine}: {describe_batch(reports[0].estimate.batch_inputs)}"
    what = (f"{s.engine}: context {s.context:,}, batch {s.batch}"
            + (f", {s.new_tokens} new tokens" if s.new_tokens and s.engine == "transformers" else "")
            + (f", {s.images} image(s) per sequence" if s.images else "")
            + (f", tensor parallel {s.tp}" if s.tp > 1 else ""))
    names = ", ".join(f"'{r.report.model}'" for r in reports)
    return f"Serving memory per GPU for {names} — {what}"


def confidence_notes(conf: dict, fit: tuple[str, int, int] | None) -> list[str]:
    """The footnotes of the stated confidence: the device total's band, and with a GPU (``fit``: the GPU's
    name, the capacity and the bytes needed) the verdict sentence (plan.fit.fit_verdict)."""
    from ..plan.fit import fit_verdict

    band = conf.get("device_total")
    out = []
    if band is not None:
        est = band["estimate_bytes"]
        out.append(f"Confidence: a run's device total lands within {band['low_bytes'] / est - 1:+.1%}/"
                   f"{band['high_bytes'] / est - 1:+.1%} of the estimate, {format_binary(band['low_bytes'])} to "
                   f"{format_binary(band['high_bytes'])} ({band['basis']})")
    out += [n[0].upper() + n[1:] for n in conf.get("notes", [])]
    if fit is not None:
        gpu, cap, needed = fit
        out.append(f"On {gpu}: " + fit_verdict(cap, needed, band).sentence)
    return out


def predicts_footnote(predicts: dict) -> Footnote:
    """What each total predicts, one part per total (infer and train share the three names)."""
    return Footnote("Each total predicts:", (
        "peak allocated: " + predicts["peak_allocated_bytes"],
        "peak reserved: " + predicts["peak_reserved_bytes"],
        "device total: " + predicts["device_total_bytes"]))


def footnotes(reports) -> list:
    """The footnotes under the table (the web app shows the same): what each total predicts, the units, the
    assumptions, the notes and the confidence band."""
    notes = [
        predicts_footnote(PREDICTS),
        "Units: KiB/MiB/GiB are binary (2^10/2^20/2^30 bytes); exact bytes are in --format json.",
    ]
    shared = [a for a in reports[0].estimate.assumptions if all(a in r.estimate.assumptions for r in reports)]
    if shared:
        notes.append(Footnote("Assumptions:", tuple(shared)))
    for r in reports:
        prefix = f"{r.report.model}: " if len(reports) > 1 else ""
        own = [a for a in r.estimate.assumptions if a not in shared]
        if own:
            notes.append(Footnote(prefix + "assumptions:", tuple(own)))
        for n in r.notes + r.estimate.notes + (r.fit.notes if r.fit else []):
            notes.append(prefix + n[0].upper() + n[1:] + ("" if n.endswith(".") else "."))
        e = r.estimate
        conf = confidence_json({"peak_allocated_bytes": e.peak_allocated_bytes,
                                "peak_reserved_bytes": e.peak_reserved_bytes,
                                "device_total_bytes": e.device_total_bytes}, "infer", engine=e.settings.engine,
                               by_code=by_code(e))
        fit = (f"{e.settings.tp} x {r.fit.gpu}", r.fit.capacity_bytes, r.fit.needed_bytes) if r.fit else None
        notes += [prefix + n + ("" if n.endswith(".") else ".") for n in confidence_notes(conf, fit)]
    return notes


def rich_infer(console, reports) -> None:
    from rich.table import Table

    t = Table(title=_title(reports), title_justify="left")
    t.add_column("per GPU", no_wrap=True)
    for r in reports:
        t.add_column(r.report.model if len(reports) > 1 else "", justify="right", no_wrap=True)
    labels = [label for label, _ in _rows(reports[0])]
    table = [dict(_rows(r)) for r in reports]
    if len(reports) > 1:  # labels that carry per-model details are generalised
        labels = [_generic(label) for label in labels]
        table = [{_generic(k): v for k, v in rows.items()} for rows in table]
    for label in labels:
        t.add_row(label, *[rows.get(label, "-") for rows in table])
    console.print(t)
    print_bars(console, [(r.report.model, r.estimate.components, r.estimate.device_total_bytes,
                          r.fit.capacity_bytes if r.fit else None, r.fit.gpu if r.fit else None) for r in reports])
    print_footnotes(console, footnotes(reports))


def _generic(label: str) -> str:
    for stem in ("Weights", "KV cache", "Activations"):
        if label.startswith(stem + " ("):
            return stem
    return label


def markdown_infer(reports) -> str:
    multi = len(reports) > 1
    head = ["per GPU"] + ([r.report.model for r in reports] if multi else ["bytes"])
    lines = [f"## {_title(reports)}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = [dict((_generic(k) if multi else k, v) for k, v in _rows(r)) for r in reports]
    for label in rows[0]:
        lines.append("| " + " | ".join([label] + [r.get(label, "-") for r in rows]) + " |")
    lines.append("")
    lines += markdown_footnotes(footnotes(reports))
    return "\n".join(lines) + "\n"
