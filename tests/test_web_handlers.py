"""The web app's handlers (hfmem.web.handlers): every number shown is the API's for the same settings. Fast: the
shipped snapshot answers offline; no gradio."""

import pytest

from hfmem import api
from hfmem.cli.errors import error_line
from hfmem.errors import SettingsError, UsageError
from hfmem.scenarios.finetune import TrainSettings
from hfmem.web import handlers as H


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _bytes(table) -> list:
    """The exact-bytes cells of a table, row by row."""
    return [[row[i] for i in table.bytes_columns] for row in table.rows]


def test_calculator_rows_are_the_api_s_calculator_table():
    a = H.calculator("baichuan-inc/Baichuan-7B", dtypes=["float32", "int8"])
    assert not a.errors
    (t,) = a.tables
    expected = api.analyze("baichuan-inc/Baichuan-7B").table()
    rows = {r.dtype: r for r in expected.rows}
    assert [row[0] for row in t.rows] == ["float32", "int8"]
    assert _bytes(t) == [[rows[d].largest_layer_bytes, rows[d].total_bytes, rows[d].training_adam_bytes]
                         for d in ("float32", "int8")]
    # the Model Memory Calculator publishes 26.08 GB for Baichuan-7B's float32 total (the Space's own example,
    # huggingface.co/spaces/hf-accelerate/model-memory-usage); the human column is its text
    assert t.rows[0][3] == "26.08 GB"


def test_serving_rows_fit_and_limits_are_api_infer_s():
    a = H.serving("Qwen/Qwen3-8B", engine="vllm", context=8192, batch=2, gpu="RTX-4090")
    assert not a.errors
    r = api.infer("Qwen/Qwen3-8B", gpu="RTX-4090", engine="vllm", context=8192, batch=2)
    e, f = r.estimate, r.fit
    comp, limits = a.tables
    flat = [b for (b,) in _bytes(comp)]
    assert flat == [*e.components.values(), e.peak_allocated_bytes, e.peak_reserved_bytes, e.device_total_bytes]
    lim = {row[0]: row[1] for row in limits.rows}
    assert lim["Fits"] == ("yes" if f.fits else "NO")
    assert lim["Free (negative: short), bytes"] == f.headroom_bytes
    assert lim["Max context at batch 2"] == f.max_context
    assert lim["Max sequences at 8,192"] == f.max_batch
    assert lim["Fewest GPUs"] == f.min_gpus
    assert lim["Weight format that fits"] == f.weight_format_that_fits
    from hfmem.plan.emit import vllm_serve

    assert a.snippet == vllm_serve("Qwen/Qwen3-8B", e, f)[0]
    assert a.command.startswith("hfmem infer Qwen/Qwen3-8B --engine vllm --context 8192 --batch 2")


def test_training_components_and_advice_are_api_train_s():
    a = H.training("Qwen/Qwen3-0.6B", method="lora", batch=8, gpu="RTX-3090")
    assert not a.errors
    r = api.train("Qwen/Qwen3-0.6B", settings=TrainSettings(method="lora", batch=8), gpu="RTX-3090", advise=True)
    e = r.estimate
    comp, phases, remedies = a.tables
    assert [b for (b,) in _bytes(comp)] == [*e.components.values(), e.peak_allocated_bytes, e.peak_reserved_bytes,
                                            e.device_total_bytes]
    assert [b for (b,) in _bytes(phases)] == list(e.phases.values())
    helping = [m for m in r.advice.remedies if m.helps]
    assert _bytes(remedies) == [[m.saves_bytes, m.device_total_bytes] for m in helping]
    assert r.advice.plan.command == a.snippet
    assert f"max seq at micro-batch 8: {r.max_seq:,}" in a.markdown


