"""``hfmem gpus``: the GPU catalog that ``--gpu`` names refer to; ``hfmem gpus --detect``: this machine's GPUs,
the ones ``--gpu auto`` chooses from."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

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


# GPU fields only a detected device has (``--gpu auto``); the catalog document keeps its hfmem.gpus/1 keys.
_DETECTED_ONLY = {"free_bytes", "device_index", "device_name", "device_source", "catalog_name"}
DETECT_HEADERS = ("GPU", "name", "total", "free", "source", "catalog", "fits judged on")
_DETECT_RIGHT = (0, 2, 3, 6)


def _detect(fmt: Format) -> None:
    from ..plan.gpus import detected_devices, detected_gpu

    devices = detected_devices()  # NoGPUFoundError -> one line and exit 69 at the error boundary
    pairs = [(d, detected_gpu(d)) for d in devices]
    if fmt is Format.json:
        from .. import __version__

        print_json({"schema": "hfmem.devices/1", "hfmem_version": __version__, "units": "bytes",
                    "devices": [{**asdict(d), "note": d.note or None, "catalog": g.catalog_name,
                                 "usable_bytes": g.usable_bytes,
                                 "capacity_basis": g.capacity_basis} for d, g in pairs]})
        return
    rows = [[str(d.index), d.name, format_binary(d.total_bytes),
             "?" if d.free_bytes is None else format_binary(d.free_bytes), d.source, g.catalog_name or "?",
             format_binary(g.usable_bytes)] for d, g in pairs]
    device_notes = list(dict.fromkeys(d.note for d in devices if d.note))  # one line each, not one per row
    note = ("--gpu auto judges fits on a GPU's free memory where the tool reports it (what a new process can get "
            "now), else on the catalog's CUDA total for its model, else on its total; catalog: the `hfmem gpus` "
            "entry its name matched (? = none: bf16/fp8 support unknown).")
    if fmt is Format.markdown:
        lines = ["| " + " | ".join(DETECT_HEADERS) + " |", "|" + "---|" * len(DETECT_HEADERS)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        print_text("\n".join(lines) + "\n\n" + "".join(f"{n}\n" for n in [note, *device_notes]))
        return
    from rich.table import Table

    t = Table(title="GPUs on this machine", title_justify="left")
    for i, h in enumerate(DETECT_HEADERS):
        t.add_column(h, justify="right" if i in _DETECT_RIGHT else "left")
    for r in rows:
        t.add_row(*r)
    console = stdout_console()
    console.print(t)
    for line in [note, *device_notes]:
        console.print(f"[dim]{line}[/dim]", highlight=False)


def gpus(fmt: FormatOpt = Format.table,
         detect: Annotated[bool, typer.Option("--detect", help="List this machine's GPUs (NVML, nvidia-smi, "
                                              "rocm-smi or Apple silicon), the ones --gpu auto picks from, "
                                              "instead of the catalog.")] = False) -> None:
    """List the GPU catalog: marketed size, the total CUDA reports to a process where a source shows it (fits
    are judged on that), bf16/fp8 support, bandwidth. With --detect: this machine's GPUs, total and free."""
    if detect:
        _detect(fmt)
        return
    if fmt is Format.json:
        print_json({"schema": "hfmem.gpus/1", "units": "bytes",
                    "gpus": [{**{k: v for k, v in asdict(g).items() if k not in _DETECTED_ONLY},
                              "aliases": list(g.aliases), "sources": list(g.sources),
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
