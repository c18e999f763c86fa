"""The public Python API: ``analyze`` a model (source → metadata → inventory) and build its calculator table.

The CLI is a thin layer over these functions; everything it prints is in the objects returned here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .errors import HfmemError, SettingsError, UnsupportedArchitectureError, UsageError
from .inventory.model import Inventory
from .report import ModelReport, Options  # noqa: F401  (public here: hfmem.api.ModelReport, .Options)
from .sources import FetchedMetadata, resolve
from .sources.ids import REPO_ID_RULE, check_repo_id  # noqa: F401  (public here)
from .sources.resolve import hub_cache_key  # noqa: F401  (public here)

if TYPE_CHECKING:
    from .plan.fit import FitResult
    from .plan.gpus import GPU
    from .scenarios.finetune import TrainEstimate, TrainSettings
    from .scenarios.inference import InferenceEstimate, InferenceSettings
    from .simulate import SimResult
    from .scenarios.pipeline import PipelineEstimate, PipelineSettings
    from .model.gguf_model import GGUFModel
    from .plan.llamacpp import LlamaCppFit
    from .scenarios.llamacpp import LlamaCppEstimate, LlamaCppSettings
    from .sources.gguf import GGUFRepo, GGUFVariant
    from .sources.listing import ListingQuery


def _build(meta: FetchedMetadata, opts: Options) -> Inventory:
    from .inventory.build import build_inventory

    if opts.progress:
        opts.progress(f"counting {meta.config.origin} (first analysis; later runs answer from hfmem's cache)")
    inv = build_inventory(meta.config, meta.headers, trust_remote_code=opts.trust_remote_code,
                          code_location=meta.code_location, revision=meta.revision if meta.source == "hub" else None,
                          token=opts.token, headers_only=opts.headers_only, meta_model=opts.meta_model)
    if inv.method == "remote-code":
        inv.notes.extend(n for n in remote_code_notes(meta.config.raw) if n not in inv.notes)
    return inv


def gpu_choice(gpu: "str | GPU | None", count: int = 1):
    """``(GPU, notes)`` for a ``gpu`` argument of the API: a ``GPU``; a catalog name or size; or ``"auto"``, this
    machine's ``count`` GPUs with the most free memory (``plan.gpus.parse_gpus``), judged on the smallest of them
    (the notes say which were chosen, and when they differ)."""
    if gpu is None or not isinstance(gpu, str):
        return gpu, []
    from .plan.gpus import parse_gpus

    choice = parse_gpus(gpu, int(count))
    return choice.gpu, list(choice.notes)


def remote_code_notes(config: dict) -> list[str]:
    """What ``--trust-remote-code`` runs besides the repository's own code: ``auto_map`` entries of the form
    ``other-org/other-repo--module.Class`` are another repository's code (transformers fetches it from that
    repository's default branch, not the pinned commit)."""
    auto_map = config.get("auto_map") if isinstance(config, dict) else None
    refs = auto_map.values() if isinstance(auto_map, dict) else []
    others: dict[str, list[str]] = {}
    for ref in refs:
        for one in ref if isinstance(ref, list) else [ref]:
            if isinstance(one, str) and "--" in one:
                repo, _, cls = one.partition("--")
                others.setdefault(repo, []).append(cls)
    return [f"auto_map points at another repository's code, {repo} ({', '.join(sorted(set(c)))}): "
            "--trust-remote-code runs it from that repository's default branch, not a pinned commit — trust it "
            "too, or drop the flag" for repo, c in sorted(others.items())]


def analyze(model: str, options: Options | None = None, **kwargs) -> ModelReport:
    """Analyse one model: a local folder or a Hub repo id. Keyword arguments are ``Options`` fields.

    Which source answers (result cache, folder, Hub, Hugging Face cache, shipped snapshot) is
    ``hfmem.sources.resolve``'s job; this builds the inventory when no cached answer exists."""
    opts = options or Options(**kwargs)
    found = resolve.resolve(model, opts)
    if found.report is not None:  # the result cache or the shipped snapshot answered
        return found.report
    if found.meta.composite is not None:  # a diffusers pipeline, sentence-transformers or timm repo
        inv, layout, config = _build_composite(found.meta, opts)
        return resolve.finish(found, inv, layout=layout, config=config)
    return resolve.finish(found, _build(found.meta, opts))


def _build_composite(meta: FetchedMetadata, opts: Options) -> tuple[Inventory, dict, dict | None]:
    """A composite repo's inventory (``hfmem.inventory.components``), its layout, and the config the report
    carries: the Transformer module's for sentence-transformers (serving and training read it as for any
    transformers model), None for a pipeline or a timm network (no transformers config to build from)."""
    from .inventory import components
    from .model import pipeline as P

    comp = meta.composite
    if opts.progress:
        opts.progress(f"counting {comp.class_name}'s components (first analysis; later runs answer from hfmem's cache)")
    layout = components.build_layout(comp, opts, opts.progress)
    if comp.kind == P.SENTENCE_TRANSFORMERS:
        main = layout.by_role(P.BACKBONE)[0]
        return components.with_dense(main.inventory, layout), layout.to_dict(), meta.config.raw
    if comp.kind == P.TIMM:
        return layout.components[0].inventory, layout.to_dict(), None
    return components.aggregate(layout), layout.to_dict(), None


def analyze_many(models: list[str], options: Options | None = None, *,
                 on_error: Callable[[str, HfmemError], None] | None = None, **kwargs) -> list[ModelReport]:
    """Analyse several models. Without ``on_error`` the first failure raises; with it, each failing model is
    handed to ``on_error`` and left out, so the others are still answered."""
    opts = options or Options(**kwargs)
    return _each(models, lambda m: analyze(m, opts), on_error, opts)


def _each(models: list[str], run: Callable[[str], object], on_error, opts: Options) -> list:
    """``run`` for each model, in order; a failure raises, or with ``on_error`` is handed to it and left out.
    The Hub models among them are fetched at once first (``resolve.together``)."""
    out = []
    with resolve.together(models, opts):
        for m in models:
            try:
                out.append(run(m))
            except HfmemError as exc:
                if on_error is None:
                    raise
                on_error(m, exc)
    return out


# ---------------------------------------------------------------- simulate


@dataclass
class SimulationReport:
    """``hfmem simulate``'s answer for one model: where it came from and what the simulation measured."""

    report: ModelReport
    result: "SimResult"
    notes: list[str] = field(default_factory=list)


def simulation_config(report: ModelReport) -> dict:
    """The config the simulation builds: the repo's own, or for a mapped custom-code family its
    transformers equivalent (same tensors)."""
    from .simulate import SimulationError

    inv = report.inventory
    if report.config is None and report.layout is not None:  # a pipeline or a timm network: not a transformers model
        raise SimulationError(
            f"{report.model}: a {report.kind} repo, not one transformers model: `hfmem simulate` runs transformers "
            "models only",
            hint="`hfmem infer` and `hfmem train` run each component's own code on fake tensors and show every phase")
    if report.config is None:
        raise SimulationError(f"{report.model}: no config.json at hand for the simulation",
                              hint="run with --no-cache to fetch it again")
    if inv.method in ("meta-model", "headers-exact"):  # headers-exact: transformers' own class, counted from headers
        return report.config
    if inv.method == "meta-model (mapped)":
        from .metadata.custom_maps import map_custom_config

        mapped = map_custom_config(report.config)
        return dict(mapped.config, model_type=mapped.model_type, architectures=[mapped.architecture])
    raise SimulationError(
        f"{report.model}: model_type '{inv.model_type}' has no transformers implementation to run "
        f"({inv.method}); hfmem simulates transformers' own model code only",
        hint="use `hfmem calc` for its weights, or a model transformers implements")


def simulate_model(model: str, mode: str = "train", options: Options | None = None,
                   **settings) -> SimulationReport:
    """Run ``hfmem simulate`` for one model: resolve it like ``analyze``, then simulate a training step
    (``mode="train"``: batch, seq, dtype, attn, grad_ckpt, optimizer, optimizer_impl, amp, iterations,
    gpu_emulation, lora) or a prefill + decode (``mode="infer"``: batch, context, new_tokens, dtype, attn,
    gpu_emulation)."""
    from . import simulate as sim

    opts = options or Options()
    report = analyze(model, opts)
    if report.config is None:  # an entry cached by an older hfmem: fetch again
        report = analyze(model, Options(**{**opts.__dict__, "use_cache": False}))
    config = simulation_config(report)
    notes = list(report.notes)
    chosen = settings.get("attn") is None
    if chosen:  # what transformers picks with no attn_implementation
        from .scenarios import attention

        attn, default, _ = attention.choose(config, None)
        settings = {**settings, "attn": attn}
        if default:
            notes.append(default)
    if opts.progress:
        opts.progress(f"simulating {model} ({mode}) on fake tensors")
    if mode not in ("train", "infer"):
        raise UsageError(f"unknown mode {mode!r}", hint="use --mode train or --mode infer")
    result = sim.simulate(mode, config, attn_chosen=chosen, **settings)
    if sim.EAGER_FALLBACK in result.assumptions:
        notes.append(sim.EAGER_FALLBACK)
    if report.inventory.method == "meta-model (mapped)":
        notes.append(f"custom '{report.inventory.model_type}' code not run: simulated as "
                     f"{report.inventory.architecture} (same tensors; the custom code's own buffers and "
                     "kernels are not modelled)")
    return SimulationReport(report, result, notes)


