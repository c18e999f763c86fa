"""hfmem.simulate: the fake-tensor engine against the real CPU allocator and against closed forms.

How the real peak is measured (the reference for the exactness tests): the same model is built with real
random weights and run with the same inputs and optimizer under ``torch.profiler.profile(profile_memory=True)``.
The CPU allocator reports every allocation and free made while profiling as an allocation event
(``_ExtraFields_Allocation`` in the profiler's event tree: time, signed ``alloc_size``). Sorting them by
time and summing gives the running allocated total; adding the bytes that were already live when
profiling started (parameters, buffers, the input ids: the reporter does not see them) gives the absolute
figure the simulation reports. Each phase is wrapped in ``record_function("phase:<name>@<iteration>")``
so that its peak is the maximum of the running total inside that range.

Why the replay and not the events' ``total_allocated`` field: c10's ProfiledCPUMemoryReporter keeps that
running total for the whole process and never resets it between profiling sessions, so in a second
session it starts from whatever the first one left allocated. The replay only uses the session's own
events (and ``gc.collect()`` before profiling makes sure no earlier tensor is freed inside the session).

What the real CPU run allocates that the simulation cannot see: Python scalars wrapped into 8-byte
tensors by the argument parser (``x * 0.5``), a few bytes each, transient. Hence the 1 KiB tolerance; in
practice the difference is 0 to 64 bytes.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from hfmem.simulate import PhaseStat, SimResult, SimulationError, simulate_infer, simulate_train  # noqa: E402
from hfmem.simulate import build  # noqa: E402

KIB = 1024

LLAMA = dict(  # GQA: 4 query heads share 2 key/value heads, head_dim 16
    model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=64, intermediate_size=128,
    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
)
GPT2 = dict(  # tied LM head, fused qkv projection, learned positions, dropout
    model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=64, n_layer=2, n_head=4,
    vocab_size=512, n_positions=256,
)
QWEN2 = dict(
    model_type="qwen2", architectures=["Qwen2ForCausalLM"], hidden_size=64, intermediate_size=128,
    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
)


# -- the real CPU reference --------------------------------------------------------------------------------
def _storage_bytes(tensors) -> int:
    seen = {}
    for t in tensors:
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def _allocations_and_phases(prof):
    """(time, signed bytes) of every CPU allocation event, and {phase: (start, end)} of our ranges."""
    allocs, phases = [], {}

    def walk(node):
        extra = node.extra_fields
        if type(extra).__name__ == "_ExtraFields_Allocation":
            allocs.append((node.start_time_ns, extra.alloc_size))
        elif node.name.startswith("phase:"):
            phases[node.name.removeprefix("phase:")] = (node.start_time_ns, node.end_time_ns)
        for child in node.children:
            walk(child)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root)
    allocs.sort()
    return allocs, phases


def _phase_peaks(prof, baseline: int) -> dict[str, tuple[int, int]]:
    """{phase: (peak bytes, live bytes at its end)} from the replayed running total."""
    allocs, phases = _allocations_and_phases(prof)
    out = {}
    for name, (start, end) in phases.items():
        running = baseline
        peak = None
        for t, nbytes in allocs:
            if t > end:
                break
            if t >= start and peak is None:
                peak = running  # live at the phase start
            running += nbytes
            if t >= start:
                peak = max(peak, running)
        out[name] = (running if peak is None else peak, running)
    return out


def _profile(fn, baseline_tensors):
    baseline = _storage_bytes(baseline_tensors)
    gc.collect()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return _phase_peaks(prof, baseline)


def _real_model(config, attn, grad_ckpt=False):
    torch.manual_seed(0)
    model = build.build_model(config, dtype=torch.float32, attn=attn)
    if grad_ckpt:
        build.enable_checkpointing(model)
    return model


def real_train(config, *, batch, seq, attn, grad_ckpt=False, iterations=2):
    model = _real_model(config, attn, grad_ckpt)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=True)
    ids = torch.randint(0, config["vocab_size"], (batch, seq))

    def run():
        for it in range(1, iterations + 1):
            with torch.profiler.record_function(f"phase:forward@{it}"):
                loss = model(input_ids=ids, labels=ids).loss
            with torch.profiler.record_function(f"phase:backward@{it}"):
                loss.backward()
                del loss
            with torch.profiler.record_function(f"phase:optimizer_step@{it}"):
                opt.step()
                opt.zero_grad(set_to_none=True)

    return _profile(run, [*model.parameters(), *model.buffers(), ids])


def real_infer(config, *, batch, context, new_tokens, attn):
    model = _real_model(config, attn)
    model.eval()
    ids = torch.randint(0, config["vocab_size"], (batch, context))

    def run():
        with torch.no_grad():
            with torch.profiler.record_function("phase:prefill@1"):
                out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
                cache, nxt = out.cache, out.logits[:, -1:].argmax(-1)
                del out
            with torch.profiler.record_function("phase:decode@1"):
                for _ in range(new_tokens):
                    out = model(input_ids=nxt, cache=cache, use_cache=True, logits_to_keep=1)
                    cache, nxt = out.cache, out.logits[:, -1:].argmax(-1)
                    del out

    return _profile(run, [*model.parameters(), *model.buffers(), ids])


def assert_phases_match(sim: SimResult, real: dict, tolerance: int = KIB):
    assert {f"{p.name}@{p.iteration}" for p in sim.phases} == set(real)
    for p in sim.phases:
        real_peak, real_end = real[f"{p.name}@{p.iteration}"]
        assert abs(p.peak_bytes - real_peak) <= tolerance, (p.name, p.iteration, p.peak_bytes, real_peak)
        assert abs(p.live_bytes_end - real_end) <= tolerance, (p.name, p.iteration, p.live_bytes_end, real_end)
    assert abs(sim.peak_allocated_bytes - max(peak for peak, _ in real.values())) <= tolerance


# -- 1. exactness against the real CPU allocator --------------------------------------------------------
@pytest.mark.parametrize("config,attn", [  # GPT-2 and Qwen2 (1.3 s each) run in the slow set
    (LLAMA, "eager"), pytest.param(GPT2, "sdpa", marks=pytest.mark.slow),
    pytest.param(QWEN2, "sdpa", marks=pytest.mark.slow)], ids=["llama-eager", "gpt2-sdpa", "qwen2-sdpa"])
def test_training_peak_equals_real_cpu_allocator(config, attn):
    sim = simulate_train(config, batch=2, seq=128, dtype="float32", attn=attn, gpu_emulation=False)
    real = real_train(config, batch=2, seq=128, attn=attn)
    assert_phases_match(sim, real)


@pytest.mark.parametrize("config,attn", [pytest.param(LLAMA, "sdpa", marks=pytest.mark.slow), (GPT2, "eager")],
                         ids=["llama-sdpa", "gpt2-eager"])  # Llama (1.2 s) in the slow set
def test_inference_peak_equals_real_cpu_allocator(config, attn):
    sim = simulate_infer(config, batch=2, context=64, new_tokens=3, dtype="float32", attn=attn,
                         gpu_emulation=False)
    real = real_infer(config, batch=2, context=64, new_tokens=3, attn=attn)
    assert_phases_match(sim, real)


def test_gradient_checkpointing_differs_from_real_cpu_only_by_host_rng_states():
    """Non-reentrant checkpointing keeps ``torch.get_rng_state()`` (a CPU tensor made outside any op)
    per checkpointed layer; on a GPU that is host memory, so the simulation does not count it. It is the
    whole difference."""
    sim = simulate_train(LLAMA, batch=2, seq=128, dtype="float32", attn="sdpa", gpu_emulation=False,
                         grad_ckpt=True)
    real = real_train(LLAMA, batch=2, seq=128, attn="sdpa", grad_ckpt=True)
    rng_states = LLAMA["num_hidden_layers"] * torch.get_rng_state().nbytes
    fwd_peak, fwd_end = real["forward@2"]
    assert abs(sim.phase("forward", 2).live_bytes_end - (fwd_end - rng_states)) <= KIB
    assert abs(sim.phase("backward", 2).peak_bytes - (real["backward@2"][0] - rng_states)) <= KIB
    plain = simulate_train(LLAMA, batch=2, seq=128, dtype="float32", attn="sdpa", gpu_emulation=False)
    assert sim.phase("forward", 2).by_category["activations"] < plain.phase("forward", 2).by_category["activations"]


# -- 2. the optimizer step's closed form ----------------------------------------------------------------
def _round512(n: int) -> int:
    return -(-n // 512) * 512


def _meta_params(config, dtype=torch.bfloat16) -> list:
    with torch.device("meta"):
        return list(build.build_model(config, dtype=dtype, attn="sdpa").parameters())  # tied weights once


def _param_bytes_512(config, dtype=torch.bfloat16) -> tuple[int, int]:
    """(sum of 512-rounded parameter bytes, number of parameter tensors)."""
    params = _meta_params(config, dtype)
    return sum(_round512(p.numel() * p.element_size()) for p in params), len(params)


@pytest.mark.parametrize("impl", ["foreach", "fused", "forloop"])
def test_adamw_step_closed_form(impl):
    """What torch's AdamW allocates in a steady-state step (torch/optim/adam.py), with P = the sum of the
    512-rounded parameter bytes and all parameters trainable and of one dtype (bf16 here, so the states
    are bf16 too):

    * before the step (end of backward 2): parameters P + gradients P + exp_avg P + exp_avg_sq P = 4P;
      ``step`` counters are host tensors (``torch.tensor(0.0)`` without a device) for foreach and the
      for-loop, device tensors of 4 B (= 512 B each) for fused (``torch.zeros((), device=p.device)``).
    * foreach (``_multi_tensor_adam``): lerp_/mul_/addcmul_ are in place; ``exp_avg_sq_sqrt =
      torch._foreach_sqrt(exp_avg_sqs)`` allocates one parameter-sized tensor per parameter, all alive
      together until ``_foreach_addcdiv_``: the step's peak is live + P, i.e. 5P in all: the issue's "x5".
    * fused (``_fused_adamw_``): one in-place kernel, nothing allocated: the peak is the live 4P (+ the
      device step counters): the issue's "x4".
    * for-loop (``_single_tensor_adam``): ``denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt)`` holds
      two temporaries of parameter i while ``denom`` of parameter i-1 is still bound (Python releases the
      old value only after the new one is assigned): live + max_i (2 p_i + p_(i-1)), in optimizer order.
    """
    sim = simulate_train(LLAMA, batch=2, seq=64, dtype="bfloat16", optimizer="adamw", optimizer_impl=impl)
    total, n_params = _param_bytes_512(LLAMA)
    before = sim.phase("backward", 2)
    step = sim.phase("optimizer_step", 2)
    device_steps = n_params * 512 if impl == "fused" else 0
    assert before.by_category["parameters"] == total
    assert before.by_category["gradients"] == total
    assert before.by_category["optimizer_state"] == 2 * total + device_steps
    assert step.live_bytes_start == before.live_bytes_end
    extra = step.peak_bytes - step.live_bytes_start
    sizes = [_round512(p.numel() * 2) for p in _meta_params(LLAMA)]
    forloop = max(2 * cur + prev for prev, cur in zip([0, *sizes], sizes))
    assert extra == {"foreach": total, "fused": 0, "forloop": forloop}[impl]
    others = before.by_category["buffers"] + before.by_category["activations"]  # the input ids, rotary buffers
    if impl != "forloop":
        assert step.peak_bytes - others - device_steps == {"foreach": 5, "fused": 4}[impl] * total


# -- 3. a GPU-emulated training run ----------------------------------------------------------------------
def test_gpu_emulated_training_phases_and_determinism():
    first = simulate_train(LLAMA, batch=2, seq=64, dtype="bfloat16", attn="sdpa")
    names = [(p.name, p.iteration) for p in first.phases]
    assert names == [(n, i) for i in (1, 2) for n in ("forward", "backward", "optimizer_step")]
    total, _ = _param_bytes_512(LLAMA)
    assert first.peak_allocated_bytes >= 4 * total  # parameters + gradients + two AdamW states
    assert first.peak_allocated_bytes == max(p.peak_bytes for p in first.phases)
    for p in first.phases:
        assert p.peak_bytes >= max(p.live_bytes_start, p.live_bytes_end)
        assert sum(v for k, v in p.by_category.items() if k != "temporary") == p.live_bytes_end
        assert p.by_category["temporary"] == p.peak_bytes - p.live_bytes_end
        assert all(v % 512 == 0 for v in p.by_category.values())  # every block rounded to 512 B
    assert sum(first.peak_by_category.values()) == first.peak_allocated_bytes
    second = simulate_train(LLAMA, batch=2, seq=64, dtype="bfloat16", attn="sdpa")
    strip = lambda r: {k: v for k, v in r.to_dict().items() if k != "elapsed_s"}  # noqa: E731
    assert strip(first) == strip(second)
    data = json.loads(json.dumps(first.to_dict()))
    assert isinstance(data["peak_allocated_bytes"], int)
    assert "CUDA context" in data["not_included"]
    assert any("512-byte" in a for a in data["assumptions"])


def test_gpu_emulation_routes_attention_and_dropout():
    """Eager attention materializes the b x h x s x s scores; the flash op does not. GPT-2's dropout
    (p=0.1) costs a 1-byte mask per element with native_dropout instead of a noise tensor of the
    activation's dtype."""
    kw = dict(batch=2, seq=128, dtype="bfloat16")
    eager = simulate_train(LLAMA, attn="eager", **kw).phase("forward", 2).by_category["activations"]
    flash = simulate_train(LLAMA, attn="sdpa", **kw).phase("forward", 2).by_category["activations"]
    assert eager > flash
    cpu_dropout = simulate_train(GPT2, attn="sdpa", gpu_emulation=False, **kw)
    gpu_dropout = simulate_train(GPT2, attn="sdpa", **kw)
    assert gpu_dropout.phase("forward", 2).by_category["activations"] < \
        cpu_dropout.phase("forward", 2).by_category["activations"]


