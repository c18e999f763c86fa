"""The README's promises that scripts and CI depend on."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT


def test_readme_first_lines_and_ci_run_the_same_test_command():
    lines = (ROOT / "README.md").read_text().splitlines()
    commands = [ln for ln in lines[:8] if ln and not ln.startswith(("#", "```"))]
    assert len(commands) == 2
    setup, test = commands
    assert "pip install torch==2.13.0" in setup and setup.endswith("hfmem baichuan-inc/Baichuan-7B")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci, "the README's test command must appear verbatim in .ci/run"
    assert any("pip install --quiet torch==2.13.0" in ln for ln in ci)
    # the slow set: named in the README's first lines, run by CI after the default set, together all tests
    slow = re.search(r"`(python -m pytest -q -m slow)`", "\n".join(lines[:8])).group(1)
    assert '-m "not slow"' in test and ci.index(slow) > ci.index(test)


def test_cli_reference_is_generated_and_current():
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "generate_cli_reference.py"), "--check"])
    assert proc.returncode == 0, "docs/cli.md is stale: run python docs/generate_cli_reference.py"


# -- every hfmem command shown in README.md and docs/ runs as shown, offline ---------------------------------
# A command is a line of a fenced block: `$ hfmem ...` in any block, or `hfmem ...` in a bash/sh block; a
# trailing `# comment` is dropped. Placeholders are written `<like-this>`: such commands are skipped. A command
# that runs a model's code on fake tensors — `hfmem simulate`, or one whose comment says "runs the model's code"
# (an estimate calibrated from the model's own code the first time), or "builds models on the meta device" (a search
# over depth-scaled configs) — belongs to the slow set.
SLOW_COMMENTS = ("runs the model's code", "builds models on the meta device")


def slow_commands() -> set[str]:
    out = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in doc.read_text().splitlines():
            if any(c in line for c in SLOW_COMMENTS) and "hfmem " in line:
                out.add(re.sub(r"\s+#.*$", "", line.strip()).removeprefix("$ "))
    return out


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for lang, body in re.findall(r"```(\w*)\n(.*?)```", doc.read_text(), re.S):
            for line in body.splitlines():
                line = line.strip()
                if line.startswith("$ hfmem "):
                    line = line[2:]
                elif not (lang in ("bash", "sh") and line.startswith("hfmem ")):
                    continue
                command = re.sub(r"\s+#.*$", "", line)
                if not re.search(r"<[^>]+>", command):
                    found.append((doc.name, command))
    return found


def test_the_docs_show_commands():
    commands = [c for _, c in documented_commands()]
    # the extractor finds what it should: the README's main command and one of each command group
    assert "hfmem baichuan-inc/Baichuan-7B" in commands
    for group in ("infer", "train", "simulate", "search", "gpus", "snapshot", "cache"):
        assert any(c.startswith(f"hfmem {group} ") or c == f"hfmem {group}" for c in commands), group


@pytest.mark.parametrize("doc, command", [
    pytest.param(doc, cmd, marks=[pytest.mark.slow] if " simulate " in f" {cmd} " or cmd in slow_commands() else [])
    for doc, cmd in documented_commands()])
def test_documented_command_runs_offline(doc, command, tmp_path):
    assert "|" not in command, "a documented pipe must be one that works; write commands one per line"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HFMEM_HOME": str(tmp_path / "hm"), "HF_HOME": str(tmp_path / "hf"),
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    env.pop("HFMEM_SNAPSHOT_DIR", None)
    # from anywhere, as a user runs it; a command naming a folder of this repository (tests/data/...) from its root
    cwd = ROOT if any(arg.startswith("tests/") for arg in command.split()) else tmp_path
    proc = subprocess.run(command.split(), capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert proc.returncode == 0, f"{doc}: {command}\n{proc.stderr}"
    assert proc.stdout.strip() and "Traceback" not in proc.stderr
