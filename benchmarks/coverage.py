#!/usr/bin/env python
"""Coverage of the most-downloaded model types on the Hub (issue 13, item 6).

    python benchmarks/coverage.py --update-docs      # rewrites docs/coverage.md's generated block
    python benchmarks/coverage.py --only resnet,t5   # a few types, printed (and written to --json)

For each model type (``model_type``): a config (a real repo's from the shipped snapshot or
tests/data/hub-configs/, else transformers' configuration defaults with the task class people use), then
through the public API (``hfmem.api``, ``Options(offline=True)``, a fresh ``HFMEM_HOME``):

* calc: ``analyze`` on the full config: the parameter count;
* infer / train: ``infer`` (batch 2, context 384, 2 new tokens, bf16; images at the config's size, 5 s of audio)
  and ``train`` (bf16, AdamW foreach, batch 2, seq 256) on a copy of the config with 2 layers per stack;
* simulate: ``simulate_model`` at the same settings, ``mode`` "infer" and "train", on the same reduced copy.

The error is ``estimate.peak_allocated_bytes / simulation.peak_allocated_bytes - 1``. Models without a text
decoder (vision, audio, CLIP-style, encoder-decoders; text encoders when served) are estimated by hfmem from a
simulation of their own code at the asked settings (hfmem/scenarios/by_simulation.py), so their error is 0 by
construction: the ``method`` column says which answers are closed forms and which come from the model's code.
An ``HfmemError`` is recorded with its one-line message (what the CLI prints); any other exception is a bug
and is recorded as one (its type and message), so that one model cannot stop the report.

The settings are held out: the closed forms were calibrated on other shapes (benchmarks/calibrate*.py), and
nothing here is fitted. The depth reduction keeps each stack's layer kinds (a MoE model keeps a MoE layer).
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOC = ROOT / "docs" / "coverage.md"
OUT = ROOT / "benchmarks" / "results" / "coverage.json"
BEGIN, END = "<!-- coverage:begin -->", "<!-- coverage:end -->"
TOLERANCE = 0.05  # the target: each estimate within 5% of the simulation

# The held-out settings (benchmarks/calibrate.py and calibrate_infer.py fit other shapes).
INFER = dict(batch=2, context=384, new_tokens=2, audio_seconds=5.0)
TRAIN = dict(batch=2, seq=256, audio_seconds=5.0)
REDUCED_LAYERS = 2

# ---------------------------------------------------------------- the ranking
# huggingface/transformers-stats-space-data: Hugging Face's own weekly table of Hub downloads per transformers
# model_type (the "model_names" column; num_downloads over the week), the data behind the transformers-stats
# Space. The newest week whose file could be read here is week 41 of 2023 (commit b3d8a1f8; the 2024 files
# data_10_2024.csv / data_11_2024.csv are listed in the repository but their content was not available), and
# only its first 31 rows. Rank and weekly downloads as published there:
RANKING_URL = ("https://huggingface.co/datasets/huggingface/transformers-stats-space-data/raw/"
               "b3d8a1f829fc8a7530e3533867a9a246bafe2352/data_41_2023.csv")
RANKING_WEEK = "week 41 of 2023 (October 2023)"
SOURCE_RANK = {
    "bert": (1, 107_844_734), "wav2vec2": (2, 76_606_694), "roberta": (3, 47_528_481), "llama": (4, 33_622_951),
    "distilbert": (5, 32_289_960), "clip": (6, 32_191_540), "gpt2": (7, 32_121_588), "t5": (8, 23_122_156),
    "xlm-roberta": (9, 21_787_383), "deberta-v2": (10, 13_186_028), "mpnet": (11, 9_555_759),
    "bart": (12, 9_180_319), "deberta": (13, 8_067_076), "albert": (14, 7_286_719), "vit": (15, 6_702_934),
    "camembert": (16, 5_118_129), "layoutlmv3": (17, 5_004_691), "electra": (18, 4_984_376),
    "marian": (19, 4_332_465), "vision-encoder-decoder": (20, 4_011_283), "bloom": (21, 2_999_033),
    "longformer": (22, 2_991_461), "opt": (23, 2_870_984), "gpt_neox": (24, 2_295_740), "dpt": (25, 1_921_836),
    "convbert": (26, 1_815_071), "resnet": (27, 1_768_905), "layoutlmv2": (28, 1_580_392), "fnet": (29, 1_549_034),
    "hubert": (30, 1_471_740), "falcon": (31, 1_331_733),
}
# The types the brief names (the model types behind today's most-downloaded repos). Those below the
# published rows above (most were released after October 2023) follow the ranked ones, in this order.
BRIEF = ["bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "deberta-v2", "modernbert", "electra", "albert",
         "gpt2", "llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "qwen2_vl", "qwen2_5_vl", "gemma",
         "gemma2", "gemma3", "phi", "phi3", "gpt_neox", "opt", "falcon", "t5", "mt5", "bart", "marian", "whisper",
         "wav2vec2", "hubert", "wavlm", "clip", "siglip", "vit", "dinov2", "convnext", "resnet", "swin", "deit",
         "beit", "segformer", "detr", "blip", "llava", "gpt_oss", "deepseek_v3", "mobilenet_v2"]

# ---------------------------------------------------------------- the configs
# model_type -> a real repo's config (under cache/models/ or tests/data/hub-configs/), or
# ("defaults", task class): AutoConfig.for_model(model_type).to_dict() with that class as "architectures".
CONFIGS: dict[str, str | tuple[str, str]] = {
    "bert": "google-bert/bert-base-uncased", "roberta": "FacebookAI/roberta-base",
    "modernbert": "answerdotai/ModernBERT-base", "gpt2": "openai-community/gpt2",
    "llama": "meta-llama/Llama-3.2-1B", "mistral": "mistralai/Mistral-7B-v0.1",
    "mixtral": "mistralai/Mixtral-8x7B-v0.1", "qwen2": "Qwen/Qwen2-0.5B-Instruct", "qwen3": "Qwen/Qwen3-0.6B",
    "qwen3_moe": "Qwen/Qwen3-30B-A3B", "qwen2_vl": "Qwen/Qwen2-VL-2B-Instruct", "gemma": "google/gemma-2b-it",
    "gemma2": "google/gemma-2-2b-it", "phi3": "microsoft/Phi-3-mini-4k-instruct",
    "gpt_neox": "togethercomputer/RedPajama-INCITE-Chat-3B-v1", "t5": "google-t5/t5-small",
    "bart": "facebook/bart-large", "whisper": "openai/whisper-large-v3", "wav2vec2": "facebook/wav2vec2-base-960h",
    "hubert": "facebook/hubert-large-ls960-ft", "clip": "openai/clip-vit-large-patch14",
    "siglip": "google/siglip-base-patch16-224", "vit": "google/vit-base-patch16-224",
    "convnext": "facebook/convnext-tiny-224", "resnet": "microsoft/resnet-50", "llava": "llava-hf/llava-1.5-7b-hf",
    "gpt_oss": "openai/gpt-oss-20b", "deepseek_v3": "deepseek-ai/DeepSeek-V3",
    # no real config at hand: transformers' defaults, with the class the popular checkpoints load
    "xlm-roberta": ("defaults", "XLMRobertaForMaskedLM"), "distilbert": ("defaults", "DistilBertForMaskedLM"),
    "mpnet": ("defaults", "MPNetForMaskedLM"), "deberta-v2": ("defaults", "DebertaV2ForMaskedLM"),
    "deberta": ("defaults", "DebertaForMaskedLM"), "electra": ("defaults", "ElectraForPreTraining"),
    "albert": ("defaults", "AlbertForMaskedLM"), "camembert": ("defaults", "CamembertForMaskedLM"),
    "longformer": ("defaults", "LongformerForMaskedLM"), "convbert": ("defaults", "ConvBertForMaskedLM"),
    "fnet": ("defaults", "FNetForMaskedLM"), "qwen2_5_vl": ("defaults", "Qwen2_5_VLForConditionalGeneration"),
    "gemma3": ("defaults", "Gemma3ForConditionalGeneration"),  # google/gemma-3-1b-it in the snapshot is gemma3_text
    "phi": ("defaults", "PhiForCausalLM"),  # microsoft/phi-2 in the snapshot is the old remote-code "phi-msft"
    "opt": ("defaults", "OPTForCausalLM"), "falcon": ("defaults", "FalconForCausalLM"),
    "bloom": ("defaults", "BloomForCausalLM"), "mt5": ("defaults", "MT5ForConditionalGeneration"),
    "marian": ("defaults", "MarianMTModel"), "wavlm": ("defaults", "WavLMForCTC"),
    "dinov2": ("defaults", "Dinov2ForImageClassification"), "swin": ("defaults", "SwinForImageClassification"),
    "deit": ("defaults", "DeiTForImageClassification"), "beit": ("defaults", "BeitForImageClassification"),
    "segformer": ("defaults", "SegformerForSemanticSegmentation"), "detr": ("defaults", "DetrForObjectDetection"),
    "dpt": ("defaults", "DPTForDepthEstimation"), "blip": ("defaults", "BlipForConditionalGeneration"),
    "mobilenet_v2": ("defaults", "MobileNetV2ForImageClassification"),
    "layoutlmv3": ("defaults", "LayoutLMv3ForTokenClassification"),
    "layoutlmv2": ("defaults", "LayoutLMv2ForTokenClassification"),
    # its defaults need an encoder and a decoder: ViT + GPT-2, as nlpconnect/vit-gpt2-image-captioning pairs them
    "vision-encoder-decoder": ("defaults", "VisionEncoderDecoderModel"),
}


def model_types() -> list[str]:
    """The rows in order: the source's ranked types, then the brief's types the source does not rank."""
    ranked = sorted(SOURCE_RANK, key=lambda t: SOURCE_RANK[t][0])
    return ranked + [t for t in BRIEF if t not in SOURCE_RANK]


def _snapshot_config(repo: str) -> tuple[dict, str]:
    for base, label in ((ROOT / "cache" / "models", "snapshot"), (ROOT / "tests" / "data" / "hub-configs",
                                                                  "hub-configs")):
        path = base / repo / "config.json"
        if path.is_file():
            return json.loads(path.read_text()), f"{label}: {repo}"
    raise FileNotFoundError(f"no config.json for {repo} in cache/models/ or tests/data/hub-configs/")


def config_for(model_type: str) -> tuple[dict, str]:
    """(config.json as a dict, where it came from)."""
    spec = CONFIGS[model_type]
    if isinstance(spec, str):
        return _snapshot_config(spec)
    from transformers import AutoConfig

    arch = spec[1]
    if model_type == "vision-encoder-decoder":
        from transformers import GPT2Config, ViTConfig, VisionEncoderDecoderConfig

        cfg = VisionEncoderDecoderConfig.from_encoder_decoder_configs(ViTConfig(), GPT2Config()).to_dict()
        how = "transformers defaults (ViTConfig + GPT2Config)"
    else:
        cfg = AutoConfig.for_model(model_type).to_dict()
        how = "transformers defaults"
    cfg["architectures"] = [arch]
    cfg.setdefault("model_type", model_type)
    return cfg, f"{how}, {arch}"


# ---------------------------------------------------------------- the reduced copy

_DEPTH_KEYS = ("num_hidden_layers", "encoder_layers", "decoder_layers", "num_layers", "num_decoder_layers",
               "n_layer", "depth")
_SUB_CONFIGS = ("text_config", "vision_config", "audio_config", "encoder", "decoder", "backbone_config")


def reduce_depth(config: dict, layers: int = REDUCED_LAYERS) -> tuple[dict, list[str]]:
    """A copy of ``config`` with every stack cut to ``layers`` layers (and per-stage ``depths`` to at most
    ``layers``), and the lists indexed by layer cut to match; the changes, one "path: before -> after" each.
    A MoE model whose first dense layers would fill the reduced stack keeps one dense layer and one MoE layer
    (DeepSeek's ``first_k_dense_replace``), so the reduced copy still has both layer kinds."""
    out = copy.deepcopy(config)
    changes: list[str] = []

    def config_at(path: str) -> dict:
        d = config
        for part in filter(None, path.split(".")):
            d = d.get(part) or {}
        return d

    def walk(d: dict, path: str) -> None:
        for key in _DEPTH_KEYS:
            v = d.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and v > layers:
                d[key] = layers
                changes.append(f"{path}{key}: {v} -> {layers}")
        if isinstance(d.get("depths"), list) and any(isinstance(x, int) and x > layers for x in d["depths"]):
            new = [min(int(x), layers) for x in d["depths"]]
            changes.append(f"{path}depths: {d['depths']} -> {new}")
            d["depths"] = new
        n = d.get("num_hidden_layers")
        if isinstance(n, int) and isinstance(d.get("layer_types"), list) and len(d["layer_types"]) > n:
            d["layer_types"] = d["layer_types"][:n]
            changes.append(f"{path}layer_types: cut to {n}")
        k = d.get("first_k_dense_replace")
        if isinstance(n, int) and isinstance(k, int) and k >= n:
            d["first_k_dense_replace"] = n - 1
            changes.append(f"{path}first_k_dense_replace: {k} -> {n - 1}")
        if n is not None and n != config_at(path).get("num_hidden_layers"):
            # backbone-style configs (DINOv2, BEiT) name their output stage by layer ("stage12"): let the
            # config class derive it again from the new depth (its default: the last stage)
            for key in ("out_features", "out_indices", "stage_names"):
                if d.pop(key, None) is not None and key == "out_features":
                    changes.append(f"{path}out_features: dropped (the last stage by default)")
        depth = d.get("depth")
        if isinstance(depth, int) and isinstance(d.get("fullatt_block_indexes"), list):
            d["fullatt_block_indexes"] = [i for i in d["fullatt_block_indexes"] if i < depth] or [depth - 1]
        for sub in _SUB_CONFIGS:
            if isinstance(d.get(sub), dict):
                walk(d[sub], f"{path}{sub}.")

    walk(out, "")
    return out, changes


# ---------------------------------------------------------------- one model


def _error_line(exc: BaseException) -> str:
    from hfmem.errors import HfmemError

    if isinstance(exc, HfmemError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"bug: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def _attempt(fn):
    """(value, None) or (None, one-line message)."""
    try:
        return fn(), None
    except Exception as exc:  # noqa: BLE001  (every failure is a finding; a non-hfmem one is labelled a bug)
        return None, _error_line(exc)


def _method(estimate) -> str:
    from hfmem.scenarios.by_simulation import SOURCE

    return "from the model's code" if any(SOURCE in a for a in estimate.assumptions) else "closed form (calibrated)"


def _with_defaults(config: dict) -> dict:
    """``config`` with the values its transformers configuration class fills in (SigLIP's config.json leaves its
    text tower's 64 positions to the class default); ``config`` itself where the class refuses it."""
    from transformers import AutoConfig

    try:
        rest = {k: v for k, v in config.items() if k != "model_type"}
        return AutoConfig.for_model(config["model_type"], **rest).to_dict()
    except Exception:  # noqa: BLE001  (then the raw file is all there is; the run reports what fails)
        return config


def text_positions(config: dict) -> int | None:
    """The fewest positions among the model's text stacks (``max_position_embeddings`` at the top level and in
    ``text_config``): CLIP's text tower has 77, SigLIP's 64, so the held-out text lengths are cut to them, for
    the estimate and the simulation alike (train refuses a longer --seq; transformers' code cannot run one)."""
    config = _with_defaults(config)
    found = [c.get("max_position_embeddings") for c in (config, config.get("text_config") or {})
             if isinstance(c, dict)]
    found = [int(v) for v in found if isinstance(v, int) and v > 0]
    return min(found) if found else None


def settings_for(config: dict) -> tuple[dict, dict]:
    """The infer and train settings for ``config``: INFER / TRAIN, text lengths within its position table."""
    limit = text_positions(config)
    infer, train = dict(INFER), dict(TRAIN)
    if limit:
        infer["context"] = min(infer["context"], limit)
        train["seq"] = min(train["seq"], limit)
    return infer, train


def _folder(config: dict, parent: Path, name: str) -> str:
    d = parent / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config))
    return str(d)


