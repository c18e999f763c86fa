"""What a measured run does, from the settings of an estimate: a plain JSON-able dict the runner (a child
process) executes. Pure: no torch. A setting the one-process run cannot reproduce is refused here with a
``SettingsError`` naming it (the CLI shows its flag), before anything starts on the GPU.

Training (``plan_train``): the model class, attention implementation and dtype the estimate assumes; LoRA /
QLoRA through PEFT (adapters in fp32 unless an adapter dtype says otherwise, PEFT's
``autocast_adapter_dtype=True``); QLoRA's base through bitsandbytes' ``Linear4bit`` (PEFT's and TRL's recipes
call ``prepare_model_for_kbit_training``); gradient checkpointing reentrant or not; the optimizer and its
kernel; ``grad_accum`` micro-batches; DeepSpeed ZeRO on one GPU. Inference (``plan_infer``): transformers'
prefill into a DynamicCache and ``new_tokens`` one-token decode steps, 16/32-bit or bitsandbytes weights.
"""

from __future__ import annotations

from ..errors import SettingsError
from ..vocab import canonical_dtype

ITERATIONS = 2  # step 2 is the steady state: the optimizer states exist from step 1 on (as hfmem.simulate)
DTYPE_OF_PRECISION = {"fp32": "float32", "amp-bf16": "float32", "amp-fp16": "float32", "bf16": "bfloat16",
                      "fp16": "float16", "deepspeed-bf16": "bfloat16", "deepspeed-fp16": "float16",
                      "deepspeed-mixed": "bfloat16"}
AMP_OF_PRECISION = {"amp-bf16": "bfloat16", "amp-fp16": "float16"}
BNB_4BIT = {"nf4": ("nf4", False), "nf4-dq": ("nf4", True), "fp4": ("fp4", False), "fp4-dq": ("fp4", True)}
FLOAT_WEIGHTS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
ONE_GPU = "hfmem measure runs one process on one GPU"


def _refuse(setting: str, why: str, hint: str | None = None) -> None:
    raise SettingsError(f"{setting}: {why}", setting=setting, hint=hint)


def _dtype(value, default: str) -> str:
    return canonical_dtype(value) if value else default


def plan_train(settings, *, rlhf: str | None = None) -> dict:
    """The run for a ``TrainSettings`` (an estimate's resolved ``settings``: attention filled in).

    The recipe defaults are the ones the estimate resolved (TrainSettings.prepare_kbit_on, adapter_width,
    bnb_compute), so the run is the one the estimate describes."""
    s = settings
    if rlhf:
        _refuse("rlhf", f"{ONE_GPU}: an RLHF step with several models is not measured",
                "measure the policy's own training step without --rlhf")
    if s.gpus != 1 or s.tp != 1 or s.pp != 1:
        _refuse("gpus", f"{ONE_GPU}; {s.gpus} GPUs (tp {s.tp}, pp {s.pp}) need a launcher such as torchrun",
                "measure with --gpus 1, or run your script under torchrun and read torch.cuda.max_memory_allocated")
    if s.fsdp:
        _refuse("fsdp", f"{ONE_GPU}: FSDP shards across processes", "leave --fsdp out")
    if s.eval_generate_batch or s.eval_generate_tokens:
        _refuse("eval_generate", "an evaluation that generates is not run by hfmem measure", "leave it out")
    if s.full_logits_metrics:
        _refuse("full_logits_metrics", "an evaluation that keeps every logit is not run by hfmem measure",
                "leave it out")
    if s.images:
        _refuse("images", "images per sequence need the model's processor, which hfmem measure does not run",
                "measure the language model's step without --images")
    weights = DTYPE_OF_PRECISION.get(s.precision)
    if weights is None:
        _refuse("precision", f"{s.precision!r} is not measured")
    plan = {
        "mode": "train", "weights_dtype": weights, "amp": AMP_OF_PRECISION.get(s.precision),
        "grad_scaler": s.precision == "amp-fp16", "attn": s.attn or "sdpa", "batch": int(s.batch),
        "seq": int(s.seq), "target_seq": s.target_seq, "image_size": s.image_size,
        "audio_seconds": s.audio_seconds, "grad_accum": int(s.grad_accum), "grad_ckpt": bool(s.grad_ckpt),
        "reentrant": bool(s.reentrant), "optimizer": s.optimizer, "adamw_impl": s.adamw_impl,
        "optimizer_in_backward": bool(s.optimizer_in_backward), "iterations": ITERATIONS,
        "lora": None, "qlora": None, "deepspeed": None,
    }
    if s.method in ("lora", "qlora"):
        targets = s.lora_targets
        plan["lora"] = {"r": int(s.lora_rank), "alpha": 2 * int(s.lora_rank),
                        "targets": list(targets) if isinstance(targets, (list, tuple)) else targets,
                        "dropout": float(s.lora_dropout), "dora": bool(s.dora),
                        "adapter_dtype": _dtype(s.adapter_width, "float32")}
    if s.method == "qlora":
        if s.qlora_format not in BNB_4BIT:
            _refuse("qlora_format", f"{s.qlora_format!r} is not a bitsandbytes 4-bit format")
        quant_type, double = BNB_4BIT[s.qlora_format]
        plan["qlora"] = {"quant_type": quant_type, "double_quant": double,
                         "compute_dtype": canonical_dtype(s.bnb_compute),
                         "quant_storage": "uint8" if s.bnb_quant_storage == "uint8"
                         else canonical_dtype(s.bnb_quant_storage),
                         "prepare_kbit": s.prepare_kbit_on}
    if s.zero is not None:
        from ..plan.emit_train import deepspeed_dict  # the config `hfmem train --emit deepspeed` prints

        try:
            ds_config = deepspeed_dict(s, for_trainer=False)
        except ValueError as exc:
            raise SettingsError(f"zero: {exc}", setting="zero") from None
        plan["deepspeed"] = {"stage": int(s.zero), "offload_optimizer": bool(s.offload_optimizer),
                             "offload_param": bool(s.offload_param), "precision": s.precision, "config": ds_config}
    elif s.precision.startswith("deepspeed"):
        _refuse("zero", "deepspeed-* precisions run under DeepSpeed ZeRO", "add --zero 0-3")
    if s.optimizer not in ("adamw", "adamw-8bit", "paged-adamw-8bit", "sgd", "sgd-momentum", "adafactor"):
        _refuse("optimizer", f"{s.optimizer!r} is not measured (adamw, adamw-8bit, paged-adamw-8bit, sgd, "
                             "sgd-momentum and adafactor are)")
    return plan


