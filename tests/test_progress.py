"""The progress indicator: on stderr only, only on a terminal, never with --quiet, cleared before the answer.

The fast tests drive ``hfmem.cli.progress.Indicator`` against a rich console that is a terminal; the slow one
runs the real CLI with stderr on a pseudo-terminal (``pty.openpty``) and stdout on a pipe, on a model folder no
cache has seen, and compares stdout with the same command's bytes when stderr is a pipe too."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
import threading

import pytest
from rich.console import Console

from hfmem.cli import output, progress


def _terminal() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=80), buf


def test_indicator_shows_the_message_and_clears_its_line():
    console, buf = _terminal()
    ind = progress.Indicator(delay=0, console=console)
    ind("counting org/model (first analysis)")
    assert ind.shown
    ind("simulating org/model (infer) on fake tensors")  # a later step replaces the message
    ind.stop()
    text = buf.getvalue()
    assert "simulating org/model (infer) on fake tensors" in text
    assert not ind.shown
    # rich's transient display shows the cursor again and erases its line on stop (ECMA-48: CSI ?25h shows the
    # cursor, CSI 1A moves up a line, CSI 2K erases the line): the last thing written
    assert "\x1b[?25h" in text and text.endswith("\x1b[2K")


def test_a_wait_shorter_than_the_delay_shows_nothing():
    console, buf = _terminal()
    ind = progress.Indicator(delay=3600, console=console)  # an hour: the step below ends long before
    ind("counting org/model")
    ind.stop()
    assert not ind.shown and buf.getvalue() == ""


def test_the_delay_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("HFMEM_PROGRESS_DELAY", "0")
    assert progress.Indicator().delay == 0
    monkeypatch.setenv("HFMEM_PROGRESS_DELAY", "2.5")
    assert progress.delay_s() == 2.5
    monkeypatch.setenv("HFMEM_PROGRESS_DELAY", "soon")  # not a number: the documented default
    assert progress.delay_s() == progress.DEFAULT_DELAY_S == 1.0
    monkeypatch.delenv("HFMEM_PROGRESS_DELAY")
    assert progress.delay_s() == 1.0


def test_enabled_only_on_a_terminal_and_not_quiet():
    master, slave = pty.openpty()
    read, write = os.pipe()
    try:
        with open(slave, "w", closefd=False) as tty, open(write, "w", closefd=False) as pipe:
            assert progress.enabled(False, tty) is True
            assert progress.enabled(True, tty) is False  # --quiet
            assert progress.enabled(False, pipe) is False  # a pipe, a log file, CI
    finally:
        for fd in (master, slave, read, write):
            os.close(fd)


def test_every_write_stops_the_indicator_first(capsys):
    console, buf = _terminal()
    ind = progress.Indicator(delay=0, console=console)
    ind("counting org/model")
    assert ind.shown
    output.hint("note: something")  # a hint line on stderr
    assert not ind.shown
    ind("again")
    output.print_text("answer\n")  # the answer on stdout
    assert not ind.shown
    assert capsys.readouterr().out == "answer\n"


# -- the real CLI ------------------------------------------------------------------------------------------

TINY_LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
              "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "vocab_size": 1000, "max_position_embeddings": 512, "torch_dtype": "bfloat16"}
RUN = [sys.executable, "-c", "from hfmem.cli import main; main()"]


def _run(args, env, *, stderr_tty: bool) -> tuple[bytes, bytes, int]:
    """(stdout, stderr, exit code): stdout is a pipe; stderr a pseudo-terminal or a pipe."""
    if not stderr_tty:
        proc = subprocess.run(RUN + args, capture_output=True, env=env, timeout=300)
        return proc.stdout, proc.stderr, proc.returncode
    master, slave = pty.openpty()
    proc = subprocess.Popen(RUN + args, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))
    reader.start()
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the terminal's other end closed (Linux: EIO)
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=300)
    reader.join()
    os.close(master)
    return out[0], b"".join(chunks), proc.returncode


@pytest.mark.slow  # builds a model on the meta device: imports torch and transformers (several seconds a run)
def test_cli_indicator_on_a_terminal_only(tmp_path):
    model = tmp_path / "tiny-llama"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(TINY_LLAMA))
    env = dict(os.environ, HFMEM_PROGRESS_DELAY="0", HF_HUB_OFFLINE="1", HFMEM_HOME=str(tmp_path / "home"))
    args = [str(model), "--no-cache"]  # first analysis every time: the slow step the API reports

    out_tty, err_tty, rc = _run(args, env, stderr_tty=True)
    assert rc == 0
    assert b"counting " + str(tmp_path).encode()[:20] in err_tty  # the API's message ("counting <config>...")
    assert err_tty.endswith(b"\x1b[2K")  # and its line erased (CSI 2K) before the process ended
    out_pipe, err_pipe, rc = _run(args, env, stderr_tty=False)
    assert rc == 0 and err_pipe == b""  # stderr a pipe: no indicator
    assert out_tty == out_pipe and b"Memory usage for" in out_pipe  # stdout: the answer's bytes only

    out_quiet, err_quiet, rc = _run([*args, "--quiet"], env, stderr_tty=True)
    assert rc == 0 and b"counting" not in err_quiet and out_quiet == out_pipe


def test_a_first_seen_hub_model_tells_each_wait_in_order(fake_hub, monkeypatch, minilm_dir):
    """The API tells ``Options.progress`` when each slow step of a first-seen Hub model starts: the Hub's model
    info, then its config and safetensors headers (real huggingface_hub requests to the local test Hub), then
    the count. What the spinner shows is exactly what the API announced, in the order the requests were made."""
    import hfmem

    repo = "sentence-transformers/all-MiniLM-L6-v2"
    fake_hub.add_repo(repo, {p.name: p for p in minilm_dir.iterdir() if p.is_file()})
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    told: list[str] = []
    report = hfmem.analyze(repo, hfmem.Options(progress=told.append, use_cache=False))
    assert report.source == "hub"
    assert told[:2] == [f"asking the Hub about {repo}",
                        f"reading {repo}'s config.json and safetensors headers from the Hub"]
    assert any(t.startswith("counting ") for t in told[2:])
    # the requests behind the first two messages really went to the Hub, model info first
    paths = [path for _, path, _ in fake_hub.requests]
    assert paths and paths[0].startswith(f"/api/models/{repo}")
    assert any(p.endswith("model.safetensors") for p in paths)
