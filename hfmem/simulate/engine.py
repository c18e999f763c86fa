"""Run a training step or a prefill + decode of the real transformers model code on fake tensors and
record the allocator-level memory of every phase (see tracker.py for how memory is counted and
emulation.py for what makes the fake CPU run take a CUDA run's memory path).
"""

from __future__ import annotations

import contextlib
import inspect
import time
import traceback
from typing import Any

import torch
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensorMode,
    UnsupportedOperatorException,
)

from ..inventory.meta_model import versions
from . import build, optim
from .emulation import CUDA_MIN_BLOCK, eager_input_semantics, gpu_patches
from .inputs import InputSizes, ModelInputs, build_inputs, head_kind
from .result import (
    ACTIVATIONS,
    BUFFERS,
    NoSdpaError,
    GRADIENTS,
    KV_CACHE,
    OPTIMIZER_STATE,
    OPTIMIZER_TEMPORARY,
    PARAMETERS,
    TEMPORARY,
    PhaseStat,
    SimResult,
    SimulationError,
)
from .tracker import HOST, MemoryTracker

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


# -- public entry points ------------------------------------------------------------------------------
def simulate_train(config: dict, *, batch: int = 1, seq: int = 512, dtype: str = "bfloat16",
                   attn: str = "sdpa", grad_ckpt: bool = False, optimizer: str = "adamw",
                   optimizer_impl: str = "foreach", amp: str | None = None, iterations: int = 2,
                   gpu_emulation: bool = True, lora: dict | None = None, target_seq: int | None = None,
                   image_size: int | None = None, audio_seconds: float | None = None,
                   grad_accum: int = 1) -> SimResult:
    """Simulate ``iterations`` training steps (forward with loss, backward, optimizer step and
    ``zero_grad(set_to_none=True)``) on a batch of ``batch`` samples: [batch, seq] tokens for text (the source
    of an encoder-decoder, whose labels have ``target_seq`` tokens), images of ``image_size`` pixels, or
    ``audio_seconds`` of audio, by the model's main input (``inputs.py``). Step 2 is the steady state: the
    optimizer states exist from step 1 on."""
    inputs = dict(mode="train", batch=batch, seq=seq, dtype=dtype, attn=attn, grad_ckpt=grad_ckpt,
                  optimizer=optimizer, optimizer_impl=optimizer_impl, amp=amp, iterations=iterations,
                  gpu_emulation=gpu_emulation, lora=lora)
    inputs.update({k: v for k, v in dict(target_seq=target_seq, image_size=image_size,
                                         audio_seconds=audio_seconds).items() if v is not None})
    if grad_accum != 1:
        inputs["grad_accum"] = grad_accum
    _check_positive(grad_accum=grad_accum)
    _check_positive(batch=batch, seq=seq, **{k: v for k, v in dict(target_seq=target_seq,
                                                                   image_size=image_size).items() if v})
    if audio_seconds is not None and not audio_seconds > 0:
        raise SimulationError("audio_seconds must be more than 0")
    if iterations < 2:
        raise SimulationError("iterations must be at least 2 (optimizer states exist only from step 2 on)")
    if amp not in (None, *AMP_DTYPES):
        raise SimulationError(f"unknown amp {amp!r} (use bf16, fp16 or none)")
    weights_dtype = torch.float32 if amp else build.resolve_dtype(dtype)
    _check_flash(attn, amp or dtype)
    inputs["weights_dtype"] = str(weights_dtype).removeprefix("torch.")
    arch = build.architecture_name(config)
    started = time.perf_counter()
    tracker = MemoryTracker(CUDA_MIN_BLOCK if gpu_emulation else 1)
    with _fake_run(arch, tracker, gpu_emulation, attn) as fake_mode:
        model, model_notes = _training_model(config, arch, weights_dtype, attn, grad_ckpt, lora, fake_mode)
        opt = optim.make_optimizer(optimizer, optimizer_impl, [p for p in model.parameters() if p.requires_grad])
        sizes = InputSizes(batch, seq, target_seq or _default_target(model, seq), image_size, audio_seconds)
        batch_inputs = build_inputs(model, sizes, labels=True, dtype=weights_dtype)
        inputs.update(batch_inputs.sample)
        _track_start(tracker, model, _tensors(batch_inputs.tensors))
        phases = _train_loop(model, opt, batch_inputs, tracker, iterations, amp, gpu_emulation, arch, grad_accum)
    assumptions = _train_assumptions(gpu_emulation, attn, optimizer, optimizer_impl, amp, grad_ckpt, lora,
                                     batch_inputs) + model_notes
    return _result("train", arch, phases, tracker, started, inputs, assumptions, model=model)


