"""Published closed forms for GPU memory, as pure functions: integers and floats in, bytes out.

No I/O, no torch, no transformers. Every function names its unit in its name and cites where its form
comes from; the numbers in the docstrings are the sources' own worked values, which
tests/test_validation.py checks.

These are the "analytic estimate" that benchmarks/validate.py compares against the simulation
(hfmem.simulate): they are the textbook figures people use today, not hfmem's own estimators, and the
validation report shows how far each is from the real model code. ``calibrated_activation_bytes_per_layer``
is Korthikanti's form with coefficients measured by simulation (hfmem/data/calibration.json) instead of
the paper's 34 and 5.

Symbols (Korthikanti et al. 2022, §4): s sequence length, b micro-batch, h hidden size, a attention heads,
L layers, v vocabulary size.
"""

from __future__ import annotations

from ..errors import SettingsError

# -- model states (weights, gradients, optimizer) -------------------------------------------------------

# Bytes per parameter as (weights, gradients, optimizer states).
#
# * "mixed_adam": ZeRO (Rajbhandari et al., arXiv 1910.02054) §3.1: fp16 parameters 2Ψ, fp16 gradients
#   2Ψ, and K = 12 bytes of optimizer state (fp32 master copy, momentum, variance): 16Ψ in all.
# * "bf16_adamw": torch.optim.AdamW on bf16/fp16 parameters keeps exp_avg and exp_avg_sq in the
#   parameter's dtype (torch/optim/adamw.py, ``torch.zeros_like(p, memory_format=...)``): 2 + 2 + 2·2 =
#   8 B ("pure bf16", as torchtune and the PEFT MetaMathQA full fine-tune run it).
# * "fp32_adamw": the same on fp32 parameters (also what torch.autocast AMP trains: fp32 weights, fp32
#   gradients, fp32 moments): 4 + 4 + 2·4 = 16 B (stas00/ml-engineering, "AdamW 8 B/param (2 fp32 states)").
# * "frozen_bf16" / "frozen_fp32": weights only, no gradient, no state (the frozen base of LoRA).
MODEL_STATE_BYTES_PER_PARAM: dict[str, tuple[int, int, int]] = {
    "mixed_adam": (2, 2, 12),
    "bf16_adamw": (2, 2, 4),
    "fp32_adamw": (4, 4, 8),
    "frozen_bf16": (2, 0, 0),
    "frozen_fp32": (4, 0, 0),
}


def model_state_bytes_per_param(regime: str) -> int:
    """Weights + gradients + optimizer states per parameter: 16 (mixed_adam, ZeRO §3.1), 8 (bf16_adamw),
    16 (fp32_adamw)."""
    try:
        return sum(MODEL_STATE_BYTES_PER_PARAM[regime])
    except KeyError:
        raise SettingsError(f"unknown regime {regime!r} (use one of {', '.join(MODEL_STATE_BYTES_PER_PARAM)})") from None


def model_state_bytes(num_params: int, regime: str) -> int:
    """ZeRO §3.1's (2 + 2 + K)Ψ generalised to the regimes above: ``model_state_bytes(7.5e9, 'mixed_adam')``
    = 120 GB, the paper's Figure 1 baseline."""
    return int(num_params) * model_state_bytes_per_param(regime)


def zero_model_state_bytes_per_device(num_params: int, stage: int, data_parallel: int, k_bytes: int = 12) -> float:
    """Per-device model states under ZeRO (§5, Figure 1): stage 0 (2+2+K)Ψ; 1 (P_os) 4Ψ + KΨ/N_d;
    2 (P_os+g) 2Ψ + (2+K)Ψ/N_d; 3 (P_os+g+p) (2+2+K)Ψ/N_d. For Ψ = 7.5B, N_d = 64: 120, 31.4, 16.6, 1.9 GB."""
    p, n = float(num_params), float(data_parallel)
    if stage == 0:
        return (4 + k_bytes) * p
    if stage == 1:
        return 4 * p + k_bytes * p / n
    if stage == 2:
        return 2 * p + (2 + k_bytes) * p / n
    if stage == 3:
        return (4 + k_bytes) * p / n
    raise SettingsError("ZeRO stage must be 0, 1, 2 or 3")


def adamw_step_temporary_bytes(trainable_param_bytes: int, impl: str = "foreach") -> int:
    """What torch's AdamW allocates on top of the live model states during ``step()``.

    * foreach (the CUDA default): ``_multi_tensor_adam`` computes ``exp_avg_sq_sqrt =
      torch._foreach_sqrt(exp_avg_sqs)``, one temporary per parameter, all alive together: 1× the
      trainable parameters' bytes (tests/test_simulate.py checks the step's peak, 5P with foreach).
    * fused: one in-place kernel, nothing (``_fused_adamw_``).
    * forloop: a couple of one-parameter temporaries, bounded by the largest parameters; returned as 0
      here (it is below any of the other terms for a multi-layer model).
    """
    if impl == "foreach":
        return int(trainable_param_bytes)
    if impl in ("fused", "forloop"):
        return 0
    raise SettingsError(f"unknown AdamW implementation {impl!r} (foreach, fused or forloop)")


