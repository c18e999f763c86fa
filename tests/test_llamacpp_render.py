"""The llama.cpp renderers and launch configurations (hfmem/render/llamacpp.py, hfmem/plan/emit_llamacpp.py) on
reports built from hand-made tensor lists: the JSON validates against the infer schema, its per-device buffers
are the block arithmetic written out here, the emitted llama-server command and Ollama Modelfile carry the
plan's -c / -np / -ngl, and the Markdown has one row per device."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

jsonschema = pytest.importorskip("jsonschema")

from hfmem.api import GGUFVariantRow, LlamaCppReport  # noqa: E402
from hfmem.model.gguf_model import GGUFModel  # noqa: E402
from hfmem.plan import llamacpp as plan  # noqa: E402
from hfmem.plan.emit_llamacpp import llama_server_command, ollama_modelfile  # noqa: E402
from hfmem.plan.gpus import GPU  # noqa: E402
from hfmem.render.llamacpp import llamacpp_document, markdown_llamacpp  # noqa: E402
from hfmem.scenarios.llamacpp import LlamaCppSettings, estimate_llamacpp  # noqa: E402
from hfmem.sources.gguf import GGUFRepo, GGUFVariant  # noqa: E402
from hfmem.units import GiB, MiB  # noqa: E402

SCHEMA = Path(__file__).resolve().parents[1] / "hfmem" / "data" / "schema" / "infer.json"

# Block sizes (gguf-py constants.py GGML_QUANT_SIZES; ggml-common.h block_q8_0 / block_q4_0): Q8_0 packs 32
# weights in 34 bytes (an f16 scale + 32 int8), Q4_0 32 weights in 18 bytes (an f16 scale + 16 bytes of nibbles).
N_EMBD, N_KV_EMBD, N_VOCAB = 4096, 1024, 1000  # 8 KV heads of 128
Q8 = {"q": N_EMBD * N_EMBD // 32 * 34, "k": N_EMBD * N_KV_EMBD // 32 * 34, "emb": N_EMBD * N_VOCAB // 32 * 34}
Q4 = {"q": N_EMBD * N_EMBD // 32 * 18, "k": N_EMBD * N_KV_EMBD // 32 * 18, "emb": N_EMBD * N_VOCAB // 32 * 18}
NORM = N_EMBD * 4  # F32
DATA_OFFSET = 1_000_000


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    ggml_type: str
    offset: int
    nbytes: int


@dataclass
class Header:
    tensors: tuple[Tensor, ...]
    data_offset: int
    metadata: dict

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


def header(qtype: str, sizes: dict) -> Header:
    """token_embd, two layers (attn_norm, attn_q, attn_k), output_norm, output, laid out back to back (every size
    here is a multiple of the 32-byte alignment, so there are no gaps)."""
    specs = [("token_embd.weight", (N_EMBD, N_VOCAB), qtype, sizes["emb"])]
    for il in range(2):
        specs += [(f"blk.{il}.attn_norm.weight", (N_EMBD,), "F32", NORM),
                  (f"blk.{il}.attn_q.weight", (N_EMBD, N_EMBD), qtype, sizes["q"]),
                  (f"blk.{il}.attn_k.weight", (N_EMBD, N_KV_EMBD), qtype, sizes["k"])]
    specs += [("output_norm.weight", (N_EMBD,), "F32", NORM), ("output.weight", (N_EMBD, N_VOCAB), qtype, sizes["emb"])]
    tensors, off = [], 0
    for name, shape, t, n in specs:
        assert n % 32 == 0
        tensors.append(Tensor(name, shape, t, off, n))
        off += n
    return Header(tuple(tensors), DATA_OFFSET, {"general.architecture": "llama"})


MODEL = GGUFModel(architecture="llama", name="tiny", n_layer=2, n_embd=N_EMBD, n_head=(32, 32), n_head_kv=(8, 8),
                  n_embd_head_k=128, n_embd_head_v=128, n_ff=(0, 0), n_vocab=N_VOCAB, n_ctx_train=4096, n_swa=0,
                  swa_layers=(False, False))
LAYER = {"Q8_0": NORM + Q8["q"] + Q8["k"], "Q4_0": NORM + Q4["q"] + Q4["k"]}
ALL = {"Q8_0": Q8["emb"] + 2 * LAYER["Q8_0"] + NORM + Q8["emb"], "Q4_0": Q4["emb"] + 2 * LAYER["Q4_0"] + NORM + Q4["emb"]}
CTX = 300 * MiB


def report(settings: LlamaCppSettings, *, gpu: GPU | None = None, source="hub", ref="someone/Tiny-GGUF",
           variants=("Q8_0",)) -> LlamaCppReport:
    vs = []
    for label in variants:
        h = header(label, Q8 if label == "Q8_0" else Q4)
        vs.append(GGUFVariant(label, (f"Tiny-{label}.gguf",), (h,), "model", DATA_OFFSET + h.tensor_bytes))
    repo = GGUFRepo(ref, source, "0123456789abcdef0123" if source == "hub" else None, tuple(vs), (), (),
                    repo_id=ref if source == "hub" else None)
    rows = []
    for v in vs:
        est = estimate_llamacpp(v.headers, MODEL, settings)
        params = sum(t.shape[0] * (t.shape[1] if len(t.shape) > 1 else 1) for t in v.tensors)
        bpw = 8 * v.tensor_bytes / params
        rank, listed = plan.quality_rank(v.label, bpw)
        rows.append(GGUFVariantRow(v, est, bpw, rank, listed,
                                   None if gpu is None else plan.fits(est, gpu.usable_bytes)))
    chosen = rows[0]
    fit = None
    if gpu is not None:
        fit = plan.solve(chosen.variant.headers, MODEL, settings, chosen.estimate, gpu.name, gpu.usable_bytes)
    best = next((x.variant.label for x in rows if x.fits), None) if gpu is not None else None
    return LlamaCppReport(model=ref, repo=repo, variant=chosen.variant, description=MODEL, estimate=chosen.estimate,
                          rows=rows, gpu=gpu, fit=fit, best=best, notes=["a note"])


def validate(doc: dict) -> None:
    v = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    errors = sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:10])


def parse_flags(cmd: str) -> dict[str, list[str]]:
    argv = shlex.split(cmd)
    assert argv[0] == "llama-server"
    out: dict[str, list[str]] = {}
    i = 1
    while i < len(argv):
        flag = argv[i]
        if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            out.setdefault(flag, []).append(argv[i + 1])
            i += 2
        else:
            out.setdefault(flag, []).append("")
            i += 1
    return out


def kv_layer_bytes(cells: int) -> int:
    return N_KV_EMBD * 2 * cells  # f16: one K (or V) row of n_head_kv * head_dim per cell


def test_full_offload_json_is_the_block_arithmetic():
    s = LlamaCppSettings(context=1000, parallel=2, cuda_context_bytes=CTX)
    r = report(s, gpu=GPU("Test-24GiB", 24 * GiB, memory_basis="user"))
    doc = llamacpp_document([r], emits={r.model: "llama-server ..."})
    validate(doc)
    m = doc["models"][0]
    gpu, cpu = m["devices"]
    assert [gpu["device"], cpu["device"]] == ["CUDA0", "CPU"]
    # -ngl default offloads every layer and the output layer; token_embd stays on the CPU (memory-mapped: the
    # span of its bytes). Every size is a multiple of 512 columns and 128 bytes, so no CUDA padding.
    assert gpu["model_bytes"] == 2 * LAYER["Q8_0"] + NORM + Q8["emb"]
    assert cpu["model_bytes"] == Q8["emb"]
    cells = 2048  # 1000 x 2 sequences, padded to 256
    assert m["kv_cells"] == m["inputs"]["cells"] == cells
    assert gpu["k_bytes"] == gpu["v_bytes"] == 2 * kv_layer_bytes(cells)
    assert cpu["kv_bytes"] == 0
    assert cpu["output_bytes"] == 4 * N_VOCAB * 2  # f32 logits, one row per sequence
    assert gpu["context_bytes"] == CTX and cpu["context_bytes"] == 0
    for d in m["devices"]:
        assert d["kv_bytes"] == d["k_bytes"] + d["v_bytes"]
        assert d["total_bytes"] == (d["model_bytes"] + d["kv_bytes"] + d["compute_bytes"] + d["output_bytes"]
                                    + d["context_bytes"] + d["projector_bytes"])
    assert m["gpu_peak_bytes"] == m["device_total_bytes"] == gpu["total_bytes"]
    assert m["cpu_bytes"] == cpu["total_bytes"]
    assert m["peak_allocated_bytes"] == gpu["total_bytes"] - CTX
    assert (gpu["layers"], gpu["output_layer"], cpu["layers"]) == (2, True, 0)
    assert m["n_gpu_layers"] == 3 and m["emit"] == "llama-server ..."
    f = m["fit"]
    assert f["fits"] is True and f["margin_bytes"] == 24 * GiB - gpu["total_bytes"]
    assert f["max_gpu_layers"] == 3


def test_partial_offload_maps_the_file_span_and_splits_kv():
    s = LlamaCppSettings(context=4096, n_gpu_layers=2, cuda_context_bytes=CTX)
    r = report(s)
    doc = llamacpp_document([r])
    validate(doc)
    gpu, cpu = doc["models"][0]["devices"]
    # llama-model.cpp load_tensors: i_gpu_start = max(n_layer + 1 - ngl, 0) over the n_layer + 1 layers (the
    # output layer last), so -ngl 2 puts blk.1 and the output layer on the GPU, blk.0 and token_embd on the CPU,
    # whose mapping is the span of the file from token_embd to the end of blk.0.
    assert gpu["model_bytes"] == LAYER["Q8_0"] + NORM + Q8["emb"]
    assert cpu["model_bytes"] == Q8["emb"] + LAYER["Q8_0"]
    assert gpu["kv_bytes"] == cpu["kv_bytes"] == 2 * kv_layer_bytes(4096)
    assert (gpu["layers"], gpu["output_layer"], cpu["layers"], cpu["output_layer"]) == (1, True, 1, False)
    assert doc["models"][0]["fit"] is None


def test_llama_server_command_carries_the_plan():
    s = LlamaCppSettings(context=1000, parallel=2, type_k="q8_0", type_v="q8_0", n_ubatch=256, gpus=2,
                         cuda_context_bytes=CTX)
    r = report(s)
    cmd, caveats = llama_server_command(r)
    flags = parse_flags(cmd)
    assert flags["-hf"] == ["someone/Tiny-GGUF:Q8_0"]
    assert flags["-c"] == [str(1000 * 2)]  # llama.cpp's -c is the whole cache: context x parallel
    assert flags["-np"] == ["2"] and flags["-ngl"] == [str(r.estimate.n_gpu_layers)] == ["3"]
    assert flags["-ctk"] == flags["-ctv"] == ["q8_0"] and flags["-fa"] == ["on"] and flags["-ub"] == ["256"]
    assert flags["-ts"] == ["1,1"] and "-b" not in flags
    # two GPUs: the layers split 1/2, so both layers on CUDA0 and the output layer on CUDA1
    md = markdown_llamacpp([r])
    rows = [line for line in md.splitlines() if line.startswith("| CUDA") or line.startswith("| CPU")]
    assert [row.split("|")[1].split()[0] for row in rows] == ["CUDA0", "CUDA1", "CPU"]
    assert "-c 2000 -np 2 -ngl 3 -ctk q8_0 -ctv q8_0 -fa on -ub 256" in md


def test_local_file_and_context_past_training():
    s = LlamaCppSettings(context=8192, n_gpu_layers=2, flash_attn="off", cuda_context_bytes=CTX)
    r = report(s, source="local", ref="/models/tiny/Tiny-Q8_0.gguf")
    cmd, caveats = llama_server_command(r)
    flags = parse_flags(cmd)
    assert flags["-m"] == ["/models/tiny/Tiny-Q8_0.gguf"] and "-hf" not in flags
    assert flags["-c"] == ["8192"] and flags["-ngl"] == ["2"] and flags["-fa"] == ["off"]
    assert "-ctk" not in flags and "-np" in flags
    assert any("4,096" in c for c in caveats)  # the model's n_ctx_train


def test_ollama_modelfile_and_its_server_settings():
    s = LlamaCppSettings(context=1000, parallel=3, type_k="q4_0", type_v="q4_0", cuda_context_bytes=CTX)
    r = report(s)
    text, caveats = ollama_modelfile(r)
    lines = dict(line.split(" ", 1) for line in text.splitlines() if line)
    assert lines["FROM"] == "hf.co/someone/Tiny-GGUF:Q8_0"
    params = dict(line.split()[1:3] for line in text.splitlines() if line.startswith("PARAMETER"))
    # Ollama multiplies num_ctx by OLLAMA_NUM_PARALLEL (docs.ollama.com/faq: "a 2K context with 4 parallel
    # requests will result in an 8K context"), so num_ctx x parallel is llama.cpp's -c
    assert params["num_ctx"] == "1000" and params["num_gpu"] == str(r.estimate.n_gpu_layers) == "3"
    assert llama_server_command(r)[0].split("-c ")[1].split()[0] == str(1000 * 3)  # the same cells, llama.cpp's way
    said = " ".join(caveats)
    assert all(v in said for v in ("OLLAMA_NUM_PARALLEL=3", "OLLAMA_FLASH_ATTENTION=1", "OLLAMA_KV_CACHE_TYPE=q4_0"))


def test_variants_and_compare_tables():
    s = LlamaCppSettings(context=512, n_gpu_layers=3, cuda_context_bytes=0)
    probe = report(s, variants=("Q8_0", "Q4_0"))
    peaks = [x.estimate.gpu_peak_bytes for x in probe.rows]
    # the variants differ only in their weights: the GPU peaks differ by the model buffers' difference
    gpu_model = {q: 2 * LAYER[q] + NORM + sz["emb"] for q, sz in (("Q8_0", Q8), ("Q4_0", Q4))}
    assert peaks[0] - peaks[1] == gpu_model["Q8_0"] - gpu_model["Q4_0"]
    gpu = GPU("Test-between", (peaks[0] + peaks[1]) // 2, memory_basis="user")  # Q4_0 fits, Q8_0 does not
    a = report(s, gpu=gpu, variants=("Q8_0", "Q4_0"))
    b = report(s, gpu=gpu, ref="other/Tiny-GGUF", variants=("Q4_0",))
    doc = llamacpp_document([a, b])
    validate(doc)
    m = doc["models"][0]
    assert [v["label"] for v in m["variants"]] == ["Q8_0", "Q4_0"]
    assert [v["gpu_peak_bytes"] for v in m["variants"]] == peaks
    assert [v["fits"] for v in m["variants"]] == [False, True] and m["best_variant"] == "Q4_0"
    md = markdown_llamacpp([a, b])
    assert md.count("## llama.cpp memory for") == 2 and "## Compared" in md
    assert "Q4_0 (best)" in md and "| other/Tiny-GGUF | Q4_0 |" in md
