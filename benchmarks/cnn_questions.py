#!/usr/bin/env python
"""The seed note's CNN questions for ResNet-50, measured with hfmem's simulator (issue 13, item 6).

    python benchmarks/cnn_questions.py [--batches 1 32] [--out benchmarks/results/cnn_questions.json]

The seed note (shared/seed/, "输入输出") says feature maps grow with the batch and that
``nn.ReLU(inplace=True)`` "saves a lot of memory" by writing the ReLU output into its input. This script
measures, instead of assuming, for microsoft/resnet-50 (tests/data/hub-configs/microsoft/resnet-50) training
at 224×224 in fp32 with plain SGD, on fake tensors along the CUDA memory path (hfmem.simulate: FakeTensorMode,
the GPU patches, MemoryTracker with the 512-byte CUDA block):

* saved activations per sample: what the forward (loss included) leaves allocated for backward, at each batch,
  and the per-sample slope between the smallest and the largest batch;
* the same with every ``nn.ReLU`` module's public ``inplace`` attribute set True (transformers' ResNet builds
  ``nn.ReLU()`` through ACT2FN; no library code is patched);
* an inference forward's peak (eval, no_grad) with and without inplace ReLU;
* what the forward allocates in all (every new output storage, by aten op: the seed's "feature maps"), the
  forward's and the whole step's peaks;
* BatchNorm: the running statistics' bytes (buffers) and what the BN nodes of the autograd graph save for
  backward (read from each node's ``_saved_*`` attributes, the way torch's autograd tutorial inspects saved
  tensors), split into the per-sample input and the per-channel stats.

It checks its own not-inplace numbers against ``hfmem.simulate.simulate_train`` on the same config (the two
must agree to the byte). Results go to ``--out`` and a table is printed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import sys
from pathlib import Path

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hfmem.simulate import build, optim, simulate_train  # noqa: E402
from hfmem.simulate.emulation import CUDA_MIN_BLOCK, gpu_patches  # noqa: E402
from hfmem.simulate.inputs import InputSizes, build_inputs  # noqa: E402
from hfmem.simulate.result import ACTIVATIONS, BUFFERS, PARAMETERS  # noqa: E402
from hfmem.simulate.tracker import MemoryTracker  # noqa: E402

CONFIG = ROOT / "tests" / "data" / "hub-configs" / "microsoft" / "resnet-50" / "config.json"
OUT = ROOT / "benchmarks" / "results" / "cnn_questions.json"
IMAGE_PX = 224
MiB = 1 << 20


class OutputCensus(TorchDispatchMode):
    """Bytes of every *new* output storage, by aten op (an output that shares a storage with one of the op's
    tensor arguments is a view or an in-place result and allocates nothing)."""

    def __init__(self):
        super().__init__()
        self.by_op: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        ins = {a.untyped_storage()._cdata for a in _flat(list(args) + list((kwargs or {}).values()))}
        for o in _flat([out]):
            if o.untyped_storage()._cdata not in ins:
                name = func.overloadpacket.__name__
                self.by_op[name] = self.by_op.get(name, 0) + o.untyped_storage().nbytes()
        return out



def track_start(tracker, model, inputs) -> None:
    """What is live before the first op: parameters, buffers, the input tensors."""
    for p in model.parameters():
        tracker.track(p, PARAMETERS)
    for b in model.buffers():
        tracker.track(b, BUFFERS)
    for t in inputs.tensors.values():
        if isinstance(t, torch.Tensor):
            tracker.track(t, ACTIVATIONS)

def _flat(items):
    for x in items:
        if isinstance(x, torch.Tensor):
            yield x
        elif isinstance(x, (list, tuple)):
            yield from _flat(x)


def saved_by_node(loss, tracker: MemoryTracker) -> dict[str, dict]:
    """For each autograd node type: the activation storages its nodes save (counted bytes, each storage once
    per type), split into per-channel tensors (1-D) and feature maps, and how many nodes."""
    seen_nodes, stack = set(), [loss.grad_fn]
    per_type: dict[str, dict] = {}
    while stack:
        node = stack.pop()
        if node is None or node in seen_nodes:
            continue
        seen_nodes.add(node)
        stack.extend(n for n, _ in node.next_functions)
        kind = type(node).__name__
        entry = per_type.setdefault(kind, {"nodes": 0, "_storages": {}})
        entry["nodes"] += 1
        for attr in dir(node):
            if not attr.startswith("_saved_"):
                continue
            for t in _flat([getattr(node, attr)]):
                if tracker.category_of(t) in (PARAMETERS, BUFFERS, None):
                    continue  # weights, running stats: not activations
                entry["_storages"][t.untyped_storage()._cdata] = (tracker.counted_bytes(t), t.dim() == 1)
    out = {}
    for kind, entry in sorted(per_type.items()):
        storages = entry.pop("_storages")
        out[kind] = {"nodes": entry["nodes"],
                     "saved_bytes": sum(b for b, _ in storages.values()),
                     "per_channel_bytes": sum(b for b, one_d in storages.values() if one_d),
                     "storages": len(storages)}
    return out


def run_step(config: dict, batch: int, inplace_relu: bool) -> dict:
    """One fp32 training step (forward with loss, backward, SGD step) of ResNet-50 on fake tensors."""
    tracker = MemoryTracker(CUDA_MIN_BLOCK)
    census = OutputCensus()
    with FakeTensorMode(allow_non_fake_inputs=True), gpu_patches(gpu_emulation=True, attn="sdpa"):
        model = build.build_model(config, dtype=torch.float32, attn="sdpa")
        model.train()
        relus = [m for m in model.modules() if isinstance(m, torch.nn.ReLU)]
        for m in relus:
            m.inplace = inplace_relu
        opt = optim.make_optimizer("sgd", "foreach", list(model.parameters()))
        inputs = build_inputs(model, InputSizes(batch, 1, None, IMAGE_PX, None), labels=True, dtype=torch.float32)
        track_start(tracker, model, inputs)
        bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        running_raw = sum(t.untyped_storage().nbytes() for m in bn
                          for t in (m.running_mean, m.running_var, m.num_batches_tracked))
        running_counted = sum(tracker.counted_bytes(t) for m in bn
                              for t in (m.running_mean, m.running_var, m.num_batches_tracked))
        with tracker:
            start = tracker.live
            tracker.start_phase("forward")
            with census:
                loss = model(**inputs.tensors).loss
            after_forward, forward_peak = tracker.live, tracker.phase_peak
            saved = saved_by_node(loss, tracker)
            tracker.start_phase("backward")
            loss.backward()
            del loss
            backward_peak = tracker.phase_peak
            tracker.start_phase("optimizer_step")
            opt.step()
            opt.zero_grad(set_to_none=True)
    return {
        "batch": batch,
        "inplace_relu": inplace_relu,
        "relu_modules": len(relus),
        "batchnorm_modules": len(bn),
        "live_before_forward_bytes": start,
        "saved_after_forward_bytes": after_forward - start,
        "forward_peak_bytes": forward_peak,
        "backward_peak_bytes": backward_peak,
        "step_peak_bytes": tracker.peak,
        "forward_new_output_bytes_by_op": dict(sorted(census.by_op.items(), key=lambda kv: -kv[1])),
        "saved_by_autograd_node": saved,
        "bn_running_stats_raw_bytes": running_raw,
        "bn_running_stats_counted_bytes": running_counted,
    }


def run_inference(config: dict, batch: int, inplace_relu: bool) -> dict:
    """One eval-mode forward under ``torch.no_grad()`` (nothing is saved): the peak above the weights."""
    tracker = MemoryTracker(CUDA_MIN_BLOCK)
    with FakeTensorMode(allow_non_fake_inputs=True), gpu_patches(gpu_emulation=True, attn="sdpa"), \
            torch.no_grad():
        model = build.build_model(config, dtype=torch.float32, attn="sdpa")
        model.eval()
        for m in model.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = inplace_relu
        inputs = build_inputs(model, InputSizes(batch, 1, None, IMAGE_PX, None), labels=False,
                              dtype=torch.float32)
        track_start(tracker, model, inputs)
        with tracker:
            start = tracker.live
            tracker.start_phase("forward")
            out = model(**inputs.tensors)
            del out
    return {"batch": batch, "inplace_relu": inplace_relu, "live_before_bytes": start,
            "peak_above_start_bytes": tracker.peak - start}


def per_sample(runs: dict, key: str, lo: int, hi: int) -> float:
    return (runs[hi][key] - runs[lo][key]) / (hi - lo)


def bn_kinds(saved: dict) -> list[str]:
    return [k for k in saved if "BatchNorm" in k]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    config = json.loads(CONFIG.read_text())
    batches = sorted(set(args.batches))
    lo, hi = batches[0], batches[-1]

    runs = {flag: {b: run_step(config, b, flag) for b in batches} for flag in (False, True)}
    infer = {flag: {b: run_inference(config, b, flag) for b in batches} for flag in (False, True)}

    # cross-check: hfmem's own simulate_train (not inplace, as transformers builds it) must agree to the byte
    check = {}
    for b in batches:
        res = simulate_train(config, batch=b, dtype="float32", optimizer="sgd", image_size=IMAGE_PX)
        fwd = res.phase("forward", 2)
        check[b] = {"simulate_train_saved_bytes": fwd.live_bytes_end - fwd.live_bytes_start,
                    "simulate_train_peak_bytes": res.peak_allocated_bytes,
                    "agrees": fwd.live_bytes_end - fwd.live_bytes_start == runs[False][b]["saved_after_forward_bytes"]}

    summary = {}
    for flag in (False, True):
        r = runs[flag]
        produced = {b: sum(r[b]["forward_new_output_bytes_by_op"].values()) for b in batches}
        summary["inplace" if flag else "not_inplace"] = {
            "saved_per_sample_bytes": per_sample(r, "saved_after_forward_bytes", lo, hi),
            "forward_allocated_per_sample_bytes": (produced[hi] - produced[lo]) / (hi - lo),
            "forward_peak_per_sample_bytes": per_sample(r, "forward_peak_bytes", lo, hi),
            "step_peak_per_sample_bytes": per_sample(r, "step_peak_bytes", lo, hi),
            **{f"saved_after_forward_bytes_batch{b}": r[b]["saved_after_forward_bytes"] for b in batches},
            **{f"step_peak_bytes_batch{b}": r[b]["step_peak_bytes"] for b in batches},
            "inference_peak_per_sample_bytes": per_sample(infer[flag], "peak_above_start_bytes", lo, hi),
        }
    base, inpl = summary["not_inplace"], summary["inplace"]
    summary["inplace_relu_saves_per_sample_bytes"] = {
        k: base[k] - inpl[k] for k in ("saved_per_sample_bytes", "forward_allocated_per_sample_bytes",
                                       "forward_peak_per_sample_bytes", "step_peak_per_sample_bytes",
                                       "inference_peak_per_sample_bytes")}
    r0 = runs[False]
    bn_saved = {b: {k: r0[b]["saved_by_autograd_node"][k] for k in bn_kinds(r0[b]["saved_by_autograd_node"])}
                for b in batches}
    summary["batchnorm"] = {
        "modules": r0[lo]["batchnorm_modules"],
        "running_stats_raw_bytes": r0[lo]["bn_running_stats_raw_bytes"],
        "running_stats_counted_bytes": r0[lo]["bn_running_stats_counted_bytes"],
        "saved_for_backward": bn_saved,
        "saved_per_sample_bytes": (sum(v["saved_bytes"] - v["per_channel_bytes"] for v in bn_saved[hi].values())
                                   - sum(v["saved_bytes"] - v["per_channel_bytes"] for v in bn_saved[lo].values()))
        / (hi - lo),
        "saved_per_channel_bytes": sum(v["per_channel_bytes"] for v in bn_saved[lo].values()),
    }

    doc = {
        "command": " ".join(["python", "benchmarks/cnn_questions.py", *(argv or sys.argv[1:])]),
        "generated": _dt.datetime.now().isoformat(timespec="seconds"),
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "transformers": build.transformers_version()},
        "model": "microsoft/resnet-50 (tests/data/hub-configs)",
        "setting": {"image_px": IMAGE_PX, "dtype": "float32", "optimizer": "sgd (no momentum)",
                    "allocator_block_bytes": CUDA_MIN_BLOCK, "batches": batches},
        "summary": summary,
        "simulate_train_check": check,
        "runs": {("inplace" if f else "not_inplace"): {str(b): v for b, v in r.items()} for f, r in runs.items()},
        "inference_runs": {("inplace" if f else "not_inplace"): {str(b): v for b, v in r.items()}
                           for f, r in infer.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(render(doc, batches))
    return 0 if all(c["agrees"] for c in check.values()) else 1


def render(doc: dict, batches: list[int]) -> str:
    s = doc["summary"]
    lines = ["ResNet-50 training, 224×224, fp32, SGD; fake tensors on the CUDA memory path (512-B blocks)", "",
             f"| | {' | '.join(f'batch {b}' for b in batches)} | per sample |", "|---|" + "---:|" * (len(batches) + 1)]
    rows = [("saved after forward", "saved_after_forward_bytes", "saved_per_sample_bytes"),
            ("step peak", "step_peak_bytes", "step_peak_per_sample_bytes")]
    for flag in ("not_inplace", "inplace"):
        for label, key, slope in rows:
            vals = [doc["runs"][flag][str(b)][key] for b in batches]
            lines.append(f"| {label}, ReLU {flag.replace('_', ' ')} | "
                         + " | ".join(f"{v / MiB:,.2f} MiB" for v in vals) + f" | {s[flag][slope] / MiB:,.3f} MiB |")
        vals = [doc["inference_runs"][flag][str(b)]["peak_above_start_bytes"] for b in batches]
        lines.append(f"| inference peak above weights + input (no_grad), ReLU {flag.replace('_', ' ')} | "
                     + " | ".join(f"{v / MiB:,.2f} MiB" for v in vals)
                     + f" | {s[flag]['inference_peak_per_sample_bytes'] / MiB:,.3f} MiB |")
        allocated = [sum(doc["runs"][flag][str(b)]["forward_new_output_bytes_by_op"].values()) for b in batches]
        lines.append(f"| forward allocates (all new outputs), ReLU {flag.replace('_', ' ')} | "
                     + " | ".join(f"{v / MiB:,.2f} MiB" for v in allocated)
                     + f" | {s[flag]['forward_allocated_per_sample_bytes'] / MiB:,.3f} MiB |")
    lines += ["", "inplace ReLU saves per sample: " + ", ".join(
        f"{k.removesuffix('_per_sample_bytes').replace('_', ' ')} {v / MiB:,.3f} MiB ({v:,.0f} B)"
        for k, v in s["inplace_relu_saves_per_sample_bytes"].items())]
    bn = s["batchnorm"]
    lines += [f"BatchNorm: {bn['modules']} modules; running stats {bn['running_stats_raw_bytes']:,} B "
              f"({bn['running_stats_counted_bytes']:,} B in 512-B blocks); saves for backward "
              f"{bn['saved_per_sample_bytes'] / MiB:,.3f} MiB per sample (its inputs) + "
              f"{bn['saved_per_channel_bytes']:,} B of per-channel stats (batch-independent)"]
    lo = str(batches[0])
    lines += ["", f"forward allocations by op, batch {lo}, ReLU not inplace → inplace (MiB):"]
    a, b = (doc["runs"][f][lo]["forward_new_output_bytes_by_op"] for f in ("not_inplace", "inplace"))
    for op in sorted(set(a) | set(b), key=lambda o: -max(a.get(o, 0), b.get(o, 0))):
        lines.append(f"  {op:32s} {a.get(op, 0) / MiB:9.3f} → {b.get(op, 0) / MiB:9.3f}")
    lines += ["", f"saved for backward by autograd node, batch {lo}, ReLU not inplace (MiB; a storage saved by two "
              "node types is listed under both):"]
    for kind, v in doc["runs"]["not_inplace"][lo]["saved_by_autograd_node"].items():
        if v["saved_bytes"]:
            lines.append(f"  {kind:32s} {v['nodes']:3d} nodes {v['saved_bytes'] / MiB:9.3f}")
    lines += ["", "simulate_train cross-check (saved after forward): " + ", ".join(
        f"batch {b}: {c['simulate_train_saved_bytes']:,} B {'=' if c['agrees'] else '≠'} this script"
        for b, c in doc["simulate_train_check"].items())]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