def simulate_infer(config: dict, *, batch: int = 1, context: int = 512, new_tokens: int = 1,
                   dtype: str = "bfloat16", attn: str = "sdpa", gpu_emulation: bool = True,
                   image_size: int | None = None, audio_seconds: float | None = None) -> SimResult:
    """Simulate a prefill over [batch, context] into a DynamicCache, then ``new_tokens`` decode steps of
    one token each, under ``torch.no_grad()``, driven by hand (``generate()`` stops on data). A model that
    does not generate (an encoder, a vision or audio classifier, a contrastive dual encoder) runs one forward
    over its batch instead; an encoder-decoder encodes its input (tokens, Whisper's 30 s windows) in the
    prefill, whose decoder reads one start token."""
    inputs = dict(mode="infer", batch=batch, context=context, new_tokens=new_tokens, dtype=dtype,
                  attn=attn, gpu_emulation=gpu_emulation)
    inputs.update({k: v for k, v in dict(image_size=image_size, audio_seconds=audio_seconds).items()
                   if v is not None})
    _check_positive(batch=batch, context=context, **({"image_size": image_size} if image_size else {}))
    if audio_seconds is not None and not audio_seconds > 0:
        raise SimulationError("audio_seconds must be more than 0")
    if new_tokens < 0:
        raise SimulationError("new_tokens must be 0 or more")
    weights_dtype = build.resolve_dtype(dtype)
    _check_flash(attn, dtype)
    arch = build.architecture_name(config)
    started = time.perf_counter()
    tracker = MemoryTracker(CUDA_MIN_BLOCK if gpu_emulation else 1)
    with _fake_run(arch, tracker, gpu_emulation, attn), torch.no_grad():
        model = build.build_model(config, dtype=weights_dtype, attn=attn)
        model.eval()
        sizes = InputSizes(batch, context, None, image_size, audio_seconds)
        prompt = build_inputs(model, sizes, labels=False, dtype=weights_dtype)
        inputs.update(prompt.sample)
        if _model_kind(model) == "encoder":
            inputs["new_tokens"] = 0  # nothing is generated
        _track_start(tracker, model, _tensors(prompt.tensors))
        phases, kv_bytes = _infer_loop(model, prompt.tensors, tracker, new_tokens)
    assumptions = _infer_assumptions(gpu_emulation, attn, model_kind=_model_kind(model)) + prompt.assumptions
    assumptions += [n for n in [build.bare_encoder_decoder_note(config, model)] if n]
    return _result("infer", arch, phases, tracker, started, inputs, assumptions, kv_bytes, model=model)


EAGER_FALLBACK = "attention: eager, what transformers picks for this model (it has no SDPA path)"


def simulate(mode: str, config: dict, *, attn_chosen: bool = False, **settings) -> SimResult:
    """``simulate_train`` (mode "train") or ``simulate_infer`` ("infer") with ``settings``. ``attn_chosen``: the
    attention was the caller's default, not the user's; a model transformers has no SDPA path for that the
    shipped list misses (DeBERTa-v2, MPNet, WavLM) then runs eager, as transformers itself would, and its
    assumptions say so (``EAGER_FALLBACK``)."""
    run = simulate_train if mode == "train" else simulate_infer
    try:
        return run(config, **settings)
    except NoSdpaError:
        if not (attn_chosen and settings.get("attn") == "sdpa"):
            raise
    result = run(config, **{**settings, "attn": "eager"})
    result.assumptions.insert(0, EAGER_FALLBACK)
    return result


