"""What the web app's buttons call: plain values in, ``hfmem.api`` answers out, as display data.

Every number shown comes from the API's objects (``api.analyze``'s calculator table, ``api.infer``'s estimate and
fit, ``api.infer_llamacpp``'s buffers per device for a GGUF repo, ``api.train``'s estimate and advice,
``api.search``'s rows); nothing is recomputed here, only formatted. Every size table carries two columns for
each size: the human text (binary units) and the exact integer of bytes, so a reader (or a test) can compare it
with the API's. Errors become the CLI's one line (``error_line``), any other exception the CLI's "internal
error" line: a page never shows a traceback. No gradio here (testable fast).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Callable

from ..errors import HfmemError, UsageError
from ..units import calculator_units, format_binary, format_count
from . import state as S


@dataclass
class Table:
    """A table to show: a title, headers and rows of cells (str, int or None). ``bytes_columns``: the
    indexes of the columns that hold exact bytes (integers)."""

    title: str
    headers: list[str]
    rows: list[list]
    bytes_columns: tuple[int, ...] = ()
    elem_id: str = ""

    def html(self) -> str:
        return html_table(self)


@dataclass
class Answer:
    """One tab's answer: tables, Markdown text (fits, limits, notes), a launch snippet and the reproducing
    ``hfmem`` command line; ``error``: the CLI's one line, when there is no answer (or part of it failed)."""

    tables: list[Table] = field(default_factory=list)
    markdown: str = ""
    snippet: str = ""
    command: str = ""
    errors: list[str] = field(default_factory=list)
    # what each total predicts, the units, every assumption, the notes: the CLI's footnotes, as Markdown
    footnotes: str = ""
    data: dict = field(default_factory=dict)  # the API objects behind it (tests and plots read them)

    @property
    def error(self) -> str:
        return "\n".join(self.errors)


def internal_error_line(exc: BaseException) -> str:
    """The line ``hfmem.cli.errors.error_boundary`` prints for a bug (exit 70), credentials scrubbed."""
    from ..sources import scrub

    first = scrub(str(exc)).splitlines()[0][:200] if str(exc) else ""
    return (f"hfmem: internal error: {exc.__class__.__name__}: {first} "
            "(set HFMEM_DEBUG=1 for the traceback and report it)")


def error_text(exc: BaseException) -> str:
    """The CLI's line for ``exc``: ``error_line`` for an hfmem error, the internal-error line otherwise."""
    if isinstance(exc, HfmemError):
        from ..cli.errors import error_line

        return error_line(exc)
    return internal_error_line(exc)


def guarded(run: Callable[[], Answer]) -> Answer:
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 — the page shows the CLI's line, never a traceback
        return Answer(errors=[error_text(exc)])


