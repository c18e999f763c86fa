"""Serving and training memory calibrated from the model's own code, for the models hfmem has no closed-form
activation model for: vision models (CNNs, ViTs), audio encoders (wav2vec2, HuBERT), contrastive dual encoders
(CLIP, SigLIP), encoder-decoders (T5, BART, Whisper), text encoders at serving time, and decoder LMs whose family
has no stored coefficients (``ByCode``: which, and at which settings).

How. The first time a model is asked about at some settings, the real transformers code runs once on fake
tensors at exactly those settings (``hfmem.simulate``: every allocation the CUDA caching allocator would make,
512-byte rounding, CUDA's attention and dropout kernels), which takes seconds and no GPU; the result is kept on
disk (``hfmem.simulate.store``) keyed by the config, the settings and the torch/transformers versions, so the
same question is then answered without importing torch. Parameters, gradients, optimizer states, the KV cache
(self and cross attention) and the activations are read from the simulation's categories at its peak; the
reserved memory and the CUDA context are added as for every other estimate (``overheads``).

What it does not do (each refused in one line): vLLM and other engines, quantized weights, tensor parallelism,
DeepSpeed ZeRO / FSDP, QLoRA, optimizers the simulator does not run (8-bit Adam, ...).
"""

from __future__ import annotations

import math
from dataclasses import replace

from ..errors import UnsupportedArchitectureError
from ..model import ModelDescription
from ..model.description import AUDIO_ENCODER, ENCODER, TEXT_ENCODER, VISION_ENCODER
from ..vocab import DTYPE_BYTES, SHORT_DTYPES, canonical_dtype, is_dtype
from .overheads import reserved_bytes

SIMULATED_OPTIMIZERS = ("adamw", "sgd", "sgd-momentum", "adafactor")  # hfmem.simulate.optim runs these
WHISPER_WINDOW_S = 30  # WhisperFeatureExtractor.chunk_length: every input is padded or cut to 30 s

SOURCE = "calibrated on this machine from the model's code"


class ByCode:
    """Which models are estimated here, and why (one line for the JSON's assumptions)."""

    @staticmethod
    def serves(desc: ModelDescription, settings=None, checkpoint_format: str = "") -> bool:
        """Serving: every model without a text decoder (the closed-form serving model is a decoder LM's), and a
        decoder LM of a family with no stored coefficients when the settings are ones the simulator runs
        (transformers, one GPU, 16/32-bit weights, text only, generate's last-position logits): it is calibrated
        from its own code instead of borrowing another family's coefficients."""
        if desc.unknown:
            return False
        if desc.decoder is None:
            return bool(desc.towers or desc.other_towers)
        if settings is None or not uncalibrated_decoder(desc, "infer"):
            return False
        s = settings
        return (not s.images and s.logits == "last" and checkpoint_dtype(checkpoint_format) is not None
                and unsupported_serving(s, checkpoint_format) is None)

    @staticmethod
    def trains_decoder(desc: ModelDescription, settings) -> bool:
        """A decoder LM of a family with no training coefficients (family_for finds none: the generic
        Korthikanti form would be borrowed), at settings the simulator runs."""
        if desc.unknown or desc.decoder is None:
            return False
        if not (uncalibrated_decoder(desc, "train") or _multimodal_by_proxy(desc)):
            return False
        return unsupported_training(settings) is None

    @staticmethod
    def trains(desc: ModelDescription, settings=None) -> bool:
        """Training: the same, except the text encoders whose family has a calibrated closed form (BERT,
        RoBERTa and the other BERT-code encoders, with an MLM or task head); MPNet, ModernBERT, Longformer,
        ELECTRA's pre-training and the like run their own code (docs/coverage.md: the closed form missed them
        by 8-144%)."""
        if not ByCode.serves(desc):
            return False
        roles = {t.role for t in desc.towers}
        if roles != {TEXT_ENCODER}:
            return True
        from .train_structures import family_for

        family, _ = family_for(desc.model_type)
        # ModernBERT is only structurally near BERT (GeGLU, RoPE, local attention), and a pre-training head
        # (ELECTRA's discriminator, BERT's NSP) is not the calibrated MLM/classification step; at settings the
        # simulator does not run (8-bit Adam, ZeRO, ...) these encoders keep the closed form, as decoders do
        own_code = family != "bert" or desc.model_type == "modernbert" or desc.architecture.endswith("ForPreTraining")
        return own_code and (settings is None or unsupported_training(settings) is None)


