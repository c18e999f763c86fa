"""JSON, terminal table and Markdown for ``hfmem train``. Reads TrainingReport objects; computes nothing."""

from __future__ import annotations

from ..units import format_count
from .bar import print_bars
from .infer import PREDICTS, by_code, confidence_notes, predicts_footnote
from .text import Footnote, markdown_footnotes, print_footnotes
from .infer import size_or_dash as _size
from .json import confidence_json, estimate_document, fit_json

SCHEMA = "hfmem.train/2"


def _dict(obj):
    return obj.to_dict() if obj is not None and hasattr(obj, "to_dict") else obj


def _phase_list(phases: dict) -> list[dict]:
    """A training estimate's {phase: peak allocated} as the shared shape: [{name, peak_allocated_bytes}]."""
    return [{"name": k, "peak_allocated_bytes": v} for k, v in phases.items()]


def _rlhf_inputs(d: dict | None) -> dict:
    if d is None:
        return {"rlhf": None, "group_size": None, "rollout": None}
    return {"rlhf": d.get("algo"), "group_size": d.get("group_size"), "rollout": d.get("rollout")}


def _rlhf_components(d: dict, s) -> dict:
    """The RLHF step per GPU at its peak phase, in parts that add up to the three totals: what each model
    keeps resident (``<role>_resident_bytes``), the peak phase's own parts, the allocator reserve (peak
    reserved − peak allocated), the CUDA context and NCCL."""
    peak = next((p for p in d.get("phase_details", []) if p.get("name") == d.get("peak_phase")), None)
    out: dict[str, int] = {}
    if peak is not None:
        out.update({f"{role}_resident_bytes": int(v) for role, v in peak.get("resident_bytes", {}).items()})
        out.update({k if k.endswith("_bytes") else f"{k}_bytes": int(v)
                    for k, v in peak.get("dynamic_bytes", {}).items()})
    out["allocator_reserve_bytes"] = int(d["peak_reserved_bytes"]) - int(d["peak_allocated_bytes"])
    context = int(d["device_total_bytes"]) - int(d["peak_reserved_bytes"])
    nccl = int(s.overheads.nccl_bytes) if s.gpus > 1 else 0
    out["cuda_context_bytes"] = context - nccl
    if s.gpus > 1:
        out["nccl_bytes"] = nccl
    return out


def _rlhf_phases(d: dict) -> list[dict]:
    return [{"name": p["name"], "runs": p.get("runs"), "peak_allocated_bytes": p["allocated_bytes"],
             "peak_reserved_bytes": p["reserved_bytes"], "resident_bytes": p.get("resident_bytes", {}),
             "dynamic_bytes": p.get("dynamic_bytes", {})} for p in d.get("phase_details", [])]


def _rlhf_roles(d: dict) -> list[dict]:
    training = d.get("training") or {}
    roles = []
    for m in d.get("models", []):
        t = training.get(m.get("role"))
        roles.append({
            "role": m.get("role"), "trained": bool(m.get("trained")), "parameters": int(m.get("params", 0)),
            "weights_bytes": m.get("weights_bytes"), "gradients_bytes": m.get("gradients_bytes"),
            "optimizer_bytes": m.get("optimizer_bytes"), "other_bytes": m.get("other_bytes"),
            "cpu_bytes": m.get("cpu_bytes", 0), "placement": m.get("placement"), "precision": m.get("precision"),
            "resident_bytes": m.get("resident", {}),
            "training": None if t is None else {
                "scheme": t.get("scheme"), "phases": _phase_list(t.get("phases", {})),
                "peak_phase": t.get("peak_phase"), "peak_allocated_bytes": t.get("peak_allocated_bytes"),
                "micro_batch": t.get("micro_batch"), "seq": t.get("seq")},
            "notes": m.get("notes", []),
        })
    return roles


def _alone(e) -> dict:
    return {"components": e.components, "phases": _phase_list(e.phases), "peak_phase": e.peak_phase,
            "peak_allocated_bytes": e.peak_allocated_bytes, "peak_reserved_bytes": e.peak_reserved_bytes,
            "device_total_bytes": e.device_total_bytes, "cpu_bytes": e.cpu_bytes}


