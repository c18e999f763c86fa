"""Shell completion values for ``--gpu`` and the MODEL arguments (typer's ``autocompletion=``).

``hfmem --install-completion`` installs typer's completion script for the user's shell; the shell then runs
``hfmem`` with ``_HFMEM_COMPLETE`` set for every <TAB>. Commands and flags come from typer/click; these two
functions add the values: the GPU catalog's names (``hfmem/plan/gpus.json``) with ``auto``, and the model ids
the shipped snapshot answers offline (its ``index.json``). Both read one small JSON file and import neither
torch nor transformers, so a <TAB> stays quick.
"""

from __future__ import annotations


def _matching(values, incomplete: str) -> list[str]:
    """``values`` that start with ``incomplete``, in their order. (typer keeps only the values that start with
    the typed text exactly, so a lower-case ``rtx`` offers nothing: the names are offered as written.)"""
    return [v for v in values if v.startswith(incomplete)]


def gpu_names(incomplete: str) -> list[str]:
    """``--gpu`` values: ``auto`` and every catalog GPU's name."""
    from ..plan.gpus import catalog

    return _matching(["auto", *(g.name for g in catalog())], incomplete)


def model_ids(incomplete: str) -> list[str]:
    """MODEL values: the repo ids of hfmem's shipped snapshot (a local folder is the shell's own completion)."""
    from ..sources.snapshot import load_index

    try:
        index = load_index() or {}
    except (OSError, ValueError):  # no snapshot, or an unreadable one: nothing to offer
        return []
    return _matching(sorted(index.get("models", {})), incomplete)
