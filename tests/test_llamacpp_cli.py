"""``hfmem infer --engine llama.cpp`` and ``hfmem REPO`` on GGUF repos, end to end: real GGUF headers written by
the gguf package, served by the local test Hub (tests/hubserver.py) at their real file sizes, read only by range
requests; the numbers checked against hand arithmetic from ggml's block sizes and llama.cpp's placement rules
(llama-model.cpp ``load_tensors``), the CLI and the Python API side by side."""

from __future__ import annotations

import json
import shlex

import pytest
from typer.testing import CliRunner

import gguf_factory as fac
from hfmem.api import Options, infer_llamacpp
from hfmem.cli import app, route_argv
from hfmem.model.gguf_model import GGUFModel
from hfmem.scenarios.llamacpp import LlamaCppSettings, layer_devices

REPO = "org/Llama-3-8B-shaped-GGUF"
GiB, MiB = 1 << 30, 1 << 20
runner = CliRunner()

# Llama-3-8B's shapes (meta-llama/Meta-Llama-3-8B config.json: hidden 4096, 32 layers, 32 heads, 8 KV heads,
# intermediate 14336, vocab 128256), every matrix in the variant's type, norms in F32.
SHAPE = dict(n_layer=32, n_embd=4096, n_head=32, n_head_kv=8, n_ff=14336, vocab=128256, ctx=8192, with_tokens=False)


def q8(n: int) -> int:
    return n // 32 * 34  # Q8_0: 32 weights in 34 bytes


def q4k(n: int) -> int:
    return n // 256 * 144  # Q4_K: 256 weights in 144 bytes


def f16(n: int) -> int:
    return 2 * n


def gpu_weights(bytes_of) -> int:
    """The CUDA0 model buffer with every layer offloaded, by hand: 32 layers (two F32 norms, Q and O 4096×4096,
    K and V 4096×1024, gate/up/down 4096×14336), output_norm and output (4096×128256). Every size here is a
    multiple of the 128-byte alignment and every row length a multiple of 512, so nothing is padded."""
    layer = 2 * 4096 * 4 + 2 * bytes_of(4096 * 4096) + 2 * bytes_of(4096 * 1024) + 3 * bytes_of(4096 * 14336)
    return 32 * layer + 4096 * 4 + bytes_of(4096 * 128256)


KV_8192 = 32 * 8192 * 1024 * 2 * 2  # layers × cells × (8 KV heads × 128) × f16 × (K and V) = 1 GiB


@pytest.fixture
def hub(fake_hub, monkeypatch, tmp_path):
    from hubserver import LazyFile

    files = {"README.md": b"# GGUF"}
    for wt, label in (("Q4_K", "Q4_K_M"), ("Q8_0", "Q8_0"), ("F16", "F16")):
        head, size = fac.header_and_size(fac.llama(wt=wt, **SHAPE), tmp_path)
        files[f"Llama-3-8B-shaped-{label}.gguf"] = LazyFile(head, size)
    head, size = fac.header_and_size(fac.mmproj(), tmp_path)
    files["mmproj-Llama-3-8B-shaped-F16.gguf"] = LazyFile(head, size)
    fake_hub.add_repo(REPO, files, library_name="gguf")
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    return fake_hub


def cli(*args):
    result = runner.invoke(app, route_argv(list(args)))
    return result