def test_compare_rows_are_api_infer_many_s_and_a_failure_is_its_line():
    a = H.compare("Qwen/Qwen3-8B, meta-llama/Llama-3.1-8B, not a model id!!", gpu="RTX-4090")
    reports = api.infer_many(["Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B"], gpu="RTX-4090")
    serving, fit, calc = a.tables
    for row, r in zip(serving.rows, reports):
        assert row[-1] == r.estimate.device_total_bytes
        assert [row[i] for i in serving.bytes_columns[:-1]] == list(r.estimate.components.values())
    assert [(row[0], row[4]) for row in fit.rows] == [(r.report.model, r.fit.max_context) for r in reports]
    assert [row[2] for row in calc.rows] == [r.report.table().rows[0].total_bytes for r in reports]
    with pytest.raises(UsageError) as exc:
        api.analyze("not a model id!!")
    assert a.errors == [error_line(exc.value)]


def test_a_bad_setting_is_the_cli_s_line_naming_the_flag():
    a = H.serving("Qwen/Qwen3-8B", context=0)
    with pytest.raises(SettingsError) as exc:
        api.infer("Qwen/Qwen3-8B", context=0)
    assert a.tables == [] and a.error == error_line(exc.value)
    assert "--context" in a.error and a.error.startswith("hfmem: error: ")


def test_any_other_exception_is_the_internal_error_line_not_a_traceback():
    a = H.guarded(lambda: {}["missing"])
    assert a.error == ("hfmem: internal error: KeyError: 'missing' (set HFMEM_DEBUG=1 for the traceback and "
                       "report it)")


def test_html_table_carries_exact_bytes():
    t = H.Table("t", ["component", "size", "bytes"], [["Weights", "1.00 GiB", 2**30]], (2,), elem_id="x")
    assert '<td class="bytes" data-bytes="1073741824">1073741824</td>' in t.html()
    assert H.Table("t", ["a"], [["<b>"]]).html().count("&lt;b&gt;") == 1


def test_search_rows_are_api_search_s():
    from hfmem.sources.listing import ListingQuery, parse_param_count

    a = H.search(max_params="9B", gpu="RTX-4090", limit=5)
    rep = api.search(ListingQuery(max_params=parse_param_count("9B", "--max-params")), gpu="RTX-4090", limit=5)
    (t,) = a.tables
    assert [(row[0], row[3]) for row in t.rows[:len(rep.rows)]] == [(r.model, r.needed_bytes) for r in rep.rows]
    # the page's own `hfmem search` line, run through the CLI, lists the same rows
    import json
    import shlex

    from typer.testing import CliRunner

    from hfmem.cli import app, route_argv

    cli = CliRunner().invoke(app, route_argv(shlex.split(a.command)[1:] + ["--format", "json", "--offline"]))
    assert cli.exit_code == 0, cli.output
    doc = json.loads(cli.stdout)
    assert [(r["model"], r["needed_bytes"]) for r in doc["rows"]] == [(r.model, r.needed_bytes) for r in rep.rows]


def test_the_serving_plot_is_an_image_of_the_asked_size_and_an_error_is_the_cli_s_line():
    pytest.importorskip("matplotlib")
    import io

    from PIL import Image

    fig, note = H.serving_plot("Qwen/Qwen3-8B", context=8192, gpu="RTX-4090", compare_gpus=["H100-80GB"])
    assert note == ""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert im.size == (1000, 520)  # handlers._figure asks make_figure for 1000 x 520 px
    fig, note = H.serving_plot("Qwen/Qwen3-8B", context=0)
    with pytest.raises(SettingsError) as exc:
        api.infer("Qwen/Qwen3-8B", context=0)
    assert fig is None and note == error_line(exc.value)


