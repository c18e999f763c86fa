"""Vision, audio, encoder-decoder and multimodal models counted exactly, and split tower by tower
(hfmem/inventory/towers.py), on the reference configs in tests/data/hub-configs (SOURCES.md says where each
comes from). Expected counts are published figures or hand counts from the configs' widths, written below."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from test_hub_fetch import safetensors_file
from conftest import json_out, run_hfmem
from hfmem import api
from hfmem.cli import app, route_argv
from hfmem.inventory.towers import (EMBEDDINGS, HEAD, OTHER, PROJECTOR, ROOT, tower_shares, towers_line)
from hfmem.model.description import DECODER, ENCODER, TEXT_ENCODER, VISION_ENCODER

CONFIGS = Path(__file__).resolve().parent / "data" / "hub-configs"
runner = CliRunner()


def clip_vit_l14() -> dict[str, int]:
    """openai/clip-vit-large-patch14 by hand from its config's widths."""
    w, mlp, layers, patch, image = 1024, 4096, 24, 14, 224
    positions = (image // patch) ** 2 + 1  # 256 patches + the class token
    # attention q, k, v, o with biases; fc1 and fc2 with biases; two LayerNorms (weight and bias)
    vit_layer = 4 * (w * w + w) + 2 * w * mlp + mlp + w + 2 * 2 * w
    vision = (3 * patch * patch * w  # patch embedding, a convolution without bias
              + w + positions * w  # class embedding, position embedding
              + 2 * w + layers * vit_layer + 2 * w)  # pre_layrnorm, the layers, post_layernorm
    t, t_mlp, t_layers, vocab, t_positions = 768, 3072, 12, 49408, 77
    text_layer = 4 * (t * t + t) + 2 * t * t_mlp + t_mlp + t + 2 * 2 * t
    text = vocab * t + t_positions * t + t_layers * text_layer + 2 * t  # + final_layer_norm
    projections = w * 768 + t * 768 + 1  # visual_projection, text_projection (no biases), logit_scale
    return {"vision": vision, "text": text, "projections": projections}


def flan_t5_xl() -> int:
    """google/flan-t5-xl as its checkpoint holds it: the shared embedding and a separate lm_head."""
    d, ff, vocab, layers, heads, buckets = 2048, 5120, 32128, 24, 32, 32
    attention = 4 * d * d  # q, k, v, o (32 heads · d_kv 64 = 2048), no biases
    encoder_block = attention + 2 * d * ff + ff * d + 2 * d  # wi_0, wi_1, wo (gated-gelu); two layer norms
    decoder_block = encoder_block + attention + d  # + cross-attention and its layer norm
    relative_bias = buckets * heads  # in block 0 of the encoder and of the decoder
    return (vocab * d  # shared
            + layers * encoder_block + relative_bias + d  # encoder, its final norm
            + layers * decoder_block + relative_bias + d  # decoder, its final norm
            + vocab * d)  # lm_head


def t5_small() -> int:
    """google-t5/t5-small by hand: ReLU feed-forward (wi, wo), 8 heads · d_kv 64, the LM head tied."""
    d, ff, vocab, layers, heads, buckets = 512, 2048, 32128, 6, 8, 32
    attention = 4 * d * (heads * 64)
    block = attention + 2 * d * ff + 2 * d
    return vocab * d + 2 * (layers * block + heads * buckets + d) + layers * (attention + d)


# repo -> (parameters, where the figure comes from)
PUBLISHED = {
    "microsoft/resnet-50": 25_557_032,  # torchvision ResNet50_Weights.IMAGENET1K_V1.meta["num_params"]
    "google/vit-base-patch16-224": 86_567_656,  # torchvision ViT_B_16_Weights.IMAGENET1K_V1.meta["num_params"]
    "openai/clip-vit-large-patch14": sum(clip_vit_l14().values()),  # 427,616,513
    "openai/whisper-large-v3": 1_543_490_560,  # model card: 1550 M
    "facebook/bart-large": 406_291_456,  # fairseq / model card: 406 M
    "google/flan-t5-xl": flan_t5_xl(),  # 2,849,757,184
    "facebook/wav2vec2-base-960h": 94_396_320,  # wav2vec 2.0 paper, BASE: 95 M
    "google-t5/t5-small": t5_small(),  # model card: 60 million
}


def test_hand_counts_are_the_published_figures():
    assert clip_vit_l14() == {"vision": 303_179_776, "text": 123_060_480, "projections": 1_376_257}
    assert flan_t5_xl() == 2_849_757_184
    assert t5_small() == 60_506_624


def _cli(*args: str) -> dict:
    result = runner.invoke(app, route_argv(list(args)))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["models"][0]


@pytest.mark.parametrize("repo", sorted(PUBLISHED))
def test_api_and_cli_count_the_published_parameters(repo):
    folder = str(CONFIGS / repo)
    report = api.analyze(folder, offline=True, use_cache=False)
    m = _cli(folder, "--format", "json", "--no-cache", "--offline")
    assert report.inventory.num_params == m["parameters"] == PUBLISHED[repo]
    # the towers split every parameter and buffer byte once
    assert sum(t["parameters"] for t in m["towers"]) == m["parameters"]
    assert sum(t["buffers_bytes"] for t in m["towers"]) == m["buffers_bytes"]


def _towers(m: dict) -> dict[str, int]:
    return {t["role"]: t["parameters"] for t in m["towers"]}


def test_clip_towers_are_the_hand_count():
    m = _cli(str(CONFIGS / "openai/clip-vit-large-patch14"), "--format", "json", "--no-cache")
    hand = clip_vit_l14()
    assert _towers(m) == {VISION_ENCODER: hand["vision"], TEXT_ENCODER: hand["text"],
                          PROJECTOR: hand["projections"]}
    projector = next(t for t in m["towers"] if t["role"] == PROJECTOR)
    assert projector["modules"] == ["", "visual_projection", "text_projection"]  # logit_scale on the root
    assert projector["bytes"] == 4 * hand["projections"]  # torch_dtype float32
    result = runner.invoke(app, route_argv([str(CONFIGS / "openai/clip-vit-large-patch14"), "--no-cache"]))
    assert "Towers: vision encoder 303,179,776 · text encoder 123,060,480 · projector 1,376,257 parameters." \
        in " ".join(result.stdout.split())


def test_flan_t5_xl_counts_its_separate_lm_head():
    m = _cli(str(CONFIGS / "google/flan-t5-xl"), "--format", "json", "--no-cache")
    vocab_d = 32128 * 2048
    assert _towers(m) == {ENCODER: 1_157_729_280, DECODER: 1_560_431_616, EMBEDDINGS: vocab_d, HEAD: vocab_d}
    # the shared embedding feeds both stacks; lm_head is apart from it, as in the checkpoint
    assert m["tied_weights"] == [["shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]]
    assert any("config.json unties lm_head (tie_word_embeddings: false)" in n for n in m["notes"])


def test_t5_small_keeps_its_tied_head():
    m = _cli(str(CONFIGS / "google-t5/t5-small"), "--format", "json", "--no-cache")
    assert m["parameters"] == t5_small()
    assert "lm_head.weight" in m["tied_weights"][0] and HEAD not in _towers(m)
    assert not any("unties lm_head" in n for n in m["notes"])


def test_untie_and_retie_on_the_transformers_class():
    """transformers 5.24's T5Config says True whatever config.json says; clearing it unties all three entries
    of T5ForConditionalGeneration._tied_weights_keys (+2 · 32128 · 2048 over the checkpoint); re-tying the
    input embeddings leaves only lm_head apart."""
    pytest.importorskip("torch")
    import torch
    import transformers

    from hfmem.inventory.meta_model import checkpoint_untied, make_config, retie_input_embeddings

    raw = json.loads((CONFIGS / "google/flan-t5-xl/config.json").read_text())
    config_obj = make_config(raw)
    assert config_obj.tie_word_embeddings is True
    assert checkpoint_untied(raw, config_obj) is True and config_obj.tie_word_embeddings is False
    with torch.device("meta"):
        model = transformers.T5ForConditionalGeneration(config_obj)
    assert sum(p.numel() for p in model.parameters()) == flan_t5_xl() + 2 * 32128 * 2048 == 2_981_353_472
    retie_input_embeddings(model)
    assert sum(p.numel() for p in model.parameters()) == flan_t5_xl()
    assert model.encoder.embed_tokens.weight is model.shared.weight is model.decoder.embed_tokens.weight
    assert model.lm_head.weight is not model.shared.weight
    small = json.loads((CONFIGS / "google-t5/t5-small/config.json").read_text())
    assert checkpoint_untied(small, make_config(small)) is False  # no tie_word_embeddings key: tied


def test_snapshot_answers_the_new_models_offline(tmp_path):
    # a fresh interpreter: huggingface_hub reads HF_HUB_OFFLINE once, at import
    proc = run_hfmem("google/flan-t5-xl", "openai/clip-vit-large-patch14", "--format", "json",
                     env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    t5, clip = json_out(proc)["models"]
    assert t5["source"] == clip["source"] == "snapshot"
    assert t5["parameters"] == flan_t5_xl() and _towers(t5)[HEAD] == 32128 * 2048
    assert clip["parameters"] == PUBLISHED["openai/clip-vit-large-patch14"]
    assert _towers(clip)[PROJECTOR] == clip_vit_l14()["projections"]


def test_snapshot_entries_of_the_new_configs_are_up_to_date():
    from hfmem.inventory.build import build_inventory
    from hfmem.metadata.config import ModelConfig
    from hfmem.sources import snapshot

    root = Path(__file__).resolve().parents[1] / "cache"
    for repo in ("google/flan-t5-xl", "Qwen/Qwen2-VL-2B-Instruct"):
        entry = snapshot.lookup(repo, root)
        assert entry.config == json.loads((CONFIGS / repo / "config.json").read_text())
        assert entry.provenance["reference"]["source"] == f"https://huggingface.co/{repo}/blob/main/config.json"
        fresh = build_inventory(ModelConfig(entry.config, "test"), None).to_dict()
        stored = dict(entry.inventory)
        fresh.pop("versions"), stored.pop("versions")
        assert fresh == stored, repo


# -- the breakdown itself (pure) --------------------------------------------------------------------------

def test_nested_prefix_and_root_parameters():
    # Qwen2-VL's layout: the merger inside the vision transformer is the projector; 3 parameters on the root
    modules = {"model": [100, 8], "model.visual": [40, 0], "model.visual.merger": [10, 0],
               "model.language_model": [60, 8], "lm_head": [0, 0]}
    rows = tower_shares(modules, 103, 8, "qwen2_vl", bits_per_param=16)
    assert [(r.role, r.parameters, r.buffers_bytes, r.bytes, r.modules) for r in rows] == [
        (VISION_ENCODER, 30, 0, 60, ("model.visual",)),
        (PROJECTOR, 10, 0, 20, ("model.visual.merger",)),
        ("text_decoder", 60, 8, 120, ("model.language_model",)),
        (OTHER, 3, 0, 6, (ROOT,)),
    ]


def test_one_tower_families_and_mixed_dtypes():
    modules = {"model": [90, 0], "model.layers": [80, 0], "lm_head": [10, 0]}
    rows = tower_shares(modules, 100, 0, "some_new_lm", roles=("text_decoder",))
    assert [(r.role, r.parameters, r.bytes) for r in rows] == [("text_decoder", 90, None), (HEAD, 10, None)]
    assert towers_line(rows) is None  # one tower and its head: the parameter count says it all
    rows = tower_shares(modules, 100, 0, "some_new_vlm", roles=("text_decoder", "vision_encoder"))
    assert {r.role: r.parameters for r in rows} == {OTHER: 90, HEAD: 10}


# -- the local test Hub: a T5 checkpoint with its own lm_head ------------------------------------------------

TINY_T5 = {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "d_model": 16, "d_kv": 4,
           "num_heads": 2, "d_ff": 32, "num_layers": 1, "num_decoder_layers": 1, "vocab_size": 64,
           "relative_attention_num_buckets": 8, "feed_forward_proj": "gated-gelu", "is_encoder_decoder": True,
           "tie_word_embeddings": False, "torch_dtype": "float32", "decoder_start_token_id": 0,
           "pad_token_id": 0, "eos_token_id": 1}


def tiny_t5_tensors() -> list[tuple[str, list[int]]]:
    """The tensors save_pretrained writes for an untied T5 (the input embeddings once, as ``shared``)."""
    d, inner, ff, vocab, buckets, heads = 16, 8, 32, 64, 8, 2
    out = [("shared.weight", [vocab, d]), ("lm_head.weight", [vocab, d])]
    for stack in ("encoder", "decoder"):
        p = f"{stack}.block.0.layer."
        out += [(f"{p}0.SelfAttention.{x}.weight", [inner, d]) for x in "qkv"]
        out += [(f"{p}0.SelfAttention.o.weight", [d, inner]),
                (f"{p}0.SelfAttention.relative_attention_bias.weight", [buckets, heads]),
                (f"{p}0.layer_norm.weight", [d])]
        ffn = 1
        if stack == "decoder":
            out += [(f"{p}1.EncDecAttention.{x}.weight", [inner, d]) for x in "qkv"]
            out += [(f"{p}1.EncDecAttention.o.weight", [d, inner]), (f"{p}1.layer_norm.weight", [d])]
            ffn = 2
        out += [(f"{p}{ffn}.DenseReluDense.wi_0.weight", [ff, d]), (f"{p}{ffn}.DenseReluDense.wi_1.weight", [ff, d]),
                (f"{p}{ffn}.DenseReluDense.wo.weight", [d, ff]), (f"{p}{ffn}.layer_norm.weight", [d]),
                (f"{stack}.final_layer_norm.weight", [d])]
    return out


def tiny_t5_params() -> int:
    """By hand: shared and lm_head 64·16 each; per stack q, k, v 8·16 and o 16·8, relative bias 8·2, the
    gated feed-forward 3·32·16, a norm per sub-layer and a final norm (16 each); the decoder's cross-attention."""
    d, inner, ff, vocab = 16, 8, 32, 64
    attention = 4 * inner * d
    stack = attention + 8 * 2 + 3 * ff * d + 2 * d + d
    return 2 * vocab * d + stack + (stack + attention + d)


def test_untied_t5_from_the_hub_headers_and_meta_model_agree(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    fake_hub.add_repo("org/tiny-t5-untied", {"config.json": json.dumps(TINY_T5).encode(),
                                             "model.safetensors": safetensors_file(tiny_t5_tensors(), dtype="F32")[0]})
    meta = api.analyze("org/tiny-t5-untied", use_cache=False)
    heads = api.analyze("org/tiny-t5-untied", use_cache=False, headers_only=True)
    assert (meta.inventory.method, heads.inventory.method) == ("meta-model", "safetensors-headers")
    assert meta.inventory.num_params == heads.inventory.num_params == tiny_t5_params() == 6_800
    assert any("parameter count matches the safetensors headers" in n for n in meta.inventory.notes)
    from hfmem.inventory.towers import inventory_towers

    split = [[(t.role, t.parameters, t.bytes) for t in inventory_towers(r.inventory, r.config)]
             for r in (meta, heads)]
    assert split[0] == split[1]
    assert [role for role, _, _ in split[0]] == [ENCODER, DECODER, EMBEDDINGS, HEAD]


# -- `hfmem snapshot build --from A --from B` ------------------------------------------------------------------

def test_snapshot_build_reads_several_folders_and_refuses_a_repo_in_two(tmp_path):
    from hfmem.sources import snapshot

    a, b = tmp_path / "a", tmp_path / "b"
    for folder, repo in ((a, "google-t5/t5-small"), (b, "microsoft/resnet-50")):
        (folder / repo).mkdir(parents=True)
        (folder / repo / "config.json").write_bytes((CONFIGS / repo / "config.json").read_bytes())
    (b / "SOURCES.md").write_text("| repo id | file(s) | source | form | notes |\n|---|---|---|---|---|\n"
                                  "| microsoft/resnet-50 | `x` | the source | verbatim | none |\n")
    out = tmp_path / "snap"
    result = runner.invoke(app, ["snapshot", "build", "--from", str(a), "--from", str(b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert snapshot.lookup("google-t5/t5-small", out).inventory["num_params"] == t5_small()
    resnet = snapshot.lookup("microsoft/resnet-50", out)
    assert resnet.inventory["num_params"] == PUBLISHED["microsoft/resnet-50"]
    assert resnet.provenance["reference"]["source"] == "the source"  # b's SOURCES.md, not a's (none)
    (b / "google-t5/t5-small").mkdir(parents=True)
    (b / "google-t5/t5-small/config.json").write_text("{}")
    result = runner.invoke(app, ["snapshot", "build", "--from", str(a), "--from", str(b), "--out", str(out)])
    assert result.exit_code == 2 and "google-t5/t5-small is in both" in result.output
    assert snapshot.lookup("google-t5/t5-small", out).inventory is not None  # nothing was removed