def cli_json(*args) -> dict:
    result = cli(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_buffers_of_the_served_variant_by_hand(hub):
    doc = cli_json("infer", REPO, "--engine", "llama.cpp", "--quant", "Q8_0", "-c", "8192")
    (m,) = doc["models"]
    assert m["variant"]["label"] == "Q8_0"
    dev = {d["device"]: d for d in m["devices"]}
    assert dev["CUDA0"]["model_bytes"] == gpu_weights(q8)
    assert dev["CPU"]["model_bytes"] == q8(4096 * 128256)  # token_embd, the first tensor: the mapped span
    assert dev["CUDA0"]["kv_bytes"] == KV_8192 == 1 * GiB
    assert dev["CPU"]["output_bytes"] == 4 * 128256  # float32 logits for one sequence
    # only header ranges of the .gguf files were read, never the weights
    gguf_reqs = [h.get("range") for _, p, h in hub.requests if p.endswith(".gguf") or ".gguf?" in p]
    assert gguf_reqs and all(r and r.startswith("bytes=") for r in gguf_reqs)
    assert all(n <= 4 * MiB for k, n in hub.bytes_served.items() if k.endswith(".gguf"))


def test_api_matches_cli_and_every_variant_is_a_row(hub):
    r = infer_llamacpp(REPO, Options(), context=8192, gpu="24GiB")
    doc = cli_json("infer", REPO, "--engine", "llama.cpp", "-c", "8192", "--gpu", "24GiB")
    (m,) = doc["models"]
    assert {v["label"] for v in m["variants"]} == {"Q4_K_M", "Q8_0", "F16"}
    assert m["best_variant"] == r.best and m["variant"]["label"] == r.variant.label
    rows = {v["label"]: v for v in m["variants"]}
    # F16 weights alone are 2 bytes per weight: 32·layer + embeddings ≈ 14.96 GiB; on 24 GiB with 1 GiB of KV
    # it fits, so the best-quality variant that fits is F16 (llama.cpp's quant table puts F16 above Q8_0)
    assert gpu_weights(f16) + KV_8192 < 24 * GiB and m["best_variant"] == "F16"
    assert rows["Q4_K_M"]["gpu_peak_bytes"] < rows["Q8_0"]["gpu_peak_bytes"] < rows["F16"]["gpu_peak_bytes"]
    assert rows["Q8_0"]["gpu_peak_bytes"] - rows["Q4_K_M"]["gpu_peak_bytes"] == gpu_weights(q8) - gpu_weights(q4k)


def test_a_small_gpu_gets_the_best_variant_that_fits(hub):
    # 10 GiB: F16 weights alone (≈15 GiB) cannot fit; Q8_0's ≈ 7.5 GiB + 1 GiB KV + buffers can
    assert gpu_weights(f16) > 10 * GiB > gpu_weights(q8) + KV_8192
    (m,) = cli_json("infer", REPO, "--engine", "llama.cpp", "-c", "8192", "--gpu", "10GiB")["models"]
    assert m["best_variant"] == "Q8_0" and m["variant"]["label"] == "Q8_0"
    assert {v["label"]: v["fits"] for v in m["variants"]}["F16"] is False


def test_a_gguf_only_repo_is_answered_for_llamacpp_without_asking(hub):
    result = cli("infer", REPO, "--quant", "Q4_K_M", "--format", "json")
    assert result.exit_code == 0, result.output
    assert "llama.cpp" in result.stderr
    (m,) = json.loads(result.stdout)["models"]
    assert m["engine"] == "llama.cpp" and m["variant"]["label"] == "Q4_K_M"


def test_calculator_lists_every_variant(hub):
    doc = cli_json(REPO)
    (g,) = doc["gguf_models"]
    rows = {v["label"]: v for v in g["variants"] if v["role"] == "model"}
    assert set(rows) == {"Q4_K_M", "Q8_0", "F16"}
    emb = 4096 * 128256
    assert rows["Q8_0"]["tensor_bytes"] == gpu_weights(q8) + q8(emb)
    assert rows["Q4_K_M"]["tensor_bytes"] == gpu_weights(q4k) + q4k(emb)
    assert rows["F16"]["gpu_model_bytes"] == gpu_weights(f16) and rows["F16"]["cpu_model_bytes"] == f16(emb)
    assert [v["role"] for v in g["variants"]].count("mmproj") == 1


def test_emit_llama_server_and_ollama(hub):
    result = cli("infer", REPO, "--engine", "llama.cpp", "--quant", "Q8_0", "-c", "8192", "-np", "2",
                 "-ctk", "q8_0", "-ctv", "q8_0", "--emit", "llama.cpp")
    assert result.exit_code == 0, result.output
    argv = shlex.split(result.stdout.strip())
    assert argv[0] == "llama-server"
    opt = {argv[i]: argv[i + 1] for i in range(1, len(argv) - 1) if argv[i].startswith("-")}
    assert opt["-hf"] == f"{REPO}:Q8_0" and opt["-c"] == str(8192 * 2) and opt["-np"] == "2"
    assert opt["-ngl"] == "33" and opt["-ctk"] == "q8_0" and opt["-ctv"] == "q8_0"
    result = cli("infer", REPO, "--engine", "llama.cpp", "--quant", "Q8_0", "-c", "8192", "--emit", "ollama")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"FROM hf.co/{REPO}:Q8_0" in lines and "PARAMETER num_ctx 8192" in lines
    assert "PARAMETER num_gpu 33" in lines


@pytest.mark.parametrize("args, flag", [
    (["--quant", "Q9_X"], "Q9_X"),
    (["-ctv", "q8_0", "-fa", "off"], "--cache-type-v"),
    (["-ctk", "q3_k"], "--cache-type-k"),
    (["-ot", "no-equals-sign"], "--override-tensor"),
    (["-ot", r"ffn_.*=CUDA1"], "--override-tensor"),  # one GPU: CUDA1 does not exist
])
def test_bad_input_is_one_line(hub, args, flag):
    result = cli("infer", REPO, "--engine", "llama.cpp", *args)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("hfmem: error:") and flag in lines[0]
    assert "Traceback" not in result.output


def _model(n_layer: int) -> GGUFModel:
    return GGUFModel("llama", None, n_layer, 64, (4,) * n_layer, (2,) * n_layer, 16, 16, (128,) * n_layer, 256,
                     4096, 0, (False,) * n_layer)


def test_layer_placement_follows_llamacpp():
    """llama-model.cpp: i_gpu_start = max(n_layer + 1 - ngl, 0); the output layer is layer n_layer; with
    several GPUs layer il goes to the first GPU whose cumulative share exceeds (il - i_gpu_start) / act."""
    m = _model(32)
    _, layers = layer_devices(m, LlamaCppSettings(n_gpu_layers=1))
    assert layers[:32] == ["CPU"] * 32 and layers[32] == "CUDA0"  # -ngl 1: the output layer only
    _, layers = layer_devices(m, LlamaCppSettings(n_gpu_layers=17))
    assert layers.index("CUDA0") == 16 and layers[16:] == ["CUDA0"] * 17  # 33 - 17 = 16 is the first on GPU
    _, layers = layer_devices(m, LlamaCppSettings(gpus=2, tensor_split=(3, 1)))
    # act = 33 layers, split [0.75, 1.0]: il / 33 < 0.75 for il <= 24, so 25 layers on CUDA0
    assert layers.count("CUDA0") == 25 and layers.count("CUDA1") == 8 and layers[32] == "CUDA1"


def test_experts_kept_on_the_cpu(tmp_path):
    """--n-cpu-moe 1 moves layer 0's expert tensors (ffn_gate/up/down_exps) to the CPU; --cpu-moe all of them."""
    (path,) = fac.write_gguf(tmp_path / "moe.gguf", fac.qwen3moe(wt="F16"))
    spec = fac.qwen3moe(wt="F16")
    exps = {n: fac.nbytes_of(shape, t) for n, shape, t in spec.tensors if "_exps" in n}
    base = infer_llamacpp(str(path), context=512).estimate
    one = infer_llamacpp(str(path), context=512, n_cpu_moe=1).estimate
    every = infer_llamacpp(str(path), context=512, cpu_moe=True).estimate
    layer0 = sum(b for n, b in exps.items() if n.startswith("blk.0."))

    def pad128(n):
        return (n + 127) // 128 * 128

    moved0 = sum(pad128(b) for n, b in exps.items() if n.startswith("blk.0."))
    assert base.gpus[0].model_bytes - one.gpus[0].model_bytes == moved0
    assert base.gpus[0].model_bytes - every.gpus[0].model_bytes == sum(pad128(b) for b in exps.values())
    assert one.cpu.model_bytes >= base.cpu.model_bytes + layer0  # the mapped span now reaches into layer 0


def test_quality_order_follows_llamacpps_quant_table():
    """llama-quantize's figures (tools/quantize/quantize.cpp QUANT_OPTIONS, perplexity increase on Llama-3-8B):
    Q8_0 +0.0026, Q6_K +0.0217, Q5_K_M +0.0569, Q5_K_S +0.1049, Q5_1 +0.1062, Q5_0 +0.1316, Q4_K_M +0.1754,
    Q4_K_S +0.2689, Q4_1 +0.4511, Q4_0 +0.4685, Q3_K_L +0.5562, Q3_K_M +0.6569, Q3_K_S +1.6321, Q2_K_S +3.1836,
    Q2_K +3.5199; IQ4_NL is described as 4.50 bpw, under Q4_0's 4.34 GiB (4.64 bpw) and over Q3_K_L's 4.03 GiB."""
    from hfmem.plan.llamacpp import QUALITY_ORDER, quality_rank

    by_ppl = ["Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0", "Q3_K_L",
              "Q3_K_M", "Q3_K_S", "Q2_K_S", "Q2_K"]
    assert [q for q in QUALITY_ORDER if q in by_ppl] == by_ppl
    assert QUALITY_ORDER.index("Q4_0") < QUALITY_ORDER.index("IQ4_NL") < QUALITY_ORDER.index("Q3_K_L")
    assert QUALITY_ORDER[:3] == ("F32", "BF16", "F16")
    assert quality_rank("q4_k")[0] == quality_rank("Q4_K_M")[0]  # "alias for Q4_K_M"
    # a publisher's own mix is placed by its bits per weight among the repo's listed variants
    rank, listed = quality_rank("UD-Q4_K_XL", 5.0, {"Q4_K_M": 4.89, "Q5_K_M": 5.7})
    assert not listed and quality_rank("Q5_K_M")[0] < rank < quality_rank("Q4_K_M")[0]


def test_a_reader_that_leaves_early_is_not_an_internal_error():
    """`hfmem ... | head -1`: once the reader has closed the pipe, hfmem stops quietly with SIGPIPE's 141, not
    as an internal error (70)."""
    import subprocess
    import sys
    from pathlib import Path

    tiny = str(Path(__file__).resolve().parent / "data" / "gguf" / "tiny-llama-GGUF")
    code = "import sys; from hfmem.cli import main; main(sys.argv[1:])"
    proc = subprocess.Popen([sys.executable, "-c", code, tiny, "--format", "markdown"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before hfmem writes a byte: its first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "internal error" not in err, err


def test_images_put_the_projector_weights_on_the_gpu(hub):
    """With --images the repo's mmproj weights join the first GPU: by hand, the tiny projector of the fixture is
    a 16×16×3×64 F16 patch embedding, a 64×16 F32 position table, one block (four 64×64 and two 64×128 F16
    matrices, two 64-wide F32 norms), a post norm and a 64×64 F16 projection."""
    expected = (2 * 16 * 16 * 3 * 64 + 4 * 64 * 16
                + 4 * 2 * 64 * 64 + 2 * 2 * 64 * 128 + 2 * 4 * 64
                + 4 * 64 + 2 * 64 * 64)
    (m,) = cli_json("infer", REPO, "--engine", "llama.cpp", "--quant", "Q8_0", "--images", "1")["models"]
    dev = {d["device"]: d for d in m["devices"]}
    assert dev["CUDA0"]["projector_bytes"] == expected == m["projector"]["bytes"]
    (m0,) = cli_json("infer", REPO, "--engine", "llama.cpp", "--quant", "Q8_0")["models"]
    assert {d["device"]: d for d in m0["devices"]}["CUDA0"]["projector_bytes"] == 0


def test_multi_token_prediction_layers_get_no_kv(tmp_path):
    """GLM-4.5-style files count their NextN layer in block_count ({arch}.nextn_predict_layers = 1): its weights
    are loaded, and llama.cpp's main context gives it no KV cache, so KV covers block_count - 1 layers. By hand
    for the factory's llama shape (2 KV heads × 16 = 32 per row, f16, 512 cells): 32 × 2 B × 512 × 2 (K and V)."""
    spec = fac.llama(n_layer=3, wt="F16")
    md = dict(spec.metadata)
    md["llama.nextn_predict_layers"] = 1
    (path,) = fac.write_header_only(tmp_path / "mtp.gguf", md, spec.tensors, arch="llama")
    with_mtp = infer_llamacpp(str(path), context=512).estimate
    assert with_mtp.kv_bytes == 2 * (32 * 2 * 512 * 2)  # layers 0 and 1; layer 2 is the NextN layer
    (plain,) = fac.write_header_only(tmp_path / "plain.gguf", dict(spec.metadata), spec.tensors, arch="llama")
    assert infer_llamacpp(str(plain), context=512).estimate.kv_bytes == 3 * (32 * 2 * 512 * 2)
