"""What a model's head outputs, per token or per sequence, and which loss it takes: from the architecture and
the config, as transformers' task classes compute it (transformers 5.24, models/bert/modeling_bert.py and
modeling_layers.py's Generic* heads; the loss functions in loss/loss_utils.py).

* ``*ForCausalLM`` / ``*LMHeadModel``: vocabulary logits for every token; ``ForCausalLMLoss`` upcasts them
  to fp32 (``logits.float()``) and takes the cross entropy.
* ``*ForMaskedLM``: vocabulary logits for every token (``BertForMaskedLM``: ``prediction_scores =
  self.cls(sequence_output)`` over the whole sequence; ``CrossEntropyLoss`` on the logits' own dtype, the
  -100 labels only drop out of the mean).
* ``BertForPreTraining``: the masked-LM logits for every token plus 2 next-sentence logits per sequence
  (``seq_relationship_score`` on the pooled first token).
* ``*ForSequenceClassification``: ``num_labels`` per sequence (``len(id2label)``, else ``num_labels``, else
  transformers' default 2). BERT pools the first token (``BertPooler``) and applies the classifier to the
  pooled vector only: b × num_labels logits. Llama-style models (``GenericForSequenceClassification``) apply
  ``score`` to every position (b × s × num_labels) and pool the last non-pad token's row: b × num_labels.
  Loss: ``MSELoss`` for num_labels == 1 (regression), ``CrossEntropyLoss`` for integer labels,
  ``BCEWithLogitsLoss`` otherwise (problem_type).
* ``*ForTokenClassification``: num_labels per token, ``CrossEntropyLoss``.
* ``*ForQuestionAnswering``: 2 per token (``qa_outputs``: start and end logits), a cross entropy over the
  s positions for each of start and end.
* a bare ``*Model``: no head, no logits, no loss.

Pure: reads the config dict through ``hfmem.model.describe`` (the task of the architecture, the labels).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import describe

LM_KINDS = ("lm", "masked_lm", "pretraining")  # heads whose logits are vocabulary-wide (and may be tied)
DEFAULT_NUM_LABELS = 2  # transformers' PretrainedConfig default (id2label of two entries)


@dataclass(frozen=True)
class HeadOutputs:
    """The output head of a model. ``width``: logits per row (vocabulary, labels, 2 for QA); ``per_token``:
    a row per token (else per sequence); ``computed_per_token``: logits computed per token before any
    pooling (Llama-style classification scores every position); ``extra_per_sequence``: further logits per
    sequence (BertForPreTraining's next-sentence pair); ``weight_rows``: output rows of the head's last
    Linear (its weight is ``weight_rows`` × hidden)."""

    kind: str  # lm | masked_lm | pretraining | sequence_classification | token_classification | question_answering | none
    architecture: str
    width: int
    per_token: bool
    computed_per_token: int = 0
    extra_per_sequence: int = 0
    loss: str = "cross_entropy"  # cross_entropy | mse | bce | none
    loss_upcast_fp32: bool = False  # the loss casts the logits to fp32 first (ForCausalLMLoss)
    pooling: str = ""  # sequence classification: "first" (BertPooler) or "last_non_pad" (Generic*)
    source: str = ""

    @property
    def vocab_wide(self) -> bool:
        return self.kind in LM_KINDS

    @property
    def weight_rows(self) -> int:
        return self.width

    def output_logits(self, batch: int, seq: int) -> int:
        """Elements of the logits the model returns (and the loss reads) for a batch [batch, seq]."""
        rows = batch * seq if self.per_token else batch
        return rows * self.width + batch * self.extra_per_sequence

    def logits_elements(self, batch: int, seq: int) -> int:
        """Elements of every logits tensor the forward computes: the returned ones, or the per-position
        scores a last-token-pooling head computes before pooling (the larger)."""
        return max(self.output_logits(batch, seq), batch * seq * self.computed_per_token
                   + batch * self.extra_per_sequence)


def _num_labels(config: dict) -> int:
    labels = config.get("id2label")
    if isinstance(labels, dict) and labels:
        return len(labels)
    return int(config.get("num_labels") or DEFAULT_NUM_LABELS)


def head_outputs(config: dict) -> HeadOutputs | None:
    """The head of the model ``config`` describes, or None for a head this module does not model (multiple
    choice, CTC, vision/audio classification, contrastive...: the caller keeps its own width)."""
    d = describe(config)
    arch = d.architecture or ""
    task, kind = d.task, d.head.kind
    vocab = int(d.head.outputs or 0)
    if task == "pretraining":
        if d.model_type != "bert":  # ElectraForPreTraining etc. score something else: not modelled here
            return None
        return HeadOutputs("pretraining", arch, vocab, True, extra_per_sequence=2,
                           source="BertForPreTraining: prediction_scores [b, s, V] + seq_relationship_score [b, 2]")
    if kind == "lm":
        return HeadOutputs("lm", arch, vocab, True, loss_upcast_fp32=True,
                           source="ForCausalLMLoss: logits.float() then cross entropy, every token")
    if kind == "masked_lm":
        return HeadOutputs("masked_lm", arch, vocab, True,
                           source="BertForMaskedLM: prediction_scores for every token, CrossEntropyLoss")
    if kind == "sequence_classification":
        n = _num_labels(config)
        loss = "mse" if n == 1 else "cross_entropy"
        generic = d.model_type not in _encoder_types()
        return HeadOutputs("sequence_classification", arch, n, False, computed_per_token=n if generic else 0,
                           loss=loss, pooling="last_non_pad" if generic else "first",
                           source=("GenericForSequenceClassification: score on every position, last non-pad row"
                                   if generic else "BertForSequenceClassification: classifier on the pooled "
                                   "first token"))
    if kind == "token_classification":
        return HeadOutputs("token_classification", arch, _num_labels(config), True,
                           source="ForTokenClassification: classifier on every token, CrossEntropyLoss")
    if kind == "question_answering":
        return HeadOutputs("question_answering", arch, 2, True,
                           source="ForQuestionAnswering: qa_outputs Linear(h, 2): start/end logits per token")
    if kind == "none" and task in ("base", "text_encoding"):
        return HeadOutputs("none", arch, 0, True, loss="none", source="bare model: no head")
    return None


def _encoder_types() -> frozenset:
    """Encoder families whose classification heads pool the first token (BertPooler-style); the others in
    transformers use GenericForSequenceClassification's last-non-pad pooling."""
    from ..model.describe import ENCODER_TYPES

    return ENCODER_TYPES


__all__ = ["HeadOutputs", "head_outputs", "LM_KINDS"]
