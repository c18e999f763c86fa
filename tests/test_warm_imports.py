"""The warm path pays only for what it uses (issue 11, item 3).

A warm ``hfmem MODEL --format json`` (the answer in the shipped snapshot or hfmem's result cache) imports
neither torch, transformers nor huggingface_hub, nor pydantic (typer's per-parameter validators, skipped for a
plain command line by ``hfmem.cli.fast``), nor rich unless a table is printed, nor the modules of the commands
it does not run. Checked on ``sys.modules`` at the end of a fresh interpreter, offline.

``hfmem.cli.fast`` reads a plain command line itself; the values it gives each command are checked here
against the ones typer's own parsing gives (click's public ``Command.make_context(...).params``), option by
option, so the two cannot drift apart.
"""

from __future__ import annotations

import enum
import json
import os
import subprocess
import sys
import typing

import pytest
import typer.main

from hfmem.cli import build_app, route_argv
from hfmem.cli.fast import plain_call

MAIN = "baichuan-inc/Baichuan-7B"  # in the shipped snapshot (cache/index.json)
NEVER = ("torch", "transformers", "huggingface_hub", "httpx2", "pydantic", "pydantic_core")
OTHER_COMMANDS = ("hfmem.cli.infer", "hfmem.cli.train", "hfmem.cli.simulate", "hfmem.cli.gpus",
                  "hfmem.cli.cache", "hfmem.cli.snapshot")


def _modules_after(*args: str, tmp_path) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run ``hfmem ARGS`` in a fresh interpreter offline; the modules it had imported when it exited."""
    out = tmp_path / "modules.json"
    code = ("import json, sys\nfrom hfmem.cli import main\ntry:\n    main(sys.argv[2:])\nfinally:\n"
            "    open(sys.argv[1], 'w').write(json.dumps(sorted(sys.modules)))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code, str(out), *args], capture_output=True, text=True, env=env,
                          timeout=300)
    return proc, set(json.loads(out.read_text()))


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_warm_json_imports_no_torch_hub_pydantic_or_rich(tmp_path):
    for run in ("first", "again"):  # the second run may answer from hfmem's result cache
        proc, modules = _modules_after(MAIN, "--format", "json", tmp_path=tmp_path)
        assert proc.returncode == 0, proc.stderr
        # 7,000,559,616: Baichuan-7B's parameters (Llama-7B's layout with a 64,000-token vocabulary:
        # 32 · (4·4096² + 3·4096·11008 + 2·4096) + 2·64000·4096 + 4096)
        assert json.loads(proc.stdout)["models"][0]["parameters"] == \
            32 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) + 2 * 64000 * 4096 + 4096
        assert not _top(modules) & {*NEVER, "rich"}, (run, sorted(_top(modules) & {*NEVER, "rich"}))
        assert not modules & set(OTHER_COMMANDS), (run, sorted(modules & set(OTHER_COMMANDS)))
        assert "hfmem.cli.calc" in modules


def test_markdown_imports_no_rich_and_a_table_does(tmp_path):
    proc, modules = _modules_after(MAIN, "--format", "markdown", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not _top(modules) & {*NEVER, "rich"}
    proc, modules = _modules_after(MAIN, tmp_path=tmp_path)  # the table: rich is what prints it
    assert proc.returncode == 0, proc.stderr
    assert "rich" in _top(modules) and not _top(modules) & set(NEVER)


def test_import_hfmem_alone_imports_no_submodule(tmp_path):
    code = "import json, sys, hfmem; print(json.dumps(sorted(m for m in sys.modules if m.startswith('hfmem'))))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert json.loads(proc.stdout) == ["hfmem"]
    # ... and the public names still resolve (lazily)
    proc = subprocess.run([sys.executable, "-c", "import hfmem; print(hfmem.analyze.__module__, "
                           "hfmem.calculator_json.__module__, hfmem.calculator_table.__module__)"],
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["hfmem.api", "hfmem.render.json", "hfmem.scenarios.calculator"]


# -- the plain command line read without typer's validators == typer's own parsing -------------------------


def _typer_params(args: list[str]) -> dict:
    """What typer gives the command for ``args`` (after route_argv): click's context params, with the models
    list as typer's callback wrapper passes it (a list)."""
    command = typer.main.get_command(build_app([args[0]])).commands[args[0]]
    with command.make_context(args[0], list(args[1:])) as ctx:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in ctx.params.items()}


def _a_valid_token(param, kind) -> list[list[str]]:
    """Command-line forms of one option with valid values (each choice of an Enum)."""
    kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
    if kind is bool:  # a flag, or both halves of a --x/--no-x pair
        return [[param.opts[-1]], *([opt] for opt in param.secondary_opts)]
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return [[opt, m.value] for m in kind for opt in (param.opts[0], param.opts[-1])]
    if kind is int:
        return [[param.opts[0], "3"], [param.opts[-1], "0"], [param.opts[0], "12"]]
    if kind is float:
        return [[param.opts[0], "0.25"], [param.opts[-1], "2"]]
    return [[param.opts[0], "main"], [param.opts[-1], "x/y"]]


@pytest.mark.parametrize("command", ["calc", pytest.param("infer", marks=pytest.mark.slow),
                                     pytest.param("train", marks=pytest.mark.slow), "simulate", "gpus"])
def test_plain_command_lines_get_the_values_typer_gives(command):  # infer, train: 9 s each, in the slow set
    app = build_app([command])
    click_command = typer.main.get_command(app).commands[command]
    callback = app.registered_commands[0].callback
    hints = typing.get_type_hints(callback)
    takes_models = any(p.param_type_name == "argument" for p in click_command.params)
    base = [command, *(["org/model"] if takes_models else [])]
    cases = [base, [command, "a/b", "c/d"] if takes_models else base]
    for param in click_command.params:
        if param.param_type_name == "option":
            cases += [[*base, *form] for form in _a_valid_token(param, hints[param.name])]
            cases += [[command, *form, *base[1:]] for form in _a_valid_token(param, hints[param.name])[:1]]
    checked = 0
    for args in cases:
        plain = plain_call(app, args)
        if plain is None:
            continue
        expected = _typer_params(args)
        assert plain[1] == expected, args
        assert {k: type(v) for k, v in plain[1].items()} == {k: type(v) for k, v in expected.items()}, args
        checked += 1
    assert checked == len(cases)  # every case above is a plain command line


@pytest.mark.parametrize("argv", [
    [MAIN, "--format=json"], [MAIN, "-fjson"], [MAIN, "--format", "JSON"], [MAIN, "--format"],
    [MAIN, "-f", "json", "-f", "table"], [MAIN, "--", "--format"], [MAIN, "--help"], [MAIN, "--bogus"],
    [MAIN, "--revision", "--offline"], ["calc"], ["infer", MAIN, "--batch", "1e3"], ["infer", MAIN, "-b", "+4"],
    ["infer", MAIN, "--context", "04096"], ["infer", MAIN, "--batch", "-2"], ["gpus", "extra"], ["--help"], ["cache", "list"],
])
def test_anything_else_is_left_to_typer(argv):
    args = route_argv(argv)
    assert plain_call(build_app([args[0]] if not args[0].startswith("-") else None), args) is None