# -- running -------------------------------------------------------------------------------------------
def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if int(value) < 1:
            raise SimulationError(f"{name} must be at least 1")


def _check_flash(attn: str, compute_dtype: str) -> None:
    if attn == "flash" and compute_dtype in ("float32", "fp32"):
        raise SimulationError("flash attention runs in float16/bfloat16 only: use dtype bfloat16 or amp bf16")


@contextlib.contextmanager
def _fake_run(arch: str, tracker: MemoryTracker, gpu_emulation: bool, attn: str):
    """Fake CPU tensors, the GPU patches, and one clear SimulationError for whatever cannot run."""
    # allow_non_fake_inputs: model code may touch a real tensor (a constant made at import time); it is
    # converted to a fake one.
    with FakeTensorMode(allow_non_fake_inputs=True) as fake_mode, eager_input_semantics(), \
            gpu_patches(gpu_emulation=gpu_emulation, attn=attn):
        try:
            yield fake_mode
        except SimulationError:
            raise
        except Exception as exc:
            raise SimulationError(_explain(arch, tracker, exc)) from exc


def _explain(arch: str, tracker: MemoryTracker, exc: Exception) -> str:
    op = getattr(exc, "func", None) or (tracker.failed_op if _caused_by(exc, tracker.failed_exc_id) else None)
    if isinstance(exc, DataDependentOutputException):
        why = "its output depends on tensor values, which fake tensors do not have"
    elif isinstance(exc, DynamicOutputShapeException):
        why = "its output shape depends on tensor values (data-dependent shape)"
    elif isinstance(exc, UnsupportedOperatorException):
        why = "it has no fake-tensor (meta) kernel"
    else:
        why = f"{exc.__class__.__name__}: {build.first_line(exc)}"
    where = _model_code_location(exc)
    if op is None:
        return f"{arch} cannot run on fake tensors ({why}){where}"
    return f"{arch} cannot run on fake tensors: op {op} failed ({why}){where}"


