"""Draw the charts of ``hfmem.plot.curves`` with matplotlib (the optional ``plot`` extra).

matplotlib is imported inside the functions, never at module top, and only through its object API
(``matplotlib.figure.Figure`` with the Agg canvas): no pyplot, so no global figure state, no GUI backend, and
several figures may be drawn side by side (the web app draws one per request). Every artist that carries data
has a ``gid`` ("stack:<component>", "total:<model>", "capacity:<gpu>", "limit:<model>:<gpu>",
"chosen:<model>", "phase:<model>:<phase>" on each bar) so that the data can be read back from the figure, and
from an SVG.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import UsageError
from .curves import PhaseChart, ServingCurve

GIB = 1 << 30
FORMATS = (".png", ".svg")

PHASE_LABELS = {"forward": "forward", "backward": "backward", "optimizer_step": "optimizer step"}


def label(component: str) -> str:
    """A component's human name (``hfmem.vocab.component_label``): ``kv_cache_bytes`` → "KV cache"."""
    from ..vocab import component_label

    return component_label(component)


def require_matplotlib() -> None:
    """matplotlib is an optional extra: a one-line UsageError saying how to install it when it is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("plots need matplotlib, which is not installed",
                         hint="pip install 'hfmem[plot]'") from None


def _gib(n: int | float) -> float:
    return n / GIB


def _tokens(x: float, _pos=None) -> str:
    """An axis tick: 1,024 → "1K", 131,072 → "128K", 1,048,576 → "1M"; other values as integers."""
    x = int(round(x))
    if x >= 1 << 20 and x % (1 << 20) == 0:
        return f"{x >> 20}M"
    if x >= 1 << 10 and x % (1 << 10) == 0:
        return f"{x >> 10}K"
    return f"{x:,}"


def _capacity_label(c) -> str:
    return f"{c.gpu} x{c.gpus}: {_gib(c.capacity_bytes):.1f} GiB"


def _inches(px: int, dpi: int) -> float:
    """``px / dpi``, nudged up by the last float bits where needed: Agg truncates inches × dpi to whole pixels,
    and e.g. 1001 / 96 × 96 may come out a hair under 1001."""
    import math

    inches = px / dpi
    while int(inches * dpi) < px:
        inches = math.nextafter(inches, math.inf)
    return inches


def _new_figure(width_px: int, height_px: int, dpi: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if int(width_px) < 1 or int(height_px) < 1 or int(dpi) < 1:
        raise UsageError(f"a figure needs a positive size and dpi (got {width_px}x{height_px} px at {dpi} dpi)",
                         hint="e.g. 1200x700 px at 100 dpi")
    fig = Figure(figsize=(_inches(int(width_px), dpi), _inches(int(height_px), dpi)), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def make_figure(charts: list, *, width_px: int = 1200, height_px: int = 700, dpi: int = 100):
    """A ``matplotlib.figure.Figure`` of ``charts``: one ``ServingCurve`` — its components stacked against the
    axis; several — one device-total line per model; ``PhaseChart``s — grouped bars of each phase's peak.
    Capacity lines (horizontal), fit boundaries (vertical, dashed) and the chosen setting are marked. y in GiB
    (2**30 bytes), per GPU."""
    require_matplotlib()
    charts = list(charts)
    if not charts:
        raise UsageError("nothing to plot: no chart was given", hint="give at least one model")
    serving = [c for c in charts if isinstance(c, ServingCurve)]
    training = [c for c in charts if isinstance(c, PhaseChart)]
    if serving and training or len(serving) + len(training) != len(charts):
        raise UsageError("one figure holds serving curves or training charts, not both (nor anything else)",
                         hint="plot serving and training separately")
    axes = {c.axis for c in serving}
    if len(axes) > 1:
        raise UsageError("serving curves against context and against batch cannot share a figure",
                         hint="plot one axis at a time")
    fig = _new_figure(width_px, height_px, dpi)
    ax = fig.add_subplot(1, 1, 1)
    if training:
        _phases(ax, training)
    elif len(serving) == 1:
        _stack(ax, serving[0])
    else:
        _lines(ax, serving)
    ax.set_ylabel("GiB per GPU")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small", framealpha=0.85)
    fig.tight_layout()  # lays out inside the fixed canvas; the pixel size stays what was asked
    return fig


def _x_axis(ax, curves: list[ServingCurve]) -> None:
    from matplotlib.ticker import FuncFormatter

    axis = curves[0].axis
    lo = min(c.values[0] for c in curves)
    hi = max(c.values[-1] for c in curves)
    # contexts span decades (256 to 128K): log2. A batch axis too, once it spans more than a few doublings
    if axis == "context" or hi >= 32 * lo:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(_tokens))
    ax.set_xlabel("context (tokens per sequence)" if axis == "context" else "batch (sequences)")


GPU_COLORS = ("crimson", "darkorange", "purple", "saddlebrown", "teal")


def _gpu_colors(curves) -> dict[tuple, str]:
    """A colour per distinct GPU line (name, count, capacity) across ``curves``, in order of appearance."""
    keys = dict.fromkeys((cap.gpu, cap.gpus, cap.capacity_bytes) for c in curves for cap in c.capacities)
    return {k: GPU_COLORS[i % len(GPU_COLORS)] for i, k in enumerate(keys)}


def _capacities(ax, curves, *, limits_in_label: bool = False) -> None:
    """A horizontal line per distinct GPU capacity across ``curves``, once each. ``limits_in_label``: the label
    lists each chart's fit limit on that GPU (training: the largest micro-batch)."""
    for key, color in _gpu_colors(curves).items():
        cap = next(cap for c in curves for cap in c.capacities if (cap.gpu, cap.gpus, cap.capacity_bytes) == key)
        text = _capacity_label(cap)
        if limits_in_label:
            fits = [f"{c.model} {x.fit_limit:,}" if x.fit_limit else f"{c.model} none"
                    for c in curves for x in c.capacities if (x.gpu, x.gpus, x.capacity_bytes) == key]
            text += f" — largest batch that fits: {', '.join(fits)}"
        line = ax.axhline(_gib(cap.capacity_bytes), color=color, lw=1.4, label=text)
        line.set_gid(f"capacity:{cap.gpu}")