def unsupported_serving(s, checkpoint_format: str) -> str | None:
    """What of the serving settings ``s`` the simulator does not run (the words of the refusal), or None."""
    if s.engine != "transformers":
        return f"serving with {s.engine}"
    if s.tp > 1:
        return "tensor parallelism"
    if s.weights_format is not None and not is_dtype(s.weights_format):
        return f"{s.weights_format} weights"
    if checkpoint_dtype(checkpoint_format) is None and s.weights_format is None:
        return f"a {checkpoint_format} checkpoint"
    if s.kv_dtype is not None and not (is_dtype(s.kv_dtype) and canonical_dtype(s.kv_dtype) == serving_dtype(
            s, checkpoint_format)):
        return "a KV-cache dtype other than the compute dtype"
    return None


def serving_dtype(s, checkpoint_format: str) -> str:
    """The dtype the weights and activations are simulated in: --dtype, else --weights, else the checkpoint's."""
    name = s.compute_dtype or s.weights_format
    return canonical_dtype(name) if name is not None else checkpoint_dtype(checkpoint_format) or "float32"


def unsupported_training(s) -> str | None:
    """What of the training settings ``s`` the simulator does not run (the words of the refusal), or None."""
    if s.zero is not None or s.fsdp or s.tp > 1 or s.pp > 1 or s.gpus > 1:
        return "multi-GPU training (DDP, ZeRO, FSDP, tensor or pipeline parallel)"
    if s.method == "qlora":
        return "QLoRA"
    if s.optimizer not in SIMULATED_OPTIMIZERS:
        return f"the {s.optimizer} optimizer"
    if s.precision.startswith("deepspeed"):
        return f"{s.precision} precision"
    if s.optimizer_in_backward or s.full_logits_metrics or s.eval_generate_batch:
        return "optimizer-in-backward and evaluation phases"
    return None


def training_dtype(precision: str) -> tuple[str, str | None]:
    """(weights dtype, autocast dtype or None) of a ``TrainSettings.precision`` (training.PRECISIONS): fp32 weights
    under AMP, else the 16-bit weights the activations are computed in."""
    from .training import PRECISIONS

    p = PRECISIONS[precision]
    amp = {"amp-bf16": "bf16", "amp-fp16": "fp16"}.get(precision)
    return ("float32" if p.weight_bytes == 4 else p.activation_dtype), amp


def uncalibrated_decoder(desc: ModelDescription, purpose: str) -> bool:
    """Whether the decoder's family has no stored coefficients for ``purpose`` ("infer": infer_calibration.json
    has no entry for the model type; "train": calibration.json has none, nor a nearest family)."""
    t = desc.decoder
    if t is None or t.unmodelled or desc.unmodelled or desc.unsized:
        return False
    if purpose == "infer":
        from .infer_activations import load_calibration

        return t.model_type not in load_calibration().get("architectures", {})
    from .train_structures import family_for

    return family_for(t.model_type)[0] is None


# Multimodal LMs whose training closed form (their text family's coefficients, NEAREST_FAMILY) was measured more
# than 5% off the simulation of their own code (docs/coverage.md: Qwen2-VL +12.2%, Qwen2.5-VL +8.1%; M-RoPE and the
# wrapper's embedding merge); LLaVA (+0.6%) and Gemma 3 (0.0%) keep the closed form.
PROXY_OFF = frozenset({"qwen2_vl", "qwen2_5_vl"})


def _multimodal_by_proxy(desc: ModelDescription) -> bool:
    """A multimodal LM in ``PROXY_OFF``: trained from its own code rather than its text family's coefficients."""
    return desc.model_type in PROXY_OFF


def _refuse(what: str, model_type: str) -> UnsupportedArchitectureError:
    return UnsupportedArchitectureError(
        f"{model_type}: {what} is not modelled for models estimated from their own code yet",
        hint="the default (transformers, one GPU, 16/32-bit weights) is; `hfmem simulate` runs other settings")


def checkpoint_dtype(checkpoint_format: str) -> str | None:
    """The compute dtype a 16/32-bit checkpoint loads in (transformers 5's dtype="auto"); None for quantized."""
    return canonical_dtype(checkpoint_format) if is_dtype(checkpoint_format) else None