def _caused_by(exc: BaseException, cause_id: int | None) -> bool:
    """Whether ``exc`` is, or was raised while handling, the exception with id ``cause_id``."""
    seen = 0
    while exc is not None and seen < 10:
        if id(exc) == cause_id:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _model_code_location(exc: Exception) -> str:
    """' at modeling_x.py:123' for the innermost frame in transformers/peft model code, if any."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if ("/transformers/" in frame.filename or "/peft/" in frame.filename) and "modeling" in frame.filename:
            return f" at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
    return ""


def _training_model(config: dict, arch: str, dtype: torch.dtype, attn: str, grad_ckpt: bool,
                    lora: dict | None, fake_mode):
    model = build.build_model(config, dtype=dtype, attn=attn)
    if head_kind(model) == "none":
        raise SimulationError(f"{type(model).__name__} has no task head: training needs one (name the task "
                              "class, e.g. …ForSequenceClassification, in config.json's \"architectures\")")
    model.train()
    notes = [n for n in [build.bare_encoder_decoder_note(config, model)] if n]
    for key in ("mask_time_prob", "mask_feature_prob"):
        if getattr(model.config, key, 0.0):
            notes.append(f"SpecAugment off ({key} {getattr(model.config, key)} → 0): its in-place masking "
                         "allocates only a bool mask")
            # SpecAugment (wav2vec2, HuBERT, Whisper's apply_spec_augment): numpy-chosen spans written in place
            # with a learned vector; its index mask has a data-dependent shape. Off here: the in-place write
            # allocates nothing beyond a [batch, frames] bool mask.
            setattr(model.config, key, 0.0)
    if grad_ckpt:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise SimulationError(f"{arch}: transformers does not support gradient checkpointing for this model")
        build.enable_checkpointing(model)
    if lora is not None:
        model = build.apply_lora(model, lora, arch, fake_mode)
        model.train()
    return model, notes


def _tensors(batch: dict) -> list[torch.Tensor]:
    return [t for t in batch.values() if isinstance(t, torch.Tensor)]


def _default_target(model, seq: int) -> int | None:
    """An encoder-decoder's label length when none is given: the source length, within the decoder's
    position table (Whisper: 448)."""
    if not getattr(model.config, "is_encoder_decoder", False):
        return None
    limit = getattr(model.config, "max_target_positions", None)
    return min(seq, int(limit)) if limit else seq


def _track_start(tracker: MemoryTracker, model, inputs) -> None:
    """What is live before the first op: parameters, buffers, the input tensors."""
    for p in model.parameters():
        tracker.track(p, PARAMETERS)
    for b in model.buffers():
        tracker.track(b, BUFFERS)
    for t in inputs:
        tracker.track(t, tracker.default_category)


class _Phases:
    """Records a PhaseStat for each phase run on ``tracker``."""

    def __init__(self, tracker: MemoryTracker):
        self.tracker = tracker
        self.stats: list[PhaseStat] = []

    @contextlib.contextmanager
    def phase(self, name: str, iteration: int, finish=None):
        t = self.tracker
        start = t.live
        t.start_phase(f"{name}@{iteration}")
        yield
        kv_bytes = finish() if finish else None  # re-categorise what the phase left behind
        by_category = t.live_by_category()
        by_category[TEMPORARY] = t.phase_peak - t.live
        self.stats.append(PhaseStat(name, iteration, t.phase_peak, start, t.live, by_category, kv_bytes))


@contextlib.contextmanager
def _gradient_tags(model, tracker: MemoryTracker):
    """Tag each gradient as soon as autograd has accumulated it, so the categories at the peak are right
    during backward too."""
    handles = [p.register_post_accumulate_grad_hook(lambda p: tracker.retag(p.grad, GRADIENTS))
               for p in model.parameters() if p.requires_grad]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


class _OptimizerStep:
    """``optimizer.step()`` + ``zero_grad(set_to_none=True)`` under the tracker, and the re-categorisation
    of what it leaves behind."""

    def __init__(self, opt, tracker: MemoryTracker, gpu_emulation: bool):
        self.opt, self.tracker = opt, tracker
        self.host_keys = optim.host_state_keys(opt) if gpu_emulation else frozenset()
        self.host_ops = optim.host_ops(opt) if gpu_emulation else frozenset()

    def run(self) -> None:
        t = self.tracker
        t.stand_in_scalars = True  # Adafactor calls .item() on an RMS: only a scalar learning rate depends on it
        t.host_ops = self.host_ops
        t.default_category = OPTIMIZER_TEMPORARY
        try:
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        finally:
            t.stand_in_scalars, t.host_ops = False, frozenset()

    def tag_states(self) -> None:
        t = self.tracker
        for key, tensor in optim.state_tensors(self.opt):
            if key in self.host_keys:
                t.to_host(tensor)
            else:
                t.retag(tensor, OPTIMIZER_STATE)
        t.retag_all(OPTIMIZER_TEMPORARY, ACTIVATIONS)  # survivors that are not state (none for torch's)
        t.default_category = ACTIVATIONS


def _forward_loss(model, batch_inputs: ModelInputs, amp: str | None, arch: str):
    autocast = torch.autocast(device_type="cpu", dtype=AMP_DTYPES[amp]) if amp else contextlib.nullcontext()
    with autocast:
        # The output (and its logits) is dropped once the loss is taken, as Trainer's compute_loss does.
        out = model(**batch_inputs.tensors)
        loss = batch_inputs.loss(out) if batch_inputs.loss else out.loss
        del out
    if loss is None:
        raise SimulationError(f"{arch}: the model returned no loss for its labels")
    return loss


def _train_loop(model, opt, batch_inputs, tracker, iterations, amp, gpu_emulation, arch,
                grad_accum: int = 1) -> list[PhaseStat]:
    phases = _Phases(tracker)
    step = _OptimizerStep(opt, tracker, gpu_emulation)
    with _gradient_tags(model, tracker), tracker:
        for it in range(1, iterations + 1):
            for _ in range(grad_accum):  # micro-batches: the gradients stay allocated between them
                with phases.phase("forward", it):
                    loss = _forward_loss(model, batch_inputs, amp, arch)
                with phases.phase("backward", it):
                    loss.backward()
                    del loss
            with phases.phase("optimizer_step", it, finish=step.tag_states):
                step.run()
    return phases.stats


# -- inference -----------------------------------------------------------------------------------------
def _model_kind(model) -> str:
    if getattr(model.config, "is_encoder_decoder", False):
        return "encoder-decoder"
    if head_kind(model) in ("lm", "generation") and model.can_generate():  # MTModel: encoder-decoder above
        return "decoder"
    return "encoder"


def _infer_loop(model, prompt: dict, tracker: MemoryTracker, new_tokens: int):
    phases = _Phases(tracker)
    kind = _model_kind(model)
    state: dict[str, Any] = {}

    def tag_cache() -> int:
        return _tag_kv_cache(tracker, state.get("cache"))

    with tracker:
        with phases.phase("prefill", 1, finish=tag_cache):
            _prefill(model, prompt, kind, state)
        if new_tokens and kind != "encoder":
            with phases.phase("decode", 1, finish=tag_cache):
                for _ in range(new_tokens):
                    _decode_step(model, kind, state)
    kv_bytes = phases.stats[-1].kv_cache_bytes if kind != "encoder" else None
    return phases.stats, kv_bytes


def _lm_kwargs(model) -> dict:
    """``generate()`` asks for the last position's logits only when the model supports it."""
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


