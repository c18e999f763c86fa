"""Training configurations consistent with a fine-tuning plan (``hfmem train --emit deepspeed|accelerate|peft``).

Pure functions over ``TrainSettings``: strings (JSON, YAML, Python) and dicts, no file I/O, no torch. Every
value comes from the settings the estimate used; where a library fills a value itself the output says so.

* ``deepspeed_config`` -- a DeepSpeed JSON config. ZeRO knobs that change memory are written out with the
  DeepSpeed defaults the estimate assumed (``sharding.DS_*``, ``sharding.ZeroConfig``), *not* as "auto": HF
  Trainer fills ``reduce_bucket_size`` / ``stage3_prefetch_bucket_size`` / ``stage3_param_persistence_threshold``
  "auto" from hidden_size (``transformers.integrations.deepspeed.HfTrainerDeepSpeedConfig
  .trainer_config_finalize``), which is not what the plan counted -- unless the plan was made with that
  rule (``--zero-reduce-bucket auto`` etc.), then those keys are written "auto". Otherwise "auto" is used only for values the plan does
  not depend on and the Trainer fills (``trainer_config_process``): ``gradient_clipping`` (max_grad_norm) and the
  optimizer's ``lr`` / ``betas`` / ``eps`` / ``weight_decay``. ``for_trainer=False`` writes TrainingArguments'
  defaults there instead, for a plain ``deepspeed.initialize``.
* ``accelerate_config`` -- an ``accelerate launch --config_file`` YAML (accelerate 1.15 ``ClusterConfig``;
  nested keys are ``accelerate launch`` argument names, which is how ``_validate_launch_command`` reads them).
* ``peft_config`` -- a Python snippet: ``LoraConfig`` (+ ``BitsAndBytesConfig`` for QLoRA) and the
  ``from_pretrained`` / ``TrainingArguments`` keyword arguments.
* ``trainer_args`` / ``model_load_kwargs`` -- the HF ``TrainingArguments`` and ``from_pretrained`` keyword
  arguments (also written into the accelerate and PEFT outputs).
* ``caveats`` -- where the emitted configuration runs differently from the plan; also written as comments
  into the YAML and Python outputs (JSON has none).

Settings a library cannot express raise ``ValueError`` with a one-line message.
"""

from __future__ import annotations

import json
import math
import re

from ..errors import SettingsError
from ..scenarios import sharding
from ..scenarios.finetune import TrainSettings
from ..vocab import canonical_dtype

# -- shared mappings ----------------------------------------------------------------------------------------

# hfmem optimizer -> transformers TrainingArguments.optim (transformers 5.24 training_args.OptimizerNames) and
# optim_args (trainer_optimizer._get_sgd reads momentum from optim_args).
_OPTIM = {
    "adamw-8bit": ("adamw_bnb_8bit", None),
    "paged-adamw-8bit": ("paged_adamw_8bit", None),
    "sgd": ("sgd", None),
    "sgd-momentum": ("sgd", "momentum=0.9"),
    "adafactor": ("adafactor", None),
    "lion": ("lion_32bit", None),
    "lion-8bit": ("lion_8bit", None),
}
_ADAMW = {"fused": "adamw_torch_fused", "foreach": "adamw_torch", "forloop": "adamw_torch"}
# bitsandbytes optimizers: CUDA only, no DeepSpeed CPU counterpart.
_BNB_OPTIMIZERS = ("adamw-8bit", "paged-adamw-8bit", "lion-8bit")
# torch optimizers that can step CPU tensors when DeepSpeed offloads the optimizer.
_TORCH_CPU_OPTIMIZERS = ("sgd", "sgd-momentum", "adafactor")
# TrainingArguments defaults (transformers 5.24): what the Trainer writes into DeepSpeed's "auto" values.
_TA_DEFAULTS = {"max_grad_norm": 1.0, "learning_rate": 5e-05, "adam_beta1": 0.9, "adam_beta2": 0.999,
                "adam_epsilon": 1e-08, "weight_decay": 0.0}