# ---------------------------------------------------------------- infer


@dataclass
class InferenceReport:
    """``hfmem infer``'s answer for one model: the source, the estimate, and with a GPU the fit/solve."""

    report: ModelReport
    estimate: "InferenceEstimate"
    checkpoint_format: str
    fit: "FitResult | None" = None
    notes: list[str] = field(default_factory=list)


def _with_config(model: str, opts: Options) -> ModelReport:
    report = analyze(model, opts)
    if report.layout is not None:  # a composite repo (pipeline, sentence-transformers, timm): no re-read helps
        return report
    if report.config is None or not report.inventory.tensors and report.inventory.method != "safetensors-headers":
        report = analyze(model, Options(**{**opts.__dict__, "use_cache": False}))  # an older cache entry
    return report


def _census(inv: Inventory) -> list[dict]:
    if inv.tensors:
        return inv.tensors
    # A header-only inventory of a packed checkpoint: no logical shapes; one opaque group.
    return [{"role": "other", "name": "(checkpoint tensors)", "shape": [inv.num_params], "count": 1,
             "params": inv.num_params}]


def infer(model: str, options: Options | None = None, *, settings: "InferenceSettings | None" = None,
          gpu: "str | GPU | None" = None, pipeline_settings: "PipelineSettings | None" = None,
          **settings_kwargs) -> "InferenceReport | PipelineInferenceReport":
    """Serving memory for one model (``hfmem infer``). ``settings``: an ``InferenceSettings`` (or its fields
    as keyword arguments: engine, context, batch, new_tokens, weights_format, kv_dtype, attn, tp, ...);
    ``gpu``: a catalog name or size (``"H100-80GB"``, ``"24GiB"``) for the fit and solve answers. A diffusers
    pipeline repo is answered by ``estimate_pipeline_serving`` with ``pipeline_settings`` (a
    ``PipelineSettings``; its defaults when None) and returns a ``PipelineInferenceReport``."""
    from .plan import fit as fitmod
    from .plan.gpus import GPU
    from .scenarios.inference import InferenceSettings
    from .model.pipeline import DIFFUSERS_PIPELINE, TIMM
    from .scenarios.weights import FORMAT_ORDER, checkpoint_format

    opts = options or Options()
    s = (settings or InferenceSettings(**settings_kwargs)).validate()  # SettingsError names the setting
    gpu_obj, gpu_notes = gpu_choice(gpu, s.tp)
    report = _with_config(model, opts)
    if report.kind == DIFFUSERS_PIPELINE:
        return infer_pipeline(report, pipeline_settings, gpu_obj)
    if report.kind == TIMM:
        raise UnsupportedArchitectureError(
            f"{model}: serving a timm network is not modelled yet (its training is: `hfmem train`)",
            hint="`hfmem MODEL` prints its exact weights table")
    inv = report.inventory
    ckpt = checkpoint_format(report.config or {}, inv.params_by_dtype)
    by_code = _by_code(report, "serves", s, ckpt)
    if by_code is not None:
        return _infer_by_code(model, report, by_code, s, ckpt, gpu_obj, opts)
    estimator = _closed_form_estimator(report, s, ckpt, opts)
    if gpu_obj is not None:
        s = InferenceSettings(**{**s.__dict__, "gpu_memory_bytes": gpu_obj.usable_bytes})

    def answer():
        estimate = estimator(s)
        result = None
        if gpu_obj is not None:
            from .scenarios.inference import max_context

            result = fitmod.solve(estimator, s, gpu_obj, report.config or {}, formats=list(FORMAT_ORDER),
                                  checkpoint_format=ckpt, model_max_context=max_context(report.config or {}))
        return estimate, result

    estimate, result = _serving_point(model, answer)
    notes = list(report.notes) + gpu_notes
    if gpu_obj is not None and isinstance(gpu_obj, GPU):
        if gpu_obj.bf16 is False and estimate.compute_dtype == "bfloat16":
            notes.append(f"{gpu_obj.name} has no bfloat16: serve in float16 (--dtype fp16) instead")
        if gpu_obj.fp8 is False and estimate.weights_format.startswith("fp8"):
            notes.append(f"{gpu_obj.name} has no fp8 compute: vLLM runs fp8 weights as weight-only "
                         "(Marlin), same bytes")
    return InferenceReport(report, estimate, ckpt, result, notes)


def _closed_form_estimator(report: ModelReport, s: "InferenceSettings", ckpt: str, opts: Options):
    """The serving estimator of a model with a closed form (``plan.fit.estimator_for`` over its census), with
    the vision tower's pass when ``s`` serves images: ``infer`` and ``serving_curve`` both evaluate this one."""
    from .plan import fit as fitmod

    inv = report.inventory
    stored = (inv.checkpoint or {}).get("bytes")
    estimator = fitmod.estimator_for(_census(inv), report.config or {}, checkpoint_format=ckpt,
                                     buffer_bytes=inv.buffer_bytes, checkpoint_stored_bytes=stored)
    return _with_images(estimator, report, s, opts) if s.images else estimator


def _serving_point(model: str, run: Callable[[], object]):
    """``run()`` (one serving estimate, or an estimate and its fit), with the errors of the estimators turned
    into hfmem's own: no activation model or cache layout is exit 6, a bad setting names the model."""
    from .scenarios.infer_activations import InferActivationError
    from .scenarios.kv_cache import KVLayoutError

    try:
        return run()
    except KVLayoutError:
        raise
    except InferActivationError as exc:
        raise UnsupportedArchitectureError(
            f"{model}: no activation model for it ({exc})",
            hint="`hfmem simulate MODEL --mode infer` runs the model code itself on fake tensors") from None
    except SettingsError as exc:  # a bad setting; any other ValueError is a bug and stays one (exit 70)
        raise SettingsError(f"{model}: {exc.message}", hint=exc.hint, setting=exc.setting) from None
    except NotImplementedError as exc:
        raise UnsupportedArchitectureError(f"{model}: {exc}",
                                           hint="hfmem cannot lay out this model's cache yet") from None


def _with_images(estimator, report: ModelReport, s: "InferenceSettings", opts: Options):
    """The decoder estimator of a vision-language model serving ``s.images`` images per sequence: their tokens
    (the processor's count) join the context, and the vision tower's forward over the images — simulated from
    its own code — is a phase of its own before the prefill (weights resident, the encoder's activations)."""
    from dataclasses import replace

    from .scenarios.by_simulation import vision_pass
    from .scenarios.images import plan_images, vision_phase_is_peak
    from .scenarios.inference import PhaseEstimate

    plan = plan_images(report.model, report.config or {}, s.image_size)

    def run(st: "InferenceSettings"):
        est = estimator(replace(st, context=st.context + st.images * plan.per_image))
        est.settings = replace(est.settings, context=st.context)
        est.assumptions.insert(0, plan.assumption(st.images, st.context, "join"))
        if plan.vision_config is None:
            est.notes.append(plan.not_modelled_note())
            return est
        act, line = vision_pass(plan.vision_config, batch=st.images * st.batch, dtype=est.compute_dtype,
                                progress=opts.progress)
        vision_peak = est.components["weights_bytes"] + est.components["buffers_bytes"] + act
        est.phases.insert(0, PhaseEstimate(name="vision", tokens=0, kv_cache_bytes=0, activations_bytes=act,
                                           peak_allocated_bytes=vision_peak))
        est.assumptions.insert(1, line)
        if vision_peak > est.peak_allocated_bytes:
            est.components.update(kv_cache_bytes=0, activations_bytes=act)
            vision_phase_is_peak(est, vision_peak, act, st.overheads.allocator_fragmentation)
        return est

    return run


