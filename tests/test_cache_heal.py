"""hfmem's caches heal: an ill-formed result entry or Hub memo is a miss that is replaced, a killed writer's
temporary file is not an entry, and a cache that cannot be written (read-only, full) leaves the answer intact
with a note. Against the local Hub (tests/hubserver.py) serving the real all-MiniLM-L6-v2 checkpoint, whose
22,713,216 parameters are counted by hand in tests/test_safetensors_headers.py."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import run_hfmem
from hfmem.cli import app, route_argv
from hfmem.sources import resultcache

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PARAMS = 22_713_216
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, route_argv(list(args)))


def answer(*args) -> dict:
    result = cli(MINILM, "--format", "json", *args)
    assert result.exit_code == 0, (result.exit_code, result.stderr)
    return json.loads(result.stdout)["models"][0]


@pytest.fixture
def hub(fake_hub, monkeypatch, minilm_dir):
    fake_hub.add_repo(MINILM, {p.name: p for p in minilm_dir.iterdir() if p.is_file()})
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    return fake_hub


CORRUPTIONS = {
    "empty list": b"[]",
    "null": b"null",
    "not utf-8": b"\xff\xfe\x00garbage",
    "truncated": b'{"schema": 2, "key": "hub|',
    "empty file": b"",
    "missing keys": json.dumps({"schema": 2}).encode(),
}


def _entry_files() -> list[Path]:
    return sorted(p for p in resultcache.results_dir().glob("*.json") if not p.name.startswith(".tmp-"))


def _rewrite(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("blob", list(CORRUPTIONS.values()), ids=list(CORRUPTIONS))
def test_corrupt_entry_is_a_miss_and_is_replaced(hub, blob):
    first = answer()
    assert first["parameters"] == MINILM_PARAMS and first["from_result_cache"] is False
    files = _entry_files()
    assert len(files) == 2  # the branch entry and the sha entry
    for f in files:
        f.write_bytes(blob)
    # cache list / clear MATCH run on the damaged cache without crashing
    listed = cli("cache", "list", "--format", "json")
    assert listed.exit_code == 0, listed.stderr
    assert json.loads(listed.stdout)["entries"] == []
    again = answer()
    assert again["parameters"] == MINILM_PARAMS and again["from_result_cache"] is False  # recomputed
    assert all(resultcache._load(f) is not None for f in _entry_files())  # and replaced by good entries
    third = answer()
    assert third["from_result_cache"] is True and third["parameters"] == MINILM_PARAMS
    cleared = cli("cache", "clear", MINILM)
    assert cleared.exit_code == 0 and "removed 2 cached analyses" in cleared.stdout, cleared.stdout


WRONG_SHAPES = {
    "report is a list": lambda d: d.update(report=[]),
    "num_params a string": lambda d: d["report"]["inventory"].update(num_params="many"),
    "inventory a list": lambda d: d["report"].update(inventory=[1, 2]),
    "layers of strings": lambda d: d["report"]["inventory"].update(layers=["x"]),
    "unknown inventory key": lambda d: d["report"]["inventory"].update(surprise=1),
    "created a string": lambda d: d.update(created="yesterday"),
    "tensor without params": lambda d: d["report"]["inventory"]["tensors"][0].pop("params"),
}


@pytest.mark.parametrize("change", list(WRONG_SHAPES.values()), ids=list(WRONG_SHAPES))
@pytest.mark.parametrize("fix_checksum", [False, True], ids=["edited", "edited-with-checksum"])
def test_ill_formed_entry_is_a_miss(hub, change, fix_checksum):
    answer()
    for f in _entry_files():
        def edit(d):
            change(d)
            if fix_checksum and isinstance(d.get("report"), dict):  # passes the checksum: the shape check decides
                d["sha256"] = resultcache._checksum(d["report"])
        _rewrite(f, edit)
    again = answer()
    assert again["parameters"] == MINILM_PARAMS and again["from_result_cache"] is False
    assert cli("cache", "list").exit_code == 0
    assert cli("cache", "clear", "MiniLM").exit_code == 0


def test_hand_edited_value_fails_the_checksum(hub):
    """A well-shaped entry whose numbers were changed by hand is not trusted."""
    answer()
    for f in _entry_files():
        _rewrite(f, lambda d: d["report"]["inventory"].update(num_params=1))
    again = answer()
    assert again["parameters"] == MINILM_PARAMS and again["from_result_cache"] is False


@pytest.mark.parametrize("blob", [b"[]", b"null", b"\xff\xfe", b'{"at": "now", "endpoint": 3}', b'{"at": NaN}',
                                  b'{"at": 1e400}'])
def test_corrupt_hub_memo_is_ignored(hub, monkeypatch, blob):
    monkeypatch.setenv("HFMEM_HUB_RECHECK_S", "60")
    memo = resultcache.cache_home() / "hub-unreachable.json"
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_bytes(blob)
    m = answer()
    assert m["source"] == "hub" and m["parameters"] == MINILM_PARAMS


def test_orphan_temporary_files_are_not_entries_and_are_swept(hub):
    answer()
    folder = resultcache.results_dir()
    real = _entry_files()[0].read_bytes()
    old = folder / ".tmp-killed.json"
    fresh = folder / ".tmp-writing.json"
    old.write_bytes(real)
    fresh.write_bytes(real)
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    listed = cli("cache", "list", "--format", "json")
    assert listed.exit_code == 0
    files = {Path(e["file"]).name for e in json.loads(listed.stdout)["entries"]}
    assert len(files) == 2 and not any(n.startswith(".tmp-") for n in files)
    assert not old.exists()  # a killed writer's, swept
    assert fresh.exists()  # possibly a concurrent writer's: left alone
    cleared = cli("cache", "clear")
    assert cleared.exit_code == 0 and "removed 2 cached analyses" in cleared.stdout


def _unwritable_dir() -> Path:
    """A folder nobody can create, not even root: under sysfs (mkdir there is EPERM)."""
    target = Path("/sys/hfmem-test-cache")
    try:
        target.mkdir()
    except OSError:
        return target
    target.rmdir()
    pytest.skip("no read-only file system to point the cache at")


def test_read_only_hfmem_cache_answers_from_memory(hub, monkeypatch):
    home = _unwritable_dir()
    monkeypatch.setenv("HFMEM_HOME", str(home))
    m = answer()
    assert m["parameters"] == MINILM_PARAMS
    assert any(n.startswith(f"hfmem's cache at {home} is not writable (") and n.endswith("nothing cached")
               for n in m["notes"]), m["notes"]
    listed = cli("cache", "list", "--format", "json")
    assert listed.exit_code == 0 and json.loads(listed.stdout)["entries"] == []


@pytest.mark.slow  # fresh processes against the test Hub
def test_read_only_hf_cache_while_the_hub_is_up(hub, tmp_path):
    hf_home = _unwritable_dir()
    env = {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(hf_home), "HFMEM_HOME": str(tmp_path / "hm")}
    proc = run_hfmem(MINILM, "--format", "json", env=env)
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)["models"][0]
    assert m["source"] == "hub" and m["parameters"] == MINILM_PARAMS
    assert any("Hugging Face cache" in n and "not writable" in n for n in m["notes"]), m["notes"]


def _no_file_growth():
    # A full disk, as far as this process can tell: any write past 0 bytes fails (EFBIG; SIGXFSZ ignored so
    # the write returns the error instead of killing the process).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


@pytest.mark.slow  # fresh processes against the test Hub
def test_full_disk_while_the_hub_is_up(hub, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"),
           "HFMEM_HOME": str(tmp_path / "hm"), "PYTHONDONTWRITEBYTECODE": "1"}
    code = "import sys; from hfmem.cli import main; main(sys.argv[1:])"
    proc = subprocess.run([sys.executable, "-c", code, MINILM, "--format", "json"], capture_output=True, text=True,
                          env=env, timeout=300, preexec_fn=_no_file_growth)
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)["models"][0]
    assert m["parameters"] == MINILM_PARAMS
    assert any(n.startswith(f"hfmem's cache at {tmp_path / 'hm'} is not writable") for n in m["notes"]), m["notes"]
    assert any("Hugging Face cache" in n and "not writable" in n for n in m["notes"]), m["notes"]
