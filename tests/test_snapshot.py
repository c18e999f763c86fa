"""The shipped snapshot: complete, self-describing, reproducible by hfmem's own command, refreshable from the Hub."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import ROOT, json_out, run_hfmem
from hfmem.cli import app
from hfmem.sources import snapshot

runner = CliRunner()


def test_every_reference_model_is_in_the_snapshot(shared):
    """The snapshot is built from the shared hub-reference folder and the project's own tests/data/hub-configs
    (vision, audio, encoder-decoder and multimodal repos): every config of both, and nothing else."""
    folders = [shared / "hub-reference", ROOT / "tests" / "data" / "hub-configs"]
    by_folder = {repo: folder for folder in folders for repo in snapshot.reference_repos(folder)}
    index = snapshot.load_index(ROOT / "cache")
    assert len(by_folder) >= 99 and set(by_folder) == set(index["models"])
    for repo, folder in by_folder.items():
        entry = snapshot.lookup(repo, ROOT / "cache")
        # the config is kept verbatim, the provenance names where it came from
        assert entry.config == json.loads((folder / repo / "config.json").read_text())
        assert entry.provenance["origin"] == "reference config" and entry.provenance["built_at"]
        assert entry.inventory is not None or entry.error


def test_entries_without_inventory_say_why():
    index = snapshot.load_index(ROOT / "cache")
    missing = {r: snapshot.lookup(r, ROOT / "cache").error for r in index["models"]
               if snapshot.lookup(r, ROOT / "cache").inventory is None}
    assert set(missing) == {"RWKV/rwkv-5-world-3b", "microsoft/Phi-3.5-vision-instruct",
                            "deepseek-ai/deepseek-moe-16b-chat"}
    assert all("not in transformers" in why for why in missing.values())


def test_snapshot_is_small_and_has_no_weights():
    files = [p for p in (ROOT / "cache").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 5 * 2**20
    assert not [p for p in files if p.suffix in (".safetensors", ".bin", ".pt", ".gguf")]


@pytest.mark.parametrize("repo", ["baichuan-inc/Baichuan-7B", "google/gemma-2-2b-it", "openai/gpt-oss-20b"])
def test_snapshot_is_up_to_date_with_the_code(repo):
    """A snapshot entry equals what the current code computes from its config (rebuild with
    `hfmem snapshot build` after changing the inventory code)."""
    from hfmem.inventory.build import build_inventory
    from hfmem.metadata.config import ModelConfig

    entry = snapshot.lookup(repo, ROOT / "cache")
    fresh = build_inventory(ModelConfig(entry.config, "test"), None).to_dict()
    stored = dict(entry.inventory)
    # the installed torch/transformers may be newer than the build's; every count must still agree
    fresh.pop("versions"), stored.pop("versions")
    assert fresh == stored


def test_build_command(shared, tmp_path):
    ref = tmp_path / "ref"
    for repo in ("Qwen/Qwen3-0.6B", "RWKV/rwkv-5-world-3b"):
        (ref / repo).mkdir(parents=True)
        (ref / repo / "config.json").write_bytes((shared / "hub-reference" / repo / "config.json").read_bytes())
    (ref / "_unmapped" / "x").mkdir(parents=True)
    (ref / "_unmapped" / "x" / "config.json").write_text("{}")
    out = tmp_path / "snap"
    result = runner.invoke(app, ["snapshot", "build", "--from", str(ref), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    index = json.loads((out / "index.json").read_text())
    assert sorted(index["models"]) == ["Qwen/Qwen3-0.6B", "RWKV/rwkv-5-world-3b"]  # _unmapped/ left out
    assert snapshot.lookup("Qwen/Qwen3-0.6B", out).inventory["num_params"] == 596_049_920  # Qwen3 card: 0.6B


def test_refresh_from_the_hub(fake_hub, monkeypatch, minilm_dir, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    sha = fake_hub.add_repo("sentence-transformers/all-MiniLM-L6-v2",
                            {p.name: p for p in minilm_dir.iterdir() if p.is_file()})
    out = tmp_path / "snap"
    result = runner.invoke(app, ["snapshot", "refresh", "sentence-transformers/all-MiniLM-L6-v2", "org/missing",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "1 of 2 updated" in result.stderr
    entry = snapshot.lookup("sentence-transformers/all-MiniLM-L6-v2", out)
    assert entry.provenance["origin"] == "hub" and entry.provenance["sha"] == sha
    assert entry.inventory["num_params"] == 22_713_216
    assert entry.inventory["checkpoint"]["elements"] == 22_713_216 + 512  # + the stored position_ids buffer
    # and the CLI answers from it offline (fresh HF cache: nothing else knows the model), with the Hub's sha
    env = {"HFMEM_SNAPSHOT_DIR": str(out), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    m = json_out(run_hfmem("sentence-transformers/all-MiniLM-L6-v2", "--format", "json", env=env))["models"][0]
    assert m["source"] == "snapshot" and m["revision"] == sha and m["parameters"] == 22_713_216


def _copy_snapshot(tmp_path, *repos):
    """A small snapshot folder holding these shipped entries (as `hfmem snapshot build` wrote them)."""
    import shutil

    out = tmp_path / "snap"
    index = json.loads((ROOT / "cache" / "index.json").read_text())
    for repo in repos:
        shutil.copytree(ROOT / "cache" / index["models"][repo], out / index["models"][repo])
    index["models"] = {r: index["models"][r] for r in repos}
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return out


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_refresh_with_the_hub_unreachable_writes_nothing_and_fails(tmp_path):
    # HF_ENDPOINT is a closed local port (conftest): the Hub cannot be reached, so nothing was fetched
    out = _copy_snapshot(tmp_path, "Qwen/Qwen3-0.6B")
    before = _tree(out)
    proc = run_hfmem("snapshot", "refresh", "Qwen/Qwen3-0.6B", "--out", str(out),
                     env={"HFMEM_HOME": str(tmp_path / "hm")})
    assert proc.returncode == 8, proc.stderr  # HubUnavailableError: the Hub could not be reached
    assert "0 of 1 updated" in proc.stderr and "nothing written" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2
    assert _tree(out) == before  # index.json (its date) and the entry are byte for byte as they were


def test_partial_refresh_keeps_the_snapshot_date_and_dates_each_entry(fake_hub, monkeypatch, minilm_dir, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    fake_hub.add_repo("sentence-transformers/all-MiniLM-L6-v2",
                      {p.name: p for p in minilm_dir.iterdir() if p.is_file()})
    out = _copy_snapshot(tmp_path, "Qwen/Qwen3-0.6B")
    built = json.loads((out / "index.json").read_text())["snapshot_id"]
    qwen_before = _tree(out / "models" / "Qwen")
    result = runner.invoke(app, ["snapshot", "refresh", "sentence-transformers/all-MiniLM-L6-v2", "org/missing",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.stderr  # one model updated: the refresh did something
    assert "1 of 2 updated" in result.stderr and "1 left as they were" in result.stderr
    index = json.loads((out / "index.json").read_text())
    assert index["snapshot_id"] == built and "refreshed" in index  # the build date is not rewritten
    assert sorted(index["models"]) == ["Qwen/Qwen3-0.6B", "sentence-transformers/all-MiniLM-L6-v2"]
    assert _tree(out / "models" / "Qwen") == qwen_before
    assert not [p for p in out.rglob(".*") if p.name.startswith(".")]  # no staging folder left behind
    # an answer cites the day its own entry was written
    env = {"HFMEM_SNAPSHOT_DIR": str(out), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    m = json_out(run_hfmem("Qwen/Qwen3-0.6B", "--format", "json", env=env))["models"][0]
    qwen_built = json.loads((out / "models/Qwen/Qwen3-0.6B/entry.json").read_text())["provenance"]["built_at"]
    assert any(f"shipped snapshot {qwen_built} " in n for n in m["notes"]), m["notes"]