def _train_images(model: str, report: ModelReport, s: "TrainSettings", opts: Options):
    """Fine-tuning a vision-language model on ``s.images`` images per sequence: their tokens (the processor's
    count) lengthen every sequence, and the frozen vision tower's forward over the micro-batch's images —
    simulated from its own code — is a phase of its own at the start of the step, with the model states
    resident (the LLaVA recipe: the vision tower frozen, the projector and the language model trained)."""
    from dataclasses import replace

    from .scenarios.by_simulation import training_dtype, vision_pass
    from .scenarios.images import plan_images, vision_phase_is_peak

    plan = plan_images(model, report.config or {}, s.image_size)

    def run(st: "TrainSettings", closed_form):
        est = closed_form(replace(st, seq=st.seq + st.images * plan.per_image, images=0))
        est.settings = replace(est.settings, seq=st.seq, images=st.images)
        est.assumptions.insert(0, plan.assumption(st.images, st.seq, "lengthen"))
        if plan.vision_config is None:
            est.notes.append(plan.not_modelled_note())
            return est
        act, line = vision_pass(plan.vision_config, batch=st.images * st.batch,
                                dtype=training_dtype(st.precision)[0], progress=opts.progress)
        c = est.components
        resident = c.get("weights_bytes", 0) + c.get("master_weights_bytes", 0) + c.get("optimizer_bytes", 0) + (
            c.get("gradients_bytes", 0) if st.grad_accum > 1 else 0)
        est.phases = {"vision": resident + act, **est.phases}
        est.assumptions.insert(1, line + "; the vision tower frozen (no saved activations)")
        if resident + act > est.peak_allocated_bytes:
            vision_phase_is_peak(est, resident + act, act, st.overheads.allocator_fragmentation)
        return est

    return run


def _by_code(report: ModelReport, purpose: str, settings=None, checkpoint_format: str = ""):
    """The model description when ``report``'s model is estimated from its own code for ``purpose``
    ("serves" / "trains": vision, audio, contrastive, encoder-decoder models, text encoders when served, and
    decoder LMs of families with no stored coefficients at settings the simulator runs); None for the models
    the closed forms cover."""
    from .model import describe
    from .scenarios.by_simulation import ByCode

    if report.config is None or report.inventory.method not in ("meta-model", "headers-exact", "meta-model (mapped)"):
        return None
    desc = describe(report.config)
    if purpose == "serves":
        return desc if ByCode.serves(desc, settings, checkpoint_format) else None
    return desc if ByCode.trains(desc, settings) or (settings is not None and ByCode.trains_decoder(desc, settings)) \
        else None


def _code_attention(config: dict, requested: str | None, error) -> tuple[str, str | None]:
    from .scenarios import attention

    attn, default, refusal = attention.choose(config, requested)
    if refusal:
        raise error(refusal, setting="attn")
    return attn, default


def _code_fit(gpu_obj, needed: int, notes: list[str], max_batch: int | None = None):
    from .plan.fit import FitResult

    cap = int(gpu_obj.usable_bytes)
    return FitResult(gpu=gpu_obj.name, gpu_memory_bytes=gpu_obj.memory_bytes, gpus=1, capacity_bytes=cap,
                     gpu_usable_bytes=gpu_obj.usable_bytes, gpu_capacity_basis=gpu_obj.capacity_basis,
                     needed_bytes=needed, fits=needed <= cap, headroom_bytes=cap - needed, max_context=None,
                     max_context_limited_by=None, max_batch=max_batch, min_gpus=None, min_gpus_note=None,
                     weight_format_that_fits=None, weight_formats=[], notes=[gpu_obj.capacity_note()] + notes)


def largest_batch_by_code(run: Callable[[int], object], batch: int, cap: int) -> int:
    """The largest batch whose device total fits ``cap``, for an estimate that runs the model's code per batch
    (``run(b)`` returns an estimate with ``phases`` and ``device_total_bytes``). Each phase's peak grows linearly
    with the batch (activations are per sample) but the phase that peaks can change (a small batch peaks in
    the optimizer step, a large one in the backward), so each phase is extrapolated on its own from ``batch``
    and ``2·batch``, the smallest bound is taken, then checked by running the code at the answer and walked
    down until it fits. 0 when even batch 1 does not fit."""
    def totals(b: int) -> tuple[dict[str, int], int]:
        e = run(b)
        overhead = e.device_total_bytes - e.peak_allocated_bytes
        peaks = e.phases if isinstance(e.phases, dict) else {}
        if not isinstance(e.phases, dict):
            for p in e.phases:
                peaks[p.name] = max(peaks.get(p.name, 0), p.peak_allocated_bytes)
        return {k: v + overhead for k, v in peaks.items()}, e.device_total_bytes

    if totals(1)[1] > cap:
        return 0
    low, _ = totals(batch)
    high, _ = totals(2 * batch)
    bound = None
    for name, a in low.items():
        per_sample = (high.get(name, a) - a) / batch
        if per_sample > 0:
            limit = batch + (cap - a) / per_sample
            bound = limit if bound is None else min(bound, limit)
    guess = max(1, int(bound)) if bound is not None else 2 * batch
    for _ in range(8):
        if totals(guess)[1] <= cap:
            return guess
        guess = max(1, int(guess * 0.98) if guess > 50 else guess - 1)
    return guess if totals(guess)[1] <= cap else 0


def _infer_by_code(model: str, report: ModelReport, desc, s: "InferenceSettings", ckpt: str, gpu_obj,
                   opts: Options) -> "InferenceReport":
    from dataclasses import replace

    from .scenarios.by_simulation import estimate_inference_by_code
    from .scenarios.inference import InferenceSettingsError

    if s.images:  # only a vision-language model takes images per sequence: the one-line refusal is plan_images'
        from .scenarios.images import plan_images

        plan_images(model, report.config or {}, s.image_size)
    config = simulation_config(report)
    attn, default = _code_attention(config, s.attn, InferenceSettingsError)

    def run(st: "InferenceSettings"):
        return estimate_inference_by_code(config, desc, st, checkpoint_format=ckpt, attn=attn,
                                          logical_params=report.inventory.num_params, progress=opts.progress,
                                          attn_chosen=s.attn is None)

    estimate = run(s)
    if default:
        estimate.assumptions.insert(0, default)
    fit = None
    if gpu_obj is not None:
        cap = int(gpu_obj.usable_bytes)
        max_b = largest_batch_by_code(lambda b: run(replace(s, batch=b)), s.batch, cap)
        fit = _code_fit(gpu_obj, estimate.device_total_bytes,
                        ["max batch: extrapolated from the simulations at batch "
                         f"{s.batch} and {2 * s.batch}, then simulated at the answer"], max_b)
    return InferenceReport(report, estimate, ckpt, fit, list(report.notes))


@dataclass
class PipelineInferenceReport:
    """``hfmem infer``'s answer for a diffusers pipeline: the estimate per phase, and with a GPU the fit and the
    remedies (memory modes, slicing, tiling, quantized denoisers) that would make it fit."""

    report: ModelReport
    estimate: "PipelineEstimate"
    gpu: "GPU | None" = None
    fits: bool | None = None
    remedies: list = field(default_factory=list)  # scenarios.pipeline.Remedy, cheapest slowdown first
    notes: list[str] = field(default_factory=list)


def infer_pipeline(report: ModelReport, settings: "PipelineSettings | None" = None,
                   gpu: "GPU | None" = None) -> PipelineInferenceReport:
    """Serving memory of a diffusers pipeline report (its ``layout``) under ``settings``; with ``gpu``, the fit
    (device total against the GPU's usable memory) and, when it does not fit, the remedies that would."""
    from .scenarios.pipeline import PipelineSettings, estimate_pipeline_serving, pipeline_remedies
    from .simulate.result import SimulationError

    layout = report.pipeline()
    s = settings or PipelineSettings()
    try:
        est = estimate_pipeline_serving(layout, s)
        fits = remedies = None
        if gpu is not None:
            fits = est.device_total_bytes <= gpu.usable_bytes
            remedies = [] if fits else pipeline_remedies(layout, s, gpu.usable_bytes)
    except SimulationError as exc:
        raise UnsupportedArchitectureError(f"{report.model}: {exc}") from None
    except SettingsError as exc:
        raise SettingsError(f"{report.model}: {exc.message}", hint=exc.hint, setting=exc.setting) from None
    return PipelineInferenceReport(report, est, gpu, fits, remedies or [], list(report.notes))


def infer_many(models: list[str], options: Options | None = None, *, settings: "InferenceSettings | None" = None,
               gpu=None, on_error: Callable[[str, HfmemError], None] | None = None,
               pipeline_settings: "PipelineSettings | None" = None) -> list[InferenceReport]:
    """``infer`` for several models; failures go to ``on_error`` (else the first one raises)."""
    return _each(models, lambda m: infer(m, options, settings=settings, gpu=gpu,
                                         pipeline_settings=pipeline_settings), on_error, options or Options())


# ---------------------------------------------------------------- train


@dataclass
class TrainingReport:
    """``hfmem train``'s answer for one model: the estimate, and with a GPU the fit, limits and advice."""

    report: ModelReport
    estimate: "TrainEstimate"
    gpu: "GPU | None" = None
    fits: bool | None = None
    max_batch: int | None = None
    max_seq: int | None = None
    advice: object | None = None      # plan.advisor.Advice with --advise
    rlhf: object | None = None        # scenarios.rlhf.RLHFEstimate with --rlhf
    notes: list[str] = field(default_factory=list)
    max_seq_limited_by: str | None = None  # "memory", or "model" (learned position-embedding table)


