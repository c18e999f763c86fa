"""sources: where a model's metadata comes from — a local folder, the Hub (through huggingface_hub only),
the Hugging Face cache, hfmem's shipped snapshot — and hfmem's own result cache of finished inventories."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..metadata.config import ModelConfig
from ..metadata.safetensors import CheckpointHeaders


@dataclass
class FetchedMetadata:
    """What a source found: config.json, the checkpoint's headers when available, and where it came from."""

    config: ModelConfig
    headers: CheckpointHeaders | None
    source: str  # "hub", "local", "hf-cache"
    revision: str | None
    provenance: dict = field(default_factory=dict)
    code_location: str | None = None  # repo id or folder that --trust-remote-code can load code from


def env_flag(name: str) -> bool:
    """huggingface_hub's reading of boolean variables (``HF_HUB_OFFLINE=1/true/yes/on``)."""
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
