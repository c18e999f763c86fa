"""hfmem: how much GPU memory a Hugging Face Hub model needs, before you download it.

Public API (no CLI imports here)::

    import hfmem
    report = hfmem.analyze("baichuan-inc/Baichuan-7B")      # source → metadata → inventory
    table = report.table()                                  # the Model Memory Calculator table
    data = hfmem.calculator_json([report])                  # the JSON the CLI prints with --format json
    sim = hfmem.simulate_model("meta-llama/Llama-2-7b-hf", "train", seq=2048)  # fake-tensor peak (needs torch)
    sim.result.peak_allocated_bytes
    serve = hfmem.infer("meta-llama/Llama-3.1-8B", context=32768, batch=4, gpu="RTX-4090")
    serve.estimate.device_total_bytes, serve.fit.max_context
    tune = hfmem.train("meta-llama/Llama-2-13b-hf", precision="amp-bf16", gpu="A100-80GB", advise=True)
    tune.estimate.peak_allocated_bytes, tune.advice
    run = hfmem.measure("Qwen/Qwen2-0.5B-Instruct", "train", batch=2, seq=512)  # on this machine's CUDA GPU
    run.rows()                                              # (quantity, estimate, measured, error)
    gguf = hfmem.infer_llamacpp("bartowski/Meta-Llama-3.1-8B-Instruct-GGUF", context=16384, gpu="RTX-4090")
    gguf.best, gguf.estimate.gpu_peak_bytes, gguf.fit.max_context  # llama.cpp: best variant, per-GPU total

The names are imported on first use (PEP 562 ``__getattr__``): ``import hfmem`` alone, which every
``hfmem.*`` import and every CLI run does first, costs nothing beyond this file, and a warm CLI answer imports
only the modules it uses.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it (relative to this package).
_EXPORTS = {
    "InferenceReport": ".api", "ModelReport": ".api", "Options": ".api", "SimulationReport": ".api",
    "TrainingReport": ".api", "analyze": ".api", "analyze_many": ".api", "infer": ".api", "infer_many": ".api",
    "simulate_model": ".api", "train": ".api", "train_many": ".api",
    "analyze_gguf": ".api", "infer_llamacpp": ".api", "infer_llamacpp_many": ".api", "LlamaCppReport": ".api",
    "llamacpp_document": ".render.llamacpp",
    "infer_json": ".render.infer",
    "calculator_json": ".render.json",
    "simulate_json": ".render.simulate",
    "train_json": ".render.train",
    "calculator_table": ".scenarios.calculator",
    "measure": ".measure",  # the function; the package itself is callable too (hfmem/measure/__init__.py)
}

__all__ = ["InferenceReport", "ModelReport", "Options", "SimulationReport", "TrainingReport", "analyze",
           "analyze_many", "calculator_json", "calculator_table", "infer", "measure", "infer_json", "infer_many",
           "simulate_model", "simulate_json", "train", "train_json", "train_many", "analyze_gguf", "infer_llamacpp",
           "infer_llamacpp_many", "LlamaCppReport", "llamacpp_document", "__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hfmem' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