_ATTN = {"sdpa": "sdpa", "flash": "flash_attention_2", "eager": "eager"}
_BNB_QUANT = {"nf4": ("nf4", False), "nf4-dq": ("nf4", True), "fp4": ("fp4", False), "fp4-dq": ("fp4", True)}
_FP16_FAMILY = ("fp16", "amp-fp16", "deepspeed-fp16", "deepspeed-mixed")


def _validated(settings: TrainSettings) -> TrainSettings:
    return settings.validate()


def _deepspeed_half(s: TrainSettings) -> str | None:
    """DeepSpeed's 16-bit mode for the plan's precision: "bf16", "fp16" or None (fp32)."""
    if s.precision == "fp32":
        return None
    return "fp16" if s.precision in _FP16_FAMILY else "bf16"


def _torch_half(s: TrainSettings) -> str | None:
    """TrainingArguments / accelerate mixed precision outside DeepSpeed: "bf16", "fp16" or None.

    amp-* is torch.autocast over fp32 weights (bf16=True / fp16=True). Pure bf16 loads the model in bfloat16
    and keeps bf16=True (autocast over bf16 weights changes nothing). Pure fp16 full fine-tuning runs without
    fp16=True: the Trainer's GradScaler cannot unscale fp16 gradients ("Attempting to unscale FP16
    gradients"); LoRA on an fp16 base keeps fp32 adapters, whose gradients GradScaler handles."""
    if s.zero is not None:
        return _deepspeed_half(s)
    if s.precision in ("amp-bf16", "bf16"):
        return "bf16"
    if s.precision == "amp-fp16":
        return "fp16"
    if s.precision == "fp16":
        return "fp16" if s.method != "full" else None
    return None


def _model_dtype(s: TrainSettings) -> str:
    """The dtype ``from_pretrained`` loads the model in, as the estimate counted it."""
    if s.method == "full":
        if s.precision in ("fp32", "amp-bf16", "amp-fp16"):
            return "float32"
    elif s.precision == "fp32":
        return "float32"
    return "float16" if s.precision in _FP16_FAMILY else "bfloat16"


def _needs_quant_storage(s: TrainSettings) -> bool:
    """QLoRA under ZeRO-3 / FSDP flattens the 4-bit base with the 16-bit parameters: bitsandbytes must store
    it in a float dtype (``bnb_4bit_quant_storage``; PEFT docs, "DeepSpeed/FSDP and QLoRA")."""
    return s.method == "qlora" and (s.zero == 3 or s.fsdp is not None)


# -- TrainingArguments / from_pretrained --------------------------------------------------------------------

def trainer_args(settings: TrainSettings, *, deepspeed_file: str | None = None) -> dict:
    """HF ``TrainingArguments`` keyword arguments for the plan (transformers 5.24 names).

    ``activation_checkpointing`` is transformers 5's name (``gradient_checkpointing`` is its deprecated
    alias); under FSDP it stays False and the accelerate config enables FSDP's own activation checkpointing
    (TrainingArguments warns against both). ``deepspeed_file``: add ``deepspeed=<file>`` (the
    ``deepspeed_config`` output) for runs that are not started by ``accelerate launch`` with the accelerate
    config. Attention is a model argument: see ``model_load_kwargs``."""
    s = _validated(settings)
    half = _torch_half(s)
    if s.optimizer == "adamw":
        optim, optim_args = _ADAMW[s.adamw_impl], None
    else:
        optim, optim_args = _OPTIM[s.optimizer]
    args: dict = {
        "per_device_train_batch_size": s.batch,
        "gradient_accumulation_steps": s.grad_accum,
        "bf16": half == "bf16",
        "fp16": half == "fp16",
        "activation_checkpointing": bool(s.grad_ckpt and not s.fsdp),
        "optim": optim,
    }
    if optim_args:
        args["optim_args"] = optim_args
    if deepspeed_file is not None:
        if s.zero is None:
            raise SettingsError("deepspeed_file given but the plan does not use DeepSpeed (no --zero)")
        args["deepspeed"] = deepspeed_file
    return args


