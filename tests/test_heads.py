"""hfmem.scenarios.heads against transformers' own task classes (tiny configs, a real CPU forward), the
bert-large classification estimate's logits terms by hand, and the eager-attention allocator reserve by hand
from the caching allocator's rules."""

import pytest
import torch

from hfmem.reference.measurements import BERT_LARGE_CONFIG
from hfmem.scenarios import overheads as ovh
from hfmem.scenarios import train_activations as ta
from hfmem.scenarios.heads import head_outputs
from hfmem.units import MiB

transformers = pytest.importorskip("transformers")

B, S = 2, 7
BERT_TINY = dict(model_type="bert", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=64, vocab_size=99, max_position_embeddings=64, type_vocab_size=2)
LLAMA_TINY = dict(model_type="llama", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=2, intermediate_size=64, vocab_size=99, max_position_embeddings=64,
                  pad_token_id=0)


def _forward(arch: str, cfg: dict):
    """transformers' own class on a tiny config: the logits tensors its forward returns."""
    cls = getattr(transformers, arch)
    config_cls = transformers.BertConfig if cfg["model_type"] == "bert" else transformers.LlamaConfig
    config = config_cls(**{k: v for k, v in cfg.items() if k != "model_type"})
    torch.manual_seed(0)
    model = cls(config).eval()
    ids = torch.randint(1, cfg["vocab_size"], (B, S))
    with torch.no_grad():
        out = model(input_ids=ids)
    return out, config


@pytest.mark.parametrize("arch,fields", [
    ("BertForSequenceClassification", ("logits",)),
    ("BertForTokenClassification", ("logits",)),
    ("BertForQuestionAnswering", ("start_logits", "end_logits")),
    ("BertForMaskedLM", ("logits",)),
    ("BertForPreTraining", ("prediction_logits", "seq_relationship_logits")),
])
def test_bert_heads_match_transformers_output_shapes(arch, fields):
    out, config = _forward(arch, BERT_TINY)
    real = sum(getattr(out, f).numel() for f in fields)
    head = head_outputs(dict(BERT_TINY, architectures=[arch]))
    assert head.output_logits(B, S) == real


def test_labels_from_id2label_as_transformers_reads_them():
    cfg = dict(BERT_TINY, architectures=["BertForSequenceClassification"], id2label={"0": "a", "1": "b", "2": "c"})
    config = transformers.BertConfig(**{k: v for k, v in cfg.items() if k != "model_type"})
    assert head_outputs(cfg).width == config.num_labels == 3
    assert head_outputs(dict(cfg, id2label=None, num_labels=1)).loss == "mse"  # regression: MSELoss


def test_llama_sequence_classification_scores_every_position_returns_pooled_rows():
    out, config = _forward("LlamaForSequenceClassification", dict(LLAMA_TINY))
    head = head_outputs(dict(LLAMA_TINY, architectures=["LlamaForSequenceClassification"]))
    assert out.logits.shape == (B, config.num_labels)
    assert head.output_logits(B, S) == out.logits.numel()
    # GenericForSequenceClassification: self.score(hidden_states) over [b, s] before pooling
    assert head.logits_elements(B, S) == B * S * config.num_labels


def test_bare_model_has_no_head_and_lm_is_vocab_wide():
    assert head_outputs(dict(BERT_TINY, architectures=["BertModel"])).logits_elements(B, S) == 0
    lm = head_outputs(dict(LLAMA_TINY, architectures=["LlamaForCausalLM"]))
    assert lm.vocab_wide and lm.logits_elements(B, S) == B * S * 99


def test_bert_large_inventory_has_pooler_and_classifier_not_mlm_head():
    """hfmem's census for BERT_LARGE_CONFIG vs transformers' BertForSequenceClassification on the meta device."""
    import hfmem

    config = transformers.BertConfig(**{k: v for k, v in BERT_LARGE_CONFIG.items()
                                        if k not in ("architectures", "model_type")})
    with torch.device("meta"):
        model = transformers.BertForSequenceClassification(config)
    real = sum(p.numel() for p in model.parameters())
    import json
    import tempfile
    from pathlib import Path
    d = Path(tempfile.mkdtemp())
    (d / "config.json").write_text(json.dumps(BERT_LARGE_CONFIG))
    est = hfmem.train(str(d), precision="fp32", attn="eager", seq=512, batch=1).estimate
    assert est.trainable_params == real


def test_bert_large_classification_logits_by_hand():
    b, s, labels = 4, 512, 2
    a = ta.activation_bytes(BERT_LARGE_CONFIG, batch=b, seq=s, attn="eager", dtype_bytes=4)
    # fp32 logits of the pooled first token: b × num_labels × 4 B, kept (BERT's CrossEntropyLoss on them)
    assert a.by_part["logits_bytes"] == 4 * b * labels
    # the loss backward: the fp32 grad of the log-probs and of the logits, 2 × 4 B per logit
    assert a.loss_backward_transient_bytes == 8 * b * labels
    lm = ta.activation_bytes(dict(BERT_LARGE_CONFIG, architectures=["BertForMaskedLM"]), batch=b, seq=s,
                             attn="eager", dtype_bytes=4)
    assert lm.by_part["logits_bytes"] == 4 * b * s * 30522  # every token's vocabulary logits


def test_allocator_segments_by_hand():
    assert ovh.segment_bytes(100) == 2 * MiB          # small pool, 2 MiB segment
    assert ovh.segment_bytes(4 * MiB) == 20 * MiB     # 1-10 MiB: a 20 MiB segment
    assert ovh.segment_bytes(11 * MiB + 1) == 12 * MiB  # > 10 MiB: rounded up to 2 MiB
    assert ovh.block_bytes(513) == 1024


def test_eager_reserve_by_hand_bert_large_batch4():
    # scores of one layer: b·heads·s²·4 B = 4·16·512²·4 = 64 MiB (its own segment, a multiple of 2 MiB)
    s2 = 4 * 16 * 512 * 512 * 4
    assert s2 == 64 * MiB
    assert ovh.eager_attention_stranded_bytes(s2, 24, checkpointed=False) == 24 * 64 * MiB
    assert ovh.eager_attention_stranded_bytes(s2, 24, checkpointed=True) == 64 * MiB
    allocated, churn, s2_saved = 10_000 * MiB, 8_000 * MiB, 3_000 * MiB
    assert ovh.training_reserved_bytes(allocated, churn, 0.1, s2_request_bytes=s2, s2_saved_bytes=s2_saved,
                                       layers=24) == allocated + round(0.1 * 5_000 * MiB) + 24 * 64 * MiB
    assert ovh.training_reserved_bytes(allocated, churn, 0.1) == ovh.reserved_bytes(allocated, churn, 0.1)
