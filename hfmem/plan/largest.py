"""The largest model of a family that fits a GPU for a job ("how big a model can I train on a 3090 / an A100 with
Adam?", answered as a parameter count for a chosen architecture family).

A family is given by a template: a real model's config.json (a Hub repo id or a folder, resolved as every hfmem
command resolves it; the shipped snapshot answers offline). Its *width* is kept — hidden size, heads, KV heads,
intermediate size, vocabulary, tied embeddings, every other field — and its *depth* is varied: the config's
layer-count field (``hfmem.model.fields.LAYERS``: num_hidden_layers, n_layer, num_layers, n_layers). Every
decoder layer of one width holds the same tensors, so parameters and every per-layer term of the estimate
(weights, gradients, optimizer states, saved activations, KV cache) grow with the depth while the rest
(embedding, head, logits) stays: the fit is monotone in the depth, and the largest depth that fits is found by
bisection (``plan.fit.largest_fitting``, as max batch and max sequence are).

Each depth is estimated by hfmem's own pipeline, as ``hfmem train`` / ``hfmem infer`` would answer for a folder
holding that config.json (tests/test_largest.py checks exactly that, end to end): the config is parsed and
validated (``metadata.config.parse_config``), counted on the meta device (``inventory.build.build_inventory``
with no checkpoint headers — there is no checkpoint of a model that does not exist), then estimated with
``scenarios.finetune.estimate_training`` or ``plan.fit.estimator_for``. No memory formula lives here. Nothing is
written: no cache entry, no temporary folder; one meta-model build per depth tried (tens of milliseconds each).

The family's other widths are the other configs of the shipped snapshot with the template's model_type (for
llama: Llama-3.2-1B/3B, Llama-3.1-8B/70B, Llama-2, CodeLlama, TinyLlama, SmolLM ... widths), each depth-scaled
the same way; the answer is the width whose largest fitting depth has the most parameters.

torch is imported (lazily, by ``build_inventory``'s meta-model build): a depth-scaled model exists only as a
config, so there are no safetensors headers to count it from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..errors import HfmemError, SettingsError, UnsupportedArchitectureError, UsageError
from ..model import fields as F

if TYPE_CHECKING:
    from ..inventory.model import Inventory
    from ..report import Options
    from .gpus import GPU

JOBS = ("train", "serve")
VERIFY = ("best", "all", "none")  # which rows are counted by real builds at n and n + 1 layers
# Configs whose layer pattern is a list of layer indices (not one entry per layer): no rule says where the
# indices of a deeper or shallower model would fall, so such a config is refused unless the list is empty.
_INDEX_LISTS = ("attn_layer_indices", "full_attn_idxs", "mlp_only_layers", "full_attn_layers", "kda_layers",
                "swa_layers", "global_attn_layers", "no_rope_layers")
# Per-layer strings (one character per layer): NemotronH's hybrid_override_pattern ("M-M*-...").
_PATTERN_STRINGS = ("hybrid_override_pattern",)
# Keys that differ between a base and an instruct release of one width without changing a tensor or an
# estimate: two snapshot configs equal but for these are one width.
_NOT_WIDTH = ("_name_or_path", "transformers_version", "bos_token_id", "eos_token_id", "pad_token_id",
              "use_cache", "architectures", "auto_map", "torch_dtype", "dtype", "initializer_range")


@dataclass
class FamilyWidth:
    """One width of the family, depth-scaled: the most layers that fit and the model that makes."""

    template: str                 # the repo whose width this is
    hidden_size: int
    layers_template: int          # the depth that repo has
    max_layers: int               # the most layers that fit (0: not even one)
    params: int                   # parameters of that model (0 when not even one layer fits)
    device_total_bytes: int       # its estimate (what the fit compares); 0 when not even one layer fits
    next_bytes: int | None        # the estimate with one more layer (does not fit); None at the search limit
    same_width: list[str] = field(default_factory=list)  # other snapshot repos with this exact width
    limited_by_search: bool = False  # max_layers is metadata.config.MAX_LAYERS: the search stopped there
    verified: bool = True         # max_layers and max_layers + 1 counted by real builds (else extrapolated)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class LargestInFamily:
    """The largest model of the template's family that fits ``gpu`` for ``job``."""

    family: str                   # model_type
    job: str                      # "train" | "serve"
    gpu: str
    capacity_bytes: int           # what each estimate is compared with (per GPU)
    widths: list[FamilyWidth]     # best first (most parameters that fit)
    best: FamilyWidth | None      # None when no width fits even one layer
    template_width: FamilyWidth   # the template's own width (the answer for exactly that architecture)
    assumptions: list[str]
    rule_of_thumb_params: int     # capacity / rule_of_thumb_bytes_per_param
    rule_of_thumb_bytes_per_param: float
    rule_of_thumb: str            # which rule, in words
    seconds: float = 0.0          # wall time of the answer
    skipped: list[str] = field(default_factory=list)  # family configs left out, one line each

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