DEFAULT_TRAIN_SEQ = 2048  # TrainSettings' default sequence length


def _train_precision(s: "TrainSettings", rlhf: str | None) -> tuple[str, str | None]:
    """The precision when none is given, and the assumption that says why (None for the plain default)."""
    if s.zero is not None:
        return "deepspeed-bf16", (f"--precision not given: --zero {s.zero} trains in DeepSpeed's bf16 mixed "
                                  "precision (deepspeed-bf16: bf16 parameters and gradients, fp32 master weights "
                                  "and Adam states; what HF Trainer's --bf16 becomes under DeepSpeed)")
    if rlhf and s.fsdp:
        return "amp-bf16", ("--precision not given: --rlhf under FSDP trains as verl does, with FSDP "
                            "MixedPrecision (amp-bf16: fp32 sharded parameters, gradients and Adam states, bf16 "
                            "compute)")
    return "bf16", None


def position_table_rows(tensors: list[dict], config: dict) -> int | None:
    """The longest sequence a model with learned absolute position embeddings (BERT, GPT-2, CLIP's text
    tower, OPT) can run: its ``max_position_embeddings`` when the census holds a position-embedding table of
    that many rows (OPT's has 2 more, its offset); None for rotary / relative / ALiBi positions."""
    from .scenarios.inference import max_context

    mpe = max_context(config)
    if not mpe:
        return None
    for t in tensors:
        name = str(t.get("name", "")).rpartition(".")[2]
        if t.get("role") == "embedding" and ("position" in name or name == "wpe"):
            rows = int((t.get("shape") or [0])[0])
            if mpe <= rows <= mpe + 2:
                return int(mpe)
    return None


def _rlhf_flags(rlhf: str, options: dict) -> str:
    flags = [f"--rlhf {rlhf}"]
    if options.get("group_size"):
        flags.append(f"--group-size {options['group_size']}")
    if "rollout" in options and options["rollout"] != "vllm":
        flags.append(f"--rollout {options['rollout'] or 'none'}")
    return " ".join(flags)


def train(model: str, options: Options | None = None, *, settings: "TrainSettings | None" = None,
          gpu: "str | GPU | None" = None, advise: bool = False, rlhf: str | None = None,
          rlhf_options: dict | None = None, assumed: list[str] | None = None, composite: dict | None = None,
          **settings_kwargs) -> TrainingReport:
    """Fine-tuning memory for one model (``hfmem train``). ``settings``: a ``TrainSettings`` (or its fields as
    keyword arguments: method, precision, optimizer, batch, seq, grad_accum, grad_ckpt, attn, lora_rank,
    lora_targets, zero, fsdp, gpus, tp, pp, ...); ``gpu``: a catalog name or size for fits / max_batch /
    max_seq; ``advise``: the out-of-memory remedies (needs ``gpu``; with ``rlhf`` they are judged on the RLHF
    estimate); ``rlhf``: "ppo", "grpo" or "dpo". ``precision=None`` picks DeepSpeed bf16 with ``zero``, verl's
    FSDP MixedPrecision (amp-bf16) with ``rlhf`` under FSDP, else bf16; ``seq=None`` is 2048, or the
    position-embedding table of a model with absolute positions when that is shorter. ``assumed``: defaults
    the caller filled in, listed first among the assumptions."""
    from dataclasses import replace

    from .plan.fit import largest_fitting
    from .scenarios.finetune import TrainSettings, estimate_training
    from .scenarios.inference import max_context
    from .scenarios.train_activations import TrainActivationError

    opts = options or Options()
    filled = list(assumed or [])
    s = settings or TrainSettings(**settings_kwargs)
    if settings is None and "seq" not in settings_kwargs:
        s = replace(s, seq=None)  # not given: 2048, or a shorter learned position table
    if s.precision is None:
        prec, why = _train_precision(s, rlhf)
        s = replace(s, precision=prec)
        if why:
            filled.append(why)
    seq_given = s.seq is not None
    s = replace(s, seq=DEFAULT_TRAIN_SEQ if s.seq is None else s.seq).validate()  # SettingsError names it
    if s.zero is not None and not (s.precision.startswith("deepspeed") or s.precision == "fp32"):
        # DeepSpeed has no autocast or pure 16-bit mode: its bf16/fp16 keep an fp32 master copy (deepspeed-*)
        raise UsageError(f"--precision {s.precision} with --zero {s.zero}: DeepSpeed trains in fp32 or in its own "
                         "mixed precision", hint="use --precision deepspeed-bf16 or deepspeed-fp16 (what HF "
                         "Trainer's --bf16 / --fp16 become under DeepSpeed), or fp32")
    gpu_obj, gpu_notes = gpu_choice(gpu, s.gpus)
    filled.extend(gpu_notes)
    if advise and gpu_obj is None:
        raise UsageError("--advise needs --gpu (the remedies are judged against a GPU's memory)",
                         hint="e.g. --gpu A100-80GB or --gpu 24GiB")
    report = _with_config(model, opts)
    composite = dict(composite or {})
    if report.kind in ("diffusers-pipeline", "timm") or (report.kind == "sentence-transformers"
                                                         and composite.get("loss")):
        # a diffusers pipeline's denoiser, a timm model, or a contrastive sentence-transformers run: simulated with
        # the libraries' own code (hfmem.scenarios.pipeline_training); ``composite``: resolution, ema,
        # cache_text_embeddings, loss, hard_negatives
        from .scenarios.pipeline_training import train_composite

        if rlhf or advise:
            raise UsageError(f"{model}: --rlhf and --advise are not available for a {report.kind} repo")
        try:
            est = train_composite(report.pipeline(), report.config, replace(s, seq=s.seq if seq_given else None),
                                  **composite)
        except SettingsError as exc:
            raise SettingsError(f"{model}: {exc.message}", hint=exc.hint, setting=exc.setting) from None
        est.assumptions[:0] = filled
        out = TrainingReport(report, est, gpu_obj, notes=list(report.notes))
        if gpu_obj is not None:
            out.fits = est.device_total_bytes <= gpu_obj.usable_bytes
        return out
    inv = report.inventory
    if not inv.tensors:
        raise UnsupportedArchitectureError(
            f"{model}: counted from safetensors headers only ({inv.method}); training needs the model's "
            "layer structure", hint="use a model transformers implements, or --trust-remote-code")
    config = report.config or {}
    largest = inv.layers[0].num_params if inv.layers else None
    # sequence length against the model's positions (as hfmem infer does for its context)
    table = position_table_rows(inv.tensors, config)
    model_max = max_context(config)
    seq_notes: list[str] = []
    if table and s.seq > table:
        if seq_given:
            raise UsageError(f"{model}: --seq {s.seq:,} exceeds the model's max_position_embeddings {table:,}: its "
                             "learned position-embedding table has no rows beyond it, so a longer sequence cannot "
                             "run", hint=f"use --seq {table} or less")
        s = replace(s, seq=table)
        filled.append(f"--seq not given: {table:,}, the model's max_position_embeddings (learned absolute "
                      f"positions: a longer sequence cannot run; the usual default is {DEFAULT_TRAIN_SEQ:,})")
    elif model_max and s.seq > model_max:
        seq_notes.append(f"sequence {s.seq:,} exceeds the model's max_position_embeddings {model_max:,}: "
                         "quality degrades beyond it unless rope scaling is configured")

    by_code = None if rlhf else _by_code(report, "trains", s)
    if by_code is not None:
        from .scenarios.by_simulation import estimate_training_by_code
        from .scenarios.finetune import TrainSettingsError

        sim_config = simulation_config(report)
        code_attn, code_default = _code_attention(sim_config, s.attn, TrainSettingsError)
        if code_default:
            filled.append(code_default)
        if advise:
            raise UsageError(f"{model}: --advise is not available for models estimated from their own code yet",
                             hint="run without --advise; --gpu still says whether it fits and the largest batch")

    image_pass = _train_images(model, report, s, opts) if s.images else None

    def base(st: "TrainSettings"):
        if by_code is not None:
            return estimate_training_by_code(sim_config, by_code, st, attn=code_attn, progress=opts.progress,
                                             attn_chosen=s.attn is None)
        return estimate_training(inv.tensors, config, st, largest_layer_params=largest)

    def estimate(st: "TrainSettings"):
        return image_pass(st, base) if image_pass is not None else base(st)

    extra = dict(rlhf_options or {})
    if rlhf and gpu_obj is not None:
        extra.setdefault("gpu_memory_bytes", gpu_obj.usable_bytes)

    def estimate_rl(st: "TrainSettings"):
        from .scenarios.rlhf import estimate_rlhf

        return estimate_rlhf(inv.tensors, config, rlhf, st, largest_layer_params=largest, **extra)

    from .plan.search import MAX_BATCH_SEARCH, MAX_SEQ_SEARCH  # the advisor's search bounds, defined once

    try:
        est = estimate(s)
        est.assumptions[:0] = filled
        out = TrainingReport(report, est, gpu_obj, notes=list(report.notes) + seq_notes)
        if rlhf:
            out.rlhf = estimate_rl(s)
            out.rlhf.assumptions[:0] = filled
        if gpu_obj is not None:
            cap = gpu_obj.usable_bytes
            need = out.rlhf.device_total_bytes if out.rlhf is not None else est.device_total_bytes
            out.fits = need <= cap
            if by_code is not None:
                out.max_batch = largest_batch_by_code(lambda b: estimate(replace(s, batch=b)), s.batch, cap)
                out.notes.append(f"max batch: extrapolated from the simulations at batch {s.batch} and "
                                 f"{2 * s.batch}, then simulated at the answer; max sequence not searched")
            elif out.rlhf is None:
                ok_b = lambda b: estimate(replace(s, batch=b)).device_total_bytes <= cap  # noqa: E731
                ok_s = lambda q: estimate(replace(s, seq=q)).device_total_bytes <= cap  # noqa: E731
                out.max_batch = largest_fitting(ok_b, 1, MAX_BATCH_SEARCH) if ok_b(1) else 0
                out.max_seq = largest_fitting(ok_s, 1, table or MAX_SEQ_SEARCH) if ok_s(1) else 0
                out.max_seq_limited_by = "model" if table and out.max_seq == table else "memory"
            if advise:
                from .plan.advisor import advise as run_advisor

                # est.settings: s with the attention transformers picks for the model filled in
                out.advice = run_advisor(estimate if out.rlhf is None else estimate_rl, est.settings, gpu_obj,
                                         model_config=config, model_name=model, seq_limit=table,
                                         judged="rlhf" if rlhf else "training",
                                         command_flags=_rlhf_flags(rlhf, rlhf_options or {}) if rlhf else None)
    except TrainActivationError as exc:
        raise UnsupportedArchitectureError(
            f"{model}: no activation model for it ({exc})",
            hint="`hfmem simulate MODEL --mode train` runs the model code itself on fake tensors") from None
    except SettingsError as exc:  # a bad setting; any other ValueError is a bug and stays one (exit 70)
        raise SettingsError(f"{model}: {exc.message}", hint=exc.hint, setting=exc.setting) from None
    if gpu_obj is not None and gpu_obj.bf16 is False and "bf16" in s.precision:
        out.notes.append(f"{gpu_obj.name} has no bfloat16: use fp16 (amp-fp16 / deepspeed-fp16) instead")
    return out


