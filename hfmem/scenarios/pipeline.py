"""Serving a diffusers pipeline: the GPU memory of one ``pipe(prompt, ...)`` call, phase by phase.

Phases, in the pipeline's order (``__call__`` of StableDiffusionPipeline, StableDiffusionXLPipeline, FluxPipeline,
StableDiffusion3Pipeline in diffusers 0.42): encode the prompt (each text encoder once) -> denoise (one denoiser
call per step; every step is the same call, so one is simulated) -> VAE decode (-> the safety checker, SD 1.x).
Each call's activations come from running its real code on fake tensors (``hfmem.simulate.diffusion``); the
weights resident in each phase follow the memory mode:

* ``none`` (``pipe.to("cuda")``): every component with weights, all phases.
* ``model`` (``enable_model_cpu_offload``): accelerate's CpuOffload hook moves a model to the GPU when its forward
  starts and first offloads the previous one in ``model_cpu_offload_seq``: only the running component (plus the
  ones in ``_exclude_from_cpu_offload``, e.g. SD's safety_checker, kept on the GPU). peak = max over components
  of its weights + its activations.
* ``sequential`` (``enable_sequential_cpu_offload``): accelerate's AlignDevicesHook onloads each module's direct
  parameters for its forward: the most on at once is the largest root-to-leaf chain of direct parameters
  (``Structure.sequential_max_params``); buffers stay on the GPU (diffusers passes ``offload_buffers`` only for a
  model with parameters of its own).
* ``group`` (``enable_group_offload`` / ``apply_group_offloading``): block_level puts every ModuleList/Sequential
  child into groups of ``num_blocks_per_group`` blocks; everything else at the top level is one "unmatched"
  group onloaded for the whole forward. One group at a time is on, or, with ``use_stream`` (which forces one block
  per group), the running group and the next one being prefetched. leaf_level: each leaf module is a group (the
  next one prefetched with a stream); non-leaf parameters go with the top-level module.

What is predicted: ``peak_allocated_bytes`` (``torch.cuda.max_memory_allocated()``), ``peak_reserved_bytes``
(``max_memory_reserved()``: plus the allocator's reserve on the churning memory) and ``device_total_bytes``
(nvidia-smi: plus the CUDA context), as the other serving estimates (overheads.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ..errors import SettingsError
from ..model.pipeline import DENOISER, SAFETY_CHECKER, TEXT_ENCODER, VAE, Component, Layout
from .overheads import Overheads, reserved_bytes

MEMORY_MODES = ("none", "model", "sequential", "group")
GROUP_TYPES = ("block_level", "leaf_level")
DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
          "fp32": "float32", "float32": "float32"}
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
DENOISER_FORMATS = ("bf16", "fp16", "fp32", "nf4", "int8", "fp8-layerwise", "gguf")
TEXT_ENCODER_FORMATS = ("bf16", "fp16", "fp32", "nf4", "int8")

# Each pipeline's __call__ defaults (diffusers 0.42): guidance_scale, num_inference_steps, whether CFG batches
# the unconditional pass with the conditional one, the T5 max_sequence_length, and the default side in latent
# pixels when the denoiser config has no sample_size (default_sample_size).
PIPELINES = {
    # pipeline_stable_diffusion.py: guidance_scale=7.5, num_inference_steps=50; do_classifier_free_guidance =
    # guidance_scale > 1 -> torch.cat([latents] * 2)
    "StableDiffusionPipeline": dict(guidance=7.5, steps=50, cfg="batched", t5_len=None),
    # pipeline_stable_diffusion_xl.py: guidance_scale=5.0, num_inference_steps=50
    "StableDiffusionXLPipeline": dict(guidance=5.0, steps=50, cfg="batched", t5_len=None),
    # pipeline_flux.py: guidance_scale=3.5 goes to the transformer's guidance embedding (distilled, no second
    # pass); true_cfg_scale > 1 with a negative prompt runs the transformer twice in a row (not batched);
    # max_sequence_length=512, default_sample_size=128
    "FluxPipeline": dict(guidance=3.5, steps=28, cfg="distilled", t5_len=512, sample=128),
    # pipeline_stable_diffusion_3.py: guidance_scale=7.0, num_inference_steps=28, max_sequence_length=256
    "StableDiffusion3Pipeline": dict(guidance=7.0, steps=28, cfg="batched", t5_len=256, sample=128),
}
# diffusers' _exclude_from_cpu_offload: kept on the GPU under model / sequential offload
EXCLUDED_FROM_OFFLOAD = {"StableDiffusionPipeline": ("safety_checker",)}

PREDICTS = {
    "peak_allocated_bytes": "torch.cuda.max_memory_allocated() over one pipe(...) call",
    "peak_reserved_bytes": "torch.cuda.max_memory_reserved(): allocated plus the caching allocator's reserve",
    "device_total_bytes": "what nvidia-smi shows for the process: reserved plus the CUDA context",
}


class PipelineSettingsError(SettingsError):
    """A pipeline setting out of range; the message names it."""


@dataclass(frozen=True)
class PipelineSettings:
    height: int | None = None          # None: the pipeline's default (sample_size x vae scale factor)
    width: int | None = None
    batch: int = 1                     # images per call: prompts x num_images_per_prompt
    frames: int = 1                    # video pipelines only
    steps: int | None = None           # num_inference_steps (None: the pipeline's default; memory is per step)
    guidance_scale: float | None = None  # None: the pipeline's default
    cfg: bool | None = None            # force classifier-free guidance on/off (None: guidance_scale > 1)
    dtype: str = "bf16"
    offload: str = "none"              # none | model | sequential | group
    group_type: str = "block_level"
    group_blocks: int = 1              # num_blocks_per_group (block_level)
    group_stream: bool = False         # use_stream: prefetch the next group
    vae_tiling: bool = False
    vae_slicing: bool = False
    attention_slicing: str | int | None = None  # None: off; "auto", "max" or a slice size
    denoiser_weights: str | None = None       # None: dtype
    text_encoder_weights: str | None = None   # None: dtype
    max_sequence_length: int | None = None    # T5 prompt length (None: the pipeline's default)
    overheads: Overheads = field(default_factory=Overheads)

    def validate(self) -> "PipelineSettings":
        def bad(msg, setting):
            raise PipelineSettingsError(msg, setting=setting)

        for name in ("batch", "frames", "group_blocks"):
            if int(getattr(self, name)) < 1:
                bad(f"{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})", name)
        for name in ("height", "width", "steps", "max_sequence_length"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                bad(f"{name.replace('_', '-')} must be at least 1 (got {v})", name)
        if self.dtype not in DTYPES:
            bad(f"dtype must be bf16, fp16 or fp32, not {self.dtype!r}", "dtype")
        if self.offload not in MEMORY_MODES:
            bad(f"offload must be one of {', '.join(MEMORY_MODES)}, not {self.offload!r}", "offload")
        if self.group_type not in GROUP_TYPES:
            bad(f"group-type must be block_level or leaf_level, not {self.group_type!r}", "group_type")
        if self.guidance_scale is not None and self.guidance_scale < 0:
            bad(f"guidance-scale must be 0 or more (got {self.guidance_scale})", "guidance_scale")
        if self.denoiser_weights is not None and self.denoiser_weights not in DENOISER_FORMATS:
            bad(f"denoiser-weights must be one of {', '.join(DENOISER_FORMATS)}, not {self.denoiser_weights!r}",
                "denoiser_weights")
        if self.denoiser_weights == "gguf":
            bad("denoiser-weights gguf is not supported yet (GGUF block sizes come with the GGUF issue)",
                "denoiser_weights")
        if self.text_encoder_weights is not None and self.text_encoder_weights not in TEXT_ENCODER_FORMATS:
            bad(f"text-encoder-weights must be one of {', '.join(TEXT_ENCODER_FORMATS)}, not "
                f"{self.text_encoder_weights!r}", "text_encoder_weights")
        a = self.attention_slicing
        if a is not None and a not in ("auto", "max") and not (isinstance(a, int) and a >= 1):
            bad(f"attention-slicing must be auto, max or a positive slice size, not {a!r}", "attention_slicing")
        return self

    @property
    def compute_dtype(self) -> str:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["overheads"] = self.overheads.to_dict()
        return d


@dataclass
class ResidentComponent:
    name: str
    role: str
    weights_bytes: int        # on the GPU during this phase
    running: bool             # the component whose forward this phase is


@dataclass
class PipelinePhase:
    name: str                 # "encode:text_encoder", "denoise", "decode", "safety_checker"
    component: str
    resident: list[ResidentComponent]
    weights_bytes: int        # all resident weights
    activations_bytes: int    # the running call's peak above its weights (inputs, activations, transients)
    peak_allocated_bytes: int
    inputs: dict = field(default_factory=dict)
    simulated: bool = True


@dataclass
class PipelineEstimate:
    settings: PipelineSettings
    pipeline: str
    height: int
    width: int
    batch: int
    denoiser_batch: int
    cfg: bool
    guidance_scale: float
    steps: int
    phases: list[PipelinePhase]
    peak_phase: str
    peak_allocated_bytes: int
    peak_reserved_bytes: int
    device_total_bytes: int
    weights_bytes_by_component: dict[str, int]   # each component's weights in its serving format
    predicts: dict[str, str]
    assumptions: list[str]
    notes: list[str]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["settings"] = self.settings.to_dict()
        return d


# -- the pipeline's shapes -----------------------------------------------------------------------------------
def _one(layout: Layout, role: str) -> Component | None:
    found = [c for c in layout.by_role(role)]
    return found[0] if found else None


def vae_scale_factor(vae: Component | None) -> int:
    """2 ** (len(vae.config.block_out_channels) - 1): what every SD/SDXL/FLUX pipeline's __init__ computes."""
    blocks = (vae.config or {}).get("block_out_channels") if vae is not None else None
    return 2 ** (len(blocks) - 1) if blocks else 8


