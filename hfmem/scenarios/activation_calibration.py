"""The packaged calibration of training activations: ``hfmem/data/calibration.json``, read once, lazily,
through importlib.resources (the only I/O of the training-activation estimate).

What it holds. Per ``model_type`` and attention implementation (``sdpa``, ``eager``), Korthikanti's ``c`` of
``sbh·c``: the bytes one decoder layer saves for the backward per token per hidden unit, measured by
simulation of the real transformers code (``hfmem.simulate.simulate_train``) for one reference model per
architecture, as the difference of two layer counts (benchmarks/calibrate.py's method). Each entry also
records the reference model's shape, the fitted ``linear`` and ``attention`` (eager's s² term) parts, the
per-sequence-length values, gradient checkpointing's per-layer bytes (``grad_ckpt``) and the non-layer terms
(log-probabilities per vocabulary entry, per-hidden terms, the forward's transient at the loss).

A calibrated ``c`` is exact for the reference shape only; ``hfmem.scenarios.train_structures`` moves it to
other shapes. This module gives that move its anchor: the entry (``_reference``), its coefficient
(``_fit``) and the reference model's shape (``_ref_shape`` + ``_REF_EXTRA``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from importlib import resources

from ..model.describe import DEFAULT_ACT
from .activation_shape import TrainShape

CALIBRATION_PACKAGE = "hfmem.data"
CALIBRATION_FILE = "calibration.json"


@functools.lru_cache(maxsize=1)
def load_calibration() -> dict:
    """The packaged calibration.json (cached); an empty document if it is missing."""
    try:
        text = resources.files(CALIBRATION_PACKAGE).joinpath(CALIBRATION_FILE).read_text()
    except (FileNotFoundError, ModuleNotFoundError):
        return {"architectures": {}}
    return json.loads(text)


def calibration_entry(model_type: str, attn: str) -> dict | None:
    """calibration.json's entry for (model_type, attn); flash uses the SDPA entry (SDPA runs the flash op)."""
    arch = load_calibration().get("architectures", {}).get(model_type) or {}
    key = "sdpa" if attn == "flash" else attn
    return arch.get(key)


def _fit(entry: dict, attn: str) -> tuple[float, float]:
    """(linear, attention) of a calibration entry. For SDPA the attention term is 0 by construction (no s×s
    tensor); a non-zero fitted value means the longer calibration length reached a sliding window (mask
    path), so the shorter length's coefficient is the unmasked one."""
    fit = entry["fit"]
    if attn == "eager":
        return float(fit["linear"]), float(fit["attention"])
    per_seq = entry.get("activation_bytes_per_token_per_hidden_per_layer") or {}
    if abs(fit.get("attention", 0.0)) > 0.05 and per_seq:
        first = min(per_seq, key=int)
        return float(per_seq[first]), 0.0
    return float(fit["linear"]), 0.0


def _ref_shape(entry: dict) -> TrainShape:
    """The reference model's shape as calibration.json records it."""
    s = entry["shape"]
    experts_per_token = s.get("experts_per_token") or 0
    return TrainShape(model_type=entry["model_type"], layers=s["layers_in_model"], hidden=s["hidden"],
                      heads=s["heads"], kv_heads=s["kv_heads"], head_dim=s["head_dim"],
                      intermediate=s["intermediate"], vocab=s["vocab"], tied=False,
                      experts=1 if experts_per_token else 0, top_k=experts_per_token,
                      moe_intermediate=s.get("moe_intermediate") or 0,
                      hidden_act=DEFAULT_ACT.get(entry["model_type"], "silu"))


# Reference-model fields calibration.json does not record (experts, shared experts, MLA dims): from the
# reference configs (benchmarks/calibrate.py's ARCHITECTURES).
_REF_EXTRA: dict[str, dict] = {
    "mixtral": {"experts": 8},
    "qwen2_moe": {"experts": 60, "shared_intermediate": 5632},
    "qwen3_moe": {"experts": 128},
    "deepseek_v3": {"experts": 256, "shared_intermediate": 2048, "q_lora_rank": 1536, "kv_lora_rank": 512,
                    "mla_head_dims": 320},
    "gpt_oss": {"experts": 32},
}


def _reference(family: str, attn: str) -> tuple[dict, TrainShape]:
    """(calibration entry, reference shape) of a calibrated family for ``attn``."""
    entry = calibration_entry(family, attn)
    if entry is None:  # e.g. Gemma 2 / gpt-oss have no SDPA entry: eager's linear part, no s² term
        entry = calibration_entry(family, "eager" if attn != "eager" else "sdpa")
    ref = _ref_shape(entry)
    extra = _REF_EXTRA.get(family, {})
    if extra:
        ref = replace(ref, **{k: v for k, v in extra.items() if k != "experts"},
                      experts=extra.get("experts", ref.experts))
    return entry, ref
