"""One measured run in a fresh process: ``python -m hfmem.measure.child SPEC RESULT``.

A fresh process has a clean CUDA context and allocator (peak statistics from zero; a crash or an
out-of-memory error loses only this run), and the parent never touches CUDA, so the device memory NVML reports
before this process initialises CUDA is everything else on the GPU. SPEC: ``{"plan": ..., "config": ...}``;
RESULT: the run's record (``runner.run``'s fields, the device readings and the environment), or
``{"raise": {...}}`` for a typed error the parent re-raises (a setting the run refuses, a missing package).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import HfmemError, MeasureRunError, MeasureUnavailableError, SettingsError
from . import device

PACKAGES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "deepspeed", "flash-attn", "nvidia-ml-py")


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    out = {"hfmem": __version__}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    out["python"] = platform.python_version()
    out["platform"] = platform.platform()
    out["PYTORCH_CUDA_ALLOC_CONF"] = os.environ.get("PYTORCH_CUDA_ALLOC_CONF") or os.environ.get("PYTORCH_ALLOC_CONF")
    return out


def environment(torch) -> dict:
    props = torch.cuda.get_device_properties(0)
    return {"gpu_name": props.name, "gpu_total_bytes": int(props.total_memory),
            "compute_capability": f"{props.major}.{props.minor}", "driver": device.driver_version(),
            "torch_cuda": torch.version.cuda, **versions()}


def child(spec_path: Path, result_path: Path) -> int:
    spec = json.loads(spec_path.read_text())
    rec: dict = {"status": "error"}
    started = time.perf_counter()

    def write():
        rec["elapsed_s"] = round(time.perf_counter() - started, 2)
        result_path.write_text(json.dumps(rec))

    before, how = device.used_bytes()  # before CUDA init: every other process on the GPU
    rec.update(device_used_before_init=before, device_used_method=how)
    write()
    try:
        import torch

        from . import runner

        torch.zeros(1, device="cuda")
        torch.cuda.synchronize()
        rec["device_used_after_init"] = device.used_bytes()[0]
        free, total = torch.cuda.mem_get_info()
        rec["mem_get_info_after_init"] = {"free": int(free), "total": int(total)}
        rec["environment"] = environment(torch)
        write()
        with device.PeakSampler(torch) as sampler:
            runner.run(spec["plan"], spec["config"], device="cuda", record=rec)
        rec["device_used_peak_sampled"] = sampler.peak or None
        rec["device_used_sampling"] = sampler.method
        # the allocator still holds its cached segments here: context + reserved, as nvidia-smi shows it
        rec["device_used_after"] = device.used_bytes()[0]
        rec.update(own_device_used(rec))
    except (SettingsError, MeasureUnavailableError) as exc:
        rec["raise"] = {"kind": "settings" if isinstance(exc, SettingsError) else "unavailable",
                        "message": exc.message, "hint": exc.hint, "setting": getattr(exc, "setting", None)}
    finally:
        write()
    return 0


def own_device_used(rec: dict) -> dict:
    """This process's share of the device at its peak: the sampled peak minus what was used before it
    initialised CUDA (both NVML readings when nvidia-ml-py is installed), else what it holds after the run."""
    before = rec.get("device_used_before_init")
    if before is None:
        return {"device_used_bytes": None, "device_used_basis": "no device reading before CUDA init"}
    peak, after = rec.get("device_used_peak_sampled"), rec.get("device_used_after")
    if peak:
        return {"device_used_bytes": int(peak - before),
                "device_used_basis": f"peak sampled every 2 ms ({rec.get('device_used_sampling')}) - used before "
                                     f"CUDA init ({rec.get('device_used_method')})"}
    if after is not None:
        return {"device_used_bytes": int(after - before),
                "device_used_basis": f"used after the run - used before CUDA init ({rec.get('device_used_method')})"}
    return {"device_used_bytes": None, "device_used_basis": "no device reading after the run"}


def run_isolated(spec: dict, timeout_s: float | None = None) -> dict:
    """Run ``spec`` in a fresh child process; its record, or the typed error it reported."""
    with tempfile.TemporaryDirectory(prefix="hfmem-measure-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        try:
            proc = subprocess.run([sys.executable, "-m", "hfmem.measure.child", str(spec_path), str(result_path)],
                                  capture_output=True, text=True, timeout=timeout_s)
            err = (proc.stderr or "").strip().splitlines()
        except subprocess.TimeoutExpired as exc:
            proc, err = None, [f"killed after {exc.timeout:.0f} s"]
        rec = json.loads(result_path.read_text()) if result_path.exists() else None
    if rec is None:
        raise MeasureRunError(f"the measuring process produced no result ({err[-1] if err else 'no output'})")
    raised = rec.pop("raise", None)
    if raised:
        cls = SettingsError if raised["kind"] == "settings" else MeasureUnavailableError
        kwargs = {"setting": raised["setting"]} if cls is SettingsError else {}
        raise cls(raised["message"], hint=raised["hint"], **kwargs)
    if proc is None or proc.returncode != 0:
        rec.setdefault("reason", err[-1] if err else f"exit {getattr(proc, 'returncode', None)}")
        if rec.get("status") == "ok":
            rec["status"] = "error"
    return rec


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return child(Path(args[0]), Path(args[1]))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HfmemError as exc:  # the parent reads the result file; this line is for a person reading stderr
        print(f"hfmem measure child: {exc}", file=sys.stderr)
        sys.exit(1)
