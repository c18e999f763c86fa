"""Which attention implementation transformers picks for a model, without importing transformers.

transformers 5.x (``PreTrainedModel.get_correct_attn_implementation``): with no ``attn_implementation`` it
tries SDPA and falls back to eager when the model class has ``_supports_sdpa = False`` (Gemma 2, whose
attention logit soft-capping SDPA cannot run; gpt-oss, whose attention sinks it cannot run; Bloom, GPT-Neo,
MPT, ...); an explicit ``attn_implementation="sdpa"`` for such a class raises. Which classes lack SDPA
ships as data (hfmem/data/transformers_facts.json, read from the classes themselves by
hfmem/metadata/transformers_facts.py), united with the calibrations' ``eager_only`` families.
"""

from __future__ import annotations

from ..model import describe
from ..metadata.transformers_facts import ATTENTION_FREE, no_sdpa_types


def model_types(config: dict) -> list[str]:
    """The config's model type and its text model's (a multimodal config), outer first."""
    return list(describe(config).model_types)


def _eager_only_families() -> set[str]:
    from .infer_activations import load_calibration

    return {t for t, e in load_calibration().get("architectures", {}).items() if e.get("eager_only")}


def no_sdpa_type(config: dict) -> str | None:
    """The model type (outer or text model) transformers has no SDPA attention for; None when it has."""
    types = model_types(config)
    if any(t in ATTENTION_FREE for t in types):
        return None
    missing = no_sdpa_types() | _eager_only_families()
    return next((t for t in types if t in missing), None)


def sdpa_supported(config: dict) -> bool:
    return no_sdpa_type(config) is None


def transformers_default(config: dict) -> str:
    """transformers' default attention for this model: "sdpa", or "eager" where it has no SDPA path."""
    return "sdpa" if sdpa_supported(config) else "eager"


def _default_note(missing: str) -> str:
    return (f"attention: eager (transformers has no SDPA path for {missing}; its default, as with no "
            f"attn_implementation given)")


def _refusal(missing: str) -> str:
    return (f"transformers has no SDPA attention for {missing} (attn_implementation=\"sdpa\" raises): leave "
            f"--attn out for its default (eager), or pass --attn eager or --attn flash")


def default_note(config: dict) -> str | None:
    """The assumption an estimate lists when it takes eager because transformers has no SDPA for the model."""
    missing = no_sdpa_type(config)
    return None if missing is None else _default_note(missing)


def choose(config: dict, requested: str | None) -> tuple[str, str | None, str | None]:
    """The attention transformers runs for ``requested`` (None: its own default) on this model, in one look-up:
    (attention, the assumption to list when the default is eager, the one-line refusal of an explicit sdpa
    transformers has no path for). The caller raises the refusal in its own error type."""
    missing = no_sdpa_type(config)
    if requested == "sdpa" and missing is not None:
        return requested, None, _refusal(missing)
    if requested is not None:
        return requested, None, None
    return ("sdpa", None, None) if missing is None else ("eager", _default_note(missing), None)


__all__ = ["choose", "default_note", "model_types", "no_sdpa_type", "sdpa_supported", "transformers_default"]
