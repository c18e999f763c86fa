"""Build the transformers model (and optional LoRA adapters) from a config.json dict, inside the caller's
``FakeTensorMode``: every parameter and buffer is a fake CPU tensor, no memory is touched."""

from __future__ import annotations

import contextlib
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# checkpoint_untied / retie_input_embeddings: the checkpoint's own tying (flan-t5's separate lm_head), as the
# inventory counts it
from ..inventory.meta_model import _model_class, _quiet, checkpoint_untied, make_config, retie_input_embeddings
from .result import NoSdpaError, SimulationError
from .tracker import _LOCAL_SCALAR, stand_in_scalar

ATTN_IMPLEMENTATIONS = {"sdpa": "sdpa", "eager": "eager", "flash": "sdpa"}  # flash: sdpa routed to the flash op
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "ForMaskedLM")


def architecture_name(config: dict) -> str:
    archs = config.get("architectures") or []
    return archs[0] if archs else str(config.get("model_type", "unknown"))


def resolve_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise SimulationError(f"unknown dtype {name!r} (use float32, bfloat16 or float16)") from None


def _class_for(config: dict, config_obj):
    """The class the repo names (so a causal LM has its head); without ``architectures``, the causal-LM
    class of the model type when transformers has one. A bare encoder-decoder (``BartModel``, ``T5Model``:
    facebook/bart-large names BartModel) runs as its conditional-generation class, as people load it to
    generate or fine-tune; its LM head is tied to the shared embedding, so the weights are the same."""
    arch = (config.get("architectures") or [None])[0]
    cls = _model_class(arch, config_obj)
    import transformers
    from transformers.models.auto import modeling_auto as auto

    model_type = config.get("model_type")
    if arch is None and model_type in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return transformers.AutoModelForCausalLM
    seq2seq = auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES.get(model_type) or \
        auto.MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES.get(model_type)
    if seq2seq and getattr(config_obj, "is_encoder_decoder", False) and \
            auto.MODEL_MAPPING_NAMES.get(model_type) == (arch or auto.MODEL_MAPPING_NAMES.get(model_type)):
        return getattr(transformers, seq2seq, cls)
    return cls


def bare_encoder_decoder_note(config: dict, model) -> str | None:
    """The assumption to state when a bare encoder-decoder was built as its generation class."""
    arch = (config.get("architectures") or [None])[0]
    if arch and type(model).__name__ != arch and getattr(model.config, "is_encoder_decoder", False):
        return (f"config.json names {arch} (no head): run as {type(model).__name__}, whose LM head is tied to "
                "the shared embedding (the same weights)")
    return None


def has_attention(config_obj) -> bool:
    """Whether the model has attention layers at all (ResNet, ConvNeXt, RegNet have none: transformers refuses
    an SDPA request for them, and no attention choice changes their memory)."""
    configs = [config_obj] + [getattr(config_obj, k) for k in ("text_config", "vision_config", "audio_config")
                              if getattr(config_obj, k, None) is not None]
    keys = ("num_attention_heads", "num_heads", "n_head", "encoder_attention_heads", "decoder_attention_heads")
    return any(getattr(c, k, None) for c in configs for k in keys)


def build_model(config: dict, *, dtype: torch.dtype, attn: str):
    """The model for ``config`` in ``dtype`` with the attention implementation for ``attn``. Call inside
    ``FakeTensorMode``."""
    if attn not in ATTN_IMPLEMENTATIONS:
        raise SimulationError(f"unknown attention {attn!r} (use sdpa, eager or flash)")
    if "model_type" not in config:
        raise SimulationError("config.json has no model_type: transformers cannot build it")
    arch = architecture_name(config)
    try:
        config_obj = make_config(config)
        untied = checkpoint_untied(config, config_obj)
        cls = _class_for(config, config_obj)
        kwargs = {"dtype": dtype}
        if has_attention(config_obj):
            kwargs["attn_implementation"] = ATTN_IMPLEMENTATIONS[attn]
        with _quiet(), _ScalarStandIn():
            model = cls._from_config(config_obj, **kwargs) if hasattr(cls, "_from_config") \
                else cls.from_config(config_obj, **kwargs)
        if untied:
            retie_input_embeddings(model)
    except SimulationError:
        raise
    except Exception as exc:  # transformers raises many kinds for configs or settings it cannot build
        if "does not support an attention implementation" in str(exc):  # e.g. Gemma2, gpt-oss with sdpa
            raise NoSdpaError(f"{arch}: transformers {transformers_version()} has no SDPA attention for this "
                                  f"architecture (attn={attn}); use attn='eager'") from None
        raise SimulationError(f"{arch}: transformers could not build the model with attn={attn} "
                              f"({exc.__class__.__name__}: {first_line(exc)})") from None
    return model


