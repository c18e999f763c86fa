"""Reconstructions of published GGUF files' tensor lists, for tests and the accuracy report.

We cannot download multi-GB GGUF files, so this module rebuilds, from a Hugging Face config.json, the list of
tensors (name, shape in ggml order, ggml type) that llama.cpp's tools write, and writes it as a header-only GGUF
file with the ``gguf`` package's GGUFWriter. Tests then compare that reconstruction with numbers the publishers
printed (type counts from ``llama_model_loader``, ``model size``, model-card file sizes).

Two tools decide a published file's types:

* ``convert_hf_to_gguf.py`` writes F32/F16/BF16/Q8_0 files directly. Its rule (``ModelBase.prepare_tensors``,
  ggml-org/llama.cpp convert_hf_to_gguf.py): ``if n_dims <= 1 or new_name.endswith("_norm.weight")`` -> F32;
  tensors not ending in ".weight" (biases) and ``MODEL_TENSOR.FFN_GATE_INP`` (the MoE router) -> F32; everything
  else -> the --outtype. For Q8_0, ``gguf.quants.quantize`` raises QuantError when the row length is not a
  multiple of 32 and the converter then falls back to F16.
* ``llama-quantize`` (src/llama-quant.cpp, read at ggml-org/llama.cpp commit
  007dbbf3fd17eefe9b47fee45f48f7ba5e62b714) picks a type per tensor: ``tensor_allows_quantization`` (only 2-D/3-D
  tensors whose name ends in "weight", not "_norm.weight", not "ffn_gate_inp.weight"), then
  ``llama_tensor_get_type_impl`` (the per-ftype mixture rules: output.weight -> Q6_K, "use_more_bits" layers for
  attn_v / ffn_down in *_M, ...), then ``tensor_type_fallback`` (rows not divisible by the block size).
  The default type per ftype is ``llama_ftype_get_default_type``.

Tensor order: llama-quantize iterates ``ml.weights_map`` ordered by ``weight_name_comparer`` (src/
llama-model-loader.h): non-block tensors first (layer -1), then by block number, then by name. The counters
``i_attention_wv`` / ``i_ffn_down`` therefore equal the block index for dense models; we emit tensors in that
order for quantized files.

Not modelled (documented so nobody trusts it for them): IQ*/TQ*/MXFP4 ftypes, imatrix-dependent choices,
--tensor-type / --output-tensor-type overrides, older quantizer versions whose rules differed (e.g. the fallback of
Q3_K was IQ4_NL in some 2024 versions; the per-expert Mixtral layout of Dec 2023 files).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

T = gguf.GGMLQuantizationType

# ftype name -> LlamaFileType number (gguf-py constants.py, mirrors llama.h enum llama_ftype)
FTYPE_NUMBER: dict[str, int] = {
    "F32": gguf.LlamaFileType.ALL_F32,
    "F16": gguf.LlamaFileType.MOSTLY_F16,
    "BF16": gguf.LlamaFileType.MOSTLY_BF16,
    "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
    "Q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
    "Q5_0": gguf.LlamaFileType.MOSTLY_Q5_0,
    "Q5_1": gguf.LlamaFileType.MOSTLY_Q5_1,
    "Q2_K": gguf.LlamaFileType.MOSTLY_Q2_K,
    "Q3_K_S": gguf.LlamaFileType.MOSTLY_Q3_K_S,
    "Q3_K_M": gguf.LlamaFileType.MOSTLY_Q3_K_M,
    "Q3_K_L": gguf.LlamaFileType.MOSTLY_Q3_K_L,
    "Q4_K_S": gguf.LlamaFileType.MOSTLY_Q4_K_S,
    "Q4_K_M": gguf.LlamaFileType.MOSTLY_Q4_K_M,
    "Q5_K_S": gguf.LlamaFileType.MOSTLY_Q5_K_S,
    "Q5_K_M": gguf.LlamaFileType.MOSTLY_Q5_K_M,
    "Q6_K": gguf.LlamaFileType.MOSTLY_Q6_K,
}

# llama-quant.cpp llama_ftype_get_default_type
_DEFAULT_TYPE: dict[str, T] = {
    "Q4_0": T.Q4_0, "Q4_1": T.Q4_1, "Q5_0": T.Q5_0, "Q5_1": T.Q5_1, "Q8_0": T.Q8_0,
    "Q2_K": T.Q2_K, "Q3_K_S": T.Q3_K, "Q3_K_M": T.Q3_K, "Q3_K_L": T.Q3_K,
    "Q4_K_S": T.Q4_K, "Q4_K_M": T.Q4_K, "Q5_K_S": T.Q5_K, "Q5_K_M": T.Q5_K, "Q6_K": T.Q6_K,
}

# ftypes whose published files come straight out of convert_hf_to_gguf.py --outtype
_CONVERTER_FTYPES: dict[str, T] = {"F32": T.F32, "F16": T.F16, "BF16": T.BF16, "Q8_0": T.Q8_0}

# llama-quant.cpp tensor_type_fallback: block-256 k-quants fall back to a block-32 type
_FALLBACK: dict[T, T] = {T.Q2_K: T.Q4_0, T.Q3_K: T.Q4_0, T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0}

SUPPORTED_ARCHS = ("llama", "qwen2", "gemma2")


def _hparams(config: dict) -> dict:
    """The few config.json fields the tensor list depends on."""
    n_head = config["num_attention_heads"]
    n_embd = config["hidden_size"]
    return {
        "n_layer": config["num_hidden_layers"],
        "n_embd": n_embd,
        "n_ff": config["intermediate_size"],
        "n_head": n_head,
        "n_head_kv": config.get("num_key_value_heads") or n_head,
        "head_dim": config.get("head_dim") or n_embd // n_head,
        "n_vocab": config["vocab_size"],
        "n_expert": config.get("num_local_experts") or 0,
        "tied": bool(config.get("tie_word_embeddings", False)),
    }


def base_tensors(config: dict, arch: str) -> list[tuple[str, tuple[int, ...]]]:
    """(name, ggml shape) for each tensor convert_hf_to_gguf.py writes, in block order.

    ggml order: shape[0] is the row length (an nn.Linear's in_features); a [out, in] torch weight becomes
    (in, out). Names are gguf-py's tensor_mapping / constants.py TENSOR_NAMES (LLM_TENSOR_NAMES in
    src/llama-arch.cpp).
    """
    if arch not in SUPPORTED_ARCHS:
        raise ValueError(f"arch {arch!r} not reconstructed; supported: {SUPPORTED_ARCHS}")
    h = _hparams(config)
    e, ff, hd = h["n_embd"], h["n_ff"], h["head_dim"]
    q_out, kv_out = h["n_head"] * hd, h["n_head_kv"] * hd

    out: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (e, h["n_vocab"]))]
    out.append(("output_norm.weight", (e,)))
    # Tied embeddings: the HF checkpoint has no lm_head, so the converter writes no output.weight
    # (llama.cpp then uses token_embd as output, see LLM_TENSOR_OUTPUT TENSOR_DUPLICATED in llama-model.cpp).
    # Gemma/Gemma2 are always tied (Gemma2Model skips lm_head).
    if not h["tied"] and arch != "gemma2":
        out.append(("output.weight", (e, h["n_vocab"])))
    # Llama-3.1+ rope scaling: LlamaModel.generate_extra_tensors writes rope_freqs (head_dim/2 floats).
    rope_scaling = config.get("rope_scaling") or {}
    if arch == "llama" and rope_scaling.get("rope_type") == "llama3":
        out.append(("rope_freqs.weight", (hd // 2,)))

    for i in range(h["n_layer"]):
        b = f"blk.{i}."
        out.append((b + "attn_norm.weight", (e,)))
        out.append((b + "attn_q.weight", (e, q_out)))
        out.append((b + "attn_k.weight", (e, kv_out)))
        out.append((b + "attn_v.weight", (e, kv_out)))
        if arch == "qwen2":  # Qwen2 q/k/v have biases (attention_bias), 1-D
            out.append((b + "attn_q.bias", (q_out,)))
            out.append((b + "attn_k.bias", (kv_out,)))
            out.append((b + "attn_v.bias", (kv_out,)))
        out.append((b + "attn_output.weight", (q_out, e)))
        if arch == "gemma2":
            # post_attention_layernorm -> post_attention_norm, pre_feedforward_layernorm -> ffn_norm,
            # post_feedforward_layernorm -> post_ffw_norm (gguf-py tensor_mapping.py)
            out.append((b + "post_attention_norm.weight", (e,)))
            out.append((b + "post_ffw_norm.weight", (e,)))
        out.append((b + "ffn_norm.weight", (e,)))
        if h["n_expert"] > 1:
            # Mixtral in arch "llama": merged experts (LlamaModel.modify_tensors stacks w1/w2/w3 per layer)
            n_x = h["n_expert"]
            out.append((b + "ffn_gate_inp.weight", (e, n_x)))
            out.append((b + "ffn_gate_exps.weight", (e, ff, n_x)))
            out.append((b + "ffn_up_exps.weight", (e, ff, n_x)))
            out.append((b + "ffn_down_exps.weight", (ff, e, n_x)))
        else:
            out.append((b + "ffn_gate.weight", (e, ff)))
            out.append((b + "ffn_up.weight", (e, ff)))
            out.append((b + "ffn_down.weight", (ff, e)))
    return out


def _converter_type(name: str, shape: tuple[int, ...], outtype: T) -> T:
    """convert_hf_to_gguf.py ModelBase.prepare_tensors."""
    if len(shape) <= 1 or name.endswith("_norm.weight"):
        return T.F32
    if not name.endswith(".weight") or "ffn_gate_inp" in name:
        return T.F32
    if outtype == T.Q8_0 and shape[0] % 32 != 0:
        return T.F16  # QuantError -> "falling back to F16"
    return outtype


def _allows_quantization(name: str, shape: tuple[int, ...]) -> bool:
    """llama-quant.cpp tensor_allows_quantization (the parts relevant to these archs)."""
    return (
        len(shape) >= 2
        and name.endswith("weight")
        and "_norm.weight" not in name
        and "ffn_gate_inp.weight" not in name
    )


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    # llama-quant.cpp llama_tensor_get_type_impl, lambda use_more_bits
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def _category(name: str) -> str:
    """llama-quant.cpp tensor_get_category (order of the checks matters)."""
    if name == "output.weight":
        return "output"
    if name == "token_embd.weight":
        return "token_embd"
    for key, cat in (("attn_qkv.weight", "attn_qkv"), ("attn_v.weight", "attn_v"), ("attn_k.weight", "attn_k"),
                     ("attn_q.weight", "attn_q"), ("attn_output.weight", "attn_output"), ("ffn_up", "ffn_up"),
                     ("ffn_gate", "ffn_gate"), ("ffn_down", "ffn_down")):
        if key in name:
            return cat
    return "other"


def _layer_of(name: str) -> int:
    return int(name.split(".")[1])


def _quantizer_type(name: str, shape: tuple[int, ...], ftype: str, h: dict, *, tied: bool, is_70b: bool) -> T:
    """llama-quant.cpp llama_tensor_get_type -> llama_tensor_get_type_impl -> tensor_type_fallback.

    ``tied``: quantize_state_impl.has_tied_embeddings (true when the file has no output.weight).
    The counters i_attention_wv / i_ffn_down equal the block index (weights sorted by block, one per block).
    """
    default = _DEFAULT_TYPE[ftype]
    cat = _category(name)
    n_layer = h["n_layer"]
    n_expert = h["n_expert"]
    n_gqa = h["n_head"] // h["n_head_kv"]
    new = default

    if cat == "output" or (tied and cat == "token_embd"):
        nx = shape[0]
        qk_k = gguf.GGML_QUANT_SIZES[new][0]
        if nx % qk_k != 0:
            new = T.Q8_0
        elif new != T.Q8_0:
            new = T.Q6_K
    elif cat == "token_embd":
        pass  # k-quant/legacy ftypes: token_embd keeps the default type
    elif cat == "attn_v":
        i = _layer_of(name)  # == qs.i_attention_wv
        n = n_layer  # qs.n_attention_wv: one attn_v per block
        if ftype == "Q2_K":
            new = T.Q4_K if n_gqa >= 4 else T.Q3_K
        elif ftype == "Q3_K_M":
            new = T.Q5_K if i < 2 else T.Q4_K
        elif ftype == "Q3_K_L":
            new = T.Q5_K
        elif ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
            new = T.Q6_K
        elif ftype == "Q4_K_S" and i < 4:
            new = T.Q5_K
        if is_70b and new in (T.Q3_K, T.Q4_K):
            new = T.Q5_K  # "In the 70B model we have 8 heads sharing the same attn_v weights"
        if n_expert == 8:
            new = T.Q8_0
    elif cat == "attn_k":
        if n_expert == 8:
            new = T.Q8_0
    elif cat == "ffn_down":
        i = _layer_of(name)
        n = n_layer  # qs.n_ffn_down = n_layer_all
        if ftype == "Q2_K":
            new = T.Q3_K
        elif ftype == "Q3_K_M":
            new = T.Q5_K if i < n // 16 else T.Q4_K  # arch != FALCON -> Q4_K
        elif ftype == "Q3_K_L":
            new = T.Q5_K
        elif ftype == "Q4_K_M":
            if _use_more_bits(i, n):
                new = T.Q6_K
        elif ftype == "Q5_K_M" and _use_more_bits(i, n):
            new = T.Q6_K
        elif ftype == "Q4_K_S" and i < n // 8:
            new = T.Q5_K
    elif cat == "attn_output":
        if n_expert == 8:
            if ftype in ("Q2_K", "Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M"):
                new = T.Q5_K
        else:
            if ftype == "Q2_K":
                new = T.Q3_K
            elif ftype == "Q3_K_M":
                new = T.Q4_K
            elif ftype == "Q3_K_L":
                new = T.Q5_K

    # tensor_type_fallback: ne[0] (row length) must be a multiple of the block size
    ncols = shape[0]
    if ncols % gguf.GGML_QUANT_SIZES[new][0] != 0:
        fb = _FALLBACK.get(new)
        if fb is None:
            raise ValueError(f"no fallback for {new.name} ({name})")
        new = fb if ncols % gguf.GGML_QUANT_SIZES[fb][0] == 0 else T.F16
    return new


def _is_70b(config: dict, arch: str) -> bool:
    """llama-model.cpp load_hparams: llama 80 layers with GQA -> LLM_TYPE_70B (65B without GQA);
    qwen2 80 layers -> LLM_TYPE_70B."""
    h = _hparams(config)
    if h["n_layer"] != 80:
        return False
    return arch == "qwen2" or (arch == "llama" and h["n_head"] != h["n_head_kv"])


def tensor_list(config: dict, arch: str, ftype: str) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, ggml shape, ggml type name) as a published ``ftype`` GGUF of this config holds them.

    F32/F16/BF16/Q8_0 follow convert_hf_to_gguf.py; the others follow llama-quantize applied to an F16/BF16
    conversion (the usual publisher pipeline).
    """
    if ftype not in FTYPE_NUMBER:
        raise ValueError(f"ftype {ftype!r} not reconstructed; supported: {sorted(FTYPE_NUMBER)}")
    base = base_tensors(config, arch)
    if ftype in _CONVERTER_FTYPES:
        return [(n, s, _converter_type(n, s, _CONVERTER_FTYPES[ftype]).name) for n, s in base]

    h = _hparams(config)
    tied = not any(n == "output.weight" for n, _ in base)
    is_70b = _is_70b(config, arch)

    def order(item: tuple[str, tuple[int, ...]]) -> tuple[int, str]:
        # weight_name_comparer: layer (-1 for non-block), then name
        name = item[0]
        return (_layer_of(name) if name.startswith("blk.") else -1, name)

    out = []
    for name, shape in sorted(base, key=order):
        if _allows_quantization(name, shape):
            t = _quantizer_type(name, shape, ftype, h, tied=tied, is_70b=is_70b)
        else:
            t = _converter_type(name, shape, T.F16)  # the input file's type: F32 here
        out.append((name, shape, t.name))
    return out


