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
"""

__version__ = "0.1.0"

from .api import (InferenceReport, ModelReport, Options, SimulationReport, TrainingReport, analyze,  # noqa: E402
                  analyze_many, infer, infer_many, simulate_model, train, train_many)
from .render.infer import infer_json  # noqa: E402
from .render.json import calculator_json  # noqa: E402
from .render.simulate import simulate_json  # noqa: E402
from .render.train import train_json  # noqa: E402
from .scenarios.calculator import calculator_table  # noqa: E402

__all__ = ["InferenceReport", "ModelReport", "Options", "SimulationReport", "TrainingReport", "analyze",
           "analyze_many", "calculator_json", "calculator_table", "infer", "infer_json", "infer_many",
           "simulate_model", "simulate_json", "train", "train_json", "train_many", "__version__"]