def _simulate(config: dict, mode: str, settings: dict, progress=None, *, attn_chosen: bool = False):
    """The simulation for (config, mode, settings): from the store, else run now and stored. ``attn_chosen``:
    the attention was hfmem's default, not the user's: a model transformers has no SDPA path for (DeBERTa-v2,
    MPNet, WavLM: not in the shipped list) runs eager, as transformers itself would pick, and says so."""
    from ..simulate import store

    k = store.key(config, mode, settings)
    hit = store.get(k)
    if hit is not None:
        return hit, True
    from .. import simulate as sim

    if progress:
        progress(f"calibrating from the model's code ({mode}, fake tensors): first time for these settings")
    result = sim.simulate(mode, config, attn_chosen=attn_chosen, **settings)
    store.put(k, result)
    return result, False


DECODE_STEPS_SIMULATED = 16  # longer generations are extended from 8 and 16 steps (the fake run is op-bound)


def _long_decode(config: dict, sim_settings: dict, progress, attn_chosen: bool):
    """A simulation of ``new_tokens`` decode steps from two shorter ones: every step runs the same ops and appends
    the same self-attention K,V to the cache, so the decode phase's peak, live set and cache grow by a constant
    per step; the prefill is the same in all three."""
    from dataclasses import replace as copy_with

    n = sim_settings["new_tokens"]
    n1, n2 = DECODE_STEPS_SIMULATED // 2, DECODE_STEPS_SIMULATED
    short, cached1 = _simulate(config, "infer", {**sim_settings, "new_tokens": n1}, progress, attn_chosen=attn_chosen)
    long, cached2 = _simulate(config, "infer", {**sim_settings, "new_tokens": n2}, progress, attn_chosen=attn_chosen)

    def grow(a: int, b: int) -> int:
        return b + (b - a) * (n - n2) // (n2 - n1)

    phases = []
    for p1, p2 in zip(short.phases, long.phases):
        if p2.name != "decode":
            phases.append(p2)
            continue
        by_category = {k: grow(p1.by_category.get(k, 0), v) for k, v in p2.by_category.items()}
        phases.append(copy_with(p2, peak_bytes=grow(p1.peak_bytes, p2.peak_bytes),
                                live_bytes_end=grow(p1.live_bytes_end, p2.live_bytes_end), by_category=by_category,
                                kv_cache_bytes=grow(p1.kv_cache_bytes or 0, p2.kv_cache_bytes or 0)))
    top = max(reversed(phases), key=lambda p: p.peak_bytes)
    categories = dict(long.peak_by_category)
    if top.name == "decode":
        categories = {**top.by_category, "kv_cache": top.kv_cache_bytes or 0}
    result = copy_with(long, phases=phases, peak_allocated_bytes=top.peak_bytes,
                       peak_phase=f"{top.name}@{top.iteration}", peak_by_category=categories,
                       kv_cache_bytes=phases[-1].kv_cache_bytes, inputs={**long.inputs, "new_tokens": n})
    return result, cached1 and cached2


def _calibration_line(result, cached: bool) -> str:
    v = result.versions
    return (f"{SOURCE}: the real {result.architecture} code run on fake tensors at these settings "
            f"(transformers {v.get('transformers')}, torch {v.get('torch')}; hfmem simulate"
            f"{', read from the cache of earlier runs' if cached else ''})")


def _positions(desc: ModelDescription) -> int | None:
    t = desc.tower(TEXT_ENCODER) or desc.tower(ENCODER)
    return t.max_positions if t is not None else None


def _within_positions(desc: ModelDescription, tokens: int, what: str, notes: list[str]) -> int:
    """``tokens`` capped at a text encoder's (or a text encoder-decoder's) learned positions, with a note."""
    limit = _positions(desc)
    roles = {t.role for t in desc.towers}
    if (TEXT_ENCODER in roles or ENCODER in roles) and limit and tokens > limit and not desc.encoder_length:
        notes.append(f"{what} {tokens:,} is more than the model's {limit:,} positions: {limit:,} tokens per sample")
        return limit
    return tokens