def tensor_nbytes(shape: tuple[int, ...], type_name: str) -> int:
    """Exact bytes: rows of shape[0] elements in blocks (GGML_QUANT_SIZES gives block size, type size)."""
    block, type_size = gguf.GGML_QUANT_SIZES[T[type_name]]
    n = int(np.prod(shape))
    if shape[0] % block != 0:
        raise ValueError(f"row length {shape[0]} not a multiple of {type_name} block {block}")
    return n // block * type_size


def tensor_bytes(tensors: list[tuple[str, tuple[int, ...], str]]) -> int:
    """Sum of the tensors' exact data bytes (what llama.cpp prints as ``model size``: ml.n_bytes)."""
    return sum(tensor_nbytes(s, t) for _, s, t in tensors)


def tensor_elements(tensors: list[tuple[str, tuple[int, ...], str]]) -> int:
    """Sum of elements (llama.cpp's ``model params`` / ml.n_elements)."""
    return sum(int(np.prod(s)) for _, s, _ in tensors)


def type_counts(tensors: list[tuple[str, tuple[int, ...], str]]) -> dict[str, int]:
    """{type name lowercase as llama.cpp prints it ('f32', 'q4_K'): number of tensors}."""
    counts: dict[str, int] = {}
    for _, _, t in tensors:
        key = t.lower().replace("_k", "_K")
        counts[key] = counts.get(key, 0) + 1
    return counts


