"""``--plot FILE``, shared by ``hfmem infer`` and ``hfmem train``: the options, defined once, and the one place a
figure is drawn and written. The data comes from ``hfmem.api`` (``serving_curves`` / ``training_chart``); the
drawing is ``hfmem.plot.figure``'s (matplotlib, the ``plot`` extra, imported only when a plot is asked for)."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError


class PlotAxis(str, Enum):
    context = "context"
    batch = "batch"


# plain str options (not Path, not a repeatable list): the warm fast path (cli/fast.py) reads only plain types
PlotOpt = Annotated[Optional[str], typer.Option("--plot",
    help="Also draw the answer to FILE (.png or .svg): serving memory against the context (or --plot-axis "
         "batch), stacked by component, with each GPU's capacity and fit boundary; training memory by phase. "
         "Needs matplotlib (pip install 'hfmem[plot]'); with --format json the figure's data is the `plot` key.",
    metavar="FILE")]
PlotAxisOpt = Annotated[PlotAxis, typer.Option("--plot-axis",
    help="Serving plots: the x axis, context (at --batch) or batch (at --context).")]
PlotGpuOpt = Annotated[Optional[str], typer.Option("--plot-gpu",
    help="More GPUs' capacity lines and fit boundaries on the plot, comma-separated: --plot-gpu H100-80GB,A100-40GB.")]
PlotSizeOpt = Annotated[str, typer.Option("--plot-size", help="The figure's size in pixels, WIDTHxHEIGHT.")]

DEFAULT_SIZE = "1200x700"
_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")
# matplotlib draws at 100 dpi here; below ~200 px the axes and legend no longer fit, above 8000 px a PNG is
# tens of MB — both are more likely a typo than a wish
MIN_PX, MAX_PX = 200, 8000


def llamacpp_not_plotted() -> UsageError:
    """``--plot`` with a llama.cpp answer (the web app says the same): no curve for it yet."""
    return UsageError("--plot draws transformers and vLLM estimates; llama.cpp answers are not plotted yet",
                      hint="drop --plot, or use --engine transformers / vllm on the safetensors repo")


def plot_gpus(value: str | None) -> list[str]:
    """``--plot-gpu A,B`` as a list of GPU names (or sizes)."""
    return [g.strip() for g in (value or "").split(",") if g.strip()]


def plot_request(path: str | Path | None, size: str) -> tuple[Path, int, int] | None:
    """The checked ``--plot`` / ``--plot-size``: (path, width_px, height_px), or None without ``--plot``.
    Checked before anything is estimated: a bad suffix, size or a missing matplotlib is one line, at once."""
    if path is None:
        return None
    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"--plot {path}: the file must end in .png or .svg, not {path.suffix or '(no suffix)'}",
                         hint="e.g. --plot memory.png")
    m = _SIZE.match(size or "")
    if not m:
        raise UsageError(f"--plot-size {size!r}: expected WIDTHxHEIGHT in pixels",
                         hint=f"e.g. --plot-size {DEFAULT_SIZE}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (MIN_PX <= w <= MAX_PX and MIN_PX <= h <= MAX_PX):
        raise UsageError(f"--plot-size {size}: each side must be {MIN_PX} to {MAX_PX} pixels",
                         hint=f"e.g. --plot-size {DEFAULT_SIZE}")
    if not path.parent.exists():
        raise UsageError(f"--plot {path}: folder {path.parent} does not exist", hint="create it, or write elsewhere")
    from ..plot.figure import require_matplotlib

    require_matplotlib()
    return path, w, h


def draw(charts: list, request: tuple[Path, int, int]) -> Path:
    """Draw ``charts`` (one figure, several models on one set of axes) and write it; the path written."""
    from ..plot.figure import make_figure, save

    path, w, h = request
    return save(make_figure(charts, width_px=w, height_px=h), path)


def _not_plotted(model: str, exc) -> None:
    from .errors import error_line
    from .output import hint

    hint(f"note: {model} is not on the plot: {error_line(exc).removeprefix('hfmem: error: ')}")


def serving_plot(models: list[str], opts, settings, gpu, extra_gpus: list[str], axis: PlotAxis,
                 request: tuple[Path, int, int]) -> dict:
    """``hfmem infer --plot``: one serving curve per model (``api.serving_curves``, the same estimator as the
    table's), drawn to the file; the ``hfmem.plot/1`` document. A model without a closed-form estimate (its own
    code, a pipeline, GGUF) is left off the plot with a note; none left is that model's error."""
    from ..api import serving_curves
    from ..plot import plot_json

    failed: list = []
    charts = serving_curves(models, opts, settings=settings, gpu=gpu, compare_gpus=list(extra_gpus),
                            axis=axis.value, on_error=lambda m, e: failed.append((m, e)))
    if not charts:
        raise failed[0][1]
    for m, e in failed:
        _not_plotted(m, e)
    return _written(charts, request)


def training_plot(reports: list, opts, settings, extra_gpus: list[str],
                  request: tuple[Path, int, int]) -> dict:
    """``hfmem train --plot``: each report's memory by phase, as the table has it (``plot.curves.phase_chart``,
    nothing recomputed); each ``--plot-gpu`` adds a capacity line with the largest micro-batch that fits there
    (``api.training_chart_of``)."""
    from ..api import training_chart_of
    from ..errors import UnsupportedArchitectureError

    charts = []
    for r in reports:
        est = getattr(r, "estimate", None)
        if getattr(r, "rlhf", None) is not None or not isinstance(getattr(est, "phases", None), dict):
            _not_plotted(r.report.model if hasattr(r, "report") else str(r), UnsupportedArchitectureError(
                "its training step is answered per component model (pipeline, RLHF), not drawn by phase yet"))
            continue
        charts.append(training_chart_of(r, opts, compare_gpus=extra_gpus, settings=settings))
    if not charts:
        raise UnsupportedArchitectureError("nothing to plot: no model here has a training estimate by phase",
                                           hint="drop --plot")
    return _written(charts, request)


def _written(charts: list, request: tuple[Path, int, int]) -> dict:
    from ..plot import plot_json
    from .output import hint

    doc = plot_json(charts)  # before drawing: the JSON is what the figure draws
    path = draw(charts, request)
    hint(f"plot written to {path} ({request[1]}x{request[2]} px)")
    return doc
