"""The widths the training-activation forms read: a view of ``hfmem.model.describe``'s text tower.

``train_shape(config)`` is the only place those forms look at a model; the description (hfmem/model/) is the
one config reader, so field aliases, a multimodal model's ``text_config`` and layer types are resolved there,
not here.
``TrainActivationError`` is the error every part of the training-activation estimate raises for a model or a
setting it cannot estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnsupportedArchitectureError
from ..model import ModelDescription, describe
from ..model.description import TEXT_ENCODER, UNKNOWN_HINT


class TrainActivationError(UnsupportedArchitectureError, ValueError):
    """A model or setting this closed form cannot estimate (an unknown attention, a bad parallel layout, ...):
    exit 6, as hfmem.api reports it."""


@dataclass(frozen=True)
class TrainShape:
    """What the activation forms need: the text tower of ``hfmem.model.describe`` in these forms' symbols."""

    model_type: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    experts: int = 0  # routed experts (0: dense)
    top_k: int = 0
    moe_intermediate: int = 0
    shared_intermediate: int = 0  # shared expert(s) width in all (qwen2_moe, DeepSeek n_shared × moe width)
    dense_layers: int = 0  # layers with a dense MLP in a MoE model (DeepSeek first_k_dense_replace, ...)
    q_lora_rank: int = 0  # MLA (DeepSeek-V2/V3)
    kv_lora_rank: int = 0
    mla_head_dims: int = 0  # qk_nope + qk_rope + v head dims
    mla_rope_dim: int = 0
    mla_v_dim: int = 0
    window: int | None = None
    sliding_layers: int = 0
    rotary: bool = True
    hidden_act: str = ""

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers if self.experts else 0


def train_shape(config: dict | ModelDescription) -> TrainShape:
    """The widths the training forms need: a view of the model description's text tower."""
    desc = describe(config)
    t = desc.text
    if desc.unknown:
        raise TrainActivationError(desc.unknown, hint=UNKNOWN_HINT)
    if t is None and not desc.roles:
        raise TrainActivationError(f"{desc.model_type or 'unknown'}: config lacks hidden size, heads, layers or "
                                   "vocabulary")
    if t is None or (t.role == TEXT_ENCODER and len(desc.roles) > 1):
        desc.require_decoder("training memory")  # one line naming the towers it has instead
    if not (t.hidden and t.heads and t.num_layers and t.vocab):
        raise TrainActivationError(f"{t.model_type or 'unknown'}: config lacks hidden size, heads, layers or "
                                   "vocabulary")
    moe, mla = t.moe, t.mla
    return TrainShape(model_type=t.model_type or desc.model_type or "unknown", layers=t.num_layers, hidden=t.hidden,
                      heads=t.heads, kv_heads=t.kv_heads, head_dim=t.head_dim, intermediate=t.intermediate,
                      vocab=t.vocab, tied=desc.tie_word_embeddings,
                      experts=moe.experts if moe else 0, top_k=moe.top_k if moe else 0,
                      moe_intermediate=moe.expert_intermediate if moe else 0,
                      shared_intermediate=moe.shared_intermediate if moe else 0, dense_layers=t.dense_layers,
                      q_lora_rank=mla.q_lora_rank if mla else 0, kv_lora_rank=mla.kv_lora_rank if mla else 0,
                      mla_head_dims=mla.head_dims if mla else 0, mla_rope_dim=mla.qk_rope_head_dim if mla else 0,
                      mla_v_dim=mla.v_head_dim if mla else 0, window=t.sliding_window if t.sliding_layers else None,
                      sliding_layers=t.sliding_layers, rotary=t.rotary, hidden_act=t.activation)
