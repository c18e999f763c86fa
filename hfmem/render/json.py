"""The JSON contract of ``hfmem [calc]`` (documented in docs/json.md). Version it when a key changes meaning."""

from __future__ import annotations

from .. import __version__
from ..inventory.towers import inventory_towers

SCHEMA = "hfmem.calculator/1"


def components_json(report, mode: str, adam_rule: str | None) -> list[dict]:
    """The ``components`` list of a composite repo's entry: every component of its layout, in the repo's order,
    with its own table (weightless ones: no parameters, an empty table)."""
    from ..scenarios.calculator import calculator_table

    layout = report.pipeline()
    out = []
    for c in layout.components:
        inv = c.inventory
        table = calculator_table(inv, mode, adam_rule) if inv is not None else None
        out.append({
            "name": c.name, "role": c.role, "library": c.library, "class_name": c.class_name, "folder": c.folder,
            "parameters": inv.num_params if inv else 0,
            "parameters_by_dtype": inv.params_by_dtype if inv else {},
            "buffers_bytes": inv.buffer_bytes if inv else 0,
            "method": inv.method if inv else None,
            "largest_layer": ({"names": table.largest_layer_names, "float32_bytes": table.largest_layer_float32_bytes,
                               "counted_class": table.counted_class} if table else None),
            "table": [{"dtype": r.dtype, "largest_layer_bytes": r.largest_layer_bytes, "total_bytes": r.total_bytes,
                       "training_adam_bytes": r.training_adam_bytes} for r in table.rows] if table else [],
            "notes": list(c.notes) + (list(inv.notes) if inv else []),
        })
    return out


def model_json(report, table) -> dict:
    out = _model_json(report, table)
    if report.layout:
        out["kind"] = report.kind
        out["components"] = components_json(report, table.mode, table.adam_rule)
    return out


def _model_json(report, table) -> dict:
    inv = report.inventory
    return {
        "model": report.model,
        "source": report.source,
        "revision": report.revision,
        "architecture": inv.architecture,
        "model_type": inv.model_type,
        "method": inv.method,
        "parameters": inv.num_params,
        "parameters_by_dtype": inv.params_by_dtype,
        "parameters_by_dtype_source": inv.params_dtype_source,
        "buffers_bytes": inv.buffer_bytes,
        "buffers": {"persistent_bytes": inv.persistent_buffer_bytes,
                    "non_persistent_bytes": inv.non_persistent_buffer_bytes},
        "tied_parameters": inv.tied_params,
        "tied_weights": inv.tied_weights,
        "largest_layer": {"names": table.largest_layer_names, "float32_bytes": table.largest_layer_float32_bytes,
                          "counted_class": table.counted_class},
        "table": [
            {"dtype": r.dtype, "largest_layer_bytes": r.largest_layer_bytes, "total_bytes": r.total_bytes,
             "training_adam_bytes": r.training_adam_bytes}
            for r in table.rows
        ],
        "checkpoint": inv.checkpoint,
        "modules": {name: {"parameters": n, "buffers_bytes": b} for name, (n, b) in inv.modules.items()},
        "towers": [{"role": t.role, "parameters": t.parameters, "buffers_bytes": t.buffers_bytes, "bytes": t.bytes,
                    "modules": list(t.modules)} for t in inventory_towers(inv, report.config)],
        "predicts": table.predicts,
        "assumptions": table.assumptions,
        "notes": report.notes + inv.notes + table.notes,
        "provenance": report.provenance,
        "from_result_cache": report.from_result_cache,
        "versions": inv.versions,
    }


def errors_json(failures) -> list[dict]:
    """Models a command could not answer, as (model, HfmemError) pairs → the documented ``errors`` list."""
    return [{"model": m, "error": str(e), "exit_code": e.exit_code} for m, e in failures]


def estimate_document(schema: str, scope: str, models: list[dict], errors=()) -> dict:
    """The envelope of ``infer`` / ``train`` JSON: schema, version, units, scope, models, errors."""
    return {"schema": schema, "hfmem_version": __version__, "units": "bytes", "scope": scope,
            "models": models, "errors": errors_json(errors)}


def calculator_json(reports, mode: str = "exact", adam_rule: str | None = None, errors=()) -> dict:
    """The document ``hfmem MODEL... --format json`` prints."""
    models = []
    for report in reports:
        table = report.table(mode, adam_rule)
        models.append(model_json(report, table))
    first = reports[0].table(mode, adam_rule) if reports else None
    return {
        "schema": SCHEMA,
        "hfmem_version": __version__,
        "mode": mode,
        "adam_rule": first.adam_rule if first else adam_rule,
        "units": "bytes",
        "models": models,
        "errors": errors_json(errors),
    }


# -- the shared report shape of infer / train / simulate (hfmem.*/2, docs/json.md) ----------------------

#: The keys every model entry of ``infer``, ``train`` and ``simulate`` carries, with the same meaning.
SHARED_ENTRY_KEYS = ("inputs", "components", "phases", "peak_phase", "peak_allocated_bytes",
                     "peak_reserved_bytes", "device_total_bytes", "fit", "assumptions", "notes")


def fit_json(*, gpu: str, fits: bool, gpu_memory_bytes: int, gpu_usable_bytes: int, gpu_capacity_basis: str,
             capacity_bytes: int, needed_bytes: int, confidence: dict | None = None, **limits) -> dict:
    """The ``fit`` object: the verdict against one GPU, the margin (capacity − needed; negative: short) and
    the limits that fit (``max_context`` / ``max_batch`` / ``max_seq`` / ...), as given in ``limits``. With the
    estimate's ``confidence`` (``confidence_json``): the verdict sentence and kind, and the margin at the
    device-total band's high end (``plan.fit.fit_verdict``)."""
    out = {"gpu": gpu, "fits": bool(fits), "gpu_memory_bytes": int(gpu_memory_bytes),
           "gpu_usable_bytes": int(gpu_usable_bytes), "gpu_capacity_basis": gpu_capacity_basis,
           "capacity_bytes": int(capacity_bytes), "needed_bytes": int(needed_bytes),
           "margin_bytes": int(capacity_bytes) - int(needed_bytes), **limits}
    if confidence is not None:
        from ..plan.fit import fit_verdict

        v = fit_verdict(capacity_bytes, needed_bytes, confidence.get("device_total"))
        out.update(verdict=v.sentence, verdict_kind=v.kind, margin_low_bytes=v.margin_low_bytes)
    return out


def confidence_json(entry: dict, scenario: str, *, engine: str | None = None, by_code: bool = False,
                    rlhf: bool = False) -> dict:
    """The ``confidence`` object of an ``infer`` / ``train`` model entry, from its three totals and the bands
    of the measured cases (``plan.confidence``; hfmem/data/confidence.json)."""
    from ..plan.confidence import confidence_of, scope_notes

    return confidence_of(entry, scenario, scope_notes(engine=engine, by_code=by_code, rlhf=rlhf))