def default_side(layout: Layout, denoiser: Component, f: int) -> int:
    """The pipeline's default height/width: the denoiser's sample_size x vae scale factor (SD1.5 64x8 = 512,
    SDXL 128x8 = 1024), FLUX's default_sample_size 128 x 8 = 1024."""
    spec = PIPELINES.get(layout.class_name, {})
    if layout.class_name == "FluxPipeline":
        return spec["sample"] * f
    size = (denoiser.config or {}).get("sample_size") or spec.get("sample", 64)
    return int(size if isinstance(size, int) else size[0]) * f


def _is_t5(c: Component) -> bool:
    cfg = c.config or {}
    return cfg.get("model_type") in ("t5", "umt5") or c.class_name.startswith(("T5", "UMT5"))


def text_length(c: Component, t5_len: int) -> int:
    """Tokens the tokenizer pads the prompt to: CLIP's max_position_embeddings (77); T5: max_sequence_length."""
    if _is_t5(c):
        return t5_len
    return int((c.config or {}).get("max_position_embeddings") or 77)


# -- weights ---------------------------------------------------------------------------------------------------
def component_weights_bytes(c: Component, fmt: str, compute_dtype: str, structure=None) -> int:
    """A component's weights on the GPU in format ``fmt``: dense = parameters x dtype bytes + buffers;
    nf4/int8 = bitsandbytes bytes on the census (``weights.weights_bytes``: diffusers' and transformers'
    bitsandbytes integrations replace nn.Linear only); fp8-layerwise = enable_layerwise_casting's fp8 storage of
    every Linear/Conv weight, the rest at the compute dtype."""
    from . import weights

    inv = c.inventory
    n = inv.num_params if inv is not None else (structure.num_params if structure else 0)
    buffers = inv.buffer_bytes if inv is not None else (structure.buffer_bytes if structure else 0)
    if fmt in DTYPES:
        return n * DTYPE_BYTES[DTYPES[fmt]] + buffers
    if fmt in ("nf4", "int8"):
        if inv is None or not inv.tensors:
            raise PipelineSettingsError(f"{c.name}: no tensor census to size {fmt} weights on", setting="weights")
        est = weights.weights_bytes(inv.tensors, fmt, compute_dtype=compute_dtype, quantize_experts=False)
        return est.stored_bytes + buffers
    if fmt == "fp8-layerwise":
        # hooks/layerwise_casting.py: SUPPORTED_PYTORCH_LAYERS (Conv1d-3d, ConvTranspose, Linear) stored in
        # float8_e4m3fn, except modules matching DEFAULT_SKIP_MODULES_PATTERN ("pos_embed", "patch_embed",
        # "norm", "^proj_in$", "^proj_out$"). On the census: linear and "other" (conv) matrices whose name
        # matches no skip pattern at 1 byte; the rest at the compute dtype.
        if inv is None or not inv.tensors:
            raise PipelineSettingsError(f"{c.name}: no tensor census to size fp8 weights on", setting="weights")
        hp = DTYPE_BYTES[compute_dtype]
        total = 0
        for e in inv.tensors:
            params = int(e.get("params", 0))
            name = str(e.get("name", ""))
            shape = e.get("shape") or []
            matrix = len(shape) >= 2 and e.get("role") in ("linear", "other")
            skipped = any(s in name for s in ("pos_embed", "patch_embed", "norm", "proj_in", "proj_out"))
            total += params * (1 if matrix and not skipped else hp)
        return total + buffers
    raise PipelineSettingsError(f"weights format {fmt!r} is not supported", setting="weights")