def cover(model_type: str, workdir: str | os.PathLike | None = None) -> dict:
    """One row of the coverage report for ``model_type``: calc on the full config, infer / train / simulate on
    the reduced copy, each with its estimate, simulated peak, error and the one-line message of any failure."""
    from hfmem import api

    started = time.perf_counter()
    opts = api.Options(offline=True)
    parent = Path(workdir or tempfile.mkdtemp(prefix="hfmem-coverage-"))
    row: dict = {"model_type": model_type, "source_rank": (SOURCE_RANK.get(model_type) or (None,))[0],
                 "source_weekly_downloads": (SOURCE_RANK.get(model_type) or (None, None))[1],
                 "in_brief": model_type in BRIEF}
    found, err = _attempt(lambda: config_for(model_type)) if model_type in CONFIGS else (None, "no config chosen")
    cfg, how = found if found is not None else (None, None)
    row["config_source"] = how
    if cfg is None:
        row.update(calc={"ok": False, "message": err}, infer={"ok": False, "message": err},
                   train={"ok": False, "message": err}, simulate={"ok": False, "message": err},
                   elapsed_s=round(time.perf_counter() - started, 1))
        return row
    row["architecture"] = (cfg.get("architectures") or [None])[0]
    small, changes = reduce_depth(cfg)
    row["reduced"] = changes
    full_dir = _folder(cfg, parent, f"{model_type}-full")
    small_dir = _folder(small, parent, f"{model_type}-{REDUCED_LAYERS}layers")

    report, err = _attempt(lambda: api.analyze(full_dir, opts))
    row["calc"] = ({"ok": True, "params": report.inventory.num_params, "method": report.inventory.method}
                   if report is not None else {"ok": False, "message": err})

    infer_kw, train_kw = settings_for(small)
    row["settings"] = {"infer": infer_kw, "train": train_kw}
    sims = {}
    for mode, kw in (("infer", dict(infer_kw, dtype="bfloat16")),
                     ("train", dict(train_kw, dtype="bfloat16", optimizer="adamw", optimizer_impl="foreach"))):
        sim, err = _attempt(lambda: api.simulate_model(small_dir, mode, opts, **kw))
        sims[mode] = (sim.result.peak_allocated_bytes if sim is not None else None, err)
    sim_ok = all(v is not None for v, _ in sims.values())
    row["simulate"] = {"ok": sim_ok, "infer_peak_bytes": sims["infer"][0], "train_peak_bytes": sims["train"][0],
                       "message": "; ".join(f"{m}: {e}" for m, (_, e) in sims.items() if e) or None}

    estimates = {
        "infer": lambda: api.infer(small_dir, opts, weights_format="bf16", compute_dtype="bf16",
                                   **infer_kw).estimate,
        "train": lambda: api.train(small_dir, opts, precision="bf16", optimizer="adamw", adamw_impl="foreach",
                                   **train_kw).estimate,
    }
    for mode, run in estimates.items():
        est, err = _attempt(run)
        if est is None:
            row[mode] = {"ok": False, "message": err}
            continue
        sim_peak, sim_err = sims[mode]
        entry = {"ok": True, "estimate_peak_bytes": est.peak_allocated_bytes, "method": _method(est),
                 "simulated_peak_bytes": sim_peak}
        if sim_peak:
            entry["error"] = est.peak_allocated_bytes / sim_peak - 1
        else:
            entry["message"] = f"no simulation to compare with ({sim_err})"
        row[mode] = entry
    row["elapsed_s"] = round(time.perf_counter() - started, 1)
    return _without_folder(row, f"{parent}/")


