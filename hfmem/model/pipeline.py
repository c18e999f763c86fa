"""The typed description of a repo made of several models: a diffusers pipeline (``model_index.json``), a
sentence-transformers model (``modules.json``), or a timm model (one network, config.json naming its
``architecture``). Read by every scenario that sizes such a repo (the calculator, serving, training,
simulation); built by the sources (``hfmem.sources``) and stored on ``ModelReport.components``.

No torch here: plain dataclasses, JSON round-trippable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..inventory.model import Inventory

# What a repo is, by the file that says so (``ModelReport.kind``).
TRANSFORMERS = "transformers"  # config.json with model_type: transformers' own classes
DIFFUSERS_PIPELINE = "diffusers-pipeline"  # model_index.json: one folder per component
SENTENCE_TRANSFORMERS = "sentence-transformers"  # modules.json: Transformer, Pooling, Dense, Normalize modules
TIMM = "timm"  # config.json with "architecture" (timm's hub format): timm.create_model builds it
KINDS = (TRANSFORMERS, DIFFUSERS_PIPELINE, SENTENCE_TRANSFORMERS, TIMM)

# The part a component plays, the vocabulary every scenario reads (``Component.role``).
DENOISER = "denoiser"  # the UNet or DiT/transformer run once per denoising step
VAE = "vae"  # encodes pixels to latents (training, img2img) and decodes latents to pixels
TEXT_ENCODER = "text_encoder"  # CLIP / T5 / Gemma text encoders: one forward per prompt
IMAGE_ENCODER = "image_encoder"  # IP-Adapter's CLIP vision model, a safety checker's vision tower
SAFETY_CHECKER = "safety_checker"  # StableDiffusionSafetyChecker: a CLIP vision tower run on each image
CONTROLNET = "controlnet"  # a ControlNet run beside the denoiser at every step
BACKBONE = "backbone"  # a timm network; sentence-transformers' Transformer module
POOLING = "pooling"  # sentence-transformers Pooling: no parameters
DENSE = "dense"  # sentence-transformers Dense: one linear layer (+ activation)
NORMALIZE = "normalize"  # sentence-transformers Normalize: no parameters
WEIGHTLESS = "weightless"  # schedulers, tokenizers, feature extractors: no GPU memory
OTHER = "other"  # a component with weights whose role hfmem does not know (sized, never guessed at)
ROLES = (DENOISER, VAE, TEXT_ENCODER, IMAGE_ENCODER, SAFETY_CHECKER, CONTROLNET, BACKBONE, POOLING, DENSE,
         NORMALIZE, WEIGHTLESS, OTHER)


@dataclass
class Component:
    """One part of a composite repo, as its own library describes it."""

    name: str  # the model_index.json key ("unet", "text_encoder_2"), or the modules.json name ("0_Transformer")
    library: str  # "diffusers", "transformers", "timm", "sentence_transformers", ... as the repo names it
    class_name: str  # "UNet2DConditionModel", "CLIPTextModel", "AutoencoderKL", "Pooling", "resnet50"
    role: str  # one of ROLES
    folder: str = ""  # where its files are inside the repo ("unet", "1_Pooling"; "" the repo's root)
    config: dict | None = None  # its config.json / scheduler_config.json / config of a sentence-transformers module
    inventory: Inventory | None = None  # its exact parameters; None for weightless parts
    notes: list[str] = field(default_factory=list)

    @property
    def has_weights(self) -> bool:
        return self.inventory is not None and (self.inventory.num_params > 0 or self.inventory.buffer_bytes > 0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inventory"] = self.inventory.to_dict() if self.inventory is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Component":
        d = dict(d)
        if d.get("inventory") is not None:
            d["inventory"] = Inventory.from_dict(d["inventory"])
        return cls(**d)


@dataclass
class Layout:
    """The whole repo: what kind it is, the class that runs it, and its components in the repo's order."""

    kind: str  # one of KINDS
    class_name: str  # "StableDiffusionPipeline", "FluxPipeline", "SentenceTransformer", "resnet50"
    components: list[Component]
    library_version: str | None = None  # model_index.json's _diffusers_version, the repo's sentence-transformers version

    def by_role(self, role: str) -> list[Component]:
        return [c for c in self.components if c.role == role]

    def named(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)

    def with_weights(self) -> list[Component]:
        return [c for c in self.components if c.has_weights]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "class_name": self.class_name, "library_version": self.library_version,
                "components": [c.to_dict() for c in self.components]}

    @classmethod
    def from_dict(cls, d: dict) -> "Layout":
        return cls(kind=d["kind"], class_name=d["class_name"], library_version=d.get("library_version"),
                   components=[Component.from_dict(c) for c in d.get("components", [])])