# -- estimate --------------------------------------------------------------------------------------------------
def _phase_calls(layout: Layout, s: PipelineSettings):
    """(phase name, component, simulate-thunk) for every phase, in the pipeline's order."""
    from ..simulate import diffusion as sim

    spec = PIPELINES[layout.class_name]
    denoiser, vae = _one(layout, DENOISER), _one(layout, VAE)
    f = vae_scale_factor(vae)
    side = default_side(layout, denoiser, f)
    height, width = s.height or side, s.width or side
    guidance = spec["guidance"] if s.guidance_scale is None else s.guidance_scale
    cfg = (guidance > 1) if s.cfg is None else s.cfg
    batched = cfg and spec["cfg"] == "batched"
    t5_len = s.max_sequence_length or spec["t5_len"] or 512
    dt = s.compute_dtype
    encoders = layout.by_role(TEXT_ENCODER)
    calls = []
    for te in encoders:
        seq = text_length(te, t5_len)
        # SDXL reads hidden_states[-2] of both CLIPs (output_hidden_states=True); the others the last state
        hidden = layout.class_name == "StableDiffusionXLPipeline"
        # CFG: SD/SDXL encode the negative prompt in a second call of the same size (not batched)
        calls.append((f"encode:{te.name}", te, lambda te=te, seq=seq, hidden=hidden: sim.simulate_text_encoder(
            te.config, batch=s.batch, seq=seq, dtype=dt, hidden_states=hidden)))
    if layout.class_name == "FluxPipeline":
        text_len = t5_len
    elif layout.class_name == "StableDiffusion3Pipeline":
        text_len = 77 + t5_len  # torch.cat([clip_prompt_embeds, t5_prompt_embeds], dim=-2)
    else:
        text_len = max((text_length(te, t5_len) for te in encoders if not _is_t5(te)), default=77)
    pooled = None
    te2 = layout.named("text_encoder_2")
    if layout.class_name == "StableDiffusionXLPipeline" and te2 is not None:
        pooled = (te2.config or {}).get("projection_dim")
    slice_ = s.attention_slicing
    calls.append(("denoise", denoiser, lambda: sim.simulate_denoiser(
        denoiser.class_name, denoiser.config, batch=s.batch, height=height, width=width, dtype=dt,
        vae_scale_factor=f, text_len=text_len, cfg=batched, pooled_dim=pooled, attention_slice=slice_)))
    vae_dtype = dt
    if layout.class_name == "StableDiffusionXLPipeline" and dt == "float16" and (vae.config or {}).get("force_upcast"):
        vae_dtype = "float32"  # needs_upcasting: self.upcast_vae() before decoding
    calls.append(("decode", vae, lambda: sim.simulate_vae_decode(
        vae.config, batch=s.batch, height=height, width=width, dtype=vae_dtype, vae_scale_factor=f,
        tiling=s.vae_tiling, slicing=s.vae_slicing, class_name=vae.class_name)))
    sc = _one(layout, SAFETY_CHECKER)
    if sc is not None and sc.has_weights:
        calls.append(("safety_checker", sc, None))
    shape = dict(height=height, width=width, guidance=guidance, cfg=cfg, batched=batched, f=f, t5_len=t5_len,
                 vae_dtype=vae_dtype, text_len=text_len)
    return calls, shape


