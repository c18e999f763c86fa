"""The wheel is the product: built from this checkout, installed into an empty folder, run from outside the
repository with the Hub out of reach, it answers the README's main command from the snapshot it carries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile

import pytest

from conftest import ROOT


MAIN = "baichuan-inc/Baichuan-7B"


def _shipped_files() -> set[str]:
    return {str(p.relative_to(ROOT / "cache")) for p in (ROOT / "cache").rglob("*.json")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True, cwd=out)
    (path,) = out.glob("hfmem-*.whl")
    return path


def test_the_wheel_carries_the_whole_snapshot(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    carried = {n.removeprefix("hfmem/_snapshot/") for n in names if n.startswith("hfmem/_snapshot/")}
    assert carried == _shipped_files()  # every file of cache/, nothing else under it
    assert {"hfmem/data/calibration.json", "hfmem/data/infer_calibration.json", "hfmem/plan/gpus.json"} <= names
    # every package of the source tree is in the wheel (pyproject.toml lists them by hand)
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "hfmem").rglob("__init__.py")}
    assert {p for p in packages if f"{p}/__init__.py" in names} == packages


def test_an_installed_wheel_answers_offline_from_any_folder(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("HFMEM_SNAPSHOT_DIR", "PYTHONPATH")}
    env.update({"PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                "HFMEM_HOME": str(tmp_path / "hm")})
    run = [sys.executable, "-c", "import sys, hfmem, hfmem.cli; print(hfmem.__file__, file=sys.stderr); "
                                 "hfmem.cli.main()"]
    proc = subprocess.run(run + [MAIN, "--format", "json"], capture_output=True, text=True, cwd=elsewhere,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[0].startswith(str(target))  # the wheel's hfmem, not this checkout
    m = json.loads(proc.stdout)["models"][0]
    # 7,000,559,616: Baichuan-7B's parameters (Llama-7B's layout with a 64,000-token vocabulary:
    # 32 · (4·4096² + 3·4096·11008 + 2·4096) + 2·64000·4096 + 4096)
    assert m["source"] == "snapshot" and m["parameters"] == 32 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) \
        + 2 * 64000 * 4096 + 4096 == 7_000_559_616
    table = subprocess.run(run + [MAIN], capture_output=True, text=True, cwd=elsewhere, env=env, timeout=300)
    assert table.returncode == 0, table.stderr
    assert "26.08 GB" in table.stdout  # 7,000,559,616 · 4 B = 26.08 GiB, printed as the calculator prints it


def test_the_sdist_carries_the_snapshot(tmp_path):
    code = ("import sys; from setuptools import build_meta; "
            "print(build_meta.build_sdist(sys.argv[1]))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True,
                          text=True, cwd=ROOT)
    name = proc.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}
    assert {f"cache/{f}" for f in _shipped_files()} <= members
