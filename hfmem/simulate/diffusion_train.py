"""A diffusion fine-tuning step, as diffusers' example scripts run it, on fake tensors: the denoiser's
forward (with the noise-prediction MSE loss), backward and optimizer step with diffusers' own model code;
and the frozen components' no-grad forwards (VAE encode of the pixel batch, the text encoders).

Scripts read (huggingface/diffusers examples/): text_to_image/train_text_to_image.py (full: the UNet trained
in fp32 under accelerate's autocast, VAE and text encoder cast to weight_dtype), train_text_to_image_lora.py
(``unet.requires_grad_(False)``, ``unet.to(weight_dtype)``, ``LoraConfig(r=rank, lora_alpha=rank,
init_lora_weights="gaussian", target_modules=["to_k", "to_q", "to_v", "to_out.0"])``, ``unet.add_adapter``,
``cast_training_params(unet, torch.float32)`` only for fp16), train_text_to_image_sdxl.py (``added_cond_kwargs``
text_embeds + time_ids), dreambooth/train_dreambooth_lora_flux.py (packed latents, img_ids/txt_ids, guidance,
the 12 attention/FF target modules below; ``loss = mean((model_pred.float() - target.float()) ** 2)``).

Each run has its own tracker: a scenario adds the components it keeps resident beside it
(hfmem.scenarios.pipeline_training).
"""

from __future__ import annotations

import contextlib
import time

import torch

from . import build, optim
from .emulation import CUDA_MIN_BLOCK
from .engine import AMP_DTYPES, _fake_run, _gradient_tags, _OptimizerStep, _Phases, _result, _track_start
from .result import SimResult, SimulationError
from .tracker import MemoryTracker

# train_text_to_image_lora.py / train_text_to_image_lora_sdxl.py: target_modules for the UNet.
UNET_LORA_TARGETS = ("to_k", "to_q", "to_v", "to_out.0")
# train_dreambooth_lora_flux.py (--lora_layers not given): the FLUX transformer's default targets.
FLUX_LORA_TARGETS = ("attn.to_k", "attn.to_q", "attn.to_v", "attn.to_out.0", "attn.add_k_proj", "attn.add_q_proj",
                     "attn.add_v_proj", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj",
                     "ff_context.net.2")
# SD3 (train_dreambooth_lora_sd3.py): the joint-attention projections.
SD3_LORA_TARGETS = ("attn.add_k_proj", "attn.add_q_proj", "attn.add_v_proj", "attn.to_add_out", "attn.to_k",
                    "attn.to_out.0", "attn.to_q", "attn.to_v")
DENOISERS = ("UNet2DConditionModel", "FluxTransformer2DModel", "SD3Transformer2DModel")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_lora_targets(class_name: str) -> tuple[str, ...]:
    return {"FluxTransformer2DModel": FLUX_LORA_TARGETS, "SD3Transformer2DModel": SD3_LORA_TARGETS}.get(
        class_name, UNET_LORA_TARGETS)


def _diffusers_class(class_name: str):
    try:
        import diffusers
    except ImportError:
        raise SimulationError("simulating a diffusers pipeline needs diffusers: pip install diffusers") from None
    cls = getattr(diffusers, class_name, None)
    if cls is None:
        raise SimulationError(f"diffusers {diffusers.__version__} has no class {class_name}")
    return cls


def _config_kwargs(config: dict) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def build_diffusers_model(class_name: str, config: dict, dtype: torch.dtype, fake_mode):
    """A diffusers model built from its config (call inside FakeTensorMode: random init on fake tensors)."""
    cls = _diffusers_class(class_name)
    from diffusers.utils import logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()  # from_config / .to() warn about keys and fp32 modules, not about memory
    try:
        try:
            with build._quiet():
                model = cls.from_config(_config_kwargs(config))
        except Exception as exc:
            raise SimulationError(f"{class_name}: diffusers could not build it from its config "
                                  f"({exc.__class__.__name__}: {build.first_line(exc)})") from None
        if dtype != torch.float32:
            with build._swappable_fake_parameters(fake_mode), build._quiet():  # Module.to swaps fake parameters
                model = model.to(dtype)
    finally:
        dlog.set_verbosity(level)
    return model


