"""Small, complete GGUF models that llama.cpp itself loads: the recipes behind benchmarks/llamacpp_cpu.py's
measured buffers (benchmarks/measured/llamacpp-cpu/runs.json) and the tests that compare hfmem with them.

Each recipe is written with the gguf package's GGUFWriter, with the metadata keys and tensor names llama.cpp's
convert_hf_to_gguf.py writes for that architecture, a SentencePiece-style vocabulary (with the 256 byte tokens
llama.cpp's vocabulary loader looks up) and seeded random weights, so a rebuilt file is byte-for-byte the
file llama.cpp was measured on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Recipe:
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_vocab: int
    weight_type: str           # "F16", "Q8_0" or "Q4_0" for the 2-D weights (norms and biases stay F32)
    n_ctx_train: int = 8192
    sliding_window: int = 0
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_exp: int = 0


RECIPES: dict[str, Recipe] = {
    "llama-gqa-f16": Recipe("llama", 4, 512, 8, 2, 64, 1408, 8192, "F16"),
    "llama-gqa-q8_0": Recipe("llama", 4, 512, 8, 2, 64, 1408, 8192, "Q8_0"),
    "qwen2-q8_0": Recipe("qwen2", 3, 448, 7, 1, 64, 1216, 6400, "Q8_0"),
    "gemma2-f16": Recipe("gemma2", 6, 384, 6, 2, 64, 1024, 4096, "F16", sliding_window=1024),
    # shipped in tests/data/gguf/tiny-llama-GGUF (the README's examples), one file per weight type
    "tiny-llama-F16": Recipe("llama", 2, 128, 4, 2, 32, 512, 512, "F16", n_ctx_train=4096),
    "tiny-llama-Q8_0": Recipe("llama", 2, 128, 4, 2, 32, 512, 512, "Q8_0", n_ctx_train=4096),
    "tiny-llama-Q4_0": Recipe("llama", 2, 128, 4, 2, 32, 512, 512, "Q4_0", n_ctx_train=4096),
    # held out: not used to fit the compute-buffer coefficients (benchmarks/llamacpp_cpu.py HOLDOUT)
    "llama-wide-f16": Recipe("llama", 2, 1024, 16, 16, 64, 4096, 2048, "F16"),
    "qwen2-ffn-f16": Recipe("qwen2", 2, 512, 8, 4, 64, 3072, 1024, "F16"),
    "qwen2-vocab-q8_0": Recipe("qwen2", 2, 256, 4, 2, 64, 768, 32000, "Q8_0"),
    "qwen3moe-f16": Recipe("qwen3moe", 2, 384, 6, 2, 64, 0, 4096, "F16", n_expert=8, n_expert_used=2, n_ff_exp=256),
}


def run_settings(run: dict) -> dict:
    """hfmem's LlamaCppSettings fields for one recorded llama.cpp run (benchmarks/measured/llamacpp-cpu/runs.json):
    llama.cpp's -c is context × sequences, and -ngl 0 puts every layer on the CPU."""
    return dict(context=run["n_ctx"] // run["n_seq_max"], parallel=run["n_seq_max"], n_batch=run["n_batch"],
                n_ubatch=run["n_ubatch"], flash_attn="on" if run["flash_attn"] else "off", type_k=run["type_k"],
                type_v=run["type_v"], swa_full=run["swa_full"], n_gpu_layers=0)


def tensor_specs(r: Recipe) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, ggml shape with ne0 first, type) in the order convert_hf_to_gguf.py writes them."""
    w, f32 = r.weight_type, "F32"
    q, kv = r.n_head * r.head_dim, r.n_head_kv * r.head_dim
    out = [("token_embd.weight", (r.n_embd, r.n_vocab), w)]
    for il in range(r.n_layer):
        b = f"blk.{il}."
        out.append((b + "attn_norm.weight", (r.n_embd,), f32))
        out += [(b + "attn_q.weight", (r.n_embd, q), w), (b + "attn_k.weight", (r.n_embd, kv), w),
                (b + "attn_v.weight", (r.n_embd, kv), w)]
        if r.arch == "qwen2":
            out += [(b + "attn_q.bias", (q,), f32), (b + "attn_k.bias", (kv,), f32), (b + "attn_v.bias", (kv,), f32)]
        if r.arch == "qwen3moe":
            out += [(b + "attn_q_norm.weight", (r.head_dim,), f32), (b + "attn_k_norm.weight", (r.head_dim,), f32)]
        out.append((b + "attn_output.weight", (q, r.n_embd), w))
        if r.arch == "gemma2":
            out.append((b + "post_attention_norm.weight", (r.n_embd,), f32))
        out.append((b + "ffn_norm.weight", (r.n_embd,), f32))
        if r.n_expert:
            out += [(b + "ffn_gate_inp.weight", (r.n_embd, r.n_expert), f32),
                    (b + "ffn_gate_exps.weight", (r.n_embd, r.n_ff_exp, r.n_expert), w),
                    (b + "ffn_up_exps.weight", (r.n_embd, r.n_ff_exp, r.n_expert), w),
                    (b + "ffn_down_exps.weight", (r.n_ff_exp, r.n_embd, r.n_expert), w)]
        else:
            out += [(b + "ffn_gate.weight", (r.n_embd, r.n_ff), w), (b + "ffn_up.weight", (r.n_embd, r.n_ff), w),
                    (b + "ffn_down.weight", (r.n_ff, r.n_embd), w)]
        if r.arch == "gemma2":
            out.append((b + "post_ffw_norm.weight", (r.n_embd,), f32))
    out.append(("output_norm.weight", (r.n_embd,), f32))
    if r.arch != "gemma2":  # Gemma ties the output matrix to token_embd
        out.append(("output.weight", (r.n_embd, r.n_vocab), w))
    return out


def _vocab(n: int) -> tuple[list[str], list[float], list[int]]:
    """<unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, then plain pieces; token types as llama.cpp reads
    them (2 unknown, 3 control, 6 byte, 1 normal)."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    types = [2, 3, 3] + [6] * 256
    tokens += [f"\u2581t{i}" for i in range(n - len(tokens))]
    types += [1] * (n - len(types))
    return tokens, [0.0] * n, types


