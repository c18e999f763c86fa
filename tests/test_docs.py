"""The README's promises that scripts and CI depend on."""

from __future__ import annotations

import subprocess
import sys

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


def test_cli_reference_is_generated_and_current():
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "generate_cli_reference.py"), "--check"])
    assert proc.returncode == 0, "docs/cli.md is stale: run python docs/generate_cli_reference.py"
