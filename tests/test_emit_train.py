"""hfmem.plan.emit_train (``hfmem train --emit deepspeed|accelerate|peft``, issue 5, requirement 9).

Each output is parsed and read back by the library that consumes it, offline, without a GPU:

* DeepSpeed JSON: the HF Trainer's own ``trainer_config_process`` (transformers 5.24
  ``integrations/deepspeed.py``, run on accelerate's ``HfDeepSpeedConfig`` because transformers refuses to
  build its subclass without deepspeed installed) fills the "auto" values from ``TrainingArguments(**
  trainer_args(s))`` and reports no mismatch; the ``zero_optimization`` keys are DeepSpeedZeroConfig's
  (deepspeed/runtime/zero/config.py), validated by DeepSpeed itself when it is importable (not in this venv);
  accelerate's ``DeepSpeedPlugin`` loads the file.
* accelerate YAML: ``load_config_from_file`` (ClusterConfig, which rejects unknown top-level keys), then
  ``accelerate launch``'s ``_validate_launch_command`` and ``prepare_*_env`` turn it into the launch
  environment, from which accelerate's own ``FullyShardedDataParallelPlugin`` / ``DeepSpeedPlugin`` /
  ``ParallelismConfig`` are built and compared with the settings (accelerate 1.15).
* PEFT snippet: executed; its ``LoraConfig`` / ``BitsAndBytesConfig`` are the real peft 0.21 / transformers
  classes and its ``training_args`` build a real ``TrainingArguments``.
"""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from hfmem.plan import emit_train as et
from hfmem.scenarios import sharding
from hfmem.scenarios.finetune import TrainSettings

yaml = pytest.importorskip("yaml")

# DeepSpeedZeroConfig field names and aliases (deepspeed/runtime/zero/config.py) and the offload configs'
# (offload_config.py): DeepSpeedConfigModel forbids other keys.
DS_ZERO_KEYS = {
    "stage", "contiguous_gradients", "reduce_scatter", "reduce_bucket_size", "use_multi_rank_bucket_allreduce",
    "allgather_partitions", "allgather_bucket_size", "overlap_comm", "load_from_fp32_weights",
    "elastic_checkpoint", "offload_param", "offload_optimizer", "sub_group_size", "stage3_prefetch_bucket_size",
    "stage3_param_persistence_threshold", "stage3_model_persistence_threshold", "stage3_max_live_parameters",
    "stage3_max_reuse_distance", "stage3_gather_16bit_weights_on_model_save", "ignore_unused_parameters",
    "round_robin_gradients", "zero_hpz_partition_size", "zero_quantized_weights", "zero_quantized_gradients",
}
DS_OFFLOAD_KEYS = {"device", "nvme_path", "buffer_count", "buffer_size", "max_in_cpu", "pin_memory"}
DS_TOP_KEYS = {"train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
               "gradient_clipping", "bf16", "fp16", "zero_optimization", "optimizer", "zero_allow_untested_optimizer",
               "zero_force_ds_cpu_optimizer", "tensor_parallel", "wall_clock_breakdown"}

DS_CASES = [
    TrainSettings(precision="deepspeed-bf16", zero=2, gpus=8, batch=4, grad_accum=8),
    TrainSettings(precision="deepspeed-fp16", zero=3, gpus=16, offload_optimizer=True, offload_param=True),
    TrainSettings(precision="deepspeed-mixed", zero=1, gpus=4, optimizer="sgd-momentum", offload_optimizer=True),
    TrainSettings(precision="fp32", zero=0, gpus=2, optimizer="adamw-8bit", batch=2),
    TrainSettings(precision="bf16", zero=2, gpus=8, tp=2, optimizer="lion", batch=3, grad_accum=2),
    TrainSettings(method="qlora", precision="bf16", zero=3, gpus=4, grad_ckpt=True),
    TrainSettings(method="lora", precision="amp-fp16", zero=2, gpus=1, optimizer="adafactor"),
    TrainSettings(precision="deepspeed-bf16", zero=3, gpus=2, optimizer="adafactor", offload_optimizer=True),
]
ACC_CASES = DS_CASES + [
    TrainSettings(),
    TrainSettings(gpus=4, precision="amp-bf16", grad_ckpt=True),
    TrainSettings(method="lora", fsdp="shard_grad_op", gpus=4),
    TrainSettings(fsdp="full_shard", gpus=8, precision="amp-bf16", grad_ckpt=True),
    TrainSettings(method="qlora", fsdp="hybrid_shard", gpus=16, gpus_per_node=8, qlora_format="fp4"),
    TrainSettings(fsdp="full_shard", gpus=8, tp=2, precision="bf16", grad_ckpt=True),
    TrainSettings(fsdp="hybrid_shard", gpus=16, gpus_per_node=4, precision="fp32"),
]