def _without_folder(value, prefix: str):
    """``value`` with the temporary folder's path cut from the messages (they name the config folder)."""
    if isinstance(value, dict):
        return {k: _without_folder(v, prefix) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_folder(v, prefix) for v in value]
    return value.replace(prefix, "") if isinstance(value, str) else value


def meets_target(row: dict) -> bool:
    """All four answer, and infer and train are each within TOLERANCE of the simulation."""
    return (row["calc"]["ok"] and row["simulate"]["ok"]
            and all(row[m]["ok"] and row[m].get("error") is not None and abs(row[m]["error"]) <= TOLERANCE
                    for m in ("infer", "train")))


def reasons(row: dict) -> list[str]:
    """Why a row misses the target, one phrase per failing column."""
    out = []
    for col in ("calc", "infer", "train", "simulate"):
        e = row[col]
        if not e["ok"]:
            out.append(f"{col}: {e.get('message')}")
        elif col in ("infer", "train"):
            if e.get("error") is None:
                out.append(f"{col}: {e.get('message')}")
            elif abs(e["error"]) > TOLERANCE:
                out.append(f"{col}: estimate {e['estimate_peak_bytes'] / 2**20:,.1f} MiB vs simulated "
                           f"{e['simulated_peak_bytes'] / 2**20:,.1f} MiB ({e['error']:+.1%})")
    return out