def train_many(models: list[str], options: Options | None = None, *,
               on_error: Callable[[str, HfmemError], None] | None = None, **kwargs) -> list[TrainingReport]:
    """``train`` for several models; failures go to ``on_error`` (else the first one raises)."""
    return _each(models, lambda m: train(m, options, **kwargs), on_error, options or Options())


# ---------------------------------------------------------------- GGUF and llama.cpp


@dataclass
class GGUFVariantRow:
    """One quant variant of a GGUF repo at the settings asked: its llama.cpp estimate and, with a GPU, the fit."""

    variant: "GGUFVariant"
    estimate: "LlamaCppEstimate"
    bits_per_weight: float
    quality_rank: float
    listed: bool                      # its label is in llama.cpp's quant table (else placed by bits per weight)
    fits: bool | None = None


@dataclass
class LlamaCppReport:
    """``hfmem infer --engine llama.cpp``'s answer for one GGUF repo (or file): the variant served, its
    description from the GGUF metadata, the estimate per device, with a GPU the fit (largest context, most
    layers), and every variant of the repo as a row at the same settings with the best one that fits."""

    model: str
    repo: "GGUFRepo"
    variant: "GGUFVariant"
    description: "GGUFModel"
    estimate: "LlamaCppEstimate"
    rows: list[GGUFVariantRow] = field(default_factory=list)
    gpu: "GPU | None" = None
    fit: "LlamaCppFit | None" = None
    best: str | None = None          # label of the best-quality variant that fits at the settings (with a GPU)
    projector: "GGUFVariant | None" = None
    notes: list[str] = field(default_factory=list)


def gguf_description(variant) -> "GGUFModel":
    """The model description (``hfmem.model.gguf_model.GGUFModel``) of a GGUF variant, from its metadata."""
    from .model.gguf_model import describe_variant

    return describe_variant(variant)


def analyze_gguf(model: str, options: Options | None = None, *, select: str | None = None) -> "GGUFRepo":
    """Read a GGUF repo, folder or file: every variant's headers (only the headers; ``select``: one variant)."""
    from .sources.gguf import load_gguf

    return load_gguf(model, options or Options(), select=select)


def _default_variant(rows: list[GGUFVariantRow], best: str | None) -> GGUFVariantRow:
    if best is not None:
        return next(r for r in rows if r.variant.label == best)
    q4km = [r for r in rows if r.variant.label.upper() == "Q4_K_M"]
    if q4km:  # "By default, the Q4_K_M quantization scheme is used" (huggingface.co/docs/hub/ollama)
        return q4km[0]
    return min(rows, key=lambda r: (r.quality_rank, -r.variant.size_bytes))


def infer_llamacpp(model: str, options: Options | None = None, *, settings: "LlamaCppSettings | None" = None,
                   gpu: "str | GPU | None" = None, select: str | None = None,
                   ram: int | None = None, devices: "tuple[GPU, ...] | None" = None,
                   **settings_kwargs) -> LlamaCppReport:
    """llama.cpp's memory for a GGUF repo, folder or file (``hfmem infer --engine llama.cpp``).

    ``settings``: a ``LlamaCppSettings`` (or its fields as keyword arguments: context, parallel, n_ubatch,
    n_gpu_layers, type_k, type_v, flash_attn, ...); ``select``: the quant variant (``"Q4_K_M"``; also
    ``REPO:Q4_K_M``); ``gpu``: a catalog name or size for the fit, the largest context, the most layers and the
    best variant that fits (``"auto"``: this machine's); ``devices``: each GPU when they differ (mixed detected
    devices; ``plan.gpus.GPUChoice.devices``): each is judged on its own memory and, without ``tensor_split``, the
    layers are split by free memory as llama.cpp splits them; ``ram``: the CPU memory in bytes, checked too when
    given. Without ``select`` every
    variant's headers are read and each is a row; the one served is the best that fits the GPU, else Q4_K_M
    (Ollama's default), else the highest quality."""
    from dataclasses import replace

    from .plan import llamacpp as plan
    from .scenarios.llamacpp import LlamaCppSettings, estimate_llamacpp

    opts = options or Options()
    s = (settings or LlamaCppSettings(**settings_kwargs)).validate()
    gpu_notes: list[str] = []
    if isinstance(gpu, str):
        from .plan.gpus import parse_gpus

        choice = parse_gpus(gpu, s.gpus)
        gpu, devices, gpu_notes = choice.gpu, devices or choice.devices, list(choice.notes)
    gpu_obj = gpu
    capacity = plan.capacities(gpu_obj, devices, s.gpus)
    if devices and len({d.usable_bytes for d in devices}) > 1 and s.tensor_split is None:
        # llama.cpp's default split with no -ts: each device's share of the layers is its free memory
        # (llama-model.cpp load_tensors: "default split, by free memory", ggml_backend_dev_memory per device)
        s = replace(s, tensor_split=tuple(float(d.usable_bytes) for d in devices))
        gpu_notes.append("layers split by each GPU's free memory, as llama.cpp does without --tensor-split: "
                         + ",".join(f"{d.usable_bytes / 2**30:.2f}" for d in devices))
    repo = analyze_gguf(model, opts, select=select)
    projector = repo.projectors[0] if repo.projectors else None
    proj_bytes = projector.tensor_bytes if projector is not None else 0
    notes = list(repo.notes) + gpu_notes
    rows: list[GGUFVariantRow] = []
    descs = {}
    for v in repo.variants:
        desc = gguf_description(v)
        descs[v.label] = desc
        est = estimate_llamacpp(v.headers, desc, s, projector_bytes=proj_bytes)
        params = sum(t.n_elements for t in v.tensors)
        bpw = 8 * v.tensor_bytes / params if params else 0.0
        rows.append(GGUFVariantRow(v, est, bpw, 0.0, False))
    known = {r.variant.label: r.bits_per_weight for r in rows}
    for r in rows:
        r.quality_rank, r.listed = plan.quality_rank(r.variant.label, r.bits_per_weight, known)
    rows.sort(key=lambda r: (r.quality_rank, -r.variant.size_bytes))
    best = None
    if gpu_obj is not None:
        for r in rows:
            r.fits = plan.fits(r.estimate, capacity, ram)
        fitting = [r for r in rows if r.fits]  # at the settings asked: every layer offloaded unless -ngl says less
        best = fitting[0].variant.label if fitting else None
        if not fitting and len(rows) > 1:
            where = "with every layer offloaded" if s.n_gpu_layers is None else f"at -ngl {s.n_gpu_layers}"
            notes.append(f"no variant fits {gpu_obj.name} {where} at context {s.context}; --n-gpu-layers fewer "
                         "layers, or a smaller --context, may fit")
    chosen = _default_variant(rows, best)
    if len(rows) > 1 and select is None:
        why = ("the best-quality variant that fits" if best is not None else
               "Q4_K_M, what Ollama pulls by default" if chosen.variant.label.upper() == "Q4_K_M" else
               "the highest-quality variant")
        notes.append(f"serving {chosen.variant.label} ({why}); pick another with --quant or REPO:QUANT")
    for r in rows:
        if not r.listed:
            notes.append(f"{r.variant.label} is not in llama.cpp's quant table: ranked by its "
                         f"{r.bits_per_weight:.2f} bits per weight")
    desc = descs[chosen.variant.label]
    notes.extend(desc.notes)
    fit = None
    if gpu_obj is not None:
        fit = plan.solve(chosen.variant.headers, desc, s, chosen.estimate, gpu_obj.name, capacity,
                         ram_bytes=ram, projector_bytes=proj_bytes)
    return LlamaCppReport(model=model, repo=repo, variant=chosen.variant, description=desc,
                          estimate=chosen.estimate, rows=rows, gpu=gpu_obj, fit=fit, best=best,
                          projector=projector, notes=notes)


