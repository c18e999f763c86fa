"""The inputs a simulation feeds a model: built from the model's ``main_input_name``, its config and its head,
as its processor would hand them over (values never matter; shapes and dtypes do).

* ``input_ids`` [batch, tokens] for text; an encoder-decoder also gets ``decoder_input_ids`` / ``labels``
  [batch, target_tokens];
* ``pixel_values`` [batch, channels, size, size] for vision (``size``: the config's ``image_size``, else 224);
* ``input_features`` [batch, num_mel_bins, 2 · max_source_positions] for Whisper (its feature extractor pads
  every clip to a 30 s window: 3,000 frames of 10 ms, which the encoder's two convolutions halve to 1,500);
* ``input_values`` [batch, seconds · 16,000] for wav2vec2-style raw-audio models (16 kHz,
  ``Wav2Vec2FeatureExtractor``'s sampling rate);
* contrastive dual encoders (CLIP, SigLIP) get both text and pixels and ``return_loss=True``.

Labels follow the head, as a fine-tuning script passes them: the token ids for language modelling, one class
per sample for sequence/image/audio classification, one per token for token classification, start/end
positions for question answering. CTC's loss cannot run on fake tensors (``labels.masked_select`` and
``ctc_loss`` read the label lengths), so for a CTC head the forward runs without labels and the loss is taken
as the model takes it (fp32 log-softmax, transposed, then CTC) by ``ctc_loss``, which allocates what CUDA's
kernel allocates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .result import SimulationError

SAMPLING_RATE = 16_000          # Wav2Vec2FeatureExtractor / WhisperFeatureExtractor default sampling_rate
DEFAULT_IMAGE_SIZE = 224        # ViTImageProcessor / ConvNextImageProcessor / ResNet's default crop
DEFAULT_AUDIO_SECONDS = 10.0    # for raw-audio encoders; Whisper always sees 30 s windows
CTC_LABELS_PER_SECOND = 15      # characters per second of read English speech (LibriSpeech: ~2.7 words/s)
_HEAD_SUFFIXES = (
    ("ForCausalLM", "lm"), ("LMHeadModel", "lm"), ("ForMaskedLM", "masked_lm"),
    ("ForSequenceClassification", "sequence_classification"), ("ForTokenClassification", "token_classification"),
    ("ForQuestionAnswering", "question_answering"), ("ForImageClassification", "image_classification"),
    ("ForAudioClassification", "audio_classification"), ("ForCTC", "ctc"),
    ("ForConditionalGeneration", "generation"), ("MTModel", "generation"), ("ForPreTraining", "pretraining"),
    ("ForSemanticSegmentation", "semantic_segmentation"),
)


@dataclass(frozen=True)
class InputSizes:
    """What one batch holds, in the units a user states: tokens (the source for an encoder-decoder),
    target tokens (an encoder-decoder's decoder side), image side in pixels, audio seconds."""

    batch: int
    tokens: int
    target_tokens: int | None = None
    image_size: int | None = None
    audio_seconds: float | None = None


@dataclass
class ModelInputs:
    tensors: dict
    head: str
    # the loss when the model cannot take it itself on fake tensors (CTC): called with the model output
    loss: Callable | None = None
    assumptions: list[str] = field(default_factory=list)
    # what one sample is, for the result's inputs: main_input, and image_size / audio_seconds / tokens
    sample: dict = field(default_factory=dict)


def head_kind(model) -> str:
    """The head of a built model, from its class name (transformers' naming of task classes); a PEFT
    wrapper is read through to its base model."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    name = type(model).__name__
    for suffix, kind in _HEAD_SUFFIXES:
        if name.endswith(suffix):
            return kind
    if hasattr(model, "get_image_features") and hasattr(model, "get_text_features"):
        return "contrastive"
    return "none"


def _int_size(value, default: int) -> int:
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    return int(value) if isinstance(value, (int, float)) and value else default


def image_side(config) -> int:
    vc = getattr(config, "vision_config", None) or config
    return _int_size(getattr(vc, "image_size", None), DEFAULT_IMAGE_SIZE)


def _pixels(config, batch: int, size: int | None, dtype: torch.dtype) -> torch.Tensor:
    vc = getattr(config, "vision_config", None) or config
    side = size or image_side(config)
    return torch.randn(batch, int(getattr(vc, "num_channels", 3) or 3), side, side, dtype=dtype)


def _whisper_frames(config) -> int:
    return 2 * int(config.max_source_positions)


def audio_samples(seconds: float) -> int:
    return int(round(seconds * SAMPLING_RATE))


def build_inputs(model, sizes: InputSizes, *, labels: bool, dtype: torch.dtype) -> ModelInputs:
    """The batch for ``model`` (built, inside FakeTensorMode) at ``sizes``; ``labels``: a training batch."""
    config = model.config
    head = head_kind(model)
    main = getattr(model, "main_input_name", "input_ids")
    b = sizes.batch
    out = ModelInputs({}, head)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    vocab = int(getattr(text, "vocab_size", 0) or 1000)
    out.sample["main_input"] = main
    if main == "pixel_values":
        side = _add_pixels(model, out, sizes, dtype)
        out.assumptions.append(f"images {side}×{side} pixels, {b} per batch")
    elif main == "input_features":
        if not (hasattr(config, "max_source_positions") and hasattr(config, "num_mel_bins")):
            raise SimulationError(f"{type(model).__name__}: its input_features layout is not modelled "
                                  "(Whisper's [batch, mel bins, 3000 frames] is)")
        frames = _whisper_frames(config)
        out.tensors["input_features"] = torch.randn(b, int(config.num_mel_bins), frames, dtype=dtype)
        out.sample["audio_seconds"] = frames // 100  # 10 ms frames
        out.assumptions.append(f"audio in 30 s windows ({config.num_mel_bins} mel bins × {frames} frames, "
                               f"as Whisper's feature extractor pads every clip), {b} windows per batch")
    elif main == "input_values":
        seconds = sizes.audio_seconds or DEFAULT_AUDIO_SECONDS
        out.tensors["input_values"] = torch.randn(b, audio_samples(seconds), dtype=dtype)
        out.sample["audio_seconds"] = seconds
        out.assumptions.append(f"raw audio: {seconds:g} s at {SAMPLING_RATE:,} Hz per sample, {b} per batch")
    elif main == "input_ids":
        limit = getattr(text, "max_position_embeddings", None) if head == "contrastive" else None
        if limit and sizes.tokens > int(limit):
            raise SimulationError(f"{type(model).__name__}: {sizes.tokens} text tokens is more than its text "
                                  f"tower's {limit} positions (use --seq / --context {limit} or less)")
        out.tensors["input_ids"] = torch.randint(0, vocab, (b, sizes.tokens))
        out.sample["tokens"] = sizes.tokens
        if head == "contrastive":
            side = _add_pixels(model, out, sizes, dtype)
            out.assumptions.append(f"{b} image-text pairs: {sizes.tokens} text tokens, {side}×{side} pixels")
    else:
        raise SimulationError(f"{type(model).__name__}: main input {main!r} is not modelled "
                              "(input_ids, pixel_values, input_features and input_values are)")
    if getattr(config, "is_encoder_decoder", False):
        target = sizes.target_tokens or 1
        ids = torch.randint(0, vocab, (b, target))
        out.tensors["labels" if labels else "decoder_input_ids"] = ids
        if labels:
            out.sample["target_tokens"] = target
        if labels:
            out.assumptions.append(f"seq2seq: {target} target tokens per sample (labels; the decoder input is "
                                   "them shifted right)")
    elif labels:
        _add_labels(model, out, sizes, vocab)
    return out


def _add_pixels(model, out: ModelInputs, sizes: InputSizes, dtype: torch.dtype) -> int:
    """``pixel_values`` for a batch of square images; returns the side used."""
    side = sizes.image_size or image_side(model.config)
    out.tensors["pixel_values"] = _pixels(model.config, sizes.batch, side, dtype)
    out.sample["image_size"] = side
    _interpolate_if_needed(model, model.config, side, out)
    return side


def _interpolate_if_needed(model, config, side: int, out: ModelInputs) -> None:
    """A ViT-style model at another resolution than it was trained at: its position embeddings are interpolated
    (``interpolate_pos_encoding=True``, as its image processor's users pass it), else transformers refuses."""
    import inspect

    if side != image_side(config) and "interpolate_pos_encoding" in inspect.signature(model.forward).parameters:
        out.tensors["interpolate_pos_encoding"] = True
        out.assumptions.append(f"{side}×{side} differs from the model's {image_side(config)}×{image_side(config)}: "
                               "position embeddings interpolated (interpolate_pos_encoding=True)")


def _add_labels(model, out: ModelInputs, sizes: InputSizes, vocab: int) -> None:
    config, b, head = model.config, sizes.batch, out.head
    labels_n = int(getattr(config, "num_labels", 2) or 2)
    if head in ("lm", "masked_lm", "generation"):  # generation: a multimodal LM (LLaVA, Qwen2-VL) on text
        out.tensors["labels"] = out.tensors["input_ids"]
    elif head == "pretraining":
        import inspect

        params = inspect.signature(model.forward).parameters
        if "next_sentence_label" in params:  # BERT-style: masked LM + next-sentence prediction
            out.tensors["labels"] = out.tensors["input_ids"]
            out.tensors["next_sentence_label"] = torch.zeros(b, dtype=torch.long)
        else:  # ELECTRA's discriminator: one original/replaced label per token
            out.tensors["labels"] = torch.zeros(b, sizes.tokens, dtype=torch.long)
        out.assumptions.append(f"pre-training head of {type(model).__name__}: its own labels")
    elif head in ("sequence_classification", "image_classification", "audio_classification"):
        if labels_n == 1 or getattr(config, "problem_type", None) == "regression":
            out.tensors["labels"] = torch.randn(b, labels_n)
            out.assumptions.append("regression head: float targets")
        elif getattr(config, "problem_type", None) == "multi_label_classification":
            out.tensors["labels"] = torch.randn(b, labels_n)
            out.assumptions.append("multi-label head: float targets, BCE-with-logits")
        else:
            out.tensors["labels"] = torch.randint(0, labels_n, (b,))
            out.assumptions.append(f"{labels_n}-class head: one label per sample, cross-entropy")
    elif head == "semantic_segmentation":  # one class per pixel of the input image (SegFormer, UperNet, BEiT)
        side = out.sample.get("image_size") or image_side(config)
        out.tensors["labels"] = torch.randint(0, labels_n, (b, side, side))
        out.assumptions.append(f"segmentation: one of {labels_n} classes per pixel ({side}×{side} label map)")
    elif head == "token_classification":
        out.tensors["labels"] = torch.randint(0, labels_n, (b, sizes.tokens))
    elif head == "question_answering":
        out.tensors["start_positions"] = torch.zeros(b, dtype=torch.long)
        out.tensors["end_positions"] = torch.zeros(b, dtype=torch.long)
    elif head == "contrastive":
        out.tensors["return_loss"] = True
        out.assumptions.append("contrastive loss over the batch's image-text similarity matrix (in-batch negatives)")
    elif head == "ctc":
        seconds = sizes.audio_seconds or DEFAULT_AUDIO_SECONDS
        target = max(1, math.ceil(seconds * CTC_LABELS_PER_SECOND))
        out.loss = lambda output: ctc_loss(output.logits, target, int(getattr(config, "pad_token_id", 0) or 0))
        out.assumptions.append(f"CTC: {target} labels per sample ({CTC_LABELS_PER_SECOND} characters per second "
                               "of speech); the loss as the model takes it (fp32 log-softmax, then CTC)")
    else:
        raise SimulationError(f"{type(model).__name__} has no task head: training needs one (name the task class, "
                              "e.g. …ForSequenceClassification, in config.json's \"architectures\")")


class _CTC(torch.autograd.Function):
    """``F.ctc_loss`` on fake tensors with the memory CUDA's kernel uses (aten/src/ATen/native/cuda/LossCTC.cu):
    the forward allocates ``log_alpha`` [batch, frames, 2·targets+1] in the log-probs' dtype and saves it with
    the inputs; the backward allocates ``log_beta`` of the same shape and the gradient [frames, batch, classes].
    Values are never computed (fake tensors); shapes are the kernel's."""

    @staticmethod
    def forward(ctx, log_probs, targets: int):
        frames, batch, _ = log_probs.shape
        log_alpha = log_probs.new_empty(batch, frames, 2 * targets + 1)
        ctx.save_for_backward(log_probs, log_alpha)
        ctx.targets = targets
        return log_probs.new_empty(batch).sum()

    @staticmethod
    def backward(ctx, grad):
        log_probs, log_alpha = ctx.saved_tensors
        log_beta = torch.empty_like(log_alpha)
        grad_in = torch.empty_like(log_probs)
        del log_beta
        return grad_in, None


def ctc_loss(logits: torch.Tensor, targets: int, blank: int) -> torch.Tensor:
    """What Wav2Vec2ForCTC / HubertForCTC do with labels (modeling_wav2vec2.py): log_softmax in fp32,
    transposed to [frames, batch, classes], then ``ctc_loss`` with the padding id as blank."""
    log_probs = torch.nn.functional.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
    return _CTC.apply(log_probs, targets)