def _ids(cases):
    return [f"{s.method}-{s.precision}-z{s.zero}-{s.fsdp}-g{s.gpus}-tp{s.tp}" for s in cases]


def _ds_half(s):
    return None if s.precision == "fp32" else ("fp16" if "fp16" in s.precision or "mixed" in s.precision
                                                 or s.precision == "fp16" else "bf16")


# -- DeepSpeed ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("s", DS_CASES, ids=_ids(DS_CASES))
def test_deepspeed_config_matches_settings(s):
    cfg = json.loads(et.deepspeed_config(s))
    assert set(cfg) <= DS_TOP_KEYS
    dp = s.gpus // (s.tp * s.pp)
    assert cfg["train_micro_batch_size_per_gpu"] == s.batch
    assert cfg["gradient_accumulation_steps"] == s.grad_accum
    if s.tp == 1:
        assert cfg["train_batch_size"] == s.batch * s.grad_accum * dp
    else:  # AutoTP: DeepSpeed derives it from its data-parallel size; the Trainer would count every process
        assert "train_batch_size" not in cfg
    half = _ds_half(s)
    assert cfg["bf16"]["enabled"] is (half == "bf16") and cfg["fp16"]["enabled"] is (half == "fp16")
    z = cfg["zero_optimization"]
    assert set(z) <= DS_ZERO_KEYS
    assert z["stage"] == s.zero
    if s.zero >= 1:
        assert z["overlap_comm"] is (s.zero == 3)  # DeepSpeed's dynamic default, as the estimate assumes
        assert z["contiguous_gradients"] is True and z["reduce_bucket_size"] == sharding.DS_REDUCE_BUCKET_SIZE
    if s.zero == 3:
        assert z["stage3_prefetch_bucket_size"] == sharding.DS_PREFETCH_BUCKET_SIZE
        assert z["stage3_param_persistence_threshold"] == sharding.DS_PARAM_PERSISTENCE_THRESHOLD
        assert z["stage3_max_live_parameters"] == sharding.DS_MAX_LIVE_PARAMETERS
        assert z["stage3_max_reuse_distance"] == sharding.DS_MAX_REUSE_DISTANCE
        assert z["sub_group_size"] == sharding.DS_SUB_GROUP_SIZE
    else:
        assert not any(k.startswith("stage3_") for k in z)
    for key, on in (("offload_optimizer", s.offload_optimizer), ("offload_param", s.offload_param)):
        if on:
            assert z[key] == {"device": "cpu", "pin_memory": True} and set(z[key]) <= DS_OFFLOAD_KEYS
        else:
            assert key not in z
    if s.optimizer == "adamw":
        assert cfg["optimizer"]["type"] == "AdamW"
    elif s.optimizer == "lion":
        assert cfg["optimizer"]["type"] == "Lion"
    else:
        assert "optimizer" not in cfg and cfg["zero_allow_untested_optimizer"] is True
    assert cfg.get("zero_force_ds_cpu_optimizer", True) is not (s.offload_optimizer and s.optimizer in
                                                                 ("sgd", "sgd-momentum", "adafactor"))
    assert cfg.get("tensor_parallel", {}).get("autotp_size", 1) == s.tp
    # "auto" only where the Trainer fills it and the plan does not depend on it
    autos = [k for k, v in cfg.items() if v == "auto"]
    autos += [f"optimizer.{k}" for k, v in cfg.get("optimizer", {}).get("params", {}).items() if v == "auto"]
    assert set(autos) <= {"gradient_clipping", "optimizer.lr", "optimizer.betas", "optimizer.eps",
                          "optimizer.weight_decay"}
    assert "\"auto\"" not in json.dumps(z)
    plain = json.loads(et.deepspeed_config(s, for_trainer=False))
    assert "\"auto\"" not in json.dumps(plain)


