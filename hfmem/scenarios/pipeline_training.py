"""Fine-tuning a diffusers pipeline's denoiser, as diffusers' example scripts do (train_text_to_image*.py,
train_dreambooth_lora_flux.py), estimated from simulations of the real diffusers/transformers code.

The step's phases and what is resident in each (steady state, step 2: the optimizer states exist):

1. ``vae_encode``: ``vae.encode(pixel_values).latent_dist.sample()`` under no_grad;
2. ``text_encode``: each text encoder's forward under no_grad (skipped when the embeddings are cached:
   the FLUX DreamBooth script computes them once and deletes the text encoders);
3. ``forward`` / ``backward`` / ``optimizer_step`` of the denoiser (hfmem.simulate.diffusion_train).

Resident throughout: the frozen components in weight_dtype (VAE, text encoders unless cached), the denoiser's
weights (fp32 for a full fine-tune, weight_dtype + LoRA adapters for LoRA), its optimizer states, the EMA copy
(``--use_ema``: diffusers' EMAModel keeps an fp32 copy of the trained parameters on the GPU). Gradients exist
from the backward to ``zero_grad``. Each phase's peak = resident + that phase's own extra (its simulated peak
above what its simulation holds resident).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import SettingsError
from ..model.pipeline import DENOISER, DIFFUSERS_PIPELINE, TEXT_ENCODER, VAE, Layout
from .overheads import Overheads, training_reserved_bytes

METHODS = ("full", "lora")
PRECISIONS = {"fp32": "fp32", "no": "fp32", "bf16": "bf16", "amp-bf16": "bf16", "fp16": "fp16", "amp-fp16": "fp16"}
OPTIMIZERS = ("adamw", "adamw-8bit", "sgd", "sgd-momentum")
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
# The scripts' --rank default (train_text_to_image_lora.py, train_dreambooth_lora_flux.py): 4.
DEFAULT_LORA_RANK = 4
# CLIP's tokenizer model_max_length; train_dreambooth_lora_flux.py --max_sequence_length default 512 (T5).
CLIP_SEQ = 77
FLUX_T5_SEQ = 512


class PipelineTrainSettingsError(SettingsError):
    pass


@dataclass(frozen=True)
class PipelineTrainSettings:
    method: str = "lora"
    precision: str = "bf16"  # accelerate's --mixed_precision: fp32 (no), bf16, fp16 (amp-* accepted)
    optimizer: str = "adamw"  # adamw (torch, fp32 states), adamw-8bit (bitsandbytes AdamW8bit: --use_8bit_adam)
    optimizer_impl: str = "foreach"  # torch's default on CUDA
    batch: int = 1  # --train_batch_size
    resolution: int | None = None  # --resolution; None: the denoiser's sample_size × the VAE scale factor
    grad_ckpt: bool = False  # --gradient_checkpointing
    ema: bool = False  # --use_ema (full fine-tune only: train_text_to_image.py)
    cache_text_embeddings: bool | None = None  # None: True for FLUX (the script drops its text encoders)
    lora_rank: int = DEFAULT_LORA_RANK
    lora_targets: tuple[str, ...] | None = None  # None: the script's list for the denoiser class
    text_seq: int | None = None  # None: 77 (CLIP) or 512 (FLUX's T5)
    gpu_emulation: bool = True
    overheads: Overheads = field(default_factory=Overheads)

    def validate(self) -> "PipelineTrainSettings":
        def bad(setting, msg):
            raise PipelineTrainSettingsError(msg, setting=setting)

        if self.method not in METHODS:
            bad("method", f"method {self.method!r}: a pipeline's denoiser trains full or lora")
        if self.precision not in PRECISIONS:
            bad("precision", f"precision {self.precision!r}: use fp32, bf16 or fp16 (accelerate's --mixed_precision)")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        if self.optimizer_impl not in ("foreach", "fused", "forloop"):
            bad("optimizer_impl", f"optimizer_impl {self.optimizer_impl!r}: use foreach, fused or forloop")
        for name in ("batch", "lora_rank"):
            if int(getattr(self, name)) < 1:
                bad(name, f"{name} must be at least 1")
        if self.resolution is not None and int(self.resolution) < 8:
            bad("resolution", "resolution must be at least 8 pixels")
        if self.text_seq is not None and int(self.text_seq) < 1:
            bad("text_seq", "text_seq must be at least 1")
        if self.ema and self.method != "full":
            bad("ema", "ema: the scripts keep an EMA copy only for a full fine-tune (train_text_to_image.py --use_ema)")
        return self

    @property
    def mixed_precision(self) -> str:
        return PRECISIONS[self.precision]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["overheads"] = self.overheads.to_dict()
        d["lora_targets"] = list(self.lora_targets) if self.lora_targets else None
        return d


@dataclass
class PipelinePhase:
    name: str  # vae_encode | text_encode | forward | backward | optimizer_step
    peak_bytes: int
    resident_bytes: int  # live at the phase start that is not the phase's own
    extra_bytes: int  # peak_bytes - resident_bytes


@dataclass
class PipelineComponentState:
    name: str
    role: str
    class_name: str
    on_gpu: bool
    dtype: str
    trained: bool
    num_params: int
    weights_bytes: int
    note: str = ""


@dataclass
class PipelineTrainEstimate:
    settings: PipelineTrainSettings
    denoiser: str
    resolution: int
    phases: list[PipelinePhase]
    components: list[PipelineComponentState]
    trainable_params: int
    gradients_bytes: int
    optimizer_state_bytes: int
    ema_bytes: int
    peak_phase: str
    peak_allocated_bytes: int
    peak_reserved_bytes: int
    device_total_bytes: int
    predicts: str = "torch.cuda.max_memory_allocated / max_memory_reserved over a steady-state training step"
    assumptions: list[str] = field(default_factory=list)
    defaults: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["settings"] = self.settings.to_dict()
        return d


def _vae_scale_factor(vae_config: dict | None) -> int:
    # the pipelines: 2 ** (len(vae.config.block_out_channels) - 1)
    if not vae_config or "block_out_channels" not in vae_config:
        return 8
    return 2 ** (len(vae_config["block_out_channels"]) - 1)


def estimate_pipeline_training(layout: Layout, settings: PipelineTrainSettings) -> PipelineTrainEstimate:
    from ..simulate import diffusion_train as dt

    s = settings.validate()
    mp = s.mixed_precision
    denoisers = layout.by_role(DENOISER)
    if not denoisers:
        raise PipelineTrainSettingsError(f"{layout.class_name}: no denoiser component to train", setting="method")
    den = denoisers[0]
    vaes = layout.by_role(VAE)
    vae = vaes[0] if vaes else None
    encoders = layout.by_role(TEXT_ENCODER)
    is_flux = den.class_name == "FluxTransformer2DModel"
    defaults: list[str] = []
    cache = s.cache_text_embeddings
    if cache is None:
        cache = is_flux
        defaults.append("text embeddings " + ("cached: train_dreambooth_lora_flux.py computes them once and deletes "
                                              "the text encoders" if cache else
                                              "computed every step: the text encoders stay on the GPU"))
    scale = _vae_scale_factor(vae.config if vae else None)
    resolution = s.resolution
    if resolution is None:
        sample = (den.config or {}).get("sample_size")
        resolution = int(sample) * scale if isinstance(sample, int) and not is_flux else (1024 if is_flux else 512)
        defaults.append(f"resolution {resolution}: " + ("the denoiser's sample_size × the VAE scale factor "
                                                        f"{scale}" if not is_flux else "FLUX.1's native 1024²"))
    text_seq = s.text_seq or (FLUX_T5_SEQ if is_flux else CLIP_SEQ)
    if s.text_seq is None:
        defaults.append(f"text sequence {text_seq} ({'T5 --max_sequence_length default' if is_flux else 'CLIP'})")
    if s.method == "lora" and s.lora_targets is None:
        defaults.append("LoRA targets: the script's " + ", ".join(dt.default_lora_targets(den.class_name)))
    latent_channels = int((vae.config or {}).get("latent_channels", 4)) if vae else None
    try:
        train = dt.simulate_denoiser_train(
            den.class_name, den.config or {}, batch=s.batch, resolution=resolution, vae_scale_factor=scale,
            text_seq=text_seq, latent_channels=latent_channels, method=s.method, mixed_precision=mp,
            grad_ckpt=s.grad_ckpt, optimizer=s.optimizer, optimizer_impl=s.optimizer_impl,
            lora_rank=s.lora_rank, lora_targets=s.lora_targets, gpu_emulation=s.gpu_emulation)
    except ValueError as exc:  # e.g. a resolution the VAE cannot divide
        raise PipelineTrainSettingsError(str(exc), setting="resolution") from None

    # frozen components, resident in weight_dtype (the scripts' vae.to(dtype=weight_dtype), text_encoder.to(...))
    wbytes = DTYPE_BYTES[mp]
    comps: list[PipelineComponentState] = []
    frozen_bytes = 0
    side_runs = []
    for c in layout.with_weights():
        n = c.inventory.num_params
        if c is den:
            weights = train.phases[0].by_category.get("parameters", 0) + train.phases[0].by_category.get("buffers", 0)
            comps.append(PipelineComponentState(c.name, c.role, c.class_name, True,
                                                "fp32" if s.method == "full" else mp, True, n, weights,
                                                f"trainable {train.trainable_params:,}"))
            continue
        if c.role == VAE:
            on, note = True, "frozen, encodes the pixel batch"
        elif c.role == TEXT_ENCODER:
            on, note = not cache, "frozen" if not cache else "not loaded: embeddings cached"
        else:
            on, note = False, "not used by the training scripts"
        b = n * wbytes + c.inventory.buffer_bytes
        comps.append(PipelineComponentState(c.name, c.role, c.class_name, on, mp, False, n, b if on else 0, note))
        if on:
            frozen_bytes += b

    # the frozen forwards, each its own simulation: their extra is the peak above their own weights
    fw = train.phase("forward", 2)
    extras: list[tuple[str, int]] = []
    if vae is not None and vae.config:
        r = dt.simulate_vae_encode(vae.config, batch=s.batch, resolution=resolution, dtype=mp,
                                   gpu_emulation=s.gpu_emulation, class_name=vae.class_name)
        extras.append(("vae_encode", r.peak_allocated_bytes - r.phases[0].live_bytes_start))
        side_runs.append(r)
    if not cache:
        worst = 0
        for enc in encoders:
            if not enc.config or "model_type" not in enc.config:
                continue
            seq = min(text_seq, int(enc.config.get("max_position_embeddings", text_seq)))
            r = dt.simulate_text_encoder(enc.class_name, enc.config, batch=s.batch, seq=seq, dtype=mp,
                                         gpu_emulation=s.gpu_emulation)
            worst = max(worst, r.peak_allocated_bytes - r.phases[0].live_bytes_start)
        extras.append(("text_encode", worst))

    ema = 4 * train.trainable_params if s.ema else 0
    resident_static = frozen_bytes + ema
    phases: list[PipelinePhase] = []
    for name, extra in extras:
        base = resident_static + fw.live_bytes_start  # denoiser weights + optimizer states, no gradients
        phases.append(PipelinePhase(name, base + extra, base, extra))
    for p in train.phases:
        if p.iteration != 2:
            continue
        base = resident_static + p.live_bytes_start
        phases.append(PipelinePhase(p.name, resident_static + p.peak_bytes, base, p.peak_bytes - p.live_bytes_start))
    top = max(phases, key=lambda p: p.peak_bytes)
    last = train.phases[-1].by_category
    states = last.get("optimizer_state", 0)
    grads = train.phase("backward", 2).by_category.get("gradients", 0)
    static = resident_static + fw.live_bytes_start
    churn = top.peak_bytes - static
    ov = s.overheads
    reserved = training_reserved_bytes(top.peak_bytes, churn, ov.allocator_fragmentation)
    assumptions = list(train.assumptions)
    assumptions += [a for r in side_runs for a in r.assumptions]
    assumptions += [f"frozen components in weight_dtype {mp} ({wbytes} B/param)",
                    "one GPU, no DeepSpeed/FSDP; steady-state step (optimizer states allocated)",
                    f"reserved = allocated + {ov.allocator_fragmentation:.0%} of the memory that churns "
                    "(activations, gradients)", f"CUDA context {ov.cuda_context_bytes / 2**20:.0f} MiB"]
    if s.optimizer == "adamw-8bit":
        assumptions.append("bitsandbytes AdamW8bit (--use_8bit_adam): uint8 states + fp32 absmax per 256 elements "
                           "(fp32 below 4096 elements), allocated as Optimizer2State.init_state does; its update is in "
                           "place (simulated as an in-place SGD step)")
    if s.ema:
        assumptions.append("EMA (diffusers EMAModel, --use_ema): an fp32 copy of the trained parameters on the GPU; "
                           "its per-parameter update temporaries are not counted")
    return PipelineTrainEstimate(
        settings=s, denoiser=den.class_name, resolution=resolution, phases=phases, components=comps,
        trainable_params=int(train.trainable_params or 0), gradients_bytes=grads, optimizer_state_bytes=states,
        ema_bytes=ema, peak_phase=top.name, peak_allocated_bytes=top.peak_bytes, peak_reserved_bytes=reserved,
        device_total_bytes=reserved + ov.cuda_context_bytes, assumptions=assumptions, defaults=defaults)


# -- sentence-transformers: contrastive training with in-batch negatives -----------------------------------------------
LOSSES = ("mnrl",)  # CachedMultipleNegativesRankingLoss (GradCache) is not modelled yet


def simulate_contrastive_train(layout: Layout, *, batch: int, seq: int, hard_negatives: int = 0,
                               precision: str = "fp32", optimizer: str = "adamw", optimizer_impl: str = "fused",
                               grad_ckpt: bool = False, iterations: int = 2, gpu_emulation: bool = True):
    """A SentenceTransformerTrainer step with MultipleNegativesRankingLoss, on fake tensors: the Transformer
    module (transformers' model built from its config) run once per column (anchors, positives, each hard-negative
    column) at [batch, seq] with gradients, sentence-transformers' own Pooling / Dense / Normalize modules, then
    ``MultipleNegativesRankingLoss.compute_loss_from_embeddings`` (the [batch, batch·(1+negatives)] scaled cosine
    similarity, logsumexp cross-entropy), backward, optimizer step. ``precision``: fp32, or amp-bf16/amp-fp16 (the
    Trainer's --bf16/--fp16: fp32 weights under autocast). Returns a SimResult."""
    import contextlib
    import time

    import torch

    from ..model.pipeline import BACKBONE, DENSE, NORMALIZE, POOLING
    from ..simulate import build, optim
    from ..simulate.emulation import CUDA_MIN_BLOCK, eager_input_semantics
    from ..simulate.engine import AMP_DTYPES, _fake_run, _gradient_tags, _OptimizerStep, _Phases, _result, _track_start
    from ..simulate.result import SimulationError
    from ..simulate.tracker import MemoryTracker

    amp = {"fp32": None, "amp-bf16": "bf16", "amp-fp16": "fp16", "bf16": "bf16", "fp16": "fp16"}.get(precision, "x")
    if amp == "x":
        raise PipelineTrainSettingsError(f"precision {precision!r}: use fp32, amp-bf16 or amp-fp16", setting="precision")
    for name, v in dict(batch=batch, seq=seq).items():
        if int(v) < 1:
            raise PipelineTrainSettingsError(f"{name} must be at least 1", setting=name)
    if hard_negatives < 0:
        raise PipelineTrainSettingsError("hard_negatives must be 0 or more", setting="hard_negatives")
    backbone = next(iter(layout.by_role(BACKBONE)), None)
    if backbone is None or not backbone.config:
        raise PipelineTrainSettingsError(f"{layout.class_name}: no Transformer module with a config", setting="loss")
    pool_cfg = dict(next(iter(layout.by_role(POOLING)), None).config or {}) if layout.by_role(POOLING) else {}
    dense = layout.by_role(DENSE)
    normalize = bool(layout.by_role(NORMALIZE))
    try:
        from sentence_transformers.base.modules.dense import Dense
        from sentence_transformers.base.modules.normalize import Normalize
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
        from sentence_transformers.sentence_transformer.modules.pooling import Pooling
    except ImportError:
        raise SimulationError("simulating sentence-transformers training needs it: pip install sentence-transformers") \
            from None
    config = dict(backbone.config)
    arch = build.architecture_name(config)
    tracker = MemoryTracker(CUDA_MIN_BLOCK if gpu_emulation else 1)
    started = time.perf_counter()
    with _fake_run(arch, tracker, gpu_emulation, "sdpa") as fake_mode, eager_input_semantics():
        model = build.build_model(config, dtype=torch.float32, attn="sdpa")
        if grad_ckpt:
            build.enable_checkpointing(model)
        dim = int(getattr(model.config, "hidden_size"))
        mode = next((m.removeprefix("pooling_mode_").removesuffix("_tokens") for m, on in pool_cfg.items()
                     if m.startswith("pooling_mode_") and on), "mean")
        mode = {"mean": "mean", "cls": "cls", "max": "max", "lasttoken": "lasttoken"}.get(mode, "mean")
        head = [Pooling(dim, pooling_mode=mode)]
        for d in dense:
            c = d.config or {}
            head.append(Dense(int(c.get("in_features", dim)), int(c.get("out_features", dim)),
                              bias=bool(c.get("bias", True))))
        if normalize:
            head.append(Normalize())
        head = torch.nn.ModuleList(head)
        model.train()
        head.train()
        modules = torch.nn.ModuleList([model, head])
        params = [p for p in modules.parameters() if p.requires_grad]
        opt = optim.make_optimizer(optimizer, optimizer_impl, params)
        vocab = int(model.config.vocab_size)
        columns = 2 + hard_negatives
        feats = [{"input_ids": torch.randint(0, vocab, (batch, seq)),
                  "attention_mask": torch.ones(batch, seq, dtype=torch.long)} for _ in range(columns)]
        labels = torch.arange(batch)
        loss_fn = MultipleNegativesRankingLoss(model=torch.nn.Identity())
        _track_start(tracker, modules, [t for f in feats for t in f.values()] + [labels])
        phases = _Phases(tracker)
        step = _OptimizerStep(opt, tracker, gpu_emulation)
        with _gradient_tags(modules, tracker), tracker:
            for it in range(1, iterations + 1):
                with phases.phase("forward", it):
                    ctx = torch.autocast("cpu", dtype=AMP_DTYPES[amp]) if amp else contextlib.nullcontext()
                    with ctx:
                        embs = []
                        for f in feats:  # embed_columns: one forward per column
                            out = dict(f, token_embeddings=model(**f).last_hidden_state)
                            for m in head:
                                out = m(out)
                            embs.append(out["sentence_embedding"])
                            del out
                        loss = loss_fn.compute_loss_from_embeddings(embs, labels)
                        del embs
                with phases.phase("backward", it):
                    loss.backward()
                    del loss
                with phases.phase("optimizer_step", it, finish=step.tag_states):
                    step.run()
    assumptions = [f"sentence-transformers MultipleNegativesRankingLoss (scale 20, cos_sim) over {columns} columns "
                   f"(anchor, positive, {hard_negatives} hard negatives): similarity [{batch}, {batch * (1 + hard_negatives + 1) - batch}]",
                   f"Pooling mode {mode}" + (", Dense" if dense else "") + (", Normalize" if normalize else ""),
                   "every column padded to the full sequence (attention_mask all ones)",
                   f"{optimizer} {optimizer_impl}, weights fp32" + (f", autocast {amp}" if amp else "")]
    if grad_ckpt:
        assumptions.append("gradient checkpointing, non-reentrant")
    res = _result("train", arch, phases.stats, tracker, started,
                  dict(mode="train", loss="mnrl", batch=batch, seq=seq, hard_negatives=hard_negatives,
                       precision=precision, optimizer=optimizer, optimizer_impl=optimizer_impl, grad_ckpt=grad_ckpt),
                  assumptions, model=modules)
    return res


def similarity_matrix_bytes(batch: int, hard_negatives: int = 0, dtype_bytes: int = 4) -> int:
    """One [batch, batch·(1+negatives)] score matrix (MNRL's query_to_doc)."""
    return batch * batch * (1 + hard_negatives) * dtype_bytes


# -- hfmem train for a composite repo (api.train dispatches here by ModelReport.kind) ----------------------------------
CONTRASTIVE_LOSSES = ("mnrl",)
DEFAULT_ST_SEQ = 128  # the brief's MNRL setting; sentence_bert_config.json's max_seq_length is the model's limit


def _amp_of(precision: str) -> str | None:
    """timm / sentence-transformers train fp32 weights under AMP (timm train.py --amp, Trainer --bf16/--fp16);
    a pure 16-bit precision is taken as its AMP."""
    return {"fp32": None, "amp-bf16": "bf16", "bf16": "bf16", "amp-fp16": "fp16", "fp16": "fp16"}.get(precision, "bf16")


def _simulated_estimate(sim, settings: PipelineTrainSettings, name: str, component: PipelineComponentState,
                        defaults: list[str], extra_assumptions: list[str]) -> PipelineTrainEstimate:
    phases = [PipelinePhase(p.name, p.peak_bytes, p.live_bytes_start, p.peak_bytes - p.live_bytes_start)
              for p in sim.phases if p.iteration == 2]
    top = max(phases, key=lambda p: p.peak_bytes)
    static = sim.phase("forward", 2).live_bytes_start
    ov = settings.overheads
    reserved = training_reserved_bytes(top.peak_bytes, top.peak_bytes - static, ov.allocator_fragmentation)
    return PipelineTrainEstimate(
        settings=settings, denoiser=name, resolution=int(sim.inputs.get("image_size") or 0), phases=phases,
        components=[component], trainable_params=int(sim.trainable_params or 0),
        gradients_bytes=sim.phase("backward", 2).by_category.get("gradients", 0),
        optimizer_state_bytes=sim.phases[-1].by_category.get("optimizer_state", 0), ema_bytes=0,
        peak_phase=top.name, peak_allocated_bytes=top.peak_bytes, peak_reserved_bytes=reserved,
        device_total_bytes=reserved + ov.cuda_context_bytes,
        assumptions=list(sim.assumptions) + extra_assumptions + [
            f"reserved = allocated + {ov.allocator_fragmentation:.0%} of the memory that churns",
            f"CUDA context {ov.cuda_context_bytes / 2**20:.0f} MiB"], defaults=defaults)


def train_composite(layout: Layout, config: dict | None, train_settings, *, resolution: int | None = None,
                    ema: bool = False, cache_text_embeddings: bool | None = None, loss: str | None = None,
                    hard_negatives: int = 0) -> PipelineTrainEstimate:
    """``hfmem train`` for a diffusers pipeline (the denoiser), a timm model, or a sentence-transformers model with a
    contrastive ``loss``. ``train_settings``: the command's TrainSettings (method, precision, optimizer, batch, seq,
    grad_ckpt, lora_rank, lora_targets, image_size, overheads)."""
    from .. import vocab
    from ..model.pipeline import SENTENCE_TRANSFORMERS, TIMM

    t = train_settings
    targets = t.lora_targets
    targets = None if targets in (None, vocab.LORA_TARGETS) else tuple(targets)
    s = PipelineTrainSettings(
        method=t.method, precision=t.precision or "bf16", optimizer=t.optimizer, optimizer_impl=t.adamw_impl,
        batch=t.batch, resolution=resolution or t.image_size, grad_ckpt=t.grad_ckpt, ema=ema,
        cache_text_embeddings=cache_text_embeddings, lora_rank=t.lora_rank, lora_targets=targets,
        overheads=t.overheads).validate()
    if layout.kind == DIFFUSERS_PIPELINE:
        return estimate_pipeline_training(layout, s)
    if s.method != "full":
        raise PipelineTrainSettingsError(f"{layout.class_name}: --method {s.method} is modelled for diffusers "
                                         "pipelines only; timm and sentence-transformers train full", setting="method")
    if s.optimizer == "adamw-8bit":
        raise PipelineTrainSettingsError("adamw-8bit is simulated for diffusers pipelines only", setting="optimizer")
    if layout.kind == TIMM:
        from ..simulate.timm_run import simulate_timm_train

        # the network's config.json is its (only) component's: a timm repo has no transformers config
        sim = simulate_timm_train(layout.components[0].config or {}, batch=s.batch, image_size=s.resolution, optimizer=s.optimizer,
                                  optimizer_impl=s.optimizer_impl, amp=_amp_of(s.precision), grad_ckpt=s.grad_ckpt)
        comp = PipelineComponentState("model", "backbone", sim.architecture, True, "fp32", True,
                                      int(sim.num_params or 0), sim.phases[0].by_category.get("parameters", 0))
        return _simulated_estimate(sim, s, sim.architecture, comp, [] if s.resolution else [
            f"image size {sim.inputs['image_size']}: the model's pretrained_cfg input_size"], [])
    if layout.kind == SENTENCE_TRANSFORMERS:
        if loss not in CONTRASTIVE_LOSSES:
            raise PipelineTrainSettingsError(f"loss {loss!r}: use {', '.join(CONTRASTIVE_LOSSES)}", setting="loss")
        seq = t.seq or DEFAULT_ST_SEQ
        prec = {"bf16": "amp-bf16", "fp16": "amp-fp16"}.get(s.precision, s.precision)
        sim = simulate_contrastive_train(layout, batch=s.batch, seq=seq, hard_negatives=hard_negatives,
                                         precision=prec, optimizer=s.optimizer, optimizer_impl=s.optimizer_impl,
                                         grad_ckpt=s.grad_ckpt)
        comp = PipelineComponentState("0_Transformer", "backbone", sim.architecture, True, "fp32", True,
                                      int(sim.num_params or 0), sim.phases[0].by_category.get("parameters", 0))
        est = _simulated_estimate(sim, s, layout.class_name, comp,
                                  [] if t.seq else [f"sequence {seq} tokens per column"],
                                  [f"similarity matrix [{s.batch}, {s.batch * (1 + hard_negatives)}]: "
                                   f"{similarity_matrix_bytes(s.batch, hard_negatives)} B in fp32"])
        return est
    raise PipelineTrainSettingsError(f"{layout.kind}: not a composite repo", setting="method")

