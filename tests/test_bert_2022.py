"""The 2022 bert-large "model training anatomy" runs (transformers docs perf_train_gpu_one; ../shared/docs/
ground-truth.md §7a): two mechanisms of that era's stack.

* zero_grad(set_to_none=False): torch < 2.0's default for nn.Module.zero_grad / Optimizer.zero_grad (torch
  2.0 changed it to True), which the 2022 Trainer's ``model.zero_grad()`` ran: the zeroed fp32 gradients stay
  allocated through every forward and backward, accumulation or not (TrainSettings.grads_set_to_none).
* torch.autocast's weight cache: aten/src/ATen/autocast_mode.cpp ``cached_cast`` caches the 16-bit cast of
  every leaf that requires grad (``arg.is_leaf() && arg.requires_grad()``) until the outermost autocast
  context exits, so under checkpointing the layers' cast weights are still held at the end of the forward.
"""
from __future__ import annotations

import json

import pytest

import hfmem
import hfmem.reference.measurements as M
from hfmem.scenarios import train_activations as A
from hfmem.scenarios.overheads import Overheads
from hfmem.units import MiB
from tests.conftest import json_out, run_hfmem

CFG = M.BERT_LARGE_CONFIG
H, INTER, LAYERS = CFG["hidden_size"], CFG["intermediate_size"], CFG["num_hidden_layers"]


@pytest.fixture
def bert(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(CFG))
    return str(tmp_path)


def _transformers_params() -> int:
    """Trainable parameters of transformers' own BertForSequenceClassification on this config (meta device:
    no memory)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(**{k: v for k, v in CFG.items() if k not in ("architectures", "model_type")})
    with torch.device("meta"):
        model = transformers.BertForSequenceClassification(config)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _phases(est) -> dict[str, int]:
    return {name: int(v) for name, v in est.phases.items()}


# -- gradients kept (set_to_none=False) ----------------------------------------------------------------------

def test_kept_gradients_raise_the_forward_by_the_fp32_gradients(bert):
    kw = dict(precision="fp32", attn="eager", batch=1, seq=128)
    freed = hfmem.train(bert, **kw).estimate
    kept = hfmem.train(bert, grads_set_to_none=False, **kw).estimate
    psi = _transformers_params()
    # fp32 full fine-tuning: one 4 B gradient per trainable parameter, all held while the forward runs
    assert kept.components["gradients_bytes"] == 4 * psi
    assert _phases(kept)["forward"] - _phases(freed)["forward"] == 4 * psi
    # the optimizer step holds every gradient either way
    assert _phases(kept)["optimizer_step"] == _phases(freed)["optimizer_step"]
    assert any("set_to_none=False" in a for a in kept.assumptions)
    assert not any("zero_grad(set_to_none=False) (torch" in a for a in freed.assumptions)


def test_kept_gradients_change_nothing_with_accumulation(bert):
    """With accumulation the gradients are already held through the forward: the same numbers."""
    kw = dict(precision="fp32", attn="eager", batch=1, seq=128, grad_accum=4)
    assert (_phases(hfmem.train(bert, grads_set_to_none=False, **kw).estimate)
            == _phases(hfmem.train(bert, **kw).estimate))


# -- autocast's weight cache under checkpointing ---------------------------------------------------------------

def _acts(grad_ckpt: bool, lora=False):
    return A.activation_bytes(CFG, batch=1, seq=128, attn="eager", dtype_bytes=4, amp="fp16",
                              grad_ckpt=grad_ckpt, lora=lora)


def test_autocast_cache_held_to_the_end_of_the_forward():
    # BERT layer Linears: Q, K, V, attention output (h×h each) + intermediate and output (h×I each),
    # 2 B per cached fp16 element, every layer at once at the loss
    cached = 2 * LAYERS * (4 * H * H + 2 * H * INTER)
    assert _acts(True).forward_transient_bytes - _acts(False).forward_transient_bytes == cached
    # the last layer's forward: the cache of all layers (its own included)
    assert _acts(True).layer_forward_transient_bytes >= cached


def test_frozen_base_is_not_cached():
    """LoRA: the base weights do not require grad, so autocast casts them per call without caching."""
    assert _acts(True, lora=True).forward_transient_bytes == _acts(False, lora=True).forward_transient_bytes


def test_no_cache_term_without_amp():
    kw = dict(batch=1, seq=128, attn="eager", dtype_bytes=4)
    assert (A.activation_bytes(CFG, grad_ckpt=True, **kw).forward_transient_bytes
            == A.activation_bytes(CFG, grad_ckpt=False, **kw).forward_transient_bytes)


# -- the measured 2022 rows ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, measured_mib", M.BERT_LARGE_ANATOMY_MIB)
def test_bert_large_2022_rows(bert, args, measured_mib):
    """nvidia-smi MiB of the 2022 runs (V100, the page's own 1343 MB CUDA context) with that torch's
    zero_grad: every row within 7% (the batch-4 amp row, -6.7%, is the worst)."""
    settings = dict(precision="fp32", attn="eager", adamw_impl="forloop", seq=512, grads_set_to_none=False,
                    overheads=Overheads(cuda_context_bytes=M.BERT_LARGE_CUDA_CONTEXT_MIB * MiB))
    settings.update(args)
    est = hfmem.train(bert, **settings).estimate
    assert est.device_total_bytes == pytest.approx(measured_mib * MiB, rel=0.07)


# -- CLI and API side by side -------------------------------------------------------------------------------

@pytest.mark.parametrize("flag, value", [pytest.param("--no-zero-grad-set-to-none", False, marks=pytest.mark.slow),
                                         pytest.param("--zero-grad-set-to-none", True, marks=pytest.mark.slow),
                                         pytest.param(None, True, marks=pytest.mark.slow)])
def test_cli_flag_matches_the_api(bert, flag, value):
    args = ["train", bert, "--precision", "fp32", "--attn", "eager", "--batch", "1", "--seq", "128",
            "--offline", "--format", "json"] + ([flag] if flag else [])
    m = json_out(run_hfmem(*args))["models"][0]
    api = hfmem.train(bert, hfmem.Options(offline=True), precision="fp32", attn="eager", batch=1, seq=128,
                      grads_set_to_none=value).estimate
    assert m["inputs"]["grads_set_to_none"] is value
    assert m["peak_allocated_bytes"] == api.peak_allocated_bytes
    assert {p["name"]: p["peak_allocated_bytes"] for p in m["phases"]} == _phases(api)