def model_load_kwargs(settings: TrainSettings) -> dict:
    """``AutoModelForCausalLM.from_pretrained`` keyword arguments: ``dtype`` (a torch dtype name, the width the
    estimate counted), ``attn_implementation``; QLoRA adds ``quantization_config`` (``bnb_kwargs``)."""
    s = _validated(settings)
    # attn None (not chosen): attn_implementation=None, transformers' own default
    out: dict = {"dtype": _model_dtype(s), "attn_implementation": _ATTN[s.attn] if s.attn else None}
    if s.method == "qlora":
        out["quantization_config"] = bnb_kwargs(s)
    return out


def bnb_kwargs(settings: TrainSettings) -> dict:
    """``BitsAndBytesConfig`` keyword arguments for QLoRA (dtypes as torch dtype names)."""
    s = _validated(settings)
    if s.method != "qlora":
        raise SettingsError("BitsAndBytesConfig is for --method qlora")
    quant, double = _BNB_QUANT[s.qlora_format]
    dtype = _model_dtype(s)
    # the plan's own bitsandbytes settings when given; else the model dtype, and a float storage where
    # FSDP / ZeRO-3 must flatten the base
    out = {"load_in_4bit": True, "bnb_4bit_quant_type": quant, "bnb_4bit_use_double_quant": double,
           "bnb_4bit_compute_dtype": canonical_dtype(s.bnb_compute_dtype) if s.bnb_compute_dtype else dtype}
    if s.bnb_quant_storage != "uint8":
        out["bnb_4bit_quant_storage"] = canonical_dtype(s.bnb_quant_storage)
    elif _needs_quant_storage(s):
        out["bnb_4bit_quant_storage"] = dtype
    return out


# -- caveats ------------------------------------------------------------------------------------------------

def caveats(settings: TrainSettings, kind: str) -> list[str]:
    """Where the configuration of ``kind`` (deepspeed, accelerate, peft) runs differently from the plan."""
    s = _validated(settings)
    out: list[str] = []
    uses_ds = s.zero is not None and kind in ("deepspeed", "accelerate")
    if uses_ds and s.method == "full" and not s.precision.startswith("deepspeed") and s.precision != "fp32":
        half = _deepspeed_half(s)
        out.append(f"DeepSpeed {half} keeps {half} parameters and gradients plus an fp32 master partition "
                   f"(hfmem's deepspeed-{half}), not {s.precision}'s layout; rerun the plan with --precision "
                   f"deepspeed-{half} for matching numbers")
    if uses_ds and s.optimizer in _TORCH_CPU_OPTIMIZERS and s.offload_optimizer:
        out.append(f"ZeRO-Offload with {s.optimizer}: zero_force_ds_cpu_optimizer is false so the torch optimizer "
                   "steps the CPU partition (otherwise accelerate swaps in DeepSpeedCPUAdam, with Adam's states)")
    if uses_ds and s.optimizer == "lion":
        out.append("DeepSpeed runs its own Lion (FusedLion, CPULion with offload); betas are DeepSpeed's defaults")
    if uses_ds and s.tp > 1:
        out.append(f"tensor parallel {s.tp} through DeepSpeed AutoTP (tensor_parallel.autotp_size, DeepSpeed >= "
                   f"0.16.4, ZeRO 0-2); train_batch_size is left to DeepSpeed (micro x accumulation x "
                   f"{s.data_parallel} data-parallel ranks): the HF Trainer would count all {s.gpus} processes")
    if s.gpus > s.gpus_per_node and kind == "accelerate":
        out.append("multi-node: run accelerate launch on every node with its machine_rank, main_process_ip and "
                   "main_process_port")
    if s.optimizer == "adamw" and s.adamw_impl == "forloop" and s.zero is None:
        out.append("TrainingArguments has no for-loop AdamW: adamw_torch is the foreach implementation on CUDA "
                   "(pass a torch.optim.AdamW(foreach=False) through Trainer(optimizers=...) for the plan's)")
    if s.optimizer == "lion" and s.zero is None:
        out.append("TrainingArguments' lion_32bit is bitsandbytes Lion (fp32 state); the plan counts "
                   "lion-pytorch (state in the parameter dtype, 2 x largest-tensor step temporaries)")
    if s.method == "full" and s.precision == "fp16" and s.zero is None:
        out.append("pure fp16 trains without loss scaling: the Trainer's GradScaler cannot unscale fp16 gradients")
    if s.method == "qlora" and kind == "peft" and not s.prepare_kbit_on:
        out.append("prepare_model_for_kbit_training is not called: it upcasts the 16-bit non-quantized weights "
                   "(embeddings, LM head, norms) to fp32, which the plan does not count")
    if s.fsdp and s.grad_ckpt and kind in ("accelerate", "peft"):
        out.append("activation checkpointing comes from FSDP (fsdp_activation_checkpointing), not from "
                   "TrainingArguments")
    if kind == "deepspeed" and s.grad_ckpt:
        out.append("activation checkpointing is a TrainingArguments setting (activation_checkpointing=True), "
                   "not a DeepSpeed key")
    return out


