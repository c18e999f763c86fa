"""Images served to a vision-language model: how many tokens each adds to the language model's context (from
the processor's settings in config.json), and the vision tower that encodes them. Pure functions; the vision
tower's activations come from a simulation of its own code (``by_simulation``).

Tokens per image, by family (what each processor inserts for one image):

* LLaVA-1.5 (``llava``): the vision tower's patch grid, (image_size / patch_size)² — 576 for CLIP ViT-L/14 at
  336 px; ``vision_feature_select_strategy`` "full" keeps the CLS token too (+1). LlavaProcessor expands one
  ``<image>`` token to that many.
* Gemma 3 (``gemma3``): ``mm_tokens_per_image`` (256: SigLIP's 64×64 patches pooled 4×4), whatever the
  input resolution (Gemma3Processor resizes to 896×896).
* Qwen2-VL / Qwen2.5-VL: dynamic resolution — the image is resized to multiples of 28 px (patch 14 × spatial
  merge 2) and every 2×2 patch group is one token: (H/28)·(W/28); ``--image-size`` says the side (448 px when not
  given: 256 tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnsupportedArchitectureError, UsageError

QWEN_DEFAULT_SIDE = 448
# vision sub-config model_type -> the transformers class that runs it alone (its forward takes pixel_values)
VISION_CLASSES = {"clip_vision_model": "CLIPVisionModel", "siglip_vision_model": "SiglipVisionModel"}


def tokens_per_image(config: dict, image_size: int | None = None) -> tuple[int, str]:
    """(tokens one image adds to the context, how they were counted) for a VLM config."""
    mt = config.get("model_type")
    vc = config.get("vision_config") or {}
    if mt == "llava":
        side = int(vc.get("image_size") or 336)
        patch = int(vc.get("patch_size") or 14)
        if image_size and image_size != side:
            raise UnsupportedArchitectureError(
                f"llava: its processor resizes every image to {side}×{side}; --image-size {image_size} does not apply",
                hint="leave --image-size out")
        n = (side // patch) ** 2 + (1 if config.get("vision_feature_select_strategy") == "full" else 0)
        return n, f"LLaVA: ({side}/{patch})² = {n} tokens per image (its processor expands <image> to the patch grid)"
    if mt == "gemma3":
        n = int(config.get("mm_tokens_per_image") or 256)
        return n, f"Gemma 3: mm_tokens_per_image = {n} tokens per image (resized to 896×896, pooled)"
    if mt in ("qwen2_vl", "qwen2_5_vl"):
        unit = int(vc.get("patch_size") or vc.get("spatial_patch_size") or 14) * int(vc.get("spatial_merge_size") or 2)
        side = image_size or QWEN_DEFAULT_SIDE
        cells = max(1, round(side / unit))  # smart_resize: to the nearest multiple of 28 px
        n = cells * cells
        return n, (f"Qwen2-VL: a {side}×{side} image resized to {cells * unit}×{cells * unit} = ({cells * unit}/"
                   f"{unit})² = {n} tokens (2×2 patches of {unit // 2} px merged)"
                   + ("" if image_size else f"; --image-size not given: {QWEN_DEFAULT_SIDE} px"))
    raise UnsupportedArchitectureError(f"{mt}: the image tokens of its processor are not modelled yet",
                                       hint="serve text only (leave --images out), or run `hfmem simulate`")


def vision_tower_config(config: dict) -> dict | None:
    """The vision sub-config as a model config its own transformers class builds, or None when that tower's
    forward is not a plain ``pixel_values`` batch (Qwen2-VL's flattened patch sequence)."""
    vc = config.get("vision_config")
    if not isinstance(vc, dict):
        return None
    cls = VISION_CLASSES.get(vc.get("model_type"))
    if cls is None:
        return None
    out = dict(vc, architectures=[cls])
    dtype = config.get("torch_dtype") or config.get("dtype")
    if dtype and not (vc.get("torch_dtype") or vc.get("dtype")):
        out["torch_dtype"] = dtype
    return out




@dataclass(frozen=True)
class ImagePlan:
    """What serving or training a VLM on images adds: tokens per image (and how they were counted), and the
    vision tower's own config when its forward can be simulated alone."""

    model_type: str
    per_image: int
    how: str
    vision_config: dict | None

    def assumption(self, images: int, length: int, verb: str) -> str:
        extra = images * self.per_image
        return (f"{images} image(s) per sequence: {self.how}; {extra:,} image tokens {verb} the {length:,}-token "
                f"{'context' if verb == 'join' else 'sequence'} ({length + extra:,} in all)")

    def not_modelled_note(self) -> str:
        return (f"the {self.model_type} vision tower's activations are not modelled yet (its input is a flattened "
                "patch sequence): only its weights and the image tokens are counted")


def plan_images(model: str, config: dict, image_size: int | None) -> ImagePlan:
    """The ``ImagePlan`` of ``config``; a usage error when the model has no vision tower."""
    from ..model import describe
    from ..model.description import VISION_ENCODER

    desc = describe(config)
    if VISION_ENCODER not in desc.roles:
        raise UsageError(f"{model} has no vision tower: --images does not apply", hint="leave --images out")
    if desc.decoder is None:  # a vision model (ResNet, ViT, CLIP): its images are the batch, not extra tokens
        raise UsageError(f"{model} is not a vision-language model: --images (images per sequence) does not apply",
                         hint="give its images as --batch (and --image-size)")
    per_image, how = tokens_per_image(config, image_size)
    return ImagePlan(desc.model_type, per_image, how, vision_tower_config(config))


def vision_phase_is_peak(est, peak_bytes: int, churn_bytes: int, fragmentation: float) -> None:
    """Make the vision tower's phase the peak of a serving or training estimate ``est`` (both carry the same
    totals): peak allocated, the reserve over the phase's own churn, and the device total with the CUDA context
    (and NCCL) the estimate already counts."""
    from .overheads import reserved_bytes

    c = est.components
    est.peak_phase, est.peak_allocated_bytes = "vision", peak_bytes
    est.peak_reserved_bytes = reserved_bytes(peak_bytes, churn_bytes, fragmentation)
    c["allocator_reserve_bytes"] = est.peak_reserved_bytes - peak_bytes
    est.device_total_bytes = est.peak_reserved_bytes + c.get("cuda_context_bytes", 0) + c.get("nccl_bytes", 0)