# ---------------------------------------------------------------- the report


def _cell(e: dict) -> str:
    if not e["ok"]:
        return "✗"
    if e.get("error") is None:
        return "✓ (—)"
    return f"{'✓' if abs(e['error']) <= TOLERANCE else '✗'} {e['error']:+.2%}"


def _method_cell(row: dict) -> str:
    short = {"closed form (calibrated)": "closed form", "from the model's code": "model's code"}
    m = [short.get(row[c].get("method"), "—") for c in ("infer", "train")]
    return m[0] if m[0] == m[1] else f"{m[0]} / {m[1]}"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(rows: list[dict], meta: dict) -> str:
    brief = [r for r in rows if r["in_brief"]]
    ok_brief = sum(meets_target(r) for r in brief)
    ok_all = sum(meets_target(r) for r in rows)
    lines = [f"Generated {meta['date']} by `python benchmarks/coverage.py --update-docs` in {meta['elapsed_s']:.0f} s "
             f"(torch {meta['torch']}, transformers {meta['transformers']}, hfmem at {meta['commit']}). "
             f"Ranking: {meta['ranking']}.", "",
             "| # | model_type | source rank (downloads / week) | config | calc params | infer | train | simulate "
             "| method (infer / train) | reason |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        rank = (f"{r['source_rank']} ({r['source_weekly_downloads'] / 1e6:.1f} M)" if r["source_rank"]
                else "not in the published rows")
        params = f"{r['calc']['params']:,}" if r["calc"]["ok"] else "✗"
        cfg = r.get("config_source") or "—"
        if r.get("reduced"):
            cfg += f"; compared at {REDUCED_LAYERS} layers per stack"
        why = "; ".join(reasons(r))
        lines.append(f"| {i} | {r['model_type']}{'' if r['in_brief'] else ' †'} | {rank} | {_md_escape(cfg)} "
                     f"| {params} | {_cell(r['infer'])} | {_cell(r['train'])} | "
                     f"{'✓' if r['simulate']['ok'] else '✗'} | {_method_cell(r)} | {_md_escape(why)} |")
    by_code = sum(1 for r in brief if meets_target(r) and "model's code" in _method_cell(r))
    lines += ["", f"**Summary: {ok_brief} of the {len(brief)} model types the issue names meet the target** "
              f"(calc, infer, train and simulate all answer; infer and train each within {TOLERANCE:.0%} of the "
              f"simulation); {ok_all} of all {len(rows)} rows. Of the {ok_brief}, {by_code} are estimated from "
              "the model's own code for infer and/or train, where the error is 0 by construction (the estimate "
              "is that simulation, read back); the closed-form rows are the independent comparisons.", "",
              "† ranked in the source's published rows but not among the types the issue names.", ""]
    return "\n".join(lines)


