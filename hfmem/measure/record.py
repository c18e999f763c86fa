"""The ``hfmem.measured/1`` record (benchmarks/measured/README.md), as ``hfmem measure --out`` and
benchmarks/measure_gpu.py write it, and what the accuracy report reads back from it.

A record written by ``hfmem measure`` extends measure_gpu.py's case compatibly: ``mode``, ``settings`` (the
estimate's resolved TrainSettings / InferenceSettings, ``to_dict()``), ``estimate`` (peak_allocated_bytes,
peak_reserved_bytes, device_total_bytes at measuring time), ``config`` (the config.json the model was built
from), ``plan`` (what ran), ``device_used_bytes``. ``accuracy_rows`` recomputes hfmem's estimate with the
current code from the stored settings and pairs it with the measured quantity of the same kind.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import re
import tempfile
from pathlib import Path

SCHEMA = "hfmem.measured/1"
# measured field, hfmem's estimate of that same quantity, the accuracy report's name for the quantity
QUANTITIES = (("max_memory_allocated", "peak_allocated_bytes", "max_memory_allocated"),
              ("max_memory_reserved", "peak_reserved_bytes", "max_memory_reserved"),
              ("device_used_bytes", "device_total_bytes", "nvidia-smi"))


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "model"


def document(cases: list[dict], *, command: str) -> dict:
    """A whole file: the first case's environment (GPU, driver, versions) at the top, as measure_gpu.py's."""
    env = dict(next((c["environment"] for c in cases if c.get("environment")), {}))
    env.update(date=_dt.date.today().isoformat(), command=command)
    context = next((c["device_used_after_init"] - c["device_used_before_init"] for c in cases
                    if c.get("device_used_after_init") is not None and c.get("device_used_before_init") is not None),
                   None)
    return {"schema": SCHEMA, "environment": env, "context_bytes": context, "cases": cases}


def write(path: Path, doc: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


def settings_from_dict(mode: str, data: dict):
    """The TrainSettings ("train") / InferenceSettings ("infer") a record stores (``to_dict()``'s form:
    overheads as ``{name: {"value", "source"}}``). Keys this hfmem does not know are left out."""
    from ..scenarios.finetune import TrainSettings
    from ..scenarios.inference import InferenceSettings
    from ..scenarios.overheads import Overheads

    cls = TrainSettings if mode == "train" else InferenceSettings
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    if isinstance(kwargs.get("overheads"), dict):
        known = {f.name for f in dataclasses.fields(Overheads)}
        kwargs["overheads"] = Overheads(**{k: v["value"] if isinstance(v, dict) else v
                                           for k, v in kwargs["overheads"].items() if k in known})
    if isinstance(kwargs.get("lora_targets"), list):
        kwargs["lora_targets"] = list(kwargs["lora_targets"])
    return cls(**kwargs)


def recompute(case: dict, options=None):
    """hfmem's estimate now for a record's model and settings: the model as named (offline by default),
    else the config.json the record stores. (estimate, note)."""
    from .. import api
    from ..errors import HfmemError

    opts = options or api.Options(offline=True)
    settings = settings_from_dict(case["mode"], case["settings"])
    run = api.train if case["mode"] == "train" else api.infer
    try:
        return run(case["model"], opts, settings=settings).estimate, ""
    except HfmemError:
        if not case.get("config"):
            raise
    folder = Path(tempfile.mkdtemp(prefix="hfmem-record-"))
    (folder / "config.json").write_text(json.dumps(case["config"]))
    return run(str(folder), opts, settings=settings).estimate, "estimated from the record's config.json"


def accuracy_rows(path: Path, options=None) -> list[tuple[str, str, int, int, str]]:
    """(case, quantity, measured, estimate, note) for every measured quantity of every successful
    ``hfmem measure`` case in the file at ``path``; other files and cases (measure_gpu.py's, without
    ``settings``; oom / error / skipped) give none."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        return []
    gpu = (doc.get("environment") or {}).get("gpu_name", "?")
    out = []
    for case in doc.get("cases", []):
        if case.get("status") != "ok" or not case.get("settings") or case.get("mode") not in ("train", "infer"):
            continue
        estimate, note = recompute(case, options)
        label = f"{case['mode']} {case['model']} {case.get('setting', '')} ({gpu}, {Path(path).name})"
        for measured_key, estimate_key, quantity in QUANTITIES:
            measured = case.get(measured_key)
            if measured:
                out.append((label, quantity, int(measured), int(getattr(estimate, estimate_key)), note))
    return out
