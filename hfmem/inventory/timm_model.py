"""A timm network built on the meta device with ``timm.create_model(architecture, pretrained=False,
num_classes=..., **model_args)`` (what ``timm.create_model("hf-hub:...")`` does with the repo's config.json:
timm/models/_hub.py ``load_model_config_from_hf``, timm/models/_factory.py) and measured like any meta model.

timm is an optional extra and is imported here only; without it a timm repo is counted from its safetensors
headers (``components``).
"""

from __future__ import annotations

import warnings

from ..errors import ConfigError, UnsupportedArchitectureError

INSTALL_HINT = "pip install timm"


def available() -> bool:
    """Whether timm imports (it needs a torchvision built for the installed torch: a find_spec is not enough)."""
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def measure(config: dict, origin: str) -> dict:
    import timm
    import torch

    from . import meta_model

    arch = config["architecture"]
    kwargs = dict(config.get("model_args") or {}) if isinstance(config.get("model_args"), dict) else {}
    if isinstance(config.get("num_classes"), int):
        kwargs["num_classes"] = config["num_classes"]
    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            model = timm.create_model(arch, pretrained=False, **kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise UnsupportedArchitectureError(f"timm {timm.__version__} has no model {arch!r} ({origin})",
                                               hint="upgrade timm, or give the repo its model.safetensors") from None
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: timm's {arch} refuses its model_args ({exc})",
                          hint="fix the file or re-download it") from None
    return meta_model.measure(model)