HEADER = """# Coverage: the most-downloaded model types

What is measured: for each model type (`model_type`), whether hfmem's four commands answer through the
public API (`hfmem.api.analyze`, `infer`, `train`, `simulate_model`, offline, with a fresh `HFMEM_HOME`):

* **calc**: `analyze` on the full config; the parameter count it reports.
* **infer**: batch 2, context 384, 2 new tokens, bf16 weights and compute (images at the config's size,
  5 s of audio; Whisper pads to its 30 s window).
* **train**: full fine-tune, bf16, AdamW (foreach), batch 2, seq 256 (images and audio as for infer).
* **simulate**: `simulate_model` at the same settings, `mode` "infer" and "train".

The error is `estimate.peak_allocated_bytes / simulation.peak_allocated_bytes - 1` (✓ within 5%). infer,
train and simulate run on a copy of the config cut to 2 layers per stack (per-stage `depths` to at most 2) to
keep the run short; calc runs on the full config. These settings were not used for calibration. Text
lengths are cut to the model's position table where it is shorter (CLIP's text tower: 77, SigLIP's: 64),
for the estimate and the simulation alike.

**Method.** Decoder language models (and text encoders' training) are answered by closed forms calibrated
on other shapes: their error is an independent check. Models without a text decoder (vision, audio,
CLIP-style, encoder-decoders; text encoders when served) are estimated by hfmem from a simulation of their
own code at the asked settings, so their error is 0 by construction; the `method` column says which.

**Ranking.** Hugging Face publishes weekly Hub downloads per transformers `model_type` in the dataset
[huggingface/transformers-stats-space-data](https://huggingface.co/datasets/huggingface/transformers-stats-space-data)
(the data behind the transformers-stats Space). The newest week that could be read for this report is
[week 41 of 2023](https://huggingface.co/datasets/huggingface/transformers-stats-space-data/raw/b3d8a1f829fc8a7530e3533867a9a246bafe2352/data_41_2023.csv),
and only its first 31 rows; no newer ranking of model types by downloads was found. The rows are those
31 types in the source's order, then the types of today's most-downloaded repositories that the source's
rows do not reach (most were released after October 2023: Qwen2/3, Gemma, Phi-3, ModernBERT, gpt-oss,
DeepSeek-V3, ...), in the order the issue lists them. Treat the order of that second group as unranked.

**Configs.** A real repository's config.json where one ships with hfmem (cache/models/, the snapshot) or
with its tests (tests/data/hub-configs/); else transformers' configuration defaults
(`AutoConfig.for_model(model_type).to_dict()`) with `architectures` set to the task class the popular
checkpoints load. Regenerate with `python benchmarks/coverage.py --update-docs` (several minutes on two
cores); the raw rows are in benchmarks/results/coverage.json.

"""