# -- depth scaling ------------------------------------------------------------------------------------------------

def layer_field(config: dict, origin: str = "the template") -> str:
    """The config's layer-count field (the first of ``fields.LAYERS`` it sets), checked to be the only stack:
    an encoder-decoder, a multimodal config (the language model in ``text_config``) or a model with more than
    one tower has several depths, and which one is "the family's" has no single answer."""
    from ..model import describe
    from ..model.description import TEXT_DECODER, TEXT_ENCODER

    desc = describe(config)
    refuse = None
    if desc.unknown:
        refuse = desc.unknown
    elif desc.is_encoder_decoder or len(desc.towers) != 1 or desc.other_towers:
        refuse = (f"{len(desc.towers) + len(desc.other_towers)} stacks of layers (encoder-decoder or multimodal), "
                  "so no single depth to vary")
    elif desc.towers[0].role not in (TEXT_DECODER, TEXT_ENCODER):
        refuse = f"a {desc.towers[0].role} model, not a text transformer"
    elif isinstance(config.get("text_config"), dict):
        refuse = "its language model's sizes are in text_config (a multimodal config)"
    name = next((n for n in F.LAYERS if isinstance(config.get(n), int) and not isinstance(config.get(n), bool)),
                None)
    if refuse is None and name is None:
        refuse = f"no layer-count field ({', '.join(F.LAYERS)}) in its config.json"
    if refuse is not None:
        raise UnsupportedArchitectureError(f"{origin}: hfmem cannot depth-scale it: {refuse}",
                                           hint="pick a decoder LM template such as meta-llama/Llama-3.2-1B")
    return name


def _period(seq) -> int:
    """The shortest period p of ``seq`` (seq[i] == seq[i % p] for every i)."""
    n = len(seq)
    for p in range(1, n + 1):
        if all(seq[i] == seq[i % p] for i in range(n)):
            return p
    return n


def depth_scaled(config: dict, layers: int, origin: str = "the template") -> dict:
    """``config`` with ``layers`` layers and everything else kept. Per-layer lists (``layer_types`` and any
    other list of one entry per layer) are extended or cut along their repeating pattern (Gemma's five sliding
    layers then one full layer, a uniform list); a list whose pattern does not repeat within the template's
    depth, or a list of layer indices, cannot be scaled without inventing a layout: UnsupportedArchitectureError."""
    name = layer_field(config, origin)
    depth = int(config[name])
    out = dict(config)
    out[name] = int(layers)

    def refuse(why: str):
        raise UnsupportedArchitectureError(f"{origin}: hfmem cannot depth-scale it: {why}",
                                           hint="pick a template whose layers follow a repeating pattern")

    for key, value in config.items():
        if key in _NOT_WIDTH:  # token ids (Gemma 2's eos_token_id list) are no per-layer list
            continue
        if key in _INDEX_LISTS and value:
            refuse(f"{key} lists layer indices, which say nothing of a model of another depth")
        per_layer = (isinstance(value, list) or (key in _PATTERN_STRINGS and isinstance(value, str))) \
            and depth > 1 and len(value) == depth
        if not per_layer:
            continue
        p = _period(value)
        if p > depth // 2 and layers != depth:  # a pattern must repeat at least twice to be one
            refuse(f"{key} has no repeating pattern within its {depth} layers")
        scaled = [value[i % p] for i in range(int(layers))]
        out[key] = "".join(scaled) if isinstance(value, str) else scaled
    # Qwen2-style sliding windows from layer max_window_layers on: the template's "no layer" (= its depth)
    # stays "no layer" at any depth; a boundary inside the stack has no rule at another depth.
    mwl = config.get("max_window_layers")
    if config.get("use_sliding_window") and isinstance(mwl, int):
        if mwl >= depth:
            out["max_window_layers"] = int(layers)
        else:
            refuse(f"sliding windows start at layer max_window_layers={mwl} of {depth}")
    return out


