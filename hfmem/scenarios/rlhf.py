"""RLHF memory per GPU: PPO, GRPO and DPO with every model colocated on the same GPUs,
as verl's hybrid engine places them. Pure functions over (census, config, settings): no I/O, no torch.

Models and what each keeps on a GPU (``ModelMemory``; per GPU, sharded as placed):

* **actor** / **policy** (trained with ``settings``): weights, gradients (only inside its own training phase:
  verl's ``update_policy`` ends with ``actor_optimizer.zero_grad()``, set_to_none), optimizer states, and
  FSDP's gathered units / activations inside its phases.
* **critic** (PPO only; trained with the same ``settings``): verl builds it with
  ``AutoModelForTokenClassification(num_labels=1)``, so it is the actor's architecture *without* the LM head
  (an untied ``lm_head`` is dropped; a tied one costs nothing) plus a value head ``score`` of hidden + 1
  parameters (``value_model_census``). ``critic=(tensors, config)`` uses another model, transformed the same way.
* **reference** (PPO/GRPO: the KL term; DPO: the reference log-probs): a frozen copy of the actor — weights
  only, in 16-bit (``frozen_bytes_per_param``), sharded like the actor's weights under FSDP full_shard /
  hybrid_shard or ZeRO-3 (verl wraps the reference in FSDP too), else a full copy per GPU. With LoRA there
  is no separate copy: the reference is the actor's frozen base with the adapters disabled (verl
  ``ref_in_actor``, TRL with a PEFT model).
* **reward** model (optional): ``reward=None`` is a rule-based reward (verl's default for GRPO/PPO recipes:
  no GPU memory); ``reward=(tensors, config)`` a frozen model with a value head, placed like the reference.
* **rollout** engine (PPO/GRPO): ``"vllm"`` — a colocated vLLM holding its own bf16 copy of the actor's
  weights split by its tensor-parallel degree (``rollout_tp``, default ``settings.gpus``), a paged KV cache
  for ``rollout_batch × group_size`` sequences of ``rollout_tokens`` (prompt + response) tokens per engine,
  and its profile-run activations; or, with ``rollout_gpu_memory_utilization``, the fraction of the GPU vLLM
  takes whatever the load (vLLM >= 0.7 sizes its pool per instance). verl frees it outside generation
  (``free_cache_engine``: sleep level 1, weights to CPU, KV cache discarded). ``"hf"`` — the FSDP actor
  generates itself (transformers ``generate``): verl then disables FSDP auto-wrapping, so the whole actor is
  one unit, gathered in full. ``None``: no generation phase (rollouts produced elsewhere).

Phases (``phases``: per-GPU peak allocated of each) = what every resident model keeps + that phase's dynamic
part: ``generation``, ``actor_log_prob`` (verl recomputes the old log-probs with the actor),
``reference_forward``, ``reward_forward``, ``critic_forward`` (values), ``actor_training``,
``critic_training`` (DPO: ``reference_forward``, ``policy_training``). The overall peak is the largest
phase; the CUDA context and NCCL are added once (one process per GPU hosts every role).

Precision. ``settings.precision == "amp-bf16"`` under FSDP is modelled as FSDP ``MixedPrecision``, which is
what verl does (``fsdp_workers.py``: the actor and critic are created in fp32 — "we have to create model in
fp32. Otherwise, the optimizer is in bf16" — and wrapped with ``MixedPrecision(param_dtype=bf16,
reduce_dtype=fp32, buffer_dtype=fp32)``): fp32 sharded parameters that double as the master copy (4 B),
fp32 sharded gradients (4 B), fp32 AdamW moments (8 B), units all-gathered in bf16 for compute, bf16
activations, no autocast weight copies. Every other setting goes through ``finetune.estimate_training``
unchanged.

Sources: verl ``verl/workers/fsdp_workers.py`` (dtypes, MixedPrecision, forced ``CPUOffload`` of the
reference and reward model, the critic's TokenClassification head, ``auto_wrap_policy = None`` for the HF
rollout), ``verl/workers/actor/dp_actor.py`` (zero_grad after the update, log-probs from full logits),
``verl/trainer/config/ppo_trainer.yaml`` (rollout.gpu_memory_utilization 0.5, enforce_eager True,
free_cache_engine True, max_num_batched_tokens 8192, max_num_seqs 1024, rollout.n 1).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, replace

from ..errors import SettingsError
from . import kv_cache as kvc
from . import sharding, training
from .finetune import TrainSettings, estimate_training, resolve_attn
from .inference import kv_share_per_gpu, language_tower, vocab_size
from .overheads import reserved_bytes

ALGOS = ("ppo", "grpo", "dpo")
ROLLOUTS = ("vllm", "hf")
DEFAULT_GROUP_SIZE = {"ppo": 1, "grpo": 8, "dpo": 1}  # verl rollout.n: 1 for PPO, > 1 (GRPO recipes: 5-16) for GRPO
# verl ppo_trainer.yaml, actor_rollout_ref.rollout
VERL_MAX_NUM_BATCHED_TOKENS = 8192
VERL_MAX_NUM_SEQS = 1024
VERL_GPU_MEMORY_UTILIZATION = 0.5
VALUE_HEAD_NAMES = ("score", "v_head", "value_head", "summary", "score.weight", "v_head.weight")
SHARDED_ROLES = ("linear", "experts", "embedding", "lm_head")  # vLLM column/row/vocab-parallel layers


class RLHFSettingsError(SettingsError):
    """An RLHF option out of range or a combination that does not exist; the message names it (exit 2)."""


@dataclass
class ModelMemory:
    """One model's memory per GPU. ``weights_bytes``/``gradients_bytes``/``optimizer_bytes``/``other_bytes``
    are its per-GPU figures while on the GPU (gradients only during its own training); ``resident`` maps each
    phase to what it keeps on the GPU then, outside that phase's dynamic part; ``cpu_bytes``: per GPU rank,
    what it keeps in host memory (offloaded shards, a sleeping vLLM's weights)."""

    role: str
    trained: bool
    params: int
    weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    other_bytes: int
    placement: str
    precision: str
    resident: dict[str, int] = field(default_factory=dict)
    cpu_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PhaseMemory:
    name: str
    runs: str                       # the model computing in this phase
    resident_bytes: dict[str, int]  # role -> bytes kept on the GPU during the phase
    dynamic_bytes: dict[str, int]   # the phase's own parts
    allocated_bytes: int
    reserved_bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RLHFEstimate:
    algo: str
    settings: TrainSettings
    rollout: str | None
    group_size: int
    models: list[ModelMemory]
    phases: dict[str, int]          # per GPU peak allocated of each phase
    phase_details: list[PhaseMemory]
    peak_phase: str
    peak_allocated_bytes: int
    peak_reserved_bytes: int
    device_total_bytes: int
    cpu_bytes: int                  # host memory per node in steady state (offloaded states, sleeping vLLM)
    gpu_memory_bytes: int | None
    fits: bool | None               # device_total <= gpu_memory_bytes, when the GPU is known
    rollout_info: dict | None
    training: dict                  # per trained role: the training estimate's phases, activations, scheme
    assumptions: list[str]
    notes: list[str]

    def model(self, role: str) -> ModelMemory:
        for m in self.models:
            if m.role == role:
                return m
        raise KeyError(role)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["settings"] = self.settings.to_dict()
        return d


# -- censuses ------------------------------------------------------------------------------------------------

def _hidden(config: dict) -> int:
    """The language tower's width (``hfmem.model.describe``): what a value head reads."""
    tower = language_tower(config)
    if tower is None or not tower.hidden:
        raise RLHFSettingsError("config lacks hidden_size: cannot size a value head")
    return tower.hidden


def census_params(tensors) -> int:
    return training.total_numel(tensors)


def value_model_census(tensors: list[dict], config: dict) -> list[dict]:
    """The census of ``AutoModelForTokenClassification(num_labels=1)`` built from a causal LM's checkpoint, as
    verl builds its critic and reward model: the LM head dropped (an untied one; a tied one holds no
    parameters of its own), a ``score`` Linear(hidden, 1) with bias added (hidden + 1 parameters). A census
    that already has a value head (a reward-model checkpoint) only loses its LM head."""
    out = [dict(t) for t in tensors if t.get("role") != "lm_head"]
    if not any(str(t.get("name", "")) in VALUE_HEAD_NAMES for t in out):
        h = _hidden(config)
        out.append({"role": "other", "name": "score.weight", "shape": [1, h], "count": 1, "params": h})
        out.append({"role": "other", "name": "score.bias", "shape": [1], "count": 1, "params": 1})
    return out


def value_model_config(config: dict) -> dict:
    """The config the activation forms see for a value model: a vocabulary of 1 (its output is b × s × 1,
    there are no vocabulary logits) and no tied head. A config dict is rewritten (not read): the forms
    describe it again with ``hfmem.model.describe``."""
    cfg = copy.deepcopy(config)
    text = cfg.get("text_config")
    text = text if isinstance(text, dict) and text else cfg
    text["vocab_size"] = 1
    text["tie_word_embeddings"] = False
    if text is not cfg and "vocab_size" in cfg:
        cfg["vocab_size"] = 1
    return cfg


def _rank_census(census: list[dict], s: TrainSettings) -> list[dict]:
    out = list(census)
    if s.tp > 1:
        out = sharding.tensor_parallel_census(out, s.tp, vocab_parallel=True)
    if s.pp > 1:
        out = sharding.pipeline_stage_census(out, s.pp, 0)
    return out


def _largest_unit(census: list[dict]) -> int:
    """A decoder layer's parameters (entries repeated once per layer), or the largest single module when that
    is bigger (an embedding): what one FSDP unit / ZeRO-3 live set holds, when the caller has no inventory."""
    counts = [int(t.get("count", 1)) for t in census if int(t.get("count", 1)) > 1]
    layers = max(counts, default=1)
    per_layer = sum(int(t["params"]) // layers for t in census if int(t.get("count", 1)) == layers)
    return max(per_layer, training.largest_module_params(census))


def _weight_shard(s: TrainSettings) -> int:
    """How many ways a frozen model's weights are split at rest (FSDP full/hybrid shard, ZeRO-3), else 1."""
    if s.fsdp in ("full_shard",):
        return s.data_parallel
    if s.fsdp == "hybrid_shard":
        return min(s.data_parallel, s.gpus_per_node)
    if s.zero == 3:
        return s.data_parallel
    return 1


# -- trained models -----------------------------------------------------------------------------------------

def fsdp_mixed_precision(s: TrainSettings) -> bool:
    """True when ``s`` is modelled as FSDP MixedPrecision (verl's actor and critic): FSDP with amp-bf16."""
    return bool(s.fsdp) and s.precision == "amp-bf16" and s.method == "full" and s.tp == 1 and s.pp == 1


@dataclass
class _Trained:
    params: int
    weights: int
    master: int
    gradients: int
    optimizer: int
    other_persistent: int
    gradients_persist: bool
    gathered: int              # gathered parameters during one of its forwards (FSDP / ZeRO-3), 0 otherwise
    phases: dict[str, int]
    peak_phase: str
    peak_allocated: int
    peak_reserved: int
    cpu_node_bytes: int
    precision: str
    scheme: str
    activations: dict
    assumptions: list[str]

    @property
    def persistent(self) -> int:
        return self.weights + self.master + self.optimizer + self.other_persistent + (
            self.gradients if self.gradients_persist else 0)


def _train_fsdp_mixed(census: list[dict], config: dict, s: TrainSettings, largest: int) -> _Trained:
    from . import train_activations as acts

    states = training.model_states(census, (), "amp-bf16", s.optimizer, adamw_impl=s.adamw_impl)
    sharded = sharding.fsdp_states(states, s.data_parallel, largest_unit_params=largest, strategy=s.fsdp,
                                   gpus_per_node=s.gpus_per_node, param_dtype_bytes=2)
    comps = sharded.gpu_components()
    by_phase: dict[str, int] = {}
    for c in sharded.gpu:
        by_phase[c.phase] = by_phase.get(c.phase, 0) + c.bytes
    grads, optim = comps.get("gradients_bytes", 0), comps.get("optimizer_bytes", 0)
    weights_now = by_phase.get("persistent", 0) - grads - optim
    act = acts.activation_bytes(config, batch=s.batch, seq=s.seq, attn=s.attn, dtype_bytes=2,
                                grad_ckpt=s.grad_ckpt)
    pk = acts.peak_by_phase(act, weights_bytes=weights_now, grads_bytes=grads, optimizer_state_bytes=optim,
                            optimizer_temp_bytes=by_phase.get("step", 0), grad_accum=s.grad_accum,
                            grad_bytes_per_element=4)
    phases = {"forward": int(pk.forward_bytes), "backward": int(pk.backward_bytes) + by_phase.get("backward", 0),
              "optimizer_step": int(pk.optimizer_step_bytes)}
    peak_phase = max(phases, key=phases.get)
    allocated = phases[peak_phase]
    reserved = reserved_bytes(allocated, act.saved_bytes + grads + by_phase.get("step", 0),
                              s.overheads.allocator_fragmentation)
    weights = comps.get("weights_bytes", 0)
    return _Trained(
        params=states.trainable_params, weights=weights, master=comps.get("master_weights_bytes", 0),
        gradients=grads, optimizer=optim, other_persistent=weights_now - weights - comps.get("master_weights_bytes", 0),
        gradients_persist=False, gathered=comps.get("gathered_params_bytes", 0), phases=phases,
        peak_phase=peak_phase, peak_allocated=allocated, peak_reserved=reserved, cpu_node_bytes=0,
        precision="FSDP MixedPrecision: fp32 sharded parameters (the master copy) 4 B, fp32 gradients 4 B, "
                  f"fp32 {s.optimizer} states, bf16 all-gather and activations",
        scheme=sharded.scheme,
        activations={"saved_bytes": act.saved_bytes, "by_part": dict(act.by_part), "source": act.coefficients_source},
        assumptions=list(act.assumptions) + list(sharded.assumptions) + list(states.notes))


# estimate_training components that live only inside a training step (everything else it reports, apart from
# activations and overheads, stays allocated between steps)
_STEP_ONLY = ("gathered_params_bytes", "unsharded_gradients_bytes", "optimizer_step_temporary_bytes",
              "reduce_bucket_bytes", "allreduce_bucket_bytes", "fp32_gradient_flatten_copies_bytes",
              "offload_grad_buffer_bytes", "fp32_gradients_bytes")
_NOT_STATES = ("activations_bytes", "allocator_reserve_bytes", "cuda_context_bytes", "nccl_bytes")


def _train_generic(census: list[dict], config: dict, s: TrainSettings, largest: int) -> _Trained:
    est = estimate_training(census, config, s, largest_layer_params=largest)
    c = est.components
    weights, master = c.get("weights_bytes", 0), c.get("master_weights_bytes", 0)
    grads, optim = c.get("gradients_bytes", 0), c.get("optimizer_bytes", 0)
    other = sum(v for k, v in c.items() if k not in _STEP_ONLY + _NOT_STATES
                and k not in ("weights_bytes", "master_weights_bytes", "gradients_bytes", "optimizer_bytes"))
    return _Trained(
        params=est.trainable_params + est.frozen_params, weights=weights, master=master, gradients=grads,
        optimizer=optim, other_persistent=other,
        # DeepSpeed keeps its gradient partitions in flat buffers allocated once; torch .grad is freed by
        # zero_grad(set_to_none=True) after the update
        gradients_persist=s.zero is not None, gathered=c.get("gathered_params_bytes", 0),
        phases=dict(est.phases), peak_phase=est.peak_phase, peak_allocated=est.peak_allocated_bytes,
        peak_reserved=est.peak_reserved_bytes, cpu_node_bytes=sum(est.cpu_components.values()),
        precision=f"{s.precision} ({s.method}), {s.optimizer}", scheme=est.scheme,
        activations=dict(est.activations), assumptions=list(est.assumptions))


def _train(census, config, s, largest) -> _Trained:
    if fsdp_mixed_precision(s):
        return _train_fsdp_mixed(census, config, s, largest)
    return _train_generic(census, config, s, largest)


# -- forwards without gradients --------------------------------------------------------------------------------

def _forward_bytes(config: dict, s: TrainSettings, batch: int, *, lm: bool) -> tuple[int, dict]:
    """Activations of one no-grad forward of ``batch`` × ``s.seq`` tokens (log-probs, values, rewards): the
    prefill forms of ``infer_activations`` plus, for an LM scored on every position, the full logits
    [b, s, V] in bf16 and one fp32 working copy for the log-softmax (HF-style ``logits.float()``; verl's
    flash-attn cross-entropy kernel needs less)."""
    from . import infer_activations

    dtype = 4 if s.precision == "fp32" else 2
    attn = s.attn if s.attn in infer_activations.ATTNS else "sdpa"
    pre = infer_activations.prefill_activation_bytes(config, batch=batch, context=s.seq, attn=attn,
                                                     dtype_bytes=dtype, fp32_logits_copy=False)
    act = int(pre.bytes)
    if s.tp > 1:
        parts = pre.by_part
        kept = int(parts.get("residual_bytes", 0)) + int(parts.get("logits_bytes", 0))
        act = kept + math.ceil((act - kept) / s.tp)
    parts = {"forward_activations_bytes": act}
    if lm:
        V = vocab_size(config)
        parts["logits_bytes"] = math.ceil(batch * s.seq * V * (dtype + 4) / s.tp)
    return sum(parts.values()), parts


# -- rollout -------------------------------------------------------------------------------------------------

def _tp_weights(census: list[dict], tp: int) -> int:
    from . import weights as wmod

    w = wmod.weights_bytes(census, "bf16")
    return sum(math.ceil(b / tp) if role in SHARDED_ROLES else b for role, b in w.bytes_by_role.items())


def _kv_share(config: dict, tp: int) -> float:
    """The rollout engine's KV share per GPU: vLLM's rule, as for serving (``inference.kv_share_per_gpu``)."""
    return kv_share_per_gpu(config, tp)


def _vllm_rollout(census, config, s: TrainSettings, *, tp: int, seqs: int, tokens: int,
                  utilization: float | None, gpu_memory_bytes: int | None) -> dict:
    from . import infer_activations

    weights = _tp_weights(census, tp)
    layout = kvc.kv_layout(config)
    share = _kv_share(config, tp)
    kv_engine = kvc.kv_cache_bytes(layout, batch=seqs, tokens=tokens, kv_bytes_per_elem=2, engine="vllm")
    kv_seq_gpu = math.ceil(kvc.kv_cache_bytes(layout, batch=1, tokens=tokens, kv_bytes_per_elem=2,
                                              engine="vllm") * share)
    kv_gpu = math.ceil(kv_engine * share)
    prof = infer_activations.prefill_activation_bytes(
        config, batch=1, context=min(VERL_MAX_NUM_BATCHED_TOKENS, tokens * VERL_MAX_NUM_SEQS), attn="flash",
        dtype_bytes=2, engine="vllm")
    parts = prof.by_part
    kept = int(parts.get("residual_bytes", 0)) + int(parts.get("logits_bytes", 0))
    acts = kept + math.ceil((prof.bytes - kept) / tp) + VERL_MAX_NUM_SEQS * vocab_size(config) * 4
    info = {"engine": "vllm", "tensor_parallel": tp, "engines": s.gpus // tp, "sequences_per_engine": seqs,
            "tokens_per_sequence": tokens, "weights_bytes": weights, "kv_cache_bytes_engine": kv_engine,
            "kv_cache_bytes": kv_gpu, "kv_bytes_per_sequence": kv_seq_gpu,
            "kv_bytes_per_token_engine": kvc.kv_bytes_per_token(layout, kv_bytes_per_elem=2),
            "activations_bytes": acts, "cuda_graphs_bytes": 0, "gpu_memory_utilization": utilization}
    if utilization is not None:
        pool = int(utilization * gpu_memory_bytes)
        budget = pool - weights - acts
        info.update(pool_bytes=pool, kv_budget_bytes=max(budget, 0),
                    max_concurrent_sequences=max(budget, 0) // kv_seq_gpu if kv_seq_gpu else None)
        info["gpu_bytes"] = pool
        info["dynamic"] = {"rollout_pool_bytes": pool}
    else:
        info["gpu_bytes"] = weights + kv_gpu + acts
        info["dynamic"] = {"rollout_weights_bytes": weights, "rollout_kv_cache_bytes": kv_gpu,
                           "rollout_activations_bytes": acts}
    return info


def _hf_rollout(census, config, s: TrainSettings, *, seqs: int, tokens: int, actor_sharded: bool) -> dict:
    from . import infer_activations

    layout = kvc.kv_layout(config)
    kv = kvc.kv_cache_bytes(layout, batch=seqs, tokens=tokens, kv_bytes_per_elem=2, engine="transformers")
    pre = infer_activations.prefill_activation_bytes(config, batch=seqs, context=tokens,
                                                     attn=s.attn, dtype_bytes=2)
    gathered = census_params(census) * 2 if actor_sharded else 0
    dyn = {"gathered_actor_bytes": gathered, "rollout_kv_cache_bytes": kv,
           "rollout_activations_bytes": int(pre.bytes)}
    return {"engine": "hf", "sequences_per_gpu": seqs, "tokens_per_sequence": tokens, "kv_cache_bytes": kv,
            "kv_cache_bytes_engine": kv, "activations_bytes": int(pre.bytes), "gpu_bytes": sum(dyn.values()),
            "dynamic": dyn}


# -- the estimate --------------------------------------------------------------------------------------------

# The PPO back-of-envelope (no activations, no rollout) is a published rule of thumb mirrored for
# comparison in hfmem.reference; re-exported so ``rlhf.seed_static_bytes`` keeps working.
from ..reference.rlhf import seed_static_bytes  # noqa: E402,F401


def verl_settings(gpus: int, **changes) -> TrainSettings:
    """verl's FSDP defaults as TrainSettings: FSDP full_shard with MixedPrecision (amp-bf16 here), torch AdamW
    (foreach, verl builds ``optim.AdamW`` without ``fused``), gradient checkpointing (the example configs'
    ``enable_gradient_checkpointing: True``), flash attention 2."""
    base = dict(precision="amp-bf16", fsdp="full_shard", optimizer="adamw", adamw_impl="foreach", grad_ckpt=True,
                attn="flash", gpus=gpus, gpus_per_node=max(gpus, 8))
    base.update(changes)
    return TrainSettings(**base)


def estimate_rlhf(tensors: list[dict], config: dict, algo: str, settings: TrainSettings, *,
                  largest_layer_params: int | None, reward=None, critic=None, rollout: str | None = "vllm",
                  rollout_tokens: int | None = None, group_size: int | None = None,
                  rollout_gpu_memory_utilization: float | None = None, rollout_tp: int | None = None,
                  rollout_batch: int | None = None, gpu_memory_bytes: int | None = None,
                  offload_frozen: bool = False, offload_trained: bool = False, rollout_free_cache: bool = True,
                  frozen_bytes_per_param: int = 2) -> RLHFEstimate:
    """Per-GPU memory of one RLHF iteration with every model colocated on ``settings.gpus`` GPUs.

    ``settings``: how the actor/policy (and the critic) train: micro-batch ``batch`` × ``seq`` tokens
    (prompt + response) per GPU, also the micro-batch of every scoring forward (DPO: chosen + rejected, so
    2 × batch sequences go through the policy and the reference). ``largest_layer_params``: the actor's
    largest FSDP unit / ZeRO-3 layer (``Inventory.layers``), None to derive it from the census.
    ``group_size``: samples per prompt (None: 1 for PPO — verl's rollout.n — and 8 for GRPO).
    ``rollout_batch``: prompts in flight per rollout engine (default ``settings.batch``); the engine holds
    ``rollout_batch × group_size`` sequences of ``rollout_tokens`` (default ``settings.seq``) tokens.
    ``rollout_gpu_memory_utilization`` (vLLM): the engine takes that fraction of ``gpu_memory_bytes``.
    ``offload_frozen``: reference/reward parameter shards on the CPU (verl forces FSDP ``CPUOffload`` on them);
    ``offload_trained``: actor/critic parameters and optimizer states on the CPU outside their own phases
    (verl ``fsdp_config.param_offload`` + ``optimizer_offload``). ``rollout_free_cache``: vLLM sleeps outside
    generation (verl's ``free_cache_engine``); False keeps its weights and KV cache allocated throughout.
    ``frozen_bytes_per_param``: the reference/reward weights' width (2: bf16).
    """
    s, attn_notes = resolve_attn(settings.validate(), config)
    algo = str(algo).lower()
    if algo not in ALGOS:
        raise RLHFSettingsError(f"algo must be one of {', '.join(ALGOS)}, not {algo!r}")
    notes: list[str] = []
    assumptions: list[str] = list(attn_notes)
    if algo == "dpo":
        if rollout is not None:
            notes.append("DPO trains on fixed preference pairs: no rollout engine")
        rollout = None
        if critic is not None:
            notes.append("DPO has no critic: critic= ignored")
        critic = None
    if algo == "grpo" and critic is not None:
        notes.append("GRPO has no critic (group-relative advantages): critic= ignored")
        critic = None
    if rollout is not None and rollout not in ROLLOUTS:
        raise RLHFSettingsError(f"rollout must be one of {', '.join(ROLLOUTS)} or None, not {rollout!r}")
    group = DEFAULT_GROUP_SIZE[algo] if group_size is None else int(group_size)
    if group < 1:
        raise RLHFSettingsError("group_size must be at least 1")
    tp_roll = int(rollout_tp or s.gpus)
    if rollout == "vllm" and (tp_roll < 1 or s.gpus % tp_roll):
        raise RLHFSettingsError(f"rollout tensor parallel {tp_roll} does not divide {s.gpus} GPUs")
    if rollout_gpu_memory_utilization is not None:
        if rollout != "vllm":
            raise RLHFSettingsError("rollout_gpu_memory_utilization applies to the vLLM rollout")
        if not 0 < rollout_gpu_memory_utilization <= 1:
            raise RLHFSettingsError("rollout_gpu_memory_utilization must be in (0, 1]")
        if not gpu_memory_bytes:
            raise RLHFSettingsError("rollout_gpu_memory_utilization needs gpu_memory_bytes (the GPU's memory)")
    if frozen_bytes_per_param not in (1, 2, 4):
        raise RLHFSettingsError("frozen_bytes_per_param must be 1, 2 or 4")
    tokens = int(rollout_tokens or s.seq)
    seqs = int(rollout_batch or s.batch) * group
    rpn = min(s.gpus, s.gpus_per_node)
    frag = s.overheads.allocator_fragmentation
    peft = s.method != "full"

    actor_census = list(tensors)
    P = census_params(actor_census)
    largest = int(largest_layer_params or _largest_unit(actor_census))
    actor_largest = largest
    if rollout == "hf" and s.fsdp:
        actor_largest = P  # verl: auto_wrap_policy = None for the HF rollout -> one unit, the whole model
        assumptions.append("HF rollout under FSDP: verl disables auto-wrapping, so the actor (and the reference "
                           "built in the same worker) is one FSDP unit gathered whole in every forward/backward")
    policy_role = "policy" if algo == "dpo" else "actor"
    train_batch = 2 * s.batch if algo == "dpo" else s.batch
    s_train = replace(s, batch=train_batch)

    # phase names
    phase_names: list[str] = []
    if rollout is not None:
        phase_names.append("generation")
    if algo != "dpo":
        phase_names.append("actor_log_prob")
    phase_names.append("reference_forward")
    if reward is not None and algo != "dpo":
        phase_names.append("reward_forward")
    if algo == "ppo":
        phase_names.append("critic_forward")
    phase_names.append(f"{policy_role}_training")
    if algo == "ppo":
        phase_names.append("critic_training")

    models: list[ModelMemory] = []
    dynamic: dict[str, dict[str, int]] = {p: {} for p in phase_names}
    train_reserve: dict[str, int] = {}
    training_info: dict[str, dict] = {}

    def trained_model(role: str, census, cfg, unit: int, own_phases: tuple[str, ...], train_phase: str,
                      forward_phase: str | None, lm: bool) -> _Trained:
        t = _train(census, cfg, s_train, unit)
        resident = {}
        for p in phase_names:
            if p == train_phase:
                resident[p] = 0  # the whole training estimate is the phase's dynamic part
            elif offload_trained:
                resident[p] = t.weights + t.master if p in own_phases else 0
            else:
                resident[p] = t.persistent
        shard = s.data_parallel if (s.fsdp in ("full_shard", "hybrid_shard") or s.zero == 3) else 1
        placement = (f"colocated on all {s.gpus} GPUs; {t.scheme}" +
                     (f", parameters and optimizer states sharded 1/{shard}" if shard > 1 else "") +
                     ("; parameters and optimizer states on the CPU outside its own phases" if offload_trained else ""))
        m = ModelMemory(role=role, trained=True, params=t.params, weights_bytes=t.weights,
                        gradients_bytes=t.gradients, optimizer_bytes=t.optimizer,
                        other_bytes=t.master + t.other_persistent, placement=placement, precision=t.precision,
                        resident=resident,
                        cpu_bytes=(t.weights + t.master + t.optimizer + t.other_persistent) if offload_trained else 0,
                        notes=[] if t.gradients_persist else
                        ["gradients exist only during its training phase (zero_grad(set_to_none) after the update)"])
        models.append(m)
        dynamic[train_phase] = {"training_step_bytes": t.peak_allocated}
        train_reserve[train_phase] = t.peak_reserved - t.peak_allocated
        training_info[role] = {"phases": t.phases, "peak_phase": t.peak_phase, "peak_allocated_bytes": t.peak_allocated,
                               "scheme": t.scheme, "activations": t.activations, "cpu_bytes": t.cpu_node_bytes,
                               "micro_batch": s_train.batch, "seq": s.seq}
        if forward_phase:
            _, parts = _forward_bytes(cfg, s, s.batch, lm=lm)
            dynamic[forward_phase] = {"gathered_params_bytes": t.gathered, **parts}
        assumptions.extend(t.assumptions)
        return t

    # actor / policy
    # under offload_trained the actor's parameters come back for its log-prob forward (and, with LoRA, the
    # reference forward); the weight sync before generation is counted in the generation phase
    actor = trained_model(policy_role, actor_census, config, actor_largest,
                          ("actor_log_prob",) + (("reference_forward",) if peft else ())
                          + (("generation",) if rollout == "hf" else ()),
                          f"{policy_role}_training", "actor_log_prob" if algo != "dpo" else None, lm=True)

    # reference
    ref_shard = _weight_shard(s)
    ref_census = _rank_census(actor_census, s)
    ref_params_rank = census_params(ref_census)
    ref_batch = 2 * s.batch if algo == "dpo" else s.batch
    _, parts = _forward_bytes(config, s, ref_batch, lm=True)
    if peft:
        models.append(ModelMemory(
            role="reference", trained=False, params=P, weights_bytes=0, gradients_bytes=0, optimizer_bytes=0,
            other_bytes=0, placement=f"no copy: the {policy_role}'s frozen base with the adapters disabled "
                                     "(verl ref_in_actor; TRL with a PEFT model)",
            precision="the base's", resident={p: 0 for p in phase_names}))
        dynamic["reference_forward"] = {"gathered_params_bytes": actor.gathered, **parts}
    else:
        ref_w = math.ceil(ref_params_rank * frozen_bytes_per_param / ref_shard)
        gathered = 0
        if ref_shard > 1 or offload_frozen:
            unit = actor_largest if rollout == "hf" and s.fsdp else largest
            gathered = min(ref_params_rank, 2 * unit) * 2
        models.append(ModelMemory(
            role="reference", trained=False, params=P, weights_bytes=ref_w, gradients_bytes=0, optimizer_bytes=0,
            other_bytes=0,
            placement=(f"colocated on all {s.gpus} GPUs; frozen, " +
                       (f"weights sharded 1/{ref_shard} like the {policy_role}'s" if ref_shard > 1 else
                        "a full copy per GPU (no parameter sharding in this scheme)") +
                       ("; shards on the CPU (FSDP CPUOffload), units gathered to the GPU during its forward"
                        if offload_frozen else "")),
            precision=f"{frozen_bytes_per_param} B/param, no gradients or optimizer states",
            resident={p: 0 if offload_frozen else ref_w for p in phase_names},
            cpu_bytes=ref_w if offload_frozen else 0))
        dynamic["reference_forward"] = {"gathered_params_bytes": gathered, **parts}

    # reward model
    if reward is not None and algo != "dpo":
        r_tensors, r_config = reward
        r_census = _rank_census(value_model_census(list(r_tensors), r_config), s)
        r_params = census_params(value_model_census(list(r_tensors), r_config))
        r_w = math.ceil(census_params(r_census) * frozen_bytes_per_param / ref_shard)
        gathered = min(census_params(r_census), 2 * _largest_unit(r_census)) * 2 if (ref_shard > 1 or offload_frozen) else 0
        models.append(ModelMemory(
            role="reward", trained=False, params=r_params, weights_bytes=r_w, gradients_bytes=0, optimizer_bytes=0,
            other_bytes=0,
            placement=(f"colocated on all {s.gpus} GPUs; frozen value model (TokenClassification, num_labels=1), " +
                       (f"weights sharded 1/{ref_shard}" if ref_shard > 1 else "a full copy per GPU") +
                       ("; shards on the CPU (FSDP CPUOffload)" if offload_frozen else "")),
            precision=f"{frozen_bytes_per_param} B/param", resident={p: 0 if offload_frozen else r_w for p in phase_names},
            cpu_bytes=r_w if offload_frozen else 0))
        _, parts = _forward_bytes(value_model_config(r_config), s, s.batch, lm=False)
        dynamic["reward_forward"] = {"gathered_params_bytes": gathered, **parts}
    if offload_frozen and not peft:
        assumptions.append("frozen models offloaded: their shards live in host memory at frozen_bytes_per_param "
                           "(verl's hybrid worker creates the reference in fp32, the actor's dtype rule: pass 4 for "
                           "its CPU figure); units are gathered to the GPU in bf16 during their forward")
    if reward is None and algo != "dpo":
        assumptions.append("reward: rule-based (a function on the CPU), no reward model on the GPU")

    # critic
    if algo == "ppo":
        c_tensors, c_config = critic if critic is not None else (actor_census, config)
        c_census = value_model_census(list(c_tensors), c_config)
        c_unit = largest if critic is None else _largest_unit(c_census)
        trained_model("critic", c_census, value_model_config(c_config), c_unit, ("critic_forward",),
                      "critic_training", "critic_forward", lm=False)
        assumptions.append("critic: AutoModelForTokenClassification(num_labels=1) as verl builds it — the LM head "
                           "dropped, a value head of hidden + 1 parameters added; trained with the actor's settings")

    # rollout engine
    rollout_info = None
    if rollout == "vllm":
        rollout_info = _vllm_rollout(actor_census, config, s, tp=tp_roll, seqs=seqs, tokens=tokens,
                                     utilization=rollout_gpu_memory_utilization, gpu_memory_bytes=gpu_memory_bytes)
        # weight sync: the sharded actor hands vLLM one full parameter at a time (DTensor.full_tensor(), fp32)
        largest_tensor = training.largest_tensor_numel(actor_census)
        sync = rollout_info["weights_bytes"] + (largest_tensor * 4 if s.data_parallel > 1 else 0)
        if offload_trained:
            sync += actor.weights + actor.master
        rollout_info["weight_sync_bytes"] = sync
        dyn = dict(rollout_info["dynamic"])
        if sync > sum(dyn.values()):
            dyn = {"weight_sync_bytes": sync}
        dynamic["generation"] = dyn
        models.append(ModelMemory(
            role="rollout", trained=False, params=P, weights_bytes=rollout_info["weights_bytes"], gradients_bytes=0,
            optimizer_bytes=0, other_bytes=rollout_info["gpu_bytes"] - rollout_info["weights_bytes"],
            placement=(f"vLLM colocated, tensor parallel {tp_roll} ({s.gpus // tp_roll} engine(s)); " +
                       ("sleeps outside generation (weights to the CPU, KV cache freed)" if rollout_free_cache
                        else "weights and KV cache kept allocated in every phase")),
            precision="bf16 weights and KV cache",
            resident={p: (0 if rollout_free_cache or p == "generation" else rollout_info["gpu_bytes"])
                      for p in phase_names},
            cpu_bytes=rollout_info["weights_bytes"] if rollout_free_cache else 0,
            notes=["other_bytes: KV cache + profile-run activations (or the rest of the gpu_memory_utilization pool)"]))
        assumptions.append(
            f"vLLM rollout: {seqs} sequences ({rollout_batch or s.batch} prompts × {group}) of {tokens} tokens per "
            f"engine, bf16 KV in {kvc.VLLM_BLOCK_ALIGN}-token blocks split over {tp_roll} GPUs by KV head; "
            f"profile run of {VERL_MAX_NUM_BATCHED_TOKENS} tokens and {VERL_MAX_NUM_SEQS} sequences' fp32 logits "
            "(verl defaults); enforce_eager (verl's default): no CUDA graphs")
    elif rollout == "hf":
        rollout_info = _hf_rollout(actor_census, config, s, seqs=seqs, tokens=tokens,
                                   actor_sharded=(s.fsdp is not None or s.zero == 3) and s.data_parallel > 1)
        dynamic["generation"] = dict(rollout_info["dynamic"])
        assumptions.append(f"HF rollout: transformers generate on every GPU for its {seqs} sequences of {tokens} "
                           "tokens (KV cache as DynamicCache; the prefill counted at the full length, an upper bound)")

    # phases
    details: list[PhaseMemory] = []
    runs = {"generation": "rollout", "actor_log_prob": "actor", "reference_forward": "reference",
            "reward_forward": "reward", "critic_forward": "critic", "actor_training": "actor",
            "critic_training": "critic", "policy_training": "policy"}
    for p in phase_names:
        res = {m.role: m.resident.get(p, 0) for m in models if m.resident.get(p, 0)}
        if p == "generation" and not rollout_free_cache and "rollout" in res:
            res.pop("rollout")  # counted as the phase's dynamic part
        dyn = {k: int(v) for k, v in dynamic[p].items() if v}
        allocated = sum(res.values()) + sum(dyn.values())
        if p in train_reserve:
            reserve = train_reserve[p]
        else:
            churn = sum(v for k, v in dyn.items() if not k.startswith("rollout_") and k != "weight_sync_bytes")
            reserve = round(frag * churn)
        details.append(PhaseMemory(name=p, runs=runs[p], resident_bytes=res, dynamic_bytes=dyn,
                                   allocated_bytes=allocated, reserved_bytes=allocated + reserve))
    phases = {d.name: d.allocated_bytes for d in details}
    peak = max(details, key=lambda d: d.allocated_bytes)
    peak_reserved = max(d.reserved_bytes for d in details)
    context = s.overheads.cuda_context_bytes + (s.overheads.nccl_bytes if s.gpus > 1 else 0)
    device_total = peak_reserved + context
    cpu = sum(m.cpu_bytes for m in models) * rpn + sum(v.get("cpu_bytes", 0) for v in training_info.values())
    fits = None if not gpu_memory_bytes else device_total <= int(gpu_memory_bytes)

    assumptions += [
        f"{algo.upper()}: every model colocated on the same {s.gpus} GPU(s) (verl hybrid engine); numbers per GPU",
        "each phase = what every resident model keeps on the GPU + that phase's dynamic part (gathered FSDP units, "
        "activations, logits, the rollout's weights/KV, or the whole training step of the trained model)",
        f"{policy_role}/critic micro-batch {s_train.batch} × {s.seq} tokens per GPU; scoring forwards use "
        f"{ref_batch if algo == 'dpo' else s.batch} sequences per micro-batch",
        "gradients are freed after each update (torch .grad, zero_grad(set_to_none)); DeepSpeed's flat gradient "
        "buffers stay",
        "peak_reserved: the training phases' own caching-allocator reserve, "
        f"{frag:.0%} of gathered units and activations elsewhere; vLLM's pool is allocated once",
        "cpu_bytes: host memory per node in steady state (offloaded shards and states, a sleeping vLLM's weights); "
        "loading the checkpoints at start-up is not counted",
        "device_total adds the CUDA context" + (" and NCCL" if s.gpus > 1 else "") + " once: one process per GPU "
        "hosts every role",
    ]
    if algo == "dpo":
        assumptions.append("DPO: chosen and rejected sequences concatenated: 2 × batch through the policy and the "
                           "reference every step")
    return RLHFEstimate(
        algo=algo, settings=s, rollout=rollout, group_size=group, models=models, phases=phases,
        phase_details=details, peak_phase=peak.name, peak_allocated_bytes=peak.allocated_bytes,
        peak_reserved_bytes=peak_reserved, device_total_bytes=device_total, cpu_bytes=cpu,
        gpu_memory_bytes=int(gpu_memory_bytes) if gpu_memory_bytes else None, fits=fits,
        rollout_info=rollout_info, training=training_info,
        assumptions=list(dict.fromkeys(assumptions)), notes=notes)


__all__ = ["ALGOS", "ModelMemory", "PhaseMemory", "RLHFEstimate", "RLHFSettingsError", "estimate_rlhf",
           "fsdp_mixed_precision", "seed_static_bytes", "value_model_census", "value_model_config", "verl_settings"]
