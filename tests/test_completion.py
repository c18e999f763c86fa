"""Shell completion, driven as bash drives it: ``hfmem`` run with ``_HFMEM_COMPLETE=complete_bash`` and the
words typed so far in ``COMP_WORDS``/``COMP_CWORD`` (typer's bash protocol), and typer's script sourced in a
real bash. The expected GPU names are read from ``hfmem/plan/gpus.json`` and the expected model ids from the
shipped snapshot's ``cache/index.json``, directly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# completes, then says on stderr which heavy library was imported (a <TAB> must stay cheap: none)
PROGRAM = ("import sys\nfrom hfmem.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
           "heavy = [m for m in ('torch', 'transformers', 'gradio', 'matplotlib') if m in sys.modules]\n"
           "sys.stderr.write(f'imported {heavy}' if heavy else 'no torch')\n")


def complete(words: str, cword: int) -> list[str]:
    env = dict(os.environ, _HFMEM_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(cword))
    proc = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.endswith("no torch"), proc.stderr
    return proc.stdout.split()


def catalog_names() -> list[str]:
    return [g["name"] for g in json.loads((ROOT / "hfmem" / "plan" / "gpus.json").read_text())["gpus"]]


def snapshot_ids() -> list[str]:
    return sorted(json.loads((ROOT / "cache" / "index.json").read_text())["models"])


def test_commands_and_flags():
    assert complete("hfmem in", 1) == ["infer"]
    offered = complete("hfmem infer --gp", 2)
    assert "--gpu" in offered and "--gpus" in offered
    assert "--quiet" in complete("hfmem train --qu", 2)


def test_gpu_names():
    expected = [n for n in catalog_names() if n.startswith("RT")]
    assert expected, "the catalog lists RTX cards"
    assert complete("hfmem infer --gpu RT", 3) == expected
    assert complete("hfmem train Qwen/Qwen3-8B --gpu H1", 4) == [n for n in catalog_names() if n.startswith("H1")]
    assert complete("hfmem infer --gpu au", 3) == ["auto"]


def test_snapshot_model_ids():
    expected = [m for m in snapshot_ids() if m.startswith("Qwen/Qw")]
    assert "Qwen/Qwen3-8B" in expected
    assert complete("hfmem infer Qwen/Qw", 2) == expected
    assert complete("hfmem calc meta-llama/Llama-3.1", 2) == [m for m in snapshot_ids()
                                                                 if m.startswith("meta-llama/Llama-3.1")]
    # the first word: `hfmem ORG/NAME` is short for `hfmem calc ORG/NAME`
    assert complete("hfmem Qwen/Qw", 1) == expected


@pytest.fixture
def hfmem_on_path(tmp_path) -> dict:
    """An ``hfmem`` command on PATH that runs this checkout (the script typer installs calls it by name)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "hfmem"
    exe.write_text(f"#!/bin/sh\nexec '{sys.executable}' -c 'from hfmem.cli import main; main()' \"$@\"\n")
    exe.chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", HOME=str(tmp_path))


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_show_completion_script_completes_in_bash(hfmem_on_path, tmp_path):
    proc = subprocess.run(["hfmem", "--show-completion", "bash"], capture_output=True, text=True,
                          env=hfmem_on_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    script = tmp_path / "hfmem.bash"
    script.write_text(proc.stdout)
    # bash's own programmable-completion variables, set as bash sets them on <TAB> after "hfmem infer --gpu RT"
    probe = (f"source '{script}'; complete -p hfmem; COMP_WORDS=(hfmem infer --gpu RT); COMP_CWORD=3; "
             "_hfmem_completion hfmem; printf '%s\\n' \"${COMPREPLY[@]}\"")
    run = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, env=hfmem_on_path, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "_hfmem_completion" in lines[0]  # `complete -p hfmem`: the function is bound to the command
    assert lines[1:] == [n for n in catalog_names() if n.startswith("RT")]


def test_install_completion_writes_the_script_under_home(hfmem_on_path, tmp_path):
    proc = subprocess.run(["hfmem", "--install-completion", "bash"], capture_output=True, text=True,
                          env=hfmem_on_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    installed = tmp_path / ".bash_completions" / "hfmem.sh"
    assert installed.is_file() and "_hfmem_completion" in installed.read_text()
    assert f"source '{installed}'" in (tmp_path / ".bashrc").read_text()
