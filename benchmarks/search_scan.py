"""``hfmem search`` over 500 listed models on the local test Hub: cold, warm, ``--refresh``, a training search and
a ``--time-budget`` bound.

What runs: tests/hubserver.py's FakeHub in this process (it serves from threads while the children run), holding
``tests/listing_hub.populate_many(hub, --models)`` repos (copies of about 37 real configs with header-only
safetensors). Each timed run is a fresh ``python -c`` child running ``hfmem.cli.main`` (as tests/conftest.py's
``run_hfmem(check_torch=True)`` does), so interpreter start and imports count the way a user pays them, and the
child's last stderr line says whether torch was imported.

* cold: fresh ``HFMEM_HOME`` and ``HF_HOME`` for every run (nothing cached: the listing, every model's info,
  config.json and safetensors headers are fetched).
* warm: the same command again on the home the last cold run filled (listing and rows from hfmem's cache).
* refresh: warm plus ``--refresh`` (the listing is read again from the Hub; the rows are still cached per commit).
* train: ``--train --method lora``, cold and warm in the same way.
* time budget: a cold serving run with ``--time-budget 5``; the JSON's ``scan`` says how far it got.

For every run it records wall time, the requests the fake received (split into listing pages, model info, file
reads with a Range header, whole-file GETs, HEADs, anything else), the most requests the fake had in flight at
once, the body bytes it served, the scan counts hfmem reports (listed, scanned, rows cached) and how many models
fit, did not fit or were skipped, and whether torch was imported. With ``--profile`` it also runs one cold and one
warm serving search under cProfile and keeps the top 15 functions by cumulative time.

Nothing here asserts on time: it is a measurement, not a test. Usage (the dev venv; on a shared 2-core machine
about 6 minutes with the defaults, 7 with ``--cold-runs 3``, which wrote the committed results/search_scan.json)::

    python benchmarks/search_scan.py [--models 500] [--cold-runs 1] [--warm-runs 3] [--no-profile]
                                     [--out benchmarks/results/search_scan.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench_core import ROOT, base_env, environment

sys.path.insert(0, str(ROOT / "tests"))
from hubserver import FakeHub  # noqa: E402  (the local test Hub)
from listing_hub import populate_many  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "search_scan.json"
SERVE = ["search", "--task", "text-generation", "--gpu", "RTX-4090", "--format", "json", "--quiet"]
TRAIN = SERVE + ["--train", "--method", "lora"]
# The child: hfmem's CLI entry point, then one stderr line saying whether torch was imported (tests/conftest.py
# run_hfmem(check_torch=True) does the same).
CHILD = ("import sys\nfrom hfmem.cli import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
         "    sys.stderr.write(chr(10) + 'TORCH_IMPORTED=' + str('torch' in sys.modules) + chr(10))\n")
# The same under cProfile, the statistics dumped to argv[1].
PROFILED = ("import sys, cProfile\nfrom hfmem.cli import main\nout = sys.argv.pop(1)\npr = cProfile.Profile()\n"
            "pr.enable()\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\nfinally:\n"
            "    pr.disable()\n    pr.dump_stats(out)\n")


def classify(method: str, path: str, headers: dict) -> str:
    """Which kind of Hub request this is (the Hub's routes: /api/models lists, /api/models/<id> is model info,
    /<id>/resolve/<rev>/<file> serves files)."""
    bare = path.split("?", 1)[0]
    if bare.rstrip("/") == "/api/models":
        return "listing_pages"
    if bare.startswith("/api/models/"):
        return "model_info"
    if "/resolve/" in bare:
        if method == "HEAD":
            return "file_head"
        return "file_range_reads" if headers.get("range") else "file_full_gets"
    return "other"


def max_in_flight(spans) -> int:
    """The most requests the fake was answering at the same moment."""
    events = []
    for s in spans:
        events.append((s.arrived, 1))
        events.append((s.done if s.done is not None else s.arrived, -1))
    most = now = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        now += step
        most = max(most, now)
    return most


def run_once(hub: FakeHub, home: Path, args: list[str], *, profile_to: Path | None = None) -> dict:
    """One search in a fresh child against ``hub``, with ``home`` holding HFMEM_HOME and HF_HOME."""
    env = base_env()
    env.update(HF_ENDPOINT=hub.endpoint, HFMEM_HOME=str(home / "hfmem"), HF_HOME=str(home / "hf"))
    env.pop("HF_TOKEN", None)  # the gated repos must be judged as an anonymous user meets them
    hub.clear_log()
    argv = [sys.executable, "-c", PROFILED if profile_to else CHILD] + ([str(profile_to)] if profile_to else [])
    started = time.perf_counter()
    proc = subprocess.run(argv + args, capture_output=True, text=True, env=env, timeout=900)
    wall_s = time.perf_counter() - started
    requests = list(hub.requests)
    spans = list(hub.timeline)
    kinds = Counter(classify(m, p, h) for m, p, h in requests)
    out: dict = {"wall_s": round(wall_s, 3), "exit_code": proc.returncode,
                 "requests": {k: kinds.get(k, 0) for k in ("listing_pages", "model_info", "file_range_reads",
                                                           "file_full_gets", "file_head", "other")},
                 "requests_total": len(requests),
                 "other_paths": sorted({p.split("?", 1)[0] for m, p, h in requests
                                        if classify(m, p, h) == "other"}),
                 "max_in_flight": max_in_flight(spans), "bytes_served": sum(hub.bytes_served.values())}
    out["torch_imported"] = ("TORCH_IMPORTED=True" in proc.stderr) if not profile_to else None
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        out["error"] = proc.stderr.strip().splitlines()[-3:]
        return out
    scan = report["scan"]
    out.update(listed=scan["listed"], scanned=scan["scanned"], stopped_by=scan["stopped_by"],
               listing_cached=scan["listing_cached"], rows_cached=scan["rows_cached"],
               search_elapsed_s=scan["elapsed_s"], fit=len(report["rows"]), not_fit=len(report["not_fitting"]),
               skipped=len(report["skipped"]),
               skip_reasons=dict(Counter(_reason(s["reason"]) for s in report["skipped"])))
    return out


def _reason(text: str) -> str:
    """A skip reason without the repo id, so that 40 gated copies count as one reason."""
    if "is gated" in text:
        return "gated: needs an access grant (no token given)"
    return text.split(": ", 1)[-1][:120]


def summary(runs: list[dict]) -> dict:
    walls = [r["wall_s"] for r in runs]
    return {"runs": len(runs), "wall_s_median": round(statistics.median(walls), 3), "wall_s_min": min(walls),
            "wall_s_max": max(walls)}


def top_cumulative(path: Path, n: int = 15, restrict: str | None = None) -> list[str]:
    """The ``n`` functions with the most cumulative time; ``restrict``: only those whose file:line(name) matches
    that regular expression (pstats' own restriction)."""
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf).sort_stats("cumulative")
    if restrict:
        stats.print_stats(restrict, n)
    else:
        stats.print_stats(n)
    lines = buf.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    return [line.rstrip() for line in lines[start:] if line.strip()]


