"""inventory: exact parameters and buffers of a model, by module and dtype.

``model.py`` holds the dataclasses (no torch), ``meta_model.py`` measures a transformers model built on the
meta device (imports torch lazily), ``headers.py`` counts from safetensors headers alone (no torch), and
``build.py`` picks between them.
"""

from .model import AccelerateView, Inventory, LayerGroup

__all__ = ["AccelerateView", "Inventory", "LayerGroup"]
