"""hfmem.model.describe: towers and heads from transformers' task tables, and one line instead of a guess.

Expected values are the models' published config.json sizes (openai/clip-vit-large-patch14,
facebook/wav2vec2-base-960h, tiiuae/falcon-40b) and transformers' own attention rules.
"""

from __future__ import annotations

import pytest

from hfmem.errors import UnsupportedArchitectureError
from hfmem.model import describe
from hfmem.scenarios import infer_activations as IA
from hfmem.scenarios import train_activations as TA

# openai/clip-vit-large-patch14's config.json (the sizes; token ids and init fields left out)
CLIP_L14 = {"model_type": "clip", "architectures": ["CLIPModel"], "projection_dim": 768,
            "text_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                            "num_hidden_layers": 12, "max_position_embeddings": 77, "vocab_size": 49408},
            "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                              "num_hidden_layers": 24, "image_size": 224, "patch_size": 14}}
# facebook/wav2vec2-base-960h: a CTC head over a 32-symbol vocabulary, no text decoder
WAV2VEC2 = {"model_type": "wav2vec2", "architectures": ["Wav2Vec2ForCTC"], "hidden_size": 768,
            "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "vocab_size": 32}
# tiiuae/falcon-40b: multi_query with new_decoder_architecture -> num_kv_heads (FalconAttention)
FALCON_40B = {"model_type": "falcon", "architectures": ["FalconForCausalLM"], "hidden_size": 8192,
              "num_hidden_layers": 60, "num_attention_heads": 128, "num_kv_heads": 8, "multi_query": True,
              "new_decoder_architecture": True, "vocab_size": 65024}


def test_clip_is_a_text_encoder_beside_a_vision_encoder():
    d = describe(CLIP_L14)
    assert d.roles == ("text_encoder", "vision_encoder") and d.head.kind == "contrastive"
    text, vision = d.towers
    assert (text.num_layers, text.hidden, text.heads, text.causal) == (12, 768, 12, False)
    assert (vision.num_layers, vision.hidden, vision.heads, vision.intermediate) == (24, 1024, 16, 4096)
    assert d.decoder is None


def test_wav2vec2_is_an_audio_encoder_with_a_ctc_head():
    d = describe(WAV2VEC2)
    assert d.roles == ("audio_encoder",) and (d.head.kind, d.head.outputs) == ("ctc", 32)
    assert d.text is None


@pytest.mark.parametrize("config, has", [(CLIP_L14, "text encoder, vision encoder"), (WAV2VEC2, "audio encoder")])
def test_no_serving_or_training_estimate_without_a_text_decoder(config, has):
    for run in (lambda: IA.infer_shape(config), lambda: TA.train_shape(config)):
        with pytest.raises(UnsupportedArchitectureError) as err:
            run()
        assert err.value.exit_code == 6 and has in str(err.value) and "\n" not in str(err.value)


def test_bert_is_an_encoder_for_serving():
    bert = {"model_type": "bert", "architectures": ["BertForMaskedLM"], "hidden_size": 768,
            "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "vocab_size": 30522}
    d = describe(bert)
    assert d.roles == ("text_encoder",) and d.head.kind == "masked_lm"
    with pytest.raises(IA.InferActivationError, match="encoder-only"):
        IA.infer_shape(bert)
    assert TA.train_shape(bert).layers == 12  # training an encoder is modelled


def test_falcon_40b_kv_heads_follow_transformers():
    d = describe(FALCON_40B)
    assert d.decoder.kv_heads == 8
    assert TA.train_shape(FALCON_40B).kv_heads == IA.infer_shape(FALCON_40B).kv_heads == 8


# -- the KV cache and the recurrent states are views of the description ----------------------------------------

from hfmem.scenarios.kv_cache import (StateTensor, kv_bytes_per_token, kv_cache_bytes, kv_layout,  # noqa: E402
                                      state_bytes_per_sequence)

# openai/whisper-small's config.json (the sizes; token ids, generation and init fields left out)
WHISPER_SMALL = {"model_type": "whisper", "architectures": ["WhisperForConditionalGeneration"],
                 "is_encoder_decoder": True, "d_model": 768, "encoder_layers": 12, "decoder_layers": 12,
                 "encoder_attention_heads": 12, "decoder_attention_heads": 12, "encoder_ffn_dim": 3072,
                 "decoder_ffn_dim": 3072, "num_hidden_layers": 12, "max_source_positions": 1500,
                 "max_target_positions": 448, "num_mel_bins": 80, "vocab_size": 51865}
# nlpconnect/vit-gpt2-image-captioning: a VisionEncoderDecoderModel of ViT-base and GPT-2 (their sizes)
VIT_GPT2 = {"model_type": "vision-encoder-decoder", "architectures": ["VisionEncoderDecoderModel"],
            "is_encoder_decoder": True,
            "encoder": {"model_type": "vit", "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                        "intermediate_size": 3072, "image_size": 224, "patch_size": 16},
            "decoder": {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024,
                        "vocab_size": 50257, "is_decoder": True, "add_cross_attention": True}}


def test_whisper_small_decoder_kv_and_fixed_encoder_length():
    d = describe(WHISPER_SMALL)
    dec = d.tower("decoder")
    assert (dec.num_layers, dec.heads, dec.head_dim) == (12, 12, 768 // 12)
    assert dec.cached_elems_per_token == 2 * 12 * 64 and d.encoder_length == 1500
    layout = kv_layout(WHISPER_SMALL)
    assert layout.count("full") == 12 and layout.count("cross") == 12 and layout.encoder_tokens == 1500
    # self-attention, bf16: 12 layers × 2 (K, V) × 12 heads × 64 × 2 B = 36,864 B per decoder token
    assert kv_bytes_per_token(layout) == 12 * 2 * 12 * 64 * 2 == 36_864
    # cross-attention: every decoder layer holds K/V of all 1,500 encoder positions, 55,296,000 B per sequence
    assert kv_cache_bytes(layout, batch=1, tokens=0) == 12 * 2 * 12 * 64 * 1500 * 2 == 55_296_000


def test_nested_vision_encoder_decoder_reads_the_decoder_sub_config():
    d = describe(VIT_GPT2)
    assert d.is_encoder_decoder and d.roles == ("vision_encoder", "decoder")
    enc, dec = d.towers
    assert (enc.model_type, enc.num_layers, enc.hidden) == ("vit", 12, 768)
    assert (dec.model_type, dec.num_layers, dec.heads, dec.head_dim, dec.vocab) == ("gpt2", 12, 12, 64, 50257)
    assert d.head.outputs == 50257  # GPT-2's LM head
    layout = kv_layout(VIT_GPT2)
    assert layout.count("full") == 12 and layout.count("cross") == 12 and layout.encoder_tokens is None
    # ViT-base/16 at 224 px: (224 / 16)² + 1 = 197 encoder positions; 10 decoder tokens; bf16
    assert kv_cache_bytes(layout, batch=1, tokens=10, encoder_tokens=197) == 12 * 2 * 12 * 64 * 2 * (10 + 197)
    with pytest.raises(UnsupportedArchitectureError) as err:  # no text decoder LM to train: one line
        TA.train_shape(VIT_GPT2)
    assert err.value.exit_code == 6 and "\n" not in str(err.value)


def test_mamba2_states_from_transformers_config_class():
    transformers = pytest.importorskip("transformers")
    cfg = {**transformers.Mamba2Config().to_dict(), "architectures": ["Mamba2ForCausalLM"]}
    t = describe(cfg).decoder
    assert (t.ssm.heads, t.ssm.head_dim, t.ssm.state_size, t.ssm.groups, t.ssm.chunk_size) == (128, 64, 128, 8, 256)
    # transformers' Mamba2Mixer: intermediate_size = int(expand · hidden_size) = 2 · 4096 = 8192;
    # conv_dim = intermediate_size + 2 · n_groups · ssm_state_size = 8192 + 2 · 8 · 128 = 10,240, its conv
    # window [conv_dim, conv_kernel]; the recurrent state [num_heads, head_dim, state_size], float32
    assert t.ssm.inner == 8192
    assert t.states == (StateTensor("conv", (10_240, 4)), StateTensor("recurrent", (128, 64, 128), "float32"))
    layout = kv_layout(cfg)
    assert layout.count("state") == 64 and kv_bytes_per_token(layout) == 0
    # 64 layers × (conv 10,240 · 4 · 2 B in bf16 + state 128 · 64 · 128 · 4 B)
    assert state_bytes_per_sequence(layout) == 64 * (10_240 * 4 * 2 + 128 * 64 * 128 * 4) == 273_678_336


def test_jamba_states_and_attention_layers_from_transformers_config_class():
    transformers = pytest.importorskip("transformers")
    cfg = {**transformers.JambaConfig().to_dict(), "architectures": ["JambaForCausalLM"]}
    layout = kv_layout(cfg)
    # attn_layer_period 8, attn_layer_offset 4 over 32 layers: attention at 4, 12, 20, 28
    assert [i for i, layer in enumerate(layout.layers) if layer.kind == "full"] == [4, 12, 20, 28]
    # JambaMambaMixer: intermediate_size = mamba_expand · hidden = 2 · 4096; conv [8192, mamba_d_conv 4],
    # ssm [8192, mamba_d_state 16] float32
    state = next(layer for layer in layout.layers if layer.kind == "state").states
    assert [(s.name, s.shape, s.bytes_per_elem) for s in state] == [("conv", (8192, 4), None),
                                                                    ("recurrent", (8192, 16), 4)]
    # 4 attention layers × 2 × 8 KV heads × 128 × 2 B
    assert kv_bytes_per_token(layout) == 4 * 2 * 8 * 128 * 2 == 16_384


def test_falcon_40b_caches_its_kv_heads():
    # FalconAttention: num_kv_heads = config.num_kv_heads when new_decoder_architecture (multi_query or not):
    # 60 layers × 2 × 8 × 64 × 2 B
    assert kv_bytes_per_token(kv_layout(FALCON_40B)) == 60 * 2 * 8 * 64 * 2 == 122_880


@pytest.mark.parametrize("config, has", [(CLIP_L14, "text encoder, vision encoder"), (WAV2VEC2, "audio encoder"),
                                         ({"model_type": "bert", "architectures": ["BertForMaskedLM"],
                                           "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                                           "vocab_size": 30522}, "text encoder")])
def test_no_kv_cache_without_a_text_decoder(config, has):
    with pytest.raises(UnsupportedArchitectureError) as err:
        kv_layout(config)
    assert err.value.exit_code == 6 and has in str(err.value) and "\n" not in str(err.value)


def test_a_config_that_says_nothing_about_its_model_is_refused_not_read_as_a_decoder():
    # no architectures, no auto_map, a model type transformers does not have: which towers it has is unknown,
    # so every scenario refuses (exit 6) instead of reading it as some family's decoder
    from hfmem.errors import UnsupportedArchitectureError
    from hfmem.scenarios.kv_cache import kv_layout
    from hfmem.scenarios.train_activations import activation_bytes

    config = {"model_type": "mystery-transformer", "hidden_size": 1024, "num_attention_heads": 16,
              "num_hidden_layers": 4, "vocab_size": 32000, "rms_norm_eps": 1e-6}
    desc = describe(config)
    assert desc.towers == () and desc.head.kind == "none" and desc.unknown
    for estimate in (lambda: kv_layout(config), lambda: activation_bytes(config, batch=1, seq=128),
                     lambda: desc.require_decoder("serving memory")):
        with pytest.raises(UnsupportedArchitectureError) as err:
            estimate()
        assert err.value.exit_code == 6 and "names no architecture" in str(err.value)
        assert len(str(err.value).splitlines()) == 1
    # the same sizes with the class named are a causal LM (transformers' naming: ...ForCausalLM)
    named = describe({**config, "architectures": ["MysteryForCausalLM"]})
    assert named.decoder is not None and named.decoder.num_layers == 4 and named.head.kind == "lm"


def test_gemma3_context_is_the_published_128k_not_scaled_again():
    # google/gemma-3-4b-it's text_config: max_position_embeddings 131072 with rope_scaling linear ×8; Google
    # publishes a 128K context, and vLLM does not apply the factor again for gemma3 model types
    from hfmem.model.describe import max_context

    text = {"model_type": "gemma3_text", "max_position_embeddings": 131072,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"}}
    assert max_context(text) == 128 * 1024
    # a Llama-2 fine-tune with linear ×4 and no original length: vLLM's max_model_len is 4096 × 4
    assert max_context({"model_type": "llama", "max_position_embeddings": 4096,
                        "rope_scaling": {"factor": 4.0, "type": "linear"}}) == 16384


def test_encoder_decoder_tying_follows_the_configuration_class_default():
    # t5-small's config.json does not name tie_word_embeddings; T5Config's default is True (and the checkpoint
    # has no separate lm_head.weight); flan-t5 sets it to false explicitly
    from transformers import AutoConfig

    assert AutoConfig.for_model("t5").tie_word_embeddings is True
    small = {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "d_model": 512, "d_kv": 64,
             "d_ff": 2048, "num_layers": 6, "num_heads": 8, "vocab_size": 32128, "is_encoder_decoder": True}
    assert describe(small).tie_word_embeddings is True
    assert describe({**small, "tie_word_embeddings": False}).tie_word_embeddings is False