class _ScalarStandIn(TorchDispatchMode):
    """Answers ``.item()`` on fake tensors while a model is built. Weight initializers read scalars that only
    steer the random values, which fake tensors never have: torch 2.13's ``trunc_normal_`` (ViT, DeiT, Swin)
    resamples ``while mask.any()``, so a truth value is answered False ("nothing out of range"), which ends
    such loops; shapes and dtypes are untouched."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is _LOCAL_SCALAR:
            return False if args[0].dtype == torch.bool else stand_in_scalar(args[0])
        return func(*args, **(kwargs or {}))


def transformers_version() -> str:
    import transformers

    return transformers.__version__


def is_lm(model) -> bool:
    return type(model).__name__.endswith(_LM_SUFFIXES)


def enable_checkpointing(model) -> None:
    """Non-reentrant activation checkpointing of every layer. transformers 5.x renamed
    ``gradient_checkpointing_enable(gradient_checkpointing_kwargs=...)`` (deprecated, removed in v6) to
    ``activation_checkpointing_enable(activation_checkpointing_kwargs=...)``; both do the same."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def apply_lora(model, lora: dict, arch: str, fake_mode):
    """Wrap ``model`` with PEFT LoRA adapters. PEFT keeps the adapters in fp32 on a 16-bit base by default
    (``autocast_adapter_dtype=True``), as a real fine-tuning run does."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise SimulationError("LoRA simulation needs PEFT: pip install peft") from None
    unknown = set(lora) - {"r", "alpha", "targets", "dropout", "dora"}
    if unknown:
        raise SimulationError(f"unknown LoRA settings {sorted(unknown)} (use r, alpha, targets, dropout, dora)")
    targets = lora.get("targets", "all-linear")
    cfg = LoraConfig(r=int(lora.get("r", 8)), lora_alpha=int(lora.get("alpha", 16)),
                     lora_dropout=float(lora.get("dropout", 0.0)), use_dora=bool(lora.get("dora", False)),
                     target_modules=targets if isinstance(targets, str) else list(targets))
    try:
        with _quiet(), _swappable_fake_parameters(fake_mode):
            return get_peft_model(model, cfg)
    except Exception as exc:
        raise SimulationError(f"{arch}: PEFT could not add LoRA adapters "
                              f"({exc.__class__.__name__}: {first_line(exc)})") from None


@contextlib.contextmanager
def _swappable_fake_parameters(fake_mode):
    """Let ``Module.to()`` work on fake parameters (PEFT moves every new adapter to its base layer's
    device and dtype that way).

    On a FakeTensor parameter ``Module._apply`` always swaps in the converted tensor with
    ``torch.utils.swap_tensors``, which refuses tensors that have weak references; FakeTensorMode's
    converter memo (a WeakValueDictionary from meta-tensor ids to fake tensors, filled by every view op
    such as the ``detach`` inside ``nn.Parameter``) holds one to each fake parameter. The memo only
    preserves aliasing when real tensors are converted to fake ones, which these tensors no longer need,
    so their entries are dropped just before the swap.
    """
    memo = fake_mode.fake_tensor_converter.tensor_memo
    original = torch.utils.swap_tensors

    def swap_tensors(t1, t2):
        for t in (t1, t2):
            keys = [r.key for r in weakref.getweakrefs(t) if isinstance(r, weakref.KeyedRef)]
            for key in keys:
                memo.pop(key, None)
        return original(t1, t2)

    torch.utils.swap_tensors = swap_tensors
    try:
        yield
    finally:
        torch.utils.swap_tensors = original


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""
