"""User-facing text names only what users have: flags, files in the package, public sources (a paper, a doc
page) -- never internal project notes. Checked on real command output (offline) and on every string constant
in the package that is not a docstring (docstrings and comments may cite internal notes)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import hfmem
from hfmem.cli import app, route_argv

FORBIDDEN = re.compile(r"\bthe seed\b|\bseed note|\bseed's\b|\bissue \d|\brequirement \d|\breq\. \d|ground-truth"
                       r"|product\.md|this session|§\s*\d+[a-z]?\b(?![^()]*(paper|card|arXiv))", re.IGNORECASE)
# "§" is allowed where a public source is named next to it ("ZeRO paper §3.1", "gpt-oss model card §2.1"):
PUBLIC_SECTION = re.compile(r"(paper|card|arXiv[^§]*|ZeRO|Korthikanti[^§]*|QLoRA[^§]*)\s*\(?[^§]{0,40}§", re.I)

runner = CliRunner()


def _bad(text: str) -> list[str]:
    hits = []
    for m in FORBIDDEN.finditer(text):
        window = text[max(0, m.start() - 60):m.end()]
        if m.group(0).startswith("§") and PUBLIC_SECTION.search(window):
            continue
        hits.append(window)
    return hits


def test_the_patterns_catch_what_they_should():
    assert _bad("the seed lists it last") and _bad("(ground-truth.md §8)") and _bad("issue 4, requirement 7")
    assert not _bad("ZeRO paper (arXiv 1910.02054) §7") and not _bad("gpt-oss model card §2.1")
    assert not _bad("seed_static_bytes") and not _bad("--seed 42 for the random seed")


COMMANDS = [
    ["baichuan-inc/Baichuan-7B", "--offline", "--format", "json"],
    ["baichuan-inc/Baichuan-7B", "--offline"],
    ["infer", "meta-llama/Llama-2-7b-hf", "--offline", "--gpu", "A30", "--format", "json"],
    ["infer", "meta-llama/Llama-2-7b-hf", "--offline", "--gpu", "A30"],
    ["infer", "meta-llama/Llama-2-7b-hf", "--offline", "--engine", "vllm", "--gpu", "H100-80GB", "--format", "json"],
    ["train", "meta-llama/Llama-2-7b-hf", "--offline", "--gpu", "A100-80GB", "--advise", "--format", "json"],
    ["train", "meta-llama/Llama-2-7b-hf", "--offline", "--gpu", "RTX-4090", "--advise"],
    ["train", "meta-llama/Llama-2-7b-hf", "--offline", "--method", "lora", "--gpu", "24GiB", "--advise",
     "--format", "markdown"],
    ["gpus"],
    ["gpus", "--format", "json"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2] + a[-2:]))
def test_command_output_names_no_internal_notes(args):
    result = runner.invoke(app, route_argv(args))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    text = result.stdout + (result.stderr or "")
    assert text.strip()
    assert _bad(text) == []


@pytest.mark.parametrize("sub", ["calc", "infer", "train", "gpus", "simulate", "search"])
def test_help_names_no_internal_notes(sub):
    result = runner.invoke(app, [sub, "--help"])
    assert result.exit_code == 0
    assert _bad(result.stdout) == []


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = getattr(node, "body", [])
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                ids.add(id(body[0].value))
    return ids


def test_string_constants_name_no_internal_notes():
    """Every string literal in hfmem/ (f-string pieces included) outside docstrings: these are the texts that
    can reach a user (messages, notes, assumptions, footnotes, --help, error hints)."""
    root = Path(hfmem.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _docstring_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                found += [f"{path.relative_to(root)}:{node.lineno}: {w!r}" for w in _bad(node.value)]
    assert found == []
