"""The typed description of a model that every estimate reads: towers, layers by kind, heads, tying.

Built once from config.json (with transformers' configuration-class defaults) by ``hfmem.model.describe``;
immutable; no torch. Scenarios never read config dicts: a field they need and this description lacks is added
here, once, with its aliases in ``hfmem.model.fields``.

Sizes are integers (element counts, widths); no bytes live here — bytes come from the scenarios (the
recurrent states name their dtypes, ``hfmem.model.states``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UnsupportedArchitectureError
from .states import SSM, StateTensor

# Tower roles. A decoder LM has one "text_decoder"; a multimodal LM adds a "vision_encoder" or "audio_encoder";
# an encoder-decoder model has an "encoder" and a "decoder" (its decoder cross-attends to the encoder).
TEXT_DECODER, TEXT_ENCODER, VISION_ENCODER, AUDIO_ENCODER = ("text_decoder", "text_encoder", "vision_encoder",
                                                              "audio_encoder")
ENCODER, DECODER = "encoder", "decoder"
TOWER_ROLES = (TEXT_DECODER, TEXT_ENCODER, VISION_ENCODER, AUDIO_ENCODER, ENCODER, DECODER)

# Token mixers of one layer (what it attends with and what it caches).
FULL, SLIDING, CHUNKED, LINEAR, CONV, HYBRID, HYBRID_SLIDING, NO_MIXER = (
    "full_attention", "sliding_attention", "chunked_attention", "linear_attention", "conv", "hybrid",
    "hybrid_sliding", "none")
# MLP of one layer.
DENSE, MOE = "dense", "moe"

# Output heads (a config.json's ``architectures`` class, by transformers' task mappings).
HEADS = ("lm", "masked_lm", "sequence_classification", "token_classification", "question_answering",
         "multiple_choice", "ctc", "audio_classification", "image_classification", "contrastive", "none")


UNKNOWN_HINT = ("add the model's class to config.json's \"architectures\" (e.g. [\"MyModelForCausalLM\"]), or run "
               "'hfmem simulate MODEL --trust-remote-code' on its own code; the calculator table still works")


@dataclass(frozen=True)
class MLA:
    """Multi-head latent attention (DeepSeek-V2/V3, Kimi): the KV latent and the per-head widths."""

    kv_lora_rank: int
    q_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def head_dims(self) -> int:
        """qk_nope + qk_rope + v: the decompressed width of one head's K and V."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim + self.v_head_dim

    @property
    def latent(self) -> int:
        """What one layer caches per token: kv_lora_rank + qk_rope_head_dim."""
        return self.kv_lora_rank + self.qk_rope_head_dim


@dataclass(frozen=True)
class MoE:
    """Routed experts of the MoE layers (and the shared experts' total width)."""

    experts: int
    top_k: int
    expert_intermediate: int
    shared_intermediate: int = 0


@dataclass(frozen=True)
class Layer:
    """One layer of a tower: its token mixer, its window (sliding/chunked), and its MLP."""

    mixer: str
    mlp: str = DENSE
    window: int | None = None


@dataclass(frozen=True)
class Tower:
    """One stack of layers with its widths (Hugging Face field names resolved once, aliases included)."""

    role: str
    model_type: str
    hidden: int
    num_layers: int
    heads: int
    kv_heads: int
    head_dim: int                  # per-head width of q and k (MLA: see ``mla``)
    intermediate: int              # dense MLP width
    vocab: int = 0                 # 0: a tower without token embeddings (vision, audio)
    activation: str = ""
    rotary: bool = True
    max_positions: int | None = None
    layers: tuple[Layer, ...] = ()
    mla: MLA | None = None
    moe: MoE | None = None
    causal: bool = True
    norm: str = ""                 # "rms" (rms_norm_eps), "layer" (layer_norm_eps / layer_norm_epsilon) or ""
    gpt2_fields: bool = False      # sizes spelled GPT-2's way (n_embd, n_head)
    # Why a scenario cannot lay this tower out (an unmodelled layer kind or an inconsistent pattern); the
    # calculator still counts it. Scenarios that need the layers raise with this text.
    unmodelled: str | None = None
    inconsistent: bool = False     # ``unmodelled`` is a contradiction in the config, not a layout hfmem lacks
    # What one attention layer caches per token for one sequence, K and V together (elements): 2 · kv_heads ·
    # head_dim; MLA: the latent (kv_lora_rank + qk_rope_head_dim); zamba2: its shared block's 2 · kv_heads ·
    # attention_head_dim. 0 for a tower without attention (Mamba).
    cached_elems_per_token: int = 0
    mtp_layers: int = 0            # multi-token-prediction layers the config declares (not built by transformers)
    ssm: SSM | None = None         # the Mamba / Mamba-2 mixer of its recurrent layers
    states: tuple[StateTensor, ...] = ()  # what one recurrent layer keeps per sequence (hfmem.model.states)

    # -- derived widths ----------------------------------------------------------------------------------
    @property
    def q_width(self) -> int:
        return self.heads * (self.mla.qk_head_dim if self.mla else self.head_dim)

    @property
    def kv_width(self) -> int:
        return self.heads * self.mla.v_head_dim if self.mla else self.kv_heads * self.head_dim

    @property
    def decompressed_elems_per_token(self) -> int | None:
        """MLA only: heads · (qk_nope + qk_rope + v), K and V expanded to every head (for reference)."""
        return self.heads * self.mla.head_dims if self.mla else None

    def count(self, mixer: str) -> int:
        return sum(1 for layer in self.layers if layer.mixer == mixer)

    @property
    def sliding_layers(self) -> int:
        return self.count(SLIDING)

    @property
    def sliding_window(self) -> int | None:
        windows = [layer.window for layer in self.layers if layer.mixer == SLIDING and layer.window]
        return min(windows) if windows else None

    @property
    def dense_layers(self) -> int:
        """Layers with a dense MLP in a MoE model (DeepSeek's first_k_dense_replace, Qwen-MoE's mlp_only_layers)."""
        return sum(1 for layer in self.layers if layer.mlp == DENSE) if self.moe else 0

    @property
    def moe_layers(self) -> int:
        return sum(1 for layer in self.layers if layer.mlp == MOE)


