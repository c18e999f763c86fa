"""The web app's URL state (hfmem.web.state): inputs <-> query parameters. Fast: no gradio."""

import subprocess
import sys
from urllib.parse import parse_qsl, urlsplit

import pytest

from hfmem.errors import UsageError
from hfmem.web import state as S


def _query(link: str) -> dict:
    return dict(parse_qsl(urlsplit(link).query))


def test_encode_writes_the_inputs_that_differ_from_the_defaults():
    # written out by hand: the example link of the app's description; the defaults (transformers, batch 1, ...)
    # are left out, the slash of the repo id is percent-encoded as urllib does
    link = S.encode("serve", {"model": "Qwen/Qwen3-8B", "context": 8192, "gpu": "RTX-4090", "batch": 1,
                              "engine": "transformers"})
    assert link == "?tab=serve&model=Qwen%2FQwen3-8B&context=8192&gpu=RTX-4090"


def test_round_trip_of_every_tab():
    cases = {
        "calc": {"models": ["baichuan-inc/Baichuan-7B", "Qwen/Qwen3-8B"], "dtypes": ["float32", "int4"],
                 "compat": "accelerate"},
        "serve": {"model": "Qwen/Qwen3-8B", "engine": "vllm", "context": 32768, "batch": 4, "weights": "fp8",
                  "kv_dtype": "fp8", "gpu": "H100-80GB", "gpus": 2, "compare_gpus": ["RTX-4090", "A100-80GB"],
                  "axis": "batch", "quant": "Q4_K_M"},
        "train": {"model": "Qwen/Qwen3-0.6B", "method": "qlora", "precision": "bf16", "optimizer": "adamw-8bit",
                  "sharding": "zero-3", "seq": 1024, "batch": 8, "lora_rank": 64, "grad_ckpt": True,
                  "gpu": "RTX-3090", "gpus": 4, "compare_gpus": ["H100-80GB"]},
        "compare": {"models": ["Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B"], "engine": "vllm", "context": 8192,
                    "batch": 2, "gpu": "L40S", "gpus": 1},
        "search": {"job": "train", "task": "text-generation", "text": "qwen", "max_params": "9B", "gpu": "A30",
                   "limit": 7},
    }
    for tab, values in cases.items():
        got_tab, got = S.decode(_query(S.encode(tab, values)))
        assert got_tab == tab
        assert got == values, tab  # every input given above, each of a kind the tab takes


def test_decode_fills_defaults_and_ignores_unknown_keys_with_a_note():
    tab, values, notes = S.decode_with_notes({"tab": "serve", "model": "Qwen/Qwen3-8B", "colour": "red"})
    assert tab == "serve"
    assert values["model"] == "Qwen/Qwen3-8B"
    # hfmem infer's own defaults (hfmem infer --help: --context 4096, --batch 1, --engine transformers)
    assert (values["context"], values["batch"], values["engine"]) == (4096, 1, "transformers")
    assert len(notes) == 1 and "'colour'" in notes[0]


def test_a_bad_value_is_the_cli_s_line():
    from hfmem.cli.errors import error_line

    with pytest.raises(UsageError) as exc:
        S.decode({"tab": "serve", "model": "Qwen/Qwen3-8B", "context": "abc"})
    # the independent source: what `hfmem infer --context abc` prints on stderr
    run = subprocess.run([sys.executable, "-c", "from hfmem.cli import main; "
                          "main(['infer', 'Qwen/Qwen3-8B', '--context', 'abc'])"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert error_line(exc.value) == run.stderr.strip()


def test_a_value_outside_the_choices_names_its_flag():
    with pytest.raises(UsageError) as exc:
        S.decode({"tab": "serve", "gpu": "RTX-9999"})
    assert "'--gpu'" in str(exc.value) and "RTX-9999" in str(exc.value)
    with pytest.raises(UsageError):
        S.decode({"tab": "nowhere"})


def test_the_llamacpp_serving_inputs_round_trip():
    # written out by hand: engine and quant are hfmem infer's --engine llama.cpp --quant Q4_0; the other inputs
    # keep their defaults and stay out of the link
    values = {"model": "tests/data/gguf/tiny-llama-GGUF", "engine": "llama.cpp", "quant": "Q4_0", "context": 2048}
    link = S.encode("serve", values)
    assert link == ("?tab=serve&model=tests%2Fdata%2Fgguf%2Ftiny-llama-GGUF&engine=llama.cpp&context=2048"
                    "&quant=Q4_0")
    tab, got = S.decode(_query(link))
    assert tab == "serve" and {k: got[k] for k in values} == values
    # hfmem infer's default: no --quant, the best variant that fits
    assert S.defaults("serve")["quant"] == ""
