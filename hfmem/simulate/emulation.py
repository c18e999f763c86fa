"""Make fake CPU tensors take the memory path a CUDA run takes.

Fake CUDA tensors cannot be created on a CPU-only torch, so the model runs on fake CPU tensors. Three
things differ between CPU and CUDA at the level the tracker sees, and are emulated here:

* Allocation sizes: the CUDA caching allocator rounds every block up to 512 B (``kMinBlockSize`` in
  c10/cuda/CUDACachingAllocator.cpp); the tracker does this (``MemoryTracker(granularity=512)``).
* Attention: ``F.scaled_dot_product_attention`` picks a backend per device. On CUDA (torch's
  ``select_sdp_backend``, priority flash > memory-efficient > math): flash attention for fp16/bf16 without
  an explicit mask (GQA handled natively), memory-efficient attention for masks and fp32, the math path
  (which materializes the s x s scores) otherwise. The CPU picks differently, so the call is routed here to
  ``aten._scaled_dot_product_flash_attention`` / ``_scaled_dot_product_efficient_attention``, whose meta
  (shape) functions run on fake CPU tensors and whose autograd formulas give the CUDA backward ops.
* Dropout: on CUDA ``at::dropout`` calls the fused ``native_dropout`` (output + a 1-byte mask,
  aten/src/ATen/native/Dropout.cpp, ``is_fused_kernel_acceptable``); on CPU it builds a noise tensor of
  the input's dtype. ``F.dropout`` is routed to ``native_dropout``.

The two functions are patched on ``torch.nn.functional`` for the duration of a simulation only;
transformers looks them up there at call time (``torch.nn.functional.scaled_dot_product_attention`` in
transformers/integrations/sdpa_attention.py, ``nn.functional.dropout`` in the modeling files).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

CUDA_MIN_BLOCK = 512  # c10/cuda/CUDACachingAllocator.cpp: kMinBlockSize
_HALF = (torch.float16, torch.bfloat16)
_FLASH_MAX_HEAD_DIM = 256  # flash-attention 2 supports head dims up to 256 (torch sdp_utils.cpp)
_EFFICIENT_BIAS_ALIGN = 16  # mem-efficient attention wants the bias's last dim aligned to 16 elements


def _flash(query, key, value, dropout_p, is_causal, scale):
    out = torch.ops.aten._scaled_dot_product_flash_attention(
        query, key, value, dropout_p, is_causal, False, scale=scale)
    return out[0]


def _efficient(query, key, value, attn_mask, dropout_p, is_causal, scale):
    bias = attn_mask
    if bias is not None:
        if bias.dtype == torch.bool:  # sdp's convert_boolean_attn_mask: where(~mask, -inf, 0) in q's dtype
            bias = torch.where(bias.logical_not(), float("-inf"), 0.0).to(query.dtype)
        pad = -bias.shape[-1] % _EFFICIENT_BIAS_ALIGN
        if pad:  # sdp's pad_bias: a padded copy, then a view back to the real length
            bias = F.pad(bias, (0, pad))[..., : bias.shape[-1]]
        bias = bias.expand(query.shape[0], query.shape[1], query.shape[2], key.shape[2])
    need_lse = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    out = torch.ops.aten._scaled_dot_product_efficient_attention(
        query, key, value, bias, need_lse, dropout_p, is_causal, scale=scale)
    return out[0]


def _math(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa):
    out = torch.ops.aten._scaled_dot_product_attention_math(
        query, key, value, attn_mask, dropout_p, is_causal, None, scale=scale, enable_gqa=enable_gqa)
    return out[0]


def make_cuda_sdpa(force_flash: bool):
    """A drop-in for ``F.scaled_dot_product_attention`` that picks the kernel CUDA would pick
    (``force_flash``: always flash attention, for the "flash" attention setting)."""

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if torch.is_autocast_enabled("cpu"):
            # CUDA autocast lists SDPA as a lower-precision op: q, k and v are cast to the autocast dtype.
            dt = torch.get_autocast_dtype("cpu")
            query, key, value = (t.to(dt) for t in (query, key, value))
        gqa = enable_gqa and key.shape[-3] != query.shape[-3]
        head_ok = query.shape[-1] == value.shape[-1] <= _FLASH_MAX_HEAD_DIM
        if force_flash or (query.dtype in _HALF and attn_mask is None and head_ok):
            return _flash(query, key, value, dropout_p, is_causal, scale)
        if not gqa:
            return _efficient(query, key, value, attn_mask, dropout_p, is_causal, scale)
        return _math(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)

    return sdpa


def make_native_dropout(original):
    def dropout(input, p=0.5, training=True, inplace=False):
        if training and 0.0 < p < 1.0 and not inplace and input.numel() > 0:
            return torch.ops.aten.native_dropout(input, p, True)[0]
        return original(input, p, training, inplace)

    return dropout


@contextlib.contextmanager
def patched_functional(*, sdpa=None, dropout=None):
    """Replace ``F.scaled_dot_product_attention`` / ``F.dropout`` while the block runs."""
    saved = {"scaled_dot_product_attention": F.scaled_dot_product_attention, "dropout": F.dropout}
    try:
        if sdpa is not None:
            F.scaled_dot_product_attention = sdpa
        if dropout is not None:
            F.dropout = dropout
        yield
    finally:
        for name, fn in saved.items():
            setattr(F, name, fn)


@contextlib.contextmanager
def eager_input_semantics():
    """Where transformers would read tensor values, give the answer an eager run gives for the inputs a
    simulation feeds (random token ids, no attention mask, positions 0..n-1).

    ``masking_utils.find_packed_sequence_indices`` looks for packed sequences in ``position_ids`` when
    there is no cache and no attention mask (training, and any run with ``use_cache=False`` such as
    gradient checkpointing). It reads the values in eager mode and returns None for unpacked positions; on
    a fake tensor it cannot (transformers' ``is_tracing`` counts FakeTensor as tracing) and returns a
    packed-sequence mask, which makes every layer build and keep a b x 1 x s x s boolean mask that the
    real run never has. Our positions are never packed, so the eager answer, None, is returned directly.
    """
    from transformers import masking_utils

    original = masking_utils.find_packed_sequence_indices
    masking_utils.find_packed_sequence_indices = lambda position_ids: None
    try:
        yield
    finally:
        masking_utils.find_packed_sequence_indices = original


def gpu_patches(*, gpu_emulation: bool, attn: str):
    """The patches for one simulation: CUDA's SDPA choice and dropout when emulating a GPU; the flash op
    whenever the "flash" attention setting is asked for."""
    sdpa = make_cuda_sdpa(force_flash=attn == "flash") if (gpu_emulation or attn == "flash") else None
    dropout = make_native_dropout(F.dropout) if gpu_emulation else None
    return patched_functional(sdpa=sdpa, dropout=dropout)
