"""``hfmem train`` says what it assumes and refuses what it cannot honour: PEFT's default LoRA targets, no silent
precision substitution under --zero / --rlhf, an advisor that judges the estimate it is shown (RLHF included)
and ranks only remedies that save memory, and sequence lengths checked against the model's positions. Expected
values come from hand counts, real PEFT, the ZeRO paper, or the model's config.json -- never hfmem's output."""

from __future__ import annotations

import warnings

import pytest

import hfmem
from hfmem.api import train
from tests.conftest import json_out, run_hfmem


def _train(model, **kw):
    return train(model, hfmem.Options(offline=True), **kw)


def _one_line_error(proc, *words):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


# -- 1. --lora-targets default = PEFT's target_modules=None ------------------------------------------------

def test_cli_lora_targets_default_is_peft_default_for_llama():
    proc = run_hfmem("train", "meta-llama/Llama-2-7b-hf", "--method", "lora", "--lora-targets", "default",
                     "--lora-rank", "8", "--offline", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    m = json_out(proc)["models"][0]
    # hand: PEFT's default for llama is q_proj, v_proj (4096 -> 4096 each); per layer 2 x r x (in + out)
    assert m["trainable_parameters"] == 32 * 2 * 8 * (4096 + 4096) == 4_194_304
    assert m["adapters"]["targets"] == ["q_proj", "v_proj"]
    said = [a for a in m["assumptions"] if "PEFT's default" in a]
    assert said and "q_proj, v_proj" in said[0]


def test_default_targets_match_real_peft_on_a_tiny_llama():
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model

    from hfmem.inventory.meta_model import build_model, measure
    from hfmem.scenarios.finetune import TrainSettings, estimate_training

    cfg = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
           "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "vocab_size": 128, "max_position_embeddings": 256}
    tensors = measure(build_model(cfg, cfg["architectures"][0])[0])["tensors"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(build_model(cfg, cfg["architectures"][0])[0], LoraConfig(r=4, target_modules=None))
    peft_trainable = pm.get_nb_trainable_parameters()[0]
    est = estimate_training(tensors, cfg, TrainSettings(method="lora", lora_rank=4, lora_targets=None, seq=64))
    assert est.trainable_params == peft_trainable
    # hand: q_proj 64 -> 64, v_proj 64 -> 32 (2 KV heads of 16): 2 layers x 4 x ((64 + 64) + (64 + 32))
    assert peft_trainable == 2 * 4 * ((64 + 64) + (64 + 32))


# -- 2. no silent precision substitution -------------------------------------------------------------------

def test_cli_zero_with_fp32_is_honoured_with_the_zero_papers_accounting():
    proc = run_hfmem("train", "meta-llama/Llama-2-7b-hf", "--zero", "2", "--precision", "fp32", "--gpus", "8",
                     "--offline", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    m = json_out(proc)["models"][0]
    assert m["inputs"]["precision"] == "fp32"
    c, n, dp = m["components"], 6_738_415_616, 8
    # ZeRO paper §5 with fp32 widths: parameters 4Ψ (whole until stage 3), gradients 4Ψ/N from stage 2, and
    # K = 12 (fp32 master + Adam momentum + variance) partitioned from stage 1: 12Ψ/N
    assert c["weights_bytes"] == 4 * n
    assert c["gradients_bytes"] == pytest.approx(4 * n / dp, rel=1e-6)
    assert c["master_weights_bytes"] + c["optimizer_bytes"] == pytest.approx(12 * n / dp, rel=1e-6)
    assert not any("--precision not given" in a for a in m["assumptions"])


@pytest.mark.parametrize("prec", ["bf16", "amp-bf16", "fp16"])
def test_cli_zero_with_a_torch_half_precision_is_refused(prec):
    proc = run_hfmem("train", "meta-llama/Llama-2-7b-hf", "--zero", "2", "--precision", prec, "--offline")
    _one_line_error(proc, f"--precision {prec}", "--zero 2", "deepspeed-bf16")


def test_cli_zero_default_precision_is_stated():
    proc = run_hfmem("train", "meta-llama/Llama-2-7b-hf", "--zero", "2", "--gpus", "8", "--offline", "--format",
                     "json")
    m = json_out(proc)["models"][0]
    assert m["inputs"]["precision"] == "deepspeed-bf16"
    assert any("--precision not given" in a and "deepspeed-bf16" in a for a in m["assumptions"])


def test_cli_rlhf_keeps_the_precision_asked_and_states_its_defaults():
    asked = json_out(run_hfmem("train", "Qwen/Qwen2.5-3B", "--rlhf", "ppo", "--precision", "bf16", "--gpus", "4",
                               "--offline", "--format", "json"))["models"][0]
    assert asked["inputs"]["precision"] == "bf16" and asked["inputs"]["fsdp"] == "full_shard"
    assert any("FSDP full_shard" in a and "--rlhf" in a for a in asked["assumptions"])
    assert not any("--precision not given" in a for a in asked["assumptions"])
    chosen = json_out(run_hfmem("train", "Qwen/Qwen2.5-3B", "--rlhf", "ppo", "--gpus", "4", "--offline",
                                "--format", "json"))["models"][0]
    assert chosen["inputs"]["precision"] == "amp-bf16"
    assert any("--precision not given" in a and "amp-bf16" in a for a in chosen["assumptions"])
    for m in (asked, chosen):  # the RLHF estimate carries the same assumptions
        assert m["assumptions"][0] in m["rlhf"]["assumptions"]


# -- 3. the advisor advises --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ppo_advice():
    proc = run_hfmem("train", "Qwen/Qwen2.5-14B", "--rlhf", "ppo", "--gpus", "4", "--gpu", "A800-80GB", "--advise",
                     "--offline", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json_out(proc)["models"][0]


def test_rlhf_advisor_judges_the_rlhf_estimate(ppo_advice):
    m = ppo_advice
    assert m["advice_judges"] == "rlhf"
    assert m["advice_device_total_bytes"] == m["rlhf"]["device_total_bytes"] == m["device_total_bytes"]
    # each remedy's saving is against that headline: saves = headline - its own total
    for r in m["remedies"]:
        if r["saves_bytes"] is not None:
            assert r["saves_bytes"] == m["device_total_bytes"] - r["device_total_bytes"]


def _check_ranking(remedies, helping, not_helping):
    by_id = {r["id"]: r for r in remedies}
    assert helping and all(by_id[i]["saves_bytes"] > 0 for i in helping)
    apart = {d["id"] for d in not_helping}
    for r in remedies:
        if r["applicable"] is None:
            continue
        if r["saves_bytes"] is None or r["saves_bytes"] <= 0 or r["applicable"] is False:
            assert r["id"] in apart and r["id"] not in helping and r["why_not_helping"]
    assert all(d["why"] for d in not_helping)


def test_rlhf_advisor_ranks_only_savings(ppo_advice):
    _check_ranking(ppo_advice["remedies"], ppo_advice["remedies_that_help"], ppo_advice["remedies_that_do_not_help"])


def test_rlhf_plan_line_names_its_plan(ppo_advice):
    plan = ppo_advice["plan"]
    assert plan is not None and plan["changes"]
    assert " with :" not in plan["sentence"]
    for key, value in plan["changes"].items():
        if key in ("precision", "attn", "fsdp", "zero"):
            assert str(value) in plan["sentence"], (key, value, plan["sentence"])
    assert "--rlhf ppo" in plan["command"]


def test_70b_lora_advice_table_lists_non_savings_apart():
    r = _train("meta-llama/Llama-2-70b-hf", method="lora", gpus=8, gpu="H100-80GB", advise=True)
    rem = [x.to_dict() for x in r.advice.remedies]
    _check_ranking(rem, r.advice.helping, r.advice.not_helping)
    from hfmem.render.train import markdown_train

    md = markdown_train([r])
    ranked = md.split("### If it runs out of memory")[1].split("#### Does not help here")[0]
    rows = [ln.split("|") for ln in ranked.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert rows and all(not cells[3].strip().startswith("-") and cells[3].strip() != "0 B" for cells in rows)
    assert "#### Does not help here" in md and "already lora" in md


def test_zero_on_one_gpu_is_not_ranked():
    """Pure bf16 (8 B/param) -> DeepSpeed bf16 on one GPU (16 B/param, nothing sharded) costs memory."""
    r = _train("meta-llama/Llama-2-7b-hf", precision="bf16", gpu="A100-80GB", advise=True)
    z1 = next(x for x in r.advice.remedies if x.id == "zero1")
    assert z1.saves_bytes < 0 and z1.helps is False and "zero1" not in r.advice.helping
    assert "more per GPU" in z1.why_not_helping


def test_plan_sentence_names_changes_it_has_no_words_for():
    from dataclasses import replace

    from hfmem.plan import advisor
    from hfmem.scenarios.finetune import TrainSettings

    base = TrainSettings()
    assert "--optimizer sgd" in advisor._describe(base, replace(base, optimizer="sgd"))
    assert "amp-bf16" in advisor._describe(replace(base, fsdp="full_shard", gpus=4, precision="bf16"),
                                           replace(base, fsdp="full_shard", gpus=4, precision="amp-bf16"))


# -- 4. sequence length against the model's positions ------------------------------------------------------

def test_cli_bert_longer_than_its_position_table_is_refused():
    # bert-base-uncased's config.json: max_position_embeddings 512 (a learned table of 512 rows)
    proc = run_hfmem("train", "google-bert/bert-base-uncased", "--seq", "921", "--offline")
    _one_line_error(proc, "--seq 921", "max_position_embeddings 512")
    # GPT-2: n_positions 1024
    _one_line_error(run_hfmem("train", "openai-community/gpt2", "--seq", "2048", "--offline"),
                    "max_position_embeddings 1,024")


def test_bert_default_sequence_is_its_table_and_said():
    r = _train("google-bert/bert-base-uncased", gpu="A100-80GB")
    assert r.estimate.settings.seq == 512
    assert any("--seq not given: 512" in a for a in r.estimate.assumptions)
    # the longest sequence that runs is the table, whatever the memory allows
    assert r.max_seq == 512 and r.max_seq_limited_by == "model"


def test_rope_model_beyond_its_max_positions_is_warned_as_infer_does():
    r = _train("meta-llama/Llama-2-7b-hf", seq=8192)
    mpe = r.report.config["max_position_embeddings"]
    assert mpe < 8192
    phrase = f"exceeds the model's max_position_embeddings {mpe:,}: quality degrades beyond it unless rope scaling"
    assert any(phrase in n for n in r.notes)
    inf = hfmem.infer("meta-llama/Llama-2-7b-hf", hfmem.Options(offline=True), context=8192)
    assert any(phrase in n for n in inf.estimate.notes)
    assert not any("exceeds" in n for n in _train("meta-llama/Llama-2-7b-hf", seq=mpe).notes)
