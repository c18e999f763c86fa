"""Real GGUF files for tests, written with llama.cpp's own writer (``gguf.GGUFWriter``, gguf-py 0.19).

Metadata keys and tensor names are the ones llama.cpp's convert_hf_to_gguf.py writes (``{arch}.block_count``,
``blk.N.attn_q.weight``, ...; see gguf-py's ``constants.py`` ``Keys`` and ``MODEL_TENSORS``). Shapes are
given in ggml order (ne0 first, the row length), as GGUF stores them; the writer takes numpy order, so they are
reversed on the way in.

Two modes:

* ``write_gguf(path, spec)``: with data (random, quantized by ``gguf.quants.quantize`` for Q8_0/Q4_0/...),
  so the gguf package's ``GGUFReader`` can read the file back as an independent reference;
* ``write_header_only(path, metadata, tensor_specs)``: the header only (real-size shapes cost nothing); the
  file is then extended, sparse, to the size its tensors declare (``full_size=True``), as a real file is.

``header_and_size(spec)`` gives the header bytes and the full file size, for ``hubserver.LazyFile``.
``split_count`` (in both writers) cuts a model into parts named ``-0000k-of-0000N.gguf`` carrying ``split.no``,
``split.count`` and ``split.tensors.count``, as llama.cpp's gguf-split writes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT


@dataclass
class Spec:
    """A model: architecture, typed metadata, and tensors as (name, ggml-order shape, ggml type name)."""

    arch: str
    metadata: dict[str, object] = field(default_factory=dict)  # key -> value or (value, GGUFValueType)
    tensors: list[tuple[str, tuple[int, ...], str]] = field(default_factory=list)


def _typed(value):
    """(value, GGUFValueType, element type) for a plain Python value, as convert_hf_to_gguf types them
    (counts as UINT32, floats as FLOAT32)."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], VT):
        val, vt = value
        sub = None
        if vt == VT.ARRAY:
            sub = VT.get_type(val[0])
        return val, vt, sub
    if isinstance(value, bool):
        return value, VT.BOOL, None
    if isinstance(value, int):
        return value, VT.UINT32, None
    if isinstance(value, float):
        return value, VT.FLOAT32, None
    if isinstance(value, str):
        return value, VT.STRING, None
    if isinstance(value, (list, tuple)):
        first = value[0]
        sub = (VT.STRING if isinstance(first, str) else VT.BOOL if isinstance(first, bool)
               else VT.INT32 if isinstance(first, int) else VT.FLOAT32)
        return list(value), VT.ARRAY, sub
    raise TypeError(f"no GGUF type for {value!r}")


def nbytes_of(shape: tuple[int, ...], type_name: str) -> int:
    """Bytes of a tensor by gguf-py's GGML_QUANT_SIZES (block size, bytes per block)."""
    block, size = gguf.GGML_QUANT_SIZES[QT[type_name]]
    return math.prod(shape) // block * size


def _writer(path: Path, spec_arch: str, metadata: dict, split_max_tensors: int) -> gguf.GGUFWriter:
    w = gguf.GGUFWriter(path, spec_arch, split_max_tensors=split_max_tensors)
    for key, value in metadata.items():
        if key == "general.architecture":
            continue  # the writer adds it
        val, vt, sub = _typed(value)
        w.add_key_value(key, val, vt, sub_type=sub)
    return w


def _paths(w: gguf.GGUFWriter, path: Path) -> list[Path]:
    return [Path(p) for p in w.format_shard_names(Path(path))]


def _split_tensors(n_tensors: int, split_count: int) -> int:
    return 0 if split_count <= 1 else math.ceil(n_tensors / split_count)


