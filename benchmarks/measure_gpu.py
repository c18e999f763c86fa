#!/usr/bin/env python
"""Run the validation matrix for real on a CUDA GPU and record what the allocator and the device report.

    python benchmarks/measure_gpu.py [--max-minutes 8] [--only KEY ...] [--out PATH]
    python benchmarks/measure_gpu.py --dry-run [--gpu-gib 139]     # no GPU needed: the plan and sizes

Needs: a CUDA build of torch, transformers, peft (for the LoRA cases); no network and no downloads —
the models are built from the snapshot's config.json files (``cache/models``) with random weights,
directly on the GPU in the case's dtype (``torch.device("cuda")`` + the model class's ``_from_config``,
the same class and attention implementation hfmem.simulate builds).

Each case is the one of benchmarks/validate.py's ``CASES`` with the same key and runs what the simulation
runs: training = ``iterations`` (2) steps of forward with ``labels = input_ids``, backward, ``AdamW(lr=1e-5,
foreach=True).step()`` and ``zero_grad(set_to_none=True)``, with gradient checkpointing (non-reentrant),
LoRA (PEFT, fp32 adapters) or ``torch.autocast`` as the case says; inference = a prefill into a
DynamicCache keeping the last position's logits, then ``new_tokens`` one-token decode steps, under
``torch.no_grad()`` (hfmem.simulate.engine's own ``_prefill`` / ``_decode_step``). The building, the loops, the per-phase peaks
and the device readings are hfmem.measure's (hfmem/measure/runner.py, device.py), which `hfmem measure` runs
for any hfmem train / infer settings; this script runs validate.py's matrix with them.

Per case, recorded in ``benchmarks/measured/<gpu>-<date>.json`` (format: benchmarks/measured/README.md):
``torch.cuda.max_memory_allocated`` and ``max_memory_reserved`` (over the whole loop, and per phase),
device memory used (NVML / nvidia-smi: before CUDA init, after init = the CUDA context, after the
case; and the peak of ``cudaMemGetInfo`` sampled every 2 ms during the case), with the GPU name, driver,
CUDA, torch, transformers and peft versions.

Robustness: every case runs in its own fresh child process (a clean CUDA context and allocator, peak
statistics from zero, a crash or an OOM loses only that case); the parent never touches CUDA (its context
would sit on the GPU during the cases). Cases run in ``priority`` order (validate.py), the important ones
first; a case whose estimated size exceeds the GPU's memory is skipped without running; an out-of-memory
error is recorded with the peaks reached so far; ``--max-minutes`` (default 8) bounds the whole run — a
case is not started when the budget is spent, and a running child is killed at the deadline. The result
file is rewritten after every case, so an interrupted run keeps what it measured.

Never imported by the tests or by CI.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import validate as V  # noqa: E402  (the matrix; also puts the repository root on sys.path)

GiB = 1 << 30
MEASURED = V.ROOT / "benchmarks" / "measured"
SCHEMA = "hfmem.measured/1"
CHILD_START_MARGIN_S = 20  # do not start a case with less than this left in the budget


# -- device memory and the run itself: hfmem.measure (shared with `hfmem measure`) ------------------------------
from hfmem.measure import device as _device  # noqa: E402
from hfmem.measure.child import own_device_used  # noqa: E402


def nvml_used_bytes() -> tuple[int | None, str]:
    """Used device memory (all processes) from NVML (pynvml) or nvidia-smi, without initialising CUDA."""
    return _device.used_bytes()


def driver_version() -> str | None:
    return _device.driver_version()


def case_plan(case: V.Case) -> dict:
    """The hfmem.measure plan (hfmem/measure/plan.py) of a validate.py case: what the simulation runs
    (AdamW foreach, fp32 LoRA adapters, non-reentrant checkpointing, 2 iterations)."""
    amp = {"bf16": "bfloat16", "fp16": "float16"}.get(case.amp)
    if case.mode == "infer":
        return {"mode": "infer", "weights_dtype": case.dtype, "attn": case.attn, "batch": case.batch,
                "context": case.seq, "new_tokens": case.new_tokens, "logits": "last", "image_size": None,
                "audio_seconds": None, "quant": None}
    lora = case.lora_dict()
    if lora is not None:
        lora.update(dropout=0.0, dora=False, adapter_dtype="float32")
    return {"mode": "train", "weights_dtype": "float32" if amp else case.dtype, "amp": amp, "grad_scaler": False,
            "attn": case.attn, "batch": case.batch, "seq": case.seq, "target_seq": None, "image_size": None,
            "audio_seconds": None, "grad_accum": 1, "grad_ckpt": case.grad_ckpt, "reentrant": False,
            "optimizer": "adamw", "adamw_impl": "foreach", "optimizer_in_backward": False, "iterations": 2,
            "lora": lora, "qlora": None, "deepspeed": None}


def child(key: str, result_path: Path, smoke: bool = False) -> int:
    """Run one case in this (fresh) process and write its record to ``result_path``.

    ``smoke``: a code-path check on the CPU (1 layer, batch 1, 64 tokens, every memory figure 0) for
    machines without a GPU; its numbers mean nothing."""
    import dataclasses

    case = next(c for c in V.CASES if c.key == key)
    if smoke:
        case = dataclasses.replace(case, layers=1,
                                   batch=1, seq=min(case.seq, 64), new_tokens=min(case.new_tokens, 2))
    rec: dict = {"key": key, "setting": case.setting(), "model": case.model, "layers": case.layers, "status": "error",
                 "smoke_cpu": smoke}
    before, how = (None, "smoke") if smoke else nvml_used_bytes()
    rec["device_used_before_init"], rec["device_used_method"] = before, how
    started = time.perf_counter()

    def write():
        rec["elapsed_s"] = round(time.perf_counter() - started, 2)
        result_path.write_text(json.dumps(rec))

    write()
    import torch

    from hfmem.measure import runner

    if not smoke:
        torch.cuda.init()
        torch.zeros(1, device="cuda")
        torch.cuda.synchronize()
        rec["device_used_after_init"] = nvml_used_bytes()[0]
        free, total = torch.cuda.mem_get_info()
        rec["mem_get_info_after_init"] = {"free": free, "total": total}
    sampler = _device.PeakSampler(torch) if not smoke else None
    try:
        if sampler:
            sampler.__enter__()
        runner.run(case_plan(case), V.load_config(case.model, case.layers), device="cpu" if smoke else "cuda",
                   record=rec)
    except Exception as exc:  # noqa: BLE001  (recorded; the parent goes on with the next case)
        rec["status"], rec["reason"] = "error", f"{exc.__class__.__name__}: {str(exc).strip()[:300]}"
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
        rec["device_used_peak_sampled"] = sampler.peak if sampler else None
        # the allocator still holds its cached segments here: context + reserved, as nvidia-smi shows it
        rec["device_used_after"] = None if smoke else nvml_used_bytes()[0]
        if not smoke:
            rec.update(own_device_used(rec))
        write()
    return 0


def probe(result_path: Path) -> int:
    """The GPU, its driver, the software versions and the CUDA context of a fresh process."""
    before, how = nvml_used_bytes()
    import torch

    env = {"cuda_available": torch.cuda.is_available()}
    if env["cuda_available"]:
        torch.zeros(1, device="cuda")
        torch.cuda.synchronize()
        props = torch.cuda.get_device_properties(0)
        after = nvml_used_bytes()[0]
        free, total = torch.cuda.mem_get_info()
        env.update({"gpu_name": props.name, "gpu_total_bytes": int(props.total_memory),
                    "compute_capability": f"{props.major}.{props.minor}", "multi_processor_count": props.multi_processor_count,
                    "mem_get_info_after_init": {"free": free, "total": total},
                    "device_used_before_init": before, "device_used_after_init": after,
                    "context_bytes": (after - before) if (after is not None and before is not None) else total - free,
                    "context_method": f"{how}: used after CUDA init - used before" if before is not None and after is not None
                    else "cudaMemGetInfo total - free after init (includes other processes)"})
    env.update(versions_now())
    env["torch_cuda"] = torch.version.cuda
    result_path.write_text(json.dumps(env))
    return 0


def versions_now() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "peft", "accelerate"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    out["python"] = platform.python_version()
    out["driver"] = driver_version()
    out["PYTORCH_CUDA_ALLOC_CONF"] = os.environ.get("PYTORCH_CUDA_ALLOC_CONF") or os.environ.get("PYTORCH_ALLOC_CONF")
    return out


# -- the parent: plan, budget, children, result file --------------------------------------------------------
def plan(cases: list[V.Case], log=print) -> list[tuple[V.Case, int | None, str]]:
    """(case, estimated peak allocated bytes, how estimated) in run order: priority, then size.

    The size is the calibrated estimate where calibration.json covers the architecture, else the
    published one (benchmarks/validate.py); it only decides what is skipped as too large and the order."""
    calibration = V.load_calibration()
    out = []
    for case in cases:
        try:
            est = V.estimate(case, None, calibration)
            chosen = est["calibrated"] or est["published"]
            out.append((case, chosen.total, "calibrated" if est["calibrated"] else "published"))
        except Exception as exc:  # noqa: BLE001
            log(f"  {case.key}: no estimate ({exc.__class__.__name__}: {exc})")
            out.append((case, None, "none"))
    out.sort(key=lambda t: (t[0].priority, t[1] or 0))
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "gpu"


def _run_child(args: list[str], timeout: float) -> tuple[int | None, str]:
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], capture_output=True, text=True,
                              timeout=max(1.0, timeout))
        return proc.returncode, (proc.stderr or "")[-2000:]
    except subprocess.TimeoutExpired as exc:
        return None, f"killed at the deadline after {exc.timeout:.0f} s"


def smoke_cpu(cases: list[V.Case]) -> int:
    """Every case's child code path on the CPU, each in its own process, as a real run would start them."""
    tmp = Path(tempfile.mkdtemp(prefix="hfmem-smoke-"))
    failed = 0
    for case in cases:
        result = tmp / f"{case.key}.json"
        code, err = _run_child(["--child", case.key, "--result", str(result), "--smoke-cpu"], timeout=600)
        rec = json.loads(result.read_text()) if result.exists() else {"status": "no result", "reason": err}
        ok = code == 0 and rec.get("status") == "ok"
        failed += not ok
        print(f"  {case.key:28s} {rec.get('status'):8s} {rec.get('elapsed_s', 0):6.1f} s  {'' if ok else rec.get('reason', err)}",
              flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"smoke (CPU): {len(cases) - failed} of {len(cases)} cases ran their code path")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-minutes", type=float, default=8.0, help="budget for the whole run (default 8)")
    ap.add_argument("--only", nargs="*", help="case keys (default: all of validate.py's CASES)")
    ap.add_argument("--out", type=Path, help="result file (default benchmarks/measured/<gpu>-<date>.json)")
    ap.add_argument("--dry-run", action="store_true", help="list the cases, their order and estimated sizes; no GPU")
    ap.add_argument("--gpu-gib", type=float, default=None, help="--dry-run: the GPU size to plan for (default: none)")
    ap.add_argument("--smoke-cpu", nargs="*", metavar="KEY",
                    help="check the measuring code paths on the CPU (1 layer, 64 tokens; figures are 0), no GPU")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.result, smoke=args.smoke_cpu is not None)
    if args.probe:
        return probe(args.result)

    started = time.monotonic()
    deadline = started + args.max_minutes * 60
    cases = [c for c in V.CASES if not args.only or c.key in set(args.only)]
    if args.only and len(cases) != len(set(args.only)):
        unknown = set(args.only) - {c.key for c in cases}
        print(f"unknown case keys: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2

    if args.smoke_cpu is not None:
        return smoke_cpu(cases if not args.smoke_cpu else [c for c in V.CASES if c.key in set(args.smoke_cpu)])

    if args.dry_run:
        print(f"measure_gpu --dry-run: {len(cases)} cases in run order (estimates: benchmarks/validate.py)")
        limit = args.gpu_gib * GiB if args.gpu_gib else None
        print(f"{'#':>3} {'key':28s} {'model':45s} {'setting':44s} {'estimate':>10s}  basis       plan")
        for i, (case, size, how) in enumerate(plan(cases), 1):
            verdict = "run" if limit is None or size is None or size <= limit else "skip (estimate > GPU)"
            print(f"{i:3d} {case.key:28s} {case.label():45s} {case.setting():44s} "
                  f"{(size or 0) / GiB:8.2f} GiB  {how:10s}  {verdict}")
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="hfmem-measure-"))
    code, err = _run_child(["--probe", "--result", str(tmp / "probe.json")], timeout=deadline - time.monotonic())
    if not (tmp / "probe.json").exists():
        print(f"probe failed ({code}): {err}", file=sys.stderr)
        return 1
    env = json.loads((tmp / "probe.json").read_text())
    if not env.get("cuda_available"):
        print("no CUDA device: this script measures a real GPU (use --dry-run to see the plan)", file=sys.stderr)
        return 1
    date = _dt.date.today().isoformat()
    out = args.out or MEASURED / f"{_slug(env['gpu_name'])}-{date}.json"
    env.update({"date": date, "command": " ".join(["python benchmarks/measure_gpu.py", *(argv or sys.argv[1:])]),
                "max_minutes": args.max_minutes, "platform": platform.platform()})
    doc = {"schema": SCHEMA, "environment": env, "context_bytes": env.get("context_bytes"), "cases": []}
    print(f"{env['gpu_name']} ({env['gpu_total_bytes'] / GiB:.1f} GiB), driver {env.get('driver')}, torch {env['torch']}, "
          f"transformers {env['transformers']}; CUDA context {(env.get('context_bytes') or 0) / GiB:.2f} GiB -> {out}")

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) + "\n")

    for case, size, how in plan(cases):
        rec = {"key": case.key, "setting": case.setting(), "model": case.model, "layers": case.layers,
               "priority": case.priority, "estimate_bytes": size, "estimate_basis": how}
        left = deadline - time.monotonic()
        if size is not None and size > env["gpu_total_bytes"]:
            rec.update(status="skipped", reason=f"estimated {size / GiB:.1f} GiB > the GPU's {env['gpu_total_bytes'] / GiB:.1f} GiB")
        elif left < CHILD_START_MARGIN_S:
            rec.update(status="skipped", reason=f"time budget ({args.max_minutes} min) spent")
        else:
            result = tmp / f"{case.key}.json"
            code, err = _run_child(["--child", case.key, "--result", str(result)], timeout=left)
            if result.exists():
                rec.update(json.loads(result.read_text()))
            if code is None:
                rec.update(status="timeout", reason=err)
            elif code != 0 and rec.get("status") in (None, "error"):
                tail = err.strip().splitlines()
                rec.update(status="error", reason=rec.get("reason") or (tail[-1] if tail else f"exit {code}"))
        doc["cases"].append(rec)
        save()
        alloc, res = rec.get("max_memory_allocated"), rec.get("max_memory_reserved")
        print(f"  {case.key:28s} {rec['status']:8s} allocated {(alloc or 0) / GiB:7.2f}  reserved {(res or 0) / GiB:7.2f} GiB"
              f"  (estimate {(size or 0) / GiB:.2f}){'  ' + str(rec.get('reason', ''))[:100] if rec['status'] != 'ok' else ''}",
              flush=True)

    shutil.rmtree(tmp, ignore_errors=True)
    counts: dict[str, int] = {}
    for rec in doc["cases"]:
        counts[rec["status"]] = counts.get(rec["status"], 0) + 1
    print(f"done in {(time.monotonic() - started) / 60:.1f} min: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
          + f" -> {out}\nThen: python benchmarks/validate.py (the report's section 3 lists these rows).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