def _model_json(r, emit: str | None = None) -> dict:
    e, rep = r.estimate, r.report
    s = e.settings
    rl = _dict(r.rlhf)
    inputs = {k: v for k, v in s.to_dict().items() if k != "overheads"}
    inputs.update(world_size=s.gpus, tensor_parallel=s.tp, pipeline_parallel=s.pp, **_rlhf_inputs(rl))
    inputs["gpu"] = r.gpu.name if r.gpu else None
    out = {
        "model": rep.model,
        "source": rep.source,
        "revision": rep.revision,
        "architecture": rep.inventory.architecture,
        "model_type": rep.inventory.model_type,
        "inputs": inputs,
        "totals_describe": "rlhf" if rl is not None else "training",
        "parameters": rep.inventory.num_params,
        "trainable_parameters": e.trainable_params,
        "frozen_parameters": e.frozen_params,
        "scheme": e.scheme,
        "batch_inputs": e.batch_inputs,
        "components": e.components,
        "phases": _phase_list(e.phases),
        "peak_phase": e.peak_phase,
        "peak_allocated_bytes": e.peak_allocated_bytes,
        "peak_reserved_bytes": e.peak_reserved_bytes,
        "device_total_bytes": e.device_total_bytes,
        "fit": None,
        "per_gpu": {"gpus": s.gpus, "world_size": s.gpus, "peak_allocated_bytes": e.peak_allocated_bytes,
                    "peak_reserved_bytes": e.peak_reserved_bytes, "device_total_bytes": e.device_total_bytes},
        "cpu_bytes": e.cpu_bytes,
        "cpu_components": e.cpu_components,
        "activations": e.activations,
        "adapters": e.adapters,
        "predicts": PREDICTS,
        "overheads": s.overheads.to_dict(),
        "assumptions": e.assumptions,
        "notes": r.notes + e.notes + rep.inventory.notes,
    }
    if rl is not None:
        # The whole RLHF step on one GPU: components, phases and the totals all describe it; the model's own
        # training estimate moves to training_alone, each model's share to roles.
        out["training_alone"] = _alone(e)
        out.update(components=_rlhf_components(rl, s), phases=_rlhf_phases(rl), peak_phase=rl["peak_phase"],
                   peak_allocated_bytes=rl["peak_allocated_bytes"], peak_reserved_bytes=rl["peak_reserved_bytes"],
                   device_total_bytes=rl["device_total_bytes"], cpu_bytes=rl["cpu_bytes"],
                   roles=_rlhf_roles(rl))
        out["per_gpu"].update({k: out[k] for k in ("peak_allocated_bytes", "peak_reserved_bytes",
                                                   "device_total_bytes")})
        out["rlhf"] = rl  # deprecated (docs/json.md): read roles, phases, components and the totals
    out["confidence"] = _confidence(r, out)  # stated confidence: the bands of the measured cases
    if r.advice is not None:
        adv = _dict(r.advice)
        out["remedies"] = adv.get("remedies", [])
        out["remedies_that_help"] = adv.get("helping", [])
        out["remedies_that_do_not_help"] = adv.get("not_helping", [])
        out["advice_device_total_bytes"] = adv.get("device_total_bytes")
        out["advice_judges"] = adv.get("judged")
        out["plan"] = adv.get("plan")
    if r.gpu is not None:
        adv = _dict(r.advice) or {}
        max_batch = r.max_batch if r.max_batch is not None else adv.get("max_batch")
        max_seq = r.max_seq if r.max_seq is not None else adv.get("max_seq")
        out["fit"] = fit_json(gpu=r.gpu.name, fits=r.fits, gpu_memory_bytes=r.gpu.memory_bytes,
                              gpu_usable_bytes=r.gpu.usable_bytes, gpu_capacity_basis=r.gpu.capacity_basis,
                              capacity_bytes=r.gpu.usable_bytes, needed_bytes=out["device_total_bytes"],
                              confidence=out["confidence"], max_batch=max_batch, max_seq=max_seq,
                              max_seq_limited_by=r.max_seq_limited_by if max_seq is not None else None)
        # deprecated top-level copies (docs/json.md, "Changes of meaning"): read fit.*
        out.update(gpu_memory_bytes=r.gpu.memory_bytes, gpu_usable_bytes=r.gpu.usable_bytes,
                   gpu_capacity_basis=r.gpu.capacity_basis, fits=r.fits, max_batch=max_batch, max_seq=max_seq)
        if r.max_seq_limited_by is not None:
            out["max_seq_limited_by"] = r.max_seq_limited_by
    if emit:
        out["emit"] = emit
    return out


def _confidence(r, totals: dict) -> dict:
    """The ``confidence`` object for ``totals`` (the entry's three totals: the RLHF step's with --rlhf)."""
    return confidence_json(totals, "train", by_code=by_code(r.estimate), rlhf=r.rlhf is not None)


