"""The out-of-memory advisor: what to do when a fine-tune does not fit.

``advise(estimate_fn, settings, gpu, model_config=...)`` re-runs the closed-form training estimate
(``estimate_fn(settings) -> TrainEstimate``, well under a millisecond) under changed settings and answers:

* ``remedies``: the checklist of ``hfmem.plan.remedies``, each applied alone and quantified for this model,
  with its price in speed (``hfmem.plan.speed``: a rough step-time factor relative to the settings as asked,
  and the factor's source where one exists);
* ``plan`` / ``alternatives`` / ``max_batch`` / ``max_seq``: the search of ``hfmem.plan.search`` (the
  cheapest combination that fits; the largest micro-batch and sequence length as asked).

The pieces: ``changes`` (the settings changes tried, the cached estimator), ``speed`` (step-time factors),
``flags`` (settings as ``hfmem train`` command lines and words), ``remedies`` (the catalogue), ``search``
(settings against the memory budget). This module is the public entry and re-exports their names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..scenarios.finetune import TrainSettings
from ..scenarios.inference import language_tower
from .changes import LORA_RANK, LORA_TARGETS, Estimator, Runner
from .flags import cli_flags, describe_changes, train_command
from .gpus import GPU
from .remedies import REMEDY_IDS, Remedy, remedies
from .search import (MAX_BATCH_SEARCH, MAX_PLAN_GPUS, MAX_SEQ_SEARCH, Plan, candidates, gpu_counts, max_batch,
                     max_seq, search_plan)
from .speed import SLOWDOWN, slowdown

# The names this module had before the split (hfmem.plan.advisor._describe is read by tests).
_describe = describe_changes
_Runner = Runner

__all__ = ["Advice", "Estimator", "LORA_RANK", "LORA_TARGETS", "MAX_BATCH_SEARCH", "MAX_PLAN_GPUS", "MAX_SEQ_SEARCH",
           "Plan", "REMEDY_IDS", "Remedy", "SLOWDOWN", "advise", "candidates", "cli_flags", "describe_changes",
           "gpu_counts", "max_batch", "max_seq", "remedies", "search_plan", "slowdown", "train_command"]


@dataclass
class Advice:
    gpu: str
    gpu_memory_bytes: int
    gpus: int
    device_total_bytes: int          # per GPU, as asked
    fits: bool
    headroom_bytes: int
    remedies: list[Remedy]
    plan: Plan | None
    plan_reason: str | None          # why there is no plan (None when there is one)
    alternatives: list[Plan]         # fewest GPUs keeping each training method the plan gives up
    max_batch: int
    max_seq: int
    search: dict                     # what the plan search covered and how many estimates it ran
    notes: list[str] = field(default_factory=list)
    judged: str = "training"         # what device_total_bytes and every remedy are estimates of ("rlhf": all models)
    helping: list[str] = field(default_factory=list)      # ids of the remedies that save memory here, checklist order
    not_helping: list[dict] = field(default_factory=list)  # {id, name, saves_bytes, why} of the others

    def ranked(self) -> list[Remedy]:
        """The remedies that save memory here (saves_bytes > 0), in the checklist's order."""
        return [r for r in self.remedies if r.helps]

    def to_dict(self) -> dict:
        d = asdict(self)
        return d


# -- the whole advice ------------------------------------------------------------------------------------

def advise(estimate_fn: Estimator, settings: TrainSettings, gpu: GPU, *, model_config: dict | None = None,
           model_name: str | None = None, plan_limit: int = MAX_PLAN_GPUS, seq_limit: int | None = None,
           command_flags: str | None = None, judged: str = "training") -> Advice:
    """Remedies, the cheapest plan that fits, and max micro-batch / seq as asked, on ``gpu`` (per GPU).
    ``estimate_fn`` may return any estimate with ``device_total_bytes`` and ``cpu_bytes`` (hfmem.api passes the
    RLHF estimate with --rlhf, so every remedy is judged on all the models). ``model_name`` and
    ``command_flags`` (e.g. "--rlhf ppo") only label the suggested ``hfmem train`` command lines;
    ``seq_limit``: the longest sequence the model can run (a learned position table), which caps max_seq."""
    run = Runner(estimate_fn)
    if model_name:
        model_config = {**(model_config or {}), "_name_or_path": model_name}
    if command_flags:
        model_config = {**(model_config or {}), "_command_flags": command_flags}
    settings = settings.validate()
    est = run(settings)  # the settings as asked must estimate: let its error through
    cap = int(gpu.usable_bytes)
    rem = remedies(run, settings, gpu, model_config=model_config or {})
    plan, reason, alts, info = search_plan(run, settings, gpu, limit=plan_limit, model_config=model_config)
    mb = max_batch(run, settings, gpu)
    ms = max_seq(run, settings, gpu, hi=seq_limit or MAX_SEQ_SEARCH)
    notes = []
    tower = language_tower(model_config or {})
    mpe = tower.max_positions if tower else None  # the declared context (rope scaling applied)
    if seq_limit and ms == seq_limit:
        notes.append(f"max_seq {ms:,} is the model's limit: its learned position-embedding table has "
                     f"{seq_limit:,} positions")
    elif isinstance(mpe, int) and ms > mpe:
        notes.append(f"max_seq {ms:,} is a memory limit: the model declares max_position_embeddings {mpe:,}")
    if gpu.bf16 is False and "bf16" in settings.precision:
        notes.append(f"{gpu.name} has no bfloat16: the remedies use fp16 / deepspeed-fp16")
    info["estimates"] = run.calls
    return Advice(gpu=gpu.name, gpu_memory_bytes=cap, gpus=settings.gpus, device_total_bytes=est.device_total_bytes,
                  fits=est.device_total_bytes <= cap, headroom_bytes=cap - est.device_total_bytes, remedies=rem,
                  plan=plan, plan_reason=reason, alternatives=alts, max_batch=mb, max_seq=ms, search=info,
                  notes=notes, judged=judged, helping=[r.id for r in rem if r.helps],
                  not_helping=[{"id": r.id, "name": r.name, "saves_bytes": r.saves_bytes, "why": r.why_not_helping}
                               for r in rem if r.helps is False])
