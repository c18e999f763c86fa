"""``hfmem REPO`` on a GGUF repo, folder or file: the calculator's table with one row per quant variant (as the
safetensors calculator has one row per dtype): file size, the bytes of the weights and their bits per weight,
the parameters, the largest layer, and where llama.cpp puts the weights with every layer offloaded (the GPU
model buffer, and token_embd, which stays on the CPU). Computes nothing: the rows are
``scenarios.gguf_calculator.variant_lines``."""

from __future__ import annotations

from ..scenarios.gguf_calculator import VariantLine, variant_lines
from ..units import format_binary, format_count


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
