"""The web app's shareable state: every tab's inputs as URL query parameters, and back.

``encode("serve", {"model": "Qwen/Qwen3-8B", "context": 8192, "gpu": "RTX-4090"})`` gives
``?tab=serve&model=Qwen%2FQwen3-8B&context=8192&gpu=RTX-4090``; ``decode`` reads such a query (any mapping of
names to strings: a ``gr.Request``'s ``query_params``, ``urllib.parse.parse_qs`` flattened) back into the tab and
its complete inputs, defaults filled in. A bad value raises the typed error the CLI raises for the same flag, so
the page shows the same line (``hfmem.cli.errors.error_line``). Pure: no gradio here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlencode

from ..errors import UsageError

# The Model Memory Calculator's rows (hfmem.scenarios.calculator.DTYPE_ROWS' labels), in its order.
CALC_DTYPES = ("float32", "float16/bfloat16", "int8", "int4")
NO_GPU = "none"
# Training's parallelism choices in one control: none, DeepSpeed ZeRO stages, torch FSDP strategies.
SHARDINGS = ("none", "zero-1", "zero-2", "zero-3", "fsdp-full_shard", "fsdp-shard_grad_op", "fsdp-hybrid_shard")
AUTO = "auto"  # "the checkpoint's own" / "the default" for weights, kv dtype, precision


@dataclass(frozen=True)
class Field:
    """One input: its kind (int, float, str, choice, list, bool), default, allowed values (a choice, or each
    item of a list), and the CLI flag it stands for (the error line names it, as the CLI's does)."""

    kind: str
    default: object
    flag: str
    choices: tuple[str, ...] = ()
    short: str | None = None  # typer names a flag with its short alias: '--context' / '-c'
    minimum: int | None = None


def _gpu_names() -> tuple[str, ...]:
    from ..plan.gpus import catalog

    return tuple(g.name for g in catalog())


def _vocab():
    from .. import vocab
    from ..scenarios.training import PRECISIONS
    from ..scenarios.weights import FORMAT_ORDER

    return vocab, tuple(PRECISIONS), tuple(FORMAT_ORDER)


def fields(tab: str) -> dict[str, Field]:
    """The inputs of ``tab`` (``TABS``), in the order the page shows them."""
    vocab, precisions, formats = _vocab()
    gpus = _gpu_names()
    gpu = Field("choice", NO_GPU, "--gpu", (NO_GPU, *gpus))
    serving_engines = tuple(vocab.ENGINES)
    kv = (AUTO, *sorted(vocab.SHORT_DTYPES.values()), vocab.FP8)
    if tab == "calc":
        return {"models": Field("list", (), "MODEL"),
                "dtypes": Field("list", CALC_DTYPES, "dtype", CALC_DTYPES),
                "compat": Field("choice", "exact", "--compat", ("exact", "accelerate"))}
    if tab == "serve":
        return {"model": Field("str", "", "MODEL"),
                "engine": Field("choice", "transformers", "--engine", (*serving_engines, *vocab.GGUF_ENGINES),
                                short="-e"),
                "context": Field("int", 4096, "--context", short="-c", minimum=1),
                "batch": Field("int", 1, "--batch", short="-b", minimum=1),
                "weights": Field("choice", AUTO, "--weights", (AUTO, *formats), short="-w"),
                "kv_dtype": Field("choice", AUTO, "--kv-dtype", kv),
                "gpu": gpu,
                "gpus": Field("int", 1, "--gpus", minimum=1),
                # llama.cpp's GGUF variant (Q4_K_M, ...); empty: the CLI's default, the best that fits
                "quant": Field("str", "", "--quant", short="-q"),
                "compare_gpus": Field("list", (), "--gpu", gpus),
                "axis": Field("choice", "context", "axis", ("context", "batch"))}
    if tab == "train":
        return {"model": Field("str", "", "MODEL"),
                "method": Field("choice", "full", "--method", tuple(vocab.METHODS)),
                "precision": Field("choice", AUTO, "--precision", (AUTO, *precisions)),
                "optimizer": Field("choice", "adamw", "--optimizer", tuple(vocab.OPTIMIZERS)),
                "sharding": Field("choice", "none", "--zero / --fsdp", SHARDINGS),
                "seq": Field("int", 2048, "--seq", minimum=1),
                "batch": Field("int", 1, "--batch", short="-b", minimum=1),
                "lora_rank": Field("int", 16, "--lora-rank", minimum=1),
                "grad_ckpt": Field("bool", False, "--grad-ckpt"),
                "gpu": gpu,
                "gpus": Field("int", 1, "--gpus", minimum=1),
                "compare_gpus": Field("list", (), "--gpu", gpus)}
    if tab == "compare":
        return {"models": Field("list", (), "MODEL"),
                "engine": Field("choice", "transformers", "--engine", serving_engines, short="-e"),
                "context": Field("int", 4096, "--context", short="-c", minimum=1),
                "batch": Field("int", 1, "--batch", short="-b", minimum=1),
                "gpu": gpu,
                "gpus": Field("int", 1, "--gpus", minimum=1)}
    if tab == "search":
        return {"job": Field("choice", "serve", "--train", ("serve", "train")),
                "task": Field("str", "", "--task"),
                "text": Field("str", "", "--search"),
                "max_params": Field("str", "", "--max-params"),
                "gpu": Field("choice", "RTX-4090", "--gpu", gpus),
                "limit": Field("int", 20, "--limit", minimum=1)}
    raise UsageError(f"unknown tab {tab!r}", hint=f"one of {', '.join(TABS)}")


TABS = ("calc", "serve", "train", "compare", "search")
# Which `hfmem` command a tab stands for: a bad value's line points at its --help, as typer's does.
COMMAND = {"calc": "hfmem calc", "serve": "hfmem infer", "train": "hfmem train", "compare": "hfmem infer",
           "search": "hfmem search"}


def defaults(tab: str) -> dict:
    return {k: (list(f.default) if f.kind == "list" else f.default) for k, f in fields(tab).items()}


def _bad(tab: str, f: Field, why: str) -> UsageError:
    """The CLI's line for a bad value of a flag: typer's ``Invalid value for '--context' / '-c': ...``, which
    ``hfmem.cli.main`` prints with the hint ``see `hfmem infer --help```."""
    name = f"'{f.flag}'" + (f" / '{f.short}'" if f.short else "")
    return UsageError(f"Invalid value for {name}: {why}", hint=f"see `{COMMAND[tab]} --help`")


def _split_list(raw) -> list[str]:
    items = raw if isinstance(raw, (list, tuple)) else str(raw).replace("\n", ",").split(",")
    return [str(x).strip() for x in items if str(x).strip()]


def parse_value(tab: str, key: str, raw):
    """One value of ``tab``'s input ``key`` from its query-string text (or an already typed value)."""
    f = fields(tab)[key]
    if raw is None and f.kind in ("str", "list", "bool"):  # an emptied textbox or selection
        return {"str": "", "list": [], "bool": False}[f.kind]
    if f.kind == "int":
        try:
            value = int(raw) if not isinstance(raw, bool) else None
        except (TypeError, ValueError):
            value = None
        if value is None or (isinstance(raw, float) and not raw.is_integer()):
            # typer (pydantic) words the failed integer parse this way
            raise _bad(tab, f, "Input should be a valid integer, unable to parse string as an integer")
        return value
    if f.kind == "bool":
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise _bad(tab, f, f"{raw!r} is not a yes/no value (use 1 or 0)")
    if f.kind == "choice":
        text = str(raw).strip()
        if text not in f.choices:
            quoted = ", ".join(f"'{c}'" for c in f.choices)
            raise _bad(tab, f, f"Value error, '{text}' is not one of {quoted}.")
        return text
    if f.kind == "list":
        items = _split_list(raw)
        if f.choices:
            for item in items:
                if item not in f.choices:
                    quoted = ", ".join(f"'{c}'" for c in f.choices)
                    raise _bad(tab, f, f"Value error, '{item}' is not one of {quoted}.")
        return items
    return str(raw).strip()


def _is_default(f: Field, value) -> bool:
    if f.kind == "list":
        return list(value or ()) == list(f.default)
    return value == f.default


def encode(tab: str, values: Mapping) -> str:
    """``?tab=TAB&key=value...``: the inputs that differ from their defaults (a link stays short, and a
    default that changes later is not pinned), lists comma-joined. Values are validated as ``decode`` would."""
    spec = fields(tab)
    pairs = [("tab", tab)]
    for key, f in spec.items():
        if key not in values or values[key] is None:
            continue
        value = parse_value(tab, key, values[key])
        if _is_default(f, value):
            continue
        if f.kind == "list":
            pairs.append((key, ",".join(value)))
        elif f.kind == "bool":
            pairs.append((key, "1" if value else "0"))
        else:
            pairs.append((key, str(value)))
    return "?" + urlencode(pairs)


def decode_with_notes(query: Mapping) -> tuple[str, dict, list[str]]:
    """``(tab, values, notes)`` from a query mapping: every input of the tab (defaults for the missing ones);
    a note for each unknown key (ignored); a bad value raises the CLI's typed error."""
    q = {str(k): (v[-1] if isinstance(v, (list, tuple)) and v and not isinstance(v, str) else v)
         for k, v in dict(query).items()}
    tab = str(q.pop("tab", "") or "calc").strip()
    if tab not in TABS:
        raise UsageError(f"unknown tab {tab!r} in the link", hint=f"one of {', '.join(TABS)}")
    spec = fields(tab)
    values = defaults(tab)
    notes = []
    for key, raw in q.items():
        if key not in spec:
            notes.append(f"ignored the link's unknown parameter {key!r} (the {tab} tab takes "
                         f"{', '.join(spec)})")
            continue
        values[key] = parse_value(tab, key, raw)
    return tab, values, notes


def decode(query: Mapping) -> tuple[str, dict]:
    """``(tab, values)`` from a query mapping (``decode_with_notes`` without the notes)."""
    tab, values, _ = decode_with_notes(query)
    return tab, values