def case(hub: FakeHub, tmp: Path, name: str, args: list[str], cold_runs: int, warm_runs: int, log,
         refresh: bool = False) -> dict:
    """``cold_runs`` cold runs (each on a fresh home), then ``warm_runs`` warm runs on the last cold run's home
    (and, with ``refresh``, as many ``--refresh`` runs)."""
    result: dict = {"args": args}
    cold = []
    home = tmp
    for i in range(cold_runs):
        home = Path(tempfile.mkdtemp(prefix=f"{name}-cold{i}-", dir=tmp))
        cold.append(run_once(hub, home, args))
        log(f"{name} cold {i + 1}/{cold_runs}: {cold[-1]['wall_s']:.2f} s, {cold[-1]['requests_total']} requests")
    result["cold"] = {**summary(cold), "each": cold}
    warm = []
    for i in range(warm_runs):
        warm.append(run_once(hub, home, args))
        log(f"{name} warm {i + 1}/{warm_runs}: {warm[-1]['wall_s']:.2f} s, {warm[-1]['requests_total']} requests")
    result["warm"] = {**summary(warm), "each": warm}
    if refresh:
        again = []
        for i in range(warm_runs):
            again.append(run_once(hub, home, args + ["--refresh"]))
            log(f"{name} refresh {i + 1}/{warm_runs}: {again[-1]['wall_s']:.2f} s, "
                f"{again[-1]['requests_total']} requests")
        result["refresh"] = {**summary(again), "each": again}
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=500, help="repos on the fake Hub and --limit (default 500)")
    ap.add_argument("--cold-runs", type=int, default=1, help="cold runs per job, each on a fresh home (default 1)")
    ap.add_argument("--warm-runs", type=int, default=3, help="warm and --refresh runs (default 3)")
    ap.add_argument("--time-budget", type=float, default=5.0, help="--time-budget of the bounded run (default 5)")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile runs")
    ap.add_argument("--out", type=Path, default=OUT)
    ns = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    env_info = environment()
    limit = ["--limit", str(ns.models)]
    tmp = Path(tempfile.mkdtemp(prefix="hfmem-search-scan-"))
    hub = FakeHub().start()
    try:
        listed = populate_many(hub, ns.models)
        result: dict = {
            "what": f"hfmem search over {ns.models} listed models on the local test Hub (tests/hubserver.py)",
            "machine": env_info,
            "hub": {"repos": len(listed), "distinct_param_counts": len({r.params for r in listed}),
                    "text_generation_repos": sum(r.pipeline_tag == "text-generation" for r in listed),
                    "gated_repos": sum(r.gated for r in listed), "page_cap": hub.page_cap},
            "models_at_once": _models_at_once(),
            "cases": {},
        }
        result["cases"]["serve"] = case(hub, tmp, "serve", SERVE + limit, ns.cold_runs, ns.warm_runs, log,
                                        refresh=True)
        result["cases"]["train_lora"] = case(hub, tmp, "train", TRAIN + limit, ns.cold_runs, ns.warm_runs, log)
        bounded = run_once(hub, Path(tempfile.mkdtemp(prefix="budget-", dir=tmp)),
                           SERVE + limit + ["--time-budget", str(ns.time_budget)])
        log(f"time budget {ns.time_budget} s: {bounded['wall_s']:.2f} s, scanned {bounded.get('scanned')}")
        result["cases"]["serve_time_budget"] = {"args": SERVE + limit + ["--time-budget", str(ns.time_budget)],
                                                "cold": bounded}
        if not ns.no_profile:
            home = Path(tempfile.mkdtemp(prefix="profile-", dir=tmp))
            prof: dict = {}
            for label in ("cold", "warm"):
                path = tmp / f"{label}.prof"
                run = run_once(hub, home, SERVE + limit, profile_to=path)
                prof[label] = {"wall_s_under_cprofile": run["wall_s"], "requests_total": run["requests_total"],
                               "top15_cumulative": top_cumulative(path),
                               # below the CLI's and typer's wrappers: hfmem's own functions, then imports
                               "top15_cumulative_hfmem": top_cumulative(path, 15, r"hfmem/(?!cli/)"),
                               "top15_cumulative_site_packages": top_cumulative(path, 15, "site-packages/(?!typer)")}
                log(f"profiled {label}: {run['wall_s']:.2f} s")
            result["diagnostics"] = {"cprofile_serve": prof}
        env_info["loadavg_end"] = os.getloadavg()
        result["elapsed_s"] = round(time.perf_counter() - started, 1)
    finally:
        hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    return 0