def _inventory(config: dict, origin: str) -> "Inventory":
    """What ``hfmem`` counts for a folder holding this config.json alone: parsed and validated as a file would
    be, built on the meta device (no checkpoint headers exist for a depth-scaled model)."""
    from ..inventory.build import build_inventory
    from ..metadata.config import parse_config

    return build_inventory(parse_config(json.dumps(config), origin), None)


@dataclass(frozen=True)
class _Counted:
    """What an estimate reads of an inventory: the census, the parameter count, the largest layer group's
    parameters (``api.train`` passes ``inventory.layers[0]``) and the buffers (``api.infer``)."""

    tensors: list
    num_params: int
    largest_layer_params: int | None
    buffer_bytes: int


def _counted(inv: "Inventory") -> _Counted:
    return _Counted(list(inv.tensors), int(inv.num_params), inv.layers[0].num_params if inv.layers else None,
                    int(inv.buffer_bytes))


def _census_key(entry: dict) -> str:
    return json.dumps({k: v for k, v in entry.items() if k not in ("count", "params")}, sort_keys=True)


class _Extrapolation:
    """The census at any depth from the meta-model counts at depths 1 and 2. Each census entry groups the
    tensors of one name and shape, so its count is a + b·L: ``b`` tensors per layer (b = count at 2 − count
    at 1) and ``a`` outside the layers (embedding, final norm, head; BERT's pooler ``dense`` shares its group
    with the layers'). Used to steer the search only: the depths reported are counted by real builds
    (``_Width.largest(verify=True)``), and a width whose counts are not of that form (an entry at one depth
    only, a negative term, a largest layer group or buffers that change) is searched with a build per depth."""

    def __init__(self, one: "Inventory", two: "Inventory"):
        a = {_census_key(t): t for t in one.tensors}
        b = {_census_key(t): t for t in two.tensors}
        self.ok = a.keys() == b.keys() and len(a) == len(one.tensors) == len(two.tensors)
        self.order = [_census_key(t) for t in two.tensors]
        self.terms: dict[str, tuple[dict, int, int, int, int]] = {}  # entry, count a, b, params a, b
        if self.ok:
            for k, t in a.items():
                u = b[k]
                count_b, params_b = u["count"] - t["count"], u["params"] - t["params"]
                count_a, params_a = t["count"] - count_b, t["params"] - params_b
                if min(count_a, count_b, params_a, params_b) < 0:
                    self.ok = False
                self.terms[k] = (u, count_a, count_b, params_a, params_b)
        self.params_fixed = 2 * one.num_params - two.num_params
        self.params_layer = two.num_params - one.num_params
        c1, c2 = _counted(one), _counted(two)
        self.ok = self.ok and c1.largest_layer_params == c2.largest_layer_params \
            and c1.buffer_bytes == c2.buffer_bytes
        self.largest, self.buffer_bytes = c1.largest_layer_params, c1.buffer_bytes

    def at(self, layers: int) -> _Counted:
        tensors = []
        for k in self.order:
            u, ca, cb, pa, pb = self.terms[k]
            tensors.append(dict(u, count=ca + cb * layers, params=pa + pb * layers))
        return _Counted(tensors, self.params_fixed + self.params_layer * layers, self.largest, self.buffer_bytes)


# -- one estimate per depth, as hfmem train / hfmem infer give it ------------------------------------------------

