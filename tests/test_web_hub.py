"""The web app's answers for a model read from the local test Hub (tests/hubserver.py: the real huggingface_hub
client against an HTTP server speaking the Hub's protocol, serving the real all-MiniLM-L6-v2 checkpoint), not
from the shipped snapshot: the page's calculator cells are the API's for the same repo, the parameter count is
the hand count of tests/test_safetensors_headers.py, and a repo the Hub does not have is the CLI's own line."""

from __future__ import annotations

from typer.testing import CliRunner

from hfmem import api
from hfmem.cli import app, route_argv
from hfmem.web import handlers as H

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def _hub(fake_hub, monkeypatch, minilm_dir):
    fake_hub.add_repo(MINILM, {p.name: p for p in minilm_dir.iterdir() if p.is_file()})
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return fake_hub


def test_the_calculator_answers_a_hub_model_as_the_api_does(fake_hub, monkeypatch, minilm_dir):
    hub = _hub(fake_hub, monkeypatch, minilm_dir)
    a = H.calculator(MINILM)
    assert not a.errors, a.errors
    (table,) = a.tables
    report = a.data["reports"][0]
    assert report.source == "hub" and len(report.revision) == 40  # read from the Hub at a pinned commit
    assert report.inventory.num_params == 22_713_216  # by hand: tests/test_safetensors_headers.py
    expected = api.analyze(MINILM).table()  # the CLI's path, answered from hfmem's result cache now
    assert [[row[i] for i in table.bytes_columns] for row in table.rows] == [
        [r.largest_layer_bytes, r.total_bytes, r.training_adam_bytes] for r in expected.rows]
    # float32: every parameter at 4 bytes, plus the buffers the model keeps (BERT's position ids)
    assert table.rows[0][4] == 22_713_216 * 4 + report.inventory.buffer_bytes
    assert any(path.endswith("model.safetensors") for _, path, _ in hub.requests)


def test_a_repo_the_hub_lacks_is_the_cli_s_line(fake_hub, monkeypatch, minilm_dir):
    _hub(fake_hub, monkeypatch, minilm_dir)
    a = H.calculator("nobody/no-such-model")
    cli = CliRunner().invoke(app, route_argv(["nobody/no-such-model"]))
    assert cli.exit_code == 3  # README "Errors": unknown repo
    assert a.errors == [cli.stderr.strip()]