def _models_at_once() -> int | None:
    """hfmem's fetch concurrency (hfmem.sources.resolve.MODELS_AT_ONCE), read from the source file so that this
    process need not import hfmem."""
    import re

    text = (ROOT / "hfmem" / "sources" / "resolve.py").read_text()
    m = re.search(r"^MODELS_AT_ONCE\s*=\s*(\d+)", text, re.M)
    return int(m[1]) if m else None


def markdown(result: dict) -> str:
    env = result["machine"]
    v = env["versions"]
    lines = [f"Machine: {env['nproc']} cores ({env['cpu_model']}), shared; Python {env['python']}, "
             f"huggingface_hub {v.get('huggingface_hub')}, transformers {v.get('transformers')}, "
             f"torch {v.get('torch')}; hfmem at {str(env.get('git', {}).get('commit', '?'))[:10]}"
             f"{' (uncommitted changes)' if env.get('git', {}).get('dirty') else ''}; {env['date_utc']}.", "",
             "| run | wall time, median (min–max) | runs | requests: listing / info / Range / whole file / HEAD / "
             "other | most at once | scanned | fit / not fit / skipped | rows cached | torch imported |",
             "|---|---|---:|---|---:|---:|---|---:|---|"]

    def row(label: str, block: dict) -> None:
        each = block.get("each", [block])
        first = each[-1]
        r = first["requests"]
        wall = (f"{block['wall_s_median']:.2f} s ({block['wall_s_min']:.2f}–{block['wall_s_max']:.2f})"
                if "wall_s_median" in block else f"{first['wall_s']:.2f} s")
        torch = sorted({str(e["torch_imported"]).lower() for e in each})
        lines.append(f"| {label} | {wall} | {len(each)} | {r['listing_pages']} / {r['model_info']} / "
                     f"{r['file_range_reads']} / {r['file_full_gets']} / {r['file_head']} / {r['other']} | "
                     f"{first['max_in_flight']} | {first.get('scanned')} of {first.get('listed')} | "
                     f"{first.get('fit')} / {first.get('not_fit')} / {first.get('skipped')} | "
                     f"{first.get('rows_cached')} | {', '.join(torch)} |")

    c = result["cases"]
    row("serve, cold", c["serve"]["cold"])
    row("serve, warm", c["serve"]["warm"])
    row("serve, warm `--refresh`", c["serve"]["refresh"])
    row("train LoRA, cold", c["train_lora"]["cold"])
    row("train LoRA, warm", c["train_lora"]["warm"])
    tb = c["serve_time_budget"]["args"][-1]
    row(f"serve, cold, `--time-budget {tb}`", c["serve_time_budget"]["cold"])
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
