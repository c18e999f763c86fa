"""config.json → ``ModelDescription``: the one config reader every estimate stands on.

Which towers and which head a model has comes from transformers' own task mappings (shipped as data in
hfmem/data/transformers_facts.json): the ``architectures`` class's task, else the model type's tasks, else the
``auto_map`` of a custom-code repo. Nothing is inferred from field names alone: a CTC speech model that
happens to have a ``vocab_size`` is an audio encoder, not a text decoder.
"""

from __future__ import annotations

from functools import lru_cache
import json

from ..metadata import transformers_facts as facts
from ..metadata.config import defaults_assumption, text_config
from . import fields as F
from .description import (AUDIO_ENCODER, CHUNKED, CONV, DECODER, DENSE, ENCODER, FULL, HYBRID, HYBRID_SLIDING,
                          LINEAR, MLA, MOE, NO_MIXER, SLIDING, TEXT_DECODER, TEXT_ENCODER, VISION_ENCODER, Head,
                          Layer, ModelDescription, MoE, Tower)
from .layers import (NO_KV_TYPES, RECURRENT_MODELS, LayoutError, UNMODELLED_RECURRENT, attention_types,
                     hybrid_types)
from .states import ssm_of, state_tensors

# transformers' configuration classes: tie_word_embeddings when a config.json does not say (checked with
# AutoConfig.for_model in transformers 5.24), and the activation when it names none.
# Encoder-decoder configuration classes (T5Config, BartConfig, WhisperConfig ...): is_encoder_decoder=True and
# tie_word_embeddings=True by default, so a config.json may name neither.
SEQ2SEQ_TYPES = frozenset({
    "t5", "mt5", "umt5", "longt5", "switch_transformers", "bart", "mbart", "marian", "pegasus", "blenderbot",
    "m2m_100", "nllb-moe", "plbart", "led", "prophetnet", "whisper"})
TIED_BY_DEFAULT = frozenset({
    "gemma", "gemma2", "gemma3_text", "gpt2", "gpt_bigcode", "bert", "roberta", "xlm-roberta", "camembert",
    "electra", "distilbert", "modernbert", "starcoder2", "cohere", "cohere2", "smollm3", "opt", "falcon", "bloom",
    *SEQ2SEQ_TYPES})
DEFAULT_ACT = {"gpt2": "gelu_new", "phi": "gelu_new", "gptj": "gelu_new", "gpt_bigcode": "gelu_pytorch_tanh",
               "gemma": "gelu_pytorch_tanh", "gemma2": "gelu_pytorch_tanh", "gemma3_text": "gelu_pytorch_tanh",
               "starcoder2": "gelu_pytorch_tanh", "bert": "gelu", "gpt_neox": "gelu", "opt": "relu"}
# Learned or ALiBi positions instead of rotary embeddings.
NOT_ROTARY = frozenset({"gpt2", "gpt_bigcode", "bert", "roberta", "xlm-roberta", "opt", "bloom"})
# Encoder-only text models hfmem knows without transformers' tables (custom-code repos among them).
ENCODER_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "distilbert", "deberta", "deberta-v2", "electra",
                           "albert", "modernbert", "mpnet", "nomic_bert", "camembert", "xlm_roberta"})