def _train_settings(settings, gpus: int) -> tuple["object", list[str], bool]:
    """The TrainSettings ``hfmem train`` would run (precision and sequence defaults as ``api.train`` fills
    them; the sequence is settled per width, see ``_Width``), the defaults filled in, and whether the
    sequence length was given."""
    from ..api import DEFAULT_TRAIN_SEQ, _train_precision
    from ..scenarios.finetune import TrainSettings

    filled: list[str] = []
    s = settings if settings is not None else replace(TrainSettings(), seq=None)
    seq_given = s.seq is not None
    if gpus != 1 and s.gpus == 1:
        s = replace(s, gpus=int(gpus))
    if s.precision is None:
        prec, why = _train_precision(s, None)
        s = replace(s, precision=prec)
        if why:
            filled.append(why)
    s = replace(s, seq=DEFAULT_TRAIN_SEQ if s.seq is None else s.seq).validate()
    if s.zero is not None and not (s.precision.startswith("deepspeed") or s.precision == "fp32"):
        raise UsageError(f"precision {s.precision} with ZeRO {s.zero}: DeepSpeed trains in fp32 or in its own "
                         "mixed precision", hint="use precision deepspeed-bf16 or deepspeed-fp16, or fp32")
    if s.images:
        raise UsageError("images per sequence: the family search covers text models only",
                         hint="leave images at 0")
    return s, filled, seq_given


def _serve_settings(settings, gpus: int):
    from ..scenarios.inference import InferenceSettings

    s = (settings if settings is not None else InferenceSettings()).validate()
    if gpus != 1 and s.tp == 1:
        s = replace(s, tp=int(gpus))
    if s.images:
        raise UsageError("images per sequence: the family search covers text models only",
                         hint="leave images at 0")
    return s