def _component_format(c: Component, s: PipelineSettings) -> str:
    if c.role == DENOISER:
        return s.denoiser_weights or s.dtype
    if c.role == TEXT_ENCODER:
        return s.text_encoder_weights or s.dtype
    return s.dtype


def resident_weights(mode: str, running: Component, weights: dict[str, int], structure, fmt_bytes: float,
                     s: PipelineSettings) -> int:
    """Bytes of the running component's weights on the GPU during its forward under an offload ``mode``
    (``structure``: its simulate.diffusion.Structure; ``fmt_bytes``: bytes per parameter in its format)."""
    w = weights[running.name]
    if mode in ("none", "model") or structure is None:
        return w
    buffers = structure.buffer_bytes
    if mode == "sequential":
        return int(structure.sequential_max_params * fmt_bytes) + buffers
    # group offload
    if s.group_type == "leaf_level":
        leaves = structure.leaf_params
        window = 2 if s.group_stream else 1
        on = max((sum(leaves[i:i + window]) for i in range(len(leaves))), default=0)
        return int((structure.non_leaf_params + on) * fmt_bytes) + buffers
    n = 1 if s.group_stream else s.group_blocks  # use_stream forces num_blocks_per_group=1
    groups = [sum(blocks[i:i + n]) for blocks in structure.block_lists for i in range(0, len(blocks), n)]
    window = 2 if s.group_stream else 1  # the running group and the one being prefetched
    on = max((sum(groups[i:i + window]) for i in range(len(groups))), default=0)
    return int((structure.unmatched_params + on) * fmt_bytes) + buffers


