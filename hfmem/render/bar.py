"""A compact component bar under the serving and training tables: the device total split by component.

``component_bar`` is pure: it turns the components' bytes into cells of a fixed-width bar. The bar is scaled to
``max(device total, capacity)`` so that one scale shows both: when the run fits, the components fill part of the
bar, free memory (``·``) fills the rest and the GPU's capacity is the bar's right end; when it does not fit, the
capacity marker (``|``) falls inside the bar and every cell right of it is memory the GPU does not have. The
marker is one extra character between two cells (never replacing a cell), so the cells keep their widths.

Cells are given by the largest-remainder method (Hamilton's apportionment): each segment gets the whole cells of
its exact share ``width * bytes / scale``, and the cells left over go one each to the largest fractional parts,
so the widths always add up to ``width``. A component under half a cell may get no cell; the legend still names
it with its share, so nothing is hidden. Each component has its own glyph (and a colour on a terminal that
shows them), so the bar reads the same without colour.
"""

from __future__ import annotations

from dataclasses import dataclass

# (glyph, rich style) per component key, every glyph distinct; other keys get a glyph from _SPARE. The names are
# hfmem.vocab's (the plots and the web app say the same), shortened where the legend line is tight.
_KNOWN: dict[str, tuple[str, str]] = {
    "weights_bytes": ("█", "blue"),
    "master_weights_bytes": ("▇", "bright_blue"),
    "buffers_bytes": ("▆", "cyan"),
    "gradients_bytes": ("▚", "magenta"),
    "optimizer_bytes": ("▞", "yellow"),
    "kv_cache_bytes": ("▓", "green"),
    "activations_bytes": ("▒", "red"),
    "peak_working_bytes": ("%", "bright_red"),
    "allocator_reserve_bytes": ("░", "white"),
    "cuda_graphs_bytes": ("=", "bright_magenta"),
    "cuda_context_bytes": ("#", "bright_black"),
    "nccl_bytes": ("+", "bright_cyan"),
    # llama.cpp's buffers (render.llamacpp.bar_components)
    "model_bytes": ("▉", "blue"),
    "compute_bytes": ("▙", "red"),
    "output_bytes": ("o", "cyan"),
    "projector_bytes": ("▜", "yellow"),
}
_SHORT = {"master_weights_bytes": "master weights", "optimizer_bytes": "optimizer",
          "allocator_reserve_bytes": "reserve", "nccl_bytes": "NCCL", "peak_working_bytes": "rest of the peak"}
_SPARE = "*@&$~:^"
FREE_KEY = "free"
FREE_GLYPH = "·"
CAPACITY_MARK = "|"


@dataclass(frozen=True)
class Segment:
    key: str          # the component's key (``weights_bytes``) or ``free``
    label: str        # what the legend calls it
    size_bytes: int
    cells: int        # its width in the bar
    glyph: str
    style: str


def _label(key: str) -> str:
    from ..vocab import component_label

    return _SHORT.get(key) or component_label(key)