def _cache_kwarg(model) -> str:
    """transformers 5.x renamed ``past_key_values`` to ``cache``; use whichever the model's forward takes."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(out):
    return out["cache"] if "cache" in out.keys() else out.get("past_key_values")


def _next_token(out) -> torch.Tensor:
    return out.logits[:, -1:].argmax(-1)  # greedy; the value is never known, only the shape matters


def _prefill(model, prompt: dict, kind: str, state: dict) -> None:
    if kind == "encoder":  # no cache, no decoding: one forward over the batch
        model(**prompt)
        return
    if kind == "encoder-decoder":
        main = next(iter(prompt.values()))
        start = torch.zeros((main.shape[0], 1), dtype=torch.long)
        out = model(**{k: v for k, v in prompt.items() if k != "decoder_input_ids"}, decoder_input_ids=start,
                    use_cache=True)
        state["encoder_outputs"] = (out.encoder_last_hidden_state,)
    else:
        out = model(input_ids=prompt["input_ids"], use_cache=True, **_lm_kwargs(model))
    state["cache"], state["next"] = _cache_of(out), _next_token(out)


def _decode_step(model, kind: str, state: dict) -> None:
    if kind == "encoder-decoder":
        out = model(encoder_outputs=state["encoder_outputs"], decoder_input_ids=state["next"],
                    use_cache=True, **{_cache_kwarg(model): state["cache"]})
    else:
        out = model(input_ids=state["next"], use_cache=True, **{_cache_kwarg(model): state["cache"]},
                    **_lm_kwargs(model))
    state["cache"], state["next"] = _cache_of(out), _next_token(out)


def _tag_kv_cache(tracker: MemoryTracker, cache) -> int:
    """Bytes of the distinct storages the cache holds (a view keeps its whole storage alive), tagged."""
    seen: set[int] = set()
    total = 0
    for t in _tensors_in(cache):
        key = t.untyped_storage()._cdata
        if key in seen or tracker.category_of(t) in (PARAMETERS, BUFFERS, HOST):
            continue
        seen.add(key)
        total += tracker.counted_bytes(t)
        tracker.retag(t, KV_CACHE)
    return total


def _tensors_in(obj, depth: int = 0, seen: set[int] | None = None):
    """Tensors reachable from a cache object (DynamicCache.layers[i].keys/.values, EncoderDecoderCache's
    two caches, or any other layout) without knowing its class."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        yield obj
        return
    if obj is None or depth > 5 or id(obj) in seen or isinstance(obj, (torch.nn.Module, str, bytes)):
        return
    seen.add(id(obj))
    if isinstance(obj, (list, tuple)):
        items = obj
    elif isinstance(obj, dict):
        items = obj.values()
    elif hasattr(obj, "__dict__"):
        items = vars(obj).values()
    else:
        return
    for item in items:
        yield from _tensors_in(item, depth + 1, seen)