def estimate_pipeline_serving(layout: Layout, settings: PipelineSettings) -> PipelineEstimate:
    """The memory of one pipeline call under ``settings`` (see the module docstring for the phase model)."""
    from ..simulate.result import SimulationError

    s = settings.validate()
    if layout.class_name not in PIPELINES:
        raise PipelineSettingsError(f"{layout.class_name}: hfmem does not know this pipeline's call (it knows "
                                    f"{', '.join(PIPELINES)})", setting="pipeline")
    if s.frames != 1:
        raise PipelineSettingsError(f"frames applies to video pipelines; {layout.class_name} makes images",
                                    setting="frames")
    denoiser = _one(layout, DENOISER)
    if denoiser is None or _one(layout, VAE) is None:
        raise PipelineSettingsError(f"{layout.class_name}: no denoiser or VAE component in model_index.json",
                                    setting="pipeline")
    calls, shape = _phase_calls(layout, s)
    dt = s.compute_dtype
    assumptions: list[str] = []
    notes: list[str] = []
    runs = {}
    for name, comp, thunk in calls:
        if thunk is not None:
            try:
                runs[name] = thunk()
            except SimulationError:
                raise
    structures = {comp.name: runs[name].structure for name, comp, _ in calls if name in runs}
    weights: dict[str, int] = {}
    fmt_bytes: dict[str, float] = {}
    for c in layout.with_weights() or [comp for _, comp, _ in calls]:
        fmt = _component_format(c, s)
        weights[c.name] = component_weights_bytes(c, fmt, dt, structures.get(c.name))
        n = c.inventory.num_params if c.inventory is not None else (structures[c.name].num_params
                                                                     if c.name in structures else 0)
        buf = c.inventory.buffer_bytes if c.inventory is not None else 0
        fmt_bytes[c.name] = (weights[c.name] - buf) / n if n else 2.0
    if shape["vae_dtype"] != dt:
        vae = _one(layout, VAE)
        assumptions.append("SDXL fp16: the VAE has force_upcast, so the pipeline upcasts it to float32 for the "
                           "decode (needs_upcasting in StableDiffusionXLPipeline.__call__)")
        weights[vae.name] = component_weights_bytes(vae, "fp32", "float32", structures.get(vae.name))
    excluded = EXCLUDED_FROM_OFFLOAD.get(layout.class_name, ())
    phases: list[PipelinePhase] = []
    for name, comp, _ in calls:
        run = runs.get(name)
        act = run.activations_bytes if run is not None else 0
        extra = 0
        if comp.role == DENOISER and s.denoiser_weights == "fp8-layerwise" and run is not None:
            # each Linear/Conv is upcast to the compute dtype for its forward: one layer's weights transient
            extra = (max(run.structure.leaf_params, default=0)) * DTYPE_BYTES[dt]
        if comp.role == DENOISER and s.denoiser_weights == "nf4" and run is not None:
            # bnb MatMul4Bit: dequantize_4bit(B) of the largest linear, in the compute dtype, for its matmul
            o, i = run.structure.largest_linear or [0, 0]
            extra = o * i * DTYPE_BYTES[dt]
        resident = []
        for c in layout.with_weights():
            if c.name not in weights:
                continue
            if c.name == comp.name:
                on = resident_weights(s.offload, c, weights, structures.get(c.name), fmt_bytes[c.name], s)
            elif s.offload == "none" or c.name in excluded:
                on = weights[c.name]
            else:
                continue
            resident.append(ResidentComponent(c.name, c.role, on, c.name == comp.name))
        w = sum(r.weights_bytes for r in resident)
        phases.append(PipelinePhase(name, comp.name, resident, w, act + extra, w + act + extra,
                                    inputs=run.inputs if run is not None else {}, simulated=run is not None))
    top = max(phases, key=lambda p: p.peak_allocated_bytes)
    # The allocator's reserve on what churns: the activations. Weights, moved whole by the offload modes, are
    # exact-size blocks that the next component's weights reuse (overheads.py: weights are not churn).
    churn = top.activations_bytes
    reserved = reserved_bytes(top.peak_allocated_bytes, churn, s.overheads.allocator_fragmentation)
    device = reserved + s.overheads.cuda_context_bytes
    spec = PIPELINES[layout.class_name]
    steps = s.steps or spec["steps"]
    assumptions += _assumptions(layout, s, shape, runs, steps)
    if any(not p.simulated for p in phases):
        notes.append("safety checker: its weights are counted, its CLIP vision forward on the 224 px images is not "
                     "simulated (a few MiB)")
    return PipelineEstimate(settings=s, pipeline=layout.class_name, height=shape["height"], width=shape["width"],
                            batch=s.batch, denoiser_batch=s.batch * (2 if shape["batched"] else 1),
                            cfg=shape["cfg"], guidance_scale=shape["guidance"], steps=steps, phases=phases,
                            peak_phase=top.name, peak_allocated_bytes=top.peak_allocated_bytes,
                            peak_reserved_bytes=reserved, device_total_bytes=device,
                            weights_bytes_by_component=weights, predicts=dict(PREDICTS), assumptions=assumptions,
                            notes=notes)


