"""The Hugging Face Space folder (hfmem.web.space.write_space, `hfmem serve --space DIR`)."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from hfmem.web.space import write_space

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("space")
    written = write_space(folder)
    assert folder / "README.md" in written and folder / "app.py" in written
    return folder


def _front_matter(text: str) -> dict:
    m = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert m, "README.md starts with a YAML front matter block"
    return yaml.safe_load(m.group(1))


def test_readme_front_matter_configures_a_gradio_space(space):
    meta = _front_matter((space / "README.md").read_text(encoding="utf-8"))
    # the keys of https://huggingface.co/docs/hub/spaces-config-reference
    assert meta["sdk"] == "gradio"
    assert (space / meta["app_file"]).is_file() and meta["app_file"] == "app.py"
    from importlib.metadata import version

    assert meta["sdk_version"] == version("gradio")
    assert str(meta["python_version"]) == f"{sys.version_info.major}.{sys.version_info.minor}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == project["license"]["text"].lower()  # Apache-2.0 -> the Hub's id apache-2.0


def test_requirements_list_the_project_s_dependencies_gradio_and_cpu_torch(space):
    lines = (space / "requirements.txt").read_text().splitlines()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"]:
        assert dep in lines
    names = {re.split(r"[<>=!~ ;\[]", line, maxsplit=1)[0] for line in lines if not line.startswith("-")}
    assert {"gradio", "matplotlib", "torch"} <= names
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines


def test_the_copied_package_answers_from_its_own_snapshot_offline(space, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HFMEM_SNAPSHOT_DIR", "PYTHONPATH")}
    env.update(HF_HUB_OFFLINE="1", HFMEM_HOME=str(tmp_path / "home"), HF_HOME=str(tmp_path / "hf"),
               HF_HUB_CACHE=str(tmp_path / "hf" / "hub"))  # an empty Hugging Face cache: only the snapshot answers
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import hfmem; from hfmem import api; "
            "from hfmem.sources.snapshot import snapshot_dir; r = api.analyze('baichuan-inc/Baichuan-7B'); "
            "print(hfmem.__file__); print(snapshot_dir()); print(r.source); print(r.table().rows[0].total_bytes)")
    run = subprocess.run([sys.executable, "-c", code, str(space)], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    package, snapshot, source, total = run.stdout.split()
    assert Path(package).resolve().is_relative_to(space.resolve())
    assert Path(snapshot).resolve().is_relative_to(space.resolve())
    assert source == "snapshot"
    # the Model Memory Calculator's published float32 "Total Size" of Baichuan-7B: 26.08 GB (binary GB, its
    # example on huggingface.co/spaces/hf-accelerate/model-memory-usage)
    assert round(int(total) / 2**30, 2) == 26.08


# `hfmem serve` run as the CLI runs it: the command function under typer with hfmem's error boundary (the same
# wrapping hfmem.cli.build_app applies); gradio made unimportable with Python's documented sys.modules[name] = None.
_SERVE = "import sys; sys.modules['gradio'] = None; from hfmem.cli import main; main(['serve', *sys.argv[1:]])"


def test_serve_without_gradio_is_one_line_and_exit_69(tmp_path):
    run = subprocess.run([sys.executable, "-c", _SERVE, "--port", "0"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60, env=dict(os.environ, HFMEM_HOME=str(tmp_path)))
    # exit 69: sysexits' EX_UNAVAILABLE, the code hfmem.errors gives a missing optional package or device
    assert run.returncode == 69
    assert run.stderr.strip() == "hfmem: error: hfmem serve needs gradio: pip install 'hfmem[web]'"


def test_serve_space_writes_the_folder_without_gradio(tmp_path):
    out = tmp_path / "space"
    run = subprocess.run([sys.executable, "-c", _SERVE, "--space", str(out)], capture_output=True, text=True,
                         cwd=ROOT, timeout=60, env=dict(os.environ, HFMEM_HOME=str(tmp_path)))
    assert run.returncode == 0, run.stderr
    assert (out / "app.py").is_file() and (out / "hfmem" / "web" / "app.py").is_file()
    assert (out / "hfmem" / "_snapshot" / "index.json").is_file()
    assert len(run.stderr.strip().splitlines()) == 1


def test_serve_space_onto_a_file_is_one_line_and_exit_2(tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    run = subprocess.run([sys.executable, "-c", _SERVE, "--space", str(target)], capture_output=True, text=True,
                         cwd=ROOT, timeout=60, env=dict(os.environ, HFMEM_HOME=str(tmp_path)))
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"hfmem: error: --space {target}: a file is there") and "Traceback" not in run.stderr
    assert target.read_text() == "not a folder"


@pytest.mark.slow
def test_serve_on_a_busy_port_is_one_line_and_exit_2(tmp_path):
    """Another program listens on the port: one line naming --port and how to pick a free one (a real socket
    holds the port; gradio's own launch finds it taken)."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = "from hfmem.cli import main; import sys; main(['serve', '--port', sys.argv[1]])"
        run = subprocess.run([sys.executable, "-c", code, str(port)], capture_output=True, text=True, cwd=ROOT,
                             timeout=180, env=dict(os.environ, HFMEM_HOME=str(tmp_path), HF_HUB_OFFLINE="1",
                                                   GRADIO_ANALYTICS_ENABLED="False"))
    assert run.returncode == 2, run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"hfmem: error: --host 127.0.0.1 --port {port}: cannot listen there")
    assert "--port 0 picks a free port" in line


@pytest.mark.slow
def test_the_space_s_app_builds_the_blocks_from_its_own_copy(space, tmp_path):
    pytest.importorskip("gradio")
    env = {k: v for k, v in os.environ.items() if k not in ("HFMEM_SNAPSHOT_DIR", "PYTHONPATH")}
    env.update(HF_HUB_OFFLINE="1", HFMEM_HOME=str(tmp_path / "home"), GRADIO_ANALYTICS_ENABLED="False")
    code = ("import runpy, sys; m = runpy.run_path(sys.argv[1]); import hfmem; "
            "print(type(m['demo']).__name__); print(hfmem.__file__)")
    run = subprocess.run([sys.executable, "-c", code, str(space / "app.py")], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    kind, package = run.stdout.split()
    assert kind == "Blocks"  # gradio.Blocks, what a Gradio Space serves
    assert Path(package).resolve().is_relative_to(space.resolve())
