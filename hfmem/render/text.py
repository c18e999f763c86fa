"""Terminal table (rich) and Markdown for the calculator (both read the same CalculatorTable rows), and the
footnote lines every command's table and Markdown share."""

from __future__ import annotations

from dataclasses import dataclass

from ..inventory.towers import inventory_towers, towers_line
from ..units import calculator_units, format_binary, format_count

HEADERS = ("dtype", "Largest Layer or Residual Group", "Total Size", "Training using Adam")
UNITS_NOTE = ("sizes as the Model Memory Calculator prints them: KB/MB/GB are binary (1 GB = 2^30 bytes), "
              "rounded with Python's round(x, 2)")


def _cell(value) -> str:
    return "N/A" if value is None else calculator_units(value)


def _source_line(report) -> str:
    p = report.provenance
    if report.source == "hub":
        return f"Hub {p.get('endpoint', '')}, revision {str(report.revision)[:12]}"
    if report.source == "local":
        return f"local folder {p.get('path')}"
    if report.source == "hf-cache":
        return f"Hugging Face cache, revision {str(report.revision)[:12]}"
    return f"hfmem snapshot ({p.get('origin', 'snapshot')}, built {p.get('built_at', '?')})"


def _dtypes_line(inv) -> str:
    parts = [f"{k} {format_count(v).split(' (')[0]}" for k, v in inv.params_by_dtype.items()]
    line = ", ".join(parts) + f" (from {inv.params_dtype_source})"
    if inv.checkpoint:
        line += f"; checkpoint {format_binary(inv.checkpoint['bytes'])} in {inv.checkpoint['files']} file(s)"
    return line


def header_lines(report) -> list[tuple[str, str]]:
    inv = report.inventory
    how = {"meta-model (mapped)": f"custom '{inv.model_type}' code not run: mapped to this transformers class",
           "remote-code": "built with the repository's own code",
           "safetensors-headers": "counted from safetensors headers",
           "meta-model": "transformers, built on the meta device",
           "headers-exact": "transformers' module tree, read off the safetensors headers (no model built)",
           "pipeline": "every component of the pipeline together",
           }.get(inv.method, inv.method)
    arch = f"{inv.architecture} ({how})"
    cached = " · from hfmem's result cache" if report.from_result_cache else ""
    return [
        ("source", _source_line(report) + cached),
        ("architecture", arch),
        ("parameters", format_count(inv.num_params)
         + (f" · {inv.tied_params:,} tied (counted once)" if inv.tied_params else "")),
        ("buffers", f"{format_binary(inv.buffer_bytes)} ({inv.persistent_buffer_bytes:,} B persistent, "
                    f"{inv.non_persistent_buffer_bytes:,} B non-persistent)"),
        ("dtypes", _dtypes_line(inv)),
    ]


def footnotes(report, table) -> list[str]:
    names = table.largest_layer_names
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more of the same size" if len(names) > 3 else "")
    notes = [f"Predicts: {table.predicts}."]
    notes += [a[0].upper() + a[1:] + (f" — here {shown}" if a.startswith("largest layer") else "") + "."
              for a in table.assumptions]
    if not any(a.startswith("largest layer") for a in table.assumptions):
        notes.append(f"Largest layer or residual group: {shown}.")
    towers = towers_line(inventory_towers(report.inventory, report.config))
    if towers:
        notes.append(towers[0].upper() + towers[1:] + " parameters.")
    notes.append(UNITS_NOTE[0].upper() + UNITS_NOTE[1:] + ".")
    notes += [n[0].upper() + n[1:] + ("" if n.endswith(".") else ".")
              for n in report.notes + report.inventory.notes + table.notes]
    return notes


def component_line(comp) -> str:
    """One component's heading: name, role, class, parameters and dtypes."""
    inv = comp.inventory
    role = "" if comp.role == comp.name else f" — {comp.role.replace('_', ' ')}"
    return (f"{comp.name}{role}, {comp.library} {comp.class_name}: {format_count(inv.num_params)}"
            f" ({_dtypes_line(inv)}; {inv.method})")


def _component_sections(report, table):
    from ..scenarios.calculator import component_tables, shows_components

    return component_tables(report, table.mode, table.adam_rule) if shows_components(report) else []


def _rich_rows(console, title: str, table) -> None:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for i, h in enumerate(HEADERS):
        t.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    for r in table.rows:
        t.add_row(r.dtype, _cell(r.largest_layer_bytes), _cell(r.total_bytes), _cell(r.training_adam_bytes))
    console.print(t)


def rich_single(console, report, table) -> None:
    title = f"Memory usage for '{report.model}'" + (" (accelerate-compatible)" if table.mode == "accelerate" else "")
    for label, value in header_lines(report):
        console.print(f"[bold]{label:>12}[/bold]  {value}", highlight=False)
    sections = _component_sections(report, table)
    for comp, ctable in sections:  # a pipeline: each component with weights, then the whole
        console.print(f"[bold]{'component':>12}[/bold]  {component_line(comp)}", highlight=False)
        _rich_rows(console, f"{comp.name} ({comp.class_name})", ctable)
    if sections:
        title += " — the whole pipeline"
    _rich_rows(console, title, table)
    print_footnotes(console, footnotes(report, table))


