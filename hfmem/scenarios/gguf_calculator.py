"""The calculator for a GGUF repo (``hfmem REPO``): one row per quant variant, as the safetensors calculator has
one row per dtype. Each row is sums over the headers read: the file and tensor bytes, bits per weight, the
largest layer, and llama.cpp's model buffers with every layer offloaded to one GPU (``scenarios.llamacpp``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class VariantLine:
    label: str
    files: tuple[str, ...]
    file_bytes: int
    tensor_bytes: int
    params: int
    bits_per_weight: float
    largest_layer_bytes: int
    largest_layer: str
    gpu_model_bytes: int     # CUDA0 model buffer with -ngl all on one GPU
    cpu_model_bytes: int     # CPU_Mapped: the input layer
    architecture: str
    role: str


def variant_lines(repo) -> list[VariantLine]:
    """One row per variant, then per projector."""
    from ..errors import UnsupportedArchitectureError
    from ..model.gguf_model import describe_variant, layer_of
    from .llamacpp import CPU, LlamaCppSettings, layer_devices, model_buffers, placement

    out = []
    for v in list(repo.variants) + list(repo.projectors):
        params = sum(t.n_elements for t in v.tensors)
        per_layer: dict[str, int] = {}
        for t in v.tensors:
            il = layer_of(t.name)
            key = f"blk.{il}" if il is not None else t.name.rsplit(".", 1)[0]
            per_layer[key] = per_layer.get(key, 0) + t.nbytes
        name, largest = max(per_layer.items(), key=lambda kv: kv[1]) if per_layer else ("-", 0)
        arch = str(v.metadata.get("general.architecture", "?"))
        gpu = cpu = 0
        if v.role == "model":
            try:
                desc = describe_variant(v)
                s = LlamaCppSettings()
                _, layers = layer_devices(desc, s)
                buffers = model_buffers(v.headers, placement(v.headers, desc, s, layers), layers)
                cpu = buffers.get(CPU, 0)
                gpu = sum(b for d, b in buffers.items() if d != CPU)
            except UnsupportedArchitectureError:  # no placement model for it: the row still lists its bytes
                gpu = cpu = 0
        out.append(VariantLine(v.label, v.files, v.size_bytes, v.tensor_bytes, params,
                               8 * v.tensor_bytes / params if params else 0.0, largest, name, gpu, cpu, arch, v.role))
    return out