def train_json(reports, errors=(), emits: dict | None = None) -> dict:
    """The document ``hfmem train ... --format json`` prints."""
    emits = emits or {}
    return estimate_document(SCHEMA, "per GPU (rank 0) unless a key says otherwise; cpu_bytes per node",
                             [_model_json(r, emits.get(r.report.model)) for r in reports], errors)


# -- tables ------------------------------------------------------------------------------------------------

_LABELS = {
    "weights_bytes": "Weights", "master_weights_bytes": "fp32 master weights", "gradients_bytes": "Gradients",
    "optimizer_bytes": "Optimizer states", "fp32_gradients_bytes": "fp32 gradients (step)",
    "optimizer_step_temporary_bytes": "Optimizer step temporaries", "activations_bytes": "Activations (saved)",
    "allocator_reserve_bytes": "Allocator reserve", "cuda_context_bytes": "CUDA context", "nccl_bytes": "NCCL",
}


def _rlhf_summary(r) -> list[tuple[str, str]]:
    d = _dict(r.rlhf)
    rows = [(f"RLHF ({d.get('algo')}) models", ", ".join(m.get("role", "") for m in d.get("models", []))),
            (f"= Peak allocated ({d.get('peak_phase')})", _size(d.get("peak_allocated_bytes"))),
            ("= Peak reserved", _size(d.get("peak_reserved_bytes"))),
            ("= Device total (nvidia-smi)", _size(d.get("device_total_bytes")))]
    if d.get("cpu_bytes"):
        rows.append(("CPU RAM per node", _size(d["cpu_bytes"])))
    if r.gpu is not None:
        rows.append((f"Fits {r.estimate.settings.gpus} x {r.gpu.name}", "yes" if r.fits else "NO"))
    return rows


def _rows(r) -> list[tuple[str, str]]:
    if r.rlhf is not None:
        return _rlhf_summary(r)
    e = r.estimate
    rows = [("Trainable parameters", format_count(e.trainable_params)),
            ("Frozen parameters", format_count(e.frozen_params) if e.frozen_params else "-")]
    reserve_like = ("allocator_reserve_bytes", "cuda_context_bytes", "nccl_bytes")
    for k, v in e.components.items():
        if k in reserve_like or not v:
            continue
        rows.append((_LABELS.get(k, k.removesuffix("_bytes").replace("_", " ").capitalize()), _size(v)))
    for name, v in e.phases.items():
        rows.append((f"Peak in {name.replace('_', ' ')}", _size(v)))
    rows += [
        (f"= Peak allocated ({e.peak_phase.replace('_', ' ')})", _size(e.peak_allocated_bytes)),
        ("Allocator reserve", _size(e.components.get("allocator_reserve_bytes"))),
        ("= Peak reserved", _size(e.peak_reserved_bytes)),
        ("CUDA context", _size(e.components.get("cuda_context_bytes"))),
    ]
    if "nccl_bytes" in e.components:
        rows.append(("NCCL", _size(e.components["nccl_bytes"])))
    rows.append(("= Device total (nvidia-smi)", _size(e.device_total_bytes)))
    if e.cpu_bytes:
        rows.append(("CPU RAM per node", _size(e.cpu_bytes)))
    if r.gpu is not None and r.rlhf is None:
        rows.append((f"Fits {e.settings.gpus} x {r.gpu.name}", "yes" if r.fits else "NO"))
        if e.batch_inputs:  # estimated from the model's code: the batch is searched, the sequence is not
            rows.append(("Max micro-batch", "-" if r.max_batch is None else str(r.max_batch)))
        else:
            rows += [(f"Max micro-batch at seq {e.settings.seq:,}", str(r.max_batch)),
                     (f"Max seq at micro-batch {e.settings.batch}", "-" if r.max_seq is None else f"{r.max_seq:,}")]
    return rows


def _title(reports) -> str:
    s = reports[0].estimate.settings
    par = [f"{s.gpus} GPU(s)"]
    if s.zero is not None:
        par.append(f"ZeRO-{s.zero}" + (" + optimizer offload" if s.offload_optimizer else "")
                   + (" + param offload" if s.offload_param else ""))
    if s.fsdp:
        par.append(f"FSDP {s.fsdp}")
    if s.tp > 1 or s.pp > 1:
        par.append(f"tp {s.tp} x pp {s.pp}")
    sample = f"micro-batch {s.batch} x seq {s.seq:,}, {s.attn}"
    if reports[0].estimate.batch_inputs:
        from ..scenarios.by_simulation import describe_batch

        sample = "micro-" + describe_batch(reports[0].estimate.batch_inputs)
    if s.images:
        sample += f", {s.images} image(s) per sequence"
    what = (f"{s.method}, {s.precision}, {s.optimizer}, {sample}"
            + (", grad checkpointing" if s.grad_ckpt else "") + (f", accumulation {s.grad_accum}" if s.grad_accum > 1 else "")
            + "; " + ", ".join(par))
    names = ", ".join(f"'{r.report.model}'" for r in reports)
    return f"Fine-tuning memory per GPU for {names} — {what}"


