"""The data behind the plots: memory against context or batch (serving), training memory by phase.

Pure data, no matplotlib: every chart is a dataclass whose ``to_dict()`` is JSON-ready (ints, strings, lists,
dicts), so the JSON output carries exactly what a figure draws (``hfmem.plot.figure`` draws these objects and
nothing else). Byte counts are integers per GPU; a figure converts to GiB (2**30) only when it draws.

The serving curves are built by ``hfmem.api.serving_curve`` (it needs the model's estimator); the training chart
is read off a ``TrainingReport`` here (``phase_chart``), nothing recomputed but the capacity of extra GPUs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..api import TrainingReport
    from ..plan.gpus import GPU

SCHEMA = "hfmem.plot/1"
AXES = ("context", "batch")

# the x points a default curve spans: contexts in powers of two from CONTEXT_START, batches from 1
CONTEXT_START = 256
CONTEXT_CAP = 1 << 20   # 1M tokens: past every model's declared context but a few; the curve stops here
BATCH_CAP = 1024        # the power-of-two batches stop here (a fit limit beyond it is still a point)
BATCH_MIN_TOP = 16


@dataclass
class CapacityLine:
    """One GPU's line on a chart. ``capacity_bytes``: what the engine may use per GPU (``plan.fit.capacity_bytes``:
    vLLM takes gpu_memory_utilization × the GPU's usable memory, others the usable memory). ``fit_limit``: the
    largest value of the chart's axis that fits on ``gpus`` of these GPUs at the other settings — the solver's
    exact answer (``plan.fit.solve``'s max_context / max_batch; training: ``TrainingReport.max_batch``), not read
    off the plotted points; None when not even the smallest fits, or when it was not computed.
    ``fit_limit_by``: what sets the limit — "memory", or "model" (the context reached the model's
    max_position_embeddings first); None with no limit."""

    gpu: str
    gpus: int
    capacity_bytes: int
    fit_limit: int | None
    fit_limit_by: str | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ServingCurve:
    """Serving memory per GPU at each point of one axis ("context" or "batch"), the other settings fixed.

    ``quantity`` names what the stack of ``components`` sums to at each point: "device_total_bytes", the
    estimate's device total (what nvidia-smi shows: the allocator's reserved memory plus the CUDA context).
    ``components``: the estimate's components at the peak phase, same names and order, one value per point;
    ``totals_bytes`` is their sum and ``peak_allocated_bytes`` the allocated peak (the device total less the
    allocator reserve and the CUDA context). ``chosen``: the user's own setting on the axis (one of ``values``);
    ``settings``: the settings of that point (``InferenceSettings.to_dict()``)."""

    model: str
    axis: str
    values: list[int]
    chosen: int
    quantity: str
    components: dict[str, list[int]]
    totals_bytes: list[int]
    peak_allocated_bytes: list[int]
    capacities: list[CapacityLine]
    settings: dict
    engine: str
    weights_format: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["capacities"] = [c.to_dict() for c in self.capacities]
        d["kind"] = "serving"
        return d

    def total_at(self, x: int) -> int:
        """The device total at axis value ``x`` (one of ``values``)."""
        return self.totals_bytes[self.values.index(x)]


@dataclass
class PhaseChart:
    """Training memory per GPU by phase of one step: ``phases`` is ``TrainEstimate.phases`` (peak allocated in
    each phase: forward, backward, optimizer_step, ...), ``components`` the estimate's components at
    ``peak_phase``; ``peak_reserved_bytes`` adds the caching allocator's reserve, ``device_total_bytes`` the
    CUDA context too (what must fit). ``capacities``: a line per GPU, ``fit_limit`` the largest micro-batch that
    fits (``fit_axis`` "batch"), from the report; None where not computed."""

    model: str
    phases: dict[str, int]
    peak_phase: str
    components: dict[str, int]
    peak_reserved_bytes: int
    device_total_bytes: int
    capacities: list[CapacityLine]
    settings: dict
    method: str
    fit_axis: str = "batch"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["capacities"] = [c.to_dict() for c in self.capacities]
        d["kind"] = "training"
        return d


def phase_chart(report: "TrainingReport", extra_gpus: "list[GPU]" = (), *,
                extra_max_batch: "list[int | None] | None" = None) -> PhaseChart:
    """The training chart of ``report`` (``hfmem.api.train``'s answer): its phases and components as they are.
    A line for the report's GPU (its max_batch as the fit limit) and one per ``extra_gpus`` (capacity only; a
    fit limit only where ``extra_max_batch`` gives one, in the same order). Capacity is the GPU's usable memory
    per GPU, what ``api.train`` judges the fit on."""
    est = report.estimate
    gpus = int(getattr(est.settings, "gpus", 1) or 1)
    lines: list[CapacityLine] = []
    if report.gpu is not None:
        lines.append(_train_line(report.gpu, gpus, report.max_batch))
    limits = list(extra_max_batch or [])
    for i, g in enumerate(extra_gpus):
        lines.append(_train_line(g, gpus, limits[i] if i < len(limits) else None))
    settings = est.settings.to_dict() if hasattr(est.settings, "to_dict") else asdict(est.settings)
    return PhaseChart(model=report.report.model, phases={k: int(v) for k, v in est.phases.items()},
                      peak_phase=est.peak_phase, components={k: int(v) for k, v in est.components.items()},
                      peak_reserved_bytes=int(est.peak_reserved_bytes), device_total_bytes=int(est.device_total_bytes),
                      capacities=lines, settings=settings, method=str(getattr(est.settings, "method", "")),
                      notes=list(report.notes))


def _train_line(gpu: "GPU", gpus: int, max_batch: int | None) -> CapacityLine:
    limit = int(max_batch) if max_batch else None  # 0: not even batch 1 fits
    return CapacityLine(gpu=gpu.name, gpus=gpus, capacity_bytes=int(gpu.usable_bytes), fit_limit=limit,
                        fit_limit_by="memory" if limit else None)


def default_values(axis: str, chosen: int, model_max: int | None, fit_limits: "list[int | None]") -> list[int]:
    """The x points of a curve: context — powers of two from 256 up to the largest of the chosen context, the
    model's declared maximum (none declared: 4 × the chosen context) and the fit limits (at most 1M tokens), and
    that top itself; batch — 1, 2, 4, ...
    up to the largest of twice the chosen batch, twice each fit limit and 16, at most 1024. Both add the chosen
    value and every fit limit (so the boundary and the user's point are exact points of the curve).
    Ascending, unique."""
    limits = [int(v) for v in fit_limits if v]
    chosen = int(chosen)
    if axis == "context":
        # a model that declares no maximum: four times the chosen context, so the curve shows a trend
        top = min(max([chosen, int(model_max or 4 * chosen), *limits]), CONTEXT_CAP)
        points = {top}
        p = CONTEXT_START
        while p <= top:
            points.add(p)
            p *= 2
        cap = CONTEXT_CAP
    elif axis == "batch":
        top = min(max([2 * chosen, *(2 * v for v in limits), BATCH_MIN_TOP]), BATCH_CAP)
        points = set()
        p = 1
        while p <= top:
            points.add(p)
            p *= 2
        cap = None
    else:
        from ..errors import UsageError

        raise UsageError(f"plot axis must be one of {', '.join(AXES)}, not {axis!r}",
                         hint="context: memory against the context length; batch: against the batch")
    points.add(chosen)
    points.update(v for v in limits if cap is None or v <= cap)
    return sorted(v for v in points if v >= 1)


def plot_json(charts: "list[ServingCurve | PhaseChart]") -> dict:
    """The JSON of a plot: ``{"schema": "hfmem.plot/1", "kind": "serving"|"training", "charts": [...]}``;
    each chart's ``to_dict()``. Serving and training charts do not share a plot."""
    charts = list(charts)
    kinds = {"training" if isinstance(c, PhaseChart) else "serving" for c in charts}
    if len(kinds) > 1:
        from ..errors import UsageError

        raise UsageError("one plot holds serving curves or training charts, not both",
                         hint="plot serving and training separately")
    return {"schema": SCHEMA, "kind": kinds.pop() if kinds else "serving", "charts": [c.to_dict() for c in charts]}