def _limits(ax, c, color: str | None, *, with_model: bool, colors: dict[tuple, str]) -> None:
    """The fit boundary of ``c`` on each GPU: a dashed vertical line at the largest value that fits, in the
    GPU's colour (``color`` None) or the model's."""
    for cap in c.capacities:
        if cap.fit_limit is None:
            continue
        by = " (model's maximum)" if cap.fit_limit_by == "model" else ""
        who = f"{c.model}: " if with_model else ""
        line = ax.axvline(cap.fit_limit, color=color or colors[(cap.gpu, cap.gpus, cap.capacity_bytes)],
                          ls="--", lw=1.1, label=f"{who}largest that fits {cap.gpu} x{cap.gpus}: "
                                                 f"{cap.fit_limit:,}{by}")
        line.set_gid(f"limit:{c.model}:{cap.gpu}")


def _stack(ax, c: ServingCurve) -> None:
    shown = [k for k, v in c.components.items() if any(v)]
    gib = [[_gib(b) for b in c.components[k]] for k in shown]
    polys = ax.stackplot(c.values, *gib, labels=[label(k) for k in shown], alpha=0.85)
    for k, poly in zip(shown, polys):
        poly.set_gid(f"stack:{k}")
    total, = ax.plot(c.values, [_gib(t) for t in c.totals_bytes], color="black", lw=1.2, label="device total")
    total.set_gid(f"total:{c.model}")
    _capacities(ax, [c])
    _limits(ax, c, None, with_model=False, colors=_gpu_colors([c]))
    _chosen(ax, c, "black")
    _x_axis(ax, [c])
    ax.set_title(f"{c.model}: serving memory vs {c.axis}\n{c.engine}, weights {c.weights_format}; "
                 "device total per GPU (reserved + CUDA context), by component", fontsize="medium")


