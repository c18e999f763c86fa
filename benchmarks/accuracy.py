"""Accuracy of `hfmem infer` and `hfmem train` against measured GPU memory and the simulation.

    python benchmarks/accuracy.py            # writes docs/accuracy.md (about a minute on 2 cores)

Every row compares like with like: the measured quantity (max_memory_allocated, max_memory_reserved or
nvidia-smi's device total) against hfmem's estimate of that same quantity, under the settings the source
states. Measured numbers come from ../shared/docs/ground-truth.md (sources cited there); the simulation rows
run `hfmem simulate` on the same settings. The tests (tests/test_infer.py, tests/test_train.py) assert the
tolerances; this script records the errors.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hfmem  # noqa: E402
from hfmem.scenarios.overheads import Overheads  # noqa: E402
from hfmem.units import GiB, MiB  # noqa: E402

# The published numbers and the configs their sources ran: hfmem/reference/measurements.py (shared with the tests)
from hfmem.reference.measurements import (BERT_LARGE_ANATOMY_MIB, BERT_LARGE_CONFIG, BERT_LARGE_CUDA_CONTEXT_MIB,  # noqa: E402
                                          OPT_350M_CONFIG, OPT_350M_GENERATE_MB, PEFT_METAMATHQA_RESERVED_GIB,
                                          PYTHIA_410M_CONFIG, PYTHIA_410M_GENERATE_MB, PYTHIA_410M_TRAIN_MB)

PYTHIA_TRAIN_SHAPES = ((1, 512), (1, 1024), (1, 2048), (4, 512))  # the rows of PYTHIA_410M_TRAIN_MB reported here
OFF = hfmem.Options(offline=True)


def folder(cfg: dict) -> str:
    d = Path(tempfile.mkdtemp())
    (d / "config.json").write_text(json.dumps(cfg))
    return str(d)


def rows() -> list[dict]:
    out = []

    def add(case, quantity, measured, estimate, note=""):
        out.append({"case": case, "quantity": quantity, "measured": measured, "estimate": estimate,
                    "error": (estimate - measured) / measured, "note": note})

    opt, pythia, bert = folder(OPT_350M_CONFIG), folder(PYTHIA_410M_CONFIG), folder(BERT_LARGE_CONFIG)
    # -- inference: transformers docs SDPA generate peaks (MB = 1e6 B), logits of every position (2024 code)
    for b, s, mb in OPT_350M_GENERATE_MB:
        e = hfmem.infer(opt, context=s, batch=b, new_tokens=1, compute_dtype="fp16", logits="all").estimate
        add(f"infer opt-350m fp16 sdpa {b}x{s}", "max_memory_allocated", mb * 1e6, e.peak_allocated_bytes)
    for b, s, mb in PYTHIA_410M_GENERATE_MB:
        e = hfmem.infer(pythia, context=s, batch=b, new_tokens=1, compute_dtype="fp16", logits="all").estimate
        old = 24 * 2048 * 2048 + 4 * b * s * 50304
        add(f"infer pythia-410m fp16 sdpa {b}x{s}", "max_memory_allocated", mb * 1e6, e.peak_allocated_bytes + old,
            "+ the 2024 code's causal-mask buffers and fp32 logits")
    # -- inference: the simulation (prefill peak)
    for model, b, s in (("Qwen/Qwen2-0.5B-Instruct", 2, 1024), ("HuggingFaceTB/SmolLM2-135M-Instruct", 4, 2048),
                        ("meta-llama/Llama-3.2-1B", 2, 4096), ("google/gemma-3-1b-it", 1, 8192)):
        e = hfmem.infer(model, OFF, context=s, batch=b, new_tokens=2).estimate
        sim = hfmem.simulate_model(model, "infer", OFF, batch=b, context=s, new_tokens=2, dtype="bfloat16")
        pre = next(p for p in e.phases if p.name == "prefill").peak_allocated_bytes
        add(f"infer {model} bf16 {b}x{s} prefill", "simulated allocated", sim.result.phase("prefill").peak_bytes, pre)
    # -- training: PEFT MetaMathQA (max_memory_reserved, GiB)
    for name, (args, gib) in PEFT_METAMATHQA_RESERVED_GIB.items():
        e = hfmem.train("meta-llama/Llama-3.2-3B", OFF, precision="bf16", batch=4, seq=768, eval_generate_batch=50,
                        eval_generate_tokens=800, **args).estimate
        add(f"train Llama-3.2-3B {name} (PEFT MetaMathQA)", "max_memory_reserved", gib * GiB, e.peak_reserved_bytes,
            "eval generation 50x800 modelled as its own phase" if name == "full fine-tune" else
            "")
    # -- training: pythia-410m (transformers docs; fp16, no optimizer stated: a stateless step)
    for (b, s), (eager, sdpa) in ((shape, PYTHIA_410M_TRAIN_MB[shape]) for shape in PYTHIA_TRAIN_SHAPES):
        for attn, mb in (("eager", eager), ("sdpa", sdpa)):
            e = hfmem.train(pythia, precision="fp16", optimizer="sgd", attn=attn, batch=b, seq=s).estimate
            add(f"train pythia-410m fp16 {attn} {b}x{s}", "max_memory_allocated", mb * 1e6,
                e.peak_allocated_bytes + 24 * 2048 * 2048, "+ the 2024 code's causal-mask buffers")
    # -- training: bert-large anatomy (nvidia-smi MiB, V100, 2022)
    for args, mib in BERT_LARGE_ANATOMY_MIB:
        settings = dict(precision="fp32", attn="eager", adamw_impl="forloop", seq=512,
                        overheads=Overheads(cuda_context_bytes=BERT_LARGE_CUDA_CONTEXT_MIB * MiB))
        settings.update(args)
        e = hfmem.train(bert, **settings).estimate
        label = ", ".join(f"{k}={v}" for k, v in args.items())
        add(f"train bert-large seq 512 ({label})", "nvidia-smi", mib * MiB, e.device_total_bytes,
            "2022 PyTorch; its own 1343 MB CUDA context")
    # -- training: the simulation
    for model, kw in (("Qwen/Qwen2-0.5B-Instruct", dict(batch=2, seq=512)),
                      ("HuggingFaceTB/SmolLM2-135M-Instruct", dict(batch=2, seq=1024, grad_ckpt=True)),
                      ("meta-llama/Llama-3.2-1B", dict(batch=1, seq=2048))):
        e = hfmem.train(model, OFF, precision="bf16", adamw_impl="foreach", **kw).estimate
        sim = hfmem.simulate_model(model, "train", OFF, dtype="bfloat16", optimizer_impl="foreach", **kw)
        add(f"train {model} bf16 {kw}", "simulated allocated", sim.result.peak_allocated_bytes, e.peak_allocated_bytes)
    return out


def render(table: list[dict], elapsed: float) -> str:
    from importlib.metadata import version

    lines = ["# Accuracy of `hfmem infer` and `hfmem train`", "",
             "Generated by `python benchmarks/accuracy.py` (do not edit by hand); "
             f"torch {version('torch')}, transformers {version('transformers')}, {elapsed:.0f} s. Each row compares "
             "the quantity the source measured with hfmem's estimate of that same quantity. Sources: "
             "../shared/docs/ground-truth.md §4 (PEFT MetaMathQA), §7a (bert-large anatomy), §7e (transformers docs' "
             "SDPA benchmarks); simulated rows: `hfmem simulate` on the same settings.", "",
             "| case | quantity | measured | hfmem | error | note |", "|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['case']} | {r['quantity']} | {r['measured'] / GiB:.3f} GiB | {r['estimate'] / GiB:.3f} GiB "
                     f"| {r['error']:+.1%} | {r['note']} |")
    errs = [abs(r["error"]) for r in table]
    by = {}
    for r in table:
        by.setdefault(r["case"].split()[0] + " / " + r["quantity"], []).append(abs(r["error"]))
    lines += ["", f"All {len(table)} rows: median |error| {statistics.median(errs):.1%}, worst {max(errs):.1%}.", ""]
    lines += [f"* {k}: {len(v)} rows, median {statistics.median(v):.1%}, worst {max(v):.1%}" for k, v in sorted(by.items())]
    lines += ["", "Where the gaps come from: the bert-large rows were measured in 2022 (older PyTorch allocator "
              "and autocast; batch-4 rows 10-20% above hfmem, gradient-accumulation rows within 1-10%); the "
              "pythia/opt rows ran a 2024 transformers whose generate kept every position's logits (`--logits "
              "all`) and whose GPT-NeoX held causal-mask buffers (added by hand, stated per row).", ""]
    return "\n".join(lines)


def main() -> None:
    started = time.time()
    table = rows()
    text = render(table, time.time() - started)
    (ROOT / "docs" / "accuracy.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