# -- 4. the KV cache ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("gpu_emulation", [False, True])
def test_kv_cache_matches_hand_formula(gpu_emulation):
    batch, context, new = 3, 40, 2
    head_dim = LLAMA["hidden_size"] // LLAMA["num_attention_heads"]
    per_token = 2 * LLAMA["num_hidden_layers"] * LLAMA["num_key_value_heads"] * head_dim * 2  # K+V, bf16
    sim = simulate_infer(LLAMA, batch=batch, context=context, new_tokens=new, dtype="bfloat16",
                         gpu_emulation=gpu_emulation)
    one_tensor = batch * LLAMA["num_key_value_heads"] * head_dim * 2  # bytes per token of one K or V
    tensors = 2 * LLAMA["num_hidden_layers"]
    rounded = (lambda n: _round512(n)) if gpu_emulation else (lambda n: n)
    prefill, decode = sim.phase("prefill"), sim.phase("decode")
    assert prefill.kv_cache_bytes == tensors * rounded(one_tensor * context)
    assert decode.kv_cache_bytes == tensors * rounded(one_tensor * (context + new)) == sim.kv_cache_bytes
    if not gpu_emulation:
        assert prefill.kv_cache_bytes == batch * context * per_token
    assert prefill.by_category["kv_cache"] == prefill.kv_cache_bytes


