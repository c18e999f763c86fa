"""``hfmem infer / train --plot FILE`` through the CLI, side by side with the Python API: the JSON's ``plot`` key
is what ``hfmem.api.serving_curve`` / ``training_chart`` return for the same settings, it validates against the
shipped hfmem.plot/1 schema, the file written is an image of the size asked for (read back by Pillow / the SVG's
XML), and bad ``--plot`` values are one line and exit 2 before anything is estimated."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hfmem
from hfmem import api
from hfmem.cli import app, route_argv

pytest.importorskip("matplotlib")
jsonschema = pytest.importorskip("jsonschema")
Image = pytest.importorskip("PIL.Image")

OPTS = hfmem.Options(offline=True)
SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "hfmem/data/schema/plot.json").read_text())
runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, route_argv([*args, "--offline"]))


def test_infer_plot_json_is_the_apis_curve_and_the_png_has_the_size_asked(tmp_path):
    out = tmp_path / "serve.png"
    r = cli("infer", "Qwen/Qwen3-8B", "--gpu", "RTX-4090", "--context", "8192", "--plot", str(out),
            "--plot-gpu", "H100-80GB", "--plot-size", "900x500", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)["plot"]
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    curve = api.serving_curve("Qwen/Qwen3-8B", OPTS, gpu="RTX-4090", compare_gpus=["H100-80GB"], context=8192)
    assert doc["charts"] == [json.loads(json.dumps(curve.to_dict()))]
    # the table's own answer at the chosen point and its fit boundary are on the curve
    rep = api.infer("Qwen/Qwen3-8B", OPTS, gpu="RTX-4090", context=8192)
    chart = doc["charts"][0]
    assert chart["totals_bytes"][chart["values"].index(8192)] == rep.estimate.device_total_bytes
    assert chart["capacities"][0]["fit_limit"] == rep.fit.max_context
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (900, 500)


def test_several_models_batch_axis_svg(tmp_path):
    out = tmp_path / "serve.svg"
    r = cli("infer", "Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B", "--engine", "vllm", "--gpu", "H100-80GB",
            "--plot", str(out), "--plot-axis", "batch", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)["plot"]
    assert [c["model"] for c in doc["charts"]] == ["Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B"]
    for c in doc["charts"]:
        assert c["axis"] == "batch"
        fit = api.infer(c["model"], OPTS, gpu="H100-80GB", engine="vllm").fit
        assert c["capacities"][0]["fit_limit"] == fit.max_batch
        assert c["capacities"][0]["capacity_bytes"] == fit.capacity_bytes
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    # 1200 x 700 px drawn at 100 dpi: 864 x 504 pt (72 pt to the inch)
    assert (root.get("width"), root.get("height")) == ("864pt", "504pt")


def test_train_plot_json_is_the_reports_phases(tmp_path):
    out = tmp_path / "train.png"
    r = cli("train", "Qwen/Qwen3-0.6B", "--method", "lora", "--gpu", "RTX-4090", "--plot", str(out),
            "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc["plot"])
    chart = doc["plot"]["charts"][0]
    rep = api.train("Qwen/Qwen3-0.6B", OPTS, gpu="RTX-4090", method="lora")
    assert chart["phases"] == rep.estimate.phases
    assert chart["device_total_bytes"] == rep.estimate.device_total_bytes == doc["models"][0]["device_total_bytes"]
    assert chart["capacities"][0]["fit_limit"] == rep.max_batch
    with Image.open(out) as im:
        assert im.size == (1200, 700)


@pytest.mark.parametrize("args, says", [
    (("--plot", "x.jpg"), "must end in .png or .svg"),
    (("--plot", "x.png", "--plot-size", "big"), "expected WIDTHxHEIGHT"),
    (("--plot", "x.png", "--plot-size", "10x10"), "each side must be"),
    (("--plot", "no/such/folder/x.png"), "does not exist"),
])
def test_bad_plot_options_are_one_line_exit_2(tmp_path, monkeypatch, args, says):
    monkeypatch.chdir(tmp_path)
    r = cli("infer", "Qwen/Qwen3-8B", *args)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hfmem: error: --plot") and says in lines[0]
    assert not list(tmp_path.iterdir())  # nothing written