# -- DeepSpeed ----------------------------------------------------------------------------------------------

def _check_deepspeed(s: TrainSettings) -> None:
    if s.fsdp:
        raise SettingsError("DeepSpeed cannot express FSDP (--fsdp): use --emit accelerate")
    if s.zero is None:
        raise SettingsError("the plan does not use DeepSpeed: set --zero 0-3")
    if s.pp > 1:
        raise SettingsError("DeepSpeed pipeline parallelism needs a PipelineModule, not a config key: plan with --pp 1")
    if s.tp > 1 and s.zero == 3:
        raise SettingsError("DeepSpeed AutoTP training supports ZeRO stages 0-2, not 3")
    if s.offload_optimizer and s.optimizer in _BNB_OPTIMIZERS:
        raise SettingsError(f"ZeRO-Offload steps the optimizer on the CPU; bitsandbytes {s.optimizer} runs on CUDA only")


def deepspeed_dict(settings: TrainSettings, *, for_trainer: bool = True) -> dict:
    """The DeepSpeed config as a dict (``deepspeed_config`` serialises it)."""
    s = _validated(settings)
    _check_deepspeed(s)
    half = _deepspeed_half(s)
    auto = for_trainer
    cfg: dict = {
        "train_micro_batch_size_per_gpu": s.batch,
        "gradient_accumulation_steps": s.grad_accum,
        "train_batch_size": s.batch * s.grad_accum * s.data_parallel,
        "gradient_clipping": "auto" if auto else _TA_DEFAULTS["max_grad_norm"],
        "bf16": {"enabled": half == "bf16"},
        "fp16": {"enabled": half == "fp16"},
    }
    # the sizes the estimate used (--zero-* flags, else DeepSpeed's defaults); "auto" is written as "auto" for
    # the HF Trainer, which fills it from hidden_size exactly as the estimate did (sharding.HF_AUTO_ZERO_SIZES)
    autos = {key for field_name, key in (("zero_reduce_bucket", "reduce_bucket_size"),
                                         ("zero_prefetch_bucket", "prefetch_bucket_size"),
                                         ("zero_persistence_threshold", "param_persistence_threshold"))
             if str(getattr(s, field_name, None)).lower() == "auto"}
    if autos and not for_trainer:
        raise SettingsError("a ZeRO size given as auto is filled by the HF Trainer from hidden_size; a plain "
                            "deepspeed.initialize needs numbers (give elements, e.g. --zero-reduce-bucket 5e8)")
    zc = sharding.zero_config_for(s, hidden_size=1)  # "auto" placeholders only; written as "auto" below

    def size(key: str):
        return "auto" if key in autos else getattr(zc, key)

    zero: dict = {"stage": s.zero}
    if s.zero >= 1:
        zero.update({"overlap_comm": zc.overlap, "contiguous_gradients": zc.contiguous_gradients,
                     "reduce_bucket_size": size("reduce_bucket_size")})
    if s.zero in (1, 2):
        zero["allgather_bucket_size"] = zc.allgather_bucket_size
    if s.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if s.offload_param:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if s.zero == 3:
        zero.update({
            "stage3_prefetch_bucket_size": size("prefetch_bucket_size"),
            "stage3_param_persistence_threshold": size("param_persistence_threshold"),
            "stage3_max_live_parameters": zc.max_live_parameters,
            "stage3_max_reuse_distance": zc.max_reuse_distance,
            "sub_group_size": zc.sub_group_size,
            "stage3_gather_16bit_weights_on_model_save": True,
        })
    cfg["zero_optimization"] = zero
    if s.optimizer == "adamw":
        # FusedAdam (DeepSpeedCPUAdam with offload) in AdamW mode: what the estimate counts under DeepSpeed
        cfg["optimizer"] = {"type": "AdamW", "params": (
            {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"} if auto else
            {"lr": _TA_DEFAULTS["learning_rate"], "betas": [_TA_DEFAULTS["adam_beta1"], _TA_DEFAULTS["adam_beta2"]],
             "eps": _TA_DEFAULTS["adam_epsilon"], "weight_decay": _TA_DEFAULTS["weight_decay"]})}
    elif s.optimizer == "lion":
        # engine._configure_basic_optimizer: LION_OPTIMIZER -> FusedLion (DeepSpeedCPULion with offload)
        cfg["optimizer"] = {"type": "Lion", "params": (
            {"lr": "auto", "weight_decay": "auto"} if auto else
            {"lr": _TA_DEFAULTS["learning_rate"], "weight_decay": _TA_DEFAULTS["weight_decay"]})}
    else:
        # the Trainer builds its optimizer (TrainingArguments.optim) and DeepSpeed wraps it
        cfg["zero_allow_untested_optimizer"] = True
        if s.offload_optimizer:  # _check_deepspeed refused the bitsandbytes ones
            cfg["zero_force_ds_cpu_optimizer"] = False
    if s.tp > 1:
        cfg["tensor_parallel"] = {"autotp_size": s.tp}
        # HF Trainer checks train_batch_size against every process (args.world_size), AutoTP's data-parallel
        # ranks are world / tp: leave it out and DeepSpeed derives micro × accumulation × its DP size
        del cfg["train_batch_size"]
    cfg["wall_clock_breakdown"] = False
    return cfg


def deepspeed_config(settings: TrainSettings, *, for_trainer: bool = True) -> str:
    """DeepSpeed JSON config for the plan. Raises ValueError for settings DeepSpeed cannot express (FSDP, no
    ZeRO, pipeline parallel, AutoTP with ZeRO-3, a bitsandbytes optimizer with optimizer offload).

    Concrete values: micro-batch, accumulation, ``train_batch_size`` = micro × accumulation × data-parallel
    ranks (gpus / (tp·pp); left to DeepSpeed under AutoTP, see ``caveats``), ``bf16``/``fp16`` enabled per precision (HF Trainer checks they match
    TrainingArguments' bf16/fp16: ``trainer_args`` sets them alike), every ``zero_optimization`` size.
    "auto" (``for_trainer``; HF Trainer fills them from TrainingArguments): ``gradient_clipping`` and the
    optimizer's params. No ``optimizer`` section unless DeepSpeed has the optimizer (AdamW, Lion); otherwise
    ``zero_allow_untested_optimizer`` and the Trainer's optimizer."""
    return json.dumps(deepspeed_dict(settings, for_trainer=for_trainer), indent=2) + "\n"


# -- accelerate ---------------------------------------------------------------------------------------------

_YAML_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_YAML_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "none", "~"}