def update_doc(block: str, path: Path = DOC) -> None:
    """Rewrite only the text between the markers (the file, with HEADER, when it does not exist yet)."""
    text = path.read_text() if path.exists() else HEADER + f"{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{block.rstrip()}\n{END}{tail}")


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip() + " (+ working tree)"
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--update-docs", action="store_true", help="rewrite docs/coverage.md's generated block")
    ap.add_argument("--only", help="comma-separated model types (default: all rows)")
    ap.add_argument("--json", type=Path, default=None, help=f"where the rows go (default with all rows: {OUT})")
    args = ap.parse_args(argv)
    types = args.only.split(",") if args.only else model_types()
    home = tempfile.mkdtemp(prefix="hfmem-coverage-home-")
    os.environ["HFMEM_HOME"] = home  # a fresh cache: nothing from earlier runs is reused
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    rows = []
    for t in types:
        try:
            row = cover(t)
        except Exception:  # noqa: BLE001  (a bug in this script: say so and go on)
            traceback.print_exc()
            raise
        rows.append(row)
        print(f"{t:24s} {'meets' if meets_target(row) else 'misses'} target  {row['elapsed_s']:6.1f} s  "
              f"{'; '.join(reasons(row))[:160]}", flush=True)
    from importlib.metadata import version

    meta = {"date": _dt.date.today().isoformat(), "elapsed_s": time.perf_counter() - started,
            "torch": version("torch"), "transformers": version("transformers"), "commit": _commit(),
            "ranking": f"{RANKING_URL} ({RANKING_WEEK})", "settings": {"infer": INFER, "train": TRAIN},
            "reduced_layers": REDUCED_LAYERS, "tolerance": TOLERANCE}
    out = args.json or (OUT if not args.only else None)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    block = render(rows, meta)
    if args.update_docs:
        update_doc(block)
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
