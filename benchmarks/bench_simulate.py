#!/usr/bin/env python
"""Speed and host memory of ``hfmem simulate`` (issue 3, requirement 2).

    .venv/bin/python benchmarks/bench_simulate.py [--runs 3] [--out benchmarks/results/simulate.json]

Targets: a Llama-2-7B bf16 training step at seq 2048 (batch 1, SDPA, AdamW foreach, 2 iterations)
simulated in <= 30 s after the imports, with the process's host memory <= 1 GiB whatever the model size.
Larger models (Llama-3.1-70B inference, Qwen3-30B-A3B training, DeepSeek-V3 671B inference) show that
host memory stays flat: fake tensors carry shapes, never data.

Every run is a fresh subprocess (nothing cached between runs); the cases are run round-robin so that a
slow phase of a shared machine does not land on one case. Per run the child reports:

* ``import_s``: importing torch, transformers and hfmem.simulate's engine (not part of the target);
* ``simulate_s``: wall-clock time of reading the config and the ``simulate_*`` call (the target);
* ``rss_after_imports``: resident memory after the imports (VmRSS);
* ``peak_rss_during_simulation``: the peak resident memory while simulating (VmHWM, reset after the imports
  by writing 5 to /proc/self/clear_refs, Linux >= 4.0);
* ``peak_rss_process``: getrusage's ru_maxrss for the whole process (imports included): the target.

The medians (and min / max) over ``--runs`` runs go to ``--out`` (raw runs + environment) and to the
Markdown summary beside it, which is also printed. Nothing is hand-tuned: every number comes from the run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "simulate.json"
GiB = 1 << 30
TARGETS = {"llama2-7b-train": {"simulate_s": 30.0, "peak_rss_process": GiB}}

CASES = {
    # key: (snapshot repo id, mode, kwargs of simulate_train / simulate_infer)
    "llama2-7b-train": ("meta-llama/Llama-2-7b-hf", "train",
                        dict(batch=1, seq=2048, dtype="bfloat16", attn="sdpa", optimizer="adamw",
                             optimizer_impl="foreach", iterations=2)),
    "qwen3-30b-a3b-train": ("Qwen/Qwen3-30B-A3B", "train",
                            dict(batch=1, seq=2048, dtype="bfloat16", attn="sdpa", iterations=2)),
    "llama31-70b-infer": ("meta-llama/Llama-3.1-70B", "infer",
                          dict(batch=1, context=4096, new_tokens=4, dtype="bfloat16", attn="sdpa")),
    "deepseek-v3-infer": ("deepseek-ai/DeepSeek-V3", "infer",
                          dict(batch=1, context=2048, new_tokens=2, dtype="bfloat16", attn="sdpa")),
}

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import torch, transformers
import hfmem.simulate.engine  # noqa: F401  (the engine's imports: fake tensors, the tracker)
from hfmem.simulate import simulate_infer, simulate_train
t1 = time.perf_counter()

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return None

rss_after_imports = status("VmRSS")
try:  # reset VmHWM (peak RSS) so that it measures the simulation alone
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    hwm_reset = True
except OSError:
    hwm_reset = False
repo, mode, kwargs = json.loads(sys.argv[1])
t2 = time.perf_counter()
config = json.load(open(f"cache/models/{repo}/config.json"))
fn = simulate_train if mode == "train" else simulate_infer
result = fn(config, **kwargs)
t3 = time.perf_counter()
print(json.dumps({
    "import_s": t1 - t0, "simulate_s": t3 - t2, "engine_elapsed_s": result.elapsed_s,
    "peak_allocated_bytes": result.peak_allocated_bytes, "peak_phase": result.peak_phase,
    "rss_after_imports": rss_after_imports,
    "peak_rss_during_simulation": status("VmHWM") if hwm_reset else None,
    "peak_rss_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "versions": result.versions,
}))
"""


def run_child(key: str) -> dict:
    repo, mode, kwargs = CASES[key]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFMEM_")}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps([repo, mode, kwargs])], cwd=ROOT,
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{key}: child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def environment() -> dict:
    from importlib.metadata import version

    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"date": _dt.datetime.now().isoformat(timespec="seconds"), "python": platform.python_version(),
            "torch": version("torch"), "transformers": version("transformers"), "nproc": os.cpu_count(),
            "cpu": cpu, "loadavg_start": os.getloadavg(), "git_commit": commit}


