"""How fast `hfmem infer` and `hfmem train` answer ("instantly", issue 4 requirement 7).

    python benchmarks/bench_estimates.py      # writes benchmarks/results/estimates.json and .md

Two measurements per case, on snapshot models with the Hub unreachable (HF_HUB_OFFLINE=1):
* the CLI end to end: the median wall time of 7 fresh processes (imports included, no torch);
* the API in one process after a first call: the median of 20 calls (the solvers' bisections, the advisor's
  search), i.e. hfmem's own work.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLI_CASES = [
    ("infer Llama-3.1-8B 32k x4 on an RTX-4090 (fit + solve)",
     ["infer", "meta-llama/Llama-3.1-8B", "--context", "32768", "--batch", "4", "--gpu", "RTX-4090"]),
    ("infer DeepSeek-V3 vLLM 64k on 8 x H200 (fit + solve)",
     ["infer", "deepseek-ai/DeepSeek-V3", "--engine", "vllm", "--context", "65536", "--gpu", "H200", "--gpus", "8"]),
    ("infer 3 models side by side on an H100", ["infer", "meta-llama/Llama-3.1-8B", "Qwen/Qwen3-8B",
                                                "mistralai/Mixtral-8x7B-v0.1", "--context", "8192", "--gpu", "H100-80GB"]),
    ("train Llama-2-13B amp-bf16 on an A100 (fits, max batch/seq)",
     ["train", "meta-llama/Llama-2-13b-hf", "--precision", "amp-bf16", "--gpu", "A100-80GB"]),
    ("train Llama-3.1-70B LoRA ZeRO-3 x8 --advise",
     ["train", "meta-llama/Llama-3.1-70B", "--method", "lora", "--zero", "3", "--gpus", "8", "--gpu", "H100-80GB",
      "--advise"]),
    ("train Qwen2.5-14B PPO on 4 x A800", ["train", "Qwen/Qwen2.5-14B", "--rlhf", "ppo", "--gpus", "4", "--gpu",
                                           "A800-80GB"]),
]


def cli_time(args: list[str], runs: int = 7) -> tuple[float, float]:
    import tempfile

    env = dict(os.environ, HF_HUB_OFFLINE="1", HFMEM_HOME=tempfile.mkdtemp(prefix="hfmem-bench-"))
    exe = Path(sys.executable).with_name("hfmem")
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run([str(exe), *args, "--format", "json"], env=env,
                              capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        if proc.returncode not in (0,):
            raise SystemExit(f"{args}: {proc.stderr.strip()}")
    return statistics.median(times), min(times)


def api_time(fn, runs: int = 20) -> float:
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    import hfmem

    off = hfmem.Options(offline=True)
    results = {"cli": [], "api": []}
    for name, args in CLI_CASES:
        med, best = cli_time(args)
        results["cli"].append({"case": name, "args": args, "median_s": round(med, 3), "min_s": round(best, 3)})
        print(f"CLI  {name}: {med:.3f} s (min {best:.3f})")
    api_cases = [
        ("infer Llama-3.1-8B with fit + solve", lambda: hfmem.infer("meta-llama/Llama-3.1-8B", off, context=32768,
                                                                    batch=4, gpu="RTX-4090")),
        ("infer DeepSeek-V3 vLLM with fit + solve", lambda: hfmem.infer("deepseek-ai/DeepSeek-V3", off,
                                                                        engine="vllm", context=65536, tp=8, gpu="H200")),
        ("train Llama-3.1-70B LoRA ZeRO-3 --advise", lambda: hfmem.train(
            "meta-llama/Llama-3.1-70B", off, method="lora", zero=3, gpus=8, precision="deepspeed-bf16",
            gpu="H100-80GB", advise=True)),
    ]
    for name, fn in api_cases:
        t = api_time(fn)
        results["api"].append({"case": name, "median_s": round(t, 4)})
        print(f"API  {name}: {t * 1000:.1f} ms")
    from importlib.metadata import version

    results["versions"] = {p: version(p) for p in ("torch", "transformers", "typer")}
    results["machine"] = f"{os.cpu_count()} cores"
    out = ROOT / "benchmarks" / "results"
    (out / "estimates.json").write_text(json.dumps(results, indent=1))
    lines = ["| case | median | min |", "|---|---:|---:|"]
    lines += [f"| CLI: {r['case']} | {r['median_s']:.2f} s | {r['min_s']:.2f} s |" for r in results["cli"]]
    lines += [f"| API (in process, after imports): {r['case']} | {r['median_s'] * 1000:.0f} ms | |"
              for r in results["api"]]
    (out / "estimates.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