def infer_llamacpp_many(models: list[str], options: Options | None = None, *, on_error=None,
                        **kwargs) -> list[LlamaCppReport]:
    """``infer_llamacpp`` for several GGUF repos; failures go to ``on_error`` (else the first one raises)."""
    opts = options or Options()
    out = []
    for m in models:
        try:
            out.append(infer_llamacpp(m, opts, **kwargs))
        except HfmemError as exc:
            if on_error is None:
                raise
            on_error(m, exc)
    return out


# ---------------------------------------------------------------- search: which models fit


@dataclass
class SearchReport:
    """``hfmem search``'s answer: the listed models judged for one job on one GPU kind, the ones that fit ranked.

    ``scanned`` of the ``listed`` models were judged: ``stopped_by`` says why the scan ended ("end": every listed
    model; "limit": the listing was cut at ``limit``; "time": the time budget ran out)."""

    query: "ListingQuery"
    job: str                          # "serve" or "train"
    engine: str | None                # serving: "vllm", "transformers" or "llama.cpp" (GGUF repos only); None: train
    settings: object                  # the InferenceSettings / TrainSettings every row used
    llamacpp: object                  # the LlamaCppSettings of the GGUF rows (None for a training search)
    weights: str | None               # --weights: None (the checkpoint's), a format, or "any"
    gpu: "GPU"
    gpus: int
    rank_by: str                      # the ranking of ``rows``: downloads, likes, params or free
    rows: list                        # plan.hub_search.SearchRow: the models that fit, ranked
    not_fitting: list                 # the judged models that do not fit, in listing order
    skipped: list                     # plan.hub_search.Skipped: the models hfmem could not judge, with the reason
    listed: int
    scanned: int
    stopped_by: str
    source: str                       # "hub" or "offline"
    listing_cached: bool
    rows_cached: int                  # rows answered from hfmem's search cache (no request, no estimate)
    elapsed_s: float
    largest: object | None = None     # with largest=True: the fitting row with the most parameters
    assumptions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _search_row_keys(job: str, settings, llama, weights, gpu, gpus: int, gguf_only: bool, who: str):
    """The row cache's key of a listed model: its commit, and every setting the row depends on, the GPU, hfmem's
    version and whose token asked (``who``: a gated repo skipped without access is judged again with a token),
    built once per search; None for a model without a commit."""
    import json as _json
    from dataclasses import asdict

    from . import __version__
    from .sources import endpoint_cache_id

    fixed = _json.dumps([__version__, endpoint_cache_id(), job, asdict(settings),
                         asdict(llama) if llama is not None else None, weights, gpu.name, gpu.usable_bytes, gpus,
                         gguf_only, who], sort_keys=True, default=str)

    def key(m) -> str | None:
        return _json.dumps([m.repo_id, m.sha, fixed]) if m.sha else None
    return key


def _context_short(fit, s) -> str | None:
    """Why a serving row cannot run at the context asked although memory allows: the model's own limit."""
    if fit.max_context_limited_by == "model" and fit.max_context is not None and fit.max_context < s.context:
        return (f"the model's own context is {fit.max_context:,} tokens (max_position_embeddings), shorter than "
                f"--context {s.context:,}: vLLM refuses a longer max-model-len, and transformers degrades past it")
    return None


def _search_one(m, job: str, s, llama, weights, gpu, opts: Options, gguf_only: bool = False):
    """The row of one listed model, from the report ``hfmem infer`` / ``train`` gives at the same settings."""
    from dataclasses import replace

    from .errors import GGUFRepoError
    from .plan import hub_search as hs
    from .plan.emit import vllm_serve
    from .plan.emit_llamacpp import llama_server_command

    common = dict(downloads=m.downloads, likes=m.likes, pipeline_tag=m.pipeline_tag, license=m.license,
                  gated=m.gated)

    def gguf_row():
        if job == "train":
            raise UnsupportedArchitectureError(f"{m.repo_id}: holds GGUF files only, which llama.cpp serves and "
                                               "nothing trains", hint="search --serve for GGUF repos")
        r = infer_llamacpp(m.repo_id, opts, settings=llama, gpu=gpu)
        label = r.best or r.variant.label
        row = next((x for x in r.rows if x.variant.label == label), None)
        est = row.estimate if row is not None else r.estimate
        needed = est.gpu_peak_bytes
        return hs.SearchRow(model=m.repo_id, revision=r.repo.revision, kind="gguf", fits=bool(r.fit and r.fit.fits),
                            needed_bytes=needed, capacity_bytes=gpu.usable_bytes,
                            margin_bytes=gpu.usable_bytes - needed,
                            parameters=sum(t.n_elements for t in r.variant.tensors), weights_format=label,
                            format_changed=False, max_context=r.fit.max_context if r.fit else None,
                            command=hs.llamacpp_command(m.repo_id, llama, gpu, label),
                            launch=llama_server_command(r)[0] if r.variant.label == label else None, **common)

    if gguf_only or (m.gguf and not m.params):
        return gguf_row()
    try:
        if job == "train":
            r = train(m.repo_id, opts, settings=s, gpu=gpu)
            need = r.rlhf.device_total_bytes if r.rlhf is not None else r.estimate.device_total_bytes
            return hs.SearchRow(model=m.repo_id, revision=r.report.revision, kind=r.report.kind,
                                fits=bool(r.fits), needed_bytes=need, capacity_bytes=gpu.usable_bytes,
                                margin_bytes=gpu.usable_bytes - need, parameters=r.report.inventory.num_params,
                                weights_format=None, format_changed=False, method=s.method,
                                max_batch=r.max_batch, max_seq=r.max_seq,
                                command=hs.train_row_command({"_name_or_path": m.repo_id}, s, gpu), **common)
        r = infer(m.repo_id, opts, settings=s, gpu=gpu)
    except GGUFRepoError:
        return gguf_row()
    if isinstance(r, PipelineInferenceReport):
        need = r.estimate.device_total_bytes
        return hs.SearchRow(model=m.repo_id, revision=r.report.revision, kind=r.report.kind, fits=bool(r.fits),
                            needed_bytes=need, capacity_bytes=gpu.usable_bytes, margin_bytes=gpu.usable_bytes - need,
                            parameters=r.report.inventory.num_params, weights_format=None, format_changed=False,
                            command=f"hfmem infer {m.repo_id} --gpu {hs.gpu_flag(gpu)}", **common)
    fmt, changed = s.weights_format or r.checkpoint_format, False
    if weights == hs.ANY_FORMAT and r.fit is not None and not r.fit.fits:
        pick = hs.first_fitting_format(r.fit.weight_formats, hs.allowed_formats(s.engine, r.checkpoint_format))
        if pick is not None and pick != fmt:
            r = infer(m.repo_id, opts, settings=replace(s, weights_format=pick), gpu=gpu)
            fmt, changed = pick, True
    fit = r.fit
    short = _context_short(fit, s)
    return hs.SearchRow(model=m.repo_id, revision=r.report.revision, kind=r.report.kind,
                        fits=bool(fit.fits), needed_bytes=fit.needed_bytes,
                        capacity_bytes=fit.capacity_bytes, margin_bytes=fit.headroom_bytes,
                        parameters=r.report.inventory.num_params, weights_format=fmt, format_changed=changed,
                        max_context=fit.max_context, max_batch=fit.max_batch,
                        command=hs.infer_command(m.repo_id, s, gpu, weights=fmt if (changed or s.weights_format)
                                                 else None),
                        launch=vllm_serve(m.repo_id, r.estimate, fit)[0] if s.engine == "vllm" else None,
                        notes=[short] if short else [], **common)


