"""``hfmem measure train|infer MODEL...``: the settings of ``hfmem train`` / ``hfmem infer``, run for real on
this machine's CUDA GPU with random weights built from the config (no weight download), estimate and measured
side by side. A thin layer over ``hfmem.measure``.

The two sub-commands take exactly the options of ``hfmem train`` / ``hfmem infer`` (their signatures are
reused, plus ``--out``) and call those commands in "measure mode": each computes its reports as always,
then, at its end, hands them to ``hand_over`` here instead of rendering them. Without a CUDA GPU: one line
on stderr and exit 69 (``NoCudaDeviceError``, sysexits' EX_UNAVAILABLE), before anything is estimated.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import typing
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="Run hfmem train / infer settings for real on this machine's CUDA GPU (random weights "
                       "from the config, no download): estimate and measured side by side.",
                  no_args_is_help=True, rich_markup_mode=None)

# {"mode": "train" | "infer", "out": Path | None} while a measure sub-command runs its train/infer command
_SESSION: contextvars.ContextVar[dict | None] = contextvars.ContextVar("hfmem_measure_session", default=None)

OutOpt = Annotated[Optional[Path], typer.Option(
    "--out", help="Write the hfmem.measured/1 record (benchmarks/measured/README.md) to this file, e.g. "
                  "benchmarks/measured/my-gpu.json.")]


def active(mode: str) -> bool:
    """Whether the running ``mode`` command was called by ``hfmem measure MODE``."""
    session = _SESSION.get()
    return session is not None and session["mode"] == mode


@contextlib.contextmanager
def _session(mode: str, out: Path | None):
    token = _SESSION.set({"mode": mode, "out": out})
    try:
        yield
    finally:
        _SESSION.reset(token)


def hand_over(mode: str, reports: list, failures: list, fmt) -> None:
    """The end of ``hfmem train`` / ``hfmem infer`` in measure mode: measure each report's settings, print
    estimate vs measured through the one output sink, write the record with ``--out``."""
    from .. import measure as core
    from ..errors import HfmemError, MeasureRunError
    from ..measure import render
    from ..measure.record import document, write
    from .output import finish, hint

    results = []
    failures = list(failures)
    for r in reports:
        hint(f"measuring {r.report.model} ({mode}) on the GPU: build from config.json, random weights")
        try:
            m = core.measure_report(mode, r)
        except HfmemError as exc:
            if len(reports) == 1 and not failures:
                raise
            failures.append((r.report.model, exc))
            continue
        results.append(m)
        if not m.ok:
            failures.append((m.model, MeasureRunError(f"{m.model}: the run ended with {m.measured['status']}"
                                                      f"{': ' + m.measured['reason'] if m.measured.get('reason') else ''}",
                                                      hint="the table shows the peaks it reached")))
    out = (_SESSION.get() or {}).get("out")
    if out is not None and results:
        write(out, document([m.record for m in results], command=f"hfmem measure {mode}"))
        hint(f"record written to {out}")
    finish(fmt, results, failures, {}, json_doc=render.measure_json, markdown=render.markdown_measure,
           rich=render.rich_measure)


def _measured(command, mode: str):
    """``command`` (hfmem train / infer) with its own options plus ``--out``, run in measure mode; the GPU is
    checked first, so a machine without one learns it before any estimate is made."""
    hints = typing.get_type_hints(command, include_extras=True)
    params = [p.replace(annotation=hints[p.name]) for p in inspect.signature(command).parameters.values()]
    params.append(inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=OutOpt))

    def run(**kwargs):
        from ..measure.device import require_cuda

        out = kwargs.pop("out", None)
        require_cuda()
        with _session(mode, out):
            return command(**kwargs)

    run.__name__ = f"measure_{mode}"
    run.__doc__ = (f"Run `hfmem {mode}`'s settings for real on this machine's CUDA GPU and print the estimate "
                   "next to torch.cuda.max_memory_allocated, max_memory_reserved and the device memory used "
                   "(NVML). Random weights built from config.json, nothing downloaded; one process on one GPU. "
                   f"Takes every option of `hfmem {mode}`. Without a CUDA GPU: exit 69.")
    run.__signature__ = inspect.Signature(params)
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run


def _register() -> None:
    from .infer import infer
    from .train import train

    app.command("train")(_measured(train, "train"))
    app.command("infer")(_measured(infer, "infer"))


_register()
