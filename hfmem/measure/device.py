"""The GPU as the driver sees it: is there a CUDA device, how much memory is used on it (NVML through
nvidia-ml-py when installed, else nvidia-smi), and a sampler of the peak while a run goes on.

Nothing here creates a CUDA context: the parent process of a measurement never holds one (it would sit on the
GPU during the run and inflate what the device reports)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

from ..errors import NoCudaDeviceError

SAMPLE_INTERVAL_S = 0.002
NO_GPU_HINT = ("hfmem measure runs the settings for real on a CUDA GPU: run it on a machine with an NVIDIA GPU, its "
               "driver and a CUDA build of torch (https://pytorch.org/get-started/locally/); `hfmem train` / "
               "`hfmem infer` estimate without one")


def cuda_problem() -> str | None:
    """Why no CUDA device can be used here, or None when one can. ``torch.cuda.is_available()`` asks the
    driver for the device count; it creates no context."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return f"torch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        return (f"torch {torch.__version__} sees no CUDA device (no NVIDIA driver or GPU, or CUDA_VISIBLE_DEVICES "
                "hides it)")
    return None


def require_cuda() -> None:
    """``NoCudaDeviceError`` (exit 69) unless a CUDA device can be used."""
    problem = cuda_problem()
    if problem:
        raise NoCudaDeviceError(f"no CUDA GPU found: {problem}", hint=NO_GPU_HINT)


def _index() -> int:
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    return int(first) if first.isdigit() else 0


def _nvml_handle():
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        return pynvml, pynvml.nvmlDeviceGetHandleByIndex(_index())
    except Exception:  # noqa: BLE001  (not installed, or no driver)
        return None, None


def used_bytes() -> tuple[int | None, str]:
    """Device memory used (every process) and how it was read: NVML, else nvidia-smi (whole MiB)."""
    nvml, handle = _nvml_handle()
    if handle is not None:
        return int(nvml.nvmlDeviceGetMemoryInfo(handle).used), "nvml"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i",
                                  str(_index())], capture_output=True, text=True, timeout=20)
            return int(out.stdout.strip().splitlines()[0]) * (1 << 20), "nvidia-smi (MiB)"
        except Exception:  # noqa: BLE001
            pass
    return None, "unavailable"


def driver_version() -> str | None:
    nvml, handle = _nvml_handle()
    if nvml is not None:
        try:
            v = nvml.nvmlSystemGetDriverVersion()
            return v.decode() if isinstance(v, bytes) else str(v)
        except Exception:  # noqa: BLE001
            pass
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader", "-i", str(_index())],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0]
    except Exception:  # noqa: BLE001
        return None


class PeakSampler:
    """The device-wide used memory sampled every 2 ms in a thread; keeps the maximum. NVML when
    nvidia-ml-py is installed (the same reading as the baseline before CUDA init), else ``cudaMemGetInfo``
    (total - free; needs the run's context, which exists by then). nvidia-smi is too slow to sample."""

    def __init__(self, torch=None):
        self.torch, self.peak, self._stop = torch, 0, threading.Event()
        self.nvml, self.handle = _nvml_handle()
        self.method = "nvml" if self.handle is not None else "cudaMemGetInfo"
        self._thread = threading.Thread(target=self._run, daemon=True)

    def read(self) -> int:
        if self.handle is not None:
            return int(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used)
        free, total = self.torch.cuda.mem_get_info()
        return int(total - free)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.read())
            except Exception:  # noqa: BLE001  (a broken context: keep what was seen)
                return
            time.sleep(SAMPLE_INTERVAL_S)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=1)