def plan_infer(settings, estimate) -> dict:
    """The run for an ``InferenceSettings`` and its estimate (whose weight format, compute and KV dtypes and
    attention are resolved)."""
    s, e = settings, estimate
    if s.engine != "transformers":
        _refuse("engine", f"hfmem measure runs transformers' own generation, not {s.engine}",
                "measure vLLM with vLLM itself (its log prints the KV cache it allocated)")
    if s.tp != 1:
        _refuse("gpus", f"{ONE_GPU}; --gpus {s.tp} needs tensor parallelism across processes")
    if s.images:
        _refuse("images", "images per sequence need the model's processor, which hfmem measure does not run")
    if s.lora_rank:
        _refuse("lora_rank", "serving with unmerged LoRA adapters is not measured yet", "leave --lora-rank out")
    compute = _dtype(e.compute_dtype, "bfloat16")
    if _dtype(e.kv_dtype, compute) != compute:
        _refuse("kv_dtype", f"a {e.kv_dtype} KV cache under {compute} compute is not what transformers' "
                            "DynamicCache stores", "leave --kv-dtype at auto")
    fmt = e.weights_format
    quant = None
    if fmt in BNB_4BIT:
        quant_type, double = BNB_4BIT[fmt]
        quant = {"bits": 4, "quant_type": quant_type, "double_quant": double,
                 # transformers' BitsAndBytesConfig default bnb_4bit_compute_dtype is float32
                 # the estimate's resolved one (--bnb-compute-dtype, the checkpoint's, else float32)
                 "compute_dtype": _dtype(e.bnb_compute_dtype, "float32"),
                 "quant_storage": "uint8"}
    elif fmt == "int8":
        quant = {"bits": 8}
    elif fmt in FLOAT_WEIGHTS:
        compute = FLOAT_WEIGHTS[fmt] if fmt == "fp32" else compute
    else:
        _refuse("weights_format", f"{fmt} weights are not built from random values by hfmem measure "
                                  "(16/32-bit and bitsandbytes nf4/fp4/int8 are)")
    return {"mode": "infer", "weights_dtype": compute, "attn": e.attn or "sdpa", "batch": int(s.batch),
            "context": int(s.context), "new_tokens": int(s.new_tokens), "logits": s.logits,
            "image_size": s.image_size, "audio_seconds": s.audio_seconds, "quant": quant}


def describe(plan: dict) -> str:
    """One line: what the run does (the record's ``setting``)."""
    if plan["mode"] == "infer":
        q = plan.get("quant")
        w = f"bnb-{q['bits']}bit" if q else plan["weights_dtype"]
        return f"infer b{plan['batch']} c{plan['context']} +{plan['new_tokens']} {plan['attn']} {w}"
    parts = [f"train b{plan['batch']} s{plan['seq']}", plan["attn"], plan["weights_dtype"]]
    if plan["amp"]:
        parts.append(f"amp-{plan['amp']}")
    if plan["qlora"]:
        parts.append(f"qlora-{plan['qlora']['quant_type']} r{plan['lora']['r']}")
    elif plan["lora"]:
        parts.append(f"lora r{plan['lora']['r']}")
    if plan["grad_ckpt"]:
        parts.append("ckpt-reentrant" if plan["reentrant"] else "ckpt")
    if plan["grad_accum"] > 1:
        parts.append(f"accum{plan['grad_accum']}")
    if plan["deepspeed"]:
        parts.append(f"zero{plan['deepspeed']['stage']}")
    parts.append(plan["optimizer"] + (f"-{plan['adamw_impl']}" if plan["optimizer"] == "adamw" else ""))
    return " ".join(parts)