def _assumptions(layout: Layout, s: PipelineSettings, shape: dict, runs: dict, steps: int) -> list[str]:
    spec = PIPELINES[layout.class_name]
    out = [f"{shape['height']}x{shape['width']} px" + (" (the pipeline's default)" if s.height is None else ""),
           f"{steps} steps: every step is the same denoiser call, so the peak does not depend on the count",
           f"guidance_scale {shape['guidance']}" + (" (the pipeline's default)" if s.guidance_scale is None else "")]
    if spec["cfg"] == "distilled":
        out.append("FLUX: guidance distillation (the guidance embedding), one transformer pass per step; "
                   "true_cfg_scale > 1 would run a second pass after the first, same peak")
    elif shape["batched"]:
        out.append(f"classifier-free guidance: the denoiser runs on {2 * s.batch} latents (2 x batch)")
    out.append(f"text encoders at batch {s.batch}, one call each (the negative prompt's call is the same size)")
    mode = {"none": "pipe.to('cuda'): every component resident",
            "model": "enable_model_cpu_offload(): only the running component on the GPU",
            "sequential": "enable_sequential_cpu_offload(): one module's parameters at a time",
            "group": f"enable_group_offload({s.group_type}, num_blocks_per_group={s.group_blocks}, "
                     f"use_stream={s.group_stream})"}[s.offload]
    out.append(f"memory mode: {mode}")
    if s.denoiser_weights == "fp8-layerwise":
        out.append("fp8 layerwise casting: Linear/Conv weights stored float8_e4m3fn, each upcast for its forward "
                   "(the largest leaf module's weights at the compute dtype counted as a transient)")
    if s.denoiser_weights == "nf4":
        out.append("nf4 denoiser: the largest nn.Linear dequantized to the compute dtype counted as a transient")
    if s.denoiser_weights == "int8":
        out.append("int8 denoiser: LLM.int8 matmul transients (int32 products, outlier columns) not counted")
    seen = set()
    for r in runs.values():
        for a in r.assumptions:
            if a not in seen:
                seen.add(a)
                out.append(a)
    return out


