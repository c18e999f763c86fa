"""The inventory counted from safetensors headers with the shipped module trees (hfmem.inventory.headers
``exact_measure``) equals the meta model's, field by field, on every config it answers for.

The checkpoint of each config is the one transformers would write: the meta model's state_dict (built by
transformers' own code) minus tied duplicates and non-persistent buffers, at the config's dtype, written as a
real safetensors header and parsed by hfmem's reader. The expected inventory is the meta-model path's
(``build_inventory(..., meta_model=True)``), never the headers path's own output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import hfmem
from hfmem.inventory.build import HEADERS_EXACT_NOTE, build_inventory
from hfmem.metadata import transformers_facts as facts
from hfmem.metadata.config import parse_config
from hfmem.metadata.safetensors import CheckpointHeaders, parse_header_json, read_local_checkpoint

SNAPSHOT = Path(hfmem.__file__).resolve().parents[1] / "cache" / "models"
CONFIGS = sorted(SNAPSHOT.glob("*/*/config.json"))
# A fast, representative subset: Llama (tied and untied), GPT-2 (Conv1D), BERT (dropouts, positions buffers).
FAST = {"HuggingFaceTB/SmolLM2-135M-Instruct", "openai-community/gpt2", "google-bert/bert-base-uncased",
        "Qwen/Qwen2.5-3B"}
_ST_DTYPE = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "bool": "BOOL"}
_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "BOOL": 1}


def _declared_dtype(raw: dict) -> str:
    d = raw.get("torch_dtype") or raw.get("dtype") or "float32"
    return d if d in ("float32", "float16", "bfloat16") else "float32"


def saved_header(model, dtype: str) -> dict:
    """The safetensors header save_pretrained writes for ``model`` (names, shapes, dtypes, offsets)."""
    first: dict[int, str] = {}
    dropped = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            dropped.add(name)  # a tied copy: saved once
        else:
            first[id(p)] = name
    tensors = [(n, _ST_DTYPE[dtype], list(p.shape)) for n, p in model.named_parameters(remove_duplicate=False)
               if n not in dropped]
    for mod_name, mod in model.named_modules():
        np_names = getattr(mod, "_non_persistent_buffers_set", set())
        for b_name, b in mod.named_buffers(recurse=False):
            if b_name not in np_names:
                tensors.append((f"{mod_name}.{b_name}" if mod_name else b_name,
                                _ST_DTYPE[str(b.dtype).removeprefix("torch.")], list(b.shape)))
    header, pos = {}, 0
    for name, st, shape in sorted(tensors):
        n = 1
        for s in shape:
            n *= s
        header[name] = {"dtype": st, "shape": shape, "data_offsets": [pos, pos + n * _SIZE[st]]}
        pos += n * _SIZE[st]
    return header


def _compare(raw: dict, headers: CheckpointHeaders, origin: str) -> bool:
    """Assert the headers path equals the meta model where it answers; True when it answered."""
    config = parse_config(json.dumps(raw).encode(), origin)
    fast = build_inventory(config, headers)
    if HEADERS_EXACT_NOTE not in fast.notes:
        return False
    slow = build_inventory(config, headers, meta_model=True)
    assert HEADERS_EXACT_NOTE not in slow.notes
    a, b = fast.to_dict(), slow.to_dict()
    assert a.pop("accelerate") is None
    b.pop("accelerate")
    a["notes"].remove(HEADERS_EXACT_NOTE)
    # the method names the route (headers-exact, against meta-model); every figure must be the same
    assert (a.pop("method"), b.pop("method")) == ("headers-exact", "meta-model"), origin
    # versions name what ran: no torch on the headers route, and the transformers release whose module trees
    # the shipped data records; the meta model names the installed torch and transformers
    recorded = json.loads((Path(hfmem.__file__).parent / "data" / "module_structures.json").read_text())
    assert a.pop("versions") == {"torch": None, "transformers": recorded["transformers"]}, origin
    assert b.pop("versions")["torch"], origin
    for key in b:
        assert a[key] == b[key], f"{origin}: {key}"
    # byte-equal, orders included (modules in named_modules order, layer names in accelerate's order)
    assert json.dumps(a) == json.dumps(b), origin
    return True


def _meta_model(raw: dict):
    from hfmem.inventory.meta_model import build_model

    return build_model(raw, (raw.get("architectures") or [None])[0])[0]


def _params(path: Path):
    repo = f"{path.parent.parent.name}/{path.parent.name}"
    mark = () if repo in FAST else (pytest.mark.slow,)
    return pytest.param(path, id=repo, marks=mark)


@pytest.mark.parametrize("path", [_params(p) for p in CONFIGS])
def test_snapshot_config_headers_equal_meta_model(path):
    pytest.importorskip("transformers")
    raw = json.loads(path.read_text())
    arch = (raw.get("architectures") or [None])[0]
    if facts.class_structure(arch) is None or raw.get("model_type") != facts.class_structure(arch)["model_type"]:
        pytest.skip(f"{arch}: no recorded module tree; the meta model answers")
    header = saved_header(_meta_model(raw), _declared_dtype(raw))
    headers = CheckpointHeaders([parse_header_json("model.safetensors", header)])
    _compare(raw, headers, str(path))


@pytest.mark.slow
def test_how_many_snapshot_models_the_headers_answer():
    """64 of the snapshot's 88 configs are answered from headers (measured at transformers 5.24; the others:
    custom code, classes without a recorded tree, quantized gpt-oss, StableLM-2's optional q/k/v biases)."""
    pytest.importorskip("transformers")
    answered = 0
    for path in CONFIGS:
        raw = json.loads(path.read_text())
        st = facts.class_structure((raw.get("architectures") or [None])[0])
        if st is None or raw.get("model_type") != st["model_type"]:
            continue
        header = saved_header(_meta_model(raw), _declared_dtype(raw))
        answered += _compare(raw, CheckpointHeaders([parse_header_json("model.safetensors", header)]), str(path))
    assert answered >= 64