def _chosen(ax, c: ServingCurve, color: str) -> None:
    y = _gib(c.total_at(c.chosen))
    dot, = ax.plot([c.chosen], [y], marker="o", ms=8, color=color, ls="none", zorder=5,
                   label=f"{c.model if color != 'black' else 'your setting'}: {c.axis} {c.chosen:,}, {y:.1f} GiB")
    dot.set_gid(f"chosen:{c.model}")


def _lines(ax, curves: list[ServingCurve]) -> None:
    colors = [f"C{i % 10}" for i in range(len(curves))]
    for c, color in zip(curves, colors):
        line, = ax.plot(c.values, [_gib(t) for t in c.totals_bytes], color=color, lw=1.8, label=c.model)
        line.set_gid(f"total:{c.model}")
        _chosen(ax, c, color)
        _limits(ax, c, color, with_model=True, colors={})
    _capacities(ax, curves)
    _x_axis(ax, curves)
    engines = ", ".join(dict.fromkeys(c.engine for c in curves))
    models = ", ".join(c.model for c in curves) if len(curves) <= 3 else f"{len(curves)} models"
    ax.set_title(f"{models}: serving memory vs {curves[0].axis}\n{engines}; device total per GPU "
                 "(reserved + CUDA context)", fontsize="medium")


def _phases(ax, charts: list[PhaseChart]) -> None:
    names = list(dict.fromkeys(p for c in charts for p in c.phases))
    n = len(charts)
    width = 0.8 / n
    for i, c in enumerate(charts):
        color = f"C{i % 10}"
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(names))]
        bars = ax.bar(xs, [_gib(c.phases.get(p, 0)) for p in names], width=width * 0.95, color=color,
                      label=f"{c.model} ({c.method}): peak allocated")
        for p, bar in zip(names, bars):
            bar.set_gid(f"phase:{c.model}:{p}")
        total = ax.axhline(_gib(c.device_total_bytes), color=color, ls=":", lw=1.5,
                           label=f"{c.model}: device total {_gib(c.device_total_bytes):.1f} GiB "
                                 f"(peak phase {PHASE_LABELS.get(c.peak_phase, c.peak_phase)})")
        total.set_gid(f"total:{c.model}")
    _capacities(ax, charts, limits_in_label=True)
    ax.set_xticks(range(len(names)), [PHASE_LABELS.get(p, p.replace("_", " ")) for p in names])
    ax.set_xlabel("phase of a training step")
    methods = ", ".join(dict.fromkeys(c.method for c in charts))
    models = ", ".join(c.model for c in charts)
    ax.set_title(f"{models}: training memory by phase\n{methods}; peak allocated and device total per GPU",
                 fontsize="medium")


def save(fig, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` as PNG or SVG (from the suffix), atomically (a temporary file in the same folder,
    then ``os.replace``). PNG: exactly the figure's pixel size (saved at the figure's own dpi, no tight bbox)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"plot file {path.name}: format {suffix or '(no suffix)'} is not supported",
                         hint="name it .png or .svg")
    if not path.parent.is_dir():
        raise UsageError(f"plot file {path}: the folder {path.parent} does not exist", hint="create it first")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                               suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            # no metadata date in an SVG: the same chart writes the same file
            extra = {"metadata": {"Date": None}} if suffix == ".svg" else {}
            fig.savefig(out, format=suffix[1:], dpi=fig.dpi, **extra)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def to_bytes(fig, fmt: str = "png") -> bytes:
    """The figure's PNG or SVG bytes (for a web page that serves them without a file)."""
    import io

    if f".{fmt.lower()}" not in FORMATS:
        raise UsageError(f"format {fmt} is not supported", hint="png or svg")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt.lower(), dpi=fig.dpi)
    return buf.getvalue()