def write_recipe(name: str, path: Path, *, seed: int = 0, header_only: bool = False) -> Path:
    """Write recipe ``name`` to ``path``. ``header_only``: the same header (metadata, tensor infos, offsets)
    with the data section left as a sparse hole of the same size, for tests that read headers only."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType
    from gguf.quants import quantize

    r = RECIPES[name]
    rng = np.random.default_rng(seed)
    wr = GGUFWriter(str(path), r.arch)
    a = r.arch
    wr.add_name(name)
    wr.add_uint32(f"{a}.context_length", r.n_ctx_train)
    wr.add_uint32(f"{a}.embedding_length", r.n_embd)
    wr.add_uint32(f"{a}.block_count", r.n_layer)
    wr.add_uint32(f"{a}.feed_forward_length", r.n_ff or r.n_ff_exp)
    wr.add_uint32(f"{a}.attention.head_count", r.n_head)
    wr.add_uint32(f"{a}.attention.head_count_kv", r.n_head_kv)
    wr.add_uint32(f"{a}.attention.key_length", r.head_dim)
    wr.add_uint32(f"{a}.attention.value_length", r.head_dim)
    wr.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)
    wr.add_float32(f"{a}.rope.freq_base", 10000.0)
    if a == "llama":
        wr.add_uint32(f"{a}.rope.dimension_count", r.head_dim)
        wr.add_uint32(f"{a}.vocab_size", r.n_vocab)
    if r.sliding_window:
        wr.add_uint32(f"{a}.attention.sliding_window", r.sliding_window)
        wr.add_float32(f"{a}.attn_logit_softcapping", 50.0)
        wr.add_float32(f"{a}.final_logit_softcapping", 30.0)
    if r.n_expert:
        wr.add_uint32(f"{a}.expert_count", r.n_expert)
        wr.add_uint32(f"{a}.expert_used_count", r.n_expert_used)
        wr.add_uint32(f"{a}.expert_feed_forward_length", r.n_ff_exp)
    ftype = {"Q8_0": LlamaFileType.MOSTLY_Q8_0, "Q4_0": LlamaFileType.MOSTLY_Q4_0}.get(r.weight_type,
                                                                                       LlamaFileType.MOSTLY_F16)
    wr.add_uint32("general.file_type", int(ftype))
    tokens, scores, types = _vocab(r.n_vocab)
    wr.add_string("tokenizer.ggml.model", "llama")
    wr.add_array("tokenizer.ggml.tokens", tokens)
    wr.add_array("tokenizer.ggml.scores", scores)
    wr.add_array("tokenizer.ggml.token_type", types)
    wr.add_uint32("tokenizer.ggml.bos_token_id", 1)
    wr.add_uint32("tokenizer.ggml.eos_token_id", 2)
    wr.add_uint32("tokenizer.ggml.unknown_token_id", 0)
    if header_only:
        from gguf import GGML_QUANT_SIZES

        for tname, shape, ttype in tensor_specs(r):
            qt = GGMLQuantizationType[ttype]
            block, size = GGML_QUANT_SIZES[qt]
            n = 1
            for d in shape:
                n *= d
            wr.add_tensor_info(tname, tuple(reversed(shape)), np.dtype(np.float32), n // block * size, raw_dtype=qt)
        wr.write_header_to_file()
        wr.write_kv_data_to_file()
        wr.write_ti_data_to_file()
        data_bytes = sum(GGUFWriter.ggml_pad(ti.nbytes, wr.data_alignment) for ti in wr.tensors[0].values())
        wr.write_padding(wr.fout[0], wr.fout[0].tell())
        wr.close()
        with open(path, "r+b") as fh:
            fh.truncate(path.stat().st_size + data_bytes)
        return path
    for tname, shape, ttype in tensor_specs(r):
        data = (rng.standard_normal(tuple(reversed(shape))) * 0.02).astype(np.float32)
        if tname.endswith("norm.weight"):
            data = np.ones_like(data)
        if ttype == "F32":
            wr.add_tensor(tname, data)
        elif ttype == "F16":
            wr.add_tensor(tname, data.astype(np.float16))
        else:
            qt = GGMLQuantizationType[ttype]
            wr.add_tensor(tname, quantize(data, qt), raw_dtype=qt)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return path