def latent_side(resolution: int, vae_scale_factor: int) -> int:
    if resolution % vae_scale_factor:
        raise SimulationError(f"resolution {resolution} is not a multiple of the VAE's scale factor {vae_scale_factor}")
    return resolution // vae_scale_factor


def denoiser_inputs(class_name: str, config: dict, *, batch: int, resolution: int, vae_scale_factor: int,
                    text_seq: int, latent_channels: int | None, dtype: torch.dtype) -> tuple[dict, torch.Tensor, list[str]]:
    """The denoiser's keyword inputs and the loss target, shaped as the training scripts build them."""
    side = latent_side(resolution, vae_scale_factor)
    notes = []
    if class_name == "UNet2DConditionModel":
        ch = int(config.get("in_channels", 4))
        sample = torch.randn(batch, ch, side, side, dtype=dtype)
        kwargs = dict(sample=sample, timestep=torch.randint(0, 1000, (batch,)),
                      encoder_hidden_states=torch.randn(batch, text_seq, int(config["cross_attention_dim"]) if
                                                        not isinstance(config["cross_attention_dim"], list) else
                                                        int(config["cross_attention_dim"][0]), dtype=dtype))
        if config.get("addition_embed_type") == "text_time":  # SDXL: train_text_to_image_sdxl.py compute_time_ids
            time_dim = int(config["addition_time_embed_dim"])
            pooled = int(config["projection_class_embeddings_input_dim"]) - 6 * time_dim
            kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(batch, pooled, dtype=dtype),
                                           "time_ids": torch.randn(batch, 6, dtype=dtype)}
            notes.append(f"SDXL added_cond_kwargs: text_embeds [{batch}, {pooled}], time_ids [{batch}, 6]")
        target = torch.randn(batch, int(config.get("out_channels", ch)), side, side, dtype=dtype)
        notes.append(f"UNet input: latents [{batch}, {ch}, {side}, {side}], text embeddings "
                     f"[{batch}, {text_seq}, {kwargs['encoder_hidden_states'].shape[-1]}]")
        return kwargs, target, notes
    if class_name == "FluxTransformer2DModel":
        # train_dreambooth_lora_flux.py: FluxPipeline._pack_latents turns [b, c, h, w] latents into
        # [b, (h/2)(w/2), 4c]; img_ids [(h/2)(w/2), 3]; txt_ids [text_seq, 3]; timestep / 1000; guidance.
        c = latent_channels or int(config.get("in_channels", 64)) // 4
        tokens = (side // 2) * (side // 2)
        hidden = torch.randn(batch, tokens, 4 * c, dtype=dtype)
        kwargs = dict(hidden_states=hidden, timestep=torch.rand(batch, dtype=dtype),
                      encoder_hidden_states=torch.randn(batch, text_seq, int(config["joint_attention_dim"]), dtype=dtype),
                      pooled_projections=torch.randn(batch, int(config["pooled_projection_dim"]), dtype=dtype),
                      txt_ids=torch.zeros(text_seq, 3, dtype=dtype), img_ids=torch.zeros(tokens, 3, dtype=dtype),
                      return_dict=False)
        if config.get("guidance_embeds"):
            kwargs["guidance"] = torch.ones(batch, dtype=torch.float32)
        target = torch.randn(batch, tokens, int(config.get("out_channels") or 4 * c), dtype=dtype)
        notes.append(f"FLUX input: packed latents [{batch}, {tokens}, {4 * c}], T5 embeddings [{batch}, {text_seq}, "
                     f"{config['joint_attention_dim']}], pooled CLIP [{batch}, {config['pooled_projection_dim']}]")
        return kwargs, target, notes
    if class_name == "SD3Transformer2DModel":
        ch = int(config.get("in_channels", 16))
        kwargs = dict(hidden_states=torch.randn(batch, ch, side, side, dtype=dtype),
                      encoder_hidden_states=torch.randn(batch, text_seq, int(config["joint_attention_dim"]), dtype=dtype),
                      pooled_projections=torch.randn(batch, int(config["pooled_projection_dim"]), dtype=dtype),
                      timestep=torch.randint(0, 1000, (batch,)), return_dict=False)
        target = torch.randn(batch, int(config.get("out_channels") or ch), side, side, dtype=dtype)
        notes.append(f"SD3 input: latents [{batch}, {ch}, {side}, {side}], text embeddings [{batch}, {text_seq}, "
                     f"{config['joint_attention_dim']}]")
        return kwargs, target, notes
    raise SimulationError(f"{class_name}: no training inputs known for this denoiser (supported: {', '.join(DENOISERS)})")


def _prediction(out):
    if isinstance(out, tuple):
        return out[0]
    return out.sample


def simulate_denoiser_train(class_name: str, config: dict, *, batch: int, resolution: int, vae_scale_factor: int = 8,
                            text_seq: int = 77, latent_channels: int | None = None, method: str = "full",
                            mixed_precision: str = "bf16", grad_ckpt: bool = False, optimizer: str = "adamw",
                            optimizer_impl: str = "foreach", lora_rank: int = 4, lora_targets=None,
                            iterations: int = 2, gpu_emulation: bool = True) -> SimResult:
    """``iterations`` steps of the denoiser: forward (under autocast for fp16/bf16, as accelerate runs it),
    the MSE loss in fp32, backward, ``optimizer.step()`` and ``zero_grad(set_to_none=True)``.

    full: weights fp32 (train_text_to_image.py keeps the trained UNet in fp32). lora: the frozen denoiser in
    weight_dtype, ``add_adapter(LoraConfig(...))`` (diffusers' PeftAdapterMixin), the adapters upcast to fp32
    only for fp16, as the scripts' ``cast_training_params`` call does. ``optimizer``: one of
    hfmem.simulate.optim's (8-bit Adam is added by the scenario from bitsandbytes' state sizes: run "sgd" here).
    """
    if method not in ("full", "lora"):
        raise SimulationError(f"unknown method {method!r} (use full or lora)")
    if mixed_precision not in DTYPES:
        raise SimulationError(f"unknown mixed precision {mixed_precision!r} (use fp32, bf16 or fp16)")
    if optimizer not in (*optim.OPTIMIZERS, "adamw-8bit"):
        raise SimulationError(f"optimizer {optimizer!r} cannot be simulated (adamw, adamw-8bit, sgd, sgd-momentum)")
    for name, value in dict(batch=batch, resolution=resolution, lora_rank=lora_rank).items():
        if int(value) < 1:
            raise SimulationError(f"{name} must be at least 1")
    weight_dtype = DTYPES[mixed_precision]
    amp = None if mixed_precision == "fp32" else mixed_precision
    model_dtype = torch.float32 if method == "full" else weight_dtype
    targets = list(lora_targets or default_lora_targets(class_name))
    inputs = dict(mode="train", class_name=class_name, batch=batch, resolution=resolution, method=method,
                  mixed_precision=mixed_precision, grad_ckpt=grad_ckpt, optimizer=optimizer,
                  optimizer_impl=optimizer_impl, iterations=iterations, gpu_emulation=gpu_emulation)
    if method == "lora":
        inputs.update(lora_rank=lora_rank, lora_targets=targets)
    started = time.perf_counter()
    tracker = MemoryTracker(CUDA_MIN_BLOCK if gpu_emulation else 1)
    with _fake_run(class_name, tracker, gpu_emulation, "sdpa") as fake_mode:
        model = build_diffusers_model(class_name, config, model_dtype, fake_mode)
        if grad_ckpt:
            if not getattr(model, "_supports_gradient_checkpointing", False):
                raise SimulationError(f"{class_name}: diffusers does not support gradient checkpointing for it")
            model.enable_gradient_checkpointing()
        if method == "lora":
            from peft import LoraConfig

            model.requires_grad_(False)
            cfg = LoraConfig(r=lora_rank, lora_alpha=lora_rank, init_lora_weights="gaussian", target_modules=targets)
            with build._swappable_fake_parameters(fake_mode):
                model.add_adapter(cfg)
            if mixed_precision == "fp16":  # diffusers.training_utils.cast_training_params(unet, torch.float32)
                for p in model.parameters():
                    if p.requires_grad:
                        p.data = p.to(torch.float32)
        model.train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        eight_bit = optimizer == "adamw-8bit"
        # bitsandbytes is not simulated: its update runs in place (no temporaries), so SGD without momentum (an
        # in-place foreach add) stands in for the step, and the states are allocated as bitsandbytes'
        # Optimizer2State.init_state makes them (below).
        opt = optim.make_optimizer("sgd" if eight_bit else optimizer, optimizer_impl, trainable)
        # the built model's config: the class defaults filled in where config.json leaves a key out
        kwargs, target, notes = denoiser_inputs(class_name, dict(model.config), batch=batch, resolution=resolution,
                                                vae_scale_factor=vae_scale_factor, text_seq=text_seq,
                                                latent_channels=latent_channels, dtype=weight_dtype)
        _track_start(tracker, model, [t for t in _flat(kwargs)] + [target])
        phases = _Phases(tracker)
        step = _OptimizerStep(opt, tracker, gpu_emulation)
        bnb_states = None
        with _gradient_tags(model, tracker), tracker:
            for it in range(1, iterations + 1):
                with phases.phase("forward", it):
                    ctx = torch.autocast("cpu", dtype=AMP_DTYPES[amp]) if amp else contextlib.nullcontext()
                    with ctx:
                        pred = _prediction(model(**kwargs))
                    # the scripts: F.mse_loss(model_pred.float(), target.float(), reduction="mean")
                    loss = torch.nn.functional.mse_loss(pred.float(), target.float(), reduction="mean")
                    del pred
                with phases.phase("backward", it):
                    loss.backward()
                    del loss
                with phases.phase("optimizer_step", it, finish=step.tag_states):
                    if eight_bit and it == 1:
                        bnb_states = _bnb_8bit_states(trainable, tracker)
                    step.run()
        stats = phases.stats
        del bnb_states
    assumptions = [f"real diffusers {class_name} code on fake tensors: shapes and dtypes exact",
                   "noise-prediction MSE loss on fp32 copies of the prediction and target (the scripts' "
                   "F.mse_loss(model_pred.float(), target.float()))",
                   "zero_grad(set_to_none=True) after each step"] + notes
    if amp:
        assumptions.append(f"mixed precision {amp}: torch.autocast (accelerate), CPU autocast op lists")
    if method == "full":
        assumptions.append("full fine-tune: denoiser weights fp32 (the scripts keep the trained model in fp32)")
    else:
        assumptions.append(f"LoRA r={lora_rank} alpha={lora_rank} on {', '.join(targets)} via diffusers add_adapter; "
                           f"adapters {'fp32 (cast_training_params)' if mixed_precision == 'fp16' else 'in ' + mixed_precision}")
    if grad_ckpt:
        assumptions.append("gradient checkpointing: the denoiser's enable_gradient_checkpointing()")
    if gpu_emulation:
        assumptions.append("512-byte allocator rounding; SDPA backend chosen as on CUDA")
    return _result("train", class_name, stats, tracker, started, inputs, assumptions, model=model)


def _bnb_8bit_states(params, tracker: MemoryTracker) -> list:
    """bitsandbytes Optimizer2State.init_state (block_wise, optim_bits=8): state1/state2 uint8 like the parameter
    and absmax1/absmax2 fp32 of ceil(numel / 256); fp32 states below min_8bit_size = 4096 elements (the sizes of
    hfmem.scenarios.training.bnb_8bit_state_bytes)."""
    from ..scenarios.training import BNB_BLOCK_SIZE, BNB_MIN_8BIT_SIZE
    from .result import OPTIMIZER_STATE

    out = []
    for p in params:
        n = p.numel()
        if n < BNB_MIN_8BIT_SIZE:
            states = [torch.zeros(n, dtype=torch.float32), torch.zeros(n, dtype=torch.float32)]
        else:
            blocks = -(-n // BNB_BLOCK_SIZE)
            states = [torch.zeros(n, dtype=torch.uint8), torch.zeros(n, dtype=torch.uint8),
                      torch.zeros(blocks, dtype=torch.float32), torch.zeros(blocks, dtype=torch.float32)]
        for t in states:
            tracker.retag(t, OPTIMIZER_STATE)
        out.extend(states)
    return out


def _flat(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _flat(v)


# -- frozen components: one no-grad forward each ---------------------------------------------------------------------
def simulate_vae_encode(config: dict, *, batch: int, resolution: int, dtype: str = "bf16",
                        gpu_emulation: bool = True, class_name: str = "AutoencoderKL") -> SimResult:
    """``vae.encode(pixel_values).latent_dist.sample()`` under no_grad on [batch, 3, resolution, resolution]
    pixels in the VAE's dtype (the scripts' ``batch["pixel_values"].to(weight_dtype)``)."""
    wd = DTYPES[dtype]
    started = time.perf_counter()
    tracker = MemoryTracker(CUDA_MIN_BLOCK if gpu_emulation else 1)
    with _fake_run(class_name, tracker, gpu_emulation, "sdpa") as fake_mode, torch.no_grad():
        vae = build_diffusers_model(class_name, config, wd, fake_mode).eval()
        pixels = torch.randn(batch, int(config.get("in_channels", 3)), resolution, resolution, dtype=wd)
        _track_start(tracker, vae, [pixels])
        phases = _Phases(tracker)
        with tracker, phases.phase("vae_encode", 1):
            latents = vae.encode(pixels).latent_dist.sample()
            del latents
    return _result("infer", class_name, phases.stats, tracker, started,
                   dict(batch=batch, resolution=resolution, dtype=dtype), [
                       f"VAE encode of [{batch}, 3, {resolution}, {resolution}] pixels under no_grad in {dtype}"],
                   model=vae)


def simulate_text_encoder(class_name: str, config: dict, *, batch: int, seq: int, dtype: str = "bf16",
                          gpu_emulation: bool = True) -> SimResult:
    """One no-grad forward of a transformers text encoder (CLIPTextModel, CLIPTextModelWithProjection,
    T5EncoderModel) at [batch, seq] token ids, in weight_dtype."""
    wd = DTYPES[dtype]
    cfg = dict(config)
    cfg.setdefault("architectures", [class_name])
    started = time.perf_counter()
    tracker = MemoryTracker(CUDA_MIN_BLOCK if gpu_emulation else 1)
    with _fake_run(class_name, tracker, gpu_emulation, "sdpa"), torch.no_grad():
        model = build.build_model(cfg, dtype=wd, attn="sdpa").eval()
        vocab = int(getattr(model.config, "vocab_size", 1000) or 1000)
        ids = torch.randint(0, vocab, (batch, seq))
        _track_start(tracker, model, [ids])
        phases = _Phases(tracker)
        with tracker, phases.phase("text_encode", 1):
            out = model(input_ids=ids, output_hidden_states=class_name.startswith("CLIP"))
            del out
    return _result("infer", class_name, phases.stats, tracker, started, dict(batch=batch, seq=seq, dtype=dtype),
                   [f"{class_name} forward at [{batch}, {seq}] under no_grad in {dtype}"], model=model)