# -- serving ---------------------------------------------------------------------------------------------
def infer_settings_for_simulation(desc: ModelDescription, s, *, checkpoint_format: str,
                                  attn: str) -> tuple[dict, list[str]]:
    """The simulator's settings for an ``InferenceSettings`` ``s`` and the assumptions they imply."""
    why = unsupported_serving(s, checkpoint_format)
    if why:
        raise _refuse(why, desc.model_type)
    dtype = serving_dtype(s, checkpoint_format)
    notes: list[str] = []
    roles = {t.role for t in desc.towers}
    batch = s.batch
    if desc.encoder_length and s.audio_seconds:  # Whisper: long audio in 30 s windows, run as one batch
        windows = max(1, math.ceil(s.audio_seconds / WHISPER_WINDOW_S))
        batch *= windows
        notes.append(f"{s.audio_seconds:g} s of audio = {windows} window(s) of {WHISPER_WINDOW_S} s per sample, "
                     f"run as a batch of {batch} (pipeline chunking)")
    context = _within_positions(desc, s.context, "context", notes)
    out = dict(batch=batch, context=context,
               new_tokens=s.new_tokens if (desc.is_encoder_decoder or desc.decoder is not None) else 0,
               dtype=dtype, attn=attn, gpu_emulation=True)
    if VISION_ENCODER in roles and s.image_size:
        out["image_size"] = s.image_size
    if AUDIO_ENCODER in roles and s.audio_seconds and not desc.encoder_length:
        out["audio_seconds"] = s.audio_seconds
    if desc.is_encoder_decoder and not s.new_tokens:
        notes.append("new tokens 0: the encoder pass and the decoder's first step only (--new-tokens N adds N "
                     "decode steps and their self-attention cache)")
    return out, notes