def html_table(t: Table) -> str:
    """An HTML table; byte cells carry ``class="bytes"`` and ``data-bytes`` (the exact integer)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in t.headers)
    body = []
    for row in t.rows:
        cells = []
        for i, v in enumerate(row):
            text = "" if v is None else (f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
            if i in t.bytes_columns and isinstance(v, int):
                cells.append(f'<td class="bytes" data-bytes="{v}">{v}</td>')
            else:
                cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{html.escape(t.elem_id)}"' if t.elem_id else ""
    caption = f"<caption>{html.escape(t.title)}</caption>" if t.title else ""
    # a wide table (search rows with their commands) scrolls in its own box instead of running off the page
    return (f'<div class="hfmem-scroll"><table class="hfmem-table"{ident}>{caption}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _size(n) -> str:
    return "-" if n is None else format_binary(n)


def _gpu(name: str | None) -> str | None:
    return None if not name or name == S.NO_GPU else name


def _options(options):
    from ..report import Options

    return options or Options()


def _models(models) -> list[str]:
    return S._split_list(models or [])


# -------------------------------------------------------------------------------------------- calculator


def _calc_cell(v) -> str:
    return "N/A" if v is None else calculator_units(v)


def calculator(models, dtypes=S.CALC_DTYPES, compat: str = "exact", options=None) -> Answer:
    """The Model Memory Calculator table per model (``api.analyze_many``, ``ModelReport.table``): dtype |
    Largest Layer or Residual Group | Total Size | Training using Adam, each size in the calculator's own units
    (binary, round(x, 2)) and in exact bytes; only the dtype rows in ``dtypes``."""
    def run() -> Answer:
        from .. import api

        names = _models(models)
        if not names:
            raise UsageError("no model given", hint="e.g. hfmem baichuan-inc/Baichuan-7B")
        wanted = set(S._split_list(dtypes)) if dtypes is not None else set(S.CALC_DTYPES)
        out = Answer()
        failed = []
        reports = api.analyze_many(names, _options(options), on_error=lambda m, e: failed.append(e))
        out.errors = [error_text(e) for e in failed]
        headers = ["dtype", "Largest Layer or Residual Group", "bytes", "Total Size", "bytes",
                   "Training using Adam", "bytes"]
        tables = {}
        for r in reports:
            table = r.table(compat)
            rows = [[row.dtype, _calc_cell(row.largest_layer_bytes), row.largest_layer_bytes,
                     _calc_cell(row.total_bytes), row.total_bytes, _calc_cell(row.training_adam_bytes),
                     row.training_adam_bytes] for row in table.rows if row.dtype in wanted]
            out.tables.append(Table(f"Memory usage for '{r.model}'", headers, rows, (2, 4, 6),
                                    elem_id=f"calc-table-{len(out.tables)}"))
            names_ = table.largest_layer_names
            out.markdown += (f"**{r.model}** — {r.inventory.architecture}, {format_count(r.inventory.num_params)} "
                             f"parameters; largest layer: {', '.join(names_[:3])}"
                             + (f" and {len(names_) - 3} more" if len(names_) > 3 else "") + ".\n\n")
            tables[r.model] = table
        out.markdown += ("Sizes as the Model Memory Calculator prints them: KB/MB/GB are binary (1 GB = 2^30 "
                         "bytes); the bytes columns are exact. Predicts: " + (reports[0].table(compat).predicts
                                                                             if reports else "") + ".")
        out.command = "hfmem " + " ".join(names) + (" --compat accelerate" if compat == "accelerate" else "")
        out.data = {"reports": reports, "tables": tables}
        return out

    return guarded(run)


# -------------------------------------------------------------------------------------------- serving

def _footnotes_md(command: str, reports) -> str:
    """The footnotes ``hfmem infer`` / ``hfmem train`` print under their table — what each total predicts, the
    units, every assumption, the notes, the confidence band — as Markdown (``render.text.markdown_footnotes``)."""
    from ..render import infer as render_infer, train as render_train
    from ..render.text import markdown_footnotes

    notes = (render_infer if command == "infer" else render_train).footnotes(reports)
    return "\n".join(markdown_footnotes(notes))


def _label(key: str) -> str:
    """A table row's name: the component's name (``vocab.component_label``), capitalised as a row heading."""
    from ..vocab import component_label

    name = component_label(key)
    first = name.split(" ", 1)[0]
    return name if any(ch.isdigit() for ch in first) else name[0].upper() + name[1:]  # "fp32 ..." stays


def inference_settings(engine="transformers", context=4096, batch=1, weights=S.AUTO, kv_dtype=S.AUTO, gpus=1):
    """The ``InferenceSettings`` of the serving controls (``hfmem infer``'s flags of the same names)."""
    from ..scenarios.inference import InferenceSettings

    return InferenceSettings(engine=engine, context=int(context), batch=int(batch),
                             weights_format=None if not weights or weights == S.AUTO else weights.lower(),
                             kv_dtype=None if not kv_dtype or kv_dtype == S.AUTO else kv_dtype, tp=int(gpus))


def infer_command(model, engine, context, batch, weights, kv_dtype, gpu, gpus, emit: bool = True) -> str:
    """The ``hfmem infer`` line that prints the same answer in the terminal."""
    import shlex

    models = [model] if isinstance(model, str) else list(model)
    parts = ["hfmem", "infer", *models, "--engine", engine, "--context", str(context), "--batch", str(batch)]
    if weights and weights != S.AUTO:
        parts += ["--weights", weights]
    if kv_dtype and kv_dtype != S.AUTO:
        parts += ["--kv-dtype", kv_dtype]
    if int(gpus) > 1:
        parts += ["--gpus", str(gpus)]
    if _gpu(gpu):
        parts += ["--gpu", gpu]
    if emit:
        parts += ["--emit", "vllm"]
    return " ".join(shlex.quote(p) for p in parts)


def component_table(estimate, elem_id: str, title: str) -> Table:
    """Per GPU: every component of the estimate, then the three totals, each in words and in bytes."""
    rows = [[_label(k), _size(v), int(v)] for k, v in estimate.components.items()]
    rows += [["= Peak allocated" + (f" ({estimate.peak_phase.replace('_', ' ')})" if estimate.peak_phase else ""),
              _size(estimate.peak_allocated_bytes), int(estimate.peak_allocated_bytes)],
             ["= Peak reserved", _size(estimate.peak_reserved_bytes), int(estimate.peak_reserved_bytes)],
             ["= Device total (nvidia-smi)", _size(estimate.device_total_bytes), int(estimate.device_total_bytes)]]
    return Table(title, ["component (per GPU)", "size", "bytes"], rows, (2,), elem_id=elem_id)


def llamacpp_args(context=4096, batch=1, quant="", gpu=S.NO_GPU, gpus=1, emit: str | None = "llama.cpp"):
    """The llama.cpp flags of the serving controls as ``hfmem infer`` reads them (``cli.llamacpp.LlamaCppArgs``:
    --context, --batch, --quant, --gpu, --gpus; llama.cpp's own defaults for the rest)."""
    from ..cli.llamacpp import LlamaCppArgs

    return LlamaCppArgs(context=int(context), batch=int(batch), quant=(quant or "").strip() or None,
                        gpu=_gpu(gpu), gpus=int(gpus), emit=emit)


def llamacpp_command(model: str, context, batch, quant, gpu, gpus, emit: bool = True) -> str:
    """The ``hfmem infer --engine llama.cpp`` line that prints the same answer in the terminal."""
    import shlex

    parts = ["hfmem", "infer", model, "--engine", "llama.cpp", "--context", str(context), "--batch", str(batch)]
    if quant and quant.strip():
        parts += ["--quant", quant.strip()]
    if int(gpus) > 1:
        parts += ["--gpus", str(gpus)]
    if _gpu(gpu):
        parts += ["--gpu", gpu]
    if emit:
        parts += ["--emit", "llama.cpp"]
    return " ".join(shlex.quote(p) for p in parts)


def _with_bytes(cells: list, values: list[int]) -> list:
    """A row of the terminal table (its first cell, then one text per size) with each size's exact bytes
    after it."""
    out = [cells[0]]
    for text, n in zip(cells[1:], values):
        out += [text, int(n)]
    return out + list(cells[1 + len(values):])


def llamacpp_tables(r) -> list[Table]:
    """``hfmem infer --engine llama.cpp``'s tables (``render.llamacpp``) with exact bytes beside every size:
    the buffers per device, the limits with a GPU, the variants when the repo has several."""
    from ..render import llamacpp as R

    e = r.estimate
    head, rows = R.device_table(r)
    proj = "projector" in head
    sized = head[1:]  # model, KV, compute, output, CUDA context, [projector,] total
    devices = []
    for d, cells in zip(e.devices, rows):
        values = [d.model_bytes, d.kv_bytes, d.compute_bytes, d.output_bytes, d.context_bytes]
        values += ([d.projector_bytes] if proj else []) + [d.total_bytes]
        devices.append(_with_bytes(cells, values))
    headers = [head[0]] + [h for name in sized for h in (name, "bytes")]
    out = [Table(R.title(r), headers, devices, tuple(range(2, len(headers), 2)), elem_id="serve-llamacpp-devices")]
    f = r.fit
    if f is not None and r.gpu is not None:
        s = e.settings
        out.append(Table("Limits at these settings", ["limit", "value"], [
            ["Fits", "yes" if f.fits else "NO"],
            ["Free on the busiest GPU (negative: short), bytes", int(f.margin_bytes(e))],
            [f"Largest context per sequence at -ngl {e.n_gpu_layers}, -np {s.parallel}",
             "-" if f.max_context is None else int(f.max_context)],
            [f"Most layers on the GPU at context {s.context:,} (of {e.model.n_layer + 1})", int(f.max_gpu_layers)],
            ["Best variant that fits", r.best or "none"],
        ], elem_id="serve-limits"))
    vt = R.variants_table(r)
    if vt is not None:
        vhead, vrows = vt  # variant, file size, bits/weight, GPU peak, CPU, KV[, fits GPU]
        headers = [vhead[0], vhead[1], "bytes", vhead[2], vhead[3], "bytes", vhead[4], "bytes", vhead[5], "bytes",
                   *vhead[6:]]
        rows_ = [[c[0], c[1], int(x.variant.size_bytes), c[2], c[3], int(x.estimate.gpu_peak_bytes), c[4],
                  int(x.estimate.cpu.total_bytes), c[5], int(x.estimate.kv_bytes), *c[6:]]
                 for x, c in zip(r.rows, vrows)]
        out.append(Table("Variants at these settings", headers, rows_, (2, 5, 7, 9), elem_id="serve-variants"))
    return out


def serving_llamacpp(model: str, context=4096, batch=1, quant="", gpu=S.NO_GPU, gpus=1, options=None,
                     note: str = "") -> Answer:
    """``api.infer_llamacpp`` at the serving controls, built as ``hfmem infer --engine llama.cpp`` builds it
    (``cli.llamacpp.gguf_reports``): the buffers per device, the limits and the variants, the fit lines, the
    footnotes, the ``llama-server`` command of ``--emit llama.cpp`` and the ``hfmem infer`` line."""
    from ..cli.llamacpp import gguf_reports
    from ..plan.emit_llamacpp import llama_server_command
    from ..render import llamacpp as R
    from ..render.text import markdown_footnotes

    (r,) = gguf_reports([model], _options(options), llamacpp_args(context, batch, quant, gpu, gpus), [])
    out = Answer(tables=llamacpp_tables(r), data={"report": r, "fit": r.fit})
    lines = [f"{note}\n"] if note else []
    fit = R.fit_lines(r)
    if fit:
        (label, value), rest = fit[0], fit[1:]
        lines.append(f"**{label}: {value}**")
        lines += [f"- {k}: {v}" for k, v in rest]
    else:
        lines.append("Choose a GPU for whether it fits, the largest context, the most layers on the GPU and the "
                     "best variant that fits.")
    out.snippet, caveats = llama_server_command(r)
    lines += ["- " + c for c in caveats]
    out.markdown = "\n".join(lines)
    out.footnotes = "\n".join(markdown_footnotes(R.footnotes(r)))
    out.command = llamacpp_command(model, context, batch, quant, gpu, gpus)
    return out


def serving(model: str, engine: str = "transformers", context: int = 4096, batch: int = 1, weights: str = S.AUTO,
            kv_dtype: str = S.AUTO, gpu: str = S.NO_GPU, gpus: int = 1, quant: str = "", options=None,
            **_ignored) -> Answer:
    """``api.infer`` at the serving controls: the component breakdown per GPU, with a GPU the fit and the
    limits (``fit``), the ``vllm serve`` command of ``--emit vllm`` and the ``hfmem infer`` line. A GGUF repo
    (engine llama.cpp, or a GGUF-only repo) is answered as ``hfmem infer`` answers it: ``serving_llamacpp``."""
    def run() -> Answer:
        from .. import api
        from ..cli.llamacpp import is_gguf_ref
        from ..errors import GGUFRepoError
        from ..plan.emit import vllm_serve
        from ..vocab import LLAMACPP

        if not model or not str(model).strip():
            raise UsageError("no model given", hint="e.g. hfmem infer meta-llama/Llama-3.1-8B --context 32768")
        name = str(model).strip()
        # the CLI's choice (cli.infer): llama.cpp when asked for, or for a reference that can only be GGUF
        if engine == LLAMACPP or is_gguf_ref(name):
            return serving_llamacpp(name, context, batch, quant, gpu, gpus, options)
        s = inference_settings(engine, context, batch, weights, kv_dtype, gpus)
        try:
            r = api.infer(name, _options(options), settings=s, gpu=_gpu(gpu))
        except GGUFRepoError:
            # a Hub repo of GGUF files only: the CLI's two answers for it (cli.infer's ``failed``)
            from ..cli.llamacpp import gguf_answered_note, vllm_gguf_error

            if s.engine == "vllm":
                raise vllm_gguf_error(name) from None
            return serving_llamacpp(name, context, batch, quant, gpu, gpus, options, note=gguf_answered_note(name))
        if not hasattr(r, "fit"):  # a diffusers pipeline: its own report (not modelled on this tab)
            raise UsageError(f"{model}: a diffusers pipeline; the web app's serving tab shows language models",
                             hint=f"`hfmem infer {model}` prints its pipeline estimate")
        e = r.estimate
        out = Answer(data={"report": r})
        out.tables.append(component_table(e, "serve-components",
                                          f"{r.report.model}: {e.weights_format} weights, {e.kv_dtype} KV cache, "
                                          f"{s.engine}, context {s.context:,} x batch {s.batch}"))
        lines = []
        f = r.fit
        if f is not None:
            verdict = "yes" if f.fits else "NO"
            lines.append(f"**Fits {s.tp} x {f.gpu}: {verdict}** — {_size(abs(f.headroom_bytes))} "
                         f"{'free' if f.fits else 'short'} of {_size(f.capacity_bytes)} per GPU")
            out.tables.append(Table("Limits at these settings", ["limit", "value"], [
                ["Fits", verdict],
                ["Free (negative: short), bytes", int(f.headroom_bytes)],
                [f"Max context at batch {s.batch}", "-" if f.max_context is None else int(f.max_context)],
                [f"Max {'sequences' if s.engine == 'vllm' else 'batch'} at {s.context:,}",
                 "-" if f.max_batch is None else int(f.max_batch)],
                ["Fewest GPUs", "none" if f.min_gpus is None else int(f.min_gpus)],
                ["Weight format that fits", f.weight_format_that_fits or "none"],
            ], elem_id="serve-limits"))
        else:
            lines.append("Choose a GPU for whether it fits, the max context, max batch, fewest GPUs and the "
                         "weight format that fits.")
        cmd, caveats = vllm_serve(r.report.model, e, f)
        out.snippet = cmd
        out.command = infer_command(r.report.model, s.engine, s.context, s.batch, weights, kv_dtype, gpu, s.tp)
        lines += ["- " + c for c in caveats]
        out.markdown = "\n".join(lines)
        out.footnotes = _footnotes_md("infer", [r])
        out.data["fit"] = f
        return out

    return guarded(run)


# -------------------------------------------------------------------------------------------- training


def train_settings(method="full", precision=S.AUTO, optimizer="adamw", sharding="none", seq=2048, batch=1,
                   lora_rank=16, grad_ckpt=False, gpus=1):
    """The ``TrainSettings`` of the training controls (``hfmem train``'s flags); ``sharding`` is "none",
    "zero-N" (``--zero N``) or "fsdp-STRATEGY" (``--fsdp STRATEGY``)."""
    from ..scenarios.finetune import TrainSettings

    zero = fsdp = None
    if sharding and sharding.startswith("zero-"):
        zero = int(sharding.removeprefix("zero-"))
    elif sharding and sharding.startswith("fsdp-"):
        fsdp = sharding.removeprefix("fsdp-")
    return TrainSettings(method=method, precision=None if not precision or precision == S.AUTO else precision,
                         optimizer=optimizer, seq=int(seq), batch=int(batch), lora_rank=int(lora_rank),
                         grad_ckpt=bool(grad_ckpt), zero=zero, fsdp=fsdp, gpus=int(gpus))


def train_command(model, method, precision, optimizer, sharding, seq, batch, lora_rank, grad_ckpt, gpu, gpus) -> str:
    import shlex

    parts = ["hfmem", "train", model, "--method", method, "--optimizer", optimizer, "--seq", str(seq),
             "--batch", str(batch)]
    if precision and precision != S.AUTO:
        parts += ["--precision", precision]
    if method != "full":
        parts += ["--lora-rank", str(lora_rank)]
    if grad_ckpt:
        parts.append("--grad-ckpt")
    if sharding and sharding.startswith("zero-"):
        parts += ["--zero", sharding.removeprefix("zero-")]
    elif sharding and sharding.startswith("fsdp-"):
        parts += ["--fsdp", sharding.removeprefix("fsdp-")]
    if int(gpus) > 1:
        parts += ["--gpus", str(gpus)]
    if _gpu(gpu):
        parts += ["--gpu", gpu, "--advise"]
    return " ".join(shlex.quote(p) for p in parts)


def training(model: str, method: str = "full", precision: str = S.AUTO, optimizer: str = "adamw",
             sharding: str = "none", seq: int = 2048, batch: int = 1, lora_rank: int = 16, grad_ckpt: bool = False,
             gpu: str = S.NO_GPU, gpus: int = 1, options=None, **_ignored) -> Answer:
    """``api.train`` at the training controls: the components and phases per GPU; with a GPU whether it
    fits, the max micro-batch and sequence, and the advisor's remedies and cheapest plan (``advise=True``)."""
    def run() -> Answer:
        from .. import api

        if not model or not str(model).strip():
            raise UsageError("no model given", hint="e.g. hfmem train meta-llama/Llama-3.1-8B --method lora")
        s = train_settings(method, precision, optimizer, sharding, seq, batch, lora_rank, grad_ckpt, gpus)
        g = _gpu(gpu)
        r = api.train(str(model).strip(), _options(options), settings=s, gpu=g, advise=g is not None)
        e = r.estimate
        st = e.settings
        out = Answer(data={"report": r})
        out.tables.append(component_table(e, "train-components",
                                          f"{r.report.model}: {st.method}, {st.precision}, {st.optimizer}, "
                                          f"micro-batch {st.batch} x seq {st.seq:,}"))
        out.tables.append(Table("Peak allocated per phase (per GPU)", ["phase", "size", "bytes"],
                                [[k.replace("_", " "), _size(v), int(v)] for k, v in e.phases.items()], (2,),
                                elem_id="train-phases"))
        lines = [f"Trainable parameters: {format_count(e.trainable_params)}"
                 + (f"; frozen: {format_count(e.frozen_params)}" if e.frozen_params else "")]
        if e.cpu_bytes:
            lines.append(f"CPU RAM per node (offload): {_size(e.cpu_bytes)}")
        if r.gpu is not None:
            lines.append(f"**Fits {st.gpus} x {r.gpu.name}: {'yes' if r.fits else 'NO'}** — device total "
                         f"{_size(e.device_total_bytes)} of {_size(r.gpu.usable_bytes)} per GPU")
            lines.append(f"Max micro-batch at seq {st.seq:,}: {'-' if r.max_batch is None else r.max_batch}; "
                         f"max seq at micro-batch {st.batch}: {'-' if r.max_seq is None else f'{r.max_seq:,}'}")
        else:
            lines.append("Choose a GPU for whether it fits, the largest batch and sequence, and the advisor's "
                         "remedies.")
        adv = r.advice
        if adv is not None:
            rows = []
            for rem in adv.remedies:
                if not rem.helps:
                    continue
                rows.append([rem.name, _size(rem.saves_bytes), rem.saves_bytes, _size(rem.device_total_bytes),
                             rem.device_total_bytes, {True: "yes", False: "no"}.get(rem.fits, "-"), rem.cost])
            out.tables.append(Table(f"If it runs out of memory ({r.gpu.name})",
                                    ["remedy", "saves", "bytes", "device total after", "bytes", "fits", "cost"],
                                    rows, (2, 4), elem_id="train-remedies"))
            if adv.plan is not None:
                lines.append(f"**Cheapest plan that fits:** {adv.plan.sentence}")
                out.snippet = adv.plan.command
            else:
                lines.append(f"**No plan fits:** {adv.plan_reason or 'nothing searched fits'}")
        out.command = train_command(r.report.model, st.method, precision, st.optimizer, sharding, st.seq, st.batch,
                                    st.lora_rank, st.grad_ckpt, gpu, st.gpus)
        out.markdown = "\n\n".join(lines)
        out.footnotes = _footnotes_md("train", [r])
        return out

    return guarded(run)


# -------------------------------------------------------------------------------------------- compare


def compare(models, engine: str = "transformers", context: int = 4096, batch: int = 1, gpu: str = S.NO_GPU,
            gpus: int = 1, options=None, **_ignored) -> Answer:
    """Several models at the same serving settings (``api.infer_many``) and their calculator totals
    (``api.analyze_many``), side by side; each failing model is one error line, the others still answered."""
    def run() -> Answer:
        from .. import api

        names = _models(models)
        if not names:
            raise UsageError("no model given", hint="e.g. Qwen/Qwen3-8B, meta-llama/Llama-3.1-8B")
        s = inference_settings(engine, context, batch, S.AUTO, S.AUTO, gpus)
        opts = _options(options)
        failed: list[HfmemError] = []
        reports = api.infer_many(names, opts, settings=s, gpu=_gpu(gpu), on_error=lambda m, e: failed.append(e))
        reports = [r for r in reports if hasattr(r, "fit")]
        out = Answer(errors=[error_text(e) for e in failed], data={"reports": reports})
        keys = list(dict.fromkeys(k for r in reports for k in r.estimate.components))
        headers = ["model"]
        for k in keys:
            headers += [_label(k), "bytes"]
        headers += ["Device total", "bytes"]
        rows = []
        for r in reports:
            c = r.estimate.components
            row = [r.report.model]
            for k in keys:
                row += [_size(c.get(k)), c.get(k)]
            row += [_size(r.estimate.device_total_bytes), int(r.estimate.device_total_bytes)]
            rows.append(row)
        nb = tuple(range(2, len(headers), 2))
        out.tables.append(Table(f"Serving per GPU: {s.engine}, context {s.context:,} x batch {s.batch}", headers,
                                rows, nb, elem_id="compare-serving"))
        if _gpu(gpu):
            out.tables.append(Table(f"On {s.tp} x {gpu}", ["model", "fits", "free (negative: short)", "bytes",
                                                          "max context", "max batch", "fewest GPUs"],
                                    [[r.report.model, "yes" if r.fit.fits else "NO", _size(r.fit.headroom_bytes),
                                      int(r.fit.headroom_bytes), r.fit.max_context, r.fit.max_batch,
                                      r.fit.min_gpus] for r in reports if r.fit is not None], (3,),
                                    elem_id="compare-fit"))
        calc_rows = []
        for r in reports:
            t = r.report.table()
            by = {row.dtype: row.total_bytes for row in t.rows}
            calc_rows.append([r.report.model] + [x for d in S.CALC_DTYPES for x in (_calc_cell(by.get(d)), by.get(d))])
        out.tables.append(Table("Calculator totals (weights only)",
                                ["model"] + [x for d in S.CALC_DTYPES for x in (d, "bytes")], calc_rows,
                                (2, 4, 6, 8), elem_id="compare-calc"))
        out.command = infer_command(names, s.engine, s.context, s.batch, S.AUTO, S.AUTO, gpu, s.tp, emit=False)
        out.footnotes = _footnotes_md("infer", reports) if reports else ""
        return out

    return guarded(run)


# -------------------------------------------------------------------------------------------- search


def search_command(job, task, text, max_params, gpu, limit) -> str:
    """The ``hfmem search`` line that lists the same models (its flags of the same names)."""
    import shlex

    parts = ["hfmem", "search"] + ([text.strip()] if text and text.strip() else [])
    if job == "train":
        parts.append("--train")
    for flag, value in (("--task", task), ("--max-params", max_params), ("--gpu", gpu), ("--limit", limit)):
        if value not in (None, "") and str(value).strip():
            parts += [flag, str(value).strip()]
    return " ".join(shlex.quote(p) for p in parts)


def search(job: str = "serve", task: str = "", text: str = "", max_params: str = "", gpu: str = "RTX-4090",
           limit: int = 20, options=None, **_ignored) -> Answer:
    """``api.search``: the models that fit ``gpu`` for ``job``, filtered by task, a fragment of the name and a
    parameter ceiling (``14B``); offline it searches the shipped snapshot."""
    def run() -> Answer:
        from .. import api
        from ..sources.listing import ListingQuery, parse_param_count

        q = ListingQuery(search=text.strip() or None if text else None, task=task.strip() or None if task else None,
                         max_params=parse_param_count(max_params, "--max-params") if max_params else None)
        rep = api.search(q, job=job, gpu=gpu, limit=int(limit), options=_options(options))
        out = Answer(data={"report": rep})
        headers = ["model", "fits", "needed per GPU", "bytes", "free", "bytes", "parameters", "format",
                   "max context" if job == "serve" else "max batch", "command"]
        rows = [[r.model, "yes" if r.fits else "NO", _size(r.needed_bytes), int(r.needed_bytes), _size(r.margin_bytes),
                 int(r.margin_bytes), format_count(r.parameters), r.weights_format or r.method or "-",
                 (r.max_context if job == "serve" else r.max_batch), r.command] for r in rep.rows]
        rows += [[r.model, "NO", _size(r.needed_bytes), int(r.needed_bytes), _size(r.margin_bytes),
                  int(r.margin_bytes), format_count(r.parameters), r.weights_format or r.method or "-",
                  (r.max_context if job == "serve" else r.max_batch), r.command] for r in rep.not_fitting
                 if r not in rep.rows]
        out.tables.append(Table(f"Models for {job} on {rep.gpus} x {rep.gpu.name} ({rep.source} listing, "
                                f"{rep.scanned} of {rep.listed} scanned)", headers, rows, (3, 5),
                                elem_id="search-rows"))
        out.markdown = "\n".join("- " + n for n in rep.assumptions + rep.notes
                                 + [f"skipped: {k.reason}" if hasattr(k, "reason") else f"skipped: {k}"
                                    for k in rep.skipped])
        out.command = search_command(job, task, text, max_params, gpu, limit)
        return out

    return guarded(run)


# -------------------------------------------------------------------------------------------- plots


def _plot_ready() -> str | None:
    """None when plots can be drawn, else the CLI's one line for --plot without matplotlib."""
    from ..plot.figure import require_matplotlib

    try:
        require_matplotlib()
    except HfmemError as exc:
        return error_text(exc)
    return None


def _figure(charts):
    from ..plot.figure import make_figure

    return make_figure(charts, width_px=1000, height_px=520)


def serving_plot(model: str, engine="transformers", context=4096, batch=1, weights=S.AUTO, kv_dtype=S.AUTO,
                 gpu=S.NO_GPU, gpus=1, compare_gpus=(), axis="context", options=None, **_ignored):
    """``(figure or None, note)``: memory vs context (or batch) stacked by component, with the capacity lines of
    ``gpu`` and ``compare_gpus`` (``api.serving_curve``)."""
    try:
        from ..cli.llamacpp import is_gguf_ref
        from ..vocab import LLAMACPP

        if engine == LLAMACPP or is_gguf_ref(str(model).strip()):
            from ..cli.plotting import llamacpp_not_plotted  # what `hfmem infer --engine llama.cpp --plot` says

            raise llamacpp_not_plotted()
    except Exception as exc:  # noqa: BLE001
        return None, error_text(exc)
    why = _plot_ready()
    if why:
        return None, why
    try:
        from .. import api

        s = inference_settings(engine, context, batch, weights, kv_dtype, gpus)
        curve = api.serving_curve(str(model).strip(), _options(options), settings=s, gpu=_gpu(gpu),
                                  compare_gpus=tuple(S._split_list(compare_gpus)), axis=axis)
        return _figure([curve]), ""
    except Exception as exc:  # noqa: BLE001
        return None, error_text(exc)


def training_plot(model: str, method="full", precision=S.AUTO, optimizer="adamw", sharding="none", seq=2048,
                  batch=1, lora_rank=16, grad_ckpt=False, gpu=S.NO_GPU, gpus=1, compare_gpus=(), options=None,
                  **_ignored):
    """``(figure or None, note)``: training memory by phase (``api.training_chart``)."""
    why = _plot_ready()
    if why:
        return None, why
    try:
        from .. import api

        s = train_settings(method, precision, optimizer, sharding, seq, batch, lora_rank, grad_ckpt, gpus)
        chart = api.training_chart(str(model).strip(), _options(options), settings=s, gpu=_gpu(gpu),
                                   compare_gpus=tuple(S._split_list(compare_gpus)))
        return _figure([chart]), ""
    except Exception as exc:  # noqa: BLE001
        return None, error_text(exc)


def compare_plot(models, engine="transformers", context=4096, batch=1, gpu=S.NO_GPU, gpus=1, options=None,
                 **_ignored):
    """``(figure or None, note)``: several models' memory vs context in one figure (``api.serving_curves``)."""
    why = _plot_ready()
    if why:
        return None, why
    try:
        from .. import api

        s = inference_settings(engine, context, batch, S.AUTO, S.AUTO, gpus)
        failed = []
        curves = api.serving_curves(_models(models), _options(options), settings=s, gpu=_gpu(gpu),
                                    on_error=lambda m, e: failed.append(e))
        if not curves:
            return None, "\n".join(error_text(e) for e in failed) or "no model to plot"
        return _figure(curves), "\n".join(error_text(e) for e in failed)
    except Exception as exc:  # noqa: BLE001
        return None, error_text(exc)


HANDLERS = {"calc": calculator, "serve": serving, "train": training, "compare": compare, "search": search}
