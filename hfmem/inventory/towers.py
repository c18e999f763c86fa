"""Parameters per tower: the inventory's module tree split into the towers a model is made of.

Pure (no torch): it reads ``Inventory.modules`` (dotted module name -> [parameters, buffer bytes], names up to
``MODULE_DEPTH`` parts, tied weights under the first name only) and assigns every module to a role by prefix
rules written as data, per model family. A module's *own* share is its size minus its listed children's, so
a prefix deeper than another takes its part away from it (Qwen2-VL's ``model.visual.merger`` is the projector,
the rest of ``model.visual`` the vision encoder), and the model root's own share holds the parameters no
module owns (CLIP's ``logit_scale``). Every parameter and buffer byte lands in exactly one row: the rows sum to
the inventory's totals.

Both inventory routes give the tree: the meta model and ``headers-exact`` name transformers' modules; the
``safetensors-headers`` route names the checkpoint's tensor prefixes (often an older transformers layout, so
the rules below also name the 4.x prefixes, e.g. Qwen2-VL's top-level ``visual``) and has no buffers per
module (its buffers are the root's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..metadata.safetensors import DTYPE_BITS, DTYPE_NAMES
from ..model.description import (AUDIO_ENCODER, DECODER, ENCODER, TEXT_DECODER, TEXT_ENCODER, TOWER_ROLES,
                                 VISION_ENCODER)

PROJECTOR, EMBEDDINGS, HEAD, OTHER = "projector", "embeddings", "head", "other"
# Row order of a breakdown, as the data flows: encoders, the projector into the language model, decoders,
# then what is shared or sits after them.
ROLES = (VISION_ENCODER, AUDIO_ENCODER, TEXT_ENCODER, ENCODER, PROJECTOR, DECODER, TEXT_DECODER, EMBEDDINGS,
         HEAD, OTHER)

ROOT = ""  # the rule (and ``modules`` entry of a row) for what the model's root holds itself
DEFAULT = "*"  # the rule for modules no other rule names (absent: they are "other")

# Encoder-decoder LMs: transformers 5.24 T5/MT5 keep the stacks at the top (T5ForConditionalGeneration),
# BART, mBART, Pegasus, Marian under ``model.``; the shared token embedding (``shared``) feeds both stacks.
# BART's root holds the ``final_logits_bias`` buffer of its LM head.
_SEQ2SEQ = {"shared": EMBEDDINGS, "model.shared": EMBEDDINGS, "encoder": ENCODER, "model.encoder": ENCODER,
            "decoder": DECODER, "model.decoder": DECODER, "lm_head": HEAD, ROOT: HEAD}
# Whisper (WhisperForConditionalGeneration: ``model.encoder``, ``model.decoder``, ``proj_out``; WhisperModel:
# the stacks at the top). Its decoder's token embedding is its own (the head is tied to it): no shared row.
_WHISPER = {"encoder": ENCODER, "model.encoder": ENCODER, "decoder": DECODER, "model.decoder": DECODER,
            "proj_out": HEAD}
# Dual encoders: CLIPModel / SiglipModel. The root holds logit_scale (and SigLIP's logit_bias), which act on
# the projected embeddings: the projector row, with CLIP's visual_projection and text_projection.
_DUAL = {"vision_model": VISION_ENCODER, "text_model": TEXT_ENCODER, "visual_projection": PROJECTOR,
         "text_projection": PROJECTOR, ROOT: PROJECTOR}
# LLaVA-style vision-language models (transformers 5.24 names under ``model.``; 4.x checkpoints at the top,
# with the language model's head under ``language_model.lm_head``).
_LLAVA = {"model.vision_tower": VISION_ENCODER, "vision_tower": VISION_ENCODER,
          "model.multi_modal_projector": PROJECTOR, "multi_modal_projector": PROJECTOR,
          "model.language_model": TEXT_DECODER, "language_model": TEXT_DECODER,
          "language_model.lm_head": HEAD, "lm_head": HEAD}
# Qwen2-VL / Qwen2.5-VL / Qwen3-VL: the vision transformer's patch merger is the projector into the LM's width.
# 4.x checkpoints: ``visual.*`` and the language model as ``model.*``.
_QWEN_VL = {"model.visual": VISION_ENCODER, "model.visual.merger": PROJECTOR,
            "model.visual.deepstack_merger_list": PROJECTOR, "model.language_model": TEXT_DECODER,
            "visual": VISION_ENCODER, "visual.merger": PROJECTOR, "model": TEXT_DECODER, "lm_head": HEAD}
# Idefics3 / SmolVLM: vision_model, connector (the projector), text_model.
_IDEFICS = {"model.vision_model": VISION_ENCODER, "model.connector": PROJECTOR, "model.text_model": TEXT_DECODER,
            "lm_head": HEAD}


def _single(backbone: str, role: str) -> dict[str, str]:
    """One tower (the base model under ``backbone``) and a classifier or CTC head."""
    return {backbone: role, "classifier": HEAD, "lm_head": HEAD, "projector": HEAD, DEFAULT: role}


# model_type -> prefix rules. Prefixes name modules exactly or by a dotted prefix; the longest wins.
FAMILY_RULES: dict[str, dict[str, str]] = {
    **{t: _SEQ2SEQ for t in ("t5", "mt5", "umt5", "longt5", "bart", "mbart", "pegasus", "marian", "m2m_100",
                             "plbart", "blenderbot", "blenderbot-small", "bigbird_pegasus", "led")},
    "whisper": _WHISPER,
    "clip": _DUAL, "siglip": _DUAL, "siglip2": _DUAL,
    **{t: _LLAVA for t in ("llava", "llava_next", "llava_next_video", "llava_onevision", "vipllava", "mistral3",
                           "gemma3", "paligemma", "aya_vision")},
    **{t: _QWEN_VL for t in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")},
    "idefics3": _IDEFICS, "smolvlm": _IDEFICS,
    # Vision classifiers (ResNetForImageClassification: ``resnet`` + ``classifier``; ViT, ConvNeXt alike).
    **{t: _single(t, VISION_ENCODER) for t in ("resnet", "vit", "convnext", "convnextv2", "deit", "beit",
                                               "dinov2", "swin", "regnet")},
    # CTC / audio classifiers: the feature extractor (convolutions), its projection and the transformer
    # encoder are one audio encoder under ``wav2vec2`` / ``hubert`` / ``wavlm``.
    **{t: _single(t, AUDIO_ENCODER) for t in ("wav2vec2", "hubert", "wavlm")},
    "data2vec-audio": _single("data2vec_audio", AUDIO_ENCODER),
}

# Module names of output heads across transformers' task classes (causal and masked LM, classification,
# question answering), for models of one tower with no family rules.
HEAD_MODULES = ("lm_head", "cls", "head", "decoder", "classifier", "score", "qa_outputs", "pre_classifier",
                "proj_out", "output_layer")


@dataclass(frozen=True)
class TowerShare:
    """One row of the breakdown: a role, its parameters and buffer bytes, its bytes at the checkpoint dtype
    (None when the checkpoint mixes dtypes: which tower holds which is not recorded), and the module names
    it was given (the top-most of each; "" is the model root's own)."""

    role: str
    parameters: int
    buffers_bytes: int
    bytes: int | None
    modules: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.role.replace("_", " ")


def rules_for(model_type: str | None, roles: Sequence[str] = ()) -> dict[str, str]:
    """The prefix rules of a family; for another model with exactly one tower (``roles``, the description's),
    everything but the usual head modules is that tower; otherwise only the heads are named."""
    if model_type in FAMILY_RULES:
        return FAMILY_RULES[model_type]
    towers = [r for r in dict.fromkeys(roles) if r in TOWER_ROLES]
    rules = {name: HEAD for name in HEAD_MODULES}
    if len(towers) == 1:
        rules[DEFAULT] = towers[0]
    return rules


def _role_of(path: str, rules: Mapping[str, str]) -> str:
    if path == ROOT:
        return rules.get(ROOT, rules.get(DEFAULT, OTHER))
    best = None
    for prefix in rules:
        if prefix not in (ROOT, DEFAULT) and (path == prefix or path.startswith(prefix + ".")):
            if best is None or len(prefix) > len(best):
                best = prefix
    return rules[best] if best is not None else rules.get(DEFAULT, OTHER)


def checkpoint_bits(params_by_dtype: Mapping[str, int]) -> int | None:
    """Bits per parameter when the checkpoint has one dtype (torch names, as ``Inventory.params_by_dtype``)."""
    if len(params_by_dtype) != 1:
        return None
    name = next(iter(params_by_dtype))
    code = next((c for c, n in DTYPE_NAMES.items() if n == name), None)
    return DTYPE_BITS.get(code) if code else None


def tower_shares(modules: Mapping[str, Sequence[int]], num_params: int, buffer_bytes: int,
                 model_type: str | None, roles: Sequence[str] = (), bits_per_param: int | None = None,
                 ) -> list[TowerShare]:
    """The breakdown of one inventory: rows in ``ROLES`` order, rows holding nothing left out. Parameters
    and buffer bytes of the rows sum to ``num_params`` and ``buffer_bytes``."""
    rules = rules_for(model_type, roles)
    size = {ROOT: (num_params, buffer_bytes)}
    size.update({p: (int(v[0]), int(v[1])) for p, v in modules.items() if p})

    def parent(path: str) -> str:  # the nearest listed ancestor (the root at the top)
        while "." in path:
            path = path.rsplit(".", 1)[0]
            if path in size:
                return path
        return ROOT

    own = dict(size)
    for path, (n, b) in size.items():
        if path != ROOT:
            pn, pb = own[parent(path)]
            own[parent(path)] = (pn - n, pb - b)
    role = {path: _role_of(path, rules) for path in size}
    params: dict[str, int] = {}
    bufs: dict[str, int] = {}
    # mass[(path, role)]: what the subtree of ``path`` gives to ``role`` (parameters, buffer bytes)
    mass: dict[tuple[str, str], tuple[int, int]] = {}
    children: dict[str, list[str]] = {}
    for path, (n, b) in own.items():
        r = role[path]
        params[r] = params.get(r, 0) + n
        bufs[r] = bufs.get(r, 0) + b
        if path != ROOT:
            children.setdefault(parent(path), []).append(path)
        node = path
        while True:
            mn, mb = mass.get((node, r), (0, 0))
            mass[(node, r)] = (mn + n, mb + b)
            if node == ROOT:
                break
            node = parent(node)
    names = {r: _listed(r, role, own, mass, children, parent) for r in params}
    out = []
    for r in ROLES:
        n, b = params.get(r, 0), bufs.get(r, 0)
        if n or b:
            nbytes = math.ceil(n * bits_per_param / 8) if bits_per_param else None
            out.append(TowerShare(r, n, b, nbytes, tuple(names[r])))
    return out


def _listed(r: str, role: dict, own: dict, mass: dict, children: dict, parent) -> list[str]:
    """The module names a row names: the top-most modules of its role that give it something, each followed
    down while it holds nothing itself and one child gives all of it (Qwen2-VL's ``model`` rule, for 4.x
    checkpoints, names ``model.language_model`` in transformers 5's layout); the root when it holds some."""
    out = [ROOT] if role[ROOT] == r and any(own[ROOT]) else []
    for path in own:
        if path == ROOT or role[path] != r or (parent(path) != ROOT and role[parent(path)] == r):
            continue
        if not any(mass.get((path, r), (0, 0))):
            continue
        while not any(own[path]):
            giving = [c for c in children.get(path, []) if any(mass.get((c, r), (0, 0)))]
            if len(giving) != 1 or mass[(giving[0], r)] != mass[(path, r)]:
                break
            path = giving[0]
        out.append(path)
    return out


def inventory_towers(inventory, config: dict | None) -> list[TowerShare]:
    """``tower_shares`` of an Inventory, with the description's tower roles from its config.json (the
    one-tower rule for families with no rules of their own)."""
    roles: tuple[str, ...] = ()
    if isinstance(config, dict) and inventory.model_type not in FAMILY_RULES:
        from ..errors import HfmemError
        from ..model.describe import describe

        try:
            d = describe(config)
            roles = tuple(t.role for t in d.towers) + tuple(d.other_towers)
        except (HfmemError, ValueError, TypeError):  # a config the description refuses: heads only
            roles = ()
    return tower_shares(inventory.modules, inventory.num_params, inventory.buffer_bytes, inventory.model_type,
                        roles, checkpoint_bits(inventory.params_by_dtype))


def towers_line(shares: Sequence[TowerShare]) -> str | None:
    """The table's footnote: "towers: vision encoder 303,179,776 · text encoder 123,060,480 · ...", for a
    model of several parts (towers, a projector, embeddings shared between towers); None for one tower with
    or without its head, whose split the JSON still gives."""
    parts = {s.role for s in shares if s.role in TOWER_ROLES + (PROJECTOR, EMBEDDINGS)}
    if len(parts) < 2:
        return None
    return "towers: " + " · ".join(f"{s.label} {s.parameters:,}" for s in shares)