# -- result --------------------------------------------------------------------------------------------
def _result(mode: str, arch: str, phases: list[PhaseStat], tracker: MemoryTracker, started: float,
            inputs: dict, assumptions: list[str], kv_bytes: int | None = None, model=None) -> SimResult:
    top = max(reversed(phases), key=lambda p: p.peak_bytes)  # on a tie, the later (steady-state) phase
    counts = {}
    if model is not None:
        params = list(model.parameters())  # each shared Parameter once
        counts = dict(num_params=sum(p.numel() for p in params),
                      trainable_params=sum(p.numel() for p in params if p.requires_grad))
    return SimResult(**counts,
        mode=mode,
        architecture=arch,
        phases=phases,
        peak_allocated_bytes=top.peak_bytes,
        peak_phase=f"{top.name}@{top.iteration}",
        peak_by_category=tracker.peak_categories(),
        elapsed_s=time.perf_counter() - started,
        inputs=inputs,
        assumptions=assumptions,
        versions=versions(),
        kv_cache_bytes=kv_bytes,
    )


def _common_assumptions(gpu_emulation: bool, attn: str) -> list[str]:
    out = ["real transformers model code on fake tensors: shapes and dtypes exact, values never computed",
           "no padding: attention_mask=None, every token valid"]
    if gpu_emulation:
        out += ["512-byte allocator rounding (CUDA caching allocator kMinBlockSize)",
                "dropout via CUDA's fused native_dropout (1-byte mask)"]
        if attn == "sdpa":
            out.append("SDPA backend chosen as on CUDA: flash-attention op for fp16/bf16 without a mask, "
                       "memory-efficient op otherwise, math path for GQA without flash")
    else:
        out.append("CPU allocator semantics: exact byte sizes and CPU kernels (no GPU emulation)")
    if attn == "flash":
        out.append("flash attention: SDPA via the flash-attention op (masks built by transformers still count)")
    return out


def _train_assumptions(gpu_emulation, attn, optimizer, impl, amp, grad_ckpt, lora, batch_inputs) -> list[str]:
    out = _common_assumptions(gpu_emulation, attn)
    if batch_inputs.head in ("lm", "masked_lm"):
        out.append("labels = input_ids: transformers' loss upcasts the logits to fp32")
    out += batch_inputs.assumptions
    out.append("the model output is dropped once the loss is taken (as Trainer does); "
               "zero_grad(set_to_none=True) after each step")
    if optimizer == "adafactor":
        out.append("Adafactor (transformers): relative step, parameter scaling")
    else:
        out.append(f"{'AdamW' if optimizer == 'adamw' else 'SGD'} {impl}")
    if optimizer == "adamw" and gpu_emulation and impl != "fused":
        out.append("AdamW step counters are host (CPU) tensors, not counted")
    if amp:
        out.append(f"amp {amp}: fp32 weights, torch.autocast op lists of the CPU backend (not CUDA's)")
        if amp == "fp16":
            out.append("no GradScaler")
    if grad_ckpt:
        out.append("gradient checkpointing, non-reentrant (use_reentrant=False)")
    if lora is not None:
        out.append("LoRA via PEFT, adapters in fp32 (PEFT's default autocast_adapter_dtype=True)")
    return out


def _infer_assumptions(gpu_emulation, attn, model_kind: str) -> list[str]:
    out = _common_assumptions(gpu_emulation, attn)
    if model_kind == "encoder":
        out.append("a model that does not generate: one forward over the batch, no KV cache, no decoding")
    else:
        out.append("DynamicCache; prefill keeps only the last position's logits when the model supports "
                   "logits_to_keep (as generate() does); each decode step feeds one token")
    return out
