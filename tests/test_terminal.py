"""The terminal output: the component bar under the serving and training tables, and footnotes as short lines.

The bar's widths are checked against largest-remainder apportionments worked out by hand below; the printed
footnotes against the API's own assumption lists (``api.infer``/``api.train``), item by item."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from hfmem import api
from hfmem.cli import app, route_argv
from hfmem.render.bar import FREE_GLYPH, bar_lines, capacity_cell, component_bar

runner = CliRunner()
WIDTH = 100


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the shipped snapshot answers Qwen/Qwen3-8B and -0.6B


def cli(*args, columns=WIDTH):
    result = runner.invoke(app, route_argv(list(args)), env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.stderr
    return result.stdout


# -- the bar ------------------------------------------------------------------------------------------------

def widths(segments):
    return [(s.key, s.cells) for s in segments]


def test_bar_widths_exact_shares():
    # 50/30/20 of 10 cells: the quotas are whole, 5 + 3 + 2 = 10
    assert widths(component_bar({"weights_bytes": 50, "kv_cache_bytes": 30, "activations_bytes": 20}, None, 10)) \
        == [("weights_bytes", 5), ("kv_cache_bytes", 3), ("activations_bytes", 2)]


def test_bar_widths_largest_remainder():
    # 70 + 20 + 1 = 91 bytes on 20 cells: quotas 1400/91 = 15.385, 400/91 = 4.396, 20/91 = 0.220; the floors
    # 15 + 4 + 0 = 19 leave one cell, which goes to the largest remainder (0.396, the KV cache): 15, 5, 0
    segs = component_bar({"weights_bytes": 70, "kv_cache_bytes": 20, "cuda_context_bytes": 1}, None, 20)
    assert widths(segs) == [("weights_bytes", 15), ("kv_cache_bytes", 5), ("cuda_context_bytes", 0)]
    # three equal parts of 10 cells: 3.33 each, floors 9, the one left goes to the first (ties: earlier first)
    assert [s.cells for s in component_bar({"a": 1, "b": 1, "c": 1}, None, 10)] == [4, 3, 3]
    # a component under half a cell has no cell, but the legend still names it with its share
    lines = bar_lines({"weights_bytes": 70, "kv_cache_bytes": 20, "cuda_context_bytes": 1}, None, 20)
    legend = " ".join(line.plain for line in lines[1:])
    assert "CUDA context 1.1%" in legend  # 1/91 = 1.0989% by hand
    assert "weights 76.9%" in legend and "KV cache 22.0%" in legend  # 70/91 = 76.92%, 20/91 = 21.98%


def test_bar_capacity_above_and_below_the_total():
    # 60 + 20 = 80 bytes on a 100-byte GPU, 10 cells: the scale is 100, so 6 + 2 cells and 2 cells free; the
    # capacity mark is the bar's right end
    segs = component_bar({"weights_bytes": 60, "kv_cache_bytes": 20}, 100, 10)
    assert widths(segs) == [("weights_bytes", 6), ("kv_cache_bytes", 2), ("free", 2)]
    assert capacity_cell(80, 100, 10) == 10
    bar = bar_lines({"weights_bytes": 60, "kv_cache_bytes": 20}, 100, 10)[0].plain
    assert bar.startswith("██████▓▓" + FREE_GLYPH * 2 + "|")
    # 150 bytes on a 100-byte GPU, 30 cells: the scale is the total, the mark after 30 * 100 / 150 = 20 cells
    segs = component_bar({"weights_bytes": 90, "activations_bytes": 60}, 100, 30)
    assert widths(segs) == [("weights_bytes", 18), ("activations_bytes", 12)]
    assert capacity_cell(150, 100, 30) == 20
    bar = bar_lines({"weights_bytes": 90, "activations_bytes": 60}, 100, 30)[0].plain
    assert bar.startswith("█" * 18 + "▒" * 2 + "|" + "▒" * 10 + " ")


def test_bar_glyphs_are_distinct_and_readable_without_colour():
    comps = {k: 10 for k in ("weights_bytes", "master_weights_bytes", "buffers_bytes", "gradients_bytes",
                             "optimizer_bytes", "kv_cache_bytes", "activations_bytes", "allocator_reserve_bytes",
                             "cuda_graphs_bytes", "cuda_context_bytes", "nccl_bytes", "other_bytes")}
    segs = component_bar(comps, 200, 60)
    assert len({s.glyph for s in segs}) == len(segs)  # free included
    assert sum(s.cells for s in segs) == 60
    out = io.StringIO()
    console = Console(file=out, width=100, color_system=None)
    for line in bar_lines(comps, 200, 60, line_width=100):
        console.print(line)
    assert "\x1b[" not in out.getvalue() and "other 8.3%" in out.getvalue()  # 10/120 by hand


def _bar_block(stdout: str) -> list[str]:
    """The lines between the table's bottom border and footnote 1."""
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("└")) + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("1. "))
    return lines[start:end]