class _Width:
    """One width's estimates by depth (memoized: the bisection asks some depths twice)."""

    def __init__(self, repo: str, config: dict, job: str, settings, gpu: "GPU", gpus: int):
        from ..scenarios.weights import checkpoint_format

        self.repo, self.config, self.job, self.gpu = repo, config, job, gpu
        self.field = layer_field(config, repo)
        self.depth = int(config[self.field])
        self.filled: list[str] = []
        self._real: dict[int, tuple[int, int]] = {}
        self._guess: dict[int, tuple[int, int]] = {}
        if job == "train":  # bad settings are refused before anything is built
            self.settings, self.filled, seq_given = _train_settings(settings, gpus)
        else:
            self.settings = _serve_settings(settings, gpus)
        # the checkpoint's format: a config alone stores none, so its declared dtype (bf16 for bfloat16), else
        # fp32 -- what the inventory of a folder holding only config.json gives, at every depth
        self.checkpoint_format = checkpoint_format(config, None)
        self._check_closed_form()  # before anything is built
        one = _inventory(depth_scaled(config, 1, repo), f"{repo} at 1 layer")
        two = _inventory(depth_scaled(config, 2, repo), f"{repo} at 2 layers")
        self._extra = _Extrapolation(one, two)
        self.verified = False
        if job == "train":
            self._settle_seq(one, seq_given)

    def _settle_seq(self, one: "Inventory", seq_given: bool) -> None:
        """As ``api.train``: a model with a learned position table cannot run a longer sequence — refused
        when the sequence was given, else the table's length instead of the default 2048."""
        from ..api import position_table_rows

        table = position_table_rows(one.tensors, self.config)
        if table and self.settings.seq > table:
            if seq_given:
                raise UsageError(f"{self.repo}: seq {self.settings.seq:,} exceeds the model's "
                                 f"max_position_embeddings {table:,} (learned positions)",
                                 hint=f"use seq {table} or less")
            self.settings = replace(self.settings, seq=table)
            self.filled.append(f"seq not given: {table:,}, {self.repo}'s max_position_embeddings (learned "
                               "absolute positions)")

    def _check_closed_form(self) -> None:
        """The family search re-estimates many depths; hfmem answers some models by running their own code
        (``scenarios.by_simulation``: seconds per estimate), which a search of dozens of depths cannot afford."""
        from ..model import describe
        from ..scenarios.by_simulation import ByCode

        desc = describe(self.config)
        if self.job == "train":
            s = self.settings
            by_code = ByCode.trains(desc, s) or ByCode.trains_decoder(desc, s)
        else:
            by_code = ByCode.serves(desc, self.settings, self.checkpoint_format)
        if by_code:
            raise UnsupportedArchitectureError(
                f"{self.repo}: hfmem estimates this model at these settings by running its own code (no "
                f"closed form for {desc.model_type}), too slow to search over depths",
                hint=f"`hfmem {'train' if self.job == 'train' else 'infer'} {self.repo} --gpu ...` answers one "
                     "depth; or pick a template of a family with a closed form (llama, qwen2, mistral ...)")

    def estimate(self, layers: int, *, real: bool = False) -> tuple[int, int]:
        """(device_total_bytes, parameters) of the model at ``layers`` layers: from a meta-model build of the
        depth-scaled config (``real``, or when the census cannot be extrapolated), else from the census
        extrapolated from depths 1 and 2."""
        memo = self._real if real or not self._extra.ok else self._guess
        if layers not in memo:
            cfg = depth_scaled(self.config, layers, self.repo)
            if memo is self._real:
                counted = _counted(_inventory(cfg, f"{self.repo} at {layers} layers"))
            else:
                counted = self._extra.at(layers)
            memo[layers] = (self._device_total(counted, cfg), counted.num_params)
        return memo[layers]

    def _device_total(self, inv: _Counted, cfg: dict) -> int:
        if self.job == "train":
            from ..scenarios.finetune import estimate_training

            return estimate_training(inv.tensors, cfg, self.settings,
                                     largest_layer_params=inv.largest_layer_params).device_total_bytes
        from . import fit as fitmod

        est = fitmod.estimator_for(inv.tensors, cfg, checkpoint_format=self.checkpoint_format,
                                   buffer_bytes=inv.buffer_bytes, checkpoint_stored_bytes=None)
        return est(replace(self.settings, gpu_memory_bytes=self.gpu.usable_bytes)).device_total_bytes

    def capacity_bytes(self) -> int:
        if self.job == "train":
            return int(self.gpu.usable_bytes)  # api.train: fits = device total <= usable bytes
        from .fit import capacity_bytes

        return capacity_bytes(self.gpu, self.settings)  # vLLM: gpu_memory_utilization of it

    def largest(self, *, verify: bool = True) -> FamilyWidth:
        """The most layers that fit. The search runs on the extrapolated census; with ``verify`` the answer n
        is then counted by real builds at n and n + 1 and walked until the real estimate at n fits and at n + 1
        does not, so the depths reported are exactly what ``hfmem train`` / ``hfmem infer`` say."""
        from ..metadata.config import MAX_LAYERS
        from .fit import largest_fitting

        cap = self.capacity_bytes()
        hidden = F.first_int(self.config, F.HIDDEN)
        ok = lambda n, real=False: self.estimate(n, real=real)[0] <= cap  # noqa: E731
        n = largest_fitting(ok, 1, MAX_LAYERS) if ok(1) else 0
        if verify:
            n = self._walk(n, cap, MAX_LAYERS)
        self.verified = verify or not self._extra.ok
        real = verify or not self._extra.ok
        if n == 0:  # no model fits: nothing to compare; the next depth is one layer
            one = self.estimate(1, real=real)[0]
            return FamilyWidth(self.repo, hidden, self.depth, 0, 0, 0, one, verified=self.verified)
        total, params = self.estimate(n, real=real)
        nxt = self.estimate(n + 1, real=real)[0] if n < MAX_LAYERS else None
        return FamilyWidth(self.repo, hidden, self.depth, n, params, total, nxt, limited_by_search=n >= MAX_LAYERS,
                           verified=self.verified)

    def _walk(self, n: int, cap: int, limit: int) -> int:
        fits = lambda k: k == 0 or self.estimate(k, real=True)[0] <= cap  # noqa: E731
        while n > 0 and not fits(n):
            n -= 1
        while n < limit and fits(n + 1):
            n += 1
        return n


# -- the family ---------------------------------------------------------------------------------------------------

def _width_key(config: dict, name: str) -> str:
    rest = {k: v for k, v in config.items() if k not in _NOT_WIDTH and k != name}
    rest.pop("layer_types", None)  # follows the depth (and the sliding-window fields kept in rest)
    return json.dumps(rest, sort_keys=True, default=str)