# -- activations (Korthikanti et al. 2022, arXiv 2205.05198) ----------------------------------------------

def korthikanti_attention_ratio(heads: int, seq: int, hidden: int) -> float:
    """The 5as/h term of Eq. 1 (softmax output 2as²b, its dropout mask as²b, dropout output 2as²b, per
    sbh). The paper's worked values: 80 for GPT-3 (a 96, s 2048, h 12288), 64 for MT-NLG (a 128, h 20480)."""
    return 5.0 * heads * seq / hidden


def korthikanti_activation_bytes_per_layer(seq: int, batch: int, hidden: int, heads: int) -> float:
    """Eq. 1 (Table 2, no parallelism): activation bytes stored by one transformer layer for the backward
    pass, sbh(34 + 5as/h). Assumes 16-bit activations, 1-byte dropout masks, a 4h GeLU MLP, two LayerNorms;
    the 5as/h term is the materialised s×s attention (eager attention)."""
    return seq * batch * hidden * (34.0 + korthikanti_attention_ratio(heads, seq, hidden))


def selective_recompute_activation_bytes_per_layer(seq: int, batch: int, hidden: int) -> float:
    """Eq. 6 per layer (t = 1): 34·sbh. The s² attention terms are recomputed (selective recompute), which
    is also what flash / memory-efficient attention store: no s×s tensor. The EleutherAI cookbook uses the
    same 34 = 16·2 + 2 (calc_transformer_mem.py)."""
    return 34.0 * seq * batch * hidden


def full_recompute_activation_bytes_per_layer(seq: int, batch: int, hidden: int) -> float:
    """Table 2, full recompute: only the layer input is kept, 2sbh (one 16-bit hidden state)."""
    return 2.0 * seq * batch * hidden


def fp32_logits_bytes(batch: int, seq: int, vocab: int) -> int:
    """fp32 logits for the loss, 4·b·s·v (Korthikanti §4.1's extra term 4sbh/t·(1 + v/h) contains them as
    4sbv/t; stas00: "16 GiB of fp32 logits (4·s·V)" for Llama-3.1-8B at 32k)."""
    return 4 * int(batch) * int(seq) * int(vocab)


def calibrated_activation_bytes_per_layer(seq: int, batch: int, hidden: int, heads: int,
                                          linear_coefficient: float, attention_coefficient: float = 0.0) -> float:
    """Eq. 1's form sbh(c₀ + c₁·as/h) with coefficients measured for one architecture and attention
    implementation (hfmem/data/calibration.json: ``fit.linear`` and ``fit.attention``). With the paper's
    c₀ = 34, c₁ = 5 it is ``korthikanti_activation_bytes_per_layer``."""
    return seq * batch * hidden * (linear_coefficient + attention_coefficient * heads * seq / hidden)


# -- KV cache ---------------------------------------------------------------------------------------------

def head_dim_of(hidden: int, heads: int, head_dim: int | None = None) -> int:
    """``head_dim`` when the config has one, else hidden / heads (transformers' attention modules)."""
    return int(head_dim) if head_dim else int(hidden) // int(heads)


def kv_cache_bytes_per_token(layers: int, kv_heads: int, head_dim: int, bytes_per_element: int = 2) -> int:
    """2 (K and V) · L · n_kv · d_head · bytes. vLLM paper (Kwon et al. 2023) §3: OPT-13B
    2 × 5120 × 40 × 2 = 819,200 B ("800 KB"); Llama-2-70B (80 L, 8 KV heads, 128) 327,680;
    Llama-3-8B (32 L, 8, 128) 131,072."""
    return 2 * int(layers) * int(kv_heads) * int(head_dim) * int(bytes_per_element)


def mla_latent_kv_bytes_per_token(layers: int, kv_lora_rank: int, rope_head_dim: int,
                                  bytes_per_element: int = 2) -> int:
    """Multi-head latent attention caches the compressed latent and the decoupled RoPE key:
    (d_c + d_h^R)·l elements (DeepSeek-V2, arXiv 2405.04434, Table 1). V3 (61 L, 512 + 64), bf16:
    70,272 B per token."""
    return (int(kv_lora_rank) + int(rope_head_dim)) * int(layers) * int(bytes_per_element)


def sliding_window_tokens(tokens: int, window: int | None) -> int:
    """Tokens a sliding-window layer keeps: a rolling buffer of W (Mistral 7B paper, "on a sequence
    length of 32k tokens, this reduces the cache memory usage by 8x"); all of them without a window."""
    return int(tokens) if not window else min(int(tokens), int(window))