# -- remedies ---------------------------------------------------------------------------------------------------
# What to try when it does not fit, cheapest slowdown first:
# 1. VAE slicing (batch > 1) and VAE tiling cost almost nothing: they change only the decode, once per image.
# 2. Attention slicing runs the same math in chunks: a modest slowdown of every denoiser step.
# 3. Model CPU offload moves each whole model once per call (PCIe copies of a few GiB, seconds per image).
# 4. An fp8 layerwise-cast denoiser: a cast per layer per step, no offload traffic.
# 5. An nf4 denoiser: dequantization in every linear at every step (and a quality change).
# 6. Group offload with a stream: every block crosses PCIe every step, overlapped with compute.
# 7. Sequential CPU offload: every module crosses PCIe every step, unoverlapped: the slowest by far.
REMEDIES = (
    ("VAE slicing", dict(vae_slicing=True)),
    ("VAE tiling", dict(vae_tiling=True)),
    ("attention slicing", dict(attention_slicing="auto")),
    ("model CPU offload", dict(offload="model")),
    ("model CPU offload + VAE tiling", dict(offload="model", vae_tiling=True)),
    ("fp8 layerwise denoiser", dict(denoiser_weights="fp8-layerwise")),
    ("nf4 denoiser", dict(denoiser_weights="nf4")),
    ("model CPU offload + nf4 denoiser", dict(offload="model", denoiser_weights="nf4")),
    ("group offload (block_level, stream)", dict(offload="group", group_type="block_level", group_stream=True)),
    ("group offload + VAE tiling", dict(offload="group", group_type="block_level", group_stream=True,
                                        vae_tiling=True)),
    ("sequential CPU offload", dict(offload="sequential")),
    ("sequential CPU offload + VAE tiling", dict(offload="sequential", vae_tiling=True)),
)


@dataclass
class Remedy:
    name: str
    changes: dict
    peak_allocated_bytes: int
    device_total_bytes: int
    fits: bool


def pipeline_remedies(layout: Layout, settings: PipelineSettings, gpu_bytes: int) -> list[Remedy]:
    """Each remedy (``REMEDIES``, cheapest slowdown first) that changes something and brings the device total
    within ``gpu_bytes``, with its peak; the ones a setting already has or that do not apply are skipped."""
    from ..simulate.result import SimulationError

    out = []
    for name, changes in REMEDIES:
        if all(getattr(settings, k) == v for k, v in changes.items()):
            continue
        if changes.get("vae_slicing") and settings.batch == 1:
            continue  # one image: slicing decodes the same single latent
        try:
            est = estimate_pipeline_serving(layout, replace(settings, **changes))
        except (SimulationError, SettingsError):
            continue  # not available for this pipeline (e.g. no sliced attention in its denoiser)
        if any(set(r.changes.items()) < set(changes.items()) and r.device_total_bytes <= est.device_total_bytes
               for r in out):
            continue  # a combination that saves nothing over a cheaper remedy already listed
        if est.device_total_bytes <= gpu_bytes:
            out.append(Remedy(name, changes, est.peak_allocated_bytes, est.device_total_bytes, True))
    return out