def test_the_answers_state_what_they_predict_and_every_assumption_as_the_cli_does():
    """The page's text carries the same footnotes as ``hfmem infer`` / ``hfmem train`` in Markdown: what each
    total predicts and each of the estimate's assumptions (from the API), one line each, and the notes."""
    from typer.testing import CliRunner

    from hfmem.cli import app, route_argv

    a = H.serving("Qwen/Qwen3-8B", context=8192, gpu="RTX-4090")
    r = api.infer("Qwen/Qwen3-8B", gpu="RTX-4090", context=8192)
    lines = a.footnotes.splitlines()
    assert "1. Each total predicts:" in lines
    for assumption in r.estimate.assumptions:
        assert f"   - {assumption}" in lines, assumption
    # the same footnotes `hfmem infer --format markdown` prints, in the same order
    cli = CliRunner().invoke(app, route_argv(["infer", "Qwen/Qwen3-8B", "--gpu", "RTX-4090", "--context", "8192",
                                              "--format", "markdown", "--offline"]))
    assert cli.exit_code == 0, cli.output
    numbered = [ln for ln in cli.stdout.splitlines() if ln[:1].isdigit() and ". " in ln[:4]]
    assert numbered and all(ln in lines for ln in numbered)
    t = H.training("Qwen/Qwen3-0.6B", method="lora", gpu="RTX-4090")
    rt = api.train("Qwen/Qwen3-0.6B", gpu="RTX-4090", method="lora")
    for assumption in rt.estimate.assumptions:
        assert f"   - {assumption}" in t.footnotes.splitlines(), assumption


# -------------------------------------------------------------------------------------------- llama.cpp

GGUF = "tests/data/gguf/tiny-llama-GGUF"  # three variants of a 2-layer llama; README: --gpu 1GiB -c 2048


def _cli(*args):
    from typer.testing import CliRunner

    from hfmem.cli import app, route_argv

    return CliRunner().invoke(app, route_argv(list(args)))


def test_llamacpp_serving_bytes_and_fit_are_api_infer_llamacpp_s():
    import os
    import shlex

    a = H.serving(GGUF, engine="llama.cpp", context=2048, gpu="1GiB")
    assert not a.errors
    r = api.infer_llamacpp(GGUF, context=2048, gpu="1GiB")
    e, f = r.estimate, r.fit
    devices, limits, variants = a.tables
    assert _bytes(devices) == [[d.model_bytes, d.kv_bytes, d.compute_bytes, d.output_bytes, d.context_bytes,
                                d.total_bytes] for d in e.devices]
    # each device's total is its buffers' sum (the tiny model has no projector)
    assert all(row[-1] == sum(row[:-1]) for row in _bytes(devices))
    lim = {row[0]: row[1] for row in limits.rows}
    assert lim["Fits"] == ("yes" if f.fits else "NO")
    assert lim["Free on the busiest GPU (negative: short), bytes"] == f.margin_bytes(e)
    assert lim[f"Largest context per sequence at -ngl {e.n_gpu_layers}, -np 1"] == f.max_context
    assert lim[f"Most layers on the GPU at context 2,048 (of {e.model.n_layer + 1})"] == f.max_gpu_layers
    assert lim["Best variant that fits"] == r.best
    # every variant with its file's size on disk (read back by os.stat, not by hfmem) and the API's peaks
    sizes = {x.variant.label: sum(os.path.getsize(os.path.join(GGUF, n)) for n in x.variant.files) for x in r.rows}
    assert _bytes(variants) == [[sizes[x.variant.label], x.estimate.gpu_peak_bytes, x.estimate.cpu.total_bytes,
                                 x.estimate.kv_bytes] for x in r.rows]
    assert len(variants.rows) == 3 == len(os.listdir(GGUF))
    assert f"**Fits 1 x 1 GiB GPU: {'yes' if f.fits else 'NO'}" in a.markdown
    # the footnotes `hfmem infer --engine llama.cpp --format markdown` prints, one per assumption of the API's
    md = _cli("infer", GGUF, "--engine", "llama.cpp", "-c", "2048", "--gpu", "1GiB", "--format", "markdown")
    numbered = [ln for ln in md.stdout.splitlines() if ln[:1].isdigit() and ". " in ln[:4]]
    assert len(numbered) >= 1 + len(e.assumptions)  # "Predicts", then each assumption, notes, units
    assert all(ln in a.footnotes.splitlines() for ln in numbered)
    # the snippet is what `hfmem infer --engine llama.cpp --emit llama.cpp` prints; the page's own command line
    # (run through the CLI) prints it too
    cli = _cli("infer", GGUF, "--engine", "llama.cpp", "-c", "2048", "--gpu", "1GiB", "--emit", "llama.cpp")
    assert cli.exit_code == 0, cli.output
    assert a.snippet == cli.stdout.strip() and a.snippet.startswith("llama-server ")
    own = _cli(*shlex.split(a.command)[1:])
    assert own.exit_code == 0, own.output
    assert own.stdout.strip() == a.snippet


