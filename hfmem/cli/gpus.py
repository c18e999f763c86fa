"""``hfmem gpus``: the GPU catalog that ``--gpu`` names refer to."""

from __future__ import annotations

from dataclasses import asdict

from ..plan.gpus import catalog
from ..units import format_binary
from .options import Format, FormatOpt
from .output import print_json, print_text, stdout_console

HEADERS = ("GPU", "marketed", "memory", "basis", "CUDA total", "fits judged on", "bf16", "fp8", "bandwidth GB/s",
           "aliases")
_RIGHT = (2, 4, 5, 8)


def _yes(flag) -> str:
    return "?" if flag is None else ("yes" if flag else "no")


def _rows() -> list[list[str]]:
    return [[g.name, g.memory_marketed or "", format_binary(g.memory_bytes), g.memory_basis or "",
             "?" if g.cuda_total_bytes is None else format_binary(g.cuda_total_bytes), format_binary(g.usable_bytes),
             _yes(g.bf16), _yes(g.fp8), "?" if g.bandwidth is None else f"{g.bandwidth:g}", ", ".join(g.aliases)]
            for g in catalog()]


def gpus(fmt: FormatOpt = Format.table) -> None:
    """List the GPU catalog: marketed size, the total CUDA reports to a process where a source shows it (fits
    are judged on that), bf16/fp8 support, bandwidth."""
    if fmt is Format.json:
        print_json({"schema": "hfmem.gpus/1", "units": "bytes",
                    "gpus": [{**asdict(g), "aliases": list(g.aliases), "sources": list(g.sources),
                              "usable_bytes": g.usable_bytes, "capacity_basis": g.capacity_basis}
                             for g in catalog()]})
        return
    note = ("memory: the total nvidia-smi reports where a source gave it, else the marketed size (basis "
            "column). CUDA total: what CUDA reports to a process (torch.cuda.get_device_properties(0)"
            ".total_memory, the total capacity in a PyTorch out-of-memory message), a little less; ? where "
            "no public source shows it. --gpu fits are judged on the CUDA total when known, else on memory. "
            "Sources per GPU: --format json. --gpu also takes a size: 24GiB (2^30) or 80GB (10^9), taken "
            "as what a process can get.")
    if fmt is Format.markdown:
        lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        lines += ["| " + " | ".join(r) + " |" for r in _rows()]
        print_text("\n".join(lines) + f"\n\n{note}\n")
        return
    from rich.table import Table

    t = Table(title="GPU catalog", title_justify="left")
    for i, h in enumerate(HEADERS):
        t.add_column(h, justify="right" if i in _RIGHT else "left")
    for r in _rows():
        t.add_row(*r)
    console = stdout_console()
    console.print(t)
    console.print(f"[dim]{note}[/dim]", highlight=False)