def footnotes(reports) -> list:
    """The footnotes under the table (the web app shows the same): what each total predicts, the units, the
    assumptions, the notes and the confidence band."""
    notes = [predicts_footnote(PREDICTS),
             "The peak is the largest phase (end of forward, backward, optimizer step), not the sum of the rows "
             "above it. Units: KiB/MiB/GiB are binary; exact bytes are in --format json."]
    for r in reports:
        prefix = f"{r.report.model}: " if len(reports) > 1 else ""
        notes.append(Footnote(prefix + ("assumptions:" if prefix else "Assumptions:"),
                              tuple(r.estimate.assumptions)))
        for n in r.notes + r.estimate.notes:
            notes.append(prefix + n[0].upper() + n[1:] + ("" if n.endswith(".") else "."))
        totals = _dict(r.rlhf) if r.rlhf is not None else {
            "peak_allocated_bytes": r.estimate.peak_allocated_bytes,
            "peak_reserved_bytes": r.estimate.peak_reserved_bytes, "device_total_bytes": r.estimate.device_total_bytes}
        conf = _confidence(r, totals)
        fit = ((f"{r.estimate.settings.gpus} x {r.gpu.name}", r.gpu.usable_bytes, totals["device_total_bytes"])
               if r.gpu is not None else None)
        notes += [prefix + n + ("" if n.endswith(".") else ".") for n in confidence_notes(conf, fit)]
    return notes


_NOT_STATES = ("activations_bytes", "allocator_reserve_bytes", "cuda_context_bytes", "nccl_bytes")


def train_bar_components(e) -> dict[str, int]:
    """The device total split for the bar. The component rows do not add up to it: the peak is one phase,
    and the saved activations (a row) are freed before the optimizer step, whose temporaries come instead.
    So the bar shows the model states the rows list (weights, master weights, gradients, optimizer states,
    ...: all of them allocated at the optimizer step, so the peak phase holds at least as much), then the
    rest of the peak phase's allocation (peak allocated minus those states: that phase's activations and
    temporaries; at a forward peak without accumulation the gradients are not allocated yet and their share
    is activations too), then the allocator's reserve, the CUDA context and NCCL: the device total."""
    states = {k: v for k, v in e.components.items() if v and k not in _NOT_STATES}
    parts = dict(states)
    parts["peak_working_bytes"] = max(0, e.peak_allocated_bytes - sum(states.values()))
    for k in _NOT_STATES[1:]:
        if e.components.get(k):
            parts[k] = e.components[k]
    return parts


def _remedy_rows(r) -> list[list[str]]:
    """The remedies that save memory for this run (saves > 0), in the checklist's order."""
    adv = _dict(r.advice) or {}
    rows = []
    for rem in adv.get("remedies", []):
        if not rem.get("helps"):
            continue
        rows.append([str(len(rows) + 1), rem.get("name", ""), _size(rem.get("saves_bytes")),
                     _size(rem.get("device_total_bytes")), {True: "yes", False: "no"}.get(rem.get("fits"), "-"),
                     str(rem.get("cost", ""))])
    return rows


def _no_help_rows(r) -> list[list[str]]:
    """The remedies that do not reduce memory here, with why; then those that cannot be judged here."""
    adv = _dict(r.advice) or {}
    rems = adv.get("remedies", [])
    rows = [[rem.get("name", ""), str(rem.get("why_not_helping") or "")] for rem in rems if rem.get("helps") is False]
    rows += [[rem.get("name", ""), "not judged: " + str(rem.get("reason") or "")] for rem in rems
             if rem.get("helps") is None]
    return rows


def _advice_title(r) -> str:
    adv = _dict(r.advice) or {}
    what = ", every RLHF model" if adv.get("judged") == "rlhf" else ""
    return (f"If it runs out of memory ({r.report.model} on {r.gpu.name}; {_size(adv.get('device_total_bytes'))} "
            f"per GPU as asked{what})")


def _plan_line(r) -> str | None:
    adv = _dict(r.advice) or {}
    plan = adv.get("plan")
    if not plan:
        return "No plan fits: " + str(adv.get("plan_reason", "nothing searched fits"))
    return "Cheapest plan that fits: " + str(plan.get("summary") or plan.get("sentence") or plan)


