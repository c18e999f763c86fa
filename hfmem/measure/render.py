"""``hfmem measure``'s output: per model a table of quantity / estimate / measured / error, then the measured
peak of every phase; JSON (``docs/json.md``, "hfmem measure"), Markdown or a rich table."""

from __future__ import annotations

from ..units import GiB


def _gib(value) -> str:
    return "—" if value is None else f"{value / GiB:.3f} GiB"


def _err(value) -> str:
    return "—" if value is None else f"{value:+.1%}"


def measure_json(reports, failures, emits=None) -> dict:
    return {"schema": "hfmem.measure/1", "models": [r.to_dict() for r in reports],
            "errors": [{"model": m, "error": str(e), "exit_code": e.exit_code} for m, e in failures]}


def markdown_measure(reports) -> str:
    lines = []
    for r in reports:
        gpu = r.environment.get("gpu_name", "?")
        lines += [f"## {r.model} — {r.mode} ({r.measured.get('status')}, {gpu})", "", f"`{r.setting}`", "",
                  "| quantity | estimate | measured | error |", "|---|---|---|---|"]
        lines += [f"| {q} | {_gib(e)} | {_gib(m)} | {_err(err)} |" for q, e, m, err in r.rows()]
        lines += ["", "| phase | max allocated | max reserved |", "|---|---|---|"]
        lines += [f"| {name} | {_gib(p['max_memory_allocated'])} | {_gib(p['max_memory_reserved'])} |"
                  for name, p in (r.measured.get("phases") or {}).items()]
        lines += [f"* {n}" for n in r.notes] + [""]
    return "\n".join(lines) + "\n"


def rich_measure(console, reports) -> None:
    from rich.table import Table

    for r in reports:
        gpu = r.environment.get("gpu_name", "?")
        table = Table(title=f"{r.model} — {r.mode}: {r.setting} on {gpu} ({r.measured.get('status')})")
        for col, justify in (("quantity", "left"), ("estimate", "right"), ("measured", "right"), ("error", "right")):
            table.add_column(col, justify=justify)
        for q, e, m, err in r.rows():
            table.add_row(q, _gib(e), _gib(m), _err(err))
        console.print(table)
        phases = Table(title="measured per phase")
        for col in ("phase", "max allocated", "max reserved"):
            phases.add_column(col, justify="left" if col == "phase" else "right")
        for name, p in (r.measured.get("phases") or {}).items():
            phases.add_row(name, _gib(p["max_memory_allocated"]), _gib(p["max_memory_reserved"]))
        console.print(phases)
        for n in r.notes:
            console.print(f"note: {n}")
        if r.measured.get("reason"):
            console.print(f"{r.measured['status']}: {r.measured['reason']}")