def test_the_recorded_families_answer_the_fast_subset():
    """Each FAST model is answered by the headers path (not silently sent to the meta model)."""
    pytest.importorskip("transformers")
    for repo in sorted(FAST):
        raw = json.loads((SNAPSHOT / repo / "config.json").read_text())
        header = saved_header(_meta_model(raw), _declared_dtype(raw))
        assert _compare(raw, CheckpointHeaders([parse_header_json("model.safetensors", header)]), repo), repo


def test_real_minilm_checkpoint(minilm_dir):
    """sentence-transformers/all-MiniLM-L6-v2's real checkpoint (its own tensor names, position_ids saved)."""
    pytest.importorskip("transformers")
    raw = json.loads((minilm_dir / "config.json").read_text())
    headers = read_local_checkpoint(minilm_dir)
    config = parse_config(json.dumps(raw).encode(), str(minilm_dir))
    fast = build_inventory(config, headers)
    slow = build_inventory(config, headers, meta_model=True)
    if HEADERS_EXACT_NOTE in fast.notes:
        assert _compare(raw, headers, str(minilm_dir))
    else:  # the meta model answered: the same inventory as asking for it
        assert fast.to_dict() == slow.to_dict()


def test_missing_or_unknown_tensors_fall_back_to_the_meta_model():
    """A checkpoint that lacks a layer's weight, or holds a tensor the class does not have, is not answered
    from the headers (the meta model counts it, with its mismatch note)."""
    pytest.importorskip("transformers")
    raw = json.loads((SNAPSHOT / "HuggingFaceTB/SmolLM2-135M-Instruct" / "config.json").read_text())
    header = saved_header(_meta_model(raw), _declared_dtype(raw))
    config = parse_config(json.dumps(raw).encode(), "x")
    for change in ("drop", "extra", "layers"):
        h = dict(header)
        if change == "drop":
            h.pop("model.layers.3.mlp.up_proj.weight")
        elif change == "extra":
            h["model.layers.3.mlp.up_proj.bias"] = {"dtype": "BF16", "shape": [1], "data_offsets": [0, 0]}
        else:  # the config says 30 layers; a checkpoint of 29
            h = {k: v for k, v in h.items() if not k.startswith("model.layers.29.")}
        pos, out = 0, {}
        for k, v in sorted(h.items()):
            n = v["data_offsets"][1] - v["data_offsets"][0] or 2
            out[k] = dict(v, data_offsets=[pos, pos + n])
            pos += n
        inv = build_inventory(config, CheckpointHeaders([parse_header_json("model.safetensors", out)]))
        assert HEADERS_EXACT_NOTE not in inv.notes, change