def write_gguf(path, spec: Spec, *, split_count: int = 1, seed: int = 0) -> list[Path]:
    """A complete file (or ``split_count`` parts) with random data; returns the paths written."""
    rng = np.random.default_rng(seed)
    w = _writer(Path(path), spec.arch, spec.metadata, _split_tensors(len(spec.tensors), split_count))
    for name, shape, type_name in spec.tensors:
        data = rng.standard_normal(tuple(reversed(shape))).astype(np.float32)
        qtype = QT[type_name]
        if qtype == QT.F32:
            w.add_tensor(name, data)
        elif qtype == QT.F16:
            w.add_tensor(name, data.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    paths = _paths(w, Path(path))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return paths


def write_header_only(path, metadata: dict, tensor_specs, *, arch: str | None = None, full_size: bool = True,
                      split_count: int = 1) -> list[Path]:
    """The header of a model whose data is not written (any shape costs nothing). ``full_size`` extends each
    file, sparse, to the size its tensors declare."""
    arch = arch or metadata["general.architecture"]
    w = _writer(Path(path), arch, metadata, _split_tensors(len(tensor_specs), split_count))
    for name, shape, type_name in tensor_specs:
        w.add_tensor_info(name, tuple(reversed(shape)), np.dtype(np.float32), nbytes_of(shape, type_name),
                          raw_dtype=QT[type_name])
    paths = _paths(w, Path(path))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    data_sizes = [sum(gguf.GGUFWriter.ggml_pad(ti.nbytes, w.data_alignment) for ti in part.values())
                  for part in w.tensors]
    for fout in w.fout:
        w.write_padding(fout, fout.tell())
    w.close()
    if full_size:
        for p, data in zip(paths, data_sizes):
            with open(p, "r+b") as fh:
                fh.truncate(p.stat().st_size + data)  # sparse: the zeros take no disk
    return paths


def header_and_size(spec: Spec, tmp_dir) -> tuple[bytes, int]:
    """The header bytes of ``spec`` and the size of the whole file, for ``hubserver.LazyFile(head, size)``."""
    path = Path(tmp_dir) / f"head-{id(spec)}.gguf"
    (p,) = write_header_only(path, spec.metadata, spec.tensors, arch=spec.arch)
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(_header_len(p))
    p.unlink()
    return head, size


def _header_len(p: Path) -> int:
    """Where the data section starts, by the gguf package's reader."""
    return gguf.GGUFReader(p).data_offset


# ---------------------------------------------------------------- models


def _tokenizer(md: dict, vocab: int, with_tokens: bool) -> None:
    md["tokenizer.ggml.model"] = "gpt2"
    if with_tokens:
        md["tokenizer.ggml.tokens"] = [f"t{i}" for i in range(vocab)]
    else:
        md[f"{md['general.architecture']}.vocab_size"] = vocab


def _dense_layer(i: int, n_embd: int, q_dim: int, kv_dim: int, n_ff: int, wt: str) -> list:
    b = f"blk.{i}"
    return [(f"{b}.attn_norm.weight", (n_embd,), "F32"),
            (f"{b}.attn_q.weight", (n_embd, q_dim), wt),
            (f"{b}.attn_k.weight", (n_embd, kv_dim), wt),
            (f"{b}.attn_v.weight", (n_embd, kv_dim), wt),
            (f"{b}.attn_output.weight", (q_dim, n_embd), wt),
            (f"{b}.ffn_norm.weight", (n_embd,), "F32"),
            (f"{b}.ffn_gate.weight", (n_embd, n_ff), wt),
            (f"{b}.ffn_up.weight", (n_embd, n_ff), wt),
            (f"{b}.ffn_down.weight", (n_ff, n_embd), wt)]


def _file_type(wt: str) -> int:
    names = {"F32": "ALL_F32", "F16": "MOSTLY_F16", "BF16": "MOSTLY_BF16", "Q4_K": "MOSTLY_Q4_K_M",
             "Q5_K": "MOSTLY_Q5_K_M", "Q3_K": "MOSTLY_Q3_K_M"}
    return int(gguf.LlamaFileType[names.get(wt, f"MOSTLY_{wt}")])


def llama(*, n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, vocab=128, ctx=256, wt="Q8_0",
          with_tokens=True, file_type: int | None = None, name="tiny-llama") -> Spec:
    """A Llama (GQA: n_head_kv < n_head) as convert_hf_to_gguf.py's LlamaModel writes it."""
    head_dim = n_embd // n_head
    md = {"general.architecture": "llama", "general.name": name,
          "llama.block_count": n_layer, "llama.context_length": ctx, "llama.embedding_length": n_embd,
          "llama.feed_forward_length": n_ff, "llama.attention.head_count": n_head,
          "llama.attention.head_count_kv": n_head_kv, "llama.rope.dimension_count": head_dim,
          "llama.rope.freq_base": 500000.0, "llama.attention.layer_norm_rms_epsilon": 1e-5,
          "general.file_type": _file_type(wt) if file_type is None else file_type,
          "general.quantization_version": 2}
    _tokenizer(md, vocab, with_tokens)
    tensors = [("token_embd.weight", (n_embd, vocab), wt)]
    for i in range(n_layer):
        tensors += _dense_layer(i, n_embd, n_head * head_dim, n_head_kv * head_dim, n_ff, wt)
    tensors += [("output_norm.weight", (n_embd,), "F32"), ("output.weight", (n_embd, vocab), wt)]
    return Spec("llama", md, tensors)


def qwen2(*, n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=128, vocab=128, ctx=256, wt="Q8_0",
          with_tokens=True) -> Spec:
    """Qwen2: q/k/v carry biases (blk.N.attn_q.bias ...)."""
    head_dim = n_embd // n_head
    md = {"general.architecture": "qwen2", "general.name": "tiny-qwen2",
          "qwen2.block_count": n_layer, "qwen2.context_length": ctx, "qwen2.embedding_length": n_embd,
          "qwen2.feed_forward_length": n_ff, "qwen2.attention.head_count": n_head,
          "qwen2.attention.head_count_kv": n_head_kv, "qwen2.rope.freq_base": 1000000.0,
          "qwen2.attention.layer_norm_rms_epsilon": 1e-6, "general.file_type": _file_type(wt)}
    _tokenizer(md, vocab, with_tokens)
    tensors = [("token_embd.weight", (n_embd, vocab), wt)]
    kv_dim = n_head_kv * head_dim
    for i in range(n_layer):
        layer = _dense_layer(i, n_embd, n_head * head_dim, kv_dim, n_ff, wt)
        layer[2:2] = [(f"blk.{i}.attn_q.bias", (n_head * head_dim,), "F32"),
                      (f"blk.{i}.attn_k.bias", (kv_dim,), "F32"),
                      (f"blk.{i}.attn_v.bias", (kv_dim,), "F32")]
        tensors += layer
    tensors += [("output_norm.weight", (n_embd,), "F32"), ("output.weight", (n_embd, vocab), wt)]
    return Spec("qwen2", md, tensors)


def gemma2(*, n_layer=2, n_embd=64, n_head=4, n_head_kv=2, head_dim=32, n_ff=128, vocab=128, ctx=512,
           window=128, wt="Q8_0", with_tokens=True) -> Spec:
    """Gemma 2: sliding-window layers, attention and final logit soft-capping, explicit key/value length,
    post-attention/post-FFN norms, tied embeddings (no output.weight)."""
    md = {"general.architecture": "gemma2", "general.name": "tiny-gemma2",
          "gemma2.block_count": n_layer, "gemma2.context_length": ctx, "gemma2.embedding_length": n_embd,
          "gemma2.feed_forward_length": n_ff, "gemma2.attention.head_count": n_head,
          "gemma2.attention.head_count_kv": n_head_kv, "gemma2.attention.key_length": head_dim,
          "gemma2.attention.value_length": head_dim, "gemma2.attention.sliding_window": window,
          "gemma2.attn_logit_softcapping": 50.0, "gemma2.final_logit_softcapping": 30.0,
          "gemma2.attention.layer_norm_rms_epsilon": 1e-6, "general.file_type": _file_type(wt)}
    _tokenizer(md, vocab, with_tokens)
    tensors = [("token_embd.weight", (n_embd, vocab), wt)]
    for i in range(n_layer):
        layer = _dense_layer(i, n_embd, n_head * head_dim, n_head_kv * head_dim, n_ff, wt)
        layer += [(f"blk.{i}.post_attention_norm.weight", (n_embd,), "F32"),
                  (f"blk.{i}.post_ffw_norm.weight", (n_embd,), "F32")]
        tensors += layer
    tensors += [("output_norm.weight", (n_embd,), "F32")]
    return Spec("gemma2", md, tensors)


def qwen3moe(*, n_layer=2, n_embd=64, n_head=4, n_head_kv=2, head_dim=32, n_ff_exp=64, n_expert=4,
             n_expert_used=2, vocab=128, ctx=256, wt="Q8_0", with_tokens=True) -> Spec:
    """Qwen3-MoE: experts stacked in ffn_{gate,up,down}_exps ([n_embd, n_ff_exp, n_expert] in ggml order),
    the router ffn_gate_inp, q/k norms."""
    md = {"general.architecture": "qwen3moe", "general.name": "tiny-qwen3moe",
          "qwen3moe.block_count": n_layer, "qwen3moe.context_length": ctx, "qwen3moe.embedding_length": n_embd,
          "qwen3moe.feed_forward_length": n_ff_exp * 3, "qwen3moe.attention.head_count": n_head,
          "qwen3moe.attention.head_count_kv": n_head_kv, "qwen3moe.attention.key_length": head_dim,
          "qwen3moe.attention.value_length": head_dim, "qwen3moe.expert_count": n_expert,
          "qwen3moe.expert_used_count": n_expert_used, "qwen3moe.expert_feed_forward_length": n_ff_exp,
          "qwen3moe.attention.layer_norm_rms_epsilon": 1e-6, "general.file_type": _file_type(wt)}
    _tokenizer(md, vocab, with_tokens)
    q_dim, kv_dim = n_head * head_dim, n_head_kv * head_dim
    tensors = [("token_embd.weight", (n_embd, vocab), wt)]
    for i in range(n_layer):
        b = f"blk.{i}"
        tensors += [(f"{b}.attn_norm.weight", (n_embd,), "F32"),
                    (f"{b}.attn_q.weight", (n_embd, q_dim), wt),
                    (f"{b}.attn_k.weight", (n_embd, kv_dim), wt),
                    (f"{b}.attn_v.weight", (n_embd, kv_dim), wt),
                    (f"{b}.attn_q_norm.weight", (head_dim,), "F32"),
                    (f"{b}.attn_k_norm.weight", (head_dim,), "F32"),
                    (f"{b}.attn_output.weight", (q_dim, n_embd), wt),
                    (f"{b}.ffn_norm.weight", (n_embd,), "F32"),
                    (f"{b}.ffn_gate_inp.weight", (n_embd, n_expert), "F32"),
                    (f"{b}.ffn_gate_exps.weight", (n_embd, n_ff_exp, n_expert), wt),
                    (f"{b}.ffn_up_exps.weight", (n_embd, n_ff_exp, n_expert), wt),
                    (f"{b}.ffn_down_exps.weight", (n_ff_exp, n_embd, n_expert), wt)]
    tensors += [("output_norm.weight", (n_embd,), "F32"), ("output.weight", (n_embd, vocab), wt)]
    return Spec("qwen3moe", md, tensors)


def mmproj(*, n_layer=1, n_embd=64, n_head=4, n_ff=128, image_size=64, patch=16, proj_dim=64,
           wt="F16") -> Spec:
    """A vision projector as convert_hf_to_gguf.py's MmprojModel writes it: general.type "mmproj",
    architecture "clip", clip.* keys, v.* (encoder) and mm.* (projector) tensors."""
    md = {"general.architecture": "clip", "general.type": "mmproj", "general.name": "tiny-mmproj",
          "clip.has_vision_encoder": True, "clip.projector_type": "gemma3",
          "clip.vision.image_size": image_size, "clip.vision.patch_size": patch,
          "clip.vision.embedding_length": n_embd, "clip.vision.feed_forward_length": n_ff,
          "clip.vision.projection_dim": proj_dim, "clip.vision.block_count": n_layer,
          "clip.vision.attention.head_count": n_head, "clip.vision.attention.layer_norm_epsilon": 1e-6,
          "general.file_type": _file_type(wt)}
    n_patches = (image_size // patch) ** 2
    tensors = [("v.patch_embd.weight", (patch, patch, 3, n_embd), wt),
               ("v.position_embd.weight", (n_embd, n_patches), "F32")]
    for i in range(n_layer):
        b = f"v.blk.{i}"
        tensors += [(f"{b}.ln1.weight", (n_embd,), "F32"), (f"{b}.attn_q.weight", (n_embd, n_embd), wt),
                    (f"{b}.attn_k.weight", (n_embd, n_embd), wt), (f"{b}.attn_v.weight", (n_embd, n_embd), wt),
                    (f"{b}.attn_out.weight", (n_embd, n_embd), wt), (f"{b}.ln2.weight", (n_embd,), "F32"),
                    (f"{b}.ffn_up.weight", (n_embd, n_ff), wt), (f"{b}.ffn_down.weight", (n_ff, n_embd), wt)]
    tensors += [("v.post_ln.weight", (n_embd,), "F32"), ("mm.0.weight", (n_embd, proj_dim), wt)]
    return Spec("clip", md, tensors)