def data_bytes_padded(tensors: list[tuple[str, tuple[int, ...], str]], alignment: int = 32) -> int:
    """Bytes of the data section: each tensor padded to GGUF_DEFAULT_ALIGNMENT (32), as GGUFWriter and
    llama.cpp's gguf writer lay them out."""
    return sum(-(-tensor_nbytes(s, t) // alignment) * alignment for _, s, t in tensors)


def write_published(path: str | Path, config: dict, arch: str, ftype: str,
                    metadata_extra: dict | None = None) -> list[tuple[str, tuple[int, ...], str]]:
    """Write a header-only GGUF (KV metadata + tensor infos, no tensor data) for the reconstruction.

    Metadata keys as convert_hf_to_gguf.py's set_gguf_parameters writes them (TextModel.set_gguf_parameters,
    Gemma2Model.set_gguf_parameters). ``metadata_extra``: {key: value} added as u32 (int), f32 (float),
    bool or string. Returns the tensor list written.
    """
    tensors = tensor_list(config, arch, ftype)
    h = _hparams(config)
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(h["n_layer"])
    w.add_context_length(config.get("max_position_embeddings", 2048))
    w.add_embedding_length(h["n_embd"])
    w.add_feed_forward_length(h["n_ff"])
    w.add_head_count(h["n_head"])
    w.add_head_count_kv(h["n_head_kv"])
    w.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-5)))
    w.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    if arch == "llama":
        w.add_rope_dimension_count(h["head_dim"])
        w.add_vocab_size(h["n_vocab"])
    if h["n_expert"] > 1:
        w.add_expert_count(h["n_expert"])
        w.add_expert_used_count(config.get("num_experts_per_tok", 2))
    if arch == "gemma2":
        w.add_key_length(h["head_dim"])
        w.add_value_length(h["head_dim"])
        w.add_sliding_window(config["sliding_window"])
        w.add_attn_logit_softcapping(float(config["attn_logit_softcapping"]))
        w.add_final_logit_softcapping(float(config["final_logit_softcapping"]))
    w.add_file_type(int(FTYPE_NUMBER[ftype]))
    if ftype not in _CONVERTER_FTYPES or ftype == "Q8_0":
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, val in (metadata_extra or {}).items():
        if isinstance(val, bool):
            w.add_bool(key, val)
        elif isinstance(val, int):
            w.add_uint32(key, val)
        elif isinstance(val, float):
            w.add_float32(key, val)
        else:
            w.add_string(key, str(val))
    for name, shape, tname in tensors:
        # GGUFWriter takes numpy order and reverses it when writing (write_ti_data_to_file)
        w.add_tensor_info(name, tuple(reversed(shape)), np.dtype(np.float32), tensor_nbytes(shape, tname),
                          raw_dtype=T[tname])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    return tensors
