"""``hfmem train`` for a diffusers pipeline, a timm model or a contrastive sentence-transformers run: the estimate
(hfmem.scenarios.pipeline_training.PipelineTrainEstimate) as JSON, Markdown and a rich table."""

from __future__ import annotations

from ..units import format_binary as format_bytes, format_count
from .json import estimate_document
from .train import SCHEMA


def is_composite(reports) -> bool:
    from ..scenarios.pipeline_training import PipelineTrainEstimate

    return bool(reports) and all(isinstance(r.estimate, PipelineTrainEstimate) for r in reports)


def _model_json(r) -> dict:
    """One model object (docs/json.md, train section, "Diffusers pipelines, timm, contrastive sentence-transformers")."""
    e = r.estimate
    inputs = {k: v for k, v in e.settings.to_dict().items() if k != "overheads"}
    inputs["resolution"] = e.resolution or inputs["resolution"]
    fit = None
    if r.gpu is not None:
        fit = {"gpu": r.gpu.name, "fits": bool(r.fits), "gpu_usable_bytes": int(r.gpu.usable_bytes),
               "needed_bytes": e.device_total_bytes}
    return {
        "model": r.report.model, "kind": r.report.kind, "architecture": e.denoiser, "inputs": inputs,
        "trainable_parameters": e.trainable_params,
        "components": [{"name": c.name, "role": c.role, "class_name": c.class_name, "on_gpu": c.on_gpu,
                        "dtype": c.dtype, "trained": c.trained, "num_params": c.num_params,
                        "weights_bytes": c.weights_bytes, "note": c.note} for c in e.components],
        "phases": [{"name": p.name, "peak_allocated_bytes": p.peak_bytes, "resident_bytes": p.resident_bytes,
                    "extra_bytes": p.extra_bytes} for p in e.phases],
        "peak_phase": e.peak_phase, "peak_allocated_bytes": e.peak_allocated_bytes,
        "peak_reserved_bytes": e.peak_reserved_bytes, "device_total_bytes": e.device_total_bytes,
        "gradients_bytes": e.gradients_bytes, "optimizer_state_bytes": e.optimizer_state_bytes,
        "ema_bytes": e.ema_bytes, "fit": fit, "predicts": e.predicts, "overheads": e.settings.overheads.to_dict(),
        "assumptions": list(e.assumptions), "defaults": list(e.defaults), "notes": list(r.notes),
    }


def train_json(reports, errors=(), emits: dict | None = None) -> dict:
    return estimate_document(SCHEMA, "one GPU", [_model_json(r) for r in reports], errors)


def _rows(r):
    e = r.estimate
    yield "trained", f"{e.denoiser} ({e.settings.method}), {format_count(e.trainable_params)} trainable"
    for c in e.components:
        if c.on_gpu and not c.trained:
            yield f"{c.name} (frozen, {c.dtype})", format_bytes(c.weights_bytes)
        elif c.trained:
            yield f"{c.name} weights", format_bytes(c.weights_bytes)
    yield "gradients", format_bytes(e.gradients_bytes)
    yield "optimizer states", format_bytes(e.optimizer_state_bytes)
    if e.ema_bytes:
        yield "EMA copy (fp32)", format_bytes(e.ema_bytes)
    for p in e.phases:
        yield f"peak in {p.name}", format_bytes(p.peak_bytes)
    yield "peak allocated", format_bytes(e.peak_allocated_bytes)
    yield "peak reserved", format_bytes(e.peak_reserved_bytes)
    yield "device total", format_bytes(e.device_total_bytes)
    if r.gpu is not None:
        yield f"fits {r.gpu.name}", "yes" if r.fits else "no"


def markdown_train(reports) -> str:
    lines = []
    for r in reports:
        lines += [f"## {r.report.model}: training ({r.report.kind})", "", "| | bytes |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in _rows(r)]
        lines += ["", "Assumptions:", *[f"- {a}" for a in r.estimate.defaults + r.estimate.assumptions], ""]
    return "\n".join(lines)


def rich_train(console, reports) -> None:
    from rich.table import Table

    for r in reports:
        t = Table(title=f"{r.report.model}: training ({r.report.kind})", title_justify="left")
        t.add_column("per GPU", no_wrap=True)
        t.add_column("", justify="right", no_wrap=True)
        for k, v in _rows(r):
            t.add_row(k, v)
        console.print(t)
        for a in r.estimate.defaults:
            console.print(f"[dim]default: {a}[/dim]")
