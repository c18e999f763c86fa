"""``hfmem measure``: run the settings of an estimate for real on this machine's CUDA GPU, with random weights
built from the model's config.json (no weight download), and put the estimate and the measured
``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` / device memory used side by side.

    import hfmem
    r = hfmem.measure("Qwen/Qwen2-0.5B-Instruct", "train", hfmem.Options(offline=True), batch=2, seq=512)
    r.rows()            # [(quantity, estimate bytes, measured bytes, error), ...]
    r.record            # the hfmem.measured/1 case (benchmarks/measured/README.md)

Without a CUDA GPU, ``NoCudaDeviceError`` (exit 69 on the command line). This module imports no torch:
the run happens in a child process (``child.py``) that does.

``hfmem.measure`` is both this package and its function: the package object is made callable (below), so
``hfmem.measure(...)`` works whichever of the two an earlier import left on ``hfmem``.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

from .device import cuda_problem, require_cuda  # noqa: F401  (public here)

__all__ = ["MeasureReport", "measure", "measure_report", "require_cuda"]


@dataclass
class MeasureReport:
    """One measured run: hfmem's estimate, what the GPU measured, and the environment."""

    model: str
    mode: str                          # "train" | "infer"
    setting: str                       # one line: what ran
    settings: dict                     # the estimate's resolved settings (to_dict())
    estimate: dict                     # peak_allocated_bytes, peak_reserved_bytes, device_total_bytes, peak_phase
    measured: dict                     # status, reason, max_memory_allocated, max_memory_reserved, device_used_bytes
    environment: dict
    record: dict                       # the hfmem.measured/1 case
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.measured.get("status") == "ok"

    def rows(self) -> list[tuple[str, int | None, int | None, float | None]]:
        """(quantity, estimate, measured, error = (estimate - measured) / measured)."""
        from .record import QUANTITIES

        out = []
        for measured_key, estimate_key, quantity in QUANTITIES:
            e, m = self.estimate.get(estimate_key), self.measured.get(measured_key)
            out.append((quantity, e, m, (e - m) / m if e is not None and m else None))
        return out

    def to_dict(self) -> dict:
        return {"model": self.model, "mode": self.mode, "setting": self.setting, "status": self.measured.get("status"),
                "reason": self.measured.get("reason"),
                "rows": [{"quantity": q, "estimate_bytes": e, "measured_bytes": m, "error": err}
                         for q, e, m, err in self.rows()],
                "phases": self.measured.get("phases", {}), "peak_phase_estimate": self.estimate.get("peak_phase"),
                "trainable_parameters": {"estimate": self.estimate.get("trainable_parameters"),
                                         "measured": self.measured.get("trainable_parameters")},
                "device_used_basis": self.measured.get("device_used_basis"), "settings": self.settings,
                "environment": self.environment, "notes": self.notes}


def _plan(mode: str, report) -> dict:
    from .plan import plan_infer, plan_train

    est = report.estimate
    if mode == "train":
        return plan_train(est.settings, rlhf="rlhf" if getattr(report, "rlhf", None) is not None else None)
    return plan_infer(est.settings, est)


def measure_report(mode: str, report, *, device: str = "cuda", timeout_s: float | None = None) -> MeasureReport:
    """Measure the estimate in ``report`` (an ``hfmem.api.TrainingReport`` / ``InferenceReport``): the same
    settings, run in a fresh child process on the CUDA GPU (``device="cpu"``: in this process on the CPU, a
    code-path check whose figures are 0)."""
    from .. import __version__
    from ..api import simulation_config
    from .plan import describe
    from .record import slug

    plan = _plan(mode, report)  # a setting the run cannot reproduce is refused before anything starts
    if device.startswith("cuda"):
        require_cuda()
    config = simulation_config(report.report)
    if device.startswith("cuda"):
        from .child import run_isolated

        rec = run_isolated({"plan": plan, "config": config}, timeout_s)
    else:
        from . import runner

        rec = runner.run(plan, config, device=device)
        rec["smoke_cpu"] = True
    est = report.estimate
    model = report.report.model
    estimate = {"peak_allocated_bytes": est.peak_allocated_bytes, "peak_reserved_bytes": est.peak_reserved_bytes,
                "device_total_bytes": est.device_total_bytes, "peak_phase": est.peak_phase}
    if mode == "train":
        estimate["trainable_parameters"] = est.trainable_params
    environment = rec.pop("environment", {})
    case = {"key": f"measure-{slug(model)}-{mode}", "setting": describe(plan), "model": model, "layers": None,
            "mode": mode, **rec, "estimate_bytes": est.peak_allocated_bytes, "estimate_basis": f"hfmem {__version__}",
            "settings": est.settings.to_dict(), "estimate": {k: estimate[k] for k in
                                                             ("peak_allocated_bytes", "peak_reserved_bytes",
                                                              "device_total_bytes")},
            "plan": plan, "config": config, "environment": environment}
    measured = {k: rec.get(k) for k in ("status", "reason", "max_memory_allocated", "max_memory_reserved",
                                        "device_used_bytes", "device_used_basis", "phases", "trainable_parameters",
                                        "all_parameters")}
    notes = list(report.notes)
    if mode == "train" and measured.get("trainable_parameters") not in (None, est.trainable_params):
        notes.append(f"trainable parameters differ: hfmem counts {est.trainable_params:,}, the run has "
                     f"{measured['trainable_parameters']:,}")
    return MeasureReport(model, mode, case["setting"], case["settings"], estimate, measured, environment, case, notes)


def measure(model: str, mode: str = "train", options=None, *, out: str | Path | None = None,
            timeout_s: float | None = None, **settings) -> MeasureReport:
    """``hfmem measure train|infer MODEL``: estimate ``model`` with ``settings`` (the keyword arguments of
    ``hfmem.train`` / ``hfmem.infer``), then run those settings on the CUDA GPU and measure them. ``out``:
    write the ``hfmem.measured/1`` record there. ``NoCudaDeviceError`` without a CUDA GPU (checked first);
    ``SettingsError`` for a setting one process on one GPU cannot run (several GPUs, FSDP, vLLM)."""
    from .. import api
    from ..errors import UsageError

    if mode not in ("train", "infer"):
        raise UsageError(f"unknown mode {mode!r}", hint="use \"train\" or \"infer\"")
    require_cuda()
    report = (api.train if mode == "train" else api.infer)(model, options, **settings)
    result = measure_report(mode, report, timeout_s=timeout_s)
    if out is not None:
        from .record import document, write

        write(Path(out), document([result.record], command=f"hfmem.measure({model!r}, {mode!r})"))
    return result


class _CallableModule(types.ModuleType):
    """``hfmem.measure(...)`` calls ``measure`` even where ``hfmem.measure`` is this package (an
    ``import hfmem.measure...`` binds the package to that name on ``hfmem``)."""

    def __call__(self, *args, **kwargs):
        return measure(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