# DeepseekV3Config's defaults for the MLA widths a config may omit.
MLA_DEFAULTS = {"qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128}
# Attention-free decoders: no attention heads to size.
ATTENTION_FREE = ("mamba", "falcon_mamba", "mamba2")
# Encoder-decoder wrappers whose encoder and decoder are two sub-configs (``encoder``, ``decoder``), each a
# model of its own type; the encoder's role follows the wrapper.
NESTED_ENCODER_DECODER = {"encoder-decoder": TEXT_ENCODER, "vision-encoder-decoder": VISION_ENCODER,
                          "speech-encoder-decoder": AUDIO_ENCODER}

_LM_TASKS = ("causal_lm", "image_text_to_text", "multimodal_lm")
_SEQ2SEQ_TASKS = ("seq2seq_lm", "speech_seq2seq")
_TEXT_ENCODER_TASKS = ("masked_lm", "text_encoding", "pretraining", "multiple_choice")
_VISION_TASKS = ("image_classification", "object_detection", "semantic_segmentation", "backbone")
_AUDIO_TASKS = ("ctc", "audio_classification")
_HEAD_OF_TASK = {"causal_lm": "lm", "image_text_to_text": "lm", "multimodal_lm": "lm", "seq2seq_lm": "lm",
                 "speech_seq2seq": "lm", "masked_lm": "masked_lm", "pretraining": "masked_lm",
                 "sequence_classification": "sequence_classification",
                 "token_classification": "token_classification", "question_answering": "question_answering",
                 "multiple_choice": "multiple_choice", "ctc": "ctc", "audio_classification": "audio_classification",
                 "image_classification": "image_classification", "zero_shot_image_classification": "contrastive",
                 "text_encoding": "none", "backbone": "none", "base": "none", "object_detection": "none",
                 "semantic_segmentation": "none"}
# A class transformers does not list (custom code): its name's suffix says the task.
_SUFFIX_TASKS = (("ForCausalLM", "causal_lm"), ("LMHeadModel", "causal_lm"), ("ForMaskedLM", "masked_lm"),
                 ("ForSequenceClassification", "sequence_classification"),
                 ("ForTokenClassification", "token_classification"), ("ForQuestionAnswering", "question_answering"),
                 ("ForMultipleChoice", "multiple_choice"), ("ForPreTraining", "pretraining"), ("ForCTC", "ctc"),
                 ("ForImageClassification", "image_classification"),
                 ("ForAudioClassification", "audio_classification"))
_AUTO_MAP_TASKS = {"AutoModelForCausalLM": "causal_lm", "AutoModelForMaskedLM": "masked_lm",
                   "AutoModelForSeq2SeqLM": "seq2seq_lm", "AutoModelForSequenceClassification":
                   "sequence_classification", "AutoModelForImageTextToText": "image_text_to_text"}


def _task(config: dict, model_type: str) -> str:
    """transformers' task of the model the config describes."""
    for arch in config.get("architectures") or ():
        task = facts.class_task(str(arch))
        if task:
            return task
        for suffix, task in _SUFFIX_TASKS:
            if str(arch).endswith(suffix):
                return task
        if str(arch).endswith("ForConditionalGeneration"):
            return "seq2seq_lm" if config.get("is_encoder_decoder") else "image_text_to_text"
    auto_map = config.get("auto_map")
    if isinstance(auto_map, dict):
        for key, task in _AUTO_MAP_TASKS.items():
            if key in auto_map:
                return task
    tasks = facts.model_tasks(model_type)
    if model_type in ENCODER_TYPES or ("masked_lm" in tasks and not config.get("is_decoder")):
        return "masked_lm"
    for task in _LM_TASKS + _SEQ2SEQ_TASKS + ("zero_shot_image_classification",) + _AUDIO_TASKS + _VISION_TASKS:
        if task in tasks:
            return task
    return "causal_lm" if config.get("is_encoder_decoder") is not True else "seq2seq_lm"


def _layers(cfg: dict, model_type: str, n_layers: int,
            moe: MoE | None) -> tuple[tuple[Layer, ...], str | None, bool]:
    """Per layer: the token mixer (transformers' layer types), its window, dense or MoE MLP; then the first
    reason the layers cannot be laid out (None when they can) and whether that reason is a contradiction in
    the config (True) rather than a layout hfmem does not model (False)."""
    if model_type in UNMODELLED_RECURRENT:
        return (), f"the recurrent state of {model_type} is not modelled yet", False
    try:
        hybrid = hybrid_types(cfg, model_type, n_layers)
        if hybrid is not None and model_type == "nemotron_h":
            n_layers = len(hybrid)  # transformers ignores num_hidden_layers when the pattern is given
        if hybrid is not None and len(hybrid) != n_layers:
            raise LayoutError(f"{model_type}: {len(hybrid)} layer types for {n_layers} layers")
        types = hybrid if hybrid is not None else attention_types(cfg, n_layers)
    except LayoutError as exc:
        return (), str(exc), True
    window, chunk = cfg.get("sliding_window"), cfg.get("attention_chunk_size")
    dense = set()
    if moe:
        first_dense = min(n_layers, int(cfg.get("first_k_dense_replace") or 0))
        dense = set(range(first_dense))
        if not first_dense:
            only = set(cfg.get("mlp_only_layers") or ())
            step = int(cfg.get("decoder_sparse_step") or 1)
            dense = {i for i in range(n_layers) if i in only or (step > 1 and (i + 1) % step)}
    out, problem, inconsistent = [], None, False
    for i, kind in enumerate(types):
        mlp = DENSE if not moe or i in dense else MOE
        if kind == SLIDING:
            if not window and problem is None:
                problem, inconsistent = f"layer {i} is sliding_attention but the config has no sliding_window", True
            out.append(Layer(SLIDING, mlp, int(window) if window else None))
        elif kind == CHUNKED:
            out.append(Layer(CHUNKED, mlp, int(chunk) if chunk else None))
            if not chunk:
                problem = problem or f"layer type {kind!r} (layer {i}) of {model_type} is not modelled yet"
        elif kind in (FULL, LINEAR, CONV, HYBRID, HYBRID_SLIDING):
            out.append(Layer(kind, mlp))
        elif kind in NO_KV_TYPES:
            out.append(Layer(NO_MIXER, MOE if kind == "moe" else DENSE if kind == "mlp" else mlp))
        else:
            out.append(Layer(str(kind), mlp))
            problem = problem or f"layer type {kind!r} (layer {i}) of {model_type} is not modelled yet"
    if problem is None and any(layer.mixer == SLIDING for layer in out) and cfg.get("use_bidirectional_attention"):
        problem = "bidirectional sliding attention (transformers halves the window) is not modelled"
    return tuple(out), problem, inconsistent


def _moe(cfg: dict, intermediate: int) -> MoE | None:
    experts = F.first_int(cfg, F.EXPERTS)
    top_k = F.first_int(cfg, F.TOP_K) if experts else 0
    if not (experts and top_k):
        return None
    expert_inter = int(cfg.get("moe_intermediate_size") or intermediate)
    if cfg.get("shared_expert_intermediate_size"):  # Qwen-MoE: the shared expert's own width
        shared = int(cfg["shared_expert_intermediate_size"])
    elif cfg.get("n_shared_experts"):  # DeepSeek: n shared experts of the routed width
        shared = int(cfg["n_shared_experts"]) * expert_inter
    else:
        shared = 0
    return MoE(experts, top_k, expert_inter, shared)


def _mla(cfg: dict) -> MLA | None:
    if not cfg.get("kv_lora_rank"):
        return None
    g = lambda k: int(cfg.get(k) or MLA_DEFAULTS[k])  # noqa: E731
    return MLA(int(cfg["kv_lora_rank"]), int(cfg.get("q_lora_rank") or 0), g("qk_nope_head_dim"),
               g("qk_rope_head_dim"), g("v_head_dim"))


def max_context(cfg: dict) -> int | None:
    """The longest context the config declares: ``max_position_embeddings`` (or ``n_positions``,
    ``seq_length``); YaRN/dynamic/linear rope scaling without ``original_max_position_embeddings``
    multiplies it by its factor, as vLLM derives max_model_len -- except Gemma 3, whose 131,072 positions are
    already the scaled length (vLLM's _get_and_verify_max_len skips the factor for "gemma3" model types)."""
    base = F.first(cfg, F.POSITIONS)
    if not base:
        return None
    base = int(base)
    if "gemma3" in str(cfg.get("model_type") or ""):
        return base
    rope = cfg.get("rope_scaling") or {}
    kind = rope.get("rope_type") or rope.get("type")
    if kind in ("yarn", "dynamic", "linear") and rope.get("factor") and "original_max_position_embeddings" not in rope:
        return int(base * float(rope["factor"]))
    return base


def _kv_heads(cfg: dict, heads: int) -> int:
    # Falcon: multi_query means one KV head unless new_decoder_architecture (then num_kv_heads); GPT-BigCode:
    # multi_query, one KV head (transformers' FalconAttention / GPTBigCodeAttention).
    if cfg.get("multi_query") and not cfg.get("new_decoder_architecture"):
        return 1
    return F.first_int(cfg, F.KV_HEADS, heads)


def text_tower(cfg: dict, role: str, *, vocab: int = 0, causal: bool = True) -> Tower | None:
    """A transformer stack from the usual size fields (a decoder or a text encoder); None without sizes."""
    model_type = str(cfg.get("model_type") or "")
    hidden = F.first_int(cfg, F.HIDDEN)
    heads = F.first_int(cfg, F.HEADS)
    n_layers = F.first_int(cfg, F.LAYERS)
    if not n_layers and model_type == "nemotron_h":  # NemotronHConfig: the layer count is the pattern's length
        try:
            n_layers = len(hybrid_types(cfg, model_type, 0) or ())
        except LayoutError:
            n_layers = 0
    vocab = vocab or F.first_int(cfg, F.VOCAB)
    if not (hidden and n_layers) or (not heads and model_type not in ATTENTION_FREE):
        return None
    intermediate = F.first_int(cfg, F.INTERMEDIATE) or 4 * hidden
    moe = _moe(cfg, intermediate)
    mla = _mla(cfg)
    layers, problem, inconsistent = _layers(cfg, model_type, n_layers, moe)
    head_dim = int(cfg.get("head_dim") or (hidden // heads if heads else 0))
    kv_heads = heads if mla else _kv_heads(cfg, heads)
    if mla:  # transformers 5.24 caches the compressed latent (DeepseekV3Attention: cache.update(kv_nope, k_rot))
        cached = mla.latent
    elif model_type == "zamba2":  # the shared block attends over concat(hidden, embeddings): 2 · hidden wide
        cached = 2 * kv_heads * (F.first_int(cfg, F.SHARED_ATTENTION_HEAD_DIM) or (2 * hidden // heads if heads else 0))
    else:
        cached = 2 * kv_heads * head_dim
    ssm = ssm_of(cfg, model_type, hidden)
    recurrent = model_type in RECURRENT_MODELS or any(layer.mixer in (LINEAR, CONV, HYBRID, HYBRID_SLIDING)
                                                      for layer in layers)
    states = (state_tensors(cfg, model_type, hidden=hidden, heads=heads, head_dim=head_dim, ssm=ssm)
              if recurrent else ())
    act = str(F.first(cfg, F.ACTIVATION, DEFAULT_ACT.get(model_type, "silu")))
    return Tower(role=role, model_type=model_type, hidden=hidden, num_layers=n_layers, heads=heads,
                 kv_heads=kv_heads, head_dim=head_dim, intermediate=intermediate,
                 vocab=vocab, activation=act, rotary=model_type not in NOT_ROTARY, max_positions=max_context(cfg),
                 layers=layers, mla=mla, moe=moe, causal=causal, unmodelled=problem, inconsistent=inconsistent,
                 norm="rms" if "rms_norm_eps" in cfg else "layer" if ("layer_norm_eps" in cfg
                                                                      or "layer_norm_epsilon" in cfg) else "",
                 gpt2_fields="n_embd" in cfg and "n_head" in cfg, cached_elems_per_token=cached,
                 mtp_layers=F.first_int(cfg, F.MTP_LAYERS), ssm=ssm, states=states)


def _why_unsized(cfg: dict) -> str:
    """Why ``text_tower`` has no tower for ``cfg``: the one line a scenario that needs its layers raises."""
    model_type = str(cfg.get("model_type") or "")
    if not F.first_int(cfg, F.LAYERS) or (not F.first_int(cfg, F.HEADS) and model_type not in ATTENTION_FREE):
        return f"config ({model_type or 'unknown'}) names no layer count or attention heads"
    if cfg.get("head_dim") is None:
        return f"config ({model_type}) has neither head_dim nor hidden_size"
    return f"config ({model_type}) names no hidden size"


def _encoder_tower(cfg: dict, role: str) -> Tower | None:
    """A vision or audio encoder stack (ViT-style: hidden, layers, heads, MLP width); None without sizes."""
    hidden, n_layers, heads = (F.first_int(cfg, F.HIDDEN), F.first_int(cfg, F.LAYERS), F.first_int(cfg, F.HEADS))
    if not (hidden and n_layers and heads):
        return None
    inter = F.first_int(cfg, F.INTERMEDIATE) or 4 * hidden
    return Tower(role=role, model_type=str(cfg.get("model_type") or ""), hidden=hidden, num_layers=n_layers,
                 heads=heads, kv_heads=F.first_int(cfg, F.KV_HEADS, heads),
                 head_dim=int(cfg.get("head_dim") or hidden // heads), intermediate=inter,
                 activation=str(F.first(cfg, F.ACTIVATION, "")), rotary=False,
                 layers=tuple(Layer(FULL) for _ in range(n_layers)), causal=False)


def _decoder_stack(cfg: dict) -> tuple[Tower | None, str | None]:
    """The decoder of an encoder-decoder config that sizes both stacks (T5, BART, Whisper: decoder_layers,
    decoder_attention_heads, d_model, d_kv), or None and the one line saying what it lacks."""
    model_type = str(cfg.get("model_type") or "")
    hidden = F.first_int(cfg, F.HIDDEN)
    layers = F.first_int(cfg, F.DECODER_LAYERS)
    heads = F.first_int(cfg, F.DECODER_HEADS)
    if not (layers and heads):
        return None, f"encoder-decoder config ({model_type or 'unknown'}) names no decoder layers or heads"
    if not (hidden or cfg.get("d_kv")):  # T5Attention's heads are d_kv wide whatever d_model
        return None, f"encoder-decoder config ({model_type}) has neither d_kv nor d_model"
    d_head = int(cfg.get("d_kv") or hidden // heads)
    kv_heads = F.first_int(cfg, F.DECODER_KV_HEADS, heads)
    return Tower(role=DECODER, model_type=model_type, hidden=hidden, num_layers=layers, heads=heads,
                 kv_heads=kv_heads, head_dim=d_head,
                 intermediate=F.first_int(cfg, F.DECODER_INTERMEDIATE) or 4 * hidden, vocab=F.first_int(cfg, F.VOCAB),
                 activation=str(F.first(cfg, F.ACTIVATION, "")), rotary=False, max_positions=max_context(cfg),
                 layers=tuple(Layer(FULL) for _ in range(layers)), cached_elems_per_token=2 * kv_heads * d_head), None


def _seq2seq_towers(cfg: dict) -> tuple[tuple[Tower, ...], str | None]:
    """Encoder and decoder of an encoder-decoder model (T5, BART, Whisper: one config with both sizes), and
    why there is no decoder when there is none."""
    out = []
    enc = text_tower(cfg, ENCODER, vocab=F.first_int(cfg, F.VOCAB), causal=False)  # what the generic fields size
    if enc is not None:
        out.append(enc)
    dec, why = _decoder_stack(cfg)
    if dec is not None:
        out.append(dec)
    return tuple(out), why


def _nested_towers(config: dict, model_type: str) -> tuple[tuple[Tower, ...], list[str], str | None]:
    """Encoder and decoder of an EncoderDecoderModel-style config (``encoder`` and ``decoder`` sub-configs,
    each a model of its own type): the towers, the roles it declares but hfmem cannot size, and why there is
    no decoder tower when there is none. The decoder is read as the decoder LM it is (GPT-2, BERT with
    is_decoder), or by the decoder names of a decoder-only stack (TrOCR: d_model, decoder_layers)."""
    towers, other = [], []
    enc_role = NESTED_ENCODER_DECODER[model_type]
    enc = config.get("encoder")
    if isinstance(enc, dict) and enc:
        tower = (text_tower(enc, enc_role, causal=False) if enc_role == TEXT_ENCODER
                 else _encoder_tower(enc, enc_role))
        towers += [tower] if tower else []
        other += [] if tower else [enc_role]
    dec = text_config({k: v for k, v in config["decoder"].items() if k != "is_encoder_decoder"})
    tower = text_tower(dec, DECODER)
    why = None
    if tower is None:
        tower, _ = _decoder_stack(dec)
    if tower is None:
        why = _why_unsized(dec)
        other.append(DECODER)
    else:
        towers.append(tower)
    return tuple(towers), other, why


def _tied(cfg: dict, top: dict, model_type: str) -> bool:
    tied = cfg.get("tie_word_embeddings")
    if tied is None:
        tied = top.get("tie_word_embeddings")
    if tied is None:
        tied = facts.text_defaults(model_type).get("tie_word_embeddings")
    if tied is None:
        tied = model_type in TIED_BY_DEFAULT
    return bool(tied)


def _build(config: dict) -> ModelDescription:
    model_type = str(config.get("model_type") or "")
    archs = config.get("architectures") or []
    arch = str(archs[0]) if archs else ""
    task = _task(config, model_type)
    head_kind = _HEAD_OF_TASK.get(task, "none")
    towers: list[Tower] = []
    other: list[str] = []
    assumptions = []
    note = defaults_assumption(config)
    if note:
        assumptions.append(note)
    text = text_config(config)
    if text is not config:
        text = dict(text)
        text.setdefault("vocab_size", config.get("vocab_size"))
        text.setdefault("tie_word_embeddings", config.get("tie_word_embeddings"))
    nested_seq2seq = isinstance(text, dict) and text.get("is_encoder_decoder")
    is_seq2seq = bool(config.get("is_encoder_decoder", model_type in SEQ2SEQ_TYPES) or nested_seq2seq
                      or task in _SEQ2SEQ_TASKS)
    unsized = unmodelled = encoder_length = unknown = None
    if is_seq2seq and model_type in NESTED_ENCODER_DECODER and isinstance(config.get("decoder"), dict):
        nested, more, unsized = _nested_towers(config, model_type)
        towers += nested
        other += more
    elif is_seq2seq:
        nested, unsized = _seq2seq_towers(text)
        towers += nested
        text_type = str(text.get("model_type") or "")
        if isinstance(text.get("decoder"), dict):  # a decoder sub-config of another kind (MusicGen's)
            unmodelled = f"encoder-decoder {text_type} (separate decoder config) is not modelled yet"
        if text_type in F.FIXED_ENCODER_LENGTH:
            encoder_length = F.first_int(text, F.FIXED_ENCODER_LENGTH[text_type]) or None
    elif task == "zero_shot_image_classification" or task in _AUDIO_TASKS or task in _VISION_TASKS:
        # contrastive (CLIP, SigLIP): a text encoder beside the vision encoder; audio/vision models: one encoder
        if task == "zero_shot_image_classification" and isinstance(config.get("text_config"), dict):
            tower = text_tower(text, TEXT_ENCODER, causal=False)
            towers += [tower] if tower else []
            other += [] if tower else [TEXT_ENCODER]
        elif task in _AUDIO_TASKS:
            tower = _encoder_tower(config, AUDIO_ENCODER)
            towers += [tower] if tower else []
            other += [] if tower else [AUDIO_ENCODER]
        elif not isinstance(config.get("vision_config"), dict):
            tower = _encoder_tower(config, VISION_ENCODER)
            towers += [tower] if tower else []
            other += [] if tower else [VISION_ENCODER]
    else:
        encoder = task in _TEXT_ENCODER_TASKS or (task in ("sequence_classification", "token_classification",
                                                           "question_answering")
                                                  and (model_type in ENCODER_TYPES
                                                       or "masked_lm" in facts.model_tasks(model_type)))
        if not archs and not facts.model_tasks(model_type) and not isinstance(config.get("auto_map"), dict):
            # nothing says what this model is: no tower is read into it (never another family's layout)
            unknown = (f"config.json names no architecture and transformers has no model type "
                       f"{model_type or '(none)'!r}: hfmem cannot tell which towers and head the model has")
        else:
            tower = text_tower(text, TEXT_ENCODER if encoder else TEXT_DECODER, causal=not encoder)
            if tower is not None:
                towers.append(tower)
            elif str(text.get("model_type") or "") in UNMODELLED_RECURRENT:
                unmodelled = f"the recurrent state of {text.get('model_type')} is not modelled yet"
            else:
                unsized = _why_unsized(text)
    for key, role in (("vision_config", VISION_ENCODER), ("audio_config", AUDIO_ENCODER)):
        sub = config.get(key)
        if isinstance(sub, dict) and sub:
            tower = _encoder_tower(sub, role)
            if tower is not None:
                towers.append(tower)
            else:
                other.append(role)
    # the tower under the LM head: a decoder before a text encoder (an EncoderDecoderModel has both)
    lm_tower = next((t for role in (TEXT_DECODER, DECODER, TEXT_ENCODER) for t in towers if t.role == role), None)
    tied = _tied(text if isinstance(text, dict) else config, config, (lm_tower.model_type if lm_tower else model_type))
    if head_kind in ("lm", "masked_lm"):
        outputs = lm_tower.vocab if lm_tower else F.first_int(config, F.VOCAB)
    elif head_kind in ("sequence_classification", "token_classification", "audio_classification",
                       "image_classification"):
        labels = config.get("id2label")
        outputs = len(labels) if isinstance(labels, dict) and labels else int(config.get("num_labels") or 2)
    elif head_kind == "ctc":
        outputs = F.first_int(config, F.VOCAB)
    else:
        outputs = 0
    if unknown:
        task, head_kind, outputs = "unknown", "none", 0
    declared = str(F.first(text, F.DTYPE) or F.first(config, F.DTYPE) or "").removeprefix("torch.")
    inner_type = str(text.get("model_type") or "") if isinstance(text, dict) else ""
    model_types = tuple(dict.fromkeys(t for t in (model_type, inner_type) if t))
    return ModelDescription(model_type=model_type, architecture=arch, task=task, towers=tuple(towers),
                            head=Head(head_kind, outputs, tied and head_kind in ("lm", "masked_lm")),
                            is_encoder_decoder=is_seq2seq, tie_word_embeddings=tied, other_towers=tuple(other),
                            assumptions=tuple(assumptions), encoder_length=encoder_length, unsized=unsized,
                            unmodelled=unmodelled, unknown=unknown,
                            declared_dtype=declared, model_types=model_types)


@lru_cache(maxsize=256)
def _cached(key: str) -> ModelDescription:
    return _build(json.loads(key))


def describe(config: dict | ModelDescription) -> ModelDescription:
    """The description of the model ``config`` (a config.json dict) describes; a description passes through."""
    if isinstance(config, ModelDescription):
        return config
    try:
        key = json.dumps(config, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return _build(config)
    return _cached(key)
