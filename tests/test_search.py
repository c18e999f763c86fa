"""``hfmem search`` (issue 17) against the local test Hub (tests/hubserver.py, the real huggingface_hub client) and
its listing fixtures (tests/listing_hub.py).

What each row says is checked against an independent run of the per-model commands: ``hfmem.api.infer`` /
``api.train`` / ``api.infer_llamacpp`` for the same model at the same settings, and the row's own ``command`` run
through the CLI. Rankings are checked against the fixture's listing inputs (``ListedRepo``: downloads, likes and
the safetensors totals the fixture module computed from the served headers), never against the search's own
numbers. Scan bounds and caching are checked by counting the requests the fake Hub received.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import json
import shlex
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

import listing_hub as LH
from conftest import ROOT, json_out, run_hfmem
from hubserver import in_flight_at_most
from hfmem import api
from hfmem.errors import HfmemError, UsageError
from hfmem.render.search import search_json
from hfmem.scenarios.finetune import TrainSettings
from hfmem.scenarios.inference import InferenceSettings
from hfmem.scenarios.llamacpp import LlamaCppSettings
from hfmem.sources import resolve
from hfmem.sources.listing import ListingQuery, list_models

TG = "text-generation"
GPU = "RTX-4090"

# A cheap mix for a serving search on a 24 GB card: models that fit, one that does not (Qwen2.5-14B: 14.8e9
# parameters x 2 bytes of bf16 alone is 29.5 GB > 24 GB), a gated repo, the custom-code repo, a GGUF repo, and a
# fill-mask model the task filter must leave out.
SERVE_SET = ["openai-community/gpt2", "Qwen/Qwen3-0.6B", "HuggingFaceTB/SmolLM2-135M-Instruct",
             "HuggingFaceTB/SmolLM2-360M-Instruct", "Qwen/Qwen2.5-14B", "meta-llama/Llama-3.2-1B",
             "fixture-custom/acme-mystery-7b", "fixture-gguf/tiny-llama-GGUF", "google-bert/bert-base-uncased"]


@pytest.fixture
def hub(fake_hub, monkeypatch):
    # hfmem reads HF_ENDPOINT when it builds each client (hfmem.sources.hub.endpoint), as tests/test_hub_fetch.py
    # relies on, so the in-process API talks to the fake.
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.endpoint)
    return fake_hub


def cli(*args: str) -> tuple[int, str, str]:
    """``hfmem ARGS`` in this process (hfmem.cli.main, the console script's entry point): exit code, stdout,
    stderr. The subprocess tests below (run_hfmem) check the same path end to end."""
    from hfmem.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def run_command(command: str) -> dict:
    """A row's ``command`` through the CLI with --format json: the one model entry it prints."""
    argv = shlex.split(command)
    assert argv[0] == "hfmem"
    code, out, err = cli(*argv[1:], "--format", "json")
    assert code == 0, err
    (entry,) = json.loads(out)["models"]
    return entry


def listing_requests(hub) -> list[dict[str, list[str]]]:
    """The query of every model-listing page request (``GET /api/models?...``), in order."""
    return [parse_qs(urlsplit(p).query) for m, p, _ in hub.requests if urlsplit(p).path == "/api/models"]


def model_requests(hub) -> list[str]:
    """Every request about one model (model info, files): anything but the listing itself."""
    return [p for m, p, _ in hub.requests if urlsplit(p).path != "/api/models" and "/api/agent" not in p]


def judged(report) -> list:
    return list(report.rows) + list(report.not_fitting)


def names(items) -> set[str]:
    return {getattr(x, "model", None) or x.repo_id for x in items}


def downloads_order(models, listed) -> list[str]:
    by = {x.repo_id: x for x in listed}
    return sorted(models, key=lambda m: -by[m].downloads)


# --------------------------------------------------------------------------------------------------------------------
# 1. serving rows are hfmem infer's answers, and the rankings follow the fixture's counts
# --------------------------------------------------------------------------------------------------------------------


SERVE = InferenceSettings(engine="vllm", context=4096, batch=1)  # the search's defaults, written out
LLAMA = LlamaCppSettings(context=4096, parallel=1)                # the CLI's --context 4096 --batch 1


def check_serving_rows(r, listed) -> set[str]:
    """Every judged row against ``hfmem infer`` (llama.cpp for GGUF) for that model at the same settings; the
    models that infer says fit."""
    by = {x.repo_id: x for x in listed}
    says_fits = set()
    for row in judged(r):
        if row.kind == "gguf":
            ref = api.infer_llamacpp(row.model, settings=LLAMA, gpu=GPU)
            need = max(d.total_bytes for d in ref.estimate.gpus)
            assert row.weights_format == ref.best == ref.variant.label
            assert (row.fits, row.needed_bytes, row.max_context) == (ref.fit.fits, need, ref.fit.max_context)
            assert row.margin_bytes == ref.fit.margin_bytes(ref.estimate)
            fits = ref.fit.fits
        else:
            ref = api.infer(row.model, settings=SERVE, gpu=GPU)
            f = ref.fit
            assert (row.fits, row.needed_bytes, row.capacity_bytes, row.margin_bytes, row.max_context,
                    row.max_batch) == (f.fits, f.needed_bytes, f.capacity_bytes, f.headroom_bytes, f.max_context,
                                       f.max_batch), row.model
            assert row.weights_format == ref.checkpoint_format and not row.format_changed
            fits = f.fits
        if fits:
            says_fits.add(row.model)
        # the listing's facts are carried through unchanged
        x = by[row.model]
        assert (row.downloads, row.likes, row.pipeline_tag, row.license, row.gated) == (
            x.downloads, x.likes, x.pipeline_tag, x.license, x.gated)
    assert names(r.rows) == says_fits and all(not x.fits for x in r.not_fitting)
    # ranked by the fixture's (invented, distinct) download counts, most first
    assert [x.model for x in r.rows] == downloads_order(says_fits, listed)
    return says_fits


def check_commands(rows) -> None:
    """Each row's command, run through the CLI with --format json, prints the row's numbers again."""
    for row in rows:
        entry = run_command(row.command)
        if row.kind == "gguf":
            assert entry["variant"]["label"] == row.weights_format
            assert entry["device_total_bytes"] == row.needed_bytes
        else:
            fit = entry["fit"]
            assert (fit["fits"], fit["needed_bytes"], fit["margin_bytes"], fit["max_context"]) == (
                row.fits, row.needed_bytes, row.margin_bytes, row.max_context), row.command


def test_serving_rows_equal_hfmem_infer_per_model(hub):
    listed = LH.populate(hub, only=SERVE_SET)
    r = api.search(ListingQuery(task=TG), gpu=GPU, limit=50)
    wanted = {x.repo_id for x in listed if x.pipeline_tag == TG}
    assert names(judged(r)) | names(r.skipped) == wanted  # bert (fill-mask) left out by the Hub's filter
    assert r.listed == r.scanned == len(wanted) and r.stopped_by == "end" and r.source == "hub"
    check_serving_rows(r, listed)
    assert "Qwen/Qwen2.5-14B" in names(r.not_fitting)  # 29.5 GB of bf16 weights on a 24 GB card

    # The models hfmem cannot judge, with the line `hfmem infer` prints for each and its exit code.
    skipped = {x.model: x for x in r.skipped}
    assert set(skipped) == {"meta-llama/Llama-3.2-1B", "fixture-custom/acme-mystery-7b"}
    for model, code in (("meta-llama/Llama-3.2-1B", 4), ("fixture-custom/acme-mystery-7b", 6)):
        with pytest.raises(HfmemError) as exc:
            api.infer(model, settings=SERVE, gpu=GPU)
        # the line hfmem infer raises, naming the model (prefixed with the repo id where the line does not)
        assert skipped[model].exit_code == code == exc.value.exit_code
        assert skipped[model].reason.startswith(model) and skipped[model].reason.endswith(str(exc.value))
    assert "gated" in skipped["meta-llama/Llama-3.2-1B"].reason  # the fake, like the Hub, gates the files

    # the commands of a fitting row, the row that does not fit and the GGUF row
    picks = [r.rows[0], *r.not_fitting, *[x for x in r.rows if x.kind == "gguf"]]
    check_commands(picks)


@pytest.mark.slow
def test_whole_fixture_catalog_serving_rows_and_commands(hub):
    """Every text-generation repo the fixture lists (37 + 2 GGUF + 1 custom-code), every row's command."""
    listed = LH.populate(hub)
    r = api.search(ListingQuery(task=TG), gpu=GPU, limit=100)
    wanted = {x.repo_id for x in listed if x.pipeline_tag == TG}
    assert names(judged(r)) | names(r.skipped) == wanted and r.stopped_by == "end"
    check_serving_rows(r, listed)
    assert {x.exit_code for x in r.skipped} <= {4, 6}
    assert {x.model for x in r.skipped if x.exit_code == 4} == {x.repo_id for x in listed if x.gated
                                                              and x.pipeline_tag == TG}
    check_commands(judged(r))


def test_rankings_by_likes_params_and_free(hub):
    only = ["openai-community/gpt2", "Qwen/Qwen3-0.6B", "HuggingFaceTB/SmolLM2-135M-Instruct",
            "HuggingFaceTB/SmolLM2-360M-Instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct"]
    listed = LH.populate(hub, only=only)
    by = {x.repo_id: x for x in listed}
    q = ListingQuery(task=TG)
    first = api.search(q, gpu=GPU, limit=50)
    assert names(first.rows) == set(only)  # all five are small enough for 24 GB (each < 2e9 parameters)
    likes = api.search(q, gpu=GPU, limit=50, sort="likes")
    assert [x.model for x in likes.rows] == sorted(only, key=lambda m: -by[m].likes)
    # the Hub is asked in likes order (the scan meets the most liked first)
    assert listing_requests(hub)[-1]["sort"] == ["likes"]
    params = api.search(q, gpu=GPU, limit=50, sort="params")
    # the fixture's safetensors totals (ListedRepo.params) order the models the same way
    assert [x.model for x in params.rows] == sorted(only, key=lambda m: -by[m].params)
    free = api.search(q, gpu=GPU, limit=50, sort="free")
    headroom = {m: api.infer(m, settings=SERVE, gpu=GPU).fit.headroom_bytes for m in only}
    assert [x.model for x in free.rows] == sorted(only, key=lambda m: -headroom[m])
    largest = api.search(q, gpu=GPU, limit=50, largest=True)
    assert largest.largest.model == max(only, key=lambda m: by[m].params) == "HuggingFaceTB/SmolLM2-1.7B-Instruct"


# --------------------------------------------------------------------------------------------------------------------
# 2. training rows are hfmem train's answers
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lora", "full"])
def test_training_rows_equal_hfmem_train_per_model(hub, method):
    only = ["Qwen/Qwen3-0.6B", "HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct",
            "Qwen/Qwen2.5-14B", "fixture-gguf/tiny-llama-GGUF"]
    listed = LH.populate(hub, only=only)
    s = TrainSettings(method=method, seq=2048, batch=1)
    r = api.search(ListingQuery(task=TG), job="train", settings=s, gpu="A100-80GB", limit=50)
    assert names(judged(r)) | names(r.skipped) == set(only)
    says_fits = set()
    for row in judged(r):
        ref = api.train(row.model, settings=s, gpu="A100-80GB")
        assert (row.fits, row.max_batch, row.max_seq, row.needed_bytes) == (
            ref.fits, ref.max_batch, ref.max_seq, ref.estimate.device_total_bytes), row.model
        assert row.method == method and row.weights_format is None
        if ref.fits:
            says_fits.add(row.model)
    assert names(r.rows) == says_fits
    assert [x.model for x in r.rows] == downloads_order(says_fits, listed)
    if method == "full":
        # full bf16 fine-tuning with torch's AdamW (its two moments in the parameters' dtype) keeps 2 + 2 + 2 + 2
        # = 8 bytes per parameter (weights, gradients, exp_avg, exp_avg_sq): 14.8e9 x 8 = 118 GB > 80 GB
        assert "Qwen/Qwen2.5-14B" in names(r.not_fitting)
    # a GGUF repo is served, never trained: skipped with the line hfmem says about it
    (gguf,) = [x for x in r.skipped if x.model == "fixture-gguf/tiny-llama-GGUF"]
    assert gguf.exit_code == 6 and "GGUF" in gguf.reason
    # the row's command prints the row's numbers again
    for row in judged(r)[:2]:
        entry = run_command(row.command)
        assert (entry["fits"], entry["max_batch"], entry["max_seq"], entry["device_total_bytes"]) == (
            row.fits, row.max_batch, row.max_seq, row.needed_bytes), row.command


def test_two_gpus_and_non_default_training_flags_reproduce(hub):
    LH.populate(hub, only=["Qwen/Qwen2.5-14B", "fixture-gguf/tiny-llama-GGUF"])
    serve = api.search(None, gpu=GPU, gpus=2, limit=5)
    # tensor parallel over 2 x 24 GB: 29.5 GB of bf16 weights split in two fit where one card did not
    assert names(serve.rows) == {"Qwen/Qwen2.5-14B", "fixture-gguf/tiny-llama-GGUF"}
    assert all("--gpus 2" in x.command for x in serve.rows)
    ref = api.infer("Qwen/Qwen2.5-14B", settings=InferenceSettings(engine="vllm", context=4096, batch=1, tp=2),
                    gpu=GPU).fit
    row = next(x for x in serve.rows if x.model == "Qwen/Qwen2.5-14B")
    assert (row.needed_bytes, row.margin_bytes, row.max_context) == (ref.needed_bytes, ref.headroom_bytes,
                                                                   ref.max_context)
    check_commands(serve.rows)
    # a size instead of a catalog name, LoRA rank, checkpointing, batch and sequence: the command carries them all
    s = TrainSettings(method="lora", seq=1024, batch=2, lora_rank=64, grad_ckpt=True)
    train = api.search(None, job="train", settings=s, gpu="24GiB", gpus=2, limit=5)
    (row,) = judged(train)
    for flag in ("--method lora", "--batch 2", "--seq 1024", "--grad-ckpt", "--lora-rank 64", "--gpus 2",
                 "--gpu 24GiB"):
        assert flag in row.command, (flag, row.command)
    entry = run_command(row.command)
    assert (entry["fits"], entry["device_total_bytes"], entry["max_batch"], entry["max_seq"]) == (
        row.fits, row.needed_bytes, row.max_batch, row.max_seq)


# --------------------------------------------------------------------------------------------------------------------
# 3. the filters reach the Hub
# --------------------------------------------------------------------------------------------------------------------

FILTER_SET = ["openai-community/gpt2", "Qwen/Qwen3-0.6B", "HuggingFaceTB/SmolLM2-135M-Instruct",
              "Snowflake/snowflake-arctic-embed-m", "google-bert/bert-base-uncased", "meta-llama/Llama-3.2-1B",
              "fixture-gguf/tiny-llama-GGUF"]


def test_filters_reach_the_hub(hub):
    listed = LH.populate(hub, only=FILTER_SET)
    api.search(None, gpu=GPU, limit=50)  # judges every model once; the filtered searches read the row cache
    cases = [
        (ListingQuery(author="Qwen"), {"author": ["Qwen"]}, lambda x: x.repo_id.startswith("Qwen/")),
        (ListingQuery(task="fill-mask"), {"pipeline_tag": ["fill-mask"]}, lambda x: x.pipeline_tag == "fill-mask"),
        (ListingQuery(library="sentence-transformers"), {"filter": ["sentence-transformers"]},
         lambda x: x.repo_id == "Snowflake/snowflake-arctic-embed-m"),
        (ListingQuery(license="mit"), {"filter": ["license:mit"]}, lambda x: x.license == "mit"),
        (ListingQuery(gated=True), {"gated": ["true"]}, lambda x: x.gated),
        (ListingQuery(gated=False), {"gated": ["false"]}, lambda x: not x.gated),
        # 100M..200M, judged by the Hub on the safetensors total: a GGUF repo has none and never matches a bound
        (ListingQuery(min_params=100_000_000, max_params=200_000_000), {"num_parameters": ["min:100M,max:200M"]},
         lambda x: x.kind == "safetensors" and 100_000_000 <= x.params <= 200_000_000),
        (ListingQuery(search="smol"), {"search": ["smol"]}, lambda x: "smol" in x.repo_id.lower()),
    ]
    for query, sent, expect in cases:
        hub.clear_log()
        r = api.search(query, gpu=GPU, limit=50)
        (asked,) = listing_requests(hub)
        for key, value in sent.items():
            assert asked[key] == value, (query, asked)
        want = {x.repo_id for x in listed if expect(x)}
        assert want, query  # every case selects something
        assert names(judged(r)) | names(r.skipped) == want, query
        assert model_requests(hub) == []  # every row came from the cache of the first search
    bounds = {x.repo_id for x in listed if x.kind == "safetensors" and 100_000_000 <= x.params <= 200_000_000}
    assert bounds == {"openai-community/gpt2", "HuggingFaceTB/SmolLM2-135M-Instruct", "google-bert/bert-base-uncased",
                      "Snowflake/snowflake-arctic-embed-m"}


def test_cli_filter_flags_reach_the_hub(hub):
    LH.populate(hub, only=["Qwen/Qwen3-0.6B"])
    code, out, err = cli("search", "Qwen3", "--task", TG, "--library", "transformers", "--author", "Qwen",
                         "--license", "apache-2.0", "--no-gated", "--min-params", "0.5B", "--max-params", "1B",
                         "--gpu", GPU, "--format", "json", "--quiet")
    assert code == 0, err
    (asked,) = listing_requests(hub)
    assert asked["search"] == ["Qwen3"] and asked["pipeline_tag"] == [TG] and asked["author"] == ["Qwen"]
    assert sorted(asked["filter"]) == ["license:apache-2.0", "transformers"]
    assert asked["gated"] == ["false"]
    assert asked["num_parameters"] == ["min:500M,max:1B"]  # 0.5B = 500,000,000 written in the Hub's syntax
    doc = json.loads(out)
    assert [x["model"] for x in doc["rows"]] == ["Qwen/Qwen3-0.6B"]
    assert doc["query"]["min_params"] == 500_000_000 and doc["query"]["max_params"] == 1_000_000_000


# --------------------------------------------------------------------------------------------------------------------
# 4. scan bounds, 6. the concurrency bound
# --------------------------------------------------------------------------------------------------------------------

# 14 repos: cheap ones, and gated ones (skipped after one refused file read)
SCAN_SET = ["HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-360M-Instruct", "openai-community/gpt2",
            "Qwen/Qwen3-0.6B", "google/gemma-2-2b-it", "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-3B-Instruct",
            "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-13b-hf", "meta-llama/Meta-Llama-3-8B",
            "meta-llama/Llama-3.1-8B-Instruct", "fixture-gguf/tiny-llama-GGUF", "fixture-custom/acme-mystery-7b",
            "google/gemma-2-9b-it"]


def test_limit_judges_exactly_n_and_pages_by_hand(hub):
    listed = LH.populate(hub, only=SCAN_SET)
    hub.page_cap = 5
    # per-model requests held back a while, so that the ones in flight together overlap visibly
    hub.set_fault("delay", path_contains="/api/models/", delay_s=0.25)
    r = api.search(None, gpu=GPU, limit=12)
    assert r.scanned == r.listed == 12 and r.stopped_by == "limit"
    # the 12 most downloaded of the 14, in the Hub's order (the fixture's counts)
    assert names(judged(r)) | names(r.skipped) == set(downloads_order(SCAN_SET, listed)[:12])
    # By hand: hfmem asks huggingface_hub for limit + 1 = 13 items (one more than it judges, to know whether the
    # listing goes on); huggingface_hub sends limit=13 and the fake serves pages of page_cap = 5: items 1-5, 6-10,
    # 11-15. The 13th item is on page 3, and nothing past it is read: 3 page requests.
    pages = listing_requests(hub)
    assert len(pages) == 3
    assert all(p["limit"] == ["13"] for p in pages)
    assert ["cursor" in p for p in pages] == [False, True, True]
    # 6. the per-model fetches overlap, but never more than MODELS_AT_ONCE at once
    infos = [sp for sp in hub.timeline if sp.path.startswith("/api/models/") and "/tree/" not in sp.path]
    assert len({sp.path for sp in infos}) >= 12
    assert 2 <= in_flight_at_most(infos) <= resolve.MODELS_AT_ONCE == 8


def test_time_budget_stops_the_scan(hub):
    LH.populate(hub, only=SCAN_SET[:4])
    r = api.search(None, gpu=GPU, limit=10, time_budget_s=1e-9)
    assert r.stopped_by == "time" and r.scanned < r.listed == 4
    assert r.scanned == len(judged(r)) + len(r.skipped)
    code, out, err = cli("search", "--gpu", GPU, "--limit", "10", "--time-budget", "0.000000001", "--format",
                         "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["scan"]["stopped_by"] == "time" and doc["scan"]["scanned"] < doc["scan"]["listed"] == 4


# --------------------------------------------------------------------------------------------------------------------
# 5. caching, by counting requests
# --------------------------------------------------------------------------------------------------------------------

CACHE_SET = ["openai-community/gpt2", "Qwen/Qwen3-0.6B", "HuggingFaceTB/SmolLM2-135M-Instruct",
             "fixture-gguf/tiny-llama-GGUF", "fixture-custom/acme-mystery-7b"]


def test_second_search_asks_nothing_and_refresh_lists_only(hub):
    LH.populate(hub, only=CACHE_SET)
    q = ListingQuery(task=TG)
    first = api.search(q, gpu=GPU, limit=50)
    assert first.scanned == 5 and first.rows_cached == 0 and not first.listing_cached
    before = len(hub.requests)
    second = api.search(q, gpu=GPU, limit=50)
    assert len(hub.requests) == before  # not one request: the listing and every row from hfmem's cache
    assert second.listing_cached and second.rows_cached == second.scanned == 5
    assert search_json(second)["rows"] == search_json(first)["rows"]
    assert search_json(second)["skipped"] == search_json(first)["skipped"]
    # a smaller limit is answered by the cached listing too
    smaller = api.search(q, gpu=GPU, limit=2)
    assert len(hub.requests) == before and smaller.scanned == 2 and smaller.stopped_by == "limit"

    # --refresh lists again (one page: 5 items < the fake's 1000-item page), every row still pinned to its commit
    hub.clear_log()
    again = api.search(q, gpu=GPU, limit=50, refresh=True)
    assert len(listing_requests(hub)) == 1 and model_requests(hub) == []
    assert not again.listing_cached and again.rows_cached == 5


def change_repo(hub, repo_id: str) -> str:
    """Register ``repo_id`` again with one file changed (a new README), so with a new commit sha."""
    fx = next(f for f in LH.MODELS if f.repo_id == repo_id)
    files = {"config.json": (ROOT / "cache" / "models" / repo_id / "config.json").read_bytes(),
             "README.md": b"# changed\n", **LH.safetensors_files(repo_id)}
    return hub.add_repo(repo_id, files, gated=fx.gated, library_name=fx.library_name, downloads=fx.downloads,
                        likes=fx.likes, pipeline_tag=fx.pipeline_tag, license=fx.license)


def test_changed_repo_is_judged_again(hub):
    LH.populate(hub, only=CACHE_SET[:3])
    q = ListingQuery(task=TG)
    first = api.search(q, gpu=GPU, limit=50)
    old_sha = next(x.revision for x in first.rows if x.model == "Qwen/Qwen3-0.6B")
    new_sha = change_repo(hub, "Qwen/Qwen3-0.6B")
    assert new_sha != old_sha
    hub.clear_log()
    changed = api.search(q, gpu=GPU, limit=50, refresh=True)
    assert changed.rows_cached == 2  # the two unchanged repos, pinned to their commits
    assert model_requests(hub) == [] or all("Qwen/Qwen3-0.6B" in p for p in model_requests(hub))


def test_changed_repo_row_is_pinned_to_the_listed_commit(hub):
    LH.populate(hub, only=CACHE_SET[:3])
    q = ListingQuery(task=TG)
    api.search(q, gpu=GPU, limit=50)
    new_sha = change_repo(hub, "Qwen/Qwen3-0.6B")
    hub.clear_log()
    changed = api.search(q, gpu=GPU, limit=50, refresh=True)
    row = next(x for x in changed.rows if x.model == "Qwen/Qwen3-0.6B")
    assert row.revision == new_sha  # the listing said new_sha; the row was judged on the old commit
    assert any("Qwen/Qwen3-0.6B" in p for p in model_requests(hub))  # the new commit's metadata was read
    # and being pinned to the listed commit, it is cached: a third search asks nothing
    before = len(hub.requests)
    third = api.search(q, gpu=GPU, limit=50)
    assert len(hub.requests) == before and third.rows_cached == 3


# --------------------------------------------------------------------------------------------------------------------
# 7. GGUF repos are judged by llama.cpp
# --------------------------------------------------------------------------------------------------------------------


def test_gguf_rows_are_llamacpp_answers_and_engine_lists_gguf_only(hub):
    only = ["fixture-gguf/Llama-3-8B-shaped-GGUF", "fixture-gguf/tiny-llama-GGUF", "Qwen/Qwen3-0.6B"]
    LH.populate(hub, only=only)
    # the quant labels the fixture's files carry (tests/listing_hub.py, tests/data/gguf/tiny-llama-GGUF)
    labels = {"fixture-gguf/Llama-3-8B-shaped-GGUF": {"Q4_K_M", "Q8_0"},
              "fixture-gguf/tiny-llama-GGUF": {p.stem.rsplit("-", 1)[1] for p in LH.TINY_GGUF.glob("*.gguf")}}
    for kw in ({}, {"engine": "llama.cpp"}):
        hub.clear_log()
        r = api.search(ListingQuery(task=TG), gpu=GPU, limit=50, **kw)
        gguf = [x for x in judged(r) if x.kind == "gguf"]
        assert names(gguf) == set(labels)
        llama = LlamaCppSettings(context=4096, parallel=1)
        for row in gguf:
            assert row.weights_format in labels[row.model]
            ref = api.infer_llamacpp(row.model, settings=llama, gpu=GPU)
            assert (row.weights_format, row.fits, row.needed_bytes, row.max_context) == (
                ref.best, ref.fit.fits, max(d.total_bytes for d in ref.estimate.gpus), ref.fit.max_context)
            assert row.parameters == sum(t.n_elements for t in ref.variant.tensors)
        if kw:
            (asked,) = listing_requests(hub)
            assert asked["filter"] == ["gguf"]
            assert names(judged(r)) | names(r.skipped) == set(labels)  # Qwen3-0.6B is not listed
            assert r.engine == "llama.cpp"
        else:
            assert "Qwen/Qwen3-0.6B" in names(r.rows)


# --------------------------------------------------------------------------------------------------------------------
# 8. --weights any
# --------------------------------------------------------------------------------------------------------------------


def test_weights_any_picks_the_least_compressed_format_vllm_makes(hub):
    only = ["Qwen/Qwen2.5-14B", "Qwen/Qwen3-0.6B"]
    LH.populate(hub, only=only)
    r = api.search(ListingQuery(task=TG), gpu=GPU, limit=50, weights="any")
    rows = {x.model: x for x in r.rows}
    assert set(rows) == set(only)
    # vLLM makes from a bf16 checkpoint while loading: dynamic FP8 (--quantization fp8) and bitsandbytes 4-bit
    # (--quantization bitsandbytes), vLLM docs "Quantization"; so the candidates, least compressed first:
    vllm_formats = ["bf16", "fp8", "nf4"]
    s = InferenceSettings(engine="vllm", context=4096, batch=1)
    big = rows["Qwen/Qwen2.5-14B"]
    fits = {f: api.infer(big.model, settings=InferenceSettings(engine="vllm", context=4096, batch=1,
                                                                 weights_format=f), gpu=GPU).fit.fits
            for f in vllm_formats}
    expected = next(f for f in vllm_formats if fits[f])
    assert fits["bf16"] is False and expected == "fp8"  # 14.8e9 x 1 byte of fp8 fits in 24 GB
    assert (big.weights_format, big.format_changed) == (expected, True)
    ref = api.infer(big.model, settings=InferenceSettings(engine="vllm", context=4096, batch=1,
                                                          weights_format=expected), gpu=GPU).fit
    assert (big.needed_bytes, big.margin_bytes, big.max_context) == (ref.needed_bytes, ref.headroom_bytes,
                                                                   ref.max_context)
    assert "--weights fp8" in big.command
    entry = run_command(big.command)
    assert (entry["fit"]["fits"], entry["fit"]["needed_bytes"]) == (True, big.needed_bytes)
    small = rows["Qwen/Qwen3-0.6B"]
    assert (small.weights_format, small.format_changed) == ("bf16", False) and "--weights" not in small.command
    assert api.infer(small.model, settings=s, gpu=GPU).fit.needed_bytes == small.needed_bytes


# --------------------------------------------------------------------------------------------------------------------
# 9. offline: the shipped snapshot
# --------------------------------------------------------------------------------------------------------------------


def causal_lm_classes() -> set[str]:
    """transformers' own causal-LM classes (``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` in models/auto/modeling_auto.py),
    read from its source with ast: importing the module would import torch."""
    origin = importlib.util.find_spec("transformers").origin
    tree = ast.parse((Path(origin).parent / "models" / "auto" / "modeling_auto.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES"
                                                 for t in node.targets):
            pairs = node.value.args[0].elts  # OrderedDict([("llama", "LlamaForCausalLM"), ...])
            out = set()
            for pair in pairs:
                value = ast.literal_eval(pair.elts[1])
                out.update(value if isinstance(value, tuple) else (value,))
            return out
    raise AssertionError("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES not found")


def snapshot_causal_lms() -> set[str]:
    index = json.loads((ROOT / "cache" / "index.json").read_text())
    classes = causal_lm_classes()
    out = set()
    for repo_id, rel in index["models"].items():
        config = json.loads((ROOT / "cache" / rel / "config.json").read_text())
        if (config.get("architectures") or [None])[0] in classes:
            out.add(repo_id)
    return out


def test_offline_candidates_are_the_snapshots_by_task(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))  # the snapshot alone
    listing = list_models(ListingQuery(task=TG), limit=10_000)
    assert listing.source == "offline"
    assert {m.repo_id for m in listing.models} == snapshot_causal_lms()


def test_offline_search_ranks_by_params_with_a_note(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    wanted = sorted(m for m in snapshot_causal_lms() if "smollm" in m.lower())
    assert len(wanted) >= 2
    r = api.search(ListingQuery(task=TG, search="SmolLM"), gpu=GPU, limit=50, options=api.Options(offline=True))
    assert r.source == "offline" and names(judged(r)) | names(r.skipped) == set(wanted)
    assert r.rank_by == "params" and any("ranked by parameters" in n for n in r.notes)
    s = InferenceSettings(engine="vllm", context=4096, batch=1)
    params = {}
    for row in judged(r):
        ref = api.infer(row.model, api.Options(offline=True), settings=s, gpu=GPU)
        params[row.model] = ref.report.inventory.num_params
        assert (row.fits, row.needed_bytes) == (ref.fit.fits, ref.fit.needed_bytes)
    # most parameters first; equal counts (SmolLM-1.7B and SmolLM2-1.7B share an architecture) by repo id
    assert [x.model for x in r.rows] == sorted(names(r.rows), key=lambda m: (-params[m], m.lower()))


def test_offline_license_filter_is_a_usage_error():
    proc = run_hfmem("search", "--license", "mit", "--gpu", GPU, env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--license" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    with pytest.raises(UsageError):
        api.search(ListingQuery(license="mit"), gpu=GPU, options=api.Options(offline=True))


# --------------------------------------------------------------------------------------------------------------------
# 10. the CLI and the API side by side
# --------------------------------------------------------------------------------------------------------------------


def test_cli_json_equals_api_and_text_outputs_carry_the_commands(hub, tmp_path):
    only = ["Qwen/Qwen3-0.6B", "HuggingFaceTB/SmolLM2-135M-Instruct", "fixture-gguf/tiny-llama-GGUF"]
    LH.populate(hub, only=only)
    # a cold CLI run in a fresh interpreter, in a cache of its own, against the same Hub
    proc = run_hfmem("search", "--task", TG, "--gpu", GPU, "--format", "json",
                     env={"HF_ENDPOINT": hub.endpoint, "HFMEM_HOME": str(tmp_path / "cli-home")})
    from_cli = json_out(proc)
    # the settings the CLI builds from its defaults (--context 4096 --batch 1, vLLM), given explicitly
    from_api = search_json(api.search(ListingQuery(task=TG), gpu=GPU,
                                      settings=InferenceSettings(engine="vllm", context=4096, batch=1),
                                      llamacpp=LlamaCppSettings(context=4096, parallel=1)))
    for doc in (from_cli, from_api):
        doc["scan"].pop("elapsed_s")
    assert from_cli == from_api
    assert names(api.search(ListingQuery(task=TG), gpu=GPU).rows) == set(only)
    commands = [row["command"] for row in from_api["rows"]]
    assert len(commands) == 3
    for fmt in ("markdown", "table"):
        code, out, err = cli("search", "--task", TG, "--gpu", GPU, "--format", fmt)
        assert code == 0, err
        flat = " ".join(out.split())
        for c in commands:
            assert c in flat, (fmt, c)


@pytest.mark.parametrize("args", [["--limit", "0"], ["--sort", "nope"], ["--min-params", "7Q"],
                                  ["--train", "--serve"], ["--time-budget", "0"]])
def test_bad_input_is_one_line_exit_2(args):
    code, out, err = cli("search", "--gpu", GPU, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("hfmem: error:"), (code, err)
    assert "Traceback" not in err and out == ""


def test_bad_input_through_a_fresh_interpreter():
    proc = run_hfmem("search", "--gpu", GPU, "--min-params", "7Q")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "7Q" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------------------------------------
# findings of the first review
# --------------------------------------------------------------------------------------------------------------------


def test_vllm_row_that_fits_serves_the_context_asked_or_says_why_not(hub):
    LH.populate(hub, only=["openai-community/gpt2"])
    r = api.search(ListingQuery(task=TG), gpu=GPU, limit=5, settings=SERVE)
    (row,) = r.rows
    # openai-community/gpt2's config.json: "n_positions": 1024. vLLM refuses --max-model-len 4096 for it
    # ("User-specified max_model_len (4096) is greater than the derived max_model_len ...", vllm/config, unless
    # VLLM_ALLOW_LONG_MAX_MODEL_LEN=1), so "fits at context 4096" is not a row vLLM can serve as listed.
    config = json.loads((ROOT / "cache" / "models" / row.model / "config.json").read_text())
    assert config["n_positions"] == 1024 == row.max_context
    assert row.max_context >= SERVE.context or any("1,024" in n or "1024" in n for n in row.notes)


@pytest.mark.slow
def test_search_meeting_a_custom_code_repo_does_not_import_torch(hub):
    LH.populate(hub, only=["fixture-custom/acme-mystery-7b", "Qwen/Qwen3-0.6B"])
    proc = run_hfmem("search", "--gpu", GPU, "--format", "json", "--quiet", check_torch=True,
                     env={"HF_ENDPOINT": hub.endpoint})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "TORCH_IMPORTED=False"


def test_unknown_weights_format_is_a_usage_error_before_any_listing(hub):
    LH.populate(hub, only=["Qwen/Qwen3-0.6B"])
    code, out, err = cli("search", "--gpu", GPU, "--weights", "bogus")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "bogus" in err, (code, err)
    assert listing_requests(hub) == []  # refused before the Hub is asked anything


@pytest.mark.slow
def test_listing_follows_hfmems_retry_policy(hub):
    LH.populate(hub, only=["HuggingFaceTB/SmolLM2-135M-Instruct"])
    # every listing request is cut before an answer (a TCP reset): hfmem/sources/hub.py's module docstring says a
    # connection cut is retried twice, so at most 3 attempts, then the offline fallback
    hub.set_fault("reset", path_contains="/api/models?")
    r = api.search(ListingQuery(search="SmolLM2-135M"), gpu=GPU, limit=5)
    assert r.source == "offline"
    assert len(listing_requests(hub)) <= 3


def register_with_token(hub, repo_id: str, token: str, **kw) -> str:
    """``repo_id``'s fixture files, readable with ``token`` only (gated=True or private=True in ``kw``)."""
    fx = next(f for f in LH.MODELS if f.repo_id == repo_id)
    files = {"config.json": (ROOT / "cache" / "models" / repo_id / "config.json").read_bytes(),
             **LH.safetensors_files(repo_id)}
    return hub.add_repo(repo_id, files, token=token, library_name=fx.library_name, downloads=fx.downloads,
                        likes=fx.likes, pipeline_tag=fx.pipeline_tag, license=fx.license, **kw)


def test_gated_repo_is_judged_once_a_token_is_given(hub):
    register_with_token(hub, "meta-llama/Llama-3.2-1B", "hf_grant", gated=True)
    without = api.search(None, gpu=GPU, limit=5)
    assert [(x.model, x.exit_code) for x in without.skipped] == [("meta-llama/Llama-3.2-1B", 4)]
    ref = api.infer("meta-llama/Llama-3.2-1B", api.Options(token="hf_grant"), settings=SERVE, gpu=GPU).fit
    assert ref.fits  # 1.24e9 parameters of bf16: 2.5 GB on a 24 GB card
    with_token = api.search(None, gpu=GPU, limit=5, options=api.Options(token="hf_grant"))
    assert with_token.skipped == []
    (row,) = with_token.rows
    assert (row.needed_bytes, row.margin_bytes) == (ref.needed_bytes, ref.headroom_bytes)


def test_private_repo_is_listed_once_a_token_is_given(hub):
    LH.populate(hub, only=["Qwen/Qwen3-0.6B"])
    register_with_token(hub, "HuggingFaceTB/SmolLM2-135M-Instruct", "hf_mine", private=True)
    without = api.search(None, gpu=GPU, limit=5)
    assert names(without.rows) == {"Qwen/Qwen3-0.6B"}  # the Hub lists a private repo only to its token
    with_token = api.search(None, gpu=GPU, limit=5, options=api.Options(token="hf_mine"))
    assert names(with_token.rows) == {"Qwen/Qwen3-0.6B", "HuggingFaceTB/SmolLM2-135M-Instruct"}