def test_deepspeed_config_validates_with_deepspeed(monkeypatch):
    """DeepSpeed's own parser (deepspeed.runtime.config.DeepSpeedConfig: pydantic sub-configs that forbid
    unknown keys, the batch-size arithmetic over the data-parallel size an mpu reports). deepspeed is not a
    dependency: skipped where it is not importable."""
    ds_config = pytest.importorskip("deepspeed.runtime.config")
    zero_config = pytest.importorskip("deepspeed.runtime.zero.config")

    class MPU:
        def __init__(self, dp):
            self.dp = dp

        def get_data_parallel_world_size(self):
            return self.dp

    monkeypatch.setattr(ds_config.dist, "get_rank", lambda *a, **k: 0)
    for s in DS_CASES:
        for for_trainer in (False, True):
            cfg = json.loads(et.deepspeed_config(s, for_trainer=for_trainer))
            z = zero_config.DeepSpeedZeroConfig(**cfg["zero_optimization"])
            assert z.overlap_comm is (s.zero == 3) and z.reduce_bucket_size == sharding.DS_REDUCE_BUCKET_SIZE
        c = ds_config.DeepSpeedConfig(json.loads(et.deepspeed_config(s, for_trainer=False)),
                                      mpu=MPU(s.gpus // (s.tp * s.pp)))
        assert c.train_batch_size == s.batch * s.grad_accum * (s.gpus // (s.tp * s.pp))
        assert c.train_micro_batch_size_per_gpu == s.batch and c.gradient_accumulation_steps == s.grad_accum
        assert c.zero_optimization_stage == s.zero
        half = _ds_half(s)
        assert c.bfloat16_config.enabled is (half == "bf16") and c.float16_config.enabled is (half == "fp16")
        assert c.optimizer_name == {"adamw": "adamw", "lion": "lion"}.get(s.optimizer)
        assert c.zero_config.offload_optimizer is None or c.zero_config.offload_optimizer.device == "cpu"


class _WorldSize:
    """TrainingArguments seen from a launch with ``world_size`` data-parallel processes."""

    def __init__(self, args, world_size):
        self._args, self.world_size = args, world_size

    def __getattr__(self, name):
        return getattr(self._args, name)


@pytest.fixture(scope="module")
def trainer_ds_config():
    tds = pytest.importorskip("transformers.integrations.deepspeed")
    from accelerate.utils.deepspeed import HfDeepSpeedConfig

    class TrainerDS(HfDeepSpeedConfig):  # HfTrainerDeepSpeedConfig's logic, without its deepspeed import check
        fill_match = tds.HfTrainerDeepSpeedConfig.fill_match
        fill_only = tds.HfTrainerDeepSpeedConfig.fill_only
        trainer_config_process = tds.HfTrainerDeepSpeedConfig.trainer_config_process
        dtype = tds.HfTrainerDeepSpeedConfig.dtype

        def __init__(self, config):
            super().__init__(config)
            self.mismatches, self._dtype = [], None

    return TrainerDS


def _training_arguments(s, tmp_path):
    from transformers import TrainingArguments

    kwargs = et.trainer_args(s)
    return TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **kwargs)


@pytest.mark.parametrize("s", DS_CASES, ids=_ids(DS_CASES))
def test_deepspeed_config_agrees_with_hf_trainer(s, trainer_ds_config, tmp_path):
    import torch

    args = _training_arguments(s, tmp_path)
    world = s.gpus  # TrainingArguments.world_size: every process
    ds = trainer_ds_config(json.loads(et.deepspeed_config(s)))
    ds.trainer_config_process(_WorldSize(args, world))
    assert ds.mismatches == []
    assert "\"auto\"" not in json.dumps(ds.config)
    assert ds.dtype() == {"bf16": torch.bfloat16, "fp16": torch.float16, None: torch.float32}[_ds_half(s)]
    # for_trainer=False writes what the Trainer would have filled in
    plain = trainer_ds_config(json.loads(et.deepspeed_config(s, for_trainer=False)))
    plain.trainer_config_process(_WorldSize(args, world))
    assert plain.mismatches == [] and plain.config == ds.config


def test_deepspeed_file_loads_in_accelerate_plugin(monkeypatch, tmp_path):
    from accelerate.utils import DeepSpeedPlugin

    s = DS_CASES[1]
    path = tmp_path / "ds_config.json"
    path.write_text(et.deepspeed_config(s))
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(path))
    plugin = DeepSpeedPlugin()
    assert plugin.zero_stage == 3 and plugin.offload_optimizer_device == "cpu" and plugin.offload_param_device == "cpu"
    assert plugin.gradient_accumulation_steps == s.grad_accum and plugin.zero3_init_flag is True


@pytest.mark.parametrize("changes, words", [
    ({"fsdp": "full_shard", "gpus": 2}, "FSDP"),
    ({}, "--zero"),
    ({"zero": 2, "gpus": 4, "pp": 2}, "pipeline"),
    ({"zero": 3, "gpus": 4, "tp": 2}, "AutoTP"),
    ({"zero": 2, "gpus": 2, "offload_optimizer": True, "optimizer": "paged-adamw-8bit"}, "bitsandbytes"),
])
def test_deepspeed_refuses(changes, words):
    with pytest.raises(ValueError) as exc:
        et.deepspeed_config(TrainSettings(**changes))
    assert words in str(exc.value) and "\n" not in str(exc.value)


# -- accelerate ---------------------------------------------------------------------------------------------

def _launch_dests():
    """The option names ``accelerate launch`` takes (its public parser): a config file's keys are these."""
    from accelerate.commands.launch import launch_command_parser

    return set(vars(launch_command_parser().parse_args(["train.py"])))


def _section_kwargs(section: dict, prefix: str, plugin) -> dict:
    """A config section as keyword arguments of the plugin it configures: accelerate names the YAML keys after
    the plugin's fields with a prefix (``fsdp_sharding_strategy`` -> ``sharding_strategy``; ``fsdp_version``
    is a field as it stands)."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(plugin)}
    return {k if k in fields else k[len(prefix):]: v for k, v in section.items()}


@pytest.mark.parametrize("s", ACC_CASES, ids=_ids(ACC_CASES))
def test_accelerate_config_reads_back(s, monkeypatch, tmp_path):
    """The YAML loads in accelerate's ClusterConfig, its sections hold only options ``accelerate launch``
    knows, and the plugins they configure build (accelerate's public dataclasses) with the plan's values."""
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    text = et.accelerate_config(s)
    cfg = yaml.safe_load(text)
    path = tmp_path / "accelerate.yaml"
    path.write_text(text)
    loaded = load_config_from_file(str(path))
    assert isinstance(loaded, ClusterConfig)
    assert ClusterConfig.from_yaml_file(str(path)).num_processes == s.gpus
    assert cfg["compute_environment"] == "LOCAL_MACHINE" and cfg["num_processes"] == s.gpus
    assert cfg["num_machines"] == -(-s.gpus // s.gpus_per_node)
    dests = _launch_dests()
    for section in ("deepspeed_config", "fsdp_config", "parallelism_config"):
        assert set(cfg.get(section) or {}) <= dests, section
    ta = et.trainer_args(s)
    mixed = "bf16" if ta["bf16"] else "fp16" if ta["fp16"] else "no"

    if s.zero is not None:
        from accelerate.utils import DeepSpeedPlugin

        assert cfg["distributed_type"] == "DEEPSPEED"
        ds = dict(cfg["deepspeed_config"])
        ds.pop("deepspeed_multinode_launcher", None)  # a launcher option, not a plugin field
        if "deepspeed_config_file" in ds:
            assert "mixed_precision" not in cfg  # accelerate refuses it next to a DeepSpeed file
            file = tmp_path / "ds_config.json"
            file.write_text(et.deepspeed_config(s))
            ds["hf_ds_config"] = str(file)
            del ds["deepspeed_config_file"]
            half = json.loads(et.deepspeed_config(s))
            assert mixed == ("bf16" if half["bf16"]["enabled"] else "fp16" if half["fp16"]["enabled"] else "no")
        else:
            assert cfg["mixed_precision"] == mixed
        plugin = DeepSpeedPlugin(**ds)
        z = plugin.deepspeed_config["zero_optimization"]
        assert z["stage"] == s.zero and plugin.gradient_accumulation_steps == s.grad_accum
        assert z.get("offload_optimizer", {}).get("device", "none") == ("cpu" if s.offload_optimizer else "none")
        assert z.get("offload_param", {}).get("device", "none") == ("cpu" if s.offload_param else "none")
        assert plugin.zero3_init_flag is (s.zero == 3)
    elif s.fsdp:
        from accelerate.utils import FullyShardedDataParallelPlugin

        assert cfg["distributed_type"] == "FSDP" and cfg["mixed_precision"] == mixed
        kwargs = _section_kwargs(cfg["fsdp_config"], "fsdp_", FullyShardedDataParallelPlugin)
        kwargs["cpu_offload"] = kwargs.pop("offload_params")
        if kwargs["fsdp_version"] == 1:
            # FSDP1 with cpu_ram_efficient_loading needs sync_module_states, which accelerate refuses to set up
            # on a machine with no GPU ("not supported on cpu"): the plan asks for both, the plugin is built
            # without them here.
            assert kwargs.pop("cpu_ram_efficient_loading") is True and kwargs.pop("sync_module_states") is True
        else:
            kwargs.pop("cpu_ram_efficient_loading")
        plugin = FullyShardedDataParallelPlugin(**kwargs)
        assert plugin.activation_checkpointing is bool(s.grad_ckpt)
        assert ta["activation_checkpointing"] is False  # FSDP's own, not the Trainer's as well
        if plugin.fsdp_version == 1:
            assert plugin.sharding_strategy.name == s.fsdp.upper()
            assert plugin.use_orig_params is (s.method == "full")
        else:
            from accelerate.parallelism_config import ParallelismConfig

            assert plugin.reshard_after_forward is (s.fsdp != "shard_grad_op")
            dp = s.gpus // s.tp
            if "parallelism_config" in cfg:
                pc = ParallelismConfig(**_section_kwargs(cfg["parallelism_config"], "parallelism_config_",
                                                        ParallelismConfig))
                assert pc.tp_size == s.tp and pc.dp_replicate_size * pc.dp_shard_size == dp
                assert pc.total_size == s.gpus
                if s.fsdp == "hybrid_shard":
                    assert pc.dp_shard_size == min(dp, s.gpus_per_node // s.tp)
            else:
                assert s.tp == 1 and s.fsdp != "hybrid_shard"
        assert plugin.auto_wrap_policy is not None  # TRANSFORMER_BASED_WRAP
    else:
        assert cfg["distributed_type"] == ("MULTI_GPU" if s.gpus > 1 else "NO")
        assert cfg["mixed_precision"] == mixed


def test_accelerate_inline_deepspeed_unless_it_cannot_express_the_plan():
    inline = yaml.safe_load(et.accelerate_config(TrainSettings(zero=2, gpus=8, precision="deepspeed-bf16")))
    assert "deepspeed_config_file" not in inline["deepspeed_config"] and inline["mixed_precision"] == "bf16"
    for s in (TrainSettings(zero=2, gpus=8, tp=2), TrainSettings(zero=2, gpus=2, optimizer="lion"),
              TrainSettings(zero=2, gpus=2, offload_optimizer=True, optimizer="adafactor")):
        text = et.accelerate_config(s)
        assert yaml.safe_load(text)["deepspeed_config"]["deepspeed_config_file"] == "ds_config.json"
        assert "--emit deepspeed" in text
    chosen = yaml.safe_load(et.accelerate_config(TrainSettings(zero=1, gpus=2), ds_config_file="z1.json"))
    assert chosen["deepspeed_config"] == {"deepspeed_config_file": "z1.json"}


@pytest.mark.parametrize("changes, words", [
    ({"gpus": 4, "pp": 2}, "pipeline"),
    ({"gpus": 4, "tp": 2}, "tensor parallelism"),
])
def test_accelerate_refuses(changes, words):
    with pytest.raises(ValueError, match=words):
        et.accelerate_config(TrainSettings(**changes))
    with pytest.raises(ValueError, match="fsdp_version 2"):
        et.accelerate_config(TrainSettings(fsdp="full_shard", gpus=4, tp=2), fsdp_version=1)


def test_yaml_scalars_round_trip():
    values = {"a": "no", "b": "none", "c": "cpu", "d": "ds config.json", "e": True, "f": 3, "g": "it's",
              "h": "ON", "i": None, "j": "TRANSFORMER_BASED_WRAP"}
    assert yaml.safe_load("\n".join(et._yaml(values))) == values


# -- PEFT ---------------------------------------------------------------------------------------------------

PEFT_CASES = [
    TrainSettings(method="lora", lora_rank=8, lora_targets=["q_proj", "v_proj"], dora=True),
    TrainSettings(method="lora", lora_targets=None, precision="fp32", attn="eager", optimizer="sgd-momentum"),
    TrainSettings(method="lora", lora_targets=r".*\.(q|v)_proj$", precision="amp-fp16", grad_ckpt=True),
    TrainSettings(method="qlora", lora_rank=64, qlora_format="nf4-dq", attn="flash", optimizer="paged-adamw-8bit"),
    TrainSettings(method="qlora", qlora_format="fp4", zero=3, gpus=4, precision="bf16"),
    TrainSettings(method="qlora", qlora_format="nf4", fsdp="full_shard", gpus=2, precision="fp16"),
]


@pytest.mark.parametrize("s", PEFT_CASES, ids=_ids(PEFT_CASES))
def test_peft_snippet_builds_the_real_configs(s, tmp_path):
    import torch
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig, TrainingArguments

    ns: dict = {}
    exec(compile(et.peft_config(s), "<peft snippet>", "exec"), ns)
    lora = ns["lora_config"]
    assert isinstance(lora, LoraConfig)
    assert lora.r == s.lora_rank and lora.lora_alpha == 2 * s.lora_rank and lora.use_dora is s.dora
    assert lora.lora_dropout == 0.0 and str(lora.task_type.value if hasattr(lora.task_type, "value")
                                            else lora.task_type) == "CAUSAL_LM"
    if s.lora_targets is None:
        assert lora.target_modules is None
    elif isinstance(s.lora_targets, str):
        assert lora.target_modules == s.lora_targets
    else:
        assert set(lora.target_modules) == set(s.lora_targets)
    mk = ns["model_kwargs"]
    assert mk["dtype"] == getattr(torch, et.model_load_kwargs(s)["dtype"])
    # attn None (not given): attn_implementation=None, transformers' own choice
    assert mk["attn_implementation"] == {"sdpa": "sdpa", "flash": "flash_attention_2", "eager": "eager",
                                         None: None}[s.attn]
    if s.method == "qlora":
        bnb = ns["bnb_config"]
        assert isinstance(bnb, BitsAndBytesConfig) and mk["quantization_config"] is bnb
        assert bnb.load_in_4bit and bnb.bnb_4bit_quant_type == s.qlora_format[:3]
        assert bnb.bnb_4bit_use_double_quant is s.qlora_format.endswith("-dq")
        assert bnb.bnb_4bit_compute_dtype == mk["dtype"]
        sharded = s.zero == 3 or s.fsdp is not None
        assert bnb.bnb_4bit_quant_storage == (mk["dtype"] if sharded else torch.uint8)
    else:
        assert "bnb_config" not in ns and "quantization_config" not in mk
    assert ns["training_args"] == et.trainer_args(s)
    TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **ns["training_args"])


def test_peft_refuses_full_fine_tune():
    with pytest.raises(ValueError, match="full fine-tune"):
        et.peft_config(TrainSettings())


# -- TrainingArguments --------------------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer, impl, optim, optim_args", [
    ("adamw", "fused", "adamw_torch_fused", None), ("adamw", "foreach", "adamw_torch", None),
    ("adamw", "forloop", "adamw_torch", None), ("adamw-8bit", "fused", "adamw_bnb_8bit", None),
    ("paged-adamw-8bit", "fused", "paged_adamw_8bit", None), ("sgd", "fused", "sgd", None),
    ("sgd-momentum", "fused", "sgd", "momentum=0.9"), ("adafactor", "fused", "adafactor", None),
    ("lion", "fused", "lion_32bit", None), ("lion-8bit", "fused", "lion_8bit", None),
])
def test_trainer_args_optimizer_names(optimizer, impl, optim, optim_args):
    from transformers.training_args import OptimizerNames

    ta = et.trainer_args(TrainSettings(optimizer=optimizer, adamw_impl=impl, batch=3, grad_accum=5, grad_ckpt=True))
    assert ta["optim"] == optim and OptimizerNames(optim)
    assert ta.get("optim_args") == optim_args
    assert ta["per_device_train_batch_size"] == 3 and ta["gradient_accumulation_steps"] == 5
    assert ta["activation_checkpointing"] is True


@pytest.mark.parametrize("method, precision, bf16, fp16, dtype", [
    ("full", "fp32", False, False, "float32"), ("full", "amp-bf16", True, False, "float32"),
    ("full", "amp-fp16", False, True, "float32"), ("full", "bf16", True, False, "bfloat16"),
    ("full", "fp16", False, False, "float16"), ("lora", "fp16", False, True, "float16"),
    ("lora", "amp-bf16", True, False, "bfloat16"), ("lora", "fp32", False, False, "float32"),
])
def test_trainer_args_precision(method, precision, bf16, fp16, dtype):
    s = TrainSettings(method=method, precision=precision)
    ta = et.trainer_args(s)
    assert (ta["bf16"], ta["fp16"]) == (bf16, fp16)
    assert et.model_load_kwargs(s)["dtype"] == dtype


def test_trainer_args_deepspeed_file_and_caveats():
    s = TrainSettings(zero=2, gpus=2, precision="amp-bf16")
    assert et.trainer_args(s, deepspeed_file="ds.json")["deepspeed"] == "ds.json"
    with pytest.raises(ValueError):
        et.trainer_args(TrainSettings(), deepspeed_file="ds.json")
    assert any("deepspeed-bf16" in c for c in et.caveats(s, "deepspeed"))
    text, notes = et.emit("accelerate", s)
    assert all(f"# note: {c}" in text for c in notes)
    with pytest.raises(ValueError):
        et.emit("megatron", s)


def test_pure_no_io(monkeypatch):
    def no_open(*a, **k):
        raise AssertionError("emit_train must not touch files")

    monkeypatch.setattr("builtins.open", no_open)
    for s in ACC_CASES:
        et.accelerate_config(s)
    for s in DS_CASES:
        et.deepspeed_config(s)
    for s in PEFT_CASES:
        et.peft_config(s)
    assert os.path.isdir(tempfile.gettempdir())
