"""What ``hfmem.api.analyze`` takes and returns: the analysis ``Options`` and the ``ModelReport`` of one model.

Apart from ``hfmem.api`` so that the source-resolution chain (``hfmem.sources.resolve``), which builds and
caches these reports, and the public API, which returns them, share one definition without importing each
other. ``hfmem.api`` re-exports both names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

from .inventory.model import Inventory
from .scenarios.calculator import CalculatorTable, calculator_table


@dataclass
class ModelReport:
    """One analysed model: where its metadata came from and its exact inventory."""

    model: str  # as given
    source: str  # "hub", "local", "hf-cache", "snapshot"
    revision: str | None  # commit sha, snapshot id, or None for a local folder
    provenance: dict
    inventory: Inventory
    notes: list[str] = field(default_factory=list)  # about the source (offline, cache); inventory notes apart
    from_result_cache: bool = False
    config: dict | None = None  # config.json as read (simulate builds the model from it)
    # A repo made of several models (a diffusers pipeline, sentence-transformers modules, a timm network):
    # ``hfmem.model.pipeline.Layout.to_dict()``; None for a plain transformers model. ``inventory`` is then the
    # whole repo's (every component's parameters together), ``config`` the main component's when it has one.
    layout: dict | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inventory"] = self.inventory.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelReport":
        d = dict(d)
        d["inventory"] = Inventory.from_dict(d["inventory"])
        return cls(**d)

    @property
    def kind(self) -> str:
        """What the repo is: ``hfmem.model.pipeline.KINDS`` ("transformers" for a plain model)."""
        return self.layout["kind"] if self.layout else "transformers"

    def pipeline(self):
        """The typed ``Layout`` of a composite repo, or None."""
        if not self.layout:
            return None
        from .model.pipeline import Layout

        return Layout.from_dict(self.layout)

    def table(self, mode: str = "exact", adam_rule: str | None = None) -> CalculatorTable:
        if mode == "accelerate" and self.inventory.accelerate is None and self.config is not None:
            from .inventory.build import accelerate_view_for, counted_without_model

            if counted_without_model(self.inventory):  # counted from headers: accelerate's class is built now
                self.inventory.accelerate = accelerate_view_for(self.config)
        return calculator_table(self.inventory, mode, adam_rule, config=self.config)


@dataclass
class Options:
    revision: str | None = None
    token: str | None = None
    offline: bool = False
    trust_remote_code: bool = False
    use_cache: bool = True  # read the result cache (a fresh analysis is always written)
    headers_only: bool = False  # count from safetensors headers alone: no torch, no model code
    meta_model: bool = False  # build the model on the meta device even where the headers answer exactly
    progress: Callable[[str], None] | None = None  # told what slow step starts (the CLI prints it on a TTY)
    verbose: bool = False  # let huggingface_hub's retry warnings through (hidden by default)