@pytest.mark.slow  # builds every shipped family with transformers (11 s): the default set's time budget
def test_shipped_structures_match_installed_transformers():
    """The shipped module trees are what transformers builds today (regenerate with
    ``python -m hfmem.metadata.transformers_facts`` after an upgrade)."""
    pytest.importorskip("transformers")
    shipped = facts.load_structures()
    fresh = facts.structures()
    assert fresh["families"] == shipped["families"]
    assert fresh["classes"] == json.loads(json.dumps(shipped["classes"]))
    assert len(shipped["classes"]) >= 30


@pytest.mark.slow  # 24 s of fresh processes: the slow set (which CI runs too) keeps the default set in budget
def test_headers_path_imports_neither_torch_nor_transformers(tmp_path):
    """A Llama-like checkpoint's headers answer without importing torch or transformers."""
    raw = json.loads((SNAPSHOT / "meta-llama/Llama-3.2-1B" / "config.json").read_text())
    h, e, v, L, kv, hd = 2048, 8192, 128256, 16, 8, 64  # Llama-3.2-1B's published sizes
    shapes = {"model.embed_tokens.weight": [v, h], "model.norm.weight": [h]}
    for i in range(L):
        p = f"model.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": [h, h], p + "self_attn.k_proj.weight": [kv * hd, h],
                       p + "self_attn.v_proj.weight": [kv * hd, h], p + "self_attn.o_proj.weight": [h, h],
                       p + "mlp.gate_proj.weight": [e, h], p + "mlp.up_proj.weight": [e, h],
                       p + "mlp.down_proj.weight": [h, e], p + "input_layernorm.weight": [h],
                       p + "post_attention_layernorm.weight": [h]})
    header, pos = {}, 0
    for name, shape in sorted(shapes.items()):
        n = shape[0] * (shape[1] if len(shape) > 1 else 1) * 2
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [pos, pos + n]}
        pos += n
    blob = json.dumps(header).encode()
    (tmp_path / "config.json").write_text(json.dumps(raw))
    (tmp_path / "model.safetensors").write_bytes(len(blob).to_bytes(8, "little") + blob + b"\0" * pos)
    code = (
        "import json, sys\n"
        "from hfmem.inventory.build import build_inventory, HEADERS_EXACT_NOTE\n"
        "from hfmem.metadata.config import parse_config\n"
        "from hfmem.metadata.safetensors import read_local_checkpoint\n"
        f"folder = {str(tmp_path)!r}\n"
        "inv = build_inventory(parse_config(open(folder + '/config.json', 'rb').read(), folder),"
        " read_local_checkpoint(folder))\n"
        "print(json.dumps([inv.num_params, inv.tied_params, inv.non_persistent_buffer_bytes,"
        " HEADERS_EXACT_NOTE in inv.notes, sorted(m for m in ('torch', 'transformers') if m in sys.modules)]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    num, tied, np_bytes, exact, imported = json.loads(out.stdout.strip().splitlines()[-1])
    # Llama-3.2-1B: 1,235,814,400 parameters (model card: 1.24B), the embedding tied to the LM head,
    # one rotary module with inv_freq and original_inv_freq of head_dim/2 = 32 float32 each: 256 bytes.
    assert (num, tied, np_bytes, exact, imported) == (1_235_814_400, v * h, 2 * 32 * 4, True, [])


def test_cli_answers_a_local_checkpoint_from_its_headers_and_meta_model_on_request(minilm_dir):
    """`hfmem FOLDER` on all-MiniLM-L6-v2's real checkpoint: counted from its headers against BertModel's
    module tree (no torch), the same figures as `--meta-model`, which builds the model; 22,713,216 parameters
    is the count sentence-transformers publishes for the model (22.7M)."""
    from typer.testing import CliRunner

    from hfmem.cli import app

    runner = CliRunner()
    docs = []
    for extra in ([], ["--meta-model"]):
        result = runner.invoke(app, ["calc", str(minilm_dir), "--format", "json", "--no-cache", *extra])
        assert result.exit_code == 0, result.stderr
        docs.append(json.loads(result.stdout)["models"][0])
    fast, slow = docs
    assert (fast["method"], slow["method"]) == ("headers-exact", "meta-model")
    assert fast["parameters"] == slow["parameters"] == 22_713_216
    for key in ("parameters_by_dtype", "buffers_bytes", "buffers", "tied_parameters", "tied_weights",
                "largest_layer", "table", "modules"):
        assert fast[key] == slow[key], key
