"""hfmem: how much GPU memory a Hugging Face Hub model needs, before you download it.

Public API (no CLI imports here)::

    import hfmem
    report = hfmem.analyze("baichuan-inc/Baichuan-7B")      # source → metadata → inventory
    table = report.table()                                  # the Model Memory Calculator table
    data = hfmem.calculator_json([report])                  # the JSON the CLI prints with --format json
    sim = hfmem.simulate_model("meta-llama/Llama-2-7b-hf", "train", seq=2048)  # fake-tensor peak (needs torch)
    sim.result.peak_allocated_bytes
"""

__version__ = "0.1.0"

from .api import ModelReport, Options, SimulationReport, analyze, analyze_many, simulate_model  # noqa: E402
from .render.json import calculator_json  # noqa: E402
from .render.simulate import simulate_json  # noqa: E402
from .scenarios.calculator import calculator_table  # noqa: E402

__all__ = ["ModelReport", "Options", "SimulationReport", "analyze", "analyze_many", "calculator_json",
           "calculator_table", "simulate_model", "simulate_json", "__version__"]