def side_by_side_rows(reports, tables) -> list[tuple[str, list[str]]]:
    rows: list[tuple[str, list[str]]] = [
        ("architecture", [r.inventory.architecture for r in reports]),
        ("source", [r.source + (" (cached)" if r.from_result_cache else "") for r in reports]),
        ("parameters", [format_count(r.inventory.num_params) for r in reports]),
        ("checkpoint dtype", [", ".join(r.inventory.params_by_dtype) for r in reports]),
    ]
    for i, label in enumerate(("float32", "float16/bfloat16", "int8", "int4")):
        rows.append((f"{label} total", [_cell(t.rows[i].total_bytes) for t in tables]))
        rows.append((f"{label} largest layer", [_cell(t.rows[i].largest_layer_bytes) for t in tables]))
        rows.append((f"{label} Adam", [_cell(t.rows[i].training_adam_bytes) for t in tables]))
    return rows


def rich_many(console, reports, tables) -> None:
    from rich.table import Table

    t = Table(title="Memory usage, side by side", title_justify="left")
    t.add_column("", style="bold", no_wrap=True)
    for r in reports:
        t.add_column(r.model, justify="right")
    for label, cells in side_by_side_rows(reports, tables):
        t.add_row(label, *cells)
    console.print(t)
    print_footnotes(console, [f"Predicts: {tables[0].predicts}.",
                              f"{tables[0].assumptions[-1][0].upper() + tables[0].assumptions[-1][1:]}.",
                              f"{UNITS_NOTE[0].upper() + UNITS_NOTE[1:]}. Per-model notes: --format json or one "
                              "model at a time."])


def _md_table(headers, rows) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def markdown(reports, tables) -> str:
    lines: list[str] = []
    if len(reports) == 1:
        report, table = reports[0], tables[0]
        lines.append(f"## Memory usage for `{report.model}`")
        lines.append("")
        lines += [f"- **{k}**: {v}" for k, v in header_lines(report)]
        lines.append("")
        sections = _component_sections(report, table)
        for comp, ctable in sections:
            lines.append(f"### `{comp.name}` ({comp.class_name})")
            lines.append("")
            lines.append(component_line(comp))
            lines.append("")
            lines += _md_table(HEADERS, [[r.dtype, _cell(r.largest_layer_bytes), _cell(r.total_bytes),
                                          _cell(r.training_adam_bytes)] for r in ctable.rows])
            lines.append("")
        if sections:
            lines.append("### The whole pipeline")
            lines.append("")
        lines += _md_table(HEADERS, [[r.dtype, _cell(r.largest_layer_bytes), _cell(r.total_bytes),
                                      _cell(r.training_adam_bytes)] for r in table.rows])
        lines.append("")
        lines += markdown_footnotes(footnotes(report, table))
    else:
        lines.append("## Memory usage, side by side")
        lines.append("")
        lines += _md_table([""] + [f"`{r.model}`" for r in reports],
                           [[label] + cells for label, cells in side_by_side_rows(reports, tables)])
        lines.append("")
        lines.append(f"1. Predicts: {tables[0].predicts}.")
        lines.append(f"2. {UNITS_NOTE[0].upper() + UNITS_NOTE[1:]}.")
    return "\n".join(lines) + "\n"


# -- footnotes ----------------------------------------------------------------------------------------------
# A footnote with several parts (the assumptions, what each total predicts) is printed as its numbered head
# line and one short indented line per part, not as one paragraph joined with "; ": each part can be read
# (and found) on its own. The parts are the API's own strings, unchanged, in the API's order.


@dataclass(frozen=True)
class Footnote:
    """A footnote of several parts: ``head`` (e.g. "Assumptions:") and the ``parts`` listed under it."""
    head: str
    parts: tuple[str, ...]


def _wrapped(first: str, rest: str, text: str, width: int) -> list[str]:
    """``text`` wrapped to ``width`` columns: the first line after ``first``, the others after ``rest``.
    A token longer than the line (a URL, a class path) is left whole rather than cut."""
    import textwrap

    return textwrap.wrap(text, width=max(width, len(first) + 20), initial_indent=first, subsequent_indent=rest,
                         break_long_words=False, break_on_hyphens=False) or [first.rstrip()]


def footnote_lines(notes, width: int | None = None) -> list[str]:
    """The numbered lines of ``notes`` (each a str or a ``Footnote``), wrapped to ``width`` when given (the
    terminal table) or one line per note and part (``width=None``: Markdown, whose reader wraps)."""
    out: list[str] = []
    for i, note in enumerate(notes, 1):
        number = f"{i}. "
        head = note.head if isinstance(note, Footnote) else note
        if width is None:
            out.append(number + head)
        else:
            out += _wrapped(number, " " * len(number), head, width)
        if isinstance(note, Footnote):
            bullet = " " * len(number) + "- "
            for part in note.parts:
                if width is None:
                    out.append(bullet + part)
                else:
                    out += _wrapped(bullet, " " * len(bullet), part, width)
    return out


def print_footnotes(console, notes) -> None:
    """The footnotes under a terminal table: dim, wrapped to the console's width (no rich markup is read)."""
    from rich.text import Text

    for line in footnote_lines(notes, console.width):
        console.print(Text(line, style="dim"), highlight=False, soft_wrap=True)


def markdown_footnotes(notes) -> list[str]:
    """The footnotes as a Markdown numbered list; a ``Footnote``'s parts as a nested bullet list."""
    return footnote_lines(notes, None)
