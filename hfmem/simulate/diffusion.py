"""Run a diffusers pipeline's models -- the denoiser (UNet / DiT), the VAE decoder, the text encoders -- on fake
tensors and record the allocator-level peak of each call, as ``engine.py`` does for a transformers model: the real
model code, ``FakeTensorMode`` + ``MemoryTracker`` (512-byte CUDA block rounding) + ``emulation.gpu_patches`` (the
SDPA kernel CUDA picks), under ``torch.no_grad()``.

The inputs of each call are the ones the pipeline's own ``__call__`` builds (diffusers 0.42,
``pipelines/<family>/pipeline_<family>.py``); a denoiser class whose inputs are not written down here is refused
with one line naming it, never guessed at.

Besides the peak, each run records the module structure that the offload modes move (``Structure``): the
parameters that accelerate's sequential offload onloads at once, diffusers' block-level groups and leaf modules.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .result import BUFFERS, PARAMETERS, SimulationError

# Denoisers whose call this module knows, and where their inputs come from.
UNET = "UNet2DConditionModel"            # StableDiffusionPipeline / StableDiffusionXLPipeline __call__
FLUX = "FluxTransformer2DModel"          # FluxPipeline __call__ (_pack_latents, _prepare_latent_image_ids)
SD3 = "SD3Transformer2DModel"            # StableDiffusion3Pipeline __call__
DENOISERS = (UNET, FLUX, SD3)
VAES = ("AutoencoderKL",)
SCHEMA = 1


@dataclass
class Structure:
    """Parameter counts by the module groups the offload modes move (numbers of elements, buffers in bytes)."""

    num_params: int
    buffer_bytes: int
    # accelerate cpu_offload (enable_sequential_cpu_offload): an AlignDevicesHook on every module with direct
    # parameters moves them on for that module's forward; a module's own parameters stay on while its children
    # run, so the most on at once is the largest sum along one root-to-leaf chain of direct parameters.
    sequential_max_params: int
    # diffusers apply_group_offloading(offload_type="block_level"): each ModuleList/Sequential child's blocks
    # (in order), and the rest of the top level (the "unmatched group", onloaded for the whole forward).
    block_lists: list[list[int]] = field(default_factory=list)
    unmatched_params: int = 0
    # offload_type="leaf_level": every leaf module with parameters, in module order, and the parameters of
    # non-leaf modules (onloaded with the top-level module).
    leaf_params: list[int] = field(default_factory=list)
    non_leaf_params: int = 0
    largest_linear: list[int] = field(default_factory=list)  # [out, in] of the largest nn.Linear weight


@dataclass
class CallPeak:
    """One simulated call: its allocator peak and what was live before it (its weights and its inputs)."""

    call: str                 # "denoiser", "vae_decode", "text_encoder"
    class_name: str
    inputs: dict              # name -> shape (or value) of what was fed
    dtype: str
    weights_bytes: int        # parameters + buffers as built, 512-B blocks
    inputs_bytes: int
    peak_bytes: int           # allocator peak during the call, weights included
    options: dict = field(default_factory=dict)
    structure: Structure | None = None
    assumptions: list[str] = field(default_factory=list)

    @property
    def activations_bytes(self) -> int:
        """The peak above the weights: inputs, activations and every transient of the call."""
        return self.peak_bytes - self.weights_bytes

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CallPeak":
        d = dict(d)
        if d.get("structure") is not None:
            d["structure"] = Structure(**d["structure"])
        return cls(**d)


# -- memo: per (config, call, shapes, dtype, options) ----------------------------------------------------------
_MEMO: dict[str, CallPeak] = {}


def _memo_key(config: dict, call: str, settings: dict) -> str:
    from . import store

    return store.key(config, f"diffusers-{call}", settings)


def _memo_get(key: str, use_store: bool) -> CallPeak | None:
    if key in _MEMO:
        return _MEMO[key]
    if not use_store:
        return None
    from . import store

    try:
        hit = CallPeak.from_dict(json.loads((store.store_dir() / f"diffusers-{key}.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    _MEMO[key] = hit
    return hit


def _memo_put(key: str, peak: CallPeak, use_store: bool) -> None:
    _MEMO[key] = peak
    if not use_store:
        return
    from ..sources.resultcache import write_atomically
    from . import store

    try:
        write_atomically(store.store_dir() / f"diffusers-{key}.json", json.dumps(peak.to_dict()))
    except OSError:
        pass


# -- public entry points ------------------------------------------------------------------------------------------
def simulate_denoiser(class_name: str, config: dict, *, batch: int, height: int, width: int, dtype: str,
                      vae_scale_factor: int, text_len: int, cfg: bool, pooled_dim: int | None = None,
                      attention_slice: str | int | None = None, gpu_emulation: bool = True,
                      use_store: bool = True) -> CallPeak:
    """One denoiser forward at one step, as the pipeline calls it: ``batch`` images (twice that with CFG where
    the pipeline batches the unconditional pass), latents of ``height // vae_scale_factor``, ``text_len`` text
    tokens. ``attention_slice``: ``pipe.enable_attention_slicing(slice_size)`` ("auto", "max" or an int)."""
    if class_name not in DENOISERS:
        raise SimulationError(f"{class_name}: hfmem does not know the inputs of this denoiser (it knows "
                              f"{', '.join(DENOISERS)}); not simulated")
    settings = dict(batch=batch, height=height, width=width, dtype=dtype, f=vae_scale_factor, text_len=text_len,
                    cfg=cfg, pooled_dim=pooled_dim, attention_slice=attention_slice, gpu=gpu_emulation)
    key = _memo_key(config, "denoiser", settings)
    hit = _memo_get(key, use_store)
    if hit is not None:
        return hit

    def inputs(torch, model):
        return _denoiser_inputs(torch, class_name, model.config, batch * (2 if cfg and class_name != FLUX else 1),
                                height, width, vae_scale_factor, text_len, pooled_dim, _dtype(torch, dtype))

    def setup(model):
        if attention_slice is not None:
            if not hasattr(model, "set_attention_slice"):
                raise SimulationError(f"{class_name}: diffusers has no attention slicing for this model "
                                      "(no set_attention_slice)")
            model.set_attention_slice(attention_slice)

    peak = _run("denoiser", class_name, config, dtype, inputs, setup, gpu_emulation,
                options={"attention_slice": attention_slice} if attention_slice is not None else {})
    if class_name == FLUX:
        peak.assumptions.append("FLUX guidance distillation: one transformer call per step, no CFG batch")
    elif cfg:
        peak.assumptions.append("classifier-free guidance: the latents are doubled (torch.cat([latents] * 2)) "
                                "and the denoiser runs once on 2 x batch")
    _memo_put(key, peak, use_store)
    return peak


def simulate_vae_decode(config: dict, *, batch: int, height: int, width: int, dtype: str, vae_scale_factor: int,
                        tiling: bool = False, slicing: bool = False, gpu_emulation: bool = True,
                        use_store: bool = True, class_name: str = "AutoencoderKL") -> CallPeak:
    """``vae.decode(latents / scaling_factor)`` of ``batch`` latents to ``height x width`` pixels, optionally
    with ``vae.enable_tiling()`` / ``vae.enable_slicing()`` (diffusers' own tiled/sliced decode)."""
    if class_name not in VAES:
        raise SimulationError(f"{class_name}: hfmem does not simulate this VAE's decode (it knows "
                              f"{', '.join(VAES)})")
    settings = dict(batch=batch, height=height, width=width, dtype=dtype, f=vae_scale_factor, tiling=tiling,
                    slicing=slicing, gpu=gpu_emulation)
    key = _memo_key(config, "vae_decode", settings)
    hit = _memo_get(key, use_store)
    if hit is not None:
        return hit

    def inputs(torch, model):
        c = model.config
        shape = (batch, c.latent_channels, height // vae_scale_factor, width // vae_scale_factor)
        return {"z": torch.empty(shape, dtype=_dtype(torch, dtype))}

    def setup(model):
        if tiling:
            model.enable_tiling()
        if slicing:
            model.enable_slicing()

    def call(model, z):
        # The pipelines divide by scaling_factor (FLUX/SD3 also add shift_factor) before decoding: one
        # latent-sized temporary, then decode(...).sample.
        c = model.config
        z = z / c.scaling_factor
        if getattr(c, "shift_factor", None):
            z = z + c.shift_factor
        return model.decode(z, return_dict=False)[0]

    peak = _run("vae_decode", class_name, config, dtype, inputs, setup, gpu_emulation, fn=call,
                options={"tiling": tiling, "slicing": slicing})
    if tiling:
        peak.assumptions.append(f"VAE tiling: tiles of {config.get('sample_size')} px (tile_sample_min_size = "
                                "config sample_size), 25% overlap (AutoencoderKL.tile_overlap_factor)")
    _memo_put(key, peak, use_store)
    return peak


def simulate_text_encoder(config: dict, *, batch: int, seq: int, dtype: str, gpu_emulation: bool = True,
                          hidden_states: bool = False, use_store: bool = True) -> CallPeak:
    """A transformers text encoder's forward over [batch, seq] token ids (CLIP: padded to 77; T5: the
    pipeline's max_sequence_length), as ``encode_prompt`` calls it; ``hidden_states``: output_hidden_states=True
    (SDXL reads the penultimate layer)."""
    settings = dict(batch=batch, seq=seq, dtype=dtype, gpu=gpu_emulation, hidden_states=hidden_states)
    key = _memo_key(config, "text_encoder", settings)
    hit = _memo_get(key, use_store)
    if hit is not None:
        return hit
    from . import build

    arch = build.architecture_name(config)

    def inputs(torch, model):
        return {"input_ids": torch.zeros((batch, seq), dtype=torch.long)}

    def call(model, input_ids):
        out = model(input_ids=input_ids, output_hidden_states=hidden_states)
        return out

    peak = _run("text_encoder", arch, config, dtype, inputs, None, gpu_emulation, fn=call,
                transformers_model=True)
    peak.assumptions.append("no attention mask (the CLIP/T5 tokenizers pad to max_length; the pipelines pass "
                            "no mask to CLIP, FLUX/SD3 none to T5)")
    _memo_put(key, peak, use_store)
    return peak


# -- inputs ------------------------------------------------------------------------------------------------------
def _dtype(torch, name: str):
    from .build import resolve_dtype

    return resolve_dtype(name)


def _denoiser_inputs(torch, class_name, c, b, height, width, f, text_len, pooled_dim, dt) -> dict:
    h, w = height // f, width // f
    if class_name == UNET:
        # StableDiffusion(XL)Pipeline: latent_model_input [2B, C, H/8, W/8], t (a 0-d scheduler timestep),
        # prompt_embeds [2B, 77, cross_attention_dim].
        cross = c.cross_attention_dim
        if isinstance(cross, (list, tuple)):
            raise SimulationError(f"{UNET}: a per-block cross_attention_dim is not supported")
        if c.class_embed_type is not None or c.encoder_hid_dim_type is not None:
            raise SimulationError(f"{UNET} with class_embed_type/encoder_hid_dim_type: hfmem does not know "
                                  "this pipeline's inputs")
        out = {"sample": torch.empty((b, c.in_channels, h, w), dtype=dt),
               "timestep": torch.tensor(999),
               "encoder_hidden_states": torch.empty((b, text_len, cross), dtype=dt)}
        if c.addition_embed_type == "text_time":
            # StableDiffusionXLPipeline: added_cond_kwargs text_embeds = the pooled text_encoder_2 output
            # [2B, projection_dim], time_ids [2B, n] with n·addition_time_embed_dim + pooled =
            # projection_class_embeddings_input_dim (6 ids: original size, crop, target size).
            total = c.projection_class_embeddings_input_dim
            pooled = pooled_dim if pooled_dim else total - 6 * c.addition_time_embed_dim
            n_ids = (total - pooled) // c.addition_time_embed_dim
            out["added_cond_kwargs"] = {"text_embeds": torch.empty((b, pooled), dtype=dt),
                                        "time_ids": torch.empty((b, n_ids), dtype=dt)}
        elif c.addition_embed_type is not None:
            raise SimulationError(f"{UNET} with addition_embed_type={c.addition_embed_type!r}: hfmem does not "
                                  "know this pipeline's inputs")
        return out
    if class_name == FLUX:
        # FluxPipeline.prepare_latents: height = 2 * (height // (vae_scale_factor * 2)); _pack_latents turns
        # [B, 16, h, w] into [B, (h/2)(w/2), 64]; img_ids [(h/2)(w/2), 3], txt_ids [T, 3]; timestep t/1000 [B];
        # guidance [B] when guidance_embeds (FLUX.1-dev), pooled CLIP projections [B, 768].
        lh, lw = 2 * (height // (f * 2)), 2 * (width // (f * 2))
        seq = (lh // 2) * (lw // 2)
        out = {"hidden_states": torch.empty((b, seq, c.in_channels), dtype=dt),
               "timestep": torch.empty((b,), dtype=dt),
               "encoder_hidden_states": torch.empty((b, text_len, c.joint_attention_dim), dtype=dt),
               "pooled_projections": torch.empty((b, c.pooled_projection_dim), dtype=dt),
               "img_ids": torch.empty((seq, 3), dtype=dt),
               "txt_ids": torch.empty((text_len, 3), dtype=dt),
               "return_dict": False}
        if c.guidance_embeds:
            out["guidance"] = torch.empty((b,), dtype=torch.float32)
        return out
    # SD3: latent_model_input [2B, 16, H/8, W/8], prompt_embeds [2B, 77 + max_sequence_length, 4096] (CLIP
    # embeddings padded to the T5 width and concatenated with T5's), pooled_prompt_embeds [2B, 2048], timestep [2B].
    return {"hidden_states": torch.empty((b, c.in_channels, h, w), dtype=dt),
            "encoder_hidden_states": torch.empty((b, text_len, c.joint_attention_dim), dtype=dt),
            "pooled_projections": torch.empty((b, c.pooled_projection_dim), dtype=dt),
            "timestep": torch.empty((b,), dtype=dt),
            "return_dict": False}


# -- running -------------------------------------------------------------------------------------------------------
def _build_diffusers(class_name: str, config: dict, dtype):
    import diffusers

    cls = getattr(diffusers, class_name, None)
    if cls is None:
        raise SimulationError(f"{class_name}: not a diffusers {diffusers.__version__} class")
    cfg = {k: v for k, v in config.items() if not k.startswith("_")}
    from .build import _ScalarStandIn

    # Built in ``dtype`` directly (``torch_dtype`` in from_pretrained does the same): Module.to() cannot swap the
    # fake parameters the tracker holds weak references to.
    import torch

    saved = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with _ScalarStandIn():
            return cls.from_config(cfg)
    finally:
        torch.set_default_dtype(saved)


def _run(call: str, class_name: str, config: dict, dtype: str, make_inputs, setup, gpu_emulation: bool, *,
         fn=None, options: dict | None = None, transformers_model: bool = False) -> CallPeak:
    import torch

    from . import build
    from .emulation import CUDA_MIN_BLOCK
    from .engine import _fake_run, _track_start
    from .tracker import MemoryTracker

    dt = build.resolve_dtype(dtype)
    tracker = MemoryTracker(CUDA_MIN_BLOCK if gpu_emulation else 1)
    with _fake_run(class_name, tracker, gpu_emulation, "sdpa"), torch.no_grad():
        if transformers_model:
            model = build.build_model(config, dtype=dt, attn="sdpa")
        else:
            model = _build_diffusers(class_name, config, dt)
        model.eval()
        if setup is not None:
            setup(model)
        structure = _structure(torch, model)
        feed = make_inputs(torch, model)
        tensors = [t for t in _flat(feed) if isinstance(t, torch.Tensor)]
        _track_start(tracker, model, tensors)
        weights = tracker.by_category[PARAMETERS] + tracker.by_category[BUFFERS]
        start = tracker.live
        shapes = {k: (list(v.shape) if isinstance(v, torch.Tensor) else
                      {kk: list(vv.shape) for kk, vv in v.items()} if isinstance(v, dict) else v)
                  for k, v in feed.items()}
        tracker.start_phase(call)
        with tracker:
            out = fn(model, **feed) if fn is not None else model(**feed)
            del out
        peak = tracker.phase_peak
    return CallPeak(call=call, class_name=class_name,
                    inputs=shapes, dtype=dtype, weights_bytes=weights, inputs_bytes=start - weights,
                    peak_bytes=peak, options=options or {}, structure=structure,
                    assumptions=["real diffusers/transformers model code on fake tensors, torch.no_grad(): shapes "
                                 "and dtypes exact, values never computed"]
                    + (["512-byte allocator rounding; SDPA kernel chosen as on CUDA (flash for fp16/bf16 without "
                        "a mask, memory-efficient otherwise)"] if gpu_emulation else
                       ["CPU allocator semantics (no GPU emulation)"]))


def _flat(feed: dict):
    for v in feed.values():
        if isinstance(v, dict):
            yield from v.values()
        else:
            yield v


def _structure(torch, model) -> Structure:
    params = lambda m, recurse=True: sum(p.numel() for p in m.parameters(recurse=recurse))  # noqa: E731
    named = dict(model.named_modules())
    # sequential offload: the direct parameters along each root-to-leaf chain
    chain: dict[str, int] = {}
    for name, mod in named.items():
        parent = name.rsplit(".", 1)[0] if "." in name else ("" if name else None)
        own = params(mod, recurse=False)
        chain[name] = own + (chain.get(parent, 0) if parent is not None else 0)
    lists, unmatched = [], params(model, recurse=False)
    for _, child in model.named_children():
        if isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)):
            lists.append([params(block) for block in child])
        else:
            unmatched += params(child)
    leaves, non_leaf = [], 0
    largest = [0, 0]
    for mod in named.values():
        if isinstance(mod, torch.nn.Linear) and mod.weight.numel() > largest[0] * largest[1]:
            largest = [mod.out_features, mod.in_features]
        if next(mod.children(), None) is None:
            n = params(mod)
            if n:
                leaves.append(n)
        else:
            non_leaf += params(mod, recurse=False)
    return Structure(num_params=params(model), buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
                     sequential_max_params=max(chain.values(), default=0), block_lists=lists,
                     unmatched_params=unmatched, leaf_params=leaves, non_leaf_params=non_leaf,
                     largest_linear=largest)
