"""``hfmem REPO`` on a GGUF repo, folder or file: the calculator's table with one row per quant variant (as the
safetensors calculator has one row per dtype): file size, the bytes of the weights and their bits per weight,
the parameters, the largest layer, and where llama.cpp puts the weights with every layer offloaded (the GPU
model buffer, and token_embd, which stays on the CPU). Computes nothing but sums over the headers read."""

from __future__ import annotations

from dataclasses import dataclass

from ..units import format_binary, format_count


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
    from ..model.gguf_model import layer_of
    from ..scenarios.llamacpp import CPU, LlamaCppSettings, layer_devices, model_buffers

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
            from ..errors import UnsupportedArchitectureError

            try:
                from ..api import gguf_description

                desc = gguf_description(v)
                s = LlamaCppSettings()
                _, layers = layer_devices(desc, s)
                buffers = model_buffers(v.headers, desc, s, layers)
                cpu = buffers.get(CPU, 0)
                gpu = sum(b for d, b in buffers.items() if d != CPU)
            except UnsupportedArchitectureError:  # no placement model for it: the row still lists its bytes
                gpu = cpu = 0
        out.append(VariantLine(v.label, v.files, v.size_bytes, v.tensor_bytes, params,
                               8 * v.tensor_bytes / params if params else 0.0, largest, name, gpu, cpu, arch, v.role))
    return out


def gguf_calc_json(repo) -> dict:
    return {
        "model": repo.ref, "kind": "gguf", "source": repo.source, "revision": repo.revision,
        "variants": [{"label": x.label, "role": x.role, "files": list(x.files), "file_bytes": x.file_bytes,
                      "tensor_bytes": x.tensor_bytes, "params": x.params,
                      "bits_per_weight": round(x.bits_per_weight, 4), "largest_layer": x.largest_layer,
                      "largest_layer_bytes": x.largest_layer_bytes, "gpu_model_bytes": x.gpu_model_bytes,
                      "cpu_model_bytes": x.cpu_model_bytes, "architecture": x.architecture}
                     for x in variant_lines(repo)],
        "notes": list(repo.notes),
    }


_HEAD = ("Variant", "File size", "Weights", "Bits/weight", "Largest layer", "GPU, all layers", "CPU (token_embd)")


def _cells(x: VariantLine) -> list[str]:
    label = x.label + (" (projector)" if x.role == "mmproj" else "")
    gpu = format_binary(x.gpu_model_bytes) if x.gpu_model_bytes else "-"
    cpu = format_binary(x.cpu_model_bytes) if x.cpu_model_bytes else "-"
    return [label, format_binary(x.file_bytes), format_binary(x.tensor_bytes), f"{x.bits_per_weight:.2f}",
            f"{format_binary(x.largest_layer_bytes)} ({x.largest_layer})", gpu, cpu]


def _title(repo, lines) -> str:
    arch = next((x.architecture for x in lines if x.role == "model"), "?")
    params = next((x.params for x in lines if x.role == "model"), 0)
    return (f"{repo.ref}: GGUF, {arch}, {format_count(params)} parameters, "
            f"{sum(1 for x in lines if x.role == 'model')} variant(s) ({repo.source})")


def _footer() -> list[str]:
    return ["Weights: the tensors' bytes from each ggml type's block size; file size adds the header.",
            "GPU, all layers: llama.cpp's CUDA0 model buffer with -ngl all on one GPU (128-byte alignment, "
            "quantized rows padded to 512); token_embd stays on the CPU, memory-mapped.",
            "`hfmem infer REPO --engine llama.cpp` adds the KV cache, compute buffers and the fit."]


def rich_gguf(console, repos) -> None:
    from rich.table import Table

    for repo in repos:
        lines = variant_lines(repo)
        table = Table(title=_title(repo, lines), title_justify="left")
        for h in _HEAD:
            table.add_column(h, justify="left" if h == "Variant" else "right")
        for x in lines:
            table.add_row(*_cells(x))
        console.print(table)
        for line in _footer() + list(repo.notes):
            console.print(line, style="dim")


def markdown_gguf(repos) -> str:
    out = []
    for repo in repos:
        lines = variant_lines(repo)
        out.append(f"### {_title(repo, lines)}\n")
        out.append("| " + " | ".join(_HEAD) + " |")
        out.append("|" + "|".join("---" for _ in _HEAD) + "|")
        for x in lines:
            out.append("| " + " | ".join(_cells(x)) + " |")
        out.append("")
        out.extend(f"- {line}" for line in _footer() + list(repo.notes))
        out.append("")
    return "\n".join(out) + "\n"
