"""Plots: the data of the serving curves and training charts (hfmem.plot.curves, built by hfmem.api), and the
figures drawn from it (hfmem.plot.figure).

Expected values come from elsewhere: each curve point against ``api.infer`` at that one setting (the path the
CLI answers with), each fit boundary against ``api.infer``'s own fit answer and against the device totals of the
points on both sides of it, the KV cache's growth against a hand calculation from Qwen3-8B's config.json, the
training chart against ``api.train``, and the figures read back from matplotlib's artists, from Pillow (PNG size)
and from the SVG's XML.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import hfmem
from hfmem import api
from hfmem.errors import HfmemError, UnsupportedArchitectureError, UsageError
from hfmem.plot import CapacityLine, PhaseChart, ServingCurve, default_values, phase_chart, plot_json

OPTS = hfmem.Options(offline=True)  # the shipped snapshot answers the models below
QWEN8 = "Qwen/Qwen3-8B"
QWEN06 = "Qwen/Qwen3-0.6B"
GIB = 2 ** 30
ROOT = Path(__file__).resolve().parents[1]


def _infer(model=QWEN8, gpu=None, **settings):
    return api.infer(model, OPTS, gpu=gpu, **settings)


def _point(curve: ServingCurve, x: int) -> dict[str, int]:
    i = curve.values.index(x)
    return {k: v[i] for k, v in curve.components.items()}


# -- each point is infer's answer at that setting ----------------------------------------------------------

@pytest.mark.parametrize("engine", ["transformers", "vllm"])
def test_context_points_equal_infer(engine):
    curve = api.serving_curve(QWEN8, OPTS, gpu="RTX-4090", engine=engine, context=4096,
                              values=[1024, 8192, 20000])
    assert curve.values == [1024, 4096, 8192, 20000]  # the chosen context joins the given ones
    assert curve.chosen == 4096 and curve.axis == "context" and curve.engine == engine
    assert curve.quantity == "device_total_bytes"
    for x in curve.values:
        r = _infer(gpu="RTX-4090", engine=engine, context=x)
        assert _point(curve, x) == r.estimate.components
        assert list(curve.components) == list(r.estimate.components)  # same names, same order
        i = curve.values.index(x)
        assert curve.totals_bytes[i] == r.estimate.device_total_bytes == sum(r.estimate.components.values())
        assert curve.peak_allocated_bytes[i] == r.estimate.peak_allocated_bytes
    assert curve.weights_format == _infer(engine=engine).estimate.weights_format
    assert curve.settings["engine"] == engine and curve.settings["context"] == 4096


def test_batch_points_equal_infer():
    curve = api.serving_curve(QWEN8, OPTS, axis="batch", context=2048, batch=3, values=[1, 2, 7])
    assert curve.values == [1, 2, 3, 7] and curve.chosen == 3 and curve.capacities == []  # no GPU, no lines
    for x in curve.values:
        r = _infer(context=2048, batch=x)
        assert _point(curve, x) == r.estimate.components
        assert curve.totals_bytes[curve.values.index(x)] == r.estimate.device_total_bytes


def test_kv_cache_grows_by_the_hand_calculated_bytes_per_token():
    # Qwen3-8B's config.json (huggingface.co/Qwen/Qwen3-8B): 36 layers, 8 KV heads, head_dim 128, bfloat16:
    # K and V of one token = 36 x 8 x 128 x 2 (K, V) x 2 bytes
    per_token = 36 * 8 * 128 * 2 * 2
    assert per_token == 147_456
    curve = api.serving_curve(QWEN8, OPTS, context=2048, values=[2048, 4096, 8192])
    kv = dict(zip(curve.values, curve.components["kv_cache_bytes"]))
    assert kv[4096] - kv[2048] == 2048 * per_token
    assert kv[8192] - kv[4096] == 4096 * per_token


# -- capacity lines and the fit boundary ------------------------------------------------------------------

def test_context_boundary_is_the_solvers_and_lies_between_the_points():
    curve = api.serving_curve(QWEN8, OPTS, gpu="RTX-4090", compare_gpus=["H100-80GB"], context=4096)
    assert [c.gpu for c in curve.capacities] == ["RTX-4090", "H100-80GB"]
    for line in curve.capacities:
        fit = _infer(gpu=line.gpu, context=4096).fit
        assert line.capacity_bytes == fit.capacity_bytes
        assert line.fit_limit == fit.max_context and line.gpus == 1
        assert line.fit_limit in curve.values  # the boundary is a point of the default curve
    small, big = curve.capacities
    # a 24 GB card: the memory stops the context; the device totals on both sides of the boundary say so
    assert small.fit_limit_by == "memory"
    at = _infer(context=small.fit_limit).estimate.device_total_bytes
    past = _infer(context=small.fit_limit + 1).estimate.device_total_bytes
    assert at <= small.capacity_bytes < past
    assert curve.total_at(small.fit_limit) == at
    # an 80 GB card holds the model's whole declared context: max_position_embeddings 40,960 (its config.json)
    assert big.fit_limit == 40_960 and big.fit_limit_by == "model"
    assert curve.values[-1] == 40_960


def test_vllm_batch_boundary_and_capacity():
    curve = api.serving_curve(QWEN8, OPTS, gpu="H100-80GB", engine="vllm", axis="batch", context=8192)
    (line,) = curve.capacities
    r = _infer(gpu="H100-80GB", engine="vllm", context=8192)
    # vLLM may use gpu_memory_utilization (0.9 by default) of what CUDA reports
    assert line.capacity_bytes == r.fit.capacity_bytes == int(0.9 * r.fit.gpu_usable_bytes)
    assert line.fit_limit == r.fit.max_batch
    at = _infer(gpu="H100-80GB", engine="vllm", context=8192, batch=line.fit_limit).estimate
    past = _infer(gpu="H100-80GB", engine="vllm", context=8192, batch=line.fit_limit + 1).estimate
    assert at.device_total_bytes <= line.capacity_bytes < past.device_total_bytes
    assert _point(curve, line.fit_limit) == at.components


def test_refused_points_are_left_out_with_a_note():
    curve = api.serving_curve(QWEN06, OPTS, axis="batch", values=[0, 4])
    assert curve.values == [1, 4]
    assert any(n.startswith("batch 0 left out") for n in curve.notes)


def test_default_values():
    # powers of two from 256 to the model's maximum, with the chosen context and the fit limits
    assert default_values("context", 4096, 40_960, [30_270, None]) == [
        256, 512, 1024, 2048, 4096, 8192, 16384, 30270, 32768, 40960]
    assert default_values("context", 100, 1024, []) == [100, 256, 512, 1024]
    assert default_values("context", 1 << 21, None, []) == [256 << i for i in range(13)] + [1 << 21]
    assert default_values("batch", 1, None, []) == [1, 2, 4, 8, 16]
    assert default_values("batch", 1, None, [18, 65]) == [1, 2, 4, 8, 16, 18, 32, 64, 65, 128]
    assert default_values("batch", 3, None, [5000]) == [1, 2, 3, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 5000]
    with pytest.raises(UsageError):
        default_values("seq", 1, None, [])


def test_bad_axis_and_unsupported_models(tmp_path):
    with pytest.raises(UsageError, match="context, batch"):
        api.serving_curve(QWEN06, OPTS, axis="tokens")
    # roberta-base is served by running its own code (an encoder: no closed form)
    with pytest.raises(UnsupportedArchitectureError, match="closed-form") as err:
        api.serving_curve("FacebookAI/roberta-base", OPTS)
    assert err.value.hint
    import gguf_factory as fac

    fac.write_gguf(tmp_path / "tiny.gguf", fac.llama())  # llama.cpp's own writer
    with pytest.raises(UnsupportedArchitectureError, match="GGUF"):
        api.serving_curve(str(tmp_path), OPTS)


def test_several_models_and_on_error():
    failed: list[tuple[str, HfmemError]] = []
    curves = api.serving_curves([QWEN8, "FacebookAI/roberta-base", QWEN06], OPTS, gpu="RTX-4090",
                                on_error=lambda m, e: failed.append((m, e)), context=4096, values=[1024])
    assert [c.model for c in curves] == [QWEN8, QWEN06]
    assert [m for m, _ in failed] == ["FacebookAI/roberta-base"]
    assert _point(curves[1], 1024) == _infer(QWEN06, gpu="RTX-4090", context=1024).estimate.components
    doc = json.loads(json.dumps(plot_json(curves)))  # JSON-ready all the way down
    assert doc["schema"] == "hfmem.plot/1" and doc["kind"] == "serving"
    assert doc["charts"][0]["capacities"][0]["capacity_bytes"] == curves[0].capacities[0].capacity_bytes
    assert doc["charts"][1]["components"]["kv_cache_bytes"] == curves[1].components["kv_cache_bytes"]


# -- training -----------------------------------------------------------------------------------------------

def test_training_chart_is_trains_answer():
    chart = api.training_chart(QWEN8, OPTS, gpu="H100-80GB", compare_gpus=["A100-40GB"], method="lora")
    assert isinstance(chart, PhaseChart)
    h100 = api.train(QWEN8, OPTS, gpu="H100-80GB", method="lora")
    a100 = api.train(QWEN8, OPTS, gpu="A100-40GB", method="lora")
    assert chart.phases == h100.estimate.phases
    assert set(chart.phases) >= {"forward", "backward", "optimizer_step"}
    assert chart.peak_phase == h100.estimate.peak_phase
    assert chart.components == h100.estimate.components
    assert chart.device_total_bytes == h100.estimate.device_total_bytes and chart.method == "lora"
    assert [c.gpu for c in chart.capacities] == ["H100-80GB", "A100-40GB"]
    assert chart.capacities[0].capacity_bytes == h100.gpu.usable_bytes
    assert chart.capacities[0].fit_limit == h100.max_batch
    assert chart.capacities[1].fit_limit == (a100.max_batch or None)
    # phase_chart straight from a report: nothing recomputed; an extra GPU adds its capacity only
    plain = phase_chart(h100, [a100.gpu])
    assert plain.phases == h100.estimate.phases and plain.capacities[1] == CapacityLine(
        "A100-40GB", 1, a100.gpu.usable_bytes, None, None)
    doc = json.loads(json.dumps(plot_json([chart])))
    assert doc["kind"] == "training" and doc["charts"][0]["phases"] == h100.estimate.phases
    with pytest.raises(UsageError):
        plot_json([chart, api.serving_curve(QWEN06, OPTS, values=[1024])])


# -- figures ------------------------------------------------------------------------------------------------

def _by_gid(ax, gid):
    found = [a for a in [*ax.lines, *ax.collections, *ax.patches] if a.get_gid() == gid]
    assert found, gid
    return found


def test_serving_figure_data_and_files(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    from hfmem.plot.figure import make_figure, save

    curve = api.serving_curve(QWEN8, OPTS, gpu="RTX-4090", context=4096, values=[1024, 16384])
    (line,) = curve.capacities
    fit = _infer(gpu="RTX-4090", context=4096).fit
    ax = make_figure([curve]).axes[0]
    (cap,) = _by_gid(ax, "capacity:RTX-4090")
    assert list(cap.get_ydata()) == [fit.capacity_bytes / GIB] * 2
    assert cap.get_label() == f"RTX-4090 x1: {fit.capacity_bytes / GIB:.1f} GiB"
    (limit,) = _by_gid(ax, f"limit:{QWEN8}:RTX-4090")
    assert list(limit.get_xdata()) == [fit.max_context] * 2
    (total,) = _by_gid(ax, f"total:{QWEN8}")
    totals = [_infer(context=x).estimate.device_total_bytes / GIB for x in curve.values]
    assert list(total.get_xdata()) == curve.values
    assert list(total.get_ydata()) == pytest.approx(totals, rel=1e-12)
    (dot,) = _by_gid(ax, f"chosen:{QWEN8}")
    assert list(dot.get_xdata()) == [4096] and list(dot.get_ydata()) == pytest.approx([totals[1]])
    # the stack: one band per component, named for people, topped by the device total
    bands = [c for c in ax.collections if str(c.get_gid()).startswith("stack:")]
    assert [b.get_label() for b in bands] == ["weights", "buffers", "KV cache", "activations",
                                              "allocator reserve", "CUDA context"]
    top = max(v[1] for b in bands for p in b.get_paths() for v in p.vertices)
    assert top == pytest.approx(max(totals), rel=1e-9)
    assert ax.get_xscale() == "log"

    fig = make_figure([curve])
    png = save(fig, tmp_path / "curve.png")
    assert Image.open(png).size == (1200, 700)
    svg = save(fig, tmp_path / "curve.svg")
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    # 1200 x 700 px at 100 dpi = 12 x 7 in = 864 x 504 pt (72 pt per inch)
    assert (root.get("width"), root.get("height")) == ("864pt", "504pt")
    odd = save(make_figure([curve], width_px=1001, height_px=333, dpi=96), tmp_path / "odd.png")
    assert Image.open(odd).size == (1001, 333)
    with pytest.raises(UsageError, match=r"\.jpg") as err:
        save(fig, tmp_path / "curve.jpg")
    assert ".png" in str(err.value) and ".svg" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != "") == ["curve.png", "curve.svg", "odd.png"]


def test_several_models_and_training_figures():
    pytest.importorskip("matplotlib")
    from hfmem.plot.figure import make_figure

    curves = api.serving_curves([QWEN8, QWEN06], OPTS, gpu="RTX-4090", values=[1024, 8192], context=4096)
    ax = make_figure(curves).axes[0]
    assert len(_by_gid(ax, "capacity:RTX-4090")) == 1  # one line per GPU, shared by the models
    for c in curves:
        (total,) = _by_gid(ax, f"total:{c.model}")
        expect = [_infer(c.model, context=x).estimate.device_total_bytes / GIB for x in c.values]
        assert list(total.get_ydata()) == pytest.approx(expect, rel=1e-12)
        (limit,) = _by_gid(ax, f"limit:{c.model}:RTX-4090")
        assert list(limit.get_xdata()) == [_infer(c.model, gpu="RTX-4090", context=4096).fit.max_context] * 2
    assert QWEN8 in ax.get_title() and QWEN06 in ax.get_title()

    charts = [api.training_chart(m, OPTS, gpu="H100-80GB", method="lora") for m in (QWEN8, QWEN06)]
    ax = make_figure(charts).axes[0]
    for c in charts:
        phases = api.train(c.model, OPTS, method="lora").estimate.phases
        for name, b in phases.items():
            (bar,) = _by_gid(ax, f"phase:{c.model}:{name}")
            assert bar.get_height() == pytest.approx(b / GIB, rel=1e-12)
    (cap,) = _by_gid(ax, "capacity:H100-80GB")
    limits = [api.train(c.model, OPTS, gpu="H100-80GB", method="lora").max_batch for c in charts]
    assert cap.get_label().endswith(f"largest batch that fits: {QWEN8} {limits[0]:,}, {QWEN06} {limits[1]:,}")
    assert "lora" in ax.get_title()
    with pytest.raises(UsageError):
        make_figure([curves[0], charts[0]])


# -- imports ------------------------------------------------------------------------------------------------

def test_plot_data_imports_neither_torch_nor_matplotlib():
    code = ("import hfmem.plot, hfmem.plot.curves, sys; "
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, "
            "[m for m in sys.modules if m.startswith(('torch', 'matplotlib'))]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_missing_matplotlib_is_one_line():
    # sys.modules[name] = None is Python's documented way to make an import fail (the import system raises
    # ImportError for it)
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from hfmem.errors import UsageError\n"
            "from hfmem.plot.figure import require_matplotlib\n"
            "try:\n    require_matplotlib()\nexcept UsageError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "plots need matplotlib, which is not installed — pip install 'hfmem[plot]'"