def summarize(runs: list[dict]) -> dict:
    out = {}
    for field in ("import_s", "simulate_s", "rss_after_imports", "peak_rss_during_simulation", "peak_rss_process"):
        values = [r[field] for r in runs if r.get(field) is not None]
        if values:
            out[field] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    out["peak_allocated_bytes"] = runs[0]["peak_allocated_bytes"]
    out["peak_phase"] = runs[0]["peak_phase"]
    out["deterministic"] = len({r["peak_allocated_bytes"] for r in runs}) == 1
    return out


def markdown(doc: dict) -> str:
    env = doc["environment"]
    lines = ["# `hfmem simulate` speed and host memory", "",
             f"`{doc['command']}` — {env['date']}, {env['nproc']} CPUs ({env['cpu']}), Python {env['python']}, "
             f"torch {env['torch']}, transformers {env['transformers']}, commit {env['git_commit']}; "
             f"load average {env['loadavg_start'][0]:.2f} at start, {doc['loadavg_end'][0]:.2f} at end.", "",
             f"Median of {doc['runs']} runs, each a fresh subprocess (min–max in brackets). *simulate* = reading the "
             "config and the `simulate_*` call, after the imports (*imports* = torch, transformers, hfmem's engine). "
             "*peak RSS* = the whole process's maximum resident memory (imports included); *during simulation* = "
             "the peak after the imports (VmHWM reset).", "",
             "| case | simulated peak (GPU, allocated) | simulate | imports | RSS after imports | peak RSS during simulation | peak RSS (process) | target |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for key, s in doc["cases"].items():
        repo, mode, kwargs = CASES[key]
        target = TARGETS.get(key)
        verdict = ""
        if target:
            ok_t = s["simulate_s"]["median"] <= target["simulate_s"]
            ok_m = s["peak_rss_process"]["median"] <= target["peak_rss_process"]
            verdict = (f"≤ {target['simulate_s']:.0f} s: {'met' if ok_t else 'MISSED'}; "
                       f"≤ 1 GiB: {'met' if ok_m else 'MISSED'}")
        setting = ", ".join(f"{k} {v}" for k, v in kwargs.items())

        def sec(f):
            return f"{s[f]['median']:.1f} s [{s[f]['min']:.1f}–{s[f]['max']:.1f}]"

        def mib(f):
            return f"{s[f]['median'] / (1 << 20):.0f} MiB [{s[f]['min'] / (1 << 20):.0f}–{s[f]['max'] / (1 << 20):.0f}]" \
                if f in s else "—"

        lines.append(f"| {repo} {mode} ({setting}) | {s['peak_allocated_bytes'] / GiB:.2f} GiB at {s['peak_phase']} | "
                     f"{sec('simulate_s')} | {sec('import_s')} | {mib('rss_after_imports')} | "
                     f"{mib('peak_rss_during_simulation')} | {mib('peak_rss_process')} | {verdict} |")
    lines += ["", "The simulated peak is identical in every run (deterministic: "
              + ("yes" if all(s["deterministic"] for s in doc["cases"].values()) else "NO") + ")."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--only", nargs="*", choices=list(CASES))
    args = ap.parse_args(argv)
    keys = args.only or list(CASES)
    env = environment()
    runs: dict[str, list[dict]] = {k: [] for k in keys}
    for i in range(args.runs):  # round-robin
        for key in keys:
            r = run_child(key)
            runs[key].append(r)
            print(f"  run {i + 1}/{args.runs} {key:22s} simulate {r['simulate_s']:6.1f} s  imports {r['import_s']:5.1f} s  "
                  f"peak RSS {r['peak_rss_process'] / (1 << 20):6.0f} MiB  peak {r['peak_allocated_bytes'] / GiB:8.2f} GiB",
                  flush=True)
    doc = {"command": "python benchmarks/bench_simulate.py" + (f" --runs {args.runs}" if args.runs != 3 else ""),
           "runs": args.runs, "environment": env, "loadavg_end": os.getloadavg(), "targets": TARGETS,
           "cases": {k: summarize(v) for k, v in runs.items()}, "raw": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    text = markdown(doc)
    args.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