def estimate_inference_by_code(config: dict, desc: ModelDescription, s, *, checkpoint_format: str, attn: str,
                               logical_params: int, progress=None, attn_chosen: bool = False):
    """``InferenceEstimate`` for a model served as its simulation measures it (see the module docstring)."""
    from .inference import InferenceEstimate, PhaseEstimate

    sim_settings, notes = infer_settings_for_simulation(desc, s, checkpoint_format=checkpoint_format, attn=attn)
    if sim_settings["new_tokens"] > DECODE_STEPS_SIMULATED:
        result, cached = _long_decode(config, sim_settings, progress, attn_chosen)
        notes.append(f"{sim_settings['new_tokens']} decode steps: simulated {DECODE_STEPS_SIMULATED // 2} and "
                     f"{DECODE_STEPS_SIMULATED}, extended linearly (each step adds the same self-attention K,V and "
                     "runs the same ops)")
    else:
        result, cached = _simulate(config, "infer", sim_settings, progress, attn_chosen=attn_chosen)
    attn = result.inputs.get("attn", attn)
    cat = result.peak_by_category
    weights, buffers = cat.get("parameters", 0), cat.get("buffers", 0)
    # The cache is tagged when a phase ends (the decode steps' new self-attention entries count as activations
    # until then): its size at the end of the peak phase, whose peak is in its last step.
    top = result.phase(*result.peak_phase.split("@")[:1], int(result.peak_phase.split("@")[1]))
    kv = top.kv_cache_bytes or cat.get("kv_cache", 0)
    allocated = result.peak_allocated_bytes
    activations = allocated - weights - buffers - kv
    phases = []
    for p in result.phases:
        p_kv = p.kv_cache_bytes or 0
        p_static = p.by_category.get("parameters", 0) + p.by_category.get("buffers", 0)
        phases.append(PhaseEstimate(name=p.name, tokens=sim_settings["context"], kv_cache_bytes=p_kv,
                                    activations_bytes=p.peak_bytes - p_static - p_kv,
                                    peak_allocated_bytes=p.peak_bytes))
    o = s.overheads
    reserved = reserved_bytes(allocated, activations + kv, o.allocator_fragmentation)
    components = {"weights_bytes": weights, "buffers_bytes": buffers, "kv_cache_bytes": kv,
                  "activations_bytes": activations, "allocator_reserve_bytes": reserved - allocated,
                  "cuda_context_bytes": o.cuda_context_bytes}
    dtype = sim_settings["dtype"]
    kind = "encoder-decoder" if desc.is_encoder_decoder else "generate" if desc.decoder is not None else "forward"
    if kind == "forward":
        for p in phases:
            p.name = "forward"
    assumptions = [_calibration_line(result, cached)] + notes + list(result.assumptions) + [
        f"peak_reserved adds {o.allocator_fragmentation:.0%} of activations and KV cache (allocator reserve)",
        "device_total adds the CUDA context"]
    per_token = 0.0
    if kind == "generate":
        from . import kv_cache as kvc

        per_token = float(kvc.kv_bytes_per_token(kvc.kv_layout(config), kv_bytes_per_elem=DTYPE_BYTES[dtype]))
        for p in phases:
            if p.name == "decode":
                p.tokens = sim_settings["context"] + sim_settings["new_tokens"]
    return InferenceEstimate(
        settings=replace(s, attn=attn), weights_format=SHORT_DTYPES[dtype], compute_dtype=dtype, kv_dtype=dtype,
        attn=attn, logical_params=logical_params, stored_weights_bytes=weights, components=components,
        kv_bytes_per_token=per_token, kv_bytes_per_token_per_gpu=per_token, phases=phases,
        peak_phase="forward" if kind == "forward" else result.peak_phase.split("@")[0],
        peak_allocated_bytes=allocated, peak_reserved_bytes=reserved,
        device_total_bytes=reserved + o.cuda_context_bytes, max_position_embeddings=_positions(desc),
        assumptions=list(dict.fromkeys(assumptions)), notes=[], kv_layout_summary={}, kind=kind,
        batch_inputs={} if kind == "generate" else batch_inputs(
            config, desc, {**sim_settings, "batch": s.batch},
            windows=sim_settings["batch"] // s.batch if desc.encoder_length else None))


def batch_inputs(config: dict, desc: ModelDescription, sim_settings: dict, windows: int | None = None) -> dict:
    """What one sample of the batch is, in the user's units (the keys of the JSON's ``batch_inputs``)."""
    roles = {t.role for t in desc.towers} | set(desc.other_towers)
    out: dict = {"batch": sim_settings["batch"]}
    if windows:
        out["windows_per_sample"] = windows
    if VISION_ENCODER in roles:
        vc = config.get("vision_config") if isinstance(config.get("vision_config"), dict) else config
        side = vc.get("image_size") or 224
        out["image_size"] = sim_settings.get("image_size") or (side[0] if isinstance(side, list) else side)
    if AUDIO_ENCODER in roles or desc.encoder_length:
        out["audio_seconds"] = WHISPER_WINDOW_S if desc.encoder_length else sim_settings.get("audio_seconds", 10.0)
    if roles & {TEXT_ENCODER, ENCODER} and not desc.encoder_length:
        out["tokens"] = sim_settings.get("context", sim_settings.get("seq"))
    if desc.is_encoder_decoder:
        out["new_tokens"] = sim_settings.get("new_tokens", 0)
    return out


def describe_batch(inputs: dict) -> str:
    """'batch 1, images 224×224' — a table title's words for ``batch_inputs``."""
    parts = [f"batch {inputs.get('batch', 1)}"]
    if "tokens" in inputs:
        parts.append(f"{inputs['tokens']:,} tokens")
    if inputs.get("target_tokens"):
        parts.append(f"{inputs['target_tokens']:,} target tokens")
    if "image_size" in inputs:
        parts.append(f"images {inputs['image_size']}×{inputs['image_size']}")
    if "audio_seconds" in inputs:
        n = inputs.get("windows_per_sample") or 1
        parts.append(f"{inputs['audio_seconds']:g} s of audio" + (f" × {n} windows" if n > 1 else ""))
    if inputs.get("new_tokens"):
        parts.append(f"{inputs['new_tokens']} new tokens")
    return ", ".join(parts)


# -- training --------------------------------------------------------------------------------------------
def train_settings_for_simulation(desc: ModelDescription, s, *, attn: str) -> tuple[dict, list[str]]:
    """The simulator's settings for a ``TrainSettings`` ``s`` and the assumptions they imply."""
    why = unsupported_training(s)
    if why:
        raise _refuse(why, desc.model_type)
    dtype, amp = training_dtype(s.precision)
    notes: list[str] = []
    roles = {t.role for t in desc.towers}
    seq = _within_positions(desc, s.seq, "sequence", notes)
    out = dict(batch=s.batch, seq=seq, dtype=dtype, attn=attn, grad_ckpt=s.grad_ckpt,
               optimizer=s.optimizer, optimizer_impl=s.adamw_impl, amp=amp, gpu_emulation=True)
    if s.grad_accum > 1:
        out["grad_accum"] = s.grad_accum
    if s.method in ("lora", "dora"):
        targets = s.lora_targets
        out["lora"] = {"r": s.lora_rank, "alpha": 2 * s.lora_rank, "dora": s.method == "dora" or s.dora,
                       "targets": list(targets) if isinstance(targets, (list, tuple)) else (targets or "all-linear")}
    if s.target_seq and desc.is_encoder_decoder:
        out["target_seq"] = s.target_seq
    if VISION_ENCODER in roles and s.image_size:
        out["image_size"] = s.image_size
    if AUDIO_ENCODER in roles and s.audio_seconds and not desc.encoder_length:
        out["audio_seconds"] = s.audio_seconds
    return out, notes


def estimate_training_by_code(config: dict, desc: ModelDescription, s, *, attn: str, progress=None,
                              attn_chosen: bool = False):
    """``TrainEstimate`` for one training step as its simulation measures it (see the module docstring)."""
    from .finetune import TrainEstimate

    sim_settings, notes = train_settings_for_simulation(desc, s, attn=attn)
    result, cached = _simulate(config, "train", sim_settings, progress, attn_chosen=attn_chosen)
    attn = result.inputs.get("attn", attn)
    last = max(p.iteration for p in result.phases)
    fwd, bwd, step = (next(p for p in reversed(result.phases) if p.name == name and p.iteration == last)
                      for name in ("forward", "backward", "optimizer_step"))
    allocated = result.peak_allocated_bytes
    # The components, as for every training estimate: the model states at full size and the activations
    # saved at the end of the forward (steady-state step); the peak is the largest phase, not their sum.
    weights = fwd.by_category.get("parameters", 0) + fwd.by_category.get("buffers", 0)
    grads = bwd.by_category.get("gradients", 0)
    states = step.by_category.get("optimizer_state", 0)
    saved = fwd.live_bytes_end - fwd.live_bytes_start
    step_temp = max(0, step.peak_bytes - step.live_bytes_start)
    phases: dict[str, int] = {}
    for p in result.phases:
        phases[p.name] = max(phases.get(p.name, 0), p.peak_bytes)
    o = s.overheads
    reserved = reserved_bytes(allocated, saved + grads + step_temp, o.allocator_fragmentation)
    components = {"weights_bytes": weights, "master_weights_bytes": 0, "gradients_bytes": grads,
                  "optimizer_bytes": states, "optimizer_step_temporary_bytes": step_temp,
                  "activations_bytes": saved, "allocator_reserve_bytes": reserved - allocated,
                  "cuda_context_bytes": o.cuda_context_bytes}
    trainable = result.trainable_params or 0
    assumptions = [_calibration_line(result, cached)] + notes + list(result.assumptions) + [
        f"micro-batch {s.batch}" + (f", gradient accumulation {s.grad_accum}" if s.grad_accum > 1 else ""),
        "activations: saved at the end of the forward (steady-state step); peak_allocated = the largest phase "
        "(forward, backward, optimizer step), not the sum of the parts",
        f"peak_reserved adds {o.allocator_fragmentation:.0%} of activations, gradients and step temporaries",
        "device_total adds the CUDA context"]
    inputs = {k: v for k, v in result.inputs.items()
              if k in ("batch", "tokens", "image_size", "audio_seconds", "target_tokens") and v is not None}
    if inputs.get("tokens") is None and sim_settings.get("seq") and "input_ids" == result.inputs.get("main_input"):
        inputs["tokens"] = sim_settings["seq"]
    return TrainEstimate(
        settings=replace(s, attn=attn, seq=sim_settings["seq"]), trainable_params=trainable,
        frozen_params=max(0, (result.num_params or 0) - trainable), components=components, phases=phases,
        peak_phase=result.peak_phase.split("@")[0], peak_allocated_bytes=allocated, peak_reserved_bytes=reserved,
        device_total_bytes=reserved + o.cuda_context_bytes, cpu_bytes=0, cpu_components={},
        activations={"saved_bytes": saved, "by_part": {}, "source": SOURCE},
        scheme="single-device", assumptions=list(dict.fromkeys(assumptions)), notes=[], adapters=None,
        batch_inputs=inputs)


def vision_pass(vision_config: dict, *, batch: int, dtype: str, progress=None) -> tuple[int, str]:
    """(activation bytes, the assumption line) of a vision tower's forward over ``batch`` images, simulated from
    its own code (``CLIPVisionModel``, ``SiglipVisionModel``) and stored like every other simulation."""
    settings = dict(batch=batch, context=1, new_tokens=0, dtype=dtype, attn="sdpa", gpu_emulation=True)
    result, cached = _simulate(vision_config, "infer", settings, progress, attn_chosen=True)
    cat = result.peak_by_category
    act = result.peak_allocated_bytes - cat.get("parameters", 0) - cat.get("buffers", 0)
    return act, (f"vision tower: {batch} image(s) through {result.architecture}, its activations "
                 + _calibration_line(result, cached).replace(SOURCE + ": ", "calibrated from its own code: "))
