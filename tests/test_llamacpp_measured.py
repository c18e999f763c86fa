"""hfmem's llama.cpp buffers against llama.cpp itself: every buffer line llama.cpp printed when it loaded the
small real models of tests/gguf_recipes.py on the CPU (benchmarks/llamacpp_cpu.py ran it, through
llama-cpp-python, and recorded the lines in benchmarks/measured/llamacpp-cpu/runs.json). The files are rebuilt
from the same recipes here, read back by hfmem's GGUF reader, and estimated with the settings of each run.

The model, KV and output buffers are exact arithmetic in llama.cpp, so they must match the printed MiB (two
decimals, one rounding per printed line); the compute buffers come from ggml-alloc's packing of the real graph,
which hfmem models stage by stage, so they must be within 10 %. The runs marked ``held_out`` were recorded after
the compute-buffer coefficients were fitted to the others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfmem.api import infer_llamacpp
from hfmem.units import MiB

from gguf_recipes import run_settings, write_recipe

RUNS = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "measured" / "llamacpp-cpu"
                   / "runs.json").read_text())["runs"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipes")
    # header-only copies: the same headers and offsets as the files llama.cpp loaded, the data a sparse hole
    return {name: write_recipe(name, root / f"{name}.gguf", header_only=True) for name in {r["recipe"] for r in RUNS}}


def _estimate(run, path):
    return infer_llamacpp(str(path), **run_settings(run)).estimate


def _printed_matches(lines: list[float], exact_bytes: int) -> bool:
    """llama.cpp prints each buffer as bytes / 2**20 with two decimals; an iSWA model prints two KV lines, so the
    sum of the printed lines is within half a hundredth per line of the exact total."""
    return abs(sum(lines) - exact_bytes / MiB) <= 0.005 * len(lines) + 1e-9


def _id(run) -> str:
    return (f"{run['recipe']}-c{run['n_ctx']}-ub{run['n_ubatch']}-fa{int(run['flash_attn'])}-{run['type_k']}"
            f"-{run['type_v']}-np{run['n_seq_max']}{'-swafull' if run['swa_full'] else ''}")


def test_the_runs_cover_what_matters():
    """The measured runs span architectures, quantized KV, sliding windows, parallel sequences, MoE and both
    attention paths, and some were held out of the fit."""
    recipes = {r["recipe"] for r in RUNS}
    assert {"gemma2-f16", "qwen3moe-f16", "qwen2-q8_0"} <= recipes
    assert {r["type_k"] for r in RUNS} >= {"f16", "q8_0", "q4_0"}
    assert any(r["swa_full"] for r in RUNS) and any(r["n_seq_max"] > 1 for r in RUNS)
    assert {r["flash_attn"] for r in RUNS} == {True, False}
    assert sum(r["held_out"] for r in RUNS) >= 5


@pytest.mark.parametrize("run", RUNS, ids=_id)
def test_model_kv_and_output_buffers_equal_llamacpp(run, files):
    est = _estimate(run, files[run["recipe"]])
    cpu, printed = est.cpu, run["buffers_mib"]
    assert _printed_matches(printed["model"]["CPU_Mapped"], cpu.model_bytes)
    assert _printed_matches(printed["KV"]["CPU"], cpu.kv_bytes)
    assert _printed_matches(printed["output"]["CPU"], cpu.output_bytes)


@pytest.mark.parametrize("run", RUNS, ids=_id)
def test_compute_buffer_within_ten_percent_of_llamacpp(run, files):
    est = _estimate(run, files[run["recipe"]])
    measured = sum(run["buffers_mib"]["compute"]["CPU"]) * MiB
    assert abs(est.cpu.compute_bytes - measured) <= 0.10 * measured, (est.cpu.compute_bytes / MiB, measured / MiB)


def test_sliding_window_cache_sizes_as_llamacpp_printed():
    """gemma2 at -c 8192 -np 2 -ub 1024: llama.cpp printed a 4096-cell full cache and a 2048-cell sliding cache
    (its log lines, recorded in runs.json); by hand: per stream pad(min(4096, 1024 + 1024), 256) = 2048."""
    run = next(r for r in RUNS if r["recipe"] == "gemma2-f16" and r["n_seq_max"] == 2)
    assert any("size = 2048 cells" in line for line in run["log_lines"])
    assert any("size = 4096 cells" in line for line in run["log_lines"])
    from hfmem.model.gguf_model import GGUFModel
    from hfmem.scenarios.llamacpp import LlamaCppSettings, kv_cells_swa

    m = GGUFModel("gemma2", None, 6, 384, (6,) * 6, (2,) * 6, 64, 64, (1024,) * 6, 4096, 8192, 1024,
                  tuple(il % 2 == 0 for il in range(6)))
    s = LlamaCppSettings(context=4096, parallel=2, n_batch=4096, n_ubatch=1024)
    assert s.cells_per_stream == 4096 and kv_cells_swa(m, s) == 2048


@pytest.mark.parametrize("quant", ["F16", "Q8_0", "Q4_0"])
def test_shipped_tiny_files_are_their_recipes(quant, tmp_path):
    """tests/data/gguf/tiny-llama-GGUF (the README's examples) is exactly what its recipe writes, so anyone can
    rebuild it and llama.cpp can load it."""
    shipped = Path(__file__).resolve().parent / "data" / "gguf" / "tiny-llama-GGUF" / f"tiny-llama-{quant}.gguf"
    assert write_recipe(f"tiny-llama-{quant}", tmp_path / "x.gguf").read_bytes() == shipped.read_bytes()
    # and the header-only form the measured tests use has the very same header and size
    head = write_recipe(f"tiny-llama-{quant}", tmp_path / "h.gguf", header_only=True)
    from hfmem.metadata.gguf import read_local_header

    n = read_local_header(shipped).data_offset
    assert head.read_bytes()[:n] == shipped.read_bytes()[:n] and head.stat().st_size == shipped.stat().st_size