def test_llamacpp_quant_picks_the_variant_as_the_cli_s_quant_does():
    a = H.serving(GGUF, engine="llama.cpp", context=2048, gpu="1GiB", quant="Q4_0")
    r = api.infer_llamacpp(GGUF, context=2048, gpu="1GiB", select="Q4_0")
    assert not a.errors and r.variant.label == "Q4_0"
    assert _bytes(a.tables[0])[0][-1] == r.estimate.devices[0].total_bytes
    assert "--quant Q4_0" in a.command and "tiny-llama-Q4_0.gguf" in a.snippet


def test_llamacpp_on_a_repo_without_gguf_files_is_the_cli_s_line():
    a = H.serving("Qwen/Qwen3-0.6B", engine="llama.cpp")
    cli = _cli("infer", "Qwen/Qwen3-0.6B", "--engine", "llama.cpp", "--offline")
    assert cli.exit_code != 0 and a.tables == []
    assert a.errors == [cli.stderr.strip()] and a.error.startswith("hfmem: error: ")


def test_a_gguf_only_hub_repo_is_answered_as_the_cli_answers_it(fake_hub, monkeypatch):
    """vLLM: the CLI's one line; transformers: the CLI's note, and the llama.cpp answer (the FakeHub serves the
    tiny repo's files)."""
    import os

    files = {"README.md": b"# GGUF"}
    for n in sorted(os.listdir(GGUF)):
        with open(os.path.join(GGUF, n), "rb") as fh:
            files[n] = fh.read()
    fake_hub.add_repo("org/tiny-llama-GGUF", files, library_name="gguf")
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    a = H.serving("org/tiny-llama-GGUF", engine="vllm")
    cli = _cli("infer", "org/tiny-llama-GGUF", "--engine", "vllm")
    assert cli.exit_code != 0 and a.errors == [cli.stderr.strip()]
    a = H.serving("org/tiny-llama-GGUF", engine="transformers", context=2048, gpu="1GiB")
    cli = _cli("infer", "org/tiny-llama-GGUF", "-c", "2048", "--gpu", "1GiB", "--format", "json")
    assert cli.exit_code == 0, cli.output
    import json

    (m,) = json.loads(cli.stdout)["models"]
    assert not a.errors and m["engine"] == "llama.cpp"
    assert _bytes(a.tables[0]) == [[d["model_bytes"], d["kv_bytes"], d["compute_bytes"], d["output_bytes"],
                                    d["context_bytes"], d["total_bytes"]] for d in m["devices"]]
    note = next(ln for ln in cli.stderr.splitlines() if "holds GGUF files" in ln)
    assert note in a.markdown.splitlines()


def test_the_llamacpp_plot_is_refused_with_the_cli_s_line(tmp_path):
    fig, note = H.serving_plot(GGUF, engine="llama.cpp", context=2048)
    cli = _cli("infer", GGUF, "--engine", "llama.cpp", "--plot", str(tmp_path / "x.png"))
    assert fig is None and cli.exit_code == 2 and note == cli.stderr.strip()
