"""What ``--plot`` and ``hfmem serve`` cost: wall time of the commands as a user runs them, warm.

Each timed run is a fresh ``python -c`` child running ``hfmem.cli.main`` offline (the shipped snapshot answers), so
interpreter start and imports count as a user pays them. One untimed run first fills hfmem's result cache (a
private ``HFMEM_HOME``), so the numbers are the warm ones; the child's last stderr line says which of torch and
matplotlib it imported.

* ``infer`` / ``infer --plot FILE.png`` / ``.svg``, and ``train`` / ``train --plot``: what drawing adds to an answer
  (matplotlib's import, the curve's points, the figure).
* ``hfmem serve``: from the command to the URL line on stderr (Gradio's import and the app's build), then the first
  page load (an HTTP GET of the page).
* In-process, after warm-up: the web app's serving answer (``hfmem.web.handlers.serving``) and its plot
  (``serving_plot``), the two calls a Compute click makes.

Nothing here asserts on time: it is a measurement. Usage (the dev venv, about 2 minutes)::

    python benchmarks/plots_web.py [--runs 3] [--out benchmarks/results/plots_web.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = ("import sys\nfrom hfmem.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
         "sys.stderr.write('\\nIMPORTED=' + ','.join(m for m in ('torch', 'matplotlib', 'gradio') "
         "if m in sys.modules) + '\\n')\n")
MODEL, TRAIN_MODEL = "Qwen/Qwen3-8B", "Qwen/Qwen3-0.6B"


def _run(args: list[str], env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env,
                          timeout=600)
    took = time.perf_counter() - started
    if "IMPORTED=" not in proc.stderr:
        raise SystemExit(f"{args}: {proc.stderr[-800:]}")
    return took, proc.stderr.rsplit("IMPORTED=", 1)[1].strip()


def _timed(name: str, args: list[str], env: dict, runs: int) -> dict:
    _run(args, env)  # warm-up: fills the result cache
    times, imported = [], ""
    for _ in range(runs):
        t, imported = _run(args, env)
        times.append(t)
    row = {"name": name, "command": "hfmem " + " ".join(args), "median_s": round(statistics.median(times), 3),
           "runs_s": [round(t, 3) for t in times], "imported": imported.split(",") if imported else []}
    print(f"{name:24s} {row['median_s']:7.3f} s   imported: {imported or '-'}", file=sys.stderr)
    return row


def _serve_start(env: dict) -> dict:
    code = "from hfmem.cli import main; main(['serve', '--port', '0'])"
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        to_url = time.perf_counter() - started
        url = re.search(r"(http://\S+)", line).group(1)
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as r:
            r.read()
        first_get = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"{'serve: to the URL line':24s} {to_url:7.3f} s; first GET {first_get:.3f} s", file=sys.stderr)
    return {"to_url_s": round(to_url, 3), "first_page_get_s": round(first_get, 3)}


def _in_process(runs: int) -> dict:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from hfmem.web import handlers as H

    kwargs = dict(context=8192, gpu="RTX-4090")
    H.serving(MODEL, **kwargs)
    H.serving_plot(MODEL, **kwargs)  # warm-up: caches, matplotlib's import
    out = {}
    for name, call in (("serving answer", lambda: H.serving(MODEL, **kwargs)),
                       ("serving plot", lambda: H.serving_plot(MODEL, **kwargs))):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        out[name] = round(statistics.median(times), 3)
        print(f"{'web: ' + name:24s} {out[name]:7.3f} s (in process)", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "plots_web.json"))
    a = ap.parse_args()
    home = tempfile.mkdtemp(prefix="hfmem-bench-")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HFMEM_HOME=os.path.join(home, "hfmem"),
               GRADIO_ANALYTICS_ENABLED="False")
    env.pop("HFMEM_DEBUG", None)
    png, svg = os.path.join(home, "p.png"), os.path.join(home, "p.svg")
    serve = ["infer", MODEL, "--gpu", "RTX-4090", "--context", "8192"]
    train = ["train", TRAIN_MODEL, "--method", "lora", "--gpu", "RTX-4090"]
    rows = [_timed("infer", serve, env, a.runs),
            _timed("infer --plot png", serve + ["--plot", png], env, a.runs),
            _timed("infer --plot svg", serve + ["--plot", svg], env, a.runs),
            _timed("infer 3 models --plot", ["infer", MODEL, "meta-llama/Llama-3.1-8B", "Qwen/Qwen3-0.6B", "--gpu",
                                             "RTX-4090", "--plot", png], env, a.runs),
            _timed("train", train, env, a.runs),
            _timed("train --plot png", train + ["--plot", png], env, a.runs)]
    doc = {"machine": {"python": platform.python_version(), "platform": platform.platform(),
                       "cpus": os.cpu_count()},
           "commands": rows, "serve": _serve_start(env), "web_in_process_s": _in_process(a.runs)}
    Path(a.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
