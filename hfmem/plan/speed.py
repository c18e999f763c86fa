"""Step time of a training setting relative to another: the factors the advisor ranks plans and prices
remedies by.

Speed factors (``SLOWDOWN``) are step-time multipliers. Where a paper gives a number it is cited; every
other factor is labelled rough (an order of magnitude to rank plans by, not a prediction).
"""

from __future__ import annotations

import math

from ..scenarios.finetune import TrainSettings

# Step-time factors and where they come from ("rough" where no measurement backs the number).
SLOWDOWN = {
    "grad_ckpt": (1.35, "Korthikanti et al. 2022 (arXiv 2205.05198): full activation recomputation costs "
                        "30-40% more compute (Table 4: +39% for a 22B model)"),
    "zero3": (1.15, "rough; ZeRO paper (arXiv 1910.02054) §7: ZeRO-1 and ZeRO-2 move the same volume as DDP's "
                    "all-reduce, ZeRO-3 1.5x it; how much of that shows in step time depends on the "
                    "interconnect"),
    "fsdp_full": (1.15, "rough; FSDP FULL_SHARD communicates like ZeRO-3 (1.5x DDP's volume, ZeRO paper §7)"),
    "offload_optimizer": (1.5, "rough; optimizer offload is PCIe-bound: gradients go to the CPU and "
                               "updated weights come back every step, and the CPU runs the Adam step "
                               "(ZeRO-Offload hides part of it at large batch)"),
    "offload_param": (1.5, "rough; parameter offload streams every layer's weights over PCIe in forward "
                           "and backward"),
    "lora": (0.8, "LoRA paper (Hu et al., arXiv 2106.09685): 25% higher training throughput than full "
                  "fine-tuning of GPT-3 175B (1 / 1.25 = 0.8)"),
    "qlora": (1.04, "rough; LoRA's 0.8 times about 1.3 for dequantizing the 4-bit base in every forward and "
                    "backward (QLoRA, Dettmers et al. 2023: slower than LoRA, no single published factor)"),
    "microbatch": (0.05, "rough; about 5% per halving of the micro-batch: smaller matrix multiplies use the "
                         "GPU less well (same global batch through accumulation)"),
    "tp": (0.1, "rough; about 10% per doubling of tensor parallelism inside an NVLink node (two all-reduces "
                "per layer in forward and in backward); much more across nodes"),
    "pp": (None, "Narayanan et al. 2021 (arXiv 2104.04473): the 1F1B pipeline bubble is (p-1)/m of the ideal "
                 "step with m micro-batches per step"),
}


def _factor(s: TrainSettings) -> tuple[float, list[tuple[str, float, str]]]:
    """Absolute step-time factor of the settings' speed-relevant choices (micro-batch aside)."""
    parts: list[tuple[str, float, str]] = []

    def add(key: str, label: str, value: float | None = None):
        f, src = SLOWDOWN[key]
        parts.append((label, f if value is None else value, src))

    if s.grad_ckpt:
        add("grad_ckpt", "activation checkpointing")
    if s.zero == 3:
        add("zero3", "ZeRO-3")
    if s.fsdp in ("full_shard", "hybrid_shard"):
        add("fsdp_full", f"FSDP {s.fsdp}")
    if s.offload_optimizer:
        add("offload_optimizer", "optimizer offload")
    if s.offload_param:
        add("offload_param", "parameter offload")
    if s.method == "lora":
        add("lora", "LoRA")
    if s.method == "qlora":
        add("qlora", "QLoRA")
    if s.tp > 1:
        add("tp", f"tensor parallel {s.tp}", 1 + SLOWDOWN["tp"][0] * math.log2(s.tp))
    if s.pp > 1:
        add("pp", f"pipeline parallel {s.pp}", 1 + (s.pp - 1) / max(1, s.grad_accum))
    return math.prod(p[1] for p in parts), parts


def slowdown(base: TrainSettings, s: TrainSettings) -> tuple[float, list[str], str | None]:
    """Step time of ``s`` relative to ``base``: (factor, the parts that differ in words, their sources)."""
    fb, pb = _factor(base)
    fs, ps = _factor(s)
    factor = fs / fb
    old = {p[0]: p for p in pb}
    new = {p[0]: p for p in ps}
    words, sources = [], []
    for label, (_, f, src) in new.items():
        if label not in old or old[label][1] != f:
            words.append(f"{label} x{f:.2f}")
            sources.append(src)
    for label, (_, f, src) in old.items():
        if label not in new:
            words.append(f"no {label} (/{f:.2f})")
            sources.append(src)
    if s.batch < base.batch:
        k, src = SLOWDOWN["microbatch"]
        f = 1 + k * math.log2(base.batch / s.batch)
        factor *= f
        words.append(f"micro-batch {base.batch} -> {s.batch} x{f:.2f}")
        sources.append(src)
    return round(factor, 4), words, "; ".join(dict.fromkeys(sources)) or None