def test_infer_table_shows_the_bar_with_the_apis_shares():
    r = api.infer("Qwen/Qwen3-8B", gpu="RTX-4090")
    c, total = r.estimate.components, r.estimate.device_total_bytes
    block = _bar_block(cli("infer", "Qwen/Qwen3-8B", "--gpu", "RTX-4090"))
    legend = " ".join(block[1:])
    # the shares of the API's components in its device total (they add up to it: the table's rows)
    assert sum(c.values()) == total
    for label, key in (("weights", "weights_bytes"), ("KV cache", "kv_cache_bytes"),
                       ("activations", "activations_bytes"), ("CUDA context", "cuda_context_bytes")):
        assert f"{label} {c[key] / total:.1%}" in legend
    # fits: the capacity mark closes the bar, after the free cells
    bar = block[0].split("  ")[0]
    assert bar.endswith(FREE_GLYPH + "|") and r.fit.fits
    assert "on RTX-4090" in block[0]
    # markdown and JSON carry no bar
    assert "█" not in cli("infer", "Qwen/Qwen3-8B", "--gpu", "RTX-4090", "--format", "markdown")


@pytest.mark.parametrize("model", ["Qwen/Qwen3-0.6B", "Qwen/Qwen3-8B"])
def test_train_table_shows_the_bar_summing_to_the_device_total(model):
    r = api.train(model, gpu="H100-80GB")
    e = r.estimate
    block = _bar_block(cli("train", model, "--gpu", "H100-80GB"))
    legend = " ".join(block[1:])
    # the model states the API's rows list, as shares of its device total
    states = ("weights_bytes", "gradients_bytes", "optimizer_bytes")
    for label, key in zip(("weights", "gradients", "optimizer"), states):
        assert f"{label} {e.components[key] / e.device_total_bytes:.1%}" in legend
    # the rest of the peak phase: the API's peak allocated minus those states (master weights: 0 in pure bf16)
    assert e.components.get("master_weights_bytes", 0) == 0
    rest = e.peak_allocated_bytes - sum(e.components[k] for k in states)
    assert rest >= 0 and f"rest of the peak {rest / e.device_total_bytes:.1%}" in legend
    # states + rest + reserve + context = peak allocated + reserve + context = the device total (the API's sums)
    assert e.peak_allocated_bytes + e.components["allocator_reserve_bytes"] + e.components["cuda_context_bytes"] \
        == e.device_total_bytes
    # it fits: the capacity mark closes the bar (the segments do not pass it)
    assert r.fits and block[0].split("  ")[0].endswith(FREE_GLYPH + "|")


# -- footnotes ----------------------------------------------------------------------------------------------

def _parts(lines: list[str], head: str) -> list[str]:
    """The parts listed under the footnote whose head line is ``N. <head>``, continuation lines joined."""
    start = next(i for i, line in enumerate(lines) if re.fullmatch(rf"\d+\. {re.escape(head)}", line))
    parts: list[str] = []
    for line in lines[start + 1:]:
        if line.startswith("   - "):
            parts.append(line[5:])
        elif line.startswith("     ") and parts:
            parts[-1] += " " + line.strip()
        else:
            break
    return parts


def _norm(items) -> list[str]:
    return [" ".join(str(a).split()) for a in items]


def _fits(line: str, width: int) -> bool:
    """Within ``width``, or a line that is one token after its indent and bullet (a URL, a path)."""
    return len(line) <= width or len(re.sub(r"^\s*(?:\d+\.|-)?\s*", "", line).split()) == 1


@pytest.mark.parametrize("columns", [100, 140])
def test_infer_footnotes_are_one_line_per_assumption(columns):
    expected = api.infer("Qwen/Qwen3-8B", gpu="RTX-4090").estimate.assumptions
    out = cli("infer", "Qwen/Qwen3-8B", "--gpu", "RTX-4090", columns=columns)
    notes = out.splitlines()[next(i for i, line in enumerate(out.splitlines()) if line.startswith("1. ")):]
    assert _parts(notes, "Assumptions:") == _norm(expected)
    assert all(_fits(line, columns) for line in notes), [line for line in notes if not _fits(line, columns)]
    # no footnote is the old run-on paragraph of parts joined with "; "
    assert not any(line.startswith(tuple(f"{i}. Assumptions: " for i in range(1, 20))) for line in notes)


def test_markdown_footnotes_list_each_assumption():
    expected = api.infer("Qwen/Qwen3-8B").estimate.assumptions
    lines = cli("infer", "Qwen/Qwen3-8B", "--format", "markdown").splitlines()
    assert _parts(lines, "Assumptions:") == list(expected)  # unwrapped: the API's strings exactly