# -- 5. errors -------------------------------------------------------------------------------------------
def test_unsupported_optimizer_is_a_clear_error():
    with pytest.raises(SimulationError, match=r"optimizer 'lamb' cannot be simulated \(supported: adamw"):
        simulate_train(LLAMA, batch=1, seq=16, optimizer="lamb")


def test_bad_settings_are_clear_errors():
    with pytest.raises(SimulationError, match="unknown attention"):
        simulate_train(LLAMA, batch=1, seq=16, attn="paged")
    with pytest.raises(SimulationError, match="iterations must be at least 2"):
        simulate_train(LLAMA, batch=1, seq=16, iterations=1)
    with pytest.raises(SimulationError, match="flash attention runs in float16/bfloat16"):
        simulate_infer(LLAMA, context=16, dtype="float32", attn="flash")


def test_model_code_failure_names_architecture_and_op(monkeypatch):
    """Data-dependent control flow inside model code: one line with the architecture and the op."""
    import transformers.models.llama.modeling_llama as modeling

    original = modeling.LlamaMLP.forward

    def data_dependent(self, x):
        if float(x.sum()) > 0:  # reads a number a fake tensor does not have (truth values are answered False)
            return original(self, x)
        return original(self, x)

    monkeypatch.setattr(modeling.LlamaMLP, "forward", data_dependent)
    with pytest.raises(SimulationError) as info:
        simulate_train(LLAMA, batch=1, seq=16)
    message = str(info.value)
    assert message.startswith("LlamaForCausalLM cannot run on fake tensors: op aten._local_scalar_dense")
    assert "\n" not in message