def _rlhf_rows(r) -> tuple[list[list[str]], list[list[str]]]:
    d = _dict(r.rlhf) or {}
    models = [[m.get("role", ""), "yes" if m.get("trained") else "no", format_count(int(m.get("params", 0))),
               _size(m.get("weights_bytes")), _size(m.get("gradients_bytes")), _size(m.get("optimizer_bytes")),
               _size(m.get("other_bytes")), str(m.get("placement", ""))] for m in d.get("models", [])]
    phases = d.get("phases", {})
    if isinstance(phases, dict):
        items = list(phases.items())
    else:
        items = [(p.get("name"), p.get("peak_allocated_bytes", p.get("bytes"))) for p in phases]
    return models, [[str(k), _size(v if not isinstance(v, dict) else v.get("peak_allocated_bytes"))] for k, v in items]


def rich_train(console, reports) -> None:
    from rich.table import Table

    t = Table(title=_title(reports), title_justify="left")
    t.add_column("per GPU", no_wrap=True)
    for r in reports:
        t.add_column(r.report.model if len(reports) > 1 else "", justify="right", no_wrap=True)
    tables = [dict(_rows(r)) for r in reports]
    labels = list(dict.fromkeys(label for rows in tables for label in rows))
    for label in labels:
        t.add_row(label, *[rows.get(label, "-") for rows in tables])
    console.print(t)
    print_bars(console, [(r.report.model, train_bar_components(r.estimate), r.estimate.device_total_bytes,
                          r.gpu.usable_bytes if r.gpu is not None else None, r.gpu.name if r.gpu is not None else None)
                         for r in reports if r.rlhf is None])
    for r in reports:
        if r.rlhf is not None:
            models, phases = _rlhf_rows(r)
            mt = Table(title=f"RLHF models on each GPU ({r.report.model})", title_justify="left")
            for h in ("role", "trained", "parameters", "weights", "gradients", "optimizer", "other", "placement"):
                mt.add_column(h, justify="left" if h in ("role", "placement") else "right")
            for row in models:
                mt.add_row(*row)
            console.print(mt)
            pt = Table(title="RLHF phases (peak allocated per GPU)", title_justify="left")
            pt.add_column("phase")
            pt.add_column("peak", justify="right")
            for row in phases:
                pt.add_row(*row)
            console.print(pt)
        if r.advice is not None:
            at = Table(title=_advice_title(r), title_justify="left")
            for h in ("#", "remedy", "saves", "device total", "fits", "cost"):
                at.add_column(h, justify="right" if h in ("saves", "device total") else "left")
            for row in _remedy_rows(r):
                at.add_row(*row)
            console.print(at)
            no_help = _no_help_rows(r)
            if no_help:
                nt = Table(title="Does not help here", title_justify="left")
                nt.add_column("remedy")
                nt.add_column("why")
                for row in no_help:
                    nt.add_row(*row)
                console.print(nt)
            console.print(_plan_line(r))
    print_footnotes(console, footnotes(reports))


def markdown_train(reports) -> str:
    multi = len(reports) > 1
    head = ["per GPU"] + ([r.report.model for r in reports] if multi else ["bytes"])
    lines = [f"## {_title(reports)}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    tables = [dict(_rows(r)) for r in reports]
    for label in dict.fromkeys(label for rows in tables for label in rows):
        lines.append("| " + " | ".join([label] + [rows.get(label, "-") for rows in tables]) + " |")
    for r in reports:
        if r.advice is not None:
            lines += ["", f"### {_advice_title(r)}", "",
                      "| # | remedy | saves | device total | fits | cost |", "|---|---|---|---|---|---|"]
            lines += ["| " + " | ".join(row) + " |" for row in _remedy_rows(r)]
            no_help = _no_help_rows(r)
            if no_help:
                lines += ["", "#### Does not help here", "", "| remedy | why |", "|---|---|"]
                lines += ["| " + " | ".join(row) + " |" for row in no_help]
            lines += ["", _plan_line(r)]
        if r.rlhf is not None:
            models, phases = _rlhf_rows(r)
            lines += ["", "### RLHF models on each GPU", "",
                      "| role | trained | parameters | weights | gradients | optimizer | other | placement |",
                      "|---|---|---|---|---|---|---|---|"]
            lines += ["| " + " | ".join(row) + " |" for row in models]
            lines += ["", "| phase | peak |", "|---|---|"] + ["| " + " | ".join(row) + " |" for row in phases]
    lines.append("")
    lines += markdown_footnotes(footnotes(reports))
    return "\n".join(lines) + "\n"
