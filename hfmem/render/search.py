"""JSON, terminal table and Markdown for ``hfmem search`` (``api.SearchReport``) and ``--largest --family``
(``plan.largest.LargestInFamily``). Computes nothing: every number is the report's; units appear only here."""

from __future__ import annotations

from dataclasses import asdict, fields, is_dataclass

from .. import __version__
from ..units import format_binary

SCHEMA = "hfmem.search/1"
FAMILY_SCHEMA = "hfmem.largest/1"
PREDICTS = ("needs (needed_bytes): the device total per GPU (reserved memory + CUDA context, what nvidia-smi shows) "
            "at the row's settings, as `hfmem infer` / `hfmem train` report it; left (margin_bytes): what remains of "
            "the memory the engine may use (capacity_bytes)")


def _settings_json(s) -> dict:
    out = {}
    for f in fields(s):
        v = getattr(s, f.name)
        if is_dataclass(v):
            v = asdict(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def scan_lines(r) -> list[str]:
    """What was scanned, in words: the output always says how much of the listing was judged."""
    where = "the Hub's model listing" if r.source == "hub" else "the shipped snapshot and the Hugging Face cache"
    why = {"end": "the whole listing", "limit": f"the listing was cut at --limit {r.scanned}; raise it to scan further",
           "time": "the --time-budget ran out; raise it to scan the rest"}[r.stopped_by]
    lines = [f"scanned {r.scanned} of {r.listed} models listed from {where} ({why}): {len(r.rows)} fit, "
             f"{len(r.not_fitting)} do not, {len(r.skipped)} could not be judged"]
    cache = []
    if r.listing_cached:
        cache.append("the listing")
    if r.rows_cached:
        cache.append(f"{r.rows_cached} rows")
    if cache:
        lines.append(f"from hfmem's cache: {' and '.join(cache)} (--refresh lists again; rows are kept per commit)")
    return lines


def search_json(r) -> dict:
    q = asdict(r.query)
    q["tags"] = list(r.query.tags)
    return {
        "schema": SCHEMA, "hfmem_version": __version__, "units": "bytes",
        "query": q, "job": r.job, "engine": r.engine, "settings": _settings_json(r.settings),
        "llamacpp_settings": _settings_json(r.llamacpp) if r.llamacpp is not None else None,
        "weights": r.weights,
        "gpu": {"name": r.gpu.name, "count": r.gpus, "usable_bytes": int(r.gpu.usable_bytes),
                "memory_bytes": int(r.gpu.memory_bytes), "capacity_basis": r.gpu.capacity_basis},
        "rank_by": r.rank_by,
        "scan": {"listed": r.listed, "scanned": r.scanned, "stopped_by": r.stopped_by, "source": r.source,
                 "listing_cached": r.listing_cached, "rows_cached": r.rows_cached,
                 "elapsed_s": round(r.elapsed_s, 3)},
        "predicts": PREDICTS,
        "rows": [row.to_dict() for row in r.rows],
        "not_fitting": [row.to_dict() for row in r.not_fitting],
        "skipped": [s.to_dict() for s in r.skipped],
        "largest": r.largest.to_dict() if r.largest is not None else None,
        "assumptions": list(r.assumptions), "notes": list(r.notes),
    }


def _count(n) -> str:
    """A parameter count as the Hub's model pages write it (decimal: 7.62B, 494M); JSON has the exact integer."""
    if n is None:
        return "-"
    if n >= 10**9:
        return f"{n / 10**9:.2f}B"
    return f"{n / 10**6:.0f}M" if n >= 10**6 else f"{n:,}"


def _int(n) -> str:
    return "-" if n is None else f"{n:,}"


def _columns(r) -> tuple[list[str], list]:
    if r.job == "train":
        heads = ["#", "model", "params", "method", "needs", "left", "max batch", "max seq", "downloads", "likes"]

        def cells(i, row):
            return [str(i), row.model, _count(row.parameters), row.method or "", format_binary(row.needed_bytes),
                    format_binary(row.margin_bytes), _int(row.max_batch), _int(row.max_seq), _int(row.downloads),
                    _int(row.likes)]
    else:
        heads = ["#", "model", "params", "format", "needs", "left", "max context", "downloads", "likes"]

        def cells(i, row):
            fmt = (row.weights_format or "") + (" *" if row.format_changed else "")
            short = row.max_context is not None and r.settings is not None and row.max_context < _context(r)
            return [str(i), row.model, _count(row.parameters), fmt, format_binary(row.needed_bytes),
                    format_binary(row.margin_bytes), _int(row.max_context) + (" !" if short else ""), _int(row.downloads), _int(row.likes)]
    return heads, cells


def _context(r) -> int:
    """The context per sequence the serving rows were asked at."""
    return r.llamacpp.context if r.engine == "llama.cpp" else r.settings.context


def _title(r) -> str:
    gpu = f"{r.gpus} x {r.gpu.name}" if r.gpus > 1 else r.gpu.name
    if r.job == "train":
        s = r.settings
        job = f"fine-tuning ({s.method}, {s.precision}, {s.optimizer}, sequence {s.seq:,}, batch {s.batch})"
    elif r.engine == "llama.cpp":
        job = f"serving with llama.cpp (context {r.llamacpp.context:,}, {r.llamacpp.parallel} sequences)"
    else:
        s = r.settings
        job = f"serving with {s.engine} (context {s.context:,}, batch {s.batch})"
    order = "largest first" if r.largest is not None or r.rank_by == "params" else f"by {r.rank_by}"
    return f"Models that fit {gpu} ({format_binary(r.gpu.usable_bytes)}), {job}, {order}"


def footnotes(r, show: int) -> list[str]:
    lines = [PREDICTS, *scan_lines(r)]
    if r.largest is not None:
        lines.insert(0, f"the largest that fits: {r.largest.model}, {_count(r.largest.parameters)} parameters "
                        f"({r.largest.weights_format or r.largest.method}), {format_binary(r.largest.margin_bytes)} "
                        "left")
    if any(row.format_changed for row in r.rows[:show]):
        lines.append("*: not the checkpoint's format: the least compressed the engine makes of it that fits "
                     "(--weights any)")
    if any(row.max_context is not None and row.max_context < _context(r) for row in r.rows[:show]):
        lines.append(f"!: the model's own context is shorter than the {_context(r):,} tokens asked (its limit is "
                     "shown; vLLM refuses a longer max-model-len)")
    if len(r.rows) > show:
        lines.append(f"{len(r.rows) - show} more fit: --show {len(r.rows)} or --format json")
    from ..errors import GatedRepoError

    gated = [s for s in r.skipped if s.exit_code == GatedRepoError.exit_code]
    if gated:
        lines.append(f"not judged: {len(gated)} gated repos whose files need an access grant and a token (--token "
                     f"or HF_TOKEN): {', '.join(s.model for s in gated[:4])}{', ...' if len(gated) > 4 else ''}")
    others = [s for s in r.skipped if s not in gated]
    for s in others[:3]:
        lines.append(f"not judged: {s.reason}")
    if len(others) > 3:
        lines.append(f"{len(others) - 3} more not judged: --format json lists them")
    lines.extend(r.assumptions)
    return lines


def _command(row, launch: bool) -> str:
    """The row's hfmem command, or with ``launch`` the engine's own (vllm serve, llama-server) where it has one."""
    return (row.launch or row.command) if launch else row.command


def rich_search(console, r, show: int, launch: bool = False) -> None:
    from rich.table import Table

    heads, cells = _columns(r)
    if not r.rows:
        console.print(f"No model fits: {_title(r)[len('Models that fit '):]}", highlight=False)
    else:
        t = Table(title=_title(r), title_justify="left")
        for h in heads:
            t.add_column(h, justify="left" if h in ("model", "format", "method") else "right")
        for i, row in enumerate(r.rows[:show], 1):
            t.add_row(*cells(i, row))
        console.print(t)
        console.print("launch a row:" if launch else "reproduce a row:", highlight=False)
        for i, row in enumerate(r.rows[:show], 1):
            console.print(f"  {i}. {_command(row, launch)}", highlight=False, soft_wrap=True)
    for line in footnotes(r, show):
        console.print(f"[dim]{line}[/dim]", highlight=False, soft_wrap=True)


def markdown_search(r, show: int, launch: bool = False) -> str:
    heads, cells = _columns(r)
    out = [f"**{_title(r)}**", ""]
    if r.rows:
        out += ["| " + " | ".join(heads + ["command"]) + " |", "|" + "---|" * (len(heads) + 1)]
        for i, row in enumerate(r.rows[:show], 1):
            out.append("| " + " | ".join(cells(i, row) + [f"`{_command(row, launch)}`"]) + " |")
    else:
        out.append("No model fits.")
    out.append("")
    out += [f"- {line}" for line in footnotes(r, show)]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- --largest --family


def family_json(f) -> dict:
    d = f.to_dict()
    d.pop("seconds", None)  # a wall time, not part of the answer
    return {"schema": FAMILY_SCHEMA, "hfmem_version": __version__, "units": "bytes", **d}


def family_lines(f) -> list[str]:
    """The answer in words: the template's own width first (the architecture asked about), then the family's."""
    t = f.template_width
    job = "train" if f.job == "train" else "serve"
    out = []
    if t.max_layers == 0:
        out.append(f"not even one layer of {t.template}'s width fits {f.gpu} to {job}")
    else:
        out.append(f"the largest {t.template}-shaped model to {job} on {f.gpu}: {t.max_layers} layers at hidden size "
                   f"{t.hidden_size:,}, {_count(t.params)} parameters ({t.params:,}), needing "
                   f"{format_binary(t.device_total_bytes)} of {format_binary(f.capacity_bytes)}"
                   + (f"; {t.max_layers + 1} layers would need {format_binary(t.next_bytes)}" if t.next_bytes else ""))
    if f.best is not None and f.best.template != t.template:
        b = f.best
        out.append(f"the most parameters at any {f.family} width in the snapshot: {_count(b.params)} "
                   f"({b.max_layers} layer{'s' if b.max_layers != 1 else ''} at {b.template}'s hidden size {b.hidden_size:,})"
                   + ("; a model this shallow is mostly embedding" if b.max_layers < 4 else ""))
    out.append(f"the rule of thumb, {f.rule_of_thumb}: {_count(f.rule_of_thumb_params)} parameters")
    return out


def _family_rows(f) -> tuple[list[str], list[list[str]]]:
    heads = ["width of", "hidden", "its layers", "max layers", "params", "needs", "one more layer", "counted"]
    rows = [[w.template, f"{w.hidden_size:,}", str(w.layers_template), str(w.max_layers), _count(w.params),
             format_binary(w.device_total_bytes), "-" if w.next_bytes is None else format_binary(w.next_bytes),
             "built" if w.verified else "extrapolated"] for w in f.widths]
    return heads, rows


def rich_family(console, f) -> None:
    from rich.table import Table

    for line in family_lines(f):
        console.print(line, highlight=False, soft_wrap=True)
    heads, rows = _family_rows(f)
    t = Table(title=f"{f.family} widths, each depth-scaled until one more layer does not fit", title_justify="left")
    for h in heads:
        t.add_column(h, justify="left" if h in ("width of", "counted") else "right")
    for r in rows:
        t.add_row(*r)
    console.print(t)
    for line in [*f.assumptions, *(f"left out: {s}" for s in f.skipped)]:
        console.print(f"[dim]{line}[/dim]", highlight=False, soft_wrap=True)


def markdown_family(f) -> str:
    heads, rows = _family_rows(f)
    out = [*(f"**{line}**" if i == 0 else line for i, line in enumerate(family_lines(f))), "",
           "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += ["", *(f"- {line}" for line in [*f.assumptions, *(f"left out: {s}" for s in f.skipped)])]
    return "\n".join(out) + "\n"
