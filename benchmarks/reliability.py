"""The reliability report (docs/reliability.md): every hardening probe of the test suite, run as one job.

    python benchmarks/reliability.py               # the dedicated fuzz run (10^5 generated inputs) + probes
    python benchmarks/reliability.py --scale 0.01  # a quick look (the report says how many ran)

It runs the fuzz tests (tests/test_fuzz_*.py) under hypothesis' "fuzz" profile, each file in its own process
(side by side) with the examples per test of FUZZ_EXAMPLES — 10^5 inputs in all, most where an example is
cheap (a header parse) and fewer where it builds a model or runs an analysis — then the fault and malformed-input tests
(the fault-injecting test Hub, malformed files and paths, config values, the cache, ids and secrets), and
writes one table: the probe, the inputs tried, how many survived (answered, or refused with hfmem's own
one-line error), the time it took, and a green or red mark. A red row is a test failure: the report shows
it rather than hiding it, and the command exits 1.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

# (test file, what it probes) — the hardening tests, in the order of the report
PROBES = [
    ("test_fuzz_safetensors.py", "fuzz: safetensors headers, index files, local checkpoints"),
    ("test_fuzz_config.py", "fuzz: config.json values and shapes"),
    ("test_fuzz_cache.py", "fuzz: result-cache entries"),
    ("test_safetensors_headers.py", "malformed headers, FIFOs, directories, symlink loops, shards outside the folder"),
    ("test_config_validation.py", "config values: wrong types, NaN, zero/negative/implausible sizes, defaults only"),
    ("test_hub_faults.py", "a misbehaving Hub: latency, trickle, resets, truncation, 429, 5xx, redirects, Range"),
    ("test_cache_heal.py", "a corrupt, orphaned, full or read-only cache"),
    ("test_ids_secrets.py", "ids by the Hub's rules, flag ranges, credentials in HF_ENDPOINT, remote code"),
]


# examples per generated-input test of each fuzz file: 10 x 8,300 + 4 x 3,200 + 1 x 5,000 = 100,800
FUZZ_EXAMPLES = {"test_fuzz_safetensors.py": 8300, "test_fuzz_config.py": 3200, "test_fuzz_cache.py": 5000}


def _fuzz_files() -> list[Path]:
    return [TESTS / f for f, _ in PROBES if f.startswith("test_fuzz_") and (TESTS / f).is_file()]


def _command(files: list[Path], junit: Path, stats: bool) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *map(str, files)]
    if stats:
        cmd.insert(4, "--hypothesis-show-statistics")
    return cmd


def _run(files: list[Path], env: dict, junit: Path, stats: bool) -> str:
    proc = subprocess.run(_command(files, junit, stats), capture_output=True, text=True, cwd=ROOT, env=env)
    return proc.stdout + proc.stderr


def _run_fuzz(files: list[Path], scale: float, out: Path) -> tuple[str, dict[str, int]]:
    """Each fuzz file in its own process, all at once; returns the combined output and examples per test."""
    procs, per_test = [], {}
    for f in files:
        per_test[f.name] = max(1, round(FUZZ_EXAMPLES.get(f.name, 1000) * scale))
        env = {**os.environ, "HYPOTHESIS_PROFILE": "fuzz", "HFMEM_FUZZ_EXAMPLES": str(per_test[f.name])}
        procs.append(subprocess.Popen(_command([f], out / f"reliability-{f.stem}.xml", True), cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return "".join(p.communicate()[0] for p in procs), per_test


def _examples(output: str) -> dict[str, int]:
    """Generated inputs per test file, from hypothesis' statistics (passing + failing + invalid test cases)."""
    per_file: dict[str, int] = defaultdict(int)
    current = None
    for line in output.splitlines():
        m = re.match(r"^(tests/)?(test_[\w]+\.py)::", line)
        if m:
            current = m.group(2)
        m = re.search(r"(\d+) passing, (\d+) failing, and (\d+) invalid", line)
        if m and current:
            per_file[current] += sum(int(g) for g in m.groups())
    return per_file


