"""hfmem.vocab: one dtype vocabulary for every entry point, and one error model at the CLI boundary."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import hfmem
from hfmem import vocab
from hfmem.api import infer
from hfmem.cli import app, route_argv
from hfmem.errors import HfmemError, SettingsError, UnsupportedArchitectureError, UsageError
from hfmem.scenarios.weights import weights_bytes

# Expected by hand from torch's element sizes: torch.float32 4 bytes, torch.bfloat16 2, torch.float16 2.
ALIASES = {
    "fp32": ("float32", 4), "float": ("float32", 4), "float32": ("float32", 4), "torch.float32": ("float32", 4),
    "bf16": ("bfloat16", 2), "bfloat16": ("bfloat16", 2), "torch.bfloat16": ("bfloat16", 2),
    "fp16": ("float16", 2), "float16": ("float16", 2), "half": ("float16", 2), "torch.float16": ("float16", 2),
}


@pytest.mark.parametrize("alias, expected", sorted(ALIASES.items()))
def test_every_alias_resolves_to_its_canonical_dtype_and_width(alias, expected):
    assert (vocab.canonical_dtype(alias), vocab.dtype_bytes(alias)) == expected
    assert vocab.canonical_dtype(alias.upper()) == expected[0]


def test_unknown_dtype_is_a_settings_error_naming_the_accepted_names():
    with pytest.raises(SettingsError) as err:
        vocab.canonical_dtype("float64", setting="compute_dtype")
    assert err.value.exit_code == 2 and err.value.setting == "compute_dtype"
    assert isinstance(err.value, ValueError)
    for name in ("fp32", "bf16", "fp16", "half", "float16", "bfloat16", "float32"):
        assert name in str(err.value)


def _infer(**settings):
    return infer("meta-llama/Llama-3.1-8B", hfmem.Options(offline=True), **settings)


def test_half_accepted_by_infer_compute_and_kv_dtype():
    half = _infer(compute_dtype="half", kv_dtype="half").estimate
    fp16 = _infer(compute_dtype="fp16", kv_dtype="fp16").estimate
    assert half.compute_dtype == "float16"
    assert half.device_total_bytes == fp16.device_total_bytes
    with pytest.raises(UsageError) as err:  # hfmem.api re-raises the SettingsError as a UsageError (exit 2)
        _infer(compute_dtype="float64")
    assert err.value.exit_code == 2 and "half" in str(err.value)


def test_half_accepted_by_weights_compute_dtype():
    t = [{"role": "linear", "name": "proj", "in_features": 4096, "out_features": 4096, "bias": 0, "tied": False,
          "conv1d": False, "count": 2, "params": 2 * 4096 * 4096}]
    for fmt in ("bf16", "nf4", "int8"):
        assert weights_bytes(t, fmt, compute_dtype="half") == weights_bytes(t, fmt, compute_dtype="float16")
    with pytest.raises(SettingsError):
        weights_bytes(t, "nf4", compute_dtype="float64")


def test_scenario_errors_are_typed_with_their_exit_codes():
    from hfmem.scenarios.finetune import TrainSettingsError
    from hfmem.scenarios.infer_activations import InferActivationError
    from hfmem.scenarios.inference import InferenceSettingsError
    from hfmem.scenarios.kv_cache import KVLayoutError
    from hfmem.scenarios.rlhf import RLHFSettingsError
    from hfmem.scenarios.train_activations import TrainActivationError
    from hfmem.scenarios.weights import WeightFormatError

    for cls in (InferenceSettingsError, TrainSettingsError, RLHFSettingsError, WeightFormatError):
        assert issubclass(cls, SettingsError) and issubclass(cls, ValueError) and cls.exit_code == 2
    for cls in (InferActivationError, TrainActivationError, KVLayoutError):
        assert issubclass(cls, UnsupportedArchitectureError) and issubclass(cls, ValueError) and cls.exit_code == 6
    assert all(issubclass(c, HfmemError) for c in (SettingsError, KVLayoutError))


runner = CliRunner()


def cli(*args):
    return runner.invoke(app, route_argv(list(args)))


def test_bad_cli_value_is_exit_2_with_one_line_naming_the_flag():
    result = cli("train", "meta-llama/Llama-2-7b-hf", "--offline", "--gpus", "3", "--tp", "2")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--gpus 3" in lines[0] and "not a multiple" in lines[0]


def test_plain_value_error_inside_hfmem_is_an_internal_error(monkeypatch):
    import hfmem.plan.gpus as gpus

    def broken(*args, **kwargs):
        raise ValueError("a bug, not a setting")

    monkeypatch.setattr(gpus, "parse_gpu", broken)
    result = cli("train", "meta-llama/Llama-2-7b-hf", "--offline", "--gpu", "H100-80GB")
    assert result.exit_code == 70, result.stderr
    assert "internal error" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_plain_value_error_inside_an_estimate_is_an_internal_error_not_a_usage_error(monkeypatch):
    # api.train used to turn any ValueError raised while estimating into "usage error, exit 2"
    import hfmem.scenarios.finetune as finetune

    def broken(*args, **kwargs):
        raise ValueError("a bug inside the estimate")

    monkeypatch.setattr(finetune, "estimate_training", broken)
    result = cli("train", "meta-llama/Llama-2-7b-hf", "--offline")
    assert result.exit_code == 70, result.stderr
    assert "internal error" in result.stderr


def test_a_bad_setting_stays_exit_2_with_one_line():
    # parameter offload with ZeRO stage 2 (DeepSpeedZeroConfig refuses offload_param below stage 3)
    result = cli("train", "meta-llama/Llama-2-7b-hf", "--offline", "--precision", "deepspeed-bf16", "--zero", "2",
                 "--offload-param")
    assert result.exit_code == 2, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "stage 3" in line