def family_configs(template: str, config: dict, *, scope: str = "family") -> tuple[list[tuple[str, dict, list[str]]],
                                                                                    list[str]]:
    """The widths to search: the template first, then (``scope="family"``) every other config of the shipped
    snapshot with the template's model_type, one per distinct width (repos equal but for the depth, the token
    ids or the release dtype are one width: the first named, the others listed). Returns ((repo, config,
    same-width repos) ..., skipped lines)."""
    from ..sources import snapshot

    if scope not in ("family", "template"):
        raise UsageError(f"scope must be 'family' or 'template', not {scope!r}")
    name = layer_field(config, template)
    out: list[tuple[str, dict, list[str]]] = [(template, config, [])]
    keys = {_width_key(config, name): 0}
    skipped: list[str] = []
    if scope == "template":
        return out, skipped
    index = snapshot.load_index() or {"models": {}}
    for repo in sorted(index["models"]):
        if repo.lower() == template.lower():
            continue
        entry = snapshot.lookup(repo)
        cfg = entry.config if entry is not None else None
        if not isinstance(cfg, dict) or cfg.get("model_type") != config.get("model_type"):
            continue
        try:
            key = _width_key(cfg, layer_field(cfg, repo))
        except HfmemError as exc:
            skipped.append(f"{repo}: {exc.message}")
            continue
        if key in keys:
            out[keys[key]][2].append(repo)
        else:
            keys[key] = len(out)
            out.append((repo, cfg, []))
    return out, skipped


def rule_of_thumb(job: str, settings, checkpoint_format: str = "bf16") -> tuple[float, str]:
    """The usual bytes-per-parameter rule (Adam + fp16 mixed precision needs 16 B per parameter — 2 B fp16 weights
    + 2 B fp16 gradients + 4 + 4 + 4 B fp32 master weights and Adam moments, activations not counted: Rajbhandari
    et al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models", 2019, section 3.1),
    generalised to the job's settings: full training, the model states per parameter of the precision and
    optimizer (``training.per_param_bytes``: 16 for amp-bf16 / deepspeed-bf16 + AdamW, 8 for pure bf16 + AdamW);
    LoRA / QLoRA / serving, the bytes per parameter of the
    frozen / served weights alone (2 for 16-bit, 0.5 for 4-bit), since the adapters are a fraction of a
    percent."""
    from ..scenarios import training

    if job == "train":
        if settings.method == "full":
            rate = training.per_param_bytes(settings.precision, settings.optimizer).model_states
            return rate, (f"capacity / {rate:g} B per parameter: the model states of full training in "
                          f"{settings.precision} with {settings.optimizer} (16 B/param for Adam in mixed precision: "
                          "the ZeRO paper's 2 + 2 + 12 bytes, Rajbhandari et al. 2019), no activations")
        rate = 0.5 if settings.method == "qlora" else float(training.precision_of(settings.precision).weight_bytes)
        return rate, (f"capacity / {rate:g} B per parameter: the frozen base weights of {settings.method} alone "
                      "(adapters, their optimizer and activations not counted)")
    from ..scenarios.weights import FORMATS

    fmt = settings.weights_format or checkpoint_format
    rate = FORMATS[fmt].bits / 8 if fmt in FORMATS else 2.0
    return rate, (f"capacity / {rate:g} B per parameter: the served weights alone (KV cache, activations and "
                  "the CUDA context not counted)")


