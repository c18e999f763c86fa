"""Measure llama.cpp's own buffers on the CPU: small real GGUF models, written with the gguf package, loaded by
llama.cpp (through llama-cpp-python, which builds llama.cpp from source), and every buffer line of its load log
recorded under benchmarks/measured/llamacpp-cpu/.

Why: llama.cpp's compute buffers come from its graph allocator (ggml-alloc) run over the model's real graph;
no published formula exists. Running llama.cpp itself is the ground truth for hfmem's compute-buffer model, the
way `hfmem simulate` is for transformers. On the CPU backend every buffer is a CPU buffer, so the log gives the
model buffer, the KV buffer, the output buffer and the compute buffer of the whole graph at once.

Run (about two minutes; needs `pip install llama-cpp-python`, which compiles llama.cpp):

    python benchmarks/llamacpp_cpu.py            # writes benchmarks/measured/llamacpp-cpu/runs.json

The tests read that JSON (tests/test_llamacpp_measured.py), with the GGUF files rebuilt from the same recipe,
so llama.cpp is not needed to run them.
"""

from __future__ import annotations

import json
import platform
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "measured" / "llamacpp-cpu" / "runs.json"
sys.path.insert(0, str(HERE.parent))

from tests.gguf_recipes import write_recipe  # noqa: E402  (the same files the tests rebuild)

# (recipe, n_ctx, n_batch, n_ubatch, flash_attn, type_k, type_v, n_seq_max, swa_full)
RUNS = [
    ("llama-gqa-f16", 512, 512, 512, False, "f16", "f16", 1, False),
    ("llama-gqa-f16", 2048, 2048, 512, False, "f16", "f16", 1, False),
    ("llama-gqa-f16", 2048, 2048, 512, True, "f16", "f16", 1, False),
    ("llama-gqa-f16", 4096, 2048, 256, True, "q8_0", "q8_0", 1, False),
    ("llama-gqa-f16", 4096, 2048, 512, False, "q8_0", "f16", 1, False),
    ("llama-gqa-f16", 4096, 2048, 512, True, "f16", "f16", 4, False),
    ("llama-gqa-q8_0", 1024, 1024, 512, True, "f16", "f16", 1, False),
    ("qwen2-q8_0", 3072, 2048, 512, False, "f16", "f16", 1, False),
    ("qwen2-q8_0", 3072, 2048, 512, True, "q4_0", "q4_0", 2, False),
    ("gemma2-f16", 4096, 2048, 512, True, "f16", "f16", 1, False),
    ("gemma2-f16", 4096, 2048, 512, True, "f16", "f16", 1, True),
    ("gemma2-f16", 4096, 2048, 512, False, "f16", "f16", 1, False),
    ("qwen3moe-f16", 2048, 2048, 512, True, "f16", "f16", 1, False),
    ("qwen3moe-f16", 2048, 2048, 512, False, "f16", "f16", 1, False),
    ("llama-wide-f16", 1024, 1024, 512, True, "f16", "f16", 1, False),  # the feed-forward stage's fit
    # held out: recorded after hfmem's compute-buffer coefficients were fitted to the runs above
    ("llama-wide-f16", 8192, 2048, 512, False, "f16", "f16", 1, False),
    ("llama-wide-f16", 2048, 2048, 128, False, "q8_0", "f16", 1, False),
    ("qwen2-vocab-q8_0", 4096, 2048, 512, True, "q8_0", "q8_0", 1, False),
    ("qwen2-vocab-q8_0", 4096, 2048, 1024, False, "f16", "f16", 2, False),
    ("gemma2-f16", 8192, 4096, 1024, True, "q8_0", "q8_0", 2, False),
    ("qwen2-ffn-f16", 1024, 1024, 512, True, "f16", "f16", 1, False),
    ("qwen2-ffn-f16", 4096, 2048, 256, True, "f16", "q8_0", 1, False),
]
HOLDOUT_FROM = 15  # RUNS[14:] were not used to fit hfmem's coefficients

GGML_TYPES = {"f16": 1, "q4_0": 2, "q8_0": 8}  # ggml.h enum ggml_type
_LINE = re.compile(r"(?P<what>model|KV|compute|output) buffer size\s*=\s*(?P<mib>[0-9.]+) MiB")
_DEV = re.compile(r":\s+(?P<dev>[A-Za-z_0-9]+)\s+(?:model|KV|compute|output) buffer size")


def parse_log(text: str) -> dict:
    """Every buffer line of a load log, as printed: {"model": {dev: [MiB, ...]}, "KV": ..., "compute": ...,
    "output": ...}; an iSWA model prints two KV lines (the full and the sliding-window cache)."""
    out: dict[str, dict[str, list[float]]] = {}
    for line in text.splitlines():
        m = _LINE.search(line)
        if not m:
            continue
        d = _DEV.search(line)
        dev = d.group("dev") if d else "?"
        out.setdefault(m.group("what"), {}).setdefault(dev, []).append(float(m.group("mib")))
    return out


def _run_one(path: Path, run) -> tuple[dict, str]:
    """Load in a child process (llama.cpp prints to the C stderr, which the child's parent captures)."""
    import subprocess

    name, n_ctx, n_batch, n_ubatch, fa, tk, tv, n_seq, swa_full = run
    code = f"""
import llama_cpp as L
L.llama_backend_init()
mp = L.llama_model_default_params()
mp.n_gpu_layers = 0
mp.use_mmap = True
model = L.llama_model_load_from_file({str(path).encode()!r}, mp)
cp = L.llama_context_default_params()
cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = {n_ctx}, {n_batch}, {n_ubatch}, {n_seq}
cp.n_threads = cp.n_threads_batch = 1
cp.flash_attn_type = {1 if fa else 0}
cp.type_k, cp.type_v = {GGML_TYPES[tk]}, {GGML_TYPES[tv]}
cp.swa_full = {swa_full}
cp.kv_unified = False
ctx = L.llama_init_from_model(model, cp)
assert ctx, "context creation failed"
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return parse_log(proc.stderr), proc.stderr


def main() -> int:
    import llama_cpp

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for run in RUNS:
            name = run[0]
            if name not in files:
                files[name] = write_recipe(name, Path(tmp) / f"{name}.gguf")
            buffers, log = _run_one(files[name], run)
            keep = [ln for ln in log.splitlines() if re.search(r"buffer size|n_ctx|n_seq|flash_attn|n_ubatch|"
                                                               r"n_batch|KV cache|kv_cache|cells|type_k|build", ln)]
            results.append({
                "recipe": name, "n_ctx": run[1], "n_batch": run[2], "n_ubatch": run[3], "flash_attn": run[4],
                "type_k": run[5], "type_v": run[6], "n_seq_max": run[7], "swa_full": run[8],
                "buffers_mib": buffers, "log_lines": keep, "held_out": RUNS.index(run) >= HOLDOUT_FROM,
            })
            print(name, run[1:], buffers, flush=True)
    doc = {
        "what": "llama.cpp's load-log buffer lines (MiB = 2^20 bytes, 2 decimals) for the recipes in "
                "tests/gguf_recipes.py, CPU backend, -ngl 0, mmap on",
        "llama_cpp_python": llama_cpp.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "runs": results,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