def test_train_footnotes_are_one_line_per_assumption():
    expected = api.train("Qwen/Qwen3-0.6B").estimate.assumptions
    out = cli("train", "Qwen/Qwen3-0.6B")
    lines = out.splitlines()
    assert _parts(lines, "Assumptions:") == _norm(expected)
    notes = lines[next(i for i, line in enumerate(lines) if line.startswith("1. ")):]
    assert all(_fits(line, WIDTH) for line in notes)
    md = cli("train", "Qwen/Qwen3-0.6B", "--format", "markdown").splitlines()
    assert _parts(md, "Assumptions:") == list(expected)


def test_calc_footnotes_fit_the_width():
    lines = cli("Qwen/Qwen3-8B").splitlines()
    notes = lines[next(i for i, line in enumerate(lines) if line.startswith("1. ")):]
    assert len(notes) >= 3 and all(_fits(line, WIDTH) for line in notes)


# -- the bar under the llama.cpp table ----------------------------------------------------------------------

GGUF = "tests/data/gguf/tiny-llama-GGUF"  # three variants of a 2-layer llama (README: hfmem infer ... --gpu 1GiB)


def _hand_cells(sizes: list[int], width: int) -> list[int]:
    """Largest remainders worked out as by hand: each quota's floor, then one cell each to the largest
    fractional parts (earlier first on a tie) until ``width`` cells are given."""
    scale = sum(sizes)
    quotas = [width * s / scale for s in sizes]
    cells = [int(q) for q in quotas]
    order = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - cells[i]), i))
    for i in order[:width - sum(cells)]:
        cells[i] += 1
    return cells


def _runs(bar: str) -> list[tuple[str, int]]:
    """The bar's glyph runs up to the capacity mark, as (glyph, count)."""
    out: list[tuple[str, int]] = []
    for ch in bar.split("|", 1)[0]:
        if out and out[-1][0] == ch:
            out[-1] = (ch, out[-1][1] + 1)
        else:
            out.append((ch, 1))
    return out


def test_llamacpp_table_shows_a_bar_per_gpu_by_largest_remainder():
    # without a CUDA context the tiny model's buffers are a fair part of a 16 MiB GPU, so every segment shows
    r = api.infer_llamacpp(GGUF, context=2048, gpu="16MiB", cuda_context_bytes=0)
    (d,) = r.estimate.gpus
    cap = r.fit.gpu_bytes
    out = cli("infer", GGUF, "-c", "2048", "--gpu", "16MiB", "--cuda-context", "0MiB")
    lines = out.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("▉"))
    # the bar: 48 cells at 100 columns (render.bar.print_bars: min(48, columns - 48)), scaled to the GPU's
    # capacity since the buffers fit: model, KV, compute (output and context are 0 on CUDA0 here), then free.
    # Worked out for the run of the README's repo: 1116672, 1048576, 6553600 and 16777216 - 8718848 = 8058368
    # bytes of 16777216 on 48 cells are quotas 3.195, 3.0, 18.75, 23.055: floors 3+3+18+23 = 47, the one cell
    # left goes to the largest remainder (compute's .75): 3, 3, 19, 23
    sizes = [d.model_bytes, d.kv_bytes, d.compute_bytes, cap - d.total_bytes]
    assert d.output_bytes == d.context_bytes == d.projector_bytes == 0 and d.total_bytes < cap
    assert _runs(lines[i]) == list(zip("▉▓▙" + FREE_GLYPH, _hand_cells(sizes, 48)))
    # the legend's shares are the device's bytes over its total (the table's total column)
    legend = lines[i + 1]
    for label, n in (("model weights", d.model_bytes), ("KV cache", d.kv_bytes),
                     ("compute buffers", d.compute_bytes)):
        assert f"{label} {n / d.total_bytes:.1%}" in legend
    assert "on 16 MiB GPU" in lines[i]


def test_llamacpp_bars_are_labelled_per_gpu_when_there_are_several():
    r = api.infer_llamacpp(GGUF, context=2048, gpu="16MiB", gpus=2, cuda_context_bytes=0)
    out = cli("infer", GGUF, "-c", "2048", "--gpu", "16MiB", "--gpus", "2", "--cuda-context", "0MiB")
    lines = out.splitlines()
    for n, d in enumerate(r.estimate.gpus):
        at = lines.index(f"GPU {n}:")
        parts = [(g, b) for g, b in (("▉", d.model_bytes), ("▓", d.kv_bytes), ("▙", d.compute_bytes),
                                     ("o", d.output_bytes)) if b]
        sizes = [b for _, b in parts] + [r.fit.gpu_bytes - d.total_bytes]
        expected = [(g, c) for g, c in zip([g for g, _ in parts] + [FREE_GLYPH], _hand_cells(sizes, 48)) if c]
        assert _runs(lines[at + 1]) == expected
        for g, b in parts:
            assert f"{b / d.total_bytes:.1%}" in lines[at + 2]
    # markdown carries no bar
    assert "▉" not in cli("infer", GGUF, "-c", "2048", "--gpu", "16MiB", "--format", "markdown")