# A skip for want of the Hub is not a fact of the commit: never cached (a retry may judge it). One for want of access
# (gated, private) is cached under the token that asked (the row key's ``who``).
_TRANSIENT_EXIT_CODES = (8,)


def search(query: "ListingQuery | None" = None, *, job: str = "serve", settings=None,
           llamacpp: "LlamaCppSettings | None" = None, weights: str | None = None, engine: str | None = None,
           gpu: "str | GPU" = "auto",
           gpus: int = 1, sort: str = "downloads", limit: int = 100, time_budget_s: float | None = None,
           largest: bool = False, options: Options | None = None, refresh: bool = False,
           progress: Callable[[int, int, str], None] | None = None) -> SearchReport:
    """Which models fit (``hfmem search``): list the Hub's models matching ``query`` (a
    ``sources.listing.ListingQuery``: task, library, author, name fragment, license, gated, parameter range), at
    most ``limit`` of them in the Hub's order, and judge each for ``job`` — "serve" (``settings``: an
    ``InferenceSettings``, vLLM by default; GGUF repos with ``llamacpp``, a ``LlamaCppSettings``) or "train"
    (``settings``: a ``TrainSettings``) — on ``gpus`` GPUs of kind ``gpu`` (a catalog name, a size, ``"auto"``
    for this machine's, or a ``GPU``). ``weights``: the serving format, or "any" for the least compressed format
    of the repo that fits; ``engine="llama.cpp"``: GGUF repos only, served by llama.cpp. The scan follows the
    listing's order (``query.order``); the rows that fit are ranked by ``sort`` (downloads, likes, params, free),
    each judged at the commit the listing gave. Metadata is
    fetched concurrently (``sources.resolve.MODELS_AT_ONCE`` at once) and every row is cached per commit, so a
    second search is answered from hfmem's cache. ``time_budget_s`` stops the scan (the report says how far it
    got); ``progress(done, total, model)`` is told after each model."""
    import time
    from dataclasses import replace

    from .plan import hub_search as hs
    from .plan import gpus as gpu_catalog
    from .plan.gpus import GPU
    from .scenarios.finetune import TrainSettings
    from .scenarios.inference import InferenceSettings
    from .scenarios.llamacpp import LlamaCppSettings
    from .sources import listing as L
    from .sources.resolve import MODELS_AT_ONCE

    started = time.monotonic()
    opts = options or Options()
    q = query or L.ListingQuery()
    if job not in hs.JOBS:
        raise UsageError(f"unknown job {job!r}", hint="serve or train")
    if sort not in hs.SORTS:
        raise UsageError(f"--sort {sort} is not a ranking", hint=f"one of {', '.join(hs.SORTS)}")
    if weights is not None and weights != hs.ANY_FORMAT:
        from .scenarios.weights import FORMAT_ORDER

        if weights.lower() not in FORMAT_ORDER:
            raise UsageError(f"--weights {weights} is not a weight format",
                             hint=f"one of {', '.join(FORMAT_ORDER)}, or any")
    if limit < 1:
        raise UsageError(f"--limit {limit}: scan at least 1 model")
    if time_budget_s is not None and not time_budget_s > 0:
        raise UsageError(f"--time-budget {time_budget_s}: give a positive number of seconds")
    if int(gpus) < 1:
        raise UsageError(f"--gpus {gpus}: at least 1")
    choice = gpu_catalog.parse_gpus(gpu, int(gpus)) if isinstance(gpu, str) else None
    gpu_obj: GPU = choice.gpu if choice is not None else gpu
    notes = list(choice.notes) if choice is not None else []
    assumptions: list[str] = []
    gguf_only = engine == "llama.cpp"
    if gguf_only:
        if job != "serve":
            raise UsageError("--engine llama.cpp serves GGUF files; nothing trains them", hint="drop --engine or --train")
        q = replace(q, library=q.library or "gguf")
    if job == "serve":
        s = settings if settings is not None else InferenceSettings(engine=engine if engine and not gguf_only
                                                                    else "vllm")
        s = replace(s, tp=int(gpus)).validate()
        if weights and weights != hs.ANY_FORMAT:
            s = replace(s, weights_format=weights.lower())
        fmt = {None: "each checkpoint's own format", hs.ANY_FORMAT: "the least compressed format of each repo that "
               "fits (--weights any)"}.get(weights, weights)
        assumptions.append(
            f"every row judged as `hfmem infer` judges it: {('llama.cpp' if gguf_only else s.engine)}, context "
            f"{s.context:,}, batch {s.batch}, {fmt}" + ("; vLLM is the search's default engine (hfmem infer's is "
                                                         "transformers)" if s.engine == "vllm" and not gguf_only
                                                         else "") + "; GGUF repos as llama.cpp serves them")
    else:
        s = (settings if settings is not None else TrainSettings()).validate()
        s = replace(s, gpus=int(gpus)) if int(gpus) > 1 else s
        assumptions.append(f"every row judged as `hfmem train` judges it: {s.method}, {s.precision}, {s.optimizer}, "
                           f"sequence {s.seq:,}, batch {s.batch}" + (f", {s.gpus} GPUs" if s.gpus > 1 else ""))
    llama = (replace(llamacpp or LlamaCppSettings(context=s.context, parallel=s.batch), gpus=int(gpus)).validate()
             if job == "serve" else None)
    if choice is not None and len({d.usable_bytes for d in choice.devices}) > 1:
        notes.append(f"mixed devices: every row is judged on the smallest, {gpu_obj.name} (llama.cpp rows too; "
                     "`hfmem infer --engine llama.cpp --gpu auto` splits the layers by free memory)")
    if q.order is None:  # the scan meets the models in the order they are ranked by, where the Hub has it
        q = replace(q, order=sort if sort in ("downloads", "likes") else "downloads")
    listing = L.list_models(q, limit=limit, token=opts.token, offline=opts.offline, refresh=refresh)
    notes.extend(listing.notes)
    if listing.source == "offline" and sort in ("downloads", "likes"):
        notes.append(f"offline there are no {sort} counts: ranked by parameters instead")
        sort = "params"
    if listing.source == "offline":
        opts = Options(**{**opts.__dict__, "offline": True})
    rows, skipped, cached = [], [], 0
    deadline = None if time_budget_s is None else started + float(time_budget_s)
    stopped_by = "end" if listing.complete else "limit"
    models = listing.models
    who = L.token_fingerprint(opts.token) if listing.source == "hub" else "offline"
    key_of = _search_row_keys(job, s, llama, weights, gpu_obj, int(gpus), gguf_only, who)
    chunks = [models[i:i + MODELS_AT_ONCE] for i in range(0, len(models), MODELS_AT_ONCE)]

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def look_up(chunk):
        """The chunk's cached rows, and its other models fetched at once (in the background: ``ahead``)."""
        keys = {m.repo_id: key_of(m) for m in chunk}
        hits = {m.repo_id: hit for m in chunk if keys[m.repo_id] and (hit := L.cached_row(keys[m.repo_id]))}
        # judged at the commit the listing gave (the result cache answers a commit without asking the Hub)
        pinned = {m.repo_id: m.sha for m in chunk if listing.source == "hub" and m.sha}
        fetch = [m.repo_id for m in chunk if m.repo_id not in hits]
        return keys, hits, pinned, ahead.submit(prefetch, fetch, opts, pinned)

    done = 0
    from concurrent.futures import ThreadPoolExecutor

    from .sources.resolve import prefetch, release

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hfmem-search") as ahead:
        upcoming = look_up(chunks[0]) if chunks else None
        for i, chunk in enumerate(chunks):
            keys, hits, pinned, fetched = upcoming
            held = fetched.result()
            # the next models' metadata is fetched while these are judged
            upcoming = look_up(chunks[i + 1]) if i + 1 < len(chunks) and not out_of_time() else None
            try:
                for m in chunk:
                    if out_of_time():
                        stopped_by = "time"
                        break
                    if m.repo_id in hits:
                        kind, value = hits[m.repo_id]
                        cached += 1
                    else:
                        at = Options(**{**opts.__dict__, "revision": pinned[m.repo_id]}) if m.repo_id in pinned else opts
                        try:
                            kind, value = "row", _search_one(m, job, s, llama, weights, gpu_obj, at, gguf_only)
                        except HfmemError as exc:
                            line = str(exc) if str(exc).startswith(m.repo_id) else f"{m.repo_id}: {exc}"
                            kind, value = "skipped", hs.Skipped(m.repo_id, line, exc.exit_code)
                        if keys[m.repo_id] and (value.revision == m.sha if kind == "row"
                                                else value.exit_code not in _TRANSIENT_EXIT_CODES):
                            L.store_row(keys[m.repo_id], kind, value.to_dict())
                    (rows if kind == "row" else skipped).append(value)
                    done += 1
                    if progress is not None:
                        progress(done, len(models), m.repo_id)
            finally:
                release(held)
            if stopped_by == "time" or upcoming is None:
                if upcoming is not None:
                    release(upcoming[3].result())
                if i + 1 < len(chunks) and stopped_by != "time":
                    stopped_by = "time"
                break
    ranked = hs.rank(rows, "params" if largest else sort)
    out = SearchReport(query=q, job=job, engine=("llama.cpp" if gguf_only else s.engine) if job == "serve" else None,
                       settings=s, llamacpp=llama, weights=weights, gpu=gpu_obj, gpus=int(gpus),
                       rank_by="params" if largest else sort, rows=ranked, not_fitting=[r for r in rows if not r.fits],
                       skipped=skipped, listed=len(models), scanned=done, stopped_by=stopped_by,
                       source=listing.source, listing_cached=listing.cached, rows_cached=cached,
                       elapsed_s=time.monotonic() - started, largest=ranked[0] if largest and ranked else None,
                       assumptions=assumptions, notes=notes)
    out.assumptions.append(gpu_obj.capacity_note())
    return out