def _yaml_scalar(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    text = str(v)
    if _YAML_PLAIN.match(text) and text.lower() not in _YAML_RESERVED:
        return text
    return "'" + text.replace("'", "''") + "'"


def _yaml(d: dict, indent: int = 0) -> list[str]:
    lines: list[str] = []
    pad = "  " * indent
    for k in sorted(d):
        v = d[k]
        if isinstance(v, dict):
            lines.append(f"{pad}{k}:")
            lines += _yaml(v, indent + 1)
        else:
            lines.append(f"{pad}{k}: {_yaml_scalar(v)}")
    return lines


def accelerate_dict(settings: TrainSettings, *, fsdp_version: int | None = None,
                    ds_config_file: str | None = None) -> dict:
    """The accelerate config as a dict (``accelerate_config`` renders it)."""
    s = _validated(settings)
    if s.pp > 1:
        raise SettingsError("accelerate has no pipeline parallelism for this plan (Megatron-LM only): plan with --pp 1")
    if s.tp > 1 and s.zero is None and not s.fsdp:
        raise SettingsError("accelerate expresses tensor parallelism with FSDP2 (--fsdp) or DeepSpeed AutoTP (--zero 0-2)")
    nodes = max(1, math.ceil(s.gpus / s.gpus_per_node))
    cfg: dict = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "gpu_ids": "all",
        "machine_rank": 0,
        "main_training_function": "main",
        "num_machines": nodes,
        "num_processes": s.gpus,
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": False,
    }
    half = _torch_half(s)
    mixed = half or "no"
    if s.zero is not None:
        _check_deepspeed(s)
        cfg["distributed_type"] = "DEEPSPEED"
        # the inline keys cannot carry AutoTP, DeepSpeed's Lion, zero_force_ds_cpu_optimizer: point
        # accelerate at the DeepSpeed JSON instead (deepspeed_config())
        needs_file = s.tp > 1 or s.optimizer == "lion" or (s.offload_optimizer and s.optimizer != "adamw")
        if ds_config_file is None and needs_file:
            ds_config_file = "ds_config.json"
        ds: dict = {}
        if ds_config_file is not None:
            # with a file, accelerate refuses mixed_precision and the inline ZeRO keys (DeepSpeedPlugin.
            # _deepspeed_config_checks): the file carries them
            ds["deepspeed_config_file"] = ds_config_file
        else:
            cfg["mixed_precision"] = mixed
            ds.update({"zero_stage": s.zero,
                       "offload_optimizer_device": "cpu" if s.offload_optimizer else "none",
                       "offload_param_device": "cpu" if s.offload_param else "none",
                       "gradient_accumulation_steps": s.grad_accum})
            if s.zero == 3:
                ds["zero3_save_16bit_model"] = True
        if s.zero == 3:
            ds["zero3_init_flag"] = True  # the estimate's ZeroConfig.zero_init (deepspeed.zero.Init)
        if nodes > 1:
            ds["deepspeed_multinode_launcher"] = "standard"
        cfg["deepspeed_config"] = ds
    elif s.fsdp:
        version = fsdp_version or (2 if s.tp > 1 else 1)
        if version not in (1, 2):
            raise SettingsError("fsdp_version must be 1 or 2")
        if s.tp > 1 and version == 1:
            raise SettingsError("tensor parallelism with FSDP needs fsdp_version 2 (parallelism_config)")
        cfg["distributed_type"] = "FSDP"
        cfg["mixed_precision"] = mixed
        fs: dict = {
            "fsdp_version": version,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # the model's _no_split_modules (decoder layers)
            "fsdp_activation_checkpointing": bool(s.grad_ckpt),
            "fsdp_offload_params": bool(s.fsdp_offload),  # CPUOffload(offload_params)
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_state_dict_type": "SHARDED_STATE_DICT",
        }
        if version == 1:
            strategy = s.fsdp.upper()
            # accelerate 1.15 reads FSDP_SHARDING_STRATEGY first and falls back to reshard_after_forward
            # (FullyShardedDataParallelPlugin.__post_init__): write both
            fs.update({"fsdp_sharding_strategy": strategy, "fsdp_reshard_after_forward": strategy,
                       "fsdp_backward_prefetch": "BACKWARD_PRE", "fsdp_forward_prefetch": False,
                       "fsdp_sync_module_states": True,
                       # PEFT: the Trainer wraps the LoRA layers separately (update_fsdp_plugin_peft)
                       "fsdp_use_orig_params": s.method == "full"})
        else:
            fs["fsdp_reshard_after_forward"] = s.fsdp != "shard_grad_op"
            dp = s.data_parallel
            replicate = 1
            if s.fsdp == "hybrid_shard":
                shard = min(dp, max(1, s.gpus_per_node // s.tp))
                if dp % shard:
                    raise SettingsError(f"hybrid_shard: {dp} data-parallel ranks do not split into nodes of {shard}")
                replicate = dp // shard
            if s.tp > 1 or replicate > 1:
                cfg["parallelism_config"] = {"parallelism_config_dp_replicate_size": replicate,
                                             "parallelism_config_dp_shard_size": dp // replicate,
                                             "parallelism_config_tp_size": s.tp,
                                             "parallelism_config_cp_size": 1}
        cfg["fsdp_config"] = fs
    else:
        cfg["distributed_type"] = "MULTI_GPU" if s.gpus > 1 else "NO"
        cfg["mixed_precision"] = mixed
    return cfg


def accelerate_config(settings: TrainSettings, *, fsdp_version: int | None = None,
                      ds_config_file: str | None = None) -> str:
    """``accelerate launch --config_file`` YAML for the plan: distributed_type NO / MULTI_GPU / DEEPSPEED /
    FSDP, num_processes = gpus (all machines), mixed_precision no/bf16/fp16 (as ``trainer_args``),
    ``deepspeed_config`` (zero_stage, offload devices, gradient_accumulation_steps, zero3 flags -- or
    ``deepspeed_config_file`` when ``ds_config_file`` is given or the inline keys cannot express the plan) or
    ``fsdp_config`` (sharding strategy, TRANSFORMER_BASED_WRAP, activation checkpointing per --grad-ckpt,
    fsdp_version: 1 unless tensor parallel needs 2). Comments carry the TrainingArguments, from_pretrained
    arguments and caveats."""
    s = _validated(settings)
    cfg = accelerate_dict(s, fsdp_version=fsdp_version, ds_config_file=ds_config_file)
    head = [f"# accelerate config for the hfmem plan: {_describe(s)}"]
    ds_file = cfg.get("deepspeed_config", {}).get("deepspeed_config_file")
    if ds_file:
        head.append(f"# write `hfmem train ... --emit deepspeed` to {ds_file}")
    head.append("# TrainingArguments: " + _kwargs_text(trainer_args(s)))
    head.append("# from_pretrained: " + _kwargs_text(model_load_kwargs(s))
                + (" (BitsAndBytesConfig keyword arguments)" if s.method == "qlora" else ""))
    head += [f"# note: {c}" for c in caveats(s, "accelerate")]
    return "\n".join(head + _yaml(cfg)) + "\n"


# -- PEFT ---------------------------------------------------------------------------------------------------

def peft_config(settings: TrainSettings) -> str:
    """A Python snippet: ``LoraConfig(r, lora_alpha=2r, lora_dropout=0.0, target_modules, use_dora,
    task_type="CAUSAL_LM")``, for QLoRA ``BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type,
    bnb_4bit_use_double_quant, bnb_4bit_compute_dtype[, bnb_4bit_quant_storage under ZeRO-3/FSDP])``, and the
    ``model_kwargs`` / ``training_args`` dicts for ``from_pretrained`` / ``TrainingArguments``. Raises
    ValueError for a full fine-tune."""
    s = _validated(settings)
    if s.method == "full":
        raise SettingsError("a full fine-tune has no PEFT configuration (--method lora or qlora)")
    lines = [f"# PEFT configuration for the hfmem plan: {_describe(s)}"]
    lines += [f"# note: {c}" for c in caveats(s, "peft")]
    lines += ["import torch", "from peft import LoraConfig"]
    if s.method == "qlora":
        lines += ["from transformers import BitsAndBytesConfig", "", "bnb_config = BitsAndBytesConfig("]
        for k, v in bnb_kwargs(s).items():
            value = f"torch.{v}" if k in ("bnb_4bit_compute_dtype", "bnb_4bit_quant_storage") else repr(v)
            note = f"  # ZeRO-3/FSDP shard the 4-bit base as {v}" if k == "bnb_4bit_quant_storage" else ""
            lines.append(f"    {k}={value},{note}")
        lines.append(")")
    lines += ["", "lora_config = LoraConfig(", f"    r={s.lora_rank},", f"    lora_alpha={2 * s.lora_rank},",
              f"    lora_dropout={float(s.lora_dropout)!r},"
              + ("  # the plan counts no dropout mask" if not s.lora_dropout else
                 "  # the plan counts each adapted module's dropout mask")]
    targets = s.lora_targets
    if targets is None:
        lines.append("    # target_modules: PEFT's default for the model type")
    else:
        if not isinstance(targets, str):
            targets = list(targets)
        lines.append(f"    target_modules={targets!r},")
    lines += [f"    use_dora={bool(s.dora)!r},", '    task_type="CAUSAL_LM",', ")", ""]
    mk = model_load_kwargs(s)
    parts = [f"dtype=torch.{mk['dtype']}", f"attn_implementation={mk['attn_implementation']!r}"]
    if s.method == "qlora":
        parts.append("quantization_config=bnb_config")
    lines.append("model_kwargs = dict(" + ", ".join(parts) + ")")
    lines.append("training_args = dict(" + _kwargs_text(trainer_args(s)) + ")")
    lines += ["",
              "# model = AutoModelForCausalLM.from_pretrained(MODEL, **model_kwargs)",
              *(["# model = peft.prepare_model_for_kbit_training(model)  # fp32 non-4-bit weights, checkpointing"]
                if s.prepare_kbit_on else []),
              "# model = peft.get_peft_model(model, lora_config"
              + (f", autocast_adapter_dtype=False)  # adapters in {s.adapter_dtype}" if s.adapter_dtype in
                 ("bf16", "fp16") else ")  # adapters in fp32 (autocast_adapter_dtype=True)"),
              "# Trainer(model=model, args=TrainingArguments(output_dir=..., **training_args), ...)"]
    return "\n".join(lines) + "\n"


# -- dispatch -----------------------------------------------------------------------------------------------

EMITTERS = {"deepspeed": deepspeed_config, "accelerate": accelerate_config, "peft": peft_config}


def emit(kind: str, settings: TrainSettings) -> tuple[str, list[str]]:
    """(text, caveats) for ``--emit kind``."""
    try:
        fn = EMITTERS[kind]
    except KeyError:
        raise SettingsError(f"--emit must be one of {', '.join(EMITTERS)}, not {kind!r}") from None
    return fn(settings), caveats(settings, kind)


# -- helpers ------------------------------------------------------------------------------------------------

def _kwargs_text(d: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in d.items())


def _describe(s: TrainSettings) -> str:
    par = f"{s.gpus} GPU" + ("s" if s.gpus > 1 else "")
    if s.zero is not None:
        par += f", ZeRO-{s.zero}" + (" + optimizer offload" if s.offload_optimizer else "") + (
            " + parameter offload" if s.offload_param else "")
    if s.fsdp:
        par += f", FSDP {s.fsdp}"
    if s.tp > 1:
        par += f", tp {s.tp}"
    method = s.method if s.method == "full" else f"{s.method} r{s.lora_rank}" + (" DoRA" if s.dora else "")
    return (f"{method}, {s.precision}, {s.optimizer}, micro-batch {s.batch} x seq {s.seq}, accumulation "
            f"{s.grad_accum}" + (", activation checkpointing" if s.grad_ckpt else "") + f", {par}")