@dataclass(frozen=True)
class Head:
    """The output head: its kind and its output width (vocabulary, labels); ``tied`` shares the embedding."""

    kind: str
    outputs: int = 0
    tied: bool = False


@dataclass(frozen=True)
class ModelDescription:
    model_type: str
    architecture: str
    task: str                       # transformers' task of the architecture ("causal_lm", "masked_lm", "ctc"...)
    towers: tuple[Tower, ...]
    head: Head
    is_encoder_decoder: bool = False
    tie_word_embeddings: bool = False  # the config's flag (transformers' class default when it names none)
    # towers the config declares but hfmem cannot size yet (a vision_config without sizes, a timm backbone)
    other_towers: tuple[str, ...] = ()
    assumptions: tuple[str, ...] = field(default_factory=tuple)
    # Encoder-decoder models whose encoder output has one length whatever the input (Whisper: 1,500 positions)
    encoder_length: int | None = None
    # The dtype config.json declares for the weights (the language model's ``torch_dtype`` / ``dtype``, else the
    # top level's), as written ("bfloat16", "float16"); "" when it names none.
    declared_dtype: str = ""
    # The config's model type and its language model's (a multimodal config), outer first, each once.
    model_types: tuple[str, ...] = ()
    # Why the model's decoder (the text decoder of an LM, an encoder-decoder's decoder) has no tower: its config
    # lacks the sizes (``unsized``) or has a layout hfmem does not model (``unmodelled``). One line each.
    unsized: str | None = None
    unmodelled: str | None = None
    # Why hfmem cannot tell which towers the model has at all (no architecture, no auto_map and a model type
    # transformers does not know): every scenario refuses with this line rather than reading it as some family.
    unknown: str | None = None

    def tower(self, role: str) -> Tower | None:
        return next((t for t in self.towers if t.role == role), None)

    @property
    def text(self) -> Tower | None:
        """The language tower: the text decoder of a (multimodal) LM, else a text encoder, else the encoder
        stack of an encoder-decoder model (the one its generic size fields describe)."""
        return self.tower(TEXT_DECODER) or self.tower(TEXT_ENCODER) or self.tower(ENCODER)

    @property
    def decoder(self) -> Tower | None:
        return self.tower(TEXT_DECODER)

    @property
    def language(self) -> Tower | None:
        """The tower that reads and writes tokens: ``text``, else an encoder-decoder's decoder (Whisper, whose
        encoder reads audio)."""
        return self.text or self.tower(DECODER)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(t.role for t in self.towers) + self.other_towers

    def _what(self) -> str:
        roles = [r.replace("_", " ") for r in self.roles] or ["no tower hfmem can size"]
        return f"{self.model_type or 'this model'} ({', '.join(roles)}; head: {self.head.kind.replace('_', ' ')})"

    def _require(self, tower: Tower | None, missing: str, purpose: str) -> Tower:
        if self.unknown:
            raise UnsupportedArchitectureError(self.unknown, hint=UNKNOWN_HINT)
        if tower is None:
            raise UnsupportedArchitectureError(
                f"{self._what()} has no {missing}: {purpose} for it is not modelled yet",
                hint="the calculator table and 'hfmem simulate' still work for it")
        return tower

    def require_decoder(self, purpose: str) -> Tower:
        """The text decoder, or one line naming what the model has instead (never another family's answer)."""
        return self._require(self.decoder, "text decoder", purpose)

    def require_text(self, purpose: str) -> Tower:
        """The language tower (``text``), or one line naming what the model has instead."""
        return self._require(self.text, "text tower", purpose)
