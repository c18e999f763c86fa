"""A tiny custom-code model of our own (config + modeling files + a matching checkpoint), served by the
local Hub to test --trust-remote-code. Its modeling module writes a marker file when imported, so a test
can prove the code did or did not run."""

from __future__ import annotations

import json

CONFIG = {
    "architectures": ["TinyCustomForCausalLM"],
    "model_type": "tinycustom",
    "auto_map": {"AutoConfig": "configuration_tiny.TinyCustomConfig",
                 "AutoModelForCausalLM": "modeling_tiny.TinyCustomForCausalLM"},
    "hidden_size": 16, "num_hidden_layers": 2, "vocab_size": 32, "torch_dtype": "float32",
}

CONFIGURATION = '''
from transformers import PretrainedConfig


class TinyCustomConfig(PretrainedConfig):
    model_type = "tinycustom"

    def __init__(self, hidden_size=16, num_hidden_layers=2, vocab_size=32, **kwargs):
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.vocab_size = vocab_size
        super().__init__(**kwargs)
'''

MODELING = '''
import os

import torch
from torch import nn
from transformers import PreTrainedModel

from .configuration_tiny import TinyCustomConfig

_marker = os.environ.get("HFMEM_TEST_MARKER")
if _marker:
    open(_marker, "w").write("custom code ran")


class TinyBlock(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.proj = nn.Linear(h, h)  # h*h + h
        # what custom code often does: a cache registered at init, invisible in the checkpoint
        self.register_buffer("cache", torch.zeros(64), persistent=False)


class TinyCustomForCausalLM(PreTrainedModel):
    config_class = TinyCustomConfig
    _no_split_modules = ["TinyBlock"]

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.blocks = nn.ModuleList(TinyBlock(config.hidden_size) for _ in range(config.num_hidden_layers))
        self.head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids):
        x = self.embed(input_ids)
        for b in self.blocks:
            x = b.proj(x)
        return self.head(x)
'''

H, L, V = 16, 2, 32
PARAMS = V * H + L * (H * H + H) + H * V  # embed, blocks, head: by hand
CUSTOM_BUFFER_BYTES = L * 64 * 4


def files() -> dict[str, bytes]:
    import numpy as np
    from safetensors.numpy import save

    tensors = {"embed.weight": np.zeros((V, H), np.float32), "head.weight": np.zeros((V, H), np.float32)}
    for i in range(L):
        tensors[f"blocks.{i}.proj.weight"] = np.zeros((H, H), np.float32)
        tensors[f"blocks.{i}.proj.bias"] = np.zeros(H, np.float32)
    return {"config.json": json.dumps(CONFIG).encode(), "configuration_tiny.py": CONFIGURATION.encode(),
            "modeling_tiny.py": MODELING.encode(), "model.safetensors": save(tensors)}