# -- options ---------------------------------------------------------------------------------------------
def test_other_optimizers_and_amp_run():
    kw = dict(batch=1, seq=32, dtype="bfloat16")
    adamw = simulate_train(LLAMA, **kw).peak_allocated_bytes
    sgd = simulate_train(LLAMA, optimizer="sgd", **kw).peak_allocated_bytes
    momentum = simulate_train(LLAMA, optimizer="sgd-momentum", **kw).peak_allocated_bytes
    adafactor = simulate_train(LLAMA, optimizer="adafactor", **kw)
    assert sgd < momentum < adamw
    assert adafactor.phase("optimizer_step", 2).by_category["optimizer_state"] > 0
    amp = simulate_train(LLAMA, amp="bf16", **kw)
    assert amp.inputs["weights_dtype"] == "float32"  # autocast runs on fp32 weights
    fp32_params, _ = _param_bytes_512(LLAMA, torch.float32)
    assert amp.phase("backward", 2).by_category["parameters"] == fp32_params
    assert amp.phase("backward", 2).by_category["gradients"] == fp32_params


def test_lora_trains_only_adapters():
    pytest.importorskip("peft")
    full = simulate_train(LLAMA, batch=1, seq=32, dtype="bfloat16")
    lora = simulate_train(LLAMA, batch=1, seq=32, dtype="bfloat16",
                          lora=dict(r=8, alpha=16, targets=["q_proj", "v_proj"]))
    step = lora.phase("backward", 2).by_category
    # r=8 adapters on q_proj (64 -> 64) and v_proj (64 -> 32) of 2 layers, in fp32 (PEFT's default):
    # lora_A r x in, lora_B out x r.
    adapters = 2 * sum(_round512(n * 4) for n in (8 * 64, 64 * 8, 8 * 64, 32 * 8))
    assert step["gradients"] == adapters
    assert step["optimizer_state"] == 2 * adapters
    assert lora.peak_allocated_bytes < full.peak_allocated_bytes


def test_result_types_import_without_torch():
    code = "import sys, hfmem.simulate as s; s.SimResult; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_phase_stat_to_dict_omits_kv_for_training():
    stat = PhaseStat("forward", 1, 10, 0, 5, {"activations": 5, "temporary": 5})
    assert "kv_cache_bytes" not in stat.to_dict()