def largest_in_family(template: str, *, job: str, gpu, settings=None, gpus: int = 1,
                      options: "Options | None" = None, scope: str = "family",
                      verify: str = "best") -> LargestInFamily:
    """The largest model of ``template``'s family that fits ``gpu`` for ``job`` ("train" with a
    ``TrainSettings``, "serve" with an ``InferenceSettings``; their defaults when None). ``gpu``: a ``GPU`` or a
    name/size for ``parse_gpu``; fits compare each estimate's ``device_total_bytes`` with its usable bytes
    (vLLM: times gpu_memory_utilization), as ``hfmem train`` / ``hfmem infer`` judge them. ``gpus``: the world
    size (train) or tensor-parallel degree (serve) when the settings leave it at 1. ``scope``: "family" (the
    snapshot's configs of the same model_type too) or "template" (its width only). ``verify``: "best" counts
    the template's width and the answer by real meta-model builds at n and n + 1 layers (the other rows come
    from the census extrapolated from 1 and 2 layers, ``FamilyWidth.verified`` False); "all" counts every row;
    "none" none (fastest: two builds per width). A build of a few hundred GPT-2 layers takes seconds
    (transformers initialises each Conv1D even on the meta device), a llama one tens of milliseconds."""
    import time

    from .. import api
    from .gpus import parse_gpu

    started = time.perf_counter()
    if job not in JOBS:
        raise UsageError(f"job must be one of {', '.join(JOBS)}, not {job!r}", hint="train or serve")
    if int(gpus) < 1:
        raise UsageError(f"gpus must be at least 1 (got {gpus})")
    gpu_obj = parse_gpu(gpu) if isinstance(gpu, str) else gpu
    if gpu_obj is None:
        raise UsageError("the largest model that fits needs a GPU", hint="e.g. RTX-3090, A100-80GB or 24GiB")
    report = api.analyze(template, options)
    if report.config is None and report.layout is None:  # an entry cached by an older hfmem: read it again
        from ..report import Options

        report = api.analyze(template, Options(**{**(options or Options()).__dict__, "use_cache": False}))
    if report.layout is not None or not isinstance(report.config, dict):
        raise UnsupportedArchitectureError(f"{template}: a {report.kind} repo, not one transformers model: "
                                           "hfmem cannot depth-scale it",
                                           hint="pick a decoder LM template such as meta-llama/Llama-3.2-1B")
    config = report.config
    if verify not in VERIFY:
        raise UsageError(f"verify must be one of {', '.join(VERIFY)}, not {verify!r}")
    widths_in, skipped = family_configs(template, config, scope=scope)
    built: list[tuple[_Width, FamilyWidth]] = []
    for repo, cfg, same in widths_in:
        try:
            w = _Width(repo, cfg, job, settings, gpu_obj, gpus)
            # the template's own width is counted unless verify="none"
            row = w.largest(verify=verify == "all" or (verify == "best" and not built))
        except (UnsupportedArchitectureError, SettingsError, UsageError) as exc:
            if not built:  # the template itself: its refusal is the answer
                raise
            skipped.append(f"{repo}: {exc.message}")
            continue
        row.same_width = sorted(same)
        built.append((w, row))
    first = built[0][0]
    order = lambda: sorted(range(len(built)), key=lambda i: (-built[i][1].params, i))  # noqa: E731
    while verify != "none":  # count the leader by real builds until the leader is a counted row
        top = order()[0]
        w, row = built[top]
        if row.verified:
            break
        fresh = w.largest(verify=True)
        fresh.same_width = row.same_width
        built[top] = (w, fresh)
    rows = [built[i][1] for i in order()]
    template_row = built[0][1]
    best = rows[0] if rows and rows[0].max_layers > 0 else None
    cap = first.capacity_bytes()
    rate, rule = rule_of_thumb(job, first.settings, first.checkpoint_format)
    name = first.field
    assumptions = list(first.filled) + [
        f"depth varied: {name} (and per-layer lists along their pattern); every other config field kept from "
        "each width's config.json",
        "each depth counted on the meta device from its config alone and estimated as `hfmem "
        f"{'train' if job == 'train' else 'infer'}` estimates a folder holding that config.json",
        f"fits judged on {cap:,} B per GPU ({gpu_obj.capacity_note()})",
        f"settings: {_settings_line(job, first.settings)}",
    ]
    if any(not r.verified for r in rows):
        assumptions.append("rows marked unverified: their depths come from the census extrapolated from 1 and 2 "
                           "layers (the template's width and the best were counted by meta-model builds)")
    if scope == "family":
        assumptions.append(f"widths: the template's and every other '{config.get('model_type')}' config in the "
                           "shipped snapshot, one per distinct width")
    return LargestInFamily(family=str(config.get("model_type")), job=job, gpu=gpu_obj.name, capacity_bytes=cap,
                           widths=rows, best=best, template_width=template_row, assumptions=assumptions,
                           rule_of_thumb_params=int(cap // rate), rule_of_thumb_bytes_per_param=rate,
                           rule_of_thumb=rule, seconds=time.perf_counter() - started, skipped=skipped)


def _settings_line(job: str, s) -> str:
    if job == "train":
        return (f"method {s.method}, precision {s.precision}, optimizer {s.optimizer}, batch {s.batch}, "
                f"seq {s.seq}, grad_ckpt {s.grad_ckpt}, gpus {s.gpus}" + (f", zero {s.zero}" if s.zero else ""))
    return (f"engine {s.engine}, context {s.context}, batch {s.batch}, weights {s.weights_format or 'checkpoint'}, "
            f"tp {s.tp}")