# ---------------------------------------------------------------- plots

if TYPE_CHECKING:
    from .plot.curves import PhaseChart, ServingCurve


def _plot_refusal(model: str, why: str) -> UnsupportedArchitectureError:
    return UnsupportedArchitectureError(
        f"{model}: {why}; plots need the closed-form estimate, evaluated at every point of the curve",
        hint=f"`hfmem infer {model}` answers it at one setting at a time")


def serving_curve(model: str, options: Options | None = None, *, settings: "InferenceSettings | None" = None,
                  gpu: "str | GPU | None" = None, compare_gpus: "list[str | GPU]" = (), axis: str = "context",
                  values: list[int] | None = None, **settings_kwargs) -> "ServingCurve":
    """Serving memory per GPU against the context (``axis="context"``) or the batch (``axis="batch"``), the
    other settings as ``infer`` takes them. The estimator is built once, exactly as ``infer`` builds it, and
    evaluated at each of ``values`` and at the chosen setting (default values: ``plot.curves.default_values``), so
    each point's components are ``infer(model, settings=replace(s, context=x)).estimate.components``. ``gpu`` and ``compare_gpus``: a
    capacity line each, with the largest axis value that fits from ``plan.fit.solve`` (the fit boundary); no
    GPU, no lines. Values the settings refuse (a SettingsError) are left out, with a note.

    Models answered by running their own code, diffusers pipelines, timm networks and GGUF repos have no
    closed form to evaluate along a curve: UnsupportedArchitectureError."""
    from dataclasses import replace

    from .errors import GGUFRepoError
    from .model.pipeline import DIFFUSERS_PIPELINE, TIMM
    from .plan import fit as fitmod
    from .plot.curves import AXES, CapacityLine, ServingCurve, default_values
    from .scenarios.inference import InferenceSettings, max_context
    from .scenarios.weights import checkpoint_format

    if axis not in AXES:
        raise UsageError(f"plot axis must be one of {', '.join(AXES)}, not {axis!r}",
                         hint="context: memory against the context length; batch: against the batch")
    opts = options or Options()
    s = (settings or InferenceSettings(**settings_kwargs)).validate()  # SettingsError names the setting
    gpu_obj, notes = gpu_choice(gpu, s.tp)
    extra, more = _more_gpus(gpu_obj, compare_gpus, s.tp)
    gpus = ([gpu_obj] if gpu_obj is not None else []) + extra
    notes.extend(more)
    try:
        report = _with_config(model, opts)
    except GGUFRepoError:
        raise _plot_refusal(model, "a GGUF repo is served by llama.cpp (answered from its GGUF headers)") from None
    if report.kind == DIFFUSERS_PIPELINE:
        raise _plot_refusal(model, "a diffusers pipeline is estimated phase by phase from its components' code")
    if report.kind == TIMM:
        raise _plot_refusal(model, "serving a timm network is not modelled yet")
    inv = report.inventory
    config = report.config or {}
    ckpt = checkpoint_format(config, inv.params_by_dtype)
    if _by_code(report, "serves", s, ckpt) is not None:
        raise _plot_refusal(model, "its serving memory is estimated by running its own code at each setting")
    estimator = _closed_form_estimator(report, s, ckpt, opts)  # infer's own, so every point is infer's answer
    if gpu_obj is not None:
        s = replace(s, gpu_memory_bytes=gpu_obj.usable_bytes)
    model_max = max_context(config)
    chosen_est = _serving_point(model, lambda: estimator(s))
    lines = []
    for g in gpus:
        # the solver's own limits (formats are not tried: the boundary is at the settings given)
        fit = _serving_point(model, lambda: fitmod.solve(estimator, s, g, config, model_max_context=model_max))
        if axis == "context":
            limit, by = fit.max_context, fit.max_context_limited_by
        else:
            limit = fit.max_batch or None
            by = "memory" if limit else None
        lines.append(CapacityLine(gpu=fit.gpu, gpus=fit.gpus, capacity_bytes=int(fit.capacity_bytes),
                                  fit_limit=limit, fit_limit_by=by))
    chosen = int(getattr(s, axis))
    if values is None:
        xs = default_values(axis, chosen, model_max if axis == "context" else None, [c.fit_limit for c in lines])
    else:
        xs = sorted({int(v) for v in values} | {chosen})
    keys = list(chosen_est.components)
    points: list[tuple[int, "InferenceEstimate"]] = []
    for x in xs:
        if x == chosen:
            points.append((x, chosen_est))
            continue
        try:
            sx = replace(s, **{axis: x}).validate()
            points.append((x, _serving_point(model, lambda: estimator(sx))))
        except SettingsError as exc:
            notes.append(f"{axis} {x:,} left out: {exc.message}")
    for _, est in points:
        keys.extend(k for k in est.components if k not in keys)
    if axis == "context" and model_max and xs[-1] > model_max:
        notes.append(f"contexts beyond {model_max:,} (the model's max_position_embeddings) are past what the model "
                     "was trained for: memory only")
    return ServingCurve(
        model=model, axis=axis, values=[x for x, _ in points], chosen=chosen, quantity="device_total_bytes",
        components={k: [int(e.components.get(k, 0)) for _, e in points] for k in keys},
        totals_bytes=[int(e.device_total_bytes) for _, e in points],
        peak_allocated_bytes=[int(e.peak_allocated_bytes) for _, e in points], capacities=lines,
        settings=s.to_dict(), engine=s.engine, weights_format=chosen_est.weights_format, notes=notes)


def serving_curves(models: list[str], options: Options | None = None, *,
                   on_error: Callable[[str, HfmemError], None] | None = None, **kwargs) -> list["ServingCurve"]:
    """``serving_curve`` for several models at the same settings; failures go to ``on_error`` (else the first
    one raises), the others are still answered."""
    return _each(models, lambda m: serving_curve(m, options, **kwargs), on_error, options or Options())


def _more_gpus(first: "GPU | None", others: "list[str | GPU]", count: int) -> tuple[list["GPU"], list[str]]:
    """The GPUs named in ``others`` (catalog names, sizes, "auto": ``gpu_choice``) other than ``first`` and each
    other — a plot's extra capacity lines — with the notes ``gpu_choice`` gave for them."""
    chosen = [first] if first is not None else []
    notes: list[str] = []
    for g in others:
        other, more = gpu_choice(g, count)
        notes.extend(more)
        if other is not None and all((o.name, o.usable_bytes) != (other.name, other.usable_bytes) for o in chosen):
            chosen.append(other)
    return chosen[1:] if first is not None else chosen, notes


def training_chart_of(report: "TrainingReport", options: Options | None = None, *,
                      compare_gpus: "list[str | GPU]" = (), settings: "TrainSettings | None" = None,
                      **settings_kwargs) -> "PhaseChart":
    """The chart of a ``train`` answer already made (``plot.curves.phase_chart``: its phases as they are), with a
    capacity line per GPU of ``compare_gpus`` and the largest micro-batch that fits there (``train`` on that GPU
    at the same ``settings``)."""
    from .plot.curves import phase_chart

    count = int(getattr(report.estimate.settings, "gpus", 1) or 1)
    extra, _ = _more_gpus(report.gpu, compare_gpus, count)
    limits = [train(report.report.model, options, settings=settings, gpu=g, **settings_kwargs).max_batch
              for g in extra]
    return phase_chart(report, extra, extra_max_batch=limits)


def training_chart(model: str, options: Options | None = None, *, gpu: "str | GPU | None" = None,
                   compare_gpus: "list[str | GPU]" = (), settings: "TrainSettings | None" = None,
                   **settings_kwargs) -> "PhaseChart":
    """Training memory by phase (``train``'s answer drawn as it is). ``gpu`` and each of ``compare_gpus``: a
    capacity line with the largest micro-batch that fits there (``training_chart_of``)."""
    rep = train(model, options, settings=settings, gpu=gpu, **settings_kwargs)
    return training_chart_of(rep, options, compare_gpus=compare_gpus, settings=settings, **settings_kwargs)
