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

OPT_350M = {"architectures": ["OPTForCausalLM"], "model_type": "opt", "hidden_size": 1024, "word_embed_proj_dim": 512,
            "ffn_dim": 4096, "num_hidden_layers": 24, "num_attention_heads": 16, "vocab_size": 50272,
            "max_position_embeddings": 2048, "do_layer_norm_before": False, "torch_dtype": "float16"}
PYTHIA_410M = {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "hidden_size": 1024,
               "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16, "vocab_size": 50304,
               "max_position_embeddings": 2048, "rotary_pct": 0.25, "use_parallel_residual": True,
               "tie_word_embeddings": False, "torch_dtype": "float16"}
BERT_LARGE = {"architectures": ["BertForSequenceClassification"], "model_type": "bert", "hidden_size": 1024,
              "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096, "vocab_size": 30522,
              "max_position_embeddings": 512, "type_vocab_size": 2}
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

    opt, pythia, bert = folder(OPT_350M), folder(PYTHIA_410M), folder(BERT_LARGE)
    # -- inference: transformers docs SDPA generate peaks (MB = 1e6 B), logits of every position (2024 code)
    for b, s, mb in ((1, 128, 717.67), (1, 1024, 895.54), (8, 1024, 2443.35)):
        e = hfmem.infer(opt, context=s, batch=b, new_tokens=1, compute_dtype="fp16", logits="all").estimate
        add(f"infer opt-350m fp16 sdpa {b}x{s}", "max_memory_allocated", mb * 1e6, e.peak_allocated_bytes)
    for b, s, mb in ((1, 128, 974.83), (1, 2048, 1734.51), (4, 2048, 4165.26)):
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
    for args, gib, name in (
        (dict(method="full", adamw_impl="foreach"), 36.20, "full fine-tune"),
        (dict(method="lora", lora_rank=32, lora_targets=["q_proj", "v_proj"]), 20.76, "LoRA r32 q,v"),
        (dict(method="lora", lora_rank=64, lora_targets=["q_proj", "v_proj"]), 21.00, "LoRA r64 q,v"),
        (dict(method="lora", lora_rank=32, lora_targets=["q_proj", "v_proj"], dora=True), 22.85, "DoRA r32 q,v"),
        (dict(method="lora", lora_rank=10, lora_targets=["gate_proj", "up_proj", "down_proj"]), 23.00, "LoRA r10 mlp"),
    ):
        e = hfmem.train("meta-llama/Llama-3.2-3B", OFF, precision="bf16", batch=4, seq=768, eval_generate_batch=50,
                        eval_generate_tokens=800, **args).estimate
        add(f"train Llama-3.2-3B {name} (PEFT MetaMathQA)", "max_memory_reserved", gib * GiB, e.peak_reserved_bytes,
            "eval generation 50x800 modelled as its own phase" if name == "full fine-tune" else
            "")
    # -- training: pythia-410m (transformers docs; fp16, no optimizer stated: a stateless step)
    for (b, s), (eager, sdpa) in {(1, 512): (2278.38, 1953.76), (1, 1024): (4772.36, 2408.35),
                                  (1, 2048): (13484.1, 3882.01), (4, 512): (6290.58, 3877.29)}.items():
        for attn, mb in (("eager", eager), ("sdpa", sdpa)):
            e = hfmem.train(pythia, precision="fp16", optimizer="sgd", attn=attn, batch=b, seq=s).estimate
            add(f"train pythia-410m fp16 {attn} {b}x{s}", "max_memory_allocated", mb * 1e6,
                e.peak_allocated_bytes + 24 * 2048 * 2048, "+ the 2024 code's causal-mask buffers")
    # -- training: bert-large anatomy (nvidia-smi MiB, V100, 2022)
    for args, mib in ((dict(batch=4), 14949), (dict(batch=1, grad_accum=4), 8681),
                      (dict(batch=1, grad_accum=4, grad_ckpt=True), 6775), (dict(batch=4, precision="amp-fp16"), 13939),
                      (dict(batch=1, grad_accum=4, grad_ckpt=True, precision="amp-fp16"), 7275),
                      (dict(batch=4, optimizer="adafactor"), 12295),
                      (dict(batch=1, grad_accum=4, grad_ckpt=True, precision="amp-fp16", optimizer="adafactor"), 4847),
                      (dict(batch=4, optimizer="adamw-8bit"), 13085),
                      (dict(batch=1, grad_accum=4, grad_ckpt=True, precision="amp-fp16", optimizer="adamw-8bit"), 5363)):
        settings = dict(precision="fp32", attn="eager", adamw_impl="forloop", seq=512,
                        overheads=Overheads(cuda_context_bytes=1343 * MiB))
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
