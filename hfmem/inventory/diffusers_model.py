"""A diffusers model (UNet, DiT transformer, VAE, ControlNet, prior) or the Stable Diffusion safety checker,
built on the meta device with diffusers itself and measured like any meta model (``meta_model.measure``:
parameters, buffers, accelerate's layers by the class's ``_no_split_modules``, the census).

diffusers is an optional extra (``pip install 'hfmem[diffusion]'``); torch and diffusers are imported inside
the functions only, so a warm answer from hfmem's cache never imports them.
"""

from __future__ import annotations

import contextlib
import warnings

from ..errors import ConfigError, UnsupportedArchitectureError

INSTALL_HINT = "pip install 'hfmem[diffusion]'"
SAFETY_CHECKER = "StableDiffusionSafetyChecker"


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("diffusers") is not None


def version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version as v

    try:
        return v("diffusers")
    except PackageNotFoundError:
        return None


@contextlib.contextmanager
def _quiet():
    """diffusers logs each config key its class does not take (old repos carry renamed keys)."""
    import diffusers

    previous = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        diffusers.utils.logging.set_verbosity(previous)


def model_class(class_name: str):
    """The diffusers class named in model_index.json, or None when this diffusers has no such model class."""
    import diffusers

    if class_name == SAFETY_CHECKER:
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

        return StableDiffusionSafetyChecker
    try:
        cls = getattr(diffusers, class_name, None)
    except Exception:  # noqa: BLE001 - diffusers' lazy module raises for names whose backend is missing
        return None
    import torch

    return cls if isinstance(cls, type) and issubclass(cls, torch.nn.Module) else None


def build(class_name: str, config: dict, origin: str):
    """The model on the meta device. The safety checker is a transformers ``PreTrainedModel`` built from a
    ``CLIPConfig`` (diffusers/pipelines/stable_diffusion/safety_checker.py)."""
    import torch

    cls = model_class(class_name)
    if cls is None:
        raise UnsupportedArchitectureError(f"diffusers {version()} has no model class {class_name} ({origin})",
                                           hint="upgrade diffusers, or give the component safetensors weights")
    try:
        with _quiet(), torch.device("meta"):
            if class_name == SAFETY_CHECKER:
                from transformers import CLIPConfig

                rest = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
                return cls(CLIPConfig(**rest))
            return cls.from_config(config)
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{origin}: diffusers' {class_name} refuses it ({exc.__class__.__name__}: "
                          f"{str(exc).splitlines()[0][:160] if str(exc) else ''})",
                          hint="fix the file or re-download it") from None
    except Exception as exc:  # noqa: BLE001 - whatever diffusers raises for a config it cannot build
        raise UnsupportedArchitectureError(
            f"diffusers could not build {class_name} from {origin} ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else ''})", hint="check the file, or upgrade diffusers") from None


def measure(class_name: str, config: dict, origin: str) -> dict:
    """``meta_model.measure`` of the built model (its ``architecture`` is the class name)."""
    from . import meta_model

    model = build(class_name, config, origin)
    return meta_model.measure(model)
