"""The folder of a Hugging Face Space that runs hfmem's web app (``hfmem serve --space DIR``).

A Gradio Space is a repository with a README.md whose YAML front matter configures it (sdk, sdk_version,
app_file, python_version; https://huggingface.co/docs/hub/spaces-config-reference), the ``app_file`` it runs and a
requirements.txt pip installs. The folder is self-contained: the hfmem package source is copied into it (with its
data files) and the shipped snapshot goes where an installed hfmem looks first (``hfmem/_snapshot``,
``hfmem.sources.snapshot.snapshot_dir``), so the Space answers the snapshot's models without reaching the Hub.
Importing this module does not import gradio (the installed version is read from the package metadata).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # the hfmem package folder
# A source checkout: pyproject.toml and the snapshot (cache/) sit next to the package.
ROOT = PACKAGE.parent

APP_PY = '''"""hfmem's web app on a Hugging Face Space (written by `hfmem serve --space DIR`)."""

import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the hfmem copied next to this file

from hfmem.web import build_app  # noqa: E402
from hfmem.web.app import CSS  # noqa: E402

demo = build_app()

if __name__ == "__main__":
    # Spaces route to port 7860 on every interface.
    demo.launch(server_name="0.0.0.0", server_port=7860, css=CSS)
'''

# torch is not in hfmem's dependencies (a model hfmem has not seen is built on the meta device with it): the
# CPU wheel is all the Space needs, from PyTorch's own index.
TORCH_LINES = ["--extra-index-url https://download.pytorch.org/whl/cpu", "torch"]


def _pyproject() -> dict:
    import tomllib

    path = ROOT / "pyproject.toml"
    if path.is_file():
        return tomllib.loads(path.read_text())
    return {}


def _dependencies(project: dict) -> list[str]:
    """The core dependencies (pyproject's [project] dependencies, else the installed distribution's), then the
    web extra's gradio and matplotlib."""
    deps = list(project.get("dependencies") or [])
    if not deps:
        from importlib import metadata

        try:
            deps = [r for r in (metadata.requires("hfmem") or []) if "extra ==" not in r]
        except metadata.PackageNotFoundError:
            deps = []
    web = list((project.get("optional-dependencies") or {}).get("web") or ["gradio>=6,<7", "matplotlib>=3.8"])
    names = {d.split(";")[0].strip() for d in deps}
    return deps + [w for w in web if w not in names]


def _gradio_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("gradio")
    except metadata.PackageNotFoundError:
        return None


def _license(project: dict) -> str | None:
    """pyproject's license (a source checkout), else the installed distribution's ``License`` metadata."""
    lic = project.get("license")
    text = lic.get("text") if isinstance(lic, dict) else lic
    if not text:
        from importlib import metadata

        try:
            meta = metadata.metadata("hfmem")
            text = meta.get("License-Expression") or meta.get("License")
        except metadata.PackageNotFoundError:
            text = None
    return str(text).lower() if text else None  # the Hub's license ids are lower case: apache-2.0


def readme(project: dict) -> str:
    version = _gradio_version()
    lines = ["---", "title: hfmem", "emoji: 🧮", "colorFrom: indigo", "colorTo: yellow", "sdk: gradio"]
    if version:
        lines.append(f"sdk_version: {version}")
    lines += ["app_file: app.py", f"python_version: \"{sys.version_info.major}.{sys.version_info.minor}\"",
              "pinned: false"]
    lic = _license(project)
    if lic:
        lines.append(f"license: {lic}")
    lines += ["short_description: GPU memory of a Hugging Face model, before you download it", "---", "",
              "# hfmem", "",
              "How much GPU memory a Hugging Face Hub model needs to load, serve or fine-tune: the Model Memory "
              "Calculator's table, serving (weights, KV cache, activations, overheads per GPU; whether it fits; "
              "the largest context and batch; a `vllm serve` line), fine-tuning with the out-of-memory advisor, "
              "several models side by side, and a search of the models that fit a GPU.", "",
              "Every answer has a link that reproduces it, and the `hfmem` command that prints it in a terminal. "
              "This Space runs the hfmem source copied next to app.py; the models of hfmem's shipped snapshot are "
              "answered without the Hub.", ""]
    return "\n".join(lines)


def _ignore(folder, names):
    return [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))]


def write_space(dest) -> list[Path]:
    """Write the Space to the folder ``dest`` (created; an existing hfmem copy in it is replaced): README.md,
    app.py, requirements.txt and the hfmem package with the snapshot. Returns the files written."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    project = _pyproject().get("project", {})
    target = dest / "hfmem"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(PACKAGE, target, ignore=_ignore)
    snapshot_target = target / "_snapshot"
    if not (snapshot_target / "index.json").is_file():
        from ..sources.snapshot import snapshot_dir

        source = snapshot_dir()
        if (source / "index.json").is_file():
            if snapshot_target.exists():
                shutil.rmtree(snapshot_target)
            shutil.copytree(source, snapshot_target, ignore=_ignore)
    (dest / "README.md").write_text(readme(project), encoding="utf-8")
    (dest / "app.py").write_text(APP_PY, encoding="utf-8")
    (dest / "requirements.txt").write_text("\n".join(TORCH_LINES + _dependencies(project)) + "\n", encoding="utf-8")
    return sorted(p for p in dest.rglob("*") if p.is_file())