def _results(junit: Path) -> dict[str, dict]:
    out: dict[str, dict] = defaultdict(lambda: {"tests": 0, "failed": 0, "skipped": 0, "seconds": 0.0})
    if not junit.is_file():
        return out
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = Path((case.get("file") or case.get("classname", "").replace(".", "/") + ".py")).name
        row = out[name]
        row["tests"] += 1
        row["seconds"] += float(case.get("time") or 0)
        if case.find("failure") is not None or case.find("error") is not None:
            row["failed"] += 1
        if case.find("skipped") is not None:
            row["skipped"] += 1
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply FUZZ_EXAMPLES (default 1: 10^5 in all)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    args = ap.parse_args(argv)

    fuzz = _fuzz_files()
    tmp = Path(tempfile.mkdtemp(prefix="hfmem-reliability-"))  # the junit files behind the table

    started = time.time()
    fuzz_out, per_test = _run_fuzz(fuzz, args.scale, tmp)
    examples = _examples(fuzz_out)
    others = [TESTS / f for f, _ in PROBES if not f.startswith("test_fuzz_") and (TESTS / f).is_file()]
    _run(others, {**os.environ}, tmp / "reliability-probes.xml", stats=False)
    results = {}
    for f in fuzz:
        results.update(_results(tmp / f"reliability-{f.stem}.xml"))
    results.update(_results(tmp / "reliability-probes.xml"))
    elapsed = time.time() - started

    rows, red = [], 0
    for file, what in PROBES:
        r = results.get(file)
        if r is None or not r["tests"]:
            rows.append(f"| {what} | `tests/{file}` | — | — | — | missing |")
            red += 1
            continue
        ran = r["tests"] - r["skipped"]
        inputs = examples.get(file) or ran
        ok = r["failed"] == 0 and ran > 0
        red += not ok
        survived = f"{inputs:,} of {inputs:,}" if ok else f"{r['failed']} test(s) failed"
        rows.append(f"| {what} | `tests/{file}` ({r['tests']} tests) | {inputs:,} | {survived} | "
                    f"{r['seconds']:.1f} s | {'green' if ok else 'RED'} |")
    total_inputs = sum(examples.values())
    versions = subprocess.run([sys.executable, "-c", "import hypothesis, huggingface_hub, transformers; "
                               "print(hypothesis.__version__, huggingface_hub.__version__, transformers.__version__)"],
                              capture_output=True, text=True).stdout.split()
    text = "\n".join([
        "# Reliability: hardened inputs, a misbehaving Hub, a cache that heals",
        "",
        "Regenerate with `python benchmarks/reliability.py` (about "
        f"{elapsed / 60:.0f} min on {os.cpu_count()} cores). Each row is a group of tests of the suite; the default",
        "test run takes the same tests with a small deterministic fuzz profile (60 examples per fuzz test).",
        "\"Survived\" means every input was answered or refused with one of hfmem's own errors (a one-line",
        "message and the exit code of its kind); a fault case also asserts its time bound, exit code, message",
        "and fallback note.",
        "",
        f"Fuzz run: {total_inputs:,} generated inputs (hypothesis profile `fuzz`; examples per test: "
        + ", ".join(f"{n:,} in `{f}`" for f, n in per_test.items()) + ").",
        "",
        "| probe | tests | inputs tried | survived | time | status |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Run on {platform.python_implementation()} {platform.python_version()}, "
        + (f"hypothesis {versions[0]}, huggingface_hub {versions[1]}, transformers {versions[2]}"
           if len(versions) == 3 else "") + f", {time.strftime('%Y-%m-%d', time.gmtime())}.",
        "",
    ])
    args.out.write_text(text)
    print(text)
    return 1 if red else 0


if __name__ == "__main__":
    sys.exit(main())