def _apportion(sizes: list[int], width: int) -> list[int]:
    """Largest-remainder apportionment of ``width`` cells to ``sizes`` (ties: the earlier segment first)."""
    scale = sum(sizes)
    if scale <= 0 or width <= 0:
        return [0] * len(sizes)
    # exact integer arithmetic: quota_i = width * size_i / scale as a whole part and a remainder
    whole = [width * s // scale for s in sizes]
    rema = [width * s % scale for s in sizes]
    left = width - sum(whole)
    for i in sorted(range(len(sizes)), key=lambda i: (-rema[i], i))[:left]:
        whole[i] += 1
    return whole


def component_bar(components: dict[str, int], capacity_bytes: int | None, width: int) -> list[Segment]:
    """The bar's segments, in the components' order, then ``free`` (capacity above the total, when given and
    larger). Components of 0 bytes are left out; the cells add up to ``width``."""
    items = [(k, int(v)) for k, v in components.items() if v and v > 0]
    total = sum(v for _, v in items)
    if capacity_bytes is not None and capacity_bytes > total:
        items.append((FREE_KEY, capacity_bytes - total))
    cells = _apportion([v for _, v in items], width)
    out, spare = [], iter(_SPARE)
    for (key, size), n in zip(items, cells):
        if key == FREE_KEY:
            glyph, style, label = FREE_GLYPH, "dim", "free"
        elif key in _KNOWN:
            (glyph, style), label = _KNOWN[key], _label(key)
        else:
            glyph, style, label = next(spare, "?"), "default", _label(key)
        out.append(Segment(key, label, size, n, glyph, style))
    return out


def capacity_cell(total_bytes: int, capacity_bytes: int, width: int) -> int:
    """Where the capacity marker goes: after this many cells of a bar scaled to max(total, capacity)."""
    scale = max(total_bytes, capacity_bytes)
    return width if scale <= 0 else min(width, round(width * capacity_bytes / scale))


def _share(part: int, whole: int) -> str:
    if whole <= 0:
        return "-"
    share = part / whole
    return "<0.1%" if 0 < share < 0.0005 else f"{share:.1%}"


def bar_lines(components: dict[str, int], capacity_bytes: int | None, width: int, *, gpu: str | None = None,
              line_width: int = 100, total_bytes: int | None = None):
    """The bar and its legend as rich ``Text`` lines: the bar with the device total (and the capacity), then
    each segment's glyph, name and share of the device total, wrapped to ``line_width``."""
    from rich.text import Text

    from ..units import format_binary

    segments = component_bar(components, capacity_bytes, width)
    parts = [s for s in segments if s.key != FREE_KEY]
    total = sum(s.size_bytes for s in parts) if total_bytes is None else total_bytes
    bar = Text()
    mark = capacity_cell(sum(s.size_bytes for s in parts), capacity_bytes, width) if capacity_bytes else None
    done = 0
    for s in segments:
        for _ in range(s.cells):
            if mark is not None and done == mark:
                bar.append(CAPACITY_MARK, style="bold")
            bar.append(s.glyph, style=s.style)
            done += 1
    if mark is not None and done == mark:
        bar.append(CAPACITY_MARK, style="bold")
    summary = f"  {format_binary(total)}"
    if capacity_bytes:
        summary += f" of {format_binary(capacity_bytes)}" + (f" on {gpu}" if gpu else "") + \
            f" ({_share(total, capacity_bytes)}; {CAPACITY_MARK} = capacity)"
    bar.append(summary)
    lines = [bar]
    entries = [(s, f"{s.glyph} {s.label} {_share(s.size_bytes, total)}") for s in parts]
    if capacity_bytes and capacity_bytes > sum(s.size_bytes for s in parts):
        free = next(s for s in segments if s.key == FREE_KEY)
        entries.append((free, f"{FREE_GLYPH} free {format_binary(free.size_bytes)}"))
    line = Text()
    for seg, entry in entries:
        if line.plain and len(line.plain) + 2 + len(entry) > line_width:
            lines.append(line)
            line = Text()
        if line.plain:
            line.append("  ")
        line.append(entry[0], style=seg.style)
        line.append(entry[1:])
    if line.plain:
        lines.append(line)
    return lines


def print_bars(console, rows) -> None:
    """One bar per ``(model, components, device_total_bytes, capacity_bytes or None, gpu name or None)`` under
    a table; the model's name heads its bar when there are several."""
    from rich.text import Text

    width = max(20, min(48, console.width - 48))
    for model, components, total, capacity, gpu in rows:
        if not any(v and v > 0 for v in components.values()):
            continue
        if len(rows) > 1:
            console.print(Text(f"{model}:", style="bold"), highlight=False)
        for line in bar_lines(components, capacity, width, gpu=gpu, line_width=console.width, total_bytes=total):
            console.print(line, highlight=False, soft_wrap=True)
